/*
 * AVX2 and AVX-512 kernels for x86-64; see simd.h for what each computes.
 *
 * Functions carry target attributes so the rest of the build stays generic;
 * a table is offered only when __builtin_cpu_supports says the CPU has the
 * instruction set. Compilers without both features (or other targets) get
 * tables that are always NULL, and the scalar kernels run instead.
 */
#include "quant/simd.h"

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

/* Round 8 floats to bf16 (nearest even) and back; NaN lanes pass unchanged. */
AVX2 static __m256 avx2_round_bf16(__m256 q)
{
    __m256i bits = _mm256_castps_si256(q);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    __m256 rounded = _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xffff0000u)));
    return _mm256_blendv_ps(q, rounded, _mm256_cmp_ps(q, q, _CMP_ORD_Q));
}

AVX2 static void avx2_codes(const float *w, size_t n, float s, int8_t *out, int to_bf16)
{
    const __m256 vs = _mm256_set1_ps(s);
    const __m256 half = _mm256_set1_ps(0.5f);
    const __m256 minus_half = _mm256_set1_ps(-0.5f);
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        __m256 q = _mm256_div_ps(_mm256_loadu_ps(w + i), vs);
        __m256i gt, lt, codes, packed;
        int32_t low, high;

        if (to_bf16)
            q = avx2_round_bf16(q);
        /* A true comparison is all ones (-1), so lt - gt is the code. */
        gt = _mm256_castps_si256(_mm256_cmp_ps(q, half, _CMP_GT_OQ));
        lt = _mm256_castps_si256(_mm256_cmp_ps(q, minus_half, _CMP_LT_OQ));
        codes = _mm256_sub_epi32(lt, gt);

        /* Saturating packs work within 128-bit halves: codes 0-3 end up in the
           low half's first 4 bytes, codes 4-7 in the high half's. */
        packed = _mm256_packs_epi16(_mm256_packs_epi32(codes, codes),
                                    _mm256_packs_epi32(codes, codes));
        low = _mm_cvtsi128_si32(_mm256_castsi256_si128(packed));
        high = _mm_cvtsi128_si32(_mm256_extracti128_si256(packed, 1));
        memcpy(out + i, &low, 4);
        memcpy(out + i + 4, &high, 4);
    }
    if (to_bf16)
        bcpm_quant_kernels_scalar.codes_bf16(w + i, n - i, s, out + i);
    else
        bcpm_quant_kernels_scalar.codes_f32(w + i, n - i, s, out + i);
}

AVX2 static void avx2_codes_f32(const float *w, size_t n, float s, int8_t *out)
{
    avx2_codes(w, n, s, out, 0);
}

AVX2 static void avx2_codes_bf16(const float *w, size_t n, float s, int8_t *out)
{
    avx2_codes(w, n, s, out, 1);
}

static const struct bcpm_quant_kernels avx2_table = {
    .name = "avx2",
    .abs_sum_bf16 = avx2_abs_sum_bf16,
    .abs_sum_f16 = avx2_abs_sum_f16,
    .abs_sum_f32 = avx2_abs_sum_f32,
    .ternary_run_bf16 = avx2_ternary_run_bf16,
    .bf16_to_f32 = avx2_bf16_to_f32,
    .codes_f32 = avx2_codes_f32,
    .codes_bf16 = avx2_codes_bf16,
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

AVX512 static void avx512_codes(const float *w, size_t n, float s, int8_t *out, int to_bf16)
{
    const __m512 vs = _mm512_set1_ps(s);
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512 minus_half = _mm512_set1_ps(-0.5f);
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i minus_one = _mm512_set1_epi32(-1);
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m512 q = _mm512_div_ps(_mm512_loadu_ps(w + i), vs);
        __mmask16 gt, lt;
        __m512i codes;

        if (to_bf16) {
            /* Round to bf16, nearest even, leaving NaN lanes as they are. */
            __m512i bits = _mm512_castps_si512(q);
            __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), one);
            __m512i r = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
            __m512 rounded = _mm512_castsi512_ps(
                _mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
            q = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(q, q, _CMP_ORD_Q), q, rounded);
        }
        gt = _mm512_cmp_ps_mask(q, half, _CMP_GT_OQ);
        lt = _mm512_cmp_ps_mask(q, minus_half, _CMP_LT_OQ);
        codes = _mm512_mask_blend_epi32(gt, _mm512_setzero_si512(), one);
        codes = _mm512_mask_blend_epi32(lt, codes, minus_one);
        _mm_storeu_si128((__m128i *)(out + i), _mm512_cvtepi32_epi8(codes));
    }
    if (to_bf16)
        bcpm_quant_kernels_scalar.codes_bf16(w + i, n - i, s, out + i);
    else
        bcpm_quant_kernels_scalar.codes_f32(w + i, n - i, s, out + i);
}

AVX512 static void avx512_codes_f32(const float *w, size_t n, float s, int8_t *out)
{
    avx512_codes(w, n, s, out, 0);
}

AVX512 static void avx512_codes_bf16(const float *w, size_t n, float s, int8_t *out)
{
    avx512_codes(w, n, s, out, 1);
}

static const struct bcpm_quant_kernels avx512_table = {
    .name = "avx512",
    .abs_sum_bf16 = avx512_abs_sum_bf16,
    .abs_sum_f16 = avx512_abs_sum_f16,
    .abs_sum_f32 = avx512_abs_sum_f32,
    .ternary_run_bf16 = avx512_ternary_run_bf16,
    .bf16_to_f32 = avx512_bf16_to_f32,
    .codes_f32 = avx512_codes_f32,
    .codes_bf16 = avx512_codes_bf16,
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
