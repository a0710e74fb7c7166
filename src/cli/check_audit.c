/*
 * The audit hookup of bitcpm-check: it chooses and opens the database,
 * digests each checkpoint's files and records the run. The rule engine's
 * value pass feeds the digest with each range of the file right after its
 * kernels read it, so every byte is read from memory once. A failed audit
 * write fails the run (exit 2), because a release gate that loses records
 * silently cannot be trusted later.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/digest.h"
#include "audit/stream.h"
#include "cli/check.h"
#include "cli/cli_common.h"

static void print_error(const struct bcpm_error *err)
{
    char text[2 * BCPM_ERROR_TEXT_MAX];

    cli_error(CHECK_PROGRAM, "%s", bcpm_error_format(err, text, sizeof(text)));
}

int check_audit_open(struct check_audit *a, int enabled, const char *db_option, int sha256,
                     int argc, char **argv)
{
    struct bcpm_error err;
    int rc;

    memset(a, 0, sizeof(*a));
    a->enabled = enabled;
    a->sha256 = sha256;
    if (!enabled)
        return CLI_CONTINUE;

    if (db_option) {
        if (strlen(db_option) >= sizeof(a->path)) {
            cli_error(CHECK_PROGRAM, "--audit-db path is longer than %zu bytes",
                      sizeof(a->path) - 1);
            return CLI_EXIT_FAILED;
        }
        strcpy(a->path, db_option);
    } else {
        rc = bcpm_audit_default_path(a->path, sizeof(a->path));
        if (rc != 0) {
            cli_error(CHECK_PROGRAM,
                      "no audit database path: set --audit-db, BITCPM_AUDIT_DB, XDG_DATA_HOME "
                      "or HOME, or pass --no-audit to skip the record");
            return CLI_EXIT_FAILED;
        }
    }

    bcpm_error_clear(&err);
    rc = bcpm_audit_open(&a->db, a->path, &err);
    if (rc == 0)
        rc = bcpm_audit_run_info_init(&a->info, "check", argc, argv, &err);
    if (rc != 0) {
        bcpm_error_file(&err, a->path);
        print_error(&err);
        check_audit_close(a);
        return CLI_EXIT_FAILED;
    }
    return CLI_CONTINUE;
}

/*
 * Digest the catalog's files as one stream in catalog order, fed by the
 * engine's value pass (audit/stream.h), so a sharded set gets one digest and
 * a single file gets what xxh128sum and sha256sum print. Each file of the
 * set also gets its own digest (a part) from the same pass.
 */
void check_digest_start(struct check_digest_job *job, const struct check_audit *a,
                        const struct bcpm_catalog *catalog)
{
    memset(job, 0, sizeof(*job));
    job->catalog = catalog;
    job->sha256 = a->sha256;
    if (!a->enabled)
        return;

    job->started = 1;
    job->rc = bcpm_digest_stream_new(&job->stream, catalog, a->sha256, &job->err);
    if (job->rc == 0)
        job->hook = bcpm_digest_stream_hook(job->stream);
}

/* Copy digest with its own copy of the parts into to. Returns 0 or -1 (out of memory). */
static int copy_digest(struct bcpm_audit_file_digest *to,
                       const struct bcpm_audit_file_digest *digest)
{
    *to = *digest;
    to->parts = NULL;
    to->nparts = 0;
    if (digest->nparts == 0)
        return 0;

    to->parts = calloc(digest->nparts, sizeof(*to->parts));
    if (!to->parts)
        return -1;
    for (size_t i = 0; i < digest->nparts; i++) {
        to->parts[i] = digest->parts[i];
        to->parts[i].path = digest->parts[i].path ? strdup(digest->parts[i].path) : NULL;
        to->nparts = i + 1;
        if (digest->parts[i].path && !to->parts[i].path) {
            bcpm_audit_file_digest_free_parts(to);
            return -1;
        }
    }
    return 0;
}

static int append_digest(struct check_audit *a, const struct bcpm_audit_file_digest *digest)
{
    if (a->ndigests == a->capacity) {
        size_t capacity = a->capacity ? 2 * a->capacity : 8;
        struct bcpm_audit_file_digest *grown = realloc(a->digests, capacity * sizeof(*grown));

        if (!grown)
            return -1;
        a->digests = grown;
        a->capacity = capacity;
    }
    if (copy_digest(&a->digests[a->ndigests], digest) != 0)
        return -1;
    a->ndigests++;
    return 0;
}

/*
 * Turn the stream's per-file digests into parts naming each file of the
 * catalog with its size and modification time. Returns 0 or -1 (out of memory).
 */
static int collect_parts(struct check_digest_job *job, const struct bcpm_digest_hex *hex)
{
    const struct bcpm_catalog *catalog = job->catalog;
    struct bcpm_audit_file_digest *digest = &job->digest;

    if (catalog->nfiles == 0)
        return 0;
    digest->parts = calloc(catalog->nfiles, sizeof(*digest->parts));
    if (!digest->parts)
        return -1;
    for (size_t i = 0; i < catalog->nfiles; i++) {
        const struct bcpm_file *file = &catalog->files[i];
        struct bcpm_audit_part_digest *part = &digest->parts[i];

        part->path = strdup(file->path ? file->path : "");
        digest->nparts = i + 1;
        if (!part->path)
            return -1;
        part->size_bytes = file->map ? file->map->size : 0;
        part->mtime_ns = file->map ? file->map->mtime_ns : 0;
        memcpy(part->xxh3_128, hex[i].xxh3_128, sizeof(part->xxh3_128));
        memcpy(part->sha256, hex[i].sha256, sizeof(part->sha256));
    }
    return 0;
}

/* Finish the stream into job->digest, parts included. Returns 0 or -1 (out of memory). */
static int finish_stream(struct check_digest_job *job)
{
    size_t nfiles = job->catalog->nfiles;
    struct bcpm_digest_hex *hex = calloc(nfiles ? nfiles : 1, sizeof(*hex));
    int rc;

    /* Without room for the parts the stream still yields the checkpoint's digest. */
    bcpm_digest_stream_finish(job->stream, job->digest.xxh3_128, job->digest.sha256, hex);
    job->stream = NULL;
    if (!hex)
        return -1;
    rc = collect_parts(job, hex);
    free(hex);
    return rc;
}

int check_digest_finish(struct check_digest_job *job, struct check_audit *a,
                        const struct bcpm_check_result *result, size_t first_file)
{
    if (!job->started)
        return CLI_CONTINUE;
    job->started = 0;
    job->hook = NULL;
    /* Hashes whatever the check did not read: headers, skipped tensors, the tail. */
    if (job->stream && finish_stream(job) != 0) {
        bcpm_audit_file_digest_free_parts(&job->digest);
        cli_error(CHECK_PROGRAM, "out of memory while recording digests");
        return CLI_EXIT_FAILED;
    }

    if (job->rc != 0) {
        print_error(&job->err);
        return CLI_EXIT_FAILED;
    }
    /* Paths before this one that could not be opened have file rows without a digest. */
    while (a->ndigests < first_file) {
        static const struct bcpm_audit_file_digest none;

        if (append_digest(a, &none) != 0) {
            cli_error(CHECK_PROGRAM, "out of memory while recording digests");
            return CLI_EXIT_FAILED;
        }
    }
    for (size_t i = first_file; i < result->nfiles; i++) {
        if (append_digest(a, &job->digest) != 0) {
            bcpm_audit_file_digest_free_parts(&job->digest);
            cli_error(CHECK_PROGRAM, "out of memory while recording digests");
            return CLI_EXIT_FAILED;
        }
    }
    bcpm_audit_file_digest_free_parts(&job->digest);
    return CLI_CONTINUE;
}

int check_audit_record(struct check_audit *a, const struct bcpm_check_result *result,
                       int exit_code)
{
    static const struct bcpm_audit_file_digest empty;
    struct bcpm_error err;
    char text[2 * BCPM_ERROR_TEXT_MAX];
    int64_t run_id;
    int rc;

    if (!a->enabled)
        return CLI_CONTINUE;

    /* Files checked without a digest (a failed read) get empty digests, one per file. */
    while (a->ndigests < result->nfiles) {
        if (append_digest(a, &empty) != 0) {
            cli_error(CHECK_PROGRAM, "out of memory while recording digests");
            return CLI_EXIT_FAILED;
        }
    }
    bcpm_error_clear(&err);
    rc = bcpm_audit_run_info_alloc_digests(&a->info, result->nfiles, &err);
    if (rc == 0) {
        /* The parts move to the run record, which frees them. */
        for (size_t i = 0; i < result->nfiles; i++) {
            a->info.digests[i] = a->digests[i];
            a->digests[i].parts = NULL;
            a->digests[i].nparts = 0;
        }
        a->info.ended_ns = bcpm_audit_now_ns();
        a->info.exit_code = exit_code;
        rc = bcpm_audit_record_run(a->db, &a->info, result, &run_id, &err);
    }
    if (rc != 0) {
        bcpm_error_file(&err, a->path);
        cli_error(CHECK_PROGRAM, "the run was not recorded in the audit database: %s",
                  bcpm_error_format(&err, text, sizeof(text)));
        return CLI_EXIT_FAILED;
    }
    return CLI_CONTINUE;
}

void check_audit_close(struct check_audit *a)
{
    if (a->db)
        bcpm_audit_close(a->db);
    a->db = NULL;
    bcpm_audit_run_info_free(&a->info);
    for (size_t i = 0; i < a->ndigests; i++)
        bcpm_audit_file_digest_free_parts(&a->digests[i]);
    free(a->digests);
    a->digests = NULL;
    a->ndigests = a->capacity = 0;
}
