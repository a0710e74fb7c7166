/*
 * The in-pass digest: the quant kernels feed an ordered digest stream while
 * scanning, chunk by chunk over several threads. The stream's digest must be
 * the digest of the whole file (computed here straight with libxxhash and
 * libcrypto over the bytes), and the kernels' results must not change when
 * a digest is attached.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <xxhash.h>

#include "audit/stream.h"
#include "quant/quant.h"

/* A BF16 matrix of several 256 KiB chunks, then an F32 vector of several stats blocks. */
#define ROWS 2000
#define COLUMNS 1024
#define GROUP 128
#define VECTOR 1000000
#define HEAD 100 /* bytes before the matrix, like a zip local header */
#define GAP 37   /* bytes between the two tensors */
#define TAIL 53  /* bytes after the vector, like a zip central directory */

struct fixture {
    char path[64];
    uint8_t *bytes;
    size_t size;
    struct bcpm_map *map;
    struct bcpm_file file;
    struct bcpm_tensor tensors[2];
    struct bcpm_catalog catalog;
};

static uint32_t next_random(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

/*
 * BF16 rows of -s, 0, +s with s = 0.5 (0x3f00), except that row 1800 contains a
 * second magnitude (0.25, 0x3e80) and row 90 column 5 a third one, so the
 * first bad element sits in row 90, in another chunk than row 1800.
 */
static uint16_t matrix_value(uint32_t row, uint32_t column, uint32_t random)
{
    static const uint16_t codes[3] = {0xbf00u, 0x0000u, 0x3f00u};

    if (row == 90 && column == 5)
        return 0x3c00u;
    if (row == 1800 && column % 3 == 0)
        return 0x3e80u;
    return codes[random % 3];
}

static void build_bytes(struct fixture *f)
{
    uint32_t state = 12345;
    uint8_t *p;

    f->size = HEAD + (size_t)ROWS * COLUMNS * 2 + GAP + (size_t)VECTOR * 4 + TAIL;
    f->bytes = malloc(f->size);
    assert_non_null(f->bytes);
    p = f->bytes;
    for (size_t i = 0; i < HEAD; i++)
        *p++ = (uint8_t)next_random(&state);
    for (uint32_t r = 0; r < ROWS; r++) {
        for (uint32_t c = 0; c < COLUMNS; c++) {
            uint16_t v = matrix_value(r, c, next_random(&state));
            memcpy(p, &v, 2);
            p += 2;
        }
    }
    for (size_t i = 0; i < GAP; i++)
        *p++ = (uint8_t)next_random(&state);
    for (uint32_t i = 0; i < VECTOR; i++) {
        float v = (float)next_random(&state) / 16777216.0f - 0.5f;
        memcpy(p, &v, 4);
        p += 4;
    }
    for (size_t i = 0; i < TAIL; i++)
        *p++ = (uint8_t)next_random(&state);
}

static void set_tensor(struct bcpm_tensor *t, const struct bcpm_map *map, enum bcpm_dtype dtype,
                       int ndim, const int64_t *shape, uint64_t offset)
{
    int64_t stride = 1;

    memset(t, 0, sizeof(*t));
    t->dtype = dtype;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        t->shape[d] = shape[d];
        t->strides[d] = stride;
        stride *= shape[d];
        t->numel *= (uint64_t)shape[d];
    }
    t->byte_offset = offset;
    t->nbytes = t->numel * bcpm_dtype_size(dtype);
    t->contiguous = 1;
    t->data = map->data + offset;
}

static int setup(void **state)
{
    static const int64_t matrix[2] = {ROWS, COLUMNS}, vector[1] = {VECTOR};
    struct fixture *f = calloc(1, sizeof(*f));
    struct bcpm_error err;
    FILE *out;
    int fd;

    assert_non_null(f);
    build_bytes(f);
    strcpy(f->path, "/tmp/bcpm-stream-XXXXXX");
    fd = mkstemp(f->path);
    assert_true(fd >= 0);
    out = fdopen(fd, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(f->bytes, 1, f->size, out), f->size);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(bcpm_map_open(&f->map, f->path, &err), 0);

    f->file.path = f->path;
    f->file.map = f->map;
    set_tensor(&f->tensors[0], f->map, BCPM_DTYPE_BF16, 2, matrix, HEAD);
    set_tensor(&f->tensors[1], f->map, BCPM_DTYPE_F32, 1, vector,
               HEAD + (uint64_t)ROWS * COLUMNS * 2 + GAP);
    f->tensors[1].storage = 1;
    f->catalog.files = &f->file;
    f->catalog.nfiles = 1;
    f->catalog.tensors = f->tensors;
    f->catalog.ntensors = 2;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    bcpm_map_close(f->map);
    unlink(f->path);
    free(f->bytes);
    free(f);
    return 0;
}

static void to_hex(const unsigned char *bytes, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", bytes[i]);
}

/* The reference digests of len bytes, from the libraries' one-shot calls. */
static void reference_digests(const uint8_t *bytes, size_t len, char xxh[BCPM_XXH128_HEX_SIZE],
                              char sha[BCPM_SHA256_HEX_SIZE])
{
    XXH128_canonical_t canonical;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;

    XXH128_canonicalFromHash(&canonical, XXH3_128bits(bytes, len));
    to_hex(canonical.digest, sizeof(canonical.digest), xxh);
    assert_int_equal(EVP_Digest(bytes, len, digest, &digest_len, EVP_sha256(), NULL), 1);
    assert_int_equal(digest_len, 32);
    to_hex(digest, digest_len, sha);
}

/* Scan both tensors with a digest at the given thread count; the tied pass scans the matrix twice. */
static void scan_with_digest(struct fixture *f, int threads, int tied,
                             struct bcpm_ternary_scan *scan, struct bcpm_value_stats *stats,
                             char xxh[BCPM_XXH128_HEX_SIZE], char sha[BCPM_SHA256_HEX_SIZE])
{
    struct bcpm_digest_stream *stream;
    struct bcpm_quant_options options = {0};
    struct bcpm_error err;

    assert_int_equal(bcpm_digest_stream_new(&stream, &f->catalog, 1, &err), 0);
    options.threads = threads;
    options.release = f->map;
    options.digest = bcpm_digest_stream_hook(stream);
    assert_int_equal(bcpm_ternary_scan_ex(&f->tensors[0], GROUP, &options, scan, &err), 0);
    if (tied) {
        struct bcpm_ternary_scan again;

        assert_int_equal(bcpm_ternary_scan_ex(&f->tensors[0], GROUP, &options, &again, &err), 0);
        bcpm_ternary_scan_free(&again);
    }
    assert_int_equal(bcpm_value_stats_ex(&f->tensors[1], &options, stats, &err), 0);
    bcpm_digest_stream_finish(stream, xxh, sha, NULL);
}

static void test_digest_and_results(void **state)
{
    struct fixture *f = *state;
    struct bcpm_quant_options plain = {.threads = 1};
    struct bcpm_ternary_scan want_scan, scan;
    struct bcpm_value_stats want_stats, stats;
    char want_xxh[BCPM_XXH128_HEX_SIZE], want_sha[BCPM_SHA256_HEX_SIZE];
    char xxh[BCPM_XXH128_HEX_SIZE], sha[BCPM_SHA256_HEX_SIZE];
    struct bcpm_error err;

    reference_digests(f->bytes, f->size, want_xxh, want_sha);
    assert_int_equal(bcpm_ternary_scan_ex(&f->tensors[0], GROUP, &plain, &want_scan, &err), 0);
    assert_int_equal(bcpm_value_stats_ex(&f->tensors[1], &plain, &want_stats, &err), 0);
    /* Facts of the data as written: row 90 column 5 is the first element off 0.5. */
    assert_int_equal(want_scan.first_bad_row, 90);
    assert_int_equal(want_scan.first_bad_column, 5);
    assert_int_equal(want_stats.count, VECTOR);

    for (int threads = 1; threads <= 4; threads++) {
        for (int tied = 0; tied <= 1; tied++) {
            scan_with_digest(f, threads, tied, &scan, &stats, xxh, sha);
            assert_string_equal(xxh, want_xxh);
            assert_string_equal(sha, want_sha);
            assert_int_equal(scan.groups_ternary, want_scan.groups_ternary);
            assert_memory_equal(scan.codes, want_scan.codes, sizeof(scan.codes));
            assert_int_equal(scan.first_bad_row, want_scan.first_bad_row);
            assert_int_equal(scan.first_bad_column, want_scan.first_bad_column);
            assert_memory_equal(scan.groups, want_scan.groups,
                                (size_t)ROWS * (COLUMNS / GROUP) * sizeof(*scan.groups));
            assert_memory_equal(&stats, &want_stats, sizeof(stats));
            bcpm_ternary_scan_free(&scan);
        }
    }
    bcpm_ternary_scan_free(&want_scan);
}

/* A stream without feeds hashes the whole file when finished. */
static void test_unfed_stream(void **state)
{
    struct fixture *f = *state;
    struct bcpm_digest_stream *stream;
    char want_xxh[BCPM_XXH128_HEX_SIZE], want_sha[BCPM_SHA256_HEX_SIZE];
    char xxh[BCPM_XXH128_HEX_SIZE], sha[BCPM_SHA256_HEX_SIZE];
    struct bcpm_digest_hex part;
    struct bcpm_error err;

    reference_digests(f->bytes, f->size, want_xxh, want_sha);
    assert_int_equal(bcpm_digest_stream_new(&stream, &f->catalog, 0, &err), 0);
    bcpm_digest_stream_finish(stream, xxh, sha, &part);
    assert_string_equal(xxh, want_xxh);
    assert_string_equal(sha, "");
    /* One file: its own digest is the stream's. */
    assert_string_equal(part.xxh3_128, want_xxh);
    assert_string_equal(part.sha256, "");
}

/* Two files are one stream in catalog order; feeds behind the cursor or out of range are ignored. */
static void test_two_files(void **state)
{
    struct fixture *f = *state;
    struct bcpm_file files[2] = {f->file, f->file};
    struct bcpm_catalog catalog = {0};
    struct bcpm_digest_stream *stream;
    char want_xxh[BCPM_XXH128_HEX_SIZE], want_sha[BCPM_SHA256_HEX_SIZE];
    char xxh[BCPM_XXH128_HEX_SIZE], sha[BCPM_SHA256_HEX_SIZE];
    struct bcpm_digest_hex parts[2];
    uint8_t *twice = malloc(2 * f->size);
    struct bcpm_error err;

    assert_non_null(twice);
    memcpy(twice, f->bytes, f->size);
    memcpy(twice + f->size, f->bytes, f->size);
    reference_digests(twice, 2 * f->size, want_xxh, want_sha);
    catalog.files = files;
    catalog.nfiles = 2;

    assert_int_equal(bcpm_digest_stream_new(&stream, &catalog, 1, &err), 0);
    bcpm_digest_stream_feed(stream, 0, 10, 1000);
    bcpm_digest_stream_feed(stream, 0, 500, 100);     /* already hashed */
    bcpm_digest_stream_feed(stream, 1, 7, 20);        /* the rest of file 0 first */
    bcpm_digest_stream_feed(stream, 0, 2000, 10);     /* an earlier file: ignored */
    bcpm_digest_stream_feed(stream, 1, f->size - 5, 1000); /* clamped to the file's end */
    bcpm_digest_stream_feed(stream, 2, 0, 10);        /* no such file */
    bcpm_digest_stream_finish(stream, xxh, sha, parts);
    assert_string_equal(xxh, want_xxh);
    assert_string_equal(sha, want_sha);

    /* Each file on its own, whatever order the feeds came in. */
    reference_digests(f->bytes, f->size, want_xxh, want_sha);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(parts[i].xxh3_128, want_xxh);
        assert_string_equal(parts[i].sha256, want_sha);
    }
    free(twice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_and_results),
        cmocka_unit_test(test_unfed_stream),
        cmocka_unit_test(test_two_files),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
