/*
 * SARIF 2.1.0 (OASIS Static Analysis Results Interchange Format), the log
 * format code-scanning dashboards read. The log has one run, whose
 * tool.driver lists the rules that produced findings. Each finding becomes one
 * result whose physical location is the checkpoint file and whose logical
 * location is the tensor. Severities map to SARIF levels: critical and error
 * to "error", warning to "warning", info to "note". The original severity
 * stays in properties.
 */
#include "report/report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_util.h"

#define SARIF_SCHEMA "https://json.schemastore.org/sarif-2.1.0.json"

static void set(json_t *object, const char *key, json_t *value, int *ok)
{
    if (json_object_set_new(object, key, value) != 0)
        *ok = 0;
}

static void append(json_t *array, json_t *value, int *ok)
{
    if (json_array_append_new(array, value) != 0)
        *ok = 0;
}

static json_t *text(const char *s)
{
    char *clean = bcpm_report_utf8(s);
    json_t *value;

    if (!clean)
        return NULL;
    value = json_string(clean);
    free(clean);
    return value;
}

static json_t *message(const char *s, int *ok)
{
    json_t *o = json_object();

    set(o, "text", text(s), ok);
    return o;
}

static const char *sarif_level(enum bcpm_severity severity)
{
    switch (severity) {
    case BCPM_SEVERITY_CRITICAL:
    case BCPM_SEVERITY_ERROR:
        return "error";
    case BCPM_SEVERITY_WARNING:
        return "warning";
    default:
        return "note";
    }
}

/*
 * Build a URI reference for a file path (RFC 3986). Relative paths stay
 * relative, so that dashboards resolve them against the repository root, and
 * absolute ones become file:// URIs. Bytes outside the unreserved set and "/" are
 * percent-encoded. Returns a malloc'ed string or NULL.
 */
static char *path_uri(const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)(path ? path : "");
    size_t len = strlen((const char *)p);
    char *out = malloc(3 * len + sizeof("file://"));
    char *o = out;

    if (!out)
        return NULL;
    if (p[0] == '/') {
        memcpy(o, "file://", 7);
        o += 7;
    }
    for (; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

static json_t *rules_array(const struct bcpm_report_options *o,
                           const struct bcpm_report_rule_row *rows, size_t nrows, int *ok)
{
    json_t *rules = json_array();

    for (size_t i = 0; i < nrows; i++) {
        json_t *rule = json_object();
        const char *description = bcpm_report_rule_description(o, rows[i].rule);
        json_t *config = json_object();

        set(rule, "id", text(rows[i].rule), ok);
        set(rule, "shortDescription", message(description ? description : rows[i].rule, ok), ok);
        set(config, "level", json_string(sarif_level(rows[i].severity)), ok);
        set(rule, "defaultConfiguration", config, ok);
        append(rules, rule, ok);
    }
    return rules;
}

static size_t rule_index(const struct bcpm_report_rule_row *rows, size_t nrows, const char *rule)
{
    for (size_t i = 0; i < nrows; i++) {
        if (strcmp(rows[i].rule, rule) == 0)
            return i;
    }
    return 0;
}

static json_t *location(const struct bcpm_check_result *r, const struct bcpm_report_index *index,
                        const struct bcpm_finding *f, int *ok)
{
    json_t *loc = json_object();
    const char *path = f->file;

    if (!path && r->nfiles)
        path = r->files[bcpm_report_finding_file(r, index, f)].path;

    if (path) {
        json_t *physical = json_object();
        json_t *artifact = json_object();
        char *uri = path_uri(path);

        set(artifact, "uri", uri ? text(uri) : NULL, ok);
        free(uri);
        set(physical, "artifactLocation", artifact, ok);
        if (f->has_offset) {
            json_t *region = json_object();
            set(region, "byteOffset", json_integer((json_int_t)f->offset), ok);
            set(physical, "region", region, ok);
        }
        set(loc, "physicalLocation", physical, ok);
    }
    if (f->tensor) {
        json_t *logical = json_array();
        json_t *name = json_object();

        set(name, "name", text(f->tensor), ok);
        set(name, "kind", json_string("variable"), ok);
        append(logical, name, ok);
        set(loc, "logicalLocations", logical, ok);
    }
    return loc;
}

static json_t *result_object(const struct bcpm_check_result *r,
                             const struct bcpm_report_index *index,
                             const struct bcpm_report_rule_row *rows, size_t nrows,
                             const struct bcpm_finding *f, int *ok)
{
    const char *rule = f->rule ? f->rule : "unknown";
    json_t *res = json_object();
    json_t *locations = json_array();
    json_t *properties = json_object();

    append(locations, location(r, index, f, ok), ok);
    set(properties, "severity", json_string(bcpm_severity_name(f->severity)), ok);
    if (f->row >= 0)
        set(properties, "row", json_integer(f->row), ok);
    if (f->column >= 0)
        set(properties, "column", json_integer(f->column), ok);
    if (isfinite(f->value))
        set(properties, "value", json_real(f->value), ok);

    set(res, "ruleId", text(rule), ok);
    set(res, "ruleIndex", json_integer((json_int_t)rule_index(rows, nrows, rule)), ok);
    set(res, "level", json_string(sarif_level(f->severity)), ok);
    set(res, "message", message(f->message ? f->message : rule, ok), ok);
    set(res, "locations", locations, ok);
    set(res, "properties", properties, ok);
    return res;
}

static json_t *build_log(const struct bcpm_check_result *r, const struct bcpm_report_options *o,
                         const struct bcpm_report_index *index,
                         const struct bcpm_report_rule_row *rows, size_t nrows, int *ok)
{
    json_t *log = json_object();
    json_t *runs = json_array();
    json_t *run = json_object();
    json_t *tool = json_object();
    json_t *driver = json_object();
    json_t *results = json_array();

    set(driver, "name", text(o->tool_name ? o->tool_name : "bitcpm-check"), ok);
    set(driver, "version", text(o->tool_version ? o->tool_version : BCPM_VERSION), ok);
    set(driver, "rules", rules_array(o, rows, nrows, ok), ok);
    set(tool, "driver", driver, ok);

    for (size_t i = 0; i < r->findings.count; i++)
        append(results, result_object(r, index, rows, nrows, &r->findings.items[i], ok), ok);

    set(run, "tool", tool, ok);
    set(run, "results", results, ok);
    append(runs, run, ok);
    set(log, "$schema", json_string(SARIF_SCHEMA), ok);
    set(log, "version", json_string("2.1.0"), ok);
    set(log, "runs", runs, ok);
    return log;
}

int bcpm_report_sarif(const char *path, const struct bcpm_check_result *result,
                      const struct bcpm_report_options *options, struct bcpm_error *err)
{
    static const struct bcpm_report_options defaults;
    const struct bcpm_report_options *o = options ? options : &defaults;
    struct bcpm_report_index index = {result, NULL};
    struct bcpm_report_rule_row *rows = NULL;
    size_t nrows = 0;
    json_t *log = NULL;
    int ok = 1, rc;

    rc = bcpm_report_index_build(&index, result);
    if (rc == 0)
        rc = bcpm_report_rule_rows(result, &rows, &nrows);
    if (rc == 0)
        log = build_log(result, o, &index, rows, nrows, &ok);
    if (rc != 0 || !log || !ok) {
        rc = bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL,
                            "out of memory while building the SARIF report");
        goto done;
    }

    errno = 0;
    if (json_dump_file(log, path, JSON_INDENT(2)) != 0)
        rc = bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "cannot write the SARIF report: %s",
                            errno ? strerror(errno) : "write failed");

done:
    json_decref(log);
    free(rows);
    bcpm_report_index_free(&index);
    return rc;
}
