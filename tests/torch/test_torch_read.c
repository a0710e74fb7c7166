/*
 * The torch readers on valid files written by torch.save (zip and legacy),
 * checked against fixtures/torch/manifest.json, which records what PyTorch
 * reported for each tensor (tools/gen_hostile_zip.py writes both).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/zip.h"
#include "tensor/catalog.h"

static json_t *manifest;

static const char *fixture(const char *name)
{
    static char path[4096];
    const char *dir = getenv("BCPM_FIXTURES");

    snprintf(path, sizeof(path), "%s/torch/%s", dir ? dir : "fixtures", name);
    return path;
}

static int load_manifest(void **state)
{
    json_error_t error;

    (void)state;
    manifest = json_load_file(fixture("manifest.json"), 0, &error);
    if (!manifest)
        fprintf(stderr, "manifest.json: %s\n", error.text);
    return manifest ? 0 : -1;
}

static int free_manifest(void **state)
{
    (void)state;
    json_decref(manifest);
    return 0;
}

/* The catalog tensor whose key in the file is name (before "module." stripping). */
static const struct bcpm_tensor *find_stored(const struct bcpm_catalog *catalog, const char *name)
{
    for (size_t i = 0; i < catalog->ntensors; i++) {
        if (strcmp(catalog->tensors[i].stored_name, name) == 0)
            return &catalog->tensors[i];
    }
    return NULL;
}

static void check_tensor(const struct bcpm_tensor *tensor, json_t *expected)
{
    json_t *shape = json_object_get(expected, "shape");
    json_t *stride = json_object_get(expected, "stride");
    json_t *values = json_object_get(expected, "values");
    double sum = 0.0, expected_sum = json_real_value(json_object_get(expected, "sum"));

    assert_string_equal(bcpm_dtype_name(tensor->dtype),
                        json_string_value(json_object_get(expected, "dtype")));
    assert_int_equal(tensor->ndim, json_array_size(shape));
    for (size_t d = 0; d < json_array_size(shape); d++) {
        assert_int_equal(tensor->shape[d], json_integer_value(json_array_get(shape, d)));
        assert_int_equal(tensor->strides[d], json_integer_value(json_array_get(stride, d)));
    }
    assert_int_equal(tensor->storage_offset,
                     json_integer_value(json_object_get(expected, "storage_offset")));
    assert_int_equal(tensor->numel, json_array_size(values));

    for (size_t i = 0; i < json_array_size(values); i++) {
        json_t *value = json_array_get(values, i);
        double want = json_is_integer(value) ? (double)json_integer_value(value)
                                             : json_real_value(value);
        double got = bcpm_tensor_load_f64(tensor, i);

        if (got != want)
            fail_msg("%s element %zu: read %.17g, PyTorch wrote %.17g", tensor->name, i, got,
                     want);
        sum += got;
    }
    /* PyTorch sums in another order; 1e-12 relative covers float64 rounding of these sizes. */
    assert_true(fabs(sum - expected_sum) <= 1e-12 * fmax(1.0, fabs(expected_sum)));
}

/* Tensors share a catalog storage exactly when PyTorch gave them one storage. */
static void check_sharing(const struct bcpm_catalog *catalog, json_t *tensors)
{
    size_t count = json_array_size(tensors);

    for (size_t i = 0; i < count; i++) {
        json_t *a = json_array_get(tensors, i);
        const struct bcpm_tensor *ta = find_stored(catalog, json_string_value(json_object_get(a, "name")));

        for (size_t j = 0; j < count; j++) {
            json_t *b = json_array_get(tensors, j);
            const struct bcpm_tensor *tb =
                find_stored(catalog, json_string_value(json_object_get(b, "name")));
            int same_group = json_integer_value(json_object_get(a, "storage_group")) ==
                             json_integer_value(json_object_get(b, "storage_group"));

            assert_int_equal(ta->storage == tb->storage, same_group);
        }
    }
}

static void check_file(const char *name)
{
    json_t *expected = json_object_get(manifest, name);
    json_t *tensors = json_object_get(expected, "tensors");
    json_t *nested = json_object_get(expected, "nested_key");
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    char line[2048];
    int rc;

    assert_non_null(expected);
    bcpm_error_clear(&err);
    rc = bcpm_catalog_open(&catalog, fixture(name), NULL, &err);
    if (rc != 0)
        fail_msg("%s", bcpm_error_format(&err, line, sizeof(line)));

    assert_int_equal(catalog->ntensors, json_array_size(tensors));
    assert_int_equal(catalog->ignored_entries,
                     json_integer_value(json_object_get(expected, "ignored_entries")));
    if (json_is_string(nested)) {
        assert_non_null(catalog->nested_key);
        assert_string_equal(catalog->nested_key, json_string_value(nested));
    } else {
        assert_null(catalog->nested_key);
    }
    assert_int_equal(catalog->findings.count, 0);

    for (size_t i = 0; i < json_array_size(tensors); i++) {
        json_t *t = json_array_get(tensors, i);
        const char *tensor_name = json_string_value(json_object_get(t, "name"));
        const struct bcpm_tensor *tensor = find_stored(catalog, tensor_name);

        if (!tensor)
            fail_msg("%s: tensor '%s' missing from the catalog", name, tensor_name);
        check_tensor(tensor, t);
    }
    check_sharing(catalog, tensors);
    bcpm_catalog_free(catalog);
}

static void torch_zip_basic(void **state) { (void)state; check_file("basic.pt"); }
static void torch_legacy_basic(void **state) { (void)state; check_file("basic_legacy.pt"); }
static void torch_zip_module_metadata(void **state) { (void)state; check_file("module.pt"); }
static void torch_zip_nested(void **state) { (void)state; check_file("nested.pt"); }
static void torch_legacy_nested(void **state) { (void)state; check_file("nested_legacy.pt"); }
static void torch_zip_renamed_top(void **state) { (void)state; check_file("renamed_top.pt"); }
static void torch_zip_zip64(void **state) { (void)state; check_file("zip64.pt"); }
static void torch_zip_deflated(void **state) { (void)state; check_file("deflated.pt"); }
static void torch_legacy_views(void **state) { (void)state; check_file("legacy_views.pt"); }

/* The nested DeepSpeed names lose their "module." prefix, and keep it as stored_name. */
static void torch_nested_prefix_stripped(void **state)
{
    struct bcpm_catalog *catalog = NULL;
    const struct bcpm_tensor *tensor;
    struct bcpm_error err;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_catalog_open(&catalog, fixture("nested.pt"), NULL, &err), 0);
    tensor = bcpm_catalog_find(catalog, "layer.weight");
    assert_non_null(tensor);
    assert_string_equal(tensor->stored_name, "module.layer.weight");
    assert_int_equal(catalog->stripped_count, 2);
    bcpm_catalog_free(catalog);
}

/* Stored entries point into the map; deflated ones are owned copies with the same bytes. */
static void zip_stored_and_deflated_agree(void **state)
{
    struct bcpm_map *stored_map = NULL, *deflated_map = NULL;
    struct bcpm_zip *stored = NULL, *deflated = NULL;
    struct bcpm_error err;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_map_open(&stored_map, fixture("basic.pt"), &err), 0);
    assert_int_equal(bcpm_map_open(&deflated_map, fixture("deflated.pt"), &err), 0);
    assert_int_equal(bcpm_zip_open(&stored, stored_map, &err), 0);
    assert_int_equal(bcpm_zip_open(&deflated, deflated_map, &err), 0);
    assert_int_equal(stored->count, deflated->count);

    for (size_t i = 0; i < stored->count; i++) {
        const struct bcpm_zip_entry *a = &stored->entries[i];
        const struct bcpm_zip_entry *b = bcpm_zip_find(deflated, a->name);
        const uint8_t *da, *db;
        uint8_t *oa, *ob;

        assert_non_null(b);
        assert_int_equal(a->method, BCPM_ZIP_METHOD_STORED);
        assert_int_equal(b->method, BCPM_ZIP_METHOD_DEFLATED);
        assert_int_equal(a->uncompressed_size, b->uncompressed_size);
        assert_int_equal(a->crc32, b->crc32);
        assert_int_equal(bcpm_zip_read(stored, a, 1, &da, &oa, &err), 0);
        assert_int_equal(bcpm_zip_read(deflated, b, 0, &db, &ob, &err), 0);
        assert_null(oa);
        assert_ptr_equal(da, stored_map->data + a->data_offset);
        assert_non_null(ob);
        assert_memory_equal(da, db, a->uncompressed_size);
        free(ob);
    }
    bcpm_zip_close(stored);
    bcpm_zip_close(deflated);
    bcpm_map_close(stored_map);
    bcpm_map_close(deflated_map);
}

/*
 * torch.save pads every local header so that data starts on a 64-byte boundary,
 * and the zip64 fixture puts every size and offset in zip64 extra fields.
 */
static void zip_zip64_fields(void **state)
{
    struct bcpm_map *map = NULL;
    struct bcpm_zip *zip = NULL;
    struct bcpm_error err;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_map_open(&map, fixture("zip64.pt"), &err), 0);
    assert_int_equal(bcpm_zip_open(&zip, map, &err), 0);
    assert_non_null(bcpm_zip_find(zip, "basic/data.pkl"));
    assert_non_null(bcpm_zip_find(zip, "basic/version"));
    assert_null(bcpm_zip_find(zip, "basic/data"));
    for (size_t i = 0; i < zip->count; i++) {
        assert_int_equal(zip->entries[i].data_offset % 64, 0);
        assert_true(zip->entries[i].header_offset < zip->entries[i].data_offset);
    }
    bcpm_zip_close(zip);
    bcpm_map_close(map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(torch_zip_basic),
        cmocka_unit_test(torch_legacy_basic),
        cmocka_unit_test(torch_zip_module_metadata),
        cmocka_unit_test(torch_zip_nested),
        cmocka_unit_test(torch_legacy_nested),
        cmocka_unit_test(torch_zip_renamed_top),
        cmocka_unit_test(torch_zip_zip64),
        cmocka_unit_test(torch_zip_deflated),
        cmocka_unit_test(torch_legacy_views),
        cmocka_unit_test(torch_nested_prefix_stripped),
        cmocka_unit_test(zip_stored_and_deflated_agree),
        cmocka_unit_test(zip_zip64_fields),
    };

    return cmocka_run_group_tests(tests, load_manifest, free_manifest);
}
