/*
 * A zip checkpoint over 4 GiB, where zip64 offsets and sizes are needed.
 *
 * The test assembles the archive in the build folder around a committed
 * data.pkl (fixtures/torch/sparse_zip64.pkl, written by tools/gen_hostile_zip.py):
 * storage '0' is 4 GiB + 1 KiB of zeros left as a hole in a sparse file, and
 * storage '1' follows it, so its local header offset only fits in a zip64
 * extra field. On a file system without sparse files the hole takes real disk
 * space, so the test skips when less than 8 GiB are free.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <zlib.h>

#include "tensor/catalog.h"

#define MIN_FREE_BYTES (8ULL << 30)

struct entry {
    const char *name;
    const uint8_t *data; /* NULL: a hole of size zero bytes */
    uint64_t size;
    uint64_t offset;     /* local header offset, filled while writing */
    uint32_t crc;
};

static void put16(FILE *f, unsigned v)
{
    fputc((int)(v & 0xff), f);
    fputc((int)((v >> 8) & 0xff), f);
}

static void put32(FILE *f, uint32_t v)
{
    put16(f, v & 0xffff);
    put16(f, v >> 16);
}

static void put64(FILE *f, uint64_t v)
{
    put32(f, (uint32_t)v);
    put32(f, (uint32_t)(v >> 32));
}

/* Local header with zero CRC and 0xffffffff sizes (flag bit 3), as torch.save writes large entries. */
static void write_local(FILE *f, struct entry *e)
{
    size_t n = strlen(e->name);

    e->offset = (uint64_t)ftello(f);
    put32(f, 0x04034b50);
    put16(f, 45);
    put16(f, 0x0808);
    put16(f, 0);
    put16(f, 0);
    put16(f, 0x21);
    put32(f, 0);
    put32(f, 0xffffffffu);
    put32(f, 0xffffffffu);
    put16(f, (unsigned)n);
    put16(f, 20);
    fwrite(e->name, 1, n, f);
    put16(f, 1);
    put16(f, 16);
    put64(f, e->size);
    put64(f, e->size);
    if (e->data) {
        fwrite(e->data, 1, e->size, f);
        e->crc = (uint32_t)crc32(0L, e->data, (uInt)e->size);
    } else {
        fseeko(f, (off_t)e->size, SEEK_CUR);
        e->crc = 0;
    }
}

static void write_central(FILE *f, const struct entry *e)
{
    size_t n = strlen(e->name);

    put32(f, 0x02014b50);
    put16(f, 45);
    put16(f, 45);
    put16(f, 0x0808);
    put16(f, 0);
    put16(f, 0);
    put16(f, 0x21);
    put32(f, e->crc);
    put32(f, 0xffffffffu);
    put32(f, 0xffffffffu);
    put16(f, (unsigned)n);
    put16(f, 28);
    put16(f, 0);
    put16(f, 0);
    put16(f, 0);
    put32(f, 0);
    put32(f, 0xffffffffu);
    fwrite(e->name, 1, n, f);
    put16(f, 1);
    put16(f, 24);
    put64(f, e->size);
    put64(f, e->size);
    put64(f, e->offset);
}

static void write_archive(const char *path, struct entry *entries, size_t count)
{
    FILE *f = fopen(path, "wb");
    uint64_t directory, end64;

    assert_non_null(f);
    for (size_t i = 0; i < count; i++)
        write_local(f, &entries[i]);
    directory = (uint64_t)ftello(f);
    for (size_t i = 0; i < count; i++)
        write_central(f, &entries[i]);
    end64 = (uint64_t)ftello(f);

    put32(f, 0x06064b50);
    put64(f, 44);
    put16(f, 45);
    put16(f, 45);
    put32(f, 0);
    put32(f, 0);
    put64(f, count);
    put64(f, count);
    put64(f, end64 - directory);
    put64(f, directory);

    put32(f, 0x07064b50);
    put32(f, 0);
    put64(f, end64);
    put32(f, 1);

    put32(f, 0x06054b50);
    put16(f, 0);
    put16(f, 0);
    put16(f, 0xffff);
    put16(f, 0xffff);
    put32(f, 0xffffffffu);
    put32(f, 0xffffffffu);
    put16(f, 0);
    assert_int_equal(fclose(f), 0);
}

static uint8_t *read_all(const char *path, uint64_t *size)
{
    FILE *f = fopen(path, "rb");
    uint8_t *bytes;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = (uint64_t)ftell(f);
    rewind(f);
    bytes = malloc(*size);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, *size, f), *size);
    fclose(f);
    return bytes;
}

static void torch_zip64_over_4gib(void **state)
{
    const char *fixtures = getenv("BCPM_FIXTURES");
    const char *build = getenv("BCPM_BUILD");
    char pkl_path[4096], json_path[4096], path[4096];
    static const uint8_t version[] = "3\n";
    uint8_t after_bytes[16];
    struct bcpm_catalog *catalog = NULL;
    const struct bcpm_tensor *big, *after;
    struct bcpm_error err;
    struct statvfs fs;
    json_error_t json_error;
    json_t *expected, *values;
    uint64_t pkl_size, big_numel;
    uint8_t *pkl;
    char line[2048];
    int rc;

    (void)state;
    snprintf(pkl_path, sizeof(pkl_path), "%s/torch/sparse_zip64.pkl", fixtures ? fixtures : "fixtures");
    snprintf(json_path, sizeof(json_path), "%s/torch/sparse_zip64.json", fixtures ? fixtures : "fixtures");
    snprintf(path, sizeof(path), "%s/torch_sparse_zip64.pt", build ? build : ".");
    if (statvfs(build ? build : ".", &fs) != 0 ||
        (uint64_t)fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES) {
        fprintf(stderr, "skipped: less than 8 GiB free in the build folder for a sparse 4 GiB file\n");
        skip();
    }

    expected = json_load_file(json_path, 0, &json_error);
    assert_non_null(expected);
    big_numel = (uint64_t)json_integer_value(json_object_get(expected, "big_numel"));
    values = json_object_get(expected, "after_values");
    pkl = read_all(pkl_path, &pkl_size);
    for (int i = 0; i < 16; i++)
        after_bytes[i] = (uint8_t)i;

    {
        struct entry entries[] = {
            {"sparse/data.pkl", pkl, pkl_size, 0, 0},
            {"sparse/data/0", NULL, big_numel * 4, 0, 0},
            {"sparse/data/1", after_bytes, sizeof(after_bytes), 0, 0},
            {"sparse/version", version, 2, 0, 0},
        };

        write_archive(path, entries, 4);
        bcpm_error_clear(&err);
        rc = bcpm_catalog_open(&catalog, path, NULL, &err);
        if (rc != 0)
            fail_msg("%s", bcpm_error_format(&err, line, sizeof(line)));

        big = bcpm_catalog_find(catalog, "big");
        after = bcpm_catalog_find(catalog, "after");
        assert_non_null(big);
        assert_non_null(after);
        /* The generator gave "big" big_numel / 1024 rows of 1024, on a storage of big_numel. */
        assert_int_equal(big->shape[0], big_numel / 1024);
        assert_int_equal(big->shape[1], 1024);
        assert_int_equal(big->numel, big_numel / 1024 * 1024);
        assert_int_equal(catalog->storages[big->storage].nbytes, big_numel * 4);
        assert_int_equal(after->numel, json_array_size(values));
        /* data/1's data follows its 30-byte header, 13-byte name and 20-byte zip64 extra. */
        assert_int_equal(after->byte_offset, entries[2].offset + 30 + 13 + 20);
        assert_true(after->byte_offset > (4ULL << 30));
        for (size_t i = 0; i < json_array_size(values); i++)
            assert_true(bcpm_tensor_load_f64(after, i) ==
                        json_real_value(json_array_get(values, i)));
    }

    bcpm_catalog_free(catalog);
    remove(path);
    free(pkl);
    json_decref(expected);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(torch_zip64_over_4gib),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
