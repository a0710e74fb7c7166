/*
 * Reading one rule file (YAML, through libyaml's document API) into a
 * struct rule_file. The format is documented in bitcpm-rules(5). Every
 * problem is reported as BCPM_ERR_RULES with the file, the line and column of
 * the offending node, and what was expected there. Unknown keys are errors,
 * so that a misspelt "severty" does not silently keep the default.
 */
#include "rules/ruleset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "rules/expr.h"

/* A rule file bigger than this is no hand-written rule file. */
#define RULE_FILE_MAX_ITEMS 100000

/*
 * Rule files nest at most 6 levels. libyaml's document loader takes time
 * quadratic in the nesting depth (3.8 s for 40000 levels with libyaml
 * 0.2.5), so deeper files are rejected before they are loaded.
 */
#define RULE_FILE_MAX_DEPTH 64

struct loader {
    yaml_document_t doc;
    const char *file;
    struct bcpm_error *err;
};

static int node_error(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int node_error(struct loader *ld, const yaml_node_t *node, const char *fmt, ...)
{
    char text[BCPM_ERROR_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (ld->err->code != 0)
        return BCPM_ERR_RULES;
    bcpm_error_set(ld->err, BCPM_ERR_RULES, ld->file, NULL, "%s", text);
    if (node) {
        ld->err->line = (unsigned)node->start_mark.line + 1;
        ld->err->column = (unsigned)node->start_mark.column + 1;
    }
    return BCPM_ERR_RULES;
}

static int nomem(struct loader *ld)
{
    return bcpm_error_set(ld->err, BCPM_ERR_NOMEM, ld->file, NULL, "out of memory");
}

static const char *kind_name(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "nothing";
    }
}

static yaml_node_t *node_at(struct loader *ld, int id)
{
    return yaml_document_get_node(&ld->doc, id);
}

static const char *scalar(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static int expect_type(struct loader *ld, const yaml_node_t *node, yaml_node_type_t type,
                       const char *what)
{
    static const char *names[] = { "nothing", "a scalar", "a list", "a mapping" };

    if (node->type == type)
        return 0;
    return node_error(ld, node, "expected %s for %s, found %s", names[type], what,
                      kind_name(node));
}

static int copy_string(struct loader *ld, const yaml_node_t *node, const char *what, char **out)
{
    if (expect_type(ld, node, YAML_SCALAR_NODE, what) != 0)
        return BCPM_ERR_RULES;
    free(*out);
    *out = strdup(scalar(node));
    return *out ? 0 : nomem(ld);
}

static int parse_bool(struct loader *ld, const yaml_node_t *node, const char *what, int *out)
{
    if (expect_type(ld, node, YAML_SCALAR_NODE, what) != 0)
        return BCPM_ERR_RULES;
    if (strcmp(scalar(node), "true") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(scalar(node), "false") == 0) {
        *out = 0;
        return 0;
    }
    return node_error(ld, node, "expected true or false for %s, found '%s'", what, scalar(node));
}

static int parse_number(const char *text, double *out)
{
    char *end;

    if (!*text)
        return -1;
    *out = strtod(text, &end);
    return *end == '\0' ? 0 : -1;
}

/* A scalar or a list of scalars, copied into a string array (a lone scalar is a list of one). */
static int string_list(struct loader *ld, const yaml_node_t *node, const char *what,
                       char ***out, size_t *count)
{
    yaml_node_item_t *item;
    size_t n;

    if (node->type == YAML_SCALAR_NODE) {
        char **list = calloc(1, sizeof(*list));

        if (!list || !(list[0] = strdup(scalar(node)))) {
            free(list);
            return nomem(ld);
        }
        *out = list;
        *count = 1;
        return 0;
    }
    if (expect_type(ld, node, YAML_SEQUENCE_NODE, what) != 0)
        return BCPM_ERR_RULES;
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out)
        return nomem(ld);
    *count = 0;
    for (item = node->data.sequence.items.start; item < node->data.sequence.items.top; item++) {
        yaml_node_t *child = node_at(ld, *item);

        if (expect_type(ld, child, YAML_SCALAR_NODE, what) != 0)
            return BCPM_ERR_RULES;
        (*out)[*count] = strdup(scalar(child));
        if (!(*out)[*count])
            return nomem(ld);
        (*count)++;
    }
    return 0;
}

static void free_strings(char **list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(list[i]);
    free(list);
}

/* Calls visit(key, value) for each pair of a mapping, rejecting keys not in allowed. */
typedef int (*pair_visitor)(struct loader *ld, const char *key, yaml_node_t *value, void *ctx);

static int each_pair(struct loader *ld, const yaml_node_t *node, const char *what,
                     const char *const *allowed, pair_visitor visit, void *ctx)
{
    yaml_node_pair_t *pair;

    if (expect_type(ld, node, YAML_MAPPING_NODE, what) != 0)
        return BCPM_ERR_RULES;
    for (pair = node->data.mapping.pairs.start; pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *key = node_at(ld, pair->key);
        yaml_node_t *value = node_at(ld, pair->value);
        int known = allowed == NULL;
        int rc;

        if (expect_type(ld, key, YAML_SCALAR_NODE, "a key") != 0)
            return BCPM_ERR_RULES;
        for (const char *const *a = allowed; a && *a && !known; a++)
            known = strcmp(*a, scalar(key)) == 0;
        if (!known) {
            char list[512] = "";

            for (const char *const *a = allowed; *a; a++) {
                strncat(list, a == allowed ? "" : ", ", sizeof(list) - strlen(list) - 1);
                strncat(list, *a, sizeof(list) - strlen(list) - 1);
            }
            return node_error(ld, key, "unknown key '%s' in %s; expected one of: %s",
                              scalar(key), what, list);
        }
        rc = visit(ld, scalar(key), value, ctx);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int require(struct loader *ld, const yaml_node_t *node, const void *field,
                   const char *key, const char *what)
{
    if (field)
        return 0;
    return node_error(ld, node, "%s has no '%s'", what, key);
}

/* ---- expressions, dtypes and roles ---- */

static int parse_expr(struct loader *ld, const yaml_node_t *node, const char *what,
                      struct rule_expr *out)
{
    char reason[512];
    int64_t value;

    if (expect_type(ld, node, YAML_SCALAR_NODE, what) != 0)
        return BCPM_ERR_RULES;
    if (bcpm_expr_eval(scalar(node), NULL, NULL, &value, reason, sizeof(reason)) != 0)
        return node_error(ld, node, "invalid %s: %s", what, reason);
    free(out->text);
    out->text = strdup(scalar(node));
    if (!out->text)
        return nomem(ld);
    out->file = ld->file;
    out->line = (unsigned)node->start_mark.line + 1;
    out->column = (unsigned)node->start_mark.column + 1;
    return 0;
}

static int parse_dtypes(struct loader *ld, const yaml_node_t *node, uint32_t *out)
{
    char **names = NULL;
    size_t count = 0;
    int rc;

    rc = string_list(ld, node, "dtypes", &names, &count);
    *out = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        enum bcpm_dtype dtype;

        if (bcpm_dtype_from_name(names[i], &dtype) != 0)
            rc = node_error(ld, node, "unknown dtype '%s'; expected names such as BF16, F16, "
                            "F32, F64, I64", names[i]);
        else
            *out |= 1u << dtype;
    }
    free_strings(names, count);
    return rc;
}

static int parse_roles(struct loader *ld, const yaml_node_t *node, uint32_t *out)
{
    char **names = NULL;
    size_t count = 0;
    int rc;

    rc = string_list(ld, node, "roles", &names, &count);
    *out = 0;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        int role = rules_role_from_name(names[i]);

        if (role < 0)
            rc = node_error(ld, node, "unknown role '%s'; expected ternary, embedding, norm, "
                            "head or other", names[i]);
        else
            *out |= 1u << role;
    }
    free_strings(names, count);
    return rc;
}

/* ---- checks ---- */

static int visit_param(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct rule_check *check = ctx;
    struct rule_param *p, *grown;

    grown = realloc(check->params, (check->nparams + 1) * sizeof(*grown));
    if (!grown)
        return nomem(ld);
    check->params = grown;
    p = &check->params[check->nparams];
    memset(p, 0, sizeof(*p));
    p->key = strdup(key);
    if (!p->key)
        return nomem(ld);
    check->nparams++;

    if (value->type == YAML_SCALAR_NODE) {
        if (parse_number(scalar(value), &p->number) == 0) {
            p->type = PARAM_NUMBER;
            return 0;
        }
        p->type = PARAM_STRING;
        p->string = strdup(scalar(value));
        return p->string ? 0 : nomem(ld);
    }
    if (value->type == YAML_SEQUENCE_NODE) {
        yaml_node_item_t *item;
        size_t n = (size_t)(value->data.sequence.items.top - value->data.sequence.items.start);

        p->type = PARAM_LIST;
        p->list = calloc(n ? n : 1, sizeof(*p->list));
        if (!p->list)
            return nomem(ld);
        for (item = value->data.sequence.items.start; item < value->data.sequence.items.top;
             item++) {
            yaml_node_t *child = node_at(ld, *item);

            if (child->type != YAML_SCALAR_NODE ||
                parse_number(scalar(child), &p->list[p->nlist]) != 0)
                return node_error(ld, child, "expected a number in the list of parameter '%s'",
                                  key);
            p->nlist++;
        }
        return 0;
    }
    return node_error(ld, value, "expected a number, a string or a list of numbers for "
                      "parameter '%s', found %s", key, kind_name(value));
}

static int visit_select(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct rule_check *check = ctx;

    if (strcmp(key, "roles") == 0)
        return parse_roles(ld, value, &check->roles);
    free_strings(check->names, check->nnames);
    check->names = NULL;
    check->nnames = 0;
    return string_list(ld, value, "names", &check->names, &check->nnames);
}

static int visit_check(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    static const char *const select_keys[] = { "roles", "names", NULL };
    struct rule_check *check = ctx;

    if (strcmp(key, "id") == 0)
        return copy_string(ld, value, "id", &check->id);
    if (strcmp(key, "kind") == 0)
        return copy_string(ld, value, "kind", &check->kind);
    if (strcmp(key, "description") == 0)
        return copy_string(ld, value, "description", &check->description);
    if (strcmp(key, "enabled") == 0)
        return parse_bool(ld, value, "enabled", &check->enabled);
    if (strcmp(key, "severity") == 0) {
        if (expect_type(ld, value, YAML_SCALAR_NODE, "severity") != 0)
            return BCPM_ERR_RULES;
        if (bcpm_severity_from_name(scalar(value), &check->severity) != 0)
            return node_error(ld, value, "unknown severity '%s'; expected info, warning, "
                              "error or critical", scalar(value));
        return 0;
    }
    if (strcmp(key, "select") == 0)
        return each_pair(ld, value, "select", select_keys, visit_select, check);
    return each_pair(ld, value, "params", NULL, visit_param, check);
}

static int parse_check(struct loader *ld, yaml_node_t *node, struct rule_check *check)
{
    static const char *const keys[] = { "id", "kind", "description", "severity", "enabled",
                                        "select", "params", NULL };
    int rc;

    memset(check, 0, sizeof(*check));
    check->severity = BCPM_SEVERITY_ERROR;
    check->enabled = 1;
    check->file = ld->file;
    check->line = (unsigned)node->start_mark.line + 1;

    rc = each_pair(ld, node, "a check entry", keys, visit_check, check);
    if (rc == 0)
        rc = require(ld, node, check->id, "id", "check entry");
    if (rc == 0 && !check->kind && !(check->kind = strdup(check->id)))
        rc = nomem(ld);
    if (rc == 0 && !check->description && !(check->description = strdup("")))
        rc = nomem(ld);
    return rc;
}

/* ---- layouts ---- */

static int visit_tensor(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct layout_tensor *t = ctx;

    if (strcmp(key, "name") == 0)
        return copy_string(ld, value, "name", &t->name);
    if (strcmp(key, "role") == 0) {
        int role;

        if (expect_type(ld, value, YAML_SCALAR_NODE, "role") != 0)
            return BCPM_ERR_RULES;
        role = rules_role_from_name(scalar(value));
        if (role < 0)
            return node_error(ld, value, "unknown role '%s'; expected ternary, embedding, "
                              "norm, head or other", scalar(value));
        t->role = (enum bcpm_tensor_role)role;
        return 0;
    }
    if (strcmp(key, "dtypes") == 0)
        return parse_dtypes(ld, value, &t->dtypes);
    if (strcmp(key, "tied_to") == 0)
        return copy_string(ld, value, "tied_to", &t->tied_to);
    if (strcmp(key, "tie_when") == 0)
        return parse_expr(ld, value, "tie_when expression", &t->tie_when);

    /* shape */
    if (expect_type(ld, value, YAML_SEQUENCE_NODE, "shape") != 0)
        return BCPM_ERR_RULES;
    t->ndim = 0;
    for (yaml_node_item_t *item = value->data.sequence.items.start;
         item < value->data.sequence.items.top; item++) {
        if (t->ndim == BCPM_MAX_DIMS)
            return node_error(ld, value, "expected at most %d dimensions in shape",
                              BCPM_MAX_DIMS);
        if (parse_expr(ld, node_at(ld, *item), "shape expression", &t->shape[t->ndim]) != 0)
            return BCPM_ERR_RULES;
        t->ndim++;
    }
    return 0;
}

static void layout_tensor_clear(struct layout_tensor *t)
{
    free(t->name);
    for (int d = 0; d < BCPM_MAX_DIMS; d++)
        free(t->shape[d].text);
    free(t->tied_to);
    free(t->tie_when.text);
}

static int parse_tensors(struct loader *ld, yaml_node_t *node, struct layout_tensor **out,
                         size_t *count)
{
    static const char *const keys[] = { "name", "shape", "role", "dtypes", "tied_to",
                                        "tie_when", NULL };
    size_t n;

    if (expect_type(ld, node, YAML_SEQUENCE_NODE, "a tensor list") != 0)
        return BCPM_ERR_RULES;
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n > RULE_FILE_MAX_ITEMS)
        return node_error(ld, node, "expected at most %d tensors", RULE_FILE_MAX_ITEMS);
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out)
        return nomem(ld);
    *count = 0;
    for (yaml_node_item_t *item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        yaml_node_t *child = node_at(ld, *item);
        struct layout_tensor *t = &(*out)[(*count)++];
        int rc;

        rc = each_pair(ld, child, "a tensor entry", keys, visit_tensor, t);
        if (rc == 0)
            rc = require(ld, child, t->name, "name", "tensor entry");
        if (rc == 0 && t->ndim == 0)
            rc = node_error(ld, child, "tensor entry '%s' has no 'shape'", t->name);
        if (rc == 0 && t->tied_to && !t->tie_when.text)
            rc = node_error(ld, child, "tensor entry '%s' has 'tied_to' but no 'tie_when'",
                            t->name);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int visit_match(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct layout *layout = ctx;

    if (strcmp(key, "model_type") == 0)
        return string_list(ld, value, "model_type", &layout->model_types,
                           &layout->nmodel_types);
    return string_list(ld, value, "architectures", &layout->architectures,
                       &layout->narchitectures);
}

static int visit_default(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct layout *layout = ctx;
    struct layout_default *grown, *d;

    grown = realloc(layout->defaults, (layout->ndefaults + 1) * sizeof(*grown));
    if (!grown)
        return nomem(ld);
    layout->defaults = grown;
    d = &layout->defaults[layout->ndefaults];
    memset(d, 0, sizeof(*d));
    d->key = strdup(key);
    if (!d->key)
        return nomem(ld);
    layout->ndefaults++;
    return parse_expr(ld, value, "default expression", &d->value);
}

static int visit_layers(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct layout *layout = ctx;

    if (strcmp(key, "count") == 0)
        return parse_expr(ld, value, "layer count expression", &layout->layer_count);
    if (strcmp(key, "prefix") == 0) {
        const char *mark;

        if (copy_string(ld, value, "prefix", &layout->layer_prefix) != 0)
            return BCPM_ERR_RULES;
        mark = strstr(layout->layer_prefix, "{i}");
        if (!mark || strstr(mark + 3, "{i}"))
            return node_error(ld, value, "expected '{i}' exactly once in the layer prefix, "
                              "found '%s'", layout->layer_prefix);
        return 0;
    }
    return parse_tensors(ld, value, &layout->per_layer, &layout->nper_layer);
}

static int visit_layout(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    static const char *const match_keys[] = { "model_type", "architectures", NULL };
    static const char *const layer_keys[] = { "count", "prefix", "tensors", NULL };
    struct layout *layout = ctx;

    if (strcmp(key, "family") == 0)
        return copy_string(ld, value, "family", &layout->family);
    if (strcmp(key, "description") == 0)
        return copy_string(ld, value, "description", &layout->description);
    if (strcmp(key, "match") == 0)
        return each_pair(ld, value, "match", match_keys, visit_match, layout);
    if (strcmp(key, "defaults") == 0)
        return each_pair(ld, value, "defaults", NULL, visit_default, layout);
    if (strcmp(key, "dtypes") == 0)
        return parse_dtypes(ld, value, &layout->dtypes);
    if (strcmp(key, "ignore") == 0)
        return string_list(ld, value, "ignore", &layout->ignore, &layout->nignore);
    if (strcmp(key, "global") == 0)
        return parse_tensors(ld, value, &layout->globals, &layout->nglobals);
    return each_pair(ld, value, "layers", layer_keys, visit_layers, layout);
}

static int parse_layout(struct loader *ld, yaml_node_t *node, struct layout *layout)
{
    static const char *const keys[] = { "family", "description", "match", "defaults",
                                        "dtypes", "ignore", "global", "layers", NULL };
    int rc;

    memset(layout, 0, sizeof(*layout));
    layout->file = ld->file;
    layout->line = (unsigned)node->start_mark.line + 1;

    rc = each_pair(ld, node, "a layout", keys, visit_layout, layout);
    if (rc == 0)
        rc = require(ld, node, layout->family, "family", "layout");
    if (rc == 0 && layout->nper_layer && !layout->layer_prefix)
        rc = node_error(ld, node, "layout '%s' lists per-layer tensors but no layers.prefix",
                        layout->family);
    if (rc == 0 && layout->nper_layer && !layout->layer_count.text)
        rc = node_error(ld, node, "layout '%s' lists per-layer tensors but no layers.count",
                        layout->family);
    if (rc == 0 && !layout->dtypes)
        layout->dtypes = (1u << BCPM_DTYPE_BF16) | (1u << BCPM_DTYPE_F16) |
                         (1u << BCPM_DTYPE_F32);
    if (rc == 0 && !layout->description && !(layout->description = strdup("")))
        rc = nomem(ld);
    return rc;
}

/* ---- allowed globals ---- */

struct global_fields {
    char *module, *name;
};

static int visit_global(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct global_fields *g = ctx;

    return copy_string(ld, value, key, strcmp(key, "module") == 0 ? &g->module : &g->name);
}

static int parse_global(struct loader *ld, yaml_node_t *node, struct bcpm_global_rule *out)
{
    static const char *const keys[] = { "module", "name", NULL };
    struct global_fields g = { NULL, NULL };
    int rc;

    rc = each_pair(ld, node, "an allowed global", keys, visit_global, &g);
    if (rc == 0)
        rc = require(ld, node, g.module, "module", "allowed global");
    if (rc == 0)
        rc = require(ld, node, g.name, "name", "allowed global");
    out->module = g.module;
    out->name = g.name;
    return rc;
}

/* ---- the file ---- */

/* Allocate the array for a top-level list and call parse_one on each item. */
static int parse_list(struct loader *ld, yaml_node_t *node, const char *what, size_t size,
                      void **out, size_t *count,
                      int (*parse_one)(struct loader *, yaml_node_t *, void *))
{
    size_t n;

    if (expect_type(ld, node, YAML_SEQUENCE_NODE, what) != 0)
        return BCPM_ERR_RULES;
    n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (n > RULE_FILE_MAX_ITEMS)
        return node_error(ld, node, "expected at most %d entries in %s", RULE_FILE_MAX_ITEMS,
                          what);
    *out = calloc(n ? n : 1, size);
    if (!*out)
        return nomem(ld);
    for (yaml_node_item_t *item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        int rc = parse_one(ld, node_at(ld, *item), (char *)*out + *count * size);

        (*count)++; /* counted first, so that clearing frees a half-parsed entry */
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int parse_check_item(struct loader *ld, yaml_node_t *node, void *out)
{
    return parse_check(ld, node, out);
}

static int parse_layout_item(struct loader *ld, yaml_node_t *node, void *out)
{
    return parse_layout(ld, node, out);
}

static int parse_global_item(struct loader *ld, yaml_node_t *node, void *out)
{
    return parse_global(ld, node, out);
}

static int visit_top(struct loader *ld, const char *key, yaml_node_t *value, void *ctx)
{
    struct rule_file *rf = ctx;

    if (strcmp(key, "version") == 0) {
        if (value->type != YAML_SCALAR_NODE || strcmp(scalar(value), "1") != 0)
            return node_error(ld, value, "expected version 1, found %s",
                              value->type == YAML_SCALAR_NODE ? scalar(value)
                                                              : kind_name(value));
        return 0;
    }
    if (strcmp(key, "checks") == 0)
        return parse_list(ld, value, "checks", sizeof(*rf->checks), (void **)&rf->checks,
                          &rf->nchecks, parse_check_item);
    if (strcmp(key, "layouts") == 0)
        return parse_list(ld, value, "layouts", sizeof(*rf->layouts), (void **)&rf->layouts,
                          &rf->nlayouts, parse_layout_item);
    return parse_list(ld, value, "allowed_globals", sizeof(*rf->globals),
                      (void **)&rf->globals, &rf->nglobals, parse_global_item);
}

static int syntax_error(struct loader *ld, const yaml_parser_t *parser)
{
    const yaml_mark_t *mark = parser->problem ? &parser->problem_mark : &parser->context_mark;

    bcpm_error_set(ld->err, BCPM_ERR_RULES, ld->file, NULL, "invalid YAML: %s%s%s",
                   parser->problem ? parser->problem : "unknown problem",
                   parser->context ? " " : "", parser->context ? parser->context : "");
    ld->err->line = (unsigned)mark->line + 1;
    ld->err->column = (unsigned)mark->column + 1;
    return BCPM_ERR_RULES;
}

/* Parse the events of text once, rejecting nesting deeper than RULE_FILE_MAX_DEPTH. */
static int check_depth(struct loader *ld, const unsigned char *text, size_t size)
{
    yaml_parser_t parser;
    yaml_event_t event;
    int depth = 0, rc = 0, done = 0;

    if (!yaml_parser_initialize(&parser))
        return bcpm_error_set(ld->err, BCPM_ERR_NOMEM, ld->file, NULL, "out of memory");
    yaml_parser_set_input_string(&parser, text, size);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&parser, &event)) {
            rc = syntax_error(ld, &parser);
            break;
        }
        if (event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT)
            depth++;
        if (event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT)
            depth--;
        if (depth > RULE_FILE_MAX_DEPTH) {
            bcpm_error_set(ld->err, BCPM_ERR_RULES, ld->file, NULL,
                           "lists and mappings nest deeper than %d levels; a rule file needs "
                           "at most 6", RULE_FILE_MAX_DEPTH);
            ld->err->line = (unsigned)event.start_mark.line + 1;
            ld->err->column = (unsigned)event.start_mark.column + 1;
            rc = BCPM_ERR_RULES;
        }
        done = event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    return rc;
}

int rules_parse(struct rule_file *out, const char *file, const unsigned char *text, size_t size,
                struct bcpm_error *err)
{
    static const char *const keys[] = { "version", "checks", "layouts", "allowed_globals",
                                        NULL };
    struct loader ld = { .file = file, .err = err };
    yaml_parser_t parser;
    yaml_node_t *root;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = check_depth(&ld, text, size);
    if (rc != 0)
        return rc;
    if (!yaml_parser_initialize(&parser))
        return bcpm_error_set(err, BCPM_ERR_NOMEM, file, NULL, "out of memory");
    yaml_parser_set_input_string(&parser, text, size);
    if (!yaml_parser_load(&parser, &ld.doc)) {
        rc = syntax_error(&ld, &parser);
        yaml_parser_delete(&parser);
        return rc;
    }

    root = yaml_document_get_root_node(&ld.doc);
    if (!root)
        rc = bcpm_error_set(err, BCPM_ERR_RULES, file, NULL,
                            "the file is empty; expected a mapping with version, checks, "
                            "layouts or allowed_globals");
    else
        rc = each_pair(&ld, root, "the top level", keys, visit_top, out);

    yaml_document_delete(&ld.doc);
    yaml_parser_delete(&parser);
    if (rc != 0)
        rule_file_clear(out);
    return rc;
}

void rule_check_clear(struct rule_check *check)
{
    free(check->id);
    free(check->kind);
    free(check->description);
    free_strings(check->names, check->nnames);
    for (size_t i = 0; i < check->nparams; i++) {
        free(check->params[i].key);
        free(check->params[i].string);
        free(check->params[i].list);
    }
    free(check->params);
    memset(check, 0, sizeof(*check));
}

void layout_clear(struct layout *layout)
{
    free(layout->family);
    free(layout->description);
    free_strings(layout->model_types, layout->nmodel_types);
    free_strings(layout->architectures, layout->narchitectures);
    for (size_t i = 0; i < layout->ndefaults; i++) {
        free(layout->defaults[i].key);
        free(layout->defaults[i].value.text);
    }
    free(layout->defaults);
    free_strings(layout->ignore, layout->nignore);
    for (size_t i = 0; i < layout->nglobals; i++)
        layout_tensor_clear(&layout->globals[i]);
    free(layout->globals);
    free(layout->layer_count.text);
    free(layout->layer_prefix);
    for (size_t i = 0; i < layout->nper_layer; i++)
        layout_tensor_clear(&layout->per_layer[i]);
    free(layout->per_layer);
    memset(layout, 0, sizeof(*layout));
}

void rule_file_clear(struct rule_file *rf)
{
    for (size_t i = 0; i < rf->nchecks; i++)
        rule_check_clear(&rf->checks[i]);
    free(rf->checks);
    for (size_t i = 0; i < rf->nlayouts; i++)
        layout_clear(&rf->layouts[i]);
    free(rf->layouts);
    for (size_t i = 0; i < rf->nglobals; i++) {
        free((char *)rf->globals[i].module);
        free((char *)rf->globals[i].name);
    }
    free(rf->globals);
    memset(rf, 0, sizeof(*rf));
}
