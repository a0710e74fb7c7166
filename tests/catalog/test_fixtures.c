/*
 * Catalog tests against PyTorch. Each test opens one checkpoint of
 * fixtures/good/ and compares its catalog with the F.expected.json that
 * tools/gen_fixtures.py wrote beside it from torch.load: names, dtypes,
 * shapes, strides, storage offsets, files, byte offsets and storage sharing.
 * It then reads every element through bcpm_tensor_load_f64 and compares the
 * float64 sum with PyTorch's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>

#include "tensor/catalog.h"

/* Every fixture the generator writes; paths relative to $BCPM_FIXTURES/good. */
static const char *const fixture_paths[] = {
    "torch-zip-dtypes.pt",
    "torch-legacy-dtypes.pt",
    "torch-zip-tied.pt",
    "torch-zip-views.pt",
    "torch-zip-views-bf16.pt",
    "torch-legacy-views.pt",
    "torch-zip-shapes.pt",
    "mp_rank_00_model_states.pt",
    "lightning.ckpt",
    "single.safetensors",
    "sharded-safetensors/model.safetensors.index.json",
    "sharded-bin/pytorch_model.bin.index.json",
    "model-dir",
};

#define FIXTURE_COUNT (sizeof(fixture_paths) / sizeof(fixture_paths[0]))

/* snprintf that fails the test instead of silently cutting a path short. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static void format_path(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size)
        fail_msg("path too long: %s...", buf);
}

static const char *good_dir(void)
{
    static char path[4096];
    const char *root = getenv("BCPM_FIXTURES");

    format_path(path, sizeof(path), "%s/good", root ? root : "fixtures");
    return path;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* True when path is file_name or ends in "/file_name". */
static int names_file(const char *path, const char *file_name)
{
    size_t n = strlen(path), m = strlen(file_name);

    if (strcmp(path, file_name) == 0)
        return 1;
    return n > m && path[n - m - 1] == '/' && strcmp(path + n - m, file_name) == 0;
}

static const char *string_member(const json_t *object, const char *key)
{
    const json_t *value = json_object_get(object, key);

    return json_is_string(value) ? json_string_value(value) : NULL;
}

static json_int_t integer_member(const json_t *object, const char *key)
{
    return json_integer_value(json_object_get(object, key));
}

static json_t *load_expected(const char *fixture)
{
    char path[4096];
    json_error_t error;
    json_t *expected;

    format_path(path, sizeof(path), "%s/%s.expected.json", good_dir(), fixture);
    expected = json_load_file(path, 0, &error);
    if (!expected)
        fail_msg("%s: cannot load: %s (line %d)", path, error.text, error.line);
    return expected;
}

/* Catalog-wide facts: tensor and file counts, nesting, prefix, config. */
static void check_catalog_fields(const char *fixture, const struct bcpm_catalog *catalog,
                                 const json_t *expected)
{
    const json_t *files = json_object_get(expected, "files");
    const char *nested = string_member(expected, "nested_key");
    const char *prefix = string_member(expected, "stripped_prefix");
    const char *config = string_member(expected, "config");
    size_t index;
    const json_t *file;

    if (catalog->findings.count != 0)
        fail_msg("%s: expected no security findings, found %zu (first: %s)", fixture,
                 catalog->findings.count, catalog->findings.items[0].rule);
    if (catalog->ntensors != json_array_size(json_object_get(expected, "tensors")))
        fail_msg("%s: expected %zu tensors, found %zu", fixture,
                 json_array_size(json_object_get(expected, "tensors")), catalog->ntensors);

    if (catalog->nfiles != json_array_size(files))
        fail_msg("%s: expected %zu files, found %zu", fixture, json_array_size(files),
                 catalog->nfiles);
    json_array_foreach(files, index, file) {
        int found = 0;

        for (size_t f = 0; f < catalog->nfiles; f++)
            found |= names_file(catalog->files[f].path, json_string_value(file));
        if (!found)
            fail_msg("%s: file %s is not in the catalog", fixture, json_string_value(file));
    }

    if ((nested == NULL) != (catalog->nested_key == NULL) ||
        (nested && strcmp(nested, catalog->nested_key) != 0))
        fail_msg("%s: expected nested key %s, found %s", fixture, nested ? nested : "(none)",
                 catalog->nested_key ? catalog->nested_key : "(none)");
    if ((prefix == NULL) != (catalog->stripped_prefix == NULL) ||
        (prefix && strcmp(prefix, catalog->stripped_prefix) != 0))
        fail_msg("%s: expected stripped prefix %s, found %s", fixture,
                 prefix ? prefix : "(none)",
                 catalog->stripped_prefix ? catalog->stripped_prefix : "(none)");
    assert_int_equal(catalog->stripped_count, integer_member(expected, "stripped_count"));
    if (config && (!catalog->config_path || !names_file(catalog->config_path, config)))
        fail_msg("%s: expected config %s, found %s", fixture, config,
                 catalog->config_path ? catalog->config_path : "(none)");
}

/* Names, dtype, shape, strides, storage offset, file and byte range of one tensor. */
static void check_layout(const char *fixture, const struct bcpm_catalog *catalog,
                         const struct bcpm_tensor *t, const json_t *want)
{
    const json_t *shape = json_object_get(want, "shape");
    const json_t *stride = json_object_get(want, "stride");
    const char *stored = string_member(want, "stored_name");
    const char *dtype = string_member(want, "dtype");

    if (strcmp(t->stored_name, stored) != 0)
        fail_msg("%s: '%s': expected stored name '%s', found '%s'", fixture, t->name, stored,
                 t->stored_name);
    if (strcmp(bcpm_dtype_name(t->dtype), dtype) != 0)
        fail_msg("%s: '%s': expected dtype %s, found %s", fixture, t->name, dtype,
                 bcpm_dtype_name(t->dtype));
    if ((size_t)t->ndim != json_array_size(shape))
        fail_msg("%s: '%s': expected %zu dimensions, found %d", fixture, t->name,
                 json_array_size(shape), t->ndim);
    for (int d = 0; d < t->ndim; d++) {
        json_int_t size = json_integer_value(json_array_get(shape, (size_t)d));
        json_int_t step = json_integer_value(json_array_get(stride, (size_t)d));

        if (t->shape[d] != size || t->strides[d] != step)
            fail_msg("%s: '%s': dimension %d: expected size %lld stride %lld, "
                     "found size %lld stride %lld",
                     fixture, t->name, d, (long long)size, (long long)step,
                     (long long)t->shape[d], (long long)t->strides[d]);
    }
    if (t->storage_offset != integer_member(want, "storage_offset"))
        fail_msg("%s: '%s': expected storage offset %lld, found %lld", fixture, t->name,
                 (long long)integer_member(want, "storage_offset"),
                 (long long)t->storage_offset);
    if (!names_file(catalog->files[t->file].path, string_member(want, "file")))
        fail_msg("%s: '%s': expected file %s, found %s", fixture, t->name,
                 string_member(want, "file"), catalog->files[t->file].path);
    if (t->byte_offset != (uint64_t)integer_member(want, "byte_offset"))
        fail_msg("%s: '%s': expected byte offset %lld, found %llu", fixture, t->name,
                 (long long)integer_member(want, "byte_offset"),
                 (unsigned long long)t->byte_offset);
    if (t->nbytes != (uint64_t)integer_member(want, "nbytes"))
        fail_msg("%s: '%s': expected %lld bytes, found %llu", fixture, t->name,
                 (long long)integer_member(want, "nbytes"), (unsigned long long)t->nbytes);
    if (t->numel != (uint64_t)integer_member(want, "numel"))
        fail_msg("%s: '%s': expected %lld elements, found %llu", fixture, t->name,
                 (long long)integer_member(want, "numel"), (unsigned long long)t->numel);
}

/*
 * Sum every element as double and compare with PyTorch's t.double().sum().
 * Integer and bool sums of these small fixtures are exact in double, so they
 * must match exactly. Float sums need a tolerance because PyTorch adds in a
 * different order (vectorized partial sums) than this serial loop, and the
 * rounding of each addition depends on the order. Every element converts to
 * double exactly, so each sum is within n * 2^-53 * sum(|x|) of the true one.
 * With at most 1024 elements per fixture tensor that is below 1.2e-13 of the
 * sum of absolute values. The tolerance of 1e-12 covers both sums, while a
 * misread element (wrong offset, stride or dtype) usually moves the sum by
 * far more.
 */
static void check_values(const char *fixture, const struct bcpm_tensor *t, const json_t *want)
{
    double expected = json_real_value(json_object_get(want, "sum"));
    double magnitude = json_real_value(json_object_get(want, "abs_sum"));
    double sum = 0.0;

    if (json_is_integer(json_object_get(want, "sum")))
        expected = (double)json_integer_value(json_object_get(want, "sum"));
    if (json_is_integer(json_object_get(want, "abs_sum")))
        magnitude = (double)json_integer_value(json_object_get(want, "abs_sum"));

    for (uint64_t i = 0; i < t->numel; i++)
        sum += bcpm_tensor_load_f64(t, i);

    if (!bcpm_dtype_is_float(t->dtype)) {
        if (sum != expected)
            fail_msg("%s: '%s': expected sum %.17g, found %.17g", fixture, t->name, expected,
                     sum);
        return;
    }
    if (!(fabs(sum - expected) <= 1e-12 * magnitude))
        fail_msg("%s: '%s': expected sum %.17g (abs sum %.17g), found %.17g", fixture,
                 t->name, expected, magnitude, sum);
}

/* The other tensors on t's storage are exactly the expected shared_with names. */
static void check_sharing(const char *fixture, const struct bcpm_catalog *catalog, size_t i,
                          const json_t *want)
{
    const json_t *shared = json_object_get(want, "shared_with");
    const struct bcpm_tensor *t = &catalog->tensors[i];
    size_t count = bcpm_catalog_shared_with(catalog, i, NULL, 0);
    size_t index;
    const json_t *name;

    if (count != json_array_size(shared))
        fail_msg("%s: '%s': expected %zu tensors on the same storage, found %zu", fixture,
                 t->name, json_array_size(shared), count);
    json_array_foreach(shared, index, name) {
        const struct bcpm_tensor *other = bcpm_catalog_find(catalog, json_string_value(name));

        if (!other || other->storage != t->storage)
            fail_msg("%s: '%s': expected to share its storage with '%s'", fixture, t->name,
                     json_string_value(name));
    }
}

static void check_fixture(void **state)
{
    const char *fixture = *state;
    json_t *expected = load_expected(fixture);
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    char path[4096], message[2 * BCPM_ERROR_TEXT_MAX];
    size_t index;
    const json_t *want;

    format_path(path, sizeof(path), "%s/%s", good_dir(), fixture);
    bcpm_error_clear(&err);
    if (bcpm_catalog_open(&catalog, path, NULL, &err) != 0)
        fail_msg("%s: open failed: %s", fixture, bcpm_error_format(&err, message,
                                                                    sizeof(message)));

    check_catalog_fields(fixture, catalog, expected);
    json_array_foreach(json_object_get(expected, "tensors"), index, want) {
        const char *name = string_member(want, "name");
        const struct bcpm_tensor *t = bcpm_catalog_find(catalog, name);

        if (!t)
            fail_msg("%s: tensor '%s' is missing from the catalog", fixture, name);
        check_layout(fixture, catalog, t, want);
        check_values(fixture, t, want);
        check_sharing(fixture, catalog, (size_t)(t - catalog->tensors), want);
    }

    bcpm_catalog_free(catalog);
    json_decref(expected);
}

/* True when fixture_paths lists the fixture whose expected file is relative. */
static int fixture_listed(const char *relative)
{
    size_t length = strlen(relative) - strlen(".expected.json");

    for (size_t i = 0; i < FIXTURE_COUNT; i++) {
        if (strlen(fixture_paths[i]) == length &&
            strncmp(fixture_paths[i], relative, length) == 0)
            return 1;
    }
    return 0;
}

/* Fail on the first *.expected.json under good_dir()/relative_dir without a table entry. */
static void check_folder_listed(const char *relative_dir, int depth)
{
    char path[4096];
    DIR *dir;
    struct dirent *entry;

    format_path(path, sizeof(path), "%s%s%s", good_dir(), *relative_dir ? "/" : "", relative_dir);
    dir = opendir(path);
    if (!dir)
        fail_msg("cannot open folder %s", path);
    while ((entry = readdir(dir)) != NULL) {
        char relative[4096], full[8192];
        struct stat st;

        if (entry->d_name[0] == '.')
            continue;
        format_path(relative, sizeof(relative), "%s%s%s", relative_dir, *relative_dir ? "/" : "",
                 entry->d_name);
        format_path(full, sizeof(full), "%s/%s", good_dir(), relative);
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 4)
            check_folder_listed(relative, depth + 1);
        else if (ends_with(relative, ".expected.json") && !fixture_listed(relative))
            fail_msg("%s has no entry in fixture_paths of %s", relative, __FILE__);
    }
    closedir(dir);
}

/* A fixture the generator adds must be added to fixture_paths too, or it goes untested. */
static void every_fixture_listed(void **state)
{
    (void)state;
    check_folder_listed("", 0);
}

int main(void)
{
    struct CMUnitTest tests[FIXTURE_COUNT + 1];

    for (size_t i = 0; i < FIXTURE_COUNT; i++) {
        struct CMUnitTest test = cmocka_unit_test_prestate(check_fixture,
                                                           (void *)fixture_paths[i]);

        test.name = fixture_paths[i];
        tests[i] = test;
    }
    tests[FIXTURE_COUNT] = (struct CMUnitTest)cmocka_unit_test(every_fixture_listed);
    return _cmocka_run_group_tests("catalog_fixtures", tests, FIXTURE_COUNT + 1, NULL, NULL);
}
