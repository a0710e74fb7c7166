/*
 * The JSON form of a catalog for bitcpm-ls --format json:
 * {"files": [...], "tensors": [{"name", "dtype", "shape", "strides",
 * "storage_offset", "file", "byte_offset", "nbytes", "shared_with"}],
 * "findings": [...]}, with safetensors-style dtype names.
 */
#include "cli/ls.h"

#include <stdint.h>

/* Append value to array, taking the reference; returns -1 if either is NULL or on failure. */
static int append(json_t *array, json_t *value)
{
    if (!array || !value) {
        json_decref(value);
        return -1;
    }
    return json_array_append_new(array, value);
}

/* Set key of object, taking the reference of value. */
static int set(json_t *object, const char *key, json_t *value)
{
    if (!value)
        return -1;
    return json_object_set_new(object, key, value);
}

/* JSON integers are signed 64-bit; file offsets and sizes of a mapped file fit. */
static json_t *unsigned_integer(uint64_t value)
{
    if (value > INT64_MAX)
        return NULL;
    return json_integer((json_int_t)value);
}

static json_t *dims(const int64_t *values, int ndim)
{
    json_t *array = json_array();

    for (int d = 0; array && d < ndim; d++) {
        if (append(array, json_integer(values[d])) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *shared_names(const struct bcpm_catalog *catalog,
                            const struct ls_sharing *sharing, size_t i)
{
    json_t *array = json_array();
    size_t count;
    const size_t *group = ls_sharing_group(sharing, catalog, i, &count);

    for (size_t k = 0; array && k < count; k++) {
        if (group[k] == i)
            continue;
        if (append(array, json_string(catalog->tensors[group[k]].name)) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *tensor_json(const struct bcpm_catalog *catalog,
                           const struct ls_sharing *sharing, size_t i)
{
    const struct bcpm_tensor *t = &catalog->tensors[i];
    json_t *object = json_object();
    int rc = 0;

    if (!object)
        return NULL;
    rc |= set(object, "name", json_string(t->name));
    rc |= set(object, "dtype", json_string(bcpm_dtype_name(t->dtype)));
    rc |= set(object, "shape", dims(t->shape, t->ndim));
    rc |= set(object, "strides", dims(t->strides, t->ndim));
    rc |= set(object, "storage_offset", json_integer(t->storage_offset));
    rc |= set(object, "file", json_string(catalog->files[t->file].path));
    rc |= set(object, "byte_offset", unsigned_integer(t->byte_offset));
    rc |= set(object, "nbytes", unsigned_integer(t->nbytes));
    rc |= set(object, "shared_with", shared_names(catalog, sharing, i));
    if (rc != 0) {
        json_decref(object);
        return NULL;
    }
    return object;
}

/* A JSON string, or null for a missing one. */
static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *finding_json(const struct bcpm_finding *f)
{
    json_t *object = json_object();
    int rc = 0;

    if (!object)
        return NULL;
    rc |= set(object, "rule", json_string(f->rule));
    rc |= set(object, "severity", json_string(bcpm_severity_name(f->severity)));
    rc |= set(object, "file", string_or_null(f->file));
    rc |= set(object, "entry", string_or_null(f->tensor));
    rc |= set(object, "offset", f->has_offset ? unsigned_integer(f->offset) : json_null());
    rc |= set(object, "message", string_or_null(f->message));
    if (rc != 0) {
        json_decref(object);
        return NULL;
    }
    return object;
}

json_t *ls_catalog_json(const struct bcpm_catalog *catalog, const struct ls_sharing *sharing)
{
    json_t *root = json_object();
    json_t *files = json_array(), *tensors = json_array(), *findings = json_array();
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < catalog->nfiles; i++)
        rc = append(files, json_string(catalog->files[i].path));
    for (size_t i = 0; rc == 0 && i < catalog->ntensors; i++)
        rc = append(tensors, tensor_json(catalog, sharing, i));
    for (size_t i = 0; rc == 0 && i < catalog->findings.count; i++)
        rc = append(findings, finding_json(&catalog->findings.items[i]));

    if (rc != 0 || !root || !files || !tensors || !findings) {
        json_decref(root);
        json_decref(files);
        json_decref(tensors);
        json_decref(findings);
        return NULL;
    }
    rc |= set(root, "files", files);
    rc |= set(root, "tensors", tensors);
    rc |= set(root, "findings", findings);
    if (rc != 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}
