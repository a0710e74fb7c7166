/*
 * NEON kernels for ARM64 (AArch64), where NEON and the F16 conversions are
 * part of the base instruction set; see simd.h for what each computes.
 * Other targets get a NULL table.
 */
#include "quant/simd.h"

#include "tensor/dtype.h"

#if defined(__aarch64__)
#include <arm_neon.h>

static double reduce_lanes(double lane[BCPM_SUM_LANES])
{
    for (int width = BCPM_SUM_LANES / 2; width >= 1; width /= 2) {
        for (int j = 0; j < width; j++)
            lane[j] += lane[j + width];
    }
    return lane[0];
}

/* Add 4 floats (lanes 4k..4k+3 of the canonical 16) into two double pairs. */
static void add_quad(float64x2_t acc[8], int k, float32x4_t f)
{
    acc[2 * k] = vaddq_f64(acc[2 * k], vcvt_f64_f32(vget_low_f32(f)));
    acc[2 * k + 1] = vaddq_f64(acc[2 * k + 1], vcvt_high_f64_f32(f));
}

static void store_lanes(double lane[BCPM_SUM_LANES], float64x2_t acc[8])
{
    for (int k = 0; k < 8; k++)
        vst1q_f64(lane + 2 * k, acc[k]);
}

static void clear_acc(float64x2_t acc[8])
{
    for (int k = 0; k < 8; k++)
        acc[k] = vdupq_n_f64(0.0);
}

static double neon_abs_sum_bf16(const uint16_t *x, size_t n)
{
    float64x2_t acc[8];
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    clear_acc(acc);
    for (; i + 16 <= n; i += 16) {
        for (int h = 0; h < 2; h++) {
            uint16x8_t raw = vandq_u16(vld1q_u16(x + i + 8 * h), vdupq_n_u16(0x7fff));
            add_quad(acc, 2 * h, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(raw), 16)));
            add_quad(acc, 2 * h + 1, vreinterpretq_f32_u32(vshll_high_n_u16(raw, 16)));
        }
    }
    store_lanes(lane, acc);
    for (size_t j = 0; i < n; i++, j++)
        lane[j] += (double)bcpm_bf16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

static double neon_abs_sum_f16(const uint16_t *x, size_t n)
{
    float64x2_t acc[8];
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    clear_acc(acc);
    for (; i + 16 <= n; i += 16) {
        for (int h = 0; h < 2; h++) {
            uint16x8_t raw = vandq_u16(vld1q_u16(x + i + 8 * h), vdupq_n_u16(0x7fff));
            float16x8_t half = vreinterpretq_f16_u16(raw);
            add_quad(acc, 2 * h, vcvt_f32_f16(vget_low_f16(half)));
            add_quad(acc, 2 * h + 1, vcvt_high_f32_f16(half));
        }
    }
    store_lanes(lane, acc);
    for (size_t j = 0; i < n; i++, j++)
        lane[j] += (double)bcpm_f16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

static double neon_abs_sum_f32(const float *x, size_t n)
{
    float64x2_t acc[8];
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    clear_acc(acc);
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 4; k++)
            add_quad(acc, k, vabsq_f32(vld1q_f32(x + i + 4 * k)));
    }
    store_lanes(lane, acc);
    for (size_t j = 0; i < n; i++, j++) {
        float v = x[i];
        lane[j] += (double)(v < 0 ? -v : v);
    }
    return reduce_lanes(lane);
}

static size_t neon_ternary_run_bf16(const uint16_t *x, size_t n, uint16_t magnitude,
                                    uint64_t *zeros, uint64_t *negatives)
{
    const uint16x8_t mask = vdupq_n_u16(0x7fff);
    const uint16x8_t mag = vdupq_n_u16(magnitude);
    uint64_t z = 0, neg = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint16x8_t v = vld1q_u16(x + i);
        uint16x8_t m = vandq_u16(v, mask);
        uint16x8_t is_zero = vceqzq_u16(m);
        uint16x8_t is_mag = vceqq_u16(m, mag);

        if (vminvq_u16(vorrq_u16(is_zero, is_mag)) != 0xffffu)
            break;
        /* Each true lane is 0xffff; shifting right by 15 leaves 1 to add up. */
        z += vaddvq_u16(vshrq_n_u16(is_zero, 15));
        neg += vaddvq_u16(vandq_u16(vshrq_n_u16(is_mag, 15), vshrq_n_u16(v, 15)));
    }
    *zeros += z;
    *negatives += neg;
    return i + bcpm_quant_kernels_scalar.ternary_run_bf16(x + i, n - i, magnitude, zeros,
                                                          negatives);
}

static void neon_bf16_to_f32(const uint16_t *x, size_t n, float *out)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint16x8_t raw = vld1q_u16(x + i);
        vst1q_f32(out + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(raw), 16)));
        vst1q_f32(out + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(raw, 16)));
    }
    for (; i < n; i++)
        out[i] = bcpm_bf16_to_f32(x[i]);
}

static void neon_codes(const float *w, size_t n, float s, int8_t *out, int to_bf16)
{
    const float32x4_t vs = vdupq_n_f32(s);
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        float32x4_t q = vdivq_f32(vld1q_f32(w + i), vs);
        int32x4_t codes;

        if (to_bf16) {
            uint32x4_t bits = vreinterpretq_u32_f32(q);
            uint32x4_t lsb = vandq_u32(vshrq_n_u32(bits, 16), vdupq_n_u32(1));
            uint32x4_t r = vaddq_u32(bits, vaddq_u32(vdupq_n_u32(0x7fff), lsb));
            float32x4_t rounded = vreinterpretq_f32_u32(vandq_u32(r, vdupq_n_u32(0xffff0000u)));
            q = vbslq_f32(vceqq_f32(q, q), rounded, q);
        }
        /* A true comparison is all ones (-1 as an integer). */
        codes = vsubq_s32(vreinterpretq_s32_u32(vcltq_f32(q, vdupq_n_f32(-0.5f))),
                          vreinterpretq_s32_u32(vcgtq_f32(q, vdupq_n_f32(0.5f))));
        out[i] = (int8_t)vgetq_lane_s32(codes, 0);
        out[i + 1] = (int8_t)vgetq_lane_s32(codes, 1);
        out[i + 2] = (int8_t)vgetq_lane_s32(codes, 2);
        out[i + 3] = (int8_t)vgetq_lane_s32(codes, 3);
    }
    if (to_bf16)
        bcpm_quant_kernels_scalar.codes_bf16(w + i, n - i, s, out + i);
    else
        bcpm_quant_kernels_scalar.codes_f32(w + i, n - i, s, out + i);
}

static void neon_codes_f32(const float *w, size_t n, float s, int8_t *out)
{
    neon_codes(w, n, s, out, 0);
}

static void neon_codes_bf16(const float *w, size_t n, float s, int8_t *out)
{
    neon_codes(w, n, s, out, 1);
}

static const struct bcpm_quant_kernels neon_table = {
    .name = "neon",
    .abs_sum_bf16 = neon_abs_sum_bf16,
    .abs_sum_f16 = neon_abs_sum_f16,
    .abs_sum_f32 = neon_abs_sum_f32,
    .ternary_run_bf16 = neon_ternary_run_bf16,
    .bf16_to_f32 = neon_bf16_to_f32,
    .codes_f32 = neon_codes_f32,
    .codes_bf16 = neon_codes_bf16,
};

const struct bcpm_quant_kernels *bcpm_quant_kernels_neon(void)
{
    return &neon_table;
}

#else

const struct bcpm_quant_kernels *bcpm_quant_kernels_neon(void)
{
    return NULL;
}

#endif
