/*
 * The reference comparison fused into the rule engine's value pass gives
 * what the separate passes give:
 *
 *   - bcpm_reference_compare_scan equals bcpm_reference_compare, and the scan
 *     it fills equals bcpm_ternary_scan_ex. The pair is 4 MiB of BF16 with
 *     defects planted in rows that different chunks and workers of the
 *     threaded run read. It runs under every SIMD table the CPU supports, and
 *     again with the same pseudo-quantized values stored as F32;
 *   - bcpm_reference_compare_copy finds the first differing element and
 *     fills the statistics bcpm_value_stats gives, bit for bit;
 *   - a run fed tensor by tensor (bcpm_reference_run_tensor, in any order or
 *     only some tensors) finishes with the findings and results of
 *     bcpm_reference_compare_catalogs on the pairs PyTorch wrote.
 *
 * Expected values come from the plain, unfused code path
 * (bcpm_reference_compare, bcpm_ternary_scan_ex, bcpm_value_stats,
 * bcpm_reference_compare_catalogs), which test_reference.c and
 * test_reference_pairs.c check against PyTorch's fixtures and test_scan.c
 * against tensors with known contents. The rest follows from the defects
 * this file plants. Every digest fed on the way must receive exactly the
 * pseudo-quantized tensor's bytes, once and in file order.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "quant/quant.h"
#include "quant/reference.h"
#include "quant/rows.h"
#include "quant/simd.h"
#include "fixtures.h"
#include "tensor_util.h"

/* ---- field by field comparison ---- */

/* Format the context of a failure message. A long context is cut short, which is harmless. */
static void describe(char *out, size_t size, const char *format, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void describe(char *out, size_t size, const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vsnprintf(out, size, format, args);
    va_end(args);
}

/*
 * memcmp compares a whole struct only when it has no padding: the sum of
 * its member sizes must be its size. A member added later breaks the sum, so
 * these lists and the field checks below must be updated with it.
 */
#define MEMBER_SIZE(type, member) sizeof(((type *)0)->member)

_Static_assert(sizeof(struct bcpm_reference_policy) ==
                   MEMBER_SIZE(struct bcpm_reference_policy, matches) +
                       MEMBER_SIZE(struct bcpm_reference_policy, boundary) +
                       MEMBER_SIZE(struct bcpm_reference_policy, mismatches) +
                       MEMBER_SIZE(struct bcpm_reference_policy, confusion) +
                       MEMBER_SIZE(struct bcpm_reference_policy, stored_other) +
                       MEMBER_SIZE(struct bcpm_reference_policy, scale_groups) +
                       MEMBER_SIZE(struct bcpm_reference_policy, scale_histogram) +
                       MEMBER_SIZE(struct bcpm_reference_policy, scale_ulps_max) +
                       MEMBER_SIZE(struct bcpm_reference_policy, scale_boundary) +
                       MEMBER_SIZE(struct bcpm_reference_policy, scale_errors) +
                       MEMBER_SIZE(struct bcpm_reference_policy, twice_groups) +
                       MEMBER_SIZE(struct bcpm_reference_policy, quantized_latent_groups) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_mismatch_row) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_mismatch_column) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_mismatch_latent) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_mismatch_stored) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_scale_row) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_scale_group) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_scale_ulps) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_scale_stored) +
                       MEMBER_SIZE(struct bcpm_reference_policy, first_scale_expected),
               "struct bcpm_reference_policy has padding or new members");

_Static_assert(sizeof(struct bcpm_ternary_group) ==
                   MEMBER_SIZE(struct bcpm_ternary_group, scale) +
                       MEMBER_SIZE(struct bcpm_ternary_group, magnitudes) +
                       MEMBER_SIZE(struct bcpm_ternary_group, nonfinite) +
                       MEMBER_SIZE(struct bcpm_ternary_group, magnitude) +
                       MEMBER_SIZE(struct bcpm_ternary_group, first_column) +
                       MEMBER_SIZE(struct bcpm_ternary_group, last_column) +
                       MEMBER_SIZE(struct bcpm_ternary_group, codes) +
                       MEMBER_SIZE(struct bcpm_ternary_group, first_bad_column),
               "struct bcpm_ternary_group has padding or new members");

_Static_assert(sizeof(struct bcpm_value_stats) ==
                   MEMBER_SIZE(struct bcpm_value_stats, count) +
                       MEMBER_SIZE(struct bcpm_value_stats, nan) +
                       MEMBER_SIZE(struct bcpm_value_stats, inf) +
                       MEMBER_SIZE(struct bcpm_value_stats, zeros) +
                       MEMBER_SIZE(struct bcpm_value_stats, first_nonfinite) +
                       MEMBER_SIZE(struct bcpm_value_stats, min) +
                       MEMBER_SIZE(struct bcpm_value_stats, max) +
                       MEMBER_SIZE(struct bcpm_value_stats, sum) +
                       MEMBER_SIZE(struct bcpm_value_stats, sum_squares),
               "struct bcpm_value_stats has padding or new members");

/* Fail naming the field, with its first 8 bytes shown as an integer and as a double. */
static void fail_field(const char *context, const char *field, const void *expected,
                       const void *actual, size_t size)
{
    int64_t e = 0, a = 0;
    double de = 0, da = 0;

    memcpy(&e, expected, size < 8 ? size : 8);
    memcpy(&a, actual, size < 8 ? size : 8);
    memcpy(&de, &e, 8);
    memcpy(&da, &a, 8);
    fail_msg("%s: %s differs: expected %lld (%.17g as double), found %lld (%.17g)", context,
             field, (long long)e, de, (long long)a, da);
}

/* The same bytes in field of *x and *y; doubles compare bitwise, so NaN equals NaN. */
#define ASSERT_SAME_FIELD(context, x, y, field)                                          \
    do {                                                                                  \
        if (memcmp(&(x)->field, &(y)->field, sizeof((x)->field)) != 0)                    \
            fail_field((context), #field, &(x)->field, &(y)->field, sizeof((x)->field)); \
    } while (0)

static void assert_same_policy(const char *context, const struct bcpm_reference_policy *x,
                               const struct bcpm_reference_policy *y)
{
    ASSERT_SAME_FIELD(context, x, y, matches);
    ASSERT_SAME_FIELD(context, x, y, boundary);
    ASSERT_SAME_FIELD(context, x, y, mismatches);
    ASSERT_SAME_FIELD(context, x, y, confusion);
    ASSERT_SAME_FIELD(context, x, y, stored_other);
    ASSERT_SAME_FIELD(context, x, y, scale_groups);
    ASSERT_SAME_FIELD(context, x, y, scale_histogram);
    ASSERT_SAME_FIELD(context, x, y, scale_ulps_max);
    ASSERT_SAME_FIELD(context, x, y, scale_boundary);
    ASSERT_SAME_FIELD(context, x, y, scale_errors);
    ASSERT_SAME_FIELD(context, x, y, twice_groups);
    ASSERT_SAME_FIELD(context, x, y, quantized_latent_groups);
    ASSERT_SAME_FIELD(context, x, y, first_mismatch_row);
    ASSERT_SAME_FIELD(context, x, y, first_mismatch_column);
    ASSERT_SAME_FIELD(context, x, y, first_mismatch_latent);
    ASSERT_SAME_FIELD(context, x, y, first_mismatch_stored);
    ASSERT_SAME_FIELD(context, x, y, first_scale_row);
    ASSERT_SAME_FIELD(context, x, y, first_scale_group);
    ASSERT_SAME_FIELD(context, x, y, first_scale_ulps);
    ASSERT_SAME_FIELD(context, x, y, first_scale_stored);
    ASSERT_SAME_FIELD(context, x, y, first_scale_expected);
    /* No padding (checked above), so this covers every member, listed or not. */
    assert_memory_equal(x, y, sizeof(*x));
}

static void assert_same_result(const char *context, const struct bcpm_reference_result *x,
                               const struct bcpm_reference_result *y)
{
    char policy_context[256];

    assert_non_null(x->tensor);
    assert_non_null(y->tensor);
    assert_string_equal(x->tensor, y->tensor);
    ASSERT_SAME_FIELD(context, x, y, elements);
    ASSERT_SAME_FIELD(context, x, y, rows);
    ASSERT_SAME_FIELD(context, x, y, columns);
    ASSERT_SAME_FIELD(context, x, y, group_size);
    ASSERT_SAME_FIELD(context, x, y, groups);
    ASSERT_SAME_FIELD(context, x, y, policy_disagreements);
    ASSERT_SAME_FIELD(context, x, y, nonfinite_groups);
    ASSERT_SAME_FIELD(context, x, y, first_nonfinite_row);
    ASSERT_SAME_FIELD(context, x, y, first_nonfinite_column);
    ASSERT_SAME_FIELD(context, x, y, matched);
    ASSERT_SAME_FIELD(context, x, y, looks_quantized_twice);
    ASSERT_SAME_FIELD(context, x, y, latent_looks_quantized);
    for (int p = 0; p < 2; p++) {
        describe(policy_context, sizeof(policy_context), "%s, %s policy", context,
                 p == BCPM_COMPUTE_FLOAT32 ? "float32" : "bf16");
        assert_same_policy(policy_context, &x->policy[p], &y->policy[p]);
    }
}

static void assert_same_group(const char *context, const struct bcpm_ternary_group *x,
                              const struct bcpm_ternary_group *y)
{
    ASSERT_SAME_FIELD(context, x, y, scale);
    ASSERT_SAME_FIELD(context, x, y, magnitudes);
    ASSERT_SAME_FIELD(context, x, y, nonfinite);
    ASSERT_SAME_FIELD(context, x, y, magnitude);
    ASSERT_SAME_FIELD(context, x, y, first_column);
    ASSERT_SAME_FIELD(context, x, y, last_column);
    ASSERT_SAME_FIELD(context, x, y, codes);
    ASSERT_SAME_FIELD(context, x, y, first_bad_column);
    assert_memory_equal(x, y, sizeof(*x));
}

/* Shape, totals and every group record. */
static void assert_same_scan(const char *context, const struct bcpm_ternary_scan *x,
                             const struct bcpm_ternary_scan *y)
{
    char group_context[256];

    ASSERT_SAME_FIELD(context, x, y, rows);
    ASSERT_SAME_FIELD(context, x, y, columns);
    ASSERT_SAME_FIELD(context, x, y, group_size);
    ASSERT_SAME_FIELD(context, x, y, groups_per_row);
    ASSERT_SAME_FIELD(context, x, y, groups_ternary);
    ASSERT_SAME_FIELD(context, x, y, codes);
    ASSERT_SAME_FIELD(context, x, y, nonfinite);
    ASSERT_SAME_FIELD(context, x, y, first_bad_row);
    ASSERT_SAME_FIELD(context, x, y, first_bad_column);
    ASSERT_SAME_FIELD(context, x, y, first_bad_value);
    ASSERT_SAME_FIELD(context, x, y, first_bad_scale);

    assert_non_null(x->groups);
    assert_non_null(y->groups);
    for (uint64_t k = 0; k < x->rows * x->groups_per_row; k++) {
        describe(group_context, sizeof(group_context), "%s, group %llu (row %llu)", context,
                 (unsigned long long)k, (unsigned long long)(k / x->groups_per_row));
        assert_same_group(group_context, &x->groups[k], &y->groups[k]);
    }
}

static void assert_same_stats(const char *context, const struct bcpm_value_stats *x,
                              const struct bcpm_value_stats *y)
{
    ASSERT_SAME_FIELD(context, x, y, count);
    ASSERT_SAME_FIELD(context, x, y, nan);
    ASSERT_SAME_FIELD(context, x, y, inf);
    ASSERT_SAME_FIELD(context, x, y, zeros);
    ASSERT_SAME_FIELD(context, x, y, first_nonfinite);
    ASSERT_SAME_FIELD(context, x, y, min);
    ASSERT_SAME_FIELD(context, x, y, max);
    ASSERT_SAME_FIELD(context, x, y, sum);
    ASSERT_SAME_FIELD(context, x, y, sum_squares);
    assert_memory_equal(x, y, sizeof(*x));
}

/* ---- the digest recorder ---- */

/* FNV-1a, 64 bits: order-sensitive, so pieces fed out of order change it. */
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t checksum_update(uint64_t h, const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/*
 * A digest that checks what the kernels feed it. Feeds come from worker
 * threads, one call at a time, so the recorder only notes a problem there.
 * recorder_check asserts on the test's own thread.
 */
struct recorder {
    const struct bcpm_map *map;
    uint64_t begin, next; /* the range starts at begin; the next piece must start at next */
    uint64_t pieces, checksum;
    char problem[256];    /* the first bad feed, or empty */
};

static void recorder_feed(void *ctx, uint32_t file, uint64_t offset, uint64_t length)
{
    struct recorder *r = ctx;

    if (r->problem[0])
        return;
    if (!r->map) {
        snprintf(r->problem, sizeof(r->problem), "a tensor outside any map was fed");
        return;
    }
    if (file != 0 || offset != r->next || length == 0 || offset + length > r->map->size) {
        snprintf(r->problem, sizeof(r->problem),
                 "piece %llu: file %u, bytes [%llu, +%llu), expected file 0 from byte %llu",
                 (unsigned long long)r->pieces, file, (unsigned long long)offset,
                 (unsigned long long)length, (unsigned long long)r->next);
        return;
    }
    r->checksum = checksum_update(r->checksum, r->map->data + offset, length);
    r->next += length;
    r->pieces++;
}

static void recorder_start(struct recorder *r, struct bcpm_quant_digest *digest,
                           const struct bcpm_map *map, uint64_t begin)
{
    memset(r, 0, sizeof(*r));
    r->map = map;
    r->begin = r->next = begin;
    r->checksum = FNV_OFFSET;
    digest->feed = recorder_feed;
    digest->ctx = r;
}

/* The recorder received [begin, begin + bytes) once, in pieces (0: any number). */
static void recorder_check(const char *context, const struct recorder *r, uint64_t bytes,
                           uint64_t pieces)
{
    if (r->problem[0])
        fail_msg("%s: digest fed out of order: %s", context, r->problem);
    assert_int_equal(r->next - r->begin, bytes);
    if (pieces)
        assert_int_equal(r->pieces, pieces);
    assert_int_equal(r->checksum, checksum_update(FNV_OFFSET, r->map->data + r->begin, bytes));
}

/* ---- scratch files ---- */

/* Bytes before the first tensor and between tensors: tensors start off page boundaries. */
#define SCRATCH_HEADER 1000
#define SCRATCH_GAP 24

/*
 * Write parts into a new file under $TMPDIR (or /tmp), each after a filler
 * gap, and map it. offsets receives where each part starts. The file is
 * unlinked as soon as it is mapped: the map stays valid and nothing is left
 * behind, even when an assertion ends the test early.
 */
static struct bcpm_map *map_scratch(const void *const *parts, const size_t *sizes, size_t count,
                                    uint64_t *offsets)
{
    uint8_t filler[SCRATCH_HEADER];
    const char *dir = getenv("TMPDIR");
    char path[1024];
    struct bcpm_map *map = NULL;
    struct bcpm_error err = {0};
    uint64_t at = 0;
    FILE *f;
    int fd, n;

    memset(filler, 0xa5, sizeof(filler));
    n = snprintf(path, sizeof(path), "%s/bcpm-fused-XXXXXX", dir && *dir ? dir : "/tmp");
    assert_true(n > 0 && (size_t)n < sizeof(path));
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "wb");
    assert_non_null(f);
    for (size_t i = 0; i < count; i++) {
        size_t gap = i == 0 ? SCRATCH_HEADER : SCRATCH_GAP;

        assert_int_equal(fwrite(filler, 1, gap, f), gap);
        at += gap;
        offsets[i] = at;
        assert_int_equal(fwrite(parts[i], 1, sizes[i], f), sizes[i]);
        at += sizes[i];
    }
    assert_int_equal(fclose(f), 0);

    assert_int_equal(bcpm_map_open(&map, path, &err), 0);
    unlink(path);
    assert_int_equal(map->size, at);
    return map;
}

/* A contiguous [rows, columns] tensor of file 0 at offset in map. */
static struct bcpm_tensor tensor_in_map(const struct bcpm_map *map, uint64_t offset,
                                        enum bcpm_dtype dtype, int64_t rows, int64_t columns)
{
    struct bcpm_tensor t = test_tensor(dtype, map->data + offset, rows, columns);

    t.byte_offset = offset;
    t.file = 0;
    return t;
}

/* ---- weights ---- */

static uint64_t next_random(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Standard normal, near enough for weights: 12 uniforms summed, minus 6 (Irwin-Hall). */
static double next_gaussian(uint64_t *state)
{
    double sum = 0;

    for (int i = 0; i < 12; i++)
        sum += (double)(next_random(state) >> 11) * 0x1.0p-53;
    return sum - 6.0;
}

#define WEIGHT_STD 0.02

/*
 * The fake-quant of one row as one group, the float32 policy of fakequant.h:
 * s = max(mean |W|, eps) with the mean summed in double and rounded once to
 * float, codes round-half-even(W / s) clamped to [-1, 1], stored as code * s
 * in BF16. A negative W whose code rounds to zero is stored as -0.0, as
 * PyTorch stores it.
 */
static void fake_quant_row(const uint16_t *latent, uint64_t n, uint16_t *out)
{
    double sum = 0;
    float s;

    for (uint64_t i = 0; i < n; i++)
        sum += fabs((double)bcpm_bf16_to_f32(latent[i]));
    s = (float)(sum / (double)n);
    if (s < BCPM_FAKEQUANT_DEFAULT_EPS)
        s = BCPM_FAKEQUANT_DEFAULT_EPS;
    for (uint64_t i = 0; i < n; i++) {
        float code = rintf(bcpm_bf16_to_f32(latent[i]) / s);

        code = fminf(fmaxf(code, -1.0f), 1.0f);
        out[i] = bcpm_f32_to_bf16(code * s);
    }
}

/* ---- 1: ternary tensors ---- */

#define T_ROWS 512
#define T_COLUMNS 4096

/*
 * The planted defects, spread over the ordered chunks (256 KiB, 32 BF16 rows)
 * and over the three workers' row ranges, the last rows included.
 */
#define ROW_OTHER_EARLY 5       /* column 10 contains half the row's magnitude */
#define COLUMN_OTHER_EARLY 10
#define ROW_SCALE_HIGH 37       /* every magnitude 17/16 of s */
#define ROW_FLIP_EARLY 150      /* one code's sign flipped */
#define ROW_LATENT_NAN 200      /* latent NaN at column 3000 */
#define COLUMN_LATENT_NAN 3000
#define ROW_PSEUDO_ZERO 260     /* pseudo row all zeros, the latent row is not */
#define ROW_BOTH_ZERO 261       /* latent and pseudo rows all zeros: correct at the eps floor */
#define ROW_PSEUDO_NAN 300      /* pseudo NaN at column 77 */
#define ROW_OTHER_LATE 420      /* column 4000 contains twice the row's magnitude */
#define ROW_SCALE_LOW 480       /* every magnitude 15/16 of s */
#define ROW_LATENT_NAN_LATE 509 /* latent NaN at column 0 */
#define ROW_PSEUDO_INF 510      /* pseudo +Inf at column 4000 */
#define ROW_FLIP_LATE 511       /* the last nonzero code's sign flipped */

/* The BF16 magnitude of a stored row: the bits of its first nonzero element. */
static uint16_t row_magnitude(const uint16_t *row)
{
    for (uint64_t c = 0; c < T_COLUMNS; c++) {
        if (row[c] & 0x7fffu)
            return row[c] & 0x7fffu;
    }
    return 0;
}

static void scale_row(uint16_t *row, float factor)
{
    uint16_t magnitude = bcpm_f32_to_bf16(bcpm_bf16_to_f32(row_magnitude(row)) * factor);

    for (uint64_t c = 0; c < T_COLUMNS; c++) {
        if (row[c] & 0x7fffu)
            row[c] = (uint16_t)((row[c] & 0x8000u) | magnitude);
    }
}

static void put_other_magnitude(uint16_t *row, uint64_t column, float factor)
{
    uint16_t magnitude = bcpm_f32_to_bf16(bcpm_bf16_to_f32(row_magnitude(row)) * factor);

    assert_int_not_equal(magnitude, row_magnitude(row));
    row[column] = magnitude;
}

/* Flip the sign of the first nonzero code at or after column from (backwards if late). */
static void flip_code(uint16_t *row, int64_t from, int step)
{
    for (int64_t c = from; c >= 0 && c < T_COLUMNS; c += step) {
        if (row[c] & 0x7fffu) {
            row[c] ^= 0x8000u;
            return;
        }
    }
    fail_msg("no nonzero code to flip");
}

/* A latent [T_ROWS, T_COLUMNS] BF16 tensor, its fake-quant, and the defects. */
static void make_ternary_pair(uint16_t *latent, uint16_t *pseudo)
{
    uint64_t seed = 20240611;

    for (uint64_t i = 0; i < (uint64_t)T_ROWS * T_COLUMNS; i++)
        latent[i] = bcpm_f32_to_bf16((float)(WEIGHT_STD * next_gaussian(&seed)));
    memset(latent + (uint64_t)ROW_BOTH_ZERO * T_COLUMNS, 0, T_COLUMNS * 2);
    for (uint64_t r = 0; r < T_ROWS; r++)
        fake_quant_row(latent + r * T_COLUMNS, T_COLUMNS, pseudo + r * T_COLUMNS);

    put_other_magnitude(pseudo + ROW_OTHER_EARLY * T_COLUMNS, COLUMN_OTHER_EARLY, 0.5f);
    scale_row(pseudo + ROW_SCALE_HIGH * T_COLUMNS, 17.0f / 16.0f);
    flip_code(pseudo + ROW_FLIP_EARLY * T_COLUMNS, 2000, 1);
    latent[ROW_LATENT_NAN * T_COLUMNS + COLUMN_LATENT_NAN] = bcpm_f32_to_bf16(NAN);
    memset(pseudo + (uint64_t)ROW_PSEUDO_ZERO * T_COLUMNS, 0, T_COLUMNS * 2);
    pseudo[ROW_PSEUDO_NAN * T_COLUMNS + 77] = bcpm_f32_to_bf16(NAN);
    put_other_magnitude(pseudo + ROW_OTHER_LATE * T_COLUMNS, 4000, 2.0f);
    scale_row(pseudo + ROW_SCALE_LOW * T_COLUMNS, 15.0f / 16.0f);
    latent[ROW_LATENT_NAN_LATE * T_COLUMNS] = bcpm_f32_to_bf16(NAN);
    pseudo[ROW_PSEUDO_INF * T_COLUMNS + 4000] = bcpm_f32_to_bf16(INFINITY);
    flip_code(pseudo + ROW_FLIP_LATE * T_COLUMNS, T_COLUMNS - 1, -1);
}

/* Nonzero codes of a row: what the zeroed pseudo row lost. */
static uint64_t nonzero_codes(const uint16_t *row)
{
    uint64_t n = 0;

    for (uint64_t c = 0; c < T_COLUMNS; c++)
        n += (row[c] & 0x7fffu) != 0;
    return n;
}

/*
 * What the planted defects fix under the float32 policy, which is the
 * generator's, when a group is a whole row. Totals count elements of the 510
 * rows without a latent NaN.
 */
static void assert_planted_row_groups(const struct bcpm_reference_result *r,
                                      const uint16_t *zero_row_generated,
                                      const uint16_t *pseudo)
{
    const struct bcpm_reference_policy *f32 = &r->policy[BCPM_COMPUTE_FLOAT32];
    uint64_t compared = (uint64_t)(T_ROWS - 2) * T_COLUMNS;

    assert_int_equal(r->elements, (uint64_t)T_ROWS * T_COLUMNS);
    assert_int_equal(r->rows, T_ROWS);
    assert_int_equal(r->columns, T_COLUMNS);
    assert_int_equal(r->group_size, T_COLUMNS);
    assert_int_equal(r->groups, T_ROWS);
    assert_int_equal(r->nonfinite_groups, 2);
    assert_int_equal(r->first_nonfinite_row, ROW_LATENT_NAN);
    assert_int_equal(r->first_nonfinite_column, COLUMN_LATENT_NAN);
    assert_int_equal(r->matched, BCPM_COMPUTE_FLOAT32);
    assert_int_equal(r->looks_quantized_twice, 0);

    for (int p = 0; p < 2; p++)
        assert_int_equal(r->policy[p].matches + r->policy[p].boundary + r->policy[p].mismatches,
                         compared);
    /* Two third magnitudes, a NaN and an Inf are no code at all. */
    assert_int_equal(f32->stored_other, 4);
    /* Those 4, the 2 flipped codes and the zeroed row's lost codes (boundary if at a tie). */
    assert_int_equal(f32->mismatches + f32->boundary,
                     4 + 2 + nonzero_codes(zero_row_generated));
    assert_int_equal(f32->first_mismatch_row, ROW_OTHER_EARLY);
    assert_int_equal(f32->first_mismatch_column, COLUMN_OTHER_EARLY);
    assert_true(f32->first_mismatch_stored ==
                bcpm_bf16_to_f32(pseudo[ROW_OTHER_EARLY * T_COLUMNS + COLUMN_OTHER_EARLY]));
    /* Every compared row except the two all-zero ones has a scale, and two scales are off. */
    assert_int_equal(f32->scale_groups, T_ROWS - 2 - 2);
    assert_int_equal(f32->scale_errors, 2);
    assert_int_equal(f32->first_scale_row, ROW_SCALE_HIGH);
    assert_int_equal(f32->first_scale_group, 0);
    assert_int_equal(f32->twice_groups, 0);
}

/* What the planted defects fix in the scan, for any group size. */
static void assert_planted_scan(const struct bcpm_ternary_scan *s, const uint16_t *pseudo)
{
    assert_int_equal(s->rows, T_ROWS);
    assert_int_equal(s->columns, T_COLUMNS);
    /* The groups with a third magnitude, the NaN and the Inf are not ternary. */
    assert_int_equal(s->groups_ternary, s->rows * s->groups_per_row - 4);
    assert_int_equal(s->nonfinite, 2);
    assert_int_equal(s->first_bad_row, ROW_OTHER_EARLY);
    assert_int_equal(s->first_bad_column, COLUMN_OTHER_EARLY);
    assert_true(s->first_bad_value ==
                bcpm_bf16_to_f32(pseudo[ROW_OTHER_EARLY * T_COLUMNS + COLUMN_OTHER_EARLY]));
}

/*
 * The scratch pair of the ternary test: the arrays written and the tensors
 * over the map. pseudo32 contains the same values as pseudo widened to F32, for
 * the comparison's path over other dtypes.
 */
struct ternary_pair {
    uint16_t *latent_data, *pseudo_data;
    float *pseudo32_data;
    uint16_t zero_row_generated[T_COLUMNS]; /* ROW_PSEUDO_ZERO before it was zeroed */
    struct bcpm_map *map;
    struct bcpm_tensor latent, pseudo, pseudo32;
};

/*
 * One group size and path: the plain comparison and scan against the fused
 * ones with a digest and scan, without a digest, and with a digest but no
 * scan. Then what the plain path must find of the planted defects.
 */
static void check_ternary_case(const struct ternary_pair *pair, const struct bcpm_tensor *pseudo,
                               int64_t group_size, int full_codes, const char *table)
{
    const struct bcpm_tensor *latent = &pair->latent;
    uint64_t chunk = bcpm_quant_order_chunk(T_COLUMNS * bcpm_dtype_size(pseudo->dtype));
    uint64_t pieces = (T_ROWS + chunk - 1) / chunk;
    struct bcpm_reference_options options;
    struct bcpm_quant_options scan_options = {.threads = 3};
    struct bcpm_reference_result plain, with_digest, no_digest, digest_only;
    struct bcpm_ternary_scan expected_scan, scan_digest, scan_no_digest;
    struct bcpm_quant_digest digest;
    struct recorder rec;
    struct bcpm_error err = {0};
    char context[128];

    describe(context, sizeof(context), "%s, %s pseudo, group size %lld, full_codes %d", table,
             bcpm_dtype_name(pseudo->dtype), (long long)group_size, full_codes);
    bcpm_reference_options_init(&options);
    options.group_size = group_size;
    options.threads = 3;
    options.full_codes = full_codes;

    /* The plain pass: no maps, no digest, no scan. */
    assert_int_equal(bcpm_reference_compare(pseudo, latent, &options, NULL, NULL, &plain, &err),
                     0);
    assert_int_equal(bcpm_ternary_scan_ex(pseudo, group_size, &scan_options, &expected_scan, &err),
                     0);

    /* Fused with a digest: the ordered run over both maps. */
    recorder_start(&rec, &digest, pair->map, pseudo->byte_offset);
    assert_int_equal(bcpm_reference_compare_scan(pseudo, latent, &options, pair->map, pair->map,
                                                 &digest, &scan_digest, &with_digest, &err),
                     0);
    recorder_check(context, &rec, pseudo->nbytes, pieces);

    /* Fused without a digest: one range of rows per worker. */
    assert_int_equal(bcpm_reference_compare_scan(pseudo, latent, &options, pair->map, pair->map,
                                                 NULL, &scan_no_digest, &no_digest, &err),
                     0);

    /* A digest but no scan. */
    recorder_start(&rec, &digest, pair->map, pseudo->byte_offset);
    assert_int_equal(bcpm_reference_compare_scan(pseudo, latent, &options, pair->map, pair->map,
                                                 &digest, NULL, &digest_only, &err),
                     0);
    recorder_check(context, &rec, pseudo->nbytes, pieces);

    assert_same_result(context, &plain, &with_digest);
    assert_same_result(context, &plain, &no_digest);
    assert_same_result(context, &plain, &digest_only);
    assert_same_scan(context, &expected_scan, &scan_digest);
    assert_same_scan(context, &expected_scan, &scan_no_digest);

    assert_int_equal(plain.nonfinite_groups, 2);
    assert_int_equal(plain.first_nonfinite_row, ROW_LATENT_NAN);
    assert_int_equal(plain.first_nonfinite_column, COLUMN_LATENT_NAN);
    if (plain.group_size == T_COLUMNS)
        assert_planted_row_groups(&plain, pair->zero_row_generated, pair->pseudo_data);
    assert_planted_scan(&expected_scan, pair->pseudo_data);

    bcpm_reference_result_free(&plain);
    bcpm_reference_result_free(&with_digest);
    bcpm_reference_result_free(&no_digest);
    bcpm_reference_result_free(&digest_only);
    bcpm_ternary_scan_free(&expected_scan);
    bcpm_ternary_scan_free(&scan_digest);
    bcpm_ternary_scan_free(&scan_no_digest);
}

static void fused_ternary_matches_plain(void **state)
{
    static const char *const tables[] = {"scalar", "avx2", "avx512", "neon"};
    static const int64_t group_sizes[] = {-1, 128, T_COLUMNS};
    size_t bytes = (size_t)T_ROWS * T_COLUMNS * 2;
    struct ternary_pair pair;
    uint64_t offsets[3], chunk;

    (void)state;
    pair.latent_data = malloc(bytes);
    pair.pseudo_data = malloc(bytes);
    pair.pseudo32_data = malloc(2 * bytes);
    assert_non_null(pair.latent_data);
    assert_non_null(pair.pseudo_data);
    assert_non_null(pair.pseudo32_data);
    make_ternary_pair(pair.latent_data, pair.pseudo_data);
    for (uint64_t i = 0; i < (uint64_t)T_ROWS * T_COLUMNS; i++)
        pair.pseudo32_data[i] = bcpm_bf16_to_f32(pair.pseudo_data[i]);
    fake_quant_row(pair.latent_data + (uint64_t)ROW_PSEUDO_ZERO * T_COLUMNS, T_COLUMNS,
                   pair.zero_row_generated);
    pair.map = map_scratch(
        (const void *const[]){pair.latent_data, pair.pseudo_data, pair.pseudo32_data},
        (const size_t[]){bytes, bytes, 2 * bytes}, 3, offsets);
    pair.latent = tensor_in_map(pair.map, offsets[0], BCPM_DTYPE_BF16, T_ROWS, T_COLUMNS);
    pair.pseudo = tensor_in_map(pair.map, offsets[1], BCPM_DTYPE_BF16, T_ROWS, T_COLUMNS);
    pair.pseudo32 = tensor_in_map(pair.map, offsets[2], BCPM_DTYPE_F32, T_ROWS, T_COLUMNS);

    /* The run needs several workers and many ordered chunks to be a test. */
    assert_true(bcpm_quant_job_threads(3, bytes, T_ROWS) >= 2);
    chunk = bcpm_quant_order_chunk(T_COLUMNS * 2);
    assert_true((T_ROWS + chunk - 1) / chunk >= 8);

    /* Each SIMD table the CPU supports: the fused path uses other kernels than the plain scan. */
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        if (bcpm_quant_simd_select(tables[k]) != 0) {
            print_message("SIMD table %s not supported on this CPU or build, skipped\n",
                          tables[k]);
            continue;
        }
        for (size_t g = 0; g < sizeof(group_sizes) / sizeof(group_sizes[0]); g++) {
            for (int full_codes = 0; full_codes < 2; full_codes++)
                check_ternary_case(&pair, &pair.pseudo, group_sizes[g], full_codes, tables[k]);
            check_ternary_case(&pair, &pair.pseudo32, group_sizes[g], 0, tables[k]);
        }
    }
    bcpm_quant_simd_select(NULL);

    bcpm_map_close(pair.map);
    free(pair.latent_data);
    free(pair.pseudo_data);
    free(pair.pseudo32_data);
}

/* ---- 2: copied tensors ---- */

/*
 * Element positions, as fractions of the count n so that each lands in the
 * same worker's share for both dtypes: with 3 workers over the statistics
 * blocks, the last worker starts before 2n/3.
 */
struct copy_plan {
    uint64_t n;
    uint64_t early_change; /* n / 7, first worker: b2 flips the lowest bit here */
    uint64_t minus_inf;    /* n / 3 */
    uint64_t nan_at;       /* 7n / 10 */
    uint64_t late_change;  /* 9n / 10, last worker: -0.0 in a, +0.0 in b1 and b2 */
    uint64_t plus_inf;     /* n - 1 */
};

static struct copy_plan copy_plan(uint64_t n)
{
    return (struct copy_plan){n, n / 7, n / 3, 7 * n / 10, 9 * n / 10, n - 1};
}

static void set_value(enum bcpm_dtype dtype, uint8_t *data, uint64_t i, float v)
{
    if (dtype == BCPM_DTYPE_BF16) {
        uint16_t h = bcpm_f32_to_bf16(v);
        memcpy(data + 2 * i, &h, 2);
    } else {
        memcpy(data + 4 * i, &v, 4);
    }
}

static float get_value(enum bcpm_dtype dtype, const uint8_t *data, uint64_t i)
{
    uint16_t h;
    float v;

    if (dtype == BCPM_DTYPE_BF16) {
        memcpy(&h, data + 2 * i, 2);
        return bcpm_bf16_to_f32(h);
    }
    memcpy(&v, data + 4 * i, 4);
    return v;
}

/*
 * a: Gaussian weights with -Inf, NaN, +Inf, +0.0 and -0.0 planted. b1: a
 * with the -0.0 at late_change made +0.0 (equal values, different bytes).
 * b2: b1 with the lowest bit at early_change flipped as well.
 */
static void make_copy_tensors(enum bcpm_dtype dtype, const struct copy_plan *plan, uint8_t *a,
                              uint8_t *b1, uint8_t *b2)
{
    size_t size = bcpm_dtype_size(dtype);
    uint64_t seed = 77;

    for (uint64_t i = 0; i < plan->n; i++)
        set_value(dtype, a, i, (float)(WEIGHT_STD * next_gaussian(&seed)));
    set_value(dtype, a, plan->minus_inf, -INFINITY);
    set_value(dtype, a, plan->nan_at, NAN);
    set_value(dtype, a, plan->plus_inf, INFINITY);
    set_value(dtype, a, 3, -0.0f);
    set_value(dtype, a, 42, 0.0f);
    set_value(dtype, a, plan->late_change, -0.0f);

    memcpy(b1, a, plan->n * size);
    set_value(dtype, b1, plan->late_change, 0.0f);
    memcpy(b2, b1, plan->n * size);
    b2[plan->early_change * size] ^= 1; /* little-endian: the lowest mantissa bit */
}

/* What the planted values fix in the statistics of a. */
static void assert_planted_stats(const struct bcpm_value_stats *s, enum bcpm_dtype dtype,
                                 const struct copy_plan *plan, const uint8_t *a)
{
    uint64_t zeros = 0;

    for (uint64_t i = 0; i < plan->n; i++)
        zeros += get_value(dtype, a, i) == 0.0f;
    assert_int_equal(s->count, plan->n);
    assert_int_equal(s->nan, 1);
    assert_int_equal(s->inf, 2);
    assert_int_equal(s->zeros, zeros);
    assert_true(zeros >= 3);
    assert_int_equal(s->first_nonfinite, plan->minus_inf);
}

/* One compare_copy of a against b, with and without digest and maps, against the plain results. */
static void check_copy(const char *name, const struct bcpm_map *map,
                       const struct bcpm_tensor *a, const struct bcpm_tensor *b,
                       int64_t expected_index, const struct bcpm_value_stats *expected)
{
    uint64_t step = bcpm_value_stats_block_elements() * bcpm_dtype_size(a->dtype);
    uint64_t chunk = bcpm_quant_order_chunk(step);
    uint64_t pieces = (bcpm_value_stats_block_count(a) + chunk - 1) / chunk;

    for (int variant = 0; variant < 3; variant++) {
        static const char *const variants[] = {"digest", "maps, no digest", "no maps"};
        const struct bcpm_map *m = variant < 2 ? map : NULL;
        struct bcpm_quant_digest digest;
        struct recorder rec;
        struct bcpm_value_stats stats;
        int64_t index = -2;
        char context[128];

        describe(context, sizeof(context), "%s, %s", name, variants[variant]);
        recorder_start(&rec, &digest, map, a->byte_offset);
        assert_int_equal(bcpm_reference_compare_copy(a, m, b, m, 3,
                                                     variant == 0 ? &digest : NULL, &stats,
                                                     &index), 0);
        if (index != expected_index)
            fail_msg("%s: first differing element %lld, expected %lld", context,
                     (long long)index, (long long)expected_index);
        assert_same_stats(context, expected, &stats);
        if (variant == 0)
            recorder_check(context, &rec, a->nbytes, pieces);
        else
            assert_int_equal(rec.pieces, 0);
    }
}

static void fused_copy_matches_plain(enum bcpm_dtype dtype, int64_t rows, int64_t columns)
{
    struct copy_plan plan = copy_plan((uint64_t)(rows * columns));
    size_t bytes = plan.n * bcpm_dtype_size(dtype);
    uint8_t *a = malloc(bytes), *b1 = malloc(bytes), *b2 = malloc(bytes);
    struct bcpm_value_stats expected;
    struct bcpm_error err = {0};
    struct bcpm_tensor ta, tb1, tb2;
    struct bcpm_map *map;
    uint64_t offsets[3];
    uint64_t blocks;
    char name[64];

    assert_non_null(a);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_true(bytes >= (4u << 20));
    make_copy_tensors(dtype, &plan, a, b1, b2);
    map = map_scratch((const void *const[]){a, b1, b2}, (const size_t[]){bytes, bytes, bytes}, 3,
                      offsets);
    ta = tensor_in_map(map, offsets[0], dtype, rows, columns);
    tb1 = tensor_in_map(map, offsets[1], dtype, rows, columns);
    tb2 = tensor_in_map(map, offsets[2], dtype, rows, columns);

    /* Three workers, and the last one's share of blocks starts before late_change. */
    blocks = bcpm_value_stats_block_count(&ta);
    assert_int_equal(bcpm_quant_job_threads(3, bytes, blocks), 3);
    assert_true(blocks * 2 / 3 * bcpm_value_stats_block_elements() < plan.late_change);
    assert_true(blocks / 3 * bcpm_value_stats_block_elements() > plan.early_change);

    assert_int_equal(bcpm_value_stats(&ta, &expected, &err), 0);
    assert_planted_stats(&expected, dtype, &plan, a);

    describe(name, sizeof(name), "%s, one late change", bcpm_dtype_name(dtype));
    check_copy(name, map, &ta, &tb1, (int64_t)plan.late_change, &expected);
    describe(name, sizeof(name), "%s, early and late change", bcpm_dtype_name(dtype));
    check_copy(name, map, &ta, &tb2, (int64_t)plan.early_change, &expected);
    describe(name, sizeof(name), "%s, identical", bcpm_dtype_name(dtype));
    check_copy(name, map, &ta, &ta, -1, &expected);

    bcpm_map_close(map);
    free(a);
    free(b1);
    free(b2);
}

/* Element counts that leave a short last statistics block. */
static void fused_copy_bf16(void **state)
{
    (void)state;
    fused_copy_matches_plain(BCPM_DTYPE_BF16, 1050, 2000);
}

static void fused_copy_f32(void **state)
{
    (void)state;
    fused_copy_matches_plain(BCPM_DTYPE_F32, 525, 2000);
}

/* ---- 3: the run API on PyTorch-written pairs ---- */

#define MAX_TERNARY 64
#define MAX_PAIRS 16

static char ternary_storage[MAX_TERNARY][128];
static const char *ternary[MAX_TERNARY];
static size_t nternary;

static void load_ternary(void)
{
    nternary = pair_ternary_names(ternary_storage, ternary, MAX_TERNARY);
    assert_true(nternary > 0);
}

static int is_ternary(const char *name)
{
    for (size_t i = 0; i < nternary; i++) {
        if (strcmp(ternary[i], name) == 0)
            return 1;
    }
    return 0;
}

struct pair_names {
    char pseudo[128], latent[128];
};

/* The clean pair, then every pair of defects.txt. Returns the count. */
static size_t load_pairs(struct pair_names *pairs)
{
    char path[1024], rule[64], tensor[256];
    long row, column;
    size_t n = 1;
    FILE *f;

    strcpy(pairs[0].pseudo, "pseudo.pt");
    strcpy(pairs[0].latent, "latent.pt");
    assert_true(pair_path(path, sizeof(path), "defects.txt"));
    f = fopen(path, "r");
    assert_non_null(f);
    while (n < MAX_PAIRS && fscanf(f, "%127s %127s %63s %255s %ld %ld", pairs[n].pseudo,
                                   pairs[n].latent, rule, tensor, &row, &column) == 6)
        n++;
    fclose(f);
    return n;
}

static void assert_same_string(const char *context, const char *what, const char *x,
                               const char *y)
{
    if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0))
        fail_msg("%s: %s differs: expected \"%s\", found \"%s\"", context, what,
                 x ? x : "(null)", y ? y : "(null)");
}

static void assert_same_findings(const char *context, const struct bcpm_findings *x,
                                 const struct bcpm_findings *y)
{
    char item[256];

    assert_int_equal(x->count, y->count);
    for (size_t i = 0; i < x->count; i++) {
        const struct bcpm_finding *a = &x->items[i], *b = &y->items[i];

        describe(item, sizeof(item), "%s, finding %zu", context, i);
        assert_same_string(item, "rule", a->rule, b->rule);
        ASSERT_SAME_FIELD(item, a, b, severity);
        assert_same_string(item, "file", a->file, b->file);
        assert_same_string(item, "tensor", a->tensor, b->tensor);
        assert_same_string(item, "message", a->message, b->message);
        ASSERT_SAME_FIELD(item, a, b, has_offset);
        ASSERT_SAME_FIELD(item, a, b, offset);
        ASSERT_SAME_FIELD(item, a, b, row);
        ASSERT_SAME_FIELD(item, a, b, column);
        ASSERT_SAME_FIELD(item, a, b, value);
    }
}

enum hand_order { FORWARD, REVERSE, EVERY_SECOND, NORDERS };

static const char *const order_names[NORDERS] = {"forward", "reverse", "every second"};

/* The k-th tensor handed over in order, or SIZE_MAX for none. */
static size_t handed_index(enum hand_order order, size_t k, size_t n)
{
    switch (order) {
    case FORWARD: return k;
    case REVERSE: return n - 1 - k;
    default: return k % 2 == 0 ? k : SIZE_MAX;
    }
}

/*
 * Hand tensor i to the run as the rule engine does, and check what it
 * filled against the plain scan or statistics and what it fed the digest.
 * Returns 1 when the run compared the tensor.
 */
static int hand_tensor(const char *context, struct bcpm_reference_run *run,
                       const struct bcpm_catalog *cat, size_t i,
                       const struct bcpm_reference_options *options)
{
    const struct bcpm_tensor *t = &cat->tensors[i];
    const struct bcpm_map *map = bcpm_quant_tensor_map(cat, t);
    int ternary_tensor = is_ternary(t->name);
    struct bcpm_ternary_scan scan, expected_scan;
    struct bcpm_value_stats stats, expected_stats;
    struct bcpm_quant_digest digest;
    struct recorder rec;
    struct bcpm_error err = {0};
    char where[512];
    int rc;

    describe(where, sizeof(where), "%s, %s", context, t->name);
    memset(&scan, 0, sizeof(scan));
    memset(&stats, 0, sizeof(stats));
    recorder_start(&rec, &digest, map, t->byte_offset);
    rc = bcpm_reference_run_tensor(run, i, ternary_tensor, &digest, &scan, &stats, &err);
    if (rc < 0)
        fail_msg("%s: run_tensor failed: %s", where, err.message);
    if (rc == 0) {
        assert_int_equal(rec.pieces, 0);
        assert_null(scan.groups);
        return 0;
    }
    assert_int_equal(rc, 1);

    /* The pass feeds the digest when the tensor's bytes lie in place in the file. */
    if (map && t->contiguous && t->data == map->data + t->byte_offset)
        recorder_check(where, &rec, t->nbytes, 0);
    else
        assert_int_equal(rec.pieces, 0);

    if (ternary_tensor) {
        assert_int_equal(bcpm_ternary_scan_ex(t, options->group_size, NULL, &expected_scan, &err),
                         0);
        assert_same_scan(where, &expected_scan, &scan);
        bcpm_ternary_scan_free(&expected_scan);
        bcpm_ternary_scan_free(&scan);
    } else {
        assert_int_equal(bcpm_value_stats(t, &expected_stats, &err), 0);
        assert_same_stats(where, &expected_stats, &stats);
    }

    /* A tensor is compared once: a second offer is declined and reads nothing. */
    recorder_start(&rec, &digest, map, t->byte_offset);
    memset(&scan, 0, sizeof(scan));
    assert_int_equal(bcpm_reference_run_tensor(run, i, ternary_tensor, &digest, &scan, &stats,
                                               &err), 0);
    assert_int_equal(rec.pieces, 0);
    assert_null(scan.groups);
    return 1;
}

static void check_pair_orders(const struct pair_names *pair)
{
    char pseudo_path[1024], latent_path[1024];
    struct bcpm_catalog *pseudo, *latent;
    struct bcpm_reference_options options;
    struct bcpm_findings expected = {0};
    struct bcpm_reference_result *expected_results;
    size_t nexpected;
    struct bcpm_error err = {0};

    assert_true(pair_path(pseudo_path, sizeof(pseudo_path), pair->pseudo));
    assert_true(pair_path(latent_path, sizeof(latent_path), pair->latent));
    assert_int_equal(bcpm_catalog_open(&pseudo, pseudo_path, NULL, &err), 0);
    assert_int_equal(bcpm_catalog_open(&latent, latent_path, NULL, &err), 0);
    bcpm_reference_options_init(&options);
    options.threads = 3;
    assert_int_equal(bcpm_reference_compare_catalogs(pseudo, latent, ternary, nternary, &options,
                                                     &expected, &expected_results, &nexpected,
                                                     &err), 0);
    assert_true(expected.count > 0);

    for (int order = 0; order < NORDERS; order++) {
        struct bcpm_reference_run *run;
        struct bcpm_findings findings = {0};
        struct bcpm_reference_result *results;
        size_t nresults, handed = 0;
        char context[512];

        describe(context, sizeof(context), "%s against %s, %s", pair->pseudo, pair->latent,
                 order_names[order]);
        assert_int_equal(bcpm_reference_run_new(pseudo, latent, &options, &run, &err), 0);
        for (size_t k = 0; k < pseudo->ntensors; k++) {
            size_t i = handed_index((enum hand_order)order, k, pseudo->ntensors);
            if (i != SIZE_MAX)
                handed += (size_t)hand_tensor(context, run, pseudo, i, &options);
        }
        assert_int_equal(bcpm_reference_run_finish(run, ternary, nternary, &findings, &results,
                                                   &nresults, &err), 0);
        bcpm_reference_run_free(run);
        print_message("%-40s %2zu of %2zu tensors handed over, %zu findings\n", context, handed,
                      pseudo->ntensors, findings.count);
        assert_true(handed > 0);

        assert_same_findings(context, &expected, &findings);
        assert_int_equal(nresults, nexpected);
        for (size_t r = 0; r < nresults; r++) {
            char item[600];
            describe(item, sizeof(item), "%s, result %zu", context, r);
            assert_same_result(item, &expected_results[r], &results[r]);
        }
        bcpm_reference_results_free(results, nresults);
        bcpm_findings_clear(&findings);
    }

    bcpm_reference_results_free(expected_results, nexpected);
    bcpm_findings_clear(&expected);
    bcpm_catalog_free(pseudo);
    bcpm_catalog_free(latent);
}

static void run_matches_catalog_compare(void **state)
{
    struct pair_names pairs[MAX_PAIRS];
    size_t npairs;

    (void)state;
    load_ternary();
    npairs = load_pairs(pairs);
    /* The clean pair and the 7 planted defects. */
    assert_int_equal(npairs, 8);
    for (size_t i = 0; i < npairs; i++)
        check_pair_orders(&pairs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fused_ternary_matches_plain),
        cmocka_unit_test(fused_copy_bf16),
        cmocka_unit_test(fused_copy_f32),
        cmocka_unit_test(run_matches_catalog_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
