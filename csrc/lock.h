/* lock.h - the segment's process-shared robust mutex, and the seal
 * notification word that waiters sleep on (a futex, no spinning).
 */
#ifndef PR_LOCK_H
#define PR_LOCK_H

#include <pthread.h>
#include <stdint.h>

#include "status.h"

typedef struct pr_lock {
    pthread_mutex_t mutex;
    uint32_t seq;       /* bumped on every seal / delete; the futex word */
    uint32_t waiters;   /* threads asleep on seq (a hint: skip the wake syscall) */
    int32_t holder_pid; /* for diagnostics */
    uint32_t pad;
} pr_lock_t;

pr_status_t pr_lock_init(pr_lock_t *l);

/* Lock. PR_OK, or PR_EBUSY when the previous holder died with the lock held:
 * the lock is then held and consistent again, but the data it guards must be
 * repaired before use. PR_ESYS if the mutex is unusable. */
pr_status_t pr_lock_acquire(pr_lock_t *l);

void pr_lock_release(pr_lock_t *l);

/* Current value of the notification word (read under the lock). */
uint32_t pr_lock_seq(pr_lock_t *l);

/* Bump the word and wake every waiter (call under the lock). */
void pr_lock_notify(pr_lock_t *l);

/* Sleep (without the lock) until the word moves off `seen` or timeout_ns
 * passes (< 0: no limit): PR_OK, PR_ETIMEDOUT or PR_EINTR. */
pr_status_t pr_lock_wait(pr_lock_t *l, uint32_t seen, int64_t timeout_ns);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t pr_lock_now_ns(void);

#endif
