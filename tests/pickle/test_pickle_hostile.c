/*
 * The pickle machine on hostile and broken input. Every committed fixture of
 * fixtures/hostile/pickle/ is checked for its exact status, message words and
 * opcode offset. Further tests cover the security findings for os.system,
 * eval and unknown globals, each resource cap, and the classification of
 * globals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pickle_test_util.h"

/* The file the os.system payloads of gen_hostile_torch.py would create. */
#define MARKER "/tmp/bcpm-pwned-marker"

static json_t *expected;

static int setup(void **state)
{
    (void)state;
    expected = fixture_json("hostile/pickle/expected.json");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(expected);
    return 0;
}

static void assert_contains(const char *text, const char *word)
{
    if (!strstr(text, word))
        fail_msg("expected '%s' in the message: %s", word, text);
}

/* ---------------------------------------------------------------- broken pickles */

struct broken_case {
    const char *name;   /* under fixtures/hostile/pickle/ */
    int code;
    uint64_t offset;    /* of the failing opcode */
    const char *words[3];
};

/* Offsets follow from the fixture bytes written in gen_pickle_fixtures.py:
 * "\x80\x02" (PROTO 2) takes offsets 0 and 1. */
static const struct broken_case broken_cases[] = {
    {"stack_pop_empty.pkl", BCPM_ERR_CORRUPT, 2,
     {"pickle opcode POP", "empty stack", NULL}},
    {"stack_tuple_no_mark.pkl", BCPM_ERR_CORRUPT, 6,
     {"pickle opcode TUPLE", "expected an open MARK", NULL}},
    {"stack_extra_at_stop.pkl", BCPM_ERR_CORRUPT, 6,
     {"pickle opcode STOP", "found 2 value(s) and 0 open MARK(s)", NULL}},
    {"stack_empty_at_stop.pkl", BCPM_ERR_CORRUPT, 2,
     {"pickle opcode STOP", "found 0 value(s)", NULL}},
    {"stack_mark_open_at_stop.pkl", BCPM_ERR_CORRUPT, 5,
     {"pickle opcode STOP", "1 open MARK(s)", NULL}},
    /* 100000 EMPTY_LIST then APPENDs: the 256th APPEND makes depth 257. */
    {"deep_lists.pkl", BCPM_ERR_LIMIT, 2 + 100000 + 255,
     {"pickle opcode APPEND", "max_nesting (256 levels)", NULL}},
    /* 100000 MARK then TUPLEs: the 257th TUPLE makes depth 257. */
    {"deep_tuples.pkl", BCPM_ERR_LIMIT, 2 + 100000 + 256,
     {"pickle opcode TUPLE", "max_nesting (256 levels)", NULL}},
    {"memo_never_stored.pkl", BCPM_ERR_CORRUPT, 5,
     {"pickle opcode BINGET", "memo index 5 was never stored", NULL}},
    /* Tuple i of the DAG expands to 2^(i+1) - 1 values; i = 26 passes 2^26
     * (the default max_opcodes). Iteration i starts at 6 + 8 (i - 1), its
     * TUPLE2 four bytes later. */
    {"shared_expansion.pkl", BCPM_ERR_LIMIT, 6 + 8 * 25 + 4,
     {"pickle opcode TUPLE2", "expand to more than max_opcodes (67108864)", NULL}},
    {"truncated_no_stop.pkl", BCPM_ERR_CORRUPT, 14,
     {"ends after 14 bytes without a STOP opcode", NULL, NULL}},
    {"huge_length.pkl", BCPM_ERR_CORRUPT, 2,
     {"pickle opcode BINUNICODE8", "4611686018427387904 bytes needed, 4 left", NULL}},
    {"unknown_opcode.pkl", BCPM_ERR_CORRUPT, 2,
     {"pickle opcode 0xff", "not an opcode of pickle protocols 0 to 5", NULL}},
    {"ext1.pkl", BCPM_ERR_UNSUPPORTED, 2,
     {"pickle opcode EXT1", "extension registry", NULL}},
    {"next_buffer.pkl", BCPM_ERR_UNSUPPORTED, 2,
     {"pickle opcode NEXT_BUFFER", "out-of-band buffers", NULL}},
    {"bad_utf8.pkl", BCPM_ERR_CORRUPT, 2,
     {"pickle opcode SHORT_BINUNICODE", "invalid UTF-8 at byte 0", NULL}},
    {"recursive_list.pkl", BCPM_ERR_UNSUPPORTED, 7,
     {"pickle opcode APPEND", "recursive structures", "contain itself"}},
};

static void broken_fixtures(void **state)
{
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof(broken_cases) / sizeof(broken_cases[0]); i++) {
        const struct broken_case *c = &broken_cases[i];
        char relative[256];
        struct fixture fx;
        struct bcpm_pickle *pickle = NULL;
        struct bcpm_findings findings = {0};
        struct bcpm_error err;
        int rc;

        snprintf(relative, sizeof(relative), "hostile/pickle/%s", c->name);
        fixture_read(&fx, relative);
        rc = load_fixture(&pickle, &fx, NULL, &findings, &err);
        if (rc != c->code)
            fail_msg("%s: expected status %d, got %d (%s)", c->name, c->code, rc, err.message);
        assert_null(pickle);
        assert_int_equal(err.code, c->code);
        assert_string_equal(err.file, fx.path);
        assert_true(err.has_offset);
        if (err.offset != c->offset)
            fail_msg("%s: expected offset %llu, got %llu", c->name,
                     (unsigned long long)c->offset, (unsigned long long)err.offset);
        for (k = 0; k < 3 && c->words[k]; k++)
            assert_contains(err.message, c->words[k]);
        assert_int_equal(findings.count, 0);
        fixture_free(&fx);
    }
}

/* The truncation cuts the text of a BINUNICODE; the error names that opcode. */
static void truncated_inside_argument(void **state)
{
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_error err;
    json_t *entry = json_object_get(expected, "truncated_string.pkl");

    (void)state;
    fixture_read(&fx, "hostile/pickle/truncated_string.pkl");
    assert_int_equal(load_fixture(&pickle, &fx, NULL, NULL, &err), BCPM_ERR_CORRUPT);
    assert_int_equal(err.offset, json_integer_value(json_object_get(entry, "cut_opcode_offset")));
    assert_contains(err.message, "pickle opcode BINUNICODE");
    assert_contains(err.message, "ends inside the string or bytes argument");
    fixture_free(&fx);
}

/* ---------------------------------------------------------------- dangerous globals */

/* The offset Python's pickletools gave for module.name in a hostile fixture. */
static uint64_t global_offset(const char *fixture, const char *module, const char *name)
{
    json_t *globals = json_object_get(json_object_get(expected, fixture), "globals");
    size_t i;

    for (i = 0; i < json_array_size(globals); i++) {
        json_t *g = json_array_get(globals, i);

        if (strcmp(json_string_value(json_object_get(g, "module")), module) == 0 &&
            strcmp(json_string_value(json_object_get(g, "name")), name) == 0)
            return (uint64_t)json_integer_value(json_object_get(g, "offset"));
    }
    fail_msg("%s names no global %s.%s", fixture, module, name);
    return 0;
}

static void check_os_system(const char *name)
{
    char relative[256];
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;
    const struct bcpm_finding *f;
    const struct bcpm_pickle_value *payload;

    /* A marker left by anything else would hide the proof. */
    unlink(MARKER);
    assert_int_not_equal(access(MARKER, F_OK), 0);

    snprintf(relative, sizeof(relative), "hostile/pickle/%s", name);
    fixture_read(&fx, relative);
    if (load_fixture(&pickle, &fx, NULL, &findings, &err) != 0)
        fail_msg("%s: %s", name, err.message);

    /* Exactly one finding: the torch globals beside it are known. */
    assert_int_equal(findings.count, 1);
    f = &findings.items[0];
    assert_string_equal(f->rule, "security.unsafe-global");
    assert_int_equal(f->severity, BCPM_SEVERITY_CRITICAL);
    assert_string_equal(f->tensor, "posix.system");
    assert_string_equal(f->file, fx.path);
    assert_true(f->has_offset);
    assert_int_equal(f->offset, global_offset(name, "posix", "system"));
    assert_contains(f->message, "pickle global 'posix.system'");
    assert_contains(f->message, "it was not called");

    /* The call is recorded, not made. */
    payload = bcpm_pickle_dict_get(bcpm_pickle_root(pickle), "payload");
    assert_non_null(payload);
    assert_int_equal(payload->kind, BCPM_PICKLE_OBJECT);
    assert_true(bcpm_pickle_is_global(payload, "posix", "system"));
    assert_int_equal(payload->u.object.callable->u.global.cls, BCPM_GLOBAL_DANGEROUS);
    assert_string_equal(payload->u.object.args->u.seq.items[0]->u.text.data,
                        "touch " MARKER);
    assert_int_not_equal(access(MARKER, F_OK), 0);

    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

static void os_system_protocol_2(void **state) { (void)state; check_os_system("os_system_p2.pkl"); }
static void os_system_protocol_4(void **state) { (void)state; check_os_system("os_system_p4.pkl"); }

/* The same pickle read in place from the .pt zip: offsets are file offsets
 * and the message names the zip entry. */
static void os_system_inside_zip(void **state)
{
    json_t *entry = json_object_get(expected, "os_system_p4.pkl");
    const char *pt_entry = json_string_value(json_object_get(entry, "pt_entry"));
    uint64_t base = (uint64_t)json_integer_value(json_object_get(entry, "pt_data_offset"));
    uint64_t size = (uint64_t)json_integer_value(json_object_get(entry, "size"));
    char relative[256];
    struct fixture fx;
    struct bcpm_pickle_input input;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;

    (void)state;
    snprintf(relative, sizeof(relative), "hostile/pickle/%s",
             json_string_value(json_object_get(entry, "pt")));
    fixture_read(&fx, relative);
    assert_true(base + size <= fx.size);

    memset(&input, 0, sizeof(input));
    input.data = fx.data + base;
    input.size = size;
    input.base_offset = base;
    input.file = fx.path;
    input.entry = pt_entry;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&pickle, &input, NULL, &findings, &err), 0);
    assert_int_equal(findings.count, 1);
    assert_int_equal(findings.items[0].offset,
                     base + global_offset("os_system_p4.pkl", "posix", "system"));
    assert_contains(findings.items[0].message, pt_entry);
    assert_int_not_equal(access(MARKER, F_OK), 0);

    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

static void eval_is_unsafe(void **state)
{
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;

    (void)state;
    fixture_read(&fx, "hostile/pickle/eval_p2.pkl");
    assert_int_equal(load_fixture(&pickle, &fx, NULL, &findings, &err), 0);
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].rule, "security.unsafe-global");
    /* Protocol 2 writes the Python 2 name; it maps to builtins.eval. */
    assert_string_equal(findings.items[0].tensor, "__builtin__.eval");
    assert_int_equal(findings.items[0].offset,
                     global_offset("eval_p2.pkl", "__builtin__", "eval"));
    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

static void check_unknown(const char *name, const struct bcpm_open_options *options,
                          size_t want_findings)
{
    char relative[256];
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;
    const struct bcpm_pickle_value *opt;

    snprintf(relative, sizeof(relative), "hostile/pickle/%s", name);
    fixture_read(&fx, relative);
    assert_int_equal(load_fixture(&pickle, &fx, options, &findings, &err), 0);
    assert_int_equal(findings.count, want_findings);
    if (want_findings) {
        assert_string_equal(findings.items[0].rule, "security.unknown-global");
        assert_int_equal(findings.items[0].severity, BCPM_SEVERITY_ERROR);
        assert_string_equal(findings.items[0].tensor, "foo.bar.Baz");
        assert_int_equal(findings.items[0].offset, global_offset(name, "foo.bar", "Baz"));
        assert_contains(findings.items[0].message, "not a known state-dict type");
    }

    /* NEWOBJ of the class plus BUILD of its __dict__. */
    opt = bcpm_pickle_dict_get(bcpm_pickle_root(pickle), "opt");
    assert_int_equal(opt->kind, BCPM_PICKLE_OBJECT);
    assert_true(bcpm_pickle_is_global(opt, "foo.bar", "Baz"));
    assert_non_null(opt->u.object.state);
    assert_int_equal(opt->u.object.callable->u.global.cls,
                     want_findings ? BCPM_GLOBAL_UNKNOWN : BCPM_GLOBAL_ALLOWED);

    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

static void unknown_global_protocol_2(void **state)
{
    (void)state;
    check_unknown("unknown_global_p2.pkl", NULL, 1);
}

static void unknown_global_protocol_4(void **state)
{
    (void)state;
    check_unknown("unknown_global_p4.pkl", NULL, 1);
}

static void allowed_global_no_finding(void **state)
{
    static const struct bcpm_global_rule exact[] = {{"foo.bar", "Baz"}};
    static const struct bcpm_global_rule module[] = {{"argparse", "Namespace"}, {"foo.bar", "*"}};
    static const struct bcpm_global_rule other[] = {{"foo.bar", "Qux"}, {"foo", "*"}};
    struct bcpm_open_options options;

    (void)state;
    memset(&options, 0, sizeof(options));
    options.allowed_globals = exact;
    options.nallowed_globals = 1;
    check_unknown("unknown_global_p2.pkl", &options, 0);

    options.allowed_globals = module;
    options.nallowed_globals = 2;
    check_unknown("unknown_global_p4.pkl", &options, 0);

    /* Another name of the module, or the parent module, does not allow it. */
    options.allowed_globals = other;
    options.nallowed_globals = 2;
    check_unknown("unknown_global_p2.pkl", &options, 1);
}

/* ---------------------------------------------------------------- limits */

static int load_bytes(const void *data, size_t size, const struct bcpm_pickle_limits *limits,
                      struct bcpm_error *err)
{
    struct bcpm_pickle_input input;
    struct bcpm_open_options options;
    struct bcpm_pickle *pickle = NULL;
    int rc;

    memset(&input, 0, sizeof(input));
    input.data = data;
    input.size = size;
    input.file = "limits.pkl";
    memset(&options, 0, sizeof(options));
    if (limits)
        options.limits = *limits;
    bcpm_error_clear(err);
    rc = bcpm_pickle_load(&pickle, &input, &options, NULL, err);
    bcpm_pickle_free(pickle);
    return rc;
}

/* A list of five items: PROTO 2, EMPTY_LIST, MARK, five BININT1, APPENDS, STOP. */
static const char five_items[] = "\x80\x02](K\x01K\x02K\x03K\x04K\x05" "e.";

static void limit_opcodes(void **state)
{
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;

    (void)state;
    limits.max_opcodes = 10;
    assert_int_equal(load_bytes(five_items, sizeof(five_items) - 1, &limits, &err), 0);
    limits.max_opcodes = 9;
    assert_int_equal(load_bytes(five_items, sizeof(five_items) - 1, &limits, &err),
                     BCPM_ERR_LIMIT);
    assert_contains(err.message, "max_opcodes (9 opcodes)");
    assert_int_equal(err.offset, 15); /* STOP, the tenth opcode */
}

static void limit_stack_depth(void **state)
{
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;

    (void)state;
    /* List, mark and five values: seven entries. */
    limits.max_stack_depth = 7;
    assert_int_equal(load_bytes(five_items, sizeof(five_items) - 1, &limits, &err), 0);
    limits.max_stack_depth = 6;
    assert_int_equal(load_bytes(five_items, sizeof(five_items) - 1, &limits, &err),
                     BCPM_ERR_LIMIT);
    assert_contains(err.message, "max_stack_depth (6 values and marks)");
    assert_int_equal(err.offset, 12); /* the fifth BININT1 */
}

/* Without a cap set, a MARK bomb stops at the default stack depth. */
static void limit_default_mark_bomb(void **state)
{
    size_t n = (size_t)BCPM_PICKLE_DEFAULT_MAX_STACK_DEPTH + 10;
    char *data = malloc(n + 3);
    struct bcpm_error err;

    (void)state;
    assert_non_null(data);
    data[0] = (char)0x80;
    data[1] = 2;
    memset(data + 2, '(', n);
    data[n + 2] = '.';
    assert_int_equal(load_bytes(data, n + 3, NULL, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "pickle opcode MARK");
    assert_int_equal(err.offset, 2 + BCPM_PICKLE_DEFAULT_MAX_STACK_DEPTH);
    free(data);
}

static void limit_container_items(void **state)
{
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;

    (void)state;
    limits.max_container_items = 5;
    assert_int_equal(load_bytes(five_items, sizeof(five_items) - 1, &limits, &err), 0);
    limits.max_container_items = 4;
    assert_int_equal(load_bytes(five_items, sizeof(five_items) - 1, &limits, &err),
                     BCPM_ERR_LIMIT);
    assert_contains(err.message, "pickle opcode APPENDS");
    assert_contains(err.message, "max_container_items (4 items)");
}

static void limit_memo(void **state)
{
    static const char data[] = "\x80\x04K\x01\x94K\x02\x94K\x03\x94\x87.";
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;

    (void)state;
    limits.max_memo = 3;
    assert_int_equal(load_bytes(data, sizeof(data) - 1, &limits, &err), 0);
    limits.max_memo = 2;
    assert_int_equal(load_bytes(data, sizeof(data) - 1, &limits, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "pickle opcode MEMOIZE");
    assert_contains(err.message, "max_memo (2 entries)");
    assert_int_equal(err.offset, 10);
}

static void limit_string_bytes(void **state)
{
    static const char data[] = "\x80\x04\x8c\x05hello.";
    static const char line[] = "(Vhello\nt.";
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;

    (void)state;
    limits.max_string_bytes = 5;
    assert_int_equal(load_bytes(data, sizeof(data) - 1, &limits, &err), 0);
    assert_int_equal(load_bytes(line, sizeof(line) - 1, &limits, &err), 0);
    limits.max_string_bytes = 4;
    assert_int_equal(load_bytes(data, sizeof(data) - 1, &limits, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "a string of 5 bytes exceeds max_string_bytes (4)");
    assert_int_equal(load_bytes(line, sizeof(line) - 1, &limits, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "pickle opcode UNICODE");
}

static void limit_total_bytes(void **state)
{
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;
    char data[4 + 40 * 103 + 2];
    size_t used = 0, i;

    (void)state;
    /* Forty strings of 100 bytes in one tuple. */
    data[used++] = (char)0x80;
    data[used++] = 4;
    data[used++] = '(';
    for (i = 0; i < 40; i++) {
        data[used++] = (char)0x8c;
        data[used++] = 100;
        memset(data + used, 'x', 100);
        used += 100;
    }
    data[used++] = 't';
    data[used++] = '.';

    limits.max_total_bytes = 2000;
    assert_int_equal(load_bytes(data, used, &limits, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "max_total_bytes (2000 bytes)");
    assert_contains(err.message, "pickle opcode SHORT_BINUNICODE");
    limits.max_total_bytes = 1 << 20;
    assert_int_equal(load_bytes(data, used, &limits, &err), 0);
}

/* Sparse memo indices go to a hash table, whose memory counts too. */
static void limit_total_bytes_memo(void **state)
{
    struct bcpm_pickle_limits limits = {0};
    struct bcpm_error err;
    size_t n = 2000, used = 0, i;
    uint8_t *data = malloc(5 + 5 * n);

    (void)state;
    assert_non_null(data);
    data[used++] = 'K';
    data[used++] = 1;
    for (i = 0; i < n; i++) {
        uint32_t index = 1000000u + 7919u * (uint32_t)i;

        data[used++] = 'r';
        data[used++] = (uint8_t)index;
        data[used++] = (uint8_t)(index >> 8);
        data[used++] = (uint8_t)(index >> 16);
        data[used++] = (uint8_t)(index >> 24);
    }
    data[used++] = '.';

    limits.max_total_bytes = 100000;
    assert_int_equal(load_bytes(data, used, &limits, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "pickle opcode LONG_BINPUT");
    assert_contains(err.message, "max_total_bytes (100000 bytes)");
    limits.max_total_bytes = 1 << 20;
    assert_int_equal(load_bytes(data, used, &limits, &err), 0);
    free(data);
}

static void limit_big_decimal(void **state)
{
    char data[5000];
    struct bcpm_error err;

    (void)state;
    data[0] = 'L';
    memset(data + 1, '7', 4301);
    memcpy(data + 4302, "L\n.", 3);
    assert_int_equal(load_bytes(data, 4305, NULL, &err), BCPM_ERR_LIMIT);
    assert_contains(err.message, "4301 decimal digits");
    data[4300] = 'L';
    data[4301] = '\n';
    data[4302] = '.';
    assert_int_equal(load_bytes(data, 4303, NULL, &err), 0);
}

/* ---------------------------------------------------------------- classification */

static void classify_globals(void **state)
{
    static const struct bcpm_global_rule allow[] = {{"argparse", "Namespace"}, {"numpy", "*"},
                                                    {"os", "*"}};
    struct bcpm_open_options options;
    static const struct {
        const char *module, *name;
        enum bcpm_global_class want;
    } cases[] = {
        {"os", "system", BCPM_GLOBAL_DANGEROUS},
        {"os.path", "join", BCPM_GLOBAL_DANGEROUS},
        {"posix", "system", BCPM_GLOBAL_DANGEROUS},
        {"nt", "system", BCPM_GLOBAL_DANGEROUS},
        {"subprocess", "Popen", BCPM_GLOBAL_DANGEROUS},
        {"builtins", "eval", BCPM_GLOBAL_DANGEROUS},
        {"builtins", "exec", BCPM_GLOBAL_DANGEROUS},
        {"builtins", "getattr", BCPM_GLOBAL_DANGEROUS},
        {"builtins", "__import__", BCPM_GLOBAL_DANGEROUS},
        {"__builtin__", "eval", BCPM_GLOBAL_DANGEROUS},
        {"__builtin__", "reduce", BCPM_GLOBAL_DANGEROUS}, /* Python 3: functools.reduce */
        {"commands", "getoutput", BCPM_GLOBAL_DANGEROUS}, /* Python 3: subprocess */
        {"importlib.machinery", "SourceFileLoader", BCPM_GLOBAL_DANGEROUS},
        {"runpy", "run_path", BCPM_GLOBAL_DANGEROUS},
        {"pickle", "loads", BCPM_GLOBAL_DANGEROUS},
        {"collections", "__builtins__", BCPM_GLOBAL_DANGEROUS},
        {"collections", "OrderedDict", BCPM_GLOBAL_KNOWN},
        {"torch._utils", "_rebuild_tensor_v2", BCPM_GLOBAL_KNOWN},
        {"torch._utils", "_rebuild_parameter", BCPM_GLOBAL_KNOWN},
        {"torch", "FloatStorage", BCPM_GLOBAL_KNOWN},
        {"torch", "BFloat16Storage", BCPM_GLOBAL_KNOWN},
        {"torch.storage", "UntypedStorage", BCPM_GLOBAL_KNOWN},
        {"torch", "bfloat16", BCPM_GLOBAL_KNOWN},
        {"torch", "Size", BCPM_GLOBAL_KNOWN},
        {"torch", "device", BCPM_GLOBAL_KNOWN},
        {"_codecs", "encode", BCPM_GLOBAL_KNOWN},
        {"__builtin__", "set", BCPM_GLOBAL_KNOWN},
        {"builtins", "bytearray", BCPM_GLOBAL_KNOWN},
        {"torch.nn.modules.linear", "Linear", BCPM_GLOBAL_UNKNOWN},
        {"foo.bar", "Baz", BCPM_GLOBAL_UNKNOWN},
        {"osx", "thing", BCPM_GLOBAL_UNKNOWN},      /* "os" matches only at a dot */
        {"torch", "load", BCPM_GLOBAL_DANGEROUS},
        {"torch.storage", "_load_from_bytes", BCPM_GLOBAL_DANGEROUS},
        {"torch._utils", "_rebuild_tensor_v2.__globals__", BCPM_GLOBAL_DANGEROUS},
        {"torch._utils", "_rebuild_tensor_v2.x", BCPM_GLOBAL_UNKNOWN},
        {"torch", "cuda.FloatStorage", BCPM_GLOBAL_UNKNOWN},
        {"collections", "OrderedDict.fromkeys", BCPM_GLOBAL_UNKNOWN},
        {"", "x", BCPM_GLOBAL_UNKNOWN},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum bcpm_global_class got = bcpm_pickle_classify(cases[i].module, cases[i].name, NULL);

        if (got != cases[i].want)
            fail_msg("%s.%s: expected class %d, got %d", cases[i].module, cases[i].name,
                     cases[i].want, got);
    }

    /* The rule set allows plain data; it cannot allow a dangerous module. */
    memset(&options, 0, sizeof(options));
    options.allowed_globals = allow;
    options.nallowed_globals = 3;
    assert_int_equal(bcpm_pickle_classify("argparse", "Namespace", &options), BCPM_GLOBAL_ALLOWED);
    assert_int_equal(bcpm_pickle_classify("argparse", "ArgumentParser", &options),
                     BCPM_GLOBAL_UNKNOWN);
    assert_int_equal(bcpm_pickle_classify("numpy", "dtype", &options), BCPM_GLOBAL_ALLOWED);
    assert_int_equal(bcpm_pickle_classify("numpy.core.multiarray", "_reconstruct", &options),
                     BCPM_GLOBAL_UNKNOWN);
    assert_int_equal(bcpm_pickle_classify("os", "system", &options), BCPM_GLOBAL_DANGEROUS);
    assert_int_equal(bcpm_pickle_classify("numpy", "load", &options), BCPM_GLOBAL_DANGEROUS);
}

/* Findings are reported once per global even when the opcode repeats. */
static void findings_once_per_global(void **state)
{
    static const char data[] = "\x80\x02(cfoo\nBar\ncfoo\nBar\ncos\nsystem\nt.";
    struct bcpm_pickle_input input;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;

    (void)state;
    memset(&input, 0, sizeof(input));
    input.data = (const uint8_t *)data;
    input.size = sizeof(data) - 1;
    input.file = "repeat.pkl";
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&pickle, &input, NULL, &findings, &err), 0);
    assert_int_equal(findings.count, 2);
    assert_string_equal(findings.items[0].tensor, "foo.Bar");
    assert_int_equal(findings.items[0].offset, 3);
    assert_string_equal(findings.items[1].tensor, "os.system");
    assert_int_equal(findings.items[1].offset, 21);
    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
}

/* A finding raised before a later failure stays in the list. */
static void findings_survive_failure(void **state)
{
    static const char data[] = "\x80\x02" "cos\nsystem\n" "h\x09";
    struct bcpm_pickle_input input;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;

    (void)state;
    memset(&input, 0, sizeof(input));
    input.data = (const uint8_t *)data;
    input.size = sizeof(data) - 1;
    input.file = "partial.pkl";
    input.entry = "archive/data.pkl";
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&pickle, &input, NULL, &findings, &err), BCPM_ERR_CORRUPT);
    assert_string_equal(err.entry, "archive/data.pkl");
    assert_contains(err.message, "memo index 9 was never stored");
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].rule, "security.unsafe-global");
    assert_contains(findings.items[0].message, "in 'archive/data.pkl'");
    bcpm_findings_clear(&findings);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(broken_fixtures),
        cmocka_unit_test(truncated_inside_argument),
        cmocka_unit_test(os_system_protocol_2),
        cmocka_unit_test(os_system_protocol_4),
        cmocka_unit_test(os_system_inside_zip),
        cmocka_unit_test(eval_is_unsafe),
        cmocka_unit_test(unknown_global_protocol_2),
        cmocka_unit_test(unknown_global_protocol_4),
        cmocka_unit_test(allowed_global_no_finding),
        cmocka_unit_test(limit_opcodes),
        cmocka_unit_test(limit_stack_depth),
        cmocka_unit_test(limit_default_mark_bomb),
        cmocka_unit_test(limit_container_items),
        cmocka_unit_test(limit_memo),
        cmocka_unit_test(limit_string_bytes),
        cmocka_unit_test(limit_total_bytes),
        cmocka_unit_test(limit_total_bytes_memo),
        cmocka_unit_test(limit_big_decimal),
        cmocka_unit_test(classify_globals),
        cmocka_unit_test(findings_once_per_global),
        cmocka_unit_test(findings_survive_failure),
    };

    return cmocka_run_group_tests_name("pickle-hostile", tests, setup, teardown);
}
