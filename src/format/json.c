/* jansson helpers for the JSON-based formats; see json.h. */
#include "format/json.h"

#include <inttypes.h>
#include <string.h>

#include "io/map.h"

/*
 * Recover the key that jansson reported as a duplicate. The error position is
 * the byte just past the key's closing quote, so the key is the string that
 * ends there. Scan back to its opening quote, the first one not escaped by an
 * odd run of backslashes, and let jansson decode the escapes. Returns 0 when
 * name contains the key.
 */
static int duplicate_key_name(const uint8_t *data, size_t size, size_t end, char *name,
                              size_t name_size)
{
    json_error_t error;
    json_t *key;
    size_t start;

    if (end < 2 || end > size || data[end - 1] != '"')
        return -1;
    for (start = end - 1; start > 0; start--) {
        size_t backslashes = 0;

        if (data[start - 1] != '"')
            continue;
        while (start - 1 > backslashes && data[start - 2 - backslashes] == '\\')
            backslashes++;
        if (backslashes % 2 == 0)
            break;
    }
    if (start == 0)
        return -1;

    key = json_loadb((const char *)data + start - 1, end - start + 1, JSON_DECODE_ANY, &error);
    if (!key || !json_is_string(key)) {
        json_decref(key);
        return -1;
    }
    snprintf(name, name_size, "%s", json_string_value(key));
    json_decref(key);
    return 0;
}

int bcpm_json_parse_object(json_t **out, const uint8_t *data, size_t size, const char *path,
                           const char *what, struct bcpm_error *err)
{
    json_error_t error;
    json_t *root;

    *out = NULL;
    root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        char key[BCPM_ERROR_NAME_MAX];
        int duplicate = json_error_code(&error) == json_error_duplicate_key &&
                        error.position >= 0 &&
                        duplicate_key_name(data, size, (size_t)error.position, key,
                                           sizeof(key)) == 0;

        if (duplicate)
            bcpm_error_set(err, BCPM_ERR_CORRUPT, path, key,
                           "invalid %s: key '%s' appears twice, expected unique keys", what,
                           key);
        else
            bcpm_error_set(err, BCPM_ERR_CORRUPT, path, NULL, "invalid JSON in %s: %s", what,
                           error.text);
        if (err && err->code == BCPM_ERR_CORRUPT && error.line > 0) {
            err->line = (unsigned)error.line;
            err->column = error.column > 0 ? (unsigned)error.column : 0;
        }
        return BCPM_ERR_CORRUPT;
    }

    if (!json_is_object(root)) {
        bcpm_error_set(err, BCPM_ERR_CORRUPT, path, NULL,
                       "invalid %s: expected a JSON object, found %s", what,
                       bcpm_json_type_name(root));
        json_decref(root);
        return BCPM_ERR_CORRUPT;
    }
    *out = root;
    return 0;
}

int bcpm_json_load_object_file(json_t **out, const char *path, uint64_t max_bytes,
                               const char *what, struct bcpm_error *err)
{
    struct bcpm_map *map;
    int rc;

    *out = NULL;
    rc = bcpm_map_open(&map, path, err);
    if (rc != 0)
        return rc;
    if (map->size > max_bytes) {
        bcpm_error_set(err, BCPM_ERR_LIMIT, path, NULL,
                       "%s is %" PRIu64 " bytes, expected at most %" PRIu64, what, map->size,
                       max_bytes);
        bcpm_map_close(map);
        return BCPM_ERR_LIMIT;
    }
    rc = bcpm_json_parse_object(out, map->data ? map->data : (const uint8_t *)"",
                                (size_t)map->size, path, what, err);
    bcpm_map_close(map);
    return rc;
}

int bcpm_json_get_u64(const json_t *value, uint64_t *out)
{
    json_int_t n;

    if (!json_is_integer(value))
        return -1;
    n = json_integer_value(value);
    if (n < 0)
        return -1;
    *out = (uint64_t)n;
    return 0;
}

const char *bcpm_json_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "an unknown value";
}
