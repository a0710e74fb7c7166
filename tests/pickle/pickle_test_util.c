/* Fixture reading and canonical value text for the pickle tests; see pickle_test_util.h. */
#include "pickle_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *fixture_path(const char *relative)
{
    const char *root = getenv("BCPM_FIXTURES");
    char *path;

    assert_non_null(root);
    path = malloc(strlen(root) + strlen(relative) + 2);
    assert_non_null(path);
    sprintf(path, "%s/%s", root, relative);
    return path;
}

void fixture_read(struct fixture *out, const char *relative)
{
    FILE *f;
    long size;

    out->path = fixture_path(relative);
    f = fopen(out->path, "rb");
    if (!f)
        fail_msg("fixture %s is missing; run tools/gen_pickle_fixtures.py", out->path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);

    out->size = (size_t)size;
    out->data = malloc(out->size ? out->size : 1);
    assert_non_null(out->data);
    assert_int_equal(fread(out->data, 1, out->size, f), out->size);
    fclose(f);
}

void fixture_free(struct fixture *fixture)
{
    free(fixture->path);
    free(fixture->data);
    memset(fixture, 0, sizeof(*fixture));
}

json_t *fixture_json(const char *relative)
{
    char *path = fixture_path(relative);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);

    if (!root)
        fail_msg("cannot read %s: %s", path, error.text);
    free(path);
    return root;
}

int load_fixture(struct bcpm_pickle **out, const struct fixture *fixture,
                 const struct bcpm_open_options *options, struct bcpm_findings *findings,
                 struct bcpm_error *err)
{
    struct bcpm_pickle_input input = {
        .data = fixture->data,
        .size = fixture->size,
        .base_offset = 0,
        .file = fixture->path,
        .entry = NULL,
    };

    bcpm_error_clear(err);
    return bcpm_pickle_load(out, &input, options, findings, err);
}

/* ---------------------------------------------------------------- canonical text */

struct text {
    char *data;
    size_t len, capacity;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->capacity) {
        size_t capacity = t->capacity ? t->capacity : 256;

        while (capacity < t->len + n + 1)
            capacity *= 2;
        t->data = realloc(t->data, capacity);
        assert_non_null(t->data);
        t->capacity = capacity;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void puts_text(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void put_escaped(struct text *t, const char *data, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char b = (unsigned char)data[i];
        char buf[8];

        if (b >= 0x20 && b < 0x7f && b != '\\' && b != '\'') {
            put(t, (const char *)&b, 1);
        } else {
            snprintf(buf, sizeof(buf), "\\x%02x", b);
            puts_text(t, buf);
        }
    }
}

/* Minimal little-endian two's complement, as Python's pickle.encode_long. */
static void put_bigint(struct text *t, const unsigned char *data, size_t len)
{
    int negative = len > 0 && (data[len - 1] & 0x80);
    size_t i;

    while (len > 1 && data[len - 1] == (negative ? 0xff : 0x00) &&
           ((data[len - 2] & 0x80) != 0) == negative)
        len--;
    puts_text(t, "bigint:");
    for (i = 0; i < len; i++) {
        char buf[4];

        snprintf(buf, sizeof(buf), "%02x", data[i]);
        puts_text(t, buf);
    }
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int put_value(struct text *t, const struct bcpm_pickle_value *v);

static int put_items(struct text *t, struct bcpm_pickle_value *const *items, size_t count)
{
    size_t i;

    for (i = 0; i < count; i++) {
        if (i)
            puts_text(t, ",");
        if (put_value(t, items[i]))
            return -1;
    }
    return 0;
}

static int put_set(struct text *t, const struct bcpm_pickle_value *v)
{
    size_t count = v->u.seq.count, i;
    char **parts = calloc(count ? count : 1, sizeof(*parts));

    assert_non_null(parts);
    for (i = 0; i < count; i++) {
        parts[i] = canonical_text(v->u.seq.items[i]);
        if (!parts[i])
            return -1;
    }
    qsort(parts, count, sizeof(*parts), compare_strings);

    puts_text(t, "set{");
    for (i = 0; i < count; i++) {
        if (i)
            puts_text(t, ",");
        puts_text(t, parts[i]);
        free(parts[i]);
    }
    puts_text(t, "}");
    free(parts);
    return 0;
}

static int put_value(struct text *t, const struct bcpm_pickle_value *v)
{
    char buf[64];
    uint64_t bits;
    size_t i;

    switch (v->kind) {
    case BCPM_PICKLE_NONE:
        puts_text(t, "None");
        return 0;
    case BCPM_PICKLE_BOOL:
        puts_text(t, v->u.boolean ? "True" : "False");
        return 0;
    case BCPM_PICKLE_INT:
        snprintf(buf, sizeof(buf), "int:%lld", (long long)v->u.integer);
        puts_text(t, buf);
        return 0;
    case BCPM_PICKLE_BIGINT:
        put_bigint(t, (const unsigned char *)v->u.text.data, v->u.text.len);
        return 0;
    case BCPM_PICKLE_FLOAT:
        memcpy(&bits, &v->u.real, sizeof(bits));
        snprintf(buf, sizeof(buf), "float:%016llx", (unsigned long long)bits);
        puts_text(t, buf);
        return 0;
    case BCPM_PICKLE_STRING:
    case BCPM_PICKLE_BYTES:
        puts_text(t, v->kind == BCPM_PICKLE_STRING ? "s'" : "b'");
        put_escaped(t, v->u.text.data, v->u.text.len);
        puts_text(t, "'");
        return 0;
    case BCPM_PICKLE_TUPLE:
        puts_text(t, "(");
        if (put_items(t, v->u.seq.items, v->u.seq.count))
            return -1;
        puts_text(t, ")");
        return 0;
    case BCPM_PICKLE_LIST:
        puts_text(t, "[");
        if (put_items(t, v->u.seq.items, v->u.seq.count))
            return -1;
        puts_text(t, "]");
        return 0;
    case BCPM_PICKLE_SET:
        return put_set(t, v);
    case BCPM_PICKLE_DICT:
        puts_text(t, "{");
        for (i = 0; i < v->u.dict.count; i++) {
            if (i)
                puts_text(t, ",");
            if (put_value(t, v->u.dict.keys[i]))
                return -1;
            puts_text(t, ":");
            if (put_value(t, v->u.dict.values[i]))
                return -1;
        }
        puts_text(t, "}");
        return 0;
    case BCPM_PICKLE_GLOBAL:
    case BCPM_PICKLE_OBJECT:
    case BCPM_PICKLE_PERSID:
        return -1;
    }
    return -1;
}

char *canonical_text(const struct bcpm_pickle_value *value)
{
    struct text t = {0};

    puts_text(&t, "");
    if (put_value(&t, value)) {
        free(t.data);
        return NULL;
    }
    return t.data;
}
