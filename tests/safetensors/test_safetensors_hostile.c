/*
 * Hostile and broken safetensors files, shard indexes and model folders.
 *
 * fixtures/hostile/safetensors/expected.json, written by
 * tools/gen_hostile_safetensors.py beside the fixtures, gives for each case
 * the status the open must return, the tensor or key the error must name,
 * and words the one-line message must contain (the file, the values expected
 * and found). One cmocka test runs per case. Two more tests feed every
 * truncation and many corruptions of a good file to the reader, which must
 * fail cleanly or succeed, never crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "tensor/catalog.h"

struct hostile_case {
    char path[1024];
    int status;
    const char *entry;
    const json_t *words;
};

static const char *fixtures(void)
{
    const char *dir = getenv("BCPM_FIXTURES");
    return dir ? dir : "fixtures";
}

static int status_from_name(const char *name)
{
    static const struct {
        const char *name;
        int status;
    } table[] = {
        {"ok", BCPM_OK},
        {"usage", BCPM_ERR_USAGE},
        {"corrupt", BCPM_ERR_CORRUPT},
        {"unsupported", BCPM_ERR_UNSUPPORTED},
        {"limit", BCPM_ERR_LIMIT},
        {"not_found", BCPM_ERR_NOT_FOUND},
    };

    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(table[i].name, name) == 0)
            return table[i].status;
    }
    fail_msg("unknown status name '%s' in expected.json", name);
    return 1;
}

static void assert_contains(const char *text, const char *word)
{
    if (!strstr(text, word))
        fail_msg("expected '%s' in: %s", word, text);
}

static void hostile_fixture_rejected(void **state)
{
    const struct hostile_case *c = *state;
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    char line[4096];
    const json_t *word;
    size_t i;
    int rc;

    bcpm_error_clear(&err);
    rc = bcpm_catalog_open(&catalog, c->path, NULL, &err);
    bcpm_error_format(&err, line, sizeof(line));
    if (rc != c->status)
        fail_msg("%s: expected status %d, found %d: %s", c->path, c->status, rc, line);

    if (c->status == BCPM_OK) {
        /* Readable with a finding: the words are in the finding's rule id and message. */
        assert_non_null(catalog);
        assert_int_equal(catalog->findings.count, 1);
        snprintf(line, sizeof(line), "%s %s", catalog->findings.items[0].rule,
                 catalog->findings.items[0].message);
        assert_int_equal(catalog->findings.items[0].severity, BCPM_SEVERITY_WARNING);
        bcpm_catalog_free(catalog);
    } else {
        assert_null(catalog);
        assert_int_equal(err.code, c->status);
        /* The message line names the file the failure is about. */
        assert_true(err.file[0] != '\0');
        assert_contains(line, err.file);
        assert_true(strstr(c->path, err.file) != NULL || strstr(err.file, c->path) != NULL);
        if (c->entry[0])
            assert_string_equal(err.entry, c->entry);
    }
    json_array_foreach(c->words, i, word)
        assert_contains(line, json_string_value(word));
}

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    data = malloc((size_t)n);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

static void write_file(const char *path, const char *data, size_t size)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static int open_scratch(const char *path)
{
    struct bcpm_catalog *catalog = NULL;
    struct bcpm_error err;
    int rc;

    bcpm_error_clear(&err);
    rc = bcpm_catalog_open(&catalog, path, NULL, &err);
    if (rc == 0)
        bcpm_catalog_free(catalog);
    else
        assert_true(err.code == rc && err.message[0] != '\0');
    return rc;
}

/* A safetensors file cut short anywhere is invalid: the data must end at the file's end. */
static void every_truncation_rejected(void **state)
{
    char source[1024], scratch[] = "/tmp/bcpm-st-truncated-XXXXXX";
    size_t size;
    char *data;
    int fd;

    (void)state;
    snprintf(source, sizeof(source), "%s/safetensors/single.safetensors", fixtures());
    data = read_file(source, &size);
    fd = mkstemp(scratch);
    assert_true(fd >= 0);
    close(fd);

    for (size_t n = 0; n < size; n++) {
        write_file(scratch, data, n);
        if (open_scratch(scratch) == 0)
            fail_msg("a prefix of %zu of %zu bytes was accepted", n, size);
    }
    write_file(scratch, data, size);
    assert_int_equal(open_scratch(scratch), 0);

    unlink(scratch);
    free(data);
}

/*
 * Overwrite each header byte with characters that break JSON, numbers and
 * names in turn. Some results stay valid (a digit for a digit); the reader
 * must return either way, with a message when it fails.
 */
static void corrupted_header_bytes_handled(void **state)
{
    static const char replacements[] = {'"', '9', '-', '{', ']', ',', '\0', '\xff', ' '};
    char source[1024], scratch[] = "/tmp/bcpm-st-corrupted-XXXXXX";
    size_t size, header_end, rejected = 0;
    char *data;
    int fd;

    (void)state;
    snprintf(source, sizeof(source), "%s/safetensors/single.safetensors", fixtures());
    data = read_file(source, &size);
    header_end = 8 + ((size_t)(unsigned char)data[0] | (size_t)(unsigned char)data[1] << 8);
    assert_true(header_end < size);
    fd = mkstemp(scratch);
    assert_true(fd >= 0);
    close(fd);

    for (size_t i = 8; i < header_end; i++) {
        char saved = data[i];

        for (size_t r = 0; r < sizeof(replacements); r++) {
            if (replacements[r] == saved)
                continue;
            data[i] = replacements[r];
            write_file(scratch, data, size);
            rejected += open_scratch(scratch) != 0;
        }
        data[i] = saved;
    }
    print_message("%zu of %zu corrupted headers rejected\n", rejected,
                  (header_end - 8) * sizeof(replacements));
    /* Most single-byte changes break the header, but not all, so the check is a lower bound. */
    assert_true(rejected > (header_end - 8) * 4);

    unlink(scratch);
    free(data);
}

int main(void)
{
    char expected_path[1024];
    struct hostile_case *cases;
    struct CMUnitTest *tests;
    json_error_t error;
    json_t *expected, *item;
    size_t n, i;
    int failed;

    snprintf(expected_path, sizeof(expected_path), "%s/hostile/safetensors/expected.json",
             fixtures());
    expected = json_load_file(expected_path, 0, &error);
    if (!expected || !json_is_array(expected)) {
        fprintf(stderr, "cannot read %s: %s\n", expected_path, error.text);
        return 1;
    }

    n = json_array_size(expected);
    cases = calloc(n, sizeof(*cases));
    tests = calloc(n + 2, sizeof(*tests));
    if (!cases || !tests)
        return 1;
    json_array_foreach(expected, i, item) {
        snprintf(cases[i].path, sizeof(cases[i].path), "%s/hostile/safetensors/%s",
                 fixtures(), json_string_value(json_object_get(item, "path")));
        cases[i].status = status_from_name(json_string_value(json_object_get(item, "status")));
        cases[i].entry = json_string_value(json_object_get(item, "entry"));
        cases[i].words = json_object_get(item, "words");
        tests[i].name = json_string_value(json_object_get(item, "path"));
        tests[i].test_func = hostile_fixture_rejected;
        tests[i].initial_state = &cases[i];
    }
    tests[n].name = "every_truncation_rejected";
    tests[n].test_func = every_truncation_rejected;
    tests[n + 1].name = "corrupted_header_bytes_handled";
    tests[n + 1].test_func = corrupted_header_bytes_handled;

    failed = _cmocka_run_group_tests("safetensors_hostile", tests, n + 2, NULL, NULL);
    free(tests);
    free(cases);
    json_decref(expected);
    return failed;
}
