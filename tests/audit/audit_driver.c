/*
 * Test driver for the audit store: builds a synthetic bcpm_check_result of
 * a chosen size and records it with bcpm_audit_record_run, the way
 * bitcpm-check does after a run. The concurrency, SIGKILL and fixture tests
 * run it as a separate process; tools/gen_audit_fixture.sh uses it to write
 * the committed schema fixture.
 *
 *   audit_driver --db PATH [--tensors N] [--findings N] [--files N]
 *                [--path P] [--config C] [--family F] [--exit-code N]
 *                [--started NS] [--host H] [--user U]
 *   audit_driver --digest FILE [--sha256]   print the file's digests
 *   audit_driver --digest FILE --time       also print bytes, seconds, GB/s
 *   audit_driver --scan FILE                sum the file's 64-bit words (the
 *                                           memory-read floor) and print the time
 *   --repeat N records N runs, one transaction each, in one process (benchmark).
 *
 * The synthetic content depends only on the arguments (see make_tensor and
 * make_finding). Tests can therefore state what a run must contain without
 * running this program.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "io/map.h"

struct driver_args {
    const char *db, *path, *config, *family, *host, *user, *digest, *scan;
    long tensors, findings, files, repeat;
    int exit_code, sha256, time;
    int64_t started_ns;
};

static const char *const projections[] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

static const char *const rules[] = {"ternary.values", "ternary.scale", "tensor.finite"};

/* Tensor i: model.layers.<i/7>.<projection i%7>.weight, bf16 [64, 128], ternary. */
static void make_tensor(struct bcpm_tensor_stats *t, long i, const char *file)
{
    char name[128];

    snprintf(name, sizeof(name), "model.layers.%ld.%s.weight", i / 7, projections[i % 7]);
    memset(t, 0, sizeof(*t));
    t->name = strdup(name);
    t->file = strdup(file);
    t->dtype = BCPM_DTYPE_BF16;
    t->ndim = 2;
    t->shape[0] = 64;
    t->shape[1] = 128;
    t->role = BCPM_ROLE_TERNARY;
    t->numel = 64 * 128;
    t->min = -0.5;
    t->max = 0.5;
    t->mean = 0.0;
    t->std = 0.25;
    t->ternary_checked = 1;
    t->group_size = -1;
    t->groups = 64;
    t->groups_ternary = 64;
    t->code_fraction[0] = 0.25;
    t->code_fraction[1] = 0.5;
    t->code_fraction[2] = 0.25;
    t->scale_min = t->scale_max = t->scale_mean = 0.5;
    t->shards_per_row = 1;
}

/* Finding j: rule j%3, severity j%4, on tensor j (mod tensors), "row j ...". */
static int make_finding(struct bcpm_findings *list, long j, long ntensors, const char *file)
{
    char tensor[128];
    struct bcpm_finding *f;

    snprintf(tensor, sizeof(tensor), "model.layers.%ld.%s.weight", (j % ntensors) / 7,
             projections[(j % ntensors) % 7]);
    f = bcpm_findings_add(list, rules[j % 3], (enum bcpm_severity)(j % 4), file, tensor,
                          "row %ld holds 3 values outside {-s, 0, +s}", j);
    if (!f)
        return -1;
    f->row = j;
    f->value = 0.125;
    return 0;
}

static void free_result(struct bcpm_check_result *r)
{
    for (size_t i = 0; i < r->nfiles; i++) {
        free(r->files[i].path);
        free(r->files[i].format);
        free(r->files[i].family);
        free(r->files[i].config_path);
    }
    for (size_t i = 0; i < r->ntensors; i++) {
        free(r->tensors[i].name);
        free(r->tensors[i].file);
    }
    free(r->files);
    free(r->tensors);
    free(r->rules_digest);
    bcpm_findings_clear(&r->findings);
}

static char *file_path(const struct driver_args *a, long i)
{
    char path[4096];

    if (a->files == 1)
        snprintf(path, sizeof(path), "%s", a->path);
    else
        snprintf(path, sizeof(path), "%s.%ld", a->path, i);
    return strdup(path);
}

static int build_result(const struct driver_args *a, struct bcpm_check_result *r)
{
    long per_file = a->tensors / a->files;

    memset(r, 0, sizeof(*r));
    r->files = calloc((size_t)a->files, sizeof(*r->files));
    r->tensors = calloc(a->tensors ? (size_t)a->tensors : 1, sizeof(*r->tensors));
    if (!r->files || !r->tensors)
        return -1;
    r->nfiles = (size_t)a->files;
    r->ntensors = (size_t)a->tensors;

    for (long i = 0; i < a->files; i++) {
        struct bcpm_checked_file *f = &r->files[i];
        f->path = file_path(a, i);
        f->format = strdup("safetensors");
        f->family = a->family ? strdup(a->family) : NULL;
        f->config_path = a->config ? strdup(a->config) : NULL;
        f->stage_detected = BCPM_STAGE_PSEUDO;
        f->size_bytes = (uint64_t)(1000 + i);
        f->mtime_ns = 1700000000000000000LL;
        f->first_tensor = (size_t)(i * per_file);
        f->ntensors = (size_t)(i + 1 == a->files ? a->tensors - i * per_file : per_file);
    }
    for (long i = 0; i < a->tensors; i++)
        make_tensor(&r->tensors[i], i, r->files[0].path);
    for (long j = 0; j < a->findings; j++)
        if (make_finding(&r->findings, j, a->tensors ? a->tensors : 1, r->files[0].path) != 0)
            return -1;

    r->fail_on = BCPM_SEVERITY_ERROR;
    r->failed = a->exit_code == 1;
    r->rules_digest = strdup("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    return 0;
}

static int record(const struct driver_args *a)
{
    struct bcpm_check_result result;
    struct bcpm_audit_run_info info;
    struct bcpm_audit *db;
    struct bcpm_error err;
    char line[2048];
    char *argv[] = {"bitcpm-check", "--audit-db", (char *)a->db, (char *)a->path, NULL};
    int64_t id = 0;
    int rc;

    bcpm_error_clear(&err);
    if (build_result(a, &result) != 0 ||
        bcpm_audit_run_info_init(&info, "check", 4, argv, &err) != 0 ||
        bcpm_audit_run_info_alloc_digests(&info, result.nfiles, &err) != 0) {
        fprintf(stderr, "audit_driver: out of memory\n");
        return 2;
    }
    for (size_t i = 0; i < result.nfiles; i++)
        snprintf(info.digests[i].xxh3_128, sizeof(info.digests[i].xxh3_128), "%032zx", i + 1);
    info.exit_code = a->exit_code;
    if (a->started_ns) {
        info.started_ns = a->started_ns;
        info.ended_ns = a->started_ns + 1500000000;
    } else {
        info.ended_ns = bcpm_audit_now_ns();
    }
    if (a->host) {
        free(info.host);
        info.host = strdup(a->host);
    }
    if (a->user) {
        free(info.user);
        info.user = strdup(a->user);
    }

    rc = bcpm_audit_open(&db, a->db, &err);
    if (rc == 0) {
        for (long i = 0; i < a->repeat && rc == 0; i++)
            rc = bcpm_audit_record_run(db, &info, &result, &id, &err);
        bcpm_audit_close(db);
    }
    bcpm_audit_run_info_free(&info);
    free_result(&result);
    if (rc != 0) {
        fprintf(stderr, "audit_driver: %s\n", bcpm_error_format(&err, line, sizeof(line)));
        return 2;
    }
    printf("%" PRId64 "\n", id);
    return 0;
}

static double seconds_since(int64_t start_ns)
{
    return (double)(bcpm_audit_now_ns() - start_ns) / 1e9;
}

static void print_speed(const char *what, uint64_t bytes, double seconds)
{
    printf("%s %" PRIu64 " bytes %.3f s %.2f GB/s\n", what, bytes, seconds,
           seconds > 0 ? (double)bytes / seconds / 1e9 : 0.0);
}

static int digest(const struct driver_args *a)
{
    struct bcpm_map *map;
    struct bcpm_error err;
    char xxh[BCPM_XXH128_HEX_SIZE], sha[BCPM_SHA256_HEX_SIZE], line[2048];
    int64_t start;

    bcpm_error_clear(&err);
    if (bcpm_map_open(&map, a->digest, &err) != 0) {
        fprintf(stderr, "audit_driver: %s\n", bcpm_error_format(&err, line, sizeof(line)));
        return 2;
    }
    start = bcpm_audit_now_ns();
    if (bcpm_digest_file(map, a->sha256, xxh, sha, &err) != 0) {
        fprintf(stderr, "audit_driver: %s\n", bcpm_error_format(&err, line, sizeof(line)));
        bcpm_map_close(map);
        return 2;
    }
    printf("%s%s%s\n", xxh, a->sha256 ? " " : "", sha);
    if (a->time)
        print_speed(a->sha256 ? "xxh3-128+sha256" : "xxh3-128", map->size,
                    seconds_since(start));
    bcpm_map_close(map);
    return 0;
}

/*
 * The floor a digest is measured against: read every 64-bit word once, in
 * the same windows and with the same page releases as bcpm_digest_file.
 */
static int scan(const struct driver_args *a)
{
    const uint64_t window = (uint64_t)64 << 20;
    struct bcpm_map *map;
    struct bcpm_error err;
    char line[2048];
    uint64_t sum = 0;
    int64_t start;

    bcpm_error_clear(&err);
    if (bcpm_map_open(&map, a->scan, &err) != 0) {
        fprintf(stderr, "audit_driver: %s\n", bcpm_error_format(&err, line, sizeof(line)));
        return 2;
    }
    start = bcpm_audit_now_ns();
    for (uint64_t offset = 0; offset < map->size; offset += window) {
        uint64_t length = map->size - offset < window ? map->size - offset : window;
        for (uint64_t i = 0; i + 8 <= length; i += 8) {
            uint64_t word;
            memcpy(&word, map->data + offset + i, 8);
            sum += word;
        }
        bcpm_map_release(map, offset, length);
    }
    printf("sum %016" PRIx64 "\n", sum);
    print_speed("scan", map->size, seconds_since(start));
    bcpm_map_close(map);
    return 0;
}

static long number(const char *text)
{
    char *end;
    long value = strtol(text, &end, 10);

    if (end == text || *end || value < 0) {
        fprintf(stderr, "audit_driver: expected a non-negative number, got '%s'\n", text);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv)
{
    struct driver_args a = {0};

    a.path = "/models/synthetic/model.safetensors";
    a.tensors = 4;
    a.findings = 3;
    a.files = 1;
    a.repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(opt, "--sha256") == 0 || strcmp(opt, "--time") == 0) {
            *(opt[2] == 's' ? &a.sha256 : &a.time) = 1;
            continue;
        }
        if (!value) {
            fprintf(stderr, "audit_driver: unknown or incomplete option '%s'\n", opt);
            return 2;
        }
        i++;
        if (strcmp(opt, "--db") == 0) a.db = value;
        else if (strcmp(opt, "--digest") == 0) a.digest = value;
        else if (strcmp(opt, "--scan") == 0) a.scan = value;
        else if (strcmp(opt, "--repeat") == 0) a.repeat = number(value);
        else if (strcmp(opt, "--path") == 0) a.path = value;
        else if (strcmp(opt, "--config") == 0) a.config = value;
        else if (strcmp(opt, "--family") == 0) a.family = value;
        else if (strcmp(opt, "--host") == 0) a.host = value;
        else if (strcmp(opt, "--user") == 0) a.user = value;
        else if (strcmp(opt, "--tensors") == 0) a.tensors = number(value);
        else if (strcmp(opt, "--findings") == 0) a.findings = number(value);
        else if (strcmp(opt, "--files") == 0) a.files = number(value);
        else if (strcmp(opt, "--exit-code") == 0) a.exit_code = (int)number(value);
        else if (strcmp(opt, "--started") == 0) a.started_ns = (int64_t)strtoll(value, NULL, 10);
        else {
            fprintf(stderr, "audit_driver: unknown option '%s'\n", opt);
            return 2;
        }
    }
    if (a.digest)
        return digest(&a);
    if (a.scan)
        return scan(&a);
    if (!a.db || a.files < 1) {
        fprintf(stderr, "audit_driver: give --db PATH (and --files of at least 1)\n");
        return 2;
    }
    return record(&a);
}
