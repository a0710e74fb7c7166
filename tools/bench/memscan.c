/*
 * memscan: the physical floor for reading a file that is already in the page
 * cache. Maps the file and sums every 64-bit word on N threads, each thread
 * over one contiguous slice, dropping pages from the resident set as it goes
 * (as bitcpm-check does). Prints the wall time and the throughput.
 *
 *     cc -O2 -pthread -o memscan tools/bench/memscan.c
 *     memscan FILE [THREADS]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WINDOW (8u << 20)

struct slice {
    const uint8_t *base;
    size_t begin, end;
    uint64_t sum;
};

static void *scan_slice(void *arg)
{
    struct slice *s = arg;
    uint64_t sum = 0;

    for (size_t at = s->begin; at < s->end; at += WINDOW) {
        size_t stop = at + WINDOW < s->end ? at + WINDOW : s->end;
        const uint64_t *p = (const uint64_t *)(s->base + at);
        size_t words = (stop - at) / 8;

        for (size_t i = 0; i < words; i++)
            sum += p[i];
        madvise((void *)(s->base + at), stop - at, MADV_DONTNEED);
    }
    s->sum = sum;
    return NULL;
}

int main(int argc, char **argv)
{
    struct timespec t0, t1;
    struct stat st;
    int threads = argc > 2 ? atoi(argv[2]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t total = 0;

    if (argc < 2 || threads < 1) {
        fprintf(stderr, "usage: memscan FILE [THREADS]\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 2;
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *base = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        perror("mmap");
        return 2;
    }

    struct slice *slices = calloc((size_t)threads, sizeof(*slices));
    pthread_t *ids = calloc((size_t)threads, sizeof(*ids));
    /* Slices start on window boundaries so that madvise covers whole pages. */
    size_t per = (size / (size_t)threads + WINDOW - 1) / WINDOW * WINDOW;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < threads; i++) {
        slices[i].base = base;
        slices[i].begin = per * (size_t)i < size ? per * (size_t)i : size;
        slices[i].end = per * (size_t)(i + 1) < size ? per * (size_t)(i + 1) : size;
        pthread_create(&ids[i], NULL, scan_slice, &slices[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        total += slices[i].sum;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("memscan %s: %zu bytes, %d threads, %.3f s, %.2f GB/s (checksum %016" PRIx64 ")\n",
           argv[1], size, threads, seconds, (double)size / seconds / 1e9, total);
    return 0;
}
