/* Grouping the tensors of a catalog by the storage they share (bitcpm-ls). */
#include "cli/ls.h"

#include <stdlib.h>

int ls_sharing_build(struct ls_sharing *out, const struct bcpm_catalog *catalog)
{
    size_t nstorages = catalog->nstorages, ntensors = catalog->ntensors;
    size_t *next;

    out->start = calloc(nstorages ? nstorages : 1, sizeof(*out->start));
    out->count = calloc(nstorages ? nstorages : 1, sizeof(*out->count));
    out->order = calloc(ntensors ? ntensors : 1, sizeof(*out->order));
    next = calloc(nstorages ? nstorages : 1, sizeof(*next));
    if (!out->start || !out->count || !out->order || !next) {
        free(next);
        ls_sharing_free(out);
        return -1;
    }

    /* Counting sort on the storage index keeps catalog order inside each group. */
    for (size_t i = 0; i < ntensors; i++)
        out->count[catalog->tensors[i].storage]++;
    for (size_t s = 1; s < nstorages; s++)
        out->start[s] = out->start[s - 1] + out->count[s - 1];
    for (size_t s = 0; s < nstorages; s++)
        next[s] = out->start[s];
    for (size_t i = 0; i < ntensors; i++)
        out->order[next[catalog->tensors[i].storage]++] = i;

    free(next);
    return 0;
}

void ls_sharing_free(struct ls_sharing *sharing)
{
    free(sharing->start);
    free(sharing->count);
    free(sharing->order);
    sharing->start = sharing->count = sharing->order = NULL;
}

const size_t *ls_sharing_group(const struct ls_sharing *sharing,
                               const struct bcpm_catalog *catalog, size_t tensor,
                               size_t *count)
{
    uint32_t storage = catalog->tensors[tensor].storage;

    *count = sharing->count[storage];
    return sharing->order + sharing->start[storage];
}
