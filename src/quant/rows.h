/*
 * Shared plumbing of the quant kernels (not a public API): splitting work
 * over threads, feeding a content digest in file order while the kernels
 * read, reading a row of any tensor as contiguous raw elements, and dropping
 * scanned pages from the resident set.
 */
#ifndef BCPM_QUANT_ROWS_H
#define BCPM_QUANT_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "io/map.h"
#include "quant/quant.h"
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

/*
 * A job whose items are consecutive slices of one file region, hashed in
 * order by bcpm_quant_parallel_ordered: item i covers file bytes
 * [base + i * item_bytes, base + (i + 1) * item_bytes), clamped to base + bytes.
 */
struct bcpm_quant_order {
    const struct bcpm_quant_digest *digest;
    const struct bcpm_map *map; /* pages are dropped here once hashed */
    uint32_t file;
    uint64_t base, bytes, item_bytes;
    uint64_t chunk;             /* items handed out at a time, at least 1 */
    /*
     * A second region read along with the first (the latent side of a
     * comparison), item i at [also_base + i * also_item_bytes, ...): its
     * pages are dropped with the first region's, never hashed. also_map
     * NULL: none.
     */
    const struct bcpm_map *also_map;
    uint64_t also_base, also_item_bytes;
};

/*
 * Run fn over [0, items) in chunks of order->chunk items taken in order from
 * a shared counter by up to threads workers. Each chunk, once fn is done
 * with it, goes to order->digest as soon as every chunk before it has, then
 * its pages are dropped; fn must not drop them itself. A worker may run fn
 * many times, on increasing ranges. Falls back to bcpm_quant_parallel and
 * leaves the bytes unhashed (the digest catches up later) when out of memory.
 */
void bcpm_quant_parallel_ordered(int threads, uint64_t items,
                                 const struct bcpm_quant_order *order,
                                 void (*fn)(void *context, int worker, uint64_t begin,
                                            uint64_t end),
                                 void *context);

/*
 * Fill order for a job over tensor in items of item_bytes consecutive bytes
 * (the last item may be shorter), hashed to digest and dropped from map.
 * Returns 1, or 0 when there is no digest or the tensor's bytes are not one
 * contiguous run of map; the job then runs with bcpm_quant_parallel.
 */
int bcpm_quant_order_init(struct bcpm_quant_order *order, const struct bcpm_quant_digest *digest,
                          const struct bcpm_map *map, const struct bcpm_tensor *tensor,
                          uint64_t item_bytes);

/* Items per ordered chunk: about 256 KiB of a tensor, so a chunk is still cached when hashed. */
uint64_t bcpm_quant_order_chunk(uint64_t item_bytes);

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

/*
 * Rows handled between two releases: about 32 MiB of a tensor. Each release
 * is an madvise that interrupts the other threads to flush their TLBs, and
 * inside a virtual machine those interrupts are expensive. With 4 MiB they
 * took a fifth of the check's time on a 2-vCPU VM (perf, Linux 6.18). The
 * resident set grows by about this much per thread.
 */
uint64_t bcpm_quant_release_stride(uint64_t row_bytes);

#endif
