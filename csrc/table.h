/* table.h - the object table: a fixed array of entries plus an
 * open-addressing hash index (linear probing, backward-shift deletion) from
 * object id to entry. Entries never move, so an entry index is a stable
 * handle for pins and LRU links while the entry is allocated.
 */
#ifndef PR_TABLE_H
#define PR_TABLE_H

#include <stdint.h>

#include "status.h"

struct pr_shm;
struct pr_entry;

typedef struct pr_table {
    uint64_t index_off;   /* uint64 slots: (hash32 << 32) | (entry + 1); 0 = empty */
    uint64_t entries_off;
    uint32_t index_mask;
    uint32_t max_entries;
    uint32_t hwm;         /* entries [0, hwm) have been handed out at least once */
    uint32_t free_head;   /* free entries, linked through lru_next */
    uint32_t live;        /* entries reachable through the index */
    uint32_t allocated;   /* entries not FREE */
} pr_table_t;

/* Bytes the index and the entry array need for `max_entries` entries. */
uint64_t pr_table_index_bytes(uint32_t max_entries);
uint64_t pr_table_entries_bytes(uint32_t max_entries);

void pr_table_init(struct pr_shm *shm, uint64_t index_off, uint64_t entries_off,
                   uint32_t max_entries);

/* PR_OK with *idx, or PR_ENOTFOUND. */
pr_status_t pr_table_lookup(struct pr_shm *shm, const uint8_t *oid, uint32_t *idx);

/* New zeroed entry for `oid`, linked into the index: PR_OK, PR_EEXIST (with
 * *idx of the existing entry) or PR_ETABLEFULL. State is left FREE: the
 * caller fills the entry and then sets its state. */
pr_status_t pr_table_insert(struct pr_shm *shm, const uint8_t *oid, uint32_t *idx);

/* Take the entry out of the index; it stays allocated. */
void pr_table_unlink(struct pr_shm *shm, uint32_t idx);

/* Return an unlinked entry to the free list. */
void pr_table_free(struct pr_shm *shm, uint32_t idx);

/* Rebuild the index and the free list from the entries' states. */
void pr_table_rebuild(struct pr_shm *shm);

#endif
