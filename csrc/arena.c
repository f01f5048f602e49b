/* arena.c - shared-memory segment (see arena.h). */
#include "arena.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void reset(pr_arena_t *a)
{
    a->fd = -1;
    a->owner = 0;
    a->is_memfd = 0;
    a->base = NULL;
    a->size = 0;
    a->name[0] = 0;
}

static pr_status_t map(pr_arena_t *a)
{
    void *p = mmap(NULL, a->size, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
    if (p == MAP_FAILED)
        return PR_ESYS;
    a->base = p;
    return PR_OK;
}

pr_status_t pr_arena_create(pr_arena_t *a, uint64_t size)
{
    reset(a);
    a->size = size;
    a->owner = 1;
    a->fd = memfd_create("plasma", MFD_CLOEXEC);
    if (a->fd >= 0) {
        a->is_memfd = 1;
        snprintf(a->name, sizeof a->name, "/proc/%d/fd/%d", (int)getpid(), a->fd);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(a->name, sizeof a->name, "/dev/shm/plasma-%d-%lx", (int)getpid(),
                 (unsigned long)(ts.tv_nsec ^ ts.tv_sec));
        a->fd = open(a->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (a->fd < 0)
            return PR_ESYS;
    }
    if (ftruncate(a->fd, (off_t)size) != 0 || map(a) != PR_OK) {
        int err = errno;
        pr_arena_close(a);
        errno = err;
        return PR_ESYS;
    }
    return PR_OK;
}

pr_status_t pr_arena_open(pr_arena_t *a, const char *name)
{
    reset(a);
    if (strlen(name) >= sizeof a->name)
        return PR_EINVAL;
    strcpy(a->name, name);
    a->fd = open(name, O_RDWR | O_CLOEXEC);
    if (a->fd < 0)
        return (errno == ENOENT || errno == ENOTDIR) ? PR_ENOSTORE : PR_ESYS;
    struct stat st;
    if (fstat(a->fd, &st) != 0) {
        pr_arena_close(a);
        return PR_ESYS;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 4096) {
        pr_arena_close(a);
        return PR_EBADSTORE;
    }
    a->size = (uint64_t)st.st_size;
    if (map(a) != PR_OK) {
        int err = errno;
        pr_arena_close(a);
        errno = err;
        return PR_ESYS;
    }
    return PR_OK;
}

void pr_arena_unlink(pr_arena_t *a)
{
    if (a->owner && !a->is_memfd && a->name[0])
        unlink(a->name);
    a->owner = 0;
}

void pr_arena_close(pr_arena_t *a)
{
    pr_arena_unlink(a);
    if (a->base != NULL)
        munmap(a->base, a->size);
    if (a->fd >= 0)
        close(a->fd);
    reset(a);
}
