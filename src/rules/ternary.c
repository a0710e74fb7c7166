/*
 * Findings drawn from the value pass: non-finite values, ternary value sets,
 * group structure, scales, and the stage of the checkpoint. They are emitted
 * after the pass, tensor by tensor in file byte order, because whether a
 * non-ternary group is an error depends on the stage, which only the whole
 * model shows.
 */
#include "rules/check.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"

/* Tensors of one kind (same name with the layer index replaced) for scale outliers. */
struct kind_group {
    char *kind;
    double *medians;
    size_t count;
    size_t capacity;
};

static enum bcpm_severity severity_of(const struct rule_check *c)
{
    return c ? c->severity : BCPM_SEVERITY_INFO;
}

/*
 * A ternary tensor looks latent when most of its groups hold many distinct
 * magnitudes. Groups that hold only a few (a damaged conversion) do not count:
 * such a tensor is pseudo-quantized with value errors, never a latent pass.
 */
static int looks_latent(const struct check_ctx *ctx, const struct ternary_summary *s)
{
    const struct rule_check *c = rules_find_kind(ctx->rs, "stage.mismatch");
    double fraction = rules_param_number(c, "latent_fraction", 0.5);

    return s->scanned && s->groups && (double)s->groups_many > fraction * (double)s->groups;
}

/* "NaN", "Inf" or "-Inf": the C library may print a NaN as "-nan". */
static const char *nonfinite_name(double v)
{
    if (isnan(v))
        return "NaN";
    return v < 0 ? "-Inf" : "Inf";
}

static void report_nonfinite(struct check_ctx *ctx, size_t i)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct tensor_info *info = &ctx->info[i];
    const struct bcpm_tensor_stats *st = &ctx->stats[i];
    const struct rule_check *c;
    struct bcpm_finding *f;
    uint64_t rows, columns, index;

    if (st->nan + st->inf == 0 || info->first_nonfinite < 0)
        return;
    c = rules_select(ctx->rs, "values.nonfinite", t->name, info->role);
    bcpm_tensor_matrix_shape(t, &rows, &columns);
    index = (uint64_t)info->first_nonfinite;
    f = check_report(ctx, c, severity_of(c), check_tensor_file(ctx, i), t->name,
                     "%" PRIu64 " NaN and %" PRIu64 " Inf of %" PRIu64 " elements; the first "
                     "is %s at row %" PRIu64 ", column %" PRIu64, st->nan, st->inf, t->numel,
                     nonfinite_name(info->nonfinite_value), columns ? index / columns : 0,
                     columns ? index % columns : 0);
    if (f) {
        f->row = (int64_t)(columns ? index / columns : 0);
        f->column = (int64_t)(columns ? index % columns : 0);
        f->value = info->nonfinite_value;
        f->has_offset = bcpm_quant_file_offset(ctx->cat, t, index, &f->offset);
    }
}

static void report_values(struct check_ctx *ctx, size_t i)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct ternary_summary *s = &ctx->info[i].ternary;
    const struct rule_check *c = rules_select(ctx->rs, "ternary.values", t->name,
                                              BCPM_ROLE_TERNARY);
    uint64_t codes = s->codes[0] + s->codes[1] + s->codes[2];
    char tail[160];
    struct bcpm_finding *f;

    if (!s->scanned || s->groups_bad == 0)
        return;

    /* Without a single-scale group there are no code fractions to give. */
    if (codes)
        snprintf(tail, sizeof(tail), "codes -1/0/+1 over ternary groups: %.3f/%.3f/%.3f",
                 (double)s->codes[0] / (double)codes, (double)s->codes[1] / (double)codes,
                 (double)s->codes[2] / (double)codes);
    else
        snprintf(tail, sizeof(tail), "no group holds a single scale");
    if (s->groups_sharded)
        snprintf(tail + strlen(tail), sizeof(tail) - strlen(tail),
                 "; %" PRIu64 " other %s one scale per column block (ternary.groups)",
                 s->groups_sharded, s->groups_sharded == 1 ? "group holds" : "groups hold");

    f = check_report(ctx, c, severity_of(c), check_tensor_file(ctx, i), t->name,
                     "%" PRIu64 " of %" PRIu64 " groups (group size %" PRId64 ") %s not "
                     "ternary; the first value that is not -s, 0 or +s is %.9g at row %" PRId64
                     ", column %" PRId64 ", where the group's scale s is %.9g and the group "
                     "holds %s%u distinct magnitudes; %s",
                     s->groups_bad, s->groups, s->group_size,
                     s->groups_bad == 1 ? "is" : "are", s->bad_value, s->bad_row,
                     s->bad_column, s->bad_scale,
                     s->bad_magnitudes > BCPM_TERNARY_MAX_MAGNITUDES ? "more than " : "",
                     s->bad_magnitudes > BCPM_TERNARY_MAX_MAGNITUDES
                         ? (unsigned)BCPM_TERNARY_MAX_MAGNITUDES : (unsigned)s->bad_magnitudes,
                     tail);
    if (f) {
        f->row = s->bad_row;
        f->column = s->bad_column;
        f->value = s->bad_value;
        if (s->bad_row >= 0 && s->bad_column >= 0)
            f->has_offset = bcpm_quant_file_offset(
                ctx->cat, t, (uint64_t)s->bad_row * s->columns + (uint64_t)s->bad_column,
                &f->offset);
    }
}

static int shards_allowed(const struct rule_check *c, int k)
{
    const struct rule_param *p = rules_param(c, "allowed_shards");

    if (!p || p->type != PARAM_LIST)
        return k == 1;
    for (size_t j = 0; j < p->nlist; j++) {
        if ((int)p->list[j] == k)
            return 1;
    }
    return 0;
}

static void report_groups(struct check_ctx *ctx, size_t i)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct ternary_summary *s = &ctx->info[i].ternary;
    const struct rule_check *c = rules_select(ctx->rs, "ternary.groups", t->name,
                                              BCPM_ROLE_TERNARY);
    int allowed, uniform;
    enum bcpm_severity severity;
    struct bcpm_finding *f;
    uint64_t width;

    if (!s->scanned || s->groups_sharded == 0 || !c)
        return;
    width = (s->group_size == -1 ? s->columns : (uint64_t)s->group_size) /
            (uint64_t)s->shard_count;
    allowed = shards_allowed(c, s->shard_count);
    uniform = !s->shards_differ && s->groups_sharded == s->groups;

    /* A whole tensor split the same allowed way is what a tensor-parallel export writes. */
    severity = allowed && uniform ? rules_param_severity(c, "allowed_severity",
                                                         BCPM_SEVERITY_INFO)
                                  : c->severity;
    f = check_report(ctx, c, severity, check_tensor_file(ctx, i), t->name,
                     "%" PRIu64 " of %" PRIu64 " groups hold %d scales, one per block of %" PRIu64
                     " columns, as %d tensor-parallel shards that each computed their own scale "
                     "produce (first at row %" PRId64 ")%s; %d shards %s allowed by the rule%s",
                     s->groups_sharded, s->groups, s->shard_count, width, s->shard_count,
                     s->shard_row, s->shards_differ ? ", with differing shard counts" : "",
                     s->shard_count, allowed ? "are" : "are not",
                     uniform ? "" : ", but the other groups of the tensor are not split");
    if (f) {
        f->row = s->shard_row;
        f->column = (int64_t)width;
        f->value = s->shard_count;
    }
}

static void report_subnormal(struct check_ctx *ctx, size_t i)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct ternary_summary *s = &ctx->info[i].ternary;
    const struct rule_check *c = rules_select(ctx->rs, "ternary.scale", t->name,
                                              BCPM_ROLE_TERNARY);
    struct bcpm_finding *f;

    if (!s->scanned || s->scales_subnormal == 0)
        return;
    f = check_report(ctx, c, severity_of(c), check_tensor_file(ctx, i), t->name,
                     "subnormal %s scales: %" PRIu64 " (the first is %g at row %" PRId64 "); "
                     "a scale that small has lost precision and is no trained scale",
                     bcpm_dtype_name(t->dtype), s->scales_subnormal, s->subnormal_value,
                     s->subnormal_row);
    if (f) {
        f->row = s->subnormal_row;
        f->value = s->subnormal_value;
    }
}

/* "model.layers.*.mlp.up_proj.weight": the name with its layer index replaced. */
static void kind_of(const struct check_ctx *ctx, size_t i, char *buf, size_t size)
{
    const char *name = ctx->cat->tensors[i].name;
    size_t used = 0;

    for (const char *p = name; *p && used + 2 < size; p++) {
        if (*p >= '0' && *p <= '9' && p > name && p[-1] == '.') {
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            buf[used++] = '*';
            continue;
        }
        buf[used++] = *p;
    }
    buf[used] = '\0';
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static int add_to_kind(struct kind_group **groups, size_t *ngroups, const char *kind,
                       double median)
{
    struct kind_group *g = NULL;

    for (size_t k = 0; k < *ngroups && !g; k++) {
        if (strcmp((*groups)[k].kind, kind) == 0)
            g = &(*groups)[k];
    }
    if (!g) {
        struct kind_group *grown = realloc(*groups, (*ngroups + 1) * sizeof(*grown));

        if (!grown)
            return -1;
        *groups = grown;
        g = &grown[(*ngroups)++];
        memset(g, 0, sizeof(*g));
        g->kind = strdup(kind);
        if (!g->kind)
            return -1;
    }
    if (g->count == g->capacity) {
        size_t capacity = g->capacity ? 2 * g->capacity : 16;
        double *grown = realloc(g->medians, capacity * sizeof(*grown));

        if (!grown)
            return -1;
        g->medians = grown;
        g->capacity = capacity;
    }
    g->medians[g->count++] = median;
    return 0;
}

/*
 * Scale outliers: each tensor's median scale against the median over its
 * kind. Layers of one kind are trained alike, so a factor of outlier_factor
 * between them points at a conversion that scaled one tensor twice or not at all.
 */
static int report_outliers(struct check_ctx *ctx, struct bcpm_error *err)
{
    const struct rule_check *any = rules_find_kind(ctx->rs, "ternary.scale");
    double factor = rules_param_number(any, "outlier_factor", 8);
    size_t min_tensors = (size_t)rules_param_number(any, "outlier_min_tensors", 3);
    struct kind_group *groups = NULL;
    size_t ngroups = 0;
    char kind[512];
    int rc = 0;

    for (size_t i = 0; i < ctx->cat->ntensors && rc == 0; i++) {
        const struct ternary_summary *s = &ctx->info[i].ternary;

        if (!s->scanned || !s->scale_count || looks_latent(ctx, s))
            continue;
        kind_of(ctx, i, kind, sizeof(kind));
        rc = add_to_kind(&groups, &ngroups, kind, s->scale_median);
    }
    for (size_t k = 0; k < ngroups && rc == 0; k++)
        qsort(groups[k].medians, groups[k].count, sizeof(double), compare_double);

    for (size_t i = 0; i < ctx->cat->ntensors && rc == 0 && factor > 1; i++) {
        const struct bcpm_tensor *t = &ctx->cat->tensors[i];
        const struct ternary_summary *s = &ctx->info[i].ternary;
        const struct rule_check *c = rules_select(ctx->rs, "ternary.scale", t->name,
                                                  BCPM_ROLE_TERNARY);
        struct bcpm_finding *f;
        double typical, ratio;
        size_t k = 0;

        if (!c || !s->scanned || !s->scale_count || looks_latent(ctx, s))
            continue;
        kind_of(ctx, i, kind, sizeof(kind));
        while (strcmp(groups[k].kind, kind) != 0)
            k++;
        if (groups[k].count < min_tensors)
            continue;
        typical = groups[k].medians[groups[k].count / 2];
        ratio = typical > 0 ? s->scale_median / typical : 1;
        if (ratio <= factor && ratio >= 1 / factor)
            continue;
        f = check_report(ctx, c, rules_param_severity(c, "outlier_severity",
                                                      BCPM_SEVERITY_WARNING),
                         check_tensor_file(ctx, i), t->name,
                         "median scale %.6g is %.3g times the median %.6g of the %zu %s tensors "
                         "(outlier factor %g)", s->scale_median, ratio, typical,
                         groups[k].count, kind, factor);
        if (f)
            f->value = s->scale_median;
    }

    for (size_t k = 0; k < ngroups; k++) {
        free(groups[k].kind);
        free(groups[k].medians);
    }
    free(groups);
    if (rc != 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, ctx->cat->path, NULL, "out of memory");
    return 0;
}

/*
 * One finding for the tensors whose columns the group size does not divide:
 * their values were not checked, and a run that skipped them must not pass.
 * The group size is a setting of the run, so it is reported once, with the
 * column counts it missed, not once per tensor.
 */
static void report_group_size(struct check_ctx *ctx, const size_t *order)
{
    const struct rule_check *c = rules_find_kind(ctx->rs, "ternary.groups");
    const struct rule_check *values = rules_find_kind(ctx->rs, "ternary.values");
    size_t skipped = 0, ternary = 0, first = SIZE_MAX;
    uint64_t columns[4];
    size_t ncolumns = 0, more = 0;
    char list[128], origin[512];
    int64_t group_size = 0;
    size_t used = 0;

    for (size_t k = 0; k < ctx->cat->ntensors; k++) {
        const struct ternary_summary *s = &ctx->info[order[k]].ternary;
        size_t j = 0;

        if (!s->scanned && !s->problem[0])
            continue;
        ternary++;
        if (!s->problem[0])
            continue;
        if (skipped++ == 0) {
            first = order[k];
            group_size = s->group_size;
        }
        while (j < ncolumns && columns[j] != s->columns)
            j++;
        if (j == ncolumns && ncolumns < sizeof(columns) / sizeof(columns[0]))
            columns[ncolumns++] = s->columns;
        else if (j == ncolumns)
            more = 1;
    }
    if (skipped == 0)
        return;

    /* A disabled ternary.groups entry leaves the report to ternary.values, never to nobody. */
    if (!c)
        c = values;
    list[0] = '\0';
    for (size_t j = 0; j < ncolumns && used < sizeof(list); j++)
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%" PRIu64,
                                 j ? ", " : "", columns[j]);
    if (ctx->opt->group_size_override)
        snprintf(origin, sizeof(origin), "--group-size");
    else if (values && values->file)
        snprintf(origin, sizeof(origin), "the ternary.values rule (%s:%u)", values->file,
                 values->line);
    else
        snprintf(origin, sizeof(origin), "the ternary.values rule");
    check_report(ctx, c, BCPM_SEVERITY_ERROR, check_tensor_file(ctx, first),
                 ctx->cat->tensors[first].name,
                 "group size %" PRId64 " from %s does not divide the column count of %zu of "
                 "the %zu ternary tensors (%s%s columns): their values were not checked for -s, 0 and +s; "
                 "choose a group size that divides the column count, or -1 for one group "
                 "per row", group_size, origin, skipped, ternary, list, more ? ", ..." : "");
}

/* ---- the stage ---- */

struct stage_count {
    size_t ternary;      /* ternary tensors scanned */
    size_t latent;       /* of those, how many look latent */
    size_t first_latent; /* catalog index */
    size_t first_quantized;
};

static struct stage_count count_stage(const struct check_ctx *ctx, const size_t *order)
{
    struct stage_count n = { 0, 0, SIZE_MAX, SIZE_MAX };

    for (size_t k = 0; k < ctx->cat->ntensors; k++) {
        size_t i = order[k];
        const struct ternary_summary *s = &ctx->info[i].ternary;

        /* An all-zero tensor (a zero-initialised projection) fits either stage. */
        if (!s->scanned || s->groups == 0 || (s->scale_count == 0 && s->groups_bad == 0))
            continue;
        n.ternary++;
        if (looks_latent(ctx, s)) {
            if (n.latent++ == 0)
                n.first_latent = i;
        } else if (n.first_quantized == SIZE_MAX) {
            n.first_quantized = i;
        }
    }
    return n;
}

static void report_stage(struct check_ctx *ctx, const struct stage_count *n)
{
    const struct rule_check *c = rules_find_kind(ctx->rs, "stage.mismatch");
    enum bcpm_stage expected = ctx->opt->expected_stage;
    const struct ternary_summary *s;
    const char *name;

    if (n->ternary == 0)
        return;
    if (expected == BCPM_STAGE_PSEUDO && n->latent > 0) {
        name = ctx->cat->tensors[n->first_latent].name;
        s = &ctx->info[n->first_latent].ternary;
        check_report(ctx, c, severity_of(c), check_tensor_file(ctx, n->first_latent), name,
                     "expected a pseudo-quantized checkpoint, but in %zu of %zu ternary tensors "
                     "most groups hold more than %u distinct magnitudes (here %" PRIu64 " of %"
                     PRIu64 " groups): the weights look like unquantized latent weights, not "
                     "the output of a ternary conversion", n->latent, n->ternary,
                     (unsigned)s->many_above, s->groups_many, s->groups);
        return;
    }
    if ((expected == BCPM_STAGE_LATENT || expected == BCPM_STAGE_FINETUNED) && n->latent == 0) {
        name = ctx->cat->tensors[n->first_quantized].name;
        /* Fine-tuned weights are latent weights after training: values cannot tell them apart. */
        check_report(ctx, c, severity_of(c), check_tensor_file(ctx, n->first_quantized), name,
                     "expected %s weights, but every one of the %zu ternary tensors already "
                     "holds only -s, 0 and +s per group: the checkpoint is pseudo-quantized, and "
                     "fine-tuning it would lose the latent weights",
                     expected == BCPM_STAGE_FINETUNED ? "fine-tuned latent (not pseudo-quantized)"
                                                      : "latent",
                     n->ternary);
        return;
    }
    if (n->latent > 0 && n->latent < n->ternary) {
        name = ctx->cat->tensors[n->first_latent].name;
        check_report(ctx, c, severity_of(c), check_tensor_file(ctx, n->first_latent), name,
                     "the checkpoint mixes stages: %zu of %zu ternary tensors are already "
                     "ternary, the other %zu (this one first) still hold latent weights",
                     n->ternary - n->latent, n->ternary, n->latent);
    }
}

int ternary_report(struct check_ctx *ctx, struct bcpm_error *err)
{
    const struct bcpm_catalog *cat = ctx->cat;
    struct stage_count n;
    size_t *order;
    int check_values;

    /* Findings follow the file byte order, as the pass read the tensors. */
    order = malloc((cat->ntensors + 1) * sizeof(*order));
    if (!order)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    if (check_byte_order(cat, order) != 0) {
        free(order);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    }

    n = count_stage(ctx, order);
    ctx->stage = n.ternary == 0 ? BCPM_STAGE_UNKNOWN
                 : n.latent == 0 ? BCPM_STAGE_PSEUDO
                                 : BCPM_STAGE_LATENT;

    /* Value sets matter only where the weights are meant to be ternary. */
    check_values = ctx->stage == BCPM_STAGE_PSEUDO ||
                   ctx->opt->expected_stage == BCPM_STAGE_PSEUDO;
    for (size_t k = 0; k < cat->ntensors; k++) {
        size_t i = order[k];
        const struct ternary_summary *s = &ctx->info[i].ternary;

        report_nonfinite(ctx, i);
        if (!check_values || looks_latent(ctx, s))
            continue;
        report_values(ctx, i);
        report_groups(ctx, i);
        report_subnormal(ctx, i);
    }
    report_group_size(ctx, order);
    free(order);

    if (check_values) {
        int rc = report_outliers(ctx, err);

        if (rc != 0)
            return rc;
    }
    report_stage(ctx, &n);
    return 0;
}
