/* store.c - client operations on the store (see store.h). */
#include "store.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"
#include "object.h"
#include "reclaim.h"

#define MIN_OBJECTS 65536u
#define MAX_OBJECTS (1u << 22)
#define WAIT_SLICE_NS 1000000000LL

static inline uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* Take the segment lock; repair the segment if its last holder died. */
static pr_status_t lock(pr_shm_t *shm)
{
    pr_status_t st = pr_lock_acquire(&shm->lock);
    if (st == PR_EBUSY) {
        pr_reclaim_recover(shm);
        st = PR_OK;
    }
    return st;
}

static inline void unlock(pr_shm_t *shm)
{
    pr_lock_release(&shm->lock);
}

#define LOCK(shm)                          \
    do {                                   \
        pr_status_t lock_st_ = lock(shm);  \
        if (lock_st_ != PR_OK)             \
            return lock_st_;               \
    } while (0)

static void fill_info(pr_shm_t *shm, uint32_t idx, pr_object_info_t *out)
{
    pr_entry_t *e = pr_shm_entry(shm, idx);
    memcpy(out->oid, e->oid, PR_OID_SIZE);
    out->state = e->state;
    out->flags = e->flags;
    out->idx = idx;
    out->meta_size = e->meta_size;
    out->pins = e->pin_count;
    out->spill_file = e->spill_file;
    out->data = (e->flags & PR_FLAG_HAS_MEMORY) ? pr_shm_payload(shm, e) : NULL;
    out->data_size = e->data_size;
    out->spill_off = e->spill_off;
    out->checksum = e->checksum;
}

/* A block for `payload` bytes, evicting cached copies and reaping dead
 * clients as needed. */
static pr_status_t take_block(pr_shm_t *shm, uint64_t payload, uint64_t *off, uint64_t *size)
{
    int reaped = 0;
    for (;;) {
        if (pr_alloc_take(&shm->alloc, pr_shm_data(shm), payload, off, size) == PR_OK)
            return PR_OK;
        if (pr_reclaim_evict_one(shm))
            continue;
        if (!reaped) {
            reaped = 1;
            if (pr_reclaim_dead(shm) > 0)
                continue;
        }
        return PR_ENOMEM;
    }
}

static pr_status_t insert_entry(pr_shm_t *shm, const uint8_t *oid, uint32_t *idx)
{
    int reaped = 0;
    for (;;) {
        pr_status_t st = pr_table_insert(shm, oid, idx);
        if (st != PR_ETABLEFULL)
            return st;
        if (pr_reclaim_evict_one(shm))
            continue;
        if (!reaped) {
            reaped = 1;
            if (pr_reclaim_dead(shm) > 0)
                continue;
        }
        return st;
    }
}

/* ------------------------------------------------------------------ */
/* Segment lifetime                                                    */

static pr_status_t attach(pr_conn_t *c)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    pr_status_t st = pr_clients_attach(shm, c->pid, &c->client);
    if (st == PR_ECLIENTS && pr_reclaim_dead(shm) > 0)
        st = pr_clients_attach(shm, c->pid, &c->client);
    unlock(shm);
    return st;
}

pr_status_t pr_store_make(pr_conn_t *c, const pr_store_params_t *p)
{
    memset(c, 0, sizeof *c);
    c->arena.fd = -1;
    c->pid = getpid();
    if (p->capacity == 0 || p->capacity > (1ull << 46))
        return PR_EINVAL;
    uint64_t max_obj = p->max_objects;
    if (max_obj == 0) {
        max_obj = p->capacity / 8192;
        max_obj = max_obj < MIN_OBJECTS ? MIN_OBJECTS : max_obj > MAX_OBJECTS ? MAX_OBJECTS : max_obj;
    }
    if (max_obj > MAX_OBJECTS)
        return PR_EINVAL;
    uint32_t max_recs = (uint32_t)(max_obj * 2);
    uint64_t index_off = align_up(sizeof(pr_shm_t), 4096);
    uint64_t entries_off = align_up(index_off + pr_table_index_bytes((uint32_t)max_obj), 64);
    uint64_t recs_off = align_up(entries_off + pr_table_entries_bytes((uint32_t)max_obj), 64);
    uint64_t data_off = align_up(recs_off + pr_pins_bytes(max_recs), 1u << 21);
    uint64_t data_size = align_up(p->capacity, PR_ALIGN) + 2 * PR_BLOCK_HEADER;
    uint64_t total = data_off + data_size;

    pr_status_t st = pr_arena_create(&c->arena, total);
    if (st != PR_OK)
        return st;
    pr_shm_t *shm = (pr_shm_t *)c->arena.base;
    c->shm = shm;
    shm->version = PR_VERSION;
    shm->header_size = sizeof(pr_shm_t);
    shm->total_size = total;
    shm->capacity = p->capacity;
    shm->creator_pid = c->pid;
    st = pr_lock_init(&shm->lock);
    if (st == PR_OK)
        st = pr_spillmap_init(shm, p->spill_dir, p->spill_prefix ? p->spill_prefix : "plasma");
    if (st != PR_OK) {
        pr_arena_close(&c->arena);
        c->shm = NULL;
        return st;
    }
    pr_alloc_init(&shm->alloc, c->arena.base + data_off, data_off, data_size);
    pr_table_init(shm, index_off, entries_off, (uint32_t)max_obj);
    pr_lru_init(shm);
    pr_pins_init(shm, recs_off, max_recs);
    pr_clients_init(shm);
    __atomic_store_n(&shm->magic, PR_MAGIC, __ATOMIC_RELEASE);
    st = attach(c);
    if (st != PR_OK) {
        pr_arena_close(&c->arena);
        c->shm = NULL;
    }
    return st;
}

pr_status_t pr_store_connect(pr_conn_t *c, const char *name)
{
    memset(c, 0, sizeof *c);
    c->arena.fd = -1;
    c->pid = getpid();
    pr_status_t st = pr_arena_open(&c->arena, name);
    if (st != PR_OK)
        return st;
    pr_shm_t *shm = (pr_shm_t *)c->arena.base;
    if (c->arena.size < sizeof(pr_shm_t) || __atomic_load_n(&shm->magic, __ATOMIC_ACQUIRE) != PR_MAGIC
        || shm->version != PR_VERSION || shm->header_size != sizeof(pr_shm_t)
        || shm->total_size != c->arena.size) {
        pr_arena_close(&c->arena);
        return PR_EBADSTORE;
    }
    if (shm->closed) {
        pr_arena_close(&c->arena);
        return PR_ENOSTORE;
    }
    c->shm = shm;
    st = attach(c);
    if (st != PR_OK) {
        pr_arena_close(&c->arena);
        c->shm = NULL;
    }
    return st;
}

void pr_store_disconnect(pr_conn_t *c)
{
    pr_shm_t *shm = c->shm;
    if (shm == NULL)
        return;
    if (lock(shm) == PR_OK) {
        pr_reclaim_client(shm, c->client);
        unlock(shm);
    }
    c->shm = NULL;
    pr_arena_close(&c->arena);
}

void pr_store_destroy(pr_conn_t *c)
{
    pr_shm_t *shm = c->shm;
    if (shm == NULL)
        return;
    if (lock(shm) == PR_OK) {
        shm->closed = 1;
        pr_spillmap_remove_all(shm);
        pr_lock_notify(&shm->lock);
        unlock(shm);
    }
    pr_arena_unlink(&c->arena);
    /* The mapping stays valid without the descriptor; closing it now means
     * the segment cannot be opened again by name. */
    if (c->arena.fd >= 0) {
        close(c->arena.fd);
        c->arena.fd = -1;
    }
}

/* ------------------------------------------------------------------ */
/* Objects                                                             */

pr_status_t pr_store_create(pr_conn_t *c, const uint8_t *oid, uint64_t data_size,
                            uint32_t meta_size, int secondary, pr_object_info_t *out,
                            uint64_t *need)
{
    pr_shm_t *shm = c->shm;
    uint64_t payload = data_size + meta_size;
    *need = pr_alloc_block_size(payload);
    if (payload < data_size || data_size > shm->alloc.data_size
        || *need > shm->alloc.data_size - PR_BLOCK_HEADER)
        return PR_ETOOBIG;
    LOCK(shm);
    if (shm->closed) {
        unlock(shm);
        return PR_ENOSTORE;
    }
    uint32_t idx;
    pr_status_t st = insert_entry(shm, oid, &idx);
    if (st != PR_OK) {
        unlock(shm);
        return st;
    }
    uint64_t boff, bsize;
    st = take_block(shm, payload, &boff, &bsize);
    if (st != PR_OK) {
        pr_table_unlink(shm, idx);
        pr_table_free(shm, idx);
        unlock(shm);
        return st;
    }
    pr_entry_t *e = pr_shm_entry(shm, idx);
    e->flags = PR_FLAG_HAS_MEMORY | (secondary ? PR_FLAG_SECONDARY : 0);
    e->owner = c->client;
    e->block_off = boff;
    e->block_size = bsize;
    e->data_size = data_size;
    e->meta_size = meta_size;
    e->tick = ++shm->counters.tick;
    st = pr_pins_add(shm, idx, c->client);
    if (st != PR_OK) {
        pr_table_unlink(shm, idx);
        pr_object_destroy(shm, idx);
        unlock(shm);
        return st;
    }
    __atomic_store_n(&e->state, PR_STATE_CREATED, __ATOMIC_RELEASE);
    fill_info(shm, idx, out);
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_seal(pr_conn_t *c, const uint8_t *oid)
{
    pr_shm_t *shm = c->shm;
    uint32_t idx;
    LOCK(shm);
    pr_status_t st = pr_table_lookup(shm, oid, &idx);
    if (st == PR_OK)
        st = pr_object_seal(shm, idx);
    unlock(shm);
    return st;
}

pr_status_t pr_store_seal_release(pr_conn_t *c, uint32_t idx)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    if (idx >= shm->table.hwm) {
        unlock(shm);
        return PR_EINVAL;
    }
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->state == PR_STATE_CREATED)
        pr_object_seal(shm, idx);
    if (pr_pins_drop(shm, idx, c->client) == PR_OK)
        pr_object_unpinned(shm, idx);
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_abort(pr_conn_t *c, const uint8_t *oid)
{
    pr_shm_t *shm = c->shm;
    uint32_t idx;
    LOCK(shm);
    pr_status_t st = pr_table_lookup(shm, oid, &idx);
    if (st == PR_OK) {
        if (pr_shm_entry(shm, idx)->state == PR_STATE_CREATED)
            pr_object_delete(shm, idx);
        else
            st = PR_ESEALED;
    }
    unlock(shm);
    return st;
}

pr_status_t pr_store_get(pr_conn_t *c, const uint8_t *oid, int64_t timeout_ns, int wait_create,
                         pr_object_info_t *out)
{
    pr_shm_t *shm = c->shm;
    int64_t deadline = timeout_ns > 0 ? pr_lock_now_ns() + timeout_ns : 0;
    for (;;) {
        LOCK(shm);
        if (shm->closed) {
            unlock(shm);
            return PR_ENOSTORE;
        }
        uint32_t idx;
        pr_status_t st = pr_table_lookup(shm, oid, &idx);
        if (st == PR_OK) {
            pr_entry_t *e = pr_shm_entry(shm, idx);
            if (e->state == PR_STATE_SEALED) {
                st = pr_pins_add(shm, idx, c->client);
                if (st == PR_OK) {
                    pr_lru_remove(shm, idx);
                    fill_info(shm, idx, out);
                }
                unlock(shm);
                return st;
            }
            if (e->state == PR_STATE_SPILLED) {
                fill_info(shm, idx, out);
                unlock(shm);
                return PR_ESPILLED;
            }
        } else if (!wait_create) {
            unlock(shm);
            return PR_ENOTFOUND;
        }
        uint32_t seen = pr_lock_seq(&shm->lock);
        unlock(shm);
        if (timeout_ns == 0)
            return PR_ETIMEDOUT;
        int64_t slice = WAIT_SLICE_NS;
        if (timeout_ns > 0) {
            int64_t left = deadline - pr_lock_now_ns();
            if (left <= 0)
                return PR_ETIMEDOUT;
            if (left < slice)
                slice = left;
        }
        if (pr_lock_wait(&shm->lock, seen, slice) == PR_EINTR)
            return PR_EINTR;
    }
}

pr_status_t pr_store_release(pr_conn_t *c, uint32_t idx)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    pr_status_t st = PR_EINVAL;
    if (idx < shm->table.hwm) {
        st = pr_pins_drop(shm, idx, c->client);
        if (st == PR_OK)
            pr_object_unpinned(shm, idx);
    }
    unlock(shm);
    return st;
}

pr_status_t pr_store_delete(pr_conn_t *c, const uint8_t *oid)
{
    pr_shm_t *shm = c->shm;
    uint32_t idx;
    LOCK(shm);
    pr_status_t st = pr_table_lookup(shm, oid, &idx);
    if (st == PR_OK)
        pr_object_delete(shm, idx);
    unlock(shm);
    return st;
}

pr_status_t pr_store_contains(pr_conn_t *c, const uint8_t *oid, int *present)
{
    pr_shm_t *shm = c->shm;
    uint32_t idx;
    LOCK(shm);
    *present = 0;
    if (pr_table_lookup(shm, oid, &idx) == PR_OK) {
        uint8_t s = pr_shm_entry(shm, idx)->state;
        *present = s == PR_STATE_SEALED || s == PR_STATE_SPILLED || s == PR_STATE_RESTORING;
    }
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_list(pr_conn_t *c, pr_object_info_t *out, uint32_t max, uint32_t *n,
                          uint32_t *total)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    *n = 0;
    *total = 0;
    for (uint32_t idx = 0; idx < shm->table.hwm; idx++) {
        uint8_t s = pr_shm_entry(shm, idx)->state;
        if (s == PR_STATE_FREE || s == PR_STATE_DELETED)
            continue;
        if (*n < max)
            fill_info(shm, idx, &out[(*n)++]);
        (*total)++;
    }
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_stats(pr_conn_t *c, pr_stats_t *s)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    memset(s, 0, sizeof *s);
    s->capacity = shm->capacity;
    s->used = shm->alloc.used;
    s->num_objects = shm->table.live;
    s->num_in_memory = shm->alloc.used_blocks;
    s->pinned_bytes = shm->pins.pinned_bytes;
    s->pinned_objects = shm->pins.pinned_objects;
    s->evictable_bytes = shm->lru.bytes[PR_LRU_SECONDARY];
    s->spillable_bytes = shm->lru.bytes[PR_LRU_PRIMARY];
    s->largest_free = pr_alloc_largest_free(&shm->alloc, pr_shm_data(shm));
    s->evicted_objects = shm->counters.evicted_objects;
    s->evicted_bytes = shm->counters.evicted_bytes;
    s->spilled_objects = shm->counters.spilled_objects;
    s->spilled_bytes = shm->counters.spilled_bytes;
    s->restored_objects = shm->counters.restored_objects;
    s->restored_bytes = shm->counters.restored_bytes;
    s->spilled_objects_now = shm->counters.num_spilled;
    s->spilled_bytes_now = shm->counters.spilled_bytes_now;
    s->spill_files = shm->spill.files_open;
    s->spilling_bytes = shm->counters.spilling_bytes;
    s->num_clients = shm->clients.count;
    s->max_objects = shm->table.max_entries;
    s->reaped_clients = shm->counters.reaped_clients;
    s->recoveries = shm->counters.recoveries;
    unlock(shm);
    return PR_OK;
}

const char *pr_store_spill_dir(const pr_conn_t *c)
{
    return c->shm ? c->shm->spill.dir : "";
}

pr_status_t pr_store_reap(pr_conn_t *c, uint32_t *reaped)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    *reaped = pr_reclaim_dead(shm);
    unlock(shm);
    return PR_OK;
}

/* ------------------------------------------------------------------ */
/* Spill mechanism                                                     */

pr_status_t pr_store_spill_begin(pr_conn_t *c, uint64_t min_bytes, uint32_t max_objects,
                                 pr_object_info_t *out, uint32_t *n, uint32_t *file_slot)
{
    pr_shm_t *shm = c->shm;
    *n = 0;
    *file_slot = PR_NIL;
    LOCK(shm);
    if (shm->spill.dir[0] == 0) {
        unlock(shm);
        return PR_EINVAL;
    }
    pr_status_t st = pr_spillmap_open(shm, c->client, file_slot);
    if (st != PR_OK) {
        unlock(shm);
        return st;
    }
    uint64_t total = 0;
    uint32_t idx = pr_lru_oldest(shm, PR_LRU_PRIMARY);
    while (idx != PR_NIL && *n < max_objects && total < min_bytes) {
        uint32_t next = pr_lru_newer(shm, idx);
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if (pr_pins_add(shm, idx, c->client) != PR_OK)
            break;
        pr_lru_remove(shm, idx);
        e->flags |= PR_FLAG_SPILLING;
        e->owner = c->client;
        shm->counters.spilling_bytes += e->data_size + e->meta_size;
        fill_info(shm, idx, &out[(*n)++]);
        total += e->data_size + e->meta_size;
        idx = next;
    }
    if (*n == 0) {
        pr_spillmap_finish(shm, *file_slot);
        *file_slot = PR_NIL;
    }
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_spill_end(pr_conn_t *c, uint32_t file_slot, uint32_t n, const uint32_t *idxs,
                               const uint64_t *offs, const uint64_t *checksums, int ok)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx = idxs[i];
        if (idx >= shm->table.hwm)
            continue;
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if (!(e->flags & PR_FLAG_SPILLING) || e->owner != c->client)
            continue; /* no longer ours (reaped) */
        shm->counters.spilling_bytes -= e->data_size + e->meta_size;
        if (ok && file_slot != PR_NIL && e->state == PR_STATE_SEALED && e->pin_count == 1) {
            pr_pins_drop(shm, idx, c->client);
            pr_object_spilled(shm, idx, file_slot, offs[i], checksums[i]);
        } else {
            e->flags &= ~PR_FLAG_SPILLING;
            e->owner = PR_NO_CLIENT;
            if (pr_pins_drop(shm, idx, c->client) == PR_OK)
                pr_object_unpinned(shm, idx);
        }
    }
    if (file_slot != PR_NIL)
        pr_spillmap_finish(shm, file_slot);
    pr_lock_notify(&shm->lock);
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_wait_spills(pr_conn_t *c, int64_t timeout_ns, int *waited)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    *waited = shm->counters.spilling_bytes > 0;
    uint32_t seen = pr_lock_seq(&shm->lock);
    unlock(shm);
    if (*waited)
        return pr_lock_wait(&shm->lock, seen, timeout_ns);
    return PR_OK;
}

pr_status_t pr_store_spill_path(pr_conn_t *c, uint32_t file_slot, char *buf, size_t len)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    pr_status_t st = pr_spillmap_path(shm, file_slot, buf, len);
    unlock(shm);
    return st;
}

pr_status_t pr_store_restore_begin(pr_conn_t *c, const uint8_t *oid, pr_object_info_t *out,
                                   uint64_t *need)
{
    pr_shm_t *shm = c->shm;
    uint32_t idx;
    *need = 0;
    LOCK(shm);
    pr_status_t st = pr_table_lookup(shm, oid, &idx);
    if (st != PR_OK) {
        unlock(shm);
        return st;
    }
    pr_entry_t *e = pr_shm_entry(shm, idx);
    if (e->state != PR_STATE_SPILLED) {
        unlock(shm);
        return e->state == PR_STATE_SEALED ? PR_ESEALED : PR_ENOTSEALED;
    }
    uint64_t payload = e->data_size + e->meta_size, boff, bsize;
    st = take_block(shm, payload, &boff, &bsize);
    if (st != PR_OK) {
        *need = pr_alloc_block_size(payload);
        unlock(shm);
        return st;
    }
    pr_object_restoring(shm, idx, c->client, boff, bsize);
    st = pr_pins_add(shm, idx, c->client);
    if (st != PR_OK) {
        pr_object_restored(shm, idx, 0);
        unlock(shm);
        return st;
    }
    fill_info(shm, idx, out);
    unlock(shm);
    return PR_OK;
}

pr_status_t pr_store_restore_end(pr_conn_t *c, uint32_t idx, int ok)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    if (idx >= shm->table.hwm) {
        unlock(shm);
        return PR_EINVAL;
    }
    pr_entry_t *e = pr_shm_entry(shm, idx);
    pr_status_t st = PR_OK;
    if (e->state == PR_STATE_RESTORING && e->owner == c->client) {
        if (!ok)
            pr_pins_drop(shm, idx, c->client);
        pr_object_restored(shm, idx, ok);
    } else {
        /* deleted (or reclaimed) while we restored it */
        if (pr_pins_drop(shm, idx, c->client) == PR_OK)
            pr_object_unpinned(shm, idx);
        st = PR_ENOTFOUND;
    }
    unlock(shm);
    return st;
}

pr_status_t pr_store_debug_hold_lock(pr_conn_t *c, int64_t ns, int notify_fd)
{
    pr_shm_t *shm = c->shm;
    LOCK(shm);
    if (notify_fd >= 0) {
        ssize_t w = write(notify_fd, "L", 1);
        (void)w;
    }
    struct timespec ts = {ns / 1000000000, ns % 1000000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    unlock(shm);
    return PR_OK;
}
