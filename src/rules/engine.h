/*
 * The rule engine: loads the YAML rule sets (model-family layouts, check
 * entries, the pickle allow-list) and checks an opened tensor catalog against
 * them, appending files, per-tensor statistics and findings to a
 * struct bcpm_check_result (rules/result.h).
 *
 * The rule file format is documented in bitcpm-rules(5) (man/bitcpm-rules.5);
 * the shipped sets are in rules/ of the source tree.
 */
#ifndef BCPM_RULES_ENGINE_H
#define BCPM_RULES_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/finding.h"
#include "rules/result.h"
#include "tensor/catalog.h"

/* Loaded rules: layouts, checks and allowed globals, plus the files they came from. */
struct bcpm_ruleset;

/*
 * Load the shipped rule sets: every *.yaml file, in name order, of the first
 * folder that exists among $BITCPM_RULES_DIR, the installed
 * <datadir>/bitcpm-check/rules and the source tree's rules/. Returns 0 and
 * stores a rule set the caller frees with bcpm_ruleset_free, or
 * BCPM_ERR_NOT_FOUND (no folder contains rule files) or BCPM_ERR_RULES (a file
 * is malformed: err names the file, line and column).
 */
int bcpm_ruleset_load_default(struct bcpm_ruleset **out, struct bcpm_error *err);

/* An empty rule set, for loading chosen files only. Returns 0 or BCPM_ERR_NOMEM. */
int bcpm_ruleset_new(struct bcpm_ruleset **out, struct bcpm_error *err);

/*
 * Load one rule file on top of rs (the --rules option). A check whose id is
 * already loaded replaces it, a layout whose family is already loaded
 * replaces it, allowed globals are added. On failure (BCPM_ERR_IO,
 * BCPM_ERR_RULES) rs is unchanged.
 */
int bcpm_ruleset_add_file(struct bcpm_ruleset *rs, const char *path, struct bcpm_error *err);

void bcpm_ruleset_free(struct bcpm_ruleset *rs);

/* Hex SHA-256 over the bytes of every loaded file, in load order (64 characters). */
const char *bcpm_ruleset_digest(const struct bcpm_ruleset *rs);

/* Paths of the loaded files, in load order. */
size_t bcpm_ruleset_file_count(const struct bcpm_ruleset *rs);
const char *bcpm_ruleset_file_path(const struct bcpm_ruleset *rs, size_t i);

/*
 * The pickle globals the rule set allows, for struct bcpm_open_options. The
 * array belongs to rs and lives as long as it.
 */
void bcpm_ruleset_allowed_globals(const struct bcpm_ruleset *rs,
                                  const struct bcpm_global_rule **out, size_t *count);

/* One check entry, as loaded (for listings and reports). */
struct bcpm_rule_info {
    const char *id;            /* "ternary.values" */
    const char *kind;          /* what the engine runs, usually equal to id */
    enum bcpm_severity severity;
    int enabled;
    const char *description;   /* one line, or "" */
    const char *file;          /* rule file that defined it */
    unsigned line;             /* line of the entry in that file */
};

size_t bcpm_ruleset_check_count(const struct bcpm_ruleset *rs);
void bcpm_ruleset_check_info(const struct bcpm_ruleset *rs, size_t i, struct bcpm_rule_info *out);

/*
 * The number parameter key of the check with this id (enabled or not).
 * Returns 0 and stores it, or BCPM_ERR_NOT_FOUND when no such check or
 * number parameter is loaded. For checks run outside the engine, such as
 * the reference comparison ("reference.codes": eps, scale_tolerance_ulps).
 */
int bcpm_ruleset_param_number(const struct bcpm_ruleset *rs, const char *id, const char *key,
                              double *out);

/*
 * Apply the rule set to findings raised outside the engine (readers, the
 * reference comparison), from index first on: a check with a finding's id
 * sets its severity, and a disabled one removes it. Findings whose id no
 * check has keep theirs. bcpm_check_catalog does this for reader findings.
 */
void bcpm_ruleset_apply(const struct bcpm_ruleset *rs, struct bcpm_findings *findings,
                        size_t first);

/* Family ids of the loaded layouts ("minicpm", "llama"), in load order. */
size_t bcpm_ruleset_layout_count(const struct bcpm_ruleset *rs);
const char *bcpm_ruleset_layout_family(const struct bcpm_ruleset *rs, size_t i);

struct bcpm_quant_digest; /* quant/quant.h */
struct bcpm_ternary_scan; /* quant/quant.h */
struct bcpm_value_stats;  /* quant/quant.h */

/*
 * Another pass over the checkpoint that reads tensors for its own purpose
 * (the reference comparison) and can hand the value pass what it needs, so
 * that the file is read once. The value pass offers it each tensor before
 * reading it. A float tensor with the ternary role comes with ternary 1 and
 * the group size of the ternary.values rule, and run fills scan as
 * bcpm_ternary_scan_ex would. A tensor without that role comes with ternary
 * 0, and run fills stats as bcpm_value_stats would. digest is the value
 * pass's (bcpm_check_options), and a pass that fills scan or stats feeds it
 * the tensor's bytes in file order. run returns 1 when it filled them and 0
 * when the value pass must read the tensor itself. It reports its own errors.
 */
struct bcpm_check_tensor_pass {
    int (*run)(void *ctx, size_t tensor_index, int ternary, int64_t group_size,
               const struct bcpm_quant_digest *digest, struct bcpm_ternary_scan *scan,
               struct bcpm_value_stats *stats);
    void *ctx;
};

struct bcpm_check_options {
    const char *config_path;        /* --config; NULL: the catalog's, else config.json beside the weights */
    const char *family;             /* force a layout by family id; NULL: match the config */
    enum bcpm_stage expected_stage; /* --stage, or BCPM_STAGE_UNKNOWN for no assertion */
    enum bcpm_severity fail_on;     /* not read by the check: result->fail_on sets the verdict */
    int64_t group_size_override;    /* 0: the ternary.values rule's group_size; -1: one per row */
    int threads;                    /* kernel threads; 0: the kernels' default (every CPU) */
    /* Called after each tensor with the bytes done and the catalog's total; may be NULL. */
    void (*progress)(void *ctx, uint64_t done_bytes, uint64_t total_bytes);
    void *progress_ctx;
    /* Receives the catalog's bytes in file order as the value pass reads them (a content
       digest, see struct bcpm_quant_digest); may be NULL. */
    const struct bcpm_quant_digest *digest;
    /* Offered every tensor before the value pass reads it; may be NULL. */
    const struct bcpm_check_tensor_pass *tensor_pass;
};

/* Defaults: no config override, no assertion, fail on error, all CPUs. */
void bcpm_check_options_init(struct bcpm_check_options *opt);

/* An empty result; sets fail_on and the digest of rs (rs may be NULL). Returns 0 or BCPM_ERR_NOMEM. */
int bcpm_check_result_init(struct bcpm_check_result *result, const struct bcpm_ruleset *rs,
                           enum bcpm_severity fail_on, struct bcpm_error *err);

/*
 * Check one opened catalog and append to result: one struct bcpm_checked_file,
 * one struct bcpm_tensor_stats per tensor (in catalog order), and every
 * finding, the catalog's security findings first. Findings are not errors:
 * the return value is 0 whenever the check ran. Errors: BCPM_ERR_RULES (a
 * shape expression names a field that neither the config nor the layout's
 * defaults define, divides by zero or not exactly), BCPM_ERR_CORRUPT
 * (config.json is not valid JSON), BCPM_ERR_NOT_FOUND (opt->config_path does
 * not exist), BCPM_ERR_USAGE (opt->family names no layout, or the config
 * gives a negative or absurd layer count), BCPM_ERR_IO, BCPM_ERR_NOMEM. On
 * error the checked file is still appended, with what was found so far.
 */
int bcpm_check_catalog(const struct bcpm_ruleset *rs, const struct bcpm_catalog *cat,
                       const struct bcpm_check_options *opt, struct bcpm_check_result *result,
                       struct bcpm_error *err);

/* Set result->failed: 1 when a finding's severity is at or above result->fail_on. */
void bcpm_check_result_finish(struct bcpm_check_result *result);

#endif
