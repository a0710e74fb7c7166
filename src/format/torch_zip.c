/*
 * The reader for PyTorch zip checkpoints (torch.save since PyTorch 1.6).
 *
 * Archive layout: every entry sits under one top folder whose name is free
 * ("archive" in recent PyTorch, the file's stem in 1.x):
 *
 *   <top>/data.pkl      the pickled object, protocol 2
 *   <top>/data/<key>    one entry per storage: raw little-endian elements
 *   <top>/version       format version ("3")
 *   <top>/byteorder     "little" or "big" (PyTorch 2.1 and later)
 *
 * The top folder is taken from the first central directory entry, as
 * PyTorch's own reader does. Storage entries are read in place when stored and
 * inflated into catalog-owned buffers when deflated.
 */
#include "format/readers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/pickle.h"
#include "format/torch_state.h"
#include "format/zip.h"
#include "io/checked.h"

struct zip_reader {
    struct bcpm_catalog *catalog;
    uint32_t file;
    const char *path;
    struct bcpm_zip *zip;
    char *top;                      /* top folder name, without the slash */
    struct bcpm_torch_keymap seen;  /* storage key -> catalog storage index */
};

/* Build "<top>/<suffix>"; the caller frees it. */
static char *entry_name(const struct zip_reader *reader, const char *suffix)
{
    size_t size = strlen(reader->top) + 1 + strlen(suffix) + 1;
    char *name = malloc(size);

    if (name)
        snprintf(name, size, "%s/%s", reader->top, suffix);
    return name;
}

static int find_top_folder(struct zip_reader *reader, struct bcpm_error *err)
{
    const char *first, *slash;

    if (reader->zip->count == 0)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, NULL,
                              "zip archive has no entries, expected <top>/data.pkl and the "
                              "storages of a PyTorch checkpoint");
    first = reader->zip->entries[0].name;
    slash = strchr(first, '/');
    if (!slash || slash == first)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, first,
                              "expected the first entry inside a top folder (such as "
                              "'archive/data.pkl'), found no folder");
    reader->top = strndup(first, (size_t)(slash - first));
    if (!reader->top)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, NULL, "out of memory");
    return 0;
}

/* Reject big-endian archives: every reader downstream assumes little-endian elements. */
static int check_byteorder(const struct zip_reader *reader, struct bcpm_error *err)
{
    const struct bcpm_zip_entry *entry;
    const uint8_t *data;
    uint8_t *owned;
    char *name = entry_name(reader, "byteorder");
    int rc = 0;

    if (!name)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, NULL, "out of memory");
    entry = bcpm_zip_find(reader->zip, name);
    if (entry) {
        rc = bcpm_zip_read(reader->zip, entry, 1, &data, &owned, err);
        if (rc == 0 && !(entry->uncompressed_size == 6 && memcmp(data, "little", 6) == 0))
            rc = bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, reader->path, name,
                                "expected byte order 'little', found '%.*s'",
                                entry->uncompressed_size > 16 ? 16
                                                              : (int)entry->uncompressed_size,
                                (const char *)data);
        free(owned);
    }
    free(name);
    return rc;
}

/* Add the storage entry behind ref to the catalog, once per key. */
static int resolve_storage(void *context, const struct bcpm_torch_storage_ref *ref,
                           const char *tensor, uint32_t *index, struct bcpm_error *err)
{
    struct zip_reader *reader = context;
    const struct bcpm_zip_entry *entry;
    struct bcpm_storage storage;
    uint64_t known, nbytes;
    char suffix[BCPM_ERROR_NAME_MAX];
    char *name;
    int rc;

    if (bcpm_torch_keymap_get(&reader->seen, ref->key, &known)) {
        const struct bcpm_storage *previous = &reader->catalog->storages[known];

        if (previous->dtype != ref->dtype)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, tensor,
                                  "storage '%s' is read as %s here and as %s by an earlier "
                                  "tensor", ref->key, bcpm_dtype_name(ref->dtype),
                                  bcpm_dtype_name(previous->dtype));
        *index = (uint32_t)known;
        return 0;
    }

    snprintf(suffix, sizeof(suffix), "data/%s", ref->key);
    name = entry_name(reader, suffix);
    if (!name)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, tensor, "out of memory");
    entry = bcpm_zip_find(reader->zip, name);
    if (!entry) {
        rc = bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, tensor,
                            "storage key '%s' has no entry '%s' in the archive", ref->key,
                            name);
        free(name);
        return rc;
    }
    free(name);

    /* PyTorch builds a storage of numel elements from the entry, so the entry must hold them. */
    if (bcpm_mul_u64(ref->numel, bcpm_dtype_size(ref->dtype), &nbytes) != 0 ||
        nbytes > entry->uncompressed_size)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, tensor,
                              "storage '%s' declares %" PRIu64 " elements of %s, more than "
                              "its entry '%s' of %" PRIu64 " bytes holds", ref->key,
                              ref->numel, bcpm_dtype_name(ref->dtype), entry->name,
                              entry->uncompressed_size);

    memset(&storage, 0, sizeof(storage));
    storage.file = reader->file;
    storage.key = suffix;
    storage.dtype = ref->dtype;
    storage.byte_offset = entry->data_offset;
    storage.nbytes = nbytes;
    /*
     * NOTE: the CRC of a stored storage is not checked, because that would read
     * every byte of a checkpoint of many gigabytes just to list it.
     */
    rc = bcpm_zip_read(reader->zip, entry, 0, &storage.data, &storage.owned, err);
    if (rc == 0)
        rc = bcpm_catalog_add_storage(reader->catalog, &storage, index, err);
    else
        free(storage.owned);
    if (rc != 0)
        return rc;
    if (bcpm_torch_keymap_put(&reader->seen, ref->key, *index) < 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, tensor, "out of memory");
    return 0;
}

static int read_pickle(struct zip_reader *reader, const struct bcpm_open_options *options,
                       struct bcpm_error *err)
{
    const struct bcpm_zip_entry *entry;
    struct bcpm_pickle_input input;
    struct bcpm_torch_source source;
    struct bcpm_pickle *pickle = NULL;
    const uint8_t *data;
    uint8_t *owned = NULL;
    char *name = entry_name(reader, "data.pkl");
    int rc;

    if (!name)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, NULL, "out of memory");
    entry = bcpm_zip_find(reader->zip, name);
    if (!entry) {
        rc = bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, name,
                            "entry not found: a PyTorch zip checkpoint keeps its object in "
                            "<top>/data.pkl");
        free(name);
        return rc;
    }

    /* The pickle is small and decides everything else, so its CRC is always checked. */
    rc = bcpm_zip_read(reader->zip, entry, 1, &data, &owned, err);
    if (rc == 0) {
        memset(&input, 0, sizeof(input));
        input.data = data;
        input.size = entry->uncompressed_size;
        /* Offsets in a deflated pickle are relative to its inflated bytes. */
        input.base_offset = owned ? 0 : entry->data_offset;
        input.file = reader->path;
        input.entry = name;
        rc = bcpm_pickle_load(&pickle, &input, options, &reader->catalog->findings, err);
    }
    if (rc == 0) {
        source.path = reader->path;
        source.entry = name;
        rc = bcpm_torch_read_state(reader->catalog, bcpm_pickle_root(pickle), 0, &source,
                                   resolve_storage, reader, err);
    }
    bcpm_pickle_free(pickle);
    free(owned);
    free(name);
    return rc;
}

int bcpm_read_torch_zip(struct bcpm_catalog *catalog, uint32_t file,
                        const struct bcpm_open_options *options, struct bcpm_error *err)
{
    struct zip_reader reader;
    int rc;

    memset(&reader, 0, sizeof(reader));
    reader.catalog = catalog;
    reader.file = file;
    reader.path = catalog->files[file].path;

    rc = bcpm_zip_open(&reader.zip, catalog->files[file].map, err);
    if (rc == 0)
        rc = find_top_folder(&reader, err);
    if (rc == 0)
        rc = check_byteorder(&reader, err);
    if (rc == 0)
        rc = read_pickle(&reader, options, err);

    bcpm_torch_keymap_free(&reader.seen);
    free(reader.top);
    bcpm_zip_close(reader.zip);
    return rc;
}
