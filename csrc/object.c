/* object.c - lifecycle transitions (see object.h). */
#include "object.h"

#include "layout.h"

static void free_memory(pr_shm_t *shm, pr_entry_t *e)
{
    if (!(e->flags & PR_FLAG_HAS_MEMORY))
        return;
    pr_alloc_give(&shm->alloc, pr_shm_data(shm), e->block_off);
    e->flags &= ~PR_FLAG_HAS_MEMORY;
}

static void set_state(pr_entry_t *e, pr_state_t st)
{
    __atomic_store_n(&e->state, (uint8_t)st, __ATOMIC_RELEASE);
}

static void touch(pr_shm_t *shm, pr_entry_t *e)
{
    e->tick = ++shm->counters.tick;
}

void pr_object_destroy(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    pr_lru_remove(shm, idx);
    free_memory(shm, e);
    pr_table_free(shm, idx);
}

void pr_object_unpinned(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->pin_count != 0)
        return;
    if (e->state == PR_STATE_DELETED) {
        pr_object_destroy(shm, idx);
    } else if (e->state == PR_STATE_SEALED && (e->flags & PR_FLAG_HAS_MEMORY)
               && !(e->flags & PR_FLAG_SPILLING)) {
        touch(shm, e);
        pr_lru_push(shm, idx);
    }
}

pr_status_t pr_object_seal(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->state != PR_STATE_CREATED)
        return e->state == PR_STATE_DELETED ? PR_ENOTFOUND : PR_ESEALED;
    e->owner = PR_NO_CLIENT;
    set_state(e, PR_STATE_SEALED);
    pr_object_unpinned(shm, idx);
    pr_lock_notify(&shm->lock);
    return PR_OK;
}

void pr_object_delete(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->state == PR_STATE_DELETED || e->state == PR_STATE_FREE)
        return;
    pr_table_unlink(shm, idx);
    pr_lru_remove(shm, idx);
    if (e->state == PR_STATE_SPILLED || e->state == PR_STATE_RESTORING) {
        shm->counters.num_spilled--;
        shm->counters.spilled_bytes_now -= e->data_size + e->meta_size;
        pr_spillmap_unref(shm, e->spill_file);
        e->spill_file = PR_NIL;
    }
    set_state(e, PR_STATE_DELETED);
    pr_object_unpinned(shm, idx);
    pr_lock_notify(&shm->lock);
}

void pr_object_spilled(pr_shm_t *shm, uint32_t idx, uint32_t file, uint64_t off, uint64_t checksum)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    pr_lru_remove(shm, idx);
    free_memory(shm, e);
    e->flags &= ~PR_FLAG_SPILLING;
    e->owner = PR_NO_CLIENT;
    e->spill_file = file;
    e->spill_off = off;
    e->checksum = checksum;
    pr_spillmap_ref(shm, file);
    set_state(e, PR_STATE_SPILLED);
    shm->counters.spilled_objects++;
    shm->counters.spilled_bytes += e->data_size + e->meta_size;
    shm->counters.num_spilled++;
    shm->counters.spilled_bytes_now += e->data_size + e->meta_size;
}

void pr_object_restoring(pr_shm_t *shm, uint32_t idx, uint16_t client, uint64_t block_off,
                         uint64_t block_size)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    e->block_off = block_off;
    e->block_size = block_size;
    e->flags |= PR_FLAG_HAS_MEMORY;
    e->owner = client;
    set_state(e, PR_STATE_RESTORING);
}

void pr_object_restored(pr_shm_t *shm, uint32_t idx, int ok)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->state != PR_STATE_RESTORING)
        return;
    e->owner = PR_NO_CLIENT;
    if (ok) {
        shm->counters.restored_objects++;
        shm->counters.restored_bytes += e->data_size + e->meta_size;
        shm->counters.num_spilled--;
        shm->counters.spilled_bytes_now -= e->data_size + e->meta_size;
        pr_spillmap_unref(shm, e->spill_file);
        e->spill_file = PR_NIL;
        set_state(e, PR_STATE_SEALED);
        pr_object_unpinned(shm, idx);
    } else {
        free_memory(shm, e);
        set_state(e, PR_STATE_SPILLED);
    }
    pr_lock_notify(&shm->lock);
}

void pr_object_evict(pr_shm_t *shm, uint32_t idx)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    shm->counters.evicted_objects++;
    shm->counters.evicted_bytes += e->data_size + e->meta_size;
    pr_table_unlink(shm, idx);
    set_state(e, PR_STATE_DELETED);
    pr_object_destroy(shm, idx);
}
