/*
 * Ternary scan and value statistics on tensors built in memory, so each
 * expected count follows from how the test filled the tensor. Every SIMD
 * table the CPU supports is run and compared with the scalar one.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/quant.h"
#include "quant/simd.h"
#include "tensor_util.h"

static const char *const tables[] = {"scalar", "avx2", "avx512", "neon"};

/* Row-major bf16 tensor with codes (r + c) % 3 - 1 times bf16(s). */
static void fill_ternary(uint16_t *x, int rows, int columns, float s)
{
    uint16_t pos = test_bf16(s), neg = (uint16_t)(pos | 0x8000u);

    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < columns; c++) {
            int code = (r + c) % 3 - 1;
            x[r * columns + c] = code == 0 ? 0 : code > 0 ? pos : neg;
        }
    }
}

static void scan_ternary_bf16(void **state)
{
    uint16_t x[4 * 64];
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, 4, 64);
    struct bcpm_ternary_scan scan;
    struct bcpm_error err = {0};

    (void)state;
    fill_ternary(x, 4, 64, 0.0195f);
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        if (!bcpm_quant_simd_available(tables[k]))
            continue;
        assert_int_equal(bcpm_quant_simd_select(tables[k]), 0);
        assert_int_equal(bcpm_ternary_scan(&t, -1, &scan, &err), 0);
        assert_int_equal(scan.rows, 4);
        assert_int_equal(scan.groups_per_row, 1);
        assert_int_equal(scan.groups_ternary, 4);
        assert_int_equal(scan.first_bad_row, -1);
        /* Each row of 64 contains codes cycling from (r % 3) - 1: 21 or 22 of each. */
        assert_int_equal(scan.codes[0] + scan.codes[1] + scan.codes[2], 256);
        assert_int_equal(scan.groups[0].codes[0], 22); /* row 0: -1 at c = 0, 3, ..., 63 */
        assert_int_equal(scan.groups[0].codes[1], 21);
        assert_int_equal(scan.groups[0].codes[2], 21);
        assert_true(scan.groups[0].scale == bcpm_bf16_to_f32(test_bf16(0.0195f)));
        assert_int_equal(scan.groups[0].first_column[0], 0);
        assert_int_equal(scan.groups[0].last_column[0], 63);
        bcpm_ternary_scan_free(&scan);
    }
    bcpm_quant_simd_select(NULL);
}

static void scan_planted_element(void **state)
{
    uint16_t x[4 * 64];
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, 4, 64);
    struct bcpm_ternary_scan scan;
    struct bcpm_error err = {0};

    (void)state;
    fill_ternary(x, 4, 64, 0.0195f);
    x[2 * 64 + 37] = test_bf16(0.5f);
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        if (!bcpm_quant_simd_available(tables[k]))
            continue;
        bcpm_quant_simd_select(tables[k]);
        assert_int_equal(bcpm_ternary_scan(&t, -1, &scan, &err), 0);
        assert_int_equal(scan.groups_ternary, 3);
        assert_int_equal(scan.first_bad_row, 2);
        assert_int_equal(scan.first_bad_column, 37);
        assert_true(scan.first_bad_value == 0.5);
        assert_true((float)scan.first_bad_scale == bcpm_bf16_to_f32(test_bf16(0.0195f)));
        assert_int_equal(scan.groups[2].magnitudes, 2);
        assert_int_equal(scan.groups[2].first_bad_column, 37);
        assert_int_equal(scan.groups[2].first_column[1], 37);
        bcpm_ternary_scan_free(&scan);
    }
    bcpm_quant_simd_select(NULL);
}

/* A row whose halves carry different scales, as tensor-parallel shards produce. */
static void scan_two_shard_row(void **state)
{
    uint16_t x[2 * 64];
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, 2, 64);
    struct bcpm_ternary_scan scan;
    struct bcpm_error err = {0};

    (void)state;
    fill_ternary(x, 2, 64, 0.02f);
    for (int c = 32; c < 64; c++) {
        if (x[c] != 0)
            x[c] = (uint16_t)((x[c] & 0x8000u) | test_bf16(0.03f));
    }
    assert_int_equal(bcpm_ternary_scan(&t, -1, &scan, &err), 0);
    assert_int_equal(scan.groups[0].magnitudes, 2);
    /* Row 0 has code c % 3 - 1 at column c: column 31 is 0, 30 and 63 are -1. */
    assert_int_equal(scan.groups[0].last_column[0], 30);
    assert_int_equal(scan.groups[0].first_column[1], 32);
    assert_int_equal(scan.groups[0].last_column[1], 63);
    assert_int_equal(scan.groups_ternary, 1);
    bcpm_ternary_scan_free(&scan);

    /* With groups of 32 both halves are ternary. */
    assert_int_equal(bcpm_ternary_scan(&t, 32, &scan, &err), 0);
    assert_int_equal(scan.groups_per_row, 2);
    assert_int_equal(scan.groups_ternary, 4);
    assert_true(scan.groups[1].scale == bcpm_bf16_to_f32(test_bf16(0.03f)));
    bcpm_ternary_scan_free(&scan);
}

static void scan_group_size_must_divide(void **state)
{
    uint16_t x[2 * 64] = {0};
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, 2, 64);
    struct bcpm_ternary_scan scan;
    struct bcpm_error err = {0};

    (void)state;
    assert_int_equal(bcpm_ternary_scan(&t, 48, &scan, &err), BCPM_ERR_USAGE);
    assert_string_equal(err.entry, "layers.0.q_proj.weight");
    assert_non_null(strstr(err.message, "48"));
    assert_null(scan.groups);
}

static void scan_nonfinite_and_negative_zero(void **state)
{
    uint16_t x[1 * 16];
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, 1, 16);
    struct bcpm_ternary_scan scan;
    struct bcpm_error err = {0};

    (void)state;
    fill_ternary(x, 1, 16, 0.25f);
    x[1] = 0x8000u;      /* -0.0 */
    x[5] = 0x7fc0u;      /* NaN */
    x[9] = 0xff80u;      /* -Inf */
    assert_int_equal(bcpm_ternary_scan(&t, -1, &scan, &err), 0);
    assert_int_equal(scan.nonfinite, 2);
    assert_int_equal(scan.groups[0].nonfinite, 2);
    assert_int_equal(scan.groups[0].magnitudes, 1);
    assert_int_equal(scan.groups_ternary, 0);
    assert_int_equal(scan.first_bad_column, 5);
    assert_true(isnan(scan.first_bad_value));
    bcpm_ternary_scan_free(&scan);
}

/* The same ternary pattern in F16, F32 and F64 scans the same. */
static void scan_other_dtypes(void **state)
{
    float f32[3 * 32];
    double f64[3 * 32];
    uint16_t f16[3 * 32];
    struct bcpm_ternary_scan scan;
    struct bcpm_error err = {0};
    const struct {
        enum bcpm_dtype dtype;
        const void *data;
    } cases[] = {{BCPM_DTYPE_F32, f32}, {BCPM_DTYPE_F64, f64}, {BCPM_DTYPE_F16, f16}};

    (void)state;
    for (int i = 0; i < 96; i++) {
        int code = i % 3 - 1;
        f32[i] = code * 0.375f;
        f64[i] = code * 0.375;
        f16[i] = bcpm_f32_to_f16(f32[i]);
    }
    f32[40] = 0.25f;
    f64[40] = 0.25;
    f16[40] = bcpm_f32_to_f16(0.25f);
    for (size_t k = 0; k < 3; k++) {
        struct bcpm_tensor t = test_tensor(cases[k].dtype, cases[k].data, 3, 32);
        assert_int_equal(bcpm_ternary_scan(&t, -1, &scan, &err), 0);
        assert_int_equal(scan.groups_ternary, 2);
        assert_int_equal(scan.first_bad_row, 1);
        assert_int_equal(scan.first_bad_column, 8);
        assert_true(scan.groups[0].scale == 0.375f);
        bcpm_ternary_scan_free(&scan);
    }
}

/* A transposed view scans like a contiguous copy of the transpose. */
static void scan_noncontiguous(void **state)
{
    uint16_t x[8 * 32], xt[32 * 8];
    struct bcpm_tensor view = test_tensor(BCPM_DTYPE_BF16, x, 32, 8);
    struct bcpm_tensor copy = test_tensor(BCPM_DTYPE_BF16, xt, 32, 8);
    struct bcpm_ternary_scan a, b;
    struct bcpm_error err = {0};

    (void)state;
    fill_ternary(x, 8, 32, 0.125f);
    x[3 * 32 + 17] = test_bf16(-1.0f);
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 32; c++)
            xt[c * 8 + r] = x[r * 32 + c];
    view.strides[0] = 1;
    view.strides[1] = 32;
    view.contiguous = 0;
    assert_int_equal(bcpm_ternary_scan(&view, -1, &a, &err), 0);
    assert_int_equal(bcpm_ternary_scan(&copy, -1, &b, &err), 0);
    assert_int_equal(a.first_bad_row, 17);
    assert_int_equal(a.first_bad_column, 3);
    assert_int_equal(a.groups_ternary, b.groups_ternary);
    assert_memory_equal(a.groups, b.groups, 32 * sizeof(*a.groups));
    bcpm_ternary_scan_free(&a);
    bcpm_ternary_scan_free(&b);
}

/* Random rows, mostly ternary with planted values: every table and thread count agree. */
static void scan_paths_agree(void **state)
{
    enum { ROWS = 257, COLUMNS = 1024 };
    uint16_t *x = malloc(ROWS * COLUMNS * sizeof(*x));
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, ROWS, COLUMNS);
    struct bcpm_ternary_scan reference, scan;
    struct bcpm_quant_options options = {0};
    struct bcpm_error err = {0};
    uint32_t seed = 12345;

    (void)state;
    assert_non_null(x);
    for (int r = 0; r < ROWS; r++) {
        uint16_t s = test_bf16(0.01f + 0.0001f * (float)r);
        for (int c = 0; c < COLUMNS; c++) {
            seed = seed * 1103515245u + 12345u;
            int code = (int)((seed >> 16) % 3) - 1;
            x[r * COLUMNS + c] = code == 0 ? (uint16_t)((seed >> 8) & 0x8000u)
                                           : (uint16_t)(s | (code < 0 ? 0x8000u : 0));
        }
        if (r % 5 == 1)
            x[r * COLUMNS + (r * 37) % COLUMNS] = test_bf16(3.0f);
        if (r % 7 == 2)
            x[r * COLUMNS + (r * 11) % COLUMNS] = 0x7f80u;
    }
    for (int gs = 0; gs < 3; gs++) {
        int64_t group_size = gs == 0 ? -1 : gs == 1 ? 32 : 256;

        bcpm_quant_simd_select("scalar");
        options.threads = 1;
        assert_int_equal(bcpm_ternary_scan_ex(&t, group_size, &options, &reference, &err), 0);
        for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
            if (!bcpm_quant_simd_available(tables[k]))
                continue;
            bcpm_quant_simd_select(tables[k]);
            for (int threads = 1; threads <= 4; threads += 3) {
                options.threads = threads;
                assert_int_equal(bcpm_ternary_scan_ex(&t, group_size, &options, &scan, &err), 0);
                assert_int_equal(scan.groups_ternary, reference.groups_ternary);
                assert_int_equal(scan.first_bad_row, reference.first_bad_row);
                assert_int_equal(scan.first_bad_column, reference.first_bad_column);
                assert_memory_equal(scan.codes, reference.codes, sizeof(scan.codes));
                assert_memory_equal(scan.groups, reference.groups,
                                    ROWS * scan.groups_per_row * sizeof(*scan.groups));
                bcpm_ternary_scan_free(&scan);
            }
        }
        bcpm_ternary_scan_free(&reference);
    }
    bcpm_quant_simd_select(NULL);
    free(x);
}

static void stats_known_values(void **state)
{
    float x[2 * 4] = {1.0f, -2.0f, 0.0f, -0.0f, NAN, 3.0f, INFINITY, 0.5f};
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_F32, x, 2, 4);
    struct bcpm_value_stats stats;
    struct bcpm_error err = {0};

    (void)state;
    assert_int_equal(bcpm_value_stats(&t, &stats, &err), 0);
    assert_int_equal(stats.count, 8);
    assert_int_equal(stats.nan, 1);
    assert_int_equal(stats.inf, 1);
    assert_int_equal(stats.zeros, 2);
    assert_int_equal(stats.first_nonfinite, 4);
    assert_true(stats.min == -2.0);
    assert_true(stats.max == 3.0);
    assert_true(stats.sum == 2.5);
    assert_true(stats.sum_squares == 14.25);
}

static void stats_bf16_threads(void **state)
{
    enum { N = 300000 };
    uint16_t *x = malloc(N * sizeof(*x));
    struct bcpm_tensor t = test_tensor(BCPM_DTYPE_BF16, x, N / 100, 100);
    struct bcpm_quant_options options = {0};
    struct bcpm_value_stats one, four;
    struct bcpm_error err = {0};

    (void)state;
    assert_non_null(x);
    for (int i = 0; i < N; i++)
        x[i] = test_bf16((float)(i % 7) - 3.0f); /* -3..3, each exact */
    x[123456] = 0xffc0u;
    options.threads = 1;
    assert_int_equal(bcpm_value_stats_ex(&t, &options, &one, &err), 0);
    options.threads = 4;
    assert_int_equal(bcpm_value_stats_ex(&t, &options, &four, &err), 0);
    assert_int_equal(one.nan, 1);
    assert_int_equal(one.first_nonfinite, 123456);
    assert_true(one.min == -3.0 && one.max == 3.0);
    assert_memory_equal(&one, &four, sizeof(one));
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scan_ternary_bf16),
        cmocka_unit_test(scan_planted_element),
        cmocka_unit_test(scan_two_shard_row),
        cmocka_unit_test(scan_group_size_must_divide),
        cmocka_unit_test(scan_nonfinite_and_negative_zero),
        cmocka_unit_test(scan_other_dtypes),
        cmocka_unit_test(scan_noncontiguous),
        cmocka_unit_test(scan_paths_agree),
        cmocka_unit_test(stats_known_values),
        cmocka_unit_test(stats_bf16_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
