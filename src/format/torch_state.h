/*
 * Turning the unpickled object of a PyTorch checkpoint into catalog tensors.
 *
 * Both torch readers (zip and legacy) parse their pickle with the pickle
 * machine and hand the root value here. This module finds the state dict
 * (the root, or a dict nested under "module", "model" or "state_dict"),
 * reads every torch._utils._rebuild_tensor_v2 / _rebuild_parameter call in
 * it, parses the persistent storage ids, and calls back into the reader to
 * resolve each storage id to a catalog storage, because only the reader finds
 * where a storage's bytes live (a zip entry, or a span of a legacy file).
 */
#ifndef BCPM_FORMAT_TORCH_STATE_H
#define BCPM_FORMAT_TORCH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "format/pickle.h"
#include "io/error.h"
#include "tensor/catalog.h"

/*
 * A parsed persistent id: ('storage', <storage class>, key, location, numel)
 * in zip files; legacy files add a sixth item, None or a view
 * (view_key, offset, size) into the storage named by key, in elements.
 */
struct bcpm_torch_storage_ref {
    const char *key;
    enum bcpm_dtype dtype;
    uint64_t numel;
    int is_view;
    const char *view_key;
    uint64_t view_offset;
    uint64_t view_numel;
};

/* Message context: the checkpoint file and the pickle's zip entry (or NULL). */
struct bcpm_torch_source {
    const char *path;
    const char *entry;
};

/*
 * Parse a persistent id. legacy selects the 6-item form. tensor names the
 * tensor for messages (may be NULL). Returns 0 or BCPM_ERR_CORRUPT /
 * BCPM_ERR_UNSUPPORTED (a storage class with no catalog dtype).
 */
int bcpm_torch_parse_storage_ref(struct bcpm_torch_storage_ref *out,
                                 const struct bcpm_pickle_value *pid, int legacy,
                                 const struct bcpm_torch_source *source, const char *tensor,
                                 struct bcpm_error *err);

/* Map a storage class name ("FloatStorage") to a dtype; returns 0 or -1. */
int bcpm_torch_storage_dtype(const char *class_name, enum bcpm_dtype *out);

/*
 * Resolve a storage reference to a catalog storage index, adding the storage
 * the first time a key is seen. tensor names the tensor for messages.
 */
typedef int (*bcpm_torch_resolve_fn)(void *context, const struct bcpm_torch_storage_ref *ref,
                                     const char *tensor, uint32_t *storage,
                                     struct bcpm_error *err);

/*
 * Add every tensor of the state dict in root to catalog. Sets
 * catalog->nested_key when the weights sit under "module", "model" or
 * "state_dict", and counts skipped non-tensor entries in
 * catalog->ignored_entries. A root that is not a dict is BCPM_ERR_UNSUPPORTED;
 * a state dict key that is not a string, or a malformed tensor call, is
 * BCPM_ERR_CORRUPT naming the tensor.
 */
int bcpm_torch_read_state(struct bcpm_catalog *catalog, const struct bcpm_pickle_value *root,
                          int legacy, const struct bcpm_torch_source *source,
                          bcpm_torch_resolve_fn resolve, void *context,
                          struct bcpm_error *err);

/*
 * A string-keyed hash table from storage keys to 64-bit values, for the
 * readers' key lookups (a hostile file may name millions of storages, so
 * a linear search is not an option). Keys are borrowed, not copied.
 */
struct bcpm_torch_keymap {
    const char **keys;
    uint64_t *values;
    size_t count;
    size_t capacity; /* a power of two, or 0 */
};

/* Store value under key; returns 1 if key was already present (value untouched), 0, or -1 (memory). */
int bcpm_torch_keymap_put(struct bcpm_torch_keymap *map, const char *key, uint64_t value);

/* Look key up; returns 1 and sets *value when found, else 0. */
int bcpm_torch_keymap_get(const struct bcpm_torch_keymap *map, const char *key, uint64_t *value);

void bcpm_torch_keymap_free(struct bcpm_torch_keymap *map);

#endif
