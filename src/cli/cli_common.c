/* Command-line plumbing shared by the bitcpm commands; see cli_common.h. */
#include "cli/cli_common.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_error(const char *program, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_usage_error(const char *program, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", program);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", program);
    return CLI_EXIT_FAILED;
}

/* Build getopt_long's tables from ours; long_options has count + 1 entries. */
static void build_getopt_tables(const struct cli_option *table, size_t count,
                                struct option *long_options, char *short_options)
{
    size_t used = 0;

    /* A leading ':' makes getopt report a missing value as ':' instead of '?'. */
    short_options[used++] = ':';
    for (size_t i = 0; i < count; i++) {
        long_options[i].name = table[i].name;
        long_options[i].has_arg = table[i].arg ? required_argument : no_argument;
        long_options[i].flag = NULL;
        long_options[i].val = table[i].code;
        if (table[i].code < CLI_LONG_ONLY) {
            short_options[used++] = (char)table[i].code;
            if (table[i].arg)
                short_options[used++] = ':';
        }
    }
    memset(&long_options[count], 0, sizeof(long_options[count]));
    short_options[used] = '\0';
}

/*
 * The usage error for getopt's '?': an unknown long option, a value given to
 * a flag ("--quiet=1"), or an unknown short letter (optopt).
 */
static int report_bad_option(const char *program, const char *word)
{
    if (strncmp(word, "--", 2) == 0 && strchr(word, '=') && optopt != 0)
        return cli_usage_error(program, "option '%.*s' takes no value",
                               (int)(strchr(word, '=') - word), word);
    if (strncmp(word, "--", 2) == 0)
        return cli_usage_error(program, "unknown option '%s'", word);
    return cli_usage_error(program, "unknown option '-%c'", optopt);
}

int cli_parse(const char *program, const struct cli_option *table, size_t count, int argc,
              char **argv, int (*handle)(void *ctx, int code, const char *value), void *ctx,
              int *first_operand)
{
    struct option *long_options = calloc(count + 1, sizeof(*long_options));
    char *short_options = malloc(2 * count + 2);
    int rc = CLI_CONTINUE;

    if (!long_options || !short_options) {
        free(long_options);
        free(short_options);
        cli_error(program, "out of memory");
        return CLI_EXIT_FAILED;
    }
    build_getopt_tables(table, count, long_options, short_options);

    opterr = 0;
    optind = 1;
    while (rc == CLI_CONTINUE) {
        int c = getopt_long(argc, argv, short_options, long_options, NULL);

        if (c == -1)
            break;
        if (c == ':')
            rc = cli_usage_error(program, "option '%s' requires a value", argv[optind - 1]);
        else if (c == '?')
            rc = report_bad_option(program, argv[optind - 1]);
        else
            rc = handle(ctx, c, optarg);
    }

    free(long_options);
    free(short_options);
    *first_operand = optind;
    return rc;
}

void cli_print_options(FILE *out, const struct cli_option *table, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char left[64];
        const char *arg = table[i].arg;

        if (table[i].code < CLI_LONG_ONLY)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", table[i].code, table[i].name,
                     arg ? " " : "", arg ? arg : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", table[i].name, arg ? " " : "",
                     arg ? arg : "");

        /* Long left columns get the help text on the next line instead of a ragged table. */
        if (strlen(left) > 24)
            fprintf(out, "  %s\n  %-24s %s\n", left, "", table[i].help);
        else
            fprintf(out, "  %-24s %s\n", left, table[i].help);
    }
}

int cli_parse_int64(const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    long long value;

    if (!text || !*text)
        return -1;
    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return -1;
    *out = (int64_t)value;
    return 0;
}

int cli_parse_double(const char *text, double *out)
{
    char *end;
    double value;

    if (!text || !*text)
        return -1;
    errno = 0;
    value = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(value))
        return -1;
    *out = value;
    return 0;
}

int cli_color_from_name(const char *name, enum cli_color *out)
{
    if (strcmp(name, "auto") == 0)
        *out = CLI_COLOR_AUTO;
    else if (strcmp(name, "always") == 0)
        *out = CLI_COLOR_ALWAYS;
    else if (strcmp(name, "never") == 0)
        *out = CLI_COLOR_NEVER;
    else
        return -1;
    return 0;
}

int cli_color_enabled(enum cli_color mode, FILE *stream)
{
    const char *no_color = getenv("NO_COLOR");
    const char *term = getenv("TERM");

    if (mode == CLI_COLOR_NEVER)
        return 0;
    if (mode == CLI_COLOR_ALWAYS)
        return 1;
    if (no_color && *no_color)
        return 0;
    if (term && strcmp(term, "dumb") == 0)
        return 0;
    return isatty(fileno(stream));
}

int cli_close_stdout(const char *program)
{
    int failed = fflush(stdout) != 0 || ferror(stdout);
    int saved = errno;

    if (fclose(stdout) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        cli_error(program, "writing to standard output failed: %s",
                  saved ? strerror(saved) : "write error");
        return CLI_EXIT_FAILED;
    }
    return 0;
}
