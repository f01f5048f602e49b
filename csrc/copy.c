/* copy.c - bulk copy (see copy.h). */
#include "copy.h"

#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_SSE2 1
#endif

#define ALIAS_WINDOW 2048u            /* dst this close ahead of src: go backwards */
#define STREAM_THRESHOLD (4u << 20)   /* larger copies bypass the cache */

#ifdef HAVE_SSE2
/* Copy n bytes from the end down. dst + n must be 16-byte aligned. */
static void copy_backward(uint8_t *dst, const uint8_t *src, size_t n, int stream)
{
    size_t blocks = n / 64;
    const uint8_t *s = src + n;
    uint8_t *d = dst + n;
    for (size_t i = 0; i < blocks; i++) {
        s -= 64;
        d -= 64;
        __m128i a = _mm_loadu_si128((const __m128i *)(s + 48));
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i e = _mm_loadu_si128((const __m128i *)s);
        if (stream) {
            _mm_stream_si128((__m128i *)(d + 48), a);
            _mm_stream_si128((__m128i *)(d + 32), b);
            _mm_stream_si128((__m128i *)(d + 16), c);
            _mm_stream_si128((__m128i *)d, e);
        } else {
            _mm_store_si128((__m128i *)(d + 48), a);
            _mm_store_si128((__m128i *)(d + 32), b);
            _mm_store_si128((__m128i *)(d + 16), c);
            _mm_store_si128((__m128i *)d, e);
        }
    }
    if (stream)
        _mm_sfence();
    memcpy(dst, src, n - blocks * 64);
}
#endif

void pr_copy_bulk(void *dst, const void *src, size_t n)
{
#ifdef HAVE_SSE2
    uintptr_t gap = ((uintptr_t)dst - (uintptr_t)src) & 4095u;
    if (n >= 65536 && gap != 0 && gap < ALIAS_WINDOW) {
        /* Copy the unaligned tail first so the loop's stores are aligned. */
        uint8_t *d = dst;
        const uint8_t *s = src;
        size_t tail = ((uintptr_t)(d + n)) & 15u;
        memcpy(d + n - tail, s + n - tail, tail);
        copy_backward(d, s, n - tail, n >= STREAM_THRESHOLD);
        return;
    }
#endif
    memcpy(dst, src, n);
}
