/* lru.c - LRU lists (see lru.h). */
#include "lru.h"

#include <stdlib.h>

#include "layout.h"

static inline int list_of(const pr_entry_t *e)
{
    return (e->flags & PR_FLAG_SECONDARY) ? PR_LRU_SECONDARY : PR_LRU_PRIMARY;
}

void pr_lru_init(pr_shm_t *shm)
{
    for (int l = 0; l < 2; l++) {
        shm->lru.head[l] = shm->lru.tail[l] = PR_NIL;
        shm->lru.count[l] = shm->lru.bytes[l] = 0;
    }
}

void pr_lru_push(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->flags & PR_FLAG_IN_LRU)
        return;
    int l = list_of(e);
    pr_lru_t *lru = &shm->lru;
    e->lru_prev = lru->tail[l];
    e->lru_next = PR_NIL;
    if (lru->tail[l] != PR_NIL)
        pr_shm_entry(shm, lru->tail[l])->lru_next = idx;
    else
        lru->head[l] = idx;
    lru->tail[l] = idx;
    lru->count[l]++;
    lru->bytes[l] += e->block_size;
    e->flags |= PR_FLAG_IN_LRU;
}

void pr_lru_remove(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (!(e->flags & PR_FLAG_IN_LRU))
        return;
    int l = list_of(e);
    pr_lru_t *lru = &shm->lru;
    if (e->lru_prev != PR_NIL)
        pr_shm_entry(shm, e->lru_prev)->lru_next = e->lru_next;
    else
        lru->head[l] = e->lru_next;
    if (e->lru_next != PR_NIL)
        pr_shm_entry(shm, e->lru_next)->lru_prev = e->lru_prev;
    else
        lru->tail[l] = e->lru_prev;
    e->lru_prev = e->lru_next = PR_NIL;
    lru->count[l]--;
    lru->bytes[l] -= e->block_size;
    e->flags &= ~PR_FLAG_IN_LRU;
}

uint32_t pr_lru_oldest(pr_shm_t *shm, int list)
{
    return shm->lru.head[list];
}

uint32_t pr_lru_newer(pr_shm_t *shm, uint32_t idx)
{
    return pr_shm_entry(shm, idx)->lru_next;
}

static int by_tick(const void *a, const void *b, void *ctx)
{
    pr_shm_t *shm = ctx;
    uint64_t ta = pr_shm_entry(shm, *(const uint32_t *)a)->tick;
    uint64_t tb = pr_shm_entry(shm, *(const uint32_t *)b)->tick;
    return ta < tb ? -1 : ta > tb;
}

void pr_lru_rebuild(pr_shm_t *shm)
{
    uint32_t hwm = shm->table.hwm, n = 0;
    uint32_t *order = malloc(sizeof(uint32_t) * (hwm ? hwm : 1));
    pr_lru_init(shm);
    for (uint32_t idx = 0; idx < hwm; idx++) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        e->flags &= ~PR_FLAG_IN_LRU;
        e->lru_prev = PR_NIL;
        if (e->state != PR_STATE_FREE)
            e->lru_next = PR_NIL;
        if (e->state == PR_STATE_SEALED && e->pin_count == 0 && (e->flags & PR_FLAG_HAS_MEMORY)) {
            if (order)
                order[n++] = idx;
            else
                pr_lru_push(shm, idx);
        }
    }
    if (order) {
        qsort_r(order, n, sizeof(uint32_t), by_tick, shm);
        for (uint32_t i = 0; i < n; i++)
            pr_lru_push(shm, order[i]);
        free(order);
    }
}
