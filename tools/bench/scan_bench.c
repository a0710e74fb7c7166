/*
 * scan_bench: time the two kernels the rule engine runs on every tensor,
 * bcpm_ternary_scan_in (one group per row) and bcpm_value_stats_in, over a
 * whole checkpoint, and print the time of each and the peak resident memory.
 *
 *     scan_bench CHECKPOINT [THREADS [SIMD]]
 *
 * Build it like reference_bench (see tools/bench/bench_reference.sh).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "quant/quant.h"
#include "quant/simd.h"

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    struct bcpm_catalog *catalog;
    struct bcpm_error err = {0};
    double scan_seconds = 0, stats_seconds = 0, start;
    uint64_t ternary_groups = 0, nonfinite = 0;
    struct rusage usage;
    char text[2048];

    if (argc < 2) {
        fprintf(stderr, "usage: scan_bench CHECKPOINT [THREADS [SIMD]]\n");
        return 2;
    }
    if (argc > 2)
        bcpm_quant_set_threads(atoi(argv[2]));
    if (argc > 3 && bcpm_quant_simd_select(argv[3]) != 0) {
        fprintf(stderr, "scan_bench: SIMD table '%s' is not available\n", argv[3]);
        return 2;
    }
    start = now();
    if (bcpm_catalog_open(&catalog, argv[1], NULL, &err) != 0) {
        fprintf(stderr, "scan_bench: %s\n", bcpm_error_format(&err, text, sizeof(text)));
        return 2;
    }

    for (size_t i = 0; i < catalog->ntensors; i++) {
        const struct bcpm_tensor *t = &catalog->tensors[i];
        struct bcpm_ternary_scan scan;
        struct bcpm_value_stats stats;
        double t0 = now(), t1;

        if (!bcpm_dtype_is_float(t->dtype))
            continue;
        if (bcpm_ternary_scan_in(catalog, t, -1, &scan, &err) != 0) {
            fprintf(stderr, "scan_bench: %s\n", bcpm_error_format(&err, text, sizeof(text)));
            return 2;
        }
        ternary_groups += scan.groups_ternary;
        bcpm_ternary_scan_free(&scan);
        t1 = now();
        if (bcpm_value_stats_in(catalog, t, &stats, &err) != 0) {
            fprintf(stderr, "scan_bench: %s\n", bcpm_error_format(&err, text, sizeof(text)));
            return 2;
        }
        nonfinite += stats.nan + stats.inf;
        scan_seconds += t1 - t0;
        stats_seconds += now() - t1;
    }
    getrusage(RUSAGE_SELF, &usage);
    printf("scan_bench: %.3f s, ternary scan %.3f s, value stats %.3f s, %zu tensors, "
           "%llu ternary groups, %llu NaN or Inf, %d threads, %s kernels, peak RSS %.1f MiB\n",
           now() - start, scan_seconds, stats_seconds, catalog->ntensors,
           (unsigned long long)ternary_groups, (unsigned long long)nonfinite, bcpm_quant_threads(),
           bcpm_quant_kernels()->name, (double)usage.ru_maxrss / 1024.0);
    bcpm_catalog_free(catalog);
    return 0;
}
