/*
 * reference_bench: time the reference check (src/quant/reference.h) on a
 * pseudo-quantized checkpoint and its latent checkpoint, the way
 * `bitcpm-check PSEUDO --reference LATENT` runs it, and print the wall
 * time, the throughput over both files, the findings per rule, the peak
 * resident memory and the CPU time (which varies less than the wall time on
 * a machine that other jobs share).
 *
 *     reference_bench PSEUDO LATENT [THREADS [SIMD]]
 *
 * The ternary tensors are the seven projections of every layer (q/k/v/o,
 * gate/up/down), found by name; every other tensor is compared byte for byte.
 * Built by tools/bench/bench_reference.sh against the project's library.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "quant/reference.h"
#include "quant/simd.h"

static const char *const projections[] = {
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "mlp.gate_proj.weight",    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
};

static int is_ternary(const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof(projections) / sizeof(projections[0]); i++) {
        size_t m = strlen(projections[i]);
        if (n > m && strcmp(name + n - m, projections[i]) == 0 && name[n - m - 1] == '.')
            return 1;
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec * 1e-6;
}

static uint64_t file_bytes(const struct bcpm_catalog *c)
{
    uint64_t total = 0;

    for (size_t i = 0; i < c->nfiles; i++)
        total += c->files[i].map->size;
    return total;
}

int main(int argc, char **argv)
{
    struct bcpm_catalog *pseudo = NULL, *latent = NULL;
    struct bcpm_reference_options options;
    struct bcpm_findings findings = {0};
    struct bcpm_error err = {0};
    const char **ternary;
    size_t nternary = 0;
    struct rusage usage;
    char text[2048];
    double start, seconds;
    uint64_t bytes;

    if (argc < 3) {
        fprintf(stderr, "usage: reference_bench PSEUDO LATENT [THREADS [SIMD]]\n");
        return 2;
    }
    if (argc > 3)
        bcpm_quant_set_threads(atoi(argv[3]));
    if (argc > 4 && bcpm_quant_simd_select(argv[4]) != 0) {
        fprintf(stderr, "reference_bench: SIMD table '%s' is not available\n", argv[4]);
        return 2;
    }

    start = now();
    if (bcpm_catalog_open(&pseudo, argv[1], NULL, &err) != 0 ||
        bcpm_catalog_open(&latent, argv[2], NULL, &err) != 0) {
        fprintf(stderr, "reference_bench: %s\n", bcpm_error_format(&err, text, sizeof(text)));
        return 2;
    }
    ternary = calloc(pseudo->ntensors + 1, sizeof(*ternary));
    if (!ternary)
        return 2;
    for (size_t i = 0; i < pseudo->ntensors; i++) {
        if (is_ternary(pseudo->tensors[i].name))
            ternary[nternary++] = pseudo->tensors[i].name;
    }

    bcpm_reference_options_init(&options);
    if (bcpm_reference_compare_catalogs(pseudo, latent, ternary, nternary, &options, &findings,
                                        NULL, NULL, &err) != 0) {
        fprintf(stderr, "reference_bench: %s\n", bcpm_error_format(&err, text, sizeof(text)));
        return 2;
    }
    seconds = now() - start;
    bytes = file_bytes(pseudo) + file_bytes(latent);
    getrusage(RUSAGE_SELF, &usage);

    printf("reference: %.3f s, %.2f GB/s over %.2f GB (both files), %zu ternary tensors, "
           "%d threads, %s kernels, peak RSS %.1f MiB, CPU %.3f s user + %.3f s system\n",
           seconds, (double)bytes / seconds / 1e9, (double)bytes / 1e9, nternary,
           bcpm_quant_threads(), bcpm_quant_kernels()->name, (double)usage.ru_maxrss / 1024.0,
           cpu_seconds(&usage.ru_utime), cpu_seconds(&usage.ru_stime));
    for (size_t i = 0; i < findings.count && i < 20; i++)
        printf("  %s %s %s: %s\n", bcpm_severity_name(findings.items[i].severity),
               findings.items[i].rule, findings.items[i].tensor ? findings.items[i].tensor : "-",
               findings.items[i].message);
    printf("findings: %zu\n", findings.count);

    bcpm_findings_clear(&findings);
    free(ternary);
    bcpm_catalog_free(pseudo);
    bcpm_catalog_free(latent);
    return 0;
}
