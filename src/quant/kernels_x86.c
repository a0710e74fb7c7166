/*
 * AVX2 and AVX-512 kernels for x86-64; see simd.h for what each computes.
 *
 * Functions carry target attributes so the rest of the build stays generic;
 * a table is offered only when __builtin_cpu_supports reports that the CPU
 * has the instruction set. Compilers without both features (or other targets) get
 * tables that are always NULL, and the scalar kernels run instead.
 */
#include "quant/simd.h"

#include <math.h>
#include <string.h>

#include "tensor/dtype.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1
#include <immintrin.h>
#endif

#ifdef HAVE_X86_KERNELS

#define AVX2 __attribute__((target("avx2,f16c,popcnt")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,popcnt")))

/* Same pairwise reduction as the scalar kernels. */
static double reduce_lanes(double lane[BCPM_SUM_LANES])
{
    for (int width = BCPM_SUM_LANES / 2; width >= 1; width /= 2) {
        for (int j = 0; j < width; j++)
            lane[j] += lane[j + width];
    }
    return lane[0];
}

/* ---- AVX2 ---- */

AVX2 static double avx2_abs_sum_bf16(const uint16_t *x, size_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    const __m256i mask = _mm256_set1_epi32(0x7fff);
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        for (int h = 0; h < 2; h++) {
            __m128i raw = _mm_loadu_si128((const __m128i *)(x + i + 8 * h));
            __m256i wide = _mm256_and_si256(_mm256_cvtepu16_epi32(raw), mask);
            __m256 f = _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
            acc[2 * h] = _mm256_add_pd(acc[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
            acc[2 * h + 1] = _mm256_add_pd(acc[2 * h + 1],
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
        }
    }
    for (int r = 0; r < 4; r++)
        _mm256_storeu_pd(lane + 4 * r, acc[r]);
    for (size_t j = 0; i < n; i++, j++)
        lane[j] += (double)bcpm_bf16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

AVX2 static double avx2_abs_sum_f16(const uint16_t *x, size_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    const __m128i mask = _mm_set1_epi16(0x7fff);
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        for (int h = 0; h < 2; h++) {
            __m128i raw = _mm_and_si128(_mm_loadu_si128((const __m128i *)(x + i + 8 * h)), mask);
            __m256 f = _mm256_cvtph_ps(raw);
            acc[2 * h] = _mm256_add_pd(acc[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
            acc[2 * h + 1] = _mm256_add_pd(acc[2 * h + 1],
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
        }
    }
    for (int r = 0; r < 4; r++)
        _mm256_storeu_pd(lane + 4 * r, acc[r]);
    for (size_t j = 0; i < n; i++, j++)
        lane[j] += (double)bcpm_f16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

AVX2 static double avx2_abs_sum_f32(const float *x, size_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    const __m256 mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        for (int h = 0; h < 2; h++) {
            __m256 f = _mm256_and_ps(_mm256_loadu_ps(x + i + 8 * h), mask);
            acc[2 * h] = _mm256_add_pd(acc[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(f)));
            acc[2 * h + 1] = _mm256_add_pd(acc[2 * h + 1],
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1)));
        }
    }
    for (int r = 0; r < 4; r++)
        _mm256_storeu_pd(lane + 4 * r, acc[r]);
    for (size_t j = 0; i < n; i++, j++) {
        float v = x[i];
        lane[j] += (double)(v < 0 ? -v : v);
    }
    return reduce_lanes(lane);
}

AVX2 static size_t avx2_ternary_run_bf16(const uint16_t *x, size_t n, uint16_t magnitude,
                                         uint64_t *zeros, uint64_t *negatives)
{
    const __m256i mask = _mm256_set1_epi16(0x7fff);
    const __m256i mag = _mm256_set1_epi16((short)magnitude);
    const __m256i zero = _mm256_setzero_si256();
    uint64_t z = 0, neg = 0;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i m = _mm256_and_si256(v, mask);
        __m256i is_zero = _mm256_cmpeq_epi16(m, zero);
        __m256i is_mag = _mm256_cmpeq_epi16(m, mag);
        unsigned ok = (unsigned)_mm256_movemask_epi8(_mm256_or_si256(is_zero, is_mag));

        if (ok != 0xffffffffu)
            break;
        z += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(is_zero)) / 2;
        neg += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(
                   _mm256_and_si256(is_mag, _mm256_srai_epi16(v, 15)))) / 2;
    }
    *zeros += z;
    *negatives += neg;
    return i + bcpm_quant_kernels_scalar.ternary_run_bf16(x + i, n - i, magnitude, zeros,
                                                          negatives);
}

AVX2 static void avx2_stored_codes_bf16(const uint16_t *x, size_t n, uint16_t magnitude,
                                        int8_t *out, uint64_t counts[4])
{
    const __m256i mask = _mm256_set1_epi16(0x7fff);
    const __m256i mag = _mm256_set1_epi16((short)magnitude);
    const __m256i other = _mm256_set1_epi16(BCPM_STORED_OTHER);
    const __m256i one = _mm256_set1_epi16(1);
    uint64_t c[4] = {0, 0, 0, 0};
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i key = _mm256_and_si256(v, mask);
        __m256i is_zero = _mm256_cmpeq_epi16(key, _mm256_setzero_si256());
        /* With magnitude 0 (a group of zeros) a zero is a zero, not +-magnitude. */
        __m256i is_mag = _mm256_andnot_si256(is_zero, _mm256_cmpeq_epi16(key, mag));
        __m256i negative = _mm256_srai_epi16(v, 15);
        /* -1 | 1 is -1 and 0 | 1 is 1: the sign as a code. */
        __m256i code = _mm256_blendv_epi8(other, _mm256_or_si256(negative, one), is_mag);
        __m256i packed;
        unsigned zeros, mags, negs;

        code = _mm256_andnot_si256(is_zero, code);
        /* packs works per 128-bit half; the permute puts codes 0-15 in the low half. */
        packed = _mm256_permute4x64_epi64(_mm256_packs_epi16(code, code), 0x08);
        _mm_storeu_si128((__m128i *)(out + i), _mm256_castsi256_si128(packed));

        zeros = (unsigned)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(is_zero)) / 2;
        mags = (unsigned)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(is_mag)) / 2;
        negs = (unsigned)_mm_popcnt_u32(
                   (unsigned)_mm256_movemask_epi8(_mm256_and_si256(is_mag, negative))) / 2;
        c[0] += negs;
        c[1] += zeros;
        c[2] += mags - negs;
        c[3] += 16 - zeros - mags;
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    bcpm_quant_kernels_scalar.stored_codes_bf16(x + i, n - i, magnitude, out + i, counts);
}

AVX2 static uint64_t avx2_count_nonfinite_bf16(const uint16_t *x, size_t n)
{
    const __m256i exponent = _mm256_set1_epi16(0x7f80);
    uint64_t count = 0;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), exponent);
        count += (uint64_t)_mm_popcnt_u32(
                     (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi16(v, exponent))) / 2;
    }
    return count + bcpm_quant_kernels_scalar.count_nonfinite_bf16(x + i, n - i);
}

AVX2 static void avx2_stats_bf16(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    __m256d sum[4], sq[4];
    __m256 vmin = _mm256_set1_ps(INFINITY), vmax = _mm256_set1_ps(-INFINITY);
    const __m256i mask = _mm256_set1_epi32(0x7fff), exponent = _mm256_set1_epi32(0x7f80);
    const __m256i mantissa = _mm256_set1_epi32(0x7f), zero = _mm256_setzero_si256();
    double lanes[BCPM_SUM_LANES], squares[BCPM_SUM_LANES];
    uint64_t nan = 0, inf = 0, zeros = 0;
    size_t i = 0;

    for (int r = 0; r < 4; r++) {
        sum[r] = _mm256_setzero_pd();
        sq[r] = _mm256_setzero_pd();
    }
    for (; i + 16 <= n; i += 16) {
        for (int h = 0; h < 2; h++) {
            __m256i raw = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i + 8 * h)));
            __m256i key = _mm256_and_si256(raw, mask);
            __m256i nonfinite = _mm256_cmpeq_epi32(_mm256_and_si256(key, exponent), exponent);
            __m256i has_mantissa = _mm256_xor_si256(
                _mm256_cmpeq_epi32(_mm256_and_si256(key, mantissa), zero), _mm256_set1_epi32(-1));
            __m256i is_nan = _mm256_and_si256(nonfinite, has_mantissa);
            __m256i is_zero = _mm256_cmpeq_epi32(key, zero);
            /* Finite values with -0 made +0; NaN and Inf lanes become +0 for the sums. */
            __m256i drop = _mm256_or_si256(nonfinite, is_zero);
            __m256 v = _mm256_castsi256_ps(_mm256_andnot_si256(drop, _mm256_slli_epi32(raw, 16)));
            /* NaN and Inf lanes must not move min and max: use the running values there. */
            __m256 for_min = _mm256_blendv_ps(v, vmin, _mm256_castsi256_ps(nonfinite));
            __m256 for_max = _mm256_blendv_ps(v, vmax, _mm256_castsi256_ps(nonfinite));
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
            __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));

            vmin = _mm256_min_ps(vmin, for_min);
            vmax = _mm256_max_ps(vmax, for_max);
            sum[2 * h] = _mm256_add_pd(sum[2 * h], lo);
            sum[2 * h + 1] = _mm256_add_pd(sum[2 * h + 1], hi);
            sq[2 * h] = _mm256_add_pd(sq[2 * h], _mm256_mul_pd(lo, lo));
            sq[2 * h + 1] = _mm256_add_pd(sq[2 * h + 1], _mm256_mul_pd(hi, hi));
            nan += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(is_nan)));
            inf += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_ps(
                       _mm256_castsi256_ps(_mm256_andnot_si256(is_nan, nonfinite))));
            zeros += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(is_zero)));
        }
    }
    memset(out, 0, sizeof(*out));
    out->nan = nan;
    out->inf = inf;
    out->zeros = zeros;
    {
        float m[8], M[8];
        _mm256_storeu_ps(m, vmin);
        _mm256_storeu_ps(M, vmax);
        out->min = INFINITY;
        out->max = -INFINITY;
        for (int j = 0; j < 8; j++) {
            if (m[j] < out->min)
                out->min = m[j];
            if (M[j] > out->max)
                out->max = M[j];
        }
    }
    for (int r = 0; r < 4; r++) {
        _mm256_storeu_pd(lanes + 4 * r, sum[r]);
        _mm256_storeu_pd(squares + 4 * r, sq[r]);
    }
    bcpm_quant_stats_finish(x, i, n, out, lanes, squares);
}

AVX2 static void avx2_bf16_to_f32(const uint16_t *x, size_t n, float *out)
{
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
    }
    for (; i < n; i++)
        out[i] = bcpm_bf16_to_f32(x[i]);
}

/* Codes of 8 floats against +-t, packed to 8 bytes at out. */
AVX2 static void avx2_store_codes(__m256 w, __m256 t, __m256 minus_t, int8_t *out)
{
    /* A true comparison is all ones (-1), so lt - gt is the code. */
    __m256i gt = _mm256_castps_si256(_mm256_cmp_ps(w, t, _CMP_GT_OQ));
    __m256i lt = _mm256_castps_si256(_mm256_cmp_ps(w, minus_t, _CMP_LT_OQ));
    __m256i codes = _mm256_sub_epi32(lt, gt);
    /* Saturating packs work within 128-bit halves: codes 0-3 end up in the low
       half's first 4 bytes, codes 4-7 in the high half's. */
    __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(codes, codes),
                                        _mm256_packs_epi32(codes, codes));
    int32_t low = _mm_cvtsi128_si32(_mm256_castsi256_si128(packed));
    int32_t high = _mm_cvtsi128_si32(_mm256_extracti128_si256(packed, 1));

    memcpy(out, &low, 4);
    memcpy(out + 4, &high, 4);
}

AVX2 static void avx2_codes_threshold(const float *w, size_t n, float t, int8_t *out)
{
    const __m256 vt = _mm256_set1_ps(t), minus_t = _mm256_set1_ps(-t);
    size_t i = 0;

    for (; i + 8 <= n; i += 8)
        avx2_store_codes(_mm256_loadu_ps(w + i), vt, minus_t, out + i);
    bcpm_quant_kernels_scalar.codes_threshold(w + i, n - i, t, out + i);
}

AVX2 static void avx2_codes_threshold2_bf16(const uint16_t *x, size_t n, float t0, float t1,
                                            int8_t *out0, int8_t *out1)
{
    const __m256 v0 = _mm256_set1_ps(t0), minus0 = _mm256_set1_ps(-t0);
    const __m256 v1 = _mm256_set1_ps(t1), minus1 = _mm256_set1_ps(-t1);
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 w = _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
        avx2_store_codes(w, v0, minus0, out0 + i);
        avx2_store_codes(w, v1, minus1, out1 + i);
    }
    bcpm_quant_kernels_scalar.codes_threshold2_bf16(x + i, n - i, t0, t1, out0 + i, out1 + i);
}

/* Append base + the index of every set bit of mask to exceptions. */
static size_t append_exceptions(uint32_t mask, size_t base, uint32_t *exceptions, size_t found)
{
    while (mask) {
        exceptions[found++] = (uint32_t)(base + (unsigned)__builtin_ctz(mask));
        mask &= mask - 1;
    }
    return found;
}

/* The tail of a reference kernel: elements [i, n) through the scalar kernel. */
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

/* Lanes where (uint16_t)(v - first) < width, as all ones (AVX2 has no unsigned compare). */
AVX2 static __m256i avx2_in_range(__m256i v, __m256i first, __m256i width_biased)
{
    const __m256i bias = _mm256_set1_epi16((short)0x8000);

    return _mm256_cmpgt_epi16(width_biased,
                              _mm256_xor_si256(_mm256_sub_epi16(v, first), bias));
}

/*
 * BF16 codes by integer ranges (bcpm_bf16_code_range), 16 elements at a
 * time. movemask_epi8 gives two bits per 16-bit lane, hence the halving.
 */
AVX2 static size_t avx2_reference_bf16(const uint16_t *x, const uint16_t *y, size_t n, float t0,
                                       float t1, uint16_t magnitude, uint64_t counts[4],
                                       uint32_t *exceptions)
{
    uint16_t first[2], width[2];
    __m256i plus_first[2], minus_first[2], width_biased[2];
    const __m256i mask = _mm256_set1_epi16(0x7fff);
    const __m256i mag = _mm256_set1_epi16((short)magnitude);
    const __m256i neg_mag = _mm256_set1_epi16((short)(magnitude | 0x8000u));
    uint64_t c[4] = {0, 0, 0, 0};
    size_t i = 0, found = 0;

    if (!bcpm_bf16_code_range(t0, &first[0], &width[0]) ||
        !bcpm_bf16_code_range(t1, &first[1], &width[1]))
        return reference_tail(x, y, 0, n, t0, t1, magnitude, counts, exceptions, 0);
    for (int k = 0; k < 2; k++) {
        plus_first[k] = _mm256_set1_epi16((short)first[k]);
        minus_first[k] = _mm256_set1_epi16((short)(first[k] | 0x8000u));
        width_biased[k] = _mm256_set1_epi16((short)(width[k] ^ 0x8000u));
    }

    for (; i + 16 <= n; i += 16) {
        __m256i w = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i v = _mm256_loadu_si256((const __m256i *)(y + i));
        __m256i is_zero = _mm256_cmpeq_epi16(_mm256_and_si256(v, mask), _mm256_setzero_si256());
        /* With magnitude 0 (a group of zeros) a zero is a zero, not +-magnitude. */
        __m256i plus = _mm256_andnot_si256(is_zero, _mm256_cmpeq_epi16(v, mag));
        __m256i minus = _mm256_andnot_si256(is_zero, _mm256_cmpeq_epi16(v, neg_mag));
        __m256i bad = _mm256_or_si256(is_zero, _mm256_or_si256(plus, minus));
        uint32_t zeros, pluses, minuses, exceptional;

        /* bad starts as "a code at all" and becomes "not a code, or a code differs". */
        bad = _mm256_xor_si256(bad, _mm256_set1_epi16(-1));
        for (int k = 0; k < 2; k++) {
            bad = _mm256_or_si256(
                bad, _mm256_xor_si256(plus, avx2_in_range(w, plus_first[k], width_biased[k])));
            bad = _mm256_or_si256(
                bad, _mm256_xor_si256(minus, avx2_in_range(w, minus_first[k], width_biased[k])));
        }

        zeros = (uint32_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(is_zero)) / 2;
        pluses = (uint32_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(plus)) / 2;
        minuses = (uint32_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(minus)) / 2;
        c[0] += minuses;
        c[1] += zeros;
        c[2] += pluses;
        c[3] += 16 - zeros - pluses - minuses;
        exceptional = (uint32_t)_mm256_movemask_epi8(bad);
        while (exceptional) {
            unsigned bit = (unsigned)__builtin_ctz(exceptional);
            exceptions[found++] = (uint32_t)(i + bit / 2);
            exceptional &= ~(3u << bit);
        }
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    return reference_tail(x, y, i, n, t0, t1, magnitude, counts, exceptions, found);
}

static const struct bcpm_quant_kernels avx2_table = {
    .name = "avx2",
    .abs_sum_bf16 = avx2_abs_sum_bf16,
    .abs_sum_f16 = avx2_abs_sum_f16,
    .abs_sum_f32 = avx2_abs_sum_f32,
    .ternary_run_bf16 = avx2_ternary_run_bf16,
    .stored_codes_bf16 = avx2_stored_codes_bf16,
    .count_nonfinite_bf16 = avx2_count_nonfinite_bf16,
    .stats_bf16 = avx2_stats_bf16,
    .bf16_to_f32 = avx2_bf16_to_f32,
    .codes_threshold = avx2_codes_threshold,
    .codes_threshold2_bf16 = avx2_codes_threshold2_bf16,
    .reference_bf16 = avx2_reference_bf16,
};

/* ---- AVX-512 ---- */

AVX512 static double avx512_abs_sum_bf16(const uint16_t *x, size_t n)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    const __m512i mask = _mm512_set1_epi32(0x7fff);
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512 f = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_and_si512(wide, mask), 16));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(f)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                   _mm512_extractf64x4_pd(_mm512_castps_pd(f), 1))));
    }
    _mm512_storeu_pd(lane, lo);
    _mm512_storeu_pd(lane + 8, hi);
    for (size_t j = 0; i < n; i++, j++)
        lane[j] += (double)bcpm_bf16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

AVX512 static double avx512_abs_sum_f16(const uint16_t *x, size_t n)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    const __m256i mask = _mm256_set1_epi16(0x7fff);
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m256i raw = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), mask);
        __m512 f = _mm512_cvtph_ps(raw);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(f)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                   _mm512_extractf64x4_pd(_mm512_castps_pd(f), 1))));
    }
    _mm512_storeu_pd(lane, lo);
    _mm512_storeu_pd(lane + 8, hi);
    for (size_t j = 0; i < n; i++, j++)
        lane[j] += (double)bcpm_f16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

AVX512 static double avx512_abs_sum_f32(const float *x, size_t n)
{
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    double lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512 f = _mm512_abs_ps(_mm512_loadu_ps(x + i));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(f)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(
                                   _mm512_extractf64x4_pd(_mm512_castps_pd(f), 1))));
    }
    _mm512_storeu_pd(lane, lo);
    _mm512_storeu_pd(lane + 8, hi);
    for (size_t j = 0; i < n; i++, j++) {
        float v = x[i];
        lane[j] += (double)(v < 0 ? -v : v);
    }
    return reduce_lanes(lane);
}

AVX512 static size_t avx512_ternary_run_bf16(const uint16_t *x, size_t n, uint16_t magnitude,
                                             uint64_t *zeros, uint64_t *negatives)
{
    const __m512i mask = _mm512_set1_epi16(0x7fff);
    const __m512i mag = _mm512_set1_epi16((short)magnitude);
    const __m512i zero = _mm512_setzero_si512();
    uint64_t z = 0, neg = 0;
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        __m512i v = _mm512_loadu_si512((const void *)(x + i));
        __m512i m = _mm512_and_si512(v, mask);
        __mmask32 is_zero = _mm512_cmpeq_epi16_mask(m, zero);
        __mmask32 is_mag = _mm512_cmpeq_epi16_mask(m, mag);
        __mmask32 is_negative = _mm512_cmplt_epi16_mask(v, zero);

        if ((uint32_t)(is_zero | is_mag) != 0xffffffffu)
            break;
        z += (uint64_t)_mm_popcnt_u32((uint32_t)is_zero);
        neg += (uint64_t)_mm_popcnt_u32((uint32_t)(is_mag & is_negative));
    }
    *zeros += z;
    *negatives += neg;
    return i + bcpm_quant_kernels_scalar.ternary_run_bf16(x + i, n - i, magnitude, zeros,
                                                          negatives);
}

AVX512 static void avx512_stored_codes_bf16(const uint16_t *x, size_t n, uint16_t magnitude,
                                            int8_t *out, uint64_t counts[4])
{
    const __m512i mask = _mm512_set1_epi16(0x7fff);
    const __m512i mag = _mm512_set1_epi16((short)magnitude);
    const __m512i zero = _mm512_setzero_si512();
    uint64_t c[4] = {0, 0, 0, 0};
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        __m512i v = _mm512_loadu_si512((const void *)(x + i));
        __m512i key = _mm512_and_si512(v, mask);
        __mmask32 is_zero = _mm512_cmpeq_epi16_mask(key, zero);
        /* With magnitude 0 (a group of zeros) a zero is a zero, not +-magnitude. */
        __mmask32 is_mag = _mm512_cmpeq_epi16_mask(key, mag) & ~is_zero;
        __mmask32 negative = _mm512_cmplt_epi16_mask(v, zero);
        __m256i code = _mm256_set1_epi8(BCPM_STORED_OTHER);
        unsigned zeros, mags, negs;

        code = _mm256_mask_blend_epi8(is_zero, code, _mm256_setzero_si256());
        code = _mm256_mask_blend_epi8(is_mag & ~negative, code, _mm256_set1_epi8(1));
        code = _mm256_mask_blend_epi8(is_mag & negative, code, _mm256_set1_epi8(-1));
        _mm256_storeu_si256((__m256i *)(out + i), code);

        zeros = (unsigned)_mm_popcnt_u32((uint32_t)is_zero);
        mags = (unsigned)_mm_popcnt_u32((uint32_t)is_mag);
        negs = (unsigned)_mm_popcnt_u32((uint32_t)(is_mag & negative));
        c[0] += negs;
        c[1] += zeros;
        c[2] += mags - negs;
        c[3] += 32 - zeros - mags;
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    bcpm_quant_kernels_scalar.stored_codes_bf16(x + i, n - i, magnitude, out + i, counts);
}

AVX512 static uint64_t avx512_count_nonfinite_bf16(const uint16_t *x, size_t n)
{
    const __m512i exponent = _mm512_set1_epi16(0x7f80);
    uint64_t count = 0;
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        __m512i v = _mm512_and_si512(_mm512_loadu_si512((const void *)(x + i)), exponent);
        count += (uint64_t)_mm_popcnt_u32(_mm512_cmpeq_epi16_mask(v, exponent));
    }
    return count + bcpm_quant_kernels_scalar.count_nonfinite_bf16(x + i, n - i);
}

AVX512 static void avx512_stats_bf16(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    __m512d sum_lo = _mm512_setzero_pd(), sum_hi = _mm512_setzero_pd();
    __m512d sq_lo = _mm512_setzero_pd(), sq_hi = _mm512_setzero_pd();
    __m512 vmin = _mm512_set1_ps(INFINITY), vmax = _mm512_set1_ps(-INFINITY);
    const __m512i mask = _mm512_set1_epi32(0x7fff), exponent = _mm512_set1_epi32(0x7f80);
    const __m512i mantissa = _mm512_set1_epi32(0x7f);
    double sum[BCPM_SUM_LANES], squares[BCPM_SUM_LANES];
    uint64_t nan = 0, inf = 0, zeros = 0;
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512i raw = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512i key = _mm512_and_si512(raw, mask);
        __mmask16 nonfinite = _mm512_cmpeq_epi32_mask(_mm512_and_si512(key, exponent), exponent);
        __mmask16 is_nan = nonfinite & _mm512_test_epi32_mask(key, mantissa);
        __mmask16 is_zero = _mm512_cmpeq_epi32_mask(key, _mm512_setzero_si512());
        /* Finite values with -0 made +0; NaN and Inf lanes become +0 for the sums. */
        __mmask16 keep = (__mmask16)(~nonfinite & ~is_zero);
        __m512 v = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(keep, raw, 16));
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));

        vmin = _mm512_mask_min_ps(vmin, (__mmask16)~nonfinite, vmin, v);
        vmax = _mm512_mask_max_ps(vmax, (__mmask16)~nonfinite, vmax, v);
        sum_lo = _mm512_add_pd(sum_lo, lo);
        sum_hi = _mm512_add_pd(sum_hi, hi);
        sq_lo = _mm512_add_pd(sq_lo, _mm512_mul_pd(lo, lo));
        sq_hi = _mm512_add_pd(sq_hi, _mm512_mul_pd(hi, hi));
        nan += (uint64_t)_mm_popcnt_u32(is_nan);
        inf += (uint64_t)_mm_popcnt_u32((unsigned)(nonfinite & ~is_nan));
        zeros += (uint64_t)_mm_popcnt_u32(is_zero);
    }
    memset(out, 0, sizeof(*out));
    out->nan = nan;
    out->inf = inf;
    out->zeros = zeros;
    out->min = _mm512_reduce_min_ps(vmin);
    out->max = _mm512_reduce_max_ps(vmax);
    _mm512_storeu_pd(sum, sum_lo);
    _mm512_storeu_pd(sum + 8, sum_hi);
    _mm512_storeu_pd(squares, sq_lo);
    _mm512_storeu_pd(squares + 8, sq_hi);
    bcpm_quant_stats_finish(x, i, n, out, sum, squares);
}

AVX512 static void avx512_bf16_to_f32(const uint16_t *x, size_t n, float *out)
{
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
    }
    for (; i < n; i++)
        out[i] = bcpm_bf16_to_f32(x[i]);
}

/* Codes of 16 floats against +-t as 16 bytes. */
AVX512 static __m128i avx512_codes16(__m512 w, __m512 t, __m512 minus_t)
{
    __mmask16 gt = _mm512_cmp_ps_mask(w, t, _CMP_GT_OQ);
    __mmask16 lt = _mm512_cmp_ps_mask(w, minus_t, _CMP_LT_OQ);
    __m128i codes = _mm_mask_blend_epi8(gt, _mm_setzero_si128(), _mm_set1_epi8(1));

    return _mm_mask_blend_epi8(lt, codes, _mm_set1_epi8(-1));
}

AVX512 static void avx512_codes_threshold(const float *w, size_t n, float t, int8_t *out)
{
    const __m512 vt = _mm512_set1_ps(t), minus_t = _mm512_set1_ps(-t);
    size_t i = 0;

    for (; i + 16 <= n; i += 16)
        _mm_storeu_si128((__m128i *)(out + i), avx512_codes16(_mm512_loadu_ps(w + i), vt, minus_t));
    bcpm_quant_kernels_scalar.codes_threshold(w + i, n - i, t, out + i);
}

AVX512 static void avx512_codes_threshold2_bf16(const uint16_t *x, size_t n, float t0, float t1,
                                                int8_t *out0, int8_t *out1)
{
    const __m512 v0 = _mm512_set1_ps(t0), minus0 = _mm512_set1_ps(-t0);
    const __m512 v1 = _mm512_set1_ps(t1), minus1 = _mm512_set1_ps(-t1);
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        __m512 w = _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
        _mm_storeu_si128((__m128i *)(out0 + i), avx512_codes16(w, v0, minus0));
        _mm_storeu_si128((__m128i *)(out1 + i), avx512_codes16(w, v1, minus1));
    }
    bcpm_quant_kernels_scalar.codes_threshold2_bf16(x + i, n - i, t0, t1, out0 + i, out1 + i);
}

/* BF16 codes by integer ranges (bcpm_bf16_code_range), 32 elements at a time. */
AVX512 static size_t avx512_reference_bf16(const uint16_t *x, const uint16_t *y, size_t n,
                                           float t0, float t1, uint16_t magnitude,
                                           uint64_t counts[4], uint32_t *exceptions)
{
    uint16_t first[2], width[2];
    __m512i plus_first[2], minus_first[2], widths[2];
    const __m512i mask = _mm512_set1_epi16(0x7fff);
    const __m512i mag = _mm512_set1_epi16((short)magnitude);
    const __m512i neg_mag = _mm512_set1_epi16((short)(magnitude | 0x8000u));
    const __m512i zero = _mm512_setzero_si512();
    uint64_t c[4] = {0, 0, 0, 0};
    size_t i = 0, found = 0;

    if (!bcpm_bf16_code_range(t0, &first[0], &width[0]) ||
        !bcpm_bf16_code_range(t1, &first[1], &width[1]))
        return reference_tail(x, y, 0, n, t0, t1, magnitude, counts, exceptions, 0);
    for (int k = 0; k < 2; k++) {
        plus_first[k] = _mm512_set1_epi16((short)first[k]);
        minus_first[k] = _mm512_set1_epi16((short)(first[k] | 0x8000u));
        widths[k] = _mm512_set1_epi16((short)width[k]);
    }

    for (; i + 32 <= n; i += 32) {
        __m512i w = _mm512_loadu_si512((const void *)(x + i));
        __m512i v = _mm512_loadu_si512((const void *)(y + i));
        uint32_t is_zero = (uint32_t)_mm512_cmpeq_epi16_mask(_mm512_and_si512(v, mask), zero);
        /* With magnitude 0 (a group of zeros) a zero is a zero, not +-magnitude. */
        uint32_t plus = (uint32_t)_mm512_cmpeq_epi16_mask(v, mag) & ~is_zero;
        uint32_t minus = (uint32_t)_mm512_cmpeq_epi16_mask(v, neg_mag) & ~is_zero;
        uint32_t bad = ~(is_zero | plus | minus);
        uint32_t zeros, pluses, minuses;

        for (int k = 0; k < 2; k++) {
            uint32_t gt = (uint32_t)_mm512_cmplt_epu16_mask(_mm512_sub_epi16(w, plus_first[k]),
                                                            widths[k]);
            uint32_t lt = (uint32_t)_mm512_cmplt_epu16_mask(_mm512_sub_epi16(w, minus_first[k]),
                                                            widths[k]);
            bad |= (gt ^ plus) | (lt ^ minus);
        }

        zeros = (uint32_t)_mm_popcnt_u32(is_zero);
        pluses = (uint32_t)_mm_popcnt_u32(plus);
        minuses = (uint32_t)_mm_popcnt_u32(minus);
        c[0] += minuses;
        c[1] += zeros;
        c[2] += pluses;
        c[3] += 32 - zeros - pluses - minuses;
        found = append_exceptions(bad, i, exceptions, found);
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    return reference_tail(x, y, i, n, t0, t1, magnitude, counts, exceptions, found);
}

static const struct bcpm_quant_kernels avx512_table = {
    .name = "avx512",
    .abs_sum_bf16 = avx512_abs_sum_bf16,
    .abs_sum_f16 = avx512_abs_sum_f16,
    .abs_sum_f32 = avx512_abs_sum_f32,
    .ternary_run_bf16 = avx512_ternary_run_bf16,
    .stored_codes_bf16 = avx512_stored_codes_bf16,
    .count_nonfinite_bf16 = avx512_count_nonfinite_bf16,
    .stats_bf16 = avx512_stats_bf16,
    .bf16_to_f32 = avx512_bf16_to_f32,
    .codes_threshold = avx512_codes_threshold,
    .codes_threshold2_bf16 = avx512_codes_threshold2_bf16,
    .reference_bf16 = avx512_reference_bf16,
};

const struct bcpm_quant_kernels *bcpm_quant_kernels_avx2(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
        __builtin_cpu_supports("popcnt"))
        return &avx2_table;
    return NULL;
}

const struct bcpm_quant_kernels *bcpm_quant_kernels_avx512(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return &avx512_table;
    return NULL;
}

#else /* no x86 kernels in this build */

const struct bcpm_quant_kernels *bcpm_quant_kernels_avx2(void)
{
    return NULL;
}

const struct bcpm_quant_kernels *bcpm_quant_kernels_avx512(void)
{
    return NULL;
}

#endif
