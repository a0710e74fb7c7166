/*
 * A model's config.json (read with jansson) and the evaluation of a layout's
 * shape expressions over its fields, with the layout's defaults filling in
 * fields the config leaves out or sets to null.
 */
#ifndef BCPM_RULES_CONFIG_H
#define BCPM_RULES_CONFIG_H

#include <jansson.h>
#include <stdint.h>

#include "rules/ruleset.h"

struct model_config {
    char *path;
    json_t *root; /* a JSON object */
};

/* Read path. Errors: BCPM_ERR_NOT_FOUND, BCPM_ERR_IO, BCPM_ERR_CORRUPT (not a JSON object). */
int config_load(struct model_config *cfg, const char *path, struct bcpm_error *err);

void config_clear(struct model_config *cfg);

/* The string field key, or NULL when absent or not a string. */
const char *config_string(const struct model_config *cfg, const char *key);

/* 1 when the layout's match lists name the config's model_type or one of its architectures. */
int config_matches(const struct model_config *cfg, const struct layout *layout);

/*
 * Evaluate expr over cfg (may be NULL) and the layout's defaults. Errors are
 * BCPM_ERR_RULES. A field that neither the config nor a default gives is
 * blamed on the config (err names its path, and the message the rule file
 * and line that needs the field); other errors name the rule file, line and
 * column of the expression.
 */
int config_eval(const struct model_config *cfg, const struct layout *layout,
                const struct rule_expr *expr, int64_t *out, struct bcpm_error *err);

#endif
