/*
 * Internal interface of the bitcpm-ls command: the storage-sharing groups and
 * the two output formats (table and JSON). See man/bitcpm-ls.1.
 */
#ifndef BCPM_CLI_LS_H
#define BCPM_CLI_LS_H

#include <stdio.h>

#include <jansson.h>

#include "tensor/catalog.h"

/*
 * Tensors grouped by storage, built in one counting pass so that listing a
 * checkpoint with many tensors stays linear in their number.
 */
struct ls_sharing {
    size_t *start; /* per storage: first position of its group in order */
    size_t *count; /* per storage: number of tensors on it */
    size_t *order; /* tensor indices grouped by storage, catalog order inside a group */
};

/* Build the groups of catalog. Returns 0, or -1 when memory ran out. */
int ls_sharing_build(struct ls_sharing *out, const struct bcpm_catalog *catalog);

void ls_sharing_free(struct ls_sharing *sharing);

/* Tensor indices on the same storage as tensor (itself included) and their count. */
const size_t *ls_sharing_group(const struct ls_sharing *sharing,
                               const struct bcpm_catalog *catalog, size_t tensor,
                               size_t *count);

/* Print the aligned table and the summary line. Returns 0, or -1 when memory ran out. */
int ls_print_table(FILE *out, const struct bcpm_catalog *catalog,
                   const struct ls_sharing *sharing);

/*
 * Build {"files", "tensors", "findings"} for catalog. Returns a new reference,
 * or NULL when memory ran out.
 */
json_t *ls_catalog_json(const struct bcpm_catalog *catalog, const struct ls_sharing *sharing);

#endif
