/*
 * Reading good safetensors fixtures: a single file, a two-shard set through
 * its index, and model folders. Expected values come from
 * fixtures/safetensors/manifest.json, written by
 * tools/gen_hostile_safetensors.py from what PyTorch reported for each tensor
 * (dtype, shape, strides, float64 sum) and where the writer put its bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>

#include "tensor/catalog.h"

static json_t *manifest;

static const char *fixtures(void)
{
    const char *dir = getenv("BCPM_FIXTURES");
    return dir ? dir : "fixtures";
}

static char *fixture_path(const char *relative)
{
    static char buf[4096];

    snprintf(buf, sizeof(buf), "%s/safetensors/%s", fixtures(), relative);
    return buf;
}

static int load_manifest(void **state)
{
    json_error_t error;

    (void)state;
    manifest = json_load_file(fixture_path("manifest.json"), 0, &error);
    if (!manifest)
        fprintf(stderr, "cannot read manifest: %s\n", error.text);
    return manifest ? 0 : -1;
}

static int free_manifest(void **state)
{
    (void)state;
    json_decref(manifest);
    return 0;
}

static struct bcpm_catalog *open_ok(const char *relative)
{
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    char line[2048];
    int rc;

    bcpm_error_clear(&err);
    rc = bcpm_catalog_open(&catalog, fixture_path(relative), NULL, &err);
    if (rc != 0)
        fprintf(stderr, "%s\n", bcpm_error_format(&err, line, sizeof(line)));
    assert_int_equal(rc, 0);
    assert_non_null(catalog);
    return catalog;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Compare every tensor the manifest lists for file_key with the catalog's. */
static size_t check_file(const struct bcpm_catalog *catalog, const char *file_key)
{
    const json_t *tensors = json_object_get(json_object_get(manifest, file_key), "tensors");
    const char *file_name = strrchr(file_key, '/') ? strrchr(file_key, '/') + 1 : file_key;
    const json_t *expected;
    size_t i;

    assert_non_null(tensors);
    json_array_foreach(tensors, i, expected) {
        const char *name = json_string_value(json_object_get(expected, "name"));
        const json_t *shape = json_object_get(expected, "shape");
        const json_t *strides = json_object_get(expected, "strides");
        const json_t *offsets = json_object_get(expected, "data_offsets");
        const struct bcpm_tensor *t = bcpm_catalog_find(catalog, name);
        const struct bcpm_storage *storage;
        double sum = 0, want;

        if (!t)
            fprintf(stderr, "tensor %s missing\n", name);
        assert_non_null(t);
        assert_true(ends_with(catalog->files[t->file].path, file_name));
        assert_int_equal(catalog->files[t->file].format, BCPM_FORMAT_SAFETENSORS);
        assert_string_equal(bcpm_dtype_name(t->dtype),
                            json_string_value(json_object_get(expected, "dtype")));

        assert_int_equal(t->ndim, (int)json_array_size(shape));
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
            assert_int_equal(t->strides[d],
                             json_integer_value(json_array_get(strides, (size_t)d)));
        }
        assert_int_equal(t->storage_offset, 0);
        /* NOTE: the catalog calls zeros(3, 0) non-contiguous, PyTorch calls it contiguous. */
        if (t->numel > 0)
            assert_true(t->contiguous);

        assert_int_equal(t->byte_offset,
                         json_integer_value(json_object_get(expected, "byte_offset")));
        assert_int_equal(t->nbytes, json_integer_value(json_object_get(expected, "nbytes")));
        assert_int_equal(t->nbytes, json_integer_value(json_array_get(offsets, 1)) -
                                        json_integer_value(json_array_get(offsets, 0)));

        /* Each safetensors tensor has a storage of its own, exactly its byte range. */
        storage = &catalog->storages[t->storage];
        assert_null(storage->key);
        assert_int_equal(storage->byte_offset, t->byte_offset);
        assert_int_equal(storage->nbytes, t->nbytes);
        assert_int_equal(bcpm_catalog_shared_with(catalog, (size_t)(t - catalog->tensors),
                                                  NULL, 0),
                         0);

        for (uint64_t k = 0; k < t->numel; k++)
            sum += bcpm_tensor_load_f64(t, k);
        want = json_real_value(json_object_get(expected, "sum"));
        if (json_is_integer(json_object_get(expected, "sum")))
            want = (double)json_integer_value(json_object_get(expected, "sum"));
        /* PyTorch may add in another order: allow the rounding of a few float64 additions. */
        assert_true(fabs(sum - want) <= 1e-12 * fmax(1.0, fabs(want)));
    }
    return json_array_size(tensors);
}

/* Tensors of one file appear in the catalog in the order of their bytes. */
static void check_file_order(const struct bcpm_catalog *catalog)
{
    for (size_t i = 1; i < catalog->ntensors; i++) {
        const struct bcpm_tensor *a = &catalog->tensors[i - 1], *b = &catalog->tensors[i];

        if (a->file == b->file)
            assert_true(a->byte_offset + a->nbytes == b->byte_offset);
    }
}

static void single_file_matches_pytorch(void **state)
{
    struct bcpm_catalog *catalog = open_ok("single.safetensors");

    (void)state;
    assert_int_equal(catalog->nfiles, 1);
    assert_int_equal(catalog->ntensors, check_file(catalog, "single.safetensors"));
    assert_null(catalog->config_path);
    assert_int_equal(catalog->findings.count, 0);
    check_file_order(catalog);

    /* The first tensor starts right after the padded header, the last ends at the file's end. */
    assert_int_equal(catalog->tensors[0].byte_offset % 8, 0);
    assert_int_equal(catalog->tensors[catalog->ntensors - 1].byte_offset +
                         catalog->tensors[catalog->ntensors - 1].nbytes,
                     catalog->files[0].map->size);
    bcpm_catalog_free(catalog);
}

static void check_sharded(struct bcpm_catalog *catalog)
{
    size_t n = check_file(catalog, "sharded/model-00001-of-00002.safetensors") +
               check_file(catalog, "sharded/model-00002-of-00002.safetensors");

    assert_int_equal(catalog->nfiles, 2);
    assert_int_equal(catalog->ntensors, n);
    assert_int_equal(catalog->findings.count, 0);
    check_file_order(catalog);
}

static void shard_index_matches_pytorch(void **state)
{
    struct bcpm_catalog *catalog = open_ok("sharded/model.safetensors.index.json");

    (void)state;
    check_sharded(catalog);
    assert_true(ends_with(catalog->path, "model.safetensors.index.json"));
    bcpm_catalog_free(catalog);
}

static void sharded_folder_reads_index(void **state)
{
    struct bcpm_catalog *catalog = open_ok("sharded");

    (void)state;
    check_sharded(catalog);
    assert_non_null(catalog->config_path);
    assert_true(ends_with(catalog->config_path, "sharded/config.json"));
    bcpm_catalog_free(catalog);
}

static void single_folder_reads_model(void **state)
{
    struct bcpm_catalog *catalog = open_ok("model_single/");

    (void)state;
    assert_int_equal(catalog->nfiles, 1);
    assert_true(ends_with(catalog->files[0].path, "model_single/model.safetensors"));
    assert_int_equal(catalog->ntensors, check_file(catalog, "model_single/model.safetensors"));
    assert_non_null(catalog->config_path);
    assert_true(ends_with(catalog->config_path, "model_single/config.json"));
    bcpm_catalog_free(catalog);
}

/* A folder with model.safetensors and pytorch_model.bin reads only the former. */
static void folder_prefers_safetensors(void **state)
{
    struct bcpm_catalog *catalog = open_ok("prefer_safetensors");

    (void)state;
    assert_int_equal(catalog->nfiles, 1);
    assert_true(ends_with(catalog->files[0].path, "prefer_safetensors/model.safetensors"));
    /* The same bytes as model_single/model.safetensors, so the same manifest applies. */
    assert_int_equal(catalog->ntensors, check_file(catalog, "model_single/model.safetensors"));
    assert_null(catalog->config_path);
    bcpm_catalog_free(catalog);
}

/* The shard index's total_size, written by the generator as PyTorch's byte sizes, adds up. */
static void index_total_size_matches(void **state)
{
    struct bcpm_catalog *catalog = open_ok("sharded/model.safetensors.index.json");
    json_int_t total = json_integer_value(json_object_get(
        json_object_get(manifest, "sharded/model.safetensors.index.json"), "total_size"));
    uint64_t sum = 0;

    (void)state;
    for (size_t i = 0; i < catalog->ntensors; i++)
        sum += catalog->tensors[i].nbytes;
    assert_true(total > 0);
    assert_int_equal(sum, total);
    bcpm_catalog_free(catalog);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(single_file_matches_pytorch),
        cmocka_unit_test(shard_index_matches_pytorch),
        cmocka_unit_test(sharded_folder_reads_index),
        cmocka_unit_test(single_folder_reads_model),
        cmocka_unit_test(folder_prefers_safetensors),
        cmocka_unit_test(index_total_size_matches),
    };

    return cmocka_run_group_tests_name("safetensors_read", tests, load_manifest, free_manifest);
}
