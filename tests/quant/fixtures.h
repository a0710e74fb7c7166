/* Loading the fake-quant fixtures written by tools/gen_quant_fixtures.py. */
#ifndef BCPM_TESTS_QUANT_FIXTURES_H
#define BCPM_TESTS_QUANT_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/dtype.h"

struct quant_case {
    char name[64];
    enum bcpm_dtype latent, stored;
    long rows, columns, group_size;
    float eps;
};

/* Read all of fixtures/quant/NAME.KIND.bin into a malloc'd buffer; NULL if absent. */
static inline void *fixture_read(const char *name, const char *kind, size_t *size)
{
    const char *root = getenv("BCPM_FIXTURES");
    char path[1024];
    FILE *f;
    long length;
    void *data;

    snprintf(path, sizeof(path), "%s/quant/%s.%s.bin", root ? root : "fixtures", name, kind);
    f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    length = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc(length > 0 ? (size_t)length : 1);
    if (data && fread(data, 1, (size_t)length, f) != (size_t)length) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *size = (size_t)length;
    return data;
}

/* Read fixtures/quant/cases.txt; returns the number of cases (at most max). */
static inline int fixture_cases(struct quant_case *cases, int max)
{
    const char *root = getenv("BCPM_FIXTURES");
    char path[1024], latent[16], stored[16];
    int n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/quant/cases.txt", root ? root : "fixtures");
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (n < max) {
        struct quant_case *c = &cases[n];
        if (fscanf(f, "%63s %15s %15s %ld %ld %ld %f", c->name, latent, stored, &c->rows,
                   &c->columns, &c->group_size, &c->eps) != 7)
            break;
        if (bcpm_dtype_from_name(latent, &c->latent) != 0 ||
            bcpm_dtype_from_name(stored, &c->stored) != 0)
            break;
        n++;
    }
    fclose(f);
    return n;
}

/* Path of file in the checkpoint pairs folder, fixtures/quant/pairs; 0 when out is too small. */
static inline int pair_path(char *out, size_t size, const char *file)
{
    const char *root = getenv("BCPM_FIXTURES");
    int n = snprintf(out, size, "%s/quant/pairs/%s", root ? root : "fixtures", file);

    return n > 0 && (size_t)n < size;
}

/*
 * Read the ternary tensor names of the pairs (pairs/ternary.txt) into
 * storage, pointing names[i] at each. Returns how many, 0 when the file is
 * missing or empty.
 */
static inline size_t pair_ternary_names(char (*storage)[128], const char **names, size_t max)
{
    char path[1024];
    size_t count = 0;
    FILE *f;

    if (!pair_path(path, sizeof(path), "ternary.txt"))
        return 0;
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (count < max && fscanf(f, "%127s", storage[count]) == 1) {
        names[count] = storage[count];
        count++;
    }
    fclose(f);
    return count;
}

#endif
