/* status.h - the one status enum every csrc/ function returns. */
#ifndef PR_STATUS_H
#define PR_STATUS_H

typedef enum pr_status {
    PR_OK = 0,
    PR_ENOMEM,        /* no room in the arena right now (spill or evict, then retry) */
    PR_EEXIST,        /* an object with this id already exists */
    PR_ENOTFOUND,     /* no object with this id */
    PR_ESEALED,       /* the object is already sealed */
    PR_ENOTSEALED,    /* the object exists but is not sealed yet */
    PR_ESPILLED,      /* the object lives in a spill file; restore it first */
    PR_ETIMEDOUT,     /* the wait ran out */
    PR_EINTR,         /* a signal interrupted a wait */
    PR_ETOOBIG,       /* larger than the whole arena: can never fit */
    PR_ETABLEFULL,    /* the object table has no free entry */
    PR_ENOPINS,       /* the pin record pool is exhausted */
    PR_ECLIENTS,      /* every client slot is taken by a live process */
    PR_ENOSTORE,      /* no store at this name */
    PR_EBADSTORE,     /* the file is not a store, or another version */
    PR_EINVAL,        /* bad argument */
    PR_EBUSY,         /* the object is pinned or being spilled */
    PR_ESYS,          /* a system call failed; errno has the reason */
    PR_ECORRUPT,      /* a checksum did not match */
    PR_STATUS_COUNT
} pr_status_t;

const char *pr_strerror(pr_status_t st);

#endif
