/*
 * The loaded form of rule files, shared by the loader (load.c), the rule set
 * API (ruleset.c) and the checks. Everything here is owned by the rule set.
 */
#ifndef BCPM_RULES_RULESET_H
#define BCPM_RULES_RULESET_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/finding.h"
#include "rules/engine.h"
#include "rules/result.h"

/* A shape expression with the place it was written, for error messages. */
struct rule_expr {
    char *text;
    const char *file;  /* the rule set's copy of the file path */
    unsigned line, column;
};

/* One expected tensor of a layout, global or per layer (then name is the suffix). */
struct layout_tensor {
    char *name;
    struct rule_expr shape[BCPM_MAX_DIMS];
    int ndim;
    enum bcpm_tensor_role role;
    uint32_t dtypes;         /* bit per enum bcpm_dtype; 0: the layout's default */
    char *tied_to;           /* the head's embedding, or NULL */
    struct rule_expr tie_when; /* text NULL unless tied_to is set */
};

struct layout_default {
    char *key;
    struct rule_expr value;
};

struct layout {
    char *family;
    char *description;
    char **model_types;
    size_t nmodel_types;
    char **architectures;
    size_t narchitectures;
    struct layout_default *defaults;
    size_t ndefaults;
    uint32_t dtypes;         /* default allowed dtypes */
    char **ignore;           /* name globs that are neither expected nor unexpected */
    size_t nignore;
    struct layout_tensor *globals;
    size_t nglobals;
    struct rule_expr layer_count;
    char *layer_prefix;      /* "model.layers.{i}." */
    struct layout_tensor *per_layer;
    size_t nper_layer;
    const char *file;
    unsigned line;
};

enum param_type { PARAM_NUMBER, PARAM_STRING, PARAM_LIST };

struct rule_param {
    char *key;
    enum param_type type;
    double number;
    char *string;
    double *list;
    size_t nlist;
};

struct rule_check {
    char *id;
    char *kind;
    char *description;
    enum bcpm_severity severity;
    int enabled;
    uint32_t roles;          /* bit per enum bcpm_tensor_role; 0: every role */
    char **names;            /* name globs; none: every name */
    size_t nnames;
    struct rule_param *params;
    size_t nparams;
    const char *file;
    unsigned line;
};

struct bcpm_ruleset {
    char **files;
    size_t nfiles;
    char digest[65];
    void *sha;               /* EVP_MD_CTX over the files so far */
    struct rule_check *checks;
    size_t nchecks;
    struct layout *layouts;
    size_t nlayouts;
    struct bcpm_global_rule *globals;
    size_t nglobals;
};

/* The entries of one rule file, before they are merged into a rule set. */
struct rule_file {
    struct rule_check *checks;
    size_t nchecks;
    struct layout *layouts;
    size_t nlayouts;
    struct bcpm_global_rule *globals;
    size_t nglobals;
};

/*
 * Parse the YAML text of one rule file. file is the path used in messages and
 * in the marks it records (the caller keeps it alive as long as the result).
 */
int rules_parse(struct rule_file *out, const char *file, const unsigned char *text, size_t size,
                struct bcpm_error *err);

void rule_file_clear(struct rule_file *rf);
void rule_check_clear(struct rule_check *check);
void layout_clear(struct layout *layout);

/* ---- lookups used by the checks ---- */

/* The first enabled check of kind whose selector matches (name, role), or NULL. */
const struct rule_check *rules_select(const struct bcpm_ruleset *rs, const char *kind,
                                      const char *name, enum bcpm_tensor_role role);

/* The first enabled check of kind, whatever its selector, or NULL. */
const struct rule_check *rules_find_kind(const struct bcpm_ruleset *rs, const char *kind);

/* The check with this id (enabled or not), or NULL. */
const struct rule_check *rules_find_id(const struct bcpm_ruleset *rs, const char *id);

double rules_param_number(const struct rule_check *check, const char *key, double fallback);
const struct rule_param *rules_param(const struct rule_check *check, const char *key);
enum bcpm_severity rules_param_severity(const struct rule_check *check, const char *key,
                                        enum bcpm_severity fallback);

/* "ternary" -> BCPM_ROLE_TERNARY; -1 if unknown. */
int rules_role_from_name(const char *name);

#endif
