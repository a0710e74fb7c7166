/*
 * The value pass: statistics for every tensor and a ternary scan of every
 * ternary tensor. Tensors are visited one after another in file byte order,
 * so that the page cache streams the file. The kernels spread each tensor's
 * rows over the threads and drop its pages from the resident set once read.
 */
#include "rules/check.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"
#include "quant/quant.h"

/* Group structure parameters from the ternary.groups rule. */
struct shard_rule {
    uint64_t min_columns;  /* narrowest column block counted as a shard */
};

static double min_normal(enum bcpm_dtype dtype)
{
    switch (dtype) {
    case BCPM_DTYPE_F16:
        return 6.103515625e-05; /* 2^-14 */
    case BCPM_DTYPE_F64:
        return DBL_MIN;
    default:
        return FLT_MIN;         /* BF16 shares float's exponent range */
    }
}

/*
 * The smallest k such that the group's magnitudes sit in distinct column
 * blocks of width/k columns, one magnitude per block, as k tensor-parallel
 * shards that each computed their own scale leave them; 0 when none does.
 * NOTE: only the first BCPM_TERNARY_MAX_MAGNITUDES magnitudes are tracked by
 * the scan, so splits into more shards than that are not recognised.
 */
static int explain_shards(const struct bcpm_ternary_group *g, uint64_t start, uint64_t width,
                          const struct shard_rule *rule)
{
    uint32_t m = g->magnitudes;

    if (m < 2 || m > BCPM_TERNARY_MAX_MAGNITUDES || g->nonfinite)
        return 0;
    for (uint64_t k = m; k <= BCPM_TERNARY_MAX_MAGNITUDES; k++) {
        uint64_t block, used = 0;
        int ok = 1;

        if (width % k != 0 || width / k < rule->min_columns)
            continue;
        block = width / k;
        for (uint32_t j = 0; j < m && ok; j++) {
            /* Columns may count from the row or from the group; both map to the same block. */
            uint64_t first = g->first_column[j] >= start ? g->first_column[j] - start
                                                         : g->first_column[j];
            uint64_t last = g->last_column[j] >= start ? g->last_column[j] - start
                                                       : g->last_column[j];
            uint64_t b = first / block;

            if (last / block != b || (used & (1ull << b)))
                ok = 0;
            used |= 1ull << b;
        }
        if (ok)
            return (int)k;
    }
    return 0;
}

/*
 * The first element of a bad group that is not -s, 0 or +s. The kernel's
 * first_bad_column may point at a NaN, which values.nonfinite reports, so
 * the group is searched again for a finite value when it does.
 */
static void locate_bad(const struct bcpm_tensor *t, struct ternary_summary *s, uint64_t row,
                       const struct bcpm_ternary_group *g, uint64_t start, uint64_t width)
{
    float scale = g->scale;

    if (g->first_bad_column >= 0 && (uint64_t)g->first_bad_column < s->columns) {
        double v = bcpm_tensor_load_f64(t, row * s->columns + (uint64_t)g->first_bad_column);

        if (isfinite(v)) {
            s->bad_row = (int64_t)row;
            s->bad_column = g->first_bad_column;
            s->bad_value = v;
            s->bad_scale = scale;
            return;
        }
    }
    for (uint64_t j = 0; j < width; j++) {
        double v = bcpm_tensor_load_f64(t, row * s->columns + start + j);
        float f = (float)v;

        if (f == 0.0f || isnan(f) || isinf(f) || fabsf(f) == scale)
            continue;
        s->bad_row = (int64_t)row;
        s->bad_column = (int64_t)(start + j);
        s->bad_value = v;
        s->bad_scale = scale;
        return;
    }
}

static void add_scale(struct ternary_summary *s, double scale, uint64_t row, double normal,
                      float *scales, uint64_t capacity)
{
    if (!(scale > 0))
        return;
    if (scale < normal && s->scales_subnormal++ == 0) {
        s->subnormal_row = (int64_t)row;
        s->subnormal_value = scale;
    }
    if (s->scale_count == 0 || scale < s->scale_min)
        s->scale_min = scale;
    if (s->scale_count == 0 || scale > s->scale_max)
        s->scale_max = scale;
    s->scale_sum += scale;
    if (s->scale_count < capacity)
        scales[s->scale_count] = (float)scale;
    s->scale_count++;
}

static int compare_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return (x > y) - (x < y);
}

static void record_shard(struct ternary_summary *s, int k, uint64_t row)
{
    if (s->groups_sharded++ == 0) {
        s->shard_count = k;
        s->shard_row = (int64_t)row;
    } else if (k != s->shard_count) {
        s->shards_differ = 1;
        if (k > s->shard_count)
            s->shard_count = k;
    }
}

/*
 * More distinct magnitudes than this in one group mark it latent-looking.
 * Gaussian latent weights give nearly one magnitude per element, while a
 * damaged ternary group (a few values off by a rounding step) keeps two to
 * four; narrow groups cannot show many, so half their width counts.
 */
static uint32_t latent_magnitudes(uint64_t width)
{
    uint64_t half = width / 2;

    return half < BCPM_TERNARY_MAX_MAGNITUDES ? (uint32_t)half : BCPM_TERNARY_MAX_MAGNITUDES;
}

static void summarize(const struct bcpm_tensor *t, const struct bcpm_ternary_scan *scan,
                      const struct shard_rule *rule, struct ternary_summary *s, float *scales,
                      uint64_t capacity)
{
    uint64_t width = scan->columns / (scan->groups_per_row ? scan->groups_per_row : 1);
    double normal = min_normal(t->dtype);

    s->many_above = latent_magnitudes(width);
    for (uint64_t r = 0; r < scan->rows; r++) {
        for (uint64_t gi = 0; gi < scan->groups_per_row; gi++) {
            const struct bcpm_ternary_group *g = &scan->groups[r * scan->groups_per_row + gi];
            uint64_t start = gi * width;
            int k;

            /* A group whose only problem is NaN or Inf is left to values.nonfinite. */
            if (g->magnitudes <= 1) {
                if (!g->nonfinite)
                    add_scale(s, g->scale, r, normal, scales, capacity);
                continue;
            }
            k = explain_shards(g, start, width, rule);
            if (k) {
                record_shard(s, k, r);
                for (uint32_t j = 0; j < g->magnitudes; j++)
                    add_scale(s, g->magnitude[j], r, normal, scales, capacity);
                continue;
            }
            if (g->magnitudes > s->many_above)
                s->groups_many++;
            if (s->groups_bad++ == 0) {
                s->bad_magnitudes = g->magnitudes;
                locate_bad(t, s, r, g, start, width);
            }
        }
    }
    if (s->scale_count) {
        uint64_t n = s->scale_count < capacity ? s->scale_count : capacity;

        qsort(scales, n, sizeof(*scales), compare_float);
        s->scale_median = scales[n / 2];
    }
}

static int64_t rule_group_size(const struct check_ctx *ctx, const struct bcpm_tensor *t)
{
    const struct rule_check *c = rules_select(ctx->rs, "ternary.values", t->name,
                                              BCPM_ROLE_TERNARY);

    if (ctx->opt->group_size_override)
        return ctx->opt->group_size_override;
    return (int64_t)rules_param_number(c, "group_size", -1);
}

/*
 * Value statistics of a tensor whose every group is ternary, from the scan
 * alone: each group adds codes[0] values of -s, codes[1] zeros and codes[2]
 * values of +s. This saves a second read of the tensor. Returns 0, or -1
 * when a group is not ternary and the values must be read again.
 */
static int derive_stats(const struct bcpm_ternary_scan *scan, struct bcpm_value_stats *vs)
{
    uint64_t groups = scan->rows * scan->groups_per_row;

    if (scan->groups_ternary != groups || scan->nonfinite != 0 || !scan->groups)
        return -1;
    memset(vs, 0, sizeof(*vs));
    vs->first_nonfinite = -1;
    for (uint64_t k = 0; k < groups; k++) {
        const struct bcpm_ternary_group *g = &scan->groups[k];
        double s = g->scale, low, high;
        uint64_t n = (uint64_t)g->codes[0] + g->codes[1] + g->codes[2];

        /* The smallest value present is -s, else 0, else +s; the largest the other way round. */
        if (g->codes[0])
            low = -s;
        else if (g->codes[1])
            low = 0;
        else
            low = s;
        if (g->codes[2])
            high = s;
        else if (g->codes[1])
            high = 0;
        else
            high = -s;

        if (vs->count == 0 || low < vs->min)
            vs->min = low;
        if (vs->count == 0 || high > vs->max)
            vs->max = high;
        vs->count += n;
        vs->zeros += g->codes[1];
        vs->sum += s * ((double)g->codes[2] - (double)g->codes[0]);
        vs->sum_squares += s * s * ((double)g->codes[2] + (double)g->codes[0]);
    }
    return 0;
}

/* Hand tensor i to the other pass, if there is one; 1 when it filled scan or stats. */
static int offer_tensor(struct check_ctx *ctx, size_t i, int ternary, int64_t group_size,
                        struct bcpm_ternary_scan *scan, struct bcpm_value_stats *stats)
{
    const struct bcpm_check_tensor_pass *pass = ctx->opt->tensor_pass;

    if (!pass || !pass->run)
        return 0;
    return pass->run(pass->ctx, i, ternary, group_size, ctx->opt->digest, scan, stats) == 1;
}

static int scan_ternary(struct check_ctx *ctx, size_t i, const struct bcpm_quant_options *options,
                        struct bcpm_value_stats *derived, int *have_stats, struct bcpm_error *err)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    struct ternary_summary *s = &ctx->info[i].ternary;
    const struct rule_check *groups_rule = rules_find_kind(ctx->rs, "ternary.groups");
    struct shard_rule rule;
    struct bcpm_ternary_scan scan;
    uint64_t rows, columns, capacity;
    float *scales;
    int rc;

    rule.min_columns = (uint64_t)rules_param_number(groups_rule, "min_shard_columns", 8);
    bcpm_tensor_matrix_shape(t, &rows, &columns);
    s->group_size = rule_group_size(ctx, t);
    s->rows = rows;
    s->columns = columns;
    s->bad_row = s->bad_column = s->shard_row = s->subnormal_row = -1;
    if (s->group_size != -1 && (s->group_size <= 0 || columns % (uint64_t)s->group_size != 0)) {
        snprintf(s->problem, sizeof(s->problem),
                 "group size %lld does not divide the %llu columns", (long long)s->group_size,
                 (unsigned long long)columns);
        return 0;
    }

    memset(&scan, 0, sizeof(scan));
    if (!offer_tensor(ctx, i, 1, s->group_size, &scan, NULL)) {
        rc = bcpm_ternary_scan_ex(t, s->group_size, options, &scan, err);
        if (rc != 0)
            return rc;
    }

    /*
     * Room for one scale per group plus the shard magnitudes of a few groups.
     * NOTE: the scan keeps one record per group (about 128 bytes), so small
     * group sizes on 8B shapes need hundreds of MiB; -1 (one group per row)
     * needs about 2 MiB for the largest tensor.
     */
    capacity = scan.rows * scan.groups_per_row + BCPM_TERNARY_MAX_MAGNITUDES;
    scales = malloc(capacity * sizeof(*scales));
    if (!scales) {
        bcpm_ternary_scan_free(&scan);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, ctx->cat->files[t->file].path, t->name,
                              "out of memory");
    }
    s->groups = scan.rows * scan.groups_per_row;
    s->groups_ternary = scan.groups_ternary;
    memcpy(s->codes, scan.codes, sizeof(s->codes));
    summarize(t, &scan, &rule, s, scales, capacity);
    s->scanned = 1;
    *have_stats = derive_stats(&scan, derived) == 0;
    free(scales);
    bcpm_ternary_scan_free(&scan);
    return 0;
}

static void fill_value_stats(struct check_ctx *ctx, size_t i, const struct bcpm_value_stats *vs)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    struct bcpm_tensor_stats *st = &ctx->stats[i];
    uint64_t finite = vs->count - vs->nan - vs->inf;

    st->nan = vs->nan;
    st->inf = vs->inf;
    if (finite) {
        double mean = vs->sum / (double)finite;
        double var = vs->sum_squares / (double)finite - mean * mean;

        st->min = vs->min;
        st->max = vs->max;
        st->mean = mean;
        st->std = var > 0 ? sqrt(var) : 0;
    }
    ctx->info[i].first_nonfinite = vs->first_nonfinite;
    if (vs->first_nonfinite >= 0)
        ctx->info[i].nonfinite_value = bcpm_tensor_load_f64(t, (uint64_t)vs->first_nonfinite);
}

static void fill_ternary_stats(struct check_ctx *ctx, size_t i)
{
    const struct ternary_summary *s = &ctx->info[i].ternary;
    struct bcpm_tensor_stats *st = &ctx->stats[i];
    uint64_t codes = s->codes[0] + s->codes[1] + s->codes[2];

    st->ternary_checked = 1;
    st->group_size = s->group_size;
    st->groups = s->groups;
    st->groups_ternary = s->groups_ternary;
    for (int c = 0; c < 3; c++)
        st->code_fraction[c] = codes ? (double)s->codes[c] / (double)codes : 0;
    if (s->scale_count) {
        st->scale_min = s->scale_min;
        st->scale_max = s->scale_max;
        st->scale_mean = s->scale_sum / (double)s->scale_count;
    }
    st->shards_per_row = s->groups_sharded ? s->shard_count : 1;
}

/*
 * 1 when elements of t overlap in storage (a stride of 0 or overlapping
 * strides): its element count then exceeds what its byte extent holds, and
 * could be astronomically large for a few bytes of file.
 */
static int overlapping_view(const struct bcpm_tensor *t)
{
    uint64_t bytes;

    return bcpm_mul_u64(t->numel, bcpm_dtype_size(t->dtype), &bytes) != 0 || bytes > t->nbytes;
}

static void report_overlap(struct check_ctx *ctx, size_t i)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct rule_check *c = rules_select(ctx->rs, "layout.shape", t->name,
                                              ctx->info[i].role);
    char shape[256], strides[256];

    check_report(ctx, c, c ? c->severity : BCPM_SEVERITY_ERROR, check_tensor_file(ctx, i),
                 t->name, "shape %s with strides %s makes %llu elements share %llu bytes of "
                 "storage; a saved parameter never overlaps itself, and its values were not "
                 "checked", check_format_shape(shape, sizeof(shape), t->shape, t->ndim),
                 check_format_shape(strides, sizeof(strides), t->strides, t->ndim),
                 (unsigned long long)t->numel, (unsigned long long)t->nbytes);
}

static int scan_one(struct check_ctx *ctx, size_t i, struct bcpm_error *err)
{
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    int ternary = ctx->info[i].role == BCPM_ROLE_TERNARY && bcpm_dtype_is_float(t->dtype);
    struct bcpm_quant_options options = { .threads = ctx->opt->threads,
                                          .digest = ctx->opt->digest };
    struct bcpm_value_stats vs;
    int have_stats = 0, rc;

    ctx->info[i].first_nonfinite = -1;
    if (t->numel == 0 || !t->data)
        return 0;
    if (overlapping_view(t)) {
        report_overlap(ctx, i);
        return 0;
    }
    options.release = bcpm_quant_tensor_map(ctx->cat, t);

    /* A ternary tensor is scanned first: when every group is ternary the scan gives the statistics. */
    if (ternary) {
        rc = scan_ternary(ctx, i, &options, &vs, &have_stats, err);
        if (rc != 0)
            return rc;
        if (ctx->info[i].ternary.scanned)
            fill_ternary_stats(ctx, i);
    }
    if (!have_stats && ctx->info[i].role != BCPM_ROLE_TERNARY)
        have_stats = offer_tensor(ctx, i, 0, 0, NULL, &vs);
    if (!have_stats) {
        rc = bcpm_value_stats_ex(t, &options, &vs, err);
        if (rc != 0)
            return rc;
    }
    fill_value_stats(ctx, i, &vs);
    return 0;
}

struct position {
    uint32_t file;
    uint64_t offset;
    size_t index;
};

static int compare_position(const void *a, const void *b)
{
    const struct position *x = a, *y = b;

    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

int check_byte_order(const struct bcpm_catalog *cat, size_t *order)
{
    struct position *p = malloc((cat->ntensors + 1) * sizeof(*p));

    if (!p)
        return -1;
    for (size_t i = 0; i < cat->ntensors; i++)
        p[i] = (struct position){ cat->tensors[i].file, cat->tensors[i].byte_offset, i };
    qsort(p, cat->ntensors, sizeof(*p), compare_position);
    for (size_t i = 0; i < cat->ntensors; i++)
        order[i] = p[i].index;
    free(p);
    return 0;
}

/* 1 when a and b are the same view of the same bytes (a tied head and its embedding). */
static int same_view(const struct bcpm_tensor *a, const struct bcpm_tensor *b)
{
    if (a->storage != b->storage || a->storage_offset != b->storage_offset ||
        a->dtype != b->dtype || a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] != b->shape[d] || a->strides[d] != b->strides[d])
            return 0;
    }
    return 1;
}

/* Take the value results of an identical view read just before, instead of reading it again. */
static int copy_view(struct check_ctx *ctx, size_t from, size_t to)
{
    struct bcpm_tensor_stats *dst = &ctx->stats[to];
    const struct bcpm_tensor_stats *src = &ctx->stats[from];

    /* A ternary scan is needed for a ternary view, and only a ternary source has one. */
    if (ctx->info[to].role == BCPM_ROLE_TERNARY && !ctx->info[from].ternary.scanned)
        return 0;
    dst->nan = src->nan;
    dst->inf = src->inf;
    dst->min = src->min;
    dst->max = src->max;
    dst->mean = src->mean;
    dst->std = src->std;
    ctx->info[to].first_nonfinite = ctx->info[from].first_nonfinite;
    ctx->info[to].nonfinite_value = ctx->info[from].nonfinite_value;
    if (ctx->info[to].role == BCPM_ROLE_TERNARY) {
        ctx->info[to].ternary = ctx->info[from].ternary;
        fill_ternary_stats(ctx, to);
    }
    return 1;
}

int scan_tensors(struct check_ctx *ctx, struct bcpm_error *err)
{
    const struct bcpm_catalog *cat = ctx->cat;
    uint64_t done = 0, total = 0;
    size_t *order;
    int rc = 0;

    order = malloc((cat->ntensors + 1) * sizeof(*order));
    if (!order || check_byte_order(cat, order) != 0) {
        free(order);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cat->path, NULL, "out of memory");
    }
    for (size_t i = 0; i < cat->ntensors; i++)
        total += cat->tensors[i].nbytes;

    /* Views of the same bytes sort next to each other, so one look back finds them. */
    for (size_t k = 0; k < cat->ntensors && rc == 0; k++) {
        if (k == 0 || !same_view(&cat->tensors[order[k - 1]], &cat->tensors[order[k]]) ||
            !copy_view(ctx, order[k - 1], order[k]))
            rc = scan_one(ctx, order[k], err);
        done += cat->tensors[order[k]].nbytes;
        if (ctx->opt->progress)
            ctx->opt->progress(ctx->opt->progress_ctx, done, total);
    }
    free(order);
    return rc;
}
