/* reclaim.c - eviction, dead-client reaping, crash recovery (see reclaim.h). */
#include "reclaim.h"

#include <stdlib.h>

#include "layout.h"
#include "object.h"

int pr_reclaim_evict_one(pr_shm_t *shm)
{
    uint32_t idx = pr_lru_oldest(shm, PR_LRU_SECONDARY);
    if (idx == PR_NIL)
        return 0;
    pr_object_evict(shm, idx);
    return 1;
}

void pr_reclaim_client(pr_shm_t *shm, uint16_t client)
{
    for (uint32_t idx = 0; idx < shm->table.hwm; idx++) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if (e->state == PR_STATE_FREE)
            continue;
        int owned = e->owner == client;
        pr_pins_drop_client(shm, idx, client);
        if (owned && e->state == PR_STATE_CREATED) {
            pr_object_delete(shm, idx); /* never sealed: nobody can use it */
        } else if (owned && e->state == PR_STATE_RESTORING) {
            pr_object_restored(shm, idx, 0);
        } else if (owned && (e->flags & PR_FLAG_SPILLING)) {
            shm->counters.spilling_bytes -= e->data_size + e->meta_size;
            e->flags &= ~PR_FLAG_SPILLING;
            e->owner = PR_NO_CLIENT;
            pr_object_unpinned(shm, idx);
        } else {
            pr_object_unpinned(shm, idx);
        }
    }
    pr_spillmap_reap(shm, client);
    pr_clients_detach(shm, client);
    pr_lock_notify(&shm->lock);
}

uint32_t pr_reclaim_dead(pr_shm_t *shm)
{
    uint32_t n = 0;
    for (uint16_t slot = 0; slot < PR_MAX_CLIENTS; slot++) {
        if (!shm->clients.slots[slot].in_use || pr_clients_alive(shm, slot))
            continue;
        pr_reclaim_client(shm, slot);
        shm->counters.reaped_clients++;
        n++;
    }
    return n;
}

typedef struct span {
    uint64_t off, size;
    uint32_t idx;
} span_t;

static int by_offset(const void *a, const void *b)
{
    uint64_t x = ((const span_t *)a)->off, y = ((const span_t *)b)->off;
    return x < y ? -1 : x > y;
}

/* Lay the allocator out again from the blocks that entries own. */
static void rebuild_alloc(pr_shm_t *shm)
{
    uint32_t hwm = shm->table.hwm, n = 0;
    span_t *spans = malloc(sizeof(span_t) * (hwm ? hwm : 1));
    uint64_t *offs = malloc(sizeof(uint64_t) * (hwm ? hwm : 1));
    uint64_t *sizes = malloc(sizeof(uint64_t) * (hwm ? hwm : 1));
    if (!spans || !offs || !sizes) {
        free(spans);
        free(offs);
        free(sizes);
        return; /* keep the allocator as it is */
    }
    uint64_t limit = shm->alloc.data_size - PR_BLOCK_HEADER;
    for (uint32_t idx = 0; idx < hwm; idx++) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if (e->state == PR_STATE_FREE || !(e->flags & PR_FLAG_HAS_MEMORY))
            continue;
        if (e->block_off % PR_ALIGN || e->block_size < PR_BLOCK_MIN
            || e->block_off + e->block_size > limit) {
            e->flags &= ~PR_FLAG_HAS_MEMORY;
            continue;
        }
        spans[n++] = (span_t){e->block_off, e->block_size, idx};
    }
    qsort(spans, n, sizeof(span_t), by_offset);
    uint32_t m = 0;
    uint64_t end = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (spans[i].off < end) { /* overlaps: this entry cannot be trusted */
            pr_shm_entry(shm, spans[i].idx)->flags &= ~PR_FLAG_HAS_MEMORY;
            continue;
        }
        offs[m] = spans[i].off;
        sizes[m] = spans[i].size;
        m++;
        end = spans[i].off + spans[i].size;
    }
    pr_alloc_rebuild(&shm->alloc, pr_shm_data(shm), offs, sizes, m);
    free(spans);
    free(offs);
    free(sizes);
}

void pr_reclaim_recover(pr_shm_t *shm)
{
    shm->counters.recoveries++;
    pr_table_rebuild(shm);
    pr_pins_rebuild(shm);
    rebuild_alloc(shm);
    /* Objects that lost their memory, and deleted ones nobody pins, go. */
    shm->counters.num_spilled = 0;
    shm->counters.spilled_bytes_now = 0;
    shm->counters.spilling_bytes = 0;
    for (uint32_t idx = 0; idx < shm->table.hwm; idx++) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        int needs_memory = e->state == PR_STATE_CREATED || e->state == PR_STATE_SEALED
                           || e->state == PR_STATE_RESTORING;
        if (needs_memory && !(e->flags & PR_FLAG_HAS_MEMORY)) {
            if (e->state == PR_STATE_RESTORING) {
                e->state = PR_STATE_SPILLED;
            } else {
                pr_table_unlink(shm, idx);
                e->state = PR_STATE_DELETED;
            }
        }
        if (e->state == PR_STATE_DELETED && e->pin_count == 0) {
            if (e->flags & PR_FLAG_HAS_MEMORY)
                pr_alloc_give(&shm->alloc, pr_shm_data(shm), e->block_off);
            pr_table_free(shm, idx);
            continue;
        }
        if (e->flags & PR_FLAG_SPILLING)
            shm->counters.spilling_bytes += e->data_size + e->meta_size;
        if (e->state == PR_STATE_SPILLED || e->state == PR_STATE_RESTORING) {
            shm->counters.num_spilled++;
            shm->counters.spilled_bytes_now += e->data_size + e->meta_size;
        }
    }
    pr_lru_rebuild(shm);
    pr_spillmap_recount(shm);
    pr_reclaim_dead(shm);
    pr_lock_notify(&shm->lock);
}
