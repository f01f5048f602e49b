/* alloc.c - two-level segregated-fit allocator (see alloc.h). */
#include "alloc.h"

#include <string.h>

typedef struct block {
    uint64_t size;      /* whole block, header included; multiple of 64 */
    uint64_t prev_size; /* physical predecessor's size; 0 for the first block */
    uint64_t is_free;
    uint64_t next_free; /* bin links, valid while free */
    uint64_t prev_free;
    uint64_t pad[3];
} block_t;

_Static_assert(sizeof(block_t) == PR_BLOCK_HEADER, "block header is 64 bytes");

static inline block_t *blk(uint8_t *data, uint64_t off)
{
    return (block_t *)(data + off);
}

static inline int msb64(uint64_t x)
{
    return 63 - __builtin_clzll(x);
}

static void mapping(uint64_t size, int *fl, int *sl)
{
    uint64_t u = size / PR_ALIGN;
    if (u < PR_SL_COUNT) {
        *fl = 0;
        *sl = (int)u;
    } else {
        int f = msb64(u);
        *sl = (int)((u >> (f - PR_SL_LOG)) ^ PR_SL_COUNT);
        *fl = f - PR_SL_LOG + 1;
    }
}

/* Round up so that any block in the resulting bin is big enough. */
static uint64_t round_for_search(uint64_t size)
{
    uint64_t u = size / PR_ALIGN;
    if (u >= PR_SL_COUNT)
        u += (1ull << (msb64(u) - PR_SL_LOG)) - 1;
    return u * PR_ALIGN;
}

static void bin_insert(pr_alloc_t *a, uint8_t *data, uint64_t off)
{
    block_t *b = blk(data, off);
    int fl, sl;
    mapping(b->size, &fl, &sl);
    uint64_t head = a->heads[fl][sl];
    b->is_free = 1;
    b->prev_free = PR_BLOCK_NIL;
    b->next_free = head;
    if (head != PR_BLOCK_NIL)
        blk(data, head)->prev_free = off;
    a->heads[fl][sl] = off;
    a->fl_bitmap |= 1ull << fl;
    a->sl_bitmap[fl] |= 1u << sl;
}

static void bin_remove(pr_alloc_t *a, uint8_t *data, uint64_t off)
{
    block_t *b = blk(data, off);
    int fl, sl;
    mapping(b->size, &fl, &sl);
    if (b->prev_free != PR_BLOCK_NIL)
        blk(data, b->prev_free)->next_free = b->next_free;
    else
        a->heads[fl][sl] = b->next_free;
    if (b->next_free != PR_BLOCK_NIL)
        blk(data, b->next_free)->prev_free = b->prev_free;
    if (a->heads[fl][sl] == PR_BLOCK_NIL) {
        a->sl_bitmap[fl] &= ~(1u << sl);
        if (a->sl_bitmap[fl] == 0)
            a->fl_bitmap &= ~(1ull << fl);
    }
    b->is_free = 0;
}

static void reset_bins(pr_alloc_t *a)
{
    a->fl_bitmap = 0;
    memset(a->sl_bitmap, 0, sizeof a->sl_bitmap);
    for (int i = 0; i < PR_FL_COUNT; i++)
        for (int j = 0; j < PR_SL_COUNT; j++)
            a->heads[i][j] = PR_BLOCK_NIL;
}

static void write_block(uint8_t *data, uint64_t off, uint64_t size, uint64_t prev_size)
{
    block_t *b = blk(data, off);
    b->size = size;
    b->prev_size = prev_size;
    b->is_free = 0;
    b->next_free = b->prev_free = PR_BLOCK_NIL;
}

uint64_t pr_alloc_block_size(uint64_t payload)
{
    uint64_t size = ((payload + PR_ALIGN - 1) & ~(uint64_t)(PR_ALIGN - 1)) + PR_BLOCK_HEADER;
    return size < PR_BLOCK_MIN ? PR_BLOCK_MIN : size;
}

void pr_alloc_init(pr_alloc_t *a, uint8_t *data, uint64_t data_off, uint64_t data_size)
{
    a->data_off = data_off;
    a->data_size = data_size;
    pr_alloc_rebuild(a, data, 0, 0, 0);
}

static uint64_t find_block(pr_alloc_t *a, uint8_t *data, uint64_t size)
{
    int fl, sl;
    uint64_t rounded = round_for_search(size);
    mapping(rounded, &fl, &sl);
    if (fl < PR_FL_COUNT) {
        uint32_t slmap = a->sl_bitmap[fl] & (~0u << sl);
        if (slmap == 0) {
            uint64_t flmap = fl + 1 < 64 ? a->fl_bitmap & (~0ull << (fl + 1)) : 0;
            if (flmap != 0) {
                fl = __builtin_ctzll(flmap);
                slmap = a->sl_bitmap[fl];
            }
        }
        if (slmap != 0)
            return a->heads[fl][__builtin_ctz(slmap)];
    }
    /* The rounded search skips blocks in the request's own bin that are
     * large enough but below the bin's upper edge: first-fit them. */
    mapping(size, &fl, &sl);
    for (uint64_t off = a->heads[fl][sl]; off != PR_BLOCK_NIL; off = blk(data, off)->next_free)
        if (blk(data, off)->size >= size)
            return off;
    return PR_BLOCK_NIL;
}

pr_status_t pr_alloc_take(pr_alloc_t *a, uint8_t *data, uint64_t payload,
                          uint64_t *block_off, uint64_t *block_size)
{
    if (payload > a->data_size)
        return PR_ENOMEM;
    uint64_t size = pr_alloc_block_size(payload);
    uint64_t off = find_block(a, data, size);
    if (off == PR_BLOCK_NIL)
        return PR_ENOMEM;
    bin_remove(a, data, off);
    block_t *b = blk(data, off);
    uint64_t rest = b->size - size;
    if (rest >= PR_BLOCK_MIN) {
        uint64_t roff = off + size;
        write_block(data, roff, rest, size);
        blk(data, roff + rest)->prev_size = rest;
        bin_insert(a, data, roff);
        b->size = size;
    }
    a->used += b->size;
    a->used_blocks++;
    *block_off = off;
    *block_size = b->size;
    return PR_OK;
}

void pr_alloc_give(pr_alloc_t *a, uint8_t *data, uint64_t off)
{
    block_t *b = blk(data, off);
    a->used -= b->size;
    a->used_blocks--;
    block_t *next = blk(data, off + b->size);
    if (next->is_free) {
        bin_remove(a, data, off + b->size);
        b->size += next->size;
    }
    if (b->prev_size != 0) {
        uint64_t poff = off - b->prev_size;
        block_t *prev = blk(data, poff);
        if (prev->is_free) {
            bin_remove(a, data, poff);
            prev->size += b->size;
            off = poff;
            b = prev;
        }
    }
    blk(data, off + b->size)->prev_size = b->size;
    bin_insert(a, data, off);
}

uint64_t pr_alloc_largest_free(const pr_alloc_t *a, uint8_t *data)
{
    if (a->fl_bitmap == 0)
        return 0;
    int fl = msb64(a->fl_bitmap);
    uint64_t best = 0;
    for (int sl = 0; sl < PR_SL_COUNT; sl++)
        for (uint64_t off = a->heads[fl][sl]; off != PR_BLOCK_NIL; off = blk(data, off)->next_free)
            if (blk(data, off)->size > best)
                best = blk(data, off)->size;
    return best > PR_BLOCK_HEADER ? best - PR_BLOCK_HEADER : 0;
}

void pr_alloc_rebuild(pr_alloc_t *a, uint8_t *data, const uint64_t *offs,
                      const uint64_t *sizes, size_t n)
{
    uint64_t end = a->data_size - PR_BLOCK_HEADER; /* sentinel lives here */
    uint64_t cursor = 0, prev_size = 0;
    reset_bins(a);
    a->used = 0;
    a->used_blocks = 0;
    for (size_t i = 0; i <= n; i++) {
        uint64_t off = i < n ? offs[i] : end;
        if (off > cursor) {
            write_block(data, cursor, off - cursor, prev_size);
            bin_insert(a, data, cursor);
            prev_size = off - cursor;
        }
        if (i == n)
            break;
        write_block(data, off, sizes[i], prev_size);
        a->used += sizes[i];
        a->used_blocks++;
        prev_size = sizes[i];
        cursor = off + sizes[i];
    }
    write_block(data, end, PR_BLOCK_HEADER, prev_size);
}
