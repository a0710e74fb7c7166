/*
 * Shared plumbing of the quant kernels (not a public API): splitting work
 * over threads, reading a row of any tensor as contiguous raw elements, and
 * dropping scanned pages from the resident set.
 */
#ifndef BCPM_QUANT_ROWS_H
#define BCPM_QUANT_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "io/map.h"
#include "tensor/catalog.h"

/*
 * Run fn over [0, items) split into at most threads contiguous ranges, one
 * per thread; worker w gets the w-th range in order, so results merged in
 * worker order are in item order. Runs on the calling thread alone when
 * threads <= 1 or a thread cannot be started.
 */
void bcpm_quant_parallel(int threads, uint64_t items,
                         void (*fn)(void *context, int worker, uint64_t begin, uint64_t end),
                         void *context);

/* Thread count for a job of bytes: options' count, capped so each thread gets 1 MiB or more. */
int bcpm_quant_job_threads(int requested, uint64_t bytes, uint64_t items);

/*
 * Row row of tensor viewed as [rows, columns], as contiguous little-endian
 * elements: a pointer into the tensor when it is contiguous, else the row
 * gathered element by element into scratch (columns * element size bytes).
 */
const uint8_t *bcpm_quant_row(const struct bcpm_tensor *tensor, uint64_t row, uint64_t columns,
                              uint8_t *scratch);

/*
 * Drop the pages of rows [begin, end) of a contiguous tensor from the
 * resident set (no-op when map is NULL or the tensor is not contiguous).
 */
void bcpm_quant_release_rows(const struct bcpm_map *map, const struct bcpm_tensor *tensor,
                             uint64_t columns, uint64_t begin, uint64_t end);

/* Drop the pages of the whole tensor from the resident set (no-op when map is NULL). */
void bcpm_quant_release_tensor(const struct bcpm_map *map, const struct bcpm_tensor *tensor);

/* Rows handled between two releases: about 4 MiB of a tensor. */
uint64_t bcpm_quant_release_stride(uint64_t row_bytes);

#endif
