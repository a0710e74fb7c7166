/*
 * bitcpm-audit: query and verify the audit database that bitcpm-check writes
 * (history, show, compare, export, verify). The queries live in src/audit/;
 * this file parses the command line and formats their results as text, JSON
 * or CSV. See man/bitcpm-audit.1.
 *
 * Exit codes: 0 done; 1 verify found a broken chain, or compare found added
 * or removed findings; 2 could not run (usage, missing or unreadable
 * database, unknown run).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

#define PROGRAM "bitcpm-audit"

enum exit_code { EXIT_DONE = 0, EXIT_DIFFERENT = 1, EXIT_FAILED = 2 };

enum output_format { FORMAT_TEXT, FORMAT_JSON, FORMAT_CSV };

/* One entry per option; drives parsing and the help text. */
struct option_spec {
    const char *name;
    char letter;       /* 0 when there is no short form */
    const char *value; /* argument name, NULL for a flag */
    const char *help;
};

static const struct option_spec options[] = {
    {"audit-db", 0, "PATH", "database to read [$BITCPM_AUDIT_DB, else the XDG data folder]"},
    {"format", 0, "FMT", "output: text, json (all commands) or csv (export) [text; export: json]"},
    {"model", 0, "NAME", "history: runs whose family, model folder or config path is NAME"},
    {"limit", 0, "N", "history: at most N runs, newest first [all]"},
    {"run", 0, "N", "export: only run N [all runs]"},
    {"help", 'h', NULL, "show this help and exit"},
    {"version", 'V', NULL, "show the version and exit"},
};

#define NOPTIONS (sizeof(options) / sizeof(options[0]))

struct args {
    const char *db_path;
    const char *format_name;
    const char *model;
    const char *limit;
    const char *run;
    int help, version;
    const char *positional[8];
    int npositional;
};

static void print_help(FILE *out)
{
    fprintf(out,
            "Usage: " PROGRAM " [OPTIONS] COMMAND [ARGS]\n"
            "Query and verify the bitcpm-check audit database.\n\n"
            "Commands:\n"
            "  history [PATH | --model NAME]  runs, newest first (PATH: as given or resolved)\n"
            "  show RUN                       one run with its files and findings\n"
            "  compare RUN RUN                findings added and removed from the first run\n"
            "                                 to the second (exit 1 when there are any)\n"
            "  export [--run N]               runs with files, tensors and findings\n"
            "  verify                         recompute the hash chain (exit 1 when broken)\n\n"
            "Options:\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        char left[48], letter[8] = "    ";

        if (options[i].letter)
            snprintf(letter, sizeof(letter), "-%c, ", options[i].letter);
        snprintf(left, sizeof(left), "%s--%s%s%s", letter, options[i].name,
                 options[i].value ? " " : "", options[i].value ? options[i].value : "");
        fprintf(out, "  %-22s %s\n", left, options[i].help);
    }
    fprintf(out, "\nExit status: 0 done, 1 verify found tampering or compare found\n"
                 "differences, 2 could not run.\n");
}

static int usage_error(const char *fmt, const char *detail)
{
    fprintf(stderr, PROGRAM ": ");
    fprintf(stderr, fmt, detail);
    fprintf(stderr, "\nTry '" PROGRAM " --help' for more information.\n");
    return EXIT_FAILED;
}

static const struct option_spec *find_option(const char *arg, const char **inline_value)
{
    *inline_value = NULL;
    if (arg[0] == '-' && arg[1] != '-' && arg[1] && !arg[2]) {
        for (size_t i = 0; i < NOPTIONS; i++)
            if (options[i].letter == arg[1])
                return &options[i];
        return NULL;
    }
    if (strncmp(arg, "--", 2) != 0)
        return NULL;
    for (size_t i = 0; i < NOPTIONS; i++) {
        size_t n = strlen(options[i].name);
        if (strncmp(arg + 2, options[i].name, n) != 0)
            continue;
        if (arg[2 + n] == '\0')
            return &options[i];
        if (arg[2 + n] == '=' && options[i].value) {
            *inline_value = arg + 3 + n;
            return &options[i];
        }
    }
    return NULL;
}

static void store_option(struct args *args, const struct option_spec *opt, const char *value)
{
    if (strcmp(opt->name, "audit-db") == 0)
        args->db_path = value;
    else if (strcmp(opt->name, "format") == 0)
        args->format_name = value;
    else if (strcmp(opt->name, "model") == 0)
        args->model = value;
    else if (strcmp(opt->name, "limit") == 0)
        args->limit = value;
    else if (strcmp(opt->name, "run") == 0)
        args->run = value;
    else if (strcmp(opt->name, "help") == 0)
        args->help = 1;
    else if (strcmp(opt->name, "version") == 0)
        args->version = 1;
}

/* Options may come before or after the command; "--" ends them. */
static int parse_args(int argc, char **argv, struct args *args)
{
    int options_done = 0;

    memset(args, 0, sizeof(*args));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const struct option_spec *opt;
        const char *value;

        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            if (args->npositional == (int)(sizeof(args->positional) / sizeof(args->positional[0])))
                return usage_error("too many arguments starting at '%s'", arg);
            args->positional[args->npositional++] = arg;
            continue;
        }

        opt = find_option(arg, &value);
        if (!opt)
            return usage_error("unknown option '%s'", arg);
        if (opt->value && !value) {
            if (i + 1 >= argc)
                return usage_error("option '%s' needs a value", arg);
            value = argv[++i];
        }
        store_option(args, opt, value);
    }
    return EXIT_DONE;
}

/* A run id: a decimal integer from 1 to INT64_MAX. */
static int parse_run_id(const char *text, int64_t *out)
{
    char *end;
    long long value;

    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 1)
        return -1;
    *out = value;
    return 0;
}

static int report_error(const struct bcpm_error *err)
{
    char line[BCPM_ERROR_TEXT_MAX + 2 * BCPM_ERROR_NAME_MAX];

    fprintf(stderr, PROGRAM ": %s\n", bcpm_error_format(err, line, sizeof(line)));
    return EXIT_FAILED;
}

static void print_json(json_t *value)
{
    json_dumpf(value, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

static const char *text_or(json_t *object, const char *key, const char *fallback)
{
    const char *text = json_string_value(json_object_get(object, key));

    return text ? text : fallback;
}

static long long count_of(json_t *object, const char *key)
{
    return (long long)json_integer_value(json_object_get(object, key));
}

/* ---- history ---- */

static void print_history_text(json_t *runs)
{
    size_t i;
    json_t *run;

    printf("%6s  %-20s  %-7s  %4s  %-7s  %4s  %4s  %4s  %4s  %s\n", "RUN", "STARTED (UTC)",
           "COMMAND", "EXIT", "VERDICT", "CRIT", "ERR", "WARN", "INFO", "FILES");
    json_array_foreach(runs, i, run) {
        json_t *counts = json_object_get(run, "finding_counts");
        json_t *files = json_object_get(run, "files");
        size_t j;
        json_t *file;

        printf("%6lld  %-20s  %-7s  %4lld  %-7s  %4lld  %4lld  %4lld  %4lld  ",
               count_of(run, "id"), text_or(run, "started", "?"), text_or(run, "command", "?"),
               count_of(run, "exit_code"), text_or(run, "verdict", "?"),
               count_of(counts, "critical"), count_of(counts, "error"),
               count_of(counts, "warning"), count_of(counts, "info"));
        json_array_foreach(files, j, file)
            printf("%s%s", j ? " " : "", json_string_value(file));
        putchar('\n');
    }
}

static int run_history(struct bcpm_audit *db, const struct args *args,
                       enum output_format format)
{
    struct bcpm_audit_filter filter = {0};
    struct bcpm_error err;
    json_t *runs;
    int64_t limit = 0;

    if (args->npositional > 2)
        return usage_error("history takes at most one PATH, got extra '%s'", args->positional[2]);
    if (args->npositional == 2 && args->model)
        return usage_error("history takes a PATH or --model, not both (PATH '%s')",
                           args->positional[1]);
    if (args->limit && parse_run_id(args->limit, &limit) != 0)
        return usage_error("--limit needs a positive integer, got '%s'", args->limit);
    filter.path = args->npositional == 2 ? args->positional[1] : NULL;
    filter.model = args->model;
    filter.limit = limit;

    bcpm_error_clear(&err);
    if (bcpm_audit_history(db, &filter, &runs, &err) < 0)
        return report_error(&err);
    if (format == FORMAT_JSON)
        print_json(runs);
    else
        print_history_text(runs);
    json_decref(runs);
    return EXIT_DONE;
}

/* ---- show ---- */

static void print_finding_line(const char *mark, json_t *finding)
{
    const char *tensor = text_or(finding, "tensor", NULL);

    printf("%s%-8s  %s  %s%s%s\n", mark, text_or(finding, "severity", "?"),
           text_or(finding, "rule", "?"), tensor ? tensor : "", tensor ? ": " : "",
           text_or(finding, "message", ""));
}

/* A sharded checkpoint's files, each with its own digests. */
static void print_parts_text(json_t *parts)
{
    size_t i;
    json_t *part;

    if (json_array_size(parts) < 2)
        return;
    printf("    parts (%zu)\n", json_array_size(parts));
    json_array_foreach(parts, i, part) {
        printf("      %s, %lld bytes\n", text_or(part, "path", "?"),
               count_of(part, "size_bytes"));
        printf("        xxh3-128 %s\n", text_or(part, "xxh3_128", "-"));
        if (json_string_value(json_object_get(part, "sha256")))
            printf("        sha256 %s\n", text_or(part, "sha256", ""));
    }
}

static void print_run_text(json_t *run)
{
    json_t *files = json_object_get(run, "files");
    json_t *findings = json_object_get(run, "findings");
    double seconds = (double)(count_of(run, "ended_ns") - count_of(run, "started_ns")) / 1e9;
    size_t i;
    json_t *item;

    printf("run %lld\n", count_of(run, "id"));
    printf("  started       %s (%.3f s)\n", text_or(run, "started", "?"), seconds);
    printf("  command       %s\n", text_or(run, "command", "?"));
    printf("  command line  %s\n", text_or(run, "command_line", ""));
    printf("  tool version  %s\n", text_or(run, "tool_version", "?"));
    printf("  host, user    %s, %s\n", text_or(run, "host", "-"), text_or(run, "user", "-"));
    printf("  exit code     %lld (%s)\n", count_of(run, "exit_code"),
           text_or(run, "verdict", "?"));
    printf("  rules digest  %s\n", text_or(run, "rules_digest", "-"));
    printf("  hash          %s\n", text_or(run, "hash", "?"));
    printf("  prev_hash     %s\n", text_or(run, "prev_hash", "?"));

    printf("files (%zu)\n", json_array_size(files));
    json_array_foreach(files, i, item) {
        printf("  %s\n", text_or(item, "path", "?"));
        printf("    %lld bytes, format %s, stage %s, family %s, %lld tensors\n",
               count_of(item, "size_bytes"), text_or(item, "format", "-"),
               text_or(item, "stage", "-"), text_or(item, "family", "-"),
               count_of(item, "ntensors"));
        if (json_string_value(json_object_get(item, "config_path")))
            printf("    config %s\n", text_or(item, "config_path", ""));
        printf("    xxh3-128 %s\n", text_or(item, "xxh3_128", "-"));
        if (json_string_value(json_object_get(item, "sha256")))
            printf("    sha256 %s\n", text_or(item, "sha256", ""));
        print_parts_text(json_object_get(item, "parts"));
    }

    printf("findings (%zu)\n", json_array_size(findings));
    json_array_foreach(findings, i, item)
        print_finding_line("  ", item);
}

static int run_show(struct bcpm_audit *db, const struct args *args, enum output_format format)
{
    struct bcpm_error err;
    int64_t id;
    json_t *run;

    if (args->npositional != 2)
        return usage_error("%s", "show needs exactly one RUN id");
    if (parse_run_id(args->positional[1], &id) != 0)
        return usage_error("RUN must be a positive integer, got '%s'", args->positional[1]);

    bcpm_error_clear(&err);
    if (bcpm_audit_show(db, id, 0, &run, &err) < 0)
        return report_error(&err);
    if (format == FORMAT_JSON)
        print_json(run);
    else
        print_run_text(run);
    json_decref(run);
    return EXIT_DONE;
}

/* ---- compare ---- */

static int run_compare(struct bcpm_audit *db, const struct args *args,
                       enum output_format format)
{
    struct bcpm_error err;
    int64_t base, other;
    json_t *result, *added, *removed, *item;
    size_t i;
    int code;

    if (args->npositional != 3)
        return usage_error("%s", "compare needs two RUN ids");
    if (parse_run_id(args->positional[1], &base) != 0)
        return usage_error("RUN must be a positive integer, got '%s'", args->positional[1]);
    if (parse_run_id(args->positional[2], &other) != 0)
        return usage_error("RUN must be a positive integer, got '%s'", args->positional[2]);

    bcpm_error_clear(&err);
    if (bcpm_audit_compare(db, base, other, &result, &err) < 0)
        return report_error(&err);
    added = json_object_get(result, "added");
    removed = json_object_get(result, "removed");
    code = json_array_size(added) || json_array_size(removed) ? EXIT_DIFFERENT : EXIT_DONE;

    if (format == FORMAT_JSON) {
        /* The full run objects are what show prints; compare keeps the ids. */
        json_object_set_new(result, "base", json_integer(base));
        json_object_set_new(result, "other", json_integer(other));
        print_json(result);
    } else {
        printf("run %lld -> run %lld: %zu added, %zu removed\n", (long long)base,
               (long long)other, json_array_size(added), json_array_size(removed));
        json_array_foreach(added, i, item)
            print_finding_line("+ ", item);
        json_array_foreach(removed, i, item)
            print_finding_line("- ", item);
    }
    json_decref(result);
    return code;
}

/* ---- export ---- */

/* One CSV field, quoted when it contains a comma, quote or line break (RFC 4180). */
static void csv_field(const char *text, int last)
{
    if (text && strpbrk(text, ",\"\r\n")) {
        putchar('"');
        for (const char *p = text; *p; p++) {
            if (*p == '"')
                putchar('"');
            putchar(*p);
        }
        putchar('"');
    } else if (text) {
        fputs(text, stdout);
    }
    putchar(last ? '\n' : ',');
}

static void csv_number(json_t *value, int last)
{
    char text[32] = "";

    if (json_is_integer(value))
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    csv_field(text, last);
}

/* A JSON value as compact text for one CSV field; the caller frees it. */
static char *json_text(json_t *value)
{
    char *text = json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER);

    json_decref(value);
    return text;
}

/* A file's or part's digest as stored, or JSON null when it was not computed. */
static json_t *digest_or_null(json_t *object, const char *key)
{
    json_t *value = json_object_get(object, key);

    return json_is_string(value) ? json_incref(value) : json_null();
}

/*
 * The run's file columns. Paths can hold any character, so the paths and the
 * parts are JSON text; the digests are hex or "-" and are joined with spaces,
 * in the order of the paths.
 */
struct file_columns {
    char *paths, *xxh3, *sha256, *parts;
};

static void file_columns_fill(json_t *files, struct file_columns *out)
{
    json_t *paths = json_array(), *parts = json_array(), *file, *part;
    size_t xxh3_size = 0, sha256_size = 0, j, k;
    FILE *xxh3_out = open_memstream(&out->xxh3, &xxh3_size);
    FILE *sha256_out = open_memstream(&out->sha256, &sha256_size);

    json_array_foreach(files, j, file) {
        json_array_append_new(paths, json_string(text_or(file, "path", "")));
        fprintf(xxh3_out, "%s%s", j ? " " : "", text_or(file, "xxh3_128", "-"));
        fprintf(sha256_out, "%s%s", j ? " " : "", text_or(file, "sha256", "-"));
        json_array_foreach(json_object_get(file, "parts"), k, part)
            json_array_append_new(parts, json_pack("{s:s, s:o, s:o}",
                                                   "path", text_or(part, "path", ""),
                                                   "xxh3_128", digest_or_null(part, "xxh3_128"),
                                                   "sha256", digest_or_null(part, "sha256")));
    }
    fclose(xxh3_out);
    fclose(sha256_out);
    out->paths = json_text(paths);
    out->parts = json_text(parts);
}

static void file_columns_free(struct file_columns *columns)
{
    free(columns->paths);
    free(columns->xxh3);
    free(columns->sha256);
    free(columns->parts);
}

/* One CSV row per finding, run fields repeated; a run without findings gets one row. */
static void print_export_csv(json_t *runs)
{
    size_t i, j;
    json_t *run, *finding;

    printf("run_id,started,command,exit_code,verdict,tool_version,host,user,command_line,"
           "files,xxh3_128,sha256,parts,rule,severity,file,tensor,message\n");
    json_array_foreach(runs, i, run) {
        json_t *findings = json_object_get(run, "findings");
        struct file_columns columns = {0};
        size_t n = json_array_size(findings);

        file_columns_fill(json_object_get(run, "files"), &columns);
        for (j = 0; j < (n ? n : 1); j++) {
            finding = json_array_get(findings, j);
            csv_number(json_object_get(run, "id"), 0);
            csv_field(text_or(run, "started", ""), 0);
            csv_field(text_or(run, "command", ""), 0);
            csv_number(json_object_get(run, "exit_code"), 0);
            csv_field(text_or(run, "verdict", ""), 0);
            csv_field(text_or(run, "tool_version", ""), 0);
            csv_field(text_or(run, "host", ""), 0);
            csv_field(text_or(run, "user", ""), 0);
            csv_field(text_or(run, "command_line", ""), 0);
            csv_field(columns.paths, 0);
            csv_field(columns.xxh3, 0);
            csv_field(columns.sha256, 0);
            csv_field(columns.parts, 0);
            csv_field(text_or(finding, "rule", ""), 0);
            csv_field(text_or(finding, "severity", ""), 0);
            csv_field(text_or(finding, "file", ""), 0);
            csv_field(text_or(finding, "tensor", ""), 0);
            csv_field(text_or(finding, "message", ""), 1);
        }
        file_columns_free(&columns);
    }
}

static int run_export(struct bcpm_audit *db, const struct args *args, enum output_format format)
{
    struct bcpm_error err;
    int64_t id = 0;
    json_t *runs;

    if (args->npositional != 1)
        return usage_error("export takes no arguments, got '%s'", args->positional[1]);
    if (args->run && parse_run_id(args->run, &id) != 0)
        return usage_error("--run needs a positive integer, got '%s'", args->run);

    bcpm_error_clear(&err);
    if (bcpm_audit_export(db, id, &runs, &err) < 0)
        return report_error(&err);
    if (format == FORMAT_CSV)
        print_export_csv(runs);
    else
        print_json(runs);
    json_decref(runs);
    return EXIT_DONE;
}

/* ---- verify ---- */

static int run_verify(struct bcpm_audit *db, const struct args *args, enum output_format format)
{
    struct bcpm_audit_verification result;
    struct bcpm_error err;

    if (args->npositional != 1)
        return usage_error("verify takes no arguments, got '%s'", args->positional[1]);

    bcpm_error_clear(&err);
    if (bcpm_audit_verify(db, &result, &err) < 0)
        return report_error(&err);

    if (format == FORMAT_JSON) {
        json_t *out = json_pack("{s:b, s:I, s:o, s:s}", "intact", result.first_bad_run == 0,
                                "runs_checked", (json_int_t)result.runs_checked,
                                "first_bad_run",
                                result.first_bad_run ? json_integer(result.first_bad_run)
                                                     : json_null(),
                                "reason", result.reason);
        print_json(out);
        json_decref(out);
    } else if (result.first_bad_run == 0) {
        printf("audit chain intact: %lld runs verified\n", (long long)result.runs_checked);
    } else {
        printf("audit chain broken at run %lld: %s\n", (long long)result.first_bad_run,
               result.reason);
    }
    return result.first_bad_run ? EXIT_DIFFERENT : EXIT_DONE;
}

/* ---- main ---- */

static int choose_format(const struct args *args, const char *command, enum output_format *out)
{
    int is_export = strcmp(command, "export") == 0;
    const char *name = args->format_name;

    if (!name)
        name = is_export ? "json" : "text";

    if (strcmp(name, "json") == 0)
        *out = FORMAT_JSON;
    else if (strcmp(name, "text") == 0 && !is_export)
        *out = FORMAT_TEXT;
    else if (strcmp(name, "csv") == 0 && is_export)
        *out = FORMAT_CSV;
    else
        return usage_error(is_export ? "export writes json or csv, not '%s'"
                                     : "--format takes text or json, not '%s'",
                           name);
    return EXIT_DONE;
}

static int dispatch(struct bcpm_audit *db, const struct args *args, enum output_format format)
{
    const char *command = args->positional[0];

    if (strcmp(command, "history") == 0)
        return run_history(db, args, format);
    if (strcmp(command, "show") == 0)
        return run_show(db, args, format);
    if (strcmp(command, "compare") == 0)
        return run_compare(db, args, format);
    if (strcmp(command, "export") == 0)
        return run_export(db, args, format);
    return run_verify(db, args, format);
}

static int known_command(const char *command)
{
    static const char *const names[] = {"history", "show", "compare", "export", "verify"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(command, names[i]) == 0)
            return 1;
    return 0;
}

/* Options that belong to one command are rejected elsewhere, so typos do not pass silently. */
static int check_scoped_options(const struct args *args, const char *command)
{
    if ((args->model || args->limit) && strcmp(command, "history") != 0)
        return usage_error("--model and --limit apply to history, not %s", command);
    if (args->run && strcmp(command, "export") != 0)
        return usage_error("--run applies to export, not %s", command);
    return EXIT_DONE;
}

int main(int argc, char **argv)
{
    struct args args;
    struct bcpm_audit *db;
    struct bcpm_error err;
    enum output_format format = FORMAT_TEXT;
    char default_path[PATH_MAX];
    int code = parse_args(argc, argv, &args);

    if (code != EXIT_DONE)
        return code;
    if (args.help) {
        print_help(stdout);
        return fflush(stdout) == 0 ? EXIT_DONE : EXIT_FAILED;
    }
    if (args.version) {
        printf(PROGRAM " %s (audit schema %d)\n", BCPM_VERSION, BCPM_AUDIT_SCHEMA_VERSION);
        return fflush(stdout) == 0 ? EXIT_DONE : EXIT_FAILED;
    }
    if (args.npositional == 0)
        return usage_error("%s", "missing COMMAND (history, show, compare, export, verify)");
    if (!known_command(args.positional[0]))
        return usage_error("unknown command '%s'", args.positional[0]);
    if ((code = check_scoped_options(&args, args.positional[0])) != EXIT_DONE)
        return code;
    if ((code = choose_format(&args, args.positional[0], &format)) != EXIT_DONE)
        return code;

    if (!args.db_path) {
        if (bcpm_audit_default_path(default_path, sizeof(default_path)) != 0)
            return usage_error("%s", "no audit database: give --audit-db PATH or set "
                                     "BITCPM_AUDIT_DB");
        args.db_path = default_path;
    }

    bcpm_error_clear(&err);
    if (bcpm_audit_open_existing(&db, args.db_path, &err) < 0)
        return report_error(&err);
    code = dispatch(db, &args, format);
    bcpm_audit_close(db);

    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROGRAM ": writing the output failed: %s\n", strerror(errno));
        return EXIT_FAILED;
    }
    return code;
}
