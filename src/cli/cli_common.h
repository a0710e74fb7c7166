/*
 * Command-line plumbing shared by the bitcpm commands: a table-driven option
 * parser over getopt_long that also prints --help, the message helpers
 * (every line carries the program name, misuse adds a pointer to --help),
 * number parsing with range checks, the colour decision, and the final check
 * that stdout was written and closed.
 */
#ifndef BCPM_CLI_COMMON_H
#define BCPM_CLI_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes shared by every bitcpm command. */
enum cli_exit {
    CLI_EXIT_OK = 0,        /* ran, nothing at or above the threshold */
    CLI_EXIT_FINDINGS = 1,  /* ran, something at or above the threshold */
    CLI_EXIT_FAILED = 2,    /* could not run: usage, I/O, unreadable input */
};

/* Return value of option handlers that lets parsing go on. */
#define CLI_CONTINUE (-1)

/* Option codes without a short letter start here, above every char. */
#define CLI_LONG_ONLY 256

/* One option: the table drives parsing and --help. */
struct cli_option {
    const char *name;      /* long name without the leading "--" */
    int code;              /* the short letter, or CLI_LONG_ONLY + n */
    const char *arg;       /* value placeholder ("FILE"), or NULL for a flag */
    const char *help;      /* one line; the default in brackets where there is one */
};

/*
 * Parse argv with table. For each option handle(ctx, code, value) is called
 * (value NULL for flags) and returns CLI_CONTINUE or an exit code that stops
 * parsing. Options and operands may be mixed; "--" ends the options. Returns
 * CLI_CONTINUE with *first_operand set to the index of the first operand in
 * the permuted argv, or an exit code: CLI_EXIT_FAILED after printing a usage
 * error, or whatever a handler returned.
 */
int cli_parse(const char *program, const struct cli_option *table, size_t count, int argc,
              char **argv, int (*handle)(void *ctx, int code, const char *value), void *ctx,
              int *first_operand);

/* Print the option list of table, two columns, for --help. */
void cli_print_options(FILE *out, const struct cli_option *table, size_t count);

/* Print "program: message" on stderr. */
void cli_error(const char *program, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * Print "program: message" and a pointer to --help on stderr, and return
 * CLI_EXIT_FAILED.
 */
int cli_usage_error(const char *program, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/*
 * Parse a whole decimal integer in [min, max] into *out. Returns 0, or -1 for
 * text that is empty, has trailing characters or lies outside the range.
 */
int cli_parse_int64(const char *text, int64_t min, int64_t max, int64_t *out);

/* Parse a whole finite floating-point number into *out; 0 or -1. */
int cli_parse_double(const char *text, double *out);

enum cli_color { CLI_COLOR_AUTO, CLI_COLOR_ALWAYS, CLI_COLOR_NEVER };

/* Parse "auto", "always" or "never"; 0 or -1. */
int cli_color_from_name(const char *name, enum cli_color *out);

/*
 * Whether to write colour to stream. never: no. always: yes, an explicit
 * request that also overrides NO_COLOR. auto: only when stream is a terminal,
 * NO_COLOR is unset or empty, and TERM is not "dumb".
 */
int cli_color_enabled(enum cli_color mode, FILE *stream);

/*
 * Flush and close stdout. A failed write (a full disk, a closed pipe) must
 * not pass unnoticed, because scripts read the output. Returns 0, or prints
 * why on stderr and returns CLI_EXIT_FAILED.
 */
int cli_close_stdout(const char *program);

#endif
