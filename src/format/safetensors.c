/*
 * safetensors reader.
 *
 * Layout (integers little-endian):
 *
 *   offset 0      u64   N, the header length in bytes
 *   offset 8      N     UTF-8 JSON object, possibly padded with trailing spaces:
 *                       "__metadata__": {string: string}            (optional)
 *                       NAME: {"dtype": "BF16", "shape": [d0, d1, ...],
 *                              "data_offsets": [begin, end]}         (one per tensor)
 *   offset 8 + N        the data buffer; [begin, end) is relative to its start
 *
 * The checks are those of the reference reader (huggingface/safetensors,
 * safetensors/src/tensor.rs: SafeTensors::read_metadata and
 * Metadata::validate). N is at most 100,000,000 and lies inside the file, and
 * names are unique. Sorted by offset, the entries cover the buffer from 0 with
 * no gap or overlap. end - begin equals elements times element size, computed
 * with overflow checks, and the buffer ends exactly at the end of the file.
 * Each tensor becomes one storage over its own byte range, with row-major
 * contiguous strides; nothing is copied.
 */
#include "format/readers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/json.h"
#include "io/checked.h"

/*
 * The reference reader's MAX_HEADER_SIZE. A larger header is rejected before
 * it is parsed, so a hostile length cannot make the JSON parser allocate
 * gigabytes. NOTE: a header near the cap can still contain about a million entries,
 * and reading one with a million one-byte tensors took 8.5 s and 1.5 GB of
 * memory (jansson's tree plus the catalog) on a 2-core x86-64 machine.
 */
#define HEADER_MAX_BYTES 100000000ULL

#define HEADER_LENGTH_BYTES 8

/* One header entry, validated on its own; names and shapes stay in the JSON tree. */
struct entry {
    const char *name;
    const json_t *shape;
    enum bcpm_dtype dtype;
    uint64_t begin, end;
    size_t position; /* order in the header, to keep sorting stable */
};

/* Context of one file, so that messages can name it. */
struct reader {
    struct bcpm_catalog *catalog;
    uint32_t file;
    const char *path;
    const uint8_t *data;
    uint64_t size;
    uint64_t header_length;
    struct bcpm_error *err;
};

static uint64_t load_u64_le(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int read_header_length(struct reader *r)
{
    uint64_t n;

    if (r->size < HEADER_LENGTH_BYTES)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, NULL,
                              "file is %" PRIu64 " bytes, too short for the 8-byte header "
                              "length",
                              r->size);

    n = load_u64_le(r->data);
    if (n > HEADER_MAX_BYTES) {
        bcpm_error_set(r->err, BCPM_ERR_LIMIT, r->path, NULL,
                       "header length %" PRIu64 " exceeds the maximum of %llu bytes", n,
                       HEADER_MAX_BYTES);
        bcpm_error_at(r->err, 0);
        return BCPM_ERR_LIMIT;
    }
    if (n > r->size - HEADER_LENGTH_BYTES) {
        bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, NULL,
                       "header length %" PRIu64 " runs past the end of the file (size %" PRIu64
                       ")",
                       n, r->size);
        bcpm_error_at(r->err, 0);
        return BCPM_ERR_CORRUPT;
    }
    r->header_length = n;
    return 0;
}

/* Format shape as "[2, 3]" into buf for messages. */
static const char *format_shape(const json_t *shape, char *buf, size_t size)
{
    size_t used = 0, i;
    const json_t *dim;

    snprintf(buf, size, "[");
    used = strlen(buf);
    json_array_foreach(shape, i, dim) {
        int n = snprintf(buf + used, size - used, "%s%" JSON_INTEGER_FORMAT, i ? ", " : "",
                         json_integer_value(dim));
        if (n < 0 || (size_t)n >= size - used)
            return buf;
        used += (size_t)n;
    }
    snprintf(buf + used, size - used, "]");
    return buf;
}

static int check_metadata(struct reader *r, const json_t *metadata)
{
    const char *key;
    const json_t *value;

    /* The reference reads an Option<HashMap<String, String>>, so null means absent. */
    if (json_is_null(metadata))
        return 0;
    if (!json_is_object(metadata))
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, "__metadata__",
                              "expected an object of strings, found %s",
                              bcpm_json_type_name(metadata));
    json_object_foreach((json_t *)metadata, key, value) {
        if (!json_is_string(value))
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, "__metadata__",
                                  "expected string values, found %s for key '%s'",
                                  bcpm_json_type_name(value), key);
    }
    return 0;
}

static int parse_dtype(struct reader *r, const char *name, const json_t *value,
                       enum bcpm_dtype *out)
{
    if (!json_is_string(value))
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                              "expected \"dtype\" to be a string, found %s",
                              value ? bcpm_json_type_name(value) : "no \"dtype\"");
    if (bcpm_dtype_from_name(json_string_value(value), out) != 0)
        return bcpm_error_set(r->err, BCPM_ERR_UNSUPPORTED, r->path, name,
                              "unsupported dtype %s: expected one of BOOL, U8, I8, I16, U16, "
                              "I32, U32, I64, U64, F16, BF16, F32, F64",
                              json_string_value(value));
    return 0;
}

static int parse_shape(struct reader *r, const char *name, const json_t *shape)
{
    size_t i;
    const json_t *dim;
    uint64_t size;

    if (!json_is_array(shape))
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                              "expected \"shape\" to be an array of sizes, found %s",
                              shape ? bcpm_json_type_name(shape) : "no \"shape\"");
    if (json_array_size(shape) > BCPM_MAX_DIMS)
        return bcpm_error_set(r->err, BCPM_ERR_UNSUPPORTED, r->path, name,
                              "expected at most %d dimensions, found %zu", BCPM_MAX_DIMS,
                              json_array_size(shape));
    json_array_foreach(shape, i, dim) {
        if (json_is_integer(dim) && json_integer_value(dim) < 0)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                                  "expected sizes >= 0 in \"shape\", found %" JSON_INTEGER_FORMAT
                                  " in dimension %zu",
                                  json_integer_value(dim), i);
        if (bcpm_json_get_u64(dim, &size) != 0)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                                  "expected integer sizes in \"shape\", found %s in dimension "
                                  "%zu",
                                  bcpm_json_type_name(dim), i);
    }
    return 0;
}

static int parse_offsets(struct reader *r, const char *name, const json_t *offsets,
                         struct entry *e)
{
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        bcpm_json_get_u64(json_array_get(offsets, 0), &e->begin) != 0 ||
        bcpm_json_get_u64(json_array_get(offsets, 1), &e->end) != 0)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                              "expected \"data_offsets\" to be [begin, end] with integers >= 0");
    if (e->end < e->begin)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                              "expected data_offsets [begin, end] with begin <= end, found "
                              "[%" PRIu64 ", %" PRIu64 "]",
                              e->begin, e->end);
    return 0;
}

/*
 * Compare the entry's byte range with its shape and dtype. The element count
 * is multiplied left to right with overflow checks, as the reference does.
 */
static int check_byte_size(struct reader *r, const struct entry *e)
{
    uint64_t numel = 1, nbytes, element_size = bcpm_dtype_size(e->dtype);
    char shape[256];
    size_t i;
    const json_t *dim;

    json_array_foreach(e->shape, i, dim) {
        if (bcpm_mul_u64(numel, (uint64_t)json_integer_value(dim), &numel) != 0)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                                  "shape %s has an element count that overflows 64 bits",
                                  format_shape(e->shape, shape, sizeof(shape)));
    }
    if (bcpm_mul_u64(numel, element_size, &nbytes) != 0)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                              "shape %s of %s has a byte size that overflows 64 bits",
                              format_shape(e->shape, shape, sizeof(shape)),
                              bcpm_dtype_name(e->dtype));
    if (e->end - e->begin != nbytes)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                              "expected %" PRIu64 " bytes for shape %s of %s (%" PRIu64
                              " elements of %" PRIu64 " bytes), found data_offsets [%" PRIu64
                              ", %" PRIu64 ") holding %" PRIu64 " bytes",
                              nbytes, format_shape(e->shape, shape, sizeof(shape)),
                              bcpm_dtype_name(e->dtype), numel, element_size, e->begin, e->end,
                              e->end - e->begin);
    return 0;
}

static int parse_entry(struct reader *r, const char *name, const json_t *value,
                       struct entry *e)
{
    int rc;

    if (!json_is_object(value))
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                              "expected an object with dtype, shape and data_offsets, "
                              "found %s",
                              bcpm_json_type_name(value));
    e->name = name;
    e->shape = json_object_get(value, "shape");

    rc = parse_dtype(r, name, json_object_get(value, "dtype"), &e->dtype);
    if (rc == 0)
        rc = parse_shape(r, name, e->shape);
    if (rc == 0)
        rc = parse_offsets(r, name, json_object_get(value, "data_offsets"), e);
    if (rc == 0)
        rc = check_byte_size(r, e);
    return rc;
}

static int compare_entries(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->position < y->position ? -1 : x->position > y->position;
}

/*
 * Walk the entries in offset order: each must begin where the previous one
 * ended, and the last must end where the file ends.
 */
static int check_layout(struct reader *r, const struct entry *entries, size_t count)
{
    uint64_t expected = 0;
    uint64_t buffer_start = HEADER_LENGTH_BYTES + r->header_length;
    uint64_t buffer_size = r->size - buffer_start;
    const struct entry *previous = NULL;

    for (size_t i = 0; i < count; i++) {
        const struct entry *e = &entries[i];

        if (e->begin < expected && previous && e->begin == previous->begin &&
            e->end == previous->end)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                                  "data_offsets [%" PRIu64 ", %" PRIu64
                                  ") alias tensor '%s', which has the same range",
                                  e->begin, e->end, previous->name);
        if (e->begin < expected)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                                  "data_offsets [%" PRIu64 ", %" PRIu64
                                  ") overlap tensor '%s' at [%" PRIu64 ", %" PRIu64
                                  "): expected begin %" PRIu64,
                                  e->begin, e->end, previous->name, previous->begin,
                                  previous->end, expected);
        if (e->begin > expected)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                                  "gap before this tensor: expected data_offsets to begin at "
                                  "%" PRIu64 "%s%s%s, found %" PRIu64,
                                  expected, previous ? " (the end of '" : "",
                                  previous ? previous->name : "", previous ? "')" : "",
                                  e->begin);
        expected = e->end;
        previous = e;
    }

    if (expected > buffer_size)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, previous->name,
                              "data_offsets end at %" PRIu64 ", past the end of the data "
                              "buffer: the file has %" PRIu64 " bytes after the header",
                              expected, buffer_size);
    if (expected < buffer_size) {
        bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, NULL,
                       "%" PRIu64 " trailing bytes after the data buffer: expected the file "
                       "to end at byte %" PRIu64 ", found %" PRIu64 " bytes",
                       buffer_size - expected, buffer_start + expected, r->size);
        bcpm_error_at(r->err, buffer_start + expected);
        return BCPM_ERR_CORRUPT;
    }
    return 0;
}

static int add_tensor(struct reader *r, const struct entry *e)
{
    struct bcpm_storage storage = {0};
    struct bcpm_tensor tensor = {0};
    uint64_t stride = 1;
    char shape[256];
    uint32_t index;
    int rc;

    storage.file = r->file;
    storage.dtype = e->dtype;
    storage.byte_offset = HEADER_LENGTH_BYTES + r->header_length + e->begin;
    storage.nbytes = e->end - e->begin;
    rc = bcpm_catalog_add_storage(r->catalog, &storage, &index, r->err);
    if (rc != 0)
        return rc;

    tensor.name = (char *)e->name;
    tensor.dtype = e->dtype;
    tensor.ndim = (int)json_array_size(e->shape);
    tensor.storage = index;
    /*
     * PyTorch's contiguous strides treat a size of 0 as 1 (zeros(3, 0) has
     * strides (1, 1)). The byte size check already passed, so only a shape
     * with a zero dimension can overflow here.
     */
    for (int d = tensor.ndim - 1; d >= 0; d--) {
        uint64_t size = (uint64_t)json_integer_value(json_array_get(e->shape, (size_t)d));

        tensor.shape[d] = (int64_t)size;
        tensor.strides[d] = (int64_t)stride;
        if (bcpm_mul_u64(stride, size ? size : 1, &stride) != 0 || stride > (uint64_t)INT64_MAX)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, e->name,
                                  "shape %s has strides that overflow 64 bits",
                                  format_shape(e->shape, shape, sizeof(shape)));
    }
    return bcpm_catalog_add_tensor(r->catalog, &tensor, r->err);
}

/* Collect and check every tensor entry of the header into *out (sorted by offset). */
static int read_entries(struct reader *r, json_t *header, struct entry **out, size_t *count)
{
    struct entry *entries;
    const char *name;
    json_t *value;
    size_t n = 0;
    int rc = 0;

    *out = NULL;
    *count = 0;
    entries = calloc(json_object_size(header) + 1, sizeof(*entries));
    if (!entries)
        return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");

    json_object_foreach(header, name, value) {
        if (strcmp(name, "__metadata__") == 0)
            rc = check_metadata(r, value);
        else {
            entries[n].position = n;
            rc = parse_entry(r, name, value, &entries[n]);
            n++;
        }
        if (rc != 0) {
            free(entries);
            return rc;
        }
    }

    qsort(entries, n, sizeof(*entries), compare_entries);
    rc = check_layout(r, entries, n);
    if (rc != 0) {
        free(entries);
        return rc;
    }
    *out = entries;
    *count = n;
    return 0;
}

int bcpm_read_safetensors(struct bcpm_catalog *catalog, uint32_t file,
                          const struct bcpm_open_options *options, struct bcpm_error *err)
{
    struct reader r = {0};
    struct entry *entries;
    size_t count;
    json_t *header;
    int rc;

    (void)options;
    r.catalog = catalog;
    r.file = file;
    r.path = catalog->files[file].path;
    r.data = catalog->files[file].map->data;
    r.size = catalog->files[file].map->size;
    r.err = err;
    catalog->files[file].format = BCPM_FORMAT_SAFETENSORS;

    rc = read_header_length(&r);
    if (rc != 0)
        return rc;

    rc = bcpm_json_parse_object(&header, r.data + HEADER_LENGTH_BYTES,
                                (size_t)r.header_length, r.path, "safetensors header", err);
    if (rc != 0)
        return rc;

    rc = read_entries(&r, header, &entries, &count);
    if (rc != 0) {
        json_decref(header);
        return rc;
    }

    /* The catalog lists the tensors in file order, which is what kernels stream best. */
    for (size_t i = 0; i < count && rc == 0; i++)
        rc = add_tensor(&r, &entries[i]);

    free(entries);
    json_decref(header);
    return rc;
}
