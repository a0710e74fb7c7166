/*
 * The reference comparison of one tensor pair: recompute the fake-quant of
 * the latent rows under both policies and compare with the stored codes and
 * scales; see reference.h for the classification. Whole-checkpoint pairing
 * and the findings are in reference_catalog.c.
 *
 * A group is read twice: once for the sum of |W|, once to compare. On a
 * correct export the codes of both policies equal the stored codes almost
 * everywhere (the policies disagree on about 0.1% of elements, at ties), so
 * the comparison pass only lists the exceptions, the elements where the
 * three codes are not all equal, and everything else works on that list.
 * For BF16 pairs one fused kernel (reference_bf16 in simd.h) makes the list
 * straight from both rows; other dtypes materialise the codes first.
 *
 * The rule engine's ternary scan of the pseudo-quantized tensor can come
 * from the same pass (bcpm_reference_compare_scan), so that a checkpoint
 * checked against its reference is read once.
 */
#include "quant/reference.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "quant/rows.h"


enum { F32 = BCPM_COMPUTE_FLOAT32, HALF = BCPM_COMPUTE_HALF };

void bcpm_reference_options_init(struct bcpm_reference_options *options)
{
    memset(options, 0, sizeof(*options));
    options->group_size = -1;
    options->eps = BCPM_FAKEQUANT_DEFAULT_EPS;
    options->policy = BCPM_COMPUTE_AUTO;
}

/* ---- stored values ---- */

static uint32_t load_key(enum bcpm_dtype dtype, const uint8_t *p, int *negative)
{
    uint16_t h;
    uint32_t w;

    if (dtype == BCPM_DTYPE_F32) {
        memcpy(&w, p, 4);
        *negative = (int)(w >> 31);
        return w & 0x7fffffffu;
    }
    memcpy(&h, p, 2);
    *negative = h >> 15;
    return h & 0x7fffu;
}

static float key_to_float(enum bcpm_dtype dtype, uint32_t key)
{
    float f;

    switch (dtype) {
    case BCPM_DTYPE_BF16: return bcpm_bf16_to_f32((uint16_t)key);
    case BCPM_DTYPE_F16: return bcpm_f16_to_f32((uint16_t)key);
    default: memcpy(&f, &key, 4); return f;
    }
}

/* The bits of a positive float rounded to dtype: its position on the ulp ladder. */
static uint32_t float_to_key(enum bcpm_dtype dtype, float value)
{
    uint32_t w;

    switch (dtype) {
    case BCPM_DTYPE_BF16: return bcpm_f32_to_bf16(value) & 0x7fffu;
    case BCPM_DTYPE_F16: return bcpm_f32_to_f16(value) & 0x7fffu;
    default: memcpy(&w, &value, 4); return w & 0x7fffffffu;
    }
}

/* All exponent bits of dtype: a magnitude with all of them set is Inf or NaN. */
static uint32_t exponent_mask(enum bcpm_dtype dtype)
{
    if (dtype == BCPM_DTYPE_F32)
        return 0x7f800000u;
    return dtype == BCPM_DTYPE_F16 ? 0x7c00u : 0x7f80u;
}

/*
 * The most frequent nonzero finite magnitude of a stored group (the first of
 * up to 8 candidates on ties), or 0 when the group holds only zeros.
 */
static uint32_t main_magnitude(enum bcpm_dtype dtype, const uint8_t *p, uint64_t n)
{
    uint32_t keys[8], counts[8], best = 0;
    unsigned tracked = 0;
    size_t size = bcpm_dtype_size(dtype);
    uint32_t exponent = exponent_mask(dtype);

    for (uint64_t i = 0; i < n; i++) {
        int negative;
        uint32_t key = load_key(dtype, p + i * size, &negative);
        unsigned j;

        if (key == 0 || (key & exponent) == exponent)
            continue;
        for (j = 0; j < tracked && keys[j] != key; j++)
            ;
        if (j == tracked) {
            if (tracked == 8)
                continue;
            keys[j] = key;
            counts[j] = 0;
            tracked++;
        }
        counts[j]++;
    }
    for (unsigned j = 0; j < tracked; j++) {
        if (counts[j] > counts[best])
            best = j;
    }
    return tracked ? keys[best] : 0;
}

/* The first nonzero finite magnitude of a stored group, or 0 if there is none. */
static uint32_t first_magnitude(enum bcpm_dtype dtype, const uint8_t *p, uint64_t n)
{
    size_t size = bcpm_dtype_size(dtype);
    uint32_t exponent = exponent_mask(dtype);

    for (uint64_t i = 0; i < n; i++) {
        int negative;
        uint32_t key = load_key(dtype, p + i * size, &negative);
        if (key != 0 && (key & exponent) != exponent)
            return key;
    }
    return 0;
}

/* The stored code of one element against the group's magnitude, as stored_codes gives it. */
static int8_t stored_code(enum bcpm_dtype dtype, const uint8_t *p, uint32_t magnitude)
{
    int negative;
    uint32_t key = load_key(dtype, p, &negative);

    if (key == 0)
        return 0;
    if (key != magnitude)
        return BCPM_STORED_OTHER;
    return negative ? -1 : 1;
}

/*
 * Stored codes of a group: 0, the sign for an element of the group's main
 * magnitude, or BCPM_STORED_OTHER. counts[0..3] receive the -1, 0, +1 and
 * other codes. Returns the main magnitude (0 if the group contains no nonzero
 * finite value).
 */
static uint32_t stored_codes(enum bcpm_dtype dtype, const uint8_t *p, uint64_t n, int8_t *out,
                             uint64_t counts[4])
{
    size_t size = bcpm_dtype_size(dtype);
    int negative;
    /* Try the first nonzero finite magnitude; fall back to the most frequent one. */
    uint32_t magnitude = first_magnitude(dtype, p, n);

    for (int attempt = 0; attempt < 2; attempt++) {
        memset(counts, 0, 4 * sizeof(counts[0]));
        if (dtype == BCPM_DTYPE_BF16) {
            bcpm_quant_kernels()->stored_codes_bf16((const uint16_t *)(const void *)p, n,
                                                    (uint16_t)magnitude, out, counts);
        } else {
            for (uint64_t i = 0; i < n; i++) {
                uint32_t key = load_key(dtype, p + i * size, &negative);
                int8_t code;

                if (key == 0)
                    code = 0;
                else if (key != magnitude)
                    code = BCPM_STORED_OTHER;
                else
                    code = negative ? -1 : 1;
                out[i] = code;
                counts[code == BCPM_STORED_OTHER ? 3 : code + 1]++;
            }
        }
        if (counts[3] == 0 || attempt == 1)
            break;
        {
            uint32_t main = main_magnitude(dtype, p, n);
            if (main == magnitude)
                break;
            magnitude = main;
        }
    }
    return magnitude;
}

/*
 * Index of the first i >= from where code[0] or code[1] differs from stored,
 * or n; 8 codes at a time.
 */
static uint64_t next_exception(const int8_t *const code[2], const int8_t *stored, uint64_t from,
                               uint64_t n)
{
    uint64_t i = from;

    while (i + 8 <= n) {
        uint64_t a, b, s;
        memcpy(&a, code[0] + i, 8);
        memcpy(&b, code[1] + i, 8);
        memcpy(&s, stored + i, 8);
        if (a != s || b != s)
            break;
        i += 8;
    }
    while (i < n && code[0][i] == stored[i] && code[1][i] == stored[i])
        i++;
    return i;
}

/* ---- one worker's share ---- */

struct compare_job {
    const struct bcpm_tensor *pseudo, *latent;
    const struct bcpm_reference_options *options;
    const struct bcpm_map *release_pseudo, *release_latent;
    uint64_t rows, columns, group;
    enum bcpm_dtype half;
    struct bcpm_reference_result *partial; /* one per worker */
    int *failed;                           /* one per worker */
    struct bcpm_ternary_group *scan;       /* the pseudo side's scan, row-major; NULL if unwanted */
    struct row_buffers *buffers;           /* one per worker, made on its first call */
};

/*
 * Per-worker scratch. On the general path, code and stored hold the codes of
 * whole groups. On every path, exceptions lists the exceptions of a group,
 * and exception_code and exception_stored hold their codes.
 */
struct row_buffers {
    float *w32, *w_half;
    int8_t *code[2], *stored;
    uint32_t *exceptions;
    int8_t *exception_code[2], *exception_stored;
    uint8_t *scratch_pseudo, *scratch_latent;
};

static void free_buffers(struct row_buffers *b)
{
    free(b->w32);
    if (b->w_half != b->w32)
        free(b->w_half);
    free(b->code[0]);
    free(b->code[1]);
    free(b->stored);
    free(b->exceptions);
    free(b->exception_code[0]);
    free(b->exception_code[1]);
    free(b->exception_stored);
    free(b->scratch_pseudo);
    free(b->scratch_latent);
}

static int alloc_buffers(const struct compare_job *job, struct row_buffers *b)
{
    uint64_t c = job->columns;

    memset(b, 0, sizeof(*b));
    b->w32 = malloc(c * sizeof(float));
    b->w_half = job->latent->dtype == BCPM_DTYPE_F32 ? malloc(c * sizeof(float)) : b->w32;
    b->code[0] = malloc(c);
    b->code[1] = malloc(c);
    b->stored = malloc(c);
    b->exceptions = malloc(job->group * sizeof(uint32_t));
    b->exception_code[0] = malloc(job->group);
    b->exception_code[1] = malloc(job->group);
    b->exception_stored = malloc(job->group);
    b->scratch_pseudo = malloc(c * bcpm_dtype_size(job->pseudo->dtype));
    b->scratch_latent = malloc(c * bcpm_dtype_size(job->latent->dtype));
    if (!b->w32 || !b->w_half || !b->code[0] || !b->code[1] || !b->stored || !b->exceptions ||
        !b->exception_code[0] || !b->exception_code[1] || !b->exception_stored ||
        !b->scratch_pseudo || !b->scratch_latent) {
        free_buffers(b);
        return -1;
    }
    return 0;
}

/*
 * One latent group: the raw elements when the latent is BF16 (the common
 * case, read without widening), else the widened floats and their H copy.
 */
struct latent_group {
    const uint16_t *bf16;
    const float *w32, *w_half;
};

static float latent_value(const struct latent_group *lg, uint64_t i)
{
    return lg->bf16 ? bcpm_bf16_to_f32(lg->bf16[i]) : lg->w32[i];
}

/* The value policy p quantizes: W under float32, H(W) under the half policy. */
static float policy_value(const struct latent_group *lg, int p, uint64_t i)
{
    if (lg->bf16)
        return bcpm_bf16_to_f32(lg->bf16[i]);
    return p == F32 ? lg->w32[i] : lg->w_half[i];
}

/* The code of w by threshold t, as the codes_threshold kernels give it. */
static int8_t code_by_threshold(float w, float t)
{
    if (w > t)
        return 1;
    if (w < -t)
        return -1;
    return 0;
}

/* The thresholds of both policies for the scales of sc (see bcpm_fakequant_threshold). */
static void policy_thresholds(const struct compare_job *job, const struct bcpm_fakequant_scale *sc,
                              float t[2])
{
    t[F32] = bcpm_fakequant_threshold(sc->s32, BCPM_COMPUTE_FLOAT32, job->half);
    t[HALF] = bcpm_fakequant_threshold(sc->s_half, BCPM_COMPUTE_HALF, job->half);
}

/* Codes of the whole group under both policies, by the thresholds t. */
static void latent_codes(const struct compare_job *job, const struct latent_group *lg,
                         const float t[2], int8_t *code32, int8_t *code_half)
{
    const struct bcpm_quant_kernels *k = bcpm_quant_kernels();

    if (lg->bf16) {
        k->codes_threshold2_bf16(lg->bf16, job->group, t[F32], t[HALF], code32, code_half);
        return;
    }
    k->codes_threshold(lg->w32, job->group, t[F32], code32);
    k->codes_threshold(lg->w_half, job->group, t[HALF], code_half);
}

/*
 * Thresholds with the group sums one ulp lower (moved[p][0]) and higher
 * (moved[p][1]) for each policy p: an element whose code changes under them
 * is a summation-order boundary case.
 */
static void moved_thresholds(const struct compare_job *job, const struct bcpm_fakequant_scale *sc,
                             float moved[2][2])
{
    for (int side = 0; side < 2; side++) {
        float toward = side == 0 ? -INFINITY : INFINITY;
        struct bcpm_fakequant_scale shifted;
        float t[2];

        bcpm_fakequant_scales(nextafterf(sc->sum, toward), nextafterf(sc->sum_half, toward),
                              job->group, job->options->eps, job->half, &shifted);
        policy_thresholds(job, &shifted, t);
        moved[F32][side] = t[F32];
        moved[HALF][side] = t[HALF];
    }
}

static float stored_value(enum bcpm_dtype dtype, const uint8_t *p)
{
    int negative;
    float v = key_to_float(dtype, load_key(dtype, p, &negative));

    return negative ? -v : v;
}

/* Whether stored element i is code * Inf: NaN for code 0, an infinity of the code's sign. */
static int overflow_value_matches(const struct compare_job *job, const uint8_t *pseudo_row,
                                  uint64_t i, int8_t code)
{
    float v = stored_value(job->pseudo->dtype,
                           pseudo_row + i * bcpm_dtype_size(job->pseudo->dtype));

    return code == 0 ? isnan(v) : isinf(v) && (v < 0) == (code < 0);
}

/*
 * The exceptions of a group: the elements where the two policies' codes and
 * the stored code are not all equal. index[k] is the element's position in
 * the group, code[p][k] its code under policy p and stored[k] its stored code.
 */
struct exceptions {
    const uint32_t *index;
    const int8_t *code[2], *stored;
    size_t count;
};

/*
 * Compare the codes of one group under policy p with the stored codes. Every
 * stored code starts on the diagonal of the confusion matrix (counts contains
 * the stored codes). Then the exceptions where the code of p differs from
 * the stored one are visited, in element order.
 */
static void compare_codes(const struct compare_job *job, int p, uint64_t row, uint64_t g0,
                          const struct exceptions *ex, int other_overflow,
                          const uint64_t counts[4], float moved[2][2], int *have_moved,
                          const struct latent_group *lg, const struct bcpm_fakequant_scale *sc,
                          const uint8_t *pseudo_row, struct bcpm_reference_policy *r)
{
    for (int c = 0; c < 3; c++) {
        r->confusion[c][c] += counts[c];
        r->matches += counts[c];
    }

    for (size_t k = 0; k < ex->count; k++) {
        uint64_t i = ex->index[k];
        int8_t s = ex->stored[k], code = ex->code[p][k], other = ex->code[1 - p][k];

        if (code == s)
            continue;
        if (s == BCPM_STORED_OTHER) {
            /* NaN or Inf is what the other policy stores when its scale overflowed. */
            if (other_overflow && overflow_value_matches(job, pseudo_row, g0 + i, other)) {
                r->boundary++;
                continue;
            }
            r->stored_other++;
        } else {
            r->confusion[s + 1][s + 1]--;
            r->matches--;
            r->confusion[code + 1][s + 1]++;
            if (s == other) {
                r->boundary++;
                continue;
            }
            if (!*have_moved) {
                moved_thresholds(job, sc, moved);
                *have_moved = 1;
            }
            if (s == code_by_threshold(policy_value(lg, p, i), moved[p][0]) ||
                s == code_by_threshold(policy_value(lg, p, i), moved[p][1])) {
                r->boundary++;
                continue;
            }
        }
        r->mismatches++;
        if (r->first_mismatch_row < 0) {
            r->first_mismatch_row = (int64_t)row;
            r->first_mismatch_column = (int64_t)(g0 + i);
            r->first_mismatch_latent = latent_value(lg, i);
            r->first_mismatch_stored = stored_value(
                job->pseudo->dtype, pseudo_row + (g0 + i) * bcpm_dtype_size(job->pseudo->dtype));
        }
    }
}

static uint64_t ulps_between(uint32_t a, uint32_t b)
{
    return a > b ? a - b : b - a;
}

static int ulps_bin(uint64_t ulps)
{
    if (ulps == 0)
        return BCPM_ULPS_0;
    if (ulps == 1)
        return BCPM_ULPS_1;
    return ulps <= 3 ? BCPM_ULPS_2_3 : BCPM_ULPS_4_PLUS;
}

/* The stored scale of one group against the scale of policy p. */
static void compare_scale(const struct compare_job *job, int p, uint64_t row, uint64_t group_index,
                          uint32_t stored_key, uint64_t nonzero,
                          const struct bcpm_fakequant_scale *sc, struct bcpm_reference_policy *r)
{
    enum bcpm_dtype dtype = job->pseudo->dtype;
    float expected = p == F32 ? sc->s32 : sc->s_half;
    uint32_t expected_key = float_to_key(dtype, expected);
    uint64_t ulps = ulps_between(stored_key, expected_key);

    r->scale_groups++;

    /* The scale the other policy gives is a boundary case, as its codes are. */
    if (ulps != 0 && float_to_key(dtype, p == F32 ? sc->s_half : sc->s32) == stored_key) {
        r->scale_boundary++;
        ulps = 0;
    }
    if (ulps != 0) {
        /* The same scale with the float32 sum one ulp lower or higher. */
        for (int side = 0; side < 2 && ulps != 0; side++) {
            float toward = side == 0 ? -INFINITY : INFINITY;
            struct bcpm_fakequant_scale moved;
            bcpm_fakequant_scales(nextafterf(sc->sum, toward), nextafterf(sc->sum_half, toward),
                                  job->group, job->options->eps, job->half, &moved);
            if (float_to_key(dtype, p == F32 ? moved.s32 : moved.s_half) == stored_key) {
                r->scale_boundary++;
                ulps = 0;
            }
        }
    }

    r->scale_histogram[ulps_bin(ulps)]++;
    if (ulps > r->scale_ulps_max)
        r->scale_ulps_max = ulps;
    if (ulps <= job->options->scale_tolerance_ulps)
        return;

    r->scale_errors++;
    {
        /*
         * Quantizing twice scales s by the group's fraction of nonzero codes.
         * A latent side that is pseudo-quantized itself does the opposite:
         * the recomputed s is the stored one times that fraction.
         */
        double stored = (double)key_to_float(dtype, stored_key);
        double fraction = (double)nonzero / (double)job->group;
        if (fabs(stored / (double)expected - fraction) <= fraction / 128.0)
            r->twice_groups++;
        if (fabs((double)expected / stored - fraction) <= fraction / 128.0)
            r->quantized_latent_groups++;
    }
    if (r->first_scale_row < 0) {
        r->first_scale_row = (int64_t)row;
        r->first_scale_group = (int64_t)group_index;
        r->first_scale_ulps = ulps;
        r->first_scale_stored = key_to_float(dtype, stored_key);
        r->first_scale_expected = key_to_float(dtype, expected_key);
    }
}

/*
 * A group whose scale under policy p overflowed to infinity (an F16 sum of
 * very large values): code * s is NaN for code 0 and +-Inf otherwise, which
 * is what PyTorch stores. No scale to compare.
 */
static void compare_overflow_group(const struct compare_job *job, uint64_t row, uint64_t g0,
                                   const int8_t *code, const int8_t *other,
                                   const int8_t *stored, const struct latent_group *lg,
                                   const uint8_t *pseudo_row, struct bcpm_reference_policy *r)
{
    for (uint64_t i = 0; i < job->group; i++) {
        float v;

        if (overflow_value_matches(job, pseudo_row, g0 + i, code[i])) {
            r->matches++;
            continue;
        }
        /* A finite code the other policy gives: the policies differ, the export is fine. */
        if (stored[i] != BCPM_STORED_OTHER && stored[i] == other[i]) {
            r->boundary++;
            continue;
        }
        v = stored_value(job->pseudo->dtype,
                         pseudo_row + (g0 + i) * bcpm_dtype_size(job->pseudo->dtype));
        r->mismatches++;
        if (r->first_mismatch_row < 0) {
            r->first_mismatch_row = (int64_t)row;
            r->first_mismatch_column = (int64_t)(g0 + i);
            r->first_mismatch_latent = latent_value(lg, i);
            r->first_mismatch_stored = v;
        }
    }
}

/* Find the first NaN or Inf of a latent group; -1 if none. */
static int64_t first_nonfinite(const struct latent_group *lg, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        float w = latent_value(lg, i);
        if (isnan(w) || isinf(w))
            return (int64_t)i;
    }
    return -1;
}

/*
 * Exceptions of a BF16 group against a BF16 stored group in one fused pass
 * (the common case). The stored magnitude is chosen as stored_codes chooses
 * it. Returns the stored magnitude; counts receives the stored codes.
 */
static uint32_t bf16_exceptions(const struct compare_job *job, struct row_buffers *b,
                                const struct latent_group *lg, const uint8_t *pseudo_group,
                                const float t[2], uint64_t counts[4], struct exceptions *ex)
{
    const struct bcpm_quant_kernels *k = bcpm_quant_kernels();
    const uint16_t *y = (const uint16_t *)(const void *)pseudo_group;
    uint64_t n = job->group;
    uint32_t magnitude = first_magnitude(BCPM_DTYPE_BF16, pseudo_group, n);
    size_t count = 0;

    for (int attempt = 0; attempt < 2; attempt++) {
        memset(counts, 0, 4 * sizeof(counts[0]));
        count = k->reference_bf16(lg->bf16, y, n, t[F32], t[HALF], (uint16_t)magnitude, counts,
                                  b->exceptions);
        if (counts[3] == 0 || attempt == 1)
            break;
        {
            uint32_t main = main_magnitude(BCPM_DTYPE_BF16, pseudo_group, n);
            if (main == magnitude)
                break;
            magnitude = main;
        }
    }

    for (size_t j = 0; j < count; j++) {
        uint32_t i = b->exceptions[j];
        float w = bcpm_bf16_to_f32(lg->bf16[i]);

        b->exception_code[F32][j] = code_by_threshold(w, t[F32]);
        b->exception_code[HALF][j] = code_by_threshold(w, t[HALF]);
        b->exception_stored[j] = stored_code(BCPM_DTYPE_BF16, pseudo_group + 2 * (size_t)i,
                                             magnitude);
    }
    ex->count = count;
    return magnitude;
}

/* Exceptions of a group from its codes and stored codes (the general path). */
static void list_exceptions(struct row_buffers *b, const int8_t *const code[2],
                            const int8_t *stored, uint64_t n, struct exceptions *ex)
{
    size_t count = 0;

    for (uint64_t i = next_exception(code, stored, 0, n); i < n;
         i = next_exception(code, stored, i + 1, n)) {
        b->exceptions[count] = (uint32_t)i;
        b->exception_code[F32][count] = code[F32][i];
        b->exception_code[HALF][count] = code[HALF][i];
        b->exception_stored[count] = stored[i];
        count++;
    }
    ex->count = count;
}

/*
 * The ternary scan record of a stored group, when the caller asked for the
 * scan. A BF16 group whose stored codes hold no "other" value holds only
 * zeros and +-magnitude, so the counts of the comparison make its record.
 */
static void scan_group(const struct compare_job *job, uint64_t row, uint64_t g0,
                       const uint8_t *pseudo_row, const uint64_t *counts, uint32_t magnitude)
{
    size_t psize = bcpm_dtype_size(job->pseudo->dtype);
    struct bcpm_ternary_group *g;

    if (!job->scan)
        return;
    g = &job->scan[row * (job->columns / job->group) + g0 / job->group];
    if (counts && counts[3] == 0 && job->pseudo->dtype == BCPM_DTYPE_BF16) {
        bcpm_ternary_group_bf16((const uint16_t *)(const void *)(pseudo_row + g0 * psize),
                                job->group, g0, (uint16_t)magnitude, counts[0], counts[1], g);
        return;
    }
    bcpm_ternary_scan_group(job->pseudo->dtype, pseudo_row + g0 * psize, job->group, g0, g);
}

static void compare_group(const struct compare_job *job, struct row_buffers *b, uint64_t row,
                          uint64_t g0, const uint8_t *latent_row, const uint8_t *pseudo_row,
                          struct bcpm_reference_result *res)
{
    size_t lsize = bcpm_dtype_size(job->latent->dtype);
    size_t psize = bcpm_dtype_size(job->pseudo->dtype);
    uint64_t n = job->group, counts[4];
    struct latent_group lg;
    struct bcpm_fakequant_scale sc;
    struct exceptions ex;
    float sum, sum_half, t[2], moved[2][2];
    uint32_t stored_key;
    int have_moved = 0, overflow[2];
    int8_t *code[2] = {b->code[0] + g0, b->code[1] + g0};
    int8_t *stored = b->stored + g0;

    if (job->latent->dtype == BCPM_DTYPE_BF16) {
        lg.bf16 = (const uint16_t *)(const void *)(latent_row + g0 * lsize);
        lg.w32 = lg.w_half = NULL;
    } else {
        lg.bf16 = NULL;
        lg.w32 = b->w32 + g0;
        lg.w_half = b->w_half + g0;
    }
    sum = bcpm_fakequant_abs_sum(job->latent->dtype, latent_row + g0 * lsize, n);
    sum_half = b->w_half == b->w32 ? sum
                                   : bcpm_fakequant_abs_sum(BCPM_DTYPE_F32,
                                                            (const uint8_t *)lg.w_half, n);

    /* NaN or Inf in the latent group makes every code of it NaN: report, skip. */
    if (isnan(sum) || isinf(sum)) {
        int64_t c = first_nonfinite(&lg, n);
        if (c >= 0) {
            res->nonfinite_groups++;
            if (res->first_nonfinite_row < 0) {
                res->first_nonfinite_row = (int64_t)row;
                res->first_nonfinite_column = (int64_t)g0 + c;
            }
            scan_group(job, row, g0, pseudo_row, NULL, 0);
            return;
        }
    }

    bcpm_fakequant_scales(sum, sum_half, n, job->options->eps, job->half, &sc);
    policy_thresholds(job, &sc, t);
    overflow[F32] = isinf(sc.s32);
    overflow[HALF] = isinf(sc.s_half);

    /*
     * Both sides BF16 and no overflowed scale: one fused pass lists the
     * exceptions. Otherwise the codes of the whole group are materialised
     * first (the overflow comparison needs every element).
     */
    ex.index = b->exceptions;
    ex.code[F32] = b->exception_code[F32];
    ex.code[HALF] = b->exception_code[HALF];
    ex.stored = b->exception_stored;
    if (lg.bf16 && job->pseudo->dtype == BCPM_DTYPE_BF16 && !overflow[F32] && !overflow[HALF] &&
        !job->options->full_codes) {
        stored_key = bf16_exceptions(job, b, &lg, pseudo_row + g0 * psize, t, counts, &ex);
        scan_group(job, row, g0, pseudo_row, counts, stored_key);
    } else {
        latent_codes(job, &lg, t, code[F32], code[HALF]);
        stored_key = stored_codes(job->pseudo->dtype, pseudo_row + g0 * psize, n, stored, counts);
        list_exceptions(b, (const int8_t *const[2]){code[F32], code[HALF]}, stored, n, &ex);
        scan_group(job, row, g0, pseudo_row, NULL, 0);
    }
    for (size_t k = 0; k < ex.count; k++)
        res->policy_disagreements += ex.code[F32][k] != ex.code[HALF][k];

    for (int p = 0; p < 2; p++) {
        if (overflow[p]) {
            compare_overflow_group(job, row, g0, code[p], code[1 - p], stored, &lg, pseudo_row,
                                   &res->policy[p]);
            continue;
        }
        compare_codes(job, p, row, g0, &ex, overflow[1 - p], counts, moved, &have_moved, &lg, &sc,
                      pseudo_row, &res->policy[p]);
        if (stored_key != 0)
            compare_scale(job, p, row, g0 / n, stored_key, counts[0] + counts[2], &sc,
                          &res->policy[p]);
    }
}

static void init_result(struct bcpm_reference_result *r)
{
    memset(r, 0, sizeof(*r));
    r->first_nonfinite_row = -1;
    r->first_nonfinite_column = -1;
    for (int p = 0; p < 2; p++) {
        r->policy[p].first_mismatch_row = -1;
        r->policy[p].first_mismatch_column = -1;
        r->policy[p].first_scale_row = -1;
        r->policy[p].first_scale_group = -1;
    }
}

/*
 * Compare rows [begin, end). In an ordered run a worker is called many
 * times, on increasing ranges. Its buffers are made on the first call, and
 * its partial result grows with each call.
 */
static void compare_rows(void *context, int worker, uint64_t begin, uint64_t end)
{
    struct compare_job *job = context;
    struct bcpm_reference_result *res = &job->partial[worker];
    struct row_buffers *b = &job->buffers[worker];
    uint64_t stride = bcpm_quant_release_stride(job->columns *
                                                bcpm_dtype_size(job->latent->dtype));
    uint64_t released = begin;

    if (job->failed[worker])
        return;
    if (!b->w32 && alloc_buffers(job, b) != 0) {
        job->failed[worker] = 1;
        return;
    }
    for (uint64_t r = begin; r < end; r++) {
        const uint8_t *lrow = bcpm_quant_row(job->latent, r, job->columns, b->scratch_latent);
        const uint8_t *prow = bcpm_quant_row(job->pseudo, r, job->columns, b->scratch_pseudo);

        /* BF16 rows are read in place; the kernels widen them in registers. */
        if (job->latent->dtype != BCPM_DTYPE_BF16)
            bcpm_fakequant_widen(job->latent->dtype, lrow, job->columns, b->w32, b->w_half);
        for (uint64_t g0 = 0; g0 < job->columns; g0 += job->group)
            compare_group(job, b, r, g0, lrow, prow, res);

        if (r + 1 - released >= stride) {
            bcpm_quant_release_rows(job->release_latent, job->latent, job->columns, released,
                                    r + 1);
            bcpm_quant_release_rows(job->release_pseudo, job->pseudo, job->columns, released,
                                    r + 1);
            released = r + 1;
        }
    }
    bcpm_quant_release_rows(job->release_latent, job->latent, job->columns, released, end);
    bcpm_quant_release_rows(job->release_pseudo, job->pseudo, job->columns, released, end);
}

/*
 * Run compare_rows over every row: in row chunks whose pseudo-quantized bytes
 * go to digest in file order when one is given and the rows lie in the
 * mapped file, else in one range per thread.
 */
static void run_rows(struct compare_job *job, const struct bcpm_quant_digest *digest,
                     uint64_t rows, int threads)
{
    const struct bcpm_tensor *p = job->pseudo, *l = job->latent;
    uint64_t row_bytes = job->columns * bcpm_dtype_size(p->dtype);
    struct bcpm_quant_order order;

    if (!bcpm_quant_order_init(&order, digest, job->release_pseudo, p, row_bytes)) {
        bcpm_quant_parallel(threads, rows, compare_rows, job);
        return;
    }
    if (job->release_latent && l->contiguous) {
        order.also_map = job->release_latent;
        order.also_base = l->byte_offset;
        order.also_item_bytes = job->columns * bcpm_dtype_size(l->dtype);
        job->release_latent = NULL;
    }
    /* The ordered run drops the pages once hashed; the rows must not do it first. */
    job->release_pseudo = NULL;
    bcpm_quant_parallel_ordered(threads, rows, &order, compare_rows, job);
}

/* ---- merging and the entry point ---- */

/*
 * Whether position (row, column) comes before (into_row, into_column), where
 * into_row -1 means none yet. Workers of an ordered run take interleaved
 * chunks, so the first of all is the earliest, not the first worker's.
 */
static int earlier(int64_t row, int64_t column, int64_t into_row, int64_t into_column)
{
    return into_row < 0 || row < into_row || (row == into_row && column < into_column);
}

static void merge_policy(struct bcpm_reference_policy *into, const struct bcpm_reference_policy *p)
{
    into->matches += p->matches;
    into->boundary += p->boundary;
    into->mismatches += p->mismatches;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            into->confusion[i][j] += p->confusion[i][j];
    into->stored_other += p->stored_other;
    into->scale_groups += p->scale_groups;
    for (int i = 0; i < BCPM_ULPS_BINS; i++)
        into->scale_histogram[i] += p->scale_histogram[i];
    if (p->scale_ulps_max > into->scale_ulps_max)
        into->scale_ulps_max = p->scale_ulps_max;
    into->scale_boundary += p->scale_boundary;
    into->scale_errors += p->scale_errors;
    into->twice_groups += p->twice_groups;
    into->quantized_latent_groups += p->quantized_latent_groups;
    if (p->first_mismatch_row >= 0 &&
        earlier(p->first_mismatch_row, p->first_mismatch_column, into->first_mismatch_row,
                into->first_mismatch_column)) {
        into->first_mismatch_row = p->first_mismatch_row;
        into->first_mismatch_column = p->first_mismatch_column;
        into->first_mismatch_latent = p->first_mismatch_latent;
        into->first_mismatch_stored = p->first_mismatch_stored;
    }
    if (p->first_scale_row >= 0 &&
        earlier(p->first_scale_row, p->first_scale_group, into->first_scale_row,
                into->first_scale_group)) {
        into->first_scale_row = p->first_scale_row;
        into->first_scale_group = p->first_scale_group;
        into->first_scale_ulps = p->first_scale_ulps;
        into->first_scale_stored = p->first_scale_stored;
        into->first_scale_expected = p->first_scale_expected;
    }
}

static void merge_result(struct bcpm_reference_result *into,
                         const struct bcpm_reference_result *part)
{
    into->policy_disagreements += part->policy_disagreements;
    into->nonfinite_groups += part->nonfinite_groups;
    if (part->first_nonfinite_row >= 0 &&
        earlier(part->first_nonfinite_row, part->first_nonfinite_column,
                into->first_nonfinite_row, into->first_nonfinite_column)) {
        into->first_nonfinite_row = part->first_nonfinite_row;
        into->first_nonfinite_column = part->first_nonfinite_column;
    }
    for (int p = 0; p < 2; p++)
        merge_policy(&into->policy[p], &part->policy[p]);
}

/* Elements and scales where the policy's result differs from the stored one. */
static uint64_t policy_differences(const struct bcpm_reference_policy *p)
{
    return p->mismatches + p->boundary + p->scale_errors + p->scale_boundary;
}

/* The policy the findings report: the requested one, or under AUTO the one with fewer differences. */
static void choose_policy(struct bcpm_reference_result *r, enum bcpm_compute requested)
{
    const struct bcpm_reference_policy *chosen;

    if (requested == BCPM_COMPUTE_AUTO)
        r->matched = policy_differences(&r->policy[HALF]) < policy_differences(&r->policy[F32])
                         ? BCPM_COMPUTE_HALF
                         : BCPM_COMPUTE_FLOAT32;
    else
        r->matched = requested;

    /* Twice quantized: every group's scale is off, each by its fraction of nonzero codes. */
    chosen = &r->policy[r->matched];
    r->looks_quantized_twice = chosen->scale_errors > 0 &&
                               chosen->twice_groups == chosen->scale_errors &&
                               chosen->scale_errors == chosen->scale_groups;
    r->latent_looks_quantized = chosen->scale_errors > 0 &&
                                chosen->quantized_latent_groups == chosen->scale_errors &&
                                chosen->scale_errors == chosen->scale_groups;
}

static int check_pair(const struct bcpm_tensor *pseudo, const struct bcpm_tensor *latent,
                      struct bcpm_error *err)
{
    if (latent->dtype != BCPM_DTYPE_BF16 && latent->dtype != BCPM_DTYPE_F16 &&
        latent->dtype != BCPM_DTYPE_F32)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, latent->name,
                              "the latent tensor must be BF16, F16 or F32, found %s",
                              bcpm_dtype_name(latent->dtype));
    if (pseudo->dtype != BCPM_DTYPE_BF16 && pseudo->dtype != BCPM_DTYPE_F16 &&
        pseudo->dtype != BCPM_DTYPE_F32)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, pseudo->name,
                              "the pseudo-quantized tensor must be BF16, F16 or F32, found %s",
                              bcpm_dtype_name(pseudo->dtype));
    if (pseudo->ndim != latent->ndim ||
        memcmp(pseudo->shape, latent->shape, (size_t)pseudo->ndim * sizeof(int64_t)) != 0)
        return bcpm_error_set(err, BCPM_ERR_USAGE, NULL, pseudo->name,
                              "the pseudo-quantized and latent tensors differ in shape");
    if ((pseudo->numel > 0 && !pseudo->data) || (latent->numel > 0 && !latent->data))
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, NULL, pseudo->name, "tensor has no data");
    return 0;
}

static int compare_tensor(const struct bcpm_tensor *pseudo, const struct bcpm_tensor *latent,
                          const struct bcpm_reference_options *options,
                          const struct bcpm_map *release_pseudo,
                          const struct bcpm_map *release_latent,
                          const struct bcpm_quant_digest *digest,
                          struct bcpm_ternary_group *scan_groups,
                          struct bcpm_reference_result *out, struct bcpm_error *err)
{
    struct compare_job job;
    int threads, rc;

    init_result(out);
    rc = check_pair(pseudo, latent, err);
    if (rc != 0)
        return rc;
    bcpm_tensor_matrix_shape(latent, &out->rows, &out->columns);
    rc = bcpm_fakequant_group_size(latent, options->group_size, out->columns, &out->group_size,
                                   err);
    if (rc != 0)
        return rc;
    /* Exceptions are listed by their 32-bit index inside the group. */
    if (out->group_size > UINT32_MAX)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, pseudo->name,
                              "groups of %" PRIu64 " elements are larger than the %" PRIu32
                              " elements the reference check supports; use a smaller "
                              "--group-size",
                              out->group_size, UINT32_MAX);
    out->tensor = strdup(pseudo->name);
    if (!out->tensor)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, pseudo->name, "out of memory");
    out->elements = latent->numel;
    out->groups = out->group_size ? out->elements / out->group_size : 0;
    if (out->elements == 0) {
        choose_policy(out, options->policy);
        return 0;
    }

    threads = bcpm_quant_job_threads(options->threads,
                                     latent->numel * bcpm_dtype_size(latent->dtype), out->rows);
    job.pseudo = pseudo;
    job.latent = latent;
    job.options = options;
    job.release_pseudo = release_pseudo;
    job.release_latent = release_latent;
    job.rows = out->rows;
    job.columns = out->columns;
    job.group = out->group_size;
    job.half = bcpm_fakequant_half_type(latent->dtype);
    job.scan = scan_groups;
    job.partial = calloc((size_t)threads, sizeof(*job.partial));
    job.failed = calloc((size_t)threads, sizeof(*job.failed));
    job.buffers = calloc((size_t)threads, sizeof(*job.buffers));
    if (!job.partial || !job.failed || !job.buffers) {
        free(job.partial);
        free(job.failed);
        free(job.buffers);
        bcpm_reference_result_free(out);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, pseudo->name, "out of memory");
    }
    for (int w = 0; w < threads; w++)
        init_result(&job.partial[w]);
    run_rows(&job, digest, out->rows, threads);
    if (!latent->contiguous)
        bcpm_quant_release_tensor(release_latent, latent);
    if (!pseudo->contiguous)
        bcpm_quant_release_tensor(release_pseudo, pseudo);

    for (int w = 0; w < threads; w++) {
        if (job.failed[w])
            rc = bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, pseudo->name, "out of memory");
        merge_result(out, &job.partial[w]);
        free_buffers(&job.buffers[w]);
    }
    free(job.partial);
    free(job.failed);
    free(job.buffers);
    if (rc != 0) {
        bcpm_reference_result_free(out);
        return rc;
    }
    choose_policy(out, options->policy);
    return 0;
}

int bcpm_reference_compare(const struct bcpm_tensor *pseudo, const struct bcpm_tensor *latent,
                           const struct bcpm_reference_options *options,
                           const struct bcpm_map *release_pseudo,
                           const struct bcpm_map *release_latent,
                           struct bcpm_reference_result *out, struct bcpm_error *err)
{
    return bcpm_reference_compare_scan(pseudo, latent, options, release_pseudo, release_latent,
                                       NULL, NULL, out, err);
}

/* Shape fields and group records of the pseudo side's scan; groups left zeroed. */
static int prepare_scan(const struct bcpm_tensor *pseudo, int64_t group_size,
                        struct bcpm_ternary_scan *scan, struct bcpm_error *err)
{
    uint64_t groups;
    int rc = bcpm_ternary_scan_prepare(pseudo, group_size, scan, err);

    if (rc != 0)
        return rc;
    groups = scan->rows * scan->groups_per_row;
    if (groups == 0)
        return 0;
    scan->groups = calloc(groups, sizeof(*scan->groups));
    if (!scan->groups)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, pseudo->name,
                              "out of memory for %" PRIu64 " group results", groups);
    return 0;
}

int bcpm_reference_compare_scan(const struct bcpm_tensor *pseudo,
                                const struct bcpm_tensor *latent,
                                const struct bcpm_reference_options *options,
                                const struct bcpm_map *release_pseudo,
                                const struct bcpm_map *release_latent,
                                const struct bcpm_quant_digest *digest,
                                struct bcpm_ternary_scan *scan,
                                struct bcpm_reference_result *out, struct bcpm_error *err)
{
    int rc;

    if (scan) {
        rc = prepare_scan(pseudo, options->group_size, scan, err);
        if (rc != 0)
            return rc;
    }
    rc = compare_tensor(pseudo, latent, options, release_pseudo, release_latent, digest,
                        scan ? scan->groups : NULL, out, err);
    if (scan && rc == 0)
        bcpm_ternary_scan_totals(pseudo, scan);
    if (scan && rc != 0)
        bcpm_ternary_scan_free(scan);
    return rc;
}


void bcpm_reference_result_free(struct bcpm_reference_result *result)
{
    if (!result)
        return;
    free(result->tensor);
    result->tensor = NULL;
}
