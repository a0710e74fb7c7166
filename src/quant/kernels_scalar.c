/*
 * Scalar kernels: the portable reference that every SIMD table in simd.h
 * must reproduce bit for bit, and the table chooser.
 */
#include "quant/simd.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"

/* Add the 16 canonical accumulators pairwise, as simd.h describes. */
static double reduce_lanes(double lane[BCPM_SUM_LANES])
{
    for (int width = BCPM_SUM_LANES / 2; width >= 1; width /= 2) {
        for (int j = 0; j < width; j++)
            lane[j] += lane[j + width];
    }
    return lane[0];
}

static double abs_sum_bf16(const uint16_t *x, size_t n)
{
    double lane[BCPM_SUM_LANES] = {0};

    for (size_t i = 0; i < n; i++)
        lane[i % BCPM_SUM_LANES] += (double)bcpm_bf16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

static double abs_sum_f16(const uint16_t *x, size_t n)
{
    double lane[BCPM_SUM_LANES] = {0};

    for (size_t i = 0; i < n; i++)
        lane[i % BCPM_SUM_LANES] += (double)bcpm_f16_to_f32((uint16_t)(x[i] & 0x7fffu));
    return reduce_lanes(lane);
}

static double abs_sum_f32(const float *x, size_t n)
{
    double lane[BCPM_SUM_LANES] = {0};

    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        lane[i % BCPM_SUM_LANES] += (double)(v < 0 ? -v : v);
    }
    return reduce_lanes(lane);
}

static size_t ternary_run_bf16(const uint16_t *x, size_t n, uint16_t magnitude,
                               uint64_t *zeros, uint64_t *negatives)
{
    uint64_t z = 0, neg = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        uint16_t m = (uint16_t)(x[i] & 0x7fffu);
        if (m == 0)
            z++;
        else if (m == magnitude)
            neg += x[i] >> 15;
        else
            break;
    }
    *zeros += z;
    *negatives += neg;
    return i;
}

static void bf16_to_f32(const uint16_t *x, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bcpm_bf16_to_f32(x[i]);
}

static int8_t code_of(float q)
{
    if (q > 0.5f)
        return 1;
    if (q < -0.5f)
        return -1;
    return 0;
}

static void codes_f32(const float *w, size_t n, float s, int8_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = code_of(w[i] / s);
}

static void codes_bf16(const float *w, size_t n, float s, int8_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = code_of(bcpm_bf16_to_f32(bcpm_f32_to_bf16(w[i] / s)));
}

const struct bcpm_quant_kernels bcpm_quant_kernels_scalar = {
    .name = "scalar",
    .abs_sum_bf16 = abs_sum_bf16,
    .abs_sum_f16 = abs_sum_f16,
    .abs_sum_f32 = abs_sum_f32,
    .ternary_run_bf16 = ternary_run_bf16,
    .bf16_to_f32 = bf16_to_f32,
    .codes_f32 = codes_f32,
    .codes_bf16 = codes_bf16,
};

/* ---- choosing a table ---- */

static _Atomic(const struct bcpm_quant_kernels *) current;

static const struct bcpm_quant_kernels *table_named(const char *name)
{
    if (strcmp(name, "scalar") == 0)
        return &bcpm_quant_kernels_scalar;
    if (strcmp(name, "avx2") == 0)
        return bcpm_quant_kernels_avx2();
    if (strcmp(name, "avx512") == 0)
        return bcpm_quant_kernels_avx512();
    if (strcmp(name, "neon") == 0)
        return bcpm_quant_kernels_neon();
    return NULL;
}

static const struct bcpm_quant_kernels *best_table(void)
{
    const struct bcpm_quant_kernels *k;

    if ((k = bcpm_quant_kernels_avx512()) != NULL)
        return k;
    if ((k = bcpm_quant_kernels_avx2()) != NULL)
        return k;
    if ((k = bcpm_quant_kernels_neon()) != NULL)
        return k;
    return &bcpm_quant_kernels_scalar;
}

const struct bcpm_quant_kernels *bcpm_quant_kernels(void)
{
    const struct bcpm_quant_kernels *k = atomic_load_explicit(&current, memory_order_acquire);

    if (k)
        return k;

    /* An unknown or unavailable BCPM_SIMD falls back to the best table. */
    {
        const char *forced = getenv("BCPM_SIMD");
        k = forced && *forced ? table_named(forced) : NULL;
        if (!k)
            k = best_table();
    }
    atomic_store_explicit(&current, k, memory_order_release);
    return k;
}

int bcpm_quant_simd_select(const char *name)
{
    const struct bcpm_quant_kernels *k = name ? table_named(name) : best_table();

    if (!k)
        return -1;
    atomic_store_explicit(&current, k, memory_order_release);
    return 0;
}

int bcpm_quant_simd_available(const char *name)
{
    return table_named(name) != NULL;
}
