/*
 * Read-only memory-mapped files.
 *
 * Readers point into the mapping instead of copying tensor data. Pages a
 * kernel has finished with are handed back with bcpm_map_release(), which
 * drops them from the process's resident set while the kernel keeps them in
 * the page cache; this keeps resident memory small on checkpoints of many
 * gigabytes.
 */
#ifndef BCPM_IO_MAP_H
#define BCPM_IO_MAP_H

#include <stdint.h>

#include "io/error.h"

struct bcpm_map {
    char *path;          /* as given by the caller, owned */
    const uint8_t *data; /* NULL for an empty file */
    uint64_t size;       /* file size in bytes at open time */
    int64_t mtime_ns;    /* modification time, nanoseconds since the epoch */
};

/* Map path read-only. On success *out is owned by the caller (bcpm_map_close). */
int bcpm_map_open(struct bcpm_map **out, const char *path, struct bcpm_error *err);

void bcpm_map_close(struct bcpm_map *map);

/*
 * Drop the pages covering [offset, offset + length) from the resident set.
 * Only whole pages inside the range are released. Safe to call with any range;
 * out-of-range parts are ignored.
 */
void bcpm_map_release(const struct bcpm_map *map, uint64_t offset, uint64_t length);

/* Advise the kernel that [offset, offset + length) will be read in order soon. */
void bcpm_map_will_need(const struct bcpm_map *map, uint64_t offset, uint64_t length);

#endif
