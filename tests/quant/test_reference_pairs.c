/*
 * The reference check on checkpoint pairs written by torch.save
 * (fixtures/quant/pairs, from tools/gen_quant_fixtures.py): the correct
 * conversion passes, and each planted defect listed in defects.txt is found
 * with its rule id, tensor and position, and nothing else is an error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant/reference.h"

#include "fixtures.h"

#define MAX_TERNARY 64

static char ternary_storage[MAX_TERNARY][128];
static const char *ternary[MAX_TERNARY];
static size_t nternary;

static int load_ternary(void **state)
{
    (void)state;
    nternary = pair_ternary_names(ternary_storage, ternary, MAX_TERNARY);
    return nternary > 0 ? 0 : -1;
}

/* Compare two pair files; findings and results go to the caller. */
static void compare_files(const char *pseudo_file, const char *latent_file,
                          struct bcpm_findings *findings, struct bcpm_reference_result **results,
                          size_t *nresults)
{
    char pseudo_path[1024], latent_path[1024];
    struct bcpm_catalog *pseudo, *latent;
    struct bcpm_reference_options options;
    struct bcpm_error err = {0};
    int rc;

    assert_true(pair_path(pseudo_path, sizeof(pseudo_path), pseudo_file));
    assert_true(pair_path(latent_path, sizeof(latent_path), latent_file));
    assert_int_equal(bcpm_catalog_open(&pseudo, pseudo_path, NULL, &err), 0);
    assert_int_equal(bcpm_catalog_open(&latent, latent_path, NULL, &err), 0);
    bcpm_reference_options_init(&options);
    rc = bcpm_reference_compare_catalogs(pseudo, latent, ternary, nternary, &options, findings,
                                         results, nresults, &err);
    if (rc != 0)
        print_error("%s\n", err.message);
    assert_int_equal(rc, 0);
    bcpm_catalog_free(pseudo);
    bcpm_catalog_free(latent);
}

static size_t count_errors(const struct bcpm_findings *findings)
{
    size_t n = 0;

    for (size_t i = 0; i < findings->count; i++)
        n += findings->items[i].severity >= BCPM_SEVERITY_ERROR;
    return n;
}

static void pairs_clean_conversion(void **state)
{
    struct bcpm_findings findings = {0};
    struct bcpm_reference_result *results;
    size_t nresults;

    (void)state;
    compare_files("pseudo.pt", "latent.pt", &findings, &results, &nresults);
    assert_int_equal(count_errors(&findings), 0);
    assert_int_equal(nresults, nternary);
    for (size_t i = 0; i < nresults; i++) {
        const struct bcpm_reference_policy *p = &results[i].policy[BCPM_COMPUTE_FLOAT32];
        assert_int_equal(p->matches, results[i].elements);
        assert_int_equal(p->scale_errors, 0);
        assert_int_equal(results[i].matched, BCPM_COMPUTE_FLOAT32);
    }
    bcpm_reference_results_free(results, nresults);
    bcpm_findings_clear(&findings);
}

static void pairs_planted_defects(void **state)
{
    char path[1024], pseudo[128], latent[128], rule[64], tensor[256];
    long row, column;
    int checked = 0;
    FILE *f;

    (void)state;
    assert_true(pair_path(path, sizeof(path), "defects.txt"));
    f = fopen(path, "r");
    assert_non_null(f);
    while (fscanf(f, "%127s %127s %63s %255s %ld %ld", pseudo, latent, rule, tensor, &row,
                  &column) == 6) {
        struct bcpm_findings findings = {0};
        const struct bcpm_finding *found = NULL;

        compare_files(pseudo, latent, &findings, NULL, NULL);
        for (size_t i = 0; i < findings.count; i++) {
            const struct bcpm_finding *x = &findings.items[i];
            if (x->severity < BCPM_SEVERITY_ERROR)
                continue;
            if (strcmp(x->rule, rule) == 0 && x->tensor && strcmp(x->tensor, tensor) == 0)
                found = x;
            else
                print_error("%s: unexpected %s on %s: %s\n", pseudo, x->rule,
                            x->tensor ? x->tensor : "-", x->message);
        }
        if (!found)
            print_error("%s against %s: no %s finding on %s\n", pseudo, latent, rule, tensor);
        assert_non_null(found);
        assert_int_equal(count_errors(&findings), 1);
        if (row >= 0)
            assert_int_equal(found->row, row);
        if (column >= 0)
            assert_int_equal(found->column, column);
        if (strcmp(pseudo, "twice.pt") == 0)
            assert_non_null(strstr(found->message, "quantized twice"));
        if (strcmp(pseudo, "scale.pt") == 0)
            assert_null(strstr(found->message, "quantized twice"));
        print_message("%-12s %-18s %s: %s\n", pseudo, rule, tensor, found->message);
        bcpm_findings_clear(&findings);
        checked++;
    }
    fclose(f);
    assert_int_equal(checked, 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pairs_clean_conversion),
        cmocka_unit_test(pairs_planted_defects),
    };
    return cmocka_run_group_tests(tests, load_ternary, NULL);
}
