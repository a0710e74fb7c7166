/* config.json fields for shape expressions; see config.h. */
#include "rules/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rules/expr.h"

/* Defaults may refer to each other; a chain longer than this is a cycle. */
#define DEFAULT_CHAIN_MAX 16

/* A model config is a few KiB (LongRoPE factor lists included); this bounds a hostile one. */
#define CONFIG_MAX_BYTES (16u << 20)

int config_load(struct model_config *cfg, const char *path, struct bcpm_error *err)
{
    json_error_t jerr;
    struct stat st;
    json_t *root;
    FILE *f;

    memset(cfg, 0, sizeof(*cfg));
    f = fopen(path, "rb");
    if (!f)
        return bcpm_error_set(err, errno == ENOENT ? BCPM_ERR_NOT_FOUND : BCPM_ERR_IO, path,
                              NULL, "cannot open config: %s", strerror(errno));
    if (fstat(fileno(f), &st) == 0 && (uint64_t)st.st_size > CONFIG_MAX_BYTES) {
        fclose(f);
        return bcpm_error_set(err, BCPM_ERR_LIMIT, path, NULL,
                              "config of %lld bytes is larger than the %u accepted",
                              (long long)st.st_size, CONFIG_MAX_BYTES);
    }
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    if (!root) {
        bcpm_error_set(err, BCPM_ERR_CORRUPT, path, NULL, "invalid JSON: %s", jerr.text);
        err->line = jerr.line > 0 ? (unsigned)jerr.line : 0;
        err->column = jerr.column > 0 ? (unsigned)jerr.column : 0;
        return BCPM_ERR_CORRUPT;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, NULL,
                              "expected a JSON object of model settings");
    }
    cfg->path = strdup(path);
    if (!cfg->path) {
        json_decref(root);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }
    cfg->root = root;
    return 0;
}

void config_clear(struct model_config *cfg)
{
    free(cfg->path);
    json_decref(cfg->root);
    memset(cfg, 0, sizeof(*cfg));
}

const char *config_string(const struct model_config *cfg, const char *key)
{
    json_t *v = cfg && cfg->root ? json_object_get(cfg->root, key) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int listed(char *const *list, size_t count, const char *value)
{
    for (size_t i = 0; value && i < count; i++) {
        if (strcmp(list[i], value) == 0)
            return 1;
    }
    return 0;
}

int config_matches(const struct model_config *cfg, const struct layout *layout)
{
    json_t *archs;
    size_t i;
    json_t *v;

    if (listed(layout->model_types, layout->nmodel_types, config_string(cfg, "model_type")))
        return 1;
    archs = json_object_get(cfg->root, "architectures");
    json_array_foreach(archs, i, v) {
        if (listed(layout->architectures, layout->narchitectures, json_string_value(v)))
            return 1;
    }
    return 0;
}

struct eval_ctx {
    const struct model_config *cfg;
    const struct layout *layout;
    int depth;
    char missing[129];     /* the first field neither the config nor a default gives */
    char via[129];         /* the default that needed it, or "" */
};

static int lookup(void *opaque, const char *name, int64_t *value, char *reason, size_t reason_size)
{
    struct eval_ctx *ctx = opaque;
    json_t *v = ctx->cfg ? json_object_get(ctx->cfg->root, name) : NULL;

    /* A field that is present wins; null means "not set", as transformers treats it. */
    if (json_is_integer(v)) {
        *value = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_boolean(v)) {
        *value = json_is_true(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);

        if (d == floor(d) && fabs(d) < 9.0e15) {
            *value = (int64_t)d;
            return 0;
        }
        snprintf(reason, reason_size, "config field '%s' is %g, expected an integer", name, d);
        return -1;
    }
    if (v && !json_is_null(v)) {
        snprintf(reason, reason_size, "config field '%s' is not a number", name);
        return -1;
    }

    for (size_t i = 0; ctx->layout && i < ctx->layout->ndefaults; i++) {
        const struct layout_default *d = &ctx->layout->defaults[i];
        char inner[256];

        if (strcmp(d->key, name) != 0)
            continue;
        if (ctx->depth >= DEFAULT_CHAIN_MAX) {
            snprintf(reason, reason_size, "the defaults refer to each other in a cycle through '%s'",
                     name);
            return -1;
        }
        ctx->depth++;
        if (bcpm_expr_eval(d->value.text, lookup, ctx, value, inner, sizeof(inner)) != 0) {
            if (ctx->missing[0] && !ctx->via[0])
                snprintf(ctx->via, sizeof(ctx->via), "%s", name);
            snprintf(reason, reason_size, "default of '%s' (line %u): %s", name, d->value.line, inner);
            ctx->depth--;
            return -1;
        }
        ctx->depth--;
        return 0;
    }
    if (!ctx->missing[0])
        snprintf(ctx->missing, sizeof(ctx->missing), "%s", name);
    return 1;
}

int config_eval(const struct model_config *cfg, const struct layout *layout,
                const struct rule_expr *expr, int64_t *out, struct bcpm_error *err)
{
    struct eval_ctx ctx = { cfg, layout, 0, "", "" };
    char reason[768], via[192] = "";

    if (bcpm_expr_eval(expr->text, lookup, &ctx, out, reason, sizeof(reason)) == 0)
        return 0;

    /* A field the config lacks is the config's fault: name the config, and where the rule is. */
    if (ctx.missing[0]) {
        if (ctx.via[0])
            snprintf(via, sizeof(via), ", through the default of '%s'", ctx.via);
        if (cfg && cfg->root)
            bcpm_error_set(err, BCPM_ERR_RULES, cfg->path, NULL,
                           "config has no '%s', which the %s layout needs (%s:%u%s)",
                           ctx.missing, layout ? layout->family : "chosen", expr->file,
                           expr->line, via);
        else
            bcpm_error_set(err, BCPM_ERR_RULES, expr->file, NULL,
                           "no config.json was found, and the %s layout needs '%s' (%s:%u%s)",
                           layout ? layout->family : "chosen", ctx.missing, expr->file,
                           expr->line, via);
        return BCPM_ERR_RULES;
    }
    bcpm_error_set(err, BCPM_ERR_RULES, expr->file, layout ? layout->family : NULL,
                   "%s; fields come from %s%s and the defaults of layout '%s'", reason,
                   cfg ? "config " : "no config", cfg ? cfg->path : "",
                   layout ? layout->family : "?");
    err->line = expr->line;
    err->column = expr->column;
    return BCPM_ERR_RULES;
}
