/* Thread split, row access and page release for the quant kernels; see rows.h. */
#include "quant/rows.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant/quant.h"

/* Fewer bytes than this per thread cost more in thread start-up than they save. */
#define MIN_BYTES_PER_THREAD (1u << 20)

/* Maximum threads of one job, a cap against absurd requests. */
#define MAX_THREADS 256

static atomic_int default_threads;

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1)
        return 1;
    return n > MAX_THREADS ? MAX_THREADS : (int)n;
}

void bcpm_quant_set_threads(int n)
{
    atomic_store(&default_threads, n > MAX_THREADS ? MAX_THREADS : n);
}

int bcpm_quant_threads(void)
{
    int n = atomic_load(&default_threads);

    return n > 0 ? n : online_cpus();
}

const struct bcpm_map *bcpm_quant_tensor_map(const struct bcpm_catalog *catalog,
                                             const struct bcpm_tensor *tensor)
{
    if (!catalog || tensor->storage >= catalog->nstorages || tensor->file >= catalog->nfiles)
        return NULL;
    if (catalog->storages[tensor->storage].owned)
        return NULL;
    return catalog->files[tensor->file].map;
}

int bcpm_quant_file_offset(const struct bcpm_catalog *catalog, const struct bcpm_tensor *tensor,
                           uint64_t index, uint64_t *offset)
{
    if (index >= tensor->numel || !bcpm_quant_tensor_map(catalog, tensor))
        return 0;
    *offset = tensor->byte_offset + bcpm_tensor_element_offset(tensor, index);
    return 1;
}

int bcpm_quant_job_threads(int requested, uint64_t bytes, uint64_t items)
{
    uint64_t by_size = bytes / MIN_BYTES_PER_THREAD;
    uint64_t n = requested > 0 ? (uint64_t)requested : (uint64_t)bcpm_quant_threads();

    if (n > MAX_THREADS)
        n = MAX_THREADS;
    if (n > by_size)
        n = by_size;
    if (n > items)
        n = items;
    return n < 1 ? 1 : (int)n;
}

struct worker {
    pthread_t thread;
    void (*fn)(void *, int, uint64_t, uint64_t);
    void *context;
    int index;
    uint64_t begin, end;
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;

    w->fn(w->context, w->index, w->begin, w->end);
    return NULL;
}

void bcpm_quant_parallel(int threads, uint64_t items,
                         void (*fn)(void *context, int worker, uint64_t begin, uint64_t end),
                         void *context)
{
    struct worker workers[MAX_THREADS];
    int started[MAX_THREADS];

    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((uint64_t)threads > items)
        threads = (int)items;
    if (threads <= 1) {
        fn(context, 0, 0, items);
        return;
    }

    /* Ranges of nearly equal size, in order; worker 0 runs on this thread. */
    for (int w = 0; w < threads; w++) {
        workers[w].fn = fn;
        workers[w].context = context;
        workers[w].index = w;
        workers[w].begin = items * (uint64_t)w / (uint64_t)threads;
        workers[w].end = items * (uint64_t)(w + 1) / (uint64_t)threads;
        started[w] = 0;
    }
    for (int w = 1; w < threads; w++)
        started[w] = pthread_create(&workers[w].thread, NULL, run_worker, &workers[w]) == 0;
    run_worker(&workers[0]);

    /* A worker whose thread failed to start runs here instead, after the others. */
    for (int w = 1; w < threads; w++) {
        if (started[w])
            pthread_join(workers[w].thread, NULL);
        else
            run_worker(&workers[w]);
    }
}

/* ---- ordered runs: chunks scanned in parallel, hashed in file order ---- */

/* Bytes of an ordered chunk: well inside a core's L2 cache, so it is still there when hashed. */
#define ORDER_CHUNK_BYTES ((uint64_t)256 << 10)

/*
 * Chunks a worker may run ahead of the hashed prefix. When a worker stalls
 * (preempted on a busy machine), the others stop after this many chunks
 * instead of piling up a backlog that has left the caches by the time it is
 * hashed: 2 MiB of 256 KiB chunks stays in a shared L3 cache.
 */
#define ORDER_MAX_PENDING 8u

/*
 * Hashed bytes dropped from the resident set at a time, as in
 * bcpm_quant_release_stride, because each madvise interrupts the other
 * threads to flush their TLBs. On a 2-vCPU VM an audited reference check
 * spent 0.39 to 0.46 s of system time with 4 MiB, 0.20 to 0.31 s with 32 MiB.
 */
#define ORDER_RELEASE_BYTES ((uint64_t)32 << 20)

struct ordered_run {
    const struct bcpm_quant_order *order;
    void (*fn)(void *, int, uint64_t, uint64_t);
    void *context;
    uint64_t items, nchunks;
    atomic_uint_fast64_t next;   /* the next chunk to hand out */
    atomic_uint_fast64_t hashed; /* chunks hashed: a prefix, read without the lock */
    pthread_mutex_t lock;        /* guards done, hashing and released */
    pthread_cond_t advanced;     /* signalled when hashed grows and a worker waits */
    int waiting;                 /* workers blocked on advanced */
    unsigned char *done;         /* per chunk: fn has finished it */
    int hashing;                 /* a worker is feeding the digest */
    uint64_t released;           /* file offset up to which pages were dropped */
    uint64_t also_released;      /* the same in the second region, as an item count */
};

struct ordered_worker {
    pthread_t thread;
    struct ordered_run *run;
    int index;
};

static uint64_t page_size(void)
{
    long n = sysconf(_SC_PAGESIZE);

    return n > 0 ? (uint64_t)n : 4096;
}

/* Drop the second region's pages of every item up to the end of chunk k. */
static void release_also(struct ordered_run *run, uint64_t k)
{
    const struct bcpm_quant_order *o = run->order;
    uint64_t items = (k + 1) * o->chunk < run->items ? (k + 1) * o->chunk : run->items;

    if (!o->also_map || items <= run->also_released)
        return;
    bcpm_map_release(o->also_map, o->also_base + run->also_released * o->also_item_bytes,
                     (items - run->also_released) * o->also_item_bytes);
    run->also_released = items;
}

/* Feed chunk k to the digest and drop the hashed pages in batches; the caller is the only hasher. */
static void hash_chunk(struct ordered_run *run, uint64_t k)
{
    const struct bcpm_quant_order *o = run->order;
    uint64_t begin = k * o->chunk * o->item_bytes;
    uint64_t end = (k + 1) * o->chunk * o->item_bytes;
    uint64_t drop_to;

    if (end > o->bytes)
        end = o->bytes;
    if (begin < end)
        o->digest->feed(o->digest->ctx, o->file, o->base + begin, end - begin);

    /* Drop whole pages only, so a page shared with the next chunk is dropped next time. */
    drop_to = o->base + end;
    if (k + 1 < run->nchunks)
        drop_to -= drop_to % page_size();
    if (drop_to > run->released &&
        (drop_to - run->released >= ORDER_RELEASE_BYTES || k + 1 == run->nchunks)) {
        bcpm_map_release(o->map, run->released, drop_to - run->released);
        run->released = drop_to;
        release_also(run, k);
    }
}

/*
 * Mark chunk k finished. The worker that finishes the first unhashed chunk
 * becomes the hasher and feeds every finished chunk in a row. The others go
 * on scanning without waiting for it.
 */
static void chunk_done(struct ordered_run *run, uint64_t k)
{
    uint64_t h;

    pthread_mutex_lock(&run->lock);
    run->done[k] = 1;
    h = atomic_load(&run->hashed);
    if (run->hashing || k != h) {
        pthread_mutex_unlock(&run->lock);
        return;
    }
    run->hashing = 1;
    while (h < run->nchunks && run->done[h]) {
        pthread_mutex_unlock(&run->lock);
        hash_chunk(run, h);
        pthread_mutex_lock(&run->lock);
        atomic_store(&run->hashed, ++h);
        if (run->waiting)
            pthread_cond_broadcast(&run->advanced);
    }
    run->hashing = 0;
    pthread_mutex_unlock(&run->lock);
}

static void *run_ordered_worker(void *arg)
{
    struct ordered_worker *w = arg;
    struct ordered_run *run = w->run;
    uint64_t chunk = run->order->chunk;

    for (;;) {
        uint64_t k = atomic_fetch_add(&run->next, 1);
        uint64_t end;

        if (k >= run->nchunks)
            break;
        /*
         * Too far ahead of the hasher (a slow SHA-256, a stalled worker): wait.
         * The chunks in between are taken by workers that do not wait here,
         * so the hashed prefix keeps growing.
         */
        if (k - atomic_load(&run->hashed) > ORDER_MAX_PENDING) {
            pthread_mutex_lock(&run->lock);
            run->waiting++;
            while (k - atomic_load(&run->hashed) > ORDER_MAX_PENDING)
                pthread_cond_wait(&run->advanced, &run->lock);
            run->waiting--;
            pthread_mutex_unlock(&run->lock);
        }
        end = (k + 1) * chunk < run->items ? (k + 1) * chunk : run->items;
        run->fn(run->context, w->index, k * chunk, end);
        chunk_done(run, k);
    }
    return NULL;
}

int bcpm_quant_order_init(struct bcpm_quant_order *order, const struct bcpm_quant_digest *digest,
                          const struct bcpm_map *map, const struct bcpm_tensor *tensor,
                          uint64_t item_bytes)
{
    if (!digest || !map || !tensor->contiguous || tensor->data != map->data + tensor->byte_offset)
        return 0;
    *order = (struct bcpm_quant_order){
        .digest = digest, .map = map, .file = tensor->file, .base = tensor->byte_offset,
        .bytes = tensor->numel * bcpm_dtype_size(tensor->dtype), .item_bytes = item_bytes,
        .chunk = bcpm_quant_order_chunk(item_bytes),
    };
    return 1;
}

uint64_t bcpm_quant_order_chunk(uint64_t item_bytes)
{
    uint64_t n = item_bytes ? ORDER_CHUNK_BYTES / item_bytes : 1;

    return n < 1 ? 1 : n;
}

void bcpm_quant_parallel_ordered(int threads, uint64_t items,
                                 const struct bcpm_quant_order *order,
                                 void (*fn)(void *context, int worker, uint64_t begin,
                                            uint64_t end),
                                 void *context)
{
    struct ordered_worker workers[MAX_THREADS];
    int started[MAX_THREADS];
    struct ordered_run run = {0};

    if (items == 0)
        return;
    run.order = order;
    run.fn = fn;
    run.context = context;
    run.items = items;
    run.nchunks = (items + order->chunk - 1) / order->chunk;
    run.released = order->base;
    atomic_init(&run.next, 0);
    atomic_init(&run.hashed, 0);
    run.done = calloc(run.nchunks, 1);
    if (!run.done || pthread_mutex_init(&run.lock, NULL) != 0) {
        free(run.done);
        run.done = NULL;
    } else if (pthread_cond_init(&run.advanced, NULL) != 0) {
        pthread_mutex_destroy(&run.lock);
        free(run.done);
        run.done = NULL;
    }
    if (!run.done) {
        bcpm_quant_parallel(threads, items, fn, context);
        bcpm_map_release(order->map, order->base, order->bytes);
        if (order->also_map)
            bcpm_map_release(order->also_map, order->also_base, items * order->also_item_bytes);
        return;
    }

    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if ((uint64_t)threads > run.nchunks)
        threads = (int)run.nchunks;
    if (threads < 1)
        threads = 1;
    for (int w = 0; w < threads; w++) {
        workers[w].run = &run;
        workers[w].index = w;
        started[w] = 0;
    }
    for (int w = 1; w < threads; w++)
        started[w] = pthread_create(&workers[w].thread, NULL, run_ordered_worker,
                                    &workers[w]) == 0;
    /* Workers that did not start take no chunks: the shared counter gives theirs to the others. */
    run_ordered_worker(&workers[0]);
    for (int w = 1; w < threads; w++) {
        if (started[w])
            pthread_join(workers[w].thread, NULL);
    }

    pthread_cond_destroy(&run.advanced);
    pthread_mutex_destroy(&run.lock);
    free(run.done);
}

const uint8_t *bcpm_quant_row(const struct bcpm_tensor *tensor, uint64_t row, uint64_t columns,
                              uint8_t *scratch)
{
    size_t size = bcpm_dtype_size(tensor->dtype);
    const uint8_t *start = tensor->data + row * columns * size;

    /* Kernels load whole elements, so a row that is not aligned to its element
     * size (legacy files place storages at any byte) is copied into scratch. */
    if (tensor->contiguous && (uintptr_t)start % size == 0)
        return start;
    if (tensor->contiguous) {
        memcpy(scratch, start, columns * size);
        return scratch;
    }
    for (uint64_t c = 0; c < columns; c++) {
        uint64_t offset = bcpm_tensor_element_offset(tensor, row * columns + c);
        memcpy(scratch + c * size, tensor->data + offset, size);
    }
    return scratch;
}

void bcpm_quant_release_rows(const struct bcpm_map *map, const struct bcpm_tensor *tensor,
                             uint64_t columns, uint64_t begin, uint64_t end)
{
    uint64_t row_bytes = columns * bcpm_dtype_size(tensor->dtype);

    if (!map || !tensor->contiguous || end <= begin)
        return;
    bcpm_map_release(map, tensor->byte_offset + begin * row_bytes, (end - begin) * row_bytes);
}

void bcpm_quant_release_tensor(const struct bcpm_map *map, const struct bcpm_tensor *tensor)
{
    if (map)
        bcpm_map_release(map, tensor->byte_offset, tensor->nbytes);
}

uint64_t bcpm_quant_release_stride(uint64_t row_bytes)
{
    uint64_t rows = row_bytes ? ((uint64_t)32 << 20) / row_bytes : 1;

    return rows < 1 ? 1 : rows;
}
