/*
 * Findings: what a check (or a reader, for security problems) reports about a
 * checkpoint. A finding is not an error: the tool ran and found something.
 * Each carries a stable rule id ("security.unsafe-global", "ternary.values"),
 * a severity, and where it was found.
 */
#ifndef BCPM_IO_FINDING_H
#define BCPM_IO_FINDING_H

#include <stddef.h>
#include <stdint.h>

enum bcpm_severity {
    BCPM_SEVERITY_INFO = 0,
    BCPM_SEVERITY_WARNING = 1,
    BCPM_SEVERITY_ERROR = 2,
    BCPM_SEVERITY_CRITICAL = 3,
};

struct bcpm_finding {
    char *rule;                   /* stable rule id */
    enum bcpm_severity severity;
    char *file;                   /* file path, or NULL */
    char *tensor;                 /* tensor, zip entry or pickle global, or NULL */
    char *message;                /* one line, what was expected and found */
    int has_offset;
    uint64_t offset;              /* byte offset in file */
    int64_t row, column;          /* position in the tensor, -1 when not applicable */
    double value;                 /* offending value, NAN when not applicable */
};

struct bcpm_findings {
    struct bcpm_finding *items;
    size_t count;
    size_t capacity;
};

/*
 * Append a finding. Strings are copied. Returns the new finding, so callers can
 * set offset, row, column and value, or NULL when memory ran out.
 */
struct bcpm_finding *bcpm_findings_add(struct bcpm_findings *list, const char *rule,
                                       enum bcpm_severity severity, const char *file,
                                       const char *tensor, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

/* Move every finding of src to the end of dst; src is left empty. Returns 0 or -1. */
int bcpm_findings_move(struct bcpm_findings *dst, struct bcpm_findings *src);

/* Free the findings' contents (not list itself). */
void bcpm_findings_clear(struct bcpm_findings *list);

/* "info", "warning", "error", "critical". */
const char *bcpm_severity_name(enum bcpm_severity severity);

/* Parse a severity name; returns 0 or -1. */
int bcpm_severity_from_name(const char *name, enum bcpm_severity *out);

#endif
