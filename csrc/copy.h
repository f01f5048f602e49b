/* copy.h - bulk copy into the store at memory bandwidth.
 *
 * A plain forward memcpy slows down ~4x when the destination sits a little
 * ahead of the source modulo 4 KiB: every load then looks like it depends on
 * a store just issued (4K aliasing). Store payloads are 64-byte aligned, so
 * this hits many sources; in that case the copy runs backwards instead.
 */
#ifndef PR_COPY_H
#define PR_COPY_H

#include <stddef.h>

void pr_copy_bulk(void *dst, const void *src, size_t n);

#endif
