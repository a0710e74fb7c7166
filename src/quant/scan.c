/*
 * The ternary value-set scan and plain value statistics; see quant.h.
 *
 * Magnitudes are compared as bit patterns of the stored dtype with the sign
 * bit cleared, so -0.0 counts as 0 and two values are "the same s" only when
 * their stored bits are. BF16 groups first try the SIMD run in simd.h, which
 * accepts a group holding only 0 and one magnitude; any other group goes
 * through the general scalar loop, which tracks up to
 * BCPM_TERNARY_MAX_MAGNITUDES magnitudes by first appearance.
 */
#include "quant/quant.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/rows.h"
#include "quant/simd.h"

/* ---- element bits ---- */

struct dtype_bits {
    size_t size;
    uint64_t sign;      /* the sign bit */
    uint64_t exponent;  /* all exponent bits: set means Inf or NaN */
};

static int dtype_bits_of(enum bcpm_dtype dtype, struct dtype_bits *out)
{
    switch (dtype) {
    case BCPM_DTYPE_BF16: *out = (struct dtype_bits){2, 0x8000u, 0x7f80u}; return 0;
    case BCPM_DTYPE_F16: *out = (struct dtype_bits){2, 0x8000u, 0x7c00u}; return 0;
    case BCPM_DTYPE_F32: *out = (struct dtype_bits){4, 0x80000000u, 0x7f800000u}; return 0;
    case BCPM_DTYPE_F64:
        *out = (struct dtype_bits){8, 0x8000000000000000ull, 0x7ff0000000000000ull};
        return 0;
    default: return -1;
    }
}

static uint64_t load_bits(const uint8_t *p, size_t size)
{
    uint16_t h;
    uint32_t w;
    uint64_t d;

    switch (size) {
    case 2: memcpy(&h, p, 2); return h;
    case 4: memcpy(&w, p, 4); return w;
    default: memcpy(&d, p, 8); return d;
    }
}

static double bits_to_double(enum bcpm_dtype dtype, uint64_t bits)
{
    uint8_t raw[8];

    memcpy(raw, &bits, sizeof(raw)); /* little-endian hosts only, as dtype.h assumes */
    return bcpm_dtype_load_f64(dtype, raw, 0);
}

/* ---- one group ---- */

struct magnitude_counts {
    uint64_t key;
    uint32_t negative, positive;
};

/* Index of the most frequent tracked magnitude (the first one on ties). */
static unsigned main_magnitude(const struct magnitude_counts *m, unsigned count)
{
    unsigned best = 0;

    for (unsigned i = 1; i < count; i++) {
        if (m[i].negative + m[i].positive > m[best].negative + m[best].positive)
            best = i;
    }
    return best;
}

/* Count the NaN and Inf elements of x[from, n) into g. */
static void count_nonfinite(const uint8_t *x, uint64_t from, uint64_t n,
                            const struct dtype_bits *bits, struct bcpm_ternary_group *g,
                            int64_t *first_nonfinite)
{
    uint32_t count = 0;

    if (bits->exponent == 0x7f80u) {
        count = (uint32_t)bcpm_quant_kernels()->count_nonfinite_bf16(
            (const uint16_t *)(const void *)(x + 2 * from), n - from);
    } else if (bits->size == 2) {
        uint16_t exponent = (uint16_t)bits->exponent;
        for (uint64_t i = from; i < n; i++) {
            uint16_t h;
            memcpy(&h, x + 2 * i, 2);
            count += (h & exponent) == exponent;
        }
    } else {
        for (uint64_t i = from; i < n; i++)
            count += (load_bits(x + i * bits->size, bits->size) & bits->exponent) ==
                     bits->exponent;
    }
    if (count == 0)
        return;

    g->nonfinite += count;
    for (uint64_t i = from; i < n && *first_nonfinite < 0; i++) {
        if ((load_bits(x + i * bits->size, bits->size) & bits->exponent) == bits->exponent)
            *first_nonfinite = (int64_t)i;
    }
}

/*
 * The general loop: any dtype, any mix of values. Once a group shows more
 * than BCPM_TERNARY_MAX_MAGNITUDES magnitudes, its codes, magnitudes and
 * last columns cover only the elements up to that point.
 */
static void scan_group_general(const uint8_t *x, uint64_t n, uint64_t column0,
                               enum bcpm_dtype dtype, const struct dtype_bits *bits,
                               struct bcpm_ternary_group *g)
{
    struct magnitude_counts m[BCPM_TERNARY_MAX_MAGNITUDES];
    unsigned tracked = 0, main;
    int64_t first_nonfinite = -1, first_untracked = -1;
    uint32_t zeros = 0;

    memset(g, 0, sizeof(*g));
    for (uint64_t i = 0; i < n; i++) {
        uint64_t raw = load_bits(x + i * bits->size, bits->size);
        uint64_t key = raw & ~bits->sign;
        unsigned j;

        if (key == 0) {
            zeros++;
            continue;
        }
        if ((key & bits->exponent) == bits->exponent) {
            if (first_nonfinite < 0)
                first_nonfinite = (int64_t)i;
            g->nonfinite++;
            continue;
        }
        for (j = 0; j < tracked && m[j].key != key; j++)
            ;
        if (j == tracked) {
            if (tracked == BCPM_TERNARY_MAX_MAGNITUDES) {
                /*
                 * The group is far from ternary (Gaussian weights reach this
                 * within a few dozen elements). Counting further would cost a
                 * search per element for nothing a report uses, so the rest
                 * of the group only counts NaN and Inf.
                 */
                first_untracked = (int64_t)i;
                count_nonfinite(x, i + 1, n, bits, g, &first_nonfinite);
                break;
            }
            m[j] = (struct magnitude_counts){key, 0, 0};
            g->magnitude[j] = (float)bits_to_double(dtype, key);
            g->first_column[j] = (uint32_t)(column0 + i);
            tracked++;
        }
        g->last_column[j] = (uint32_t)(column0 + i);
        if (raw & bits->sign)
            m[j].negative++;
        else
            m[j].positive++;
    }

    g->magnitudes = tracked + (first_untracked >= 0);
    g->first_bad_column = first_nonfinite >= 0 ? (int64_t)column0 + first_nonfinite : -1;
    g->codes[1] = zeros;
    if (tracked == 0)
        return;

    main = main_magnitude(m, tracked);
    g->scale = g->magnitude[main];
    g->codes[0] = m[main].negative;
    g->codes[2] = m[main].positive;

    /* The first element off the main magnitude: the earliest first column of the others. */
    for (unsigned j = 0; j < tracked; j++) {
        int64_t c = g->first_column[j];
        if (j != main && (g->first_bad_column < 0 || c < g->first_bad_column))
            g->first_bad_column = c;
    }
    if (first_untracked >= 0) {
        int64_t c = (int64_t)column0 + first_untracked;
        if (g->first_bad_column < 0 || c < g->first_bad_column)
            g->first_bad_column = c;
    }
}

/*
 * BF16 fast path: a group holding only zeros and one finite magnitude, the
 * case of every group of a correct pseudo-quantized checkpoint. Returns 0 when
 * it filled g, -1 when the general loop must run.
 */
static int scan_group_bf16(const uint16_t *x, uint64_t n, uint64_t column0,
                           const struct bcpm_quant_kernels *k, struct bcpm_ternary_group *g)
{
    uint64_t first = 0, last, zeros, negatives = 0;
    uint16_t magnitude;

    while (first < n && (x[first] & 0x7fffu) == 0)
        first++;
    memset(g, 0, sizeof(*g));
    g->first_bad_column = -1;
    if (first == n) {
        g->codes[1] = (uint32_t)n;
        return 0;
    }
    magnitude = (uint16_t)(x[first] & 0x7fffu);
    if ((magnitude & 0x7f80u) == 0x7f80u)
        return -1;

    zeros = first;
    if (k->ternary_run_bf16(x + first, n - first, magnitude, &zeros, &negatives) != n - first)
        return -1;

    last = n - 1;
    while ((x[last] & 0x7fffu) == 0)
        last--;
    g->magnitudes = 1;
    g->magnitude[0] = bcpm_bf16_to_f32(magnitude);
    g->scale = g->magnitude[0];
    g->first_column[0] = (uint32_t)(column0 + first);
    g->last_column[0] = (uint32_t)(column0 + last);
    g->codes[0] = (uint32_t)negatives;
    g->codes[1] = (uint32_t)zeros;
    g->codes[2] = (uint32_t)(n - zeros - negatives);
    return 0;
}

void bcpm_ternary_group_bf16(const uint16_t *x, uint64_t n, uint64_t column0, uint16_t magnitude,
                             uint64_t negatives, uint64_t zeros, struct bcpm_ternary_group *g)
{
    uint64_t first = 0, last = n;

    memset(g, 0, sizeof(*g));
    g->first_bad_column = -1;
    if (magnitude == 0) {
        g->codes[1] = (uint32_t)n;
        return;
    }
    while (first < n && (x[first] & 0x7fffu) == 0)
        first++;
    while (last > first && (x[last - 1] & 0x7fffu) == 0)
        last--;
    g->magnitudes = 1;
    g->magnitude[0] = bcpm_bf16_to_f32(magnitude);
    g->scale = g->magnitude[0];
    g->first_column[0] = (uint32_t)(column0 + first);
    g->last_column[0] = (uint32_t)(column0 + last - 1);
    g->codes[0] = (uint32_t)negatives;
    g->codes[1] = (uint32_t)zeros;
    g->codes[2] = (uint32_t)(n - zeros - negatives);
}

void bcpm_ternary_scan_group(enum bcpm_dtype dtype, const uint8_t *x, uint64_t n,
                             uint64_t column0, struct bcpm_ternary_group *g)
{
    struct dtype_bits bits;

    if (dtype_bits_of(dtype, &bits) != 0) {
        memset(g, 0, sizeof(*g));
        g->first_bad_column = -1;
        return;
    }
    if (dtype != BCPM_DTYPE_BF16 ||
        scan_group_bf16((const uint16_t *)(const void *)x, n, column0, bcpm_quant_kernels(), g) != 0)
        scan_group_general(x, n, column0, dtype, &bits, g);
}

/* ---- the scan over rows ---- */

struct scan_totals {
    uint64_t groups_ternary, codes[3], nonfinite;
    int64_t first_bad_row, first_bad_column;
    double first_bad_value, first_bad_scale;
    int failed; /* out of memory for the row scratch */
};

struct scan_job {
    const struct bcpm_tensor *tensor;
    const struct bcpm_map *release;
    struct dtype_bits bits;
    uint64_t columns, group_size, groups_per_row;
    struct bcpm_ternary_group *groups; /* NULL in summary mode */
    struct scan_totals *totals;        /* one per worker */
    const struct bcpm_quant_kernels *kernels;
};

/*
 * Add group g of row to the totals. Returns 1 when g holds the first element
 * so far that is not -s, 0 or +s; the caller then fills first_bad_value.
 */
static int add_group(struct scan_totals *t, const struct bcpm_ternary_group *g, uint64_t row)
{
    t->nonfinite += g->nonfinite;
    if (g->magnitudes <= 1 && g->nonfinite == 0) {
        t->groups_ternary++;
        for (int c = 0; c < 3; c++)
            t->codes[c] += g->codes[c];
    }
    if (g->first_bad_column < 0 || t->first_bad_row >= 0)
        return 0;
    t->first_bad_row = (int64_t)row;
    t->first_bad_column = g->first_bad_column;
    t->first_bad_scale = g->scale;
    return 1;
}

/* Add the totals of t to out; the earliest first bad element wins. */
static void merge_totals(struct bcpm_ternary_scan *out, const struct scan_totals *t)
{
    out->groups_ternary += t->groups_ternary;
    out->nonfinite += t->nonfinite;
    for (int c = 0; c < 3; c++)
        out->codes[c] += t->codes[c];
    if (t->first_bad_row >= 0 &&
        (out->first_bad_row < 0 || t->first_bad_row < out->first_bad_row)) {
        out->first_bad_row = t->first_bad_row;
        out->first_bad_column = t->first_bad_column;
        out->first_bad_value = t->first_bad_value;
        out->first_bad_scale = t->first_bad_scale;
    }
}

static void scan_rows(void *context, int worker, uint64_t begin, uint64_t end)
{
    struct scan_job *job = context;
    struct scan_totals *t = &job->totals[worker];
    const struct bcpm_tensor *tensor = job->tensor;
    uint64_t stride = bcpm_quant_release_stride(job->columns * job->bits.size);
    uint64_t released = begin;
    uint8_t *scratch = NULL;

    /* bcpm_quant_row copies rows that are strided or not aligned to their element size. */
    if (!tensor->contiguous || (uintptr_t)tensor->data % job->bits.size != 0) {
        scratch = malloc(job->columns * job->bits.size);
        if (!scratch) {
            t->failed = 1;
            return;
        }
    }

    for (uint64_t r = begin; r < end; r++) {
        const uint8_t *row = bcpm_quant_row(tensor, r, job->columns, scratch);

        for (uint64_t gi = 0; gi < job->groups_per_row; gi++) {
            struct bcpm_ternary_group local;
            struct bcpm_ternary_group *g =
                job->groups ? &job->groups[r * job->groups_per_row + gi] : &local;
            uint64_t column0 = gi * job->group_size;
            const uint8_t *x = row + column0 * job->bits.size;

            if (tensor->dtype != BCPM_DTYPE_BF16 ||
                scan_group_bf16((const uint16_t *)(const void *)x, job->group_size, column0,
                                job->kernels, g) != 0)
                scan_group_general(x, job->group_size, column0, tensor->dtype, &job->bits, g);
            if (add_group(t, g, r))
                t->first_bad_value = bits_to_double(
                    tensor->dtype, load_bits(row + (uint64_t)g->first_bad_column * job->bits.size,
                                             job->bits.size));
        }

        if (r + 1 - released >= stride) {
            bcpm_quant_release_rows(job->release, tensor, job->columns, released, r + 1);
            released = r + 1;
        }
    }
    bcpm_quant_release_rows(job->release, tensor, job->columns, released, end);
    free(scratch);
}

/*
 * Run scan_rows over every row: in row chunks hashed in file order when a
 * digest is asked for and the rows lie in the mapped file, else in one range
 * per thread.
 */
static void run_rows(struct scan_job *job, const struct bcpm_quant_options *options,
                     uint64_t rows, int threads)
{
    const struct bcpm_tensor *tensor = job->tensor;
    uint64_t row_bytes = job->columns * job->bits.size;
    struct bcpm_quant_order order;

    if (bcpm_quant_order_init(&order, options->digest, options->release, tensor, row_bytes)) {
        job->release = NULL;
        bcpm_quant_parallel_ordered(threads, rows, &order, scan_rows, job);
        return;
    }
    bcpm_quant_parallel(threads, rows, scan_rows, job);
    if (!tensor->contiguous)
        bcpm_quant_release_tensor(options->release, tensor);
}

/* Check dtype and group size, and fill the shape fields of out. */
static int prepare_scan(const struct bcpm_tensor *tensor, int64_t group_size,
                        struct bcpm_ternary_scan *out, struct dtype_bits *bits,
                        struct bcpm_error *err)
{
    memset(out, 0, sizeof(*out));
    out->first_bad_row = -1;
    out->first_bad_column = -1;

    if (dtype_bits_of(tensor->dtype, bits) != 0)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, tensor->name,
                              "ternary scan needs a BF16, F16, F32 or F64 tensor, found %s",
                              bcpm_dtype_name(tensor->dtype));
    if (tensor->numel > 0 && !tensor->data)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, NULL, tensor->name,
                              "tensor of %" PRIu64 " elements has no data", tensor->numel);

    bcpm_tensor_matrix_shape(tensor, &out->rows, &out->columns);
    if (group_size == -1 || (uint64_t)group_size == out->columns) {
        out->group_size = out->columns;
    } else if (group_size <= 0 || out->columns % (uint64_t)group_size != 0) {
        return bcpm_error_set(err, BCPM_ERR_USAGE, NULL, tensor->name,
                              "group size %" PRId64 " does not divide the %" PRIu64
                              " columns of the tensor (use -1 for one group per row)",
                              group_size, out->columns);
    } else {
        out->group_size = (uint64_t)group_size;
    }
    if (out->columns > UINT32_MAX)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, tensor->name,
                              "rows of %" PRIu64 " columns exceed the 2^32 a scan handles",
                              out->columns);
    out->groups_per_row = out->group_size ? out->columns / out->group_size : 0;
    return 0;
}

int bcpm_ternary_scan_prepare(const struct bcpm_tensor *tensor, int64_t group_size,
                              struct bcpm_ternary_scan *out, struct bcpm_error *err)
{
    struct dtype_bits bits;

    return prepare_scan(tensor, group_size, out, &bits, err);
}

void bcpm_ternary_scan_totals(const struct bcpm_tensor *tensor, struct bcpm_ternary_scan *scan)
{
    struct scan_totals t = {.first_bad_row = -1, .first_bad_column = -1};
    uint64_t groups = scan->rows * scan->groups_per_row;

    scan->groups_ternary = 0;
    scan->nonfinite = 0;
    memset(scan->codes, 0, sizeof(scan->codes));
    scan->first_bad_row = -1;
    scan->first_bad_column = -1;
    if (!scan->groups)
        return;

    /* Row-major order, as the threaded scan's merge leaves it. */
    for (uint64_t k = 0; k < groups; k++) {
        const struct bcpm_ternary_group *g = &scan->groups[k];
        uint64_t row = k / scan->groups_per_row;

        if (add_group(&t, g, row))
            t.first_bad_value = bcpm_tensor_load_f64(
                tensor, row * scan->columns + (uint64_t)g->first_bad_column);
    }
    merge_totals(scan, &t);
}

int bcpm_ternary_scan_ex(const struct bcpm_tensor *tensor, int64_t group_size,
                         const struct bcpm_quant_options *options,
                         struct bcpm_ternary_scan *out, struct bcpm_error *err)
{
    static const struct bcpm_quant_options defaults;
    struct scan_job job;
    uint64_t ngroups;
    int threads, rc;

    if (!options)
        options = &defaults;
    rc = prepare_scan(tensor, group_size, out, &job.bits, err);
    if (rc != 0)
        return rc;
    if (out->rows == 0 || out->columns == 0)
        return 0;

    /* rows * columns is the element count, which the catalog checked for overflow. */
    ngroups = out->rows * out->groups_per_row;
    if (!options->summary_only) {
        out->groups = calloc(ngroups, sizeof(*out->groups));
        if (!out->groups)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, tensor->name,
                                  "out of memory for %" PRIu64 " group results", ngroups);
    }

    threads = bcpm_quant_job_threads(options->threads, tensor->numel * job.bits.size, out->rows);
    job.tensor = tensor;
    job.release = options->release;
    job.columns = out->columns;
    job.group_size = out->group_size;
    job.groups_per_row = out->groups_per_row;
    job.groups = out->groups;
    job.kernels = bcpm_quant_kernels();
    job.totals = calloc((size_t)threads, sizeof(*job.totals));
    if (!job.totals) {
        bcpm_ternary_scan_free(out);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, tensor->name, "out of memory");
    }
    for (int w = 0; w < threads; w++) {
        job.totals[w].first_bad_row = -1;
        job.totals[w].first_bad_column = -1;
    }
    run_rows(&job, options, out->rows, threads);

    /* Merge; each worker's first bad element is its earliest, so the earliest row wins. */
    rc = 0;
    for (int w = 0; w < threads; w++) {
        if (job.totals[w].failed)
            rc = bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, tensor->name, "out of memory");
        merge_totals(out, &job.totals[w]);
    }
    free(job.totals);
    if (rc != 0)
        bcpm_ternary_scan_free(out);
    return rc;
}

int bcpm_ternary_scan(const struct bcpm_tensor *tensor, int64_t group_size,
                      struct bcpm_ternary_scan *out, struct bcpm_error *err)
{
    return bcpm_ternary_scan_ex(tensor, group_size, NULL, out, err);
}

int bcpm_ternary_scan_in(const struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                         int64_t group_size, struct bcpm_ternary_scan *out,
                         struct bcpm_error *err)
{
    struct bcpm_quant_options options = {0};

    options.release = bcpm_quant_tensor_map(catalog, tensor);
    return bcpm_ternary_scan_ex(tensor, group_size, &options, out, err);
}

void bcpm_ternary_scan_free(struct bcpm_ternary_scan *scan)
{
    if (!scan)
        return;
    free(scan->groups);
    scan->groups = NULL;
}
