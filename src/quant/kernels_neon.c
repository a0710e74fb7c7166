/*
 * NEON kernels for ARM64 (AArch64), where NEON and the F16 conversions are
 * part of the base instruction set; see simd.h for what each computes.
 * Other targets get a NULL table.
 */
#include "quant/simd.h"

#include "tensor/dtype.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>

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

static void neon_stored_codes_bf16(const uint16_t *x, size_t n, uint16_t magnitude, int8_t *out,
                                   uint64_t counts[4])
{
    const uint16x8_t mask = vdupq_n_u16(0x7fff);
    const uint16x8_t mag = vdupq_n_u16(magnitude);
    uint64_t c[4] = {0, 0, 0, 0};
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint16x8_t v = vld1q_u16(x + i);
        uint16x8_t key = vandq_u16(v, mask);
        uint16x8_t is_zero = vceqzq_u16(key);
        /* With magnitude 0 (a group of zeros) a zero is a zero, not +-magnitude. */
        uint16x8_t is_mag = vbicq_u16(vceqq_u16(key, mag), is_zero);
        /* Arithmetic shift: -1 for a set sign bit, 0 otherwise; | 1 gives the code. */
        int16x8_t sign_code = vorrq_s16(vshrq_n_s16(vreinterpretq_s16_u16(v), 15), vdupq_n_s16(1));
        int16x8_t code = vbslq_s16(is_mag, sign_code, vdupq_n_s16(BCPM_STORED_OTHER));
        uint16x8_t negative = vandq_u16(is_mag, vshrq_n_u16(v, 15));
        unsigned zeros, mags, negs;

        code = vbslq_s16(is_zero, vdupq_n_s16(0), code);
        vst1_s8(out + i, vmovn_s16(code));
        zeros = vaddvq_u16(vshrq_n_u16(is_zero, 15));
        mags = vaddvq_u16(vshrq_n_u16(is_mag, 15));
        negs = vaddvq_u16(negative);
        c[0] += negs;
        c[1] += zeros;
        c[2] += mags - negs;
        c[3] += 8 - zeros - mags;
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    bcpm_quant_kernels_scalar.stored_codes_bf16(x + i, n - i, magnitude, out + i, counts);
}

static uint64_t neon_count_nonfinite_bf16(const uint16_t *x, size_t n)
{
    const uint16x8_t exponent = vdupq_n_u16(0x7f80);
    uint64_t count = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint16x8_t v = vandq_u16(vld1q_u16(x + i), exponent);
        count += vaddvq_u16(vshrq_n_u16(vceqq_u16(v, exponent), 15));
    }
    return count + bcpm_quant_kernels_scalar.count_nonfinite_bf16(x + i, n - i);
}

static void neon_stats_bf16(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    float64x2_t sum[8], sq[8];
    float32x4_t vmin = vdupq_n_f32(INFINITY), vmax = vdupq_n_f32(-INFINITY);
    double lanes[BCPM_SUM_LANES], squares[BCPM_SUM_LANES];
    uint64_t nan = 0, inf = 0, zeros = 0;
    size_t i = 0;

    clear_acc(sum);
    clear_acc(sq);
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 4; k++) {
            uint32x4_t raw = vmovl_u16(vld1_u16(x + i + 4 * k));
            uint32x4_t key = vandq_u32(raw, vdupq_n_u32(0x7fff));
            uint32x4_t nonfinite = vceqq_u32(vandq_u32(key, vdupq_n_u32(0x7f80)), vdupq_n_u32(0x7f80));
            uint32x4_t is_nan = vandq_u32(nonfinite, vtstq_u32(key, vdupq_n_u32(0x7f)));
            uint32x4_t is_zero = vceqzq_u32(key);
            /* Finite values with -0 made +0; NaN and Inf lanes become +0 for the sums. */
            uint32x4_t drop = vorrq_u32(nonfinite, is_zero);
            float32x4_t v = vreinterpretq_f32_u32(vbicq_u32(vshlq_n_u32(raw, 16), drop));
            float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);

            vmin = vbslq_f32(nonfinite, vmin, vminq_f32(vmin, v));
            vmax = vbslq_f32(nonfinite, vmax, vmaxq_f32(vmax, v));
            sum[2 * k] = vaddq_f64(sum[2 * k], lo);
            sum[2 * k + 1] = vaddq_f64(sum[2 * k + 1], hi);
            sq[2 * k] = vaddq_f64(sq[2 * k], vmulq_f64(lo, lo));
            sq[2 * k + 1] = vaddq_f64(sq[2 * k + 1], vmulq_f64(hi, hi));
            nan += vaddvq_u32(vshrq_n_u32(is_nan, 31));
            inf += vaddvq_u32(vshrq_n_u32(vbicq_u32(nonfinite, is_nan), 31));
            zeros += vaddvq_u32(vshrq_n_u32(is_zero, 31));
        }
    }
    out->nan = nan;
    out->inf = inf;
    out->zeros = zeros;
    out->min = vminvq_f32(vmin);
    out->max = vmaxvq_f32(vmax);
    store_lanes(lanes, sum);
    store_lanes(squares, sq);
    bcpm_quant_stats_finish(x, i, n, out, lanes, squares);
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

/* Codes of 4 floats against +-t into out[0..3]. */
static void neon_store_codes(float32x4_t w, float t, int8_t *out)
{
    /* A true comparison is all ones (-1 as an integer), so lt - gt is the code. */
    int32x4_t codes = vsubq_s32(vreinterpretq_s32_u32(vcltq_f32(w, vdupq_n_f32(-t))),
                                vreinterpretq_s32_u32(vcgtq_f32(w, vdupq_n_f32(t))));

    out[0] = (int8_t)vgetq_lane_s32(codes, 0);
    out[1] = (int8_t)vgetq_lane_s32(codes, 1);
    out[2] = (int8_t)vgetq_lane_s32(codes, 2);
    out[3] = (int8_t)vgetq_lane_s32(codes, 3);
}

static void neon_codes_threshold(const float *w, size_t n, float t, int8_t *out)
{
    size_t i = 0;

    for (; i + 4 <= n; i += 4)
        neon_store_codes(vld1q_f32(w + i), t, out + i);
    bcpm_quant_kernels_scalar.codes_threshold(w + i, n - i, t, out + i);
}

static void neon_codes_threshold2_bf16(const uint16_t *x, size_t n, float t0, float t1,
                                       int8_t *out0, int8_t *out1)
{
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        float32x4_t w = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(x + i), 16));
        neon_store_codes(w, t0, out0 + i);
        neon_store_codes(w, t1, out1 + i);
    }
    bcpm_quant_kernels_scalar.codes_threshold2_bf16(x + i, n - i, t0, t1, out0 + i, out1 + i);
}

/* The tail of the reference kernel: elements [i, n) through the scalar kernel. */
static size_t reference_tail(const uint16_t *x, const uint16_t *y, size_t i, size_t n, float t0,
                             float t1, uint16_t magnitude, uint64_t counts[4],
                             uint32_t *exceptions, size_t found)
{
    size_t tail;

    if (i >= n)
        return found;
    tail = bcpm_quant_kernels_scalar.reference_bf16(x + i, y + i, n - i, t0, t1, magnitude,
                                                    counts, exceptions + found);
    for (size_t k = found; k < found + tail; k++)
        exceptions[k] += (uint32_t)i;
    return found + tail;
}

/*
 * BF16 codes by integer ranges (bcpm_bf16_code_range), 8 elements at a time.
 * A block with any exception goes through the scalar kernel, which lists it.
 */
static size_t neon_reference_bf16(const uint16_t *x, const uint16_t *y, size_t n, float t0,
                                  float t1, uint16_t magnitude, uint64_t counts[4],
                                  uint32_t *exceptions)
{
    uint16_t first[2], width[2];
    uint16x8_t plus_first[2], minus_first[2], widths[2];
    const uint16x8_t mask = vdupq_n_u16(0x7fff);
    const uint16x8_t mag = vdupq_n_u16(magnitude);
    const uint16x8_t neg_mag = vdupq_n_u16((uint16_t)(magnitude | 0x8000u));
    size_t i = 0, found = 0;

    if (!bcpm_bf16_code_range(t0, &first[0], &width[0]) ||
        !bcpm_bf16_code_range(t1, &first[1], &width[1]))
        return reference_tail(x, y, 0, n, t0, t1, magnitude, counts, exceptions, 0);
    for (int k = 0; k < 2; k++) {
        plus_first[k] = vdupq_n_u16(first[k]);
        minus_first[k] = vdupq_n_u16((uint16_t)(first[k] | 0x8000u));
        widths[k] = vdupq_n_u16(width[k]);
    }

    for (; i + 8 <= n; i += 8) {
        uint16x8_t w = vld1q_u16(x + i);
        uint16x8_t v = vld1q_u16(y + i);
        uint16x8_t is_zero = vceqzq_u16(vandq_u16(v, mask));
        /* With magnitude 0 (a group of zeros) a zero is a zero, not +-magnitude. */
        uint16x8_t plus = vbicq_u16(vceqq_u16(v, mag), is_zero);
        uint16x8_t minus = vbicq_u16(vceqq_u16(v, neg_mag), is_zero);
        uint16x8_t bad = vmvnq_u16(vorrq_u16(is_zero, vorrq_u16(plus, minus)));
        unsigned zeros, pluses, minuses;

        for (int k = 0; k < 2; k++) {
            uint16x8_t gt = vcltq_u16(vsubq_u16(w, plus_first[k]), widths[k]);
            uint16x8_t lt = vcltq_u16(vsubq_u16(w, minus_first[k]), widths[k]);
            bad = vorrq_u16(bad, vorrq_u16(veorq_u16(gt, plus), veorq_u16(lt, minus)));
        }
        if (vmaxvq_u16(bad) != 0) {
            found = reference_tail(x, y, i, i + 8, t0, t1, magnitude, counts, exceptions, found);
            continue;
        }
        zeros = vaddvq_u16(vshrq_n_u16(is_zero, 15));
        pluses = vaddvq_u16(vshrq_n_u16(plus, 15));
        minuses = vaddvq_u16(vshrq_n_u16(minus, 15));
        counts[0] += minuses;
        counts[1] += zeros;
        counts[2] += pluses;
        counts[3] += 8 - zeros - pluses - minuses;
    }
    return reference_tail(x, y, i, n, t0, t1, magnitude, counts, exceptions, found);
}

static const struct bcpm_quant_kernels neon_table = {
    .name = "neon",
    .abs_sum_bf16 = neon_abs_sum_bf16,
    .abs_sum_f16 = neon_abs_sum_f16,
    .abs_sum_f32 = neon_abs_sum_f32,
    .ternary_run_bf16 = neon_ternary_run_bf16,
    .stored_codes_bf16 = neon_stored_codes_bf16,
    .count_nonfinite_bf16 = neon_count_nonfinite_bf16,
    .stats_bf16 = neon_stats_bf16,
    .bf16_to_f32 = neon_bf16_to_f32,
    .codes_threshold = neon_codes_threshold,
    .codes_threshold2_bf16 = neon_codes_threshold2_bf16,
    .reference_bf16 = neon_reference_bf16,
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
