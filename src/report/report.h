/*
 * Reports over a struct bcpm_check_result: the terminal report, the JSON
 * document (schema_version 1, documented in docs/USER_GUIDE.md and
 * bitcpm-check(1)), JUnit XML for CI test views and SARIF 2.1.0 for
 * code-scanning dashboards.
 *
 * Every report is a pure function of the result and the options: nothing is
 * recomputed, and the same result always gives the same bytes. The library
 * never decides on colour by itself; the caller resolves --color, NO_COLOR and
 * isatty() and passes the outcome in bcpm_report_options.color.
 */
#ifndef BCPM_REPORT_REPORT_H
#define BCPM_REPORT_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "io/error.h"
#include "rules/result.h"

/* Worst offenders shown by the terminal report when options.top is 0. */
#define BCPM_REPORT_DEFAULT_TOP 10

/* Findings listed per rule by the terminal report unless verbose. */
#define BCPM_REPORT_FINDINGS_PER_RULE 5

/*
 * Per-tensor numbers of a --reference comparison, as the reports show them.
 * The command fills these from the quant module's comparison; the reports
 * only print them.
 */
struct bcpm_report_reference {
    const char *name;             /* tensor name */
    size_t file;                  /* index in bcpm_check_result.files of its checkpoint */
    const char *policy;           /* compute policy the export matched: "float32", "bf16", or NULL */
    uint64_t elements;            /* elements compared */
    uint64_t matches;             /* elements equal to the recomputed fake-quant */
    uint64_t boundary;            /* codes that match the policy only at a rounding boundary */
    uint64_t disagreements;       /* elements whose code differs between the two policies */
    uint64_t mismatches;          /* codes that neither policy produces */
    uint64_t not_compared;        /* elements of latent groups with NaN or Inf, left out */
    uint64_t not_a_code;          /* stored values neither 0 nor +-s (in mismatches, no cell) */
    uint64_t confusion[3][3];     /* [expected code + 1][stored code + 1] */
    uint64_t groups;              /* groups compared */
    uint64_t scale_mismatches;    /* groups whose scale is off by more than the tolerance */
    uint64_t scale_boundary;      /* scales that match the policy only at a rounding boundary */
    double scale_ulps_max;        /* largest scale error, in ulps of the stored dtype */
    int quantized_twice;          /* 1 when every scale is off by the nonzero fraction */
};

/*
 * Per-tensor preview of the export of a latent checkpoint (no --reference):
 * the fake-quant recomputed from the latent weights without storing it.
 */
struct bcpm_report_preview {
    size_t tensor;                /* index in bcpm_check_result.tensors */
    const char *policy;           /* compute policy used: "float32" or "bf16" */
    float eps;                    /* scale floor used */
    uint64_t group_size, groups;  /* group size in columns (resolved), groups */
    uint64_t codes[3];            /* codes -1, 0, +1 over the finite groups */
    double zero_fraction;         /* codes[1] over all three */
    double scale_min, scale_max, scale_mean; /* over finite groups, float32 s */
    uint64_t eps_floor_groups;    /* groups whose scale would be eps */
    int64_t first_eps_floor_row;  /* -1 when none */
    uint64_t nonfinite_groups;    /* groups with NaN or Inf, left out */
};

struct bcpm_report_options {
    int color;                    /* 1: ANSI colour escapes in the terminal report */
    int verbosity;                /* -1: verdict line only, 0: normal, 1: per-tensor statistics */
    size_t top;                   /* worst offenders shown; 0 means BCPM_REPORT_DEFAULT_TOP */
    const char *tool_name;        /* "bitcpm-check" when NULL */
    const char *tool_version;     /* BCPM_VERSION when NULL */
    const char *reference_path;   /* --reference LATENT, or NULL */
    const struct bcpm_report_reference *reference; /* per-tensor comparison, or NULL */
    size_t nreference;
    const struct bcpm_report_preview *preview; /* latent-only export preview, or NULL */
    size_t npreview;
    const char *const *paths;     /* the paths the user named, for the verdict line; may be NULL */
    size_t npaths;
    const char *const *rules;     /* rule ids in effect, for passing JUnit cases; may be NULL */
    const char *const *rule_descriptions; /* one line per rules[i] for SARIF; may be NULL */
    size_t nrules;
};

/*
 * Write the human-readable report to out: a verdict line, a table with one
 * row per rule, the findings of each rule, the worst offenders and the totals.
 * With verbosity -1 only the verdict line; with 1 also per-tensor statistics
 * and every finding. Returns 0, or BCPM_ERR_IO when out reports a write error.
 */
int bcpm_report_terminal(FILE *out, const struct bcpm_check_result *result,
                         const struct bcpm_report_options *options);

/*
 * Write the JSON document (schema_version 1) to out, followed by a newline.
 * Returns 0, BCPM_ERR_NOMEM, or BCPM_ERR_IO when writing failed.
 */
int bcpm_report_json(FILE *out, const struct bcpm_check_result *result,
                     const struct bcpm_report_options *options, struct bcpm_error *err);

/*
 * Write JUnit XML to the file at path (created or truncated): one test suite
 * per checked file, one test case per rule and tensor role that produced a
 * finding, and one passing test case per rule of options->rules without
 * findings (or a single "checks" case when neither exists). Findings at or
 * above result->fail_on are <failure> elements; lower ones go to <system-out>.
 * Returns 0, BCPM_ERR_IO naming path, or BCPM_ERR_NOMEM.
 */
int bcpm_report_junit(const char *path, const struct bcpm_check_result *result,
                      const struct bcpm_report_options *options, struct bcpm_error *err);

/*
 * Write a SARIF 2.1.0 log to the file at path: one run, the rules seen in
 * tool.driver.rules, and one result per finding. Returns 0, BCPM_ERR_IO naming
 * path, or BCPM_ERR_NOMEM.
 */
int bcpm_report_sarif(const char *path, const struct bcpm_check_result *result,
                      const struct bcpm_report_options *options, struct bcpm_error *err);

/*
 * One-line description of a rule id: from options->rule_descriptions when it
 * has a non-empty one, else from the built-in list of stable ids, else NULL.
 * options may be NULL.
 */
const char *bcpm_report_rule_description(const struct bcpm_report_options *options,
                                         const char *rule);

#endif
