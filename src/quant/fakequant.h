/*
 * The ternary fake quantizer recomputed from latent weights:
 *
 *     s  = max(mean(|W_group|), eps)
 *     Wq = clamp(round(W / s), -1, 1) * s      round: half to even
 *
 * cast to the stored dtype of the pseudo-quantized side. Two compute policies
 * reproduce the two ways PyTorch 1.13 evaluates this formula, as checked by
 * tools/gen_quant_fixtures.py against real PyTorch:
 *
 *   BCPM_COMPUTE_FLOAT32  W upcast to float32. The float32 sum over the group
 *       divided by n in float32 is the mean; s, the quotient and the product
 *       are float32 operations.
 *   BCPM_COMPUTE_HALF     W in a 16-bit type H (the latent's dtype if it is
 *       BF16 or F16, else BF16). PyTorch's mean of an H tensor is
 *       H(H(float32 sum) / n), rounded twice; s = max(mean, H(eps)); the
 *       quotient W / s is rounded to H before round(); codes times s is exact.
 *
 * Summation order: the group sum is accumulated in double, in the fixed
 * order simd.h describes, then rounded once to float32. For BF16 and F16
 * latents every partial sum is exact, so the order cannot change the result;
 * the single rounding gives the correctly rounded float32 sum. PyTorch sums
 * in float32 in its own order, so its sum can differ from ours in the last
 * bit or two. That changes a code only for an element whose quotient sits
 * within an ulp of the 0.5 threshold, and a 16-bit scale only when the sum
 * sits next to a rounding midpoint of H; the reference comparison counts
 * exactly those elements and scales as boundary cases (see reference.h).
 */
#ifndef BCPM_QUANT_FAKEQUANT_H
#define BCPM_QUANT_FAKEQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "quant/quant.h"
#include "quant/simd.h"
#include "tensor/catalog.h"

/*
 * Default eps. No released source shows the value BitCPM-CANN training used,
 * so it is a rule parameter; 1e-5 is the clamp of the common BitNet-style
 * ternary quantizers and only matters for groups whose mean falls below it.
 */
#define BCPM_FAKEQUANT_DEFAULT_EPS 1e-5f

enum bcpm_compute {
    BCPM_COMPUTE_FLOAT32 = 0,
    BCPM_COMPUTE_HALF = 1,   /* "bf16" on the command line; F16 latents compute in F16 */
    BCPM_COMPUTE_AUTO = 2,   /* try both, report the one that matches */
};

/* "float32", "bf16", "auto"; bcpm_compute_from_name also accepts "half". */
const char *bcpm_compute_name(enum bcpm_compute policy);
int bcpm_compute_from_name(const char *name, enum bcpm_compute *out);

/* The 16-bit type H the half policy computes in for a latent of dtype. */
enum bcpm_dtype bcpm_fakequant_half_type(enum bcpm_dtype latent_dtype);

/* Scales of one group, derived from the sum of its |W|. */
struct bcpm_fakequant_scale {
    float sum;        /* float32 sum of |W| (rounded once from the double sum) */
    float sum_half;   /* the same over H(W); equal to sum for 16-bit latents */
    float mean;       /* float32 policy: sum / n before the eps clamp */
    float s32;        /* float32 policy: max(mean, eps) */
    float s_half;     /* half policy: max(H(H(sum) / n), H(eps)), as float */
    int eps_floor;    /* 1 when the float32 mean was below eps */
};

/*
 * Scales of a group of n elements under both policies: sum is the float32 sum
 * of |W|, sum_half that of |H(W)|, half the half policy's H (BF16 or F16).
 */
void bcpm_fakequant_scales(float sum, float sum_half, uint64_t n, float eps,
                           enum bcpm_dtype half, struct bcpm_fakequant_scale *out);

/*
 * The threshold t with clamp(round_half_even(q), -1, 1) = +1 exactly when
 * w > t (and -1 when w < -t), where q is w / s rounded to float32 and, under
 * the half policy, then to H. Derivation: round(q) is +1 for every q above
 * 0.5 and 0 at the tie 0.5 (nearest even), so the code is +1 when q > 0.5.
 * The float32 quotient exceeds 0.5 when the exact w / s exceeds 0.5 + 2^-25
 * (the midpoint to the next float, which rounds to the even 0.5); after
 * rounding to BF16 or F16 the bound becomes 0.5 + 2^-9 + 2^-25 or
 * 0.5 + 2^-12 + 2^-25. The product of s and that bound is exact in double,
 * and w, a float, exceeds it exactly when w exceeds the largest float not
 * above it, which is t.
 */
float bcpm_fakequant_threshold(float s, enum bcpm_compute policy, enum bcpm_dtype half);

/*
 * Codes of w / s for n float elements under policy (FLOAT32 or HALF with H =
 * half): +1, 0 or -1, clamp(round_half_even(w / s), -1, 1) with the quotient
 * rounded as the policy rounds it; a NaN quotient gives 0. Uses the kernels
 * in use.
 */
void bcpm_fakequant_codes(const float *w, size_t n, float s, enum bcpm_compute policy,
                          enum bcpm_dtype half, int8_t *out);

/* Round a float to dtype (BF16, F16 or F32) and back, as PyTorch's casts do. */
float bcpm_fakequant_round_to(enum bcpm_dtype dtype, float value);

struct bcpm_fakequant_params {
    int64_t group_size;          /* -1: one group per row */
    float eps;                   /* BCPM_FAKEQUANT_DEFAULT_EPS unless a rule sets it */
    enum bcpm_compute policy;    /* FLOAT32 or HALF */
    enum bcpm_dtype stored;      /* dtype of the result: BF16, F16 or F32 */
    /*
     * Optional float32 group sums of |W| and |H(W)| (rows * groups per row
     * each) used instead of our own sums, so a test can check the formula
     * apart from the summation order. NULL for normal use.
     */
    const float *given_sums, *given_sums_half;
};

/*
 * Recompute the fake-quant of a whole latent tensor (BF16, F16 or F32) into
 * out: numel elements of params->stored, row-major little-endian. scales, if
 * not NULL, receives the scale s of each group (rows * groups per row) as
 * float. Meant for tests and small tensors; the reference comparison streams
 * instead of materialising the result.
 */
int bcpm_fakequant_tensor(const struct bcpm_tensor *latent,
                          const struct bcpm_fakequant_params *params, void *out, float *scales,
                          struct bcpm_error *err);

/* Preview of the export of a latent tensor (latent-only mode). */
struct bcpm_fakequant_preview {
    uint64_t rows, columns, group_size, groups;
    uint64_t codes[3];           /* -1, 0, +1 over all elements */
    double zero_fraction;
    double scale_min, scale_max, scale_mean; /* over groups, as float32 s */
    uint64_t eps_floor_groups;   /* groups whose mean fell below eps */
    int64_t first_eps_floor_row, first_eps_floor_group; /* -1 when none */
    uint64_t nonfinite_groups;   /* groups with NaN or Inf */
    int64_t first_nonfinite_row, first_nonfinite_column; /* -1 when none */
};

/*
 * Recompute codes and scales of latent under policy without storing them.
 * options may be NULL (see quant.h). Groups with NaN or Inf are counted
 * apart and left out of the code counts and scale statistics.
 */
int bcpm_fakequant_preview(const struct bcpm_tensor *latent, int64_t group_size, float eps,
                           enum bcpm_compute policy, const struct bcpm_quant_options *options,
                           struct bcpm_fakequant_preview *out, struct bcpm_error *err);

/* ---- row helpers shared with reference.c ---- */

/*
 * Resolve group_size against a tensor of columns: -1 or columns gives
 * columns. Returns 0, or BCPM_ERR_USAGE naming the tensor when it does not
 * divide columns.
 */
int bcpm_fakequant_group_size(const struct bcpm_tensor *tensor, int64_t group_size,
                              uint64_t columns, uint64_t *out, struct bcpm_error *err);

/*
 * Widen one latent row of n raw elements to float (w32) and, when the half
 * policy needs a different value, its H-rounded copy (w_half; may alias w32
 * for BF16 and F16 latents, which are already in H).
 */
void bcpm_fakequant_widen(enum bcpm_dtype dtype, const uint8_t *raw, size_t n, float *w32,
                          float *w_half);

/* Float32 sum of |w| over a group: raw elements of the latent, or floats. */
float bcpm_fakequant_abs_sum(enum bcpm_dtype dtype, const uint8_t *raw, size_t n);

#endif
