/* checksum.h - a fast 64-bit checksum for spilled objects. */
#ifndef PR_CHECKSUM_H
#define PR_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint64_t pr_checksum_compute(const void *data, size_t len);

#endif
