/* Rule files: the shipped sets, overriding entries, and errors with file, line and column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "rules/engine.h"

static char rules_dir[1024];

static int setup(void **state)
{
    const char *source = getenv("BCPM_SOURCE");

    (void)state;
    if (!source)
        return -1;
    snprintf(rules_dir, sizeof(rules_dir), "%s/rules", source);
    return setenv("BITCPM_RULES_DIR", rules_dir, 1);
}

static struct bcpm_ruleset *load_default(void)
{
    struct bcpm_ruleset *rs = NULL;
    struct bcpm_error err;

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_ruleset_load_default(&rs, &err), 0);
    assert_non_null(rs);
    return rs;
}

/* Write text to a fresh temporary file; returns its path (static buffer). */
static const char *write_temp(const char *text)
{
    static char path[64];
    FILE *f;
    int fd;

    strcpy(path, "/tmp/bcpm-rules-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int find_check(const struct bcpm_ruleset *rs, const char *id, struct bcpm_rule_info *out)
{
    for (size_t i = 0; i < bcpm_ruleset_check_count(rs); i++) {
        bcpm_ruleset_check_info(rs, i, out);
        if (strcmp(out->id, id) == 0)
            return 1;
    }
    return 0;
}

static void rules_default_set(void **state)
{
    static const char *const ids[] = { "layout.missing", "layout.unexpected", "layout.shape",
                                       "layout.dtype", "values.nonfinite", "ternary.values",
                                       "ternary.scale", "ternary.groups", "stage.mismatch" };
    struct bcpm_ruleset *rs = load_default();
    struct bcpm_rule_info info;
    const struct bcpm_global_rule *globals;
    size_t nglobals;
    int namespace_allowed = 0;

    (void)state;
    assert_int_equal(bcpm_ruleset_file_count(rs), 3);
    assert_string_equal(strrchr(bcpm_ruleset_file_path(rs, 0), '/'), "/common.yaml");
    assert_string_equal(strrchr(bcpm_ruleset_file_path(rs, 1), '/'), "/llama.yaml");
    assert_string_equal(strrchr(bcpm_ruleset_file_path(rs, 2), '/'), "/minicpm.yaml");
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        assert_true(find_check(rs, ids[i], &info));
    assert_true(find_check(rs, "ternary.values", &info));
    assert_int_equal(info.severity, BCPM_SEVERITY_ERROR);
    assert_int_equal(bcpm_ruleset_layout_count(rs), 2);
    assert_string_equal(bcpm_ruleset_layout_family(rs, 0), "llama");
    assert_string_equal(bcpm_ruleset_layout_family(rs, 1), "minicpm");

    bcpm_ruleset_allowed_globals(rs, &globals, &nglobals);
    for (size_t i = 0; i < nglobals; i++)
        namespace_allowed |= strcmp(globals[i].module, "argparse") == 0 &&
                             strcmp(globals[i].name, "Namespace") == 0;
    assert_true(namespace_allowed);
    bcpm_ruleset_free(rs);
}

/* The digest is SHA-256 over the bytes of the files in load order. */
static void rules_digest_matches_files(void **state)
{
    static const char *const names[] = { "common.yaml", "llama.yaml", "minicpm.yaml" };
    struct bcpm_ruleset *rs = load_default();
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    unsigned char hash[32], buf[4096];
    unsigned len = 0;
    char hex[65];

    (void)state;
    EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
    for (size_t i = 0; i < 3; i++) {
        char path[1200];
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "%s/%s", rules_dir, names[i]);
        f = fopen(path, "rb");
        assert_non_null(f);
        while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
            EVP_DigestUpdate(sha, buf, n);
        fclose(f);
    }
    EVP_DigestFinal_ex(sha, hash, &len);
    EVP_MD_CTX_free(sha);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", hash[i]);
    assert_string_equal(bcpm_ruleset_digest(rs), hex);
    bcpm_ruleset_free(rs);
}

static void rules_override_by_id(void **state)
{
    struct bcpm_ruleset *rs = load_default();
    size_t checks = bcpm_ruleset_check_count(rs), layouts = bcpm_ruleset_layout_count(rs);
    char digest[65];
    struct bcpm_rule_info info;
    struct bcpm_error err;
    const char *path = write_temp("version: 1\n"
                                  "checks:\n"
                                  "  - id: ternary.values\n"
                                  "    severity: warning\n"
                                  "    params: {group_size: 32}\n"
                                  "  - id: site.extra\n"
                                  "    kind: values.nonfinite\n"
                                  "    enabled: false\n"
                                  "layouts:\n"
                                  "  - family: llama\n"
                                  "    description: replaced\n");

    (void)state;
    strcpy(digest, bcpm_ruleset_digest(rs));
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_ruleset_add_file(rs, path, &err), 0);
    unlink(path);

    assert_int_equal(bcpm_ruleset_check_count(rs), checks + 1);
    assert_int_equal(bcpm_ruleset_layout_count(rs), layouts);
    assert_true(find_check(rs, "ternary.values", &info));
    assert_int_equal(info.severity, BCPM_SEVERITY_WARNING);
    assert_int_equal(info.line, 3);
    assert_true(find_check(rs, "site.extra", &info));
    assert_int_equal(info.enabled, 0);
    assert_string_equal(info.kind, "values.nonfinite");
    assert_string_equal(bcpm_ruleset_layout_family(rs, 0), "llama");
    assert_int_equal(bcpm_ruleset_file_count(rs), 4);
    assert_string_not_equal(bcpm_ruleset_digest(rs), digest);
    bcpm_ruleset_free(rs);
}

struct bad_case {
    const char *text;
    unsigned line, column;
    const char *message;
};

static const struct bad_case bad_cases[] = {
    { "checks:\n  - id: a\n    severity: [error\n", 4, 1, "invalid YAML" },
    { "checks:\n  - id: a\n    sevrity: error\n", 3, 5, "unknown key 'sevrity' in a check entry" },
    { "checks:\n  - id: a\n    severity: fatal\n", 3, 15, "unknown severity 'fatal'" },
    { "checks:\n  - severity: error\n", 2, 5, "check entry has no 'id'" },
    { "version: 2\n", 1, 10, "expected version 1, found 2" },
    { "checks: {id: a}\n", 1, 9, "expected a list for checks, found a mapping" },
    { "layouts:\n  - family: x\n    global:\n      - {name: w, shape: [hidden_size *], role: norm}\n",
      4, 27, "invalid shape expression" },
    { "layouts:\n  - family: x\n    global:\n      - {name: w, shape: [h], role: bias}\n",
      4, 37, "unknown role 'bias'" },
    { "layouts:\n  - family: x\n    layers:\n      count: n\n      prefix: model.layers.\n"
      "      tensors: [{name: w, shape: [h]}]\n", 5, 15, "expected '{i}' exactly once" },
    { "layouts:\n  - family: x\n    dtypes: [BF16, F8]\n", 3, 13, "unknown dtype 'F8'" },
    { "checks:\n  - id: a\n    params: {allowed_shards: [1, two]}\n", 3, 34,
      "expected a number in the list of parameter 'allowed_shards'" },
    { "", 0, 0, "the file is empty" },
    { "- a\n- b\n", 1, 1, "expected a mapping for the top level, found a list" },
    { "checks: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
      1, 72, "nest deeper than 64 levels" },
};

static void rules_malformed_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        struct bcpm_ruleset *rs;
        struct bcpm_error err;
        char text[2048];
        const char *path;

        bcpm_error_clear(&err);
        assert_int_equal(bcpm_ruleset_new(&rs, &err), 0);
        path = write_temp(bad_cases[i].text);
        assert_int_equal(bcpm_ruleset_add_file(rs, path, &err), BCPM_ERR_RULES);
        print_message("case %zu: %s\n", i, bcpm_error_format(&err, text, sizeof(text)));
        assert_string_equal(err.file, path);
        assert_int_equal(err.line, bad_cases[i].line);
        assert_int_equal(err.column, bad_cases[i].column);
        assert_non_null(strstr(err.message, bad_cases[i].message));
        /* A failed file leaves the rule set as it was. */
        assert_int_equal(bcpm_ruleset_file_count(rs), 0);
        assert_int_equal(bcpm_ruleset_check_count(rs), 0);
        unlink(path);
        bcpm_ruleset_free(rs);
    }
}

static void rules_missing_file(void **state)
{
    struct bcpm_ruleset *rs;
    struct bcpm_error err;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_ruleset_new(&rs, &err), 0);
    assert_int_equal(bcpm_ruleset_add_file(rs, "/nonexistent/rules.yaml", &err),
                     BCPM_ERR_NOT_FOUND);
    bcpm_ruleset_free(rs);
}

static void rules_env_dir_missing(void **state)
{
    struct bcpm_ruleset *rs;
    struct bcpm_error err;

    (void)state;
    bcpm_error_clear(&err);
    setenv("BITCPM_RULES_DIR", "/nonexistent-rules-dir", 1);
    assert_int_equal(bcpm_ruleset_load_default(&rs, &err), BCPM_ERR_NOT_FOUND);
    assert_null(rs);
    setenv("BITCPM_RULES_DIR", rules_dir, 1);
}

static void rules_param_lookup(void **state)
{
    struct bcpm_ruleset *rs = load_default();
    double value = 0;

    (void)state;
    /* Values written in rules/common.yaml. */
    assert_int_equal(bcpm_ruleset_param_number(rs, "reference.codes", "eps", &value), 0);
    assert_true(value == 1e-5);
    assert_int_equal(bcpm_ruleset_param_number(rs, "ternary.scale", "outlier_factor", &value), 0);
    assert_true(value == 8);
    assert_int_equal(bcpm_ruleset_param_number(rs, "ternary.values", "group_size", &value), 0);
    assert_true(value == -1);
    assert_int_equal(bcpm_ruleset_param_number(rs, "ternary.values", "eps", &value),
                     BCPM_ERR_NOT_FOUND);
    assert_int_equal(bcpm_ruleset_param_number(rs, "no.such", "eps", &value), BCPM_ERR_NOT_FOUND);
    bcpm_ruleset_free(rs);
}

/* Findings raised outside the engine take the severity of their id, or go when it is disabled. */
static void rules_apply_to_findings(void **state)
{
    struct bcpm_ruleset *rs = load_default();
    struct bcpm_findings list = { 0 };
    struct bcpm_error err;
    const char *path = write_temp("checks:\n  - id: reference.boundary\n    enabled: false\n"
                                  "  - id: security.unknown-global\n    severity: warning\n");

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_ruleset_add_file(rs, path, &err), 0);
    unlink(path);
    assert_non_null(bcpm_findings_add(&list, "layout.missing", BCPM_SEVERITY_INFO, NULL, "a", "kept"));
    assert_non_null(bcpm_findings_add(&list, "reference.boundary", BCPM_SEVERITY_INFO, NULL, "b", "dropped"));
    assert_non_null(bcpm_findings_add(&list, "security.unknown-global", BCPM_SEVERITY_ERROR, NULL, "c", "lowered"));
    assert_non_null(bcpm_findings_add(&list, "site.own", BCPM_SEVERITY_CRITICAL, NULL, "d", "as raised"));
    assert_non_null(bcpm_findings_add(&list, "reference.codes", BCPM_SEVERITY_INFO, NULL, "e", "raised"));

    /* From index 1 on: the first finding keeps its severity although layout.missing is error. */
    bcpm_ruleset_apply(rs, &list, 1);
    assert_int_equal(list.count, 4);
    assert_string_equal(list.items[0].tensor, "a");
    assert_int_equal(list.items[0].severity, BCPM_SEVERITY_INFO);
    assert_string_equal(list.items[1].tensor, "c");
    assert_int_equal(list.items[1].severity, BCPM_SEVERITY_WARNING);
    assert_string_equal(list.items[2].tensor, "d");
    assert_int_equal(list.items[2].severity, BCPM_SEVERITY_CRITICAL);
    assert_string_equal(list.items[3].tensor, "e");
    assert_int_equal(list.items[3].severity, BCPM_SEVERITY_ERROR);
    bcpm_findings_clear(&list);
    bcpm_ruleset_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rules_default_set),
        cmocka_unit_test(rules_digest_matches_files),
        cmocka_unit_test(rules_override_by_id),
        cmocka_unit_test(rules_malformed_files),
        cmocka_unit_test(rules_missing_file),
        cmocka_unit_test(rules_env_dir_missing),
        cmocka_unit_test(rules_param_lookup),
        cmocka_unit_test(rules_apply_to_findings),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
