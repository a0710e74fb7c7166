/*
 * Reading a PyTorch state dict out of the unpickled value tree; see torch_state.h.
 *
 * What torch.save writes for one tensor (protocol 2, PyTorch 1.6 to 2.x):
 *
 *   torch._utils._rebuild_tensor_v2(
 *       PERSID ('storage', torch.FloatStorage, '0', 'cpu', 6),   storage id
 *       0,            storage offset, in elements
 *       (2, 3),       size
 *       (3, 1),       stride, in elements
 *       False,        requires_grad
 *       OrderedDict() backward hooks
 *       [, metadata])
 *
 * nn.Parameter wraps that call in torch._utils._rebuild_parameter(tensor,
 * requires_grad, hooks), or _rebuild_parameter_with_state(..., state).
 */
#include "format/torch_state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checked.h"

static const struct {
    const char *name;
    enum bcpm_dtype dtype;
} storage_classes[] = {
    {"BFloat16Storage", BCPM_DTYPE_BF16}, {"FloatStorage", BCPM_DTYPE_F32},
    {"HalfStorage", BCPM_DTYPE_F16},      {"DoubleStorage", BCPM_DTYPE_F64},
    {"LongStorage", BCPM_DTYPE_I64},      {"IntStorage", BCPM_DTYPE_I32},
    {"ShortStorage", BCPM_DTYPE_I16},     {"CharStorage", BCPM_DTYPE_I8},
    {"ByteStorage", BCPM_DTYPE_U8},       {"BoolStorage", BCPM_DTYPE_BOOL},
    /* Bytes without a dtype; PyTorch 2.x reads it, and the tensors on it must be U8. */
    {"UntypedStorage", BCPM_DTYPE_U8},
};

/* Keys under which training frameworks nest the model's state dict, in the order tried. */
static const char *const nested_keys[] = {"module", "model", "state_dict"};

int bcpm_torch_storage_dtype(const char *class_name, enum bcpm_dtype *out)
{
    for (size_t i = 0; i < sizeof(storage_classes) / sizeof(storage_classes[0]); i++) {
        if (strcmp(class_name, storage_classes[i].name) == 0) {
            *out = storage_classes[i].dtype;
            return 0;
        }
    }
    return -1;
}

static const char *kind_name(const struct bcpm_pickle_value *value)
{
    static const char *const names[] = {
        "None", "bool", "int", "big int", "float", "str", "bytes", "tuple",
        "list", "dict", "set", "global", "object", "persistent id",
    };

    if (!value)
        return "nothing";
    if ((unsigned)value->kind < sizeof(names) / sizeof(names[0]))
        return names[value->kind];
    return "unknown value";
}

/* A STRING node whose text has no embedded NUL, so C string functions see all of it. */
static int is_clean_string(const struct bcpm_pickle_value *value)
{
    return value && value->kind == BCPM_PICKLE_STRING &&
           strlen(value->u.text.data) == value->u.text.len;
}

/* The callable of an OBJECT node if it is a torch._utils global, else NULL. */
static const char *torch_utils_call(const struct bcpm_pickle_value *value)
{
    const struct bcpm_pickle_value *callable;

    if (!value || value->kind != BCPM_PICKLE_OBJECT)
        return NULL;
    callable = value->u.object.callable;
    if (!callable || callable->kind != BCPM_PICKLE_GLOBAL ||
        strcmp(callable->u.global.module, "torch._utils") != 0)
        return NULL;
    return callable->u.global.name;
}

static int is_tensor_value(const struct bcpm_pickle_value *value)
{
    const char *name = torch_utils_call(value);

    return name && strncmp(name, "_rebuild_", 9) == 0;
}

/* The arguments tuple of an OBJECT node with at least min items, or NULL. */
static const struct bcpm_pickle_value *call_args(const struct bcpm_pickle_value *value,
                                                 size_t min)
{
    const struct bcpm_pickle_value *args = value->u.object.args;

    if (!args || args->kind != BCPM_PICKLE_TUPLE || args->u.seq.count < min)
        return NULL;
    return args;
}

/* A non-negative int that fits int64; -1 otherwise. */
static int read_count(const struct bcpm_pickle_value *value, int64_t *out)
{
    if (!value || value->kind != BCPM_PICKLE_INT || value->u.integer < 0)
        return -1;
    *out = value->u.integer;
    return 0;
}

static int corrupt_at(struct bcpm_error *err, const struct bcpm_torch_source *source,
                      const char *name, uint64_t offset, const char *what,
                      const struct bcpm_pickle_value *found)
{
    bcpm_error_set(err, BCPM_ERR_CORRUPT, source->path, name, "expected %s, found %s%s%s",
                   what, kind_name(found), source->entry ? " in " : "",
                   source->entry ? source->entry : "");
    bcpm_error_at(err, offset);
    return BCPM_ERR_CORRUPT;
}

static int parse_view(struct bcpm_torch_storage_ref *out, const struct bcpm_pickle_value *view,
                      const struct bcpm_torch_source *source, const char *tensor,
                      struct bcpm_error *err)
{
    int64_t offset, numel;

    if (view->kind == BCPM_PICKLE_NONE)
        return 0;
    if (view->kind != BCPM_PICKLE_TUPLE || view->u.seq.count != 3 ||
        !is_clean_string(view->u.seq.items[0]) ||
        read_count(view->u.seq.items[1], &offset) != 0 ||
        read_count(view->u.seq.items[2], &numel) != 0)
        return corrupt_at(err, source, tensor, view->offset,
                          "storage view metadata None or (view_key, offset >= 0, size >= 0)",
                          view);
    out->is_view = 1;
    out->view_key = view->u.seq.items[0]->u.text.data;
    out->view_offset = (uint64_t)offset;
    out->view_numel = (uint64_t)numel;
    return 0;
}

int bcpm_torch_parse_storage_ref(struct bcpm_torch_storage_ref *out,
                                 const struct bcpm_pickle_value *pid, int legacy,
                                 const struct bcpm_torch_source *source, const char *tensor,
                                 struct bcpm_error *err)
{
    const struct bcpm_pickle_value *const *items;
    const struct bcpm_pickle_value *cls;
    size_t expected = legacy ? 6 : 5;
    int64_t numel;

    memset(out, 0, sizeof(*out));
    if (pid && pid->kind == BCPM_PICKLE_PERSID)
        pid = pid->u.persid.pid;
    if (!pid || pid->kind != BCPM_PICKLE_TUPLE || pid->u.seq.count != expected)
        return corrupt_at(err, source, tensor, pid ? pid->offset : 0,
                          legacy ? "a persistent storage id of 6 items"
                                 : "a persistent storage id of 5 items", pid);
    items = (const struct bcpm_pickle_value *const *)pid->u.seq.items;

    if (!is_clean_string(items[0]) || strcmp(items[0]->u.text.data, "storage") != 0)
        return corrupt_at(err, source, tensor, items[0]->offset,
                          "'storage' as the persistent id's type", items[0]);
    cls = items[1];
    if (!cls || cls->kind != BCPM_PICKLE_GLOBAL)
        return corrupt_at(err, source, tensor, pid->offset, "a storage class", cls);
    if ((strcmp(cls->u.global.module, "torch") != 0 &&
         strcmp(cls->u.global.module, "torch.cuda") != 0 &&
         strcmp(cls->u.global.module, "torch.storage") != 0) ||
        bcpm_torch_storage_dtype(cls->u.global.name, &out->dtype) != 0) {
        bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, source->path, tensor,
                       "storage class %s.%s is not supported: expected one of torch."
                       "BFloat16Storage, FloatStorage, HalfStorage, DoubleStorage, LongStorage, "
                       "IntStorage, ShortStorage, CharStorage, ByteStorage, BoolStorage",
                       cls->u.global.module, cls->u.global.name);
        bcpm_error_at(err, cls->offset);
        return BCPM_ERR_UNSUPPORTED;
    }
    if (!is_clean_string(items[2]))
        return corrupt_at(err, source, tensor, pid->offset, "a storage key string", items[2]);
    out->key = items[2]->u.text.data;
    if (read_count(items[4], &numel) != 0)
        return corrupt_at(err, source, tensor, pid->offset,
                          "a storage element count that is an int >= 0", items[4]);
    out->numel = (uint64_t)numel;

    if (legacy)
        return parse_view(out, items[5], source, tensor, err);
    return 0;
}

/* Copy a size or stride tuple into dims[]; the count goes to *ndim. */
static int read_dims(const struct bcpm_pickle_value *tuple, int64_t *dims, int *ndim,
                     const char *what, const struct bcpm_torch_source *source,
                     const char *tensor, struct bcpm_error *err)
{
    if (!tuple || (tuple->kind != BCPM_PICKLE_TUPLE && tuple->kind != BCPM_PICKLE_LIST))
        return corrupt_at(err, source, tensor, tuple ? tuple->offset : 0,
                          what, tuple);
    if (tuple->u.seq.count > BCPM_MAX_DIMS) {
        bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, source->path, tensor,
                       "expected at most %d dimensions, found a %s of %zu", BCPM_MAX_DIMS,
                       what, tuple->u.seq.count);
        bcpm_error_at(err, tuple->offset);
        return BCPM_ERR_UNSUPPORTED;
    }
    for (size_t d = 0; d < tuple->u.seq.count; d++) {
        const struct bcpm_pickle_value *item = tuple->u.seq.items[d];

        if (read_count(item, &dims[d]) != 0) {
            bcpm_error_set(err, BCPM_ERR_CORRUPT, source->path, tensor,
                           "expected every item of the %s to be an int from 0 to 2^63-1, "
                           "found %s%s in dimension %zu", what,
                           item && item->kind == BCPM_PICKLE_INT ? "negative " : "",
                           kind_name(item), d);
            bcpm_error_at(err, item ? item->offset : tuple->offset);
            return BCPM_ERR_CORRUPT;
        }
    }
    *ndim = (int)tuple->u.seq.count;
    return 0;
}

/* Unwrap _rebuild_parameter(tensor, requires_grad, hooks[, state]) to the tensor call. */
static const struct bcpm_pickle_value *unwrap_parameter(const struct bcpm_pickle_value *value)
{
    const char *call = torch_utils_call(value);
    const struct bcpm_pickle_value *args;

    if (!call || (strcmp(call, "_rebuild_parameter") != 0 &&
                  strcmp(call, "_rebuild_parameter_with_state") != 0))
        return value;
    args = call_args(value, 3);
    return args ? args->u.seq.items[0] : NULL;
}

static int read_tensor(struct bcpm_catalog *catalog, const char *name,
                       const struct bcpm_pickle_value *value, int legacy,
                       const struct bcpm_torch_source *source, bcpm_torch_resolve_fn resolve,
                       void *context, struct bcpm_error *err)
{
    const struct bcpm_pickle_value *call = unwrap_parameter(value);
    const struct bcpm_pickle_value *args;
    struct bcpm_torch_storage_ref ref;
    struct bcpm_tensor tensor;
    const char *function = torch_utils_call(call);
    int stride_ndim, rc;

    if (!function || (strcmp(function, "_rebuild_tensor_v2") != 0 &&
                      strcmp(function, "_rebuild_tensor") != 0)) {
        bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, source->path, name,
                       "expected a dense tensor from torch._utils._rebuild_tensor_v2, found "
                       "%s%s", function ? "torch._utils." : "", function ? function
                                                                         : kind_name(call));
        bcpm_error_at(err, value->offset);
        return BCPM_ERR_UNSUPPORTED;
    }
    args = call_args(call, 4);
    if (!args)
        return corrupt_at(err, source, name, call->offset,
                          "arguments (storage, storage_offset, size, stride, ...)",
                          call->u.object.args);

    memset(&tensor, 0, sizeof(tensor));
    tensor.name = (char *)name;
    rc = bcpm_torch_parse_storage_ref(&ref, args->u.seq.items[0], legacy, source, name, err);
    if (rc != 0)
        return rc;
    if (read_count(args->u.seq.items[1], &tensor.storage_offset) != 0)
        return corrupt_at(err, source, name, call->offset,
                          "a storage offset that is an int from 0 to 2^63-1",
                          args->u.seq.items[1]);
    rc = read_dims(args->u.seq.items[2], tensor.shape, &tensor.ndim, "size tuple", source,
                   name, err);
    if (rc == 0)
        rc = read_dims(args->u.seq.items[3], tensor.strides, &stride_ndim, "stride tuple",
                       source, name, err);
    if (rc != 0)
        return rc;
    if (stride_ndim != tensor.ndim) {
        bcpm_error_set(err, BCPM_ERR_CORRUPT, source->path, name,
                       "size has %d dimensions but stride has %d", tensor.ndim, stride_ndim);
        bcpm_error_at(err, call->offset);
        return BCPM_ERR_CORRUPT;
    }

    tensor.dtype = ref.dtype;
    rc = resolve(context, &ref, name, &tensor.storage, err);
    if (rc != 0)
        return rc;
    return bcpm_catalog_add_tensor(catalog, &tensor, err);
}

static size_t count_tensors(const struct bcpm_pickle_value *dict)
{
    size_t count = 0;

    for (size_t i = 0; i < dict->u.dict.count; i++)
        count += is_tensor_value(unwrap_parameter(dict->u.dict.values[i])) ? 1 : 0;
    return count;
}

/* The dict holding the weights: the root, or one nested under a known key. */
static const struct bcpm_pickle_value *find_state_dict(struct bcpm_catalog *catalog,
                                                       const struct bcpm_pickle_value *root,
                                                       const char **nested)
{
    *nested = NULL;
    if (count_tensors(root) > 0)
        return root;

    for (size_t k = 0; k < sizeof(nested_keys) / sizeof(nested_keys[0]); k++) {
        for (size_t i = 0; i < root->u.dict.count; i++) {
            const struct bcpm_pickle_value *key = root->u.dict.keys[i];
            const struct bcpm_pickle_value *value = root->u.dict.values[i];

            if (!is_clean_string(key) || strcmp(key->u.text.data, nested_keys[k]) != 0)
                continue;
            if (value->kind == BCPM_PICKLE_DICT && count_tensors(value) > 0) {
                *nested = nested_keys[k];
                catalog->ignored_entries += root->u.dict.count - 1;
                return value;
            }
        }
    }
    return root;
}

int bcpm_torch_read_state(struct bcpm_catalog *catalog, const struct bcpm_pickle_value *root,
                          int legacy, const struct bcpm_torch_source *source,
                          bcpm_torch_resolve_fn resolve, void *context,
                          struct bcpm_error *err)
{
    const struct bcpm_pickle_value *state;
    const char *nested;

    if (!root || root->kind != BCPM_PICKLE_DICT) {
        bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, source->path, source->entry,
                       "expected a state dict (a dict of names to tensors) as the saved "
                       "object, found %s", kind_name(root));
        if (root)
            bcpm_error_at(err, root->offset);
        return BCPM_ERR_UNSUPPORTED;
    }

    state = find_state_dict(catalog, root, &nested);
    if (nested) {
        catalog->nested_key = strdup(nested);
        if (!catalog->nested_key)
            return bcpm_error_set(err, BCPM_ERR_NOMEM, source->path, nested, "out of memory");
    }

    for (size_t i = 0; i < state->u.dict.count; i++) {
        const struct bcpm_pickle_value *key = state->u.dict.keys[i];
        const struct bcpm_pickle_value *value = state->u.dict.values[i];
        char label[64];
        int rc;

        if (!is_clean_string(key)) {
            snprintf(label, sizeof(label), "state dict item %zu", i);
            return corrupt_at(err, source, label, key ? key->offset : state->offset,
                              "a str key without NUL bytes", key);
        }
        if (!is_tensor_value(unwrap_parameter(value))) {
            catalog->ignored_entries++;
            continue;
        }
        rc = read_tensor(catalog, key->u.text.data, value, legacy, source, resolve, context,
                         err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- string-keyed hash table ---- */

static uint64_t hash_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    while (*s) {
        h ^= (uint8_t)*s++;
        h *= 1099511628211ULL;
    }
    return h;
}

static int keymap_grow(struct bcpm_torch_keymap *map)
{
    size_t capacity = map->capacity ? map->capacity * 2 : 64;
    const char **keys;
    uint64_t *values;

    if (capacity > SIZE_MAX / sizeof(*values))
        return -1;
    keys = calloc(capacity, sizeof(*keys));
    values = calloc(capacity, sizeof(*values));
    if (!keys || !values) {
        free(keys);
        free(values);
        return -1;
    }
    for (size_t i = 0; i < map->capacity; i++) {
        size_t slot;

        if (!map->keys[i])
            continue;
        slot = (size_t)(hash_key(map->keys[i]) & (capacity - 1));
        while (keys[slot])
            slot = (slot + 1) & (capacity - 1);
        keys[slot] = map->keys[i];
        values[slot] = map->values[i];
    }
    free(map->keys);
    free(map->values);
    map->keys = keys;
    map->values = values;
    map->capacity = capacity;
    return 0;
}

int bcpm_torch_keymap_put(struct bcpm_torch_keymap *map, const char *key, uint64_t value)
{
    size_t slot;

    if ((map->count + 1) * 2 > map->capacity && keymap_grow(map) != 0)
        return -1;
    slot = (size_t)(hash_key(key) & (map->capacity - 1));
    while (map->keys[slot]) {
        if (strcmp(map->keys[slot], key) == 0)
            return 1;
        slot = (slot + 1) & (map->capacity - 1);
    }
    map->keys[slot] = key;
    map->values[slot] = value;
    map->count++;
    return 0;
}

int bcpm_torch_keymap_get(const struct bcpm_torch_keymap *map, const char *key, uint64_t *value)
{
    size_t slot;

    if (map->capacity == 0)
        return 0;
    slot = (size_t)(hash_key(key) & (map->capacity - 1));
    while (map->keys[slot]) {
        if (strcmp(map->keys[slot], key) == 0) {
            *value = map->values[slot];
            return 1;
        }
        slot = (slot + 1) & (map->capacity - 1);
    }
    return 0;
}

void bcpm_torch_keymap_free(struct bcpm_torch_keymap *map)
{
    free(map->keys);
    free(map->values);
    memset(map, 0, sizeof(*map));
}
