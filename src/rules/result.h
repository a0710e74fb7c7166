/*
 * The result of checking one or more checkpoints: what the rule engine
 * produces and what the reports (src/report/) and the audit store
 * (src/audit/) consume. Plain data, owned by the result.
 */
#ifndef BCPM_RULES_RESULT_H
#define BCPM_RULES_RESULT_H

#include <stddef.h>
#include <stdint.h>

#include "io/finding.h"
#include "tensor/catalog.h"

enum bcpm_stage {
    BCPM_STAGE_UNKNOWN,
    BCPM_STAGE_LATENT,    /* full-precision latent weights, as released unquantized */
    BCPM_STAGE_FINETUNED, /* latent weights after training: assertable only, since the
                             values look like latent ones and are detected as LATENT */
    BCPM_STAGE_PSEUDO,    /* every group of every ternary tensor holds only -s, 0, +s */
};

enum bcpm_tensor_role {
    BCPM_ROLE_OTHER,
    BCPM_ROLE_TERNARY,
    BCPM_ROLE_EMBEDDING,
    BCPM_ROLE_NORM,
    BCPM_ROLE_HEAD,
};

/* Per-tensor statistics, one per tensor of the checked catalog. */
struct bcpm_tensor_stats {
    char *name;
    char *file;
    enum bcpm_dtype dtype;
    int ndim;
    int64_t shape[BCPM_MAX_DIMS];
    enum bcpm_tensor_role role;
    uint64_t numel;
    uint64_t nan, inf;
    double min, max, mean, std;   /* over finite elements */
    /* Ternary tensors only (role TERNARY), else zero. */
    int ternary_checked;
    int64_t group_size;           /* -1: one group per row */
    uint64_t groups, groups_ternary;
    double code_fraction[3];      /* -1, 0, +1 over ternary groups */
    double scale_min, scale_max, scale_mean;
    int shards_per_row;           /* group structure seen: 1, or the split count */
};

/* One checked checkpoint (what the user named on the command line). */
struct bcpm_checked_file {
    char *path;                   /* as given */
    char *format;                 /* "torch-zip", "torch-legacy", "safetensors", "sharded", "folder" */
    char *family;                 /* layout id matched ("minicpm", "llama") or NULL */
    char *config_path;            /* config.json used, or NULL */
    enum bcpm_stage stage_detected;
    uint64_t size_bytes;          /* sum over the files read */
    int64_t mtime_ns;             /* newest modification time of the files read */
    size_t first_tensor, ntensors; /* range in bcpm_check_result.tensors */
};

struct bcpm_check_result {
    struct bcpm_checked_file *files;
    size_t nfiles;
    struct bcpm_tensor_stats *tensors;
    size_t ntensors;
    struct bcpm_findings findings; /* every finding, readers' security findings included */
    enum bcpm_severity fail_on;    /* verdict threshold */
    int failed;                    /* 1 when a finding is at or above fail_on */
    char *rules_digest;            /* hex SHA-256 over the rule files in effect */
};

const char *bcpm_stage_name(enum bcpm_stage stage);
int bcpm_stage_from_name(const char *name, enum bcpm_stage *out);
const char *bcpm_role_name(enum bcpm_tensor_role role);

void bcpm_check_result_free(struct bcpm_check_result *result);

#endif
