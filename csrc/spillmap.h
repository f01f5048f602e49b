/* spillmap.h - the spill files of a store: which exist, how many spilled
 * objects each still holds, and their names. A file is removed when its last
 * object is restored or deleted, and all of them when the store closes.
 * What goes into a file is decided elsewhere (plasma/spill.py).
 */
#ifndef PR_SPILLMAP_H
#define PR_SPILLMAP_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct pr_shm;

#define PR_MAX_SPILL_FILES 4096
#define PR_SPILL_DIR_MAX 448
#define PR_SPILL_PREFIX_MAX 48

enum { PR_SPILLFILE_FREE = 0, PR_SPILLFILE_WRITING = 1, PR_SPILLFILE_ACTIVE = 2 };

typedef struct pr_spill_file {
    uint32_t gen;     /* names the file; unique within the store */
    uint16_t state;
    uint16_t writer;  /* client slot while WRITING */
    uint32_t live;    /* spilled objects still in it */
    uint32_t pad;
} pr_spill_file_t;

typedef struct pr_spillmap {
    char dir[PR_SPILL_DIR_MAX];       /* empty: spilling disabled */
    char prefix[PR_SPILL_PREFIX_MAX];
    uint32_t next_gen;
    uint32_t files_open;
    pr_spill_file_t files[PR_MAX_SPILL_FILES];
} pr_spillmap_t;

pr_status_t pr_spillmap_init(struct pr_shm *shm, const char *dir, const char *prefix);

/* A new file slot in WRITING state: PR_OK or PR_ENOMEM (table full). */
pr_status_t pr_spillmap_open(struct pr_shm *shm, uint16_t writer, uint32_t *slot);

/* The file's path. PR_EINVAL if the slot is not in use. */
pr_status_t pr_spillmap_path(struct pr_shm *shm, uint32_t slot, char *buf, size_t len);

void pr_spillmap_ref(struct pr_shm *shm, uint32_t slot);
void pr_spillmap_unref(struct pr_shm *shm, uint32_t slot);

/* WRITING -> ACTIVE (the file is removed at once if it holds nothing). */
void pr_spillmap_finish(struct pr_shm *shm, uint32_t slot);

/* Finish the files a dead client was writing. */
void pr_spillmap_reap(struct pr_shm *shm, uint16_t client);

/* Recount live objects per file from the entries. */
void pr_spillmap_recount(struct pr_shm *shm);

/* Remove every file. */
void pr_spillmap_remove_all(struct pr_shm *shm);

#endif
