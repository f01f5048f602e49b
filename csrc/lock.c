/* lock.c - robust mutex and futex notification (see lock.h). */
#include "lock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

pr_status_t pr_lock_init(pr_lock_t *l)
{
    pthread_mutexattr_t attr;
    if (pthread_mutexattr_init(&attr) != 0)
        return PR_ESYS;
    int rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    if (rc == 0)
        rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (rc == 0)
        rc = pthread_mutex_init(&l->mutex, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        return PR_ESYS;
    }
    l->seq = 0;
    l->waiters = 0;
    l->holder_pid = 0;
    return PR_OK;
}

pr_status_t pr_lock_acquire(pr_lock_t *l)
{
    int rc = pthread_mutex_lock(&l->mutex);
    if (rc == 0) {
        l->holder_pid = getpid();
        return PR_OK;
    }
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&l->mutex);
        l->holder_pid = getpid();
        return PR_EBUSY;
    }
    errno = rc;
    return PR_ESYS;
}

void pr_lock_release(pr_lock_t *l)
{
    l->holder_pid = 0;
    pthread_mutex_unlock(&l->mutex);
}

uint32_t pr_lock_seq(pr_lock_t *l)
{
    return __atomic_load_n(&l->seq, __ATOMIC_ACQUIRE);
}

void pr_lock_notify(pr_lock_t *l)
{
    __atomic_add_fetch(&l->seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&l->waiters, __ATOMIC_SEQ_CST) != 0)
        syscall(SYS_futex, &l->seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

pr_status_t pr_lock_wait(pr_lock_t *l, uint32_t seen, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    __atomic_add_fetch(&l->waiters, 1, __ATOMIC_SEQ_CST);
    long rc = syscall(SYS_futex, &l->seq, FUTEX_WAIT, seen, tsp, NULL, 0);
    int err = errno;
    __atomic_sub_fetch(&l->waiters, 1, __ATOMIC_ACQ_REL);
    if (rc == 0 || err == EAGAIN)
        return PR_OK;
    if (err == ETIMEDOUT)
        return PR_ETIMEDOUT;
    if (err == EINTR)
        return PR_EINTR;
    return PR_OK;
}

int64_t pr_lock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
