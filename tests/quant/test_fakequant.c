/*
 * The fake-quant recompute against PyTorch 1.13: fixtures/quant contains latent
 * matrices and what PyTorch computed from them under both compute policies
 * (tools/gen_quant_fixtures.py).
 *
 * Summation: fakequant_formula_bit_exact feeds PyTorch's own float32 group
 * sums into the C code, so it checks the formula alone and must agree in
 * every bit. fakequant_own_sums uses our sum (exact double accumulation in
 * the fixed order of simd.h, rounded once to float32); there an element may
 * differ from PyTorch only if it also matches PyTorch once our float32 sum
 * moves by one ulp, which is the boundary case the reference check reports.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures.h"
#include "quant/fakequant.h"
#include "tensor_util.h"

#define MAX_CASES 64

static const char *const tables[] = {"scalar", "avx2", "avx512", "neon"};

static int is_nan_bits(enum bcpm_dtype dtype, const uint8_t *p)
{
    uint16_t h;
    float f;

    switch (dtype) {
    case BCPM_DTYPE_BF16: memcpy(&h, p, 2); return isnan(bcpm_bf16_to_f32(h));
    case BCPM_DTYPE_F16: memcpy(&h, p, 2); return isnan(bcpm_f16_to_f32(h));
    default: memcpy(&f, p, 4); return isnan(f);
    }
}

/* Elements that differ (bits, any NaN equal to any NaN); marks them in differs if not NULL. */
static uint64_t count_differences(enum bcpm_dtype dtype, const uint8_t *a, const uint8_t *b,
                                  uint64_t n, uint8_t *differs)
{
    size_t size = bcpm_dtype_size(dtype);
    uint64_t count = 0;

    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *x = a + i * size, *y = b + i * size;
        int same = memcmp(x, y, size) == 0 || (is_nan_bits(dtype, x) && is_nan_bits(dtype, y));
        if (differs)
            differs[i] = !same;
        count += !same;
    }
    return count;
}

struct loaded_case {
    struct quant_case c;
    uint8_t *latent, *expected[2];
    float *sums, *sums_half;
    uint64_t numel, groups;
};

static int load_case(const struct quant_case *c, struct loaded_case *out)
{
    size_t size[5];

    out->c = *c;
    out->latent = fixture_read(c->name, "latent", &size[0]);
    out->expected[0] = fixture_read(c->name, "float32", &size[1]);
    out->expected[1] = fixture_read(c->name, "half", &size[2]);
    out->sums = fixture_read(c->name, "sum", &size[3]);
    out->sums_half = fixture_read(c->name, "sumhalf", &size[4]);
    out->numel = (uint64_t)(c->rows * c->columns);
    out->groups = out->numel / (uint64_t)(c->group_size < 0 ? c->columns : c->group_size);
    return out->latent && out->expected[0] && out->expected[1] && out->sums && out->sums_half &&
           size[0] == out->numel * bcpm_dtype_size(c->latent) &&
           size[3] == out->groups * sizeof(float);
}

static void free_case(struct loaded_case *l)
{
    free(l->latent);
    free(l->expected[0]);
    free(l->expected[1]);
    free(l->sums);
    free(l->sums_half);
}

static uint8_t *run_case(const struct loaded_case *l, enum bcpm_compute policy,
                         const float *sums, const float *sums_half)
{
    struct bcpm_tensor t = test_tensor(l->c.latent, l->latent, l->c.rows, l->c.columns);
    struct bcpm_fakequant_params params = {l->c.group_size, l->c.eps, policy, l->c.stored,
                                           sums, sums_half};
    uint8_t *out = malloc(l->numel * bcpm_dtype_size(l->c.stored));
    struct bcpm_error err = {0};

    assert_non_null(out);
    assert_int_equal(bcpm_fakequant_tensor(&t, &params, out, NULL, &err), 0);
    return out;
}

static void fakequant_formula_bit_exact(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);

    (void)state;
    assert_true(n >= 17);
    for (int i = 0; i < n; i++) {
        struct loaded_case l;

        assert_true(load_case(&cases[i], &l));
        for (int p = 0; p < 2; p++) {
            uint8_t *out = run_case(&l, p == 0 ? BCPM_COMPUTE_FLOAT32 : BCPM_COMPUTE_HALF,
                                    l.sums, l.sums_half);
            uint64_t differ = count_differences(l.c.stored, out, l.expected[p], l.numel, NULL);
            if (differ)
                print_error("%s (%s policy): %llu of %llu elements differ from PyTorch\n",
                            l.c.name, p == 0 ? "float32" : "half", (unsigned long long)differ,
                            (unsigned long long)l.numel);
            assert_int_equal(differ, 0);
            free(out);
        }
        free_case(&l);
    }
}

/* Our own float32 sums of |W| and |H(W)| per group. */
static void own_sums(const struct loaded_case *l, float *sums, float *sums_half)
{
    uint64_t group = (uint64_t)(l->c.group_size < 0 ? l->c.columns : l->c.group_size);
    size_t size = bcpm_dtype_size(l->c.latent);
    float *w = malloc(group * sizeof(float));

    assert_non_null(w);
    for (uint64_t k = 0; k < l->groups; k++) {
        const uint8_t *raw = l->latent + k * group * size;
        sums[k] = bcpm_fakequant_abs_sum(l->c.latent, raw, group);
        if (l->c.latent == BCPM_DTYPE_F32) {
            bcpm_fakequant_widen(BCPM_DTYPE_F32, raw, group, w, NULL);
            for (uint64_t j = 0; j < group; j++)
                w[j] = bcpm_fakequant_round_to(BCPM_DTYPE_BF16, w[j]);
            sums_half[k] = bcpm_fakequant_abs_sum(BCPM_DTYPE_F32, (const uint8_t *)w, group);
        } else {
            sums_half[k] = sums[k];
        }
    }
    free(w);
}

static void nudge(const float *in, float *out, uint64_t n, float toward)
{
    for (uint64_t k = 0; k < n; k++)
        out[k] = nextafterf(in[k], toward);
}

static void fakequant_own_sums(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);
    uint64_t sums_differing = 0, sums_total = 0, boundary_total = 0;

    (void)state;
    for (int i = 0; i < n; i++) {
        struct loaded_case l;
        float *sums, *sums_half, *lo, *lo_half, *hi, *hi_half;

        assert_true(load_case(&cases[i], &l));
        sums = malloc(6 * l.groups * sizeof(float));
        assert_non_null(sums);
        sums_half = sums + l.groups;
        lo = sums + 2 * l.groups;
        lo_half = sums + 3 * l.groups;
        hi = sums + 4 * l.groups;
        hi_half = sums + 5 * l.groups;
        own_sums(&l, sums, sums_half);
        for (uint64_t k = 0; k < l.groups; k++)
            sums_differing += memcmp(&sums[k], &l.sums[k], sizeof(float)) != 0;
        sums_total += l.groups;
        nudge(sums, lo, l.groups, -INFINITY);
        nudge(sums_half, lo_half, l.groups, -INFINITY);
        nudge(sums, hi, l.groups, INFINITY);
        nudge(sums_half, hi_half, l.groups, INFINITY);

        for (int p = 0; p < 2; p++) {
            enum bcpm_compute policy = p == 0 ? BCPM_COMPUTE_FLOAT32 : BCPM_COMPUTE_HALF;
            uint8_t *out = run_case(&l, policy, sums, sums_half);
            uint8_t *out_lo = run_case(&l, policy, lo, lo_half);
            uint8_t *out_hi = run_case(&l, policy, hi, hi_half);
            uint8_t *differs = malloc(l.numel), *differs_lo = malloc(l.numel);
            uint8_t *differs_hi = malloc(l.numel);
            uint64_t not_boundary = 0;

            assert_non_null(differs);
            assert_non_null(differs_lo);
            assert_non_null(differs_hi);
            boundary_total += count_differences(l.c.stored, out, l.expected[p], l.numel, differs);
            count_differences(l.c.stored, out_lo, l.expected[p], l.numel, differs_lo);
            count_differences(l.c.stored, out_hi, l.expected[p], l.numel, differs_hi);
            for (uint64_t e = 0; e < l.numel; e++)
                not_boundary += differs[e] && differs_lo[e] && differs_hi[e];
            if (not_boundary)
                print_error("%s (%s policy): %llu elements differ from PyTorch even with the "
                            "sum one ulp off\n", l.c.name, p == 0 ? "float32" : "half",
                            (unsigned long long)not_boundary);
            assert_int_equal(not_boundary, 0);
            free(out);
            free(out_lo);
            free(out_hi);
            free(differs);
            free(differs_lo);
            free(differs_hi);
        }
        free(sums);
        free_case(&l);
    }
    print_message("own sums: %llu of %llu group sums differ from PyTorch's float32 sum, "
                  "%llu elements differ only as boundary cases\n",
                  (unsigned long long)sums_differing, (unsigned long long)sums_total,
                  (unsigned long long)boundary_total);
}

/* Every SIMD table gives the scalar table's output on every case and policy. */
static void fakequant_paths_agree(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);

    (void)state;
    for (int i = 0; i < n; i++) {
        struct loaded_case l;

        assert_true(load_case(&cases[i], &l));
        for (int p = 0; p < 2; p++) {
            enum bcpm_compute policy = p == 0 ? BCPM_COMPUTE_FLOAT32 : BCPM_COMPUTE_HALF;
            uint8_t *reference;

            bcpm_quant_simd_select("scalar");
            reference = run_case(&l, policy, NULL, NULL);
            for (size_t k = 1; k < sizeof(tables) / sizeof(tables[0]); k++) {
                uint8_t *out;
                if (!bcpm_quant_simd_available(tables[k]))
                    continue;
                bcpm_quant_simd_select(tables[k]);
                out = run_case(&l, policy, NULL, NULL);
                assert_memory_equal(out, reference, l.numel * bcpm_dtype_size(l.c.stored));
                free(out);
            }
            free(reference);
        }
        free_case(&l);
    }
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++)
        print_message("SIMD table %s: %s\n", tables[k],
                      bcpm_quant_simd_available(tables[k]) ? "tested" : "not supported here, skipped");
    bcpm_quant_simd_select(NULL);
}

static void fakequant_group_size_must_divide(void **state)
{
    uint16_t x[4 * 96] = {0};
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, 4, 96);
    struct bcpm_fakequant_params params = {64, BCPM_FAKEQUANT_DEFAULT_EPS,
                                           BCPM_COMPUTE_FLOAT32, BCPM_DTYPE_BF16, NULL, NULL};
    uint16_t out[4 * 96];
    struct bcpm_error err = {0};

    (void)state;
    assert_int_equal(bcpm_fakequant_tensor(&t, &params, out, NULL, &err), BCPM_ERR_USAGE);
    assert_string_equal(err.entry, "layers.0.q_proj.weight");
}

/* The code of w / s the slow way: divide, round the quotient as the policy does, compare. */
static int8_t code_by_division(float w, float s, enum bcpm_compute policy, enum bcpm_dtype half)
{
    float q = w / s;

    if (policy == BCPM_COMPUTE_HALF)
        q = bcpm_fakequant_round_to(half, q);
    if (q > 0.5f)
        return 1;
    if (q < -0.5f)
        return -1;
    return 0;
}

/* Codes from the threshold equal codes from division and rounding, near the ties too. */
static void fakequant_threshold_equals_division(void **state)
{
    const float scales[] = {0.02f, 0.0123456f, 1e-5f, 3e-39f, 1e30f, 0.0f, INFINITY};
    const enum bcpm_dtype halves[] = {BCPM_DTYPE_BF16, BCPM_DTYPE_F16};
    uint32_t seed = 99;
    uint64_t checked = 0;

    (void)state;
    for (size_t j = 0; j < sizeof(scales) / sizeof(scales[0]); j++) {
        for (int p = 0; p < 2; p++) {
            for (int h = 0; h < 2; h++) {
                enum bcpm_compute policy = p ? BCPM_COMPUTE_HALF : BCPM_COMPUTE_FLOAT32;
                float t = bcpm_fakequant_threshold(scales[j], policy, halves[h]);
                for (int i = 0; i < 20000; i++) {
                    float w;
                    int8_t expected, got;
                    seed = seed * 1664525u + 1013904223u;
                    /* Walk the floats around +-0.5 s, +-(0.5 + 2^-9) s and +-(0.5 + 2^-12) s. */
                    w = scales[j] * (i % 3 == 0 ? 0.5f : i % 3 == 1 ? 0.501953125f : 0.500244140625f);
                    for (int step = (int)(seed >> 24) % 64 - 32; step != 0;
                         step += step > 0 ? -1 : 1)
                        w = nextafterf(w, step > 0 ? INFINITY : 0.0f);
                    if (seed & 1)
                        w = -w;
                    expected = code_by_division(w, scales[j], policy, halves[h]);
                    got = w > t ? 1 : w < -t ? -1 : 0;
                    if (expected != got)
                        print_error("s %.9g w %.9g policy %d half %d: division %d threshold %d\n",
                                    scales[j], w, p, h, expected, got);
                    assert_int_equal(got, expected);
                    checked++;
                }
            }
        }
    }
    print_message("%llu elements near the code thresholds agree\n", (unsigned long long)checked);
}

/* The latent-only preview counts what PyTorch's float32-policy export holds. */
static void fakequant_preview_counts(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);

    (void)state;
    for (int i = 0; i < n; i++) {
        struct loaded_case l;
        struct bcpm_tensor t;
        struct bcpm_fakequant_preview preview;
        struct bcpm_error err = {0};
        uint64_t zeros = 0, eps_groups = 0, group;

        assert_true(load_case(&cases[i], &l));
        if (l.c.stored != BCPM_DTYPE_BF16) {
            free_case(&l);
            continue;
        }
        group = l.numel / l.groups;
        for (uint64_t e = 0; e < l.numel; e++) {
            uint16_t h;
            memcpy(&h, l.expected[0] + 2 * e, 2);
            zeros += (h & 0x7fffu) == 0;
        }
        for (uint64_t k = 0; k < l.groups; k++)
            eps_groups += l.sums[k] / (float)group < l.c.eps;

        t = test_tensor(l.c.latent, l.latent, l.c.rows, l.c.columns);
        assert_int_equal(bcpm_fakequant_preview(&t, l.c.group_size, l.c.eps,
                                                BCPM_COMPUTE_FLOAT32, NULL, &preview, &err), 0);
        assert_int_equal(preview.groups, l.groups);
        assert_int_equal(preview.codes[1], zeros);
        assert_int_equal(preview.eps_floor_groups, eps_groups);
        if (l.c.rows == 16)
            assert_true(eps_groups > 0); /* the 16-row cases end in the edge rows, zeros among them */
        assert_int_equal(preview.nonfinite_groups, 0);
        free_case(&l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fakequant_formula_bit_exact),
        cmocka_unit_test(fakequant_own_sums),
        cmocka_unit_test(fakequant_paths_agree),
        cmocka_unit_test(fakequant_group_size_must_divide),
        cmocka_unit_test(fakequant_preview_counts),
        cmocka_unit_test(fakequant_threshold_equals_division),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
