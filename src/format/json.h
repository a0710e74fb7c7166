/*
 * Small helpers over jansson for the JSON-based formats: safetensors headers,
 * shard indexes (*.index.json) and config.json. They turn jansson's errors
 * into struct bcpm_error with the file, line and column, and read
 * non-negative integers without the silent conversions a cast would do.
 * Only src/format/ includes this header; the catalog exposes no JSON types.
 */
#ifndef BCPM_FORMAT_JSON_H
#define BCPM_FORMAT_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

/*
 * Parse size bytes of data as one JSON object. Duplicate keys are rejected,
 * and whitespace may follow the object. what names the document in messages
 * ("safetensors header", "shard index"). On success *out holds a new
 * reference (json_decref). Failures are BCPM_ERR_CORRUPT naming path, with
 * err->line and err->column set; a duplicate key is also named in err->entry.
 */
int bcpm_json_parse_object(json_t **out, const uint8_t *data, size_t size, const char *path,
                           const char *what, struct bcpm_error *err);

/*
 * Read the file at path (at most max_bytes long) and parse it as with
 * bcpm_json_parse_object. A missing file is BCPM_ERR_NOT_FOUND, a larger one
 * BCPM_ERR_LIMIT.
 */
int bcpm_json_load_object_file(json_t **out, const char *path, uint64_t max_bytes,
                               const char *what, struct bcpm_error *err);

/* Store a JSON integer >= 0 in *out; returns 0, or -1 for any other value. */
int bcpm_json_get_u64(const json_t *value, uint64_t *out);

/* The JSON type of value with its article, for messages ("a string", "an array"). */
const char *bcpm_json_type_name(const json_t *value);

#endif
