/*
 * The hash chain over runs: the canonical serialization of one run's rows
 * and its SHA-256.
 *
 * Chain format 1 serializes these parts in order:
 *   1. the tag "bitcpm-audit chain 1\n",
 *   2. the run row,
 *   3. its files, then its tensors, then its findings, each table in id order,
 *   4. the run's prev_hash as 64 ASCII hex digits.
 * Each row starts with a one-byte table tag ('R', 'F', 'T', 'X'), then every
 * column of the lists below in order, each as a type byte and its value:
 *   'N'                          NULL
 *   'I' + 8 bytes big-endian     INTEGER (two's complement)
 *   'D' + 8 bytes big-endian     REAL (IEEE 754 binary64 bits)
 *   'S' + 8-byte length + bytes  TEXT (UTF-8 as stored)
 *   'B' + 8-byte length + bytes  BLOB
 * Each tag has a fixed column count, and the type bytes and lengths delimit
 * every value, so the bytes parse back into exactly one set of rows. Columns are read back from
 * the database, so the writer and `verify` hash exactly what is stored.
 * The column lists are frozen with the format: a later schema that adds
 * columns needs a new chain format, and runs keep the format they were
 * written with (runs.chain_format).
 *
 * Chain format 2 (schema 2) is format 1 with the tag "bitcpm-audit chain 2\n"
 * and one more table between the findings and prev_hash: the run's
 * file_parts rows in id order, tag 'P'. Runs written as format 1 have no
 * parts and still verify as format 1.
 */
#include "audit/internal.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static const char run_columns[] =
    "id, started_ns, ended_ns, tool_version, command, command_line, host, user, "
    "exit_code, rules_digest, fail_on, failed, nfiles, ntensors, nfindings, n_info, "
    "n_warning, n_error, n_critical, chain_format";

static const char file_columns[] =
    "id, run_id, position, path, realpath, size_bytes, mtime_ns, format, stage, family, "
    "config_path, config_text, model_dir, model_name, xxh3_128, sha256, ntensors";

static const char tensor_columns[] =
    "id, run_id, file_id, name, file, dtype, shape, role, numel, nan, inf, min, max, "
    "mean, std, ternary_checked, group_size, groups, groups_ternary, code_neg, "
    "code_zero, code_pos, scale_min, scale_max, scale_mean, shards_per_row";

static const char finding_columns[] =
    "id, run_id, rule, severity, file, tensor, message, byte_offset, row, col, value";

static const char part_columns[] =
    "id, run_id, file_id, ordinal, path, size_bytes, mtime_ns, xxh3_128, sha256";

static void put_u64(EVP_MD_CTX *sha, char type, uint64_t value)
{
    unsigned char bytes[9];

    bytes[0] = (unsigned char)type;
    for (int i = 0; i < 8; i++)
        bytes[1 + i] = (unsigned char)(value >> (56 - 8 * i));
    EVP_DigestUpdate(sha, bytes, sizeof(bytes));
}

static void put_column(EVP_MD_CTX *sha, sqlite3_stmt *stmt, int i)
{
    double real;
    uint64_t bits;

    switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
        put_u64(sha, 'I', (uint64_t)sqlite3_column_int64(stmt, i));
        break;
    case SQLITE_FLOAT:
        real = sqlite3_column_double(stmt, i);
        memcpy(&bits, &real, sizeof(bits));
        put_u64(sha, 'D', bits);
        break;
    case SQLITE_TEXT: {
        const unsigned char *text = sqlite3_column_text(stmt, i);
        int n = sqlite3_column_bytes(stmt, i);
        put_u64(sha, 'S', (uint64_t)n);
        EVP_DigestUpdate(sha, text, (size_t)n);
        break;
    }
    case SQLITE_BLOB: {
        const void *blob = sqlite3_column_blob(stmt, i);
        int n = sqlite3_column_bytes(stmt, i);
        put_u64(sha, 'B', (uint64_t)n);
        EVP_DigestUpdate(sha, blob, (size_t)n);
        break;
    }
    default:
        EVP_DigestUpdate(sha, "N", 1);
        break;
    }
}

/* Feed every row of SELECT columns FROM table WHERE key = run_id ORDER BY id. */
static int put_rows(struct bcpm_audit *db, EVP_MD_CTX *sha, char tag, const char *columns,
                    const char *table, const char *key, int64_t run_id,
                    struct bcpm_error *err)
{
    char sql[1024];
    sqlite3_stmt *stmt;
    int rc;

    snprintf(sql, sizeof(sql), "SELECT %s FROM %s WHERE %s = ?1 ORDER BY id", columns,
             table, key);
    rc = audit_prepare(db, sql, &stmt, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(stmt, 1, run_id);

    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        int n = sqlite3_column_count(stmt);
        EVP_DigestUpdate(sha, &tag, 1);
        for (int i = 0; i < n; i++)
            put_column(sha, stmt, i);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return audit_db_error(db, err, rc, "reading rows for the run hash");
    return 0;
}

int audit_chain_hash(struct bcpm_audit *db, int64_t run_id, int chain_format,
                     const char *prev_hash, char hex[65], struct bcpm_error *err)
{
    char tag[32];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *sha;
    int rc;

    if (chain_format < 1 || chain_format > AUDIT_CHAIN_FORMAT)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, db->path, NULL,
                              "run %lld uses chain format %d; this build understands 1 to %d",
                              (long long)run_id, chain_format, AUDIT_CHAIN_FORMAT);
    snprintf(tag, sizeof(tag), "bitcpm-audit chain %d\n", chain_format);

    sha = EVP_MD_CTX_new();
    if (!sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(sha);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, db->path, NULL,
                              "cannot start a SHA-256 digest");
    }
    EVP_DigestUpdate(sha, tag, strlen(tag));

    rc = put_rows(db, sha, 'R', run_columns, "runs", "id", run_id, err);
    if (rc == 0)
        rc = put_rows(db, sha, 'F', file_columns, "files", "run_id", run_id, err);
    if (rc == 0)
        rc = put_rows(db, sha, 'T', tensor_columns, "tensors", "run_id", run_id, err);
    if (rc == 0)
        rc = put_rows(db, sha, 'X', finding_columns, "findings", "run_id", run_id, err);
    if (rc == 0 && chain_format >= 2)
        rc = put_rows(db, sha, 'P', part_columns, "file_parts", "run_id", run_id, err);
    if (rc == 0) {
        EVP_DigestUpdate(sha, prev_hash, strlen(prev_hash));
        if (EVP_DigestFinal_ex(sha, digest, &len) != 1 || len != 32)
            rc = bcpm_error_set(err, BCPM_ERR_DATABASE, db->path, NULL,
                                "SHA-256 of run %lld failed", (long long)run_id);
    }
    EVP_MD_CTX_free(sha);
    if (rc < 0)
        return rc;

    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

const char *audit_stage_text(int stage)
{
    /* Stored names: they must not change even if the display names do. */
    switch (stage) {
    case BCPM_STAGE_LATENT: return "latent";
    case BCPM_STAGE_FINETUNED: return "finetuned";
    case BCPM_STAGE_PSEUDO: return "pseudo";
    default: return "unknown";
    }
}

const char *audit_role_text(int role)
{
    switch (role) {
    case BCPM_ROLE_TERNARY: return "ternary";
    case BCPM_ROLE_EMBEDDING: return "embedding";
    case BCPM_ROLE_NORM: return "norm";
    case BCPM_ROLE_HEAD: return "head";
    default: return "other";
    }
}
