/*
 * Scalar kernels: the portable reference that every SIMD table in simd.h
 * must reproduce bit for bit, and the table chooser.
 */
#include "quant/simd.h"

#include <math.h>
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

static void stored_codes_bf16(const uint16_t *x, size_t n, uint16_t magnitude, int8_t *out,
                              uint64_t counts[4])
{
    uint64_t c[4] = {0, 0, 0, 0};

    for (size_t i = 0; i < n; i++) {
        uint16_t key = (uint16_t)(x[i] & 0x7fffu);
        int8_t code;

        if (key == 0)
            code = 0;
        else if (key != magnitude)
            code = BCPM_STORED_OTHER;
        else
            code = (x[i] >> 15) ? -1 : 1;
        out[i] = code;
        c[code == BCPM_STORED_OTHER ? 3 : code + 1]++;
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
}

static uint64_t count_nonfinite_bf16(const uint16_t *x, size_t n)
{
    uint64_t count = 0;

    for (size_t i = 0; i < n; i++)
        count += (x[i] & 0x7f80u) == 0x7f80u;
    return count;
}

/* Add element x (index i of its run) to the statistics and the canonical lanes. */
static void stats_add_bf16(uint16_t x, size_t i, struct bcpm_stats_block *out,
                           double sum[BCPM_SUM_LANES], double squares[BCPM_SUM_LANES])
{
    uint16_t key = (uint16_t)(x & 0x7fffu);
    float v;

    if ((key & 0x7f80u) == 0x7f80u) {
        if (key & 0x7fu)
            out->nan++;
        else
            out->inf++;
        return;
    }
    if (key == 0) {
        out->zeros++;
        x = 0;
    }
    v = bcpm_bf16_to_f32(x);
    if (v < out->min)
        out->min = v;
    if (v > out->max)
        out->max = v;
    sum[i % BCPM_SUM_LANES] += (double)v;
    squares[i % BCPM_SUM_LANES] += (double)v * (double)v;
}

static void stats_bf16(const uint16_t *x, size_t n, struct bcpm_stats_block *out)
{
    double sum[BCPM_SUM_LANES] = {0}, squares[BCPM_SUM_LANES] = {0};

    memset(out, 0, sizeof(*out));
    out->min = INFINITY;
    out->max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        stats_add_bf16(x[i], i, out, sum, squares);
    out->sum = reduce_lanes(sum);
    out->sum_squares = reduce_lanes(squares);
}

/* Finish a SIMD stats run: the tail in the scalar way, then the reductions. */
void bcpm_quant_stats_finish(const uint16_t *x, size_t from, size_t n,
                             struct bcpm_stats_block *out, double sum[BCPM_SUM_LANES],
                             double squares[BCPM_SUM_LANES])
{
    for (size_t i = from; i < n; i++)
        stats_add_bf16(x[i], i, out, sum, squares);
    out->sum = reduce_lanes(sum);
    out->sum_squares = reduce_lanes(squares);
}

static void bf16_to_f32(const uint16_t *x, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bcpm_bf16_to_f32(x[i]);
}

static int8_t code_of(float w, float t)
{
    if (w > t)
        return 1;
    if (w < -t)
        return -1;
    return 0;
}

static void codes_threshold(const float *w, size_t n, float t, int8_t *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = code_of(w[i], t);
}

static void codes_threshold2_bf16(const uint16_t *x, size_t n, float t0, float t1, int8_t *out0,
                                  int8_t *out1)
{
    for (size_t i = 0; i < n; i++) {
        float w = bcpm_bf16_to_f32(x[i]);
        out0[i] = code_of(w, t0);
        out1[i] = code_of(w, t1);
    }
}

/* The stored code of one BF16 value, as stored_codes_bf16 gives it. */
static int8_t stored_code_of(uint16_t y, uint16_t magnitude)
{
    uint16_t key = (uint16_t)(y & 0x7fffu);

    if (key == 0)
        return 0;
    if (key != magnitude)
        return BCPM_STORED_OTHER;
    return (y >> 15) ? -1 : 1;
}

static size_t reference_bf16(const uint16_t *x, const uint16_t *y, size_t n, float t0, float t1,
                             uint16_t magnitude, uint64_t counts[4], uint32_t *exceptions)
{
    uint64_t c[4] = {0, 0, 0, 0};
    size_t found = 0;

    for (size_t i = 0; i < n; i++) {
        float w = bcpm_bf16_to_f32(x[i]);
        int8_t a = code_of(w, t0), b = code_of(w, t1), s = stored_code_of(y[i], magnitude);

        c[s == BCPM_STORED_OTHER ? 3 : s + 1]++;
        if (a != s || b != s)
            exceptions[found++] = (uint32_t)i;
    }
    for (int k = 0; k < 4; k++)
        counts[k] += c[k];
    return found;
}

const struct bcpm_quant_kernels bcpm_quant_kernels_scalar = {
    .name = "scalar",
    .abs_sum_bf16 = abs_sum_bf16,
    .abs_sum_f16 = abs_sum_f16,
    .abs_sum_f32 = abs_sum_f32,
    .ternary_run_bf16 = ternary_run_bf16,
    .stored_codes_bf16 = stored_codes_bf16,
    .count_nonfinite_bf16 = count_nonfinite_bf16,
    .stats_bf16 = stats_bf16,
    .bf16_to_f32 = bf16_to_f32,
    .codes_threshold = codes_threshold,
    .codes_threshold2_bf16 = codes_threshold2_bf16,
    .reference_bf16 = reference_bf16,
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
