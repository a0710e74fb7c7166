/*
 * Model folders as transformers saves them: config.json plus the weights,
 * found under the file names from_pretrained looks for, in its order of
 * preference (safetensors before pickles, an index before a single file).
 * A folder with none of those names but exactly one *.safetensors, *.bin or
 * *.pt file is read from that file, which covers training outputs such as
 * DeepSpeed's mp_rank_00_model_states.pt copied beside a config.
 */
#include "format/readers.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The names transformers' from_pretrained tries, most preferred first. */
static const char *const weight_names[] = {
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
};

static const char *const weight_suffixes[] = {".safetensors", ".bin", ".pt"};

/* Several candidates are listed in the usage message up to this many. */
#define LISTED_CANDIDATES_MAX 8

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir), m = strlen(name);
    char *out;

    while (n > 1 && dir[n - 1] == '/')
        n--;
    out = malloc(n + m + 2);
    if (!out)
        return NULL;
    memcpy(out, dir, n);
    out[n] = '/';
    memcpy(out + n + 1, name, m + 1);
    return out;
}

static int is_regular_file(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n > m && strcmp(s + n - m, suffix) == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Fill *names with the folder's regular files ending in a weights suffix, sorted. */
static int list_candidates(const char *dir, char ***names, size_t *count,
                           struct bcpm_error *err)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    char **list = NULL;
    size_t n = 0, capacity = 0;

    *names = NULL;
    *count = 0;
    if (!d)
        return bcpm_error_set(err, errno == ENOENT ? BCPM_ERR_NOT_FOUND : BCPM_ERR_IO, dir,
                              NULL, "cannot open folder: %s", strerror(errno));

    while ((ent = readdir(d)) != NULL) {
        int weights = 0;
        char *path;

        for (size_t i = 0; i < sizeof(weight_suffixes) / sizeof(weight_suffixes[0]); i++)
            weights |= ends_with(ent->d_name, weight_suffixes[i]);
        if (!weights)
            continue;
        path = join_path(dir, ent->d_name);
        weights = path && is_regular_file(path);
        free(path);
        if (!weights)
            continue;

        if (n == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            char **p = realloc(list, grown * sizeof(*list));
            if (!p)
                break;
            list = p;
            capacity = grown;
        }
        list[n] = strdup(ent->d_name);
        if (!list[n])
            break;
        n++;
    }
    closedir(d);

    if (ent != NULL) {
        for (size_t i = 0; i < n; i++)
            free(list[i]);
        free(list);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, dir, NULL, "out of memory");
    }
    if (n)
        qsort(list, n, sizeof(*list), compare_names);
    *names = list;
    *count = n;
    return 0;
}

static void free_names(char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

/*
 * Choose the weights of dir when none of the standard names exists: the one
 * *.safetensors, *.bin or *.pt file. On success *out is a path the caller frees.
 */
static int find_single_weights(const char *dir, char **out, struct bcpm_error *err)
{
    char **names;
    size_t count;
    char listed[BCPM_ERROR_TEXT_MAX / 2] = "";
    size_t used = 0;
    int rc;

    *out = NULL;
    rc = list_candidates(dir, &names, &count, err);
    if (rc != 0)
        return rc;

    if (count == 1) {
        *out = join_path(dir, names[0]);
        free_names(names, count);
        return *out ? 0 : bcpm_error_set(err, BCPM_ERR_NOMEM, dir, NULL, "out of memory");
    }
    if (count == 0)
        return bcpm_error_set(err, BCPM_ERR_NOT_FOUND, dir, NULL,
                              "no weights in folder %s: expected model.safetensors, "
                              "pytorch_model.bin or an index",
                              dir);

    for (size_t i = 0; i < count && i < LISTED_CANDIDATES_MAX; i++) {
        int n = snprintf(listed + used, sizeof(listed) - used, "%s%s", i ? ", " : "", names[i]);
        if (n < 0 || (size_t)n >= sizeof(listed) - used)
            break;
        used += (size_t)n;
    }
    rc = bcpm_error_set(err, BCPM_ERR_USAGE, dir, NULL,
                        "folder contains %zu weights files (%s%s) and none of the standard "
                        "names: name the file to check",
                        count, listed, count > LISTED_CANDIDATES_MAX ? ", ..." : "");
    free_names(names, count);
    return rc;
}

static int set_config_path(struct bcpm_catalog *catalog, const char *dir,
                           struct bcpm_error *err)
{
    char *config = join_path(dir, "config.json");

    if (!config)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, dir, NULL, "out of memory");
    if (!is_regular_file(config)) {
        free(config);
        return 0;
    }
    free(catalog->config_path);
    catalog->config_path = config;
    return 0;
}

int bcpm_read_model_dir(struct bcpm_catalog *catalog, const char *dir,
                        const struct bcpm_open_options *options, struct bcpm_error *err)
{
    char *weights = NULL;
    int rc;

    rc = set_config_path(catalog, dir, err);
    if (rc != 0)
        return rc;

    for (size_t i = 0; i < sizeof(weight_names) / sizeof(weight_names[0]) && !weights; i++) {
        weights = join_path(dir, weight_names[i]);
        if (!weights)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, dir, NULL, "out of memory");
        if (!is_regular_file(weights)) {
            free(weights);
            weights = NULL;
        }
    }
    if (!weights) {
        rc = find_single_weights(dir, &weights, err);
        if (rc != 0)
            return rc;
    }

    if (ends_with(weights, ".index.json"))
        rc = bcpm_read_shard_index(catalog, weights, options, err);
    else
        rc = bcpm_read_weights_file(catalog, weights, options, err);
    free(weights);
    return rc;
}
