/*
 * Expanding a layout over a config into the full list of expected tensors
 * with their shapes. The checks compare a catalog against the layout
 * directly; this list is for tests and listings, and shows in one place what
 * a config implies.
 */
#include "rules/check.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_tensor(struct layout_expansion *x, const struct model_config *cfg,
                      const struct layout_tensor *spec, const char *name, size_t *capacity,
                      struct bcpm_error *err)
{
    struct expanded_tensor *t;
    int rc;

    if (x->count == *capacity) {
        size_t grown = *capacity ? 2 * *capacity : 64;
        struct expanded_tensor *p = realloc(x->tensors, grown * sizeof(*p));

        if (!p)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, cfg->path, NULL, "out of memory");
        x->tensors = p;
        *capacity = grown;
    }
    t = &x->tensors[x->count];
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    if (!t->name)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, cfg->path, NULL, "out of memory");
    x->count++;
    t->ndim = spec->ndim;
    t->role = spec->role;
    for (int d = 0; d < spec->ndim; d++) {
        rc = config_eval(cfg, x->layout, &spec->shape[d], &t->shape[d], err);
        if (rc != 0)
            return rc;
    }
    if (spec->tied_to) {
        int64_t tied;

        rc = config_eval(cfg, x->layout, &spec->tie_when, &tied, err);
        if (rc != 0)
            return rc;
        x->tied = tied != 0;
        t->optional = x->tied;
    }
    return 0;
}

static int expand(struct layout_expansion *x, const struct model_config *cfg,
                  struct bcpm_error *err)
{
    const struct layout *layout = x->layout;
    size_t capacity = 0;
    char name[512];
    int rc = 0;

    x->tied = -1;
    for (size_t k = 0; k < layout->nglobals && rc == 0; k++)
        rc = add_tensor(x, cfg, &layout->globals[k], layout->globals[k].name, &capacity, err);
    if (rc == 0 && layout->nper_layer)
        rc = config_eval(cfg, layout, &layout->layer_count, &x->layers, err);
    if (rc == 0 && (x->layers < 0 || x->layers > 100000))
        rc = bcpm_error_set(err, BCPM_ERR_USAGE, cfg->path, NULL,
                            "expected between 0 and 100000 layers, the config gives %" PRId64,
                            x->layers);

    for (int64_t layer = 0; layer < x->layers && rc == 0; layer++) {
        const char *mark = strstr(layout->layer_prefix, "{i}");

        for (size_t k = 0; k < layout->nper_layer && rc == 0; k++) {
            snprintf(name, sizeof(name), "%.*s%" PRId64 "%s%s",
                     (int)(mark - layout->layer_prefix), layout->layer_prefix, layer, mark + 3,
                     layout->per_layer[k].name);
            rc = add_tensor(x, cfg, &layout->per_layer[k], name, &capacity, err);
        }
    }
    return rc;
}

int layout_expand(const struct bcpm_ruleset *rs, const char *config_path,
                  struct layout_expansion *out, struct bcpm_error *err)
{
    struct model_config cfg;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = config_load(&cfg, config_path, err);
    if (rc != 0)
        return rc;
    for (size_t l = 0; l < rs->nlayouts && !out->layout; l++) {
        if (config_matches(&cfg, &rs->layouts[l]))
            out->layout = &rs->layouts[l];
    }
    if (!out->layout)
        rc = bcpm_error_set(err, BCPM_ERR_NOT_FOUND, config_path, NULL,
                            "no layout matches model_type '%s' or the architectures",
                            config_string(&cfg, "model_type") ? config_string(&cfg, "model_type")
                                                              : "(none)");
    else
        rc = expand(out, &cfg, err);
    config_clear(&cfg);
    if (rc != 0)
        layout_expansion_free(out);
    return rc;
}

void layout_expansion_free(struct layout_expansion *x)
{
    for (size_t i = 0; i < x->count; i++)
        free(x->tensors[i].name);
    free(x->tensors);
    memset(x, 0, sizeof(*x));
}
