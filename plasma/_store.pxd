# Declarations of the C store (csrc/). No code here.
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, int32_t, uint64_t


cdef extern from "status.h":
    ctypedef enum pr_status_t:
        PR_OK
        PR_ENOMEM
        PR_EEXIST
        PR_ENOTFOUND
        PR_ESEALED
        PR_ENOTSEALED
        PR_ESPILLED
        PR_ETIMEDOUT
        PR_EINTR
        PR_ETOOBIG
        PR_ETABLEFULL
        PR_ENOPINS
        PR_ECLIENTS
        PR_ENOSTORE
        PR_EBADSTORE
        PR_EINVAL
        PR_EBUSY
        PR_ESYS
        PR_ECORRUPT
    const char *pr_strerror(pr_status_t st)


cdef extern from "checksum.h":
    uint64_t pr_checksum_compute(const void *data, size_t length) nogil


cdef extern from "copy.h":
    void pr_copy_bulk(void *dst, const void *src, size_t n) nogil


cdef extern from "arena.h":
    ctypedef struct pr_arena_t:
        int fd
        int owner
        int is_memfd
        uint8_t *base
        uint64_t size
        char name[256]


    void pr_arena_close(pr_arena_t *a)


cdef extern from "lock.h":
    int64_t pr_lock_now_ns() nogil


cdef extern from "store.h":
    ctypedef struct pr_conn_t:
        pr_arena_t arena
        void *shm
        uint16_t client
        int32_t pid

    ctypedef struct pr_store_params_t:
        uint64_t capacity
        uint32_t max_objects
        const char *spill_dir
        const char *spill_prefix

    ctypedef struct pr_object_info_t:
        uint8_t oid[20]
        uint8_t state
        uint8_t flags
        uint32_t idx
        uint32_t meta_size
        uint32_t pins
        uint32_t spill_file
        uint8_t *data
        uint64_t data_size
        uint64_t spill_off
        uint64_t checksum

    ctypedef struct pr_stats_t:
        uint64_t capacity
        uint64_t used
        uint64_t num_objects
        uint64_t num_in_memory
        uint64_t pinned_bytes
        uint64_t pinned_objects
        uint64_t evictable_bytes
        uint64_t spillable_bytes
        uint64_t largest_free
        uint64_t evicted_objects
        uint64_t evicted_bytes
        uint64_t spilled_objects
        uint64_t spilled_bytes
        uint64_t restored_objects
        uint64_t restored_bytes
        uint64_t spilled_objects_now
        uint64_t spilled_bytes_now
        uint64_t spill_files
        uint64_t spilling_bytes
        uint64_t num_clients
        uint64_t max_objects
        uint64_t reaped_clients
        uint64_t recoveries

    pr_status_t pr_store_make(pr_conn_t *c, const pr_store_params_t *p)
    pr_status_t pr_store_connect(pr_conn_t *c, const char *name)
    void pr_store_disconnect(pr_conn_t *c) nogil
    void pr_store_destroy(pr_conn_t *c)

    pr_status_t pr_store_create(pr_conn_t *c, const uint8_t *oid, uint64_t data_size,
                                uint32_t meta_size, int secondary, pr_object_info_t *out,
                                uint64_t *need)
    pr_status_t pr_store_seal(pr_conn_t *c, const uint8_t *oid)
    pr_status_t pr_store_seal_release(pr_conn_t *c, uint32_t idx)
    pr_status_t pr_store_abort(pr_conn_t *c, const uint8_t *oid)
    pr_status_t pr_store_get(pr_conn_t *c, const uint8_t *oid, int64_t timeout_ns,
                             int wait_create, pr_object_info_t *out) nogil
    pr_status_t pr_store_release(pr_conn_t *c, uint32_t idx)
    pr_status_t pr_store_delete(pr_conn_t *c, const uint8_t *oid)
    pr_status_t pr_store_contains(pr_conn_t *c, const uint8_t *oid, int *present)
    pr_status_t pr_store_list(pr_conn_t *c, pr_object_info_t *out, uint32_t max, uint32_t *n,
                              uint32_t *total)
    pr_status_t pr_store_stats(pr_conn_t *c, pr_stats_t *s)
    const char *pr_store_spill_dir(const pr_conn_t *c)
    pr_status_t pr_store_reap(pr_conn_t *c, uint32_t *reaped)

    pr_status_t pr_store_spill_begin(pr_conn_t *c, uint64_t min_bytes, uint32_t max_objects,
                                     pr_object_info_t *out, uint32_t *n, uint32_t *file_slot)
    pr_status_t pr_store_spill_end(pr_conn_t *c, uint32_t file_slot, uint32_t n,
                                   const uint32_t *idxs, const uint64_t *offs,
                                   const uint64_t *checksums, int ok)
    pr_status_t pr_store_wait_spills(pr_conn_t *c, int64_t timeout_ns, int *waited) nogil
    pr_status_t pr_store_spill_path(pr_conn_t *c, uint32_t file_slot, char *buf, size_t length)
    pr_status_t pr_store_restore_begin(pr_conn_t *c, const uint8_t *oid, pr_object_info_t *out,
                                       uint64_t *need)
    pr_status_t pr_store_restore_end(pr_conn_t *c, uint32_t idx, int ok)
    pr_status_t pr_store_debug_hold_lock(pr_conn_t *c, int64_t ns, int notify_fd) nogil
