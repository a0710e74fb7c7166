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
#include "io/map.h"
#include "tensor/catalog.h"

/* Distinct nonzero magnitudes tracked per group before it counts as "many". */
#define BCPM_TERNARY_MAX_MAGNITUDES 8

/*
 * Per group: what the values show. Once a group shows more than
 * BCPM_TERNARY_MAX_MAGNITUDES magnitudes, only NaN and Inf are counted past
 * that element: codes and last columns cover the elements before it.
 */
struct bcpm_ternary_group {
    float scale;             /* the magnitude s if the group is ternary, else the most frequent one */
    uint32_t magnitudes;     /* distinct nonzero magnitudes, capped at BCPM_TERNARY_MAX_MAGNITUDES + 1 */
    uint32_t nonfinite;      /* NaN or Inf elements */
    /* For each of the first magnitudes (by first appearance): value, first and last column. */
    float magnitude[BCPM_TERNARY_MAX_MAGNITUDES];
    uint32_t first_column[BCPM_TERNARY_MAX_MAGNITUDES];
    uint32_t last_column[BCPM_TERNARY_MAX_MAGNITUDES];
    uint32_t codes[3];       /* elements equal to -s, 0, +s for the main magnitude */
    int64_t first_bad_column; /* first column (in the row) not -s, 0 or +s, or -1 */
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
 * A content digest fed by the kernels: feed receives ranges of a file, one
 * call at a time and in file order within a tensor, each right after the
 * kernel read it, while the bytes are still in the CPU cache.
 */
struct bcpm_quant_digest {
    void (*feed)(void *ctx, uint32_t file, uint64_t offset, uint64_t length);
    void *ctx;
};

/*
 * Run options of a kernel. A zeroed struct (or NULL) selects the thread count
 * set by bcpm_quant_set_threads, keeps per-group results and releases nothing.
 */
struct bcpm_quant_options {
    int threads;                   /* 0: the process default */
    int summary_only;              /* 1: fill totals only, leave groups NULL */
    const struct bcpm_map *release; /* map holding the tensor: pages are dropped
                                       from the resident set once scanned */
    /* With release set and a contiguous tensor, its bytes go to digest in
       file order, each range before its pages are dropped; may be NULL. */
    const struct bcpm_quant_digest *digest;
};

/*
 * Set the default thread count of the kernels; n <= 0 means every online CPU
 * (the initial setting). Safe to call at any time from any thread.
 */
void bcpm_quant_set_threads(int n);

/* The default thread count now in effect (at least 1). */
int bcpm_quant_threads(void);

/*
 * The map that holds tensor's bytes, for bcpm_quant_options.release, or NULL
 * when the bytes live in a buffer the catalog owns (an inflated zip entry).
 */
const struct bcpm_map *bcpm_quant_tensor_map(const struct bcpm_catalog *catalog,
                                             const struct bcpm_tensor *tensor);

/*
 * The file offset of element index (row-major) of tensor. Returns 1 and
 * stores it when the tensor's bytes lie in its mapped file; returns 0 for
 * bytes in a buffer the catalog owns (an inflated zip entry has no file
 * offset) and for an index past the end.
 */
int bcpm_quant_file_offset(const struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                           uint64_t index, uint64_t *offset);

/*
 * Scan a floating-point tensor (BF16, F16, F32, F64) for ternary groups.
 * group_size must divide the column count unless it is -1. On success
 * free out with bcpm_ternary_scan_free.
 */
int bcpm_ternary_scan(const struct bcpm_tensor *tensor, int64_t group_size,
                      struct bcpm_ternary_scan *out, struct bcpm_error *err);

/* bcpm_ternary_scan with explicit options (options may be NULL). */
int bcpm_ternary_scan_ex(const struct bcpm_tensor *tensor, int64_t group_size,
                         const struct bcpm_quant_options *options,
                         struct bcpm_ternary_scan *out, struct bcpm_error *err);

/*
 * bcpm_ternary_scan on a tensor of catalog, dropping its pages from the
 * resident set once scanned. Use this one on whole checkpoints.
 */
int bcpm_ternary_scan_in(const struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                         int64_t group_size, struct bcpm_ternary_scan *out,
                         struct bcpm_error *err);

void bcpm_ternary_scan_free(struct bcpm_ternary_scan *scan);

/*
 * The scan group by group, for a pass that reads the rows for its own
 * purpose (the reference comparison); the result equals bcpm_ternary_scan_ex's.
 * bcpm_ternary_scan_prepare checks the dtype and group size and fills the
 * shape fields of out (groups left NULL). bcpm_ternary_scan_group scans the n
 * elements of one group starting at column column0 of its row.
 * bcpm_ternary_scan_totals fills the totals of out from its groups once every
 * group is done.
 */
int bcpm_ternary_scan_prepare(const struct bcpm_tensor *tensor, int64_t group_size,
                              struct bcpm_ternary_scan *out, struct bcpm_error *err);
void bcpm_ternary_scan_group(enum bcpm_dtype dtype, const uint8_t *x, uint64_t n,
                             uint64_t column0, struct bcpm_ternary_group *g);
void bcpm_ternary_scan_totals(const struct bcpm_tensor *tensor, struct bcpm_ternary_scan *scan);

/*
 * Fill the record of a BF16 group known to contain only zeros and the
 * magnitude (bits, sign cleared), with negatives elements of -magnitude and
 * zeros zeros, as bcpm_ternary_scan_group would fill it. Magnitude 0 means
 * all zeros.
 */
void bcpm_ternary_group_bf16(const uint16_t *x, uint64_t n, uint64_t column0, uint16_t magnitude,
                             uint64_t negatives, uint64_t zeros, struct bcpm_ternary_group *g);

/* Count, NaN, Inf, zeros, min, max, sum and sum of squares of any tensor. */
int bcpm_value_stats(const struct bcpm_tensor *tensor, struct bcpm_value_stats *out,
                     struct bcpm_error *err);

int bcpm_value_stats_ex(const struct bcpm_tensor *tensor, const struct bcpm_quant_options *options,
                        struct bcpm_value_stats *out, struct bcpm_error *err);

/*
 * The same statistics block by block, for a pass that reads the tensor for
 * its own purpose. A block is bcpm_value_stats_block_elements() consecutive
 * elements (the last may be shorter) summed alone, and the blocks are merged
 * in block order. The result equals bcpm_value_stats bit for bit.
 */
uint64_t bcpm_value_stats_block_elements(void);
uint64_t bcpm_value_stats_block_count(const struct bcpm_tensor *tensor);
void bcpm_value_stats_block(const struct bcpm_tensor *tensor, uint64_t k,
                            struct bcpm_value_stats *out);
void bcpm_value_stats_merge(struct bcpm_value_stats *out, const struct bcpm_value_stats *blocks,
                            uint64_t nblocks);

/* bcpm_value_stats on a tensor of catalog, dropping its pages once read. */
int bcpm_value_stats_in(const struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                        struct bcpm_value_stats *out, struct bcpm_error *err);

#endif
