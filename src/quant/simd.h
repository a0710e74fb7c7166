/*
 * Inner loops of the ternary kernels, one table per instruction set.
 *
 * Every table computes exactly the same results as the scalar table, bit for
 * bit: sums use one fixed order (abs_sum below), divisions are single IEEE
 * operations, and codes come from comparisons rather than from conversions
 * whose NaN behaviour differs between instruction sets. The table in use is
 * chosen once, at first use, from what the CPU supports; the environment
 * variable BCPM_SIMD=scalar|avx2|avx512|neon or bcpm_quant_simd_select()
 * forces one, which is how the tests run every path.
 */
#ifndef BCPM_QUANT_SIMD_H
#define BCPM_QUANT_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * Canonical summation order of abs_sum_*: element i of the run goes to
 * accumulator i mod 16 (16 doubles), and the accumulators are then added
 * pairwise: a[j] += a[j + 8], then a[j] += a[j + 4], a[j] += a[j + 2], and
 * finally a[0] + a[1]. For BF16 and F16 inputs each partial sum is exact in
 * double (8 or 11 significant bits per element, 2^24 elements at most per
 * group before the 53-bit mantissa could round), so the order only matters
 * for F32 inputs or for groups that mix magnitudes 2^30 apart.
 */
#define BCPM_SUM_LANES 16

/* The stored code of a value that is neither zero nor +-magnitude. */
#define BCPM_STORED_OTHER 2

/*
 * Value statistics of a run of BF16 elements. NaN and Inf are counted and
 * left out of everything else; -0.0 counts as a zero and as +0.0 for min and
 * max, so that every path agrees on the sign of a zero minimum.
 */
struct bcpm_stats_block {
    uint64_t nan, inf, zeros;
    float min, max;            /* +Inf and -Inf when no element is finite */
    double sum, sum_squares;   /* in the canonical order above */
};

struct bcpm_quant_kernels {
    const char *name;

    /* Sum of |x| over n elements in double, in the canonical order above. */
    double (*abs_sum_bf16)(const uint16_t *x, size_t n);
    double (*abs_sum_f16)(const uint16_t *x, size_t n);
    double (*abs_sum_f32)(const float *x, size_t n);

    /*
     * Index of the first element whose magnitude (sign bit cleared) is
     * neither 0 nor magnitude, or n if there is none. Over the elements before
     * that index, adds the zeros (+0 and -0) to *zeros and the elements with
     * the sign bit set and magnitude `magnitude` to *negatives.
     */
    size_t (*ternary_run_bf16)(const uint16_t *x, size_t n, uint16_t magnitude,
                               uint64_t *zeros, uint64_t *negatives);

    /*
     * Stored codes of n BF16 values against the magnitude of the group: 0 for
     * +-0, -1 or +1 for -magnitude or +magnitude, BCPM_STORED_OTHER for
     * anything else. Adds to counts[0..3] the -1, 0, +1 and other codes.
     */
    void (*stored_codes_bf16)(const uint16_t *x, size_t n, uint16_t magnitude, int8_t *out,
                              uint64_t counts[4]);

    /* Number of NaN and Inf among n BF16 values. */
    uint64_t (*count_nonfinite_bf16)(const uint16_t *x, size_t n);

    /* Statistics of n BF16 values (see struct bcpm_stats_block). */
    void (*stats_bf16)(const uint16_t *x, size_t n, struct bcpm_stats_block *out);

    /* Widen n BF16 values to float (exact). */
    void (*bf16_to_f32)(const uint16_t *x, size_t n, float *out);

    /*
     * Ternary codes by threshold: +1 where w > t, -1 where w < -t, else 0
     * (NaN gives 0). bcpm_fakequant_threshold() derives t from the scale s so
     * that the code equals clamp(round_half_even(w / s), -1, 1) with the
     * quotient rounded as the compute policy rounds it, without a division.
     */
    void (*codes_threshold)(const float *w, size_t n, float t, int8_t *out);

    /* The same for two thresholds at once, straight from BF16 values. */
    void (*codes_threshold2_bf16)(const uint16_t *x, size_t n, float t0, float t1,
                                  int8_t *out0, int8_t *out1);

    /*
     * Compare a BF16 latent group x with its BF16 pseudo-quantized group y in
     * a single pass. Let a be the code of x[i] by threshold t0 and b by t1 (as
     * codes_threshold2_bf16), and c the stored code of y[i] against magnitude
     * (as stored_codes_bf16). Adds the stored codes to counts[0..3], writes to
     * exceptions the index of every element where a, b and c are not all
     * equal, in increasing order, and returns how many it wrote (at most n).
     * A correct export leaves a handful per group, so the reference
     * comparison visits only those.
     */
    size_t (*reference_bf16)(const uint16_t *x, const uint16_t *y, size_t n, float t0, float t1,
                             uint16_t magnitude, uint64_t counts[4], uint32_t *exceptions);
};

/*
 * Shared by the SIMD reference kernels, which compare BF16 bit patterns with
 * integer instructions instead of widening them to float. For a threshold t
 * that is NaN, +-0 or positive, a BF16 value with bits x has code +1 (x > t)
 * exactly when (uint16_t)(x - *first) < *width, and code -1 (x < -t) exactly
 * when (uint16_t)(x - (*first | 0x8000)) < *width: the codes +1 are the bit
 * patterns from the first BF16 above t up to +Inf, NaNs excluded. A NaN t
 * gives an empty range. Returns 0 for a negative t, which has no such range.
 */
static inline int bcpm_bf16_code_range(float t, uint16_t *first, uint16_t *width)
{
    uint32_t bits;

    memcpy(&bits, &t, sizeof(bits));
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        *first = 0x7f81u;
        *width = 0;
        return 1;
    }
    if (bits == 0x80000000u)
        bits = 0;
    if (bits & 0x80000000u)
        return 0;
    /* The BF16 truncation of t is at most t, and the next BF16 above it exceeds t. */
    *first = (uint16_t)((bits >> 16) + 1);
    *width = (uint16_t)(0x7f81u - *first);
    return 1;
}

/*
 * Shared by the SIMD stats kernels: add elements [from, n) as the scalar
 * kernel does (the lanes continue by index), then reduce the lanes into out.
 */
void bcpm_quant_stats_finish(const uint16_t *x, size_t from, size_t n,
                             struct bcpm_stats_block *out, double sum[BCPM_SUM_LANES],
                             double squares[BCPM_SUM_LANES]);

/* The scalar table: the reference every other table must equal. */
extern const struct bcpm_quant_kernels bcpm_quant_kernels_scalar;

/* The table in use (chosen at the first call, see above). Never NULL. */
const struct bcpm_quant_kernels *bcpm_quant_kernels(void);

/*
 * Force a table by name ("scalar", "avx2", "avx512", "neon"), or NULL for
 * the best one the CPU supports. Returns 0, or -1 when the name is unknown
 * or the CPU (or this build) lacks the instruction set; the table in use is
 * then unchanged. Not thread-safe against kernels running at the same time.
 */
int bcpm_quant_simd_select(const char *name);

/* 1 when the named table is built in and the CPU supports it. */
int bcpm_quant_simd_available(const char *name);

/* Tables per instruction set; NULL where the build or the CPU lacks one. */
const struct bcpm_quant_kernels *bcpm_quant_kernels_avx2(void);
const struct bcpm_quant_kernels *bcpm_quant_kernels_avx512(void);
const struct bcpm_quant_kernels *bcpm_quant_kernels_neon(void);

#endif
