/* Shape expressions: arithmetic, identifiers, and the errors a rule file can hit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rules/expr.h"

/* A config with hidden_size 2048 and num_attention_heads 16, and a field that is invalid. */
static int lookup(void *ctx, const char *name, int64_t *value, char *reason, size_t reason_size)
{
    (void)ctx;
    if (strcmp(name, "hidden_size") == 0) {
        *value = 2048;
        return 0;
    }
    if (strcmp(name, "num_attention_heads") == 0) {
        *value = 16;
        return 0;
    }
    if (strcmp(name, "rope_theta") == 0) {
        strncpy(reason, "config field 'rope_theta' is 10000.5, expected an integer", reason_size);
        return -1;
    }
    return 1;
}

static int64_t eval_ok(const char *text)
{
    char reason[512] = "";
    int64_t v = -12345;

    assert_int_equal(bcpm_expr_eval(text, lookup, NULL, &v, reason, sizeof(reason)), 0);
    return v;
}

static const char *eval_fail(const char *text)
{
    static char reason[512];
    int64_t v;

    reason[0] = '\0';
    assert_int_equal(bcpm_expr_eval(text, lookup, NULL, &v, reason, sizeof(reason)), -1);
    return reason;
}

static int ends_with(const char *text, const char *suffix)
{
    size_t n = strlen(text), m = strlen(suffix);

    return n >= m && strcmp(text + n - m, suffix) == 0;
}

static void expr_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(eval_ok("7"), 7);
    assert_int_equal(eval_ok("2 + 3 * 4"), 14);
    assert_int_equal(eval_ok("(2 + 3) * 4"), 20);
    assert_int_equal(eval_ok("10 - 4 - 3"), 3);
    assert_int_equal(eval_ok("-3 + 5"), 2);
    assert_int_equal(eval_ok("100 / 10 / 5"), 2);
    assert_int_equal(eval_ok("true"), 1);
    assert_int_equal(eval_ok("false"), 0);
}

static void expr_identifiers(void **state)
{
    (void)state;
    assert_int_equal(eval_ok("hidden_size / num_attention_heads"), 128);
    assert_int_equal(eval_ok("num_attention_heads * (hidden_size / num_attention_heads)"), 2048);
}

static void expr_unknown_identifier(void **state)
{
    (void)state;
    assert_non_null(strstr(eval_fail("hidden_size * head_dimm"), "unknown identifier 'head_dimm'"));
    /* The position is the name's first character, counted from 1, not the one after it. */
    assert_true(ends_with(eval_fail("hidden_size * head_dimm"), "at character 15"));
    assert_true(ends_with(eval_fail("num_hidden_layers"), "at character 1"));
    assert_true(ends_with(eval_fail("rope_theta + 1"), "at character 1"));
}

static void expr_invalid_config_value(void **state)
{
    (void)state;
    assert_non_null(strstr(eval_fail("rope_theta + 1"), "10000.5, expected an integer"));
}

static void expr_division_errors(void **state)
{
    (void)state;
    assert_non_null(strstr(eval_fail("hidden_size / 0"), "division by zero"));
    assert_non_null(strstr(eval_fail("hidden_size / 3"), "2048 / 3 is not a whole number"));
}

static void expr_syntax_errors(void **state)
{
    (void)state;
    assert_non_null(strstr(eval_fail("(1 + 2"), "expected ')'"));
    assert_non_null(strstr(eval_fail("1 +"), "expected a number"));
    assert_non_null(strstr(eval_fail("1 2"), "unexpected text"));
    assert_non_null(strstr(eval_fail(""), "expected a number"));
    assert_non_null(strstr(eval_fail("hidden_size % 2"), "unexpected text"));
}

static void expr_overflow(void **state)
{
    (void)state;
    assert_non_null(strstr(eval_fail("9223372036854775807 + 1"), "overflow"));
    assert_non_null(strstr(eval_fail("4294967296 * 4294967296"), "overflow"));
    assert_non_null(strstr(eval_fail("99999999999999999999"), "too large"));
}

static void expr_depth_cap(void **state)
{
    char text[256];

    (void)state;
    memset(text, '(', 40);
    strcpy(text + 40, "1");
    memset(text + 41, ')', 40);
    text[81] = '\0';
    assert_non_null(strstr(eval_fail(text), "nesting deeper than 32"));
    memset(text, '-', 100);
    strcpy(text + 100, "1");
    assert_non_null(strstr(eval_fail(text), "nesting deeper than 32"));
}

static void expr_syntax_only(void **state)
{
    char reason[256];
    int64_t v;

    (void)state;
    /* Without a lookup identifiers are 1 and arithmetic is not checked, so this is valid syntax. */
    assert_int_equal(bcpm_expr_eval("a / (b - 1)", NULL, NULL, &v, reason, sizeof(reason)), 0);
    assert_int_equal(bcpm_expr_eval("a / (b - ", NULL, NULL, &v, reason, sizeof(reason)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expr_arithmetic),
        cmocka_unit_test(expr_identifiers),
        cmocka_unit_test(expr_unknown_identifier),
        cmocka_unit_test(expr_invalid_config_value),
        cmocka_unit_test(expr_division_errors),
        cmocka_unit_test(expr_syntax_errors),
        cmocka_unit_test(expr_overflow),
        cmocka_unit_test(expr_depth_cap),
        cmocka_unit_test(expr_syntax_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
