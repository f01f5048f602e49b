/* spillmap.c - spill file bookkeeping (see spillmap.h). */
#include "spillmap.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"

pr_status_t pr_spillmap_init(pr_shm_t *shm, const char *dir, const char *prefix)
{
    pr_spillmap_t *m = &shm->spill;
    memset(m, 0, sizeof *m);
    if (dir == NULL)
        dir = "";
    if (strlen(dir) >= PR_SPILL_DIR_MAX || strlen(prefix) >= PR_SPILL_PREFIX_MAX)
        return PR_EINVAL;
    strcpy(m->dir, dir);
    strcpy(m->prefix, prefix);
    return PR_OK;
}

pr_status_t pr_spillmap_open(pr_shm_t *shm, uint16_t writer, uint32_t *slot)
{
    pr_spillmap_t *m = &shm->spill;
    for (uint32_t i = 0; i < PR_MAX_SPILL_FILES; i++) {
        pr_spill_file_t *f = &m->files[i];
        if (f->state != PR_SPILLFILE_FREE)
            continue;
        f->gen = ++m->next_gen;
        f->state = PR_SPILLFILE_WRITING;
        f->writer = writer;
        f->live = 0;
        m->files_open++;
        *slot = i;
        return PR_OK;
    }
    return PR_ENOMEM;
}

pr_status_t pr_spillmap_path(pr_shm_t *shm, uint32_t slot, char *buf, size_t len)
{
    pr_spillmap_t *m = &shm->spill;
    if (slot >= PR_MAX_SPILL_FILES || m->files[slot].state == PR_SPILLFILE_FREE)
        return PR_EINVAL;
    int n = snprintf(buf, len, "%s/%s-%u.spill", m->dir, m->prefix, m->files[slot].gen);
    return (n < 0 || (size_t)n >= len) ? PR_EINVAL : PR_OK;
}

static void remove_file(pr_shm_t *shm, uint32_t slot)
{
    char path[PR_SPILL_DIR_MAX + PR_SPILL_PREFIX_MAX + 32];
    if (pr_spillmap_path(shm, slot, path, sizeof path) == PR_OK)
        unlink(path);
    shm->spill.files[slot].state = PR_SPILLFILE_FREE;
    shm->spill.files[slot].live = 0;
    shm->spill.files_open--;
}

void pr_spillmap_ref(pr_shm_t *shm, uint32_t slot)
{
    if (slot < PR_MAX_SPILL_FILES)
        shm->spill.files[slot].live++;
}

void pr_spillmap_unref(pr_shm_t *shm, uint32_t slot)
{
    if (slot >= PR_MAX_SPILL_FILES)
        return;
    pr_spill_file_t *f = &shm->spill.files[slot];
    if (f->live > 0)
        f->live--;
    if (f->live == 0 && f->state == PR_SPILLFILE_ACTIVE)
        remove_file(shm, slot);
}

void pr_spillmap_finish(pr_shm_t *shm, uint32_t slot)
{
    if (slot >= PR_MAX_SPILL_FILES)
        return;
    pr_spill_file_t *f = &shm->spill.files[slot];
    if (f->state != PR_SPILLFILE_WRITING)
        return;
    f->state = PR_SPILLFILE_ACTIVE;
    if (f->live == 0)
        remove_file(shm, slot);
}

void pr_spillmap_reap(pr_shm_t *shm, uint16_t client)
{
    for (uint32_t i = 0; i < PR_MAX_SPILL_FILES; i++) {
        pr_spill_file_t *f = &shm->spill.files[i];
        if (f->state == PR_SPILLFILE_WRITING && f->writer == client)
            pr_spillmap_finish(shm, i);
    }
}

void pr_spillmap_recount(pr_shm_t *shm)
{
    pr_spillmap_t *m = &shm->spill;
    for (uint32_t i = 0; i < PR_MAX_SPILL_FILES; i++)
        m->files[i].live = 0;
    for (uint32_t idx = 0; idx < shm->table.hwm; idx++) {
        pr_entry_t *e = pr_shm_entry(shm, idx);
        if ((e->state == PR_STATE_SPILLED || e->state == PR_STATE_RESTORING)
            && e->spill_file < PR_MAX_SPILL_FILES)
            m->files[e->spill_file].live++;
    }
    for (uint32_t i = 0; i < PR_MAX_SPILL_FILES; i++)
        if (m->files[i].state == PR_SPILLFILE_ACTIVE && m->files[i].live == 0)
            remove_file(shm, i);
}

void pr_spillmap_remove_all(pr_shm_t *shm)
{
    for (uint32_t i = 0; i < PR_MAX_SPILL_FILES; i++)
        if (shm->spill.files[i].state != PR_SPILLFILE_FREE)
            remove_file(shm, i);
}
