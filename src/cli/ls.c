/*
 * bitcpm-ls: list the tensor catalog of checkpoints (torch zip or legacy,
 * safetensors, shard indexes, model folders) as a table or as JSON.
 * Usage, output and exit codes are in man/bitcpm-ls.1.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ls.h"

#define PROGRAM "bitcpm-ls"

/* Exit codes shared by every bitcpm command. */
enum exit_code {
    EXIT_LISTED = 0,   /* every path was listed, no security finding */
    EXIT_FINDINGS = 1, /* a path raised a security finding */
    EXIT_FAILED = 2,   /* usage error, or a path could not be read */
};

enum output_format { FORMAT_TABLE, FORMAT_JSON };

struct settings {
    enum output_format format;
    int keep_prefix;
};

/* Option codes for long options without a short letter start above any char. */
enum { OPT_KEEP_PREFIX = 256 };

/* One table drives getopt_long and --help. */
static const struct {
    const char *name;
    int code;
    int has_arg;
    const char *arg;
    const char *help;
} option_table[] = {
    {"format", 'f', required_argument, "FORMAT", "output format: table (default) or json"},
    {"keep-prefix", OPT_KEEP_PREFIX, no_argument, NULL,
     "list names as stored, without stripping the \"module.\" prefix"},
    {"help", 'h', no_argument, NULL, "print this help and exit"},
    {"version", 'V', no_argument, NULL, "print the version and exit"},
};

#define OPTION_COUNT (sizeof(option_table) / sizeof(option_table[0]))

static void print_help(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [OPTION]... PATH...\n"
            "List the tensors of checkpoints: a PyTorch .bin/.pt file (zip or legacy),\n"
            "a .safetensors file, a *.index.json shard index, or a model folder.\n\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char left[64];

        if (option_table[i].code < 256)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", option_table[i].code,
                     option_table[i].name, option_table[i].arg ? " " : "",
                     option_table[i].arg ? option_table[i].arg : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", option_table[i].name,
                     option_table[i].arg ? " " : "",
                     option_table[i].arg ? option_table[i].arg : "");
        fprintf(out, "  %-22s %s\n", left, option_table[i].help);
    }
    fprintf(out,
            "\nExit status: 0 listed, 1 a security finding (printed on stderr),\n"
            "2 usage error or a path that could not be read.\n");
}

static int usage_error(const char *fmt, const char *value)
{
    fprintf(stderr, PROGRAM ": ");
    fprintf(stderr, fmt, value);
    fprintf(stderr, "\nTry '" PROGRAM " --help' for more information.\n");
    return EXIT_FAILED;
}

/* Parse argv into settings; returns -1 to go on, else the exit code to stop with. */
static int parse_options(int argc, char **argv, struct settings *settings)
{
    struct option long_options[OPTION_COUNT + 1];
    char short_options[2 * OPTION_COUNT + 2] = ":";
    size_t used = 1;

    for (size_t i = 0; i < OPTION_COUNT; i++) {
        long_options[i].name = option_table[i].name;
        long_options[i].has_arg = option_table[i].has_arg;
        long_options[i].flag = NULL;
        long_options[i].val = option_table[i].code;
        if (option_table[i].code < 256) {
            short_options[used++] = (char)option_table[i].code;
            if (option_table[i].has_arg == required_argument)
                short_options[used++] = ':';
        }
    }
    memset(&long_options[OPTION_COUNT], 0, sizeof(long_options[0]));
    short_options[used] = '\0';

    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, short_options, long_options, NULL);

        if (c == -1)
            break;
        switch (c) {
        case 'f':
            if (strcmp(optarg, "table") == 0)
                settings->format = FORMAT_TABLE;
            else if (strcmp(optarg, "json") == 0)
                settings->format = FORMAT_JSON;
            else
                return usage_error("invalid --format '%s': expected table or json", optarg);
            break;
        case OPT_KEEP_PREFIX:
            settings->keep_prefix = 1;
            break;
        case 'h':
            print_help(stdout);
            return EXIT_LISTED;
        case 'V':
            printf(PROGRAM " " BCPM_VERSION "\n");
            return EXIT_LISTED;
        case ':':
            return usage_error("option '%s' requires an argument", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "missing PATH: name a checkpoint file, index or folder");
    return -1;
}

/* One line per finding: "bitcpm-ls: FILE: RULE: 'ENTRY' at offset N: MESSAGE". */
static void print_findings(const struct bcpm_catalog *catalog)
{
    for (size_t i = 0; i < catalog->findings.count; i++) {
        const struct bcpm_finding *f = &catalog->findings.items[i];

        fprintf(stderr, PROGRAM ": %s: %s: ", f->file ? f->file : catalog->path, f->rule);
        if (f->tensor)
            fprintf(stderr, "'%s'", f->tensor);
        if (f->has_offset)
            fprintf(stderr, "%sat offset %llu", f->tensor ? " " : "",
                    (unsigned long long)f->offset);
        if (f->tensor || f->has_offset)
            fputs(": ", stderr);
        fprintf(stderr, "%s\n", f->message ? f->message : "");
    }
}

/* Only security findings change the exit code; format warnings are shown but do not. */
static int has_security_finding(const struct bcpm_catalog *catalog)
{
    for (size_t i = 0; i < catalog->findings.count; i++) {
        if (strncmp(catalog->findings.items[i].rule, "security.", 9) == 0)
            return 1;
    }
    return 0;
}

/*
 * Open and list one path. In JSON mode the listing object is appended to
 * json_list and printed later; a table goes to stdout at once. Returns an
 * exit code.
 */
static int list_path(const char *path, const struct settings *settings, int show_heading,
                     json_t *json_list)
{
    struct bcpm_open_options options = {0};
    struct bcpm_catalog *catalog;
    struct ls_sharing sharing;
    struct bcpm_error err;
    char message[2 * BCPM_ERROR_TEXT_MAX];
    int rc;

    bcpm_error_clear(&err);
    options.keep_prefix = settings->keep_prefix;
    rc = bcpm_catalog_open(&catalog, path, &options, &err);
    if (rc != 0) {
        bcpm_error_file(&err, path);
        fprintf(stderr, PROGRAM ": %s\n", bcpm_error_format(&err, message, sizeof(message)));
        return EXIT_FAILED;
    }
    if (ls_sharing_build(&sharing, catalog) != 0) {
        fprintf(stderr, PROGRAM ": %s: out of memory\n", path);
        bcpm_catalog_free(catalog);
        return EXIT_FAILED;
    }

    rc = EXIT_LISTED;
    if (settings->format == FORMAT_JSON) {
        json_t *object = ls_catalog_json(catalog, &sharing);

        if (!object || json_array_append_new(json_list, object) != 0) {
            fprintf(stderr, PROGRAM ": %s: out of memory\n", path);
            rc = EXIT_FAILED;
        }
    } else {
        if (show_heading)
            printf("%s:\n", path);
        if (ls_print_table(stdout, catalog, &sharing) != 0) {
            fprintf(stderr, PROGRAM ": %s: out of memory\n", path);
            rc = EXIT_FAILED;
        }
    }

    print_findings(catalog);
    if (rc == EXIT_LISTED && has_security_finding(catalog))
        rc = EXIT_FINDINGS;
    ls_sharing_free(&sharing);
    bcpm_catalog_free(catalog);
    return rc;
}

/* Print value on one line with ", " and ": " separators. */
static int print_inline(const json_t *value)
{
    return json_dumpf(value, stdout, JSON_INDENT(0) | JSON_PRESERVE_ORDER);
}

/* Print a member array with one element per line, so that each tensor is one greppable line. */
static int print_member_array(const char *key, const json_t *array, const char *indent,
                              int last)
{
    size_t count = json_array_size(array);

    printf("%s  \"%s\": [", indent, key);
    for (size_t i = 0; i < count; i++) {
        printf("%s\n%s    ", i ? "," : "", indent);
        if (print_inline(json_array_get(array, i)) != 0)
            return -1;
    }
    if (count)
        printf("\n%s  ", indent);
    printf("]%s\n", last ? "" : ",");
    return 0;
}

static int print_listing(const json_t *listing, const char *indent)
{
    printf("%s{\n%s  \"files\": ", indent, indent);
    if (print_inline(json_object_get(listing, "files")) != 0)
        return -1;
    printf(",\n");
    if (print_member_array("tensors", json_object_get(listing, "tensors"), indent, 0) != 0 ||
        print_member_array("findings", json_object_get(listing, "findings"), indent, 1) != 0)
        return -1;
    printf("%s}", indent);
    return 0;
}

/*
 * Print the listings: the object alone for a single PATH, else an array of
 * objects in argument order (paths that failed are left out). The layout is
 * fixed here (one tensor per line), the values are written by jansson.
 */
static int print_json(json_t *list, int as_array)
{
    size_t count = json_array_size(list);

    if (!as_array) {
        if (print_listing(json_array_get(list, 0), "") != 0)
            return -1;
    } else {
        printf("[\n");
        for (size_t i = 0; i < count; i++) {
            if (print_listing(json_array_get(list, i), "  ") != 0)
                return -1;
            printf("%s\n", i + 1 < count ? "," : "");
        }
        printf("]");
    }
    return putchar('\n') == EOF ? -1 : 0;
}

/* Worse results win: a failure over a finding over a clean listing. */
static int worse(int a, int b)
{
    return a > b ? a : b;
}

/* Return status, or EXIT_FAILED when stdout could not be written in full. */
static int finish_stdout(int status)
{
    /* A full disk or a closed pipe must not pass for a complete listing. */
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
        fprintf(stderr, PROGRAM ": cannot write standard output: %s\n", strerror(errno));
        return EXIT_FAILED;
    }
    return status;
}

int main(int argc, char **argv)
{
    struct settings settings = {FORMAT_TABLE, 0};
    json_t *json_list = NULL;
    int status = EXIT_LISTED;
    int several, rc = parse_options(argc, argv, &settings);

    if (rc >= 0)
        return rc == EXIT_LISTED ? finish_stdout(rc) : rc;
    several = argc - optind > 1;

    if (settings.format == FORMAT_JSON) {
        json_list = json_array();
        if (!json_list) {
            fprintf(stderr, PROGRAM ": out of memory\n");
            return EXIT_FAILED;
        }
    }
    for (int i = optind; i < argc; i++) {
        if (settings.format == FORMAT_TABLE && i > optind)
            putchar('\n');
        status = worse(status, list_path(argv[i], &settings, several, json_list));
    }
    if (json_list && (several || json_array_size(json_list) > 0) &&
        print_json(json_list, several) != 0)
        status = worse(status, EXIT_FAILED);
    json_decref(json_list);

    return finish_stdout(status);
}
