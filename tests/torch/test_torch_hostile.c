/*
 * The torch readers on hostile and broken files (fixtures/hostile/torch/,
 * written by tools/gen_hostile_zip.py): each must fail with one exact status,
 * naming the file, the entry or tensor, and what was expected and found.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/catalog.h"

struct hostile_case {
    const char *file;
    int status;
    const char *entry;          /* expected err.entry, or NULL to skip the check */
    const char *words[3];       /* phrases the message must contain */
};

/*
 * The expected values follow from how the generator built each file: the base
 * archive "small" holds data.pkl, data/0 (tensor a, F32 2x3) and data/1
 * (tensor b, BF16 of 4), then version, in that order.
 */
static const struct hostile_case cases[] = {
    {"truncated.pt", BCPM_ERR_CORRUPT, "",
     {"end of central directory record not found", "truncated", NULL}},
    {"cd_name_overflow.pt", BCPM_ERR_CORRUPT, "central directory record 3",
     {"file name length 65535", "runs past the central directory", NULL}},
    {"cd_extra_overflow.pt", BCPM_ERR_CORRUPT, "central directory record 0",
     {"extra field length 65535", "runs past the central directory", NULL}},
    {"zip64_size_lies.pt", BCPM_ERR_CORRUPT, "small/data/1",
     {"entry data of 1099511627776 bytes", "runs past the data area", NULL}},
    {"zip64_end_lies.pt", BCPM_ERR_CORRUPT, "",
     {"zip64 end record offset", "is invalid", NULL}},
    {"missing_storage.pt", BCPM_ERR_CORRUPT, "b",
     {"storage key '1'", "no entry 'small/data/1'", NULL}},
    {"past_storage.pt", BCPM_ERR_CORRUPT, "w",
     {"extends past its storage", "needs 32 bytes", "has 24"}},
    {"overflow_shape.pt", BCPM_ERR_CORRUPT, "huge",
     {"overflows 64 bits", NULL, NULL}},
    {"int_key.pt", BCPM_ERR_CORRUPT, "state dict item 0",
     {"expected a str key", "found int", NULL}},
    {"overlap.pt", BCPM_ERR_CORRUPT, "small/data/1",
     {"overlaps the data of entry 'small/data/0'", NULL, NULL}},
    {"local_outside.pt", BCPM_ERR_CORRUPT, "small/data/0",
     {"local header offset 2147418112", "outside", NULL}},
    {"crc_mismatch.pt", BCPM_ERR_CORRUPT, "small/data.pkl",
     {"CRC-32 mismatch", NULL, NULL}},
    {"stored_crc_mismatch.pt", BCPM_ERR_CORRUPT, "small/data.pkl",
     {"CRC-32 mismatch", NULL, NULL}},
    {"duplicate_entry.pt", BCPM_ERR_CORRUPT, "small/data/0",
     {"appears twice in the central directory", NULL, NULL}},
    {"deflate_short.pt", BCPM_ERR_CORRUPT, "small/data.pkl",
     {"deflate stream does not end within its 10 compressed bytes", NULL, NULL}},
    {"deflate_bomb.pt", BCPM_ERR_CORRUPT, "small/data.pkl",
     {"declared uncompressed size 2147483647 exceeds", NULL, NULL}},
    {"encrypted.pt", BCPM_ERR_UNSUPPORTED, "small/data.pkl",
     {"encrypted zip entries are not supported", NULL, NULL}},
    {"bzip2.pt", BCPM_ERR_UNSUPPORTED, "small/data.pkl",
     {"compression method 12 is not supported", NULL, NULL}},
    {"big_endian.pt", BCPM_ERR_UNSUPPORTED, "small/byteorder",
     {"expected byte order 'little'", "found 'big'", NULL}},
    {"legacy_truncated.pt", BCPM_ERR_CORRUPT, "1",
     {"4 BF16 elements needs 8 bytes", "only 5 bytes remain", NULL}},
};

static const char *hostile_path(const char *name)
{
    static char path[4096];
    const char *dir = getenv("BCPM_FIXTURES");

    snprintf(path, sizeof(path), "%s/hostile/torch/%s", dir ? dir : "fixtures", name);
    return path;
}

static void check_case(const struct hostile_case *c)
{
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    char line[2048];
    const char *path = hostile_path(c->file);
    int rc;

    bcpm_error_clear(&err);
    rc = bcpm_catalog_open(&catalog, path, NULL, &err);
    bcpm_error_format(&err, line, sizeof(line));
    if (rc != c->status)
        fail_msg("%s: expected status %d, got %d: %s", c->file, c->status, rc, line);
    assert_null(catalog);
    assert_int_equal(err.code, c->status);
    assert_string_equal(err.file, path);
    if (c->entry)
        assert_string_equal(err.entry, c->entry);
    for (int i = 0; i < 3 && c->words[i]; i++) {
        if (!strstr(err.message, c->words[i]))
            fail_msg("%s: message lacks '%s': %s", c->file, c->words[i], line);
    }
}

static void torch_hostile_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i]);
}

/* Read the whole of a fixture into memory; the caller frees it. */
static unsigned char *read_fixture(const char *name, long *size)
{
    char path[4096];
    const char *dir = getenv("BCPM_FIXTURES");
    unsigned char *bytes;
    FILE *f;

    snprintf(path, sizeof(path), "%s/torch/%s", dir ? dir : "fixtures", name);
    f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    rewind(f);
    bytes = malloc((size_t)*size);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)*size, f), (size_t)*size);
    fclose(f);
    return bytes;
}

/*
 * Every prefix of a valid checkpoint fails cleanly: no crash, no hang, never a
 * pass. Prefixes start at 4 bytes, the shortest that the format probe accepts.
 */
static void check_prefixes(const char *name, int expected)
{
    char target[4096];
    const char *build = getenv("BCPM_BUILD");
    long size;
    unsigned char *bytes = read_fixture(name, &size);

    snprintf(target, sizeof(target), "%s/torch_prefix_%s", build ? build : ".", name);
    for (long cut = 4; cut < size; cut++) {
        struct bcpm_catalog *catalog = NULL;
        struct bcpm_error err;
        FILE *f = fopen(target, "wb");
        int rc;

        assert_non_null(f);
        assert_int_equal(fwrite(bytes, 1, (size_t)cut, f), (size_t)cut);
        fclose(f);
        bcpm_error_clear(&err);
        rc = bcpm_catalog_open(&catalog, target, NULL, &err);
        if (expected ? rc != expected : rc >= 0)
            fail_msg("%s cut to %ld bytes: expected failure %d, got %d (%s)", name, cut,
                     expected, rc, err.message);
        assert_null(catalog);
    }
    remove(target);
    free(bytes);
}

static void torch_zip_prefixes_rejected(void **state)
{
    (void)state;
    check_prefixes("basic.pt", BCPM_ERR_CORRUPT);
}

/* A cut inside a pickle may be reported as corrupt or as a pickle limit; any failure will do. */
static void torch_legacy_prefixes_rejected(void **state)
{
    (void)state;
    check_prefixes("basic_legacy.pt", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(torch_hostile_files),
        cmocka_unit_test(torch_zip_prefixes_rejected),
        cmocka_unit_test(torch_legacy_prefixes_rejected),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
