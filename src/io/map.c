/* Read-only file mappings; see map.h. */
#include "io/map.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int bcpm_map_open(struct bcpm_map **out, const char *path, struct bcpm_error *err)
{
    struct bcpm_map *map;
    struct stat st;
    void *data = NULL;
    int fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bcpm_error_set(err, errno == ENOENT ? BCPM_ERR_NOT_FOUND : BCPM_ERR_IO,
                              path, NULL, "cannot open: %s", strerror(errno));

    if (fstat(fd, &st) != 0) {
        int saved = errno;
        close(fd);
        return bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "cannot stat: %s",
                              strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bcpm_error_set(err, BCPM_ERR_IO, path, NULL,
                              "expected a regular file, found another kind of file");
    }

    if (st.st_size > 0) {
        if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) {
            close(fd);
            return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, path, NULL,
                                  "file of %lld bytes does not fit the address space",
                                  (long long)st.st_size);
        }
        data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (data == MAP_FAILED) {
            int saved = errno;
            close(fd);
            return bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "cannot map: %s",
                                  strerror(saved));
        }
    }
    close(fd);

    map = calloc(1, sizeof(*map));
    if (map)
        map->path = strdup(path);
    if (!map || !map->path) {
        if (data)
            munmap(data, (size_t)st.st_size);
        free(map);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }
    map->data = data;
    map->size = (uint64_t)st.st_size;
    map->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
    *out = map;
    return 0;
}

void bcpm_map_close(struct bcpm_map *map)
{
    if (!map)
        return;
    if (map->data)
        munmap((void *)map->data, (size_t)map->size);
    free(map->path);
    free(map);
}

static int page_range(const struct bcpm_map *map, uint64_t offset, uint64_t length,
                      int inner, uintptr_t *start, size_t *len)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t begin, end;

    if (!map || !map->data || offset >= map->size)
        return -1;
    if (length > map->size - offset)
        length = map->size - offset;
    end = offset + length;

    if (inner) {
        begin = (offset + page - 1) / page * page;
        if (end != map->size)
            end = end / page * page;
    } else {
        begin = offset / page * page;
    }
    if (end <= begin)
        return -1;
    *start = (uintptr_t)map->data + begin;
    *len = (size_t)(end - begin);
    return 0;
}

void bcpm_map_release(const struct bcpm_map *map, uint64_t offset, uint64_t length)
{
    uintptr_t start;
    size_t len;

    if (page_range(map, offset, length, 1, &start, &len) == 0)
        madvise((void *)start, len, MADV_DONTNEED);
}

void bcpm_map_will_need(const struct bcpm_map *map, uint64_t offset, uint64_t length)
{
    uintptr_t start;
    size_t len;

    if (page_range(map, offset, length, 0, &start, &len) == 0)
        madvise((void *)start, len, MADV_WILLNEED);
}
