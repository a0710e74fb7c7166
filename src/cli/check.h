/*
 * Internal interface of the bitcpm-check command: the progress bar, the audit
 * hookup and the --reference comparison, each in its own check_*.c file.
 * See man/bitcpm-check.1 for the user side.
 */
#ifndef BCPM_CLI_CHECK_H
#define BCPM_CLI_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"
#include "report/report.h"
#include "rules/engine.h"
#include "tensor/catalog.h"

#define CHECK_PROGRAM "bitcpm-check"

/* ---- progress bar (check_progress.c) ---- */

/*
 * A one-line progress bar on stderr. It appears only after the run has taken
 * CHECK_PROGRESS_DELAY seconds, redraws at most CHECK_PROGRESS_RATE times a
 * second, and is erased before anything else is printed.
 */
#define CHECK_PROGRESS_DELAY 1.0
#define CHECK_PROGRESS_RATE 10.0

struct check_progress {
    int enabled;         /* stderr is a terminal and -q was not given */
    const char *label;   /* the path being checked */
    double started;      /* monotonic seconds when the run began */
    double last_draw;
    size_t drawn;        /* characters on the line now, 0 when clear */
};

void check_progress_init(struct check_progress *p, int enabled);

/* Name the path whose bytes the next updates count. */
void check_progress_begin(struct check_progress *p, const char *label);

/* The engine's progress callback; ctx is a struct check_progress. */
void check_progress_update(void *ctx, uint64_t done_bytes, uint64_t total_bytes);

/* Erase the bar if it is shown. */
void check_progress_clear(struct check_progress *p);

/* ---- audit hookup (check_audit.c) ---- */

struct bcpm_digest_stream;        /* audit/stream.h */
struct bcpm_quant_digest;         /* quant/quant.h */

/* A content digest of one catalog's files, fed by the check's own pass over the data. */
struct check_digest_job {
    const struct bcpm_catalog *catalog;
    int sha256;
    int started;
    int rc;
    struct bcpm_error err;
    struct bcpm_audit_file_digest digest; /* parts are owned until appended */
    struct bcpm_digest_stream *stream;    /* open between start and finish */
    const struct bcpm_quant_digest *hook; /* for bcpm_check_options.digest; NULL when off */
};

struct check_audit {
    int enabled;
    int sha256;
    char path[4096];
    struct bcpm_audit *db;
    struct bcpm_audit_run_info info;
    struct bcpm_audit_file_digest *digests; /* one per result file, parts owned */
    size_t ndigests, capacity;
};

/*
 * Decide the database path (db_option, else $BITCPM_AUDIT_DB, else the XDG
 * default), open it and start the run record. With enabled 0 nothing happens.
 * Returns CLI_CONTINUE or CLI_EXIT_FAILED after printing why.
 */
int check_audit_open(struct check_audit *a, int enabled, const char *db_option, int sha256,
                     int argc, char **argv);

/*
 * Start the digest of catalog's files, unless the audit is off; pass
 * job->hook to bcpm_check_catalog as bcpm_check_options.digest.
 */
void check_digest_start(struct check_digest_job *job, const struct check_audit *a,
                        const struct bcpm_catalog *catalog);

/*
 * Finish the digest (hashing what the check did not read) and append it for
 * every result file added since the catalog was checked (first_file up to
 * result->nfiles). Returns CLI_CONTINUE or CLI_EXIT_FAILED after printing why.
 */
int check_digest_finish(struct check_digest_job *job, struct check_audit *a,
                        const struct bcpm_check_result *result, size_t first_file);

/*
 * Write the run with its exit code. Returns CLI_CONTINUE, or CLI_EXIT_FAILED
 * after printing why: a release gate must not lose a record silently.
 */
int check_audit_record(struct check_audit *a, const struct bcpm_check_result *result,
                       int exit_code);

void check_audit_close(struct check_audit *a);

/* ---- --reference LATENT (check_reference.c) ---- */

struct bcpm_reference_run;        /* quant/reference.h */

struct check_reference {
    const char *path;              /* --reference, NULL when off */
    const char *compute;           /* "float32", "bf16" or "auto" */
    int64_t group_size;            /* 0: the rule's */
    double eps;                    /* 0: the rule's */
    int threads;                   /* 0: one per online CPU */
    struct bcpm_catalog *latent;   /* opened on first use, shared by every PATH */
    int latent_failed;             /* opening it failed; not retried */
    int latent_reported;           /* and that was reported (once) */
    struct bcpm_error latent_error;
    /* The comparison of the PATH being checked, run inside the engine's value pass. */
    struct bcpm_reference_run *run;
    int64_t run_group_size;
    struct bcpm_check_tensor_pass pass;
    struct bcpm_report_reference *tensors; /* per-tensor numbers for the reports */
    char **names;                  /* owned copies of tensors[i].name and policy */
    size_t ntensors, capacity;
    struct bcpm_report_preview *previews; /* latent-only mode, one per ternary tensor */
    size_t npreviews, preview_capacity;
};

void check_reference_init(struct check_reference *r, const char *path, const char *compute,
                          int64_t group_size, double eps, int threads);

/*
 * Before the engine checks catalog: open the latent reference and let the
 * comparison run inside the engine's value pass (check_options->tensor_pass),
 * so that each file is read once. Without --reference it leaves
 * check_options alone.
 */
void check_reference_begin(struct check_reference *r, const struct bcpm_ruleset *rs,
                           const struct bcpm_catalog *catalog,
                           struct bcpm_check_options *check_options);

/* Drop what check_reference_begin set up for the PATH just checked. */
void check_reference_end(struct check_reference *r);

/*
 * Compare the ternary tensors of catalog (role TERNARY in result, files from
 * first_file on) with the fake-quant of the latent reference. The findings
 * go to result and the per-tensor numbers are kept for the reports. Does
 * nothing without --reference. Returns CLI_CONTINUE or CLI_EXIT_FAILED after
 * printing why; a reference that cannot be read also adds a critical
 * format.unreadable finding naming its path.
 */
int check_reference_compare(struct check_reference *r, const struct bcpm_ruleset *rs,
                            const struct bcpm_catalog *catalog,
                            struct bcpm_check_result *result, size_t first_file);

/*
 * Without --reference, preview the export of a latent or finetuned
 * checkpoint: recompute the fake-quant of every ternary tensor (files from
 * first_file on) without storing it, keep the per-tensor numbers for the
 * reports and add an info quant.eps-floor finding for each tensor with
 * groups whose scale would be eps. Does nothing for other stages or with
 * --reference. A tensor the preview cannot cover is named on stderr and
 * skipped. Returns CLI_CONTINUE, or CLI_EXIT_FAILED when out of memory.
 */
int check_reference_preview(struct check_reference *r, const struct bcpm_ruleset *rs,
                            const struct bcpm_catalog *catalog,
                            struct bcpm_check_result *result, size_t first_file);

/* Point the report options at the per-tensor numbers (comparison or preview). */
void check_reference_report(const struct check_reference *r, struct bcpm_report_options *o);

void check_reference_free(struct check_reference *r);

#endif
