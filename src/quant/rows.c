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

const uint8_t *bcpm_quant_row(const struct bcpm_tensor *tensor, uint64_t row, uint64_t columns,
                              uint8_t *scratch)
{
    size_t size = bcpm_dtype_size(tensor->dtype);

    if (tensor->contiguous)
        return tensor->data + row * columns * size;
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
    uint64_t rows = row_bytes ? (4u << 20) / row_bytes : 1;

    return rows < 1 ? 1 : rows;
}
