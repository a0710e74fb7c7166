/*
 * Element types of checkpoint tensors and their conversion to float.
 *
 * Names follow safetensors ("BF16", "F32", ...). Conversions are written in
 * portable C and assume little-endian storage, which is what PyTorch writes
 * on every platform it supports (its zip files carry a "byteorder" entry that
 * the torch reader checks).
 */
#ifndef BCPM_TENSOR_DTYPE_H
#define BCPM_TENSOR_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum bcpm_dtype {
    BCPM_DTYPE_BOOL,
    BCPM_DTYPE_U8,
    BCPM_DTYPE_I8,
    BCPM_DTYPE_I16,
    BCPM_DTYPE_U16,
    BCPM_DTYPE_I32,
    BCPM_DTYPE_U32,
    BCPM_DTYPE_I64,
    BCPM_DTYPE_U64,
    BCPM_DTYPE_F16,
    BCPM_DTYPE_BF16,
    BCPM_DTYPE_F32,
    BCPM_DTYPE_F64,
    BCPM_DTYPE_COUNT
};

/* Bytes per element. */
size_t bcpm_dtype_size(enum bcpm_dtype dtype);

/* safetensors-style name ("BF16"). */
const char *bcpm_dtype_name(enum bcpm_dtype dtype);

/* Parse a safetensors-style name; returns 0 or -1 if unknown. */
int bcpm_dtype_from_name(const char *name, enum bcpm_dtype *out);

/* 1 for F16, BF16, F32 and F64. */
int bcpm_dtype_is_float(enum bcpm_dtype dtype);

/* Read element index of a little-endian buffer as double. */
double bcpm_dtype_load_f64(enum bcpm_dtype dtype, const void *base, uint64_t index);

static inline float bcpm_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof(f));
    return f;
}

/* Round float to bfloat16, nearest even, as PyTorch's conversion does (NaN stays NaN). */
static inline uint16_t bcpm_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof(bits));
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

float bcpm_f16_to_f32(uint16_t h);

/* Round float to IEEE half, nearest even, with overflow to infinity. */
uint16_t bcpm_f32_to_f16(float f);

#endif
