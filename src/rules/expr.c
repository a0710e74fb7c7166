/* Recursive-descent evaluator for shape expressions; see expr.h. */
#include "rules/expr.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* An identifier longer than this is no config field name. */
#define IDENT_MAX 128

struct parser {
    const char *text;
    const char *p;
    bcpm_expr_lookup lookup; /* NULL: syntax check only */
    void *ctx;
    int depth;
    char *reason;
    size_t reason_size;
    int failed;
};

static int fail(struct parser *ps, const char *fmt, const char *detail)
{
    if (!ps->failed) {
        char reason[256];

        snprintf(reason, sizeof(reason), fmt, detail);
        snprintf(ps->reason, ps->reason_size, "%s in expression '%s' at character %d", reason,
                 ps->text, (int)(ps->p - ps->text) + 1);
        ps->failed = 1;
    }
    return -1;
}

static void skip_space(struct parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t')
        ps->p++;
}

static int parse_expr(struct parser *ps, int64_t *out);

static int parse_number(struct parser *ps, int64_t *out)
{
    int64_t v = 0;

    while (isdigit((unsigned char)*ps->p)) {
        int digit = *ps->p - '0';

        if (v > (INT64_MAX - digit) / 10)
            return fail(ps, "integer %s too large", "literal");
        v = v * 10 + digit;
        ps->p++;
    }
    *out = v;
    return 0;
}

static int parse_identifier(struct parser *ps, int64_t *out)
{
    const char *start = ps->p;
    char name[IDENT_MAX + 1];
    size_t n = 0;
    char reason[256] = "";
    int rc;

    while (isalnum((unsigned char)*ps->p) || *ps->p == '_') {
        if (n == IDENT_MAX)
            return fail(ps, "identifier longer than %s characters", "128");
        name[n++] = *ps->p++;
    }
    name[n] = '\0';

    if (strcmp(name, "true") == 0 || strcmp(name, "false") == 0) {
        *out = name[0] == 't';
        return 0;
    }
    if (!ps->lookup) {
        *out = 1;
        return 0;
    }
    rc = ps->lookup(ps->ctx, name, out, reason, sizeof(reason));

    /* A name that cannot be resolved is pointed at by its first character. */
    if (rc != 0)
        ps->p = start;
    if (rc == 1)
        return fail(ps, "unknown identifier '%s'", name);
    if (rc != 0)
        return fail(ps, "%s", reason);
    return 0;
}

static int parse_factor(struct parser *ps, int64_t *out)
{
    skip_space(ps);
    if (++ps->depth > BCPM_EXPR_MAX_DEPTH)
        return fail(ps, "nesting deeper than %s levels", "32");

    if (*ps->p == '-') {
        ps->p++;
        if (parse_factor(ps, out) != 0)
            return -1;
        if (*out == INT64_MIN)
            return fail(ps, "integer %s", "overflow");
        *out = -*out;
    } else if (*ps->p == '(') {
        ps->p++;
        if (parse_expr(ps, out) != 0)
            return -1;
        skip_space(ps);
        if (*ps->p != ')')
            return fail(ps, "expected %s", "')'");
        ps->p++;
    } else if (isdigit((unsigned char)*ps->p)) {
        if (parse_number(ps, out) != 0)
            return -1;
    } else if (isalpha((unsigned char)*ps->p) || *ps->p == '_') {
        if (parse_identifier(ps, out) != 0)
            return -1;
    } else {
        return fail(ps, "expected a number, a field name or '(', found %s",
                    *ps->p ? "another character" : "the end");
    }

    ps->depth--;
    return 0;
}

static int multiply(struct parser *ps, int64_t a, int64_t b, int64_t *out)
{
    if (!ps->lookup) {
        *out = 1;
        return 0;
    }
    if (a != 0 && b != 0) {
        int64_t limit_a = a < 0 ? -a : a, limit_b = b < 0 ? -b : b;

        if (a == INT64_MIN || b == INT64_MIN || limit_a > INT64_MAX / limit_b)
            return fail(ps, "integer %s", "overflow");
    }
    *out = a * b;
    return 0;
}

static int divide(struct parser *ps, int64_t a, int64_t b, int64_t *out)
{
    char detail[96];

    if (!ps->lookup) {
        *out = 1;
        return 0;
    }
    if (b == 0)
        return fail(ps, "division by %s", "zero");
    if (a == INT64_MIN && b == -1)
        return fail(ps, "integer %s", "overflow");
    if (a % b != 0) {
        snprintf(detail, sizeof(detail), "%" PRId64 " / %" PRId64, a, b);
        return fail(ps, "%s is not a whole number", detail);
    }
    *out = a / b;
    return 0;
}

static int parse_term(struct parser *ps, int64_t *out)
{
    int64_t rhs;

    if (parse_factor(ps, out) != 0)
        return -1;
    for (;;) {
        char op;

        skip_space(ps);
        op = *ps->p;
        if (op != '*' && op != '/')
            return 0;
        ps->p++;
        if (parse_factor(ps, &rhs) != 0)
            return -1;
        if ((op == '*' ? multiply(ps, *out, rhs, out) : divide(ps, *out, rhs, out)) != 0)
            return -1;
    }
}

static int parse_expr(struct parser *ps, int64_t *out)
{
    int64_t rhs;

    if (parse_term(ps, out) != 0)
        return -1;
    for (;;) {
        char op;

        skip_space(ps);
        op = *ps->p;
        if (op != '+' && op != '-')
            return 0;
        ps->p++;
        if (parse_term(ps, &rhs) != 0)
            return -1;
        if (!ps->lookup)
            continue;
        if (op == '-') {
            if (rhs == INT64_MIN)
                return fail(ps, "integer %s", "overflow");
            rhs = -rhs;
        }
        if ((rhs > 0 && *out > INT64_MAX - rhs) || (rhs < 0 && *out < INT64_MIN - rhs))
            return fail(ps, "integer %s", "overflow");
        *out += rhs;
    }
}

int bcpm_expr_eval(const char *text, bcpm_expr_lookup lookup, void *ctx, int64_t *value,
                   char *reason, size_t reason_size)
{
    struct parser ps = { text, text, lookup, ctx, 0, reason, reason_size, 0 };
    int64_t v;

    if (parse_expr(&ps, &v) != 0)
        return -1;
    skip_space(&ps);
    if (*ps.p != '\0')
        return fail(&ps, "unexpected %s after the expression", "text");
    *value = v;
    return 0;
}
