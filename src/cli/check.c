/*
 * bitcpm-check: validate checkpoints against the rule sets and gate CI on the
 * result. Each PATH is opened as a tensor catalog, checked by the rule engine
 * and, with --reference, compared with a latent checkpoint. Then the reports
 * are written and the run is recorded in the audit database. The exit code is
 * 0 (pass), 1 (findings at or above --fail-on) or 2 (could not run). Usage,
 * output and exit codes are in man/bitcpm-check.1 and docs/USER_GUIDE.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/check.h"
#include "cli/cli_common.h"
#include "format/zip.h"

/* Rule id of a checkpoint that could not be read or checked to the end. */
#define RULE_UNREADABLE "format.unreadable"

/* Rule id of a stored zip entry whose bytes do not match its CRC-32 (--verify-crc). */
#define RULE_CRC "format.crc"

/* Rule ids of a report file or audit record that could not be written. */
#define RULE_REPORT_UNWRITABLE "report.unwritable"
#define RULE_AUDIT_UNWRITABLE "audit.unwritable"

/* Highest --threads value accepted; more threads than this only add overhead. */
#define MAX_THREADS 4096

enum output_format { FORMAT_TEXT, FORMAT_JSON };

struct settings {
    const char **rule_files;       /* --rules, in order */
    size_t nrule_files;
    const char *config_path;
    enum bcpm_stage stage;         /* BCPM_STAGE_UNKNOWN: no assertion */
    enum bcpm_severity fail_on;
    enum output_format format;
    const char *junit_path;
    const char *sarif_path;
    const char *reference_path;
    const char *compute;           /* "float32", "bf16" or "auto" */
    int64_t group_size;            /* 0: the rule's */
    double eps;                    /* 0: the rule's */
    int threads;                   /* 0: one per online CPU */
    const char *audit_db;
    int no_audit;
    int sha256;
    int verify_crc;
    enum cli_color color;
    int verbosity;                 /* -1 quiet, 0 normal, 1 verbose */
};

enum {
    OPT_RULES = CLI_LONG_ONLY,
    OPT_CONFIG,
    OPT_STAGE,
    OPT_FAIL_ON,
    OPT_FORMAT,
    OPT_JUNIT,
    OPT_SARIF,
    OPT_REFERENCE,
    OPT_COMPUTE,
    OPT_GROUP_SIZE,
    OPT_EPS,
    OPT_THREADS,
    OPT_AUDIT_DB,
    OPT_NO_AUDIT,
    OPT_SHA256,
    OPT_VERIFY_CRC,
    OPT_COLOR,
};

static const struct cli_option option_table[] = {
    {"rules", OPT_RULES, "FILE", "add a rule file to the shipped sets (repeatable)"},
    {"config", OPT_CONFIG, "FILE", "config.json to use [found beside the weights]"},
    {"stage", OPT_STAGE, "STAGE", "assert the stage: latent, finetuned or pseudo"},
    {"fail-on", OPT_FAIL_ON, "SEVERITY", "exit 1 at: info, warning, error, critical [error]"},
    {"format", OPT_FORMAT, "FORMAT", "report on stdout: text or json [text]"},
    {"junit", OPT_JUNIT, "FILE", "also write JUnit XML to FILE"},
    {"sarif", OPT_SARIF, "FILE", "also write SARIF 2.1.0 to FILE"},
    {"reference", OPT_REFERENCE, "LATENT", "compare with the fake-quant of checkpoint LATENT"},
    {"compute", OPT_COMPUTE, "POLICY", "reference arithmetic: float32, bf16 or auto [auto]"},
    {"group-size", OPT_GROUP_SIZE, "N", "group size in columns, -1: one per row [rules]"},
    {"eps", OPT_EPS, "X", "scale floor of the fake-quant and export preview [rules]"},
    {"threads", OPT_THREADS, "N", "worker threads [one per online CPU]"},
    {"audit-db", OPT_AUDIT_DB, "PATH", "audit database [$BITCPM_AUDIT_DB or XDG default]"},
    {"no-audit", OPT_NO_AUDIT, NULL, "do not record this run in the audit database"},
    {"sha256", OPT_SHA256, NULL, "also record the SHA-256 of every checkpoint"},
    {"verify-crc", OPT_VERIFY_CRC, NULL, "check the CRC-32 of stored tensor data in zip files"},
    {"color", OPT_COLOR, "WHEN", "colour the text report: auto, always or never [auto]"},
    {"quiet", 'q', NULL, "print only the verdict line (-q and -v: the last wins)"},
    {"verbose", 'v', NULL, "add per-tensor statistics and every finding"},
    {"version", 'V', NULL, "print the version and exit"},
    {"help", 'h', NULL, "print this help and exit"},
};

#define OPTION_COUNT (sizeof(option_table) / sizeof(option_table[0]))

static void print_help(FILE *out)
{
    fputs("Usage: " CHECK_PROGRAM " PATH... [OPTION]...\n"
          "Validate BitCPM-CANN checkpoints: format, layer completeness, dtypes, NaN/Inf,\n"
          "ternary value sets, scales, the checkpoint stage and, with --reference, the\n"
          "fake-quant recomputed from the latent weights. PATH is a PyTorch .bin/.pt file,\n"
          "a .safetensors file, a *.index.json shard index or a model folder.\n\n"
          "Options:\n",
          out);
    cli_print_options(out, option_table, OPTION_COUNT);
    fputs("\nExit status: 0 nothing at or above --fail-on was found, 1 something was,\n"
          "2 the check could not run (usage, I/O, unreadable input, audit write failed).\n"
          "Colour follows NO_COLOR unless --color always is given.\n",
          out);
}

static int add_rule_file(struct settings *s, const char *path)
{
    const char **grown = realloc(s->rule_files, (s->nrule_files + 1) * sizeof(*grown));

    if (!grown) {
        cli_error(CHECK_PROGRAM, "out of memory");
        return CLI_EXIT_FAILED;
    }
    grown[s->nrule_files++] = path;
    s->rule_files = grown;
    return CLI_CONTINUE;
}

static int parse_stage(struct settings *s, const char *value)
{
    if (bcpm_stage_from_name(value, &s->stage) != 0 || s->stage == BCPM_STAGE_UNKNOWN)
        return cli_usage_error(CHECK_PROGRAM,
                               "invalid --stage '%s': expected latent, finetuned or pseudo", value);
    return CLI_CONTINUE;
}

static int parse_number_option(struct settings *s, int code, const char *value)
{
    int64_t n;

    switch (code) {
    case OPT_GROUP_SIZE:
        if (cli_parse_int64(value, -1, INT32_MAX, &n) != 0 || n == 0)
            return cli_usage_error(CHECK_PROGRAM,
                                   "invalid --group-size '%s': expected -1 or a positive integer",
                                   value);
        s->group_size = n;
        return CLI_CONTINUE;
    case OPT_EPS:
        if (cli_parse_double(value, &s->eps) != 0 || !(s->eps > 0))
            return cli_usage_error(CHECK_PROGRAM,
                                   "invalid --eps '%s': expected a positive finite number", value);
        return CLI_CONTINUE;
    default:
        if (cli_parse_int64(value, 1, MAX_THREADS, &n) != 0)
            return cli_usage_error(CHECK_PROGRAM,
                                   "invalid --threads '%s': expected an integer from 1 to %d",
                                   value, MAX_THREADS);
        s->threads = (int)n;
        return CLI_CONTINUE;
    }
}

static int handle_option(void *ctx, int code, const char *value)
{
    struct settings *s = ctx;

    switch (code) {
    case OPT_RULES:
        return add_rule_file(s, value);
    case OPT_CONFIG:
        s->config_path = value;
        return CLI_CONTINUE;
    case OPT_STAGE:
        return parse_stage(s, value);
    case OPT_FAIL_ON:
        if (bcpm_severity_from_name(value, &s->fail_on) != 0)
            return cli_usage_error(CHECK_PROGRAM,
                                   "invalid --fail-on '%s': expected info, warning, error or "
                                   "critical", value);
        return CLI_CONTINUE;
    case OPT_FORMAT:
        if (strcmp(value, "text") == 0)
            s->format = FORMAT_TEXT;
        else if (strcmp(value, "json") == 0)
            s->format = FORMAT_JSON;
        else
            return cli_usage_error(CHECK_PROGRAM, "invalid --format '%s': expected text or json",
                                   value);
        return CLI_CONTINUE;
    case OPT_JUNIT:
        s->junit_path = value;
        return CLI_CONTINUE;
    case OPT_SARIF:
        s->sarif_path = value;
        return CLI_CONTINUE;
    case OPT_REFERENCE:
        /* Every PATH is compared with one reference; a second one would silently win. */
        if (s->reference_path)
            return cli_usage_error(CHECK_PROGRAM,
                                   "--reference given twice ('%s' and '%s'): give one latent "
                                   "checkpoint and check each export against it",
                                   s->reference_path, value);
        s->reference_path = value;
        return CLI_CONTINUE;
    case OPT_COMPUTE:
        if (strcmp(value, "float32") != 0 && strcmp(value, "bf16") != 0 &&
            strcmp(value, "auto") != 0)
            return cli_usage_error(CHECK_PROGRAM,
                                   "invalid --compute '%s': expected float32, bf16 or auto", value);
        s->compute = value;
        return CLI_CONTINUE;
    case OPT_GROUP_SIZE:
    case OPT_EPS:
    case OPT_THREADS:
        return parse_number_option(s, code, value);
    case OPT_AUDIT_DB:
        s->audit_db = value;
        return CLI_CONTINUE;
    case OPT_NO_AUDIT:
        s->no_audit = 1;
        return CLI_CONTINUE;
    case OPT_SHA256:
        s->sha256 = 1;
        return CLI_CONTINUE;
    case OPT_VERIFY_CRC:
        s->verify_crc = 1;
        return CLI_CONTINUE;
    case OPT_COLOR:
        if (cli_color_from_name(value, &s->color) != 0)
            return cli_usage_error(CHECK_PROGRAM,
                                   "invalid --color '%s': expected auto, always or never", value);
        return CLI_CONTINUE;
    case 'q':
        s->verbosity = -1;
        return CLI_CONTINUE;
    case 'v':
        s->verbosity = 1;
        return CLI_CONTINUE;
    case 'V':
        printf(CHECK_PROGRAM " " BCPM_VERSION "\n");
        return cli_close_stdout(CHECK_PROGRAM) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    default:
        print_help(stdout);
        return cli_close_stdout(CHECK_PROGRAM) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    }
}

static void print_error(const struct bcpm_error *err)
{
    char text[2 * BCPM_ERROR_TEXT_MAX];

    cli_error(CHECK_PROGRAM, "%s", bcpm_error_format(err, text, sizeof(text)));
}

/* The shipped rule sets plus every --rules file, in order. */
static int load_rules(const struct settings *s, struct bcpm_ruleset **out)
{
    struct bcpm_error err;
    int rc;

    bcpm_error_clear(&err);
    rc = bcpm_ruleset_load_default(out, &err);
    for (size_t i = 0; rc == 0 && i < s->nrule_files; i++)
        rc = bcpm_ruleset_add_file(*out, s->rule_files[i], &err);
    if (rc != 0) {
        print_error(&err);
        bcpm_ruleset_free(*out);
        *out = NULL;
        return CLI_EXIT_FAILED;
    }
    return CLI_CONTINUE;
}

/*
 * A checkpoint that could not be read or checked to the end is never a pass:
 * print why, and keep it in the result as a critical finding so that every
 * report and the audit record show it too.
 */
static void record_unreadable(struct bcpm_check_result *result, const char *path,
                              const struct bcpm_error *err)
{
    char text[2 * BCPM_ERROR_TEXT_MAX];

    bcpm_error_format(err, text, sizeof(text));
    cli_error(CHECK_PROGRAM, "%s", text);
    bcpm_findings_add(&result->findings, RULE_UNREADABLE, BCPM_SEVERITY_CRITICAL,
                      err->file[0] ? err->file : path, err->entry[0] ? err->entry : NULL,
                      "the checkpoint could not be checked: %s", err->message);
}

/*
 * A path that could not be opened still gets an entry among the checked
 * files (no format, stage unknown, no tensors), so that the reports list it
 * and the audit database stores a file row that `bitcpm-audit history PATH`
 * finds. Returns 0, or -1 when out of memory (the finding still gives the reason).
 */
static int add_unread_file(struct bcpm_check_result *result, const char *path)
{
    struct bcpm_checked_file *files = realloc(result->files,
                                              (result->nfiles + 1) * sizeof(*files));

    if (!files)
        return -1;
    result->files = files;
    memset(&files[result->nfiles], 0, sizeof(files[0]));
    files[result->nfiles].path = strdup(path);
    if (!files[result->nfiles].path)
        return -1;
    files[result->nfiles].stage_detected = BCPM_STAGE_UNKNOWN;
    files[result->nfiles].first_tensor = result->ntensors;
    result->nfiles++;
    return 0;
}

struct run {
    const struct settings *settings;
    struct bcpm_ruleset *rules;
    struct bcpm_check_result result;
    struct check_progress progress;
    struct check_audit audit;
    struct check_reference reference;
    int failed;                    /* a path could not be checked, or a digest failed */
};

/*
 * --verify-crc: check every stored entry of the catalog's PyTorch zip files
 * against its CRC-32. The readers check data.pkl and deflated entries always,
 * but not stored tensor data, which would read every weight a second time.
 * A mismatch is a critical format.crc finding naming the entry. Returns 0, or
 * -1 when a zip could not be read again (a format.unreadable finding gives the reason).
 */
static int verify_zip_crcs(struct bcpm_check_result *result, const struct bcpm_catalog *catalog)
{
    int rc = 0;

    for (size_t i = 0; i < catalog->nfiles; i++) {
        const struct bcpm_file *file = &catalog->files[i];
        struct bcpm_zip *zip = NULL;
        struct bcpm_error err;

        if (file->format != BCPM_FORMAT_TORCH_ZIP)
            continue;
        bcpm_error_clear(&err);
        if (bcpm_zip_open(&zip, file->map, &err) != 0) {
            bcpm_error_file(&err, file->path);
            record_unreadable(result, file->path, &err);
            rc = -1;
            continue;
        }
        for (size_t k = 0; k < zip->count; k++) {
            const struct bcpm_zip_entry *entry = &zip->entries[k];
            const uint8_t *data;
            uint8_t *owned = NULL;

            if (entry->method != BCPM_ZIP_METHOD_STORED)
                continue;
            bcpm_error_clear(&err);
            if (bcpm_zip_read(zip, entry, 1, &data, &owned, &err) != 0)
                bcpm_findings_add(&result->findings, RULE_CRC, BCPM_SEVERITY_CRITICAL,
                                  file->path, entry->name, "%s", err.message);
            free(owned);
        }
        bcpm_zip_close(zip);
    }
    return rc;
}

/* Open, digest and check one path; failures mark run->failed and go on. */
static void check_path(struct run *run, const char *path)
{
    const struct settings *s = run->settings;
    struct bcpm_open_options open_options = {0};
    struct bcpm_check_options check_options;
    struct check_digest_job digest;
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    size_t first_file = run->result.nfiles;
    int rc;

    bcpm_error_clear(&err);
    bcpm_ruleset_allowed_globals(run->rules, &open_options.allowed_globals,
                                 &open_options.nallowed_globals);
    rc = bcpm_catalog_open(&catalog, path, &open_options, &err);
    if (rc != 0) {
        bcpm_error_file(&err, path);
        record_unreadable(&run->result, path, &err);
        if (add_unread_file(&run->result, path) != 0)
            cli_error(CHECK_PROGRAM, "out of memory: %s is missing from the reports", path);
        run->failed = 1;
        return;
    }

    bcpm_check_options_init(&check_options);
    check_options.config_path = s->config_path;
    check_options.expected_stage = s->stage;
    check_options.fail_on = s->fail_on;
    check_options.group_size_override = s->group_size;
    check_options.threads = s->threads;
    check_options.progress = check_progress_update;
    check_options.progress_ctx = &run->progress;
    check_progress_begin(&run->progress, path);

    check_digest_start(&digest, &run->audit, catalog);
    check_options.digest = digest.hook;
    check_reference_begin(&run->reference, run->rules, catalog, &check_options);
    rc = bcpm_check_catalog(run->rules, catalog, &check_options, &run->result, &err);
    if (check_digest_finish(&digest, &run->audit, &run->result, first_file) != CLI_CONTINUE)
        run->failed = 1;
    check_progress_clear(&run->progress);
    if (rc != 0) {
        bcpm_error_file(&err, path);
        record_unreadable(&run->result, path, &err);
        run->failed = 1;
    }

    if (rc == 0 && s->reference_path &&
        check_reference_compare(&run->reference, run->rules, catalog, &run->result,
                                first_file) != CLI_CONTINUE)
        run->failed = 1;
    if (rc == 0 && s->verify_crc && verify_zip_crcs(&run->result, catalog) != 0)
        run->failed = 1;
    if (rc == 0 && !s->reference_path &&
        check_reference_preview(&run->reference, run->rules, catalog, &run->result,
                                first_file) != CLI_CONTINUE)
        run->failed = 1;
    check_reference_end(&run->reference);
    bcpm_catalog_free(catalog);
}

/*
 * Ids and descriptions of the enabled checks, for passing JUnit test cases
 * and SARIF rule texts. Both arrays point into rs; on failure they stay NULL
 * and the reports go without.
 */
static void enabled_rules(const struct bcpm_ruleset *rs, struct bcpm_report_options *o)
{
    size_t n = bcpm_ruleset_check_count(rs);
    const char **ids = calloc(n ? n : 1, sizeof(*ids));
    const char **texts = calloc(n ? n : 1, sizeof(*texts));

    if (!ids || !texts) {
        free(ids);
        free(texts);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct bcpm_rule_info info;

        bcpm_ruleset_check_info(rs, i, &info);
        if (!info.enabled)
            continue;
        ids[o->nrules] = info.id;
        texts[o->nrules] = info.description;
        o->nrules++;
    }
    o->rules = ids;
    o->rule_descriptions = texts;
}

/*
 * A run that exits 2 is never a pass: the result fails, and a critical
 * finding names what could not be done, so that the reports written after
 * this point (and the audit record) show it. The message is what, a colon
 * and err's message, or err's message alone when what is NULL.
 */
static void record_not_run(struct run *run, const char *rule, const struct bcpm_error *err,
                           const char *what)
{
    bcpm_findings_add(&run->result.findings, rule, BCPM_SEVERITY_CRITICAL,
                      err->file[0] ? err->file : NULL, NULL, "%s%s%s", what ? what : "",
                      what ? ": " : "", err->message);
    run->result.failed = 1;
}

/*
 * Write --junit and --sarif; returns CLI_CONTINUE or CLI_EXIT_FAILED. A JUnit
 * file that cannot be written is recorded before the SARIF log is written.
 */
static int write_report_files(struct run *run, const struct bcpm_report_options *o)
{
    const struct settings *s = run->settings;
    struct bcpm_error err;
    int rc = CLI_CONTINUE;

    bcpm_error_clear(&err);
    if (s->junit_path && bcpm_report_junit(s->junit_path, &run->result, o, &err) != 0) {
        print_error(&err);
        /* The report's own message already says which file was not written. */
        record_not_run(run, RULE_REPORT_UNWRITABLE, &err, NULL);
        rc = CLI_EXIT_FAILED;
    }
    bcpm_error_clear(&err);
    if (s->sarif_path && bcpm_report_sarif(s->sarif_path, &run->result, o, &err) != 0) {
        print_error(&err);
        record_not_run(run, RULE_REPORT_UNWRITABLE, &err, NULL);
        rc = CLI_EXIT_FAILED;
    }
    return rc;
}

static int write_stdout_report(const struct run *run, const struct bcpm_report_options *o)
{
    struct bcpm_error err;

    bcpm_error_clear(&err);
    if (run->settings->format == FORMAT_JSON) {
        if (bcpm_report_json(stdout, &run->result, o, &err) != 0) {
            print_error(&err);
            return CLI_EXIT_FAILED;
        }
        return CLI_CONTINUE;
    }
    if (bcpm_report_terminal(stdout, &run->result, o) != 0) {
        cli_error(CHECK_PROGRAM, "writing the report to standard output failed");
        return CLI_EXIT_FAILED;
    }
    return CLI_CONTINUE;
}

static int start_result(struct run *run)
{
    struct bcpm_error err;

    bcpm_error_clear(&err);
    if (bcpm_check_result_init(&run->result, run->rules, run->settings->fail_on, &err) != 0) {
        print_error(&err);
        return CLI_EXIT_FAILED;
    }
    return CLI_CONTINUE;
}

/* Everything after the checks: verdict, report files, audit record, stdout. */
static int finish_run(struct run *run, char **paths, size_t npaths)
{
    const struct settings *s = run->settings;
    struct bcpm_report_options o = {0};
    int code;

    bcpm_check_result_finish(&run->result);
    if (run->failed) {
        /* Even when the finding with the reason is below --fail-on or disabled. */
        run->result.failed = 1;
        code = CLI_EXIT_FAILED;
    }
    else if (run->result.failed)
        code = CLI_EXIT_FINDINGS;
    else
        code = CLI_EXIT_OK;

    o.color = s->format == FORMAT_TEXT && cli_color_enabled(s->color, stdout);
    o.verbosity = s->verbosity;
    o.tool_name = CHECK_PROGRAM;
    o.tool_version = BCPM_VERSION;
    o.paths = (const char *const *)paths;
    o.npaths = npaths;
    enabled_rules(run->rules, &o);
    check_reference_report(&run->reference, &o);

    if (write_report_files(run, &o) != CLI_CONTINUE)
        code = CLI_EXIT_FAILED;
    if (check_audit_record(&run->audit, &run->result, code) != CLI_CONTINUE) {
        struct bcpm_error err;

        bcpm_error_set(&err, BCPM_ERR_IO, run->audit.path, NULL,
                       "writing the audit database failed");
        record_not_run(run, RULE_AUDIT_UNWRITABLE, &err, "the run was not recorded");
        code = CLI_EXIT_FAILED;
    }
    if (write_stdout_report(run, &o) != CLI_CONTINUE)
        code = CLI_EXIT_FAILED;

    free((void *)o.rules);
    free((void *)o.rule_descriptions);
    return code;
}

int main(int argc, char **argv)
{
    struct settings settings = {0};
    struct run run;
    int first, code;

    settings.fail_on = BCPM_SEVERITY_ERROR;
    settings.compute = "auto";
    settings.color = CLI_COLOR_AUTO;
    code = cli_parse(CHECK_PROGRAM, option_table, OPTION_COUNT, argc, argv, handle_option,
                     &settings, &first);
    if (code == CLI_CONTINUE && first >= argc)
        code = cli_usage_error(CHECK_PROGRAM,
                               "missing PATH: name a checkpoint file, shard index or model folder");
    if (code != CLI_CONTINUE) {
        free(settings.rule_files);
        return code;
    }

    memset(&run, 0, sizeof(run));
    run.settings = &settings;
    check_reference_init(&run.reference, settings.reference_path, settings.compute,
                         settings.group_size, settings.eps, settings.threads);
    code = load_rules(&settings, &run.rules);
    if (code == CLI_CONTINUE)
        code = check_audit_open(&run.audit, !settings.no_audit, settings.audit_db,
                                settings.sha256, argc, argv);
    if (code == CLI_CONTINUE)
        code = start_result(&run);

    if (code == CLI_CONTINUE) {
        check_progress_init(&run.progress, settings.verbosity >= 0 && isatty(STDERR_FILENO));
        for (int i = first; i < argc; i++)
            check_path(&run, argv[i]);
        code = finish_run(&run, argv + first, (size_t)(argc - first));
    }

    bcpm_check_result_free(&run.result);
    check_reference_free(&run.reference);
    check_audit_close(&run.audit);
    bcpm_ruleset_free(run.rules);
    free(settings.rule_files);

    if (cli_close_stdout(CHECK_PROGRAM) != 0)
        code = CLI_EXIT_FAILED;
    return code;
}
