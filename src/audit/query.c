/*
 * Read-side queries of the audit database for bitcpm-audit: history, show,
 * compare and export. Each builds a jansson value; the command formats it as
 * text, JSON or CSV.
 */
#include "audit/internal.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A column as a JSON value of the matching type. */
static json_t *column_value(sqlite3_stmt *stmt, int i)
{
    switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(stmt, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(stmt, i));
    case SQLITE_TEXT:
        return json_stringn((const char *)sqlite3_column_text(stmt, i),
                            (size_t)sqlite3_column_bytes(stmt, i));
    default:
        return json_null();
    }
}

/* The current row as an object keyed by column name. */
static json_t *row_object(sqlite3_stmt *stmt)
{
    json_t *row = json_object();
    int n = sqlite3_column_count(stmt);

    for (int i = 0; row && i < n; i++)
        json_object_set_new(row, sqlite3_column_name(stmt, i), column_value(stmt, i));
    return row;
}

/* "2026-01-31T12:00:00Z" for a time in nanoseconds since the epoch. */
static json_t *iso_time(int64_t ns)
{
    char text[32];
    time_t seconds = (time_t)(ns / 1000000000);
    struct tm tm;

    if (!gmtime_r(&seconds, &tm) || !strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm))
        return json_null();
    return json_string(text);
}

static const char *verdict_of(int exit_code)
{
    if (exit_code == 0)
        return "pass";
    return exit_code == 1 ? "fail" : "error";
}

/* Every row of a statement with ?1 bound to run_id, as an array of objects. */
static int rows_of_run(struct bcpm_audit *db, const char *sql, int64_t run_id, json_t **out,
                       struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    json_t *rows;
    int rc = audit_prepare(db, sql, &stmt, err);

    if (rc < 0)
        return rc;
    rows = json_array();
    sqlite3_bind_int64(stmt, 1, run_id);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        json_array_append_new(rows, row_object(stmt));
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        json_decref(rows);
        return audit_db_error(db, err, rc, "reading the run's rows");
    }
    *out = rows;
    return 0;
}

/* Add started, verdict and the per-severity counts object to a run object. */
static void decorate_run(json_t *run)
{
    json_t *counts = json_object();
    static const char *const names[] = {"critical", "error", "warning", "info"};

    json_object_set_new(run, "started",
                        iso_time(json_integer_value(json_object_get(run, "started_ns"))));
    json_object_set_new(
        run, "verdict",
        json_string(verdict_of((int)json_integer_value(json_object_get(run, "exit_code")))));
    for (int s = 0; s < 4; s++) {
        char key[16];
        snprintf(key, sizeof(key), "n_%s", names[s]);
        json_object_set(counts, names[s], json_object_get(run, key));
        json_object_del(run, key);
    }
    json_object_set_new(run, "finding_counts", counts);
}

static const char history_sql[] =
    "SELECT id, started_ns, ended_ns, command, exit_code, n_critical, n_error, n_warning, "
    "n_info FROM runs r"
    " WHERE (?1 IS NULL OR id IN (SELECT run_id FROM files WHERE path = ?1 OR realpath = ?2))"
    " AND (?3 IS NULL OR id IN (SELECT run_id FROM files WHERE family = ?3 OR model_name = ?3"
    " OR model_dir = ?3 OR config_path = ?3))"
    " ORDER BY id DESC LIMIT ?4";

int bcpm_audit_history(struct bcpm_audit *db, const struct bcpm_audit_filter *filter,
                       json_t **out, struct bcpm_error *err)
{
    char resolved[PATH_MAX];
    sqlite3_stmt *stmt, *paths;
    json_t *runs;
    int rc = audit_prepare(db, history_sql, &stmt, err);

    if (rc < 0)
        return rc;
    rc = audit_prepare(db, "SELECT path FROM files WHERE run_id = ?1 ORDER BY position",
                       &paths, err);
    if (rc < 0) {
        sqlite3_finalize(stmt);
        return rc;
    }

    if (filter && filter->path) {
        sqlite3_bind_text(stmt, 1, filter->path, -1, SQLITE_TRANSIENT);
        if (realpath(filter->path, resolved))
            sqlite3_bind_text(stmt, 2, resolved, -1, SQLITE_TRANSIENT);
    }
    if (filter && filter->model)
        sqlite3_bind_text(stmt, 3, filter->model, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 4, filter && filter->limit > 0 ? filter->limit : -1);

    runs = json_array();
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        json_t *run = row_object(stmt);
        json_t *files = json_array();

        decorate_run(run);
        sqlite3_bind_int64(paths, 1, sqlite3_column_int64(stmt, 0));
        while (sqlite3_step(paths) == SQLITE_ROW)
            json_array_append_new(files, column_value(paths, 0));
        sqlite3_reset(paths);
        json_object_set_new(run, "files", files);
        json_array_append_new(runs, run);
    }
    sqlite3_finalize(stmt);
    sqlite3_finalize(paths);
    if (rc != SQLITE_DONE) {
        json_decref(runs);
        return audit_db_error(db, err, rc, "listing runs");
    }
    *out = runs;
    return 0;
}

static const char show_files_sql[] =
    "SELECT id, position, path, realpath, size_bytes, mtime_ns, format, stage, family, "
    "config_path, model_dir, model_name, xxh3_128, sha256, ntensors FROM files "
    "WHERE run_id = ?1 ORDER BY id";

static const char export_files_sql[] =
    "SELECT id, position, path, realpath, size_bytes, mtime_ns, format, stage, family, "
    "config_path, config_text, model_dir, model_name, xxh3_128, sha256, ntensors FROM files "
    "WHERE run_id = ?1 ORDER BY id";

static const char findings_sql[] =
    "SELECT id, rule, severity, file, tensor, message, byte_offset, row, col, value "
    "FROM findings WHERE run_id = ?1 ORDER BY id";

static const char tensors_sql[] =
    "SELECT id, file_id, name, file, dtype, shape, role, numel, nan, inf, min, max, mean, "
    "std, ternary_checked, group_size, groups, groups_ternary, code_neg, code_zero, "
    "code_pos, scale_min, scale_max, scale_mean, shards_per_row FROM tensors "
    "WHERE run_id = ?1 ORDER BY id";

static const char parts_sql[] =
    "SELECT file_id, ordinal, path, size_bytes, mtime_ns, xxh3_128, sha256 FROM file_parts "
    "WHERE run_id = ?1 ORDER BY id";

/*
 * Give every file object a "parts" array: its physical files with their own
 * digests, in ordinal order. Runs written before schema 2 get empty arrays.
 */
static int attach_parts(struct bcpm_audit *db, int64_t run_id, json_t *files,
                        struct bcpm_error *err)
{
    json_t *parts, *file, *part;
    size_t i, j;
    int rc = rows_of_run(db, parts_sql, run_id, &parts, err);

    if (rc < 0)
        return rc;
    json_array_foreach(files, i, file) {
        json_int_t id = json_integer_value(json_object_get(file, "id"));
        json_t *own = json_array();

        json_array_foreach(parts, j, part) {
            if (json_integer_value(json_object_get(part, "file_id")) == id)
                json_array_append(own, part);
        }
        json_object_set_new(file, "parts", own);
    }
    json_array_foreach(parts, j, part)
        json_object_del(part, "file_id");
    json_decref(parts);
    return 0;
}

/* The run row alone, decorated; BCPM_ERR_NOT_FOUND when absent. */
static int run_row(struct bcpm_audit *db, int64_t run_id, json_t **out, struct bcpm_error *err)
{
    json_t *rows;
    int rc = rows_of_run(db,
                         "SELECT id, started_ns, ended_ns, command, exit_code, n_critical, "
                         "n_error, n_warning, n_info, command_line, tool_version, host, user, "
                         "rules_digest, fail_on, failed, nfiles, ntensors, nfindings, "
                         "chain_format, prev_hash, hash FROM runs WHERE id = ?1",
                         run_id, &rows, err);

    if (rc < 0)
        return rc;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return bcpm_error_set(err, BCPM_ERR_NOT_FOUND, db->path, NULL,
                              "no run with id %lld", (long long)run_id);
    }
    *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    decorate_run(*out);
    return 0;
}

int bcpm_audit_show(struct bcpm_audit *db, int64_t run_id, int with_tensors, json_t **out,
                    struct bcpm_error *err)
{
    json_t *run, *files = NULL, *findings = NULL, *tensors = NULL;
    int rc = run_row(db, run_id, &run, err);

    if (rc < 0)
        return rc;
    rc = rows_of_run(db, with_tensors ? export_files_sql : show_files_sql, run_id, &files, err);
    if (rc == 0)
        rc = attach_parts(db, run_id, files, err);
    if (rc == 0)
        rc = rows_of_run(db, findings_sql, run_id, &findings, err);
    if (rc == 0 && with_tensors)
        rc = rows_of_run(db, tensors_sql, run_id, &tensors, err);
    if (rc < 0) {
        json_decref(run);
        json_decref(files);
        json_decref(findings);
        return rc;
    }

    json_object_set_new(run, "files", files);
    json_object_set_new(run, "findings", findings);
    if (tensors)
        json_object_set_new(run, "tensors", tensors);
    *out = run;
    return 0;
}

/*
 * Findings of ?1 with no partner in ?2. Partners share rule, tensor and
 * message. The k-th copy of a key in one run pairs with the k-th copy in the
 * other, so duplicates are counted.
 */
static const char unmatched_sql[] =
    "WITH a AS (SELECT id, rule, severity, file, tensor, message, row_number() OVER "
    "(PARTITION BY rule, tensor, message ORDER BY id) AS k FROM findings WHERE run_id = ?1),"
    " b AS (SELECT rule, tensor, message, row_number() OVER (PARTITION BY rule, tensor, "
    "message ORDER BY id) AS k FROM findings WHERE run_id = ?2)"
    " SELECT id, rule, severity, file, tensor, message FROM a WHERE NOT EXISTS (SELECT 1 FROM b"
    " WHERE b.rule = a.rule AND b.tensor IS a.tensor AND b.message = a.message AND b.k = a.k)"
    " ORDER BY id";

static int unmatched(struct bcpm_audit *db, int64_t from, int64_t against, json_t **out,
                     struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    json_t *rows;
    int rc = audit_prepare(db, unmatched_sql, &stmt, err);

    if (rc < 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, from);
    sqlite3_bind_int64(stmt, 2, against);
    rows = json_array();
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW)
        json_array_append_new(rows, row_object(stmt));
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        json_decref(rows);
        return audit_db_error(db, err, rc, "comparing findings");
    }
    *out = rows;
    return 0;
}

int bcpm_audit_compare(struct bcpm_audit *db, int64_t base, int64_t other, json_t **out,
                       struct bcpm_error *err)
{
    json_t *base_run, *other_run, *added = NULL, *removed = NULL;
    int rc = run_row(db, base, &base_run, err);

    if (rc < 0)
        return rc;
    rc = run_row(db, other, &other_run, err);
    if (rc < 0) {
        json_decref(base_run);
        return rc;
    }
    rc = unmatched(db, other, base, &added, err);
    if (rc == 0)
        rc = unmatched(db, base, other, &removed, err);
    if (rc < 0) {
        json_decref(base_run);
        json_decref(other_run);
        json_decref(added);
        return rc;
    }

    *out = json_pack("{s:o, s:o, s:o, s:o}", "base", base_run, "other", other_run, "added",
                     added, "removed", removed);
    return *out ? 0 : bcpm_error_set(err, BCPM_ERR_NOMEM, db->path, NULL, "out of memory");
}

int bcpm_audit_export(struct bcpm_audit *db, int64_t run_id, json_t **out,
                      struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    json_t *runs;
    int rc;

    if (run_id > 0) {
        json_t *run;
        rc = bcpm_audit_show(db, run_id, 1, &run, err);
        if (rc < 0)
            return rc;
        *out = json_array();
        json_array_append_new(*out, run);
        return 0;
    }

    rc = audit_prepare(db, "SELECT id FROM runs ORDER BY id", &stmt, err);
    if (rc < 0)
        return rc;
    runs = json_array();
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        json_t *run;
        int shown = bcpm_audit_show(db, sqlite3_column_int64(stmt, 0), 1, &run, err);
        if (shown < 0) {
            sqlite3_finalize(stmt);
            json_decref(runs);
            return shown;
        }
        json_array_append_new(runs, run);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        json_decref(runs);
        return audit_db_error(db, err, rc, "listing runs for export");
    }
    *out = runs;
    return 0;
}
