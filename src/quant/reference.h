/*
 * The reference check: does a pseudo-quantized checkpoint hold exactly the
 * fake-quant (fakequant.h) of the latent weights it claims to come from?
 *
 * For each ternary tensor the latent side is recomputed group by group under
 * both compute policies and compared with the stored codes and scales:
 *
 *   stored code   0 for a zero, the sign for an element of the group's
 *                 main magnitude s_stored, and "other" for any other value
 *                 (not a code at all, counted as a mismatch);
 *   match         the stored code equals the policy's code;
 *   boundary      it differs but equals the other policy's code, or the
 *                 code the policy gives once the float32 group sum moves by
 *                 one ulp (PyTorch's summation order is not ours, see
 *                 fakequant.h), so two correct implementations may disagree;
 *   mismatch      neither.
 *
 * Scales are compared in units in the last place (ulps) of the stored dtype,
 * and a scale that matches only with the sum one ulp off is a boundary too.
 * Findings use the rule ids reference.codes, reference.scale,
 * reference.boundary, reference.missing, reference.changed and, for NaN or
 * Inf in the latent weights, values.nonfinite.
 */
#ifndef BCPM_QUANT_REFERENCE_H
#define BCPM_QUANT_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/finding.h"
#include "quant/fakequant.h"
#include "tensor/catalog.h"

struct bcpm_reference_options {
    int64_t group_size;            /* -1: one group per row */
    float eps;                     /* BCPM_FAKEQUANT_DEFAULT_EPS by default */
    enum bcpm_compute policy;      /* FLOAT32, HALF or AUTO */
    uint32_t scale_tolerance_ulps; /* reference.scale fires above this; default 0 */
    int threads;                   /* 0: the default of bcpm_quant_set_threads */
    /*
     * 1: materialise the codes of every group under both policies, the path
     * non-BF16 pairs take, instead of the fused pass over BF16 pairs that
     * lists only the elements where the codes disagree. The results are the
     * same; tests set this to compare the two paths.
     */
    int full_codes;
};

/* Fill options with the defaults: group size -1, default eps, AUTO, 0 ulps. */
void bcpm_reference_options_init(struct bcpm_reference_options *options);

/* Histogram bins of scale errors, in ulps of the stored dtype. */
enum { BCPM_ULPS_0, BCPM_ULPS_1, BCPM_ULPS_2_3, BCPM_ULPS_4_PLUS, BCPM_ULPS_BINS };

/* The comparison under one policy. */
struct bcpm_reference_policy {
    uint64_t matches, boundary, mismatches;
    uint64_t confusion[3][3];      /* [recomputed code + 1][stored code + 1] */
    uint64_t stored_other;         /* stored values that are no code (also in mismatches) */
    uint64_t scale_groups;         /* groups with a stored scale (some nonzero code) */
    uint64_t scale_histogram[BCPM_ULPS_BINS];
    uint64_t scale_ulps_max;
    uint64_t scale_boundary;       /* scales matching only with the sum one ulp off */
    uint64_t scale_errors;         /* groups above the tolerance */
    uint64_t twice_groups;         /* scale errors whose ratio equals the nonzero fraction */
    uint64_t quantized_latent_groups; /* scale errors whose inverse ratio equals it */
    int64_t first_mismatch_row, first_mismatch_column; /* -1 when none */
    double first_mismatch_latent, first_mismatch_stored;
    int64_t first_scale_row, first_scale_group;         /* -1 when none */
    uint64_t first_scale_ulps;
    double first_scale_stored, first_scale_expected;
};

struct bcpm_reference_result {
    char *tensor;                  /* name, owned */
    uint64_t elements, rows, columns, group_size, groups;
    uint64_t policy_disagreements; /* elements whose code differs between the policies */
    uint64_t nonfinite_groups;     /* latent groups with NaN or Inf, not compared */
    int64_t first_nonfinite_row, first_nonfinite_column;
    enum bcpm_compute matched;     /* the policy the findings use */
    int looks_quantized_twice;
    int latent_looks_quantized;    /* every scale is off as if the latent side were the export */
    struct bcpm_reference_policy policy[2]; /* [BCPM_COMPUTE_FLOAT32], [BCPM_COMPUTE_HALF] */
};

/*
 * Compare one pseudo-quantized tensor with the recompute from its latent
 * tensor (same shape; latent BF16, F16 or F32; pseudo BF16, F16 or F32).
 * release_pseudo and release_latent (may be NULL) are the maps whose pages
 * are dropped from the resident set as rows are done. On success out->tensor
 * is owned by the caller (bcpm_reference_result_free).
 */
int bcpm_reference_compare(const struct bcpm_tensor *pseudo, const struct bcpm_tensor *latent,
                           const struct bcpm_reference_options *options,
                           const struct bcpm_map *release_pseudo,
                           const struct bcpm_map *release_latent,
                           struct bcpm_reference_result *out, struct bcpm_error *err);

struct bcpm_quant_digest;
struct bcpm_value_stats;

/*
 * bcpm_reference_compare that also scans the pseudo-quantized tensor for the
 * rule engine while its rows are in the CPU cache: scan (may be NULL)
 * receives what bcpm_ternary_scan_ex gives for options->group_size. On
 * success free it with bcpm_ternary_scan_free. digest (may be NULL) receives
 * the pseudo-quantized tensor's bytes in file order, with release_pseudo set.
 */
struct bcpm_ternary_scan;
int bcpm_reference_compare_scan(const struct bcpm_tensor *pseudo,
                                const struct bcpm_tensor *latent,
                                const struct bcpm_reference_options *options,
                                const struct bcpm_map *release_pseudo,
                                const struct bcpm_map *release_latent,
                                const struct bcpm_quant_digest *digest,
                                struct bcpm_ternary_scan *scan,
                                struct bcpm_reference_result *out, struct bcpm_error *err);

void bcpm_reference_result_free(struct bcpm_reference_result *result);

/*
 * Return the start of the reference.boundary message. Under --compute auto it
 * is "the export matches the " when the chosen policy explains every code and
 * scale, and "the export is closest to the " when some remain wrong. An
 * explicit policy gets "".
 */
const char *bcpm_reference_verdict(const struct bcpm_reference_result *result,
                                   enum bcpm_compute requested);

/*
 * Append the findings of one tensor's result: reference.codes,
 * reference.scale, reference.boundary and values.nonfinite (on the latent
 * file). Returns 0, or -1 when memory ran out.
 */
int bcpm_reference_findings(const struct bcpm_reference_result *result,
                            const struct bcpm_reference_options *options,
                            const char *pseudo_file, const char *latent_file,
                            struct bcpm_findings *findings);

/*
 * Compare two whole checkpoints. ternary lists the names of the ternary
 * tensors (from the rule set's roles); each is compared with
 * bcpm_reference_compare. Every other tensor must be byte-identical on both
 * sides (reference.changed), and a tensor on one side only is
 * reference.missing. results, if not NULL, receives an array of one result
 * per compared ternary tensor (*nresults of them; free with
 * bcpm_reference_results_free). Returns 0 when the comparison ran, whatever
 * it found, or a negative status when it could not run (bad group size,
 * unsupported dtype, out of memory).
 */
int bcpm_reference_compare_catalogs(const struct bcpm_catalog *pseudo,
                                    const struct bcpm_catalog *latent,
                                    const char *const *ternary, size_t nternary,
                                    const struct bcpm_reference_options *options,
                                    struct bcpm_findings *findings,
                                    struct bcpm_reference_result **results, size_t *nresults,
                                    struct bcpm_error *err);

void bcpm_reference_results_free(struct bcpm_reference_result *results, size_t count);

/*
 * Check a tensor the conversion must copy unchanged, and take the value
 * statistics of the pseudo-quantized side in the same pass. index receives
 * the first element whose bytes differ (-1 when none), and stats what
 * bcpm_value_stats gives for pseudo. Both tensors must be contiguous, with the
 * same dtype and shape. Pages are dropped from the maps (may be NULL) once
 * compared, and digest (may be NULL) receives pseudo's bytes in file order.
 * Returns 0, or -1 when the tensors do not qualify or memory ran out.
 */
int bcpm_reference_compare_copy(const struct bcpm_tensor *pseudo,
                                const struct bcpm_map *map_pseudo,
                                const struct bcpm_tensor *latent,
                                const struct bcpm_map *map_latent, int threads,
                                const struct bcpm_quant_digest *digest,
                                struct bcpm_value_stats *stats, int64_t *index);

/*
 * The same comparison driven tensor by tensor by a caller that walks the
 * pseudo-quantized checkpoint anyway (the rule engine's value pass), so that
 * each file is read once. Create a run, hand it tensors with
 * bcpm_reference_run_tensor in any order, then bcpm_reference_run_finish
 * compares every tensor not handed over and appends the findings in the
 * order bcpm_reference_compare_catalogs gives them.
 */
struct bcpm_reference_run;

int bcpm_reference_run_new(const struct bcpm_catalog *pseudo, const struct bcpm_catalog *latent,
                           const struct bcpm_reference_options *options,
                           struct bcpm_reference_run **out, struct bcpm_error *err);

/*
 * Compare tensor index of the pseudo-quantized catalog now. A ternary one
 * (ternary 1) fills scan, as bcpm_reference_compare_scan does. Any other
 * fills stats with bcpm_value_stats of the pseudo-quantized tensor, read in
 * the same pass as the byte comparison. digest (may be NULL) receives the
 * pseudo-quantized tensor's bytes in file order, as the rule engine's value
 * pass feeds them (struct bcpm_quant_options). Returns 1 when it compared
 * the tensor and filled scan or stats, or a negative status. Returns 0 and
 * fills nothing when it leaves the tensor for bcpm_reference_run_finish: no
 * latent twin, another shape, a group size that does not fit, a strided view.
 */
int bcpm_reference_run_tensor(struct bcpm_reference_run *run, size_t index, int ternary,
                              const struct bcpm_quant_digest *digest,
                              struct bcpm_ternary_scan *scan, struct bcpm_value_stats *stats,
                              struct bcpm_error *err);

/* Finish as bcpm_reference_compare_catalogs describes; ternary names the ternary tensors. */
int bcpm_reference_run_finish(struct bcpm_reference_run *run, const char *const *ternary,
                              size_t nternary, struct bcpm_findings *findings,
                              struct bcpm_reference_result **results, size_t *nresults,
                              struct bcpm_error *err);

void bcpm_reference_run_free(struct bcpm_reference_run *run);

#endif
