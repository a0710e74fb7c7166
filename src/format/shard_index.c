/*
 * Shard indexes: model.safetensors.index.json and pytorch_model.bin.index.json.
 *
 * The index is the JSON object written by transformers' save_pretrained:
 *
 *   {"metadata": {"total_size": BYTES, ...},
 *    "weight_map": {"tensor name": "shard file name", ...}}
 *
 * Shard names are paths relative to the index's folder. Absolute paths and
 * ".." components are rejected, so that an index cannot make the tool read
 * files outside that folder. Symbolic links are followed, because the hub's
 * download cache links every file of a snapshot to ../../blobs/. Each
 * distinct shard is read once with bcpm_read_weights_file (safetensors or
 * torch), and the weight map is then checked against the shards' tensors in
 * both directions.
 */
#include "format/readers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/json.h"
#include "io/checked.h"

/*
 * An index has one line of roughly 100 bytes per tensor, so an estimated
 * 30 KB for a 300-tensor model. The cap is the safetensors header cap, far
 * above any real index, and bounds what a hostile file can make the JSON
 * parser allocate.
 */
#define INDEX_MAX_BYTES 100000000ULL

struct shard {
    const char *name;   /* as written in the weight map */
    uint32_t file;      /* index into catalog->files once read */
};

struct named {
    const char *name;
    uint32_t file;
};

struct index_reader {
    struct bcpm_catalog *catalog;
    const char *path;
    char *dir;               /* folder of the index, owned */
    struct shard *shards;    /* distinct shard names, sorted */
    size_t nshards;
    size_t first_tensor;     /* catalog tensors before this index was read */
    size_t first_file;       /* catalog files before this index was read */
    struct named *by_name;   /* the shards' tensors sorted by name */
    size_t nnames;
    struct bcpm_error *err;
};

static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir), m = strlen(name);
    char *out = malloc(n + m + 2);

    if (!out)
        return NULL;
    memcpy(out, dir, n);
    out[n] = '/';
    memcpy(out + n + 1, name, m + 1);
    return out;
}

/* A shard name must stay inside the index's folder: relative, with no ".." component. */
static int shard_name_ok(const char *name)
{
    const char *p = name;

    if (name[0] == '\0' || name[0] == '/')
        return 0;
    while (*p) {
        size_t len = strcspn(p, "/");

        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += len;
        if (*p == '/')
            p++;
    }
    return 1;
}

static int compare_shards(const void *a, const void *b)
{
    return strcmp(((const struct shard *)a)->name, ((const struct shard *)b)->name);
}

static const struct shard *find_shard(const struct index_reader *r, const char *name)
{
    struct shard key = {name, 0};

    return bsearch(&key, r->shards, r->nshards, sizeof(*r->shards), compare_shards);
}

static const struct shard *shard_of_file(const struct index_reader *r, uint32_t file)
{
    /* Each shard adds one file, in order, so the first guess is nearly always right. */
    size_t guess = file - r->first_file;

    if (file >= r->first_file && guess < r->nshards && r->shards[guess].file == file)
        return &r->shards[guess];
    for (size_t i = 0; i < r->nshards; i++) {
        if (r->shards[i].file == file)
            return &r->shards[i];
    }
    return NULL;
}

/* Validate the weight map's values and collect the distinct shard names, sorted. */
static int collect_shards(struct index_reader *r, json_t *weight_map)
{
    const char *tensor;
    json_t *value;
    size_t n = 0, unique = 0;

    r->shards = calloc(json_object_size(weight_map) + 1, sizeof(*r->shards));
    if (!r->shards)
        return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");

    json_object_foreach(weight_map, tensor, value) {
        const char *name;

        if (!json_is_string(value))
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, tensor,
                                  "expected a shard file name in weight_map, found %s",
                                  bcpm_json_type_name(value));
        name = json_string_value(value);
        if (!shard_name_ok(name))
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, tensor,
                                  "shard path '%s' leaves the index's folder: expected a "
                                  "relative path without '..' components",
                                  name);
        r->shards[n++].name = name;
    }

    qsort(r->shards, n, sizeof(*r->shards), compare_shards);
    for (size_t i = 0; i < n; i++) {
        if (unique == 0 || strcmp(r->shards[unique - 1].name, r->shards[i].name) != 0)
            r->shards[unique++] = r->shards[i];
    }
    r->nshards = unique;
    return 0;
}

/*
 * Read every shard once. A shard the index names but the folder lacks is
 * BCPM_ERR_NOT_FOUND, the code for a named file that is absent, so that a
 * caller can tell an incomplete download from a corrupt file.
 */
static int read_shards(struct index_reader *r, const struct bcpm_open_options *options)
{
    for (size_t i = 0; i < r->nshards; i++) {
        char *path = join_path(r->dir, r->shards[i].name);
        struct stat st;
        int rc;

        if (!path)
            return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");
        if (stat(path, &st) != 0 && errno == ENOENT) {
            bcpm_error_set(r->err, BCPM_ERR_NOT_FOUND, r->path, r->shards[i].name,
                           "index names shard %s, which does not exist (looked for %s)",
                           r->shards[i].name, path);
            free(path);
            return BCPM_ERR_NOT_FOUND;
        }
        rc = bcpm_read_weights_file(r->catalog, path, options, r->err);
        free(path);
        if (rc != 0)
            return rc;
        r->shards[i].file = (uint32_t)(r->catalog->nfiles - 1);
    }
    return 0;
}

static int compare_named(const void *a, const void *b)
{
    return strcmp(((const struct named *)a)->name, ((const struct named *)b)->name);
}

static int build_name_lookup(struct index_reader *r)
{
    size_t n = r->catalog->ntensors - r->first_tensor;

    r->by_name = malloc((n + 1) * sizeof(*r->by_name));
    if (!r->by_name)
        return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        r->by_name[i].name = r->catalog->tensors[r->first_tensor + i].name;
        r->by_name[i].file = r->catalog->tensors[r->first_tensor + i].file;
    }
    r->nnames = n;
    qsort(r->by_name, n, sizeof(*r->by_name), compare_named);
    return 0;
}

/*
 * Look for a tensor called name in the shard read from file. Returns 1 when
 * that shard contains it. Otherwise *elsewhere is the file of another shard
 * that contains it, or UINT32_MAX when none does.
 */
static int lookup_tensor(const struct index_reader *r, const char *name, uint32_t file,
                         uint32_t *elsewhere)
{
    size_t lo = 0, hi = r->nnames;

    *elsewhere = UINT32_MAX;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (strcmp(r->by_name[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (; lo < r->nnames && strcmp(r->by_name[lo].name, name) == 0; lo++) {
        if (r->by_name[lo].file == file)
            return 1;
        *elsewhere = r->by_name[lo].file;
    }
    return 0;
}

/* Every tensor the weight map names must be in the shard it points to. */
static int check_map_against_shards(struct index_reader *r, json_t *weight_map)
{
    const char *name;
    json_t *value;

    json_object_foreach(weight_map, name, value) {
        const struct shard *shard = find_shard(r, json_string_value(value));
        const struct shard *actual;
        uint32_t elsewhere;

        if (lookup_tensor(r, name, shard->file, &elsewhere))
            continue;
        if (elsewhere == UINT32_MAX)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                                  "weight map puts tensor %s in shard %s, which does not "
                                  "contain it (found in no shard)",
                                  name, shard->name);
        actual = shard_of_file(r, elsewhere);
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, name,
                              "weight map puts tensor %s in shard %s, but it is in shard %s",
                              name, shard->name, actual ? actual->name : "?");
    }
    return 0;
}

/* Every tensor a shard contains must be listed in the weight map, pointing at that shard. */
static int check_shards_against_map(struct index_reader *r, json_t *weight_map)
{
    for (size_t i = r->first_tensor; i < r->catalog->ntensors; i++) {
        const struct bcpm_tensor *t = &r->catalog->tensors[i];
        const struct shard *shard = shard_of_file(r, t->file);
        const char *mapped = json_string_value(json_object_get(weight_map, t->name));

        if (!mapped)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, t->name,
                                  "shard %s contains tensor %s, which the weight map does not "
                                  "list",
                                  shard ? shard->name : "?", t->name);
        if (!shard || strcmp(mapped, shard->name) != 0)
            return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, t->name,
                                  "shard %s contains tensor %s, but the weight map puts it in "
                                  "shard %s",
                                  shard ? shard->name : "?", t->name, mapped);
    }
    return 0;
}

/*
 * Compare metadata.total_size with the tensors' byte sizes (elements times
 * element size). huggingface_hub's split_state_dict_into_shards_factory counts
 * tensors that share a storage once, and a writer that counts every tensor
 * gets the other sum, so either is accepted. A mismatch is a warning finding,
 * not an error, because tensors are located through weight_map and the shard
 * headers, never through total_size.
 */
static int check_total_size(struct index_reader *r, const json_t *metadata)
{
    const json_t *value = json_is_object(metadata) ? json_object_get(metadata, "total_size")
                                                   : NULL;
    const struct bcpm_catalog *c = r->catalog;
    uint64_t total_size, every = 0, distinct = 0;
    uint8_t *seen;

    if (!value)
        return 0;
    if (bcpm_json_get_u64(value, &total_size) != 0) {
        if (!bcpm_findings_add(&r->catalog->findings, "format.index-total-size",
                               BCPM_SEVERITY_WARNING, r->path, NULL,
                               "expected metadata.total_size to be a byte count, found %s",
                               bcpm_json_type_name(value)))
            return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");
        return 0;
    }

    seen = calloc(c->nstorages + 1, 1);
    if (!seen)
        return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");
    for (size_t i = r->first_tensor; i < c->ntensors; i++) {
        const struct bcpm_tensor *t = &c->tensors[i];
        uint64_t size = t->numel * bcpm_dtype_size(t->dtype);

        /* numel * size fits: the catalog checked it when it added the tensor. */
        if (bcpm_add_u64(every, size, &every) != 0)
            every = UINT64_MAX;
        if (!seen[t->storage] && bcpm_add_u64(distinct, size, &distinct) != 0)
            distinct = UINT64_MAX;
        seen[t->storage] = 1;
    }
    free(seen);

    if (total_size == distinct || total_size == every)
        return 0;
    if (!bcpm_findings_add(&r->catalog->findings, "format.index-total-size",
                           BCPM_SEVERITY_WARNING, r->path, NULL,
                           "metadata.total_size is %" PRIu64 " bytes, expected %" PRIu64
                           ", the byte size of the tensors in the shards",
                           total_size, distinct))
        return bcpm_error_set(r->err, BCPM_ERR_NOMEM, r->path, NULL, "out of memory");
    return 0;
}

static int read_index(struct index_reader *r, json_t *root,
                      const struct bcpm_open_options *options)
{
    json_t *weight_map = json_object_get(root, "weight_map");
    json_t *metadata = json_object_get(root, "metadata");
    int rc;

    if (!json_is_object(weight_map))
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, "weight_map",
                              "expected an object mapping tensor names to shard files, "
                              "found %s",
                              weight_map ? bcpm_json_type_name(weight_map) : "no weight_map");
    if (json_object_size(weight_map) == 0)
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, "weight_map",
                              "expected at least one tensor, found an empty weight map");
    if (metadata && !json_is_object(metadata) && !json_is_null(metadata))
        return bcpm_error_set(r->err, BCPM_ERR_CORRUPT, r->path, "metadata",
                              "expected an object, found %s", bcpm_json_type_name(metadata));

    rc = collect_shards(r, weight_map);
    if (rc == 0)
        rc = read_shards(r, options);
    if (rc == 0)
        rc = build_name_lookup(r);
    if (rc == 0)
        rc = check_map_against_shards(r, weight_map);
    if (rc == 0)
        rc = check_shards_against_map(r, weight_map);
    if (rc == 0)
        rc = check_total_size(r, metadata);
    return rc;
}

int bcpm_read_shard_index(struct bcpm_catalog *catalog, const char *index_path,
                          const struct bcpm_open_options *options, struct bcpm_error *err)
{
    struct index_reader r = {0};
    json_t *root;
    int rc;

    r.catalog = catalog;
    r.path = index_path;
    r.err = err;
    r.first_tensor = catalog->ntensors;
    r.first_file = catalog->nfiles;

    rc = bcpm_json_load_object_file(&root, index_path, INDEX_MAX_BYTES, "shard index", err);
    if (rc != 0)
        return rc;

    r.dir = folder_of(index_path);
    if (!r.dir)
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, index_path, NULL, "out of memory");
    else
        rc = read_index(&r, root, options);

    free(r.by_name);
    free(r.shards);
    free(r.dir);
    json_decref(root);
    return rc;
}
