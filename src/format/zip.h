/*
 * A read-only zip reader over a memory-mapped file, for PyTorch checkpoints.
 *
 * Layout read (APPNOTE 6.3.x, the parts torch.save and Python's zipfile write):
 *
 *   local header  "PK\3\4"  30 bytes + name + extra, then the entry's data
 *                           (followed by a data descriptor when flag bit 3 is set)
 *   ...
 *   central directory, one "PK\1\2" record per entry: 46 bytes + name + extra + comment;
 *                      the extra may hold a zip64 field (id 0x0001) with the
 *                      64-bit sizes and local header offset
 *   zip64 end record   "PK\6\6" (optional; torch.save always writes one)
 *   zip64 locator      "PK\6\7" 20 bytes, just before the end record
 *   end record         "PK\5\6" 22 bytes + comment, in the last 64 KiB + 22 bytes
 *
 * Sizes, CRC and method are taken from the central directory, because torch.save
 * writes zero CRC and sizes in local headers (flag bit 3). The local header is
 * read only for its name and extra lengths, which place the data.
 *
 * Stored entries are read in place from the map. Deflated entries are inflated
 * with zlib into a buffer the caller owns, capped at the declared size and
 * checked against the CRC-32. Every offset and length is checked against the
 * file and against the other entries before use.
 */
#ifndef BCPM_FORMAT_ZIP_H
#define BCPM_FORMAT_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/map.h"

/*
 * A PyTorch checkpoint has one entry per storage plus a few more. A million
 * entries is far above any real model, and it keeps the tables built for a
 * hostile directory to about 64 MiB plus the names.
 */
#define BCPM_ZIP_MAX_ENTRIES 1000000u

#define BCPM_ZIP_METHOD_STORED 0
#define BCPM_ZIP_METHOD_DEFLATED 8

struct bcpm_zip_entry {
    const char *name;           /* NUL-terminated copy, owned by the zip */
    uint16_t flags;             /* general purpose bit flag */
    uint16_t method;            /* compression method */
    uint32_t crc32;             /* from the central directory */
    uint64_t compressed_size;   /* bytes of data in the file */
    uint64_t uncompressed_size; /* bytes after inflating */
    uint64_t header_offset;     /* offset of the local header */
    uint64_t data_offset;       /* offset of the first data byte */
};

struct bcpm_zip {
    const struct bcpm_map *map; /* borrowed; must outlive the zip */
    struct bcpm_zip_entry *entries; /* central directory order */
    size_t count;
    const struct bcpm_zip_entry **by_name; /* entries sorted by name, for lookups */
    char *names;                /* storage behind the entry names */
    uint64_t directory_offset;  /* where the central directory starts */
};

/*
 * Read the central directory of map and place every entry's data.
 * Rejects, as BCPM_ERR_CORRUPT naming the file and entry: a missing end
 * record, records or names running past the directory, sizes or offsets
 * past the end of the file, local headers that do not match, entries whose
 * data overlaps another entry or the directory, and duplicate names.
 * More than BCPM_ZIP_MAX_ENTRIES entries is BCPM_ERR_LIMIT; split archives
 * are BCPM_ERR_UNSUPPORTED. On success *out is owned by the caller.
 */
int bcpm_zip_open(struct bcpm_zip **out, const struct bcpm_map *map, struct bcpm_error *err);

void bcpm_zip_close(struct bcpm_zip *zip);

/* The entry with exactly this name, or NULL. */
const struct bcpm_zip_entry *bcpm_zip_find(const struct bcpm_zip *zip, const char *name);

/*
 * Get the uncompressed bytes of entry. A stored entry points into the map
 * (*owned is NULL); a deflated one is inflated into *owned, which the caller
 * frees, and *data points to it. Encrypted entries and methods other than
 * stored and deflated are BCPM_ERR_UNSUPPORTED. Deflated data is always checked
 * against the CRC-32. Stored data is checked only when verify_crc is set,
 * because that reads every byte of what may be gigabytes of tensor data.
 */
int bcpm_zip_read(const struct bcpm_zip *zip, const struct bcpm_zip_entry *entry,
                  int verify_crc, const uint8_t **data, uint8_t **owned,
                  struct bcpm_error *err);

#endif
