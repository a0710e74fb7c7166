/*
 * Helpers shared by the report writers in src/report/: severity counts, the
 * per-rule summary, mapping a finding to its checked file and tensor, and
 * making untrusted names safe for UTF-8 JSON and XML. Not part of the public
 * report API (report.h).
 */
#ifndef BCPM_REPORT_UTIL_H
#define BCPM_REPORT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "report/report.h"

/* One row of the per-rule summary. */
struct bcpm_report_rule_row {
    const char *rule;
    enum bcpm_severity severity;  /* highest severity among its findings */
    size_t count;
    size_t first;                 /* index of its first finding in result->findings */
};

struct bcpm_report_index_entry {
    const char *name;
    size_t tensor;                /* index into result->tensors */
};

/* Name lookup over result->tensors. */
struct bcpm_report_index {
    const struct bcpm_check_result *result;
    struct bcpm_report_index_entry *entries; /* sorted by name, then index; owned */
};

/* Count findings per severity into counts[0..3] (info .. critical). */
void bcpm_report_count_severities(const struct bcpm_check_result *result, size_t counts[4]);

/*
 * Build the per-rule summary, highest severity first, then by rule id.
 * *out is malloc'ed (free it); *nout rows. Returns 0 or BCPM_ERR_NOMEM.
 */
int bcpm_report_rule_rows(const struct bcpm_check_result *result,
                          struct bcpm_report_rule_row **out, size_t *nout);

/*
 * The stage of the whole run: the detected stage when every file agrees,
 * "mixed" when they differ, "unknown" for no files.
 */
const char *bcpm_report_overall_stage(const struct bcpm_check_result *result);

/* "pass" or "fail". */
const char *bcpm_report_verdict(const struct bcpm_check_result *result);

/*
 * Index of the checked file a finding belongs to: the file whose path equals
 * or contains finding->file, else the file holding a tensor of that name,
 * else 0.
 */
size_t bcpm_report_finding_file(const struct bcpm_check_result *result,
                                const struct bcpm_report_index *index,
                                const struct bcpm_finding *finding);

/*
 * Like bcpm_report_finding_file, and returns 1 when the finding belongs to a
 * checked file, 0 when it names a file that none of them holds (a checkpoint
 * or reference that could not be read), where *out is only the fallback 0.
 */
int bcpm_report_finding_file_found(const struct bcpm_check_result *result,
                                   const struct bcpm_report_index *index,
                                   const struct bcpm_finding *finding, size_t *out);

int bcpm_report_index_build(struct bcpm_report_index *index,
                            const struct bcpm_check_result *result);
void bcpm_report_index_free(struct bcpm_report_index *index);

/* The statistics of tensor name inside checked file file_index, or NULL. */
const struct bcpm_tensor_stats *bcpm_report_index_find(const struct bcpm_report_index *index,
                                                       size_t file_index, const char *name);

/*
 * The tensor group of a finding for JUnit test cases: the role name of its
 * tensor ("ternary", "norm", ...), or "checkpoint" when the finding names no
 * known tensor.
 */
const char *bcpm_report_finding_group(const struct bcpm_check_result *result,
                                      const struct bcpm_report_index *index,
                                      const struct bcpm_finding *finding);

/*
 * Length of the valid UTF-8 sequence at text (1 to 4), or 0 when the bytes
 * there are not one: overlong forms, surrogates and code points above
 * U+10FFFF are invalid (RFC 3629). text must be NUL-terminated.
 */
size_t bcpm_report_utf8_sequence(const char *text);

/*
 * A copy of s that is valid UTF-8: each byte that does not start a valid
 * sequence becomes U+FFFD. Names come from untrusted files, and jansson and
 * XML parsers both reject invalid UTF-8. NULL becomes "". Returns NULL only
 * when memory ran out.
 */
char *bcpm_report_utf8(const char *s);

/*
 * Write s to out as XML character data or attribute content: valid UTF-8,
 * markup characters escaped, and the control characters XML 1.0 forbids
 * written as U+FFFD.
 */
void bcpm_report_xml_escape(FILE *out, const char *s);

/* The failing groups a tensor shows, 0 when it was not scanned for ternary values. */
uint64_t bcpm_report_failing_groups(const struct bcpm_tensor_stats *stats);

#endif
