/* Probing a path and dispatching to the reader for its format. */
#include "format/readers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum bcpm_probe bcpm_probe_bytes(const uint8_t *data, uint64_t size)
{
    if (size >= 4 && memcmp(data, "PK\x03\x04", 4) == 0)
        return BCPM_PROBE_ZIP;
    /* An empty zip starts with its end record; a torch checkpoint never is empty,
     * but the zip reader gives the better message. */
    if (size >= 4 && memcmp(data, "PK\x05\x06", 4) == 0)
        return BCPM_PROBE_ZIP;
    if (size >= 2 && data[0] == 0x80 && data[1] >= 2 && data[1] <= 5)
        return BCPM_PROBE_LEGACY;
    if (size >= 9 && data[8] == '{')
        return BCPM_PROBE_SAFETENSORS;
    return BCPM_PROBE_UNKNOWN;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int bcpm_read_weights_file(struct bcpm_catalog *catalog, const char *path,
                           const struct bcpm_open_options *options, struct bcpm_error *err)
{
    const struct bcpm_map *map;
    enum bcpm_probe kind;
    uint32_t file;
    int rc;

    /* The format is fixed after probing; add the file first so that it is mapped once. */
    rc = bcpm_catalog_add_file(catalog, path, BCPM_FORMAT_SAFETENSORS, &file, err);
    if (rc != 0)
        return rc;
    map = catalog->files[file].map;
    kind = bcpm_probe_bytes(map->data, map->size);

    switch (kind) {
    case BCPM_PROBE_ZIP:
        catalog->files[file].format = BCPM_FORMAT_TORCH_ZIP;
        return bcpm_read_torch_zip(catalog, file, options, err);
    case BCPM_PROBE_LEGACY:
        catalog->files[file].format = BCPM_FORMAT_TORCH_LEGACY;
        return bcpm_read_torch_legacy(catalog, file, options, err);
    case BCPM_PROBE_SAFETENSORS:
        return bcpm_read_safetensors(catalog, file, options, err);
    case BCPM_PROBE_UNKNOWN:
        break;
    }
    if (map->size == 0)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, NULL,
                              "file is empty, expected a PyTorch or safetensors checkpoint");
    return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, path, NULL,
                          "unknown format: expected a zip archive (PK), a pickle (0x80) "
                          "or a safetensors header, found first byte 0x%02x",
                          map->data[0]);
}

int bcpm_catalog_open(struct bcpm_catalog **out, const char *path,
                      const struct bcpm_open_options *options, struct bcpm_error *err)
{
    static const struct bcpm_open_options defaults;
    struct bcpm_catalog *catalog;
    struct stat st;
    int rc;

    *out = NULL;
    if (!options)
        options = &defaults;
    if (stat(path, &st) != 0)
        return bcpm_error_set(err, errno == ENOENT ? BCPM_ERR_NOT_FOUND : BCPM_ERR_IO, path,
                              NULL, "cannot open: %s", strerror(errno));

    catalog = bcpm_catalog_new(path);
    if (!catalog)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");

    if (S_ISDIR(st.st_mode))
        rc = bcpm_read_model_dir(catalog, path, options, err);
    else if (ends_with(path, ".index.json"))
        rc = bcpm_read_shard_index(catalog, path, options, err);
    else
        rc = bcpm_read_weights_file(catalog, path, options, err);

    if (rc == 0)
        rc = bcpm_catalog_finish(catalog, options->keep_prefix, err);
    if (rc != 0) {
        bcpm_catalog_free(catalog);
        return rc;
    }
    *out = catalog;
    return 0;
}
