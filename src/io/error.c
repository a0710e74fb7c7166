/* Filling and formatting struct bcpm_error; see error.h for the contract. */
#include "io/error.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void bcpm_error_clear(struct bcpm_error *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}

static void copy_name(char *dst, size_t size, const char *src)
{
    if (!src)
        return;
    snprintf(dst, size, "%s", src);
}

int bcpm_error_set(struct bcpm_error *err, int code, const char *file,
                   const char *entry, const char *fmt, ...)
{
    va_list ap;

    if (!err || err->code != 0)
        return code;

    err->code = code;
    copy_name(err->file, sizeof(err->file), file);
    copy_name(err->entry, sizeof(err->entry), entry);

    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return code;
}

void bcpm_error_at(struct bcpm_error *err, uint64_t offset)
{
    if (!err || err->has_offset)
        return;
    err->offset = offset;
    err->has_offset = 1;
}

void bcpm_error_file(struct bcpm_error *err, const char *file)
{
    if (err && err->file[0] == '\0')
        copy_name(err->file, sizeof(err->file), file);
}

char *bcpm_error_format(const struct bcpm_error *err, char *buf, size_t size)
{
    size_t used = 0;
    int n;

    if (size == 0)
        return buf;
    buf[0] = '\0';

    if (err->file[0]) {
        n = snprintf(buf + used, size - used, "%s", err->file);
        used += n > 0 ? (size_t)n : 0;
        if (err->line && used < size) {
            n = snprintf(buf + used, size - used, ":%u:%u", err->line,
                         err->column);
            used += n > 0 ? (size_t)n : 0;
        }
        if (used < size) {
            n = snprintf(buf + used, size - used, ": ");
            used += n > 0 ? (size_t)n : 0;
        }
    }
    if (err->entry[0] && used < size) {
        n = snprintf(buf + used, size - used, "'%s'", err->entry);
        used += n > 0 ? (size_t)n : 0;
    }
    if (err->has_offset && used < size) {
        n = snprintf(buf + used, size - used, "%sat offset %" PRIu64,
                     err->entry[0] ? " " : "", err->offset);
        used += n > 0 ? (size_t)n : 0;
    }
    if ((err->entry[0] || err->has_offset) && used < size) {
        n = snprintf(buf + used, size - used, ": ");
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < size)
        snprintf(buf + used, size - used, "%s",
                 err->message[0] ? err->message : bcpm_status_name(err->code));
    return buf;
}

const char *bcpm_status_name(int code)
{
    switch (code) {
    case BCPM_OK: return "success";
    case BCPM_ERR_USAGE: return "invalid usage";
    case BCPM_ERR_IO: return "input/output error";
    case BCPM_ERR_CORRUPT: return "corrupt input";
    case BCPM_ERR_UNSUPPORTED: return "unsupported input";
    case BCPM_ERR_LIMIT: return "resource limit exceeded";
    case BCPM_ERR_NOMEM: return "out of memory";
    case BCPM_ERR_NOT_FOUND: return "not found";
    case BCPM_ERR_DATABASE: return "database error";
    case BCPM_ERR_RULES: return "invalid rule file";
    }
    return "unknown error";
}
