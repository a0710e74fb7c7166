/*
 * Latent-only mode: what the export of a latent tensor would look like,
 * from the same kernels as the reference comparison; see fakequant.h.
 */
#include "quant/fakequant.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/rows.h"

struct preview_part {
    uint64_t codes[3], groups, eps_floor, nonfinite;
    int64_t eps_row, eps_group, nonfinite_row, nonfinite_column;
    double scale_min, scale_max, scale_sum;
    int failed;
};

struct preview_job {
    const struct bcpm_tensor *latent;
    const struct bcpm_map *release;
    uint64_t columns, group;
    float eps;
    enum bcpm_compute policy;
    enum bcpm_dtype half;
    struct preview_part *parts;
};

static void preview_group(const struct preview_job *job, const uint8_t *raw, const float *w32,
                          const float *w_half, int8_t *codes, uint64_t row, uint64_t g0,
                          struct preview_part *part)
{
    size_t size = bcpm_dtype_size(job->latent->dtype);
    uint64_t n = job->group;
    struct bcpm_fakequant_scale sc;
    float sum = bcpm_fakequant_abs_sum(job->latent->dtype, raw + g0 * size, n);
    float sum_half = w_half == w32 ? sum
                                   : bcpm_fakequant_abs_sum(BCPM_DTYPE_F32,
                                                            (const uint8_t *)(w_half + g0), n);
    float s;

    if (isnan(sum) || isinf(sum)) {
        for (uint64_t i = 0; i < n; i++) {
            if (isnan(w32[g0 + i]) || isinf(w32[g0 + i])) {
                part->nonfinite++;
                if (part->nonfinite_row < 0) {
                    part->nonfinite_row = (int64_t)row;
                    part->nonfinite_column = (int64_t)(g0 + i);
                }
                return;
            }
        }
    }

    bcpm_fakequant_scales(sum, sum_half, n, job->eps, job->half, &sc);
    s = job->policy == BCPM_COMPUTE_HALF ? sc.s_half : sc.s32;
    bcpm_fakequant_codes(job->policy == BCPM_COMPUTE_HALF ? w_half + g0 : w32 + g0, n, s,
                         job->policy, job->half, codes);
    for (uint64_t i = 0; i < n; i++)
        part->codes[codes[i] + 1]++;

    part->groups++;
    part->scale_sum += s;
    if (s < part->scale_min)
        part->scale_min = s;
    if (s > part->scale_max)
        part->scale_max = s;
    if (sc.eps_floor) {
        part->eps_floor++;
        if (part->eps_row < 0) {
            part->eps_row = (int64_t)row;
            part->eps_group = (int64_t)(g0 / n);
        }
    }
}

static void preview_rows(void *context, int worker, uint64_t begin, uint64_t end)
{
    struct preview_job *job = context;
    struct preview_part *part = &job->parts[worker];
    const struct bcpm_tensor *t = job->latent;
    size_t size = bcpm_dtype_size(t->dtype);
    uint64_t stride = bcpm_quant_release_stride(job->columns * size), released = begin;
    float *w32 = malloc(job->columns * sizeof(float));
    float *w_half = t->dtype == BCPM_DTYPE_F32 ? malloc(job->columns * sizeof(float)) : w32;
    int8_t *codes = malloc(job->group);
    uint8_t *scratch = malloc(job->columns * size);

    part->eps_row = part->eps_group = part->nonfinite_row = part->nonfinite_column = -1;
    part->scale_min = INFINITY;
    part->scale_max = -INFINITY;
    if (!w32 || !w_half || !codes || !scratch) {
        part->failed = 1;
        goto done;
    }
    for (uint64_t r = begin; r < end; r++) {
        const uint8_t *raw = bcpm_quant_row(t, r, job->columns, scratch);

        bcpm_fakequant_widen(t->dtype, raw, job->columns, w32, w_half);
        for (uint64_t g0 = 0; g0 < job->columns; g0 += job->group)
            preview_group(job, raw, w32, w_half, codes, r, g0, part);
        if (r + 1 - released >= stride) {
            bcpm_quant_release_rows(job->release, t, job->columns, released, r + 1);
            released = r + 1;
        }
    }
    bcpm_quant_release_rows(job->release, t, job->columns, released, end);

done:
    if (w_half != w32)
        free(w_half);
    free(w32);
    free(codes);
    free(scratch);
}

int bcpm_fakequant_preview(const struct bcpm_tensor *latent, int64_t group_size, float eps,
                           enum bcpm_compute policy, const struct bcpm_quant_options *options,
                           struct bcpm_fakequant_preview *out, struct bcpm_error *err)
{
    static const struct bcpm_quant_options defaults;
    struct preview_job job;
    int threads, rc = 0;

    if (!options)
        options = &defaults;
    memset(out, 0, sizeof(*out));
    out->first_eps_floor_row = out->first_eps_floor_group = -1;
    out->first_nonfinite_row = out->first_nonfinite_column = -1;
    out->scale_min = out->scale_max = out->scale_mean = NAN;
    if (latent->dtype != BCPM_DTYPE_BF16 && latent->dtype != BCPM_DTYPE_F16 &&
        latent->dtype != BCPM_DTYPE_F32)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, latent->name,
                              "fake-quant needs a BF16, F16 or F32 latent tensor, found %s",
                              bcpm_dtype_name(latent->dtype));
    if (latent->numel > 0 && !latent->data)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, NULL, latent->name, "tensor has no data");
    bcpm_tensor_matrix_shape(latent, &out->rows, &out->columns);
    rc = bcpm_fakequant_group_size(latent, group_size, out->columns, &out->group_size, err);
    if (rc != 0 || latent->numel == 0)
        return rc;

    threads = bcpm_quant_job_threads(options->threads,
                                     latent->numel * bcpm_dtype_size(latent->dtype), out->rows);
    job.latent = latent;
    job.release = options->release;
    job.columns = out->columns;
    job.group = out->group_size;
    job.eps = eps;
    /* AUTO has nothing to match against here; preview the float32 policy. */
    job.policy = policy == BCPM_COMPUTE_HALF ? BCPM_COMPUTE_HALF : BCPM_COMPUTE_FLOAT32;
    job.half = bcpm_fakequant_half_type(latent->dtype);
    job.parts = calloc((size_t)threads, sizeof(*job.parts));
    if (!job.parts)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, latent->name, "out of memory");
    bcpm_quant_parallel(threads, out->rows, preview_rows, &job);
    if (!latent->contiguous)
        bcpm_quant_release_tensor(options->release, latent);

    {
        double scale_sum = 0;
        out->scale_min = INFINITY;
        out->scale_max = -INFINITY;
        for (int w = 0; w < threads; w++) {
            const struct preview_part *p = &job.parts[w];
            if (p->failed)
                rc = bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, latent->name, "out of memory");
            for (int c = 0; c < 3; c++)
                out->codes[c] += p->codes[c];
            out->groups += p->groups;
            out->eps_floor_groups += p->eps_floor;
            out->nonfinite_groups += p->nonfinite;
            if (out->first_eps_floor_row < 0 && p->eps_row >= 0) {
                out->first_eps_floor_row = p->eps_row;
                out->first_eps_floor_group = p->eps_group;
            }
            if (out->first_nonfinite_row < 0 && p->nonfinite_row >= 0) {
                out->first_nonfinite_row = p->nonfinite_row;
                out->first_nonfinite_column = p->nonfinite_column;
            }
            scale_sum += p->scale_sum;
            if (p->scale_min < out->scale_min)
                out->scale_min = p->scale_min;
            if (p->scale_max > out->scale_max)
                out->scale_max = p->scale_max;
        }
        if (out->groups > 0) {
            uint64_t total = out->codes[0] + out->codes[1] + out->codes[2];
            out->scale_mean = scale_sum / (double)out->groups;
            out->zero_fraction = total ? (double)out->codes[1] / (double)total : 0;
        } else {
            out->scale_min = out->scale_max = NAN;
        }
    }
    free(job.parts);
    return rc;
}
