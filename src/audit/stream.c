/* The ordered digest stream over a catalog's files; see stream.h. */
#include "audit/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Bytes hashed between page releases while catching up: bytes the check did
 * not read come from the mapping here, and are dropped again so that a large
 * unread tensor does not stay resident.
 */
#define CATCH_UP_WINDOW ((uint64_t)8 << 20)

struct bcpm_digest_stream {
    const struct bcpm_catalog *catalog;
    int with_sha256;
    struct bcpm_digest digest; /* every file, concatenated */
    /*
     * The cursor file's own digest, kept only for several files: with one
     * file the concatenation is that file's digest, so it is not hashed twice.
     */
    struct bcpm_digest part;
    int part_open;
    struct bcpm_digest_hex *parts; /* one per catalog file, filled as the cursor leaves it */
    struct bcpm_quant_digest hook;
    uint32_t file;   /* the cursor: every byte before (file, offset) is hashed */
    uint64_t offset;
};

static uint64_t file_size(const struct bcpm_digest_stream *s, uint32_t file)
{
    const struct bcpm_map *map = s->catalog->files[file].map;

    return map ? map->size : 0;
}

static void hash(struct bcpm_digest_stream *s, const uint8_t *data, size_t length)
{
    bcpm_digest_update(&s->digest, data, length);
    if (s->part_open)
        bcpm_digest_update(&s->part, data, length);
}

/*
 * Start the per-file digest of the cursor's file. A failure (out of memory)
 * leaves that file's digests "", and the concatenated digest goes on.
 */
static void open_part(struct bcpm_digest_stream *s)
{
    if (s->catalog->nfiles < 2 || s->file >= s->catalog->nfiles)
        return;
    s->part_open = bcpm_digest_init(&s->part, s->with_sha256, NULL) == 0;
}

static void close_part(struct bcpm_digest_stream *s)
{
    if (!s->part_open)
        return;
    bcpm_digest_final(&s->part, s->parts[s->file].xxh3_128, s->parts[s->file].sha256);
    s->part_open = 0;
}

/* Hash [cursor, end) of the cursor's file from the mapping, releasing the pages behind. */
static void catch_up(struct bcpm_digest_stream *s, uint64_t end)
{
    const struct bcpm_map *map = s->catalog->files[s->file].map;

    while (s->offset < end) {
        uint64_t length = end - s->offset < CATCH_UP_WINDOW ? end - s->offset : CATCH_UP_WINDOW;

        hash(s, map->data + s->offset, (size_t)length);
        bcpm_map_release(map, s->offset, length);
        s->offset += length;
    }
}

/* Move the cursor to the start of file, hashing the rest of every file before it. */
static void advance_to_file(struct bcpm_digest_stream *s, uint32_t file)
{
    while (s->file < file) {
        catch_up(s, file_size(s, s->file));
        close_part(s);
        s->file++;
        s->offset = 0;
        open_part(s);
    }
}

static void feed_hook(void *ctx, uint32_t file, uint64_t offset, uint64_t length)
{
    bcpm_digest_stream_feed(ctx, file, offset, length);
}

int bcpm_digest_stream_new(struct bcpm_digest_stream **out, const struct bcpm_catalog *catalog,
                           int with_sha256, struct bcpm_error *err)
{
    struct bcpm_digest_stream *s = calloc(1, sizeof(*s));
    int rc;

    *out = NULL;
    if (s)
        s->parts = calloc(catalog->nfiles ? catalog->nfiles : 1, sizeof(*s->parts));
    if (!s || !s->parts) {
        free(s);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL,
                              "out of memory for a digest stream over %zu files",
                              catalog->nfiles);
    }
    rc = bcpm_digest_init(&s->digest, with_sha256, err);
    if (rc != 0) {
        free(s->parts);
        free(s);
        return rc;
    }
    s->catalog = catalog;
    s->with_sha256 = with_sha256;
    s->hook.feed = feed_hook;
    s->hook.ctx = s;
    open_part(s);
    *out = s;
    return 0;
}

void bcpm_digest_stream_feed(struct bcpm_digest_stream *s, uint32_t file, uint64_t offset,
                             uint64_t length)
{
    const struct bcpm_map *map;
    uint64_t end, size;

    if (file >= s->catalog->nfiles || file < s->file)
        return;
    advance_to_file(s, file);

    /* Clamp to the file: a range the reader checked never passes its end. */
    size = file_size(s, file);
    if (offset > size)
        offset = size;
    end = length > size - offset ? size : offset + length;
    if (end <= s->offset)
        return;

    /* Bytes before the range that no kernel fed: headers, gaps, unread tensors. */
    catch_up(s, offset);

    /* The range itself is cache-hot in the caller; its pages are the caller's to release. */
    map = s->catalog->files[file].map;
    hash(s, map->data + s->offset, (size_t)(end - s->offset));
    s->offset = end;
}

const struct bcpm_quant_digest *bcpm_digest_stream_hook(struct bcpm_digest_stream *s)
{
    return &s->hook;
}

void bcpm_digest_stream_finish(struct bcpm_digest_stream *s, char xxh_hex[BCPM_XXH128_HEX_SIZE],
                               char sha_hex[BCPM_SHA256_HEX_SIZE], struct bcpm_digest_hex *parts)
{
    size_t nfiles = s->catalog->nfiles;

    if (nfiles > 0) {
        advance_to_file(s, (uint32_t)(nfiles - 1));
        catch_up(s, file_size(s, s->file));
        close_part(s);
    }
    bcpm_digest_final(&s->digest, xxh_hex, sha_hex);
    if (nfiles == 1) {
        snprintf(s->parts[0].xxh3_128, sizeof(s->parts[0].xxh3_128), "%s", xxh_hex);
        snprintf(s->parts[0].sha256, sizeof(s->parts[0].sha256), "%s", sha_hex ? sha_hex : "");
    }
    if (parts && nfiles > 0)
        memcpy(parts, s->parts, nfiles * sizeof(*parts));
    free(s->parts);
    free(s);
}

void bcpm_digest_stream_free(struct bcpm_digest_stream *s)
{
    if (!s)
        return;
    bcpm_digest_abort(&s->digest);
    if (s->part_open)
        bcpm_digest_abort(&s->part);
    free(s->parts);
    free(s);
}
