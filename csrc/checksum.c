/* checksum.c - four independent multiply-rotate lanes over 32-byte stripes,
 * folded together with the length and the tail. Not cryptographic: it
 * catches torn and corrupted spill records. */
#include "checksum.h"

#include <string.h>

#define K1 0x9E3779B185EBCA87ull
#define K2 0xC2B2AE3D27D4EB4Full
#define K3 0x165667B19E3779F9ull
#define K4 0x85EBCA77C2B2AE63ull

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t step(uint64_t acc, uint64_t v)
{
    return rotl(acc + v * K2, 31) * K1;
}

static inline uint64_t fold(uint64_t h, uint64_t lane)
{
    return (h ^ step(0, lane)) * K1 + K4;
}

uint64_t pr_checksum_compute(const void *data, size_t len)
{
    const uint8_t *p = data, *end = p + len;
    uint64_t h;
    if (len >= 32) {
        uint64_t a = K1 + K2, b = K2, c = 0, d = -K1;
        for (; p + 32 <= end; p += 32) {
            a = step(a, load64(p));
            b = step(b, load64(p + 8));
            c = step(c, load64(p + 16));
            d = step(d, load64(p + 24));
        }
        h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
        h = fold(h, a);
        h = fold(h, b);
        h = fold(h, c);
        h = fold(h, d);
    } else {
        h = K3;
    }
    h += (uint64_t)len;
    for (; p + 8 <= end; p += 8)
        h = rotl(h ^ step(0, load64(p)), 27) * K1 + K4;
    for (; p < end; p++)
        h = rotl(h ^ (*p * K3), 11) * K1;
    h ^= h >> 33;
    h *= K2;
    h ^= h >> 29;
    h *= K3;
    h ^= h >> 32;
    return h;
}
