/*
 * Unit tests of the report writers (src/report/) on a hand-built check
 * result: the JSON schema and its handling of NaN, Inf and invalid UTF-8,
 * XML escaping in JUnit, one SARIF result per finding with the level mapping,
 * and colour and verbosity in the terminal report. The expected values are
 * properties of the result built here, not output pasted from a run.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "report/report.h"
#include "report/report_util.h"

/* Two files; three tensors; four findings of every severity but info. */
static void build_result(struct bcpm_check_result *r)
{
    struct bcpm_finding *f;

    memset(r, 0, sizeof(*r));
    r->nfiles = 2;
    r->files = calloc(2, sizeof(*r->files));
    r->files[0].path = strdup("models/a b.bin");
    r->files[0].format = strdup("torch-zip");
    r->files[0].stage_detected = BCPM_STAGE_PSEUDO;
    r->files[0].first_tensor = 0;
    r->files[0].ntensors = 2;
    r->files[1].path = strdup("models/c.safetensors");
    r->files[1].format = strdup("safetensors");
    r->files[1].stage_detected = BCPM_STAGE_PSEUDO;
    r->files[1].first_tensor = 2;
    r->files[1].ntensors = 1;

    r->ntensors = 3;
    r->tensors = calloc(3, sizeof(*r->tensors));
    r->tensors[0].name = strdup("model.layers.0.self_attn.q_proj.weight");
    r->tensors[0].role = BCPM_ROLE_TERNARY;
    r->tensors[0].dtype = BCPM_DTYPE_BF16;
    r->tensors[0].ndim = 2;
    r->tensors[0].shape[0] = 4;
    r->tensors[0].shape[1] = 8;
    r->tensors[0].numel = 32;
    r->tensors[0].ternary_checked = 1;
    r->tensors[0].group_size = -1;
    r->tensors[0].groups = 4;
    r->tensors[0].groups_ternary = 3;
    r->tensors[0].min = NAN;
    r->tensors[1].name = strdup("model.norm.weight");
    r->tensors[1].role = BCPM_ROLE_NORM;
    r->tensors[1].nan = 2;
    r->tensors[2].name = strdup("model.norm.weight");
    r->tensors[2].role = BCPM_ROLE_NORM;

    f = bcpm_findings_add(&r->findings, "ternary.values", BCPM_SEVERITY_ERROR, "models/a b.bin",
                          "model.layers.0.self_attn.q_proj.weight", "value 0.3 <not> -s & \"s\"");
    f->row = 3;
    f->column = 5;
    f->value = 0.25;
    f = bcpm_findings_add(&r->findings, "values.nonfinite", BCPM_SEVERITY_CRITICAL,
                          "models/a b.bin", "model.norm.weight", "2 NaN");
    f->value = INFINITY;
    bcpm_findings_add(&r->findings, "layout.unexpected", BCPM_SEVERITY_WARNING,
                      "models/c.safetensors", "bad\xff\x01name", "unexpected");
    bcpm_findings_add(&r->findings, "security.unsafe-global", BCPM_SEVERITY_CRITICAL, NULL, NULL,
                      "os.system");
    r->fail_on = BCPM_SEVERITY_ERROR;
    r->failed = 1;
    r->rules_digest = strdup("00");
}

static int setup(void **state)
{
    struct bcpm_check_result *r = malloc(sizeof(*r));

    build_result(r);
    *state = r;
    return 0;
}

static int teardown(void **state)
{
    bcpm_check_result_free(*state);
    free(*state);
    return 0;
}

/* Run a FILE*-writer into memory and return the NUL-terminated text. */
static char *capture_terminal(const struct bcpm_check_result *r,
                              const struct bcpm_report_options *o)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);

    assert_non_null(out);
    assert_int_equal(bcpm_report_terminal(out, r, o), 0);
    fclose(out);
    return text;
}

static json_t *json_of(const struct bcpm_check_result *r)
{
    struct bcpm_error err;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    json_error_t jerr;
    json_t *doc;

    bcpm_error_clear(&err);
    assert_int_equal(bcpm_report_json(out, r, NULL, &err), 0);
    fclose(out);
    doc = json_loads(text, 0, &jerr);
    free(text);
    assert_non_null(doc);
    return doc;
}

static void json_top_level_keys(void **state)
{
    json_t *doc = json_of(*state);

    assert_int_equal(json_integer_value(json_object_get(doc, "schema_version")), 1);
    assert_string_equal(json_string_value(json_object_get(doc, "verdict")), "fail");
    assert_string_equal(json_string_value(json_object_get(doc, "stage")), "pseudo");
    assert_int_equal(json_array_size(json_object_get(doc, "files")), 2);
    assert_int_equal(json_array_size(json_object_get(doc, "findings")), 4);
    assert_int_equal(json_array_size(json_object_get(doc, "tensors")), 3);
    json_decref(doc);
}

static void json_finding_fields(void **state)
{
    json_t *doc = json_of(*state);
    json_t *findings = json_object_get(doc, "findings");
    json_t *first = json_array_get(findings, 0);
    json_t *second = json_array_get(findings, 1);
    json_t *fourth = json_array_get(findings, 3);

    assert_string_equal(json_string_value(json_object_get(first, "rule")), "ternary.values");
    assert_string_equal(json_string_value(json_object_get(first, "severity")), "error");
    assert_int_equal(json_integer_value(json_object_get(first, "row")), 3);
    assert_int_equal(json_integer_value(json_object_get(first, "column")), 5);
    assert_true(json_real_value(json_object_get(first, "value")) == 0.25);
    assert_true(json_is_null(json_object_get(first, "offset")));
    assert_string_equal(json_string_value(json_object_get(second, "value")), "Infinity");
    assert_true(json_is_null(json_object_get(fourth, "tensor")));
    assert_true(json_is_null(json_object_get(fourth, "value")));
    json_decref(doc);
}

static void json_invalid_utf8_replaced(void **state)
{
    json_t *doc = json_of(*state);
    json_t *third = json_array_get(json_object_get(doc, "findings"), 2);

    /* 0xFF is not UTF-8 and becomes U+FFFD; 0x01 is valid and JSON escapes it. */
    assert_string_equal(json_string_value(json_object_get(third, "tensor")),
                        "bad\xEF\xBF\xBD\x01name");
    json_decref(doc);
}

static void json_nan_statistic_null(void **state)
{
    json_t *doc = json_of(*state);
    json_t *t0 = json_array_get(json_object_get(doc, "tensors"), 0);
    json_t *ternary = json_object_get(t0, "ternary");

    assert_true(json_is_null(json_object_get(t0, "min")));
    assert_int_equal(json_integer_value(json_object_get(ternary, "groups")), 4);
    assert_int_equal(json_integer_value(json_object_get(ternary, "groups_ternary")), 3);
    assert_true(json_is_null(json_object_get(json_array_get(json_object_get(doc, "tensors"), 1),
                                             "ternary")));
    json_decref(doc);
}

static void xml_escape_markup(void **state)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);

    (void)state;
    bcpm_report_xml_escape(out, "a<b>&\"c'\x01\xff");
    fclose(out);
    assert_string_equal(text, "a&lt;b&gt;&amp;&quot;c&apos;\xEF\xBF\xBD\xEF\xBF\xBD");
    free(text);
}

static char *read_file(const char *path)
{
    FILE *in = fopen(path, "rb");
    char *text;
    long size;

    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    size = ftell(in);
    rewind(in);
    text = calloc((size_t)size + 1, 1);
    assert_int_equal(fread(text, 1, (size_t)size, in), (size_t)size);
    fclose(in);
    return text;
}

static void junit_cases_and_failures(void **state)
{
    char path[] = "/tmp/bcpm-junit-XXXXXX";
    int fd = mkstemp(path);
    struct bcpm_error err;
    char *text;

    assert_true(fd >= 0);
    close(fd);
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_report_junit(path, *state, NULL, &err), 0);
    text = read_file(path);
    unlink(path);

    /* Four findings in four (rule, role) pairs; three at or above error fail. */
    assert_non_null(strstr(text, "<testsuites name=\"bitcpm-check\" tests=\"4\" failures=\"3\""));
    assert_non_null(strstr(text, "classname=\"ternary.values\" name=\"ternary\""));
    assert_non_null(strstr(text, "classname=\"values.nonfinite\" name=\"norm\""));
    assert_non_null(strstr(text, "classname=\"security.unsafe-global\" name=\"checkpoint\""));
    assert_non_null(strstr(text, "value 0.3 &lt;not&gt; -s &amp; &quot;s&quot;"));
    assert_non_null(strstr(text, "<system-out>warning: bad\xEF\xBF\xBD\xEF\xBF\xBDname"));
    assert_null(strstr(text, "\xff"));
    free(text);
}

static void sarif_one_result_per_finding(void **state)
{
    char path[] = "/tmp/bcpm-sarif-XXXXXX";
    int fd = mkstemp(path);
    struct bcpm_error err;
    json_error_t jerr;
    json_t *log, *run, *results;

    assert_true(fd >= 0);
    close(fd);
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_report_sarif(path, *state, NULL, &err), 0);
    log = json_load_file(path, 0, &jerr);
    unlink(path);
    assert_non_null(log);

    assert_string_equal(json_string_value(json_object_get(log, "version")), "2.1.0");
    run = json_array_get(json_object_get(log, "runs"), 0);
    results = json_object_get(run, "results");
    assert_int_equal(json_array_size(results), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(results, 0), "level")),
                        "error");
    assert_string_equal(json_string_value(json_object_get(json_array_get(results, 2), "level")),
                        "warning");

    /* The space in "a b.bin" is percent-encoded in the artifact URI. */
    {
        json_t *loc = json_array_get(json_object_get(json_array_get(results, 0), "locations"), 0);
        json_t *uri = json_object_get(
            json_object_get(json_object_get(loc, "physicalLocation"), "artifactLocation"), "uri");
        json_t *logical = json_array_get(json_object_get(loc, "logicalLocations"), 0);

        assert_string_equal(json_string_value(uri), "models/a%20b.bin");
        assert_string_equal(json_string_value(json_object_get(logical, "name")),
                            "model.layers.0.self_attn.q_proj.weight");
    }
    assert_int_equal(
        json_array_size(json_object_get(
            json_object_get(json_object_get(run, "tool"), "driver"), "rules")),
        4);
    json_decref(log);
}

static void terminal_colour_only_when_asked(void **state)
{
    struct bcpm_report_options o = {0};
    char *plain, *coloured;

    plain = capture_terminal(*state, &o);
    o.color = 1;
    coloured = capture_terminal(*state, &o);
    assert_null(strchr(plain, '\033'));
    assert_non_null(strstr(coloured, "\033[1;31mFAIL\033[0m"));
    assert_int_equal(strncmp(plain, "FAIL ", 5), 0);
    free(plain);
    free(coloured);
}

static void terminal_quiet_one_line(void **state)
{
    struct bcpm_report_options o = {0};
    char *text;

    o.verbosity = -1;
    text = capture_terminal(*state, &o);
    assert_non_null(strstr(text, "2 critical, 1 error, 1 warning, 0 info"));
    assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1);
    free(text);
}

static void terminal_worst_offenders(void **state)
{
    struct bcpm_report_options o = {0};
    char *text = capture_terminal(*state, &o);
    char *section = strstr(text, "Worst offenders");

    /* q_proj has one failing group of four; model.norm.weight has 2 NaN and ranks first. */
    assert_non_null(section);
    assert_true(strstr(section, "model.norm.weight") < strstr(section, "q_proj"));
    assert_non_null(strstr(section, "1 / 4"));
    free(text);
}

static void terminal_escapes_control_bytes(void **state)
{
    struct bcpm_report_options o = {0};
    char *text = capture_terminal(*state, &o);

    /* A tensor name from the file must not reach the terminal as raw control bytes. */
    assert_non_null(strstr(text, "bad\\xFF\\x01name"));
    assert_null(strchr(text, '\x01'));
    free(text);
}

static void passing_result_verdict(void **state)
{
    struct bcpm_check_result *r = *state;
    struct bcpm_report_options o = {0};
    char *text;

    r->failed = 0;
    o.verbosity = -1;
    text = capture_terminal(r, &o);
    assert_int_equal(strncmp(text, "PASS ", 5), 0);
    free(text);
    r->failed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(json_top_level_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(json_finding_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(json_invalid_utf8_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(json_nan_statistic_null, setup, teardown),
        cmocka_unit_test(xml_escape_markup),
        cmocka_unit_test_setup_teardown(junit_cases_and_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(sarif_one_result_per_finding, setup, teardown),
        cmocka_unit_test_setup_teardown(terminal_colour_only_when_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(terminal_quiet_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(terminal_worst_offenders, setup, teardown),
        cmocka_unit_test_setup_teardown(terminal_escapes_control_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(passing_result_verdict, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
