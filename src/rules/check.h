/*
 * State shared by the steps of one bcpm_check_catalog call: the layout
 * check (layout.c), the value pass over the tensor data (scan.c) and the
 * ternary and stage findings drawn from it (ternary.c).
 */
#ifndef BCPM_RULES_CHECK_H
#define BCPM_RULES_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "rules/config.h"
#include "rules/engine.h"
#include "rules/ruleset.h"

/* Summary of one ternary tensor's groups, from the value pass. */
struct ternary_summary {
    int scanned;                 /* 1 when the ternary scan ran */
    char problem[256];           /* why it could not run (group size), or "" */
    int64_t group_size;          /* as used: -1 for one group per row */
    uint64_t rows, columns, groups;
    uint64_t groups_ternary;     /* one magnitude (or all zero), no NaN or Inf */
    uint64_t groups_bad;         /* several magnitudes that no shard split explains */
    uint64_t groups_many;        /* of those, groups with more than many_above magnitudes,
                                    more than a damaged ternary group shows: latent-looking */
    uint32_t many_above;
    uint32_t bad_magnitudes;     /* distinct magnitudes of the first bad group (capped at
                                    BCPM_TERNARY_MAX_MAGNITUDES + 1) */
    uint64_t codes[3];           /* -1, 0, +1 over ternary groups */
    int64_t bad_row, bad_column; /* first element of the first bad group that is not -s, 0, +s */
    double bad_value, bad_scale;
    uint64_t groups_sharded;     /* groups whose magnitudes sit in k column blocks */
    int shard_count;             /* k of the first such group; the largest if they differ */
    int shards_differ;           /* 1 when sharded groups use different k */
    int64_t shard_row;           /* row of the first sharded group */
    uint64_t scales_subnormal;   /* nonzero scales below the dtype's smallest normal number */
    int64_t subnormal_row;
    double subnormal_value;
    uint64_t scale_count;
    double scale_min, scale_max, scale_sum, scale_median;
};

/* Per catalog tensor: the layout entry it matched and the value pass results. */
struct tensor_info {
    enum bcpm_tensor_role role;
    const struct layout_tensor *spec; /* the layout entry it matched, or NULL */
    int layer;                        /* layer index, -1 for global tensors */
    int64_t first_nonfinite;          /* linear index, -1 if none */
    double nonfinite_value;
    struct ternary_summary ternary;
};

struct check_ctx {
    const struct bcpm_ruleset *rs;
    const struct bcpm_catalog *cat;
    const struct bcpm_check_options *opt;
    struct bcpm_findings *findings;   /* result->findings */
    struct bcpm_tensor_stats *stats;  /* this catalog's slice of result->tensors */
    struct tensor_info *info;         /* one per catalog tensor */
    struct model_config config;       /* root NULL when there is none */
    const struct layout *layout;      /* matched layout, or NULL */
    int layout_from_config;           /* 1: names and shapes checked against the config */
    enum bcpm_stage stage;            /* detected */
    int out_of_memory;                /* a finding could not be stored */
};

/* Choose the config and the layout, then check names, shapes, dtypes and the tie rule. */
int layout_check(struct check_ctx *ctx, struct bcpm_error *err);

/* Value statistics and ternary scans over every tensor, in file byte order. */
int scan_tensors(struct check_ctx *ctx, struct bcpm_error *err);

/* values.nonfinite, ternary.values, ternary.groups, ternary.scale and stage.mismatch. */
int ternary_report(struct check_ctx *ctx, struct bcpm_error *err);

/* The tensors a layout expects for a config: what layout_check compares against. */
struct expanded_tensor {
    char *name;
    int ndim;
    int64_t shape[BCPM_MAX_DIMS];
    enum bcpm_tensor_role role;
    int optional;                /* a tied head, which may be absent */
};

struct layout_expansion {
    const struct layout *layout;
    int64_t layers;
    int tied;                    /* tie rule of the head: 1, 0, or -1 without a tied head */
    struct expanded_tensor *tensors;
    size_t count;
};

/*
 * Match config_path against the rule set's layouts and list the expected
 * tensors: globals first, then each layer's in layout order. Errors:
 * BCPM_ERR_NOT_FOUND (no layout matches), config and expression errors.
 */
int layout_expand(const struct bcpm_ruleset *rs, const char *config_path,
                  struct layout_expansion *out, struct bcpm_error *err);

void layout_expansion_free(struct layout_expansion *x);

/* Fill order with the catalog's tensor indices sorted by file and byte offset; -1 on ENOMEM. */
int check_byte_order(const struct bcpm_catalog *cat, size_t *order);

/* File of catalog tensor i, for findings. */
const char *check_tensor_file(const struct check_ctx *ctx, size_t i);

/* Append a finding for check c, or do nothing when c is NULL (disabled or not selected). */
struct bcpm_finding *check_report(struct check_ctx *ctx, const struct rule_check *c,
                                  enum bcpm_severity severity, const char *file,
                                  const char *tensor, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* Format shape as "[a, b]" into buf and return buf. */
const char *check_format_shape(char *buf, size_t size, const int64_t *shape, int ndim);

#endif
