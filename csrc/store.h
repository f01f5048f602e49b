/* store.h - what a client process does to the store. Every call takes the
 * segment lock for a few hundred nanoseconds and touches only shared memory:
 * no server, no IPC round trip. Waiting (get of an unsealed object) sleeps on
 * a futex outside the lock.
 */
#ifndef PR_STORE_H
#define PR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "status.h"

struct pr_shm;

typedef struct pr_conn {
    pr_arena_t arena;
    struct pr_shm *shm;
    uint16_t client; /* our client slot */
    int32_t pid;
} pr_conn_t;

typedef struct pr_store_params {
    uint64_t capacity;     /* bytes for objects */
    uint32_t max_objects;  /* 0: derived from capacity */
    const char *spill_dir; /* NULL or "": never spill */
    const char *spill_prefix;
} pr_store_params_t;

typedef struct pr_object_info {
    uint8_t oid[20];
    uint8_t state;
    uint8_t flags;
    uint16_t pad;
    uint32_t idx;       /* entry index: the handle for release / seal */
    uint32_t meta_size;
    uint32_t pins;
    uint32_t spill_file;
    uint8_t *data;      /* payload in this process's mapping (NULL if none) */
    uint64_t data_size;
    uint64_t spill_off;
    uint64_t checksum;
} pr_object_info_t;

typedef struct pr_stats {
    uint64_t capacity;
    uint64_t used;            /* bytes in allocated blocks, headers included */
    uint64_t num_objects;     /* visible objects, in memory or spilled */
    uint64_t num_in_memory;
    uint64_t pinned_bytes;
    uint64_t pinned_objects;
    uint64_t evictable_bytes; /* unpinned secondary copies */
    uint64_t spillable_bytes; /* unpinned sealed primary copies */
    uint64_t largest_free;
    uint64_t evicted_objects;
    uint64_t evicted_bytes;
    uint64_t spilled_objects; /* cumulative */
    uint64_t spilled_bytes;   /* cumulative */
    uint64_t restored_objects;
    uint64_t restored_bytes;
    uint64_t spilled_objects_now;
    uint64_t spilled_bytes_now;
    uint64_t spill_files;
    uint64_t spilling_bytes;  /* pinned by spills in progress */
    uint64_t num_clients;
    uint64_t max_objects;
    uint64_t reaped_clients;
    uint64_t recoveries;
} pr_stats_t;

/* Segment lifetime. */
pr_status_t pr_store_make(pr_conn_t *c, const pr_store_params_t *p);
pr_status_t pr_store_connect(pr_conn_t *c, const char *name);
/* Drop this client's pins and writes, free its slot, unmap. */
void pr_store_disconnect(pr_conn_t *c);
/* Creator: mark closed, remove spill files and the name (disconnect after). */
void pr_store_destroy(pr_conn_t *c);

/* Objects. */
pr_status_t pr_store_create(pr_conn_t *c, const uint8_t *oid, uint64_t data_size,
                            uint32_t meta_size, int secondary, pr_object_info_t *out,
                            uint64_t *need);
pr_status_t pr_store_seal(pr_conn_t *c, const uint8_t *oid);
/* Seal entry `idx` (made by this client) and drop this client's pin on it. */
pr_status_t pr_store_seal_release(pr_conn_t *c, uint32_t idx);
pr_status_t pr_store_abort(pr_conn_t *c, const uint8_t *oid);
/* timeout_ns: < 0 forever, 0 at once. wait_create: also wait for ids that
 * do not exist yet (else PR_ENOTFOUND at once). PR_OK pins the object;
 * PR_ESPILLED says restore it first (nothing pinned). */
pr_status_t pr_store_get(pr_conn_t *c, const uint8_t *oid, int64_t timeout_ns,
                         int wait_create, pr_object_info_t *out);
pr_status_t pr_store_release(pr_conn_t *c, uint32_t idx);
pr_status_t pr_store_delete(pr_conn_t *c, const uint8_t *oid);
pr_status_t pr_store_contains(pr_conn_t *c, const uint8_t *oid, int *present);
/* Up to `max` visible objects into `out`; *total gets how many there are. */
pr_status_t pr_store_list(pr_conn_t *c, pr_object_info_t *out, uint32_t max, uint32_t *n,
                          uint32_t *total);
pr_status_t pr_store_stats(pr_conn_t *c, pr_stats_t *s);

/* The spill directory ("" when spilling is off). */
const char *pr_store_spill_dir(const pr_conn_t *c);

/* Reclaim the pins, writes and client slots of dead processes. */
pr_status_t pr_store_reap(pr_conn_t *c, uint32_t *reaped);

/* Spill mechanism; the policy (what and when) is the caller's. */
pr_status_t pr_store_spill_begin(pr_conn_t *c, uint64_t min_bytes, uint32_t max_objects,
                                 pr_object_info_t *out, uint32_t *n, uint32_t *file_slot);
pr_status_t pr_store_spill_end(pr_conn_t *c, uint32_t file_slot, uint32_t n,
                               const uint32_t *idxs, const uint64_t *offs,
                               const uint64_t *checksums, int ok);
/* If other clients are spilling, sleep until the store changes (or
 * timeout_ns): *waited says whether there was anything to wait for. */
pr_status_t pr_store_wait_spills(pr_conn_t *c, int64_t timeout_ns, int *waited);
pr_status_t pr_store_spill_path(pr_conn_t *c, uint32_t file_slot, char *buf, size_t len);
pr_status_t pr_store_restore_begin(pr_conn_t *c, const uint8_t *oid, pr_object_info_t *out,
                                   uint64_t *need);
pr_status_t pr_store_restore_end(pr_conn_t *c, uint32_t idx, int ok);

/* Test hook: hold the lock for `ns` nanoseconds; write one byte to
 * notify_fd (if >= 0) once it is held. */
pr_status_t pr_store_debug_hold_lock(pr_conn_t *c, int64_t ns, int notify_fd);

#endif
