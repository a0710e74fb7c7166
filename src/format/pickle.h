/*
 * A pickle machine that builds a value tree and never executes anything.
 *
 * It reads protocols 0 to 5. GLOBAL and STACK_GLOBAL produce global nodes
 * that record module, name, the class the policy gives them and the byte
 * offset of the opcode. REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST and BUILD never
 * call anything: a few known state-dict constructors are interpreted
 * (collections.OrderedDict builds a dict, builtins.set a set, torch.Size a
 * tuple, _codecs.encode bytes, ...), and every other call becomes an object
 * node holding the callable and its arguments, which the torch reader reads
 * (torch._utils._rebuild_tensor_v2 and friends). Persistent ids become
 * persid nodes; the torch reader resolves them to storages.
 *
 * Every global that is not known-safe or allowed by the rule set is recorded
 * as a finding (security.unsafe-global or security.unknown-global) with the
 * opcode's byte offset. Resource caps (struct bcpm_pickle_limits) bound
 * opcodes, stack, nesting, memo, container and string sizes; hitting one is
 * BCPM_ERR_LIMIT, never a silent truncation.
 */
#ifndef BCPM_FORMAT_PICKLE_H
#define BCPM_FORMAT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/finding.h"
#include "tensor/catalog.h"

/* Defaults for zero fields of struct bcpm_pickle_limits. */
#define BCPM_PICKLE_DEFAULT_MAX_OPCODES (64ULL << 20)
#define BCPM_PICKLE_DEFAULT_MAX_STACK_DEPTH (1ULL << 20)
#define BCPM_PICKLE_DEFAULT_MAX_NESTING 256
#define BCPM_PICKLE_DEFAULT_MAX_MEMO (4ULL << 20)
#define BCPM_PICKLE_DEFAULT_MAX_CONTAINER_ITEMS (16ULL << 20)
#define BCPM_PICKLE_DEFAULT_MAX_STRING_BYTES (64ULL << 20)
#define BCPM_PICKLE_DEFAULT_MAX_TOTAL_BYTES (512ULL << 20)

enum bcpm_global_class {
    BCPM_GLOBAL_KNOWN,     /* built in: what a state dict needs */
    BCPM_GLOBAL_ALLOWED,   /* listed as allowed by the rule set */
    BCPM_GLOBAL_DANGEROUS, /* can run code or touch the system */
    BCPM_GLOBAL_UNKNOWN,   /* anything else: fails closed */
};

enum bcpm_pickle_kind {
    BCPM_PICKLE_NONE,
    BCPM_PICKLE_BOOL,
    BCPM_PICKLE_INT,      /* fits int64 */
    BCPM_PICKLE_BIGINT,   /* LONG1/LONG4 too wide for int64: bytes kept in text */
    BCPM_PICKLE_FLOAT,
    BCPM_PICKLE_STRING,   /* unicode; text is NUL-terminated UTF-8 */
    BCPM_PICKLE_BYTES,    /* bytes, bytearray, protocol-0/1 byte strings */
    BCPM_PICKLE_TUPLE,
    BCPM_PICKLE_LIST,
    BCPM_PICKLE_DICT,     /* dict and OrderedDict, insertion order kept */
    BCPM_PICKLE_SET,      /* set and frozenset */
    BCPM_PICKLE_GLOBAL,
    BCPM_PICKLE_OBJECT,   /* an uninterpreted call: callable(args), optional BUILD state */
    BCPM_PICKLE_PERSID,   /* persistent id */
};

struct bcpm_pickle_value {
    enum bcpm_pickle_kind kind;
    uint64_t offset; /* byte offset of the opcode that made it, from the file start */
    union {
        int boolean;
        int64_t integer;
        double real;
        struct {
            const char *data; /* NUL-terminated, len excludes the NUL */
            size_t len;
        } text;               /* STRING, BYTES, BIGINT (little-endian two's complement) */
        struct {
            struct bcpm_pickle_value **items;
            size_t count;
        } seq;                /* TUPLE, LIST, SET */
        struct {
            struct bcpm_pickle_value **keys;
            struct bcpm_pickle_value **values;
            size_t count;
            struct bcpm_pickle_value *state; /* BUILD on the dict (OrderedDict's
                                                _metadata holder), or NULL */
        } dict;
        struct {
            const char *module;
            const char *name;
            enum bcpm_global_class cls;
        } global;
        struct {
            struct bcpm_pickle_value *callable; /* a GLOBAL node (or any value) */
            struct bcpm_pickle_value *args;     /* usually a TUPLE */
            struct bcpm_pickle_value *state;    /* from BUILD, or NULL */
            struct bcpm_pickle_value *kwargs;   /* NEWOBJ_EX keyword arguments, or NULL */
            struct bcpm_pickle_value *items;    /* LIST, DICT or SET of what APPEND(S),
                                                   SETITEM(S) or ADDITEMS added, or NULL */
        } object;
        struct {
            struct bcpm_pickle_value *pid;
        } persid;
    } u;
};

struct bcpm_pickle; /* the parsed result and the memory behind its values */

struct bcpm_pickle_input {
    const uint8_t *data;   /* the pickle bytes */
    uint64_t size;         /* bytes available; parsing stops at STOP */
    uint64_t base_offset;  /* offset of data[0] in the file, for messages and findings */
    const char *file;      /* for messages and findings */
    const char *entry;     /* zip entry ("archive/data.pkl") or NULL */
};

/*
 * Parse one pickle, up to and including its STOP opcode. Findings for unsafe
 * and unknown globals are appended to findings (which may be NULL), once per
 * module.name, and stay there when a later opcode fails. options supplies the
 * allowed globals and the limits (NULL for defaults). On success *out is
 * owned by the caller (bcpm_pickle_free).
 *
 * Errors: BCPM_ERR_CORRUPT (malformed pickle), BCPM_ERR_LIMIT (a cap hit),
 * BCPM_ERR_UNSUPPORTED (EXT1/2/4, out-of-band buffers, protocol above 5, a
 * recursive structure), BCPM_ERR_NOMEM. Messages start with "pickle opcode
 * NAME:" and err's offset is the opcode's offset in the file.
 *
 * The value graph is acyclic and no deeper than limits.max_nesting, so it
 * can be walked recursively. Values may be shared (memo), so a walk may meet
 * the same node twice. Expanded at every use, the tree contains at most
 * limits.max_opcodes values, so even a walk that does not remember visited
 * nodes ends.
 */
int bcpm_pickle_load(struct bcpm_pickle **out, const struct bcpm_pickle_input *input,
                     const struct bcpm_open_options *options, struct bcpm_findings *findings,
                     struct bcpm_error *err);

/* The top-level value (what STOP returned). */
const struct bcpm_pickle_value *bcpm_pickle_root(const struct bcpm_pickle *pickle);

/* Bytes consumed, STOP included: where the next pickle of a legacy file starts. */
uint64_t bcpm_pickle_consumed(const struct bcpm_pickle *pickle);

void bcpm_pickle_free(struct bcpm_pickle *pickle);

/* Classify module.name under options' allowed globals (options may be NULL). */
enum bcpm_global_class bcpm_pickle_classify(const char *module, const char *name,
                                            const struct bcpm_open_options *options);

/*
 * 1 if value is a GLOBAL node (or OBJECT whose callable is) for module.name,
 * as written or under its Python 3 name ("__builtin__.set" is "builtins.set").
 */
int bcpm_pickle_is_global(const struct bcpm_pickle_value *value, const char *module,
                          const char *name);

/*
 * The value stored under the string key in a DICT value, or NULL when value
 * is not a dict or has no such key. With duplicate keys the last one wins, as
 * in Python.
 */
const struct bcpm_pickle_value *bcpm_pickle_dict_get(const struct bcpm_pickle_value *value,
                                                     const char *key);

/* Lowercase name of a kind for messages ("dict", "tuple", "object", ...). */
const char *bcpm_pickle_kind_name(enum bcpm_pickle_kind kind);

#endif
