/*
 * The tensor catalog: every tensor of a checkpoint with its dtype, shape,
 * strides, storage offset, file and byte range, built by the readers in
 * src/format/ and consumed by everything downstream.
 *
 * Opening never copies tensor data. Storages point into memory-mapped files,
 * except entries a zip stored deflated, which are inflated into buffers the
 * catalog owns. Tensors that share a storage (a tied lm_head, views) carry the
 * same storage index.
 */
#ifndef BCPM_TENSOR_CATALOG_H
#define BCPM_TENSOR_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/finding.h"
#include "io/map.h"
#include "tensor/dtype.h"

/* PyTorch allows 64 dimensions, no checkpoint tensor comes near that. */
#define BCPM_MAX_DIMS 16

enum bcpm_format {
    BCPM_FORMAT_TORCH_ZIP,
    BCPM_FORMAT_TORCH_LEGACY,
    BCPM_FORMAT_SAFETENSORS,
};

struct bcpm_file {
    char *path;
    enum bcpm_format format;
    struct bcpm_map *map;
};

struct bcpm_storage {
    uint32_t file;          /* index into catalog->files */
    char *key;              /* zip "data/<key>" or legacy key; NULL for safetensors */
    enum bcpm_dtype dtype;
    uint64_t byte_offset;   /* where the storage starts in its file */
    uint64_t nbytes;
    const uint8_t *data;    /* start of the bytes (in the map or in owned) */
    uint8_t *owned;         /* inflated copy of a deflated entry, else NULL */
};

struct bcpm_tensor {
    char *name;             /* after unnesting and prefix stripping */
    char *stored_name;      /* the key as written in the file */
    enum bcpm_dtype dtype;
    int ndim;
    int64_t shape[BCPM_MAX_DIMS];
    int64_t strides[BCPM_MAX_DIMS]; /* in elements */
    int64_t storage_offset;         /* in elements */
    uint32_t storage;               /* index into catalog->storages */
    uint32_t file;                  /* index into catalog->files */
    uint64_t numel;
    uint64_t byte_offset;   /* file offset of the first element */
    uint64_t nbytes;        /* bytes from the first to one past the last addressed element */
    int contiguous;         /* row-major with no gaps */
    const uint8_t *data;    /* the first element */
};

struct bcpm_catalog {
    char *path;             /* what the user named: file, index or folder */
    char *config_path;      /* config.json found for a model folder or beside the weights, or NULL */
    char *nested_key;       /* "module", "model" or "state_dict" if the weights were nested */
    char *stripped_prefix;  /* "module." if stripped from names, else NULL */
    size_t stripped_count;  /* how many names lost the prefix */
    size_t ignored_entries; /* non-tensor entries skipped beside the weights */

    struct bcpm_file *files;
    size_t nfiles;
    struct bcpm_storage *storages;
    size_t nstorages;
    struct bcpm_tensor *tensors;
    size_t ntensors;

    struct bcpm_findings findings; /* raised while reading: security.* and format.* */

    /* private: name lookup built by bcpm_catalog_finish */
    uint32_t *index_slots;
    size_t index_size;
    size_t capacity_files, capacity_storages, capacity_tensors;
};

/* Resource limits for hostile pickles; zero fields take the defaults in pickle.h. */
struct bcpm_pickle_limits {
    uint64_t max_opcodes;
    uint64_t max_stack_depth;     /* values on the stack plus marks */
    uint64_t max_nesting;         /* containers inside containers */
    uint64_t max_memo;            /* memo entries */
    uint64_t max_container_items; /* items in one list, dict, tuple or set */
    uint64_t max_string_bytes;    /* bytes in one string or bytes object */
    uint64_t max_total_bytes;     /* memory of the value tree: values, strings, memo and key tables */
};

/* One allowed pickle global; name "*" allows every name in module. */
struct bcpm_global_rule {
    const char *module;
    const char *name;
};

struct bcpm_open_options {
    const struct bcpm_global_rule *allowed_globals; /* from the rule set, may be NULL */
    size_t nallowed_globals;
    struct bcpm_pickle_limits limits;
    int keep_prefix;          /* 1: do not strip "module." */
};

/*
 * Open path (a torch .bin/.pt, a safetensors file, a shard index, or a model
 * folder) and build its catalog. options may be NULL for defaults. On success
 * *out is owned by the caller (bcpm_catalog_free). Security findings (dangerous
 * or unknown pickle globals) do not fail the open: they are in (*out)->findings.
 */
int bcpm_catalog_open(struct bcpm_catalog **out, const char *path,
                      const struct bcpm_open_options *options, struct bcpm_error *err);

void bcpm_catalog_free(struct bcpm_catalog *catalog);

/* Find a tensor by name (after stripping), or NULL. */
const struct bcpm_tensor *bcpm_catalog_find(const struct bcpm_catalog *catalog,
                                            const char *name);

/* Byte offset of element linear_index (row-major over shape) from tensor->data. */
uint64_t bcpm_tensor_element_offset(const struct bcpm_tensor *tensor, uint64_t linear_index);

/* Element linear_index (row-major over shape) as double. */
double bcpm_tensor_load_f64(const struct bcpm_tensor *tensor, uint64_t linear_index);

/* Number of rows (product of all but the last dim) and columns (last dim). */
void bcpm_tensor_matrix_shape(const struct bcpm_tensor *tensor, uint64_t *rows,
                              uint64_t *columns);

/* ---- building a catalog: used by the readers in src/format/ ---- */

struct bcpm_catalog *bcpm_catalog_new(const char *path);

/* Map path and append it to the catalog; the file index goes to *index. */
int bcpm_catalog_add_file(struct bcpm_catalog *catalog, const char *path,
                          enum bcpm_format format, uint32_t *index, struct bcpm_error *err);

/*
 * Append a storage. The key is copied; owned passes to the catalog. The byte
 * range must lie inside the file unless owned is set.
 */
int bcpm_catalog_add_storage(struct bcpm_catalog *catalog, const struct bcpm_storage *storage,
                             uint32_t *index, struct bcpm_error *err);

/*
 * Append a tensor: name, stored_name (NULL means same as name), dtype, ndim,
 * shape, strides, storage_offset and storage are read from tensor; the rest is
 * derived here. Rejects negative sizes or strides, byte sizes that overflow
 * 64 bits, a tensor that extends past its storage, and a dtype that differs
 * from the storage's, each as BCPM_ERR_CORRUPT naming the file and tensor.
 */
int bcpm_catalog_add_tensor(struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                            struct bcpm_error *err);

/*
 * Strip "module." prefixes (unless keep_prefix), reject duplicate names,
 * and build the name lookup. Called once, after every reader is done.
 */
int bcpm_catalog_finish(struct bcpm_catalog *catalog, int keep_prefix, struct bcpm_error *err);

/* Indices of the other tensors that share tensor i's storage; returns the count. */
size_t bcpm_catalog_shared_with(const struct bcpm_catalog *catalog, size_t i,
                                size_t *out, size_t max);

#endif
