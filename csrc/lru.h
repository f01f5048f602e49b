/* lru.h - least-recently-used order of evictable objects.
 *
 * Two intrusive lists over entries, one for primary and one for secondary
 * objects. An entry is linked while it is SEALED, in memory and unpinned,
 * so the head of a list is always the next victim.
 */
#ifndef PR_LRU_H
#define PR_LRU_H

#include <stdint.h>

struct pr_shm;

enum { PR_LRU_PRIMARY = 0, PR_LRU_SECONDARY = 1 };

typedef struct pr_lru {
    uint32_t head[2]; /* least recently used */
    uint32_t tail[2]; /* most recently used */
    uint64_t count[2];
    uint64_t bytes[2];
} pr_lru_t;

void pr_lru_init(struct pr_shm *shm);

/* Link as most recently used (no-op if already linked). */
void pr_lru_push(struct pr_shm *shm, uint32_t idx);

/* Unlink (no-op if not linked). */
void pr_lru_remove(struct pr_shm *shm, uint32_t idx);

/* Oldest entry of a list, or PR_NIL; then the next newer one. */
uint32_t pr_lru_oldest(struct pr_shm *shm, int list);
uint32_t pr_lru_newer(struct pr_shm *shm, uint32_t idx);

/* Relink every SEALED, unpinned, in-memory entry in order of last use. */
void pr_lru_rebuild(struct pr_shm *shm);

#endif
