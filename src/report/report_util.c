/* Helpers shared by the report writers; see report_util.h. */
#include "report/report_util.h"

#include <stdlib.h>
#include <string.h>

void bcpm_report_count_severities(const struct bcpm_check_result *result, size_t counts[4])
{
    for (int i = 0; i < 4; i++)
        counts[i] = 0;
    for (size_t i = 0; i < result->findings.count; i++) {
        unsigned severity = (unsigned)result->findings.items[i].severity;
        if (severity > BCPM_SEVERITY_CRITICAL)
            severity = BCPM_SEVERITY_CRITICAL;
        counts[severity]++;
    }
}

static int compare_rule_rows(const void *a, const void *b)
{
    const struct bcpm_report_rule_row *x = a, *y = b;

    if (x->severity != y->severity)
        return x->severity > y->severity ? -1 : 1;
    return strcmp(x->rule, y->rule);
}

int bcpm_report_rule_rows(const struct bcpm_check_result *result,
                          struct bcpm_report_rule_row **out, size_t *nout)
{
    struct bcpm_report_rule_row *rows;
    size_t nrows = 0;

    *out = NULL;
    *nout = 0;
    if (result->findings.count == 0)
        return 0;
    rows = calloc(result->findings.count, sizeof(*rows));
    if (!rows)
        return BCPM_ERR_NOMEM;

    /* Rules are few (tens), so a linear search per finding stays cheap. */
    for (size_t i = 0; i < result->findings.count; i++) {
        const struct bcpm_finding *f = &result->findings.items[i];
        const char *rule = f->rule ? f->rule : "unknown";
        size_t r = 0;

        while (r < nrows && strcmp(rows[r].rule, rule) != 0)
            r++;
        if (r == nrows) {
            rows[r].rule = rule;
            rows[r].severity = f->severity;
            rows[r].first = i;
            nrows++;
        }
        rows[r].count++;
        if (f->severity > rows[r].severity)
            rows[r].severity = f->severity;
    }

    qsort(rows, nrows, sizeof(*rows), compare_rule_rows);
    *out = rows;
    *nout = nrows;
    return 0;
}

/* Paths that could not be opened (no format) have no stage and are left out. */
const char *bcpm_report_overall_stage(const struct bcpm_check_result *result)
{
    const struct bcpm_checked_file *first = NULL;

    for (size_t i = 0; i < result->nfiles; i++) {
        const struct bcpm_checked_file *f = &result->files[i];

        if (!f->format)
            continue;
        if (!first)
            first = f;
        else if (f->stage_detected != first->stage_detected)
            return "mixed";
    }
    return first ? bcpm_stage_name(first->stage_detected) : "unknown";
}

const char *bcpm_report_verdict(const struct bcpm_check_result *result)
{
    return result->failed ? "fail" : "pass";
}

/* 1 when path is dir itself or lies below it. */
static int path_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    if (strncmp(path, dir, n) != 0)
        return 0;
    return path[n] == '\0' || path[n] == '/' || (n > 0 && dir[n - 1] == '/');
}

int bcpm_report_finding_file_found(const struct bcpm_check_result *result,
                                   const struct bcpm_report_index *index,
                                   const struct bcpm_finding *finding, size_t *out)
{
    *out = bcpm_report_finding_file(result, index, finding);
    if (!finding->file)
        return 1;
    for (size_t i = 0; i < result->nfiles; i++) {
        if (result->files[i].path && path_within(finding->file, result->files[i].path))
            return 1;
    }
    for (size_t i = 0; i < result->ntensors; i++) {
        if (result->tensors[i].file && strcmp(result->tensors[i].file, finding->file) == 0)
            return 1;
    }
    return 0;
}

size_t bcpm_report_finding_file(const struct bcpm_check_result *result,
                                const struct bcpm_report_index *index,
                                const struct bcpm_finding *finding)
{
    if (finding->file) {
        for (size_t i = 0; i < result->nfiles; i++) {
            if (result->files[i].path && path_within(finding->file, result->files[i].path))
                return i;
        }
        for (size_t i = 0; i < result->ntensors; i++) {
            const struct bcpm_tensor_stats *t = &result->tensors[i];
            if (t->file && strcmp(t->file, finding->file) == 0) {
                for (size_t k = 0; k < result->nfiles; k++) {
                    const struct bcpm_checked_file *cf = &result->files[k];
                    if (i >= cf->first_tensor && i - cf->first_tensor < cf->ntensors)
                        return k;
                }
            }
        }
    }

    if (finding->tensor) {
        for (size_t k = 0; k < result->nfiles; k++) {
            if (bcpm_report_index_find(index, k, finding->tensor))
                return k;
        }
    }
    return 0;
}

static int compare_entries(const void *a, const void *b)
{
    const struct bcpm_report_index_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    if (c != 0)
        return c;
    return x->tensor < y->tensor ? -1 : 1;
}

int bcpm_report_index_build(struct bcpm_report_index *index,
                            const struct bcpm_check_result *result)
{
    index->result = result;
    index->entries = NULL;
    if (result->ntensors == 0)
        return 0;
    index->entries = malloc(result->ntensors * sizeof(*index->entries));
    if (!index->entries)
        return BCPM_ERR_NOMEM;
    for (size_t i = 0; i < result->ntensors; i++) {
        index->entries[i].name = result->tensors[i].name ? result->tensors[i].name : "";
        index->entries[i].tensor = i;
    }
    qsort(index->entries, result->ntensors, sizeof(*index->entries), compare_entries);
    return 0;
}

void bcpm_report_index_free(struct bcpm_report_index *index)
{
    free(index->entries);
    index->entries = NULL;
}

const struct bcpm_tensor_stats *bcpm_report_index_find(const struct bcpm_report_index *index,
                                                       size_t file_index, const char *name)
{
    const struct bcpm_check_result *r = index->result;
    const struct bcpm_checked_file *cf;
    size_t lo = 0, hi = r->ntensors;

    if (!name || !index->entries || file_index >= r->nfiles)
        return NULL;
    cf = &r->files[file_index];

    /* Lower bound of name, then walk the run of equal names (one per file at most). */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(index->entries[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < r->ntensors; i++) {
        size_t t = index->entries[i].tensor;
        if (strcmp(index->entries[i].name, name) != 0)
            break;
        if (t >= cf->first_tensor && t - cf->first_tensor < cf->ntensors)
            return &r->tensors[t];
    }
    return NULL;
}

const char *bcpm_report_finding_group(const struct bcpm_check_result *result,
                                      const struct bcpm_report_index *index,
                                      const struct bcpm_finding *finding)
{
    size_t file = bcpm_report_finding_file(result, index, finding);
    const struct bcpm_tensor_stats *t = bcpm_report_index_find(index, file, finding->tensor);

    return t ? bcpm_role_name(t->role) : "checkpoint";
}

size_t bcpm_report_utf8_sequence(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;

    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;

    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    }
    return n;
}

static const char replacement[] = "\xEF\xBF\xBD";

char *bcpm_report_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t len = strlen((const char *)p);
    char *out, *o;

    /* Each invalid byte grows to three, so 3 * len + 1 always suffices. */
    out = malloc(3 * len + 1);
    if (!out)
        return NULL;
    o = out;
    while (*p) {
        size_t n = bcpm_report_utf8_sequence((const char *)p);
        if (n == 0) {
            memcpy(o, replacement, 3);
            o += 3;
            p++;
            continue;
        }
        memcpy(o, p, n);
        o += n;
        p += n;
    }
    *o = '\0';
    return out;
}

void bcpm_report_xml_escape(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    while (*p) {
        size_t n = bcpm_report_utf8_sequence((const char *)p);

        if (n == 0) {
            fputs(replacement, out);
            p++;
            continue;
        }
        if (n == 1) {
            switch (*p) {
            case '&': fputs("&amp;", out); break;
            case '<': fputs("&lt;", out); break;
            case '>': fputs("&gt;", out); break;
            case '"': fputs("&quot;", out); break;
            case '\'': fputs("&apos;", out); break;
            case '\t': fputs("&#9;", out); break;
            case '\n': fputs("&#10;", out); break;
            case '\r': fputs("&#13;", out); break;
            default:
                if (*p < 0x20 || *p == 0x7F)
                    fputs(replacement, out);
                else
                    fputc(*p, out);
            }
            p++;
            continue;
        }

        /* U+FFFE and U+FFFF are not XML characters either. */
        if (n == 3 && p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF))
            fputs(replacement, out);
        else
            fwrite(p, 1, n, out);
        p += n;
    }
}

uint64_t bcpm_report_failing_groups(const struct bcpm_tensor_stats *stats)
{
    if (!stats->ternary_checked || stats->groups < stats->groups_ternary)
        return 0;
    return stats->groups - stats->groups_ternary;
}
