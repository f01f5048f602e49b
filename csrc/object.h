/* object.h - an object's lifecycle, one transition function per edge:
 *
 *   FREE -> CREATED -> SEALED -> SPILLED -> RESTORING -> SEALED
 *                 \        \         \
 *                  +--------+---------+--> DELETED (until the last pin) -> FREE
 *
 * All of these run under the segment lock and keep the table, allocator,
 * LRU lists, pins and counters in step.
 */
#ifndef PR_OBJECT_H
#define PR_OBJECT_H

#include <stdint.h>

#include "status.h"

struct pr_shm;

/* Give back the entry's block (if any) and the entry itself. */
void pr_object_destroy(struct pr_shm *shm, uint32_t idx);

/* Call after a pin count may have dropped to zero: a DELETED object goes
 * away, a SEALED one becomes evictable. */
void pr_object_unpinned(struct pr_shm *shm, uint32_t idx);

/* CREATED -> SEALED. PR_ESEALED if already sealed. */
pr_status_t pr_object_seal(struct pr_shm *shm, uint32_t idx);

/* Make the object invisible now; free it now or at its last pin. */
void pr_object_delete(struct pr_shm *shm, uint32_t idx);

/* SEALED (unpinned) -> SPILLED at (file, off). */
void pr_object_spilled(struct pr_shm *shm, uint32_t idx, uint32_t file, uint64_t off,
                       uint64_t checksum);

/* SPILLED -> RESTORING into the given block, for `client`. */
void pr_object_restoring(struct pr_shm *shm, uint32_t idx, uint16_t client,
                         uint64_t block_off, uint64_t block_size);

/* RESTORING -> SEALED (ok) or back to SPILLED (failed / writer died). */
void pr_object_restored(struct pr_shm *shm, uint32_t idx, int ok);

/* Drop an unpinned secondary SEALED object to make room. */
void pr_object_evict(struct pr_shm *shm, uint32_t idx);

#endif
