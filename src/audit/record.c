/*
 * Writing one run: the run row, its files with their parts, tensors and
 * findings, and the chain hash, in one transaction (see audit.h for the guarantees).
 */
#include "audit/internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* config.json files are a few kilobytes; a larger one is not stored. */
#define CONFIG_TEXT_MAX ((long)4 << 20)

static void bind_text(sqlite3_stmt *stmt, int i, const char *text)
{
    if (text)
        sqlite3_bind_text(stmt, i, text, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(stmt, i);
}

/* Bind a double, or NULL when it is not finite (SQLite has no NaN). */
static void bind_real(sqlite3_stmt *stmt, int i, double value)
{
    if (isfinite(value))
        sqlite3_bind_double(stmt, i, value);
    else
        sqlite3_bind_null(stmt, i);
}

/* Run a prepared insert once; SQLite's code comes back for the retry logic. */
static int step_insert(struct bcpm_audit *db, sqlite3_stmt *stmt, const char *what,
                       struct bcpm_error *err)
{
    int rc = sqlite3_step(stmt);

    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (rc == SQLITE_DONE)
        return 0;
    audit_db_error(db, err, rc, what);
    return audit_is_busy(rc) ? rc : BCPM_ERR_DATABASE;
}

/* The whole file, or NULL when it cannot be read or exceeds CONFIG_TEXT_MAX. */
static char *read_config_text(const char *path)
{
    FILE *f;
    long size;
    char *text = NULL;

    if (!path || !(f = fopen(path, "rb")))
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && size <= CONFIG_TEXT_MAX &&
        fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size + 1))) {
        if (fread(text, 1, (size_t)size, f) != (size_t)size) {
            free(text);
            text = NULL;
        } else {
            text[size] = '\0';
        }
    }
    fclose(f);
    return text;
}

/* Copy the folder part of path ("." for a bare name) into out. */
static void folder_of(const char *path, char *out, size_t size)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(out, size, ".");
    else if (slash == path)
        snprintf(out, size, "/");
    else
        snprintf(out, size, "%.*s", (int)(slash - path), path);
}

/*
 * The folder that names the model: the one holding config.json, else the
 * checked path itself when it is a folder. NULL for a lone weights file.
 */
static int model_folder(const struct bcpm_checked_file *file, char *dir, size_t size)
{
    struct stat st;

    if (file->config_path) {
        folder_of(file->config_path, dir, size);
        return 1;
    }
    if (stat(file->path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(dir, size, "%s", file->path);
        while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
            dir[strlen(dir) - 1] = '\0';
        return 1;
    }
    return 0;
}

static int insert_run(struct bcpm_audit *db, const struct bcpm_audit_run_info *info,
                      const struct bcpm_check_result *result, const char *prev_hash,
                      int64_t *run_id, struct bcpm_error *err)
{
    int64_t counts[4] = {0, 0, 0, 0};
    sqlite3_stmt *stmt;
    int rc;

    for (size_t i = 0; i < result->findings.count; i++) {
        unsigned severity = (unsigned)result->findings.items[i].severity;
        counts[severity <= BCPM_SEVERITY_CRITICAL ? severity : BCPM_SEVERITY_CRITICAL]++;
    }

    rc = audit_prepare(db,
                       "INSERT INTO runs (started_ns, ended_ns, tool_version, command, "
                       "command_line, host, user, exit_code, rules_digest, fail_on, failed, "
                       "nfiles, ntensors, nfindings, n_info, n_warning, n_error, n_critical, "
                       "chain_format, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                       "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, '')",
                       &stmt, err);
    if (rc < 0)
        return rc;

    sqlite3_bind_int64(stmt, 1, info->started_ns);
    sqlite3_bind_int64(stmt, 2, info->ended_ns);
    bind_text(stmt, 3, info->tool_version ? info->tool_version : BCPM_VERSION);
    bind_text(stmt, 4, info->command ? info->command : "check");
    bind_text(stmt, 5, info->command_line ? info->command_line : "");
    bind_text(stmt, 6, info->host);
    bind_text(stmt, 7, info->user);
    sqlite3_bind_int(stmt, 8, info->exit_code);
    bind_text(stmt, 9, result->rules_digest);
    bind_text(stmt, 10, bcpm_severity_name(result->fail_on));
    sqlite3_bind_int(stmt, 11, result->failed ? 1 : 0);
    sqlite3_bind_int64(stmt, 12, (int64_t)result->nfiles);
    sqlite3_bind_int64(stmt, 13, (int64_t)result->ntensors);
    sqlite3_bind_int64(stmt, 14, (int64_t)result->findings.count);
    for (int s = 0; s < 4; s++)
        sqlite3_bind_int64(stmt, 15 + s, counts[s]);
    sqlite3_bind_int(stmt, 19, AUDIT_CHAIN_FORMAT);
    bind_text(stmt, 20, prev_hash);

    rc = step_insert(db, stmt, "inserting the run", err);
    sqlite3_finalize(stmt);
    if (rc == 0)
        *run_id = sqlite3_last_insert_rowid(db->db);
    return rc;
}

static int insert_files(struct bcpm_audit *db, int64_t run_id,
                        const struct bcpm_audit_run_info *info,
                        const struct bcpm_check_result *result, int64_t *file_ids,
                        struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    int rc = audit_prepare(db,
                           "INSERT INTO files (run_id, position, path, realpath, size_bytes, "
                           "mtime_ns, format, stage, family, config_path, config_text, "
                           "model_dir, model_name, xxh3_128, sha256, ntensors) VALUES (?1, ?2, "
                           "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                           &stmt, err);
    if (rc < 0)
        return rc;

    for (size_t i = 0; i < result->nfiles && rc == 0; i++) {
        const struct bcpm_checked_file *file = &result->files[i];
        const struct bcpm_audit_file_digest *digest =
            info->digests && i < info->ndigests ? &info->digests[i] : NULL;
        char resolved[PATH_MAX], dir[PATH_MAX];
        char *config_text = read_config_text(file->config_path);
        int has_dir = model_folder(file, dir, sizeof(dir));
        const char *name = has_dir && strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;

        sqlite3_bind_int64(stmt, 1, run_id);
        sqlite3_bind_int64(stmt, 2, (int64_t)i);
        bind_text(stmt, 3, file->path ? file->path : "");
        bind_text(stmt, 4, file->path && realpath(file->path, resolved) ? resolved : NULL);
        sqlite3_bind_int64(stmt, 5, (int64_t)file->size_bytes);
        sqlite3_bind_int64(stmt, 6, file->mtime_ns);
        bind_text(stmt, 7, file->format);
        bind_text(stmt, 8, audit_stage_text(file->stage_detected));
        bind_text(stmt, 9, file->family);
        bind_text(stmt, 10, file->config_path);
        bind_text(stmt, 11, config_text);
        bind_text(stmt, 12, has_dir ? dir : NULL);
        bind_text(stmt, 13, has_dir && name[0] ? name : NULL);
        bind_text(stmt, 14, digest && digest->xxh3_128[0] ? digest->xxh3_128 : NULL);
        bind_text(stmt, 15, digest && digest->sha256[0] ? digest->sha256 : NULL);
        sqlite3_bind_int64(stmt, 16, (int64_t)file->ntensors);
        free(config_text);

        rc = step_insert(db, stmt, "inserting a file", err);
        file_ids[i] = sqlite3_last_insert_rowid(db->db);
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* Each file's parts (shards) with their own digests; see schema.c. */
static int insert_parts(struct bcpm_audit *db, int64_t run_id,
                        const struct bcpm_audit_run_info *info,
                        const struct bcpm_check_result *result, const int64_t *file_ids,
                        struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    int rc;

    if (!info->digests)
        return 0;
    rc = audit_prepare(db,
                       "INSERT INTO file_parts (run_id, file_id, ordinal, path, size_bytes, "
                       "mtime_ns, xxh3_128, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                       &stmt, err);
    if (rc < 0)
        return rc;

    for (size_t i = 0; i < result->nfiles && i < info->ndigests && rc == 0; i++) {
        const struct bcpm_audit_file_digest *digest = &info->digests[i];

        for (size_t p = 0; p < digest->nparts && rc == 0; p++) {
            const struct bcpm_audit_part_digest *part = &digest->parts[p];

            sqlite3_bind_int64(stmt, 1, run_id);
            sqlite3_bind_int64(stmt, 2, file_ids[i]);
            sqlite3_bind_int64(stmt, 3, (int64_t)p);
            bind_text(stmt, 4, part->path ? part->path : "");
            sqlite3_bind_int64(stmt, 5, (int64_t)part->size_bytes);
            sqlite3_bind_int64(stmt, 6, part->mtime_ns);
            bind_text(stmt, 7, part->xxh3_128[0] ? part->xxh3_128 : NULL);
            bind_text(stmt, 8, part->sha256[0] ? part->sha256 : NULL);
            rc = step_insert(db, stmt, "inserting a file part", err);
        }
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* The file row whose tensor range contains tensor index t, or 0 for none. */
static int64_t file_of_tensor(const struct bcpm_check_result *result, const int64_t *file_ids,
                              size_t t)
{
    for (size_t i = 0; i < result->nfiles; i++) {
        const struct bcpm_checked_file *file = &result->files[i];
        if (t >= file->first_tensor && t - file->first_tensor < file->ntensors)
            return file_ids[i];
    }
    return 0;
}

static void format_shape(const struct bcpm_tensor_stats *tensor, char *out, size_t size)
{
    size_t used = 0;
    int ndim = tensor->ndim;

    if (ndim < 0)
        ndim = 0;
    if (ndim > BCPM_MAX_DIMS)
        ndim = BCPM_MAX_DIMS;

    used += (size_t)snprintf(out, size, "[");
    for (int d = 0; d < ndim && used < size; d++)
        used += (size_t)snprintf(out + used, size - used, "%s%lld", d ? ", " : "",
                                 (long long)tensor->shape[d]);
    if (used < size)
        snprintf(out + used, size - used, "]");
}

static void bind_tensor(sqlite3_stmt *stmt, int64_t run_id, int64_t file_id,
                        const struct bcpm_tensor_stats *tensor)
{
    char shape[BCPM_MAX_DIMS * 24 + 4];

    format_shape(tensor, shape, sizeof(shape));
    sqlite3_bind_int64(stmt, 1, run_id);
    if (file_id)
        sqlite3_bind_int64(stmt, 2, file_id);
    else
        sqlite3_bind_null(stmt, 2);
    bind_text(stmt, 3, tensor->name ? tensor->name : "");
    bind_text(stmt, 4, tensor->file);
    bind_text(stmt, 5, bcpm_dtype_name(tensor->dtype));
    bind_text(stmt, 6, shape);
    bind_text(stmt, 7, audit_role_text(tensor->role));
    sqlite3_bind_int64(stmt, 8, (int64_t)tensor->numel);
    sqlite3_bind_int64(stmt, 9, (int64_t)tensor->nan);
    sqlite3_bind_int64(stmt, 10, (int64_t)tensor->inf);
    bind_real(stmt, 11, tensor->min);
    bind_real(stmt, 12, tensor->max);
    bind_real(stmt, 13, tensor->mean);
    bind_real(stmt, 14, tensor->std);
    sqlite3_bind_int(stmt, 15, tensor->ternary_checked ? 1 : 0);
    sqlite3_bind_int64(stmt, 16, tensor->group_size);
    sqlite3_bind_int64(stmt, 17, (int64_t)tensor->groups);
    sqlite3_bind_int64(stmt, 18, (int64_t)tensor->groups_ternary);
    bind_real(stmt, 19, tensor->code_fraction[0]);
    bind_real(stmt, 20, tensor->code_fraction[1]);
    bind_real(stmt, 21, tensor->code_fraction[2]);
    bind_real(stmt, 22, tensor->scale_min);
    bind_real(stmt, 23, tensor->scale_max);
    bind_real(stmt, 24, tensor->scale_mean);
    sqlite3_bind_int(stmt, 25, tensor->shards_per_row);
}

static int insert_tensors(struct bcpm_audit *db, int64_t run_id,
                          const struct bcpm_check_result *result, const int64_t *file_ids,
                          struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    int rc = audit_prepare(db,
                           "INSERT INTO tensors (run_id, file_id, name, file, dtype, shape, "
                           "role, numel, nan, inf, min, max, mean, std, ternary_checked, "
                           "group_size, groups, groups_ternary, code_neg, code_zero, code_pos, "
                           "scale_min, scale_max, scale_mean, shards_per_row) VALUES (?1, ?2, "
                           "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, "
                           "?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25)",
                           &stmt, err);
    if (rc < 0)
        return rc;

    for (size_t t = 0; t < result->ntensors && rc == 0; t++) {
        bind_tensor(stmt, run_id, file_of_tensor(result, file_ids, t), &result->tensors[t]);
        rc = step_insert(db, stmt, "inserting a tensor", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

static int insert_findings(struct bcpm_audit *db, int64_t run_id,
                           const struct bcpm_check_result *result, struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    int rc = audit_prepare(db,
                           "INSERT INTO findings (run_id, rule, severity, file, tensor, message, "
                           "byte_offset, row, col, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                           "?8, ?9, ?10)",
                           &stmt, err);
    if (rc < 0)
        return rc;

    for (size_t i = 0; i < result->findings.count && rc == 0; i++) {
        const struct bcpm_finding *f = &result->findings.items[i];

        sqlite3_bind_int64(stmt, 1, run_id);
        bind_text(stmt, 2, f->rule ? f->rule : "");
        bind_text(stmt, 3, bcpm_severity_name(f->severity));
        bind_text(stmt, 4, f->file);
        bind_text(stmt, 5, f->tensor);
        bind_text(stmt, 6, f->message ? f->message : "");
        if (f->has_offset)
            sqlite3_bind_int64(stmt, 7, (int64_t)f->offset);
        if (f->row >= 0)
            sqlite3_bind_int64(stmt, 8, f->row);
        if (f->column >= 0)
            sqlite3_bind_int64(stmt, 9, f->column);
        bind_real(stmt, 10, f->value);
        rc = step_insert(db, stmt, "inserting a finding", err);
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* The newest run's hash, or the genesis hash on an empty database. */
static int read_prev_hash(struct bcpm_audit *db, char prev[65], struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    int rc = audit_prepare(db, "SELECT hash FROM runs ORDER BY id DESC LIMIT 1", &stmt, err);

    if (rc < 0)
        return rc;
    snprintf(prev, 65, "%s", AUDIT_GENESIS_HASH);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW && sqlite3_column_text(stmt, 0))
        snprintf(prev, 65, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        audit_db_error(db, err, rc, "reading the previous run's hash");
        return audit_is_busy(rc) ? rc : BCPM_ERR_DATABASE;
    }
    return 0;
}

static int store_hash(struct bcpm_audit *db, int64_t run_id, const char *prev,
                      struct bcpm_error *err)
{
    char hash[65];
    sqlite3_stmt *stmt;
    int rc = audit_chain_hash(db, run_id, AUDIT_CHAIN_FORMAT, prev, hash, err);

    if (rc < 0)
        return rc;
    rc = audit_prepare(db, "UPDATE runs SET hash = ?1 WHERE id = ?2", &stmt, err);
    if (rc < 0)
        return rc;
    bind_text(stmt, 1, hash);
    sqlite3_bind_int64(stmt, 2, run_id);
    rc = step_insert(db, stmt, "storing the run hash", err);
    sqlite3_finalize(stmt);
    return rc;
}

/* One attempt: inside BEGIN IMMEDIATE, all rows, then COMMIT. */
static int write_run_once(struct bcpm_audit *db, const struct bcpm_audit_run_info *info,
                          const struct bcpm_check_result *result, int64_t *run_id,
                          struct bcpm_error *err)
{
    char prev[65];
    int64_t *file_ids = calloc(result->nfiles ? result->nfiles : 1, sizeof(*file_ids));
    int rc;

    if (!file_ids)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, db->path, NULL,
                              "out of memory for %zu file ids", result->nfiles);

    rc = audit_begin_write(db, err);
    if (rc == 0)
        rc = read_prev_hash(db, prev, err);
    if (rc == 0)
        rc = insert_run(db, info, result, prev, run_id, err);
    if (rc == 0)
        rc = insert_files(db, *run_id, info, result, file_ids, err);
    if (rc == 0)
        rc = insert_parts(db, *run_id, info, result, file_ids, err);
    if (rc == 0)
        rc = insert_tensors(db, *run_id, result, file_ids, err);
    if (rc == 0)
        rc = insert_findings(db, *run_id, result, err);
    if (rc == 0)
        rc = store_hash(db, *run_id, prev, err);
    if (rc == 0)
        rc = audit_exec(db, "COMMIT", err);
    free(file_ids);

    if (rc != 0 && sqlite3_get_autocommit(db->db) == 0)
        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int bcpm_audit_record_run(struct bcpm_audit *db, const struct bcpm_audit_run_info *info,
                          const struct bcpm_check_result *result, int64_t *run_id,
                          struct bcpm_error *err)
{
    int64_t id = 0;
    int rc = BCPM_ERR_DATABASE;

    if (info->digests && info->ndigests != result->nfiles)
        return bcpm_error_set(err, BCPM_ERR_USAGE, db->path, NULL,
                              "%zu file digests for %zu checked files", info->ndigests,
                              result->nfiles);

    /*
     * SQLITE_BUSY in the middle of the transaction is rare once BEGIN
     * IMMEDIATE has the write lock, but possible during a checkpoint. It
     * rolls back and retries the whole run.
     */
    for (int attempt = 0; attempt < AUDIT_WRITE_ATTEMPTS; attempt++) {
        struct bcpm_error local;

        bcpm_error_clear(&local);
        rc = write_run_once(db, info, result, &id, &local);
        if (rc == 0)
            break;
        if (!audit_is_busy(rc) || attempt + 1 == AUDIT_WRITE_ATTEMPTS) {
            if (err)
                *err = local;
            return rc < 0 ? rc : BCPM_ERR_DATABASE;
        }
        audit_backoff(attempt);
    }

    if (run_id)
        *run_id = id;
    return 0;
}
