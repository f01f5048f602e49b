/* alloc.h - two-level segregated-fit allocator over the data region.
 *
 * Blocks carry a 64-byte boundary-tag header, so payloads are 64-byte
 * aligned. Free blocks sit in LIFO bins (the most recently freed block of a
 * size is reused first, its pages already faulted in) and coalesce with
 * their neighbours on free. Take and give are O(1).
 */
#ifndef PR_ALLOC_H
#define PR_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define PR_ALIGN 64u
#define PR_BLOCK_HEADER 64u
#define PR_BLOCK_MIN 128u
#define PR_FL_COUNT 48
#define PR_SL_LOG 4
#define PR_SL_COUNT (1 << PR_SL_LOG)
#define PR_BLOCK_NIL UINT64_MAX

typedef struct pr_alloc {
    uint64_t data_off;  /* data region start, from the segment base */
    uint64_t data_size; /* bytes in the region, end sentinel included */
    uint64_t used;      /* bytes in allocated blocks, headers included */
    uint64_t used_blocks;
    uint64_t fl_bitmap;
    uint32_t sl_bitmap[PR_FL_COUNT];
    uint64_t heads[PR_FL_COUNT][PR_SL_COUNT];
} pr_alloc_t;

/* Block size needed for a payload of `payload` bytes. */
uint64_t pr_alloc_block_size(uint64_t payload);

/* The region at `data` becomes one free block plus the end sentinel. */
void pr_alloc_init(pr_alloc_t *a, uint8_t *data, uint64_t data_off, uint64_t data_size);

/* Take a block whose payload holds `payload` bytes: PR_OK or PR_ENOMEM. */
pr_status_t pr_alloc_take(pr_alloc_t *a, uint8_t *data, uint64_t payload,
                          uint64_t *block_off, uint64_t *block_size);

/* Return a block taken by pr_alloc_take. */
void pr_alloc_give(pr_alloc_t *a, uint8_t *data, uint64_t block_off);

/* Size of the largest free block's payload. */
uint64_t pr_alloc_largest_free(const pr_alloc_t *a, uint8_t *data);

/* Forget every block, then lay out the region so that exactly the given
 * blocks (sorted by offset, non-overlapping) are allocated. */
void pr_alloc_rebuild(pr_alloc_t *a, uint8_t *data, const uint64_t *offs,
                      const uint64_t *sizes, size_t n);

#endif
