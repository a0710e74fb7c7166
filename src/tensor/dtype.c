/* Element types: sizes, names and conversion to float; see dtype.h. */
#include "tensor/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dtype_table[BCPM_DTYPE_COUNT] = {
    [BCPM_DTYPE_BOOL] = {"BOOL", 1, 0},
    [BCPM_DTYPE_U8] = {"U8", 1, 0},
    [BCPM_DTYPE_I8] = {"I8", 1, 0},
    [BCPM_DTYPE_I16] = {"I16", 2, 0},
    [BCPM_DTYPE_U16] = {"U16", 2, 0},
    [BCPM_DTYPE_I32] = {"I32", 4, 0},
    [BCPM_DTYPE_U32] = {"U32", 4, 0},
    [BCPM_DTYPE_I64] = {"I64", 8, 0},
    [BCPM_DTYPE_U64] = {"U64", 8, 0},
    [BCPM_DTYPE_F16] = {"F16", 2, 1},
    [BCPM_DTYPE_BF16] = {"BF16", 2, 1},
    [BCPM_DTYPE_F32] = {"F32", 4, 1},
    [BCPM_DTYPE_F64] = {"F64", 8, 1},
};

size_t bcpm_dtype_size(enum bcpm_dtype dtype)
{
    return (unsigned)dtype < BCPM_DTYPE_COUNT ? dtype_table[dtype].size : 0;
}

const char *bcpm_dtype_name(enum bcpm_dtype dtype)
{
    return (unsigned)dtype < BCPM_DTYPE_COUNT ? dtype_table[dtype].name : "?";
}

int bcpm_dtype_from_name(const char *name, enum bcpm_dtype *out)
{
    for (int i = 0; i < BCPM_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (enum bcpm_dtype)i;
            return 0;
        }
    }
    return -1;
}

int bcpm_dtype_is_float(enum bcpm_dtype dtype)
{
    return (unsigned)dtype < BCPM_DTYPE_COUNT && dtype_table[dtype].is_float;
}

float bcpm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    float f;

    if (exponent == 0) {
        /* Zero or subnormal: the value is mantissa * 2^-24 exactly. */
        f = ldexpf((float)mantissa, -24);
        return sign ? -f : f;
    }
    if (exponent == 31)
        bits = sign | 0x7f800000u | (mantissa << 13);
    else
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    memcpy(&f, &bits, sizeof(f));
    return f;
}

uint16_t bcpm_f32_to_f16(float f)
{
    uint32_t bits, sign, mantissa;
    int32_t exponent;

    memcpy(&bits, &f, sizeof(bits));
    sign = (bits >> 16) & 0x8000u;
    exponent = (int32_t)((bits >> 23) & 0xffu);
    mantissa = bits & 0x7fffffu;

    if (exponent == 255)
        return (uint16_t)(sign | 0x7c00u | (mantissa ? 0x200u : 0));

    exponent -= 112;
    if (exponent >= 31)
        return (uint16_t)(sign | 0x7c00u);

    if (exponent <= 0) {
        /* Subnormal half or zero: shift the full mantissa, rounding to nearest even. */
        uint32_t full, shift, rounded, rest, halfway;
        if (exponent < -10)
            return (uint16_t)sign;
        full = mantissa | 0x800000u;
        shift = (uint32_t)(14 - exponent);
        rounded = full >> shift;
        rest = full & ((1u << shift) - 1);
        halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (rounded & 1u)))
            rounded++;
        return (uint16_t)(sign | rounded);
    }

    {
        uint32_t half = sign | ((uint32_t)exponent << 10) | (mantissa >> 13);
        uint32_t rest = mantissa & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
            half++; /* a carry into the exponent rounds up correctly, to infinity too */
        return (uint16_t)half;
    }
}

double bcpm_dtype_load_f64(enum bcpm_dtype dtype, const void *base, uint64_t index)
{
    const uint8_t *p = (const uint8_t *)base + index * bcpm_dtype_size(dtype);

    switch (dtype) {
    case BCPM_DTYPE_BOOL: return *p != 0;
    case BCPM_DTYPE_U8: return *p;
    case BCPM_DTYPE_I8: return (int8_t)*p;
    case BCPM_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case BCPM_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case BCPM_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case BCPM_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case BCPM_DTYPE_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case BCPM_DTYPE_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    case BCPM_DTYPE_F16: { uint16_t v; memcpy(&v, p, 2); return bcpm_f16_to_f32(v); }
    case BCPM_DTYPE_BF16: { uint16_t v; memcpy(&v, p, 2); return bcpm_bf16_to_f32(v); }
    case BCPM_DTYPE_F32: { float v; memcpy(&v, p, 4); return v; }
    case BCPM_DTYPE_F64: { double v; memcpy(&v, p, 8); return v; }
    case BCPM_DTYPE_COUNT: break;
    }
    return NAN;
}
