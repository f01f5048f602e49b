/* layout.h - what lives in the shared segment, and where.
 *
 *   [ pr_shm_t header | hash index | entry array | pin records | data region ]
 *
 * Every cross-reference inside the segment is an offset or an index, never a
 * pointer: each process maps the segment at its own address.
 */
#ifndef PR_LAYOUT_H
#define PR_LAYOUT_H

#include <stdint.h>

#include "alloc.h"
#include "clients.h"
#include "lock.h"
#include "lru.h"
#include "pins.h"
#include "spillmap.h"
#include "table.h"

#define PR_MAGIC 0x31414d5341534c50ULL /* "PLSASMA1" */
#define PR_VERSION 1u
#define PR_OID_SIZE 20
#define PR_NIL 0xFFFFFFFFu

/* Object lifecycle: FREE -> CREATED -> SEALED <-> SPILLED -> FREE.
 * RESTORING is SPILLED with memory being filled by one client.
 * DELETED: unlinked from the index, waiting for its last pin. */
typedef enum pr_state {
    PR_STATE_FREE = 0,
    PR_STATE_CREATED = 1,
    PR_STATE_SEALED = 2,
    PR_STATE_SPILLED = 3,
    PR_STATE_RESTORING = 4,
    PR_STATE_DELETED = 5,
} pr_state_t;

#define PR_FLAG_SECONDARY 0x01u /* cached copy: may be evicted */
#define PR_FLAG_IN_LRU 0x02u    /* linked in an LRU list */
#define PR_FLAG_SPILLING 0x04u  /* chosen by a spiller, being written out */
#define PR_FLAG_HAS_MEMORY 0x08u /* owns a block in the data region */

typedef struct pr_entry {
    uint8_t oid[PR_OID_SIZE];
    uint8_t state;       /* pr_state_t */
    uint8_t flags;       /* PR_FLAG_* */
    uint16_t owner;      /* writer client while CREATED/RESTORING */
    uint32_t pin_count;  /* sum of this entry's pin records */
    uint32_t pin_head;   /* first pin record, PR_NIL if none */
    uint32_t lru_prev;   /* LRU links; lru_next doubles as free-list link */
    uint32_t lru_next;
    uint32_t spill_file; /* spill-file slot while SPILLED/RESTORING */
    uint32_t meta_size;
    uint64_t block_off;  /* block offset within the data region */
    uint64_t block_size;
    uint64_t data_size;
    uint64_t spill_off;  /* record offset inside the spill file */
    uint64_t checksum;   /* of data + metadata, set when spilled */
    uint64_t tick;       /* last use, for rebuilding LRU order */
} pr_entry_t;

typedef struct pr_counters {
    uint64_t tick;
    uint64_t evicted_objects;
    uint64_t evicted_bytes;
    uint64_t spilled_objects;
    uint64_t spilled_bytes;
    uint64_t restored_objects;
    uint64_t restored_bytes;
    uint64_t num_sealed;
    uint64_t num_spilled;
    uint64_t spilled_bytes_now;
    uint64_t reaped_clients;
    uint64_t recoveries;
    uint64_t spilling_bytes; /* pinned by spills in progress */
} pr_counters_t;

typedef struct pr_shm {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint64_t total_size;
    uint64_t capacity;
    int32_t creator_pid;
    uint32_t closed;
    pr_lock_t lock;
    pr_counters_t counters;
    pr_alloc_t alloc;
    pr_table_t table;
    pr_lru_t lru;
    pr_pins_t pins;
    pr_clients_t clients;
    pr_spillmap_t spill;
} pr_shm_t;

static inline uint8_t *pr_shm_at(pr_shm_t *shm, uint64_t off)
{
    return (uint8_t *)shm + off;
}

static inline pr_entry_t *pr_shm_entry(pr_shm_t *shm, uint32_t idx)
{
    return (pr_entry_t *)pr_shm_at(shm, shm->table.entries_off) + idx;
}

static inline uint8_t *pr_shm_data(pr_shm_t *shm)
{
    return pr_shm_at(shm, shm->alloc.data_off);
}

/* Payload address of an entry that owns memory. */
static inline uint8_t *pr_shm_payload(pr_shm_t *shm, const pr_entry_t *e)
{
    return pr_shm_data(shm) + e->block_off + PR_BLOCK_HEADER;
}

#endif
