/*
 * The shipped layouts over the configs of the four released sizes: the
 * expected tensor names and shapes must equal the ones the model cards give
 * (fixtures/check/configs/expected.json, written by tools/gen_check_fixtures.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rules/check.h"
#include "rules_test_setup.h"

static struct bcpm_ruleset *rules;
static json_t *expected;
static char configs_dir[1024];

static int setup(void **state)
{
    (void)state;
    return rules_test_setup("check/configs", "expected.json", configs_dir, sizeof(configs_dir), &rules,
                            &expected);
}

static int teardown(void **state)
{
    (void)state;
    bcpm_ruleset_free(rules);
    json_decref(expected);
    return 0;
}

static void check_size(const char *size)
{
    json_t *entry = json_object_get(expected, size), *shapes, *want;
    struct layout_expansion x;
    struct bcpm_error err;
    char path[1200], text[2048];
    const char *name;
    int rc;

    assert_non_null(entry);
    snprintf(path, sizeof(path), "%s/%s", configs_dir,
             json_string_value(json_object_get(entry, "config")));
    bcpm_error_clear(&err);
    rc = layout_expand(rules, path, &x, &err);
    if (rc != 0)
        print_error("%s\n", bcpm_error_format(&err, text, sizeof(text)));
    assert_int_equal(rc, 0);

    assert_string_equal(x.layout->family, json_string_value(json_object_get(entry, "family")));
    assert_int_equal(x.layers, json_integer_value(json_object_get(entry, "layers")));
    assert_int_equal(x.tied, json_is_true(json_object_get(entry, "tied")));

    /* Same set of names, and each shape equal to the model card's. */
    shapes = json_object_get(entry, "shapes");
    assert_int_equal(x.count, json_object_size(shapes));
    for (size_t i = 0; i < x.count; i++) {
        want = json_object_get(shapes, x.tensors[i].name);
        if (!want)
            print_error("%s: unexpected tensor %s\n", size, x.tensors[i].name);
        assert_non_null(want);
        assert_int_equal(x.tensors[i].ndim, json_array_size(want));
        for (int d = 0; d < x.tensors[i].ndim; d++)
            assert_int_equal(x.tensors[i].shape[d], json_integer_value(json_array_get(want, d)));
    }
    json_object_foreach(shapes, name, want) {
        int found = 0;

        for (size_t i = 0; i < x.count && !found; i++)
            found = strcmp(x.tensors[i].name, name) == 0;
        assert_true(found);
    }
    layout_expansion_free(&x);
}

static void layout_size_0_5b(void **state)
{
    (void)state;
    check_size("0.5b");
}

static void layout_size_1b(void **state)
{
    (void)state;
    check_size("1b");
}

static void layout_size_3b(void **state)
{
    (void)state;
    check_size("3b");
}

static void layout_size_8b(void **state)
{
    (void)state;
    check_size("8b");
}

/*
 * A config missing a field that no default covers is blamed on the config:
 * the error names the config, and its message the field, rule file and line.
 */
static void layout_unknown_field(void **state)
{
    struct layout_expansion x;
    struct bcpm_error err;
    char path[] = "/tmp/bcpm-config-XXXXXX";
    FILE *f;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_attention_heads\": 4,"
          " \"intermediate_size\": 128, \"num_hidden_layers\": 1}\n", f);
    fclose(f);
    bcpm_error_clear(&err);
    assert_int_equal(layout_expand(rules, path, &x, &err), BCPM_ERR_RULES);
    assert_string_equal(err.file, path);
    assert_non_null(strstr(err.message, "config has no 'vocab_size', which the llama layout "
                                        "needs ("));
    assert_non_null(strstr(err.message, "llama.yaml:"));
    assert_int_equal(err.line, 0);
    assert_int_equal(err.entry[0], '\0');
    remove(path);
}

/* hidden_size 100 with 3 heads has no whole head dimension. */
static void layout_inexact_head_dim(void **state)
{
    struct layout_expansion x;
    struct bcpm_error err;
    char path[] = "/tmp/bcpm-config-XXXXXX";
    FILE *f;
    int fd;

    (void)state;
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("{\"model_type\": \"minicpm\", \"hidden_size\": 100, \"num_attention_heads\": 3,"
          " \"intermediate_size\": 128, \"num_hidden_layers\": 1, \"vocab_size\": 8}\n", f);
    fclose(f);
    bcpm_error_clear(&err);
    assert_int_equal(layout_expand(rules, path, &x, &err), BCPM_ERR_RULES);
    assert_non_null(strstr(err.message, "100 / 3 is not a whole number"));
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(layout_size_0_5b),
        cmocka_unit_test(layout_size_1b),
        cmocka_unit_test(layout_size_3b),
        cmocka_unit_test(layout_size_8b),
        cmocka_unit_test(layout_unknown_field),
        cmocka_unit_test(layout_inexact_head_dim),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
