/*
 * --reference LATENT: compare the ternary tensors of a pseudo-quantized
 * checkpoint with the fake-quant recomputed from the latent weights, through
 * the quant module's catalog-level comparison, and keep the per-tensor
 * numbers for the reports.
 */
#include <stdlib.h>
#include <string.h>

#include "cli/check.h"
#include "cli/cli_common.h"
#include "quant/reference.h"
/* For the optional parameters of a reference.codes entry; engine.h has no accessor for them. */

void check_reference_init(struct check_reference *r, const char *path, const char *compute,
                          int64_t group_size, double eps, int threads)
{
    memset(r, 0, sizeof(*r));
    r->path = path;
    r->compute = compute;
    r->group_size = group_size;
    r->eps = eps;
    r->threads = threads;
}

/* Open the latent checkpoint once; every PATH is compared with the same one. */
static int open_latent(struct check_reference *r, const struct bcpm_ruleset *rs)
{
    struct bcpm_open_options options = {0};
    struct bcpm_error err;
    char text[2 * BCPM_ERROR_TEXT_MAX];

    if (r->latent)
        return CLI_CONTINUE;
    bcpm_error_clear(&err);
    bcpm_ruleset_allowed_globals(rs, &options.allowed_globals, &options.nallowed_globals);
    if (bcpm_catalog_open(&r->latent, r->path, &options, &err) != 0) {
        bcpm_error_file(&err, r->path);
        cli_error(CHECK_PROGRAM, "reference: %s", bcpm_error_format(&err, text, sizeof(text)));
        return CLI_EXIT_FAILED;
    }
    return CLI_CONTINUE;
}

/*
 * Fill the comparison parameters. The group size is --group-size, else the
 * one the engine used for this checkpoint's ternary tensors (the
 * ternary.values rule), else one group per row. eps is --eps, else the "eps"
 * parameter of a reference.codes entry in the rule files, else the
 * quantizer's default.
 */
static void comparison_options(const struct check_reference *r, const struct bcpm_ruleset *rs,
                               const struct bcpm_check_result *result, size_t first_tensor,
                               struct bcpm_reference_options *options)
{
    double value;

    bcpm_reference_options_init(options);
    options->threads = r->threads;
    bcpm_compute_from_name(r->compute, &options->policy);

    options->group_size = -1;
    for (size_t i = first_tensor; i < result->ntensors; i++) {
        const struct bcpm_tensor_stats *t = &result->tensors[i];
        if (t->role == BCPM_ROLE_TERNARY && t->ternary_checked && t->group_size != 0) {
            options->group_size = t->group_size;
            break;
        }
    }
    if (r->group_size != 0)
        options->group_size = r->group_size;

    if (bcpm_ruleset_param_number(rs, "reference.codes", "eps", &value) == 0)
        options->eps = (float)value;
    if (bcpm_ruleset_param_number(rs, "reference.codes", "scale_tolerance_ulps", &value) == 0)
        options->scale_tolerance_ulps = (uint32_t)value;
    if (r->eps > 0)
        options->eps = (float)r->eps;
}

/* Names of the ternary tensors the engine found in result from first_tensor on. */
static const char **ternary_names(const struct bcpm_check_result *result, size_t first_tensor,
                                  size_t *count)
{
    size_t n = result->ntensors - first_tensor;
    const char **names = calloc(n ? n : 1, sizeof(*names));

    *count = 0;
    if (!names)
        return NULL;
    for (size_t i = first_tensor; i < result->ntensors; i++) {
        if (result->tensors[i].role == BCPM_ROLE_TERNARY)
            names[(*count)++] = result->tensors[i].name;
    }
    return names;
}

/* Keep the numbers of one compared tensor for the reports, in the policy the findings use. */
static int keep_numbers(struct check_reference *r, const struct bcpm_reference_result *res)
{
    int policy = res->matched == BCPM_COMPUTE_HALF ? BCPM_COMPUTE_HALF : BCPM_COMPUTE_FLOAT32;
    const struct bcpm_reference_policy *p = &res->policy[policy];
    struct bcpm_report_reference *t;
    char *name;

    if (r->ntensors == r->capacity) {
        size_t capacity = r->capacity ? 2 * r->capacity : 64;
        struct bcpm_report_reference *tensors = realloc(r->tensors, capacity * sizeof(*tensors));
        char **names;

        if (!tensors)
            return -1;
        r->tensors = tensors;
        names = realloc(r->names, capacity * sizeof(*names));
        if (!names)
            return -1;
        r->names = names;
        r->capacity = capacity;
    }
    name = strdup(res->tensor ? res->tensor : "?");
    if (!name)
        return -1;

    t = &r->tensors[r->ntensors];
    memset(t, 0, sizeof(*t));
    r->names[r->ntensors++] = name;
    t->name = name;
    t->policy = bcpm_compute_name((enum bcpm_compute)policy);
    t->elements = res->elements;
    t->matches = p->matches;
    t->boundary = p->boundary;
    t->mismatches = p->mismatches;
    memcpy(t->confusion, p->confusion, sizeof(t->confusion));
    t->groups = res->groups;
    t->scale_mismatches = p->scale_errors;
    t->scale_ulps_max = (double)p->scale_ulps_max;
    t->quantized_twice = res->looks_quantized_twice;
    return 0;
}

int check_reference_compare(struct check_reference *r, const struct bcpm_ruleset *rs,
                            const struct bcpm_catalog *catalog,
                            struct bcpm_check_result *result, size_t first_file)
{
    struct bcpm_reference_options options;
    struct bcpm_reference_result *results = NULL;
    size_t nresults = 0, nnames = 0, first_tensor, first_finding;
    const char **names;
    struct bcpm_error err;
    char text[2 * BCPM_ERROR_TEXT_MAX];
    int rc;

    if (!r->path)
        return CLI_CONTINUE;
    if (open_latent(r, rs) != CLI_CONTINUE)
        return CLI_EXIT_FAILED;

    first_tensor = first_file < result->nfiles ? result->files[first_file].first_tensor
                                               : result->ntensors;
    comparison_options(r, rs, result, first_tensor, &options);
    names = ternary_names(result, first_tensor, &nnames);
    if (!names) {
        cli_error(CHECK_PROGRAM, "out of memory");
        return CLI_EXIT_FAILED;
    }

    bcpm_error_clear(&err);
    first_finding = result->findings.count;
    rc = bcpm_reference_compare_catalogs(catalog, r->latent, names, nnames, &options,
                                         &result->findings, &results, &nresults, &err);
    free(names);
    /* The rule files set the severities of reference.* findings or disable them. */
    bcpm_ruleset_apply(rs, &result->findings, first_finding);
    if (rc != 0) {
        bcpm_error_file(&err, catalog->path);
        cli_error(CHECK_PROGRAM, "reference comparison with %s failed: %s", r->path,
                  bcpm_error_format(&err, text, sizeof(text)));
        return CLI_EXIT_FAILED;
    }

    for (size_t i = 0; i < nresults; i++) {
        if (keep_numbers(r, &results[i]) != 0) {
            bcpm_reference_results_free(results, nresults);
            cli_error(CHECK_PROGRAM, "out of memory");
            return CLI_EXIT_FAILED;
        }
    }
    bcpm_reference_results_free(results, nresults);
    return CLI_CONTINUE;
}

void check_reference_report(const struct check_reference *r, struct bcpm_report_options *o)
{
    if (!r->path)
        return;
    o->reference_path = r->path;
    o->reference = r->tensors;
    o->nreference = r->ntensors;
}

void check_reference_free(struct check_reference *r)
{
    for (size_t i = 0; i < r->ntensors; i++)
        free(r->names[i]);
    free(r->names);
    free(r->tensors);
    if (r->latent)
        bcpm_catalog_free(r->latent);
    memset(r, 0, sizeof(*r));
}
