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
};

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
