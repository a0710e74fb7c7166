/*
 * The reader for legacy PyTorch checkpoints (torch.save with
 * _use_new_zipfile_serialization=False, the only format before PyTorch 1.6).
 *
 * Layout, consecutive protocol-2 pickles followed by raw data:
 *
 *   pickle  magic number 0x1950a86a20f9469cfc6c (a LONG)
 *   pickle  protocol version 1001
 *   pickle  sys info dict {"protocol_version", "little_endian", "type_sizes"}
 *   pickle  the saved object; storages are persistent ids
 *           ('storage', <storage class>, key, location, numel, view_metadata)
 *   pickle  list of storage keys, in the order their data follows
 *   for each key in that list:
 *           int64 element count, little-endian
 *           count * element size bytes of elements
 *
 * PyTorch ignores anything after the last storage, and so does this reader.
 */
#include "format/readers.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "format/pickle.h"
#include "format/torch_state.h"
#include "io/checked.h"

/* Little-endian two's complement bytes of 0x1950a86a20f9469cfc6c, as LONG1 stores it. */
static const uint8_t magic_number[] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                       0x20, 0x6a, 0xa8, 0x50, 0x19};
#define PROTOCOL_VERSION 1001

/* One storage of the data section. */
struct span {
    enum bcpm_dtype dtype;
    uint64_t numel;       /* from the persistent id */
    int placed;           /* the key list named it and its bytes were found */
    uint64_t offset;      /* first data byte, after the count */
    uint64_t nbytes;
    uint32_t storage;     /* catalog index, or UINT32_MAX until a tensor uses it */
};

struct legacy_reader {
    struct bcpm_catalog *catalog;
    uint32_t file;
    const char *path;
    const struct bcpm_map *map;
    const struct bcpm_open_options *options;
    struct bcpm_pickle *pickles[5];
    uint64_t position;             /* where the next pickle or data starts */
    struct bcpm_torch_keymap keys; /* storage key -> index into spans */
    struct span *spans;
    size_t nspans, capacity;
    struct bcpm_torch_keymap views; /* view key -> catalog storage index */
};

static int load_next(struct legacy_reader *reader, int index, const char *what,
                     struct bcpm_error *err)
{
    struct bcpm_pickle_input input;
    int rc;

    memset(&input, 0, sizeof(input));
    input.data = reader->map->data + reader->position;
    input.size = reader->map->size - reader->position;
    input.base_offset = reader->position;
    input.file = reader->path;
    input.entry = what;
    rc = bcpm_pickle_load(&reader->pickles[index], &input, reader->options,
                          &reader->catalog->findings, err);
    if (rc != 0)
        return rc;
    reader->position += bcpm_pickle_consumed(reader->pickles[index]);
    return 0;
}

/* The first three pickles: magic number, protocol version, sys info. */
static int read_preamble(struct legacy_reader *reader, struct bcpm_error *err)
{
    const struct bcpm_pickle_value *value;
    int rc;

    rc = load_next(reader, 0, "magic number", err);
    if (rc != 0)
        return rc;
    value = bcpm_pickle_root(reader->pickles[0]);
    if (value->kind != BCPM_PICKLE_BIGINT || value->u.text.len != sizeof(magic_number) ||
        memcmp(value->u.text.data, magic_number, sizeof(magic_number)) != 0)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, reader->path, NULL,
                              "expected the legacy PyTorch magic number 0x1950a86a20f9469cfc6c "
                              "as the first pickle, found another value: not a torch.save file");

    rc = load_next(reader, 1, "protocol version", err);
    if (rc != 0)
        return rc;
    value = bcpm_pickle_root(reader->pickles[1]);
    if (value->kind != BCPM_PICKLE_INT || value->u.integer != PROTOCOL_VERSION)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, reader->path, NULL,
                              "expected legacy protocol version %d, found %s%" PRId64,
                              PROTOCOL_VERSION, value->kind == BCPM_PICKLE_INT ? "" : "a non-int ",
                              value->kind == BCPM_PICKLE_INT ? value->u.integer : 0);

    rc = load_next(reader, 2, "sys info", err);
    if (rc != 0)
        return rc;
    value = bcpm_pickle_root(reader->pickles[2]);
    if (value->kind != BCPM_PICKLE_DICT)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, "sys info",
                              "expected a dict as the third pickle");
    for (size_t i = 0; i < value->u.dict.count; i++) {
        const struct bcpm_pickle_value *key = value->u.dict.keys[i];
        const struct bcpm_pickle_value *flag = value->u.dict.values[i];

        if (key->kind != BCPM_PICKLE_STRING || strcmp(key->u.text.data, "little_endian") != 0)
            continue;
        if (flag->kind != BCPM_PICKLE_BOOL || !flag->u.boolean)
            return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, reader->path, "sys info",
                                  "expected little_endian True, found a big-endian or "
                                  "malformed byte-order flag");
    }
    return 0;
}

static int is_module_id(const struct bcpm_pickle_value *pid)
{
    const struct bcpm_pickle_value *tuple = pid->u.persid.pid;

    return tuple && tuple->kind == BCPM_PICKLE_TUPLE && tuple->u.seq.count > 0 &&
           tuple->u.seq.items[0]->kind == BCPM_PICKLE_STRING &&
           strcmp(tuple->u.seq.items[0]->u.text.data, "module") == 0;
}

/* Record the dtype and size of one persistent id met in the saved object. */
static int note_storage(struct legacy_reader *reader, const struct bcpm_pickle_value *pid,
                        struct bcpm_error *err)
{
    struct bcpm_torch_source source = {reader->path, "saved object"};
    struct bcpm_torch_storage_ref ref;
    uint64_t index;
    int rc;

    /* A whole-module save also pickles ('module', class, source file, source) ids; they hold no data. */
    if (is_module_id(pid))
        return 0;
    rc = bcpm_torch_parse_storage_ref(&ref, pid, 1, &source, NULL, err);
    if (rc != 0)
        return rc;
    if (bcpm_torch_keymap_get(&reader->keys, ref.key, &index)) {
        if (reader->spans[index].dtype != ref.dtype)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, ref.key,
                                  "storage is used as %s and as %s",
                                  bcpm_dtype_name(reader->spans[index].dtype),
                                  bcpm_dtype_name(ref.dtype));
        return 0;
    }

    if (reader->nspans == reader->capacity) {
        size_t capacity = reader->capacity ? reader->capacity * 2 : 64;
        struct span *spans = realloc(reader->spans, capacity * sizeof(*spans));

        if (!spans)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, NULL, "out of memory");
        reader->spans = spans;
        reader->capacity = capacity;
    }
    memset(&reader->spans[reader->nspans], 0, sizeof(*reader->spans));
    reader->spans[reader->nspans].dtype = ref.dtype;
    reader->spans[reader->nspans].numel = ref.numel;
    reader->spans[reader->nspans].storage = UINT32_MAX;
    if (bcpm_torch_keymap_put(&reader->keys, ref.key, reader->nspans) < 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, NULL, "out of memory");
    reader->nspans++;
    return 0;
}

/* A set of visited nodes, so that shared and cyclic values are walked once. */
struct node_set {
    const void **slots;
    size_t count, capacity;
};

static int node_set_add(struct node_set *set, const void *node)
{
    size_t slot;

    if ((set->count + 1) * 2 > set->capacity) {
        size_t capacity = set->capacity ? set->capacity * 2 : 256;
        const void **slots = calloc(capacity, sizeof(*slots));

        if (!slots)
            return -1;
        for (size_t i = 0; i < set->capacity; i++) {
            if (!set->slots[i])
                continue;
            slot = (size_t)(((uintptr_t)set->slots[i] >> 4) * 0x9e3779b97f4a7c15ULL) &
                   (capacity - 1);
            while (slots[slot])
                slot = (slot + 1) & (capacity - 1);
            slots[slot] = set->slots[i];
        }
        free(set->slots);
        set->slots = slots;
        set->capacity = capacity;
    }
    slot = (size_t)(((uintptr_t)node >> 4) * 0x9e3779b97f4a7c15ULL) & (set->capacity - 1);
    while (set->slots[slot]) {
        if (set->slots[slot] == node)
            return 1;
        slot = (slot + 1) & (set->capacity - 1);
    }
    set->slots[slot] = node;
    set->count++;
    return 0;
}

/* Push value on the walk stack; grows the stack as needed. */
static int push(const struct bcpm_pickle_value ***stack, size_t *depth, size_t *capacity,
                const struct bcpm_pickle_value *value)
{
    if (!value)
        return 0;
    if (*depth == *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 256;
        const struct bcpm_pickle_value **p = realloc(*stack, grown * sizeof(*p));

        if (!p)
            return -1;
        *stack = p;
        *capacity = grown;
    }
    (*stack)[(*depth)++] = value;
    return 0;
}

/*
 * Find every persistent id in the saved object, not only those of the state
 * dict: the data section holds every storage the object refers to (optimizer
 * state included), and its element sizes come from the persistent ids.
 * The walk is iterative and visits each node once, so memo-shared or cyclic
 * values cost no more than their node count.
 */
static int collect_storages(struct legacy_reader *reader, const struct bcpm_pickle_value *root,
                            struct bcpm_error *err)
{
    const struct bcpm_pickle_value **stack = NULL;
    size_t depth = 0, capacity = 0;
    struct node_set seen = {0};
    int rc = 0, oom = push(&stack, &depth, &capacity, root);

    while (!oom && rc == 0 && depth > 0) {
        const struct bcpm_pickle_value *value = stack[--depth];
        int added = node_set_add(&seen, value);

        if (added != 0) {
            oom = added < 0;
            continue;
        }
        switch (value->kind) {
        case BCPM_PICKLE_PERSID:
            rc = note_storage(reader, value, err);
            break;
        case BCPM_PICKLE_TUPLE:
        case BCPM_PICKLE_LIST:
        case BCPM_PICKLE_SET:
            for (size_t i = 0; i < value->u.seq.count && !oom; i++)
                oom = push(&stack, &depth, &capacity, value->u.seq.items[i]);
            break;
        case BCPM_PICKLE_DICT:
            for (size_t i = 0; i < value->u.dict.count && !oom; i++)
                oom = push(&stack, &depth, &capacity, value->u.dict.keys[i]) ||
                      push(&stack, &depth, &capacity, value->u.dict.values[i]);
            if (!oom)
                oom = push(&stack, &depth, &capacity, value->u.dict.state);
            break;
        case BCPM_PICKLE_OBJECT:
            oom = push(&stack, &depth, &capacity, value->u.object.callable) ||
                  push(&stack, &depth, &capacity, value->u.object.args) ||
                  push(&stack, &depth, &capacity, value->u.object.state) ||
                  push(&stack, &depth, &capacity, value->u.object.kwargs) ||
                  push(&stack, &depth, &capacity, value->u.object.items);
            break;
        default:
            break;
        }
    }
    free(stack);
    free(seen.slots);
    if (oom)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, NULL, "out of memory");
    return rc;
}

/* Walk the data section in key-list order and check each storage against the file. */
static int place_storages(struct legacy_reader *reader, const struct bcpm_pickle_value *list,
                          struct bcpm_error *err)
{
    uint64_t size = reader->map->size;

    if (list->kind != BCPM_PICKLE_LIST)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, "storage keys",
                              "expected a list of storage keys after the saved object");

    for (size_t i = 0; i < list->u.seq.count; i++) {
        const struct bcpm_pickle_value *key = list->u.seq.items[i];
        uint64_t index, count, nbytes, left;
        struct span *span;

        if (key->kind != BCPM_PICKLE_STRING)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, "storage keys",
                                  "expected item %zu of the storage key list to be a str", i);
        if (!bcpm_torch_keymap_get(&reader->keys, key->u.text.data, &index))
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, key->u.text.data,
                                  "storage key is listed for the data section but no "
                                  "persistent id in the saved object names it");
        span = &reader->spans[index];
        if (span->placed)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, key->u.text.data,
                                  "storage key appears twice in the storage key list");

        left = size - reader->position;
        if (left < 8)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, key->u.text.data,
                                  "expected an 8-byte element count at offset %" PRIu64
                                  ", found %" PRIu64 " bytes before the end of the file",
                                  reader->position, left);
        count = 0;
        for (int b = 7; b >= 0; b--)
            count = (count << 8) | reader->map->data[reader->position + (uint64_t)b];
        if (count != span->numel)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, key->u.text.data,
                                  "storage has %" PRIu64 " elements in the data section at "
                                  "offset %" PRIu64 ", expected %" PRIu64 " as its persistent "
                                  "id says", count, reader->position, span->numel);
        if (bcpm_mul_u64(count, bcpm_dtype_size(span->dtype), &nbytes) != 0)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, key->u.text.data,
                                  "storage of %" PRIu64 " %s elements has a byte size that "
                                  "overflows 64 bits", count, bcpm_dtype_name(span->dtype));
        if (nbytes > left - 8)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, key->u.text.data,
                                  "storage of %" PRIu64 " %s elements needs %" PRIu64
                                  " bytes at offset %" PRIu64 ", but only %" PRIu64
                                  " bytes remain in the file", count,
                                  bcpm_dtype_name(span->dtype), nbytes,
                                  reader->position + 8, left - 8);
        span->placed = 1;
        span->offset = reader->position + 8;
        span->nbytes = nbytes;
        reader->position += 8 + nbytes;
    }

    for (size_t slot = 0; slot < reader->keys.capacity; slot++) {
        if (reader->keys.keys[slot] && !reader->spans[reader->keys.values[slot]].placed)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, reader->keys.keys[slot],
                                  "storage key named by a persistent id is missing from the "
                                  "storage key list, so the file has no data for it");
    }
    return 0;
}

static int add_root_storage(struct legacy_reader *reader, const char *key, struct span *span,
                            struct bcpm_error *err)
{
    struct bcpm_storage storage;

    if (span->storage != UINT32_MAX)
        return 0;
    memset(&storage, 0, sizeof(storage));
    storage.file = reader->file;
    storage.key = (char *)key;
    storage.dtype = span->dtype;
    storage.byte_offset = span->offset;
    storage.nbytes = span->nbytes;
    return bcpm_catalog_add_storage(reader->catalog, &storage, &span->storage, err);
}

/* A view of an old (pre-1.0) file: a window of view_numel elements into the root storage. */
static int add_view_storage(struct legacy_reader *reader, const struct bcpm_torch_storage_ref *ref,
                            const struct span *span, const char *tensor, uint32_t *index,
                            struct bcpm_error *err)
{
    uint64_t element_size = bcpm_dtype_size(span->dtype), known, end, begin;
    struct bcpm_storage storage;
    int rc;

    if (bcpm_torch_keymap_get(&reader->views, ref->view_key, &known)) {
        *index = (uint32_t)known;
        return 0;
    }
    if (bcpm_add_u64(ref->view_offset, ref->view_numel, &end) != 0 ||
        bcpm_mul_u64(end, element_size, &end) != 0 || end > span->nbytes)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, tensor,
                              "storage view '%s' of %" PRIu64 " elements at element %" PRIu64
                              " runs past its storage '%s' of %" PRIu64 " elements",
                              ref->view_key, ref->view_numel, ref->view_offset, ref->key,
                              span->numel);
    begin = ref->view_offset * element_size;

    memset(&storage, 0, sizeof(storage));
    storage.file = reader->file;
    storage.key = (char *)ref->view_key;
    storage.dtype = span->dtype;
    storage.byte_offset = span->offset + begin;
    storage.nbytes = end - begin;
    rc = bcpm_catalog_add_storage(reader->catalog, &storage, index, err);
    if (rc == 0 && bcpm_torch_keymap_put(&reader->views, ref->view_key, *index) < 0)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, reader->path, tensor, "out of memory");
    return rc;
}

static int resolve_storage(void *context, const struct bcpm_torch_storage_ref *ref,
                           const char *tensor, uint32_t *index, struct bcpm_error *err)
{
    struct legacy_reader *reader = context;
    struct span *span;
    uint64_t slot;
    int rc;

    /* collect_storages saw every persistent id, so the key is known. */
    if (!bcpm_torch_keymap_get(&reader->keys, ref->key, &slot))
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, reader->path, tensor,
                              "storage key '%s' not found in the data section", ref->key);
    span = &reader->spans[slot];
    rc = add_root_storage(reader, ref->key, span, err);
    if (rc != 0)
        return rc;
    if (ref->is_view)
        return add_view_storage(reader, ref, span, tensor, index, err);
    *index = span->storage;
    return 0;
}

int bcpm_read_torch_legacy(struct bcpm_catalog *catalog, uint32_t file,
                           const struct bcpm_open_options *options, struct bcpm_error *err)
{
    struct bcpm_torch_source source;
    struct legacy_reader reader;
    int rc;

    memset(&reader, 0, sizeof(reader));
    reader.catalog = catalog;
    reader.file = file;
    reader.path = catalog->files[file].path;
    reader.map = catalog->files[file].map;
    reader.options = options;

    rc = read_preamble(&reader, err);
    if (rc == 0)
        rc = load_next(&reader, 3, "saved object", err);
    if (rc == 0)
        rc = load_next(&reader, 4, "storage keys", err);
    if (rc == 0)
        rc = collect_storages(&reader, bcpm_pickle_root(reader.pickles[3]), err);
    if (rc == 0)
        rc = place_storages(&reader, bcpm_pickle_root(reader.pickles[4]), err);
    if (rc == 0) {
        source.path = reader.path;
        source.entry = NULL;
        rc = bcpm_torch_read_state(catalog, bcpm_pickle_root(reader.pickles[3]), 1, &source,
                                   resolve_storage, &reader, err);
    }

    bcpm_torch_keymap_free(&reader.keys);
    bcpm_torch_keymap_free(&reader.views);
    free(reader.spans);
    for (size_t i = 0; i < sizeof(reader.pickles) / sizeof(reader.pickles[0]); i++)
        bcpm_pickle_free(reader.pickles[i]);
    return rc;
}
