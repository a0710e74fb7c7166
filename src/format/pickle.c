/*
 * The safe pickle machine: reads protocols 0 to 5 into a tree of
 * struct bcpm_pickle_value and never imports or calls anything.
 *
 * The opcodes and their arguments are those of CPython's Lib/pickle.py and
 * Lib/pickletools.py. Where the two differ, this file follows what
 * pickle.py's Unpickler does (POP on an empty frame discards the MARK, PUT
 * keeps its value on the stack, STRING decodes Python escapes).
 *
 * Three invariants keep hostile input harmless:
 *  - every length is checked against the bytes left and against the limits
 *    before anything is allocated, and every value lives in one arena that
 *    is charged against max_total_bytes;
 *  - a container can only gain items while it is not inside another value.
 *    Python's pickler finishes each container before it places it anywhere,
 *    except for recursive structures, so a value graph built here is a DAG
 *    whose depth, tracked at each insertion, is exact and capped by
 *    max_nesting. Consumers may recurse over it without a cycle check;
 *  - nothing here recurses over input-controlled depth.
 */
#include "format/pickle.h"
#include "format/pickle_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"

/* Python refuses to convert longer decimal strings to int by default
 * (sys.int_info.default_max_str_digits, Python 3.11), and the limit keeps the
 * quadratic decimal-to-binary conversion below a few thousand steps per byte. */
#define MAX_DECIMAL_DIGITS 4300

/* Arena blocks; larger requests get a block of their own. */
#define ARENA_BLOCK_SIZE (64u * 1024u)
#define ARENA_ALIGN 16u

/* ---------------------------------------------------------------- opcodes */

enum opcode {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_POP = '0',
    OP_POP_MARK = '1',
    OP_DUP = '2',
    OP_FLOAT = 'F',
    OP_INT = 'I',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_LONG = 'L',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_PERSID = 'P',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_STRING = 'S',
    OP_BINSTRING = 'T',
    OP_SHORT_BINSTRING = 'U',
    OP_UNICODE = 'V',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_DICT = 'd',
    OP_EMPTY_DICT = '}',
    OP_APPENDS = 'e',
    OP_GET = 'g',
    OP_BINGET = 'h',
    OP_INST = 'i',
    OP_LONG_BINGET = 'j',
    OP_LIST = 'l',
    OP_EMPTY_LIST = ']',
    OP_OBJ = 'o',
    OP_PUT = 'p',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u',
    OP_BINFLOAT = 'G',
    /* protocol 2 */
    OP_PROTO = 0x80,
    OP_NEWOBJ = 0x81,
    OP_EXT1 = 0x82,
    OP_EXT2 = 0x83,
    OP_EXT4 = 0x84,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    /* protocol 3 */
    OP_BINBYTES = 'B',
    OP_SHORT_BINBYTES = 'C',
    /* protocol 4 */
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e,
    OP_EMPTY_SET = 0x8f,
    OP_ADDITEMS = 0x90,
    OP_FROZENSET = 0x91,
    OP_NEWOBJ_EX = 0x92,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
    /* protocol 5 */
    OP_BYTEARRAY8 = 0x96,
    OP_NEXT_BUFFER = 0x97,
    OP_READONLY_BUFFER = 0x98,
};

static const char *opcode_name(uint8_t op)
{
    switch (op) {
    case OP_MARK: return "MARK";
    case OP_STOP: return "STOP";
    case OP_POP: return "POP";
    case OP_POP_MARK: return "POP_MARK";
    case OP_DUP: return "DUP";
    case OP_FLOAT: return "FLOAT";
    case OP_INT: return "INT";
    case OP_BININT: return "BININT";
    case OP_BININT1: return "BININT1";
    case OP_LONG: return "LONG";
    case OP_BININT2: return "BININT2";
    case OP_NONE: return "NONE";
    case OP_PERSID: return "PERSID";
    case OP_BINPERSID: return "BINPERSID";
    case OP_REDUCE: return "REDUCE";
    case OP_STRING: return "STRING";
    case OP_BINSTRING: return "BINSTRING";
    case OP_SHORT_BINSTRING: return "SHORT_BINSTRING";
    case OP_UNICODE: return "UNICODE";
    case OP_BINUNICODE: return "BINUNICODE";
    case OP_APPEND: return "APPEND";
    case OP_BUILD: return "BUILD";
    case OP_GLOBAL: return "GLOBAL";
    case OP_DICT: return "DICT";
    case OP_EMPTY_DICT: return "EMPTY_DICT";
    case OP_APPENDS: return "APPENDS";
    case OP_GET: return "GET";
    case OP_BINGET: return "BINGET";
    case OP_INST: return "INST";
    case OP_LONG_BINGET: return "LONG_BINGET";
    case OP_LIST: return "LIST";
    case OP_EMPTY_LIST: return "EMPTY_LIST";
    case OP_OBJ: return "OBJ";
    case OP_PUT: return "PUT";
    case OP_BINPUT: return "BINPUT";
    case OP_LONG_BINPUT: return "LONG_BINPUT";
    case OP_SETITEM: return "SETITEM";
    case OP_TUPLE: return "TUPLE";
    case OP_EMPTY_TUPLE: return "EMPTY_TUPLE";
    case OP_SETITEMS: return "SETITEMS";
    case OP_BINFLOAT: return "BINFLOAT";
    case OP_PROTO: return "PROTO";
    case OP_NEWOBJ: return "NEWOBJ";
    case OP_EXT1: return "EXT1";
    case OP_EXT2: return "EXT2";
    case OP_EXT4: return "EXT4";
    case OP_TUPLE1: return "TUPLE1";
    case OP_TUPLE2: return "TUPLE2";
    case OP_TUPLE3: return "TUPLE3";
    case OP_NEWTRUE: return "NEWTRUE";
    case OP_NEWFALSE: return "NEWFALSE";
    case OP_LONG1: return "LONG1";
    case OP_LONG4: return "LONG4";
    case OP_BINBYTES: return "BINBYTES";
    case OP_SHORT_BINBYTES: return "SHORT_BINBYTES";
    case OP_SHORT_BINUNICODE: return "SHORT_BINUNICODE";
    case OP_BINUNICODE8: return "BINUNICODE8";
    case OP_BINBYTES8: return "BINBYTES8";
    case OP_EMPTY_SET: return "EMPTY_SET";
    case OP_ADDITEMS: return "ADDITEMS";
    case OP_FROZENSET: return "FROZENSET";
    case OP_NEWOBJ_EX: return "NEWOBJ_EX";
    case OP_STACK_GLOBAL: return "STACK_GLOBAL";
    case OP_MEMOIZE: return "MEMOIZE";
    case OP_FRAME: return "FRAME";
    case OP_BYTEARRAY8: return "BYTEARRAY8";
    case OP_NEXT_BUFFER: return "NEXT_BUFFER";
    case OP_READONLY_BUFFER: return "READONLY_BUFFER";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- data structures */

struct arena_block {
    struct arena_block *next;
    size_t used, size;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct bcpm_pickle {
    struct arena_block *blocks; /* newest first; the first one takes small requests */
    uint64_t allocated;         /* bytes handed out, charged against max_total_bytes */
    const struct bcpm_pickle_value *root;
    uint64_t consumed;
};

/* A value plus the bookkeeping the machine needs; value comes first so that
 * a struct bcpm_pickle_value pointer of this file is a struct node pointer. */
struct node {
    struct bcpm_pickle_value value;
    size_t capacity;        /* allocated slots of a list, tuple, set or dict */
    uint64_t depth;         /* container levels: 0 for scalars, 1 for an empty list */
    uint64_t expanded;      /* values in the tree under this one, shared ones counted
                               at every use */
    unsigned char nested;   /* placed inside another value: may no longer change */
    const char *module3;    /* a GLOBAL's Python 3 module and name (pickle_internal.h) */
    const char *name3;
};

/* One slot of the open-addressing tables below (memo, dict keys, globals seen). */
struct slot {
    uint64_t hash;
    uint64_t number;        /* memo index */
    const struct node *owner; /* dict whose key this is */
    const struct node *key;   /* dict key, or the GLOBAL node of a finding */
    struct node *value;       /* memo value */
    size_t index;             /* position of the key in its dict */
    int used;
};

struct table {
    struct slot *slots;
    size_t capacity; /* a power of two, or 0 */
    size_t count;
};

typedef int (*slot_match)(const struct slot *slot, const struct slot *probe);

struct machine {
    const struct bcpm_pickle_input *in;
    const struct bcpm_open_options *options;
    struct bcpm_pickle_limits limits; /* with defaults filled in */
    struct bcpm_findings *findings;
    struct bcpm_error *err;
    int status;                       /* first failure, 0 while none */
    struct bcpm_pickle *pickle;

    uint64_t pos;     /* next byte to read */
    uint64_t op_pos;  /* the opcode being run */
    uint8_t op;
    uint64_t nopcodes;

    struct node **stack;
    size_t nstack, stack_capacity;
    size_t *marks; /* stack heights at each open MARK */
    size_t nmarks, marks_capacity;

    struct node **memo_dense; /* memo entries 0 .. memo_dense_capacity - 1 */
    size_t memo_dense_capacity;
    struct table memo;        /* memo entries beyond the array */
    uint64_t memo_entries;    /* in both together */
    struct table keys;    /* (dict, key) -> index, for duplicate keys */
    struct table globals; /* (module, name) already reported */
    uint64_t table_bytes; /* memory of the tables above, for max_total_bytes */
};

/* ---------------------------------------------------------------- errors */

/* Record a failure of the current opcode: "pickle opcode NAME: message" at the
 * opcode's file offset. Returns code. */
static int fail(struct machine *m, int code, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(struct machine *m, int code, const char *fmt, ...)
{
    char text[BCPM_ERROR_TEXT_MAX];
    va_list ap;

    if (m->status)
        return m->status;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    m->status = code;
    if (strcmp(opcode_name(m->op), "unknown") == 0)
        bcpm_error_set(m->err, code, m->in->file, m->in->entry, "pickle opcode 0x%02x: %s",
                       m->op, text);
    else
        bcpm_error_set(m->err, code, m->in->file, m->in->entry, "pickle opcode %s: %s",
                       opcode_name(m->op), text);
    bcpm_error_at(m->err, m->in->base_offset + m->op_pos);
    return code;
}

static int fail_nomem(struct machine *m)
{
    return fail(m, BCPM_ERR_NOMEM, "out of memory while building the value tree");
}

/* Quote at most 40 bytes of an input argument for a message, with bytes
 * outside printable ASCII written as \xHH so the message stays one line of
 * valid text. Returns buf. */
static const char *quote_input(const char *text, size_t len, char *buf, size_t size)
{
    size_t i, used = 0;

    for (i = 0; i < len && i < 40 && used + 8 < size; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c >= 0x20 && c < 0x7f)
            buf[used++] = (char)c;
        else
            used += (size_t)snprintf(buf + used, size - used, "\\x%02x", c);
    }
    if (i < len && used + 4 < size) {
        memcpy(buf + used, "...", 3);
        used += 3;
    }
    buf[used] = '\0';
    return buf;
}

/* ---------------------------------------------------------------- arena */

/* Count bytes the machine is about to allocate against max_total_bytes: the
 * arena of values and strings, plus the memo and key tables beside it. */
static int charge(struct machine *m, uint64_t bytes)
{
    uint64_t used = m->pickle->allocated + m->table_bytes;

    if (used > m->limits.max_total_bytes || bytes > m->limits.max_total_bytes - used)
        return fail(m, BCPM_ERR_LIMIT,
                    "the values would need more than max_total_bytes (%" PRIu64 " bytes)",
                    m->limits.max_total_bytes);
    return 0;
}

static void *arena_alloc(struct machine *m, size_t size)
{
    struct bcpm_pickle *p = m->pickle;
    struct arena_block *block = p->blocks;
    size_t rounded;
    void *out;

    /* Charge the request before taking it, so a hostile pickle stops at the cap
     * instead of exhausting memory. */
    if (size > SIZE_MAX - ARENA_ALIGN) {
        fail_nomem(m);
        return NULL;
    }
    rounded = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (charge(m, rounded))
        return NULL;

    if (!block || block->size - block->used < rounded) {
        size_t capacity = rounded > ARENA_BLOCK_SIZE / 4 ? rounded : ARENA_BLOCK_SIZE;

        block = malloc(sizeof(*block) + capacity);
        if (!block) {
            fail_nomem(m);
            return NULL;
        }
        block->used = 0;
        block->size = capacity;

        /* A dedicated large block goes behind the current one, which keeps
         * serving small requests. */
        if (capacity != ARENA_BLOCK_SIZE && p->blocks) {
            block->next = p->blocks->next;
            p->blocks->next = block;
        } else {
            block->next = p->blocks;
            p->blocks = block;
        }
    }

    out = block->data + block->used;
    block->used += rounded;
    p->allocated += rounded;
    return out;
}

static void arena_free(struct bcpm_pickle *p)
{
    struct arena_block *block = p->blocks;

    while (block) {
        struct arena_block *next = block->next;
        free(block);
        block = next;
    }
    p->blocks = NULL;
}

/* ---------------------------------------------------------------- hash tables */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const char *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= (unsigned char)data[i];
        h *= 0x100000001b3ULL;
    }
    return mix64(h);
}

/* The slot holding probe's key, or the empty slot where it would go. The table
 * must have a free slot (table_reserve). */
static struct slot *table_find(struct table *t, const struct slot *probe, slot_match match)
{
    size_t mask = t->capacity - 1;
    size_t i = (size_t)probe->hash & mask;

    while (t->slots[i].used) {
        if (t->slots[i].hash == probe->hash && match(&t->slots[i], probe))
            return &t->slots[i];
        i = (i + 1) & mask;
    }
    return &t->slots[i];
}

/* Make room for one more entry, keeping the load at or below one half. */
static int table_reserve(struct machine *m, struct table *t)
{
    struct slot *old = t->slots;
    size_t old_capacity = t->capacity, i;
    size_t capacity;

    if (t->count + 1 <= t->capacity / 2)
        return 0;

    capacity = t->capacity ? t->capacity * 2 : 64;
    if (capacity > SIZE_MAX / sizeof(struct slot))
        return fail_nomem(m);
    if (charge(m, (uint64_t)(capacity - old_capacity) * sizeof(struct slot)))
        return m->status;
    m->table_bytes += (uint64_t)(capacity - old_capacity) * sizeof(struct slot);
    t->slots = calloc(capacity, sizeof(struct slot));
    if (!t->slots) {
        t->slots = old;
        return fail_nomem(m);
    }
    t->capacity = capacity;

    /* Reinsert by hash alone: every old key is distinct. */
    for (i = 0; i < old_capacity; i++) {
        size_t j;

        if (!old[i].used)
            continue;
        j = (size_t)old[i].hash & (capacity - 1);
        while (t->slots[j].used)
            j = (j + 1) & (capacity - 1);
        t->slots[j] = old[i];
    }
    free(old);
    return 0;
}

static void table_free(struct table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->capacity = t->count = 0;
}

/* ---------------------------------------------------------------- reading input */

static uint64_t bytes_left(const struct machine *m)
{
    return m->in->size - m->pos;
}

/* Fail unless n more bytes of argument follow. */
static int need(struct machine *m, uint64_t n, const char *argument)
{
    if (n > bytes_left(m))
        return fail(m, BCPM_ERR_CORRUPT,
                    "the pickle ends inside the %s: %" PRIu64 " bytes needed, %" PRIu64
                    " left",
                    argument, n, bytes_left(m));
    return 0;
}

static uint64_t read_le(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    unsigned i;

    for (i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Read an n-byte little-endian unsigned argument. */
static int read_uint(struct machine *m, unsigned n, uint64_t *out)
{
    int rc = need(m, n, "opcode argument");

    if (rc)
        return rc;
    *out = read_le(m->in->data + m->pos, n);
    m->pos += n;
    return 0;
}

/* Read a newline-terminated argument of the text protocol; *len excludes the
 * newline. */
static int read_line(struct machine *m, const char **out, size_t *len)
{
    const uint8_t *start = m->in->data + m->pos;
    uint64_t window = bytes_left(m);
    const uint8_t *newline;

    /* Look no further than the string cap: a longer line fails either way. */
    if (window > m->limits.max_string_bytes && window - m->limits.max_string_bytes > 1)
        window = m->limits.max_string_bytes + 1;
    newline = memchr(start, '\n', (size_t)window);
    if (!newline) {
        if (window < bytes_left(m))
            return fail(m, BCPM_ERR_LIMIT,
                        "the text argument is longer than max_string_bytes (%" PRIu64
                        " bytes)",
                        m->limits.max_string_bytes);
        return fail(m, BCPM_ERR_CORRUPT,
                    "the pickle ends inside the text argument: no newline in the last %" PRIu64
                    " bytes",
                    bytes_left(m));
    }

    *out = (const char *)start;
    *len = (size_t)(newline - start);
    m->pos += *len + 1;
    return 0;
}

/* Check a length prefix against the bytes left and the string cap. */
static int check_length(struct machine *m, uint64_t len)
{
    int rc = need(m, len, "string or bytes argument");

    if (rc)
        return rc;
    if (len > m->limits.max_string_bytes)
        return fail(m, BCPM_ERR_LIMIT,
                    "a string of %" PRIu64 " bytes exceeds max_string_bytes (%" PRIu64 ")",
                    len, m->limits.max_string_bytes);
    return 0;
}

/* ---------------------------------------------------------------- values */

static struct node *new_node(struct machine *m, enum bcpm_pickle_kind kind)
{
    struct node *n = arena_alloc(m, sizeof(*n));

    if (!n)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->value.kind = kind;
    n->value.offset = m->in->base_offset + m->op_pos;
    n->expanded = 1;
    if (kind == BCPM_PICKLE_TUPLE || kind == BCPM_PICKLE_LIST || kind == BCPM_PICKLE_DICT ||
        kind == BCPM_PICKLE_SET || kind == BCPM_PICKLE_OBJECT || kind == BCPM_PICKLE_PERSID)
        n->depth = 1;
    return n;
}

static struct node *new_int(struct machine *m, int64_t v)
{
    struct node *n = new_node(m, BCPM_PICKLE_INT);

    if (n)
        n->value.u.integer = v;
    return n;
}

/* A STRING, BYTES or BIGINT node holding a NUL-terminated copy of data. */
static struct node *new_text(struct machine *m, enum bcpm_pickle_kind kind, const char *data,
                             size_t len)
{
    struct node *n;
    char *copy;

    if (len > m->limits.max_string_bytes) {
        fail(m, BCPM_ERR_LIMIT,
             "a string of %zu bytes exceeds max_string_bytes (%" PRIu64 ")", len,
             m->limits.max_string_bytes);
        return NULL;
    }
    n = new_node(m, kind);
    if (!n)
        return NULL;
    copy = arena_alloc(m, len + 1);
    if (!copy)
        return NULL;
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    n->value.u.text.data = copy;
    n->value.u.text.len = len;
    return n;
}

/* Record that child now sits inside parent: it becomes immutable, and
 * parent's depth and expanded size cover it. */
static int adopt(struct machine *m, struct node *parent, struct node *child)
{
    child->nested = 1;
    if (child->depth + 1 > parent->depth)
        parent->depth = child->depth + 1;
    if (parent->depth > m->limits.max_nesting)
        return fail(m, BCPM_ERR_LIMIT,
                    "values nest deeper than max_nesting (%" PRIu64 " levels)",
                    m->limits.max_nesting);

    /* The memo lets a few opcodes build a DAG whose tree has 2^60 paths
     * (tuples of tuples of one shared value). Capping the expanded size at
     * the opcode cap keeps every walk over the tree linear in max_opcodes,
     * even one that does not remember visited values. */
    if (child->expanded > UINT64_MAX - parent->expanded)
        parent->expanded = UINT64_MAX;
    else
        parent->expanded += child->expanded;
    if (parent->expanded > m->limits.max_opcodes)
        return fail(m, BCPM_ERR_LIMIT,
                    "a value would expand to more than max_opcodes (%" PRIu64 ") values "
                    "when its shared parts are counted at every use",
                    m->limits.max_opcodes);
    return 0;
}

/* Make room for extra more items in a list, tuple, set or dict. Arrays grow
 * by doubling inside the arena, so n appends cost O(n) time and at most
 * twice the final size in abandoned arrays. */
static int reserve_items(struct machine *m, struct node *n, size_t extra)
{
    int is_dict = n->value.kind == BCPM_PICKLE_DICT;
    size_t count = is_dict ? n->value.u.dict.count : n->value.u.seq.count;
    size_t capacity;

    if (extra > m->limits.max_container_items ||
        count > m->limits.max_container_items - extra)
        return fail(m, BCPM_ERR_LIMIT,
                    "a %s would hold more than max_container_items (%" PRIu64 " items)",
                    bcpm_pickle_kind_name(n->value.kind), m->limits.max_container_items);
    if (count + extra <= n->capacity)
        return 0;

    capacity = n->capacity ? n->capacity * 2 : 8;
    if (capacity < count + extra)
        capacity = count + extra;
    if (capacity > SIZE_MAX / 2 / sizeof(void *))
        return fail_nomem(m);

    if (is_dict) {
        struct bcpm_pickle_value **keys = arena_alloc(m, capacity * sizeof(*keys));
        struct bcpm_pickle_value **values = keys ? arena_alloc(m, capacity * sizeof(*values))
                                                 : NULL;
        if (!values)
            return m->status;
        if (count) {
            memcpy(keys, n->value.u.dict.keys, count * sizeof(*keys));
            memcpy(values, n->value.u.dict.values, count * sizeof(*values));
        }
        n->value.u.dict.keys = keys;
        n->value.u.dict.values = values;
    } else {
        struct bcpm_pickle_value **items = arena_alloc(m, capacity * sizeof(*items));

        if (!items)
            return m->status;
        if (count)
            memcpy(items, n->value.u.seq.items, count * sizeof(*items));
        n->value.u.seq.items = items;
    }
    n->capacity = capacity;
    return 0;
}

static int key_match(const struct slot *slot, const struct slot *probe)
{
    const struct bcpm_pickle_value *a = &slot->key->value, *b = &probe->key->value;

    if (slot->owner != probe->owner || a->kind != b->kind)
        return 0;
    if (a->kind == BCPM_PICKLE_INT)
        return a->u.integer == b->u.integer;
    return a->u.text.len == b->u.text.len &&
           memcmp(a->u.text.data, b->u.text.data, a->u.text.len) == 0;
}

/* Look up key among the keys of a dict or the items of a set (owner). Only
 * strings, bytes and ints are tracked, which covers state dicts; *out is
 * NULL for other kinds, whose duplicates are kept. Otherwise *out is the
 * slot: used when an equal key is present (slot->index is its position),
 * unused where record_key stores it. Nothing may touch m->keys in between. */
static int find_key(struct machine *m, const struct node *owner, const struct node *key,
                    struct slot *probe, struct slot **out)
{
    enum bcpm_pickle_kind kind = key->value.kind;
    int rc;

    *out = NULL;
    if (kind != BCPM_PICKLE_STRING && kind != BCPM_PICKLE_BYTES && kind != BCPM_PICKLE_INT)
        return 0;

    memset(probe, 0, sizeof(*probe));
    probe->owner = owner;
    probe->key = key;
    probe->hash = mix64((uint64_t)(uintptr_t)owner) ^
                  (kind == BCPM_PICKLE_INT
                       ? mix64((uint64_t)key->value.u.integer)
                       : hash_bytes(key->value.u.text.data, key->value.u.text.len));
    rc = table_reserve(m, &m->keys);
    if (rc)
        return rc;
    *out = table_find(&m->keys, probe, key_match);
    return 0;
}

static void record_key(struct machine *m, struct slot *slot, const struct slot *probe,
                       size_t index)
{
    if (!slot)
        return;
    *slot = *probe;
    slot->index = index;
    slot->used = 1;
    m->keys.count++;
}

/* Append items to a list, tuple or set node. A set skips items equal to one
 * it holds, as Python's set does. */
static int seq_append(struct machine *m, struct node *seq, struct node **items, size_t count)
{
    size_t i;
    int rc = reserve_items(m, seq, count);

    if (rc)
        return rc;
    for (i = 0; i < count; i++) {
        struct slot probe, *slot = NULL;
        size_t index = seq->value.u.seq.count;

        if (seq->value.kind == BCPM_PICKLE_SET) {
            rc = find_key(m, seq, items[i], &probe, &slot);
            if (rc)
                return rc;
            if (slot && slot->used)
                continue;
        }
        rc = adopt(m, seq, items[i]);
        if (rc)
            return rc;
        seq->value.u.seq.items[index] = &items[i]->value;
        seq->value.u.seq.count++;
        record_key(m, slot, &probe, index);
    }
    return 0;
}

/* A new list, tuple or set holding items. */
static struct node *new_seq(struct machine *m, enum bcpm_pickle_kind kind, struct node **items,
                            size_t count)
{
    struct node *n = new_node(m, kind);

    if (!n || seq_append(m, n, items, count))
        return NULL;
    return n;
}

/* Store key: value in dict; a key already present has its value replaced,
 * as in Python. */
static int dict_set(struct machine *m, struct node *dict, struct node *key, struct node *value)
{
    struct slot probe, *slot;
    size_t index;
    int rc = find_key(m, dict, key, &probe, &slot);

    if (rc)
        return rc;
    if (slot && slot->used) {
        rc = adopt(m, dict, value);
        if (rc)
            return rc;
        dict->value.u.dict.values[slot->index] = &value->value;
        return 0;
    }

    rc = reserve_items(m, dict, 1);
    if (!rc)
        rc = adopt(m, dict, key);
    if (!rc)
        rc = adopt(m, dict, value);
    if (rc)
        return rc;
    index = dict->value.u.dict.count++;
    dict->value.u.dict.keys[index] = &key->value;
    dict->value.u.dict.values[index] = &value->value;
    record_key(m, slot, &probe, index);
    return 0;
}

/* ---------------------------------------------------------------- the stack */

static int check_stack_room(struct machine *m)
{
    if (m->nstack + m->nmarks >= m->limits.max_stack_depth)
        return fail(m, BCPM_ERR_LIMIT,
                    "the stack would hold more than max_stack_depth (%" PRIu64
                    " values and marks)",
                    m->limits.max_stack_depth);
    return 0;
}

static int push(struct machine *m, struct node *n)
{
    int rc;

    /* Value constructors return NULL only after recording a failure. */
    if (!n)
        return m->status ? m->status : fail_nomem(m);
    rc = check_stack_room(m);
    if (rc)
        return rc;

    if (m->nstack == m->stack_capacity) {
        size_t capacity = m->stack_capacity ? m->stack_capacity * 2 : 64;
        struct node **stack = realloc(m->stack, capacity * sizeof(*stack));

        if (!stack)
            return fail_nomem(m);
        m->stack = stack;
        m->stack_capacity = capacity;
    }
    m->stack[m->nstack++] = n;
    return 0;
}

/* Values above the innermost open MARK. */
static size_t frame_size(const struct machine *m)
{
    return m->nstack - (m->nmarks ? m->marks[m->nmarks - 1] : 0);
}

static int stack_underflow(struct machine *m, size_t needed)
{
    if (m->nmarks)
        return fail(m, BCPM_ERR_CORRUPT,
                    "expected %zu values above the last MARK, found %zu", needed,
                    frame_size(m));
    return fail(m, BCPM_ERR_CORRUPT, "expected %zu values on the stack, found %zu", needed,
                m->nstack);
}

static int pop(struct machine *m, struct node **out)
{
    if (frame_size(m) < 1)
        return stack_underflow(m, 1);
    *out = m->stack[--m->nstack];
    return 0;
}

static int peek(struct machine *m, struct node **out)
{
    if (frame_size(m) < 1)
        return stack_underflow(m, 1);
    *out = m->stack[m->nstack - 1];
    return 0;
}

/* Close the innermost MARK: *items and *count are the values above it,
 * removed from the stack but still valid until the next push. */
static int pop_mark(struct machine *m, struct node ***items, size_t *count)
{
    size_t start;

    *items = NULL;
    *count = 0;
    if (m->nmarks == 0)
        return fail(m, BCPM_ERR_CORRUPT, "expected an open MARK on the stack, found none");
    start = m->marks[--m->nmarks];
    *items = m->stack + start;
    *count = m->nstack - start;
    m->nstack = start;
    return 0;
}

static int op_mark(struct machine *m)
{
    int rc = check_stack_room(m);

    if (rc)
        return rc;
    if (m->nmarks == m->marks_capacity) {
        size_t capacity = m->marks_capacity ? m->marks_capacity * 2 : 64;
        size_t *marks = realloc(m->marks, capacity * sizeof(*marks));

        if (!marks)
            return fail_nomem(m);
        m->marks = marks;
        m->marks_capacity = capacity;
    }
    m->marks[m->nmarks++] = m->nstack;
    return 0;
}

/* POP discards the top value; like pickle.py it discards the innermost MARK
 * when no value sits above it. */
static int op_pop(struct machine *m)
{
    struct node **items;
    size_t count;

    if (frame_size(m) == 0 && m->nmarks)
        return pop_mark(m, &items, &count);
    if (frame_size(m) == 0)
        return fail(m, BCPM_ERR_CORRUPT, "expected a value or MARK to discard, found an "
                                         "empty stack");
    m->nstack--;
    return 0;
}

/* ---------------------------------------------------------------- memo */

/* Picklers number memo entries 0, 1, 2, ..., so the memo is an array that
 * grows while indices stay near the entry count. Other indices go to a hash
 * table. Whatever indices a hostile pickle uses, the array stays below twice
 * the entries plus MEMO_DENSE_SLACK. */
#define MEMO_DENSE_SLACK 4096

static int memo_match(const struct slot *slot, const struct slot *probe)
{
    return slot->number == probe->number;
}

/* The memo cell of index, or NULL when it was never stored. */
static struct node **memo_find(struct machine *m, uint64_t index)
{
    struct slot probe, *slot;

    if (index < m->memo_dense_capacity && m->memo_dense[index])
        return &m->memo_dense[index];
    if (m->memo.count == 0)
        return NULL;

    memset(&probe, 0, sizeof(probe));
    probe.number = index;
    probe.hash = mix64(index);
    slot = table_find(&m->memo, &probe, memo_match);
    return slot->used ? &slot->value : NULL;
}

/* Store value under a new index, in the array when it is near enough. */
static int memo_insert(struct machine *m, uint64_t index, struct node *value)
{
    struct slot probe, *slot;
    int rc;

    if (index >= m->memo_dense_capacity && index < 2 * m->memo_entries + MEMO_DENSE_SLACK) {
        size_t capacity = m->memo_dense_capacity ? m->memo_dense_capacity * 2 : 1024;
        struct node **dense;

        while (capacity <= index)
            capacity *= 2;
        rc = charge(m, (uint64_t)(capacity - m->memo_dense_capacity) * sizeof(*dense));
        if (rc)
            return rc;
        m->table_bytes += (uint64_t)(capacity - m->memo_dense_capacity) * sizeof(*dense);
        dense = realloc(m->memo_dense, capacity * sizeof(*dense));
        if (!dense)
            return fail_nomem(m);
        memset(dense + m->memo_dense_capacity, 0,
               (capacity - m->memo_dense_capacity) * sizeof(*dense));
        m->memo_dense = dense;
        m->memo_dense_capacity = capacity;
    }
    if (index < m->memo_dense_capacity) {
        m->memo_dense[index] = value;
        return 0;
    }

    rc = table_reserve(m, &m->memo);
    if (rc)
        return rc;
    memset(&probe, 0, sizeof(probe));
    probe.number = index;
    probe.hash = mix64(index);
    slot = table_find(&m->memo, &probe, memo_match);
    *slot = probe;
    slot->used = 1;
    slot->value = value;
    m->memo.count++;
    return 0;
}

/* PUT, BINPUT, LONG_BINPUT and MEMOIZE: the top value, which stays on the stack. */
static int memo_put(struct machine *m, uint64_t index)
{
    struct node *top = NULL, **stored;
    int rc = peek(m, &top);

    if (rc)
        return rc;

    stored = memo_find(m, index);
    if (stored) {
        *stored = top;
        return 0;
    }
    if (m->memo_entries >= m->limits.max_memo)
        return fail(m, BCPM_ERR_LIMIT,
                    "the memo would hold more than max_memo (%" PRIu64 " entries)",
                    m->limits.max_memo);
    rc = memo_insert(m, index, top);
    if (rc)
        return rc;
    m->memo_entries++;
    return 0;
}

static int memo_get(struct machine *m, uint64_t index)
{
    struct node **stored = memo_find(m, index);

    if (!stored)
        return fail(m, BCPM_ERR_CORRUPT, "memo index %" PRIu64 " was never stored", index);
    return push(m, *stored);
}

/* ---------------------------------------------------------------- text decoding */

/* Length of the UTF-8 sequence at s (at most n bytes), or 0 when invalid.
 * Encoded surrogates are accepted, as Python's pickle decodes with the
 * "surrogatepass" error handler. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;

    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }

    /* Reject overlong forms and code points past U+10FFFF. */
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Byte offset of the first invalid UTF-8 sequence, or len when valid. */
static size_t utf8_invalid_at(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;

    while (i < len) {
        size_t step = utf8_sequence(s + i, len - i);

        if (step == 0)
            return i;
        i += step;
    }
    return len;
}

/* Decode the UTF-8 sequence at s (valid, n bytes long) to a code point. */
static uint32_t utf8_decode(const unsigned char *s, size_t n)
{
    static const uint8_t lead_mask[5] = {0, 0xff, 0x1f, 0x0f, 0x07};
    uint32_t cp = s[0] & lead_mask[n];
    size_t i;

    for (i = 1; i < n; i++)
        cp = (cp << 6) | (s[i] & 0x3fu);
    return cp;
}

static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A STRING node from UTF-8 bytes, validated. */
static struct node *new_unicode(struct machine *m, const char *data, size_t len)
{
    size_t bad = utf8_invalid_at(data, len);

    if (bad < len) {
        fail(m, BCPM_ERR_CORRUPT, "invalid UTF-8 at byte %zu of a %zu-byte string", bad, len);
        return NULL;
    }
    return new_text(m, BCPM_PICKLE_STRING, data, len);
}

/* Protocol 0 UNICODE: Python's raw-unicode-escape codec. Bytes are Latin-1
 * code points; \uXXXX and \UXXXXXXXX are escapes when an odd number of
 * backslashes precedes the u. */
static struct node *new_raw_unicode(struct machine *m, const char *in, size_t len)
{
    char *out;
    size_t i = 0, used = 0;
    struct node *n;

    /* Each input byte yields at most two bytes of UTF-8. */
    if (len > (SIZE_MAX - 1) / 2) {
        fail_nomem(m);
        return NULL;
    }
    out = malloc(2 * len + 1);
    if (!out) {
        fail_nomem(m);
        return NULL;
    }

    while (i < len) {
        size_t run = 0, digits, k;
        uint32_t cp = 0;

        if (in[i] != '\\') {
            used += utf8_encode((unsigned char)in[i++], out + used);
            continue;
        }

        while (i < len && in[i] == '\\') {
            out[used++] = '\\';
            i++;
            run++;
        }
        if (run % 2 == 0 || i >= len || (in[i] != 'u' && in[i] != 'U'))
            continue;

        used--; /* the odd backslash starts the escape */
        digits = in[i] == 'u' ? 4 : 8;
        i++;
        if (len - i < digits) {
            free(out);
            fail(m, BCPM_ERR_CORRUPT, "truncated \\u or \\U escape in a UNICODE string");
            return NULL;
        }
        for (k = 0; k < digits; k++) {
            int h = hex_value(in[i + k]);

            if (h < 0) {
                free(out);
                fail(m, BCPM_ERR_CORRUPT, "invalid hex digit in a \\u or \\U escape");
                return NULL;
            }
            cp = (cp << 4) | (uint32_t)h;
        }
        i += digits;
        if (cp > 0x10ffff) {
            free(out);
            fail(m, BCPM_ERR_CORRUPT, "escape \\U%08" PRIx32 " is past U+10FFFF", cp);
            return NULL;
        }
        used += utf8_encode(cp, out + used);
    }

    n = new_text(m, BCPM_PICKLE_STRING, out, used);
    free(out);
    return n;
}

/* Protocol 0 STRING: a quoted Python literal decoded like codecs.escape_decode. */
static struct node *new_escaped_string(struct machine *m, const char *in, size_t len)
{
    char *out;
    size_t i, used = 0;
    struct node *n;

    if (len < 2 || in[0] != in[len - 1] || (in[0] != '\'' && in[0] != '"')) {
        fail(m, BCPM_ERR_CORRUPT, "the STRING argument must be quoted");
        return NULL;
    }
    in++;
    len -= 2;

    out = malloc(len + 1);
    if (!out) {
        fail_nomem(m);
        return NULL;
    }

    for (i = 0; i < len; i++) {
        char c = in[i];

        if (c != '\\' || i + 1 == len) {
            if (c == '\\') {
                free(out);
                fail(m, BCPM_ERR_CORRUPT, "the STRING argument ends in a lone backslash");
                return NULL;
            }
            out[used++] = c;
            continue;
        }

        c = in[++i];
        switch (c) {
        case '\n': break;
        case '\\': out[used++] = '\\'; break;
        case '\'': out[used++] = '\''; break;
        case '"': out[used++] = '"'; break;
        case 'a': out[used++] = '\a'; break;
        case 'b': out[used++] = '\b'; break;
        case 'f': out[used++] = '\f'; break;
        case 'n': out[used++] = '\n'; break;
        case 'r': out[used++] = '\r'; break;
        case 't': out[used++] = '\t'; break;
        case 'v': out[used++] = '\v'; break;
        case 'x': {
            int hi = i + 2 < len ? hex_value(in[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(in[i + 2]) : -1;

            if (hi < 0 || lo < 0) {
                free(out);
                fail(m, BCPM_ERR_CORRUPT, "invalid \\x escape in a STRING argument");
                return NULL;
            }
            out[used++] = (char)(hi * 16 + lo);
            i += 2;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                unsigned v = (unsigned)(c - '0'), k;

                for (k = 0; k < 2 && i + 1 < len && in[i + 1] >= '0' && in[i + 1] <= '7'; k++)
                    v = v * 8 + (unsigned)(in[++i] - '0');
                out[used++] = (char)(v & 0xff);
            } else {
                /* Unknown escapes stay as written, backslash included. */
                out[used++] = '\\';
                out[used++] = c;
            }
        }
    }

    n = new_text(m, BCPM_PICKLE_BYTES, out, used);
    free(out);
    return n;
}

/* ---------------------------------------------------------------- numbers */

/* An INT node from n bytes of little-endian two's complement (LONG1, LONG4),
 * or a BIGINT node when the value does not fit int64. */
static struct node *new_long_bytes(struct machine *m, const uint8_t *data, size_t n)
{
    size_t len = n;
    int negative = n > 0 && (data[n - 1] & 0x80);
    uint64_t v = 0;
    struct node *node;

    /* Drop sign-extension bytes that do not change the value. */
    while (len > 1 && data[len - 1] == (negative ? 0xff : 0x00) &&
           ((data[len - 2] & 0x80) != 0) == negative)
        len--;

    if (len > 8) {
        node = new_text(m, BCPM_PICKLE_BIGINT, (const char *)data, n);
        return node;
    }

    v = read_le(data, (unsigned)len);
    if (negative && len < 8)
        v |= ~(uint64_t)0 << (8 * len);
    return new_int(m, len == 0 ? 0 : (int64_t)v);
}

/* An INT or BIGINT node from an optional sign and decimal digits (INT, LONG). */
static struct node *new_decimal(struct machine *m, const char *text, size_t len)
{
    int negative = 0;
    size_t i = 0, ndigits, nlimbs = 0, k;
    uint32_t *limbs;
    uint8_t *bytes;
    struct node *n;

    if (len && (text[0] == '-' || text[0] == '+')) {
        negative = text[0] == '-';
        i = 1;
    }
    ndigits = len - i;
    for (k = i; k < len && ndigits; k++) {
        if (text[k] < '0' || text[k] > '9')
            break;
    }
    if (ndigits == 0 || k < len) {
        char quoted[200];

        fail(m, BCPM_ERR_CORRUPT, "expected a decimal integer, found '%s'",
             quote_input(text, len, quoted, sizeof(quoted)));
        return NULL;
    }
    if (ndigits > MAX_DECIMAL_DIGITS) {
        fail(m, BCPM_ERR_LIMIT, "an integer of %zu decimal digits exceeds %d digits", ndigits,
             MAX_DECIMAL_DIGITS);
        return NULL;
    }

    /* Fast path: the value fits int64. */
    if (ndigits <= 18) {
        int64_t v = 0;

        for (k = i; k < len; k++)
            v = v * 10 + (text[k] - '0');
        return new_int(m, negative ? -v : v);
    }

    /* Slow path: magnitude in 32-bit limbs, nine digits at a time. */
    limbs = calloc(ndigits / 9 + 2, sizeof(*limbs));
    bytes = malloc(4 * (ndigits / 9 + 2) + 1);
    if (!limbs || !bytes) {
        free(limbs);
        free(bytes);
        fail_nomem(m);
        return NULL;
    }
    while (i < len) {
        size_t take = (len - i) % 9 ? (len - i) % 9 : 9;
        uint64_t scale = 1, chunk = 0, carry;

        for (k = 0; k < take; k++) {
            scale *= 10;
            chunk = chunk * 10 + (uint64_t)(text[i + k] - '0');
        }
        i += take;

        carry = chunk;
        for (k = 0; k < nlimbs; k++) {
            uint64_t t = (uint64_t)limbs[k] * scale + carry;
            limbs[k] = (uint32_t)t;
            carry = t >> 32;
        }
        if (carry)
            limbs[nlimbs++] = (uint32_t)carry;
    }

    /* Little-endian bytes, a zero byte so the sign bit is clear, then negate. */
    for (k = 0; k < nlimbs; k++) {
        bytes[4 * k] = (uint8_t)limbs[k];
        bytes[4 * k + 1] = (uint8_t)(limbs[k] >> 8);
        bytes[4 * k + 2] = (uint8_t)(limbs[k] >> 16);
        bytes[4 * k + 3] = (uint8_t)(limbs[k] >> 24);
    }
    bytes[4 * nlimbs] = 0;
    if (negative) {
        unsigned carry = 1;

        for (k = 0; k <= 4 * nlimbs; k++) {
            unsigned t = (unsigned)(uint8_t)~bytes[k] + carry;
            bytes[k] = (uint8_t)t;
            carry = t >> 8;
        }
    }

    n = new_long_bytes(m, bytes, 4 * nlimbs + 1);
    free(limbs);
    free(bytes);
    return n;
}

static struct node *new_float_text(struct machine *m, const char *text, size_t len)
{
    char buf[64], *copy = buf, *end;
    double v;
    struct node *n;

    /* strtod needs a NUL-terminated string. */
    if (len >= sizeof(buf)) {
        copy = malloc(len + 1);
        if (!copy) {
            fail_nomem(m);
            return NULL;
        }
    }
    memcpy(copy, text, len);
    copy[len] = '\0';

    /* NOTE: strtod follows LC_NUMERIC; the library never calls setlocale, and
     * a program that sets a locale with a decimal comma breaks FLOAT parsing. */
    errno = 0;
    v = strtod(copy, &end);
    while (*end == ' ' || *end == '\t' || *end == '\r')
        end++;
    /* Python's float() takes neither C's hexadecimal form nor a NUL inside,
     * and rejects a finite literal too large for a double. */
    if (len == 0 || *end != '\0' || memchr(text, '\0', len) || memchr(text, 'x', len) ||
        memchr(text, 'X', len) || (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))) {
        char quoted[200];

        fail(m, BCPM_ERR_CORRUPT, "expected a float, found '%s'",
             quote_input(text, len, quoted, sizeof(quoted)));
        n = NULL;
    } else {
        n = new_node(m, BCPM_PICKLE_FLOAT);
        if (n)
            n->value.u.real = v;
    }

    if (copy != buf)
        free(copy);
    return n;
}

/* ---------------------------------------------------------------- globals */

static int global_match(const struct slot *slot, const struct slot *probe)
{
    const struct bcpm_pickle_value *a = &slot->key->value, *b = &probe->key->value;

    return strcmp(a->u.global.module, b->u.global.module) == 0 &&
           strcmp(a->u.global.name, b->u.global.name) == 0;
}

/* Append the security finding for a dangerous or unknown global, once per
 * module.name and pickle. */
static int report_global(struct machine *m, const struct node *g)
{
    const char *module = g->value.u.global.module, *name = g->value.u.global.name;
    enum bcpm_global_class cls = g->value.u.global.cls;
    struct slot probe, *slot;
    struct bcpm_finding *finding;
    char *qualified, where[BCPM_ERROR_NAME_MAX + 8] = "";
    size_t mlen = strlen(module), nlen = strlen(name);
    int rc;

    if (cls == BCPM_GLOBAL_KNOWN || cls == BCPM_GLOBAL_ALLOWED || !m->findings)
        return 0;

    memset(&probe, 0, sizeof(probe));
    probe.key = g;
    probe.hash = hash_bytes(module, mlen) ^ mix64(hash_bytes(name, nlen));
    rc = table_reserve(m, &m->globals);
    if (rc)
        return rc;
    slot = table_find(&m->globals, &probe, global_match);
    if (slot->used)
        return 0;
    *slot = probe;
    slot->used = 1;
    m->globals.count++;

    qualified = malloc(mlen + nlen + 2);
    if (!qualified)
        return fail_nomem(m);
    memcpy(qualified, module, mlen);
    qualified[mlen] = '.';
    memcpy(qualified + mlen + 1, name, nlen + 1);
    if (m->in->entry)
        snprintf(where, sizeof(where), " in '%s'", m->in->entry);

    if (cls == BCPM_GLOBAL_DANGEROUS)
        finding = bcpm_findings_add(m->findings, "security.unsafe-global", BCPM_SEVERITY_CRITICAL,
                                    m->in->file, qualified,
                                    "pickle global '%s'%s can execute code or touch the system; "
                                    "it was not called",
                                    qualified, where);
    else
        finding = bcpm_findings_add(m->findings, "security.unknown-global", BCPM_SEVERITY_ERROR,
                                    m->in->file, qualified,
                                    "pickle global '%s'%s is not a known state-dict type; allow "
                                    "it in the rule set if it is plain data",
                                    qualified, where);
    free(qualified);
    if (!finding)
        return fail_nomem(m);
    finding->has_offset = 1;
    finding->offset = m->in->base_offset + m->op_pos;
    return 0;
}

/* A GLOBAL node for module.name, classified and reported. */
static struct node *new_global(struct machine *m, const char *module, size_t mlen,
                               const char *name, size_t nlen)
{
    struct node *g, *module_text, *name_text;

    /* Python imports these names, so they are UTF-8 text; a NUL inside would
     * make the C comparisons below see a different name than Python. */
    if (memchr(module, '\0', mlen) || memchr(name, '\0', nlen) || mlen == 0 || nlen == 0) {
        fail(m, BCPM_ERR_CORRUPT, "a global's module or name is empty or contains a NUL byte");
        return NULL;
    }
    module_text = new_unicode(m, module, mlen);
    name_text = module_text ? new_unicode(m, name, nlen) : NULL;
    g = name_text ? new_node(m, BCPM_PICKLE_GLOBAL) : NULL;
    if (!g)
        return NULL;

    g->value.u.global.module = module_text->value.u.text.data;
    g->value.u.global.name = name_text->value.u.text.data;
    g->value.u.global.cls = bcpm_pickle_classify(g->value.u.global.module,
                                                 g->value.u.global.name, m->options);
    bcpm_pickle_python3_name(g->value.u.global.module, g->value.u.global.name, &g->module3,
                             &g->name3);
    if (report_global(m, g))
        return NULL;
    return g;
}

/* GLOBAL and INST: "module\nname\n". */
static struct node *read_global_lines(struct machine *m)
{
    const char *module, *name;
    size_t mlen, nlen;

    if (read_line(m, &module, &mlen) || read_line(m, &name, &nlen))
        return NULL;
    return new_global(m, module, mlen, name, nlen);
}

/* ---------------------------------------------------------------- calls */

/* The Python 3 module and name of a GLOBAL node, or NULLs for other values. */
static void global_names(const struct node *g, const char **module, const char **name)
{
    *module = *name = NULL;
    if (g->value.kind != BCPM_PICKLE_GLOBAL)
        return;
    *module = g->module3;
    *name = g->name3;
}

static int names_are(const char *module, const char *name, const char *want_module,
                     const char *want_name)
{
    return module && strcmp(module, want_module) == 0 && strcmp(name, want_name) == 0;
}

/* Argument i of a tuple node, or NULL. */
static struct node *tuple_item(const struct node *args, size_t count, size_t i)
{
    if (args->value.kind != BCPM_PICKLE_TUPLE || args->value.u.seq.count != count)
        return NULL;
    return (struct node *)args->value.u.seq.items[i];
}

static int is_empty_tuple(const struct node *args)
{
    return args->value.kind == BCPM_PICKLE_TUPLE && args->value.u.seq.count == 0;
}

static int ascii_lower_equal(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char ca = *a >= 'A' && *a <= 'Z' ? (char)(*a + 32) : *a;

        if (ca != *b)
            return 0;
    }
    return *a == *b;
}

/* _codecs.encode(text, "latin1"): how Python 3 pickles bytes below protocol 3.
 * Returns NULL without failing when the call is not of that form. */
static struct node *encode_call(struct machine *m, const struct node *args)
{
    const struct node *text = tuple_item(args, 2, 0), *encoding = tuple_item(args, 2, 1);
    const unsigned char *s;
    size_t len, i = 0, used = 0;
    char *out;
    struct node *n;

    if (!text || text->value.kind != BCPM_PICKLE_STRING ||
        encoding->value.kind != BCPM_PICKLE_STRING)
        return NULL;
    if (ascii_lower_equal(encoding->value.u.text.data, "utf-8") ||
        ascii_lower_equal(encoding->value.u.text.data, "utf8"))
        return new_text(m, BCPM_PICKLE_BYTES, text->value.u.text.data, text->value.u.text.len);
    if (!ascii_lower_equal(encoding->value.u.text.data, "latin1") &&
        !ascii_lower_equal(encoding->value.u.text.data, "latin-1") &&
        !ascii_lower_equal(encoding->value.u.text.data, "iso-8859-1"))
        return NULL;

    /* Every code point must be below 256; the text was validated as UTF-8. */
    s = (const unsigned char *)text->value.u.text.data;
    len = text->value.u.text.len;
    out = malloc(len + 1);
    if (!out) {
        fail_nomem(m);
        return NULL;
    }
    while (i < len) {
        size_t step = utf8_sequence(s + i, len - i);
        uint32_t cp = utf8_decode(s + i, step);

        if (cp > 0xff) {
            free(out);
            fail(m, BCPM_ERR_CORRUPT,
                 "_codecs.encode to latin1 of a string with code point U+%04" PRIX32, cp);
            return NULL;
        }
        out[used++] = (char)cp;
        i += step;
    }
    n = new_text(m, BCPM_PICKLE_BYTES, out, used);
    free(out);
    return n;
}

/* set(items) and frozenset(items). */
static struct node *set_call(struct machine *m, const struct node *args)
{
    const struct node *items;

    if (is_empty_tuple(args))
        return new_node(m, BCPM_PICKLE_SET);
    items = tuple_item(args, 1, 0);
    if (!items || (items->value.kind != BCPM_PICKLE_LIST && items->value.kind != BCPM_PICKLE_TUPLE &&
                   items->value.kind != BCPM_PICKLE_SET))
        return NULL;
    return new_seq(m, BCPM_PICKLE_SET, (struct node **)items->value.u.seq.items,
                   items->value.u.seq.count);
}

/* bytes(), bytearray() and bytearray(b"..."). */
static struct node *bytes_call(struct machine *m, const struct node *args)
{
    const struct node *data;

    if (is_empty_tuple(args))
        return new_text(m, BCPM_PICKLE_BYTES, "", 0);
    data = tuple_item(args, 1, 0);
    if (!data || data->value.kind != BCPM_PICKLE_BYTES)
        return NULL;
    return new_text(m, BCPM_PICKLE_BYTES, data->value.u.text.data, data->value.u.text.len);
}

/* Interpret a call of a known state-dict constructor, or return NULL (without
 * failing) when callable(args) is not one. */
static struct node *interpret_call(struct machine *m, const struct node *callable,
                                   const struct node *args)
{
    const char *module, *name;

    global_names(callable, &module, &name);
    if (!module || args->value.kind != BCPM_PICKLE_TUPLE)
        return NULL;

    if (names_are(module, name, "collections", "OrderedDict") && is_empty_tuple(args))
        return new_node(m, BCPM_PICKLE_DICT);
    if (names_are(module, name, "builtins", "set") ||
        names_are(module, name, "builtins", "frozenset"))
        return set_call(m, args);
    if (names_are(module, name, "builtins", "bytearray") ||
        names_are(module, name, "builtins", "bytes"))
        return bytes_call(m, args);
    if (names_are(module, name, "_codecs", "encode"))
        return encode_call(m, args);

    /* torch.Size((2, 3)) is the tuple (2, 3). */
    if (names_are(module, name, "torch", "Size")) {
        struct node *dims = tuple_item(args, 1, 0);

        if (dims && dims->value.kind == BCPM_PICKLE_TUPLE)
            return dims;
        if (dims && dims->value.kind == BCPM_PICKLE_LIST)
            return new_seq(m, BCPM_PICKLE_TUPLE, (struct node **)dims->value.u.seq.items,
                           dims->value.u.seq.count);
    }
    return NULL;
}

/* REDUCE, NEWOBJ, NEWOBJ_EX, INST and OBJ: interpret a known constructor or
 * record the call. Nothing is called. */
static int push_call(struct machine *m, struct node *callable, struct node *args,
                     struct node *kwargs)
{
    struct node *result = NULL, *object;
    int rc;

    if (!kwargs) {
        result = interpret_call(m, callable, args);
        if (m->status)
            return m->status;
        if (result)
            return push(m, result);
    }

    object = new_node(m, BCPM_PICKLE_OBJECT);
    if (!object)
        return m->status;
    object->value.u.object.callable = &callable->value;
    object->value.u.object.args = &args->value;
    object->value.u.object.kwargs = kwargs ? &kwargs->value : NULL;
    rc = adopt(m, object, callable);
    if (!rc)
        rc = adopt(m, object, args);
    if (!rc && kwargs)
        rc = adopt(m, object, kwargs);
    if (rc)
        return rc;
    return push(m, object);
}

/* ---------------------------------------------------------------- mutation */

/* Containers may change only while no other value contains them; the file
 * comment explains why this keeps the graph acyclic. */
static int check_mutable(struct machine *m, const struct node *target, struct node **items,
                         size_t count)
{
    size_t i;

    if (target->nested)
        return fail(m, BCPM_ERR_UNSUPPORTED,
                    "recursive structures are not supported: the %s being changed is already "
                    "inside another value",
                    bcpm_pickle_kind_name(target->value.kind));
    for (i = 0; i < count; i++) {
        if (items[i] == target)
            return fail(m, BCPM_ERR_UNSUPPORTED,
                        "recursive structures are not supported: a %s would contain itself",
                        bcpm_pickle_kind_name(target->value.kind));
    }
    return 0;
}

/* The container that APPEND, SETITEM or ADDITEMS changes: target itself, or
 * for an object (a list or dict subclass, a defaultdict) the items node kept
 * beside its call. NULL with a failure when target cannot take items. */
static struct node *items_target(struct machine *m, struct node *target,
                                 enum bcpm_pickle_kind kind)
{
    struct node *items;

    if (target->value.kind == kind)
        return target;
    if (target->value.kind != BCPM_PICKLE_OBJECT) {
        fail(m, BCPM_ERR_CORRUPT, "expected a %s or object below the items, found a %s",
             bcpm_pickle_kind_name(kind), bcpm_pickle_kind_name(target->value.kind));
        return NULL;
    }

    items = (struct node *)target->value.u.object.items;
    if (!items) {
        items = new_node(m, kind);
        if (!items || adopt(m, target, items))
            return NULL;
        target->value.u.object.items = &items->value;
    } else if (items->value.kind != kind) {
        fail(m, BCPM_ERR_CORRUPT, "an object that took %s items cannot take %s items",
             bcpm_pickle_kind_name(items->value.kind), bcpm_pickle_kind_name(kind));
        return NULL;
    }
    return items;
}

/* After items changed, the object that owns them covers their new depth. */
static int refresh_depth(struct machine *m, struct node *target, struct node *items)
{
    if (target == items)
        return 0;
    return adopt(m, target, items);
}

/* APPEND, APPENDS and ADDITEMS on the value at the top of the stack. */
static int add_items(struct machine *m, enum bcpm_pickle_kind kind, struct node **items,
                     size_t count)
{
    struct node *target = NULL, *container;
    int rc = peek(m, &target);

    if (!rc)
        rc = check_mutable(m, target, items, count);
    if (rc)
        return rc;
    container = items_target(m, target, kind);
    if (!container)
        return m->status;
    rc = seq_append(m, container, items, count);
    if (rc)
        return rc;
    return refresh_depth(m, target, container);
}

/* SETITEM and SETITEMS: pairs is key, value, key, value, ... */
static int set_items(struct machine *m, struct node **pairs, size_t count)
{
    struct node *target = NULL, *dict;
    size_t i;
    int rc;

    if (count % 2)
        return fail(m, BCPM_ERR_CORRUPT, "expected key-value pairs, found %zu values", count);
    rc = peek(m, &target);
    if (!rc)
        rc = check_mutable(m, target, pairs, count);
    if (rc)
        return rc;
    dict = items_target(m, target, BCPM_PICKLE_DICT);
    if (!dict)
        return m->status;

    for (i = 0; i < count; i += 2) {
        rc = dict_set(m, dict, pairs[i], pairs[i + 1]);
        if (rc)
            return rc;
    }
    return refresh_depth(m, target, dict);
}

/* BUILD: state goes to an object, or to a dict (OrderedDict's _metadata). */
static int op_build(struct machine *m)
{
    struct node *state = NULL, *target = NULL;
    int rc = pop(m, &state);

    if (!rc)
        rc = peek(m, &target);
    if (!rc)
        rc = check_mutable(m, target, &state, 1);
    if (rc)
        return rc;

    if (target->value.kind == BCPM_PICKLE_OBJECT)
        target->value.u.object.state = &state->value;
    else if (target->value.kind == BCPM_PICKLE_DICT)
        target->value.u.dict.state = &state->value;
    else
        return fail(m, BCPM_ERR_CORRUPT, "expected an object or dict below the state, found a %s",
                    bcpm_pickle_kind_name(target->value.kind));
    return adopt(m, target, state);
}

/* ---------------------------------------------------------------- opcode groups */

/* Opcodes with a length-prefixed string, bytes or unicode argument. */
static int op_counted_text(struct machine *m, unsigned prefix, int is_signed,
                           enum bcpm_pickle_kind kind)
{
    uint64_t len;
    const char *data;
    int rc = read_uint(m, prefix, &len);

    if (rc)
        return rc;
    if (is_signed && (len & 0x80000000u))
        return fail(m, BCPM_ERR_CORRUPT, "negative length %" PRId32, (int32_t)(uint32_t)len);
    rc = check_length(m, len);
    if (rc)
        return rc;

    data = (const char *)m->in->data + m->pos;
    m->pos += len;
    if (kind == BCPM_PICKLE_STRING)
        return push(m, new_unicode(m, data, (size_t)len));
    return push(m, new_text(m, kind, data, (size_t)len));
}

static int op_line_value(struct machine *m)
{
    const char *text;
    size_t len;
    int rc = read_line(m, &text, &len);

    if (rc)
        return rc;

    switch (m->op) {
    case OP_INT:
        /* Protocol 0 writes booleans as INT 00 and 01. */
        if (len == 2 && text[0] == '0' && (text[1] == '0' || text[1] == '1')) {
            struct node *b = new_node(m, BCPM_PICKLE_BOOL);

            if (b)
                b->value.u.boolean = text[1] == '1';
            return push(m, b);
        }
        return push(m, new_decimal(m, text, len));
    case OP_LONG:
        if (len && text[len - 1] == 'L')
            len--;
        return push(m, new_decimal(m, text, len));
    case OP_FLOAT:
        return push(m, new_float_text(m, text, len));
    case OP_STRING:
        return push(m, new_escaped_string(m, text, len));
    case OP_UNICODE:
        return push(m, new_raw_unicode(m, text, len));
    }
    return fail(m, BCPM_ERR_CORRUPT, "not a text opcode");
}

static int op_long_binary(struct machine *m, unsigned prefix)
{
    uint64_t len;
    int rc = read_uint(m, prefix, &len);

    if (rc)
        return rc;
    if (prefix == 4 && (len & 0x80000000u))
        return fail(m, BCPM_ERR_CORRUPT, "negative byte count %" PRId32, (int32_t)(uint32_t)len);
    rc = check_length(m, len);
    if (rc)
        return rc;
    rc = push(m, new_long_bytes(m, m->in->data + m->pos, (size_t)len));
    m->pos += len;
    return rc;
}

static int op_binint(struct machine *m, unsigned width)
{
    uint64_t v;
    int rc = read_uint(m, width, &v);

    if (rc)
        return rc;
    if (width == 4)
        return push(m, new_int(m, (int32_t)(uint32_t)v));
    return push(m, new_int(m, (int64_t)v));
}

static int op_binfloat(struct machine *m)
{
    uint64_t bits = 0;
    double v;
    struct node *n;
    int i, rc = need(m, 8, "opcode argument");

    if (rc)
        return rc;
    for (i = 0; i < 8; i++)
        bits = (bits << 8) | m->in->data[m->pos + (uint64_t)i];
    m->pos += 8;
    memcpy(&v, &bits, sizeof(v));

    n = new_node(m, BCPM_PICKLE_FLOAT);
    if (n)
        n->value.u.real = v;
    return push(m, n);
}

static int op_constant(struct machine *m)
{
    struct node *n = new_node(m, m->op == OP_NONE ? BCPM_PICKLE_NONE : BCPM_PICKLE_BOOL);

    if (n && m->op == OP_NEWTRUE)
        n->value.u.boolean = 1;
    return push(m, n);
}

/* TUPLE, LIST, DICT, FROZENSET: build from the values above the MARK. */
static int op_from_mark(struct machine *m)
{
    struct node **items, *n;
    size_t count, i;
    int rc = pop_mark(m, &items, &count);

    if (rc)
        return rc;

    switch (m->op) {
    case OP_TUPLE:
        return push(m, new_seq(m, BCPM_PICKLE_TUPLE, items, count));
    case OP_LIST:
        return push(m, new_seq(m, BCPM_PICKLE_LIST, items, count));
    case OP_FROZENSET:
        return push(m, new_seq(m, BCPM_PICKLE_SET, items, count));
    }

    if (count % 2)
        return fail(m, BCPM_ERR_CORRUPT, "expected key-value pairs, found %zu values", count);
    n = new_node(m, BCPM_PICKLE_DICT);
    if (!n)
        return m->status;
    for (i = 0; i < count; i += 2) {
        rc = dict_set(m, n, items[i], items[i + 1]);
        if (rc)
            return rc;
    }
    return push(m, n);
}

static int op_tuple_n(struct machine *m, size_t count)
{
    struct node *n;

    if (frame_size(m) < count)
        return stack_underflow(m, count);
    n = new_seq(m, BCPM_PICKLE_TUPLE, m->stack + m->nstack - count, count);
    if (!n)
        return m->status;
    m->nstack -= count;
    return push(m, n);
}

static int op_empty(struct machine *m)
{
    enum bcpm_pickle_kind kind = m->op == OP_EMPTY_LIST   ? BCPM_PICKLE_LIST
                                 : m->op == OP_EMPTY_DICT ? BCPM_PICKLE_DICT
                                 : m->op == OP_EMPTY_SET  ? BCPM_PICKLE_SET
                                                          : BCPM_PICKLE_TUPLE;

    return push(m, new_node(m, kind));
}

/* PUT and GET with a decimal index line; pickle.py rejects negative ones. */
static int op_memo_text(struct machine *m)
{
    const char *text;
    size_t len, i;
    uint64_t index = 0;
    int rc = read_line(m, &text, &len);

    if (rc)
        return rc;
    if (len == 0 || len > 19)
        return fail(m, BCPM_ERR_CORRUPT, "expected a memo index of 1 to 19 digits, found %zu "
                                         "characters", len);
    for (i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') {
            char quoted[200];

            return fail(m, BCPM_ERR_CORRUPT, "expected a decimal memo index, found '%s'",
                        quote_input(text, len, quoted, sizeof(quoted)));
        }
        index = index * 10 + (uint64_t)(text[i] - '0');
    }
    return m->op == OP_PUT ? memo_put(m, index) : memo_get(m, index);
}

static int op_memo_binary(struct machine *m, unsigned width)
{
    uint64_t index;
    int rc = read_uint(m, width, &index);

    if (rc)
        return rc;
    if (m->op == OP_BINPUT || m->op == OP_LONG_BINPUT)
        return memo_put(m, index);
    return memo_get(m, index);
}

static int op_persid(struct machine *m)
{
    struct node *pid, *n;
    int rc;

    if (m->op == OP_PERSID) {
        const char *text;
        size_t len, i;

        rc = read_line(m, &text, &len);
        if (rc)
            return rc;
        for (i = 0; i < len; i++) {
            if ((unsigned char)text[i] >= 0x80)
                return fail(m, BCPM_ERR_CORRUPT, "the persistent id is not ASCII");
        }
        pid = new_text(m, BCPM_PICKLE_STRING, text, len);
        if (!pid)
            return m->status;
    } else {
        rc = pop(m, &pid);
        if (rc)
            return rc;
    }

    n = new_node(m, BCPM_PICKLE_PERSID);
    if (!n)
        return m->status;
    n->value.u.persid.pid = &pid->value;
    rc = adopt(m, n, pid);
    if (rc)
        return rc;
    return push(m, n);
}

static int op_stack_global(struct machine *m)
{
    struct node *module, *name;
    int rc = pop(m, &name);

    if (!rc)
        rc = pop(m, &module);
    if (rc)
        return rc;
    if (module->value.kind != BCPM_PICKLE_STRING || name->value.kind != BCPM_PICKLE_STRING)
        return fail(m, BCPM_ERR_CORRUPT, "expected two strings (module, name), found a %s and a %s",
                    bcpm_pickle_kind_name(module->value.kind),
                    bcpm_pickle_kind_name(name->value.kind));
    return push(m, new_global(m, module->value.u.text.data, module->value.u.text.len,
                              name->value.u.text.data, name->value.u.text.len));
}

static int op_reduce_like(struct machine *m)
{
    struct node *callable, *args, *kwargs = NULL;
    int rc = 0;

    if (m->op == OP_NEWOBJ_EX)
        rc = pop(m, &kwargs);
    if (!rc)
        rc = pop(m, &args);
    if (!rc)
        rc = pop(m, &callable);
    if (rc)
        return rc;
    return push_call(m, callable, args, kwargs);
}

/* INST (global from the text lines) and OBJ (class first above the MARK):
 * the other values above the MARK are the arguments. */
static int op_inst_obj(struct machine *m)
{
    struct node *callable = NULL, **items, *args;
    size_t count;
    int rc;

    if (m->op == OP_INST) {
        callable = read_global_lines(m);
        if (!callable)
            return m->status;
    }
    rc = pop_mark(m, &items, &count);
    if (rc)
        return rc;
    if (m->op == OP_OBJ) {
        if (count == 0)
            return fail(m, BCPM_ERR_CORRUPT, "expected a class above the MARK, found nothing");
        callable = items[0];
        items++;
        count--;
    }
    args = new_seq(m, BCPM_PICKLE_TUPLE, items, count);
    if (!args)
        return m->status;
    return push_call(m, callable, args, NULL);
}

static int op_frame(struct machine *m)
{
    uint64_t len;
    int rc = read_uint(m, 8, &len);

    if (rc)
        return rc;
    if (len > bytes_left(m))
        return fail(m, BCPM_ERR_CORRUPT,
                    "a frame of %" PRIu64 " bytes runs past the end (%" PRIu64 " bytes left)",
                    len, bytes_left(m));
    return 0;
}

static int op_proto(struct machine *m)
{
    uint64_t version;
    int rc = read_uint(m, 1, &version);

    if (rc)
        return rc;
    if (version > 5)
        return fail(m, BCPM_ERR_UNSUPPORTED, "protocol %" PRIu64 " is newer than 5, the latest "
                                             "this reader knows", version);
    return 0;
}

static int op_extension(struct machine *m, unsigned width)
{
    uint64_t code;
    int rc = read_uint(m, width, &code);

    if (rc)
        return rc;
    return fail(m, BCPM_ERR_UNSUPPORTED,
                "extension code %" PRIu64 " needs copyreg's extension registry, which "
                "imports code; such pickles are rejected", code);
}

/* Run the opcode m->op. Returns 1 after STOP, 0 to continue, or a status. */
static int run_opcode(struct machine *m)
{
    struct node *n, **items;
    size_t count;
    int rc;

    switch (m->op) {
    case OP_PROTO: return op_proto(m);
    case OP_FRAME: return op_frame(m);
    case OP_STOP:
        if (m->nstack != 1 || m->nmarks != 0)
            return fail(m, BCPM_ERR_CORRUPT,
                        "expected exactly one value and no open MARK, found %zu value(s) and "
                        "%zu open MARK(s)",
                        m->nstack, m->nmarks);
        return 1;

    case OP_MARK: return op_mark(m);
    case OP_POP: return op_pop(m);
    case OP_POP_MARK: return pop_mark(m, &items, &count);
    case OP_DUP:
        rc = peek(m, &n);
        return rc ? rc : push(m, n);

    case OP_INT:
    case OP_LONG:
    case OP_FLOAT:
    case OP_STRING:
    case OP_UNICODE: return op_line_value(m);
    case OP_BININT: return op_binint(m, 4);
    case OP_BININT1: return op_binint(m, 1);
    case OP_BININT2: return op_binint(m, 2);
    case OP_LONG1: return op_long_binary(m, 1);
    case OP_LONG4: return op_long_binary(m, 4);
    case OP_BINFLOAT: return op_binfloat(m);
    case OP_NONE:
    case OP_NEWTRUE:
    case OP_NEWFALSE: return op_constant(m);

    case OP_BINSTRING: return op_counted_text(m, 4, 1, BCPM_PICKLE_BYTES);
    case OP_SHORT_BINSTRING: return op_counted_text(m, 1, 0, BCPM_PICKLE_BYTES);
    case OP_BINBYTES: return op_counted_text(m, 4, 0, BCPM_PICKLE_BYTES);
    case OP_SHORT_BINBYTES: return op_counted_text(m, 1, 0, BCPM_PICKLE_BYTES);
    case OP_BINBYTES8:
    case OP_BYTEARRAY8: return op_counted_text(m, 8, 0, BCPM_PICKLE_BYTES);
    case OP_BINUNICODE: return op_counted_text(m, 4, 0, BCPM_PICKLE_STRING);
    case OP_SHORT_BINUNICODE: return op_counted_text(m, 1, 0, BCPM_PICKLE_STRING);
    case OP_BINUNICODE8: return op_counted_text(m, 8, 0, BCPM_PICKLE_STRING);

    case OP_EMPTY_TUPLE:
    case OP_EMPTY_LIST:
    case OP_EMPTY_DICT:
    case OP_EMPTY_SET: return op_empty(m);
    case OP_TUPLE:
    case OP_LIST:
    case OP_DICT:
    case OP_FROZENSET: return op_from_mark(m);
    case OP_TUPLE1: return op_tuple_n(m, 1);
    case OP_TUPLE2: return op_tuple_n(m, 2);
    case OP_TUPLE3: return op_tuple_n(m, 3);

    case OP_APPEND:
        rc = pop(m, &n);
        return rc ? rc : add_items(m, BCPM_PICKLE_LIST, &n, 1);
    case OP_APPENDS:
    case OP_ADDITEMS:
        rc = pop_mark(m, &items, &count);
        if (rc)
            return rc;
        return add_items(m, m->op == OP_APPENDS ? BCPM_PICKLE_LIST : BCPM_PICKLE_SET, items,
                         count);
    case OP_SETITEM:
        if (frame_size(m) < 3)
            return stack_underflow(m, 3);
        m->nstack -= 2;
        return set_items(m, m->stack + m->nstack, 2);
    case OP_SETITEMS:
        rc = pop_mark(m, &items, &count);
        return rc ? rc : set_items(m, items, count);
    case OP_BUILD: return op_build(m);

    case OP_GET:
    case OP_PUT: return op_memo_text(m);
    case OP_BINGET:
    case OP_BINPUT: return op_memo_binary(m, 1);
    case OP_LONG_BINGET:
    case OP_LONG_BINPUT: return op_memo_binary(m, 4);
    case OP_MEMOIZE: return memo_put(m, m->memo_entries);

    case OP_GLOBAL: return push(m, read_global_lines(m));
    case OP_STACK_GLOBAL: return op_stack_global(m);
    case OP_REDUCE:
    case OP_NEWOBJ:
    case OP_NEWOBJ_EX: return op_reduce_like(m);
    case OP_INST:
    case OP_OBJ: return op_inst_obj(m);
    case OP_PERSID:
    case OP_BINPERSID: return op_persid(m);

    case OP_EXT1: return op_extension(m, 1);
    case OP_EXT2: return op_extension(m, 2);
    case OP_EXT4: return op_extension(m, 4);
    case OP_NEXT_BUFFER:
    case OP_READONLY_BUFFER:
        return fail(m, BCPM_ERR_UNSUPPORTED,
                    "out-of-band buffers (protocol 5 with buffer_callback) are not supported");
    }
    return fail(m, BCPM_ERR_CORRUPT, "not an opcode of pickle protocols 0 to 5");
}

/* ---------------------------------------------------------------- entry points */

static void fill_limits(struct bcpm_pickle_limits *out, const struct bcpm_open_options *options)
{
    if (options)
        *out = options->limits;
    else
        memset(out, 0, sizeof(*out));

    if (!out->max_opcodes)
        out->max_opcodes = BCPM_PICKLE_DEFAULT_MAX_OPCODES;
    if (!out->max_stack_depth)
        out->max_stack_depth = BCPM_PICKLE_DEFAULT_MAX_STACK_DEPTH;
    if (!out->max_nesting)
        out->max_nesting = BCPM_PICKLE_DEFAULT_MAX_NESTING;
    if (!out->max_memo)
        out->max_memo = BCPM_PICKLE_DEFAULT_MAX_MEMO;
    if (!out->max_container_items)
        out->max_container_items = BCPM_PICKLE_DEFAULT_MAX_CONTAINER_ITEMS;
    if (!out->max_string_bytes)
        out->max_string_bytes = BCPM_PICKLE_DEFAULT_MAX_STRING_BYTES;
    if (!out->max_total_bytes)
        out->max_total_bytes = BCPM_PICKLE_DEFAULT_MAX_TOTAL_BYTES;
}

/* Run opcodes until STOP. */
static int run(struct machine *m)
{
    for (;;) {
        int rc;

        if (m->pos >= m->in->size) {
            m->op_pos = m->pos;
            m->status = BCPM_ERR_CORRUPT;
            bcpm_error_set(m->err, BCPM_ERR_CORRUPT, m->in->file, m->in->entry,
                           "the pickle ends after %" PRIu64 " bytes without a STOP opcode",
                           m->in->size);
            bcpm_error_at(m->err, m->in->base_offset + m->pos);
            return BCPM_ERR_CORRUPT;
        }

        m->op_pos = m->pos;
        m->op = m->in->data[m->pos++];
        if (++m->nopcodes > m->limits.max_opcodes)
            return fail(m, BCPM_ERR_LIMIT, "the pickle has more than max_opcodes (%" PRIu64
                                           " opcodes)", m->limits.max_opcodes);

        rc = run_opcode(m);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return 0;
    }
}

int bcpm_pickle_load(struct bcpm_pickle **out, const struct bcpm_pickle_input *input,
                     const struct bcpm_open_options *options, struct bcpm_findings *findings,
                     struct bcpm_error *err)
{
    struct machine m;
    struct bcpm_pickle *pickle;
    int rc;

    *out = NULL;
    if (!input || (!input->data && input->size))
        return bcpm_error_set(err, BCPM_ERR_USAGE, NULL, NULL,
                              "bcpm_pickle_load needs input bytes");

    pickle = calloc(1, sizeof(*pickle));
    if (!pickle)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, input->file, input->entry,
                              "out of memory while starting the pickle machine");

    memset(&m, 0, sizeof(m));
    m.in = input;
    m.options = options;
    m.findings = findings;
    m.err = err;
    m.pickle = pickle;
    fill_limits(&m.limits, options);

    rc = run(&m);
    if (rc == 0) {
        pickle->root = &m.stack[0]->value;
        pickle->consumed = m.pos;
    }

    free(m.stack);
    free(m.marks);
    free(m.memo_dense);
    table_free(&m.memo);
    table_free(&m.keys);
    table_free(&m.globals);

    if (rc) {
        bcpm_pickle_free(pickle);
        return rc;
    }
    *out = pickle;
    return 0;
}

const struct bcpm_pickle_value *bcpm_pickle_root(const struct bcpm_pickle *pickle)
{
    return pickle ? pickle->root : NULL;
}

uint64_t bcpm_pickle_consumed(const struct bcpm_pickle *pickle)
{
    return pickle ? pickle->consumed : 0;
}

void bcpm_pickle_free(struct bcpm_pickle *pickle)
{
    if (!pickle)
        return;
    arena_free(pickle);
    free(pickle);
}

/* ---------------------------------------------------------------- queries */

int bcpm_pickle_is_global(const struct bcpm_pickle_value *value, const char *module,
                          const char *name)
{
    const char *module3, *name3;

    if (!value)
        return 0;
    if (value->kind == BCPM_PICKLE_OBJECT)
        value = value->u.object.callable;
    if (!value || value->kind != BCPM_PICKLE_GLOBAL)
        return 0;

    if (strcmp(value->u.global.module, module) == 0 && strcmp(value->u.global.name, name) == 0)
        return 1;
    bcpm_pickle_python3_name(value->u.global.module, value->u.global.name, &module3, &name3);
    return strcmp(module3, module) == 0 && strcmp(name3, name) == 0;
}

const struct bcpm_pickle_value *bcpm_pickle_dict_get(const struct bcpm_pickle_value *value,
                                                     const char *key)
{
    size_t i, len;

    if (!value || value->kind != BCPM_PICKLE_DICT || !key)
        return NULL;
    len = strlen(key);
    for (i = value->u.dict.count; i-- > 0;) {
        const struct bcpm_pickle_value *k = value->u.dict.keys[i];

        if (k->kind == BCPM_PICKLE_STRING && k->u.text.len == len &&
            memcmp(k->u.text.data, key, len) == 0)
            return value->u.dict.values[i];
    }
    return NULL;
}

const char *bcpm_pickle_kind_name(enum bcpm_pickle_kind kind)
{
    switch (kind) {
    case BCPM_PICKLE_NONE: return "None";
    case BCPM_PICKLE_BOOL: return "bool";
    case BCPM_PICKLE_INT: return "int";
    case BCPM_PICKLE_BIGINT: return "big int";
    case BCPM_PICKLE_FLOAT: return "float";
    case BCPM_PICKLE_STRING: return "string";
    case BCPM_PICKLE_BYTES: return "bytes";
    case BCPM_PICKLE_TUPLE: return "tuple";
    case BCPM_PICKLE_LIST: return "list";
    case BCPM_PICKLE_DICT: return "dict";
    case BCPM_PICKLE_SET: return "set";
    case BCPM_PICKLE_GLOBAL: return "global";
    case BCPM_PICKLE_OBJECT: return "object";
    case BCPM_PICKLE_PERSID: return "persistent id";
    }
    return "value";
}
