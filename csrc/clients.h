/* clients.h - one slot per connected process: its pid and start time, so
 * that a dead client (and a recycled pid) can be told apart from a live one.
 */
#ifndef PR_CLIENTS_H
#define PR_CLIENTS_H

#include <stdint.h>

#include "status.h"

struct pr_shm;

#define PR_MAX_CLIENTS 512
#define PR_NO_CLIENT 0xFFFFu

typedef struct pr_client_slot {
    int32_t pid;
    uint32_t in_use;
    uint64_t start_time; /* /proc/<pid>/stat field 22 */
} pr_client_slot_t;

typedef struct pr_clients {
    uint32_t count;
    uint32_t pad;
    pr_client_slot_t slots[PR_MAX_CLIENTS];
} pr_clients_t;

void pr_clients_init(struct pr_shm *shm);

/* Take a free slot for `pid`: PR_OK or PR_ECLIENTS. */
pr_status_t pr_clients_attach(struct pr_shm *shm, int32_t pid, uint16_t *slot);

void pr_clients_detach(struct pr_shm *shm, uint16_t slot);

/* 1 if the slot is in use and its process still runs, else 0. */
int pr_clients_alive(struct pr_shm *shm, uint16_t slot);

/* Start time of a process (clock ticks since boot), 0 if unknown. */
uint64_t pr_clients_start_time(int32_t pid);

#endif
