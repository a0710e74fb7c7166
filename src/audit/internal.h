/*
 * Private parts of the audit store shared by its source files: the open
 * handle, SQLite error mapping and the hash chain. Not for other modules.
 */
#ifndef BCPM_AUDIT_INTERNAL_H
#define BCPM_AUDIT_INTERNAL_H

#include <sqlite3.h>
#include <stdint.h>

#include "audit/audit.h"

struct bcpm_audit {
    sqlite3 *db;
    char *path;
};

/* The serialization new runs are written with (runs.chain_format); see chain.c. */
#define AUDIT_CHAIN_FORMAT 2

/* 64 zeros: the prev_hash of the first run. */
#define AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Record SQLite's message for rc as BCPM_ERR_DATABASE, prefixed by what failed. */
int audit_db_error(struct bcpm_audit *db, struct bcpm_error *err, int rc, const char *what);

/* Run one statement without results. */
int audit_exec(struct bcpm_audit *db, const char *sql, struct bcpm_error *err);

/* Prepare sql; on failure err names the statement's purpose. */
int audit_prepare(struct bcpm_audit *db, const char *sql, sqlite3_stmt **out,
                  struct bcpm_error *err);

/*
 * Start a write transaction (BEGIN IMMEDIATE), waiting for other writers:
 * the busy timeout covers each attempt and a bounded retry loop with growing
 * sleeps covers longer waits.
 */
int audit_begin_write(struct bcpm_audit *db, struct bcpm_error *err);

/* Sleep before retry number attempt (0-based) of a busy write. */
void audit_backoff(int attempt);

/* Number of whole-transaction attempts while SQLite keeps returning SQLITE_BUSY. */
#define AUDIT_WRITE_ATTEMPTS 8

/* True for SQLITE_BUSY and SQLITE_LOCKED, extended codes included. */
int audit_is_busy(int rc);

/*
 * Compute the chain hash of run run_id as the rows stand in the database,
 * with prev_hash appended, as 64 lowercase hex digits in hex.
 * chain_format selects the tables and column lists: 1 up to AUDIT_CHAIN_FORMAT.
 */
int audit_chain_hash(struct bcpm_audit *db, int64_t run_id, int chain_format,
                     const char *prev_hash, char hex[65], struct bcpm_error *err);

/* Stable names stored in the database for the result enums. */
const char *audit_stage_text(int stage);
const char *audit_role_text(int role);

#endif
