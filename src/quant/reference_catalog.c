/*
 * The reference check over two whole checkpoints, and the findings it
 * reports; see reference.h.
 */
#include "quant/reference.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/rows.h"

/* ---- findings of one ternary tensor ---- */

const char *bcpm_reference_verdict(const struct bcpm_reference_result *r,
                                   enum bcpm_compute requested)
{
    const struct bcpm_reference_policy *p = &r->policy[r->matched];

    if (requested != BCPM_COMPUTE_AUTO)
        return "";
    /* With codes or scales that no policy explains, the chosen one is only the nearer. */
    if (p->mismatches > 0 || p->scale_errors > 0 || r->nonfinite_groups > 0)
        return "the export is closest to the ";
    return "the export matches the ";
}

static const char *policy_name(enum bcpm_compute policy)
{
    return policy == BCPM_COMPUTE_FLOAT32 ? "float32" : "bf16";
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

static int add_codes_finding(const struct bcpm_reference_result *r,
                             const struct bcpm_reference_policy *p, const char *pseudo_file,
                             struct bcpm_findings *findings)
{
    struct bcpm_finding *f;

    if (p->mismatches == 0)
        return 0;
    f = bcpm_findings_add(findings, "reference.codes", BCPM_SEVERITY_ERROR, pseudo_file,
                          r->tensor,
                          "%" PRIu64 " of %" PRIu64 " elements %s a code that neither compute "
                          "policy gives for the latent weights (%" PRIu64 " %s not -s, 0 or +s "
                          "at all); first at row %" PRId64 ", column %" PRId64
                          ": latent %.9g, stored %.9g",
                          p->mismatches, r->elements, plural(p->mismatches, "holds", "hold"),
                          p->stored_other, plural(p->stored_other, "is", "are"),
                          p->first_mismatch_row,
                          p->first_mismatch_column, p->first_mismatch_latent,
                          p->first_mismatch_stored);
    if (!f)
        return -1;
    f->row = p->first_mismatch_row;
    f->column = p->first_mismatch_column;
    f->value = p->first_mismatch_stored;
    return 0;
}

static int add_scale_finding(const struct bcpm_reference_result *r,
                             const struct bcpm_reference_policy *p,
                             const struct bcpm_reference_options *options,
                             const char *pseudo_file, struct bcpm_findings *findings)
{
    struct bcpm_finding *f;

    if (p->scale_errors == 0)
        return 0;
    f = bcpm_findings_add(findings, "reference.scale", BCPM_SEVERITY_ERROR, pseudo_file,
                          r->tensor,
                          "%" PRIu64 " of %" PRIu64 " group scales %s from the recomputed s "
                          "by more than %" PRIu32 " %s (max %" PRIu64 " %s, %s policy); "
                          "first at row %" PRId64 ", group %" PRId64 ": stored %.9g, "
                          "recomputed %.9g%s",
                          p->scale_errors, p->scale_groups,
                          plural(p->scale_errors, "differs", "differ"),
                          options->scale_tolerance_ulps,
                          plural(options->scale_tolerance_ulps, "ulp", "ulps"), p->scale_ulps_max,
                          plural(p->scale_ulps_max, "ulp", "ulps"), policy_name(r->matched),
                          p->first_scale_row,
                          p->first_scale_group, p->first_scale_stored, p->first_scale_expected,
                          r->looks_quantized_twice
                              ? "; every scale is smaller by its group's fraction of nonzero "
                                "codes, so the tensor looks quantized twice"
                          : r->latent_looks_quantized
                              ? "; every recomputed scale is the stored one times its group's "
                                "fraction of nonzero codes, so the latent tensor looks "
                                "pseudo-quantized already (was an export given as --reference?)"
                              : "");
    if (!f)
        return -1;
    f->row = p->first_scale_row;
    f->value = p->first_scale_stored;
    return 0;
}

static int add_boundary_finding(const struct bcpm_reference_result *r,
                                const struct bcpm_reference_policy *p,
                                const struct bcpm_reference_options *options,
                                const char *pseudo_file, struct bcpm_findings *findings)
{
    const char *policy = policy_name(r->matched);
    const char *verdict = bcpm_reference_verdict(r, options->policy);

    if (p->boundary == 0 && p->scale_boundary == 0 && r->policy_disagreements == 0 &&
        options->policy != BCPM_COMPUTE_AUTO)
        return 0;
    return bcpm_findings_add(findings, "reference.boundary", BCPM_SEVERITY_INFO, pseudo_file,
                             r->tensor,
                             "%s%s policy%s %" PRIu64 " %s and %" PRIu64 " %s differ from "
                             "it only at rounding boundaries (a quotient at a tie, or a group sum "
                             "one ulp away); the float32 and bf16 policies disagree on %" PRIu64
                             " %s",
                             verdict, policy, *verdict ? ";" : ":", p->boundary,
                             plural(p->boundary, "code", "codes"), p->scale_boundary,
                             plural(p->scale_boundary, "scale", "scales"),
                             r->policy_disagreements,
                             plural(r->policy_disagreements, "element", "elements")) != NULL
               ? 0
               : -1;
}

int bcpm_reference_findings(const struct bcpm_reference_result *r,
                            const struct bcpm_reference_options *options,
                            const char *pseudo_file, const char *latent_file,
                            struct bcpm_findings *findings)
{
    const struct bcpm_reference_policy *p = &r->policy[r->matched];

    if (r->nonfinite_groups > 0) {
        struct bcpm_finding *f = bcpm_findings_add(
            findings, "values.nonfinite", BCPM_SEVERITY_ERROR, latent_file, r->tensor,
            "the latent weights hold NaN or Inf in %" PRIu64 " %s, first at row %" PRId64
            ", column %" PRId64 "; %s not compared",
            r->nonfinite_groups, plural(r->nonfinite_groups, "group", "groups"),
            r->first_nonfinite_row, r->first_nonfinite_column,
            plural(r->nonfinite_groups, "that group was", "those groups were"));
        if (!f)
            return -1;
        f->row = r->first_nonfinite_row;
        f->column = r->first_nonfinite_column;
    }
    if (add_codes_finding(r, p, pseudo_file, findings) != 0 ||
        add_scale_finding(r, p, options, pseudo_file, findings) != 0 ||
        add_boundary_finding(r, p, options, pseudo_file, findings) != 0)
        return -1;
    return 0;
}

/* ---- pairing the two catalogs ---- */

/* "[4096, 4096]" into buf. */
static const char *format_shape(const struct bcpm_tensor *t, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    used += (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < t->ndim && used < size; d++)
        used += (size_t)snprintf(buf + used, size - used, "%s%" PRId64, d ? ", " : "",
                                 t->shape[d]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
    return buf;
}

/* A ternary tensor whose shape differs between the sides cannot be recomputed. */
static int add_shape_finding(const struct bcpm_catalog *pseudo, const struct bcpm_tensor *p,
                             const struct bcpm_tensor *l, struct bcpm_findings *findings)
{
    char a[256], b[256];

    return bcpm_findings_add(findings, "reference.codes", BCPM_SEVERITY_ERROR,
                             pseudo->files[p->file].path, p->name,
                             "the pseudo-quantized tensor has shape %s but the latent one %s, "
                             "so its codes cannot be recomputed",
                             format_shape(p, a, sizeof(a)), format_shape(l, b, sizeof(b)))
               ? 0
               : -1;
}

static int same_shape(const struct bcpm_tensor *p, const struct bcpm_tensor *l)
{
    return p->ndim == l->ndim &&
           memcmp(p->shape, l->shape, (size_t)p->ndim * sizeof(int64_t)) == 0;
}

/* Whether a tensor the conversion must copy has the latent tensor's dtype and shape. */
static int same_layout(const struct bcpm_tensor *p, const struct bcpm_tensor *l)
{
    return p->dtype == l->dtype && same_shape(p, l);
}

static const char *file_of(const struct bcpm_catalog *catalog, const struct bcpm_tensor *t)
{
    return t->file < catalog->nfiles ? catalog->files[t->file].path : catalog->path;
}

static int in_list(const char *name, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(list[i], name) == 0)
            return 1;
    }
    return 0;
}

/* 1 when group_size (-1: one group per row) divides the columns of t. */
static int group_size_fits(const struct bcpm_tensor *t, int64_t group_size, uint64_t *columns)
{
    uint64_t rows, group;

    bcpm_tensor_matrix_shape(t, &rows, columns);
    return bcpm_fakequant_group_size(t, group_size, *columns, &group, NULL) == 0;
}

/*
 * Report a ternary tensor whose columns the group size does not divide. Its
 * codes cannot be recomputed, which is a finding about this tensor and not a
 * failed comparison. Returns 1 after adding the finding, -1 when memory ran
 * out, and 0 when the group size fits.
 */
static int group_size_misfit(const struct bcpm_catalog *pseudo, const struct bcpm_tensor *p,
                             int64_t group_size, struct bcpm_findings *findings)
{
    uint64_t columns;
    struct bcpm_finding *f;

    if (group_size_fits(p, group_size, &columns))
        return 0;
    f = bcpm_findings_add(findings, "reference.codes", BCPM_SEVERITY_ERROR, file_of(pseudo, p),
                          p->name,
                          "the group size %" PRId64 " does not divide the %" PRIu64 " columns "
                          "of the tensor, so its codes were not recomputed; give --group-size a "
                          "divisor of %" PRIu64 " or -1 for one group per row",
                          group_size, columns, columns);
    return f ? 1 : -1;
}

/* bcpm_quant_job_threads never returns more workers than this. */
enum { MAX_WORKERS = 256 };

/* Two contiguous tensors compared in steps of about 1 MiB, the steps split among threads. */
struct changed_job {
    const struct bcpm_tensor *a, *b;
    const struct bcpm_map *map_a, *map_b;
    uint64_t step;
    int64_t *first; /* per worker: the first differing element of its steps, or -1 */
};

/* The first element of a that differs from b, searched from the element at byte off on. */
static int64_t first_differing_element(const struct bcpm_tensor *a, const struct bcpm_tensor *b,
                                       uint64_t off)
{
    size_t size = bcpm_dtype_size(a->dtype);
    uint64_t i = off / size;

    while (memcmp(a->data + i * size, b->data + i * size, size) == 0)
        i++;
    return (int64_t)i;
}

static void changed_steps(void *context, int worker, uint64_t begin, uint64_t end)
{
    struct changed_job *job = context;
    const struct bcpm_tensor *a = job->a, *b = job->b;

    job->first[worker] = -1;
    for (uint64_t s = begin; s < end; s++) {
        uint64_t off = s * job->step;
        uint64_t len = a->nbytes - off < job->step ? a->nbytes - off : job->step;
        int same = memcmp(a->data + off, b->data + off, len) == 0;

        bcpm_map_release(job->map_a, a->byte_offset + off, len);
        bcpm_map_release(job->map_b, b->byte_offset + off, len);
        if (same)
            continue;
        job->first[worker] = first_differing_element(a, b, off);
        return;
    }
}

/*
 * Linear index of the first element whose bytes differ, or -1; shapes must
 * match. Contiguous tensors are compared on up to threads threads (0: the
 * default count). Pages are dropped from the resident set as the comparison
 * passes them (maps may be NULL).
 */
static int64_t first_changed(const struct bcpm_tensor *a, const struct bcpm_map *map_a,
                             const struct bcpm_tensor *b, const struct bcpm_map *map_b,
                             int threads)
{
    size_t size = bcpm_dtype_size(a->dtype);

    if (a->contiguous && b->contiguous) {
        int64_t first[MAX_WORKERS];
        struct changed_job job = {a, b, map_a, map_b, (1u << 20) / size * size, first};
        uint64_t steps = (a->nbytes + job.step - 1) / job.step;
        int workers = bcpm_quant_job_threads(threads, a->nbytes, steps);

        if (workers > MAX_WORKERS)
            workers = MAX_WORKERS;
        bcpm_quant_parallel(workers, steps, changed_steps, &job);
        /* Workers cover the steps in order: the first with a difference has the first one. */
        for (int w = 0; w < workers && (uint64_t)w < steps; w++) {
            if (first[w] >= 0)
                return first[w];
        }
        return -1;
    }
    for (uint64_t i = 0; i < a->numel; i++) {
        if (memcmp(a->data + bcpm_tensor_element_offset(a, i),
                   b->data + bcpm_tensor_element_offset(b, i), size) != 0)
            return (int64_t)i;
    }
    return -1;
}


/*
 * The byte comparison of two contiguous tensors with the value statistics of
 * the first taken on the way: the steps are the statistics blocks, each
 * summed right after it was compared, while it is in the CPU cache.
 */
struct copied_stats_job {
    const struct bcpm_tensor *a, *b;
    const struct bcpm_map *map_a, *map_b; /* NULL in an ordered run, which drops the pages */
    struct bcpm_value_stats *blocks;
    int64_t *first; /* per worker: the first differing element of its blocks, or -1 */
};

static void copied_stats_blocks(void *context, int worker, uint64_t begin, uint64_t end)
{
    struct copied_stats_job *job = context;
    const struct bcpm_tensor *a = job->a, *b = job->b;
    size_t size = bcpm_dtype_size(a->dtype);
    uint64_t step = bcpm_value_stats_block_elements() * size;
    uint64_t stride = bcpm_quant_release_stride(step) * step;
    uint64_t released = begin * step;

    for (uint64_t k = begin; k < end; k++) {
        uint64_t off = k * step;
        uint64_t len = a->nbytes - off < step ? a->nbytes - off : step;

        /* Blocks come in increasing order per worker: its first difference is its earliest. */
        if (job->first[worker] < 0 && memcmp(a->data + off, b->data + off, len) != 0)
            job->first[worker] = first_differing_element(a, b, off);
        bcpm_value_stats_block(a, k, &job->blocks[k]);

        if (off + len - released >= stride || k + 1 == end) {
            bcpm_map_release(job->map_a, a->byte_offset + released, off + len - released);
            bcpm_map_release(job->map_b, b->byte_offset + released, off + len - released);
            released = off + len;
        }
    }
}

int bcpm_reference_compare_copy(const struct bcpm_tensor *a, const struct bcpm_map *map_a,
                                const struct bcpm_tensor *b, const struct bcpm_map *map_b,
                                int threads, const struct bcpm_quant_digest *digest,
                                struct bcpm_value_stats *stats, int64_t *index)
{
    int64_t first[MAX_WORKERS];
    uint64_t nblocks = bcpm_value_stats_block_count(a);
    uint64_t step = bcpm_value_stats_block_elements() * bcpm_dtype_size(a->dtype);
    struct copied_stats_job job = {a, b, map_a, map_b, NULL, first};
    struct bcpm_quant_order order;
    int workers;

    *index = -1;
    if (!same_layout(a, b) || !a->contiguous || !b->contiguous ||
        (a->numel > 0 && (!a->data || !b->data)))
        return -1;
    job.blocks = calloc(nblocks ? nblocks : 1, sizeof(*job.blocks));
    if (!job.blocks)
        return -1;
    workers = bcpm_quant_job_threads(threads, a->nbytes, nblocks);
    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    for (int w = 0; w < workers; w++)
        first[w] = -1;

    if (bcpm_quant_order_init(&order, digest, map_a, a, step)) {
        /* a's bytes go to the digest in file order; the ordered run drops the pages. */
        order.also_map = map_b;
        order.also_base = b->byte_offset;
        order.also_item_bytes = step;
        job.map_a = job.map_b = NULL;
        bcpm_quant_parallel_ordered(workers, nblocks, &order, copied_stats_blocks, &job);
    } else {
        bcpm_quant_parallel(workers, nblocks, copied_stats_blocks, &job);
    }
    bcpm_value_stats_merge(stats, job.blocks, nblocks);
    free(job.blocks);

    /* The earliest difference of all workers (an ordered run interleaves their blocks). */
    for (int w = 0; w < workers && (uint64_t)w < nblocks; w++) {
        if (first[w] >= 0 && (*index < 0 || first[w] < *index))
            *index = first[w];
    }
    return 0;
}

/* Give f the file offset of element index of t, where it has one. */
static void set_offset(struct bcpm_finding *f, const struct bcpm_catalog *catalog,
                       const struct bcpm_tensor *t, uint64_t index)
{
    if (f)
        f->has_offset = bcpm_quant_file_offset(catalog, t, index, &f->offset);
}

/* Offsets for the findings from first on that name a row and column of p (or of l). */
static void set_offsets(struct bcpm_findings *findings, size_t first,
                        const struct bcpm_catalog *pseudo, const struct bcpm_tensor *p,
                        const struct bcpm_catalog *latent, const struct bcpm_tensor *l)
{
    uint64_t rows, columns;

    bcpm_tensor_matrix_shape(p, &rows, &columns);
    for (size_t i = first; i < findings->count; i++) {
        struct bcpm_finding *f = &findings->items[i];
        uint64_t index;

        if (f->row < 0 || f->column < 0 || (uint64_t)f->column >= columns)
            continue;
        index = (uint64_t)f->row * columns + (uint64_t)f->column;
        if (strcmp(f->rule, "values.nonfinite") == 0)
            set_offset(f, latent, l, index);
        else
            set_offset(f, pseudo, p, index);
    }
}

/* The reference.changed finding of a copied tensor whose element index differs. */
static int add_changed_finding(const struct bcpm_catalog *pseudo, const struct bcpm_tensor *p,
                               const struct bcpm_tensor *l, int64_t index,
                               struct bcpm_findings *findings)
{
    uint64_t rows, columns;
    struct bcpm_finding *f;

    f = bcpm_findings_add(findings, "reference.changed", BCPM_SEVERITY_ERROR, file_of(pseudo, p),
                          p->name,
                          "the tensor is not ternary, so the conversion must copy it unchanged, "
                          "but element %" PRId64 " differs from the latent side: %.9g against "
                          "%.9g",
                          index, bcpm_tensor_load_f64(p, (uint64_t)index),
                          bcpm_tensor_load_f64(l, (uint64_t)index));
    if (!f)
        return -1;
    bcpm_tensor_matrix_shape(p, &rows, &columns);
    f->row = columns ? index / (int64_t)columns : -1;
    f->column = columns ? index % (int64_t)columns : -1;
    f->value = bcpm_tensor_load_f64(p, (uint64_t)index);
    set_offset(f, pseudo, p, (uint64_t)index);
    return 0;
}

/* A tensor that the conversion must copy unchanged: dtype, shape and bytes. */
static int compare_copied(const struct bcpm_catalog *pseudo, const struct bcpm_tensor *p,
                          const struct bcpm_catalog *latent, const struct bcpm_tensor *l,
                          int threads, struct bcpm_findings *findings)
{
    int64_t index;

    if (!same_layout(p, l))
        return bcpm_findings_add(findings, "reference.changed", BCPM_SEVERITY_ERROR,
                                 file_of(pseudo, p), p->name,
                                 "the tensor is not ternary, so the conversion must copy it "
                                 "unchanged, but its dtype or shape differs from the latent "
                                 "side (%s, %d dimensions against %s, %d dimensions)",
                                 bcpm_dtype_name(p->dtype), p->ndim, bcpm_dtype_name(l->dtype),
                                 l->ndim)
                   ? 0
                   : -1;
    if (p->numel > 0 && (!p->data || !l->data))
        return 0;

    index = first_changed(p, bcpm_quant_tensor_map(pseudo, p), l, bcpm_quant_tensor_map(latent, l),
                          threads);
    bcpm_map_release(bcpm_quant_tensor_map(pseudo, p), p->byte_offset, p->nbytes);
    bcpm_map_release(bcpm_quant_tensor_map(latent, l), l->byte_offset, l->nbytes);
    if (index < 0)
        return 0;
    return add_changed_finding(pseudo, p, l, index, findings);
}

/* The reference.missing finding of a pseudo-quantized tensor that the latent side lacks. */
static int add_missing(struct bcpm_findings *findings, const struct bcpm_catalog *pseudo,
                       const struct bcpm_tensor *p, const char *latent_path)
{
    return bcpm_findings_add(findings, "reference.missing", BCPM_SEVERITY_ERROR,
                             file_of(pseudo, p), p->name,
                             "the tensor is in the pseudo-quantized checkpoint but missing from %s",
                             latent_path)
               ? 0
               : -1;
}

void bcpm_reference_results_free(struct bcpm_reference_result *results, size_t count)
{
    if (!results)
        return;
    for (size_t i = 0; i < count; i++)
        bcpm_reference_result_free(&results[i]);
    free(results);
}

/* ---- a run driven tensor by tensor ---- */

enum tensor_state { PENDING, DONE_TERNARY, DONE_COPIED };

struct tensor_done {
    enum tensor_state state;
    struct bcpm_reference_result result; /* DONE_TERNARY */
    int64_t changed;                     /* DONE_COPIED: first differing element, or -1 */
};

struct bcpm_reference_run {
    const struct bcpm_catalog *pseudo, *latent;
    struct bcpm_reference_options options;
    struct tensor_done *done; /* one per pseudo-quantized tensor */
};

int bcpm_reference_run_new(const struct bcpm_catalog *pseudo, const struct bcpm_catalog *latent,
                           const struct bcpm_reference_options *options,
                           struct bcpm_reference_run **out, struct bcpm_error *err)
{
    struct bcpm_reference_run *run = calloc(1, sizeof(*run));

    *out = NULL;
    if (run)
        run->done = calloc(pseudo->ntensors ? pseudo->ntensors : 1, sizeof(*run->done));
    if (!run || !run->done) {
        free(run);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, pseudo->path, NULL, "out of memory");
    }
    run->pseudo = pseudo;
    run->latent = latent;
    run->options = *options;
    *out = run;
    return 0;
}

void bcpm_reference_run_free(struct bcpm_reference_run *run)
{
    if (!run)
        return;
    for (size_t i = 0; i < run->pseudo->ntensors; i++)
        bcpm_reference_result_free(&run->done[i].result);
    free(run->done);
    free(run);
}

int bcpm_reference_run_tensor(struct bcpm_reference_run *run, size_t index, int ternary,
                              const struct bcpm_quant_digest *digest,
                              struct bcpm_ternary_scan *scan, struct bcpm_value_stats *stats,
                              struct bcpm_error *err)
{
    const struct bcpm_catalog *pseudo = run->pseudo, *latent = run->latent;
    const struct bcpm_tensor *p, *l;
    struct tensor_done *d;
    int rc;

    if (index >= pseudo->ntensors || run->done[index].state != PENDING)
        return 0;
    p = &pseudo->tensors[index];
    l = bcpm_catalog_find(latent, p->name);
    d = &run->done[index];
    if (!l || !same_shape(p, l))
        return 0;

    if (ternary) {
        uint64_t columns;

        if (!group_size_fits(p, run->options.group_size, &columns))
            return 0;
        rc = bcpm_reference_compare_scan(p, l, &run->options, bcpm_quant_tensor_map(pseudo, p),
                                         bcpm_quant_tensor_map(latent, l), digest, scan,
                                         &d->result, err);
        if (rc != 0) {
            bcpm_error_file(err, file_of(pseudo, p));
            return rc;
        }
        d->state = DONE_TERNARY;
        return 1;
    }

    /* The fused pass reads both tensors as contiguous bytes; the rest goes the plain way. */
    if (!same_layout(p, l) || !p->contiguous || !l->contiguous || p->numel == 0 || !p->data ||
        !l->data)
        return 0;
    if (bcpm_reference_compare_copy(p, bcpm_quant_tensor_map(pseudo, p), l,
                                    bcpm_quant_tensor_map(latent, l), run->options.threads,
                                    digest, stats, &d->changed) != 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, file_of(pseudo, p), p->name, "out of memory");
    d->state = DONE_COPIED;
    return 1;
}

/* The comparison of one pseudo-quantized tensor at the end of a run: its findings, its result. */
static int finish_tensor(struct bcpm_reference_run *run, size_t i, const char *const *ternary,
                         size_t nternary, struct bcpm_findings *findings,
                         struct bcpm_reference_result *list, size_t *count,
                         struct bcpm_error *err)
{
    const struct bcpm_catalog *pseudo = run->pseudo, *latent = run->latent;
    const struct bcpm_reference_options *options = &run->options;
    const struct bcpm_tensor *p = &pseudo->tensors[i];
    const struct bcpm_tensor *l = bcpm_catalog_find(latent, p->name);
    struct tensor_done *d = &run->done[i];
    size_t first;
    int rc;

    if (!l)
        return add_missing(findings, pseudo, p, latent->path);
    if (d->state == DONE_COPIED)
        return d->changed >= 0 ? add_changed_finding(pseudo, p, l, d->changed, findings) : 0;
    if (d->state == PENDING && !in_list(p->name, ternary, nternary))
        return compare_copied(pseudo, p, latent, l, options->threads, findings);
    if (d->state == PENDING) {
        if (!same_shape(p, l))
            return add_shape_finding(pseudo, p, l, findings);
        rc = group_size_misfit(pseudo, p, options->group_size, findings);
        if (rc != 0)
            return rc < 0 ? -1 : 0;
        rc = bcpm_reference_compare(p, l, options, bcpm_quant_tensor_map(pseudo, p),
                                    bcpm_quant_tensor_map(latent, l), &d->result, err);
        if (rc != 0) {
            bcpm_error_file(err, file_of(pseudo, p));
            return rc;
        }
        d->state = DONE_TERNARY;
    }

    first = findings->count;
    if (bcpm_reference_findings(&d->result, options, file_of(pseudo, p), file_of(latent, l),
                                findings) != 0)
        return -1;
    set_offsets(findings, first, pseudo, p, latent, l);
    /* The result moves to the caller's list, or is freed with the run. */
    if (list && *count < nternary) {
        list[(*count)++] = d->result;
        memset(&d->result, 0, sizeof(d->result));
    }
    return 0;
}

int bcpm_reference_run_finish(struct bcpm_reference_run *run, const char *const *ternary,
                              size_t nternary, struct bcpm_findings *findings,
                              struct bcpm_reference_result **results, size_t *nresults,
                              struct bcpm_error *err)
{
    const struct bcpm_catalog *pseudo = run->pseudo, *latent = run->latent;
    struct bcpm_reference_result *list = NULL;
    size_t count = 0;
    int rc = 0;

    if (results) {
        list = calloc(nternary ? nternary : 1, sizeof(*list));
        if (!list)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, pseudo->path, NULL, "out of memory");
    }

    /* Every tensor of the pseudo-quantized side, in catalog order. */
    for (size_t i = 0; i < pseudo->ntensors && rc == 0; i++) {
        rc = finish_tensor(run, i, ternary, nternary, findings, list, &count, err);
        if (rc == -1)
            rc = bcpm_error_set(err, BCPM_ERR_NOMEM, pseudo->path, NULL, "out of memory");
    }

    /*
     * Tensors only the latent side has. The finding goes on the checked
     * checkpoint because that one lacks them, so its report (a JUnit suite, a
     * SARIF location) must show it.
     */
    for (size_t i = 0; i < latent->ntensors && rc == 0; i++) {
        const struct bcpm_tensor *l = &latent->tensors[i];
        if (!bcpm_catalog_find(pseudo, l->name) &&
            !bcpm_findings_add(findings, "reference.missing", BCPM_SEVERITY_ERROR, pseudo->path,
                               l->name,
                               "the tensor is in the latent checkpoint %s but missing from "
                               "this pseudo-quantized one",
                               file_of(latent, l)))
            rc = bcpm_error_set(err, BCPM_ERR_NOMEM, latent->path, NULL, "out of memory");
    }

    if (rc != 0) {
        bcpm_reference_results_free(list, count);
        return rc;
    }
    if (results) {
        *results = list;
        *nresults = count;
    }
    return 0;
}

int bcpm_reference_compare_catalogs(const struct bcpm_catalog *pseudo,
                                    const struct bcpm_catalog *latent,
                                    const char *const *ternary, size_t nternary,
                                    const struct bcpm_reference_options *options,
                                    struct bcpm_findings *findings,
                                    struct bcpm_reference_result **results, size_t *nresults,
                                    struct bcpm_error *err)
{
    struct bcpm_reference_run *run;
    int rc = bcpm_reference_run_new(pseudo, latent, options, &run, err);

    if (rc != 0)
        return rc;
    rc = bcpm_reference_run_finish(run, ternary, nternary, findings, results, nresults, err);
    bcpm_reference_run_free(run);
    return rc;
}
