/*
 * The audit database: one SQLite file that records every bitcpm-check run
 * with its files, per-tensor statistics and findings, and
 * the queries bitcpm-audit runs over it. See man/bitcpm-audit.1 for the user
 * side and schema.c for the tables.
 *
 * Durability and sharing: WAL journal, synchronous=FULL, a busy timeout plus
 * a retry loop around the write transaction, so parallel CI jobs can share a
 * file. Each run is written in one transaction, so a crash leaves the whole
 * run or nothing.
 *
 * Tamper evidence: every run row stores prev_hash (the previous run's hash,
 * or 64 zeros for the first run) and hash, the SHA-256 of a canonical
 * serialization of the run's own rows followed by prev_hash (chain.c).
 * bcpm_audit_verify recomputes the chain.
 */
#ifndef BCPM_AUDIT_AUDIT_H
#define BCPM_AUDIT_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/digest.h"
#include "io/error.h"
#include "rules/result.h"

/* The schema this build writes; bcpm_audit_open upgrades older files to it. */
#define BCPM_AUDIT_SCHEMA_VERSION 2

struct bcpm_audit; /* an open database, opaque */

/*
 * Write the default database path into buf: $BITCPM_AUDIT_DB, else
 * $XDG_DATA_HOME/bitcpm-check/audit.db, else
 * $HOME/.local/share/bitcpm-check/audit.db. Empty variables count as unset.
 * Returns 0, or BCPM_ERR_NOT_FOUND when none of the three is set and
 * BCPM_ERR_LIMIT when the path does not fit in size bytes.
 */
int bcpm_audit_default_path(char *buf, size_t size);

/*
 * Open or create the database at path, creating missing parent folders, and
 * bring its schema to BCPM_AUDIT_SCHEMA_VERSION in one transaction. On
 * success *out is owned by the caller (bcpm_audit_close).
 * Errors: BCPM_ERR_IO (folder or file cannot be created), BCPM_ERR_UNSUPPORTED
 * (the file has a newer schema version than this build understands),
 * BCPM_ERR_DATABASE (any other SQLite failure, message from SQLite).
 */
int bcpm_audit_open(struct bcpm_audit **out, const char *path, struct bcpm_error *err);

/* As bcpm_audit_open, but BCPM_ERR_NOT_FOUND when path does not exist. */
int bcpm_audit_open_existing(struct bcpm_audit **out, const char *path,
                             struct bcpm_error *err);

void bcpm_audit_close(struct bcpm_audit *db);

/* One physical file of a checked path (a shard of a sharded checkpoint). */
struct bcpm_audit_part_digest {
    char *path;                          /* owned */
    uint64_t size_bytes;
    int64_t mtime_ns;
    char xxh3_128[BCPM_XXH128_HEX_SIZE]; /* "" when not computed */
    char sha256[BCPM_SHA256_HEX_SIZE];   /* "" unless --sha256 was given */
};

/*
 * Digests of one checked file, in the order of bcpm_check_result.files. For
 * a sharded checkpoint xxh3_128 and sha256 cover all shards concatenated in
 * catalog order, and parts contains each shard's own digests; a single file has
 * one part with the same digests.
 */
struct bcpm_audit_file_digest {
    char xxh3_128[BCPM_XXH128_HEX_SIZE]; /* "" when not computed */
    char sha256[BCPM_SHA256_HEX_SIZE];   /* "" unless --sha256 was given */
    struct bcpm_audit_part_digest *parts; /* owned; NULL when none were computed */
    size_t nparts;
};

/* Run metadata recorded beside the result. Strings are owned by the struct. */
struct bcpm_audit_run_info {
    int64_t started_ns, ended_ns;  /* wall clock, nanoseconds since the epoch */
    char *tool_version;            /* BCPM_VERSION */
    char *command;                 /* "check", "diff" */
    char *command_line;            /* argv joined with shell quoting */
    char *host, *user;             /* NULL when unknown */
    int exit_code;                 /* what the command exits with */
    struct bcpm_audit_file_digest *digests; /* one per result file, or NULL */
    size_t ndigests;
};

/*
 * Fill info for a run starting now: start time, tool version, command,
 * command line from argv, host name and user name. The caller sets ended_ns,
 * exit_code and digests later (bcpm_audit_run_info_alloc_digests).
 * Returns 0 or BCPM_ERR_NOMEM.
 */
int bcpm_audit_run_info_init(struct bcpm_audit_run_info *info, const char *command,
                             int argc, char *const *argv, struct bcpm_error *err);

/* Allocate zeroed digests for nfiles files. Returns 0 or BCPM_ERR_NOMEM. */
int bcpm_audit_run_info_alloc_digests(struct bcpm_audit_run_info *info, size_t nfiles,
                                      struct bcpm_error *err);

/* Free the parts of digest (paths and array) and set nparts to 0. */
void bcpm_audit_file_digest_free_parts(struct bcpm_audit_file_digest *digest);

/* Free the strings and digests with their parts (not info itself). */
void bcpm_audit_run_info_free(struct bcpm_audit_run_info *info);

/* Current wall-clock time in nanoseconds since the epoch. */
int64_t bcpm_audit_now_ns(void);

/*
 * Join argv into one line that a POSIX shell splits back into the same
 * words: words of only [A-Za-z0-9_@%+=:,./-] stay bare, others are
 * single-quoted with ' written as '\''. Returns a malloc'ed string or NULL.
 */
char *bcpm_audit_join_argv(int argc, char *const *argv);

/*
 * Record one run in one transaction: the run row, every checked file (with
 * the text of its config.json and its parts), every tensor's statistics and
 * every finding.
 * info->digests, when set, must hold result->nfiles entries. Waits for other
 * writers (busy timeout, then retries the whole transaction). The new run's
 * id goes to *run_id (may be NULL).
 */
int bcpm_audit_record_run(struct bcpm_audit *db, const struct bcpm_audit_run_info *info,
                          const struct bcpm_check_result *result, int64_t *run_id,
                          struct bcpm_error *err);

/* ---- queries (bitcpm-audit); results are jansson values the caller frees ---- */

/* Filter for history. NULL fields match every run. */
struct bcpm_audit_filter {
    const char *path;  /* files.path equal to it, or files.realpath equal to its realpath */
    const char *model; /* family, config folder name, config folder or config.json path */
    int64_t limit;     /* at most this many runs, newest first; 0 for all */
};

/*
 * Runs newest first, as an array of objects: id, started, started_ns,
 * ended_ns, command, exit_code, verdict ("pass", "findings", "error"),
 * files (paths), findings (counts by severity).
 */
int bcpm_audit_history(struct bcpm_audit *db, const struct bcpm_audit_filter *filter,
                       json_t **out, struct bcpm_error *err);

/*
 * Build one run as an object. It has the history fields plus command_line,
 * tool_version, host, user, rules_digest, hash and prev_hash, with "files"
 * and "findings" as arrays of objects; each file has a "parts" array (ordinal,
 * path, size_bytes, mtime_ns, xxh3_128, sha256), empty for runs recorded
 * before schema 2. with_tensors adds "tensors" and each file's config_text. Returns BCPM_ERR_NOT_FOUND when no run has that id.
 */
int bcpm_audit_show(struct bcpm_audit *db, int64_t run_id, int with_tensors, json_t **out,
                    struct bcpm_error *err);

/*
 * Findings of run other that run base lacks ("added") and those of base that
 * other lacks ("removed"), matched on rule, tensor and message. Duplicates
 * count: two equal findings in other against one in base add one.
 */
int bcpm_audit_compare(struct bcpm_audit *db, int64_t base, int64_t other, json_t **out,
                       struct bcpm_error *err);

/* Every run (run_id 0) or one run, as bcpm_audit_show with tensors, in an array. */
int bcpm_audit_export(struct bcpm_audit *db, int64_t run_id, json_t **out,
                      struct bcpm_error *err);

/* The outcome of bcpm_audit_verify. */
struct bcpm_audit_verification {
    int64_t runs_checked;   /* runs whose chain link and hash were recomputed */
    int64_t first_bad_run;  /* 0 when the chain is intact */
    char reason[512];       /* why first_bad_run fails, "" when intact */
};

/*
 * Recompute the hash chain from the first run on. It stops at the first run
 * that fails one of three checks: its prev_hash equals the previous run's
 * hash, its stored hash equals the hash of its rows, and its file, tensor and
 * finding counts equal what its run row states. Returns 0 whether or not the
 * chain is intact (see out), negative only when the database could not be read.
 */
int bcpm_audit_verify(struct bcpm_audit *db, struct bcpm_audit_verification *out,
                      struct bcpm_error *err);

#endif
