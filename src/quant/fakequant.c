/* The fake-quant recompute and the latent-only preview; see fakequant.h. */
#include "quant/fakequant.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/rows.h"

const char *bcpm_compute_name(enum bcpm_compute policy)
{
    switch (policy) {
    case BCPM_COMPUTE_FLOAT32: return "float32";
    case BCPM_COMPUTE_HALF: return "bf16";
    case BCPM_COMPUTE_AUTO: return "auto";
    }
    return "?";
}

int bcpm_compute_from_name(const char *name, enum bcpm_compute *out)
{
    if (strcmp(name, "float32") == 0)
        *out = BCPM_COMPUTE_FLOAT32;
    else if (strcmp(name, "bf16") == 0 || strcmp(name, "half") == 0)
        *out = BCPM_COMPUTE_HALF;
    else if (strcmp(name, "auto") == 0)
        *out = BCPM_COMPUTE_AUTO;
    else
        return -1;
    return 0;
}

enum bcpm_dtype bcpm_fakequant_half_type(enum bcpm_dtype latent_dtype)
{
    return latent_dtype == BCPM_DTYPE_F16 ? BCPM_DTYPE_F16 : BCPM_DTYPE_BF16;
}

float bcpm_fakequant_round_to(enum bcpm_dtype dtype, float value)
{
    switch (dtype) {
    case BCPM_DTYPE_BF16: return bcpm_bf16_to_f32(bcpm_f32_to_bf16(value));
    case BCPM_DTYPE_F16: return bcpm_f16_to_f32(bcpm_f32_to_f16(value));
    default: return value;
    }
}

/* torch.clamp(min=eps) semantics: NaN passes through, unlike fmaxf. */
static float clamp_min(float value, float eps)
{
    return value < eps ? eps : value;
}

void bcpm_fakequant_scales(float sum, float sum_half, uint64_t n, float eps,
                           enum bcpm_dtype half, struct bcpm_fakequant_scale *out)
{
    float count = (float)n;

    out->sum = sum;
    out->sum_half = sum_half;
    out->mean = sum / count;
    out->s32 = clamp_min(out->mean, eps);
    out->eps_floor = out->mean < eps;

    /* PyTorch rounds the 16-bit mean twice: the float32 sum to H, then sum / n to H. */
    out->s_half = bcpm_fakequant_round_to(half, bcpm_fakequant_round_to(half, sum_half) / count);
    out->s_half = clamp_min(out->s_half, bcpm_fakequant_round_to(half, eps));
}

float bcpm_fakequant_threshold(float s, enum bcpm_compute policy, enum bcpm_dtype half)
{
    double bound = 0.5 + ldexp(1.0, -25);
    double exact;
    float t;

    if (policy == BCPM_COMPUTE_HALF)
        bound += half == BCPM_DTYPE_F16 ? ldexp(1.0, -12) : ldexp(1.0, -9);
    exact = (double)s * bound;

    /* The largest float not above exact; NaN and infinities pass through. */
    t = (float)exact;
    if ((double)t > exact)
        t = nextafterf(t, -INFINITY);
    return t;
}

void bcpm_fakequant_codes(const float *w, size_t n, float s, enum bcpm_compute policy,
                          enum bcpm_dtype half, int8_t *out)
{
    bcpm_quant_kernels()->codes_threshold(w, n, bcpm_fakequant_threshold(s, policy, half), out);
}

int bcpm_fakequant_group_size(const struct bcpm_tensor *tensor, int64_t group_size,
                              uint64_t columns, uint64_t *out, struct bcpm_error *err)
{
    if (group_size == -1 || (group_size > 0 && (uint64_t)group_size == columns)) {
        *out = columns;
        return 0;
    }
    if (group_size <= 0 || columns % (uint64_t)group_size != 0)
        return bcpm_error_set(err, BCPM_ERR_USAGE, NULL, tensor->name,
                              "group size %" PRId64 " does not divide the %" PRIu64
                              " columns of the tensor (use -1 for one group per row)",
                              group_size, columns);
    *out = (uint64_t)group_size;
    return 0;
}

void bcpm_fakequant_widen(enum bcpm_dtype dtype, const uint8_t *raw, size_t n, float *w32,
                          float *w_half)
{
    switch (dtype) {
    case BCPM_DTYPE_BF16:
        bcpm_quant_kernels()->bf16_to_f32((const uint16_t *)(const void *)raw, n, w32);
        break;
    case BCPM_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            w32[i] = bcpm_f16_to_f32(h);
        }
        break;
    default:
        memcpy(w32, raw, n * sizeof(float));
        break;
    }
    if (w_half && w_half != w32) {
        for (size_t i = 0; i < n; i++)
            w_half[i] = bcpm_fakequant_round_to(BCPM_DTYPE_BF16, w32[i]);
    }
}

float bcpm_fakequant_abs_sum(enum bcpm_dtype dtype, const uint8_t *raw, size_t n)
{
    const struct bcpm_quant_kernels *k = bcpm_quant_kernels();

    switch (dtype) {
    case BCPM_DTYPE_BF16: return (float)k->abs_sum_bf16((const uint16_t *)(const void *)raw, n);
    case BCPM_DTYPE_F16: return (float)k->abs_sum_f16((const uint16_t *)(const void *)raw, n);
    default: return (float)k->abs_sum_f32((const float *)(const void *)raw, n);
    }
}

static int check_latent(const struct bcpm_tensor *latent, struct bcpm_error *err)
{
    if (latent->dtype != BCPM_DTYPE_BF16 && latent->dtype != BCPM_DTYPE_F16 &&
        latent->dtype != BCPM_DTYPE_F32)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, latent->name,
                              "fake-quant needs a BF16, F16 or F32 latent tensor, found %s",
                              bcpm_dtype_name(latent->dtype));
    if (latent->numel > 0 && !latent->data)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, NULL, latent->name,
                              "tensor of %" PRIu64 " elements has no data", latent->numel);
    return 0;
}

/* Store value (already a product in policy precision) as element i of out in dtype. */
static void store_element(enum bcpm_dtype dtype, void *out, uint64_t i, float value)
{
    uint16_t h;

    switch (dtype) {
    case BCPM_DTYPE_BF16:
        h = bcpm_f32_to_bf16(value);
        memcpy((uint8_t *)out + 2 * i, &h, 2);
        break;
    case BCPM_DTYPE_F16:
        h = bcpm_f32_to_f16(value);
        memcpy((uint8_t *)out + 2 * i, &h, 2);
        break;
    default:
        memcpy((uint8_t *)out + 4 * i, &value, 4);
        break;
    }
}

int bcpm_fakequant_tensor(const struct bcpm_tensor *latent,
                          const struct bcpm_fakequant_params *params, void *out, float *scales,
                          struct bcpm_error *err)
{
    enum bcpm_dtype half = bcpm_fakequant_half_type(latent->dtype);
    uint64_t rows, columns, group;
    size_t size = bcpm_dtype_size(latent->dtype);
    float *w32 = NULL, *w_half = NULL;
    int8_t *codes = NULL;
    uint8_t *scratch = NULL, *raw_half = NULL;
    int rc;

    rc = check_latent(latent, err);
    if (rc != 0)
        return rc;
    bcpm_tensor_matrix_shape(latent, &rows, &columns);
    rc = bcpm_fakequant_group_size(latent, params->group_size, columns, &group, err);
    if (rc != 0 || latent->numel == 0)
        return rc;

    w32 = malloc(columns * sizeof(float));
    w_half = latent->dtype == BCPM_DTYPE_F32 ? malloc(columns * sizeof(float)) : w32;
    codes = malloc(columns);
    scratch = malloc(columns * size);
    if (!w32 || !w_half || !codes || !scratch) {
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, latent->name, "out of memory");
        goto done;
    }

    for (uint64_t r = 0; r < rows; r++) {
        const uint8_t *raw = bcpm_quant_row(latent, r, columns, scratch);

        bcpm_fakequant_widen(latent->dtype, raw, columns, w32, w_half);
        for (uint64_t g0 = 0; g0 < columns; g0 += group) {
            struct bcpm_fakequant_scale sc;
            const float *w = params->policy == BCPM_COMPUTE_FLOAT32 ? w32 : w_half;
            uint64_t index = r * (columns / group) + g0 / group;
            float sum, sum_half, s;

            if (params->given_sums) {
                sum = params->given_sums[index];
                sum_half = params->given_sums_half[index];
            } else {
                sum = bcpm_fakequant_abs_sum(latent->dtype, raw + g0 * size, group);
                sum_half = w_half == w32 ? sum
                                         : bcpm_fakequant_abs_sum(BCPM_DTYPE_F32,
                                                                  (const uint8_t *)(w_half + g0),
                                                                  group);
            }

            bcpm_fakequant_scales(sum, sum_half, group, params->eps, half, &sc);
            s = params->policy == BCPM_COMPUTE_FLOAT32 ? sc.s32 : sc.s_half;
            if (scales)
                scales[index] = s;
            bcpm_fakequant_codes(w + g0, group, s, params->policy, half, codes + g0);

            /*
             * The product code * s, with the sign of a zero code taken from W
             * (torch.round keeps the sign of -0.3 as -0.0) and NaN where s or
             * W is NaN or s is infinite, as the float arithmetic gives.
             */
            for (uint64_t i = g0; i < g0 + group; i++) {
                float code = codes[i] != 0 ? (float)codes[i] : copysignf(0.0f, w[i]);
                float value = isnan(w[i]) ? w[i] : code * s;
                if (params->policy == BCPM_COMPUTE_HALF)
                    value = bcpm_fakequant_round_to(half, value);
                store_element(params->stored, out, r * columns + i, value);
            }
        }
    }

done:
    if (w_half != w32)
        free(w_half);
    free(w32);
    free(codes);
    free(scratch);
    free(raw_half);
    return rc;
}
