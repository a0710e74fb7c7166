/*
 * Value statistics of any tensor; see quant.h.
 *
 * Elements are taken in blocks of STATS_BLOCK; each block is summed in
 * element order (BF16 blocks in the canonical lane order of simd.h) and the
 * block sums are added in block order, so sum and sum_squares depend neither
 * on the thread count nor on the SIMD table.
 */
#include "quant/quant.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/rows.h"
#include "quant/simd.h"

#define STATS_BLOCK 65536u

struct stats_job {
    const struct bcpm_tensor *tensor;
    const struct bcpm_map *release;
    struct bcpm_value_stats *blocks;
};

static void add_value(struct bcpm_value_stats *b, double v, uint64_t index)
{
    b->count++;
    if (isnan(v) || isinf(v)) {
        if (isnan(v))
            b->nan++;
        else
            b->inf++;
        if (b->first_nonfinite < 0)
            b->first_nonfinite = (int64_t)index;
        return;
    }
    if (v == 0)
        b->zeros++;
    if (v < b->min)
        b->min = v;
    if (v > b->max)
        b->max = v;
    b->sum += v;
    b->sum_squares += v * v;
}

uint64_t bcpm_value_stats_block_count(const struct bcpm_tensor *tensor)
{
    return (tensor->numel + STATS_BLOCK - 1) / STATS_BLOCK;
}

uint64_t bcpm_value_stats_block_elements(void)
{
    return STATS_BLOCK;
}

static void stats_block(const struct bcpm_tensor *t, uint64_t first, uint64_t count,
                        struct bcpm_value_stats *b)
{
    memset(b, 0, sizeof(*b));
    b->first_nonfinite = -1;
    b->min = INFINITY;
    b->max = -INFINITY;

    /* The SIMD kernels load whole bf16 elements; a storage at an odd byte offset
     * (possible in legacy files) takes the element-by-element path below. */
    if (t->contiguous && t->dtype == BCPM_DTYPE_BF16 && (uintptr_t)t->data % 2 == 0) {
        const uint16_t *x = (const uint16_t *)(const void *)(t->data + first * 2);
        struct bcpm_stats_block s;

        bcpm_quant_kernels()->stats_bf16(x, count, &s);
        b->count = count;
        b->nan = s.nan;
        b->inf = s.inf;
        b->zeros = s.zeros;
        b->min = s.min;
        b->max = s.max;
        b->sum = s.sum;
        b->sum_squares = s.sum_squares;
        for (uint64_t i = 0; i < count && s.nan + s.inf > 0; i++) {
            if ((x[i] & 0x7f80u) == 0x7f80u) {
                b->first_nonfinite = (int64_t)(first + i);
                break;
            }
        }
        return;
    }
    if (t->contiguous) {
        for (uint64_t i = 0; i < count; i++)
            add_value(b, bcpm_dtype_load_f64(t->dtype, t->data, first + i), first + i);
        return;
    }
    for (uint64_t i = 0; i < count; i++)
        add_value(b, bcpm_tensor_load_f64(t, first + i), first + i);
}

void bcpm_value_stats_block(const struct bcpm_tensor *tensor, uint64_t k,
                            struct bcpm_value_stats *out)
{
    uint64_t first = k * STATS_BLOCK;
    uint64_t count = tensor->numel - first < STATS_BLOCK ? tensor->numel - first : STATS_BLOCK;

    stats_block(tensor, first, count, out);
}

static void stats_blocks(void *context, int worker, uint64_t begin, uint64_t end)
{
    struct stats_job *job = context;
    const struct bcpm_tensor *t = job->tensor;
    size_t size = bcpm_dtype_size(t->dtype);

    (void)worker;
    for (uint64_t k = begin; k < end; k++) {
        uint64_t first = k * STATS_BLOCK;
        uint64_t count = t->numel - first < STATS_BLOCK ? t->numel - first : STATS_BLOCK;

        stats_block(t, first, count, &job->blocks[k]);
        if (job->release && t->contiguous)
            bcpm_map_release(job->release, t->byte_offset + first * size, count * size);
    }
}

/*
 * Run stats_blocks over every block: hashed in file order when a digest is
 * asked for and the tensor lies in the mapped file, else one range per thread.
 */
static void run_blocks(struct stats_job *job, const struct bcpm_quant_options *options,
                       uint64_t nblocks, int threads)
{
    const struct bcpm_tensor *t = job->tensor;
    struct bcpm_quant_order order;

    if (bcpm_quant_order_init(&order, options->digest, options->release, t,
                              (uint64_t)STATS_BLOCK * bcpm_dtype_size(t->dtype))) {
        job->release = NULL;
        bcpm_quant_parallel_ordered(threads, nblocks, &order, stats_blocks, job);
        return;
    }
    bcpm_quant_parallel(threads, nblocks, stats_blocks, job);
    if (!t->contiguous)
        bcpm_quant_release_tensor(options->release, t);
}

int bcpm_value_stats_ex(const struct bcpm_tensor *tensor, const struct bcpm_quant_options *options,
                        struct bcpm_value_stats *out, struct bcpm_error *err)
{
    static const struct bcpm_quant_options defaults;
    struct stats_job job;
    uint64_t nblocks;
    int threads;

    if (!options)
        options = &defaults;
    memset(out, 0, sizeof(*out));
    out->first_nonfinite = -1;
    out->min = NAN;
    out->max = NAN;
    if (tensor->numel == 0)
        return 0;
    if (!tensor->data)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, NULL, tensor->name,
                              "tensor of %" PRIu64 " elements has no data", tensor->numel);

    nblocks = bcpm_value_stats_block_count(tensor);
    job.tensor = tensor;
    job.release = options->release;
    job.blocks = calloc(nblocks, sizeof(*job.blocks));
    if (!job.blocks)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, tensor->name, "out of memory");
    threads = bcpm_quant_job_threads(options->threads,
                                     tensor->numel * bcpm_dtype_size(tensor->dtype), nblocks);
    run_blocks(&job, options, nblocks, threads);

    bcpm_value_stats_merge(out, job.blocks, nblocks);
    free(job.blocks);
    return 0;
}

void bcpm_value_stats_merge(struct bcpm_value_stats *out, const struct bcpm_value_stats *blocks,
                            uint64_t nblocks)
{
    memset(out, 0, sizeof(*out));
    out->first_nonfinite = -1;
    out->min = INFINITY;
    out->max = -INFINITY;
    for (uint64_t k = 0; k < nblocks; k++) {
        const struct bcpm_value_stats *b = &blocks[k];
        out->count += b->count;
        out->nan += b->nan;
        out->inf += b->inf;
        out->zeros += b->zeros;
        if (out->first_nonfinite < 0)
            out->first_nonfinite = b->first_nonfinite;
        if (b->min < out->min)
            out->min = b->min;
        if (b->max > out->max)
            out->max = b->max;
        out->sum += b->sum;
        out->sum_squares += b->sum_squares;
    }
    if (out->nan + out->inf == out->count) {
        /* No finite element (or none at all): min and max are undefined. */
        out->min = NAN;
        out->max = NAN;
    }
}

int bcpm_value_stats(const struct bcpm_tensor *tensor, struct bcpm_value_stats *out,
                     struct bcpm_error *err)
{
    return bcpm_value_stats_ex(tensor, NULL, out, err);
}

int bcpm_value_stats_in(const struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                        struct bcpm_value_stats *out, struct bcpm_error *err)
{
    struct bcpm_quant_options options = {0};

    options.release = bcpm_quant_tensor_map(catalog, tensor);
    return bcpm_value_stats_ex(tensor, &options, out, err);
}
