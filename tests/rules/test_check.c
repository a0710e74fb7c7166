/*
 * The rule engine on checkpoints written by PyTorch (tools/gen_check_fixtures.py):
 * correct models pass, each planted defect is reported with its rule id,
 * tensor and position, and stage assertions that do not hold are reported.
 * The expectations come from fixtures/check/expectations.json, which the
 * generator wrote beside the files it planted the defects in.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rules/engine.h"
#include "rules_test_setup.h"

static struct bcpm_ruleset *rules;
static json_t *expectations;
static char check_dir[1024];

static int setup(void **state)
{
    (void)state;
    return rules_test_setup("check", "expectations.json", check_dir, sizeof(check_dir), &rules,
                            &expectations);
}

static int teardown(void **state)
{
    (void)state;
    bcpm_ruleset_free(rules);
    json_decref(expectations);
    return 0;
}

static void print_findings(const struct bcpm_check_result *result)
{
    for (size_t i = 0; i < result->findings.count; i++) {
        const struct bcpm_finding *f = &result->findings.items[i];

        print_message("  %s %s %s: %s\n", bcpm_severity_name(f->severity), f->rule,
                      f->tensor ? f->tensor : "-", f->message);
    }
}

/*
 * Open the fixture at relative path with rs's allowed globals and check it
 * with options; returns the check's status. The result is the caller's to free.
 */
static int run_check_with(const struct bcpm_ruleset *rs, const char *relative,
                          const struct bcpm_check_options *options,
                          struct bcpm_check_result *result, struct bcpm_error *err)
{
    struct bcpm_open_options open_options;
    struct bcpm_catalog *cat = NULL;
    char path[1200], text[2048];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", check_dir, relative);
    memset(&open_options, 0, sizeof(open_options));
    bcpm_ruleset_allowed_globals(rs, &open_options.allowed_globals,
                                 &open_options.nallowed_globals);
    bcpm_error_clear(err);
    rc = bcpm_catalog_open(&cat, path, &open_options, err);
    if (rc != 0)
        print_error("%s\n", bcpm_error_format(err, text, sizeof(text)));
    assert_int_equal(rc, 0);

    assert_int_equal(bcpm_check_result_init(result, rs, BCPM_SEVERITY_ERROR, err), 0);
    rc = bcpm_check_catalog(rs, cat, options, result, err);
    bcpm_check_result_finish(result);
    print_message("%s:\n", relative);
    print_findings(result);
    bcpm_catalog_free(cat);
    return rc;
}

/* Open the fixture at relative path and check it; the result is the caller's to free. */
static void run_check(const char *relative, enum bcpm_stage stage,
                      struct bcpm_check_result *result)
{
    struct bcpm_open_options open_options;
    struct bcpm_check_options options;
    struct bcpm_catalog *cat = NULL;
    struct bcpm_error err;
    char path[1200], text[2048];
    int rc;

    snprintf(path, sizeof(path), "%s/%s", check_dir, relative);
    memset(&open_options, 0, sizeof(open_options));
    bcpm_ruleset_allowed_globals(rules, &open_options.allowed_globals,
                                 &open_options.nallowed_globals);
    bcpm_error_clear(&err);
    rc = bcpm_catalog_open(&cat, path, &open_options, &err);
    if (rc != 0)
        print_error("%s\n", bcpm_error_format(&err, text, sizeof(text)));
    assert_int_equal(rc, 0);

    bcpm_check_options_init(&options);
    options.expected_stage = stage;
    assert_int_equal(bcpm_check_result_init(result, rules, BCPM_SEVERITY_ERROR, &err), 0);
    rc = bcpm_check_catalog(rules, cat, &options, result, &err);
    if (rc != 0)
        print_error("%s\n", bcpm_error_format(&err, text, sizeof(text)));
    assert_int_equal(rc, 0);
    bcpm_check_result_finish(result);
    print_message("%s (stage %s):\n", relative, bcpm_stage_name(result->files[0].stage_detected));
    print_findings(result);
    bcpm_catalog_free(cat);
}

static const struct bcpm_tensor_stats *find_stats(const struct bcpm_check_result *result,
                                                  const char *name)
{
    for (size_t i = 0; i < result->ntensors; i++) {
        if (strcmp(result->tensors[i].name, name) == 0)
            return &result->tensors[i];
    }
    return NULL;
}

static void check_good_models(void **state)
{
    json_t *good = json_object_get(expectations, "good"), *entry;
    size_t index;

    (void)state;
    assert_true(json_array_size(good) >= 17);
    json_array_foreach(good, index, entry) {
        const char *stage_name = json_string_value(json_object_get(entry, "stage"));
        struct bcpm_check_result result;
        enum bcpm_stage stage;

        run_check(json_string_value(json_object_get(entry, "path")), BCPM_STAGE_UNKNOWN,
                  &result);
        for (size_t i = 0; i < result.findings.count; i++)
            assert_true(result.findings.items[i].severity < BCPM_SEVERITY_ERROR);
        assert_int_equal(result.failed, 0);
        assert_int_equal(bcpm_stage_from_name(stage_name, &stage), 0);
        assert_int_equal(result.files[0].stage_detected, stage);
        /* Without a config the names cannot tell MiniCPM from Llama. */
        if (json_is_true(json_object_get(entry, "config")))
            assert_string_equal(result.files[0].family,
                                json_string_value(json_object_get(entry, "family")));
        else
            assert_null(result.files[0].family);
        assert_int_equal(result.nfiles, 1);
        assert_int_equal(result.files[0].ntensors, result.ntensors);

        /* Every ternary tensor was scanned, and in a pseudo model each group is ternary. */
        for (size_t i = 0; i < result.ntensors; i++) {
            const struct bcpm_tensor_stats *st = &result.tensors[i];

            if (st->role != BCPM_ROLE_TERNARY)
                continue;
            assert_int_equal(st->ternary_checked, 1);
            assert_int_equal(st->group_size, -1);
            assert_int_equal(st->groups, (uint64_t)st->shape[0]);
            if (stage == BCPM_STAGE_PSEUDO) {
                assert_int_equal(st->groups_ternary, st->groups);
                assert_true(st->scale_min > 0);
                assert_int_equal(st->shards_per_row, 1);
            }
        }
        bcpm_check_result_free(&result);
    }
}

static void check_planted_defects(void **state)
{
    json_t *defects = json_object_get(expectations, "defects"), *entry;
    size_t index;

    (void)state;
    assert_int_equal(json_array_size(defects), 18);
    json_array_foreach(defects, index, entry) {
        const char *rule = json_string_value(json_object_get(entry, "rule"));
        const char *tensor = json_string_value(json_object_get(entry, "tensor"));
        const char *severity = json_string_value(json_object_get(entry, "severity"));
        json_t *row = json_object_get(entry, "row"), *column = json_object_get(entry, "column");
        const struct bcpm_finding *hit = NULL;
        struct bcpm_check_result result;
        size_t reported = 0;

        run_check(json_string_value(json_object_get(entry, "path")), BCPM_STAGE_UNKNOWN,
                  &result);

        /* Exactly one finding above info, and it is the planted one. */
        for (size_t i = 0; i < result.findings.count; i++) {
            if (result.findings.items[i].severity > BCPM_SEVERITY_INFO) {
                reported++;
                hit = &result.findings.items[i];
            }
        }
        assert_int_equal(reported, 1);
        assert_string_equal(hit->rule, rule);
        if (tensor) {
            assert_non_null(hit->tensor);
            assert_string_equal(hit->tensor, tensor);
        }
        if (json_is_integer(row))
            assert_int_equal(hit->row, json_integer_value(row));
        if (json_is_integer(column))
            assert_int_equal(hit->column, json_integer_value(column));
        /* "any": a reader's finding, whose severity the reader chooses. */
        if (strcmp(severity, "any") != 0) {
            enum bcpm_severity want;

            assert_int_equal(bcpm_severity_from_name(severity, &want), 0);
            assert_int_equal(hit->severity, want);
            assert_int_equal(result.failed, want >= BCPM_SEVERITY_ERROR);
        }
        bcpm_check_result_free(&result);
    }
}

static json_t *defect(const char *name)
{
    json_t *defects = json_object_get(expectations, "defects"), *entry;
    size_t index;

    json_array_foreach(defects, index, entry) {
        if (strcmp(json_string_value(json_object_get(entry, "name")), name) == 0)
            return entry;
    }
    fail_msg("no defect %s in expectations.json", name);
    return NULL;
}

static const struct bcpm_finding *only_finding(const struct bcpm_check_result *result,
                                               const char *rule)
{
    const struct bcpm_finding *hit = NULL;

    for (size_t i = 0; i < result->findings.count; i++) {
        if (strcmp(result->findings.items[i].rule, rule) == 0) {
            assert_null(hit);
            hit = &result->findings.items[i];
        }
    }
    assert_non_null(hit);
    return hit;
}

static void check_nonternary_value(void **state)
{
    json_t *entry = defect("nonternary");
    struct bcpm_check_result result;
    const struct bcpm_finding *f;

    (void)state;
    run_check(json_string_value(json_object_get(entry, "path")), BCPM_STAGE_UNKNOWN, &result);
    f = only_finding(&result, "ternary.values");
    assert_true(f->value == json_real_value(json_object_get(entry, "value")));
    assert_non_null(strstr(f->message, "1 of 64 groups"));
    assert_int_equal(result.files[0].stage_detected, BCPM_STAGE_PSEUDO);
    bcpm_check_result_free(&result);
}

static void check_two_scale_row(void **state)
{
    json_t *entry = defect("two-scale-row");
    const char *tensor = json_string_value(json_object_get(entry, "tensor"));
    const struct bcpm_tensor_stats *st;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;

    (void)state;
    run_check(json_string_value(json_object_get(entry, "path")), BCPM_STAGE_PSEUDO, &result);
    f = only_finding(&result, "ternary.groups");
    assert_int_equal(f->value, json_integer_value(json_object_get(entry, "shards")));
    assert_non_null(strstr(f->message, "2 scales"));
    for (size_t i = 0; i < result.findings.count; i++)
        assert_string_not_equal(result.findings.items[i].rule, "ternary.values");
    st = find_stats(&result, tensor);
    assert_non_null(st);
    assert_int_equal(st->shards_per_row, 2);
    bcpm_check_result_free(&result);
}

static void check_zero3_message(void **state)
{
    json_t *entry = defect("zero3-empty");
    struct bcpm_check_result result;
    const struct bcpm_finding *f;

    (void)state;
    run_check(json_string_value(json_object_get(entry, "path")), BCPM_STAGE_UNKNOWN, &result);
    f = only_finding(&result, "layout.shape");
    assert_non_null(strstr(f->message, "empty tensor"));
    assert_non_null(strstr(f->message, "ZeRO-3"));
    bcpm_check_result_free(&result);
}

/*
 * fixtures/quant/pairs/shape.pt has two layers and no config; layer 0's
 * q_proj is [32, 64] where layer 1's is [64, 64]. With one layer each there is
 * no majority, so the finding names both shapes rather than picking one.
 */
static void check_shape_tie(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rules, "../quant/pairs/shape.pt", &options, &result, &err), 0);
    f = only_finding(&result, "layout.shape");
    assert_string_equal(f->tensor, "model.layers.0.self_attn.q_proj.weight");
    assert_non_null(strstr(f->message, "[32, 64] in layer 0"));
    assert_non_null(strstr(f->message, "[64, 64] in layer 1"));
    assert_non_null(strstr(f->message, "no majority"));
    bcpm_check_result_free(&result);
}

static void check_nan_position(void **state)
{
    json_t *entry = defect("nan");
    const char *tensor = json_string_value(json_object_get(entry, "tensor"));
    struct bcpm_check_result result;
    const struct bcpm_finding *f;

    (void)state;
    run_check(json_string_value(json_object_get(entry, "path")), BCPM_STAGE_UNKNOWN, &result);
    f = only_finding(&result, "values.nonfinite");
    assert_true(isnan(f->value));
    assert_int_equal(find_stats(&result, tensor)->nan, 1);
    assert_int_equal(find_stats(&result, tensor)->inf, 0);
    bcpm_check_result_free(&result);
}

static void check_stage_assertions(void **state)
{
    json_t *stages = json_object_get(expectations, "stages"), *entry;
    size_t index;

    (void)state;
    assert_int_equal(json_array_size(stages), 3);
    json_array_foreach(stages, index, entry) {
        const char *name = json_string_value(json_object_get(entry, "name"));
        enum bcpm_stage asserted, detected;
        struct bcpm_check_result result;
        const struct bcpm_finding *f;

        assert_int_equal(bcpm_stage_from_name(json_string_value(json_object_get(entry, "stage")),
                                              &asserted), 0);
        assert_int_equal(bcpm_stage_from_name(
                             json_string_value(json_object_get(entry, "detected")), &detected),
                         0);
        run_check(json_string_value(json_object_get(entry, "path")), asserted, &result);
        f = only_finding(&result, "stage.mismatch");
        assert_int_equal(f->severity, BCPM_SEVERITY_ERROR);
        assert_int_equal(result.files[0].stage_detected, detected);
        assert_int_equal(result.failed, 1);
        /* The message states how many magnitudes it saw, not a vague "many". */
        if (asserted == BCPM_STAGE_PSEUDO) {
            assert_non_null(strstr(f->message, "look like unquantized latent weights"));
            assert_non_null(strstr(f->message, "more than 8 distinct magnitudes"));
        }
        else
            assert_non_null(strstr(f->message, "fine-tuning it would lose the latent weights"));
        /* Latent weights asserted pseudo give one stage finding, not one per tensor. */
        for (size_t i = 0; i < result.findings.count; i++)
            assert_string_not_equal(result.findings.items[i].rule, "ternary.values");
        print_message("%s: %s\n", name, f->message);
        bcpm_check_result_free(&result);
    }
}

/* The default rules plus one file with text; the caller frees the rule set. */
static struct bcpm_ruleset *rules_with(const char *text)
{
    struct bcpm_ruleset *rs;
    struct bcpm_error err;
    char path[] = "/tmp/bcpm-rules-XXXXXX";
    FILE *f;
    int fd;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_ruleset_load_default(&rs, &err), 0);
    assert_int_equal(bcpm_ruleset_add_file(rs, path, &err), 0);
    remove(path);
    return rs;
}

static size_t count_rule(const struct bcpm_check_result *result, const char *rule)
{
    size_t n = 0;

    for (size_t i = 0; i < result->findings.count; i++)
        n += strcmp(result->findings.items[i].rule, rule) == 0;
    return n;
}

/*
 * A damaged pseudo-quantized export (rows with one or two values moved by
 * 0.003, so 2 to 4 magnitudes where latent rows hold dozens) is detected as
 * pseudo-quantized with value errors, with or without --stage pseudo: never
 * as a latent checkpoint that passes.
 */
static void check_damaged_rows(void **state)
{
    static const enum bcpm_stage asserted[] = { BCPM_STAGE_UNKNOWN, BCPM_STAGE_PSEUDO };
    char path[1200];
    json_t *expected, *tensors;

    (void)state;
    snprintf(path, sizeof(path), "%s/defect-damaged-rows/expected.json", check_dir);
    expected = json_load_file(path, 0, NULL);
    assert_non_null(expected);
    tensors = json_object_get(expected, "tensors");
    assert_int_equal(json_object_size(tensors), 14);

    for (size_t a = 0; a < sizeof(asserted) / sizeof(asserted[0]); a++) {
        struct bcpm_check_result result;
        size_t values = 0;

        run_check(json_string_value(json_object_get(expected, "path")), asserted[a], &result);
        assert_int_equal(result.files[0].stage_detected, BCPM_STAGE_PSEUDO);
        assert_int_equal(result.failed, 1);
        assert_int_equal(count_rule(&result, "stage.mismatch"), 0);
        for (size_t i = 0; i < result.findings.count; i++) {
            const struct bcpm_finding *f = &result.findings.items[i];
            json_t *want = json_object_get(tensors, f->tensor ? f->tensor : "");
            char text[128];

            if (strcmp(f->rule, "ternary.values") != 0)
                continue;
            values++;
            assert_non_null(want);
            assert_int_equal(f->severity, BCPM_SEVERITY_ERROR);
            snprintf(text, sizeof(text), "%lld of %lld groups",
                     json_integer_value(json_object_get(want, "groups_bad")),
                     json_integer_value(json_object_get(want, "groups")));
            assert_non_null(strstr(f->message, text));
            assert_int_equal(f->row, json_integer_value(json_object_get(want, "row")));
            assert_int_equal(f->column, json_integer_value(json_object_get(want, "column")));
            assert_true(f->value == json_real_value(json_object_get(want, "value")));
            assert_non_null(strstr(f->message, "distinct magnitudes"));
            assert_null(strstr(f->message, "more than"));
        }
        assert_int_equal(values, json_object_size(tensors));
        bcpm_check_result_free(&result);
    }
    json_decref(expected);
}

/* --stage finetuned asserts latent weights: the values cannot tell the two apart. */
static void check_stage_finetuned(void **state)
{
    struct bcpm_check_result result;
    const struct bcpm_finding *f;

    (void)state;
    run_check("minicpm-pseudo-zip/pytorch_model.bin", BCPM_STAGE_FINETUNED, &result);
    f = only_finding(&result, "stage.mismatch");
    assert_int_equal(f->severity, BCPM_SEVERITY_ERROR);
    assert_non_null(strstr(f->message, "expected fine-tuned latent (not pseudo-quantized) "
                                       "weights"));
    assert_int_equal(result.files[0].stage_detected, BCPM_STAGE_PSEUDO);
    assert_int_equal(result.failed, 1);
    bcpm_check_result_free(&result);

    /* Fine-tuned weights look like latent ones, and are reported as latent. */
    run_check("llama-latent-zip/pytorch_model.bin", BCPM_STAGE_FINETUNED, &result);
    assert_int_equal(count_rule(&result, "stage.mismatch"), 0);
    assert_int_equal(result.files[0].stage_detected, BCPM_STAGE_LATENT);
    assert_int_equal(result.failed, 0);
    bcpm_check_result_free(&result);
}

static void override_group_size(void **state)
{
    struct bcpm_ruleset *rs = rules_with("checks:\n  - id: ternary.values\n"
                                         "    select: {roles: [ternary]}\n"
                                         "    params: {group_size: 32}\n");
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rs, "defect-nonternary/pytorch_model.bin", &options, &result,
                                    &err), 0);
    f = only_finding(&result, "ternary.values");
    /* down_proj is [64, 128]: 4 groups of 32 per row. */
    assert_non_null(strstr(f->message, "1 of 256 groups (group size 32)"));
    assert_int_equal(f->row, 5);
    assert_int_equal(f->column, 17);
    bcpm_check_result_free(&result);
    bcpm_ruleset_free(rs);
}

/*
 * A group size that divides no ternary tensor's column count (7 against the
 * 64 and 128 columns of llama's 14 projections) is one error for the run,
 * never a pass with the ternary check skipped, nor one message per tensor.
 */
static void override_group_size_not_dividing(void **state)
{
    static const enum bcpm_stage asserted[] = { BCPM_STAGE_UNKNOWN, BCPM_STAGE_PSEUDO };
    struct bcpm_ruleset *rs = rules_with("checks:\n  - id: ternary.values\n"
                                         "    select: {roles: [ternary]}\n"
                                         "    params: {group_size: 7}\n");
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;

    (void)state;
    for (size_t a = 0; a < sizeof(asserted) / sizeof(asserted[0]); a++) {
        bcpm_check_options_init(&options);
        options.group_size_override = 7;
        options.expected_stage = asserted[a];
        assert_int_equal(run_check_with(rules, "llama-pseudo-zip/pytorch_model.bin", &options,
                                        &result, &err), 0);
        f = only_finding(&result, "ternary.groups");
        assert_int_equal(f->severity, BCPM_SEVERITY_ERROR);
        assert_non_null(strstr(f->message, "group size 7 from --group-size"));
        assert_non_null(strstr(f->message, "14 of the 14 ternary tensors (64, 128 columns)"));
        assert_int_equal(count_rule(&result, "ternary.values"), 0);
        assert_int_equal(result.failed, 1);
        bcpm_check_result_free(&result);
    }

    /* The same from a rule file: the finding points at the rule. */
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rs, "llama-pseudo-zip/pytorch_model.bin", &options, &result,
                                    &err), 0);
    f = only_finding(&result, "ternary.groups");
    assert_int_equal(f->severity, BCPM_SEVERITY_ERROR);
    assert_non_null(strstr(f->message, "group size 7 from the ternary.values rule (/tmp/"));
    assert_int_equal(result.failed, 1);
    bcpm_check_result_free(&result);
    bcpm_ruleset_free(rs);
}

static void override_disable_check(void **state)
{
    struct bcpm_ruleset *rs = rules_with("checks:\n  - id: ternary.values\n    enabled: false\n");
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rs, "defect-nonternary/pytorch_model.bin", &options, &result,
                                    &err), 0);
    assert_int_equal(count_rule(&result, "ternary.values"), 0);
    assert_int_equal(result.failed, 0);
    bcpm_check_result_free(&result);
    bcpm_ruleset_free(rs);
}

static void override_allowed_shards(void **state)
{
    struct bcpm_ruleset *rs = rules_with("checks:\n  - id: ternary.groups\n    severity: error\n"
                                         "    select: {roles: [ternary]}\n"
                                         "    params: {allowed_shards: [1]}\n");
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rs, "defect-two-scale-row/pytorch_model.bin", &options,
                                    &result, &err), 0);
    f = only_finding(&result, "ternary.groups");
    assert_int_equal(f->severity, BCPM_SEVERITY_ERROR);
    assert_non_null(strstr(f->message, "2 shards are not allowed"));
    assert_int_equal(result.failed, 1);
    bcpm_check_result_free(&result);
    bcpm_ruleset_free(rs);
}

/* Without the shipped allow-list, argparse.Namespace is an unknown global. */
static void override_namespace_needs_rule(void **state)
{
    struct bcpm_ruleset *rs;
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;
    char path[1200];

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_ruleset_new(&rs, &err), 0);
    snprintf(path, sizeof(path), "%s/rules/llama.yaml", getenv("BCPM_SOURCE"));
    assert_int_equal(bcpm_ruleset_add_file(rs, path, &err), 0);
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rs, "allowed-namespace/pytorch_model.bin", &options, &result,
                                    &err), 0);
    f = only_finding(&result, "security.unknown-global");
    assert_string_equal(f->tensor, "argparse.Namespace");
    bcpm_check_result_free(&result);
    bcpm_ruleset_free(rs);
}

static void options_config_path(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    struct bcpm_error err;
    char config[1200];

    (void)state;
    snprintf(config, sizeof(config), "%s/minicpm-pseudo-zip/config.json", check_dir);
    bcpm_check_options_init(&options);
    options.config_path = config;
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), 0);
    assert_string_equal(result.files[0].family, "minicpm");
    assert_string_equal(result.files[0].config_path, config);
    assert_int_equal(result.failed, 0);
    bcpm_check_result_free(&result);

    /* A config that names the wrong family turns every shape into a finding. */
    snprintf(config, sizeof(config), "%s/llama-pseudo-zip/config.json", check_dir);
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), 0);
    assert_string_equal(result.files[0].family, "llama");
    assert_true(count_rule(&result, "layout.shape") > 0);
    assert_int_equal(result.failed, 1);
    bcpm_check_result_free(&result);
}

static void options_config_errors(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    struct bcpm_error err;
    char path[] = "/tmp/bcpm-config-XXXXXX";
    FILE *f;
    int fd;

    (void)state;
    bcpm_check_options_init(&options);
    options.config_path = "/nonexistent/config.json";
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), BCPM_ERR_NOT_FOUND);
    bcpm_check_result_free(&result);

    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 64,,\n}\n", f);
    fclose(f);
    options.config_path = path;
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), BCPM_ERR_CORRUPT);
    assert_int_equal(err.line, 3);
    bcpm_check_result_free(&result);

    /* A model type no layout describes: a warning, and names checked by the closest layout. */
    f = fopen(path, "w");
    fputs("{\"model_type\": \"gpt2\", \"n_layer\": 2}\n", f);
    fclose(f);
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), 0);
    assert_int_equal(only_finding(&result, "layout.family")->severity, BCPM_SEVERITY_WARNING);
    assert_null(result.files[0].family);
    assert_int_equal(result.failed, 0);
    bcpm_check_result_free(&result);

    /*
     * A config without a field the layout needs: the error blames the config,
     * names the rule line that needs the field, and the result still records
     * which config and family the check used.
     */
    f = fopen(path, "w");
    fputs("{\"model_type\":\"llama\",\"hidden_size\":64}\n", f);
    fclose(f);
    assert_int_equal(run_check_with(rules, "llama-pseudo-zip/pytorch_model.bin", &options,
                                    &result, &err), BCPM_ERR_RULES);
    assert_string_equal(err.file, path);
    assert_int_equal(err.entry[0], '\0');
    assert_non_null(strstr(err.message, "config has no 'num_hidden_layers', which the llama "
                                        "layout needs ("));
    assert_non_null(strstr(err.message, "rules/llama.yaml:"));
    assert_string_equal(result.files[0].config_path, path);
    assert_string_equal(result.files[0].family, "llama");
    bcpm_check_result_free(&result);
    remove(path);
}

static void options_forced_family(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    options.family = "minicpm";
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), 0);
    assert_string_equal(result.files[0].family, "minicpm");
    bcpm_check_result_free(&result);

    options.family = "gpt2";
    assert_int_equal(run_check_with(rules, "noconfig-pseudo/pytorch_model.bin", &options, &result,
                                    &err), BCPM_ERR_USAGE);
    bcpm_check_result_free(&result);
}

/* A config with more layers than the file: one finding for the whole run of absent layers. */
static void layout_absent_layer_range(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;
    char path[] = "/tmp/bcpm-config-XXXXXX";
    FILE *out;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    out = fdopen(fd, "w");
    fputs("{\"model_type\": \"minicpm\", \"hidden_size\": 64, \"intermediate_size\": 128,"
          " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 256,"
          " \"num_hidden_layers\": 40}\n", out);
    fclose(out);
    bcpm_check_options_init(&options);
    options.config_path = path;
    assert_int_equal(run_check_with(rules, "minicpm-pseudo-zip/pytorch_model.bin", &options,
                                    &result, &err), 0);
    f = only_finding(&result, "layout.missing");
    assert_string_equal(f->tensor, "model.layers.2");
    assert_non_null(strstr(f->message, "layers 2 to 39 of 40 are missing (38 layers)"));
    assert_int_equal(result.findings.count, 1);
    bcpm_check_result_free(&result);
    remove(path);
}

/*
 * Without a config, a tensor of layer 999999 must not make the engine expect a
 * million layers: the count is capped at 100000, the absent layers below it
 * are one finding, and the tensor beyond it is unexpected.
 */
static void layout_huge_layer_index(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    const struct bcpm_finding *f;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rules, "noconfig-huge-layer-index/pytorch_model.bin",
                                    &options, &result, &err), 0);
    f = only_finding(&result, "layout.missing");
    assert_non_null(strstr(f->message, "layers 2 to 99999 of 100000 are missing"));
    f = only_finding(&result, "layout.unexpected");
    assert_string_equal(f->tensor, "model.layers.999999.input_layernorm.weight");
    assert_int_equal(result.findings.count, 2);
    bcpm_check_result_free(&result);
}

/* A stride-0 view of 2^40 elements stored in 2 bytes is reported, not read element by element. */
static void layout_overlapping_view(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    struct bcpm_error err;
    size_t overlap = 0;

    (void)state;
    bcpm_check_options_init(&options);
    assert_int_equal(run_check_with(rules, "hostile-broadcast/pytorch_model.bin", &options,
                                    &result, &err), 0);
    for (size_t i = 0; i < result.findings.count; i++) {
        const struct bcpm_finding *f = &result.findings.items[i];

        assert_string_equal(f->rule, "layout.shape");
        assert_string_equal(f->tensor, "model.layers.0.input_layernorm.weight");
        overlap += strstr(f->message, "makes 1099511627776 elements share 2 bytes") != NULL;
    }
    assert_int_equal(result.findings.count, 2);
    assert_int_equal(overlap, 1);
    bcpm_check_result_free(&result);
}

struct progress_log {
    uint64_t calls, last_done, last_total;
    int decreasing;
};

static void record_progress(void *ctx, uint64_t done, uint64_t total)
{
    struct progress_log *log = ctx;

    if (done < log->last_done)
        log->decreasing = 1;
    log->calls++;
    log->last_done = done;
    log->last_total = total;
}

/*
 * Progress reaches the total once per tensor, and a tied head (the same bytes
 * as the embedding in a torch.save file) gets the embedding's statistics.
 */
static void check_progress_and_tied_head(void **state)
{
    struct bcpm_check_options options;
    struct bcpm_check_result result;
    struct progress_log log = { 0, 0, 0, 0 };
    const struct bcpm_tensor_stats *head, *embedding;
    struct bcpm_error err;

    (void)state;
    bcpm_check_options_init(&options);
    options.progress = record_progress;
    options.progress_ctx = &log;
    options.threads = 1;
    assert_int_equal(run_check_with(rules, "minicpm-pseudo-zip/pytorch_model.bin", &options,
                                    &result, &err), 0);
    assert_int_equal(log.calls, result.ntensors);
    assert_int_equal(log.decreasing, 0);
    assert_true(log.last_total > 0);
    assert_int_equal(log.last_done, log.last_total);

    head = find_stats(&result, "lm_head.weight");
    embedding = find_stats(&result, "model.embed_tokens.weight");
    assert_non_null(head);
    assert_non_null(embedding);
    assert_int_equal(head->role, BCPM_ROLE_HEAD);
    assert_int_equal(embedding->role, BCPM_ROLE_EMBEDDING);
    assert_true(head->mean == embedding->mean);
    assert_true(head->std == embedding->std);
    assert_true(embedding->std > 0);
    bcpm_check_result_free(&result);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_good_models),
        cmocka_unit_test(check_planted_defects),
        cmocka_unit_test(check_nonternary_value),
        cmocka_unit_test(check_two_scale_row),
        cmocka_unit_test(check_zero3_message),
        cmocka_unit_test(check_shape_tie),
        cmocka_unit_test(check_nan_position),
        cmocka_unit_test(check_stage_assertions),
        cmocka_unit_test(check_damaged_rows),
        cmocka_unit_test(check_stage_finetuned),
        cmocka_unit_test(override_group_size),
        cmocka_unit_test(override_group_size_not_dividing),
        cmocka_unit_test(override_disable_check),
        cmocka_unit_test(override_allowed_shards),
        cmocka_unit_test(override_namespace_needs_rule),
        cmocka_unit_test(options_config_path),
        cmocka_unit_test(options_config_errors),
        cmocka_unit_test(options_forced_family),
        cmocka_unit_test(layout_absent_layer_range),
        cmocka_unit_test(layout_huge_layer_index),
        cmocka_unit_test(layout_overlapping_view),
        cmocka_unit_test(check_progress_and_tied_head),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
