/* arena.h - the shared-memory segment: make it, map it, name it.
 *
 * The segment is a memfd named "/proc/<creator pid>/fd/<fd>" (nothing is left
 * behind if the creator is killed), or, where memfd is unavailable, a file in
 * /dev/shm that the creator unlinks when it closes.
 */
#ifndef PR_ARENA_H
#define PR_ARENA_H

#include <stdint.h>

#include "status.h"

#define PR_ARENA_NAME_MAX 256

typedef struct pr_arena {
    int fd;
    int owner;      /* this process made the segment */
    int is_memfd;
    uint8_t *base;
    uint64_t size;
    char name[PR_ARENA_NAME_MAX];
} pr_arena_t;

/* Make and map a zero-filled segment of `size` bytes. */
pr_status_t pr_arena_create(pr_arena_t *a, uint64_t size);

/* Map an existing segment by name: PR_ENOSTORE if there is none. */
pr_status_t pr_arena_open(pr_arena_t *a, const char *name);

/* Unmap and close; the creator also removes the name. */
void pr_arena_close(pr_arena_t *a);

/* Drop the name now (creator only): later opens fail, mappings stay valid. */
void pr_arena_unlink(pr_arena_t *a);

#endif
