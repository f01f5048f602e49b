/* table.c - object table (see table.h). */
#include "table.h"

#include <string.h>

#include "layout.h"

static inline uint64_t *slots(pr_shm_t *shm)
{
    return (uint64_t *)pr_shm_at(shm, shm->table.index_off);
}

static inline uint32_t oid_hash(const uint8_t *oid)
{
    uint64_t a, b;
    uint32_t c;
    memcpy(&a, oid, 8);
    memcpy(&b, oid + 8, 8);
    memcpy(&c, oid + 16, 4);
    uint64_t h = a * 0x9E3779B97F4A7C15ull;
    h ^= (b + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    h ^= (uint64_t)c * 0x165667B19E3779F9ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static inline uint64_t make_slot(uint32_t hash, uint32_t idx)
{
    return ((uint64_t)hash << 32) | ((uint64_t)idx + 1);
}

uint64_t pr_table_index_bytes(uint32_t max_entries)
{
    uint64_t n = 16;
    while (n < (uint64_t)max_entries * 2)
        n <<= 1;
    return n * sizeof(uint64_t);
}

uint64_t pr_table_entries_bytes(uint32_t max_entries)
{
    return (uint64_t)max_entries * sizeof(pr_entry_t);
}

void pr_table_init(pr_shm_t *shm, uint64_t index_off, uint64_t entries_off, uint32_t max_entries)
{
    pr_table_t *t = &shm->table;
    t->index_off = index_off;
    t->entries_off = entries_off;
    t->index_mask = (uint32_t)(pr_table_index_bytes(max_entries) / sizeof(uint64_t) - 1);
    t->max_entries = max_entries;
    t->hwm = 0;
    t->free_head = PR_NIL;
    t->live = 0;
    t->allocated = 0;
    /* A fresh segment reads as zeros: the index starts empty. */
}

/* Slot holding `oid`, or the empty slot where it would go (*found = 0). */
static uint32_t probe(pr_shm_t *shm, const uint8_t *oid, uint32_t hash, int *found)
{
    uint64_t *s = slots(shm);
    uint32_t mask = shm->table.index_mask;
    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        uint64_t v = s[i];
        if (v == 0) {
            *found = 0;
            return i;
        }
        if ((uint32_t)(v >> 32) == hash) {
            pr_entry_t *e = pr_shm_entry(shm, (uint32_t)v - 1);
            if (memcmp(e->oid, oid, PR_OID_SIZE) == 0) {
                *found = 1;
                return i;
            }
        }
    }
}

pr_status_t pr_table_lookup(pr_shm_t *shm, const uint8_t *oid, uint32_t *idx)
{
    int found;
    uint32_t i = probe(shm, oid, oid_hash(oid), &found);
    if (!found)
        return PR_ENOTFOUND;
    *idx = (uint32_t)slots(shm)[i] - 1;
    return PR_OK;
}

pr_status_t pr_table_insert(pr_shm_t *shm, const uint8_t *oid, uint32_t *idx)
{
    pr_table_t *t = &shm->table;
    uint32_t hash = oid_hash(oid);
    int found;
    uint32_t i = probe(shm, oid, hash, &found);
    if (found) {
        *idx = (uint32_t)slots(shm)[i] - 1;
        return PR_EEXIST;
    }
    uint32_t e_idx;
    if (t->free_head != PR_NIL) {
        e_idx = t->free_head;
        t->free_head = pr_shm_entry(shm, e_idx)->lru_next;
    } else if (t->hwm < t->max_entries) {
        e_idx = t->hwm++;
    } else {
        return PR_ETABLEFULL;
    }
    pr_entry_t *e = pr_shm_entry(shm, e_idx);
    memset(e, 0, sizeof *e);
    memcpy(e->oid, oid, PR_OID_SIZE);
    e->pin_head = e->lru_prev = e->lru_next = e->spill_file = PR_NIL;
    e->owner = PR_NO_CLIENT;
    slots(shm)[i] = make_slot(hash, e_idx);
    t->live++;
    t->allocated++;
    *idx = e_idx;
    return PR_OK;
}

void pr_table_unlink(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    uint64_t *s = slots(shm);
    uint32_t mask = shm->table.index_mask;
    int found;
    uint32_t i = probe(shm, e->oid, oid_hash(e->oid), &found);
    if (!found || (uint32_t)s[i] - 1 != idx)
        return;
    for (uint32_t j = (i + 1) & mask; s[j] != 0; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)(s[j] >> 32) & mask;
        /* Move s[j] back into the hole at i unless its home lies in (i, j]. */
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            s[i] = s[j];
            i = j;
        }
    }
    s[i] = 0;
    shm->table.live--;
}

void pr_table_free(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    __atomic_store_n(&e->state, PR_STATE_FREE, __ATOMIC_RELEASE);
    e->flags = 0;
    e->lru_next = shm->table.free_head;
    shm->table.free_head = idx;
    shm->table.allocated--;
}

void pr_table_rebuild(pr_shm_t *shm)
{
    pr_table_t *t = &shm->table;
    uint64_t *s = slots(shm);
    memset(s, 0, ((uint64_t)t->index_mask + 1) * sizeof(uint64_t));
    t->free_head = PR_NIL;
    t->live = 0;
    t->allocated = 0;
    for (uint32_t idx = t->hwm; idx-- > 0;) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if (e->state == PR_STATE_FREE || e->state > PR_STATE_DELETED) {
            e->state = PR_STATE_FREE;
            e->lru_next = t->free_head;
            t->free_head = idx;
            continue;
        }
        t->allocated++;
        if (e->state == PR_STATE_DELETED)
            continue;
        uint32_t hash = oid_hash(e->oid);
        int found;
        uint32_t i = probe(shm, e->oid, hash, &found);
        if (found) { /* a duplicate id cannot be trusted: drop the copy */
            e->state = PR_STATE_DELETED;
            continue;
        }
        s[i] = make_slot(hash, idx);
        t->live++;
    }
}
