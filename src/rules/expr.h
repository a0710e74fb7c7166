/*
 * Integer shape expressions over config.json fields, as rule files write
 * them: "num_attention_heads * head_dim". The grammar is
 *
 *     expr   := term (('+' | '-') term)*
 *     term   := factor (('*' | '/') factor)*
 *     factor := INTEGER | IDENTIFIER | '(' expr ')' | '-' factor
 *
 * with 64-bit signed arithmetic. Division must be exact: a shape such as
 * hidden_size / num_attention_heads that leaves a remainder means the config
 * is inconsistent, so it is an error rather than a silent truncation. The
 * identifiers true and false are 1 and 0. Overflow, division by zero and
 * nesting deeper than BCPM_EXPR_MAX_DEPTH are errors.
 */
#ifndef BCPM_RULES_EXPR_H
#define BCPM_RULES_EXPR_H

#include <stddef.h>
#include <stdint.h>

/* Parentheses and unary minus nest at most this deep; rule files never need more. */
#define BCPM_EXPR_MAX_DEPTH 32

/*
 * Resolves an identifier. Returns 0 and stores its value, 1 when the name is
 * unknown, or -1 after writing a message to reason (an invalid config value).
 */
typedef int (*bcpm_expr_lookup)(void *ctx, const char *name, int64_t *value, char *reason,
                                size_t reason_size);

/*
 * Evaluate text. Returns 0 and stores the value, or -1 with a message in reason
 * (the reason and the offending part of text). lookup may be NULL to check
 * the syntax only: every identifier then counts as 1.
 */
int bcpm_expr_eval(const char *text, bcpm_expr_lookup lookup, void *ctx, int64_t *value,
                   char *reason, size_t reason_size);

#endif
