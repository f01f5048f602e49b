/* pins.h - who pins what.
 *
 * Each entry keeps a short list of pin records, one per client that pins it
 * (client slot + count). The entry's pin_count is their sum. Records come
 * from a fixed pool in the segment. Knowing each client's pins lets a dead
 * client's pins be reclaimed.
 */
#ifndef PR_PINS_H
#define PR_PINS_H

#include <stdint.h>

#include "status.h"

struct pr_shm;

typedef struct pr_pin_rec {
    uint32_t next;
    uint32_t count;
    uint16_t client;
    uint16_t pad[3];
} pr_pin_rec_t;

typedef struct pr_pins {
    uint64_t recs_off;
    uint32_t max_recs;
    uint32_t hwm;
    uint32_t free_head;
    uint32_t used;
    uint64_t pinned_bytes;   /* payload bytes of entries with pin_count > 0 */
    uint64_t pinned_objects;
} pr_pins_t;

uint64_t pr_pins_bytes(uint32_t max_recs);
void pr_pins_init(struct pr_shm *shm, uint64_t recs_off, uint32_t max_recs);

/* One more pin on entry `idx` by `client`: PR_OK or PR_ENOPINS. */
pr_status_t pr_pins_add(struct pr_shm *shm, uint32_t idx, uint16_t client);

/* One pin less: PR_OK, or PR_ENOTFOUND if the client holds none. */
pr_status_t pr_pins_drop(struct pr_shm *shm, uint32_t idx, uint16_t client);

/* Drop every pin `client` holds on entry `idx`; returns how many. */
uint32_t pr_pins_drop_client(struct pr_shm *shm, uint32_t idx, uint16_t client);

/* Pins `client` holds on entry `idx`. */
uint32_t pr_pins_count(struct pr_shm *shm, uint32_t idx, uint16_t client);

/* Recount every entry's pin_count from its records and rebuild the pool's
 * free list from the records no entry reaches. */
void pr_pins_rebuild(struct pr_shm *shm);

#endif
