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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
