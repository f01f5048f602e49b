/* clients.c - client slots and liveness (see clients.h). */
#include "clients.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layout.h"

void pr_clients_init(pr_shm_t *shm)
{
    memset(&shm->clients, 0, sizeof shm->clients);
}

/* Read /proc/<pid>/stat: state letter and start time. 0 on success. */
static int read_stat(int32_t pid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL || p[1] == 0)
        return -1;
    p += 2;
    *state = *p;
    /* fields after the name: state is field 3, starttime is field 22 */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (p == NULL)
            return -1;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

uint64_t pr_clients_start_time(int32_t pid)
{
    char state;
    uint64_t start;
    return read_stat(pid, &state, &start) == 0 ? start : 0;
}

int pr_clients_alive(pr_shm_t *shm, uint16_t slot)
{
    pr_client_slot_t *s = &shm->clients.slots[slot];
    if (!s->in_use)
        return 0;
    if (kill(s->pid, 0) != 0 && errno == ESRCH)
        return 0;
    char state;
    uint64_t start;
    if (read_stat(s->pid, &state, &start) != 0)
        return kill(s->pid, 0) == 0 || errno != ESRCH; /* no /proc: trust kill */
    if (state == 'Z' || state == 'X')
        return 0;
    return s->start_time == 0 || start == s->start_time;
}

pr_status_t pr_clients_attach(pr_shm_t *shm, int32_t pid, uint16_t *slot)
{
    for (uint16_t i = 0; i < PR_MAX_CLIENTS; i++) {
        pr_client_slot_t *s = &shm->clients.slots[i];
        if (s->in_use)
            continue;
        s->pid = pid;
        s->start_time = pr_clients_start_time(pid);
        s->in_use = 1;
        shm->clients.count++;
        *slot = i;
        return PR_OK;
    }
    return PR_ECLIENTS;
}

void pr_clients_detach(pr_shm_t *shm, uint16_t slot)
{
    pr_client_slot_t *s = &shm->clients.slots[slot];
    if (!s->in_use)
        return;
    s->in_use = 0;
    s->pid = 0;
    shm->clients.count--;
}
