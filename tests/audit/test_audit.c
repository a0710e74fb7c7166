/*
 * Unit tests of the audit store: command-line quoting, the default path,
 * opening (pragmas, schema version, rejection of newer files), a recorded
 * run read back field by field, compare, and verify. The digests are checked
 * against the outputs of xxh128sum and sha256sum committed beside the sample
 * in fixtures/audit/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "io/map.h"

struct scratch {
    char dir[256];
    char db[320];
};

static int scratch_setup(void **state)
{
    struct scratch *s = calloc(1, sizeof(*s));

    snprintf(s->dir, sizeof(s->dir), "%s/bcpm-audit-unit.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->db, sizeof(s->db), "%s/nested/folder/audit.db", s->dir);
    *state = s;
    return 0;
}

static int scratch_teardown(void **state)
{
    struct scratch *s = *state;
    char command[400];

    snprintf(command, sizeof(command), "rm -rf '%s'", s->dir);
    assert_int_equal(system(command), 0);
    free(s);
    return 0;
}

/* ---- quoting and paths ---- */

static void join_argv_quotes_words(void **state)
{
    char *argv[] = {"bitcpm-check", "--audit-db", "/a b/c.db", "it's", "", "x=1,y:2"};
    char *line = bcpm_audit_join_argv(6, argv);

    (void)state;
    assert_string_equal(line, "bitcpm-check --audit-db '/a b/c.db' 'it'\\''s' '' x=1,y:2");
    free(line);
}

static void default_path_precedence(void **state)
{
    char buf[256];

    (void)state;
    setenv("BITCPM_AUDIT_DB", "/explicit/audit.db", 1);
    setenv("XDG_DATA_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(bcpm_audit_default_path(buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/explicit/audit.db");

    setenv("BITCPM_AUDIT_DB", "", 1);
    assert_int_equal(bcpm_audit_default_path(buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/xdg/bitcpm-check/audit.db");

    unsetenv("XDG_DATA_HOME");
    assert_int_equal(bcpm_audit_default_path(buf, sizeof(buf)), 0);
    assert_string_equal(buf, "/home/u/.local/share/bitcpm-check/audit.db");

    assert_int_equal(bcpm_audit_default_path(buf, 10), BCPM_ERR_LIMIT);

    unsetenv("HOME");
    unsetenv("BITCPM_AUDIT_DB");
    assert_int_equal(bcpm_audit_default_path(buf, sizeof(buf)), BCPM_ERR_NOT_FOUND);
}

/* ---- opening ---- */

static void pragma_text(const char *path, const char *sql, char *out, size_t size)
{
    sqlite3 *db;
    sqlite3_stmt *stmt;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    snprintf(out, size, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void open_creates_folders_and_schema(void **state)
{
    struct scratch *s = *state;
    struct bcpm_audit *db;
    struct bcpm_error err;
    char text[64], expected[16];

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open_existing(&db, s->db, &err), BCPM_ERR_NOT_FOUND);
    assert_int_equal(access(s->db, F_OK), -1);

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open(&db, s->db, &err), 0);
    bcpm_audit_close(db);

    pragma_text(s->db, "PRAGMA journal_mode", text, sizeof(text));
    assert_string_equal(text, "wal");
    pragma_text(s->db, "PRAGMA user_version", text, sizeof(text));
    snprintf(expected, sizeof(expected), "%d", BCPM_AUDIT_SCHEMA_VERSION);
    assert_string_equal(text, expected);
    /* runs, files, tensors, findings (schema 1) and file_parts (schema 2). */
    pragma_text(s->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'", text,
                sizeof(text));
    assert_string_equal(text, "5");
}

static void open_rejects_newer_schema(void **state)
{
    struct scratch *s = *state;
    struct bcpm_audit *db;
    struct bcpm_error err;
    char expected[1024];

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open(&db, s->db, &err), 0);
    bcpm_audit_close(db);
    exec_sql(s->db, "PRAGMA user_version = 7");

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open(&db, s->db, &err), BCPM_ERR_UNSUPPORTED);
    assert_null(db);
    snprintf(expected, sizeof(expected),
             "audit database %s has schema version 7; this bitcpm-check (%s) understands "
             "up to %d; upgrade the tool",
             s->db, BCPM_VERSION, BCPM_AUDIT_SCHEMA_VERSION);
    assert_string_equal(err.message, expected);
}

/* ---- recording and reading back ---- */

static void fill_result(struct bcpm_check_result *r, struct bcpm_checked_file *file,
                        struct bcpm_tensor_stats *tensors)
{
    struct bcpm_finding *f;

    memset(r, 0, sizeof(*r));
    memset(file, 0, sizeof(*file));
    memset(tensors, 0, 2 * sizeof(*tensors));

    file->path = "/models/m/model.safetensors";
    file->format = "safetensors";
    file->family = "llama";
    file->config_path = "/models/m/config.json";
    file->stage_detected = BCPM_STAGE_PSEUDO;
    file->size_bytes = 123456;
    file->mtime_ns = 1700000000123456789LL;
    file->first_tensor = 0;
    file->ntensors = 2;

    tensors[0].name = "model.embed_tokens.weight";
    tensors[0].dtype = BCPM_DTYPE_BF16;
    tensors[0].ndim = 2;
    tensors[0].shape[0] = 32000;
    tensors[0].shape[1] = 2048;
    tensors[0].role = BCPM_ROLE_EMBEDDING;
    tensors[0].numel = 32000ull * 2048;
    tensors[0].min = -1.5;
    tensors[0].max = NAN; /* not finite: stored as NULL */
    tensors[1].name = "model.layers.0.mlp.up_proj.weight";
    tensors[1].dtype = BCPM_DTYPE_F32;
    tensors[1].ndim = 2;
    tensors[1].shape[0] = 5632;
    tensors[1].shape[1] = 2048;
    tensors[1].role = BCPM_ROLE_TERNARY;
    tensors[1].group_size = -1;
    tensors[1].code_fraction[1] = 0.5;

    r->files = file;
    r->nfiles = 1;
    r->tensors = tensors;
    r->ntensors = 2;
    r->fail_on = BCPM_SEVERITY_ERROR;
    r->failed = 1;
    f = bcpm_findings_add(&r->findings, "ternary.values", BCPM_SEVERITY_ERROR, file->path,
                          tensors[1].name, "row 7 holds %d values outside {-s, 0, +s}", 2);
    f->has_offset = 1;
    f->offset = 4096;
    f->row = 7;
    f->value = 0.75;
    bcpm_findings_add(&r->findings, "tensor.finite", BCPM_SEVERITY_WARNING, file->path,
                      NULL, "no tensor named lm_head.weight");
}

static int64_t record(const char *path, struct bcpm_check_result *r, int exit_code)
{
    char *argv[] = {"bitcpm-check", "--sha256", "/models/m"};
    struct bcpm_audit_run_info info;
    struct bcpm_audit *db;
    struct bcpm_error err;
    int64_t id = 0;

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_run_info_init(&info, "check", 3, argv, &err), 0);
    assert_int_equal(bcpm_audit_run_info_alloc_digests(&info, r->nfiles, &err), 0);
    strcpy(info.digests[0].xxh3_128, "fec2cb4c050e199b8db86d432d993b7f");
    strcpy(info.digests[0].sha256,
           "3ff76b2f896173b3508a0f019d81c3cc9512ae9ceefcc071253df32b7dbd08de");
    info.exit_code = exit_code;
    assert_int_equal(bcpm_audit_open(&db, path, &err), 0);
    assert_int_equal(bcpm_audit_record_run(db, &info, r, &id, &err), 0);
    bcpm_audit_close(db);
    bcpm_audit_run_info_free(&info);
    return id;
}

static const char *text_at(json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

static void record_reads_back(void **state)
{
    struct scratch *s = *state;
    struct bcpm_check_result r;
    struct bcpm_checked_file file;
    struct bcpm_tensor_stats tensors[2];
    struct bcpm_audit *db;
    struct bcpm_error err;
    json_t *run, *f, *t, *x;

    fill_result(&r, &file, tensors);
    assert_int_equal(record(s->db, &r, 1), 1);
    assert_int_equal(record(s->db, &r, 1), 2);
    bcpm_findings_clear(&r.findings);

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open_existing(&db, s->db, &err), 0);
    assert_int_equal(bcpm_audit_show(db, 2, 1, &run, &err), 0);

    assert_string_equal(text_at(run, "command"), "check");
    assert_string_equal(text_at(run, "command_line"), "bitcpm-check --sha256 /models/m");
    assert_string_equal(text_at(run, "tool_version"), BCPM_VERSION);
    assert_string_equal(text_at(run, "verdict"), "fail");
    assert_string_equal(text_at(run, "fail_on"), "error");
    assert_int_equal(json_integer_value(json_object_get(run, "ntensors")), 2);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(run, "finding_counts"), "error")), 1);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(run, "finding_counts"), "warning")), 1);
    assert_int_equal(strlen(text_at(run, "hash")), 64);

    f = json_array_get(json_object_get(run, "files"), 0);
    assert_string_equal(text_at(f, "stage"), "pseudo");
    assert_string_equal(text_at(f, "model_dir"), "/models/m");
    assert_string_equal(text_at(f, "model_name"), "m");
    assert_string_equal(text_at(f, "xxh3_128"), "fec2cb4c050e199b8db86d432d993b7f");
    assert_int_equal(json_integer_value(json_object_get(f, "mtime_ns")), 1700000000123456789LL);
    assert_true(json_is_null(json_object_get(f, "config_text"))); /* file does not exist */

    t = json_array_get(json_object_get(run, "tensors"), 0);
    assert_string_equal(text_at(t, "shape"), "[32000, 2048]");
    assert_string_equal(text_at(t, "role"), "embedding");
    assert_string_equal(text_at(t, "dtype"), "BF16");
    assert_true(json_real_value(json_object_get(t, "min")) == -1.5);
    assert_true(json_is_null(json_object_get(t, "max")));
    assert_int_equal(json_integer_value(json_object_get(t, "file_id")),
                     json_integer_value(json_object_get(f, "id")));

    x = json_array_get(json_object_get(run, "findings"), 0);
    assert_string_equal(text_at(x, "message"), "row 7 holds 2 values outside {-s, 0, +s}");
    assert_int_equal(json_integer_value(json_object_get(x, "byte_offset")), 4096);
    assert_int_equal(json_integer_value(json_object_get(x, "row")), 7);
    assert_true(json_is_null(json_object_get(x, "col")));
    x = json_array_get(json_object_get(run, "findings"), 1);
    assert_true(json_is_null(json_object_get(x, "tensor")));
    assert_true(json_is_null(json_object_get(x, "byte_offset")));
    json_decref(run);

    assert_int_equal(bcpm_audit_show(db, 3, 0, &run, &err), BCPM_ERR_NOT_FOUND);
    bcpm_audit_close(db);
}

static void compare_counts_duplicates(void **state)
{
    struct scratch *s = *state;
    struct bcpm_check_result r;
    struct bcpm_checked_file file;
    struct bcpm_tensor_stats tensors[2];
    struct bcpm_audit *db;
    struct bcpm_error err;
    json_t *result;

    fill_result(&r, &file, tensors);
    record(s->db, &r, 1);
    /* A second copy of the first finding, and the second finding gone. */
    free(r.findings.items[1].message);
    r.findings.items[1].message = strdup("row 7 holds 2 values outside {-s, 0, +s}");
    free(r.findings.items[1].rule);
    r.findings.items[1].rule = strdup("ternary.values");
    free(r.findings.items[1].tensor);
    r.findings.items[1].tensor = strdup("model.layers.0.mlp.up_proj.weight");
    record(s->db, &r, 1);
    bcpm_findings_clear(&r.findings);

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open_existing(&db, s->db, &err), 0);
    assert_int_equal(bcpm_audit_compare(db, 1, 2, &result, &err), 0);
    assert_int_equal(json_array_size(json_object_get(result, "added")), 1);
    assert_int_equal(json_array_size(json_object_get(result, "removed")), 1);
    assert_string_equal(text_at(json_array_get(json_object_get(result, "removed"), 0), "rule"),
                        "tensor.finite");
    assert_string_equal(text_at(json_array_get(json_object_get(result, "added"), 0), "rule"),
                        "ternary.values");
    json_decref(result);

    assert_int_equal(bcpm_audit_compare(db, 2, 2, &result, &err), 0);
    assert_int_equal(json_array_size(json_object_get(result, "added")), 0);
    json_decref(result);
    assert_int_equal(bcpm_audit_compare(db, 1, 9, &result, &err), BCPM_ERR_NOT_FOUND);
    bcpm_audit_close(db);
}

static void verify_names_edited_run(void **state)
{
    struct scratch *s = *state;
    struct bcpm_check_result r;
    struct bcpm_checked_file file;
    struct bcpm_tensor_stats tensors[2];
    struct bcpm_audit_verification v;
    struct bcpm_audit *db;
    struct bcpm_error err;

    fill_result(&r, &file, tensors);
    for (int i = 0; i < 3; i++)
        record(s->db, &r, 1);
    bcpm_findings_clear(&r.findings);

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_audit_open_existing(&db, s->db, &err), 0);
    assert_int_equal(bcpm_audit_verify(db, &v, &err), 0);
    assert_int_equal(v.first_bad_run, 0);
    assert_int_equal(v.runs_checked, 3);
    bcpm_audit_close(db);

    /* A changed tensor statistic is as visible as a changed finding. */
    exec_sql(s->db, "UPDATE tensors SET min = -1.25 WHERE run_id = 2 AND role = 'embedding'");
    assert_int_equal(bcpm_audit_open_existing(&db, s->db, &err), 0);
    assert_int_equal(bcpm_audit_verify(db, &v, &err), 0);
    assert_int_equal(v.first_bad_run, 2);
    assert_int_equal(v.runs_checked, 1);
    assert_non_null(strstr(v.reason, "does not match the hash of its rows"));
    bcpm_audit_close(db);
}

/* ---- digests ---- */

static void digest_sha256_vector(void **state)
{
    struct bcpm_digest ctx;
    struct bcpm_error err;
    char xxh[BCPM_XXH128_HEX_SIZE], sha[BCPM_SHA256_HEX_SIZE];

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_digest_init(&ctx, 1, &err), 0);
    bcpm_digest_update(&ctx, "a", 1);
    bcpm_digest_update(&ctx, "bc", 2);
    bcpm_digest_final(&ctx, xxh, sha);
    /* FIPS 180-2, appendix B.1: SHA-256("abc"). */
    assert_string_equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(strlen(xxh), 32);

    assert_int_equal(bcpm_digest_init(&ctx, 0, &err), 0);
    bcpm_digest_final(&ctx, xxh, sha);
    assert_string_equal(sha, "");
}

/* The first whitespace-separated word of a file written by xxh128sum or sha256sum. */
static void read_sum(const char *name, char *out, size_t size)
{
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/audit/%s", getenv("BCPM_FIXTURES"), name);
    f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%64s", out), 1);
    out[size - 1] = '\0';
    fclose(f);
}

static void digest_file_matches_tools(void **state)
{
    struct bcpm_map *map;
    struct bcpm_error err;
    struct bcpm_digest ctx;
    char path[1024], want_xxh[65], want_sha[65];
    char xxh[BCPM_XXH128_HEX_SIZE], sha[BCPM_SHA256_HEX_SIZE];
    char streamed_xxh[BCPM_XXH128_HEX_SIZE], streamed_sha[BCPM_SHA256_HEX_SIZE];

    (void)state;
    read_sum("digest-sample.xxh128", want_xxh, sizeof(want_xxh));
    read_sum("digest-sample.sha256", want_sha, sizeof(want_sha));
    snprintf(path, sizeof(path), "%s/audit/digest-sample.bin", getenv("BCPM_FIXTURES"));

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_map_open(&map, path, &err), 0);
    assert_int_equal(bcpm_digest_file(map, 1, xxh, sha, &err), 0);
    assert_string_equal(xxh, want_xxh);
    assert_string_equal(sha, want_sha);

    /* Odd-sized pieces, as a check feeds tensors, give the same digests. */
    assert_int_equal(bcpm_digest_init(&ctx, 1, &err), 0);
    for (uint64_t offset = 0; offset < map->size; offset += 4099) {
        uint64_t n = map->size - offset < 4099 ? map->size - offset : 4099;
        bcpm_digest_update(&ctx, map->data + offset, (size_t)n);
    }
    bcpm_digest_final(&ctx, streamed_xxh, streamed_sha);
    assert_string_equal(streamed_xxh, want_xxh);
    assert_string_equal(streamed_sha, want_sha);
    bcpm_map_close(map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(join_argv_quotes_words),
        cmocka_unit_test(default_path_precedence),
        cmocka_unit_test_setup_teardown(open_creates_folders_and_schema, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(open_rejects_newer_schema, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(record_reads_back, scratch_setup, scratch_teardown),
        cmocka_unit_test_setup_teardown(compare_counts_duplicates, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test_setup_teardown(verify_names_edited_run, scratch_setup,
                                        scratch_teardown),
        cmocka_unit_test(digest_sha256_vector),
        cmocka_unit_test(digest_file_matches_tools),
    };

    return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
