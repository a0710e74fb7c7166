/*
 * Ternary kernels over catalog tensors: the value-set scan of a
 * pseudo-quantized tensor, plain value statistics, and (in fakequant.h) the
 * fake-quant recompute from latent weights.
 *
 * A tensor is viewed as a matrix [rows, columns] (all but the last dimension
 * folded into rows) and split into groups of group_size consecutive columns
 * within a row; group_size -1 means one group per row. Each kernel has a
 * scalar reference and SIMD variants chosen at run time (simd.h); all give
 * identical results.
 */
#ifndef BCPM_QUANT_QUANT_H
#define BCPM_QUANT_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "tensor/catalog.h"

/* Distinct nonzero magnitudes tracked per group before it counts as "many". */
#define BCPM_TERNARY_MAX_MAGNITUDES 8

/* Per group: what the values show. */
struct bcpm_ternary_group {
    float scale;             /* the magnitude s if the group is ternary, else the most frequent one */
    uint32_t magnitudes;     /* distinct nonzero magnitudes, capped at BCPM_TERNARY_MAX_MAGNITUDES + 1 */
    uint32_t nonfinite;      /* NaN or Inf elements */
    /* For each of the first magnitudes (by first appearance): value, first and last column. */
    float magnitude[BCPM_TERNARY_MAX_MAGNITUDES];
    uint32_t first_column[BCPM_TERNARY_MAX_MAGNITUDES];
    uint32_t last_column[BCPM_TERNARY_MAX_MAGNITUDES];
    uint32_t codes[3];       /* elements equal to -s, 0, +s for the main magnitude */
};

struct bcpm_ternary_scan {
    uint64_t rows, columns, group_size, groups_per_row;
    struct bcpm_ternary_group *groups; /* rows * groups_per_row, row-major, owned */
    /* Totals over all groups. */
    uint64_t groups_ternary;           /* exactly one magnitude (or all zero) and no NaN/Inf */
    uint64_t codes[3];                 /* -1, 0, +1 over ternary groups */
    uint64_t nonfinite;
    /* The first element (row-major) that is not -s, 0 or +s of its group's main magnitude. */
    int64_t first_bad_row, first_bad_column;
    double first_bad_value, first_bad_scale;
};

struct bcpm_value_stats {
    uint64_t count, nan, inf, zeros;
    int64_t first_nonfinite;           /* linear index, -1 if none */
    double min, max, sum, sum_squares; /* over finite elements, summed in double */
};

/*
 * Scan a floating-point tensor (BF16, F16, F32, F64) for ternary groups.
 * group_size must divide the column count unless it is -1. On success
 * free out with bcpm_ternary_scan_free.
 */
int bcpm_ternary_scan(const struct bcpm_tensor *tensor, int64_t group_size,
                      struct bcpm_ternary_scan *out, struct bcpm_error *err);

void bcpm_ternary_scan_free(struct bcpm_ternary_scan *scan);

/* Count, NaN, Inf, zeros, min, max, sum and sum of squares of any tensor. */
int bcpm_value_stats(const struct bcpm_tensor *tensor, struct bcpm_value_stats *out,
                     struct bcpm_error *err);

#endif
