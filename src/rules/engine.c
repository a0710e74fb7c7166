/*
 * bcpm_check_catalog: the order of the steps. The readers' security findings
 * come first, then the layout (names, shapes, dtypes), then one pass over the
 * tensor data, then the value, ternary and stage findings drawn from it.
 */
#include "rules/check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void bcpm_check_options_init(struct bcpm_check_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->expected_stage = BCPM_STAGE_UNKNOWN;
    opt->fail_on = BCPM_SEVERITY_ERROR;
}

int bcpm_check_result_init(struct bcpm_check_result *result, const struct bcpm_ruleset *rs,
                           enum bcpm_severity fail_on, struct bcpm_error *err)
{
    memset(result, 0, sizeof(*result));
    result->fail_on = fail_on;
    if (rs) {
        result->rules_digest = strdup(bcpm_ruleset_digest(rs));
        if (!result->rules_digest)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL, "out of memory");
    }
    return 0;
}

static const char *format_name(const struct bcpm_catalog *cat)
{
    struct stat st;

    if (stat(cat->path, &st) == 0 && S_ISDIR(st.st_mode))
        return "folder";
    if (cat->nfiles != 1)
        return "sharded";
    switch (cat->files[0].format) {
    case BCPM_FORMAT_TORCH_ZIP:
        return "torch-zip";
    case BCPM_FORMAT_TORCH_LEGACY:
        return "torch-legacy";
    default:
        return "safetensors";
    }
}

/* Copy the readers' security findings, with the severities the rule set gives their ids. */
static int copy_reader_findings(struct check_ctx *ctx)
{
    const struct bcpm_findings *src = &ctx->cat->findings;
    size_t first = ctx->findings->count;

    for (size_t i = 0; i < src->count; i++) {
        const struct bcpm_finding *r = &src->items[i];
        struct bcpm_finding *f;

        f = bcpm_findings_add(ctx->findings, r->rule, r->severity, r->file, r->tensor, "%s",
                              r->message);
        if (!f)
            return -1;
        f->has_offset = r->has_offset;
        f->offset = r->offset;
        f->row = r->row;
        f->column = r->column;
        f->value = r->value;
    }
    bcpm_ruleset_apply(ctx->rs, ctx->findings, first);
    return 0;
}

/* Append the checked file and one statistics slot per tensor to result. */
static int add_slots(struct bcpm_check_result *result, const struct bcpm_catalog *cat,
                     struct bcpm_error *err)
{
    struct bcpm_checked_file *files, *file;
    struct bcpm_tensor_stats *tensors;

    files = realloc(result->files, (result->nfiles + 1) * sizeof(*files));
    if (!files)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    result->files = files;
    tensors = realloc(result->tensors, (result->ntensors + cat->ntensors + 1) * sizeof(*tensors));
    if (!tensors)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    result->tensors = tensors;

    file = &files[result->nfiles];
    memset(file, 0, sizeof(*file));
    file->path = strdup(cat->path);
    file->format = strdup(format_name(cat));
    file->first_tensor = result->ntensors;
    file->ntensors = cat->ntensors;
    for (size_t f = 0; f < cat->nfiles; f++) {
        file->size_bytes += cat->files[f].map->size;
        if (cat->files[f].map->mtime_ns > file->mtime_ns)
            file->mtime_ns = cat->files[f].map->mtime_ns;
    }
    result->nfiles++;

    memset(&tensors[result->ntensors], 0, cat->ntensors * sizeof(*tensors));
    for (size_t i = 0; i < cat->ntensors; i++) {
        const struct bcpm_tensor *t = &cat->tensors[i];
        struct bcpm_tensor_stats *st = &tensors[result->ntensors + i];

        st->name = strdup(t->name);
        st->file = strdup(cat->files[t->file].path);
        st->dtype = t->dtype;
        st->ndim = t->ndim;
        memcpy(st->shape, t->shape, sizeof(st->shape));
        st->numel = t->numel;
        st->shards_per_row = 1;
        if (!st->name || !st->file) {
            /* Count the slots filled so far, so that bcpm_check_result_free frees them. */
            result->ntensors += i + 1;
            return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
        }
    }
    result->ntensors += cat->ntensors;
    if (!file->path || !file->format)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    return 0;
}

int bcpm_check_catalog(const struct bcpm_ruleset *rs, const struct bcpm_catalog *cat,
                       const struct bcpm_check_options *opt, struct bcpm_check_result *result,
                       struct bcpm_error *err)
{
    struct bcpm_check_options defaults;
    struct bcpm_checked_file *file;
    struct check_ctx ctx;
    int rc;

    if (!opt) {
        bcpm_check_options_init(&defaults);
        opt = &defaults;
    }
    if (!result->rules_digest && !(result->rules_digest = strdup(bcpm_ruleset_digest(rs))))
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL, "out of memory");

    rc = add_slots(result, cat, err);
    if (rc != 0)
        return rc;

    memset(&ctx, 0, sizeof(ctx));
    ctx.rs = rs;
    ctx.cat = cat;
    ctx.opt = opt;
    ctx.findings = &result->findings;
    ctx.stats = &result->tensors[result->files[result->nfiles - 1].first_tensor];
    ctx.info = calloc(cat->ntensors + 1, sizeof(*ctx.info));
    if (!ctx.info)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");

    if (copy_reader_findings(&ctx) != 0)
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    if (rc == 0)
        rc = layout_check(&ctx, err);
    for (size_t i = 0; rc == 0 && i < cat->ntensors; i++)
        ctx.stats[i].role = ctx.info[i].role;
    if (rc == 0)
        rc = scan_tensors(&ctx, err);
    if (rc == 0)
        rc = ternary_report(&ctx, err);
    if (rc == 0 && ctx.out_of_memory)
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");

    file = &result->files[result->nfiles - 1];
    file->stage_detected = ctx.stage;

    /*
     * Both families share tensor names, so a layout chosen by names alone
     * names no family. The family and config are kept when the check failed
     * too: a report of a config error must show which config it read.
     */
    if (ctx.layout && (ctx.layout_from_config || opt->family) &&
        !(file->family = strdup(ctx.layout->family)) && rc == 0)
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    if (ctx.config.path && !(file->config_path = strdup(ctx.config.path)) && rc == 0)
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");

    config_clear(&ctx.config);
    free(ctx.info);
    return rc;
}
