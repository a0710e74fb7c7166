/*
 * Opening the audit database: location, pragmas, and the schema with its
 * forward migrations.
 *
 * The schema version lives in PRAGMA user_version. migrations[v] lists the
 * statements that take a database from version v to v + 1. A database is
 * brought up to BCPM_AUDIT_SCHEMA_VERSION in one write transaction, so an
 * interrupted upgrade leaves the old version intact. A released step is never
 * edited: a change to the schema is a new step appended to the list.
 */
#include "audit/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long one statement waits for another process's lock, in milliseconds. */
#define AUDIT_BUSY_TIMEOUT_MS 10000

/* Version 0 to 1: the first released schema. */
static const char *const schema_v1[] = {
    "CREATE TABLE runs ("
    " id INTEGER PRIMARY KEY,"
    " started_ns INTEGER NOT NULL,"
    " ended_ns INTEGER NOT NULL,"
    " tool_version TEXT NOT NULL,"
    " command TEXT NOT NULL,"
    " command_line TEXT NOT NULL,"
    " host TEXT,"
    " user TEXT,"
    " exit_code INTEGER NOT NULL,"
    " rules_digest TEXT,"
    " fail_on TEXT,"
    " failed INTEGER NOT NULL,"
    " nfiles INTEGER NOT NULL,"      /* rows this run has in files */
    " ntensors INTEGER NOT NULL,"    /* rows this run has in tensors */
    " nfindings INTEGER NOT NULL,"   /* rows this run has in findings */
    " n_info INTEGER NOT NULL,"
    " n_warning INTEGER NOT NULL,"
    " n_error INTEGER NOT NULL,"
    " n_critical INTEGER NOT NULL,"
    " chain_format INTEGER NOT NULL,"
    " prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL)",

    "CREATE TABLE files ("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " position INTEGER NOT NULL,"    /* index in the command line's list */
    " path TEXT NOT NULL,"           /* as given */
    " realpath TEXT,"
    " size_bytes INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL,"
    " format TEXT,"
    " stage TEXT NOT NULL,"
    " family TEXT,"
    " config_path TEXT,"
    " config_text TEXT,"
    " model_dir TEXT,"               /* folder holding config.json */
    " model_name TEXT,"              /* last component of model_dir */
    " xxh3_128 TEXT,"
    " sha256 TEXT,"
    " ntensors INTEGER NOT NULL)",

    "CREATE TABLE tensors ("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " file_id INTEGER REFERENCES files(id),"
    " name TEXT NOT NULL,"
    " file TEXT,"
    " dtype TEXT NOT NULL,"
    " shape TEXT NOT NULL,"          /* JSON array of extents */
    " role TEXT NOT NULL,"
    " numel INTEGER NOT NULL,"
    " nan INTEGER NOT NULL,"
    " inf INTEGER NOT NULL,"
    " min REAL, max REAL, mean REAL, std REAL,"
    " ternary_checked INTEGER NOT NULL,"
    " group_size INTEGER NOT NULL,"
    " groups INTEGER NOT NULL,"
    " groups_ternary INTEGER NOT NULL,"
    " code_neg REAL, code_zero REAL, code_pos REAL,"
    " scale_min REAL, scale_max REAL, scale_mean REAL,"
    " shards_per_row INTEGER NOT NULL)",

    "CREATE TABLE findings ("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " rule TEXT NOT NULL,"
    " severity TEXT NOT NULL,"
    " file TEXT,"
    " tensor TEXT,"
    " message TEXT NOT NULL,"
    " byte_offset INTEGER,"          /* NULL when the finding has no offset */
    " row INTEGER,"
    " col INTEGER,"
    " value REAL)",

    /* history filters and per-run lookups */
    "CREATE INDEX files_run ON files(run_id)",
    "CREATE INDEX files_path ON files(path)",
    "CREATE INDEX files_realpath ON files(realpath)",
    "CREATE INDEX files_family ON files(family)",
    "CREATE INDEX files_model_name ON files(model_name)",
    "CREATE INDEX files_model_dir ON files(model_dir)",
    "CREATE INDEX files_config_path ON files(config_path)",
    "CREATE INDEX tensors_run ON tensors(run_id)",
    "CREATE INDEX findings_run ON findings(run_id)",
    NULL,
};

/*
 * Version 1 to 2: the physical files (shards) of each checked path with their
 * own digests, comparable with the per-file ids model hubs publish. run_id
 * repeats files.run_id so a run's parts are found without a join.
 */
static const char *const schema_v2[] = {
    "CREATE TABLE file_parts ("
    " id INTEGER PRIMARY KEY,"
    " run_id INTEGER NOT NULL REFERENCES runs(id),"
    " file_id INTEGER NOT NULL REFERENCES files(id),"
    " ordinal INTEGER NOT NULL,"     /* index in the checkpoint's file list */
    " path TEXT NOT NULL,"
    " size_bytes INTEGER,"
    " mtime_ns INTEGER,"
    " xxh3_128 TEXT,"
    " sha256 TEXT)",

    "CREATE INDEX file_parts_run ON file_parts(run_id)",
    "CREATE INDEX file_parts_xxh3 ON file_parts(xxh3_128)",
    "CREATE INDEX file_parts_sha256 ON file_parts(sha256)",
    NULL,
};

static const char *const *const migrations[BCPM_AUDIT_SCHEMA_VERSION] = {
    schema_v1,
    schema_v2,
};

int audit_db_error(struct bcpm_audit *db, struct bcpm_error *err, int rc, const char *what)
{
    const char *detail = db && db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc);

    return bcpm_error_set(err, BCPM_ERR_DATABASE, db ? db->path : NULL, NULL,
                          "%s failed: %s", what, detail);
}

int audit_exec(struct bcpm_audit *db, const char *sql, struct bcpm_error *err)
{
    int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        audit_db_error(db, err, rc, sql);
        return audit_is_busy(rc) ? rc : BCPM_ERR_DATABASE;
    }
    return 0;
}

int audit_prepare(struct bcpm_audit *db, const char *sql, sqlite3_stmt **out,
                  struct bcpm_error *err)
{
    int rc = sqlite3_prepare_v2(db->db, sql, -1, out, NULL);

    if (rc != SQLITE_OK)
        return audit_db_error(db, err, rc, "preparing a statement");
    return 0;
}

int audit_is_busy(int rc)
{
    int primary = rc & 0xff;

    return primary == SQLITE_BUSY || primary == SQLITE_LOCKED;
}

void audit_backoff(int attempt)
{
    struct timespec delay;
    long ms = 50L << (attempt < 6 ? attempt : 6); /* 50 ms doubling to 3.2 s */

    /* Jitter from the pid keeps eight waiting writers from waking in step. */
    ms += (long)(getpid() % 50);
    delay.tv_sec = ms / 1000;
    delay.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&delay, NULL);
}

int audit_begin_write(struct bcpm_audit *db, struct bcpm_error *err)
{
    int rc = SQLITE_BUSY;

    for (int attempt = 0; attempt < AUDIT_WRITE_ATTEMPTS; attempt++) {
        rc = sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return 0;
        if (!audit_is_busy(rc))
            break;
        audit_backoff(attempt);
    }
    return audit_db_error(db, err, rc, "starting a write transaction");
}

int bcpm_audit_default_path(char *buf, size_t size)
{
    const char *value = getenv("BITCPM_AUDIT_DB");
    int n;

    if (value && value[0])
        n = snprintf(buf, size, "%s", value);
    else if ((value = getenv("XDG_DATA_HOME")) && value[0])
        n = snprintf(buf, size, "%s/bitcpm-check/audit.db", value);
    else if ((value = getenv("HOME")) && value[0])
        n = snprintf(buf, size, "%s/.local/share/bitcpm-check/audit.db", value);
    else
        return BCPM_ERR_NOT_FOUND;

    if (n < 0 || (size_t)n >= size)
        return BCPM_ERR_LIMIT;
    return 0;
}

/* mkdir -p for the folders above path; the last component is the file. */
static int make_parents(const char *path, struct bcpm_error *err)
{
    char *copy = strdup(path);

    if (!copy)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");

    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
            int saved = errno;
            bcpm_error_set(err, BCPM_ERR_IO, path, NULL,
                           "cannot create the folder %s for the audit database: %s", copy,
                           strerror(saved));
            free(copy);
            return BCPM_ERR_IO;
        }
        *p = '/';
    }
    free(copy);
    return 0;
}

static int read_user_version(struct bcpm_audit *db, int *version, struct bcpm_error *err)
{
    sqlite3_stmt *stmt;
    int rc = audit_prepare(db, "PRAGMA user_version", &stmt, err);

    if (rc < 0)
        return rc;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW) {
        audit_db_error(db, err, rc, "reading the schema version");
        return audit_is_busy(rc) ? rc : BCPM_ERR_DATABASE;
    }
    return 0;
}

static int reject_newer(struct bcpm_audit *db, int version, struct bcpm_error *err)
{
    /* The message names the path itself, so the file field stays empty. */
    return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, NULL,
                          "audit database %s has schema version %d; this bitcpm-check (%s) "
                          "understands up to %d; upgrade the tool",
                          db->path, version, BCPM_VERSION, BCPM_AUDIT_SCHEMA_VERSION);
}

/* Apply the steps from version to the current one; inside a write transaction. */
static int apply_migrations(struct bcpm_audit *db, int version, struct bcpm_error *err)
{
    char sql[64];

    for (int v = version; v < BCPM_AUDIT_SCHEMA_VERSION; v++) {
        for (const char *const *step = migrations[v]; *step; step++) {
            int rc = audit_exec(db, *step, err);
            if (rc != 0)
                return rc;
        }
    }
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", BCPM_AUDIT_SCHEMA_VERSION);
    return audit_exec(db, sql, err);
}

/*
 * Bring the schema up to date. The version is read again inside the write
 * transaction because another process may have migrated the file between
 * the first look and the lock.
 */
static int migrate(struct bcpm_audit *db, struct bcpm_error *err)
{
    int version = 0;

    for (int attempt = 0; attempt < AUDIT_WRITE_ATTEMPTS; attempt++) {
        struct bcpm_error local;
        int rc;

        bcpm_error_clear(&local);
        rc = read_user_version(db, &version, &local);
        if (rc == 0 && version > BCPM_AUDIT_SCHEMA_VERSION)
            return reject_newer(db, version, err);
        if (rc == 0 && version == BCPM_AUDIT_SCHEMA_VERSION)
            return 0;

        if (rc == 0)
            rc = audit_begin_write(db, &local);
        if (rc == 0)
            rc = read_user_version(db, &version, &local);
        if (rc == 0 && version > BCPM_AUDIT_SCHEMA_VERSION) {
            sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
            return reject_newer(db, version, err);
        }
        if (rc == 0 && version < BCPM_AUDIT_SCHEMA_VERSION)
            rc = apply_migrations(db, version, &local);
        if (rc == 0)
            rc = audit_exec(db, "COMMIT", &local);
        if (rc == 0)
            return 0;

        sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        if (!audit_is_busy(rc)) {
            if (err)
                *err = local;
            return rc < 0 ? rc : BCPM_ERR_DATABASE;
        }
        audit_backoff(attempt);
    }
    return bcpm_error_set(err, BCPM_ERR_DATABASE, db->path, NULL,
                          "upgrading the schema failed: the database stayed locked by other "
                          "writers");
}

/*
 * Switch to WAL. The switch returns SQLITE_BUSY while another process is
 * creating or switching the same new file, so it is retried like a write.
 */
static int set_wal(struct bcpm_audit *db, struct bcpm_error *err)
{
    int rc = SQLITE_BUSY;

    for (int attempt = 0; attempt < AUDIT_WRITE_ATTEMPTS; attempt++) {
        rc = sqlite3_exec(db->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return 0;
        if (!audit_is_busy(rc))
            break;
        audit_backoff(attempt);
    }
    return audit_db_error(db, err, rc, "switching to WAL journal mode");
}

static int open_with_flags(struct bcpm_audit **out, const char *path, int create,
                           struct bcpm_error *err)
{
    struct bcpm_audit *db;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX;
    int rc;

    *out = NULL;
    if (create) {
        rc = make_parents(path, err);
        if (rc < 0)
            return rc;
        flags |= SQLITE_OPEN_CREATE;
    } else if (access(path, F_OK) != 0) {
        return bcpm_error_set(err, BCPM_ERR_NOT_FOUND, path, NULL,
                              "no audit database at this path");
    }

    db = calloc(1, sizeof(*db));
    if (!db || !(db->path = strdup(path))) {
        free(db);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }

    rc = sqlite3_open_v2(path, &db->db, flags, NULL);
    if (rc != SQLITE_OK) {
        bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "cannot open the audit database: %s",
                       db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
        bcpm_audit_close(db);
        return BCPM_ERR_IO;
    }
    sqlite3_busy_timeout(db->db, AUDIT_BUSY_TIMEOUT_MS);

    rc = set_wal(db, err);
    if (rc == 0)
        rc = audit_exec(db, "PRAGMA synchronous=FULL", err);
    if (rc == 0)
        rc = audit_exec(db, "PRAGMA foreign_keys=ON", err);
    if (rc == 0)
        rc = migrate(db, err);
    if (rc != 0) {
        bcpm_audit_close(db);
        return rc < 0 ? rc : BCPM_ERR_DATABASE;
    }

    *out = db;
    return 0;
}

int bcpm_audit_open(struct bcpm_audit **out, const char *path, struct bcpm_error *err)
{
    return open_with_flags(out, path, 1, err);
}

int bcpm_audit_open_existing(struct bcpm_audit **out, const char *path,
                             struct bcpm_error *err)
{
    return open_with_flags(out, path, 0, err);
}

void bcpm_audit_close(struct bcpm_audit *db)
{
    if (!db)
        return;
    sqlite3_close(db->db);
    free(db->path);
    free(db);
}
