/* reclaim.h - getting memory and consistency back: evict cached copies,
 * release what a (dead) client held, and rebuild every derived structure
 * after a process died holding the lock. All run under the segment lock.
 */
#ifndef PR_RECLAIM_H
#define PR_RECLAIM_H

#include <stdint.h>

struct pr_shm;

/* Evict the least recently used unpinned secondary object: 1, or 0 if none. */
int pr_reclaim_evict_one(struct pr_shm *shm);

/* Release everything `client` holds: pins, unsealed creations, restores,
 * spills in progress, spill files being written. Frees the slot. */
void pr_reclaim_client(struct pr_shm *shm, uint16_t client);

/* Reclaim every client slot whose process is gone; returns how many. */
uint32_t pr_reclaim_dead(struct pr_shm *shm);

/* Rebuild index, free lists, pin counts, allocator, LRU lists and counters
 * from the entries, then reclaim dead clients. For use after EOWNERDEAD. */
void pr_reclaim_recover(struct pr_shm *shm);

#endif
