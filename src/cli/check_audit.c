/*
 * The audit hookup of bitcpm-check: it chooses and opens the database,
 * digests each checkpoint's files and records the run. The digest runs on a
 * thread beside the rule engine. Both read the same page-cached pages, so the
 * file is read from disk once. A failed audit write fails the run (exit 2),
 * because a release gate that loses records silently cannot be trusted later.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "audit/digest.h"
#include "cli/check.h"
#include "cli/cli_common.h"

/* Bytes digested between page releases: large enough to hide the madvise calls, small
 * enough to keep the resident set far below the 256 MiB budget. */
#define DIGEST_WINDOW (16u << 20)

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
 * Digest every file of the catalog in order as one stream, so a sharded set
 * gets one digest. For a single file it equals what xxh128sum and sha256sum
 * print.
 */
static void *digest_thread(void *arg)
{
    struct check_digest_job *job = arg;
    const struct bcpm_catalog *catalog = job->catalog;
    struct bcpm_digest ctx;

    job->rc = bcpm_digest_init(&ctx, job->sha256, &job->err);
    if (job->rc != 0)
        return NULL;
    for (size_t i = 0; i < catalog->nfiles; i++) {
        const struct bcpm_map *map = catalog->files[i].map;

        for (uint64_t at = 0; map && at < map->size; at += DIGEST_WINDOW) {
            uint64_t len = map->size - at < DIGEST_WINDOW ? map->size - at : DIGEST_WINDOW;

            bcpm_digest_update(&ctx, map->data + at, (size_t)len);
            bcpm_map_release(map, at, len);
        }
    }
    bcpm_digest_final(&ctx, job->digest.xxh3_128, job->digest.sha256);
    return NULL;
}

void check_digest_start(struct check_digest_job *job, const struct check_audit *a,
                        const struct bcpm_catalog *catalog)
{
    pthread_t *thread;

    memset(job, 0, sizeof(*job));
    job->catalog = catalog;
    job->sha256 = a->sha256;
    if (!a->enabled)
        return;

    thread = malloc(sizeof(*thread));
    if (thread && pthread_create(thread, NULL, digest_thread, job) == 0) {
        job->thread = thread;
        job->started = 1;
        return;
    }

    /* Without a thread, digest here: slower, but the record stays complete. */
    free(thread);
    digest_thread(job);
    job->started = 1;
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
    a->digests[a->ndigests++] = *digest;
    return 0;
}

int check_digest_finish(struct check_digest_job *job, struct check_audit *a,
                        const struct bcpm_check_result *result, size_t first_file)
{
    if (!job->started)
        return CLI_CONTINUE;
    if (job->thread) {
        pthread_join(*(pthread_t *)job->thread, NULL);
        free(job->thread);
        job->thread = NULL;
    }
    job->started = 0;

    if (job->rc != 0) {
        print_error(&job->err);
        return CLI_EXIT_FAILED;
    }
    for (size_t i = first_file; i < result->nfiles; i++) {
        if (append_digest(a, &job->digest) != 0) {
            cli_error(CHECK_PROGRAM, "out of memory while recording digests");
            return CLI_EXIT_FAILED;
        }
    }
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
        for (size_t i = 0; i < result->nfiles; i++)
            a->info.digests[i] = a->digests[i];
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
    free(a->digests);
    a->digests = NULL;
    a->ndigests = a->capacity = 0;
}
