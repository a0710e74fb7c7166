/*
 * --reference LATENT: compare the ternary tensors of a pseudo-quantized
 * checkpoint with the fake-quant recomputed from the latent weights, through
 * the quant module's catalog-level comparison, and keep the per-tensor
 * numbers for the reports.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/check.h"
#include "cli/cli_common.h"
#include "quant/fakequant.h"
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

/*
 * Open the latent checkpoint once; every PATH is compared with the same one.
 * A reference that cannot be read is reported once, as a critical
 * format.unreadable finding on its path, and not retried for later PATHs.
 */
static void load_latent(struct check_reference *r, const struct bcpm_ruleset *rs)
{
    struct bcpm_open_options options = {0};

    if (r->latent || r->latent_failed)
        return;
    bcpm_error_clear(&r->latent_error);
    bcpm_ruleset_allowed_globals(rs, &options.allowed_globals, &options.nallowed_globals);
    if (bcpm_catalog_open(&r->latent, r->path, &options, &r->latent_error) != 0) {
        r->latent = NULL;
        r->latent_failed = 1;
        bcpm_error_file(&r->latent_error, r->path);
    }
}

static int open_latent(struct check_reference *r, const struct bcpm_ruleset *rs,
                       struct bcpm_check_result *result)
{
    char text[2 * BCPM_ERROR_TEXT_MAX];

    load_latent(r, rs);
    if (r->latent)
        return CLI_CONTINUE;
    if (r->latent_reported)
        return CLI_EXIT_FAILED;
    r->latent_reported = 1;
    cli_error(CHECK_PROGRAM, "reference: %s",
              bcpm_error_format(&r->latent_error, text, sizeof(text)));
    bcpm_findings_add(&result->findings, "format.unreadable", BCPM_SEVERITY_CRITICAL, r->path,
                      NULL, "the reference %s could not be read: %s", r->path,
                      r->latent_error.message);
    return CLI_EXIT_FAILED;
}

/*
 * Fill the comparison parameters other than the group size (left at one
 * group per row). eps is --eps, else the "eps" parameter of a
 * reference.codes entry in the rule files, else the quantizer's default.
 */
static void base_options(const struct check_reference *r, const struct bcpm_ruleset *rs,
                         struct bcpm_reference_options *options)
{
    double value;

    bcpm_reference_options_init(options);
    options->threads = r->threads;
    bcpm_compute_from_name(r->compute, &options->policy);
    if (bcpm_ruleset_param_number(rs, "reference.codes", "eps", &value) == 0)
        options->eps = (float)value;
    if (bcpm_ruleset_param_number(rs, "reference.codes", "scale_tolerance_ulps", &value) == 0)
        options->scale_tolerance_ulps = (uint32_t)value;
    if (r->eps > 0)
        options->eps = (float)r->eps;
}

/*
 * Fill the comparison parameters after the engine ran. The group size is
 * --group-size, else the one the engine used for this checkpoint's ternary
 * tensors (the ternary.values rule), else one group per row.
 */
static void comparison_options(const struct check_reference *r, const struct bcpm_ruleset *rs,
                               const struct bcpm_check_result *result, size_t first_tensor,
                               struct bcpm_reference_options *options)
{
    base_options(r, rs, options);
    for (size_t i = first_tensor; i < result->ntensors; i++) {
        const struct bcpm_tensor_stats *t = &result->tensors[i];
        if (t->role == BCPM_ROLE_TERNARY && t->ternary_checked && t->group_size != 0) {
            options->group_size = t->group_size;
            break;
        }
    }
    if (r->group_size != 0)
        options->group_size = r->group_size;
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
static int keep_numbers(struct check_reference *r, const struct bcpm_reference_result *res,
                        size_t file)
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
    t->file = file;
    t->policy = bcpm_compute_name((enum bcpm_compute)policy);
    t->elements = res->elements;
    t->matches = p->matches;
    t->boundary = p->boundary;
    t->disagreements = res->policy_disagreements;
    t->mismatches = p->mismatches;
    t->not_compared = res->nonfinite_groups * res->group_size;
    t->not_a_code = p->stored_other;
    t->scale_boundary = p->scale_boundary;
    memcpy(t->confusion, p->confusion, sizeof(t->confusion));
    t->groups = res->groups;
    t->scale_mismatches = p->scale_errors;
    t->scale_ulps_max = (double)p->scale_ulps_max;
    t->quantized_twice = res->looks_quantized_twice;
    return 0;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static const struct bcpm_reference_result *result_of(const struct bcpm_reference_result *results,
                                                     size_t nresults, const char *tensor)
{
    for (size_t i = 0; tensor && i < nresults; i++) {
        if (results[i].tensor && strcmp(results[i].tensor, tensor) == 0)
            return &results[i];
    }
    return NULL;
}

static void drop_finding(struct bcpm_findings *list, size_t i)
{
    struct bcpm_finding *f = &list->items[i];

    free(f->rule);
    free(f->file);
    free(f->tensor);
    free(f->message);
    memmove(f, f + 1, (list->count - i - 1) * sizeof(*f));
    list->count--;
}

/* Replace the message of a reference.boundary finding; the old one stays when memory is short. */
static void reword_boundary(struct bcpm_finding *f, const struct bcpm_reference_result *res,
                            enum bcpm_compute requested)
{
    const struct bcpm_reference_policy *p = &res->policy[res->matched];
    const char *verdict = bcpm_reference_verdict(res, requested);
    char text[512], *copy;

    snprintf(text, sizeof(text),
             "%s%s policy%s %" PRIu64 " %s and %" PRIu64 " %s differ from it only at rounding "
             "boundaries (a quotient at a tie, or a group sum one ulp away); the float32 and "
             "bf16 policies disagree on %" PRIu64 " %s",
             verdict, bcpm_compute_name(res->matched), *verdict ? ";" : ":", p->boundary,
             plural(p->boundary, "code", "codes"), p->scale_boundary,
             plural(p->scale_boundary, "scale", "scales"), res->policy_disagreements,
             plural(res->policy_disagreements, "element", "elements"));
    copy = strdup(text);
    if (!copy)
        return;
    free(f->message);
    f->message = copy;
}

/*
 * 1 when the tensor matches its policy bit for bit: every group was compared,
 * no code or scale differs from the policy's, not even at a rounding
 * boundary, and every stored value is a code.
 */
static int exact_match(const struct bcpm_reference_result *res)
{
    const struct bcpm_reference_policy *p = &res->policy[res->matched];

    return res->nonfinite_groups == 0 && p->mismatches == 0 && p->stored_other == 0 &&
           p->scale_errors == 0 && p->boundary == 0 && p->scale_boundary == 0;
}

/*
 * The comparison adds a reference.boundary finding for every tensor under
 * --compute auto, even one that matches a policy bit for bit, and under an
 * explicit policy for every tensor where the policies disagree. Keep it only
 * for tensors with codes or scales that match just at a rounding boundary.
 * Under --compute auto, fold the exact matches where the policies disagree
 * but the export sides with one of them throughout into one finding for the
 * checkpoint. A tensor with code or scale errors, or with groups left out
 * for NaN or Inf in the latent weights, is no such match.
 */
static void fold_boundary(struct bcpm_findings *findings, size_t first_finding,
                          const struct bcpm_reference_result *results, size_t nresults,
                          enum bcpm_compute requested, const char *pseudo_file)
{
    uint64_t tensors[2] = {0, 0}, disagreements = 0;
    size_t i = first_finding;

    while (i < findings->count) {
        struct bcpm_finding *f = &findings->items[i];
        const struct bcpm_reference_result *res;

        if (!f->rule || strcmp(f->rule, "reference.boundary") != 0 ||
            !(res = result_of(results, nresults, f->tensor))) {
            i++;
            continue;
        }
        if (res->policy[res->matched].boundary > 0 ||
            res->policy[res->matched].scale_boundary > 0) {
            reword_boundary(f, res, requested);
            i++;
            continue;
        }
        if (requested == BCPM_COMPUTE_AUTO && res->policy_disagreements > 0 &&
            exact_match(res)) {
            tensors[res->matched == BCPM_COMPUTE_HALF]++;
            disagreements += res->policy_disagreements;
        }
        drop_finding(findings, i);
    }

    if (tensors[0] + tensors[1] == 0)
        return;
    bcpm_findings_add(findings, "reference.boundary", BCPM_SEVERITY_INFO, pseudo_file, NULL,
                      "%" PRIu64 " %s match the float32 policy and %" PRIu64 " the bf16 policy "
                      "bit for bit; in them the two policies disagree on %" PRIu64 " %s, all at "
                      "rounding boundaries",
                      tensors[0], plural(tensors[0], "tensor", "tensors"), tensors[1],
                      disagreements, plural(disagreements, "element", "elements"));
}

/* The engine's offer of one tensor (struct bcpm_check_tensor_pass); errors are left for later. */
static int reference_pass(void *ctx, size_t index, int ternary, int64_t group_size,
                          const struct bcpm_quant_digest *digest, struct bcpm_ternary_scan *scan,
                          struct bcpm_value_stats *stats)
{
    struct check_reference *r = ctx;
    struct bcpm_error err;

    /* A tensor with its own group size is compared after the engine, with the common one. */
    if (!r->run || (ternary && group_size != r->run_group_size))
        return 0;
    bcpm_error_clear(&err);
    return bcpm_reference_run_tensor(r->run, index, ternary, digest, scan, stats, &err) == 1;
}

/*
 * The group size check_reference_compare will use, known before the engine
 * ran: --group-size, else the ternary.values rule's, else one group per row.
 */
static int64_t planned_group_size(const struct check_reference *r, const struct bcpm_ruleset *rs)
{
    double value;

    if (r->group_size != 0)
        return r->group_size;
    if (bcpm_ruleset_param_number(rs, "ternary.values", "group_size", &value) == 0)
        return (int64_t)value;
    return -1;
}

void check_reference_begin(struct check_reference *r, const struct bcpm_ruleset *rs,
                           const struct bcpm_catalog *catalog,
                           struct bcpm_check_options *check_options)
{
    struct bcpm_reference_options options;
    struct bcpm_error err;

    check_reference_end(r);
    if (!r->path)
        return;
    load_latent(r, rs);
    if (!r->latent)
        return;

    base_options(r, rs, &options);
    options.group_size = planned_group_size(r, rs);
    bcpm_error_clear(&err);
    if (bcpm_reference_run_new(catalog, r->latent, &options, &r->run, &err) != 0)
        return;
    r->run_group_size = options.group_size;
    r->pass.run = reference_pass;
    r->pass.ctx = r;
    check_options->tensor_pass = &r->pass;
}

void check_reference_end(struct check_reference *r)
{
    bcpm_reference_run_free(r->run);
    r->run = NULL;
}

/*
 * Finish the run begun inside the engine, when it used the options the
 * comparison settles on now; else compare the whole catalogs afresh.
 */
static int compare_or_finish(struct check_reference *r, const struct bcpm_catalog *catalog,
                             const char *const *names, size_t nnames,
                             const struct bcpm_reference_options *options,
                             struct bcpm_check_result *result,
                             struct bcpm_reference_result **results, size_t *nresults,
                             struct bcpm_error *err)
{
    int rc;

    if (r->run && options->group_size == r->run_group_size) {
        rc = bcpm_reference_run_finish(r->run, names, nnames, &result->findings, results,
                                       nresults, err);
        check_reference_end(r);
        return rc;
    }
    check_reference_end(r);
    return bcpm_reference_compare_catalogs(catalog, r->latent, names, nnames, options,
                                           &result->findings, results, nresults, err);
}

/*
 * An export whose values are not ternary (stage latent) with reference.codes
 * findings is most likely a latent checkpoint passed as PATH, the two
 * arguments swapped. Say so once, beside the per-tensor findings.
 */
static void note_latent_export(struct bcpm_check_result *result, size_t first_file,
                               size_t first_finding, const char *path, const char *reference)
{
    int codes = 0;

    if (first_file >= result->nfiles || result->files[first_file].stage_detected !=
                                            BCPM_STAGE_LATENT)
        return;
    for (size_t i = first_finding; i < result->findings.count && !codes; i++)
        codes = strcmp(result->findings.items[i].rule, "reference.codes") == 0;
    if (!codes)
        return;
    if (!bcpm_findings_add(&result->findings, "reference.codes", BCPM_SEVERITY_ERROR, path,
                           NULL,
                           "the checked checkpoint holds latent weights, not ternary codes, so "
                           "it cannot be the export of %s; were the checkpoint and --reference "
                           "swapped?",
                           reference))
        return;

    /* First among the comparison's findings, where the truncated text report shows it. */
    {
        struct bcpm_finding note = result->findings.items[result->findings.count - 1];
        struct bcpm_finding *at = &result->findings.items[first_finding];

        memmove(at + 1, at, (result->findings.count - 1 - first_finding) * sizeof(*at));
        *at = note;
    }
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
    if (open_latent(r, rs, result) != CLI_CONTINUE)
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
    rc = compare_or_finish(r, catalog, names, nnames, &options, result, &results, &nresults,
                           &err);
    free(names);
    if (rc == 0) {
        fold_boundary(&result->findings, first_finding, results, nresults, options.policy,
                      catalog->path);
        note_latent_export(result, first_file, first_finding, catalog->path, r->path);
    }
    /* The rule files set the severities of reference.* findings or disable them. */
    bcpm_ruleset_apply(rs, &result->findings, first_finding);
    if (rc != 0) {
        bcpm_error_file(&err, catalog->path);
        cli_error(CHECK_PROGRAM, "reference comparison with %s failed: %s", r->path,
                  bcpm_error_format(&err, text, sizeof(text)));
        /* A run that exits 2 names its cause in the reports too, as an unreadable file does. */
        bcpm_findings_add(&result->findings, "format.unreadable", BCPM_SEVERITY_CRITICAL,
                          err.file[0] ? err.file : catalog->path, err.entry[0] ? err.entry : NULL,
                          "the comparison with the reference %s stopped here: %s", r->path,
                          err.message);
        return CLI_EXIT_FAILED;
    }

    for (size_t i = 0; i < nresults; i++) {
        if (keep_numbers(r, &results[i], first_file) != 0) {
            bcpm_reference_results_free(results, nresults);
            cli_error(CHECK_PROGRAM, "out of memory");
            return CLI_EXIT_FAILED;
        }
    }
    bcpm_reference_results_free(results, nresults);
    return CLI_CONTINUE;
}

/* ---- latent-only preview ---- */

/*
 * The group size of the preview: --group-size, else the one the engine
 * recorded for this checkpoint's ternary tensors, else the ternary.values
 * rule's, else one group per row.
 */
static int64_t preview_group_size(const struct check_reference *r, const struct bcpm_ruleset *rs,
                                  const struct bcpm_check_result *result, size_t first_tensor)
{
    double value;

    if (r->group_size != 0)
        return r->group_size;
    for (size_t i = first_tensor; i < result->ntensors; i++) {
        const struct bcpm_tensor_stats *t = &result->tensors[i];
        if (t->role == BCPM_ROLE_TERNARY && t->group_size != 0)
            return t->group_size;
    }
    if (bcpm_ruleset_param_number(rs, "ternary.values", "group_size", &value) == 0 && value != 0)
        return (int64_t)value;
    return -1;
}

static float preview_eps(const struct check_reference *r, const struct bcpm_ruleset *rs)
{
    double value;

    if (r->eps > 0)
        return (float)r->eps;
    if (bcpm_ruleset_param_number(rs, "reference.codes", "eps", &value) == 0 && value > 0)
        return (float)value;
    return BCPM_FAKEQUANT_DEFAULT_EPS;
}

static struct bcpm_report_preview *new_preview(struct check_reference *r)
{
    if (r->npreviews == r->preview_capacity) {
        size_t capacity = r->preview_capacity ? 2 * r->preview_capacity : 64;
        struct bcpm_report_preview *grown = realloc(r->previews, capacity * sizeof(*grown));

        if (!grown)
            return NULL;
        r->previews = grown;
        r->preview_capacity = capacity;
    }
    memset(&r->previews[r->npreviews], 0, sizeof(r->previews[0]));
    return &r->previews[r->npreviews++];
}

static void add_eps_floor_finding(struct bcpm_findings *findings, const struct bcpm_tensor_stats *t,
                                  const struct bcpm_report_preview *p)
{
    struct bcpm_finding *f;

    if (p->eps_floor_groups == 0)
        return;
    f = bcpm_findings_add(findings, "quant.eps-floor", BCPM_SEVERITY_INFO, t->file, t->name,
                          "%" PRIu64 " of %" PRIu64 " %s a mean |W| below eps = %g, so the "
                          "export would store eps as their scale; first at row %" PRId64,
                          p->eps_floor_groups, p->groups,
                          p->groups == 1 ? "group has" : "groups have",
                          (double)p->eps, p->first_eps_floor_row);
    if (f)
        f->row = p->first_eps_floor_row;
}

int check_reference_preview(struct check_reference *r, const struct bcpm_ruleset *rs,
                            const struct bcpm_catalog *catalog,
                            struct bcpm_check_result *result, size_t first_file)
{
    enum bcpm_compute policy = strcmp(r->compute, "bf16") == 0 ? BCPM_COMPUTE_HALF
                                                               : BCPM_COMPUTE_FLOAT32;
    size_t first_tensor, first_finding = result->findings.count;
    enum bcpm_stage stage;
    int64_t group_size;
    float eps;

    if (r->path || first_file >= result->nfiles)
        return CLI_CONTINUE;
    stage = result->files[first_file].stage_detected;
    if (stage != BCPM_STAGE_LATENT && stage != BCPM_STAGE_FINETUNED)
        return CLI_CONTINUE;

    first_tensor = result->files[first_file].first_tensor;
    group_size = preview_group_size(r, rs, result, first_tensor);
    eps = preview_eps(r, rs);
    for (size_t i = first_tensor; i < result->ntensors; i++) {
        const struct bcpm_tensor_stats *t = &result->tensors[i];
        const struct bcpm_tensor *tensor;
        struct bcpm_quant_options qopt = {0};
        struct bcpm_fakequant_preview out;
        struct bcpm_report_preview *p;
        struct bcpm_error err;
        char text[2 * BCPM_ERROR_TEXT_MAX];

        if (t->role != BCPM_ROLE_TERNARY || !(tensor = bcpm_catalog_find(catalog, t->name)))
            continue;
        qopt.threads = r->threads;
        /* Drop the pages once read, as the engine does, to keep the resident set small. */
        qopt.release = bcpm_quant_tensor_map(catalog, tensor);
        bcpm_error_clear(&err);
        if (bcpm_fakequant_preview(tensor, group_size, eps, policy, &qopt, &out, &err) != 0) {
            /* The preview only informs: the checks ran, so a tensor it cannot cover
               (a group size that does not divide its rows) is named and skipped. */
            bcpm_error_file(&err, catalog->path);
            cli_error(CHECK_PROGRAM, "export preview skipped: %s",
                      bcpm_error_format(&err, text, sizeof(text)));
            continue;
        }
        p = new_preview(r);
        if (!p) {
            cli_error(CHECK_PROGRAM, "out of memory");
            return CLI_EXIT_FAILED;
        }
        p->tensor = i;
        p->policy = bcpm_compute_name(policy);
        p->eps = eps;
        p->group_size = out.group_size;
        p->groups = out.groups;
        memcpy(p->codes, out.codes, sizeof(p->codes));
        p->zero_fraction = out.zero_fraction;
        p->scale_min = out.scale_min;
        p->scale_max = out.scale_max;
        p->scale_mean = out.scale_mean;
        p->eps_floor_groups = out.eps_floor_groups;
        p->first_eps_floor_row = out.first_eps_floor_row;
        p->nonfinite_groups = out.nonfinite_groups;
        add_eps_floor_finding(&result->findings, t, p);
    }
    /* The rule files may set the severity of quant.eps-floor or disable it. */
    bcpm_ruleset_apply(rs, &result->findings, first_finding);
    return CLI_CONTINUE;
}

void check_reference_report(const struct check_reference *r, struct bcpm_report_options *o)
{
    o->preview = r->previews;
    o->npreview = r->npreviews;
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
    free(r->previews);
    check_reference_end(r);
    if (r->latent)
        bcpm_catalog_free(r->latent);
    memset(r, 0, sizeof(*r));
}
