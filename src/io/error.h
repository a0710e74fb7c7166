/*
 * Error reporting shared by every layer of libbitcpm.
 *
 * Fallible functions return 0 on success or a negative bcpm_status, and fill
 * a caller-owned struct bcpm_error at the point of failure. The message names
 * the file, the entry or tensor, what was expected and what was found. The
 * library never prints and never exits; the commands in src/cli/ decide what
 * to show and map the status to an exit code.
 */
#ifndef BCPM_IO_ERROR_H
#define BCPM_IO_ERROR_H

#include <stdint.h>
#include <stddef.h>

/* Stable status codes: numbers never change meaning, new ones are appended. */
enum bcpm_status {
    BCPM_OK = 0,
    BCPM_ERR_USAGE = -1,       /* bad arguments or options */
    BCPM_ERR_IO = -2,          /* open, read, mmap or write failed */
    BCPM_ERR_CORRUPT = -3,     /* the file breaks its format's rules */
    BCPM_ERR_UNSUPPORTED = -4, /* valid but not handled (version, dtype, method) */
    BCPM_ERR_LIMIT = -5,       /* a resource cap was hit (depth, size, count) */
    BCPM_ERR_NOMEM = -6,       /* allocation failed */
    BCPM_ERR_NOT_FOUND = -7,   /* a named file, entry or tensor is absent */
    BCPM_ERR_DATABASE = -8,    /* SQLite reported an error */
    BCPM_ERR_RULES = -9,       /* a rule file is malformed */
};

#define BCPM_ERROR_TEXT_MAX 1024
#define BCPM_ERROR_NAME_MAX 512

struct bcpm_error {
    int code;                          /* enum bcpm_status, 0 when clear */
    char file[BCPM_ERROR_NAME_MAX];    /* file the failure is about, or "" */
    char entry[BCPM_ERROR_NAME_MAX];   /* zip entry, tensor, key or rule id, or "" */
    uint64_t offset;                   /* byte offset in file, valid if has_offset */
    int has_offset;
    unsigned line, column;             /* for text formats (YAML, JSON), 0 if unknown */
    char message[BCPM_ERROR_TEXT_MAX]; /* what was expected and what was found */
};

/* Clear err so that a later failure starts from empty fields. */
void bcpm_error_clear(struct bcpm_error *err);

/*
 * Record a failure and return code, so callers can write
 * `return bcpm_error_set(err, BCPM_ERR_CORRUPT, path, name, "...", ...);`.
 * file and entry may be NULL. The first failure recorded wins: a second call on
 * an error that already holds a code only returns code, which keeps the
 * innermost, most specific message.
 */
int bcpm_error_set(struct bcpm_error *err, int code, const char *file,
                   const char *entry, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

/* Attach a byte offset to the recorded failure. */
void bcpm_error_at(struct bcpm_error *err, uint64_t offset);

/* Fill in the file name if the failure did not name one yet. */
void bcpm_error_file(struct bcpm_error *err, const char *file);

/*
 * Format err as one line: "FILE: entry 'E' at offset N: MESSAGE"
 * (parts that are empty are left out). Returns buf.
 */
char *bcpm_error_format(const struct bcpm_error *err, char *buf, size_t size);

/* Short lowercase phrase for a status code ("corrupt input", ...). */
const char *bcpm_status_name(int code);

#endif
