/*
 * The human-readable report of bitcpm-check: a verdict line, one table row
 * per rule, the findings of each rule, the worst offenders and the totals.
 * With -v it adds per-tensor statistics and the --reference comparison.
 * Colour is ANSI SGR and only used when options->color is set.
 */
#include "report/report.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_util.h"

#define SGR_RESET "\033[0m"
#define SGR_BOLD "\033[1m"
#define SGR_RED "\033[1;31m"
#define SGR_GREEN "\033[1;32m"
#define SGR_YELLOW "\033[33m"
#define SGR_MAGENTA "\033[1;35m"
#define SGR_CYAN "\033[36m"

/* Names longer than this push their row out of alignment instead of widening the table. */
#define MAX_NAME_COLUMN 60

/* Checkpoint paths named in a verdict line before "and N more". */
#define VERDICT_PATHS 3

struct terminal {
    FILE *out;
    const struct bcpm_check_result *result;
    const struct bcpm_report_options *options;
    struct bcpm_report_index index;
};

/*
 * Write untrusted text (tensor names, messages and paths come from the
 * checkpoint or its file system) so that it cannot drive the terminal:
 * control characters and bytes that are not UTF-8 are written as \xNN.
 */
static void put_text(FILE *out, const char *s)
{
    s = s ? s : "";
    while (*s) {
        size_t n = bcpm_report_utf8_sequence(s);
        unsigned char c = (unsigned char)*s;

        if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7F))) {
            fprintf(out, "\\x%02X", c);
            s++;
            continue;
        }
        fwrite(s, 1, n, out);
        s += n;
    }
}

/* put_text, then spaces up to width bytes. */
static void put_padded(FILE *out, const char *s, int width)
{
    int len = s ? (int)strlen(s) : 0;

    put_text(out, s);
    if (len < width)
        fprintf(out, "%*s", width - len, "");
}

static void paint(const struct terminal *t, const char *sgr, const char *text)
{
    if (t->options->color)
        fputs(sgr, t->out);
    put_text(t->out, text);
    if (t->options->color)
        fputs(SGR_RESET, t->out);
}

static const char *severity_sgr(enum bcpm_severity severity)
{
    switch (severity) {
    case BCPM_SEVERITY_CRITICAL: return SGR_MAGENTA;
    case BCPM_SEVERITY_ERROR: return SGR_RED;
    case BCPM_SEVERITY_WARNING: return SGR_YELLOW;
    default: return SGR_CYAN;
    }
}

static void print_heading(const struct terminal *t, const char *text)
{
    fputc('\n', t->out);
    paint(t, SGR_BOLD, text);
    fputc('\n', t->out);
}

static void print_shape(FILE *out, const struct bcpm_tensor_stats *s)
{
    fputc('[', out);
    for (int d = 0; d < s->ndim && d < BCPM_MAX_DIMS; d++)
        fprintf(out, "%s%" PRId64, d ? ", " : "", s->shape[d]);
    fputc(']', out);
}

static void print_size(FILE *out, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = (double)bytes;
    int unit = 0;

    while (value >= 1024.0 && unit < 4) {
        value /= 1024.0;
        unit++;
    }
    if (unit == 0)
        fprintf(out, "%" PRIu64 " B", bytes);
    else
        fprintf(out, "%.1f %s", value, units[unit]);
}

static size_t name_width(const char *name, size_t current)
{
    size_t n = name ? strlen(name) : 0;

    if (n > MAX_NAME_COLUMN)
        n = MAX_NAME_COLUMN;
    return n > current ? n : current;
}

static const char *subject_path(const struct terminal *t, size_t i)
{
    const char *path = t->options->paths ? t->options->paths[i] : t->result->files[i].path;

    return path ? path : "?";
}

/*
 * "a.bin", or "3 checkpoints (a.bin, b.bin, c.bin)": the paths the user named
 * when the caller passed them (a path that could not be read has no entry in
 * result->files), else the checked files.
 */
static void print_subject(const struct terminal *t)
{
    const struct bcpm_check_result *r = t->result;
    size_t n = t->options->paths ? t->options->npaths : r->nfiles;

    if (n == 0) {
        fputs("nothing", t->out);
        return;
    }
    if (n == 1) {
        put_text(t->out, subject_path(t, 0));
        return;
    }
    fprintf(t->out, "%zu checkpoints (", n);
    for (size_t i = 0; i < n && i < VERDICT_PATHS; i++) {
        fputs(i ? ", " : "", t->out);
        put_text(t->out, subject_path(t, i));
    }
    if (n > VERDICT_PATHS)
        fprintf(t->out, " and %zu more", n - VERDICT_PATHS);
    fputc(')', t->out);
}

static void print_verdict(const struct terminal *t)
{
    const struct bcpm_check_result *r = t->result;
    size_t counts[4];

    bcpm_report_count_severities(r, counts);
    if (r->failed)
        paint(t, SGR_RED, "FAIL");
    else
        paint(t, SGR_GREEN, "PASS");
    fputc(' ', t->out);
    print_subject(t);
    fprintf(t->out,
            ": stage %s, %zu tensors, findings %zu critical, %zu error, %zu warning, %zu info"
            " (fails at %s or above)\n",
            bcpm_report_overall_stage(r), r->ntensors, counts[BCPM_SEVERITY_CRITICAL],
            counts[BCPM_SEVERITY_ERROR], counts[BCPM_SEVERITY_WARNING],
            counts[BCPM_SEVERITY_INFO], bcpm_severity_name(r->fail_on));
}

static void print_files(const struct terminal *t)
{
    const struct bcpm_check_result *r = t->result;

    if (r->nfiles == 0)
        return;
    print_heading(t, "Checkpoints");
    for (size_t i = 0; i < r->nfiles; i++) {
        const struct bcpm_checked_file *f = &r->files[i];

        fputs("  ", t->out);
        put_text(t->out, f->path ? f->path : "?");
        fputs(": ", t->out);
        put_text(t->out, f->format ? f->format : "unknown format");
        fputs(", family ", t->out);
        put_text(t->out, f->family ? f->family : "unknown");
        fprintf(t->out, ", stage %s, %zu tensors, ", bcpm_stage_name(f->stage_detected),
                f->ntensors);
        print_size(t->out, f->size_bytes);
        fputs(", config ", t->out);
        put_text(t->out, f->config_path ? f->config_path : "none");
        fputc('\n', t->out);
    }
}

static void print_rule_table(const struct terminal *t, const struct bcpm_report_rule_row *rows,
                             size_t nrows)
{
    const struct bcpm_finding *items = t->result->findings.items;
    size_t rule_width = strlen("Rule");

    for (size_t i = 0; i < nrows; i++)
        rule_width = name_width(rows[i].rule, rule_width);

    print_heading(t, "Findings by rule");
    fprintf(t->out, "  %-*s  %-8s  %7s  %s\n", (int)rule_width, "Rule", "Severity", "Count",
            "First tensor");
    for (size_t i = 0; i < nrows; i++) {
        const struct bcpm_finding *first = &items[rows[i].first];
        const char *severity = bcpm_severity_name(rows[i].severity);

        fputs("  ", t->out);
        put_padded(t->out, rows[i].rule, (int)rule_width);
        fputs("  ", t->out);
        paint(t, severity_sgr(rows[i].severity), severity);
        fprintf(t->out, "%*s  %7zu  ", (int)(8 - strlen(severity)), "", rows[i].count);
        put_text(t->out, first->tensor ? first->tensor : "-");
        fputc('\n', t->out);
    }
}

/* 1 when message contains word followed by the number n and then no digit ("row 5,"). */
static int names_number(const char *message, const char *word, int64_t n)
{
    char text[48];
    size_t len;

    if (!message)
        return 0;
    len = (size_t)snprintf(text, sizeof(text), "%s %" PRId64, word, n);
    for (const char *p = strstr(message, text); p; p = strstr(p + 1, text)) {
        if (!isdigit((unsigned char)p[len]))
            return 1;
    }
    return 0;
}

/*
 * Position details of a finding, shown with -v: " (row 3, column 17, value 0.25)".
 * A row or column the message already names is not repeated.
 */
static void print_position(FILE *out, const struct bcpm_finding *f)
{
    const char *sep = " (";
    int any = 0;
    int show_row = f->row >= 0 && !names_number(f->message, "row", f->row);
    int show_column = f->column >= 0 && !names_number(f->message, "column", f->column);

    if (show_row) {
        fprintf(out, "%srow %" PRId64, sep, f->row);
        sep = ", ";
        any = 1;
    }
    if (show_column) {
        fprintf(out, "%scolumn %" PRId64, sep, f->column);
        sep = ", ";
        any = 1;
    }
    if (!isnan(f->value)) {
        fprintf(out, "%svalue %.9g", sep, f->value);
        sep = ", ";
        any = 1;
    }
    if (f->has_offset) {
        fprintf(out, "%sbyte offset %" PRIu64, sep, f->offset);
        any = 1;
    }
    if (any)
        fputc(')', out);
}

static void print_finding(const struct terminal *t, const struct bcpm_finding *f)
{
    int verbose = t->options->verbosity > 0;

    fputs("    ", t->out);
    if ((t->result->nfiles > 1 || !f->tensor || verbose) && f->file) {
        put_text(t->out, f->file);
        fputs(": ", t->out);
    }
    if (f->tensor) {
        put_text(t->out, f->tensor);
        fputs(": ", t->out);
    }
    put_text(t->out, f->message);
    if (verbose)
        print_position(t->out, f);
    fputc('\n', t->out);
}

static void print_findings(const struct terminal *t, const struct bcpm_report_rule_row *rows,
                           size_t nrows)
{
    const struct bcpm_findings *list = &t->result->findings;
    int verbose = t->options->verbosity > 0;

    for (size_t i = 0; i < nrows; i++) {
        size_t printed = 0;

        fputs("\n  ", t->out);
        paint(t, SGR_BOLD, rows[i].rule);
        fprintf(t->out, " (%s, %zu)\n", bcpm_severity_name(rows[i].severity), rows[i].count);
        for (size_t k = rows[i].first; k < list->count; k++) {
            const struct bcpm_finding *f = &list->items[k];
            if (strcmp(f->rule ? f->rule : "unknown", rows[i].rule) != 0)
                continue;
            if (!verbose && printed == BCPM_REPORT_FINDINGS_PER_RULE)
                break;
            print_finding(t, f);
            printed++;
        }
        if (printed < rows[i].count)
            fprintf(t->out, "    ... and %zu more (all of them with -v or --format json)\n",
                    rows[i].count - printed);
    }
}

struct offender {
    size_t tensor;
    uint64_t failing_groups;
    uint64_t nonfinite;
    size_t findings;
};

static int compare_offenders(const void *a, const void *b)
{
    const struct offender *x = a, *y = b;
    uint64_t sx = x->failing_groups + x->nonfinite, sy = y->failing_groups + y->nonfinite;

    if (sx != sy)
        return sx > sy ? -1 : 1;
    if (x->findings != y->findings)
        return x->findings > y->findings ? -1 : 1;
    return x->tensor < y->tensor ? -1 : 1;
}

/*
 * Failing groups only count in files detected as pseudo-quantized (or of
 * unknown stage): in a latent checkpoint every group is expected to fail the
 * ternary test, and listing them all would hide the real offenders.
 */
static uint64_t offender_failing_groups(const struct bcpm_check_result *r, size_t tensor)
{
    for (size_t k = 0; k < r->nfiles; k++) {
        const struct bcpm_checked_file *f = &r->files[k];
        if (tensor >= f->first_tensor && tensor - f->first_tensor < f->ntensors) {
            if (f->stage_detected == BCPM_STAGE_LATENT ||
                f->stage_detected == BCPM_STAGE_FINETUNED)
                return 0;
            break;
        }
    }
    return bcpm_report_failing_groups(&r->tensors[tensor]);
}

static int print_offenders(const struct terminal *t)
{
    const struct bcpm_check_result *r = t->result;
    size_t top = t->options->top ? t->options->top : BCPM_REPORT_DEFAULT_TOP;
    struct offender *list;
    size_t n = 0, name_col = strlen("Tensor");

    if (r->ntensors == 0)
        return 0;
    list = calloc(r->ntensors, sizeof(*list));
    if (!list)
        return BCPM_ERR_NOMEM;
    for (size_t i = 0; i < r->ntensors; i++)
        list[i].tensor = i;

    /*
     * Attribute each finding to its tensor through the name index. Info
     * findings describe rather than accuse, so they do not make an offender.
     */
    for (size_t i = 0; i < r->findings.count; i++) {
        const struct bcpm_finding *f = &r->findings.items[i];
        size_t file;
        const struct bcpm_tensor_stats *s;

        if (f->severity < BCPM_SEVERITY_WARNING)
            continue;
        file = bcpm_report_finding_file(r, &t->index, f);
        s = bcpm_report_index_find(&t->index, file, f->tensor);
        if (s)
            list[s - r->tensors].findings++;
    }
    for (size_t i = 0; i < r->ntensors; i++) {
        list[i].failing_groups = offender_failing_groups(r, i);
        list[i].nonfinite = r->tensors[i].nan + r->tensors[i].inf;
        if (list[i].failing_groups || list[i].nonfinite || list[i].findings)
            list[n++] = list[i];
    }
    if (n == 0) {
        free(list);
        return 0;
    }

    qsort(list, n, sizeof(*list), compare_offenders);
    if (n > top)
        n = top;
    for (size_t i = 0; i < n; i++)
        name_col = name_width(r->tensors[list[i].tensor].name, name_col);

    print_heading(t, "Worst offenders");
    fprintf(t->out, "  %-*s  %8s  %21s  %10s\n", (int)name_col, "Tensor", "Findings",
            "Failing groups", "Non-finite");
    for (size_t i = 0; i < n; i++) {
        const struct bcpm_tensor_stats *s = &r->tensors[list[i].tensor];
        char groups[48];

        if (s->ternary_checked)
            snprintf(groups, sizeof(groups), "%" PRIu64 " / %" PRIu64, list[i].failing_groups,
                     s->groups);
        else
            snprintf(groups, sizeof(groups), "-");
        fputs("  ", t->out);
        put_padded(t->out, s->name ? s->name : "?", (int)name_col);
        fprintf(t->out, "  %8zu  %21s  %10" PRIu64 "\n", list[i].findings, groups,
                list[i].nonfinite);
    }
    free(list);
    return 0;
}

static void print_tensor_stats(const struct terminal *t)
{
    const struct bcpm_check_result *r = t->result;

    print_heading(t, "Tensors");
    for (size_t i = 0; i < r->ntensors; i++) {
        const struct bcpm_tensor_stats *s = &r->tensors[i];

        fputs("  ", t->out);
        put_text(t->out, s->name ? s->name : "?");
        fprintf(t->out, " %s ", bcpm_dtype_name(s->dtype));
        print_shape(t->out, s);
        fprintf(t->out,
                " %s: %" PRIu64 " elements, %" PRIu64 " NaN, %" PRIu64
                " Inf, min %.6g, max %.6g, mean %.6g, std %.6g\n",
                bcpm_role_name(s->role), s->numel, s->nan, s->inf, s->min, s->max, s->mean,
                s->std);
        if (!s->ternary_checked)
            continue;
        fprintf(t->out,
                "    groups of %" PRId64 ": %" PRIu64 " of %" PRIu64
                " ternary; codes -1 %.4f, 0 %.4f, +1 %.4f; scale min %.6g, max %.6g, mean "
                "%.6g; %d shard(s) per row\n",
                s->group_size, s->groups_ternary, s->groups, s->code_fraction[0],
                s->code_fraction[1], s->code_fraction[2], s->scale_min, s->scale_max,
                s->scale_mean, s->shards_per_row);
    }
}

static const char *plural(uint64_t n, const char *singular, const char *plural_form)
{
    return n == 1 ? singular : plural_form;
}

static void print_reference(const struct terminal *t)
{
    static const char *const code_labels[] = {"-1", "0", "+1"};
    const struct bcpm_report_options *o = t->options;
    uint64_t elements = 0, matches = 0, boundary = 0, mismatches = 0, scale_bad = 0;
    uint64_t disagreements = 0, not_compared = 0;

    for (size_t i = 0; i < o->nreference; i++) {
        elements += o->reference[i].elements;
        not_compared += o->reference[i].not_compared;
        disagreements += o->reference[i].disagreements;
        matches += o->reference[i].matches;
        boundary += o->reference[i].boundary;
        mismatches += o->reference[i].mismatches;
        scale_bad += o->reference[i].scale_mismatches;
    }
    print_heading(t, "Reference comparison");
    fputs("  against ", t->out);
    put_text(t->out, o->reference_path ? o->reference_path : "the reference");
    fprintf(t->out,
            ": %zu %s, %" PRIu64 " %s, %" PRIu64 " match, %" PRIu64 " boundary, %" PRIu64
            " mismatching %s, %" PRIu64 " %s with scale errors; the float32 and bf16"
            " policies disagree on %" PRIu64 " %s\n",
            o->nreference, plural(o->nreference, "tensor", "tensors"), elements,
            plural(elements, "element", "elements"), matches, boundary, mismatches,
            plural(mismatches, "code", "codes"), scale_bad, plural(scale_bad, "group", "groups"),
            disagreements, plural(disagreements, "element", "elements"));
    if (not_compared)
        fprintf(t->out, "  %" PRIu64 " %s not compared: latent groups with NaN or Inf\n",
                not_compared, plural(not_compared, "element", "elements"));
    if (o->verbosity <= 0)
        return;

    for (size_t i = 0; i < o->nreference; i++) {
        const struct bcpm_report_reference *ref = &o->reference[i];

        fputs("  ", t->out);
        /* Several checkpoints can share one reference: name the one the tensor is in. */
        if (t->result->nfiles > 1 && ref->file < t->result->nfiles) {
            put_text(t->out, t->result->files[ref->file].path);
            fputs(": ", t->out);
        }
        put_text(t->out, ref->name ? ref->name : "?");
        fprintf(t->out,
                ": policy %s, %" PRIu64 " of %" PRIu64 " match, %" PRIu64 " boundary, %" PRIu64
                " mismatching (%" PRIu64 " not a code), %" PRIu64 " not compared; scale error"
                " max %.3g ulp in %" PRIu64 " of %" PRIu64 " %s, %" PRIu64 " at a boundary%s\n",
                ref->policy ? ref->policy : "none", ref->matches, ref->elements, ref->boundary,
                ref->mismatches, ref->not_a_code, ref->not_compared, ref->scale_ulps_max,
                ref->scale_mismatches, ref->groups, plural(ref->groups, "group", "groups"),
                ref->scale_boundary, ref->quantized_twice ? "; looks quantized twice" : "");
        fputs("    stored codes -1 0 +1 per recomputed code:", t->out);
        for (int e = 0; e < 3; e++) {
            fprintf(t->out, " %s [%" PRIu64 " %" PRIu64 " %" PRIu64 "]", code_labels[e],
                    ref->confusion[e][0], ref->confusion[e][1], ref->confusion[e][2]);
        }
        fputc('\n', t->out);
    }
}

static void print_totals(const struct terminal *t)
{
    const struct bcpm_check_result *r = t->result;
    size_t counts[4];
    size_t ternary = 0;
    uint64_t groups = 0, failing = 0, nonfinite = 0;

    bcpm_report_count_severities(r, counts);
    for (size_t i = 0; i < r->ntensors; i++) {
        const struct bcpm_tensor_stats *s = &r->tensors[i];
        if (s->role == BCPM_ROLE_TERNARY)
            ternary++;
        if (s->ternary_checked) {
            groups += s->groups;
            failing += offender_failing_groups(r, i);
        }
        nonfinite += s->nan + s->inf;
    }

    print_heading(t, "Totals");
    fprintf(t->out,
            "  %zu checkpoint(s), %zu tensors (%zu ternary), %" PRIu64 " groups scanned, %" PRIu64
            " failing, %" PRIu64 " non-finite values\n",
            r->nfiles, r->ntensors, ternary, groups, failing, nonfinite);
    fprintf(t->out, "  %zu findings: %zu critical, %zu error, %zu warning, %zu info\n",
            r->findings.count, counts[BCPM_SEVERITY_CRITICAL], counts[BCPM_SEVERITY_ERROR],
            counts[BCPM_SEVERITY_WARNING], counts[BCPM_SEVERITY_INFO]);
}

static double fraction(uint64_t part, uint64_t whole)
{
    return whole ? (double)part / (double)whole : 0.0;
}

/*
 * The export preview of a latent checkpoint: zero fraction and scale range
 * over every previewed tensor, the groups at the eps floor, and with -v one
 * line per tensor.
 */
static void print_preview(const struct terminal *t)
{
    const struct bcpm_report_options *o = t->options;
    uint64_t codes[3] = {0, 0, 0}, groups = 0, floor = 0, floor_tensors = 0;
    double smin = 0, smax = 0, weighted = 0;
    uint64_t scaled_groups = 0;

    for (size_t i = 0; i < o->npreview; i++) {
        const struct bcpm_report_preview *p = &o->preview[i];
        uint64_t finite = p->groups - p->nonfinite_groups;

        for (int c = 0; c < 3; c++)
            codes[c] += p->codes[c];
        groups += p->groups;
        floor += p->eps_floor_groups;
        floor_tensors += p->eps_floor_groups ? 1 : 0;
        if (finite == 0)
            continue;
        if (scaled_groups == 0 || p->scale_min < smin)
            smin = p->scale_min;
        if (scaled_groups == 0 || p->scale_max > smax)
            smax = p->scale_max;
        weighted += p->scale_mean * (double)finite;
        scaled_groups += finite;
    }

    print_heading(t, "Export preview");
    fprintf(t->out,
            "  %zu ternary tensors, %" PRIu64 " groups, %s policy, eps %g: zero fraction %.4f"
            " (codes -1 %.4f, +1 %.4f); scale min %.6g, max %.6g, mean %.6g; %" PRIu64
            " groups in %" PRIu64 " tensors at the eps floor\n",
            o->npreview, groups, o->preview[0].policy, (double)o->preview[0].eps,
            fraction(codes[1], codes[0] + codes[1] + codes[2]),
            fraction(codes[0], codes[0] + codes[1] + codes[2]),
            fraction(codes[2], codes[0] + codes[1] + codes[2]), smin, smax,
            scaled_groups ? weighted / (double)scaled_groups : 0.0, floor, floor_tensors);
    if (o->verbosity <= 0)
        return;

    for (size_t i = 0; i < o->npreview; i++) {
        const struct bcpm_report_preview *p = &o->preview[i];
        const struct bcpm_tensor_stats *ts =
            p->tensor < t->result->ntensors ? &t->result->tensors[p->tensor] : NULL;

        fputs("  ", t->out);
        put_text(t->out, ts && ts->name ? ts->name : "?");
        fprintf(t->out,
                ": zero fraction %.4f, scale min %.6g, max %.6g, mean %.6g, %" PRIu64 " of %" PRIu64
                " groups at the eps floor\n",
                p->zero_fraction, p->scale_min, p->scale_max, p->scale_mean, p->eps_floor_groups,
                p->groups);
    }
}

int bcpm_report_terminal(FILE *out, const struct bcpm_check_result *result,
                         const struct bcpm_report_options *options)
{
    static const struct bcpm_report_options defaults;
    struct terminal t = {out, result, options ? options : &defaults, {result, NULL}};
    struct bcpm_report_rule_row *rows = NULL;
    size_t nrows = 0;
    int rc;

    print_verdict(&t);
    if (t.options->verbosity < 0)
        return ferror(out) ? BCPM_ERR_IO : 0;

    rc = bcpm_report_index_build(&t.index, result);
    if (rc == 0)
        rc = bcpm_report_rule_rows(result, &rows, &nrows);
    if (rc != 0) {
        bcpm_report_index_free(&t.index);
        return rc;
    }

    print_files(&t);
    if (nrows > 0) {
        print_rule_table(&t, rows, nrows);
        print_findings(&t, rows, nrows);
    }
    rc = print_offenders(&t);
    if (rc == 0 && t.options->verbosity > 0)
        print_tensor_stats(&t);
    /* With --reference the section shows even when no tensor could be compared. */
    if (rc == 0 && (t.options->reference || t.options->reference_path))
        print_reference(&t);
    if (rc == 0 && t.options->npreview > 0)
        print_preview(&t);
    if (rc == 0)
        print_totals(&t);

    free(rows);
    bcpm_report_index_free(&t.index);
    if (rc == 0 && ferror(out))
        rc = BCPM_ERR_IO;
    return rc;
}
