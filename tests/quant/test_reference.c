/*
 * The reference comparison on the PyTorch fixtures of fixtures/quant: a
 * pseudo-quantized tensor that PyTorch computed from the latent one must
 * match under its own policy with nothing left over, and under the other
 * policy every difference must be a boundary case. Our group sums are the
 * exact double sums rounded once to float32 (see fakequant.h), not PyTorch's
 * float32 sums; the comparison absorbs the difference as boundary cases.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fixtures.h"
#include "quant/reference.h"
#include "tensor_util.h"

#define MAX_CASES 64

static const char *const tables[] = {"scalar", "avx2", "avx512", "neon"};

struct pair {
    struct quant_case c;
    void *latent, *pseudo[2];
};

static int load_pair(const struct quant_case *c, struct pair *out)
{
    size_t size;

    out->c = *c;
    out->latent = fixture_read(c->name, "latent", &size);
    out->pseudo[0] = fixture_read(c->name, "float32", &size);
    out->pseudo[1] = fixture_read(c->name, "half", &size);
    return out->latent && out->pseudo[0] && out->pseudo[1];
}

static void free_pair(struct pair *p)
{
    free(p->latent);
    free(p->pseudo[0]);
    free(p->pseudo[1]);
}

static void compare(const struct pair *p, int written, enum bcpm_compute policy, int threads,
                    struct bcpm_reference_result *out)
{
    struct bcpm_tensor latent = test_tensor(p->c.latent, p->latent, p->c.rows, p->c.columns);
    struct bcpm_tensor pseudo = test_tensor(p->c.stored, p->pseudo[written], p->c.rows,
                                            p->c.columns);
    struct bcpm_reference_options options;
    struct bcpm_error err = {0};

    bcpm_reference_options_init(&options);
    options.group_size = p->c.group_size;
    options.eps = p->c.eps;
    options.policy = policy;
    options.threads = threads;
    assert_int_equal(bcpm_reference_compare(&pseudo, &latent, &options, NULL, NULL, out, &err), 0);
}

/* With the policy PyTorch used, everything matches; with the other, only boundary cases differ. */
static void reference_fixtures_match(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);
    uint64_t boundary_other = 0, disagreements = 0;

    (void)state;
    assert_true(n >= 17);
    for (int i = 0; i < n; i++) {
        struct pair p;

        assert_true(load_pair(&cases[i], &p));
        for (int written = 0; written < 2; written++) {
            struct bcpm_reference_result r;
            const struct bcpm_reference_policy *own, *other;

            compare(&p, written, BCPM_COMPUTE_AUTO, 1, &r);
            own = &r.policy[written];
            other = &r.policy[1 - written];
            if (own->mismatches || own->boundary || own->scale_errors || other->mismatches ||
                other->scale_errors)
                print_error("%s written under %s: own %llu mismatches %llu boundary %llu scale "
                            "errors; other %llu mismatches %llu scale errors\n",
                            p.c.name, written ? "half" : "float32",
                            (unsigned long long)own->mismatches,
                            (unsigned long long)own->boundary,
                            (unsigned long long)own->scale_errors,
                            (unsigned long long)other->mismatches,
                            (unsigned long long)other->scale_errors);
            assert_int_equal(own->mismatches, 0);
            assert_int_equal(own->boundary, 0);
            assert_int_equal(own->scale_errors, 0);
            assert_int_equal(own->matches, r.elements);
            assert_int_equal(other->mismatches, 0);
            assert_int_equal(other->scale_errors, 0);
            assert_int_equal(r.nonfinite_groups, 0);
            /* AUTO picks the policy PyTorch used unless both fit equally well. */
            if (other->boundary + other->scale_boundary > 0)
                assert_int_equal(r.matched, written);
            assert_false(r.looks_quantized_twice);
            boundary_other += other->boundary;
            disagreements += r.policy_disagreements;
            bcpm_reference_result_free(&r);
        }
        free_pair(&p);
    }
    print_message("the other policy: %llu boundary codes; the policies disagree on %llu codes\n",
                  (unsigned long long)boundary_other, (unsigned long long)disagreements);
    assert_true(boundary_other > 0);
}

/* A confusion matrix that counts each stored code against the recomputed one. */
static void reference_confusion_matrix(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);
    struct bcpm_reference_result r;
    struct pair p;
    int i;

    (void)state;
    for (i = 0; i < n && strcmp(cases[i].name, "bf16_gaussian_grow") != 0; i++)
        ;
    assert_true(i < n);
    assert_true(load_pair(&cases[i], &p));

    /* Flip the stored code at row 2, column 10 to the opposite sign, or to +s if it is 0. */
    {
        uint16_t *x = p.pseudo[0];
        uint16_t *row = x + 2 * p.c.columns;
        uint16_t s = 0;
        for (long c = 0; c < p.c.columns && !s; c++)
            s = (uint16_t)(row[c] & 0x7fffu);
        row[10] = (row[10] & 0x7fffu) ? (uint16_t)(row[10] ^ 0x8000u) : s;
    }
    compare(&p, 0, BCPM_COMPUTE_FLOAT32, 1, &r);
    assert_int_equal(r.policy[0].mismatches, 1);
    assert_int_equal(r.policy[0].first_mismatch_row, 2);
    assert_int_equal(r.policy[0].first_mismatch_column, 10);
    {
        uint64_t off_diagonal = 0, total = 0;
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) {
                total += r.policy[0].confusion[a][b];
                off_diagonal += a != b ? r.policy[0].confusion[a][b] : 0;
            }
        assert_int_equal(total, r.elements);
        assert_int_equal(off_diagonal, 1);
    }
    bcpm_reference_result_free(&r);
    free_pair(&p);
}

/* Scalar, every SIMD table and several threads give the same result structs. */
static void reference_paths_agree(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);

    (void)state;
    for (int i = 0; i < n; i++) {
        struct pair p;
        struct bcpm_reference_result reference, r;

        assert_true(load_pair(&cases[i], &p));
        bcpm_quant_simd_select("scalar");
        compare(&p, 1, BCPM_COMPUTE_AUTO, 1, &reference);
        for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
            if (!bcpm_quant_simd_available(tables[k]))
                continue;
            bcpm_quant_simd_select(tables[k]);
            compare(&p, 1, BCPM_COMPUTE_AUTO, 3, &r);
            assert_memory_equal(r.policy, reference.policy, sizeof(r.policy));
            assert_int_equal(r.policy_disagreements, reference.policy_disagreements);
            assert_int_equal(r.matched, reference.matched);
            bcpm_reference_result_free(&r);
        }
        bcpm_reference_result_free(&reference);
        free_pair(&p);
    }
    bcpm_quant_simd_select(NULL);
}

/* Every field of two results except the tensor name must be equal. */
static void assert_same_result(const struct bcpm_reference_result *a,
                               const struct bcpm_reference_result *b)
{
    assert_memory_equal(a->policy, b->policy, sizeof(a->policy));
    assert_int_equal(a->policy_disagreements, b->policy_disagreements);
    assert_int_equal(a->nonfinite_groups, b->nonfinite_groups);
    assert_int_equal(a->first_nonfinite_row, b->first_nonfinite_row);
    assert_int_equal(a->first_nonfinite_column, b->first_nonfinite_column);
    assert_int_equal(a->matched, b->matched);
    assert_int_equal(a->looks_quantized_twice, b->looks_quantized_twice);
}

/* What a set of pairs exercised, summed over both policies. */
struct exercised {
    uint64_t disagreements, boundary, mismatches, stored_other, scale_boundary, scale_errors;
};

/*
 * Compare the fused pass over a BF16 pair with the full computation that
 * materialises every code (options.full_codes), with every table. The scalar
 * full computation is the reference. Adds what the pair exercised to seen.
 */
static void assert_fused_matches_full(const struct bcpm_tensor *pseudo,
                                      const struct bcpm_tensor *latent, int64_t group_size,
                                      float eps, struct exercised *seen)
{
    struct bcpm_reference_options options;
    struct bcpm_reference_result full, r;
    struct bcpm_error err = {0};

    bcpm_reference_options_init(&options);
    options.group_size = group_size;
    options.eps = eps;
    options.threads = 1;
    options.full_codes = 1;
    bcpm_quant_simd_select("scalar");
    assert_int_equal(bcpm_reference_compare(pseudo, latent, &options, NULL, NULL, &full, &err), 0);
    for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
        if (!bcpm_quant_simd_available(tables[k]))
            continue;
        bcpm_quant_simd_select(tables[k]);
        for (int fused = 0; fused < 2; fused++) {
            options.full_codes = !fused;
            options.threads = fused ? 3 : 1;
            assert_int_equal(bcpm_reference_compare(pseudo, latent, &options, NULL, NULL, &r,
                                                    &err),
                             0);
            assert_same_result(&r, &full);
            bcpm_reference_result_free(&r);
        }
    }
    seen->disagreements += full.policy_disagreements;
    for (int p = 0; p < 2; p++) {
        seen->boundary += full.policy[p].boundary;
        seen->mismatches += full.policy[p].mismatches;
        seen->stored_other += full.policy[p].stored_other;
        seen->scale_boundary += full.policy[p].scale_boundary;
        seen->scale_errors += full.policy[p].scale_errors;
    }
    bcpm_reference_result_free(&full);
    bcpm_quant_simd_select(NULL);
}

/* The fused pass and the full computation agree on every BF16 fixture pair. */
static void reference_fused_fixtures(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES), tested = 0;
    struct exercised seen = {0};

    (void)state;
    for (int i = 0; i < n; i++) {
        struct pair p;

        if (cases[i].latent != BCPM_DTYPE_BF16 || cases[i].stored != BCPM_DTYPE_BF16)
            continue;
        assert_true(load_pair(&cases[i], &p));
        for (int written = 0; written < 2; written++) {
            struct bcpm_tensor latent = test_tensor(p.c.latent, p.latent, p.c.rows, p.c.columns);
            struct bcpm_tensor pseudo = test_tensor(p.c.stored, p.pseudo[written], p.c.rows,
                                                    p.c.columns);
            assert_fused_matches_full(&pseudo, &latent, p.c.group_size, p.c.eps, &seen);
        }
        free_pair(&p);
        tested++;
    }
    assert_true(tested > 0);
    assert_true(seen.disagreements > 0);
    assert_true(seen.boundary > 0);
}

static uint32_t next_random(uint32_t *seed)
{
    *seed = *seed * 1664525u + 1013904223u;
    return *seed >> 8;
}

/*
 * Latent rows built around ties: half of each group at +-a and half at +-3a,
 * so the mean is 2a and the quotients are exactly 0.5 and 1.5. Then some
 * elements move one BF16 step, which moves the mean and splits the two
 * policies. The pseudo side is the fake-quant under either policy, with
 * planted defects: flipped codes, a foreign value, NaN, a scale one step off,
 * a row of zeros; the latent side gets a row of zeros (the eps floor) and a
 * NaN.
 */
static void reference_fused_ties(void **state)
{
    enum { ROWS = 24, COLUMNS = 96 };
    static uint16_t latent[ROWS * COLUMNS], pseudo[ROWS * COLUMNS];
    const int64_t group_sizes[] = {-1, 32, 16, 8};
    uint32_t seed = 41;
    struct exercised seen = {0};

    (void)state;
    for (int round = 0; round < 8; round++) {
        for (size_t g = 0; g < sizeof(group_sizes) / sizeof(group_sizes[0]); g++) {
            struct bcpm_fakequant_params params = {0};
            struct bcpm_error err = {0};
            struct bcpm_tensor lt, pt;

            for (int i = 0; i < ROWS * COLUMNS; i++) {
                float a = ldexpf(1.0f, -8 - (int)(next_random(&seed) % 4));
                float w = (i % 2 ? 3.0f : 1.0f) * a * (next_random(&seed) & 1 ? -1.0f : 1.0f);
                uint16_t h = bcpm_f32_to_bf16(w);

                if (next_random(&seed) % 8 == 0)
                    h = (uint16_t)(h + (next_random(&seed) & 1 ? 1 : -1));
                latent[i] = h;
            }
            for (int c = 0; c < COLUMNS; c++)
                latent[3 * COLUMNS + c] = 0;
            if (round % 2)
                latent[5 * COLUMNS + 7] = 0x7fc0u;

            lt = test_tensor(BCPM_DTYPE_BF16, latent, ROWS, COLUMNS);
            params.group_size = group_sizes[g];
            params.eps = 1e-5f;
            params.policy = round % 4 < 2 ? BCPM_COMPUTE_FLOAT32 : BCPM_COMPUTE_HALF;
            params.stored = BCPM_DTYPE_BF16;
            assert_int_equal(bcpm_fakequant_tensor(&lt, &params, pseudo, NULL, &err), 0);

            if (round >= 4) {
                for (int k = 0; k < 6; k++) {
                    int i = (int)(next_random(&seed) % (ROWS * COLUMNS));
                    pseudo[i] ^= 0x8000u;
                }
                pseudo[9 * COLUMNS + 1] = bcpm_f32_to_bf16(0.123f);
                pseudo[10 * COLUMNS + 2] = 0x7fc0u;
                for (int c = 0; c < COLUMNS; c++) {
                    if (pseudo[11 * COLUMNS + c] & 0x7fffu)
                        pseudo[11 * COLUMNS + c] = (uint16_t)(pseudo[11 * COLUMNS + c] + 1);
                    pseudo[12 * COLUMNS + c] = 0;
                }
            }
            pt = test_tensor(BCPM_DTYPE_BF16, pseudo, ROWS, COLUMNS);
            assert_fused_matches_full(&pt, &lt, group_sizes[g], 1e-5f, &seen);
        }
    }
    print_message("ties: %llu policy disagreements, %llu boundary codes, %llu mismatches "
                  "(%llu not codes), %llu boundary scales, %llu scale errors\n",
                  (unsigned long long)seen.disagreements, (unsigned long long)seen.boundary,
                  (unsigned long long)seen.mismatches, (unsigned long long)seen.stored_other,
                  (unsigned long long)seen.scale_boundary, (unsigned long long)seen.scale_errors);
    assert_true(seen.disagreements > 0);
    assert_true(seen.boundary > 0);
    assert_true(seen.mismatches > 0);
    assert_true(seen.stored_other > 0);
    assert_true(seen.scale_errors > 0);
}

/* NaN in the latent side: the group is reported by position and not compared. */
static void reference_latent_nan(void **state)
{
    struct quant_case cases[MAX_CASES];
    int n = fixture_cases(cases, MAX_CASES);
    struct bcpm_reference_result r;
    struct bcpm_reference_options options;
    struct bcpm_findings findings = {0};
    struct pair p;

    (void)state;
    assert_true(n > 0);
    assert_true(load_pair(&cases[0], &p)); /* bf16, one group per row */
    ((uint16_t *)p.latent)[4 * p.c.columns + 17] = 0x7fc0u;
    compare(&p, 0, BCPM_COMPUTE_FLOAT32, 1, &r);
    assert_int_equal(r.nonfinite_groups, 1);
    assert_int_equal(r.first_nonfinite_row, 4);
    assert_int_equal(r.first_nonfinite_column, 17);
    assert_int_equal(r.policy[0].mismatches, 0);

    bcpm_reference_options_init(&options);
    options.policy = BCPM_COMPUTE_FLOAT32;
    assert_int_equal(bcpm_reference_findings(&r, &options, "pseudo.bin", "latent.bin",
                                             &findings), 0);
    /* The only error; a reference.boundary note may follow. */
    assert_true(findings.count >= 1);
    assert_string_equal(findings.items[0].rule, "values.nonfinite");
    for (size_t i = 1; i < findings.count; i++)
        assert_int_equal(findings.items[i].severity, BCPM_SEVERITY_INFO);
    assert_string_equal(findings.items[0].file, "latent.bin");
    assert_int_equal(findings.items[0].row, 4);
    assert_int_equal(findings.items[0].column, 17);
    bcpm_findings_clear(&findings);
    bcpm_reference_result_free(&r);
    free_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reference_fixtures_match),
        cmocka_unit_test(reference_confusion_matrix),
        cmocka_unit_test(reference_paths_agree),
        cmocka_unit_test(reference_latent_nan),
        cmocka_unit_test(reference_fused_fixtures),
        cmocka_unit_test(reference_fused_ties),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
