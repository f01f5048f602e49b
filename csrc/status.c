/* status.c - text for each pr_status_t. */
#include "status.h"

static const char *const messages[PR_STATUS_COUNT] = {
    [PR_OK] = "ok",
    [PR_ENOMEM] = "not enough free memory in the object store",
    [PR_EEXIST] = "object already exists",
    [PR_ENOTFOUND] = "object not found",
    [PR_ESEALED] = "object is already sealed",
    [PR_ENOTSEALED] = "object is not sealed yet",
    [PR_ESPILLED] = "object is spilled to disk",
    [PR_ETIMEDOUT] = "timed out",
    [PR_EINTR] = "interrupted by a signal",
    [PR_ETOOBIG] = "object is larger than the object store's capacity",
    [PR_ETABLEFULL] = "object table is full",
    [PR_ENOPINS] = "too many pinned buffers",
    [PR_ECLIENTS] = "too many connected client processes",
    [PR_ENOSTORE] = "no object store with this name",
    [PR_EBADSTORE] = "not an object store (bad magic or version)",
    [PR_EINVAL] = "invalid argument",
    [PR_EBUSY] = "object is busy",
    [PR_ESYS] = "system call failed",
    [PR_ECORRUPT] = "checksum mismatch",
};

const char *pr_strerror(pr_status_t st)
{
    if ((unsigned)st >= PR_STATUS_COUNT || messages[st] == 0)
        return "unknown status";
    return messages[st];
}
