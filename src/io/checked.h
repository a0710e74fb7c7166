/*
 * Overflow-checked size arithmetic for values read from untrusted files.
 * Each helper returns 0 and stores the result, or returns -1 and leaves *out
 * unchanged when the result does not fit in 64 bits.
 */
#ifndef BCPM_IO_CHECKED_H
#define BCPM_IO_CHECKED_H

#include <stdint.h>

static inline int bcpm_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a > UINT64_MAX - b)
        return -1;
    *out = a + b;
    return 0;
}

static inline int bcpm_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return -1;
    *out = a * b;
    return 0;
}

/* True when [offset, offset + length) lies inside [0, size). */
static inline int bcpm_range_ok(uint64_t offset, uint64_t length, uint64_t size)
{
    return offset <= size && length <= size - offset;
}

#endif
