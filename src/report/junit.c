/*
 * JUnit XML for CI test views (the dialect Jenkins, GitLab and GitHub test
 * reporters read): <testsuites> with one <testsuite> per checked file, and in
 * it one <testcase> per rule and tensor group. The class name is the rule id
 * and the name the tensor role ("ternary", "norm", ...) or "checkpoint" for
 * findings that name no known tensor. Findings at or above the run's fail-on
 * severity make a <failure>; lower ones are listed in <system-out>. A path
 * that could not be opened gets a suite named by the path, with its path in
 * each failure message. Findings on a path outside the checked files (an
 * unreadable --reference) get such a suite too. The reference.* rules pass
 * only in the suites of checkpoints that a --reference comparison covered.
 */
#include "report/report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_util.h"

/* One test case: a rule in one tensor group of one file. */
struct junit_case {
    size_t file;
    const char *rule;
    const char *group;
    size_t failures;              /* findings at or above fail_on */
    size_t notes;                 /* findings below fail_on */
};

struct junit {
    const struct bcpm_check_result *result;
    const struct bcpm_report_options *options;
    struct bcpm_report_index index;
    struct junit_case *cases;
    size_t ncases;
    size_t *finding_case;         /* case index of each finding */
    const char **extra;           /* paths of the suites after the checked files */
    size_t nextra;
};

/* Suites in the document: the checked files, then the unread paths, at least one. */
static size_t suite_count(const struct junit *j)
{
    size_t n = j->result->nfiles + j->nextra;

    return n ? n : 1;
}

/* Path a suite is named by, or NULL for the placeholder of an empty run. */
static const char *suite_path(const struct junit *j, size_t suite)
{
    const struct bcpm_check_result *r = j->result;

    if (suite < r->nfiles)
        return r->files[suite].path;
    if (suite - r->nfiles < j->nextra)
        return j->extra[suite - r->nfiles];
    return NULL;
}

/* The suite of a finding: its checked file, else the suite of the path it names. */
static size_t finding_suite(struct junit *j, const struct bcpm_finding *f)
{
    const struct bcpm_check_result *r = j->result;
    size_t file;

    if (bcpm_report_finding_file_found(r, &j->index, f, &file))
        return file;
    for (size_t k = 0; k < j->nextra; k++) {
        if (strcmp(j->extra[k], f->file) == 0)
            return r->nfiles + k;
    }
    j->extra[j->nextra] = f->file;
    return r->nfiles + j->nextra++;
}

static size_t find_case(const struct junit *j, size_t file, const char *rule, const char *group)
{
    for (size_t i = 0; i < j->ncases; i++) {
        const struct junit_case *c = &j->cases[i];
        if (c->file == file && strcmp(c->rule, rule) == 0 && strcmp(c->group, group) == 0)
            return i;
    }
    return j->ncases;
}

/* 1 when the rule produced a finding in file (in any group). */
static int rule_seen(const struct junit *j, size_t file, const char *rule)
{
    for (size_t i = 0; i < j->ncases; i++) {
        if (j->cases[i].file == file && strcmp(j->cases[i].rule, rule) == 0)
            return 1;
    }
    return 0;
}

static int file_has_cases(const struct junit *j, size_t file)
{
    for (size_t i = 0; i < j->ncases; i++) {
        if (j->cases[i].file == file)
            return 1;
    }
    return 0;
}

/*
 * 1 when rule could have run on file. The reference.* rules run only where
 * a --reference comparison did. Without one, or when the reference could not
 * be read, a passing case would claim a check that never happened.
 */
static int rule_ran(const struct junit *j, size_t file, const char *rule)
{
    const struct bcpm_report_options *o = j->options;

    if (strncmp(rule, "reference.", strlen("reference.")) != 0)
        return 1;
    for (size_t i = 0; o->reference && i < o->nreference; i++) {
        if (o->reference[i].file == file)
            return 1;
    }
    return 0;
}

static void add_passing_case(struct junit *j, size_t file, const char *rule)
{
    struct junit_case *c = &j->cases[j->ncases++];

    c->file = file;
    c->rule = rule;
    c->group = "all";
}

/*
 * Group the findings into cases, then add one passing case per rule in
 * effect that found nothing in a file. The number of cases is bounded by
 * findings + files * (rules + 1), which sizes the array once.
 */
static int build_cases(struct junit *j)
{
    const struct bcpm_check_result *r = j->result;
    size_t nfiles = r->nfiles ? r->nfiles : 1;
    size_t max = r->findings.count + nfiles * (j->options->nrules + 1);

    j->cases = calloc(max ? max : 1, sizeof(*j->cases));
    j->finding_case = calloc(r->findings.count ? r->findings.count : 1, sizeof(size_t));
    j->extra = calloc(r->findings.count ? r->findings.count : 1, sizeof(*j->extra));
    if (!j->cases || !j->finding_case || !j->extra)
        return BCPM_ERR_NOMEM;

    for (size_t i = 0; i < r->findings.count; i++) {
        const struct bcpm_finding *f = &r->findings.items[i];
        size_t file = finding_suite(j, f);
        const char *rule = f->rule ? f->rule : "unknown";
        const char *group = bcpm_report_finding_group(r, &j->index, f);
        size_t c = find_case(j, file, rule, group);

        if (c == j->ncases) {
            j->cases[c].file = file;
            j->cases[c].rule = rule;
            j->cases[c].group = group;
            j->ncases++;
        }
        if (f->severity >= r->fail_on)
            j->cases[c].failures++;
        else
            j->cases[c].notes++;
        j->finding_case[i] = c;
    }

    /* No rule ran on an unread path, so its suite gets no passing cases. */
    if (r->nfiles == 0 && j->nextra > 0)
        nfiles = 0;
    for (size_t file = 0; file < nfiles; file++) {
        /* A checked file without a format was never opened: no rule passed on it. */
        int unread = file < r->nfiles && !r->files[file].format;

        for (size_t k = 0; !unread && k < j->options->nrules; k++) {
            if (!rule_seen(j, file, j->options->rules[k]) &&
                rule_ran(j, file, j->options->rules[k]))
                add_passing_case(j, file, j->options->rules[k]);
        }

        /* A suite without cases reads as "nothing ran" in most CI views. */
        if (!file_has_cases(j, file))
            add_passing_case(j, file, "checks");
    }
    return 0;
}

/* One finding; unread is set in the suite of a path that could not be read. */
static void write_finding_line(FILE *out, const struct bcpm_finding *f, int unread)
{
    bcpm_report_xml_escape(out, bcpm_severity_name(f->severity));
    fputs(": ", out);
    if (unread && f->file) {
        bcpm_report_xml_escape(out, f->file);
        fputs(": ", out);
    }
    if (f->tensor) {
        bcpm_report_xml_escape(out, f->tensor);
        fputs(": ", out);
    }
    bcpm_report_xml_escape(out, f->message);
    fputc('\n', out);
}

static void write_case(FILE *out, const struct junit *j, size_t c)
{
    const struct bcpm_check_result *r = j->result;
    const struct junit_case *tc = &j->cases[c];
    const char *file = suite_path(j, tc->file);
    int unread = tc->file >= r->nfiles || !r->files[tc->file].format;

    fputs("    <testcase classname=\"", out);
    bcpm_report_xml_escape(out, tc->rule);
    fputs("\" name=\"", out);
    bcpm_report_xml_escape(out, tc->group);
    fputs("\" file=\"", out);
    bcpm_report_xml_escape(out, file);
    fputs("\" time=\"0\"", out);
    if (!tc->failures && !tc->notes) {
        fputs("/>\n", out);
        return;
    }
    fputs(">\n", out);

    if (tc->failures) {
        fprintf(out, "      <failure type=\"%s\" message=\"%zu finding(s) at or above %s\">",
                bcpm_severity_name(r->fail_on), tc->failures, bcpm_severity_name(r->fail_on));
        for (size_t i = 0; i < r->findings.count; i++) {
            if (j->finding_case[i] == c && r->findings.items[i].severity >= r->fail_on)
                write_finding_line(out, &r->findings.items[i], unread);
        }
        fputs("</failure>\n", out);
    }
    if (tc->notes) {
        fputs("      <system-out>", out);
        for (size_t i = 0; i < r->findings.count; i++) {
            if (j->finding_case[i] == c && r->findings.items[i].severity < r->fail_on)
                write_finding_line(out, &r->findings.items[i], unread);
        }
        fputs("</system-out>\n", out);
    }
    fputs("    </testcase>\n", out);
}

static void write_document(FILE *out, const struct junit *j)
{
    const struct bcpm_check_result *r = j->result;
    size_t nfiles = suite_count(j);
    size_t total_failures = 0;

    for (size_t c = 0; c < j->ncases; c++)
        total_failures += j->cases[c].failures ? 1 : 0;

    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", out);
    fputs("<testsuites name=\"", out);
    bcpm_report_xml_escape(out, j->options->tool_name ? j->options->tool_name : "bitcpm-check");
    fprintf(out, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\">\n", j->ncases, total_failures);

    for (size_t file = 0; file < nfiles; file++) {
        size_t tests = 0, failures = 0;

        for (size_t c = 0; c < j->ncases; c++) {
            if (j->cases[c].file != file)
                continue;
            tests++;
            failures += j->cases[c].failures ? 1 : 0;
        }
        fputs("  <testsuite name=\"", out);
        bcpm_report_xml_escape(out, suite_path(j, file) ? suite_path(j, file) : "no checkpoint");
        fprintf(out, "\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" skipped=\"0\">\n", tests,
                failures);
        if (file < r->nfiles) {
            fputs("    <properties>\n      <property name=\"stage\" value=\"", out);
            bcpm_report_xml_escape(out, bcpm_stage_name(r->files[file].stage_detected));
            fputs("\"/>\n      <property name=\"format\" value=\"", out);
            bcpm_report_xml_escape(out, r->files[file].format);
            fputs("\"/>\n    </properties>\n", out);
        }
        for (size_t c = 0; c < j->ncases; c++) {
            if (j->cases[c].file == file)
                write_case(out, j, c);
        }
        fputs("  </testsuite>\n", out);
    }
    fputs("</testsuites>\n", out);
}

int bcpm_report_junit(const char *path, const struct bcpm_check_result *result,
                      const struct bcpm_report_options *options, struct bcpm_error *err)
{
    static const struct bcpm_report_options defaults;
    struct junit j = {result, options ? options : &defaults, {result, NULL}, NULL, 0, NULL,
                      NULL, 0};
    FILE *out;
    int rc;

    rc = bcpm_report_index_build(&j.index, result);
    if (rc == 0)
        rc = build_cases(&j);
    if (rc != 0) {
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL,
                            "out of memory while building the JUnit report");
        goto done;
    }

    out = fopen(path, "w");
    if (!out) {
        rc = bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "cannot create the JUnit report: %s",
                            strerror(errno));
        goto done;
    }
    write_document(out, &j);
    if (ferror(out)) {
        fclose(out);
        rc = bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "writing the JUnit report failed");
        goto done;
    }
    if (fclose(out) != 0)
        rc = bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "writing the JUnit report failed: %s",
                            strerror(errno));

done:
    free(j.cases);
    free(j.finding_case);
    free(j.extra);
    bcpm_report_index_free(&j.index);
    return rc;
}
