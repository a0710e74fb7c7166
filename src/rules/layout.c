/*
 * Layout checks: names, shapes and dtypes of a catalog against a model
 * family's layout. With a config.json the expected tensors and shapes come
 * from its fields. Without one, the layer count is inferred from the names,
 * and every layer must have the same tensors with the same shapes.
 */
#include "rules/check.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* More layers than any model has; a config beyond it is rejected rather than allocated. */
#define LAYERS_MAX 100000

/* Layer index digits accepted in a name ("model.layers.123."). */
#define LAYER_DIGITS_MAX 6

/* Extra layers beyond the config's count that get their own finding. */
#define EXTRA_LAYERS_MAX 256

/* Expected shapes of one layout entry, evaluated over the config. */
struct expected {
    int64_t shape[BCPM_MAX_DIMS];
    int known;    /* 0 without a config: the shape is compared across layers instead */
};

struct layout_state {
    struct check_ctx *ctx;
    const struct layout *layout;
    int64_t layers;                /* expected (config) or inferred layer count */
    struct expected *global_shapes;
    struct expected *layer_shapes;
    uint8_t *global_seen;          /* nglobals */
    size_t *layer_seen;            /* layers * nper_layer: catalog index + 1, 0 when absent */
};

struct bcpm_finding *check_report(struct check_ctx *ctx, const struct rule_check *c,
                                  enum bcpm_severity severity, const char *file,
                                  const char *tensor, const char *fmt, ...)
{
    struct bcpm_finding *f;
    char text[2048];
    va_list ap;

    if (!c)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    f = bcpm_findings_add(ctx->findings, c->id, severity, file, tensor, "%s", text);
    if (!f)
        ctx->out_of_memory = 1;
    return f;
}

const char *check_format_shape(char *buf, size_t size, const int64_t *shape, int ndim)
{
    size_t used = 0;

    used += (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, d ? ", " : "",
                                 shape[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

const char *check_tensor_file(const struct check_ctx *ctx, size_t i)
{
    return ctx->cat->files[ctx->cat->tensors[i].file].path;
}

/* ---- choosing the config and the layout ---- */

static int file_exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* config.json in the folder the user named, or beside the weights file. */
static char *config_beside(const char *path)
{
    struct stat st;
    char *copy, *dir, *out;
    size_t len;

    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        dir = (char *)path;
        copy = NULL;
    } else {
        copy = strdup(path);
        if (!copy)
            return NULL;
        dir = dirname(copy);
    }
    len = strlen(dir) + sizeof("/config.json");
    out = malloc(len);
    if (out)
        snprintf(out, len, "%s/config.json", dir);
    free(copy);
    return out;
}

static int load_config(struct check_ctx *ctx, struct bcpm_error *err)
{
    char *beside;
    int rc;

    if (ctx->opt->config_path)
        return config_load(&ctx->config, ctx->opt->config_path, err);
    if (ctx->cat->config_path)
        return config_load(&ctx->config, ctx->cat->config_path, err);

    beside = config_beside(ctx->cat->path);
    if (!beside)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, ctx->cat->path, NULL, "out of memory");
    rc = file_exists(beside) ? config_load(&ctx->config, beside, err) : 0;
    free(beside);
    return rc;
}

/*
 * If name is "<head><digits><tail><suffix>" for the layout's layer prefix,
 * store the layer index and the per-layer entry whose name is suffix (NULL
 * when none is) and return 1.
 */
static int match_layer(const struct layout *layout, const char *name, int64_t *layer,
                       const struct layout_tensor **spec)
{
    const char *mark, *tail, *p;
    size_t head_len, tail_len, digits = 0;
    int64_t index = 0;

    if (!layout->layer_prefix)
        return 0;
    mark = strstr(layout->layer_prefix, "{i}");
    head_len = (size_t)(mark - layout->layer_prefix);
    tail = mark + 3;
    tail_len = strlen(tail);

    if (strncmp(name, layout->layer_prefix, head_len) != 0)
        return 0;
    p = name + head_len;
    while (p[digits] >= '0' && p[digits] <= '9' && digits <= LAYER_DIGITS_MAX) {
        index = index * 10 + (p[digits] - '0');
        digits++;
    }
    if (digits == 0 || digits > LAYER_DIGITS_MAX || strncmp(p + digits, tail, tail_len) != 0)
        return 0;

    *layer = index;
    *spec = NULL;
    for (size_t i = 0; i < layout->nper_layer; i++) {
        if (strcmp(p + digits + tail_len, layout->per_layer[i].name) == 0)
            *spec = &layout->per_layer[i];
    }
    return 1;
}

static const struct layout_tensor *match_global(const struct layout *layout, const char *name)
{
    for (size_t i = 0; i < layout->nglobals; i++) {
        if (strcmp(layout->globals[i].name, name) == 0)
            return &layout->globals[i];
    }
    return NULL;
}

static int ignored(const struct layout *layout, const char *name)
{
    for (size_t i = 0; i < layout->nignore; i++) {
        if (fnmatch(layout->ignore[i], name, 0) == 0)
            return 1;
    }
    return 0;
}

/* The layout whose names cover most of the catalog, for checkpoints without a config. */
static const struct layout *layout_by_names(const struct check_ctx *ctx)
{
    const struct layout *best = NULL;
    size_t best_count = 0;

    for (size_t l = 0; l < ctx->rs->nlayouts; l++) {
        const struct layout *layout = &ctx->rs->layouts[l];
        size_t count = 0;

        for (size_t i = 0; i < ctx->cat->ntensors; i++) {
            const char *name = ctx->cat->tensors[i].name;
            const struct layout_tensor *spec;
            int64_t layer;

            if (match_global(layout, name) ||
                (match_layer(layout, name, &layer, &spec) && spec))
                count++;
        }
        if (count > best_count) {
            best = layout;
            best_count = count;
        }
    }
    return best;
}

static int choose_layout(struct check_ctx *ctx, struct bcpm_error *err)
{
    const struct rule_check *family_check = rules_find_kind(ctx->rs, "layout.family");
    const char *model_type;

    if (ctx->opt->family) {
        for (size_t l = 0; l < ctx->rs->nlayouts; l++) {
            if (strcmp(ctx->rs->layouts[l].family, ctx->opt->family) == 0)
                ctx->layout = &ctx->rs->layouts[l];
        }
        if (!ctx->layout)
            return bcpm_error_set(err, BCPM_ERR_USAGE, NULL, ctx->opt->family,
                                  "no layout has family '%s'", ctx->opt->family);
        ctx->layout_from_config = ctx->config.root != NULL;
        return 0;
    }

    if (ctx->config.root) {
        for (size_t l = 0; l < ctx->rs->nlayouts && !ctx->layout; l++) {
            if (config_matches(&ctx->config, &ctx->rs->layouts[l]))
                ctx->layout = &ctx->rs->layouts[l];
        }
        if (ctx->layout) {
            ctx->layout_from_config = 1;
            return 0;
        }
        model_type = config_string(&ctx->config, "model_type");
        check_report(ctx, family_check, family_check ? family_check->severity : 0,
                     ctx->config.path, NULL,
                     "no layout matches model_type '%s' of this config; names are checked "
                     "against the closest layout and shapes only for consistency across layers",
                     model_type ? model_type : "(none)");
    }
    ctx->layout = layout_by_names(ctx);
    if (!ctx->layout && ctx->cat->ntensors > 0)
        check_report(ctx, family_check, family_check ? family_check->severity : 0,
                     ctx->cat->path, NULL,
                     "no layout names any tensor of this checkpoint, so only the value checks "
                     "ran; add a layout for its family to check names and shapes");
    return 0;
}

/* ---- expected shapes ---- */

static int eval_shapes(struct layout_state *st, const struct layout_tensor *specs, size_t count,
                       struct expected *out, struct bcpm_error *err)
{
    for (size_t i = 0; i < count; i++) {
        for (int d = 0; d < specs[i].ndim; d++) {
            int rc = config_eval(&st->ctx->config, st->layout, &specs[i].shape[d],
                                 &out[i].shape[d], err);

            if (rc != 0)
                return rc;
        }
        out[i].known = 1;
    }
    return 0;
}

static void shape_expression(char *buf, size_t size, const struct layout_tensor *spec)
{
    size_t used = (size_t)snprintf(buf, size, "[");

    for (int d = 0; d < spec->ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", d ? ", " : "",
                                 spec->shape[d].text);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

static int same_shape(const struct bcpm_tensor *t, const int64_t *shape, int ndim)
{
    if (t->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++) {
        if (t->shape[d] != shape[d])
            return 0;
    }
    return 1;
}

/* ---- one present tensor ---- */

static void check_dtype(struct layout_state *st, size_t i, const struct layout_tensor *spec)
{
    struct check_ctx *ctx = st->ctx;
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    uint32_t allowed = spec->dtypes ? spec->dtypes : st->layout->dtypes;
    const struct rule_check *c;
    char names[256] = "";

    if (allowed & (1u << t->dtype))
        return;
    c = rules_select(ctx->rs, "layout.dtype", t->name, spec->role);
    for (int d = 0; d < BCPM_DTYPE_COUNT; d++) {
        if (!(allowed & (1u << d)))
            continue;
        strncat(names, names[0] ? ", " : "", sizeof(names) - strlen(names) - 1);
        strncat(names, bcpm_dtype_name((enum bcpm_dtype)d), sizeof(names) - strlen(names) - 1);
    }
    check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, i), t->name,
                 "stored as %s; the %s layout allows %s for %s tensors", bcpm_dtype_name(t->dtype),
                 st->layout->family, names, bcpm_role_name(spec->role));
}

/* Returns 1 when the tensor is empty (a ZeRO-3 placeholder), after reporting it. */
static int check_empty(struct layout_state *st, size_t i, const struct layout_tensor *spec)
{
    struct check_ctx *ctx = st->ctx;
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct rule_check *c;
    char shape[128];

    if (t->numel != 0)
        return 0;
    c = rules_select(ctx->rs, "layout.shape", t->name, spec->role);
    check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, i), t->name,
                 "empty tensor %s, as ZeRO-3 saves partitioned parameters; gather them "
                 "before saving (zero_to_fp32.py, or stage3_gather_16bit_weights_on_model_save)",
                 check_format_shape(shape, sizeof(shape), t->shape, t->ndim));
    return 1;
}

static void check_present(struct layout_state *st, size_t i, const struct layout_tensor *spec,
                          const struct expected *expected)
{
    struct check_ctx *ctx = st->ctx;
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    char found[128], want[128], expr[512];
    const struct rule_check *c;

    check_dtype(st, i, spec);
    if (check_empty(st, i, spec) || !expected->known || same_shape(t, expected->shape, spec->ndim))
        return;
    c = rules_select(ctx->rs, "layout.shape", t->name, spec->role);
    shape_expression(expr, sizeof(expr), spec);
    check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, i), t->name,
                 "shape %s, expected %s = %s from %s",
                 check_format_shape(found, sizeof(found), t->shape, t->ndim),
                 expr, check_format_shape(want, sizeof(want), expected->shape, spec->ndim),
                 ctx->config.path ? ctx->config.path : "the layout");
}

/* ---- the walk over the catalog ---- */

struct extra_layer {
    int64_t layer;
    size_t count;
    size_t first;   /* catalog index of its first tensor */
};

static void unexpected(struct layout_state *st, size_t i, const char *reason)
{
    struct check_ctx *ctx = st->ctx;
    const struct bcpm_tensor *t = &ctx->cat->tensors[i];
    const struct rule_check *c = rules_select(ctx->rs, "layout.unexpected", t->name,
                                              ctx->info[i].role);

    check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, i), t->name,
                 "not part of the %s layout%s", st->layout->family, reason);
}

static int walk_catalog(struct layout_state *st, struct extra_layer *extra, size_t *nextra)
{
    struct check_ctx *ctx = st->ctx;
    const struct layout *layout = st->layout;

    for (size_t i = 0; i < ctx->cat->ntensors; i++) {
        const char *name = ctx->cat->tensors[i].name;
        const struct layout_tensor *spec = match_global(layout, name);
        int64_t layer = -1;
        size_t slot;

        ctx->info[i].layer = -1;
        if (spec) {
            ctx->info[i].role = spec->role;
            ctx->info[i].spec = spec;
            st->global_seen[spec - layout->globals] = 1;
            check_present(st, i, spec, &st->global_shapes[spec - layout->globals]);
            continue;
        }
        if (ignored(layout, name))
            continue;
        if (!match_layer(layout, name, &layer, &spec)) {
            unexpected(st, i, "");
            continue;
        }

        ctx->info[i].layer = (int)layer;
        if (spec) {
            ctx->info[i].role = spec->role;
            ctx->info[i].spec = spec;
        }
        if (layer >= st->layers) {
            /* Reported once per layer below, not once per tensor. */
            for (slot = 0; slot < *nextra && extra[slot].layer != layer; slot++)
                ;
            if (slot == *nextra && *nextra < EXTRA_LAYERS_MAX)
                extra[(*nextra)++] = (struct extra_layer){ layer, 0, i };
            if (slot < *nextra)
                extra[slot].count++;
            continue;
        }
        if (!spec) {
            unexpected(st, i, " (no such tensor in a layer)");
            continue;
        }
        st->layer_seen[(size_t)layer * layout->nper_layer + (size_t)(spec - layout->per_layer)] =
            i + 1;
        check_present(st, i, spec, &st->layer_shapes[spec - layout->per_layer]);
    }
    return 0;
}

static void report_extra_layers(struct layout_state *st, const struct extra_layer *extra,
                                size_t nextra)
{
    struct check_ctx *ctx = st->ctx;

    for (size_t k = 0; k < nextra; k++) {
        const struct bcpm_tensor *t = &ctx->cat->tensors[extra[k].first];
        const struct rule_check *c = rules_select(ctx->rs, "layout.unexpected", t->name,
                                                  ctx->info[extra[k].first].role);

        if (ctx->layout_from_config)
            check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, extra[k].first),
                         t->name, "layer %" PRId64 " is beyond the %" PRId64 " layers of the "
                         "config (%s); tensors in that layer: %zu, starting with this one",
                         extra[k].layer, st->layers, st->layout->layer_count.text,
                         extra[k].count);
        else
            check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, extra[k].first),
                         t->name, "layer %" PRId64 " is beyond the %d layers accepted without "
                         "a config; tensors in that layer: %zu, starting with this one",
                         extra[k].layer, LAYERS_MAX, extra[k].count);
    }
}

/* "model.layers.3" for layer 3: the prefix without its trailing dot. */
static void layer_name(char *buf, size_t size, const char *prefix, int64_t layer)
{
    const char *mark = strstr(prefix, "{i}");
    size_t len;

    snprintf(buf, size, "%.*s%" PRId64 "%s", (int)(mark - prefix), prefix, layer, mark + 3);
    len = strlen(buf);
    if (len && buf[len - 1] == '.')
        buf[len - 1] = '\0';
}

static size_t layer_present(const struct layout_state *st, int64_t layer)
{
    size_t n = st->layout->nper_layer, present = 0;

    for (size_t k = 0; k < n; k++)
        present += st->layer_seen[(size_t)layer * n + k] != 0;
    return present;
}

/*
 * Report the absent layers first to last as one finding, a single layer or a
 * range. A config that claims far more layers than the file has then gives
 * one line, not thousands.
 */
static void report_absent_layers(struct layout_state *st, int64_t first, int64_t last)
{
    struct check_ctx *ctx = st->ctx;
    const struct layout *layout = st->layout;
    char base[256], list[1024] = "";
    const struct rule_check *c;

    layer_name(base, sizeof(base), layout->layer_prefix, first);
    c = rules_select(ctx->rs, "layout.missing", base, BCPM_ROLE_OTHER);
    for (size_t k = 0; k < layout->nper_layer; k++) {
        strncat(list, k ? ", " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, layout->per_layer[k].name, sizeof(list) - strlen(list) - 1);
    }
    if (first == last)
        check_report(ctx, c, c ? c->severity : 0, ctx->cat->path, base,
                     "layer %" PRId64 " of %" PRId64 " is missing: none of its %zu tensors "
                     "is present (%s)", first, st->layers, layout->nper_layer, list);
    else
        check_report(ctx, c, c ? c->severity : 0, ctx->cat->path, base,
                     "layers %" PRId64 " to %" PRId64 " of %" PRId64 " are missing (%" PRId64
                     " layers): none of their tensors is present (%s)", first, last, st->layers,
                     last - first + 1, list);
}

static void report_missing_layers(struct layout_state *st)
{
    struct check_ctx *ctx = st->ctx;
    const struct layout *layout = st->layout;
    size_t n = layout->nper_layer;

    for (int64_t layer = 0; layer < st->layers; layer++) {
        const size_t *seen = &st->layer_seen[(size_t)layer * n];
        size_t present = layer_present(st, layer);
        char base[256];

        if (present == 0) {
            int64_t last = layer;

            while (last + 1 < st->layers && layer_present(st, last + 1) == 0)
                last++;
            report_absent_layers(st, layer, last);
            layer = last;
            continue;
        }
        layer_name(base, sizeof(base), layout->layer_prefix, layer);
        for (size_t k = 0; k < n; k++) {
            const struct layout_tensor *spec = &layout->per_layer[k];
            char name[512];
            const struct rule_check *c;

            if (seen[k])
                continue;
            snprintf(name, sizeof(name), "%s.%s", base, spec->name);
            c = rules_select(ctx->rs, "layout.missing", name, spec->role);
            check_report(ctx, c, c ? c->severity : 0, ctx->cat->path, name,
                         "missing: layer %" PRId64 " has %zu of the %zu tensors the %s layout "
                         "expects", layer, present, n, layout->family);
        }
    }
}

/* ---- the tie rule for the output head ---- */

static int storage_shared(const struct bcpm_tensor *a, const struct bcpm_tensor *b)
{
    return a->storage == b->storage && a->storage_offset == b->storage_offset;
}

static int bytes_equal(const struct bcpm_tensor *a, const struct bcpm_tensor *b)
{
    if (a->dtype != b->dtype || a->numel != b->numel || !a->contiguous || !b->contiguous ||
        a->nbytes != b->nbytes)
        return 0;
    return a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0;
}

static void check_tie(struct layout_state *st, const struct layout_tensor *head, int tied)
{
    struct check_ctx *ctx = st->ctx;
    const struct bcpm_tensor *t = bcpm_catalog_find(ctx->cat, head->name);
    const struct bcpm_tensor *embedding = bcpm_catalog_find(ctx->cat, head->tied_to);
    const struct rule_check *c;

    if (!t) {
        if (tied != 0)
            return;
        c = rules_select(ctx->rs, "layout.missing", head->name, head->role);
        check_report(ctx, c, c ? c->severity : 0, ctx->cat->path, head->name,
                     "missing while %s is false in %s: an untied model needs its own output "
                     "head", head->tie_when.text, ctx->config.path);
        return;
    }
    if (!embedding || tied < 0)
        return;
    c = rules_select(ctx->rs, "layout.tie", head->name, head->role);
    if (tied && !storage_shared(t, embedding) && !bytes_equal(t, embedding))
        check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, (size_t)(t - ctx->cat->tensors)),
                     head->name, "stored with values different from %s although %s is true: "
                     "transformers ties the head and discards these values", head->tied_to,
                     head->tie_when.text);
    if (!tied && storage_shared(t, embedding))
        check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, (size_t)(t - ctx->cat->tensors)),
                     head->name, "shares its storage with %s although %s is false",
                     head->tied_to, head->tie_when.text);
}

static int report_globals(struct layout_state *st, struct bcpm_error *err)
{
    struct check_ctx *ctx = st->ctx;
    const struct layout *layout = st->layout;

    for (size_t k = 0; k < layout->nglobals; k++) {
        const struct layout_tensor *spec = &layout->globals[k];
        const struct rule_check *c;
        int64_t tied = -1;

        if (spec->tied_to) {
            if (ctx->layout_from_config) {
                int rc = config_eval(&ctx->config, layout, &spec->tie_when, &tied, err);

                if (rc != 0)
                    return rc;
                tied = tied != 0;
            }
            check_tie(st, spec, (int)tied);
            continue;
        }
        if (st->global_seen[k])
            continue;
        c = rules_select(ctx->rs, "layout.missing", spec->name, spec->role);
        check_report(ctx, c, c ? c->severity : 0, ctx->cat->path, spec->name,
                     "missing: the %s layout expects it", layout->family);
    }
    return 0;
}

/* ---- without a config: every layer alike ---- */

/* Catalog index + 1 of per-layer tensor k in layer a, or 0 when absent or empty. */
static size_t layer_tensor(const struct layout_state *st, int64_t a, size_t k)
{
    size_t i = st->layer_seen[(size_t)a * st->layout->nper_layer + k];

    return i && st->ctx->cat->tensors[i - 1].numel != 0 ? i : 0;
}

/* How many layers hold per-layer tensor k with t's shape. */
static size_t shape_count(const struct layout_state *st, size_t k, const struct bcpm_tensor *t)
{
    size_t count = 0;

    for (int64_t a = 0; a < st->layers; a++) {
        size_t ia = layer_tensor(st, a, k);

        if (ia && same_shape(&st->ctx->cat->tensors[ia - 1], t->shape, t->ndim))
            count++;
    }
    return count;
}

/*
 * No shape is held by more than half of the layers, so none can be called the
 * intended one: one finding lists every shape with the layers that have it,
 * on the first of these tensors in name order.
 */
static void report_shape_tie(struct layout_state *st, size_t k)
{
    struct check_ctx *ctx = st->ctx;
    const struct bcpm_tensor *first = NULL;
    const struct rule_check *c;
    char groups[1024], shape[128];
    size_t used = 0, first_index = 0;

    groups[0] = '\0';
    for (int64_t a = 0; a < st->layers; a++) {
        size_t ia = layer_tensor(st, a, k);
        const struct bcpm_tensor *t;
        int64_t b;

        if (!ia)
            continue;
        t = &ctx->cat->tensors[ia - 1];
        if (!first || strcmp(t->name, first->name) < 0) {
            first = t;
            first_index = ia - 1;
        }

        /* A shape is listed once, at the first layer that has it. */
        for (b = 0; b < a; b++) {
            size_t ib = layer_tensor(st, b, k);

            if (ib && same_shape(&ctx->cat->tensors[ib - 1], t->shape, t->ndim))
                break;
        }
        if (b < a)
            continue;
        used += (size_t)snprintf(groups + used, used < sizeof(groups) ? sizeof(groups) - used : 0,
                                 "%s%s in layer%s %" PRId64, used ? ", " : "",
                                 check_format_shape(shape, sizeof(shape), t->shape, t->ndim),
                                 shape_count(st, k, t) > 1 ? "s" : "", a);
        for (b = a + 1; b < st->layers; b++) {
            size_t ib = layer_tensor(st, b, k);

            if (ib && same_shape(&ctx->cat->tensors[ib - 1], t->shape, t->ndim))
                used += (size_t)snprintf(groups + used,
                                         used < sizeof(groups) ? sizeof(groups) - used : 0,
                                         " %" PRId64, b);
        }
    }
    if (!first)
        return;

    c = rules_select(ctx->rs, "layout.shape", first->name, st->layout->per_layer[k].role);
    check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, first_index), first->name,
                 "layers disagree on the shape of %s: %s; no majority (no config.json, so "
                 "layers are compared with each other)", st->layout->per_layer[k].name, groups);
}

static void check_uniform_shapes(struct layout_state *st)
{
    struct check_ctx *ctx = st->ctx;
    const struct layout *layout = st->layout;
    size_t n = layout->nper_layer;

    for (size_t k = 0; k < n; k++) {
        size_t best = 0, best_votes = 0, total = 0;

        /* The shape more than half of the layers share is taken as the intended one. */
        for (int64_t a = 0; a < st->layers; a++) {
            size_t ia = st->layer_seen[(size_t)a * n + k], votes = 0;

            if (!ia || ctx->cat->tensors[ia - 1].numel == 0)
                continue;
            total++;
            for (int64_t b = 0; b < st->layers; b++) {
                size_t ib = st->layer_seen[(size_t)b * n + k];
                const struct bcpm_tensor *ta = &ctx->cat->tensors[ia - 1];

                if (ib && same_shape(&ctx->cat->tensors[ib - 1], ta->shape, ta->ndim))
                    votes++;
            }
            if (votes > best_votes) {
                best_votes = votes;
                best = ia;
            }
        }
        if (!best)
            continue;
        if (best_votes * 2 <= total) {
            if (best_votes < total)
                report_shape_tie(st, k);
            continue;
        }
        for (int64_t a = 0; a < st->layers; a++) {
            size_t ia = st->layer_seen[(size_t)a * n + k];
            const struct bcpm_tensor *ref = &ctx->cat->tensors[best - 1];
            const struct bcpm_tensor *t;
            const struct rule_check *c;
            char found[128], want[128];

            if (!ia)
                continue;
            t = &ctx->cat->tensors[ia - 1];
            if (t->numel == 0 || same_shape(t, ref->shape, ref->ndim))
                continue;
            c = rules_select(ctx->rs, "layout.shape", t->name, layout->per_layer[k].role);
            check_report(ctx, c, c ? c->severity : 0, check_tensor_file(ctx, ia - 1), t->name,
                         "shape %s differs from %s, which %zu of %zu layers have (no config.json, "
                         "so layers are compared with each other)",
                         check_format_shape(found, sizeof(found), t->shape, t->ndim),
                         check_format_shape(want, sizeof(want), ref->shape, ref->ndim),
                         best_votes, total);
        }
    }
}

static int64_t infer_layers(const struct check_ctx *ctx, const struct layout *layout)
{
    int64_t count = 0;

    for (size_t i = 0; i < ctx->cat->ntensors; i++) {
        const struct layout_tensor *spec;
        int64_t layer;

        if (match_layer(layout, ctx->cat->tensors[i].name, &layer, &spec) && spec &&
            layer + 1 > count)
            count = layer + 1;
    }
    return count;
}

/* ---- entry point ---- */

static int prepare(struct layout_state *st, struct bcpm_error *err)
{
    const struct layout *layout = st->layout;
    struct check_ctx *ctx = st->ctx;
    int rc;

    st->global_shapes = calloc(layout->nglobals + 1, sizeof(*st->global_shapes));
    st->layer_shapes = calloc(layout->nper_layer + 1, sizeof(*st->layer_shapes));
    st->global_seen = calloc(layout->nglobals + 1, 1);
    if (!st->global_shapes || !st->layer_shapes || !st->global_seen)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, ctx->cat->path, NULL, "out of memory");

    if (ctx->layout_from_config) {
        if (layout->nper_layer) {
            rc = config_eval(&ctx->config, layout, &layout->layer_count, &st->layers, err);
            if (rc != 0)
                return rc;
        }
        if (st->layers < 0 || st->layers > LAYERS_MAX)
            return bcpm_error_set(err, BCPM_ERR_USAGE, ctx->config.path, NULL,
                                  "expected between 0 and %d layers, the config gives %" PRId64
                                  " (%s)", LAYERS_MAX, st->layers, layout->layer_count.text);
        rc = eval_shapes(st, layout->globals, layout->nglobals, st->global_shapes, err);
        if (rc == 0)
            rc = eval_shapes(st, layout->per_layer, layout->nper_layer, st->layer_shapes, err);
        if (rc != 0)
            return rc;
    } else {
        /* Layers beyond the cap are reported as unexpected rather than allocated for. */
        st->layers = infer_layers(ctx, layout);
        if (st->layers > LAYERS_MAX)
            st->layers = LAYERS_MAX;
    }

    st->layer_seen = calloc((size_t)st->layers * layout->nper_layer + 1,
                            sizeof(*st->layer_seen));
    if (!st->layer_seen)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, ctx->cat->path, NULL, "out of memory");
    return 0;
}

int layout_check(struct check_ctx *ctx, struct bcpm_error *err)
{
    struct layout_state st = { .ctx = ctx };
    struct extra_layer *extra;
    size_t nextra = 0;
    int rc;

    for (size_t i = 0; i < ctx->cat->ntensors; i++) {
        ctx->info[i].role = BCPM_ROLE_OTHER;
        ctx->info[i].layer = -1;
    }
    rc = load_config(ctx, err);
    if (rc == 0)
        rc = choose_layout(ctx, err);
    if (rc != 0 || !ctx->layout)
        return rc;
    st.layout = ctx->layout;

    extra = calloc(EXTRA_LAYERS_MAX, sizeof(*extra));
    rc = extra ? prepare(&st, err)
               : bcpm_error_set(err, BCPM_ERR_NOMEM, ctx->cat->path, NULL, "out of memory");
    if (rc == 0)
        rc = walk_catalog(&st, extra, &nextra);
    if (rc == 0) {
        report_missing_layers(&st);
        report_extra_layers(&st, extra, nextra);
        rc = report_globals(&st, err);
    }
    if (rc == 0 && !ctx->layout_from_config)
        check_uniform_shapes(&st);

    free(extra);
    free(st.global_shapes);
    free(st.layer_shapes);
    free(st.global_seen);
    free(st.layer_seen);
    return rc;
}
