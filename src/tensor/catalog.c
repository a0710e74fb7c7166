/* Tensor catalog construction, validation and lookup; see catalog.h. */
#include "tensor/catalog.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"

struct bcpm_catalog *bcpm_catalog_new(const char *path)
{
    struct bcpm_catalog *catalog = calloc(1, sizeof(*catalog));

    if (!catalog)
        return NULL;
    catalog->path = strdup(path);
    if (!catalog->path) {
        free(catalog);
        return NULL;
    }
    return catalog;
}

void bcpm_catalog_free(struct bcpm_catalog *catalog)
{
    if (!catalog)
        return;
    for (size_t i = 0; i < catalog->ntensors; i++) {
        if (catalog->tensors[i].stored_name != catalog->tensors[i].name)
            free(catalog->tensors[i].stored_name);
        free(catalog->tensors[i].name);
    }
    for (size_t i = 0; i < catalog->nstorages; i++) {
        free(catalog->storages[i].key);
        free(catalog->storages[i].owned);
    }
    for (size_t i = 0; i < catalog->nfiles; i++) {
        free(catalog->files[i].path);
        bcpm_map_close(catalog->files[i].map);
    }
    bcpm_findings_clear(&catalog->findings);
    free(catalog->tensors);
    free(catalog->storages);
    free(catalog->files);
    free(catalog->index_slots);
    free(catalog->path);
    free(catalog->config_path);
    free(catalog->nested_key);
    free(catalog->stripped_prefix);
    free(catalog);
}

/* Grow *items so that one more element of size bytes fits. */
static int reserve(void **items, size_t *capacity, size_t count, size_t size)
{
    size_t grown;
    void *p;

    if (count < *capacity)
        return 0;
    grown = *capacity ? *capacity * 2 : 64;
    if (grown > SIZE_MAX / size)
        return -1;
    p = realloc(*items, grown * size);
    if (!p)
        return -1;
    *items = p;
    *capacity = grown;
    return 0;
}

int bcpm_catalog_add_file(struct bcpm_catalog *catalog, const char *path,
                          enum bcpm_format format, uint32_t *index, struct bcpm_error *err)
{
    struct bcpm_map *map;
    struct bcpm_file *file;
    int rc;

    if (catalog->nfiles >= UINT32_MAX)
        return bcpm_error_set(err, BCPM_ERR_LIMIT, path, NULL, "too many files");
    if (reserve((void **)&catalog->files, &catalog->capacity_files, catalog->nfiles,
                sizeof(*catalog->files)) != 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");

    rc = bcpm_map_open(&map, path, err);
    if (rc != 0)
        return rc;

    file = &catalog->files[catalog->nfiles];
    file->path = strdup(path);
    if (!file->path) {
        bcpm_map_close(map);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }
    file->format = format;
    file->map = map;
    *index = (uint32_t)catalog->nfiles++;
    return 0;
}

int bcpm_catalog_add_storage(struct bcpm_catalog *catalog, const struct bcpm_storage *storage,
                             uint32_t *index, struct bcpm_error *err)
{
    const struct bcpm_file *file;
    struct bcpm_storage *slot;

    if (storage->file >= catalog->nfiles)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, catalog->path, storage->key,
                              "storage refers to file %u of %zu", storage->file,
                              catalog->nfiles);
    file = &catalog->files[storage->file];

    if (!storage->owned && !bcpm_range_ok(storage->byte_offset, storage->nbytes,
                                          file->map->size)) {
        bcpm_error_set(err, BCPM_ERR_CORRUPT, file->path, storage->key,
                       "storage of %" PRIu64 " bytes at offset %" PRIu64
                       " runs past the end of the file (%" PRIu64 " bytes)",
                       storage->nbytes, storage->byte_offset, file->map->size);
        return BCPM_ERR_CORRUPT;
    }
    if (catalog->nstorages >= UINT32_MAX)
        return bcpm_error_set(err, BCPM_ERR_LIMIT, file->path, storage->key,
                              "too many storages");
    if (reserve((void **)&catalog->storages, &catalog->capacity_storages, catalog->nstorages,
                sizeof(*catalog->storages)) != 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, file->path, storage->key, "out of memory");

    slot = &catalog->storages[catalog->nstorages];
    *slot = *storage;
    slot->key = NULL;
    if (storage->key) {
        slot->key = strdup(storage->key);
        if (!slot->key)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, file->path, storage->key,
                                  "out of memory");
    }
    if (storage->owned)
        slot->data = storage->owned;
    else
        slot->data = file->map->data ? file->map->data + storage->byte_offset : NULL;
    *index = (uint32_t)catalog->nstorages++;
    return 0;
}

/* Fill numel, the addressed extent and contiguity; -1 on overflow. */
static int measure_tensor(struct bcpm_tensor *t, uint64_t element_size, uint64_t *end_bytes)
{
    uint64_t numel = 1, last = (uint64_t)t->storage_offset, expected = 1;

    t->contiguous = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        uint64_t size = (uint64_t)t->shape[d], step;

        if (bcpm_mul_u64(numel, size, &numel) != 0)
            return -1;
        if (size > 1 && (uint64_t)t->strides[d] != expected)
            t->contiguous = 0;
        if (bcpm_mul_u64(expected, size, &expected) != 0)
            return -1;
        if (size == 0)
            continue;
        if (bcpm_mul_u64(size - 1, (uint64_t)t->strides[d], &step) != 0 ||
            bcpm_add_u64(last, step, &last) != 0)
            return -1;
    }
    t->numel = numel;
    /* PyTorch calls every empty tensor contiguous, whatever its strides. */
    if (numel == 0)
        t->contiguous = 1;

    if (bcpm_mul_u64(numel, element_size, &t->nbytes) != 0)
        return -1;
    if (numel == 0) {
        t->nbytes = 0;
        *end_bytes = 0;
        return 0;
    }
    /* The extent runs from the first element to one past the last one addressed. */
    if (bcpm_add_u64(last, 1, &last) != 0 || bcpm_mul_u64(last, element_size, end_bytes) != 0)
        return -1;
    t->nbytes = *end_bytes - (uint64_t)t->storage_offset * element_size;
    return 0;
}

int bcpm_catalog_add_tensor(struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                            struct bcpm_error *err)
{
    const struct bcpm_storage *storage;
    const struct bcpm_file *file;
    struct bcpm_tensor t = *tensor;
    uint64_t element_size, end_bytes;
    const char *path;

    if (tensor->storage >= catalog->nstorages)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, catalog->path, tensor->name,
                              "tensor refers to storage %u of %zu", tensor->storage,
                              catalog->nstorages);
    storage = &catalog->storages[tensor->storage];
    file = &catalog->files[storage->file];
    path = file->path;

    if (t.ndim < 0 || t.ndim > BCPM_MAX_DIMS)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, path, tensor->name,
                              "expected at most %d dimensions, found %d", BCPM_MAX_DIMS,
                              t.ndim);
    if ((unsigned)t.dtype >= BCPM_DTYPE_COUNT)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, path, tensor->name,
                              "unknown dtype %d", (int)t.dtype);
    if (t.dtype != storage->dtype)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, tensor->name,
                              "tensor dtype %s differs from its storage's dtype %s",
                              bcpm_dtype_name(t.dtype), bcpm_dtype_name(storage->dtype));
    if (t.storage_offset < 0)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, tensor->name,
                              "expected a storage offset >= 0, found %" PRId64,
                              t.storage_offset);
    for (int d = 0; d < t.ndim; d++) {
        if (t.shape[d] < 0 || t.strides[d] < 0)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, tensor->name,
                                  "expected sizes and strides >= 0, found size %" PRId64
                                  " stride %" PRId64 " in dimension %d",
                                  t.shape[d], t.strides[d], d);
    }

    element_size = bcpm_dtype_size(t.dtype);
    if (measure_tensor(&t, element_size, &end_bytes) != 0)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, tensor->name,
                              "shape and strides give a byte size that overflows 64 bits");
    if (end_bytes > storage->nbytes)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, tensor->name,
                              "tensor extends past its storage%s%s%s: needs %" PRIu64
                              " bytes, the storage has %" PRIu64,
                              storage->key ? " '" : "", storage->key ? storage->key : "",
                              storage->key ? "'" : "", end_bytes, storage->nbytes);

    if (reserve((void **)&catalog->tensors, &catalog->capacity_tensors, catalog->ntensors,
                sizeof(*catalog->tensors)) != 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, tensor->name, "out of memory");

    t.file = storage->file;
    t.byte_offset = storage->byte_offset + (uint64_t)t.storage_offset * element_size;
    t.data = storage->data ? storage->data + (uint64_t)t.storage_offset * element_size : NULL;
    t.name = strdup(tensor->name);
    t.stored_name = tensor->stored_name ? strdup(tensor->stored_name) : t.name;
    if (!t.name || !t.stored_name) {
        free(t.name);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, tensor->name, "out of memory");
    }
    catalog->tensors[catalog->ntensors++] = t;
    return 0;
}

/* FNV-1a: short, well-distributed for tensor names, and fine for a private table. */
static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    while (*s) {
        h ^= (uint8_t)*s++;
        h *= 1099511628211ULL;
    }
    return h;
}

static int strip_prefixes(struct bcpm_catalog *catalog, struct bcpm_error *err)
{
    static const char prefix[] = "module.";
    size_t n = sizeof(prefix) - 1;

    for (size_t i = 0; i < catalog->ntensors; i++) {
        struct bcpm_tensor *t = &catalog->tensors[i];
        char *stripped;

        if (strncmp(t->name, prefix, n) != 0)
            continue;
        stripped = strdup(t->name + n);
        if (!stripped)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, catalog->path, t->name, "out of memory");
        /* The unstripped string stays on as stored_name. */
        if (t->stored_name != t->name)
            free(t->name);
        t->name = stripped;
        catalog->stripped_count++;
    }
    if (catalog->stripped_count && !catalog->stripped_prefix) {
        catalog->stripped_prefix = strdup(prefix);
        if (!catalog->stripped_prefix)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, catalog->path, NULL, "out of memory");
    }
    return 0;
}

static int build_index(struct bcpm_catalog *catalog, struct bcpm_error *err)
{
    size_t size = 16;

    while (size < catalog->ntensors * 2)
        size *= 2;
    catalog->index_slots = malloc(size * sizeof(*catalog->index_slots));
    if (!catalog->index_slots)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, catalog->path, NULL, "out of memory");
    memset(catalog->index_slots, 0xff, size * sizeof(*catalog->index_slots));
    catalog->index_size = size;

    for (size_t i = 0; i < catalog->ntensors; i++) {
        const struct bcpm_tensor *t = &catalog->tensors[i];
        size_t slot = (size_t)(hash_name(t->name) & (size - 1));

        while (catalog->index_slots[slot] != UINT32_MAX) {
            const struct bcpm_tensor *other = &catalog->tensors[catalog->index_slots[slot]];
            if (strcmp(other->name, t->name) == 0)
                return bcpm_error_set(err, BCPM_ERR_CORRUPT,
                                      catalog->files[t->file].path, t->name,
                                      "duplicate tensor name (also stored as '%s' in %s)",
                                      other->stored_name, catalog->files[other->file].path);
            slot = (slot + 1) & (size - 1);
        }
        catalog->index_slots[slot] = (uint32_t)i;
    }
    return 0;
}

int bcpm_catalog_finish(struct bcpm_catalog *catalog, int keep_prefix, struct bcpm_error *err)
{
    int rc;

    if (!keep_prefix) {
        rc = strip_prefixes(catalog, err);
        if (rc != 0)
            return rc;
    }
    return build_index(catalog, err);
}

const struct bcpm_tensor *bcpm_catalog_find(const struct bcpm_catalog *catalog,
                                            const char *name)
{
    size_t slot;

    if (!catalog->index_slots)
        return NULL;
    slot = (size_t)(hash_name(name) & (catalog->index_size - 1));
    while (catalog->index_slots[slot] != UINT32_MAX) {
        const struct bcpm_tensor *t = &catalog->tensors[catalog->index_slots[slot]];
        if (strcmp(t->name, name) == 0)
            return t;
        slot = (slot + 1) & (catalog->index_size - 1);
    }
    return NULL;
}

size_t bcpm_catalog_shared_with(const struct bcpm_catalog *catalog, size_t i,
                                size_t *out, size_t max)
{
    size_t count = 0;

    for (size_t j = 0; j < catalog->ntensors; j++) {
        if (j == i || catalog->tensors[j].storage != catalog->tensors[i].storage)
            continue;
        if (count < max)
            out[count] = j;
        count++;
    }
    return count;
}

uint64_t bcpm_tensor_element_offset(const struct bcpm_tensor *tensor, uint64_t linear_index)
{
    uint64_t offset = 0;

    if (tensor->contiguous)
        return linear_index * bcpm_dtype_size(tensor->dtype);
    for (int d = tensor->ndim - 1; d >= 0; d--) {
        uint64_t size = (uint64_t)tensor->shape[d];
        offset += (linear_index % size) * (uint64_t)tensor->strides[d];
        linear_index /= size;
    }
    return offset * bcpm_dtype_size(tensor->dtype);
}

double bcpm_tensor_load_f64(const struct bcpm_tensor *tensor, uint64_t linear_index)
{
    uint64_t offset = bcpm_tensor_element_offset(tensor, linear_index);
    return bcpm_dtype_load_f64(tensor->dtype, tensor->data + offset, 0);
}

void bcpm_tensor_matrix_shape(const struct bcpm_tensor *tensor, uint64_t *rows,
                              uint64_t *columns)
{
    uint64_t r = 1;

    if (tensor->ndim == 0) {
        *rows = 1;
        *columns = 1;
        return;
    }
    for (int d = 0; d < tensor->ndim - 1; d++)
        r *= (uint64_t)tensor->shape[d];
    *rows = r;
    *columns = (uint64_t)tensor->shape[tensor->ndim - 1];
}
