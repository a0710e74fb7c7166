/* Zip central directory reader with zip64 support; see zip.h for the layout. */
#include "format/zip.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/checked.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u

#define LOCAL_SIZE 30u
#define CENTRAL_SIZE 46u
#define END_SIZE 22u
#define END64_SIZE 56u
#define LOCATOR64_SIZE 20u
#define MAX_COMMENT 0xffffu

#define ZIP64_EXTRA_ID 0x0001u
#define FLAG_ENCRYPTED 0x0001u

/*
 * A deflate match of 258 bytes costs at least two bits (a one-bit length code
 * and a one-bit distance code), so a stream cannot expand more than 1032 times.
 * A declared size beyond that bound is a lie and would only make us allocate.
 */
#define DEFLATE_MAX_RATIO 1032u
#define DEFLATE_SLACK 64u

/*
 * Reading a local header faults in a whole page-cache folio of the file
 * mapping, which Linux (seen on 6.18 with ext4) makes 2 MiB large. Handing that
 * window back after each header keeps listing an 8B-shaped checkpoint at a few
 * MiB resident instead of about 150 MiB; the page cache keeps the pages.
 */
#define HEADER_RELEASE_WINDOW (2u << 20)

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | ((uint64_t)le32(p + 4) << 32);
}

/* Position and size of the central directory, as the end records state them. */
struct directory {
    uint64_t count;
    uint64_t size;
    uint64_t offset;
    uint64_t limit; /* the directory must end at or before this offset */
};

/* Search backwards for the end record: it has a fixed size plus a comment of at most 64 KiB. */
static int find_end_record(const struct bcpm_map *map, uint64_t *position,
                           struct bcpm_error *err)
{
    uint64_t lowest, pos;

    if (map->size < END_SIZE)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                              "file of %" PRIu64 " bytes is too short for a zip archive: "
                              "expected at least the %u-byte end of central directory record",
                              map->size, END_SIZE);

    lowest = map->size > END_SIZE + MAX_COMMENT ? map->size - END_SIZE - MAX_COMMENT : 0;
    pos = map->size - END_SIZE;
    for (;;) {
        const uint8_t *p = map->data + pos;

        if (le32(p) == SIG_END && pos + END_SIZE + le16(p + 20) <= map->size) {
            *position = pos;
            return 0;
        }
        if (pos == lowest)
            break;
        pos--;
    }
    return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                          "end of central directory record not found in the last %" PRIu64
                          " bytes: the zip archive is truncated or not a zip archive",
                          map->size - lowest);
}

/* Replace the 32-bit directory fields with those of the zip64 end record. */
static int read_zip64_end(const struct bcpm_map *map, uint64_t locator,
                          struct directory *dir, struct bcpm_error *err)
{
    const uint8_t *p = map->data + locator;
    uint64_t record = le64(p + 8);
    uint64_t record_size;

    if (le32(p + 4) != 0 || le32(p + 16) > 1)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, map->path, NULL,
                              "split zip archives are not supported: the zip64 locator "
                              "names disk %" PRIu32 " of %" PRIu32,
                              le32(p + 4), le32(p + 16));
    if (record > locator || locator - record < END64_SIZE)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                              "zip64 end record offset %" PRIu64 " is invalid: expected "
                              "%u bytes before the locator at offset %" PRIu64,
                              record, END64_SIZE, locator);

    p = map->data + record;
    if (le32(p) != SIG_END64)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                              "expected the zip64 end record signature at offset %" PRIu64
                              ", found 0x%08" PRIx32, record, le32(p));
    record_size = le64(p + 4);
    if (record_size < END64_SIZE - 12 || record_size > locator - record - 12)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                              "zip64 end record at offset %" PRIu64 " declares %" PRIu64
                              " bytes, expected %u to %" PRIu64, record, record_size,
                              END64_SIZE - 12, locator - record - 12);
    if (le32(p + 16) != 0 || le32(p + 20) != 0 || le64(p + 24) != le64(p + 32))
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, map->path, NULL,
                              "split zip archives are not supported: the zip64 end record "
                              "names disk %" PRIu32 " and %" PRIu64 " of %" PRIu64
                              " entries on this disk",
                              le32(p + 16), le64(p + 24), le64(p + 32));

    dir->count = le64(p + 32);
    dir->size = le64(p + 40);
    dir->offset = le64(p + 48);
    dir->limit = record;
    return 0;
}

static int read_end_records(const struct bcpm_map *map, struct directory *dir,
                            struct bcpm_error *err)
{
    uint64_t end = 0;
    const uint8_t *p;
    int rc;

    rc = find_end_record(map, &end, err);
    if (rc != 0)
        return rc;
    p = map->data + end;
    if (le16(p + 4) != 0 || le16(p + 6) != 0 || le16(p + 8) != le16(p + 10))
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, map->path, NULL,
                              "split zip archives are not supported: the end record names "
                              "disk %u and %u of %u entries on this disk",
                              le16(p + 4), le16(p + 8), le16(p + 10));
    dir->count = le16(p + 10);
    dir->size = le32(p + 12);
    dir->offset = le32(p + 16);
    dir->limit = end;

    /* A zip64 locator sits right before the end record; when present its values win. */
    if (end >= LOCATOR64_SIZE && le32(map->data + end - LOCATOR64_SIZE) == SIG_LOCATOR64) {
        rc = read_zip64_end(map, end - LOCATOR64_SIZE, dir, err);
        if (rc != 0)
            return rc;
    }

    if (dir->offset > dir->limit || dir->size > dir->limit - dir->offset)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                              "central directory of %" PRIu64 " bytes at offset %" PRIu64
                              " runs past the end records at offset %" PRIu64,
                              dir->size, dir->offset, dir->limit);
    if (dir->count > BCPM_ZIP_MAX_ENTRIES)
        return bcpm_error_set(err, BCPM_ERR_LIMIT, map->path, NULL,
                              "zip archive declares %" PRIu64 " entries, the limit is %u",
                              dir->count, BCPM_ZIP_MAX_ENTRIES);
    /* Each record takes at least 46 bytes, which bounds the count by the directory size. */
    if (dir->count > dir->size / CENTRAL_SIZE)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, NULL,
                              "zip archive declares %" PRIu64 " entries but its central "
                              "directory of %" PRIu64 " bytes holds at most %" PRIu64,
                              dir->count, dir->size, dir->size / CENTRAL_SIZE);
    return 0;
}

/*
 * Take the 64-bit values from a zip64 extra field. Only the fields whose 32-bit
 * counterpart contains the 0xffffffff marker are present, in this order.
 */
static int read_zip64_extra(const struct bcpm_map *map, const char *name, const uint8_t *extra,
                            uint16_t extra_length, struct bcpm_zip_entry *entry,
                            uint16_t disk, struct bcpm_error *err)
{
    int need_usize = entry->uncompressed_size == 0xffffffffu;
    int need_csize = entry->compressed_size == 0xffffffffu;
    int need_offset = entry->header_offset == 0xffffffffu;
    int need_disk = disk == 0xffffu;
    uint16_t pos = 0;

    while (pos + 4u <= extra_length) {
        uint16_t id = le16(extra + pos);
        uint16_t size = le16(extra + pos + 2);
        const uint8_t *field = extra + pos + 4;
        unsigned expected = 8u * (unsigned)(need_usize + need_csize + need_offset) +
                            4u * (unsigned)need_disk;

        if ((unsigned)pos + 4u + size > extra_length)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, name,
                                  "extra field 0x%04x of %u bytes runs past the extra data "
                                  "(%u bytes left)", id, size, extra_length - pos - 4u);
        if (id == ZIP64_EXTRA_ID) {
            if (size < expected)
                return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, name,
                                      "zip64 extra field has %u bytes, expected at least %u "
                                      "for the fields marked 0xffffffff", size, expected);
            if (need_usize) {
                entry->uncompressed_size = le64(field);
                field += 8;
            }
            if (need_csize) {
                entry->compressed_size = le64(field);
                field += 8;
            }
            if (need_offset)
                entry->header_offset = le64(field);
            return 0;
        }
        pos = (uint16_t)(pos + 4u + size);
    }
    if (need_usize || need_csize || need_offset)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, name,
                              "sizes or offset are marked 0xffffffff but no zip64 extra "
                              "field holds them");
    return 0;
}

/* Parse one central directory record at *pos and advance *pos past it. */
static int read_central_record(struct bcpm_zip *zip, const struct directory *dir, size_t index,
                               uint64_t *pos, char **name_cursor, struct bcpm_error *err)
{
    const struct bcpm_map *map = zip->map;
    struct bcpm_zip_entry *entry = &zip->entries[index];
    uint64_t end = dir->offset + dir->size;
    uint64_t left = end - *pos;
    const uint8_t *p = map->data + *pos;
    uint16_t name_length, extra_length, comment_length, disk;
    char label[64];

    snprintf(label, sizeof(label), "central directory record %zu", index);
    if (left < CENTRAL_SIZE)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, label,
                              "record of %u bytes runs past the central directory "
                              "(%" PRIu64 " bytes left)", CENTRAL_SIZE, left);
    if (le32(p) != SIG_CENTRAL)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, label,
                              "expected signature 0x%08x at offset %" PRIu64 ", found 0x%08" PRIx32,
                              SIG_CENTRAL, *pos, le32(p));
    name_length = le16(p + 28);
    extra_length = le16(p + 30);
    comment_length = le16(p + 32);
    if (name_length > left - CENTRAL_SIZE)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, label,
                              "file name length %u runs past the central directory "
                              "(%" PRIu64 " bytes left after the fixed fields)",
                              name_length, left - CENTRAL_SIZE);
    if (extra_length > left - CENTRAL_SIZE - name_length)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, label,
                              "extra field length %u runs past the central directory "
                              "(%" PRIu64 " bytes left after the name)",
                              extra_length, left - CENTRAL_SIZE - name_length);
    if (comment_length > left - CENTRAL_SIZE - name_length - extra_length)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, label,
                              "comment length %u runs past the central directory "
                              "(%" PRIu64 " bytes left after the extra field)",
                              comment_length, left - CENTRAL_SIZE - name_length - extra_length);

    /* A NUL inside a name would make two different names compare equal in C. */
    if (memchr(p + CENTRAL_SIZE, '\0', name_length))
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, label,
                              "file name contains a NUL byte");
    memcpy(*name_cursor, p + CENTRAL_SIZE, name_length);
    (*name_cursor)[name_length] = '\0';
    entry->name = *name_cursor;
    *name_cursor += name_length + 1u;

    entry->flags = le16(p + 8);
    entry->method = le16(p + 10);
    entry->crc32 = le32(p + 16);
    entry->compressed_size = le32(p + 20);
    entry->uncompressed_size = le32(p + 24);
    disk = le16(p + 34);
    entry->header_offset = le32(p + 42);
    if (read_zip64_extra(map, entry->name, p + CENTRAL_SIZE + name_length, extra_length, entry,
                         disk, err) != 0)
        return BCPM_ERR_CORRUPT;
    if (disk != 0 && disk != 0xffffu)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, map->path, entry->name,
                              "split zip archives are not supported: entry starts on disk %u",
                              disk);

    *pos += CENTRAL_SIZE + (uint64_t)name_length + extra_length + comment_length;
    return 0;
}

/* Read the local header of entry to find where its data starts, and check the data fits. */
static int place_data(const struct bcpm_zip *zip, struct bcpm_zip_entry *entry,
                      struct bcpm_error *err)
{
    const struct bcpm_map *map = zip->map;
    const uint8_t *p;
    uint16_t name_length, extra_length;
    uint64_t data;

    if (!bcpm_range_ok(entry->header_offset, LOCAL_SIZE, zip->directory_offset))
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, entry->name,
                              "local header offset %" PRIu64 " is outside the entry data "
                              "area: expected a %u-byte header before the central directory "
                              "at offset %" PRIu64,
                              entry->header_offset, LOCAL_SIZE, zip->directory_offset);
    p = map->data + entry->header_offset;
    if (le32(p) != SIG_LOCAL)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, entry->name,
                              "expected a local header signature at offset %" PRIu64
                              ", found 0x%08" PRIx32, entry->header_offset, le32(p));

    name_length = le16(p + 26);
    extra_length = le16(p + 28);
    data = entry->header_offset + LOCAL_SIZE + name_length + extra_length;
    if (data > zip->directory_offset)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, entry->name,
                              "local header at offset %" PRIu64 " with name length %u and "
                              "extra length %u runs into the central directory at offset %"
                              PRIu64, entry->header_offset, name_length, extra_length,
                              zip->directory_offset);
    if (name_length != strlen(entry->name) ||
        memcmp(p + LOCAL_SIZE, entry->name, name_length) != 0)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, entry->name,
                              "local header at offset %" PRIu64 " names a different entry "
                              "(%u bytes: '%.*s')", entry->header_offset, name_length,
                              name_length > 200 ? 200 : (int)name_length,
                              (const char *)p + LOCAL_SIZE);

    if (!bcpm_range_ok(data, entry->compressed_size, zip->directory_offset))
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, map->path, entry->name,
                              "entry data of %" PRIu64 " bytes at offset %" PRIu64
                              " runs past the data area, which ends at offset %" PRIu64
                              " (file size %" PRIu64 ")",
                              entry->compressed_size, data, zip->directory_offset, map->size);
    entry->data_offset = data;
    bcpm_map_release(map, entry->header_offset & ~(uint64_t)(HEADER_RELEASE_WINDOW - 1),
                     HEADER_RELEASE_WINDOW);
    return 0;
}

static int compare_by_header(const void *a, const void *b)
{
    const struct bcpm_zip_entry *x = *(const struct bcpm_zip_entry *const *)a;
    const struct bcpm_zip_entry *y = *(const struct bcpm_zip_entry *const *)b;

    return (x->header_offset > y->header_offset) - (x->header_offset < y->header_offset);
}

static int compare_by_name(const void *a, const void *b)
{
    const struct bcpm_zip_entry *x = *(const struct bcpm_zip_entry *const *)a;
    const struct bcpm_zip_entry *y = *(const struct bcpm_zip_entry *const *)b;

    return strcmp(x->name, y->name);
}

/*
 * Reject two entries whose header-plus-data ranges overlap: overlapping entries
 * are how zip bombs multiply their output, and two names for one byte range
 * would let a checkpoint show different tensors to different readers.
 */
static int check_overlaps(struct bcpm_zip *zip, struct bcpm_error *err)
{
    const struct bcpm_zip_entry **order = zip->by_name;

    for (size_t i = 0; i < zip->count; i++)
        order[i] = &zip->entries[i];
    qsort(order, zip->count, sizeof(*order), compare_by_header);
    for (size_t i = 1; i < zip->count; i++) {
        const struct bcpm_zip_entry *prev = order[i - 1];
        uint64_t prev_end = prev->data_offset + prev->compressed_size;

        if (order[i]->header_offset < prev_end)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, zip->map->path, order[i]->name,
                                  "local header at offset %" PRIu64 " overlaps the data of "
                                  "entry '%s', which runs to offset %" PRIu64,
                                  order[i]->header_offset, prev->name, prev_end);
    }
    return 0;
}

/* Sort the lookup table and reject duplicate names, which would make lookups ambiguous. */
static int index_names(struct bcpm_zip *zip, struct bcpm_error *err)
{
    for (size_t i = 0; i < zip->count; i++)
        zip->by_name[i] = &zip->entries[i];
    qsort(zip->by_name, zip->count, sizeof(*zip->by_name), compare_by_name);
    for (size_t i = 1; i < zip->count; i++) {
        if (strcmp(zip->by_name[i - 1]->name, zip->by_name[i]->name) == 0)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, zip->map->path, zip->by_name[i]->name,
                                  "entry name appears twice in the central directory");
    }
    return 0;
}

static int read_directory(struct bcpm_zip *zip, const struct directory *dir,
                          struct bcpm_error *err)
{
    uint64_t pos = dir->offset;
    char *cursor;
    int rc;

    /* Names are at most the directory's bytes, plus one NUL per entry. */
    zip->entries = calloc(dir->count ? dir->count : 1, sizeof(*zip->entries));
    zip->by_name = calloc(dir->count ? dir->count : 1, sizeof(*zip->by_name));
    zip->names = malloc(dir->size + dir->count + 1);
    if (!zip->entries || !zip->by_name || !zip->names)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, zip->map->path, NULL,
                              "out of memory for a central directory of %" PRIu64 " entries",
                              dir->count);
    cursor = zip->names;

    for (uint64_t i = 0; i < dir->count; i++) {
        rc = read_central_record(zip, dir, (size_t)i, &pos, &cursor, err);
        if (rc != 0)
            return rc;
        zip->count++;
    }
    for (size_t i = 0; i < zip->count; i++) {
        rc = place_data(zip, &zip->entries[i], err);
        if (rc != 0)
            return rc;
    }

    rc = check_overlaps(zip, err);
    if (rc != 0)
        return rc;
    return index_names(zip, err);
}

int bcpm_zip_open(struct bcpm_zip **out, const struct bcpm_map *map, struct bcpm_error *err)
{
    struct directory dir = {0, 0, 0, 0};
    struct bcpm_zip *zip;
    int rc;

    *out = NULL;
    rc = read_end_records(map, &dir, err);
    if (rc != 0)
        return rc;

    zip = calloc(1, sizeof(*zip));
    if (!zip)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, map->path, NULL, "out of memory");
    zip->map = map;
    zip->directory_offset = dir.offset;

    rc = read_directory(zip, &dir, err);
    if (rc != 0) {
        bcpm_zip_close(zip);
        return rc;
    }
    *out = zip;
    return 0;
}

void bcpm_zip_close(struct bcpm_zip *zip)
{
    if (!zip)
        return;
    free(zip->entries);
    free(zip->by_name);
    free(zip->names);
    free(zip);
}

const struct bcpm_zip_entry *bcpm_zip_find(const struct bcpm_zip *zip, const char *name)
{
    size_t low = 0, high = zip->count;

    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int order = strcmp(zip->by_name[mid]->name, name);

        if (order == 0)
            return zip->by_name[mid];
        if (order < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return NULL;
}

/* CRC-32 over any length; zlib's crc32() takes a uInt length. */
static uint32_t crc32_of(const uint8_t *data, uint64_t size)
{
    uLong crc = crc32(0L, Z_NULL, 0);

    while (size > 0) {
        uInt chunk = size > (1u << 30) ? (1u << 30) : (uInt)size;

        crc = crc32(crc, data, chunk);
        data += chunk;
        size -= chunk;
    }
    return (uint32_t)crc;
}

static int check_crc(const struct bcpm_zip *zip, const struct bcpm_zip_entry *entry,
                     const uint8_t *data)
{
    (void)zip;
    return crc32_of(data, entry->uncompressed_size) == entry->crc32 ? 0 : -1;
}

/*
 * Run zlib over the entry's compressed bytes into buffer, in chunks that fit
 * zlib's uInt counters, never writing past uncompressed_size. Returns zlib's
 * last status; *produced is the number of bytes written.
 */
static int run_inflate(z_stream *stream, const uint8_t *in, uint64_t in_left, uint8_t *buffer,
                       uint64_t out_size, uint64_t *produced)
{
    uint64_t out_left = out_size;
    int zrc;

    do {
        uInt in_chunk = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
        uInt out_chunk = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;

        stream->next_in = (Bytef *)(uintptr_t)in;
        stream->avail_in = in_chunk;
        stream->next_out = buffer + (out_size - out_left);
        stream->avail_out = out_chunk;
        zrc = inflate(stream, Z_NO_FLUSH);
        in += in_chunk - stream->avail_in;
        in_left -= in_chunk - stream->avail_in;
        out_left -= out_chunk - stream->avail_out;
        /* zlib returns Z_BUF_ERROR instead of Z_OK when it cannot progress, which ends the loop. */
    } while (zrc == Z_OK && (stream->avail_in == 0 ? in_left > 0 : out_left > 0));

    *produced = out_size - out_left;
    return zrc;
}

/* Inflate a raw deflate stream into a buffer of exactly the declared size. */
static int inflate_entry(const struct bcpm_zip *zip, const struct bcpm_zip_entry *entry,
                         uint8_t **out, struct bcpm_error *err)
{
    const char *path = zip->map->path;
    uint64_t bound, produced;
    const char *reason;
    z_stream stream;
    uint8_t *buffer;
    int zrc;

    if (bcpm_mul_u64(entry->compressed_size, DEFLATE_MAX_RATIO, &bound) != 0 ||
        bcpm_add_u64(bound, DEFLATE_SLACK, &bound) != 0)
        bound = UINT64_MAX;
    if (entry->uncompressed_size > bound)
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                              "declared uncompressed size %" PRIu64 " exceeds what %" PRIu64
                              " deflated bytes can expand to (at most %" PRIu64 ")",
                              entry->uncompressed_size, entry->compressed_size, bound);
    if (entry->uncompressed_size > SIZE_MAX - 1)
        return bcpm_error_set(err, BCPM_ERR_LIMIT, path, entry->name,
                              "uncompressed size %" PRIu64 " does not fit in memory",
                              entry->uncompressed_size);

    buffer = malloc(entry->uncompressed_size ? (size_t)entry->uncompressed_size : 1);
    if (!buffer)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, entry->name,
                              "out of memory for %" PRIu64 " inflated bytes",
                              entry->uncompressed_size);
    memset(&stream, 0, sizeof(stream));
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) {
        free(buffer);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, entry->name,
                              "zlib could not start inflating");
    }

    zrc = run_inflate(&stream, zip->map->data + entry->data_offset, entry->compressed_size,
                      buffer, entry->uncompressed_size, &produced);
    reason = stream.msg; /* zlib's messages are static strings, valid after inflateEnd */
    inflateEnd(&stream);
    if (zrc != Z_STREAM_END || produced != entry->uncompressed_size) {
        free(buffer);
        if (zrc == Z_STREAM_END)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                                  "deflate stream ended after %" PRIu64 " bytes, expected %"
                                  PRIu64, produced, entry->uncompressed_size);
        if (zrc == Z_OK || zrc == Z_BUF_ERROR)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                                  "deflate stream does not end within its %" PRIu64
                                  " compressed bytes and %" PRIu64 " declared output bytes",
                                  entry->compressed_size, entry->uncompressed_size);
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                              "invalid deflate data: %s", reason ? reason : "zlib error");
    }

    if (check_crc(zip, entry, buffer) != 0) {
        uint32_t found = crc32_of(buffer, entry->uncompressed_size);

        free(buffer);
        return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                              "CRC-32 mismatch: the central directory says 0x%08" PRIx32
                              ", the inflated data has 0x%08" PRIx32, entry->crc32, found);
    }
    *out = buffer;
    return 0;
}

int bcpm_zip_read(const struct bcpm_zip *zip, const struct bcpm_zip_entry *entry,
                  int verify_crc, const uint8_t **data, uint8_t **owned,
                  struct bcpm_error *err)
{
    const char *path = zip->map->path;
    int rc;

    *data = NULL;
    *owned = NULL;
    if (entry->flags & FLAG_ENCRYPTED)
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, path, entry->name,
                              "encrypted zip entries are not supported");

    switch (entry->method) {
    case BCPM_ZIP_METHOD_STORED:
        if (entry->compressed_size != entry->uncompressed_size)
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                                  "stored entry has compressed size %" PRIu64
                                  " but uncompressed size %" PRIu64 ", expected them equal",
                                  entry->compressed_size, entry->uncompressed_size);
        *data = zip->map->data + entry->data_offset;
        if (verify_crc && check_crc(zip, entry, *data) != 0) {
            *data = NULL;
            return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, entry->name,
                                  "CRC-32 mismatch: the central directory says 0x%08" PRIx32
                                  ", the data has 0x%08" PRIx32, entry->crc32,
                                  crc32_of(zip->map->data + entry->data_offset,
                                           entry->uncompressed_size));
        }
        return 0;
    case BCPM_ZIP_METHOD_DEFLATED:
        rc = inflate_entry(zip, entry, owned, err);
        if (rc == 0)
            *data = *owned;
        return rc;
    default:
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, path, entry->name,
                              "compression method %u is not supported: expected 0 (stored) "
                              "or 8 (deflated)", entry->method);
    }
}
