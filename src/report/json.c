/*
 * The JSON report of bitcpm-check, schema_version 1. The schema is stable:
 * keys are only ever added, never renamed or removed, and a change of meaning
 * bumps schema_version. Every field is documented in docs/USER_GUIDE.md and
 * bitcpm-check(1).
 *
 * JSON has no NaN or Inf, so non-finite statistics are written as null, and a
 * finding's value as the strings "Infinity" or "-Infinity" (NaN and "not
 * applicable" are both null, because findings store "not applicable" as NaN).
 */
#include "report/report.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "report/report_util.h"

/* The schema version written as "schema_version". */
#define JSON_SCHEMA_VERSION 1

/*
 * Builders return NULL when memory ran out; json_object_set_new and
 * json_array_append_new accept NULL and fail, which the caller detects by
 * checking their result. set() collects those failures in *ok.
 */
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

/* A JSON string of untrusted text (made valid UTF-8), or null for NULL. */
static json_t *text(const char *s)
{
    char *clean;
    json_t *value;

    if (!s)
        return json_null();
    clean = bcpm_report_utf8(s);
    if (!clean)
        return NULL;
    value = json_string(clean);
    free(clean);
    return value;
}

static json_t *number(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *count(uint64_t n)
{
    /* json_int_t is long long; counts above 2^63 cannot occur in a checkpoint's tensors. */
    return json_integer((json_int_t)n);
}

static json_t *finding_value(double x)
{
    if (isnan(x))
        return json_null();
    if (isinf(x))
        return json_string(x > 0 ? "Infinity" : "-Infinity");
    return json_real(x);
}

static json_t *file_object(const struct bcpm_checked_file *f, int *ok)
{
    json_t *o = json_object();

    set(o, "path", text(f->path), ok);
    set(o, "format", text(f->format), ok);
    set(o, "family", text(f->family), ok);
    set(o, "config", text(f->config_path), ok);
    set(o, "stage", json_string(bcpm_stage_name(f->stage_detected)), ok);
    set(o, "size_bytes", count(f->size_bytes), ok);
    set(o, "mtime_ns", json_integer((json_int_t)f->mtime_ns), ok);
    set(o, "tensors", count(f->ntensors), ok);
    return o;
}

static json_t *finding_object(const struct bcpm_finding *f, int *ok)
{
    json_t *o = json_object();

    set(o, "rule", text(f->rule), ok);
    set(o, "severity", json_string(bcpm_severity_name(f->severity)), ok);
    set(o, "file", text(f->file), ok);
    set(o, "tensor", text(f->tensor), ok);
    set(o, "message", text(f->message), ok);
    set(o, "row", f->row >= 0 ? json_integer(f->row) : json_null(), ok);
    set(o, "column", f->column >= 0 ? json_integer(f->column) : json_null(), ok);
    set(o, "offset", f->has_offset ? count(f->offset) : json_null(), ok);
    set(o, "value", finding_value(f->value), ok);
    return o;
}

static json_t *ternary_object(const struct bcpm_tensor_stats *s, int *ok)
{
    json_t *o = json_object();
    json_t *codes = json_object();
    json_t *scale = json_object();

    set(codes, "-1", number(s->code_fraction[0]), ok);
    set(codes, "0", number(s->code_fraction[1]), ok);
    set(codes, "+1", number(s->code_fraction[2]), ok);
    set(scale, "min", number(s->scale_min), ok);
    set(scale, "max", number(s->scale_max), ok);
    set(scale, "mean", number(s->scale_mean), ok);

    set(o, "group_size", json_integer(s->group_size), ok);
    set(o, "groups", count(s->groups), ok);
    set(o, "groups_ternary", count(s->groups_ternary), ok);
    set(o, "code_fraction", codes, ok);
    set(o, "scale", scale, ok);
    set(o, "shards_per_row", json_integer(s->shards_per_row), ok);
    return o;
}

static json_t *preview_object(const struct bcpm_report_preview *p, int *ok)
{
    json_t *o, *codes, *scale;

    if (!p)
        return json_null();
    o = json_object();
    codes = json_object();
    scale = json_object();
    set(codes, "-1", count(p->codes[0]), ok);
    set(codes, "0", count(p->codes[1]), ok);
    set(codes, "+1", count(p->codes[2]), ok);
    set(scale, "min", number(p->scale_min), ok);
    set(scale, "max", number(p->scale_max), ok);
    set(scale, "mean", number(p->scale_mean), ok);

    set(o, "policy", text(p->policy), ok);
    set(o, "eps", number((double)p->eps), ok);
    set(o, "group_size", count(p->group_size), ok);
    set(o, "groups", count(p->groups), ok);
    set(o, "codes", codes, ok);
    set(o, "zero_fraction", number(p->zero_fraction), ok);
    set(o, "scale", scale, ok);
    set(o, "eps_floor_groups", count(p->eps_floor_groups), ok);
    set(o, "first_eps_floor_row",
        p->first_eps_floor_row >= 0 ? json_integer(p->first_eps_floor_row) : json_null(), ok);
    set(o, "nonfinite_groups", count(p->nonfinite_groups), ok);
    return o;
}

/* The preview of tensor index i, or NULL. */
static const struct bcpm_report_preview *preview_of(const struct bcpm_report_options *o, size_t i)
{
    for (size_t k = 0; k < o->npreview; k++) {
        if (o->preview[k].tensor == i)
            return &o->preview[k];
    }
    return NULL;
}

static json_t *tensor_object(const struct bcpm_tensor_stats *s,
                             const struct bcpm_report_preview *preview, int *ok)
{
    json_t *o = json_object();
    json_t *shape = json_array();

    for (int d = 0; d < s->ndim && d < BCPM_MAX_DIMS; d++)
        append(shape, json_integer(s->shape[d]), ok);

    set(o, "name", text(s->name), ok);
    set(o, "file", text(s->file), ok);
    set(o, "dtype", json_string(bcpm_dtype_name(s->dtype)), ok);
    set(o, "shape", shape, ok);
    set(o, "role", json_string(bcpm_role_name(s->role)), ok);
    set(o, "numel", count(s->numel), ok);
    set(o, "nan", count(s->nan), ok);
    set(o, "inf", count(s->inf), ok);
    set(o, "min", number(s->min), ok);
    set(o, "max", number(s->max), ok);
    set(o, "mean", number(s->mean), ok);
    set(o, "std", number(s->std), ok);
    set(o, "ternary", s->ternary_checked ? ternary_object(s, ok) : json_null(), ok);
    set(o, "preview", preview_object(preview, ok), ok);
    return o;
}

static json_t *reference_object(const struct bcpm_check_result *r,
                                 const struct bcpm_report_reference *ref, int *ok)
{
    json_t *o = json_object();
    json_t *confusion = json_array();

    for (int e = 0; e < 3; e++) {
        json_t *row = json_array();
        for (int s = 0; s < 3; s++)
            append(row, count(ref->confusion[e][s]), ok);
        append(confusion, row, ok);
    }

    set(o, "name", text(ref->name), ok);
    set(o, "file", text(ref->file < r->nfiles ? r->files[ref->file].path : NULL), ok);
    set(o, "policy", text(ref->policy), ok);
    set(o, "elements", count(ref->elements), ok);
    set(o, "matches", count(ref->matches), ok);
    set(o, "boundary", count(ref->boundary), ok);
    set(o, "policy_disagreements", count(ref->disagreements), ok);
    set(o, "mismatches", count(ref->mismatches), ok);
    set(o, "not_compared", count(ref->not_compared), ok);
    set(o, "not_a_code", count(ref->not_a_code), ok);
    set(o, "confusion", confusion, ok);
    set(o, "groups", count(ref->groups), ok);
    set(o, "scale_mismatches", count(ref->scale_mismatches), ok);
    set(o, "scale_boundary", count(ref->scale_boundary), ok);
    set(o, "scale_ulps_max", number(ref->scale_ulps_max), ok);
    set(o, "quantized_twice", json_boolean(ref->quantized_twice), ok);
    return o;
}

static json_t *summary_object(const struct bcpm_check_result *r, int *ok)
{
    json_t *o = json_object();
    size_t counts[4];

    bcpm_report_count_severities(r, counts);
    set(o, "findings", count(r->findings.count), ok);
    set(o, "critical", count(counts[BCPM_SEVERITY_CRITICAL]), ok);
    set(o, "error", count(counts[BCPM_SEVERITY_ERROR]), ok);
    set(o, "warning", count(counts[BCPM_SEVERITY_WARNING]), ok);
    set(o, "info", count(counts[BCPM_SEVERITY_INFO]), ok);
    set(o, "tensors", count(r->ntensors), ok);
    return o;
}

static json_t *reference_section(const struct bcpm_check_result *r,
                                  const struct bcpm_report_options *o, int *ok)
{
    json_t *section, *tensors;

    if (!o->reference && !o->reference_path)
        return json_null();
    section = json_object();
    tensors = json_array();
    for (size_t i = 0; i < o->nreference; i++)
        append(tensors, reference_object(r, &o->reference[i], ok), ok);
    set(section, "path", text(o->reference_path), ok);
    set(section, "tensors", tensors, ok);
    return section;
}

static json_t *build_document(const struct bcpm_check_result *r,
                              const struct bcpm_report_options *o, int *ok)
{
    json_t *doc = json_object();
    json_t *tool = json_object();
    json_t *files = json_array();
    json_t *findings = json_array();
    json_t *tensors = json_array();

    set(tool, "name", text(o->tool_name ? o->tool_name : "bitcpm-check"), ok);
    set(tool, "version", text(o->tool_version ? o->tool_version : BCPM_VERSION), ok);
    for (size_t i = 0; i < r->nfiles; i++)
        append(files, file_object(&r->files[i], ok), ok);
    for (size_t i = 0; i < r->findings.count; i++)
        append(findings, finding_object(&r->findings.items[i], ok), ok);
    for (size_t i = 0; i < r->ntensors; i++)
        append(tensors, tensor_object(&r->tensors[i], preview_of(o, i), ok), ok);

    set(doc, "schema_version", json_integer(JSON_SCHEMA_VERSION), ok);
    set(doc, "tool", tool, ok);
    set(doc, "verdict", json_string(bcpm_report_verdict(r)), ok);
    set(doc, "fail_on", json_string(bcpm_severity_name(r->fail_on)), ok);
    set(doc, "stage", json_string(bcpm_report_overall_stage(r)), ok);
    set(doc, "rules_digest", text(r->rules_digest), ok);
    set(doc, "summary", summary_object(r, ok), ok);
    set(doc, "files", files, ok);
    set(doc, "findings", findings, ok);
    set(doc, "tensors", tensors, ok);
    set(doc, "reference", reference_section(r, o, ok), ok);
    return doc;
}

int bcpm_report_json(FILE *out, const struct bcpm_check_result *result,
                     const struct bcpm_report_options *options, struct bcpm_error *err)
{
    static const struct bcpm_report_options defaults;
    const struct bcpm_report_options *o = options ? options : &defaults;
    int ok = 1;
    json_t *doc = build_document(result, o, &ok);

    if (!doc || !ok) {
        json_decref(doc);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL,
                              "out of memory while building the JSON report");
    }

    /* Insertion order is jansson's default since 2.8, so keys appear as documented. */
    if (json_dumpf(doc, out, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) != 0 ||
        fputc('\n', out) == EOF || ferror(out)) {
        json_decref(doc);
        return bcpm_error_set(err, BCPM_ERR_IO, NULL, NULL, "writing the JSON report failed");
    }
    json_decref(doc);
    return 0;
}
