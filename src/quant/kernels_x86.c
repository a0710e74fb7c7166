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
#include <cpuid.h>
#include <immintrin.h>
#endif

#ifdef HAVE_X86_KERNELS

/* Intel and AMD CPUs with AVX2 also have FMA, a separate CPUID flag that avx2_stats_bf16 needs. */
#define AVX2 __attribute__((target("avx2,f16c,fma,popcnt")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,popcnt")))

/* Same pairwise reduction as the scalar kernels. */
static double reduce_lanes(double lane[BCPM_SUM_LANES])
{
    for (int width = BCPM_SUM_LANES / 2; width >= 1; width /= 2) {
        for (int j = 0; j < width; j++)
            lane[j] += lane[j + width];
    }
    return lane[0];
}

/* lane[2j] = even[j] and lane[2j + 1] = odd[j]: canonical lanes from split accumulators. */
static void interleave_lanes(const double even[8], const double odd[8],
                             double lane[BCPM_SUM_LANES])
{
    for (int j = 0; j < 8; j++) {
        lane[2 * j] = even[j];
        lane[2 * j + 1] = odd[j];
    }
}

/* The low `left` bits set, for a block of 32 elements of which `left` remain. */
static uint32_t tail_mask32(size_t left)
{
    return left >= 32 ? 0xffffffffu : (1u << left) - 1u;
}

/*
 * Fold the lanes of a vector of BF16 bit patterns into one integer extreme.
 * The stats kernels take the minimum and maximum from these extremes rather
 * than from float compares, because they need no widening.
 */
static int16_t signed_max_of(const int16_t *lane, int count)
{
    int16_t m = lane[0];

    for (int j = 1; j < count; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

static int16_t signed_min_of(const int16_t *lane, int count)
{
    int16_t m = lane[0];

    for (int j = 1; j < count; j++)
        m = lane[j] < m ? lane[j] : m;
    return m;
}

static uint16_t unsigned_max_of(const uint16_t *lane, int count)
{
    uint16_t m = lane[0];

    for (int j = 1; j < count; j++)
        m = lane[j] > m ? lane[j] : m;
    return m;
}

static uint16_t unsigned_min_of(const uint16_t *lane, int count)
{
    uint16_t m = lane[0];

    for (int j = 1; j < count; j++)
        m = lane[j] < m ? lane[j] : m;
    return m;
}

/*
 * Set the minimum and maximum of a run from two extremes of the raw bit
 * patterns of all its elements, NaN, Inf and -0 included (the one-pass
 * kernels). As int16, non-negative values sort by size above every negative
 * one, so the signed maximum is the largest value. As uint16, negative
 * values sort by magnitude above every non-negative one, so the unsigned
 * maximum is the smallest value.
 *
 * Returns 0, so that the careful pass runs, when the patterns do not give
 * the result. That is the case with a NaN or Inf (signed maximum above
 * 0x7f7f or unsigned maximum above 0xff7f), with no value whose sign bit is
 * clear, and with none whose sign bit is set. -0 counts as a value with the
 * sign bit set, because the sign bit is all these extremes see.
 */
static int stats_fast_min_max(int16_t signed_max, uint16_t unsigned_max,
                              struct bcpm_stats_block *out)
{
    if (signed_max < 0 || signed_max > 0x7f7f || unsigned_max < 0x8000u ||
        unsigned_max > 0xff7fu)
        return 0;
    out->max = bcpm_bf16_to_f32((uint16_t)signed_max);
    /* -0 as the largest "negative" means there is no negative value: the minimum is +0. */
    out->min = bcpm_bf16_to_f32(unsigned_max == 0x8000u ? 0 : unsigned_max);
    return 1;
}

/*
 * Set the minimum and maximum from all four extremes of the finite elements,
 * with -0 made +0 (the careful passes). These also cover runs of one sign.
 * With no non-negative value, the maximum is the negative value of least
 * magnitude, which is the unsigned minimum. With no negative value, the
 * minimum is the signed minimum. At least one finite element must have
 * been seen.
 */
static void stats_careful_min_max(int16_t signed_max, uint16_t unsigned_min,
                                  uint16_t unsigned_max, int16_t signed_min,
                                  struct bcpm_stats_block *out)
{
    out->max = bcpm_bf16_to_f32(signed_max >= 0 ? (uint16_t)signed_max : unsigned_min);
    out->min = bcpm_bf16_to_f32(unsigned_max >= 0x8000u ? unsigned_max : (uint16_t)signed_min);
}

/* ---- AVX2 ---- */

/*
 * 16 elements per step as 8 32-bit lanes, split into even and odd elements
 * as in avx512_abs_sum_bf16 (no widening shuffle). The low half of the even
 * floats contains canonical lanes 0, 2, 4, 6 and the high half lanes 8 to
 * 14. The odd floats follow the same pattern.
 */
AVX2 static double avx2_abs_sum_bf16(const uint16_t *x, size_t n)
{
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                      _mm256_setzero_pd()};
    const __m256i key_mask = _mm256_set1_epi16(0x7fff), high = _mm256_set1_epi32(-65536);
    double part[4][4], lane[BCPM_SUM_LANES];
    size_t i = 0;

    for (; i + 16 <= n; i += 16) {
        __m256i key = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(x + i)), key_mask);
        __m256 fe = _mm256_castsi256_ps(_mm256_slli_epi32(key, 16));
        __m256 fo = _mm256_castsi256_ps(_mm256_and_si256(key, high));

        acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(fe)));
        acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_castps256_ps128(fo)));
        acc[2] = _mm256_add_pd(acc[2], _mm256_cvtps_pd(_mm256_extractf128_ps(fe, 1)));
        acc[3] = _mm256_add_pd(acc[3], _mm256_cvtps_pd(_mm256_extractf128_ps(fo, 1)));
    }
    for (int r = 0; r < 4; r++)
        _mm256_storeu_pd(part[r], acc[r]);
    for (int j = 0; j < 4; j++) {
        lane[2 * j] = part[0][j];
        lane[2 * j + 1] = part[1][j];
        lane[8 + 2 * j] = part[2][j];
        lane[8 + 2 * j + 1] = part[3][j];
    }
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

/*
 * Add 16 elements to the sums. Even elements become floats by a shift and
 * odd ones by a mask, as in avx2_abs_sum_bf16. So acc[0] contains canonical
 * lanes 0, 2, 4, 6, acc[1] lanes 1, 3, 5, 7, acc[2] lanes 8 to 14 and
 * acc[3] lanes 9 to 15, for the sums and the squares alike.
 *
 * As in stats512_add, x*x is exact in double, so fma(x, x, acc) rounds as
 * acc + x*x does. Half the additions run as fma(x, 1, acc), which balances
 * the add and multiply pipes. Only a NaN could tell the two forms apart, and
 * no NaN reaches a sum that is kept.
 */
AVX2 static inline __attribute__((always_inline)) void
stats256_sums(__m256i v, __m256d sum[4], __m256d squares[4])
{
    const __m256d one = _mm256_set1_pd(1.0);
    __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(-65536)));
    __m256d d[4];

    d[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(even));
    d[1] = _mm256_cvtps_pd(_mm256_castps256_ps128(odd));
    d[2] = _mm256_cvtps_pd(_mm256_extractf128_ps(even, 1));
    d[3] = _mm256_cvtps_pd(_mm256_extractf128_ps(odd, 1));
    /* Written out rather than looped: a loop here keeps the accumulators in memory. */
    sum[0] = _mm256_add_pd(sum[0], d[0]);
    sum[1] = _mm256_fmadd_pd(d[1], one, sum[1]);
    sum[2] = _mm256_add_pd(sum[2], d[2]);
    sum[3] = _mm256_fmadd_pd(d[3], one, sum[3]);
    squares[0] = _mm256_fmadd_pd(d[0], d[0], squares[0]);
    squares[1] = _mm256_fmadd_pd(d[1], d[1], squares[1]);
    squares[2] = _mm256_fmadd_pd(d[2], d[2], squares[2]);
    squares[3] = _mm256_fmadd_pd(d[3], d[3], squares[3]);
}

/* Store the accumulators of stats256_sums in canonical lane order. */
AVX2 static void stats256_lanes(const __m256d acc[4], double lane[BCPM_SUM_LANES])
{
    double even[8], odd[8];

    _mm256_storeu_pd(even, acc[0]);
    _mm256_storeu_pd(odd, acc[1]);
    _mm256_storeu_pd(even + 4, acc[2]);
    _mm256_storeu_pd(odd + 4, acc[3]);
    interleave_lanes(even, odd, lane);
}

/*
 * Compute the statistics of a run in one pass with no per-block branch, as
 * stats512_fast does. Every element goes into the sums, and the minimum and
 * maximum come from the signed and unsigned maxima of the bit patterns (see
 * stats_fast_min_max). The last n mod 16 elements go through the scalar
 * kernel. Returns 0, with *out unspecified, when the run needs the careful
 * pass.
 */
AVX2 static int stats256_fast(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    __m256d sum[4], squares[4];
    __m256i signed_max = _mm256_set1_epi16(INT16_MIN), unsigned_max = _mm256_setzero_si256();
    const __m256i key_mask = _mm256_set1_epi16(0x7fff);
    double sum_lanes[BCPM_SUM_LANES], square_lanes[BCPM_SUM_LANES];
    int16_t smax[16];
    uint16_t umax[16];
    uint64_t zero_bits = 0;
    size_t i = 0;

    for (int r = 0; r < 4; r++) {
        sum[r] = _mm256_setzero_pd();
        squares[r] = _mm256_setzero_pd();
    }
    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i is_zero = _mm256_cmpeq_epi16(_mm256_and_si256(v, key_mask),
                                             _mm256_setzero_si256());

        /* Two mask bits per element: halved after the loop. */
        zero_bits += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(is_zero));
        signed_max = _mm256_max_epi16(signed_max, v);
        unsigned_max = _mm256_max_epu16(unsigned_max, v);
        stats256_sums(v, sum, squares);
    }

    memset(out, 0, sizeof(*out));
    _mm256_storeu_si256((__m256i *)smax, signed_max);
    _mm256_storeu_si256((__m256i *)umax, unsigned_max);
    if (!stats_fast_min_max(signed_max_of(smax, 16), unsigned_max_of(umax, 16), out))
        return 0;
    out->zeros = zero_bits / 2;
    stats256_lanes(sum, sum_lanes);
    stats256_lanes(squares, square_lanes);
    bcpm_quant_stats_finish(x, i, n, out, sum_lanes, square_lanes);
    return 1;
}

/*
 * Prepare a block of 16 that contains NaN or Inf for the sums and the
 * extremes. `nonfinite` is set in their lanes, and `key` is the block with
 * the sign bits cleared. Adds the NaN to counts[0] and the Inf to
 * counts[1], and sets their lanes to +0 in *sums and to a copy of a finite
 * element in *extremes. Returns 0 when no element is finite.
 */
AVX2 static int stats256_nonfinite(const uint16_t *x, __m256i key, __m256i nonfinite,
                                   uint64_t counts[2], __m256i *sums, __m256i *extremes)
{
    unsigned bad = (unsigned)_mm256_movemask_epi8(nonfinite);
    unsigned nans = (unsigned)_mm256_movemask_epi8(
        _mm256_cmpgt_epi16(key, _mm256_set1_epi16(0x7f80)));
    uint16_t fill;

    counts[0] += (uint64_t)_mm_popcnt_u32(nans) / 2;
    counts[1] += (uint64_t)_mm_popcnt_u32(bad & ~nans) / 2;
    if (bad == 0xffffffffu)
        return 0;
    fill = x[__builtin_ctz(~bad) / 2];
    if ((fill & 0x7fffu) == 0)
        fill = 0;
    *sums = _mm256_andnot_si256(nonfinite, *sums);
    *extremes = _mm256_blendv_epi8(*sums, _mm256_set1_epi16((short)fill), nonfinite);
    return 1;
}

/*
 * Compute the statistics 16 elements at a time. stats256_fast handles
 * nearly every run, and this careful pass takes the runs it rejects, as in
 * avx512_stats_bf16. It leaves NaN and Inf out block by block and keeps all
 * four integer extremes of the bit patterns (-0 made +0). The last n mod 16
 * elements go through the scalar kernel.
 */
AVX2 static void avx2_stats_bf16(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    __m256d sum[4], squares[4];
    __m256i signed_max = _mm256_set1_epi16(INT16_MIN), unsigned_min = _mm256_set1_epi16(-1);
    __m256i unsigned_max = _mm256_setzero_si256(), signed_min = _mm256_set1_epi16(INT16_MAX);
    const __m256i key_mask = _mm256_set1_epi16(0x7fff);
    const __m256i largest_finite = _mm256_set1_epi16(0x7f7f);
    double sum_lanes[BCPM_SUM_LANES], square_lanes[BCPM_SUM_LANES];
    uint64_t counts[2] = {0, 0}, zero_bits = 0;
    size_t i = 0;

    if (stats256_fast(x, n, out))
        return;
    for (int r = 0; r < 4; r++) {
        sum[r] = _mm256_setzero_pd();
        squares[r] = _mm256_setzero_pd();
    }
    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i key = _mm256_and_si256(v, key_mask);
        __m256i is_zero = _mm256_cmpeq_epi16(key, _mm256_setzero_si256());
        __m256i nonfinite = _mm256_cmpgt_epi16(key, largest_finite);
        __m256i sums = _mm256_andnot_si256(is_zero, v), extremes = sums;

        zero_bits += (uint64_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(is_zero));
        if (__builtin_expect(!_mm256_testz_si256(nonfinite, nonfinite), 0) &&
            !stats256_nonfinite(x + i, key, nonfinite, counts, &sums, &extremes))
            continue;
        signed_max = _mm256_max_epi16(signed_max, extremes);
        unsigned_min = _mm256_min_epu16(unsigned_min, extremes);
        unsigned_max = _mm256_max_epu16(unsigned_max, extremes);
        signed_min = _mm256_min_epi16(signed_min, extremes);
        stats256_sums(sums, sum, squares);
    }

    memset(out, 0, sizeof(*out));
    out->nan = counts[0];
    out->inf = counts[1];
    out->zeros = zero_bits / 2;
    out->min = INFINITY;
    out->max = -INFINITY;
    if (out->nan + out->inf < i) {
        int16_t smax[16], smin[16];
        uint16_t umin[16], umax[16];

        _mm256_storeu_si256((__m256i *)smax, signed_max);
        _mm256_storeu_si256((__m256i *)umin, unsigned_min);
        _mm256_storeu_si256((__m256i *)umax, unsigned_max);
        _mm256_storeu_si256((__m256i *)smin, signed_min);
        stats_careful_min_max(signed_max_of(smax, 16), unsigned_min_of(umin, 16),
                              unsigned_max_of(umax, 16), signed_min_of(smin, 16), out);
    }
    stats256_lanes(sum, sum_lanes);
    stats256_lanes(squares, square_lanes);
    bcpm_quant_stats_finish(x, i, n, out, sum_lanes, square_lanes);
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

/* Sum of the 16 16-bit counters of v. */
AVX2 static uint64_t avx2_sum_u16_lanes(__m256i v)
{
    __m256i pairs = _mm256_madd_epi16(v, _mm256_set1_epi16(1));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));

    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return (uint64_t)(uint32_t)_mm_cvtsi128_si32(s);
}

/*
 * Count the codes and list the exceptions of a block of 16 that contains an
 * exception, exactly. `bad` is the movemask of the exceptions (two bits per element).
 */
AVX2 static size_t avx2_ref_block(__m256i v, __m256i stored_zero, uint32_t bad,
                                  uint16_t magnitude, int magnitude_ok, size_t base, uint64_t c[4],
                                  uint32_t *exceptions, size_t found)
{
    uint32_t zeros = (uint32_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(stored_zero)) / 2;
    uint32_t plus = 0, minus = 0;

    if (magnitude_ok) {
        plus = (uint32_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(
                   _mm256_cmpeq_epi16(v, _mm256_set1_epi16((short)magnitude))));
        minus = (uint32_t)_mm_popcnt_u32((unsigned)_mm256_movemask_epi8(
                    _mm256_cmpeq_epi16(v, _mm256_set1_epi16((short)(magnitude | 0x8000u)))));
        plus /= 2;
        minus /= 2;
    }
    c[0] += minus;
    c[1] += zeros;
    c[2] += plus;
    c[3] += 16 - zeros - plus - minus;
    while (bad) {
        unsigned bit = (unsigned)__builtin_ctz(bad);
        exceptions[found++] = (uint32_t)(base + bit / 2);
        bad &= ~(3u << bit);
    }
    return found;
}

/*
 * The test of avx512_reference_bf16 (see there), 16 elements at a time.
 * Every key is at most 0x7fff and every bound at least 0, so signed
 * compares serve. A block without exceptions is counted with 16-bit lane
 * counters, flushed before they can overflow.
 */
AVX2 static size_t avx2_reference_bf16(const uint16_t *x, const uint16_t *y, size_t n, float t0,
                                       float t1, uint16_t magnitude, uint64_t counts[4],
                                       uint32_t *exceptions)
{
    enum { FLUSH_BLOCKS = 32768 };
    uint16_t first[2], width[2], f_lo, f_hi;
    const int magnitude_ok = magnitude != 0 && magnitude < 0x8000u;
    const __m256i key_mask = _mm256_set1_epi16(0x7fff), sign = _mm256_set1_epi16((short)0x8000);
    const __m256i mag = _mm256_set1_epi16((short)magnitude), inf = _mm256_set1_epi16(0x7f80);
    const __m256i zero = _mm256_setzero_si256();
    __m256i below_lo, below_hi;
    uint64_t c[4] = {0, 0, 0, 0}, good_blocks = 0, zeros = 0, minuses = 0;
    size_t i = 0, found = 0;

    if (!bcpm_bf16_code_range(t0, &first[0], &width[0]) ||
        !bcpm_bf16_code_range(t1, &first[1], &width[1]))
        return reference_tail(x, y, 0, n, t0, t1, magnitude, counts, exceptions, 0);
    f_lo = first[0] < first[1] ? first[0] : first[1];
    f_hi = first[0] < first[1] ? first[1] : first[0];
    /* key > below  <=>  key >= first; 0x7fff makes the first range empty. */
    below_lo = _mm256_set1_epi16((short)(f_lo - 1));
    below_hi = _mm256_set1_epi16(magnitude_ok ? (short)(f_hi - 1) : 0x7fff);

    while (i + 16 <= n) {
        size_t end = n - i < 16 * (size_t)FLUSH_BLOCKS ? n : i + 16 * (size_t)FLUSH_BLOCKS;
        __m256i zero_count = zero, minus_count = zero;
        uint64_t blocks = 0;

        for (; i + 16 <= end; i += 16) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(x + i));
            __m256i v = _mm256_loadu_si256((const __m256i *)(y + i));
            __m256i key = _mm256_and_si256(w, key_mask);
            __m256i nan = _mm256_cmpgt_epi16(key, inf);
            __m256i both = _mm256_andnot_si256(nan, _mm256_cmpgt_epi16(key, below_hi));
            __m256i either = _mm256_andnot_si256(nan, _mm256_cmpgt_epi16(key, below_lo));
            __m256i relative = _mm256_xor_si256(v, _mm256_and_si256(w, sign));
            __m256i stored_zero = _mm256_cmpeq_epi16(_mm256_and_si256(v, key_mask), zero);
            __m256i good = _mm256_or_si256(_mm256_and_si256(both, _mm256_cmpeq_epi16(relative, mag)),
                                           _mm256_andnot_si256(either, stored_zero));
            uint32_t bad = ~(uint32_t)_mm256_movemask_epi8(good);

            if (__builtin_expect(bad != 0, 0)) {
                found = avx2_ref_block(v, stored_zero, bad, magnitude, magnitude_ok, i, c,
                                       exceptions, found);
                continue;
            }
            blocks++;
            zero_count = _mm256_sub_epi16(zero_count, stored_zero);
            minus_count = _mm256_sub_epi16(minus_count,
                                           _mm256_andnot_si256(stored_zero, _mm256_srai_epi16(v, 15)));
        }
        good_blocks += blocks;
        zeros += avx2_sum_u16_lanes(zero_count);
        minuses += avx2_sum_u16_lanes(minus_count);
    }
    c[0] += minuses;
    c[1] += zeros;
    c[2] += 16 * good_blocks - zeros - minuses;
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

/*
 * 32 elements per step, read as 16 32-bit lanes: the even elements become
 * floats by a shift, the odd ones by a mask, with no shuffle. even[j] is
 * canonical lane 2j and odd[j] lane 2j + 1; elements 2j and 16 + 2j both go
 * to lane 2j, so the low half is added before the high half. A short tail is
 * read with a masked load: its missing elements add +0.0 to accumulators
 * that are never -0.0, which changes nothing.
 *
 * The additions run as fma(v, 1.0, acc), which rounds acc + v once, exactly
 * as an addition does, but on the multiply pipes, which the conversions leave
 * idle. Only a NaN could tell the two apart (which NaN operand propagates),
 * so a block holding a NaN takes plain additions.
 */
AVX512 static double avx512_abs_sum_bf16(const uint16_t *x, size_t n)
{
    __m512d even = _mm512_setzero_pd(), odd = _mm512_setzero_pd();
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512i key_mask = _mm512_set1_epi16(0x7fff), high_key = _mm512_set1_epi32(-65536);
    const __m512i inf = _mm512_set1_epi16(0x7f80);
    double e[8], o[8], lane[BCPM_SUM_LANES];

    for (size_t i = 0; i < n; i += 32) {
        __m512i v = i + 32 <= n ? _mm512_loadu_si512((const void *)(x + i))
                                : _mm512_maskz_loadu_epi16(tail_mask32(n - i), x + i);
        __m512i key = _mm512_and_si512(v, key_mask);
        __m512 fe = _mm512_castsi512_ps(_mm512_slli_epi32(key, 16));
        __m512 fo = _mm512_castsi512_ps(_mm512_and_si512(key, high_key));
        __m512d e0 = _mm512_cvtps_pd(_mm512_castps512_ps256(fe));
        __m512d o0 = _mm512_cvtps_pd(_mm512_castps512_ps256(fo));
        __m512d e1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(fe, 1));
        __m512d o1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(fo, 1));

        if (__builtin_expect(_mm512_cmpgt_epu16_mask(key, inf) != 0, 0)) {
            even = _mm512_add_pd(_mm512_add_pd(even, e0), e1);
            odd = _mm512_add_pd(_mm512_add_pd(odd, o0), o1);
        } else {
            even = _mm512_fmadd_pd(e1, one, _mm512_fmadd_pd(e0, one, even));
            odd = _mm512_fmadd_pd(o1, one, _mm512_fmadd_pd(o0, one, odd));
        }
    }
    _mm512_storeu_pd(e, even);
    _mm512_storeu_pd(o, odd);
    interleave_lanes(e, o, lane);
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

/* Running state of avx512_stats_bf16. */
struct stats512 {
    __m512d sum_even, sum_odd, sq_even, sq_odd;
    __m512i signed_max, unsigned_min, unsigned_max, signed_min;
};

/*
 * Add 32 elements: `sums` contains them for the sums (left-out lanes +0, which
 * no sum notices), `extremes` for the minimum and maximum (left-out lanes
 * repeat a kept element). Element x*x is exact in double, so fma(x, x, acc)
 * rounds exactly as acc + x*x. No NaN reaches the sums, so fma(x, 1, acc)
 * may replace acc + x where that balances the load on the FMA and add units.
 */
AVX512 static inline __attribute__((always_inline)) void
stats512_add(struct stats512 *s, __m512i sums, __m512i extremes)
{
    const __m512d one = _mm512_set1_pd(1.0);
    __m512 fe = _mm512_castsi512_ps(_mm512_slli_epi32(sums, 16));
    __m512 fo = _mm512_castsi512_ps(_mm512_and_si512(sums, _mm512_set1_epi32(-65536)));
    __m512d e0 = _mm512_cvtps_pd(_mm512_castps512_ps256(fe));
    __m512d o0 = _mm512_cvtps_pd(_mm512_castps512_ps256(fo));
    __m512d e1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(fe, 1));
    __m512d o1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(fo, 1));

    s->signed_max = _mm512_max_epi16(s->signed_max, extremes);
    s->unsigned_min = _mm512_min_epu16(s->unsigned_min, extremes);
    s->unsigned_max = _mm512_max_epu16(s->unsigned_max, extremes);
    s->signed_min = _mm512_min_epi16(s->signed_min, extremes);
    s->sum_even = _mm512_add_pd(_mm512_add_pd(s->sum_even, e0), e1);
    s->sum_odd = _mm512_fmadd_pd(o1, one, _mm512_fmadd_pd(o0, one, s->sum_odd));
    s->sq_even = _mm512_fmadd_pd(e1, e1, _mm512_fmadd_pd(e0, e0, s->sq_even));
    s->sq_odd = _mm512_fmadd_pd(o1, o1, _mm512_fmadd_pd(o0, o0, s->sq_odd));
}

/*
 * The rare block: NaN or Inf among its elements, or fewer than 32 left
 * (`valid`). Counts NaN, Inf and zeros into counts[0..2] and prepares the
 * rest for stats512_add. Returns 0 when no element is left to add.
 */
AVX512 static int stats512_partial(const uint16_t *x, __m512i v, __mmask32 valid,
                                   uint64_t counts[3], __m512i *sums, __m512i *extremes)
{
    const __m512i key_mask = _mm512_set1_epi16(0x7fff);
    __mmask32 nonfinite = _mm512_cmpgt_epu16_mask(_mm512_and_si512(v, key_mask),
                                                  _mm512_set1_epi16(0x7f7f)) & valid;
    __mmask32 nans = nonfinite & _mm512_test_epi16_mask(v, _mm512_set1_epi16(0x7f));
    __mmask32 nonzero = _mm512_test_epi16_mask(v, key_mask);
    __mmask32 keep = valid & ~nonfinite;
    uint16_t fill;

    counts[0] += (uint64_t)_mm_popcnt_u32((uint32_t)nans);
    counts[1] += (uint64_t)_mm_popcnt_u32((uint32_t)(nonfinite & ~nans));
    counts[2] += (uint64_t)_mm_popcnt_u32((uint32_t)(valid & ~nonzero));
    if (keep == 0)
        return 0;
    fill = x[__builtin_ctz((uint32_t)keep)];
    if ((fill & 0x7fffu) == 0)
        fill = 0;
    *sums = _mm512_maskz_mov_epi16(keep & nonzero, v);
    *extremes = _mm512_mask_mov_epi16(_mm512_set1_epi16((short)fill), keep, *sums);
    return 1;
}

/*
 * The common case of avx512_stats_bf16, in one pass with no per-block
 * branch. Every element, NaN and Inf included, goes into the sums, and the
 * minimum and maximum come from the signed and unsigned maxima of the bit
 * patterns (see stats_fast_min_max). Returns 0, with *out unspecified, when
 * the run needs the careful pass.
 */
AVX512 static int stats512_fast(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    __m512d sum_even = _mm512_setzero_pd(), sum_odd = _mm512_setzero_pd();
    __m512d sq_even = _mm512_setzero_pd(), sq_odd = _mm512_setzero_pd();
    __m512i signed_max = _mm512_set1_epi16(INT16_MIN), unsigned_max = _mm512_setzero_si512();
    const __m512i key_mask = _mm512_set1_epi16(0x7fff);
    const __m512d one = _mm512_set1_pd(1.0);
    double e[8], o[8], sum[BCPM_SUM_LANES], squares[BCPM_SUM_LANES];
    int16_t smax[32];
    uint16_t umax[32];
    uint64_t zeros = 0;

    for (size_t i = 0; i < n; i += 32) {
        const __m256i high = _mm256_set1_epi32(-65536);
        __mmask32 valid = 0xffffffffu;
        __m512i v;
        __m256i low_half, high_half;
        __m512d e0, o0, e1, o1;

        if (__builtin_expect(i + 32 <= n, 1)) {
            v = _mm512_loadu_si512((const void *)(x + i));
            low_half = _mm256_loadu_si256((const __m256i *)(x + i));
            high_half = _mm256_loadu_si256((const __m256i *)(x + i + 16));
            zeros += (uint64_t)_mm_popcnt_u32((uint32_t)_mm512_testn_epi16_mask(v, key_mask));
        } else {
            /* Missing lanes repeat x[i] for the extremes and are +0 for the sums. */
            valid = tail_mask32(n - i);
            v = _mm512_mask_loadu_epi16(_mm512_set1_epi16((short)x[i]), valid, x + i);
            low_half = _mm512_castsi512_si256(_mm512_maskz_mov_epi16(valid, v));
            high_half = _mm512_extracti64x4_epi64(_mm512_maskz_mov_epi16(valid, v), 1);
            zeros += (uint64_t)_mm_popcnt_u32(
                (uint32_t)(_mm512_testn_epi16_mask(v, key_mask) & valid));
        }
        signed_max = _mm512_max_epi16(signed_max, v);
        unsigned_max = _mm512_max_epu16(unsigned_max, v);

        /* Even elements are the low halves of 32-bit lanes, odd ones the high halves. */
        e0 = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(low_half, 16)));
        o0 = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_and_si256(low_half, high)));
        e1 = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_slli_epi32(high_half, 16)));
        o1 = _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_and_si256(high_half, high)));
        /* x*x is exact in double, so fma(x, x, acc) rounds as acc + x*x does. */
        sum_even = _mm512_add_pd(_mm512_add_pd(sum_even, e0), e1);
        sum_odd = _mm512_fmadd_pd(o1, one, _mm512_fmadd_pd(o0, one, sum_odd));
        sq_even = _mm512_fmadd_pd(e1, e1, _mm512_fmadd_pd(e0, e0, sq_even));
        sq_odd = _mm512_fmadd_pd(o1, o1, _mm512_fmadd_pd(o0, o0, sq_odd));
    }

    memset(out, 0, sizeof(*out));
    _mm512_storeu_si512((void *)smax, signed_max);
    _mm512_storeu_si512((void *)umax, unsigned_max);
    if (!stats_fast_min_max(signed_max_of(smax, 32), unsigned_max_of(umax, 32), out))
        return 0;
    out->zeros = zeros;
    _mm512_storeu_pd(e, sum_even);
    _mm512_storeu_pd(o, sum_odd);
    interleave_lanes(e, o, sum);
    _mm512_storeu_pd(e, sq_even);
    _mm512_storeu_pd(o, sq_odd);
    interleave_lanes(e, o, squares);
    bcpm_quant_stats_finish(x, n, n, out, sum, squares);
    return 1;
}

/*
 * Statistics 32 elements at a time. stats512_fast handles nearly every run,
 * and this careful pass takes the runs it rejects. It leaves NaN and Inf out
 * block by block. It also keeps all four integer extremes of the bit patterns
 * (-0 made +0), so that runs of one sign get their minimum and maximum too.
 */
AVX512 static void avx512_stats_bf16(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    struct stats512 s = {
        .sum_even = _mm512_setzero_pd(), .sum_odd = _mm512_setzero_pd(),
        .sq_even = _mm512_setzero_pd(), .sq_odd = _mm512_setzero_pd(),
        .signed_max = _mm512_set1_epi16(INT16_MIN), .unsigned_min = _mm512_set1_epi16(-1),
        .unsigned_max = _mm512_setzero_si512(), .signed_min = _mm512_set1_epi16(INT16_MAX),
    };
    const __m512i key_mask = _mm512_set1_epi16(0x7fff);
    const __m512i largest_finite = _mm512_set1_epi16(0x7f7f);
    double e[8], o[8], sum[BCPM_SUM_LANES], squares[BCPM_SUM_LANES];
    uint64_t counts[3] = {0, 0, 0}, zeros = 0;
    __m512i sums, extremes;
    int16_t smax[32], smin[32];
    uint16_t umin[32], umax[32];
    size_t i = 0;

    if (stats512_fast(x, n, out))
        return;
    for (; i + 32 <= n; i += 32) {
        __m512i v = _mm512_loadu_si512((const void *)(x + i));
        __mmask32 nonzero = _mm512_test_epi16_mask(v, key_mask);

        if (__builtin_expect(
                _mm512_cmpgt_epu16_mask(_mm512_and_si512(v, key_mask), largest_finite) != 0, 0)) {
            if (stats512_partial(x + i, v, 0xffffffffu, counts, &sums, &extremes))
                stats512_add(&s, sums, extremes);
        } else {
            __m512i kept = _mm512_maskz_mov_epi16(nonzero, v);
            zeros += (uint64_t)_mm_popcnt_u32((uint32_t)~nonzero);
            stats512_add(&s, kept, kept);
        }
    }
    if (i < n && stats512_partial(x + i, _mm512_maskz_loadu_epi16(tail_mask32(n - i), x + i),
                                  tail_mask32(n - i), counts, &sums, &extremes))
        stats512_add(&s, sums, extremes);

    memset(out, 0, sizeof(*out));
    out->nan = counts[0];
    out->inf = counts[1];
    out->zeros = counts[2] + zeros;
    out->min = INFINITY;
    out->max = -INFINITY;
    if (out->nan + out->inf < n) {
        _mm512_storeu_si512((void *)smax, s.signed_max);
        _mm512_storeu_si512((void *)umin, s.unsigned_min);
        _mm512_storeu_si512((void *)umax, s.unsigned_max);
        _mm512_storeu_si512((void *)smin, s.signed_min);
        stats_careful_min_max(signed_max_of(smax, 32), unsigned_min_of(umin, 32),
                              unsigned_max_of(umax, 32), signed_min_of(smin, 32), out);
    }
    _mm512_storeu_pd(e, s.sum_even);
    _mm512_storeu_pd(o, s.sum_odd);
    interleave_lanes(e, o, sum);
    _mm512_storeu_pd(e, s.sq_even);
    _mm512_storeu_pd(o, s.sq_odd);
    interleave_lanes(e, o, squares);
    bcpm_quant_stats_finish(x, n, n, out, sum, squares);
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

/*
 * Count the codes and list the exceptions of one block of 32 elements exactly
 * (only the lanes set in `valid`). Serves the blocks with an exception and the tail.
 * `good` marks the elements known to be no exception.
 */
AVX512 static size_t ref512_block(__m512i y, __mmask32 good, __mmask32 valid, uint16_t magnitude,
                                  int magnitude_ok, size_t base, uint64_t c[4],
                                  uint32_t *exceptions, size_t found)
{
    uint32_t zeros = (uint32_t)(_mm512_testn_epi16_mask(y, _mm512_set1_epi16(0x7fff)) & valid);
    uint32_t plus = 0, minus = 0;

    if (magnitude_ok) {
        plus = (uint32_t)(_mm512_cmpeq_epi16_mask(y, _mm512_set1_epi16((short)magnitude)) &
                          valid);
        minus = (uint32_t)(_mm512_cmpeq_epi16_mask(
                               y, _mm512_set1_epi16((short)(magnitude | 0x8000u))) & valid);
    }
    c[0] += (uint64_t)_mm_popcnt_u32(minus);
    c[1] += (uint64_t)_mm_popcnt_u32(zeros);
    c[2] += (uint64_t)_mm_popcnt_u32(plus);
    c[3] += (uint64_t)_mm_popcnt_u32((uint32_t)valid & ~(zeros | plus | minus));
    return append_exceptions((uint32_t)(valid & ~good), base, exceptions, found);
}

/* Sum of the 32 16-bit counters of v. */
AVX512 static uint64_t sum_u16_lanes(__m512i v)
{
    return (uint64_t)(uint32_t)_mm512_reduce_add_epi32(
        _mm512_madd_epi16(v, _mm512_set1_epi16(1)));
}

/*
 * Let F_lo <= F_hi be the two `first` of bcpm_bf16_code_range and k the
 * latent value with its sign cleared. For k in [F_hi, 0x7f80] both codes by
 * threshold are the sign of x. For k in [F_lo, F_hi) they differ, so the
 * element is an exception whatever is stored. Otherwise (k below F_lo, or
 * NaN) both are 0. An element is therefore no exception exactly when
 *   k is in [F_hi, 0x7f80] and y == magnitude with the sign of x, or
 *   k is outside [F_lo, 0x7f80] and y is +-0.
 * With a magnitude of 0 or with the sign bit set, no stored value has code
 * +-1: the first range is then made empty, which turns those elements into
 * exceptions. A block of 32 where every element passes (nearly all of them
 * on a correct export) holds only +-magnitude and +-0, so its codes are
 * counted with 16-bit lane counters, flushed before they can overflow.
 */
AVX512 static size_t avx512_reference_bf16(const uint16_t *x, const uint16_t *y, size_t n,
                                           float t0, float t1, uint16_t magnitude,
                                           uint64_t counts[4], uint32_t *exceptions)
{
    /* Blocks per flush: a lane counter grows by at most 1 per block. */
    enum { FLUSH_BLOCKS = 32768 };
    uint16_t first[2], width[2], f_lo, f_hi;
    const int magnitude_ok = magnitude != 0 && magnitude < 0x8000u;
    const __m512i key_mask = _mm512_set1_epi16(0x7fff), sign = _mm512_set1_epi16((short)0x8000);
    const __m512i mag = _mm512_set1_epi16((short)magnitude), minus_one = _mm512_set1_epi16(-1);
    __m512i lo_first, lo_width, hi_first, hi_width;
    uint64_t c[4] = {0, 0, 0, 0}, good_blocks = 0, zeros = 0, minuses = 0;
    size_t i = 0, found = 0;

    if (!bcpm_bf16_code_range(t0, &first[0], &width[0]) ||
        !bcpm_bf16_code_range(t1, &first[1], &width[1]))
        return reference_tail(x, y, 0, n, t0, t1, magnitude, counts, exceptions, 0);
    f_lo = first[0] < first[1] ? first[0] : first[1];
    f_hi = first[0] < first[1] ? first[1] : first[0];
    lo_first = _mm512_set1_epi16((short)f_lo);
    lo_width = _mm512_set1_epi16((short)(0x7f81u - f_lo));
    hi_first = _mm512_set1_epi16((short)f_hi);
    hi_width = _mm512_set1_epi16(magnitude_ok ? (short)(0x7f81u - f_hi) : 0);

    while (i + 32 <= n) {
        size_t end = n - i < 32 * (size_t)FLUSH_BLOCKS ? n : i + 32 * (size_t)FLUSH_BLOCKS;
        __m512i zero_count = _mm512_setzero_si512(), minus_count = _mm512_setzero_si512();
        uint64_t blocks = 0;

        for (; i + 32 <= end; i += 32) {
            __m512i w = _mm512_loadu_si512((const void *)(x + i));
            __m512i v = _mm512_loadu_si512((const void *)(y + i));
            __m512i key = _mm512_and_si512(w, key_mask);
            __mmask32 both = _mm512_cmplt_epu16_mask(_mm512_sub_epi16(key, hi_first), hi_width);
            __mmask32 either = _mm512_cmplt_epu16_mask(_mm512_sub_epi16(key, lo_first),
                                                       lo_width);
            /* y with its sign flipped where x is negative: magnitude when it matches. */
            __m512i relative = _mm512_ternarylogic_epi32(v, w, sign, 0x78);
            __mmask32 stored_zero = _mm512_testn_epi16_mask(v, key_mask);
            __mmask32 good = _mm512_mask_cmpeq_epi16_mask(both, relative, mag) |
                             (stored_zero & ~either);

            if (__builtin_expect((uint32_t)good != 0xffffffffu, 0)) {
                found = ref512_block(v, good, 0xffffffffu, magnitude, magnitude_ok, i, c,
                                     exceptions, found);
                continue;
            }
            blocks++;
            zero_count = _mm512_mask_sub_epi16(zero_count, stored_zero, zero_count, minus_one);
            minus_count = _mm512_mask_sub_epi16(minus_count, (__mmask32)~stored_zero,
                                                minus_count, _mm512_srai_epi16(v, 15));
        }
        good_blocks += blocks;
        zeros += sum_u16_lanes(zero_count);
        minuses += sum_u16_lanes(minus_count);
    }
    c[0] += minuses;
    c[1] += zeros;
    c[2] += 32 * good_blocks - zeros - minuses;
    if (i < n) {
        __mmask32 valid = tail_mask32(n - i);
        __m512i w = _mm512_maskz_loadu_epi16(valid, x + i);
        __m512i v = _mm512_maskz_loadu_epi16(valid, y + i);
        __m512i key = _mm512_and_si512(w, key_mask);
        __mmask32 both = _mm512_cmplt_epu16_mask(_mm512_sub_epi16(key, hi_first), hi_width);
        __mmask32 either = _mm512_cmplt_epu16_mask(_mm512_sub_epi16(key, lo_first), lo_width);
        __m512i relative = _mm512_ternarylogic_epi32(v, w, sign, 0x78);
        __mmask32 good = _mm512_mask_cmpeq_epi16_mask(both, relative, mag) |
                         (_mm512_testn_epi16_mask(v, key_mask) & ~either);

        found = ref512_block(v, good, valid, magnitude, magnitude_ok, i, c, exceptions, found);
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    return found;
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

/* Read F16C from CPUID leaf 1, because clang 14 rejects "f16c" in __builtin_cpu_supports. */
static int cpu_has_f16c(void)
{
    unsigned int eax, ebx, ecx, edx;

    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

const struct bcpm_quant_kernels *bcpm_quant_kernels_avx2(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && cpu_has_f16c() && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("popcnt"))
        return &avx2_table;
    return NULL;
}

const struct bcpm_quant_kernels *bcpm_quant_kernels_avx512(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("fma"))
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
