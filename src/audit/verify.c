/* Recomputing the hash chain over every run; see audit.h and chain.c. */
#include "audit/internal.h"

#include <stdio.h>
#include <string.h>

/* The number of rows table has for run_id. */
static int count_rows(struct bcpm_audit *db, const char *table, int64_t run_id, int64_t *count,
                      struct bcpm_error *err)
{
    char sql[128];
    sqlite3_stmt *stmt;
    int rc;

    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE run_id = ?1", table);
    rc = audit_prepare(db, sql, &stmt, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, run_id);
    rc = sqlite3_step(stmt);
    *count = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW)
        return audit_db_error(db, err, rc, "counting a run's rows");
    return 0;
}

/* Fill out->reason when run's row counts differ from what its run row states. */
static int check_counts(struct bcpm_audit *db, sqlite3_stmt *run, struct bcpm_audit_verification *out,
                        struct bcpm_error *err)
{
    static const char *const tables[] = {"files", "tensors", "findings"};
    int64_t id = sqlite3_column_int64(run, 0);

    for (int t = 0; t < 3; t++) {
        int64_t expected = sqlite3_column_int64(run, 4 + t), found;
        int rc = count_rows(db, tables[t], id, &found, err);

        if (rc < 0)
            return rc;
        if (found != expected) {
            snprintf(out->reason, sizeof(out->reason),
                     "it states %lld rows in %s but %lld are stored",
                     (long long)expected, tables[t], (long long)found);
            return 1;
        }
    }
    return 0;
}

/*
 * Runs of chain format 1 predate file_parts and their hash does not cover it,
 * so a part row that names such a run was added afterwards.
 */
static int check_parts(struct bcpm_audit *db, sqlite3_stmt *run, int format,
                       struct bcpm_audit_verification *out, struct bcpm_error *err)
{
    int64_t found;
    int rc;

    if (format >= 2)
        return 0;
    rc = count_rows(db, "file_parts", sqlite3_column_int64(run, 0), &found, err);
    if (rc < 0)
        return rc;
    if (found != 0) {
        snprintf(out->reason, sizeof(out->reason),
                 "it uses chain format %d, which has no file parts, but %lld are stored",
                 format, (long long)found);
        return 1;
    }
    return 0;
}

/*
 * Check one run against the previous run's hash. Returns 1 and fills
 * out->reason when the run fails, 0 when it holds, negative on read errors.
 */
static int check_run(struct bcpm_audit *db, sqlite3_stmt *run, const char *expected_prev,
                     struct bcpm_audit_verification *out, struct bcpm_error *err)
{
    int64_t id = sqlite3_column_int64(run, 0);
    const char *prev = (const char *)sqlite3_column_text(run, 1);
    const char *stored = (const char *)sqlite3_column_text(run, 2);
    int format = sqlite3_column_int(run, 3);
    char computed[65];
    int rc;

    if (!prev || strcmp(prev, expected_prev) != 0) {
        snprintf(out->reason, sizeof(out->reason),
                 "prev_hash %.64s does not match the previous run's hash %.64s "
                 "(a run before it was removed or altered)",
                 prev ? prev : "(null)", expected_prev);
        return 1;
    }

    rc = audit_chain_hash(db, id, format, prev, computed, err);
    if (rc < 0)
        return rc;
    if (!stored || strcmp(stored, computed) != 0) {
        snprintf(out->reason, sizeof(out->reason),
                 "stored hash %.64s does not match the hash of its rows %s (the "
                 "run, its files, tensors or findings were changed)",
                 stored ? stored : "(null)", computed);
        return 1;
    }
    rc = check_counts(db, run, out, err);
    if (rc != 0)
        return rc;
    return check_parts(db, run, format, out, err);
}

int bcpm_audit_verify(struct bcpm_audit *db, struct bcpm_audit_verification *out,
                      struct bcpm_error *err)
{
    char expected_prev[65];
    sqlite3_stmt *stmt;
    int rc;

    memset(out, 0, sizeof(*out));
    snprintf(expected_prev, sizeof(expected_prev), "%s", AUDIT_GENESIS_HASH);

    /* A read transaction gives one consistent snapshot while writers go on. */
    rc = audit_exec(db, "BEGIN", err);
    if (rc != 0)
        return rc < 0 ? rc : BCPM_ERR_DATABASE;
    rc = audit_prepare(db,
                       "SELECT id, prev_hash, hash, chain_format, nfiles, ntensors, nfindings "
                       "FROM runs ORDER BY id",
                       &stmt, err);
    if (rc < 0) {
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int bad = check_run(db, stmt, expected_prev, out, err);

        if (bad < 0) {
            rc = bad;
            break;
        }
        if (bad) {
            out->first_bad_run = sqlite3_column_int64(stmt, 0);
            rc = SQLITE_DONE;
            break;
        }
        /* check_run has compared the stored hash, so it is not NULL here. */
        out->runs_checked++;
        snprintf(expected_prev, sizeof(expected_prev), "%s",
                 (const char *)sqlite3_column_text(stmt, 2));
    }
    sqlite3_finalize(stmt);
    sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);

    if (rc < 0)
        return rc;
    if (rc != SQLITE_DONE)
        return audit_db_error(db, err, rc, "reading runs for verification");
    return 0;
}
