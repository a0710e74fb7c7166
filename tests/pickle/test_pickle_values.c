/*
 * The pickle machine on well-formed input: plain values at protocols 0 to 5
 * and Python 2's text opcodes compared with what Python's pickle.loads
 * returned, and torch.save state dicts compared with the _rebuild_tensor_v2
 * arguments Python recorded (fixtures and expectations from
 * tools/gen_pickle_fixtures.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pickle_test_util.h"

static json_t *expected;

static int setup(void **state)
{
    (void)state;
    expected = fixture_json("pickle/expected.json");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(expected);
    return 0;
}

/* Load fixtures/pickle/name and compare its canonical text with Python's. */
static void check_canonical(const char *name)
{
    char relative[256];
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;
    json_t *entry = json_object_get(expected, name);
    char *text;

    assert_non_null(entry);
    snprintf(relative, sizeof(relative), "pickle/%s", name);
    fixture_read(&fx, relative);

    if (load_fixture(&pickle, &fx, NULL, &findings, &err) != 0)
        fail_msg("%s: %s", name, err.message);
    text = canonical_text(bcpm_pickle_root(pickle));
    assert_non_null(text);
    assert_string_equal(text, json_string_value(json_object_get(entry, "canonical")));

    /* Plain data names only known globals (set, bytes, OrderedDict, _codecs.encode). */
    assert_int_equal(findings.count, 0);
    assert_int_equal(bcpm_pickle_consumed(pickle), fx.size);

    free(text);
    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

static void sample_protocol_0(void **state) { (void)state; check_canonical("sample_p0.pkl"); }
static void sample_protocol_1(void **state) { (void)state; check_canonical("sample_p1.pkl"); }
static void sample_protocol_2(void **state) { (void)state; check_canonical("sample_p2.pkl"); }
static void sample_protocol_3(void **state) { (void)state; check_canonical("sample_p3.pkl"); }
static void sample_protocol_4(void **state) { (void)state; check_canonical("sample_p4.pkl"); }
static void sample_protocol_5(void **state) { (void)state; check_canonical("sample_p5.pkl"); }
static void python2_text_opcodes(void **state) { (void)state; check_canonical("python2_text.pkl"); }
static void rare_opcodes(void **state) { (void)state; check_canonical("rare_opcodes.pkl"); }

/* INST, OBJ, NEWOBJ_EX and a text PERSID, as assembled in calls_pickle() of
 * the generator; global offsets come from pickletools. */
static void calls_become_objects(void **state)
{
    json_t *globals = json_object_get(json_object_get(expected, "calls.pkl"), "globals");
    static const char *const names[] = {"Klass", "Other", "Third"};
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;
    const struct bcpm_pickle_value *root, *item, *kwargs;
    size_t i;

    (void)state;
    fixture_read(&fx, "pickle/calls.pkl");
    if (load_fixture(&pickle, &fx, NULL, &findings, &err) != 0)
        fail_msg("calls.pkl: %s", err.message);
    root = bcpm_pickle_root(pickle);
    assert_int_equal(root->kind, BCPM_PICKLE_TUPLE);
    assert_int_equal(root->u.seq.count, 4);

    /* One unknown-global finding per class, at the opcode Python reported. */
    assert_int_equal(findings.count, 3);
    for (i = 0; i < 3; i++) {
        json_t *g = json_array_get(globals, i);
        char qualified[64];

        snprintf(qualified, sizeof(qualified), "foo.mod.%s", names[i]);
        assert_string_equal(json_string_value(json_object_get(g, "name")), names[i]);
        assert_string_equal(findings.items[i].rule, "security.unknown-global");
        assert_string_equal(findings.items[i].tensor, qualified);
        assert_int_equal(findings.items[i].offset, json_integer_value(json_object_get(g, "offset")));

        item = root->u.seq.items[i];
        assert_int_equal(item->kind, BCPM_PICKLE_OBJECT);
        assert_true(bcpm_pickle_is_global(item, "foo.mod", names[i]));
        assert_int_equal(item->u.object.callable->u.global.cls, BCPM_GLOBAL_UNKNOWN);
        assert_int_equal(item->u.object.args->kind, BCPM_PICKLE_TUPLE);
    }

    /* INST's global comes from the opcode itself, so the object and the
     * finding share its offset. */
    assert_int_equal(root->u.seq.items[0]->offset, findings.items[0].offset);
    assert_int_equal(root->u.seq.items[0]->u.object.args->u.seq.count, 1);
    assert_int_equal(root->u.seq.items[0]->u.object.args->u.seq.items[0]->u.integer, 1);
    assert_int_equal(root->u.seq.items[1]->u.object.args->u.seq.count, 2);
    assert_int_equal(root->u.seq.items[1]->u.object.args->u.seq.items[1]->u.integer, 3);
    assert_int_equal(root->u.seq.items[2]->u.object.args->u.seq.items[0]->u.integer, 4);
    kwargs = root->u.seq.items[2]->u.object.kwargs;
    assert_non_null(kwargs);
    assert_int_equal(bcpm_pickle_dict_get(kwargs, "k")->kind, BCPM_PICKLE_BOOL);
    assert_true(bcpm_pickle_dict_get(kwargs, "k")->u.boolean);

    item = root->u.seq.items[3];
    assert_int_equal(item->kind, BCPM_PICKLE_PERSID);
    assert_int_equal(item->u.persid.pid->kind, BCPM_PICKLE_STRING);
    assert_string_equal(item->u.persid.pid->u.text.data, "key-0");

    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

/* ---------------------------------------------------------------- torch state dicts */

static const struct bcpm_pickle_value *tuple_at(const struct bcpm_pickle_value *tuple, size_t i)
{
    assert_int_equal(tuple->kind, BCPM_PICKLE_TUPLE);
    assert_true(i < tuple->u.seq.count);
    return tuple->u.seq.items[i];
}

static void assert_text(const struct bcpm_pickle_value *value, const char *want)
{
    assert_int_equal(value->kind, BCPM_PICKLE_STRING);
    assert_string_equal(value->u.text.data, want);
}

static void assert_int_tuple(const struct bcpm_pickle_value *tuple, json_t *want)
{
    size_t i;

    assert_int_equal(tuple->kind, BCPM_PICKLE_TUPLE);
    assert_int_equal(tuple->u.seq.count, json_array_size(want));
    for (i = 0; i < tuple->u.seq.count; i++) {
        assert_int_equal(tuple->u.seq.items[i]->kind, BCPM_PICKLE_INT);
        assert_int_equal(tuple->u.seq.items[i]->u.integer,
                         json_integer_value(json_array_get(want, i)));
    }
}

/* One tensor: _rebuild_tensor_v2(persid, offset, size, stride, requires_grad, hooks). */
static void check_tensor(const struct bcpm_pickle_value *object, json_t *want)
{
    const struct bcpm_pickle_value *args, *persid, *pid, *storage_type;
    char type_name[256];

    assert_int_equal(object->kind, BCPM_PICKLE_OBJECT);
    assert_true(bcpm_pickle_is_global(object, "torch._utils", "_rebuild_tensor_v2"));
    assert_null(object->u.object.state);

    args = object->u.object.args;
    assert_int_equal(args->kind, BCPM_PICKLE_TUPLE);
    assert_int_equal(args->u.seq.count, 6);

    /* The persistent id: ('storage', torch.<Type>Storage, key, location, numel). */
    persid = tuple_at(args, 0);
    assert_int_equal(persid->kind, BCPM_PICKLE_PERSID);
    pid = persid->u.persid.pid;
    assert_int_equal(pid->u.seq.count, 5);
    assert_text(tuple_at(pid, 0), "storage");
    storage_type = tuple_at(pid, 1);
    assert_int_equal(storage_type->kind, BCPM_PICKLE_GLOBAL);
    assert_int_equal(storage_type->u.global.cls, BCPM_GLOBAL_KNOWN);
    snprintf(type_name, sizeof(type_name), "%s.%s", storage_type->u.global.module,
             storage_type->u.global.name);
    assert_string_equal(type_name, json_string_value(json_object_get(want, "storage_type")));
    assert_text(tuple_at(pid, 2), json_string_value(json_object_get(want, "storage_key")));
    assert_text(tuple_at(pid, 3), json_string_value(json_object_get(want, "location")));
    assert_int_equal(tuple_at(pid, 4)->u.integer,
                     json_integer_value(json_object_get(want, "numel")));

    assert_int_equal(tuple_at(args, 1)->kind, BCPM_PICKLE_INT);
    assert_int_equal(tuple_at(args, 1)->u.integer,
                     json_integer_value(json_object_get(want, "storage_offset")));
    assert_int_tuple(tuple_at(args, 2), json_object_get(want, "size"));
    assert_int_tuple(tuple_at(args, 3), json_object_get(want, "stride"));
    assert_int_equal(tuple_at(args, 4)->kind, BCPM_PICKLE_BOOL);
    assert_int_equal(tuple_at(args, 4)->u.boolean,
                     json_is_true(json_object_get(want, "requires_grad")));

    /* backward_hooks is an empty OrderedDict, interpreted as a dict. */
    assert_int_equal(tuple_at(args, 5)->kind, BCPM_PICKLE_DICT);
    assert_int_equal(tuple_at(args, 5)->u.dict.count, 0);
}

static void check_torch_state(const char *name)
{
    char relative[256];
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;
    json_t *entry = json_object_get(expected, name);
    json_t *tensors = json_object_get(entry, "tensors");
    json_t *metadata_keys = json_object_get(entry, "metadata_keys");
    const struct bcpm_pickle_value *root, *state, *metadata;
    size_t i;

    assert_non_null(entry);
    snprintf(relative, sizeof(relative), "pickle/%s", name);
    fixture_read(&fx, relative);
    if (load_fixture(&pickle, &fx, NULL, &findings, &err) != 0)
        fail_msg("%s: %s", name, err.message);
    assert_int_equal(findings.count, 0);

    /* The OrderedDict is a dict in insertion order. */
    root = bcpm_pickle_root(pickle);
    assert_int_equal(root->kind, BCPM_PICKLE_DICT);
    assert_int_equal(root->u.dict.count, json_array_size(tensors));
    for (i = 0; i < root->u.dict.count; i++) {
        json_t *want = json_array_get(tensors, i);

        assert_text(root->u.dict.keys[i], json_string_value(json_object_get(want, "name")));
        check_tensor(root->u.dict.values[i], want);
        assert_ptr_equal(bcpm_pickle_dict_get(root, json_string_value(json_object_get(want, "name"))),
                         root->u.dict.values[i]);
    }

    /* BUILD gave the dict its __dict__: {'_metadata': OrderedDict(...)}. */
    state = root->u.dict.state;
    assert_non_null(state);
    metadata = bcpm_pickle_dict_get(state, "_metadata");
    assert_non_null(metadata);
    assert_int_equal(metadata->kind, BCPM_PICKLE_DICT);
    assert_int_equal(metadata->u.dict.count, json_array_size(metadata_keys));
    for (i = 0; i < metadata->u.dict.count; i++)
        assert_text(metadata->u.dict.keys[i], json_string_value(json_array_get(metadata_keys, i)));

    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
    fixture_free(&fx);
}

static void torch_state_protocol_2(void **state) { (void)state; check_torch_state("torch_state_p2.pkl"); }
static void torch_state_protocol_4(void **state) { (void)state; check_torch_state("torch_state_p4.pkl"); }

/* Tensors that share a storage get the same storage key; the views carry
 * their own offset, which the persid tuple does not. */
static void torch_state_shared_storage(void **state)
{
    struct fixture fx;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_error err;
    const struct bcpm_pickle_value *root, *weight, *view;

    (void)state;
    fixture_read(&fx, "pickle/torch_state_p2.pkl");
    assert_int_equal(load_fixture(&pickle, &fx, NULL, NULL, &err), 0);
    root = bcpm_pickle_root(pickle);
    weight = bcpm_pickle_dict_get(root, "layer.weight");
    view = bcpm_pickle_dict_get(root, "view.strided");
    assert_non_null(weight);
    assert_non_null(view);

    /* The pickler memoized the pid's parts, so the key strings are equal. */
    assert_string_equal(tuple_at(tuple_at(weight->u.object.args, 0)->u.persid.pid, 2)->u.text.data,
                        tuple_at(tuple_at(view->u.object.args, 0)->u.persid.pid, 2)->u.text.data);
    bcpm_pickle_free(pickle);
    fixture_free(&fx);
}

/* ---------------------------------------------------------------- framing */

/* Two pickles back to back, as in a legacy torch file: consumed() returns where
 * the second starts, and offsets count from base_offset. */
static void consumed_and_base_offset(void **state)
{
    struct fixture a, b;
    uint8_t *both;
    struct bcpm_pickle *first = NULL, *second = NULL;
    struct bcpm_error err;
    struct bcpm_pickle_input input;
    char *ta, *tb;

    (void)state;
    fixture_read(&a, "pickle/sample_p2.pkl");
    fixture_read(&b, "pickle/sample_p4.pkl");
    both = malloc(a.size + b.size);
    assert_non_null(both);
    memcpy(both, a.data, a.size);
    memcpy(both + a.size, b.data, b.size);

    memset(&input, 0, sizeof(input));
    input.data = both;
    input.size = a.size + b.size;
    input.base_offset = 1000;
    input.file = "two.pkl";
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&first, &input, NULL, NULL, &err), 0);
    assert_int_equal(bcpm_pickle_consumed(first), a.size);
    assert_int_equal(bcpm_pickle_root(first)->offset, 1000 + 2); /* EMPTY_DICT after PROTO */

    input.data = both + a.size;
    input.size = b.size;
    input.base_offset = 1000 + a.size;
    assert_int_equal(bcpm_pickle_load(&second, &input, NULL, NULL, &err), 0);
    assert_int_equal(bcpm_pickle_consumed(second), b.size);

    ta = canonical_text(bcpm_pickle_root(first));
    tb = canonical_text(bcpm_pickle_root(second));
    assert_string_equal(ta, tb);

    free(ta);
    free(tb);
    bcpm_pickle_free(first);
    bcpm_pickle_free(second);
    free(both);
    fixture_free(&a);
    fixture_free(&b);
}

/* ---------------------------------------------------------------- queries */

static void query_helpers(void **state)
{
    static const uint8_t data[] =
        "\x80\x02" "c__builtin__\nset\n" "q\x00" "]q\x01" "\x85" "R" ".";
    struct bcpm_pickle_input input = {data, sizeof(data) - 1, 0, "q.pkl", NULL};
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_error err;
    const struct bcpm_pickle_value *root;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&pickle, &input, NULL, NULL, &err), 0);
    root = bcpm_pickle_root(pickle);

    /* set([]) is interpreted; the Python 2 name maps to builtins.set. */
    assert_int_equal(root->kind, BCPM_PICKLE_SET);
    assert_int_equal(root->u.seq.count, 0);
    assert_null(bcpm_pickle_dict_get(root, "x"));
    assert_string_equal(bcpm_pickle_kind_name(BCPM_PICKLE_PERSID), "persistent id");
    assert_string_equal(bcpm_pickle_kind_name(BCPM_PICKLE_DICT), "dict");
    bcpm_pickle_free(pickle);
}

/* A class the machine does not interpret becomes an object node that keeps
 * the call, the BUILD state and the items SETITEMS added. */
static void object_keeps_call_state_items(void **state)
{
    static const uint8_t data[] =
        "\x80\x02" "ccollections\ndefaultdict\n" "N\x85" "R"   /* defaultdict(None) */
        "X\x01\x00\x00\x00k" "K\x07" "s"                        /* d['k'] = 7 */
        "}X\x01\x00\x00\x00" "a" "K\x01" "s" "b" ".";              /* BUILD {'a': 1} */
    struct bcpm_pickle_input input = {data, sizeof(data) - 1, 0, "obj.pkl", NULL};
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_findings findings = {0};
    struct bcpm_error err;
    const struct bcpm_pickle_value *root, *items;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&pickle, &input, NULL, &findings, &err), 0);
    root = bcpm_pickle_root(pickle);
    assert_int_equal(root->kind, BCPM_PICKLE_OBJECT);
    assert_true(bcpm_pickle_is_global(root, "collections", "defaultdict"));
    assert_int_equal(root->u.object.args->u.seq.count, 1);
    assert_int_equal(root->u.object.args->u.seq.items[0]->kind, BCPM_PICKLE_NONE);

    items = root->u.object.items;
    assert_non_null(items);
    assert_int_equal(items->kind, BCPM_PICKLE_DICT);
    assert_int_equal(bcpm_pickle_dict_get(items, "k")->u.integer, 7);
    assert_int_equal(bcpm_pickle_dict_get(root->u.object.state, "a")->u.integer, 1);

    /* collections.defaultdict is not a known state-dict type. */
    assert_int_equal(findings.count, 1);
    assert_string_equal(findings.items[0].rule, "security.unknown-global");
    assert_string_equal(findings.items[0].tensor, "collections.defaultdict");
    assert_int_equal(findings.items[0].offset, 2);

    bcpm_pickle_free(pickle);
    bcpm_findings_clear(&findings);
}

/* A dict with a repeated key keeps the last value, as Python does. */
static void duplicate_key_last_wins(void **state)
{
    static const uint8_t data[] =
        "\x80\x02}(" "X\x01\x00\x00\x00k" "K\x01" "X\x01\x00\x00\x00j" "K\x02"
        "X\x01\x00\x00\x00k" "K\x03" "u.";
    struct bcpm_pickle_input input = {data, sizeof(data) - 1, 0, "dup.pkl", NULL};
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_error err;
    const struct bcpm_pickle_value *root;

    (void)state;
    bcpm_error_clear(&err);
    assert_int_equal(bcpm_pickle_load(&pickle, &input, NULL, NULL, &err), 0);
    root = bcpm_pickle_root(pickle);
    assert_int_equal(root->u.dict.count, 2);
    assert_int_equal(bcpm_pickle_dict_get(root, "k")->u.integer, 3);
    assert_string_equal(root->u.dict.keys[0]->u.text.data, "k");
    bcpm_pickle_free(pickle);
}

/* Large containers build in linear time: one APPENDS of a million items and
 * a dict of 200000 distinct keys. */
static void large_containers(void **state)
{
    size_t n = 1000000, keys = 200000, i, used = 0;
    uint8_t *data = malloc(16 + 2 * n + keys * 14);
    struct bcpm_pickle_input input;
    struct bcpm_pickle *pickle = NULL;
    struct bcpm_error err;
    const struct bcpm_pickle_value *root;

    (void)state;
    assert_non_null(data);
    data[used++] = 0x80;
    data[used++] = 2;
    data[used++] = '(';           /* MARK for the outer tuple */
    data[used++] = ']';
    data[used++] = '(';
    for (i = 0; i < n; i++) {
        data[used++] = 'K';
        data[used++] = (uint8_t)i;
    }
    data[used++] = 'e';
    data[used++] = '}';
    data[used++] = '(';
    for (i = 0; i < keys; i++) {
        char key[8];

        snprintf(key, sizeof(key), "%06zu", i);
        data[used++] = 'X';       /* BINUNICODE of the six-digit index */
        data[used++] = 6;
        data[used++] = 0;
        data[used++] = 0;
        data[used++] = 0;
        memcpy(data + used, key, 6);
        used += 6;
        data[used++] = 'N';
    }
    data[used++] = 'u';
    data[used++] = 't';
    data[used++] = '.';

    memset(&input, 0, sizeof(input));
    input.data = data;
    input.size = used;
    input.file = "large.pkl";
    bcpm_error_clear(&err);
    if (bcpm_pickle_load(&pickle, &input, NULL, NULL, &err) != 0)
        fail_msg("%s", err.message);
    root = bcpm_pickle_root(pickle);
    assert_int_equal(root->u.seq.count, 2);
    assert_int_equal(root->u.seq.items[0]->u.seq.count, n);
    assert_int_equal(root->u.seq.items[0]->u.seq.items[300]->u.integer, 300 % 256);
    assert_int_equal(root->u.seq.items[1]->u.dict.count, keys);
    assert_string_equal(root->u.seq.items[1]->u.dict.keys[keys - 1]->u.text.data, "199999");
    bcpm_pickle_free(pickle);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sample_protocol_0),
        cmocka_unit_test(sample_protocol_1),
        cmocka_unit_test(sample_protocol_2),
        cmocka_unit_test(sample_protocol_3),
        cmocka_unit_test(sample_protocol_4),
        cmocka_unit_test(sample_protocol_5),
        cmocka_unit_test(python2_text_opcodes),
        cmocka_unit_test(rare_opcodes),
        cmocka_unit_test(calls_become_objects),
        cmocka_unit_test(torch_state_protocol_2),
        cmocka_unit_test(torch_state_protocol_4),
        cmocka_unit_test(torch_state_shared_storage),
        cmocka_unit_test(consumed_and_base_offset),
        cmocka_unit_test(query_helpers),
        cmocka_unit_test(object_keeps_call_state_items),
        cmocka_unit_test(duplicate_key_last_wins),
        cmocka_unit_test(large_containers),
    };

    return cmocka_run_group_tests_name("pickle-values", tests, setup, teardown);
}
