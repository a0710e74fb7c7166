/*
 * The table form of a catalog for bitcpm-ls: one aligned row per tensor and
 * a summary line. Widths are measured in a first pass over the rows, so the
 * table costs two formatting passes and no per-row storage.
 */
#include "cli/ls.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* A table cell lists at most this many sharing tensors, then "(+N more)". */
#define SHARED_NAMES_SHOWN 3

enum column {
    COL_NAME,
    COL_DTYPE,
    COL_SHAPE,
    COL_STRIDES,
    COL_STORAGE_OFFSET,
    COL_FILE,
    COL_BYTE_OFFSET,
    COL_NBYTES,
    COL_SHARED_WITH,
    COL_COUNT
};

static const struct {
    const char *header;
    int right_aligned;
} columns[COL_COUNT] = {
    [COL_NAME] = {"NAME", 0},
    [COL_DTYPE] = {"DTYPE", 0},
    [COL_SHAPE] = {"SHAPE", 0},
    [COL_STRIDES] = {"STRIDES", 0},
    [COL_STORAGE_OFFSET] = {"STORAGE_OFFSET", 1},
    [COL_FILE] = {"FILE", 0},
    [COL_BYTE_OFFSET] = {"BYTE_OFFSET", 1},
    [COL_NBYTES] = {"NBYTES", 1},
    [COL_SHARED_WITH] = {"SHARED_WITH", 0},
};

/* A growing string; failed is set once an allocation fails. */
struct text {
    char *data;
    size_t length;
    size_t capacity;
    int failed;
};

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void text_printf(struct text *text, const char *fmt, ...)
{
    va_list ap;
    int needed;

    if (text->failed)
        return;
    va_start(ap, fmt);
    needed = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (needed < 0) {
        text->failed = 1;
        return;
    }
    if (text->length + (size_t)needed + 1 > text->capacity) {
        size_t grown = (text->length + (size_t)needed + 1) * 2;
        char *p = realloc(text->data, grown);

        if (!p) {
            text->failed = 1;
            return;
        }
        text->data = p;
        text->capacity = grown;
    }
    va_start(ap, fmt);
    vsnprintf(text->data + text->length, text->capacity - text->length, fmt, ap);
    va_end(ap);
    text->length += (size_t)needed;
}

static void format_dims(struct text *text, const int64_t *values, int ndim)
{
    text_printf(text, "[");
    for (int d = 0; d < ndim; d++)
        text_printf(text, d ? ", %" PRId64 : "%" PRId64, values[d]);
    text_printf(text, "]");
}

static void format_shared(struct text *text, const struct bcpm_catalog *catalog,
                          const struct ls_sharing *sharing, size_t i)
{
    size_t count, shown = 0;
    const size_t *group = ls_sharing_group(sharing, catalog, i, &count);

    if (count <= 1) {
        text_printf(text, "-");
        return;
    }
    for (size_t k = 0; k < count && shown < SHARED_NAMES_SHOWN; k++) {
        if (group[k] == i)
            continue;
        text_printf(text, shown ? ", %s" : "%s", catalog->tensors[group[k]].name);
        shown++;
    }
    if (count - 1 > shown)
        text_printf(text, " (+%zu more)", count - 1 - shown);
}

/* Format cell (row, column) into text, replacing what it held. */
static void format_cell(struct text *text, const struct bcpm_catalog *catalog,
                        const struct ls_sharing *sharing, size_t row, enum column column)
{
    const struct bcpm_tensor *t = &catalog->tensors[row];

    text->length = 0;
    text_printf(text, "%s", "");
    switch (column) {
    case COL_NAME:
        text_printf(text, "%s", t->name);
        break;
    case COL_DTYPE:
        text_printf(text, "%s", bcpm_dtype_name(t->dtype));
        break;
    case COL_SHAPE:
        format_dims(text, t->shape, t->ndim);
        break;
    case COL_STRIDES:
        /* Strides only matter when they differ from the row-major ones. */
        if (t->contiguous)
            text_printf(text, "-");
        else
            format_dims(text, t->strides, t->ndim);
        break;
    case COL_STORAGE_OFFSET:
        text_printf(text, "%" PRId64, t->storage_offset);
        break;
    case COL_FILE:
        text_printf(text, "%s", catalog->files[t->file].path);
        break;
    case COL_BYTE_OFFSET:
        text_printf(text, "%" PRIu64, t->byte_offset);
        break;
    case COL_NBYTES:
        text_printf(text, "%" PRIu64, t->nbytes);
        break;
    case COL_SHARED_WITH:
        format_shared(text, catalog, sharing, row);
        break;
    case COL_COUNT:
        break;
    }
}

static void print_cell(FILE *out, const char *value, size_t width, enum column column)
{
    int pad = (int)(width - strlen(value));

    if (column > 0)
        fputs("  ", out);
    if (columns[column].right_aligned)
        fprintf(out, "%*s%s", pad, "", value);
    else if (column == COL_COUNT - 1)
        fputs(value, out);
    else
        fprintf(out, "%s%*s", value, pad, "");
}

static void print_summary(FILE *out, const struct bcpm_catalog *catalog)
{
    uint64_t bytes = 0;

    for (size_t s = 0; s < catalog->nstorages; s++)
        bytes += catalog->storages[s].nbytes;
    fprintf(out, "%zu tensor%s, %zu storage%s, %" PRIu64 " bytes in %zu file%s",
            catalog->ntensors, catalog->ntensors == 1 ? "" : "s", catalog->nstorages,
            catalog->nstorages == 1 ? "" : "s", bytes, catalog->nfiles,
            catalog->nfiles == 1 ? "" : "s");
    if (catalog->nested_key)
        fprintf(out, "; weights nested under '%s'", catalog->nested_key);
    if (catalog->stripped_prefix)
        fprintf(out, "; prefix '%s' stripped from %zu name%s", catalog->stripped_prefix,
                catalog->stripped_count, catalog->stripped_count == 1 ? "" : "s");
    if (catalog->ignored_entries)
        fprintf(out, "; %zu non-tensor entr%s ignored", catalog->ignored_entries,
                catalog->ignored_entries == 1 ? "y" : "ies");
    if (catalog->config_path)
        fprintf(out, "; config %s", catalog->config_path);
    fputc('\n', out);
}

int ls_print_table(FILE *out, const struct bcpm_catalog *catalog,
                   const struct ls_sharing *sharing)
{
    size_t widths[COL_COUNT];
    struct text cell = {0};

    /* First pass: the widest cell of each column, headers included. */
    for (int c = 0; c < COL_COUNT; c++)
        widths[c] = strlen(columns[c].header);
    for (size_t row = 0; row < catalog->ntensors; row++) {
        for (int c = 0; c < COL_COUNT; c++) {
            format_cell(&cell, catalog, sharing, row, (enum column)c);
            if (!cell.failed && cell.length > widths[c])
                widths[c] = cell.length;
        }
    }

    /* Second pass: print. */
    for (int c = 0; c < COL_COUNT; c++)
        print_cell(out, columns[c].header, widths[c], (enum column)c);
    fputc('\n', out);
    for (size_t row = 0; row < catalog->ntensors && !cell.failed; row++) {
        for (int c = 0; c < COL_COUNT; c++) {
            format_cell(&cell, catalog, sharing, row, (enum column)c);
            if (cell.failed)
                break;
            print_cell(out, cell.data, widths[c], (enum column)c);
        }
        fputc('\n', out);
    }
    print_summary(out, catalog);

    free(cell.data);
    return cell.failed ? -1 : 0;
}
