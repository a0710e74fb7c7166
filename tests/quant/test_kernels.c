/*
 * Each SIMD table against the scalar table, kernel by kernel, on inputs
 * chosen to hit the corners: lengths around the vector widths, runs broken
 * at every position, values at and next to the code thresholds, NaN,
 * infinities, subnormals and negative zeros. Results must agree bit for bit.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/simd.h"
#include "tensor/dtype.h"

static const char *const simd_tables[] = {"avx2", "avx512", "neon"};

#define N 300

static uint32_t next_random(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

static float random_weight(uint32_t *seed)
{
    uint32_t r = next_random(seed);

    switch (r % 16) {
    case 0: return NAN;
    case 1: return -0.0f;
    case 2: return (r & 256) ? INFINITY : -INFINITY;
    case 3: return 1e-40f;
    case 4: return 0.5f * 0.02f;                  /* quotient 0.5 with s = 0.02 */
    case 5: return nextafterf(0.5f * 0.02f, 1.0f);
    case 6: return -0.5f * 0.02f;
    default: return ((float)(r % 2001) - 1000.0f) * 0.00004f;
    }
}

static void each_table(void (*check)(const struct bcpm_quant_kernels *k,
                                     const struct bcpm_quant_kernels *s))
{
    int tested = 0;

    for (size_t t = 0; t < sizeof(simd_tables) / sizeof(simd_tables[0]); t++) {
        if (!bcpm_quant_simd_available(simd_tables[t])) {
            print_message("SIMD table %s not supported on this CPU or build, skipped\n",
                          simd_tables[t]);
            continue;
        }
        bcpm_quant_simd_select(simd_tables[t]);
        check(bcpm_quant_kernels(), &bcpm_quant_kernels_scalar);
        tested++;
    }
    bcpm_quant_simd_select(NULL);
    print_message("%d SIMD tables compared with scalar\n", tested);
}

static void check_abs_sums(const struct bcpm_quant_kernels *k, const struct bcpm_quant_kernels *s)
{
    uint32_t seed = 7;
    uint16_t bf16[N], f16[N];
    float f32[N];

    for (int i = 0; i < N; i++) {
        f32[i] = random_weight(&seed);
        if (isnan(f32[i]) || isinf(f32[i]))
            f32[i] = 3.0f;
        bf16[i] = bcpm_f32_to_bf16(f32[i]);
        f16[i] = bcpm_f32_to_f16(f32[i]);
    }
    for (size_t n = 0; n <= N; n += (n < 40 ? 1 : 37)) {
        double a = k->abs_sum_bf16(bf16, n), b = s->abs_sum_bf16(bf16, n);
        assert_memory_equal(&a, &b, sizeof(a));
        a = k->abs_sum_f16(f16, n);
        b = s->abs_sum_f16(f16, n);
        assert_memory_equal(&a, &b, sizeof(a));
        a = k->abs_sum_f32(f32, n);
        b = s->abs_sum_f32(f32, n);
        assert_memory_equal(&a, &b, sizeof(a));
    }
}

static void kernels_abs_sum(void **state)
{
    (void)state;
    each_table(check_abs_sums);
}

static void check_ternary_run(const struct bcpm_quant_kernels *k,
                              const struct bcpm_quant_kernels *s)
{
    uint16_t x[N];
    uint32_t seed = 11;
    uint16_t mag = bcpm_f32_to_bf16(0.0234f);

    for (int bad = 0; bad <= N; bad++) {
        for (int i = 0; i < N; i++) {
            uint32_t r = next_random(&seed) % 4;
            x[i] = r == 0 ? 0 : r == 1 ? 0x8000u : r == 2 ? mag : (uint16_t)(mag | 0x8000u);
        }
        if (bad < N)
            x[bad] = (bad & 1) ? 0x7fc0u : bcpm_f32_to_bf16(1.0f);
        for (size_t n = (size_t)(bad > 40 ? bad - 40 : 0); n <= N; n += 13) {
            uint64_t z1 = 0, n1 = 0, z2 = 0, n2 = 0;
            size_t a = k->ternary_run_bf16(x, n, mag, &z1, &n1);
            size_t b = s->ternary_run_bf16(x, n, mag, &z2, &n2);
            assert_int_equal(a, b);
            assert_int_equal(z1, z2);
            assert_int_equal(n1, n2);
        }
    }
}

static void check_stored_codes(const struct bcpm_quant_kernels *k,
                               const struct bcpm_quant_kernels *s)
{
    uint16_t x[N];
    int8_t a[N], b[N];
    uint32_t seed = 5;
    uint16_t mag = bcpm_f32_to_bf16(0.0234f);

    for (int i = 0; i < N; i++) {
        uint32_t r = next_random(&seed) % 6;
        x[i] = r == 0 ? 0 : r == 1 ? 0x8000u : r == 2 ? mag : r == 3 ? (uint16_t)(mag | 0x8000u)
             : r == 4 ? 0x7fc0u : bcpm_f32_to_bf16(-0.5f);
    }
    for (size_t n = 0; n <= N; n += (n < 70 ? 1 : 23)) {
        /* Magnitude 0 is what a group of zeros passes. */
        for (int zero_magnitude = 0; zero_magnitude < 2; zero_magnitude++) {
            uint16_t m = zero_magnitude ? 0 : mag;
            uint64_t ca[4] = {0}, cb[4] = {0};
            k->stored_codes_bf16(x, n, m, a, ca);
            s->stored_codes_bf16(x, n, m, b, cb);
            assert_memory_equal(a, b, n);
            assert_memory_equal(ca, cb, sizeof(ca));
        }
    }
}

static void kernels_stored_codes(void **state)
{
    (void)state;
    each_table(check_stored_codes);
}

/* Statistics of x[0..n) on both tables, compared bit for bit. */
static void compare_stats(const struct bcpm_quant_kernels *k, const struct bcpm_quant_kernels *s,
                          const uint16_t *x, size_t n)
{
    struct bcpm_stats_block a, b;
    double sa = k->abs_sum_bf16(x, n), sb = s->abs_sum_bf16(x, n);

    k->stats_bf16(x, n, &a);
    s->stats_bf16(x, n, &b);
    assert_int_equal(a.nan, b.nan);
    assert_int_equal(a.inf, b.inf);
    assert_int_equal(a.zeros, b.zeros);
    assert_memory_equal(&a.min, &b.min, sizeof(a.min));
    assert_memory_equal(&a.max, &b.max, sizeof(a.max));
    assert_memory_equal(&a.sum, &b.sum, sizeof(a.sum));
    assert_memory_equal(&a.sum_squares, &b.sum_squares, sizeof(a.sum_squares));
    assert_memory_equal(&sa, &sb, sizeof(sa));
}

static void check_stats(const struct bcpm_quant_kernels *k, const struct bcpm_quant_kernels *s)
{
    uint16_t x[N];
    uint32_t seed = 17;

    for (int i = 0; i < N; i++)
        x[i] = bcpm_f32_to_bf16(random_weight(&seed));
    for (size_t n = 0; n <= N; n += (n < 70 ? 1 : 19)) {
        compare_stats(k, s, x, n);
        assert_int_equal(k->count_nonfinite_bf16(x, n), s->count_nonfinite_bf16(x, n));
    }
}

static void kernels_stats(void **state)
{
    (void)state;
    each_table(check_stats);
}

static void kernels_ternary_run(void **state)
{
    (void)state;
    each_table(check_ternary_run);
}

static void check_codes(const struct bcpm_quant_kernels *k, const struct bcpm_quant_kernels *s)
{
    uint32_t seed = 3;
    float w[N];
    uint16_t raw[N];
    float wide_a[N], wide_b[N];
    int8_t a[N], b[N], a1[N], b1[N];
    const float thresholds[] = {0.01f, nextafterf(0.01f, 0.0f), 0.0f, 1e-40f, INFINITY, NAN};

    for (int i = 0; i < N; i++) {
        w[i] = random_weight(&seed);
        raw[i] = bcpm_f32_to_bf16(w[i]);
    }
    for (size_t n = 0; n <= N; n += (n < 40 ? 1 : 29)) {
        k->bf16_to_f32(raw, n, wide_a);
        s->bf16_to_f32(raw, n, wide_b);
        assert_memory_equal(wide_a, wide_b, n * sizeof(float));
        for (size_t j = 0; j < sizeof(thresholds) / sizeof(thresholds[0]); j++) {
            float other = thresholds[(j + 1) % (sizeof(thresholds) / sizeof(thresholds[0]))];
            k->codes_threshold(w, n, thresholds[j], a);
            s->codes_threshold(w, n, thresholds[j], b);
            assert_memory_equal(a, b, n);
            k->codes_threshold2_bf16(raw, n, thresholds[j], other, a, a1);
            s->codes_threshold2_bf16(raw, n, thresholds[j], other, b, b1);
            assert_memory_equal(a, b, n);
            assert_memory_equal(a1, b1, n);
        }
    }
}

static void kernels_codes(void **state)
{
    (void)state;
    each_table(check_codes);
}

/*
 * The fused reference kernel against the separate kernels it replaces: the
 * stored codes and both codes by threshold, with the exceptions listed where
 * they are not all equal. Latent values sit at and next to the thresholds;
 * stored values are zeros, +-magnitude, NaN and other values.
 */
static void check_reference_bf16(const struct bcpm_quant_kernels *k,
                                 const struct bcpm_quant_kernels *s)
{
    uint32_t seed = 23;
    uint16_t x[N], y[N];
    uint32_t got[N], want[N];
    int8_t a[N], b[N], stored[N];
    /* t0 is a BF16 value, so some latent values equal it exactly. */
    const float t0 = bcpm_bf16_to_f32(bcpm_f32_to_bf16(0.01f)), t1 = nextafterf(t0, 1.0f);
    const float thresholds[][2] = {{t0, t1},      {t1, t0},        {0.01f, t0},
                                   {0.0f, t0},    {-0.0f, t0},     {INFINITY, NAN},
                                   {-t0, t0},     {t0, -INFINITY}, {3.3e38f, 1e-40f}};
    uint16_t mag = bcpm_f32_to_bf16(0.0234f);
    const uint16_t specials[] = {0x7f80u, 0xff80u, 0x7f81u, 0xff81u, 0x7fffu,
                                 0xffffu, 0x0001u, 0x8001u, 0x7f7fu, 0xff7fu};

    for (int i = 0; i < N; i++) {
        uint32_t r = next_random(&seed);
        float w = random_weight(&seed);

        /* Every fourth latent value sits on a threshold or one bf16 step from it. */
        if (r % 4 == 0)
            w = (r & 8 ? -1.0f : 1.0f) * bcpm_bf16_to_f32((uint16_t)(bcpm_f32_to_bf16(t0) +
                                                                      (int)(r >> 4) % 3 - 1));
        x[i] = bcpm_f32_to_bf16(w);
        /* Infinities, NaNs of both signs at the ends of their ranges, subnormals. */
        if (r % 16 == 1)
            x[i] = specials[(r >> 4) % (sizeof(specials) / sizeof(specials[0]))];
        switch (next_random(&seed) % 8) {
        case 0: y[i] = 0; break;
        case 1: y[i] = 0x8000u; break;
        case 2: y[i] = 0x7fc0u; break;
        case 3: y[i] = bcpm_f32_to_bf16(-0.5f); break;
        default: y[i] = (uint16_t)(mag | (next_random(&seed) & 1 ? 0x8000u : 0)); break;
        }
    }
    for (size_t n = 0; n <= N; n += (n < 70 ? 1 : 23)) {
        for (size_t j = 0; j < sizeof(thresholds) / sizeof(thresholds[0]); j++) {
            for (int zero_magnitude = 0; zero_magnitude < 2; zero_magnitude++) {
                uint16_t m = zero_magnitude ? 0 : mag;
                uint64_t ca[4] = {0}, cb[4] = {0}, cc[4] = {0};
                size_t found = 0;
                size_t count_k = k->reference_bf16(x, y, n, thresholds[j][0], thresholds[j][1],
                                                   m, ca, got);
                size_t count_s = s->reference_bf16(x, y, n, thresholds[j][0], thresholds[j][1],
                                                   m, cb, want);

                assert_int_equal(count_k, count_s);
                assert_memory_equal(got, want, count_k * sizeof(got[0]));
                assert_memory_equal(ca, cb, sizeof(ca));

                /* The scalar kernel is the separate kernels fused. */
                s->codes_threshold2_bf16(x, n, thresholds[j][0], thresholds[j][1], a, b);
                s->stored_codes_bf16(y, n, m, stored, cc);
                assert_memory_equal(cb, cc, sizeof(cb));
                for (size_t i = 0; i < n; i++) {
                    if (a[i] != stored[i] || b[i] != stored[i]) {
                        assert_true(found < count_s);
                        assert_int_equal(want[found], i);
                        found++;
                    }
                }
                assert_int_equal(found, count_s);
            }
        }
    }
}

static void kernels_reference(void **state)
{
    (void)state;
    each_table(check_reference_bf16);
}

/*
 * Latent values around a threshold, each stored as the code it gets by
 * threshold t (the "correct export" the reference kernels are fastest on).
 */
static void fake_export(uint16_t *x, uint16_t *y, size_t n, float t, uint16_t mag, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = next_random(&seed);
        float w = ((float)(r % 4001) - 2000.0f) * 0.00001f;

        x[i] = bcpm_f32_to_bf16(w);
        w = bcpm_bf16_to_f32(x[i]);
        if (w > t)
            y[i] = mag;
        else if (w < -t)
            y[i] = (uint16_t)(mag | 0x8000u);
        else
            y[i] = r & 64 ? 0x8000u : 0;
    }
}

/* One reference call on both tables, results compared. */
static void compare_reference(const struct bcpm_quant_kernels *k,
                              const struct bcpm_quant_kernels *s, const uint16_t *x,
                              const uint16_t *y, size_t n, float t0, float t1, uint16_t mag,
                              uint32_t *got, uint32_t *want)
{
    uint64_t ca[4] = {0}, cb[4] = {0};
    size_t count_k = k->reference_bf16(x, y, n, t0, t1, mag, ca, got);
    size_t count_s = s->reference_bf16(x, y, n, t0, t1, mag, cb, want);

    assert_int_equal(count_k, count_s);
    assert_memory_equal(got, want, count_k * sizeof(got[0]));
    assert_memory_equal(ca, cb, sizeof(ca));
}

/*
 * The reference kernel on mostly correct exports, where SIMD tables skip
 * whole blocks. Cases: thresholds whose first codes differ by several BF16 steps,
 * planted exceptions (a whole block of them, NaN, Inf, other stored values),
 * magnitudes 0 and with the sign bit set, every length up to 70, and a run
 * long enough for the lane counters to be flushed.
 */
static void check_reference_export(const struct bcpm_quant_kernels *k,
                                   const struct bcpm_quant_kernels *s)
{
    const size_t long_n = 32 * 40000 + 17;
    uint16_t *x = malloc(long_n * sizeof(*x)), *y = malloc(long_n * sizeof(*y));
    uint32_t *got = malloc(long_n * sizeof(*got)), *want = malloc(long_n * sizeof(*want));
    const float t = 0.005f;
    const float t_far = bcpm_bf16_to_f32((uint16_t)(bcpm_f32_to_bf16(t) + 3));
    const uint16_t mag = bcpm_f32_to_bf16(0.0117f);
    const uint16_t magnitudes[] = {mag, 0, (uint16_t)(mag | 0x8000u)};
    const float pairs[][2] = {{t, t}, {t, t_far}, {t_far, t}, {t, NAN}, {0.0f, t}};

    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(got);
    assert_non_null(want);
    fake_export(x, y, long_n, t, mag, 29);
    /* An exception at every position of the block at 64, and a few lone ones. */
    for (size_t i = 64; i < 96; i++)
        y[i] = (uint16_t)(y[i] ^ 0x8000u) == 0x8000u ? mag : 0;
    x[130] = 0x7fc1u;
    x[131] = 0xff80u;
    y[200] = bcpm_f32_to_bf16(0.5f);
    y[233] = 0x7fc0u;
    x[long_n - 3] = 0x7f80u;

    for (size_t j = 0; j < sizeof(pairs) / sizeof(pairs[0]); j++) {
        for (size_t m = 0; m < sizeof(magnitudes) / sizeof(magnitudes[0]); m++) {
            for (size_t n = 0; n <= 300; n += (n < 70 ? 1 : 23))
                compare_reference(k, s, x, y, n, pairs[j][0], pairs[j][1], magnitudes[m], got,
                                  want);
            compare_reference(k, s, x + 5, y + 5, long_n - 5, pairs[j][0], pairs[j][1],
                              magnitudes[m], got, want);
        }
    }
    free(x);
    free(y);
    free(got);
    free(want);
}

static void kernels_reference_export(void **state)
{
    (void)state;
    each_table(check_reference_export);
}

/*
 * Statistics and absolute sums of runs whose signs or special values change
 * which path a SIMD table takes. Cases: all positive, all negative, zeros of one
 * sign only, -0 next to positive values, one NaN or Inf in the middle of a
 * block, subnormals, values 2^100 apart (so that the order of the sums
 * matters), at every length up to 70 and on a long run.
 */
static void check_stats_runs(const struct bcpm_quant_kernels *k,
                             const struct bcpm_quant_kernels *s)
{
    enum { RUN = 4000 };
    static uint16_t x[RUN];
    const uint16_t specials[] = {0x7fc0u, 0xffc1u, 0x7f80u, 0xff80u, 0x0001u, 0x8001u};
    uint32_t seed = 31;

    for (int kind = 0; kind < 8; kind++) {
        for (int i = 0; i < RUN; i++) {
            uint32_t r = next_random(&seed);
            float w = ((float)(r % 2001) - 1000.0f) * 0.0003f;

            if (kind == 6 && r % 7 == 0)
                w *= 0x1p100f;
            x[i] = bcpm_f32_to_bf16(w);
            switch (kind) {
            case 0: x[i] &= 0x7fffu; break;                        /* all >= +0 */
            case 1: x[i] |= 0x8000u; break;                        /* all <= -0 */
            case 2: x[i] = 0; break;                               /* all +0 */
            case 3: x[i] = 0x8000u; break;                         /* all -0 */
            case 4: x[i] = r & 1 ? 0x8000u : (uint16_t)(x[i] & 0x7fffu); break;
            case 5: x[i] = (uint16_t)(r & 0x807fu); break;         /* subnormals and zeros */
            default: break;
            }
        }
        for (size_t n = 0; n <= 70; n++)
            compare_stats(k, s, x, n);
        compare_stats(k, s, x, RUN);
        for (size_t sp = 0; sp < sizeof(specials) / sizeof(specials[0]); sp++) {
            uint16_t saved = x[45];
            x[45] = specials[sp];
            for (size_t n = 40; n <= 70; n++)
                compare_stats(k, s, x, n);
            compare_stats(k, s, x, RUN);
            x[45] = saved;
        }
    }
}

static void kernels_stats_runs(void **state)
{
    (void)state;
    each_table(check_stats_runs);
}

/*
 * Statistics of runs where whole SIMD blocks contain no finite value, or
 * just one. A table must leave such a block out of the minimum and maximum,
 * and must not use a NaN or Inf lane in place of the missing elements.
 * Cases: NaN and Inf only. NaN and Inf in the first 32 elements and
 * ordinary values after them. One finite value (-0, +0, -1 or +1) among NaN
 * and Inf at each position of the first 64, alone or after 16 ordinary
 * values of both signs.
 */
static void check_stats_nonfinite(const struct bcpm_quant_kernels *k,
                                  const struct bcpm_quant_kernels *s)
{
    enum { RUN = 100 };
    uint16_t x[RUN];
    /* One NaN payload only: which of two NaN operands the scalar abs_sum
       propagates depends on the compiler (gcc 12 and clang 14 differ). */
    const uint16_t nonfinite[] = {0x7fc0u, 0xffc0u, 0x7f80u, 0xff80u};
    const uint16_t lone[] = {0x8000u, 0x0000u, 0xbf80u, 0x3f80u};
    uint32_t seed = 43;

    /* NaN and Inf only, then ordinary values from element 32 on. */
    for (int i = 0; i < RUN; i++)
        x[i] = nonfinite[next_random(&seed) % 4];
    for (size_t n = 0; n <= RUN; n++)
        compare_stats(k, s, x, n);
    for (int i = 32; i < RUN; i++)
        x[i] = bcpm_f32_to_bf16(((float)(next_random(&seed) % 2001) - 1000.0f) * 0.0003f);
    for (size_t n = 0; n <= RUN; n++)
        compare_stats(k, s, x, n);

    /* One finite value among NaN and Inf, with or without ordinary values before it. */
    for (int prefix = 0; prefix <= 16; prefix += 16) {
        for (size_t v = 0; v < sizeof(lone) / sizeof(lone[0]); v++) {
            for (int at = prefix; at < 64; at++) {
                for (int i = 0; i < RUN; i++)
                    x[i] = nonfinite[(size_t)(i + at) % 4];
                for (int i = 0; i < prefix; i++)
                    x[i] = bcpm_f32_to_bf16((float)(i - 7) * 0.25f);
                x[at] = lone[v];
                compare_stats(k, s, x, 64);
                compare_stats(k, s, x, (size_t)at + 1);
                compare_stats(k, s, x, RUN);
            }
        }
    }
}

static void kernels_stats_nonfinite(void **state)
{
    (void)state;
    each_table(check_stats_nonfinite);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernels_abs_sum),
        cmocka_unit_test(kernels_ternary_run),
        cmocka_unit_test(kernels_stored_codes),
        cmocka_unit_test(kernels_stats),
        cmocka_unit_test(kernels_codes),
        cmocka_unit_test(kernels_reference),
        cmocka_unit_test(kernels_reference_export),
        cmocka_unit_test(kernels_stats_runs),
        cmocka_unit_test(kernels_stats_nonfinite),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
