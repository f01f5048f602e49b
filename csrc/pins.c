/* pins.c - pin records (see pins.h). */
#include "pins.h"

#include <stdlib.h>

#include "layout.h"

static inline pr_pin_rec_t *rec(pr_shm_t *shm, uint32_t i)
{
    return (pr_pin_rec_t *)pr_shm_at(shm, shm->pins.recs_off) + i;
}

static inline uint64_t payload_bytes(const pr_entry_t *e)
{
    return e->data_size + e->meta_size;
}

uint64_t pr_pins_bytes(uint32_t max_recs)
{
    return (uint64_t)max_recs * sizeof(pr_pin_rec_t);
}

void pr_pins_init(pr_shm_t *shm, uint64_t recs_off, uint32_t max_recs)
{
    pr_pins_t *p = &shm->pins;
    p->recs_off = recs_off;
    p->max_recs = max_recs;
    p->hwm = 0;
    p->free_head = PR_NIL;
    p->used = 0;
    p->pinned_bytes = 0;
    p->pinned_objects = 0;
}

static void count_changed(pr_shm_t *shm, pr_entry_t *e, uint32_t before)
{
    if (before == 0 && e->pin_count > 0) {
        shm->pins.pinned_bytes += payload_bytes(e);
        shm->pins.pinned_objects++;
    } else if (before > 0 && e->pin_count == 0) {
        shm->pins.pinned_bytes -= payload_bytes(e);
        shm->pins.pinned_objects--;
    }
}

pr_status_t pr_pins_add(pr_shm_t *shm, uint32_t idx, uint16_t client)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    for (uint32_t r = e->pin_head; r != PR_NIL; r = rec(shm, r)->next) {
        if (rec(shm, r)->client == client) {
            rec(shm, r)->count++;
            e->pin_count++;
            count_changed(shm, e, e->pin_count - 1);
            return PR_OK;
        }
    }
    pr_pins_t *p = &shm->pins;
    uint32_t r;
    if (p->free_head != PR_NIL) {
        r = p->free_head;
        p->free_head = rec(shm, r)->next;
    } else if (p->hwm < p->max_recs) {
        r = p->hwm++;
    } else {
        return PR_ENOPINS;
    }
    pr_pin_rec_t *pr = rec(shm, r);
    pr->client = client;
    pr->count = 1;
    pr->next = e->pin_head;
    e->pin_head = r;
    p->used++;
    e->pin_count++;
    count_changed(shm, e, e->pin_count - 1);
    return PR_OK;
}

static void unlink_rec(pr_shm_t *shm, pr_entry_t *e, uint32_t prev, uint32_t r)
{
    if (prev == PR_NIL)
        e->pin_head = rec(shm, r)->next;
    else
        rec(shm, prev)->next = rec(shm, r)->next;
    rec(shm, r)->next = shm->pins.free_head;
    shm->pins.free_head = r;
    shm->pins.used--;
}

pr_status_t pr_pins_drop(pr_shm_t *shm, uint32_t idx, uint16_t client)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    for (uint32_t prev = PR_NIL, r = e->pin_head; r != PR_NIL; prev = r, r = rec(shm, r)->next) {
        pr_pin_rec_t *pr = rec(shm, r);
        if (pr->client != client)
            continue;
        if (--pr->count == 0)
            unlink_rec(shm, e, prev, r);
        e->pin_count--;
        count_changed(shm, e, e->pin_count + 1);
        return PR_OK;
    }
    return PR_ENOTFOUND;
}

uint32_t pr_pins_drop_client(pr_shm_t *shm, uint32_t idx, uint16_t client)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    for (uint32_t prev = PR_NIL, r = e->pin_head; r != PR_NIL; prev = r, r = rec(shm, r)->next) {
        pr_pin_rec_t *pr = rec(shm, r);
        if (pr->client != client)
            continue;
        uint32_t n = pr->count, before = e->pin_count;
        unlink_rec(shm, e, prev, r);
        e->pin_count -= n;
        count_changed(shm, e, before);
        return n;
    }
    return 0;
}

uint32_t pr_pins_count(pr_shm_t *shm, uint32_t idx, uint16_t client)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    for (uint32_t r = e->pin_head; r != PR_NIL; r = rec(shm, r)->next)
        if (rec(shm, r)->client == client)
            return rec(shm, r)->count;
    return 0;
}

void pr_pins_rebuild(pr_shm_t *shm)
{
    pr_pins_t *p = &shm->pins;
    uint8_t *reached = calloc(p->hwm ? p->hwm : 1, 1);
    p->used = 0;
    p->pinned_bytes = 0;
    p->pinned_objects = 0;
    for (uint32_t idx = 0; idx < shm->table.hwm; idx++) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if (e->state == PR_STATE_FREE)
            continue;
        uint32_t sum = 0, prev = PR_NIL;
        for (uint32_t r = e->pin_head; r != PR_NIL;) {
            /* Cut the list at anything that is not a fresh, valid record. */
            if (r >= p->hwm || (reached && reached[r]) || rec(shm, r)->count == 0
                || rec(shm, r)->client >= PR_MAX_CLIENTS) {
                if (prev == PR_NIL)
                    e->pin_head = PR_NIL;
                else
                    rec(shm, prev)->next = PR_NIL;
                break;
            }
            if (reached)
                reached[r] = 1;
            sum += rec(shm, r)->count;
            p->used++;
            prev = r;
            r = rec(shm, r)->next;
        }
        e->pin_count = sum;
        if (sum > 0) {
            p->pinned_bytes += payload_bytes(e);
            p->pinned_objects++;
        }
    }
    p->free_head = PR_NIL;
    if (reached == NULL)
        return; /* leak the unreached records rather than risk reusing one */
    for (uint32_t r = p->hwm; r-- > 0;) {
        if (reached[r])
            continue;
        rec(shm, r)->next = p->free_head;
        p->free_head = r;
    }
    free(reached);
}
