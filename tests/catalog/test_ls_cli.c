/*
 * Command-level tests of bitcpm-ls. They run the built executable (argv[1])
 * on fixtures of fixtures/good/ and check its JSON against the expected.json
 * files PyTorch produced. They also check the table's summary line, the
 * messages on stderr and the exit codes (0 listed, 1 security finding, 2
 * could not read or bad usage).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *ls_path;
static char scratch[] = "/tmp/bcpm-ls-cli-XXXXXX";

struct result {
    int status; /* exit code, or -1 when the command did not exit normally */
    char *out;
    char *err;
};

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t size = 0, capacity = 0, n;
    char chunk[65536];

    if (!f)
        return strdup("");
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (size + n + 1 > capacity) {
            capacity = (size + n + 1) * 2;
            data = realloc(data, capacity);
            assert_non_null(data);
        }
        memcpy(data + size, chunk, n);
        size += n;
    }
    fclose(f);
    if (!data)
        return strdup("");
    data[size] = '\0';
    return data;
}

/*
 * Run bitcpm-ls with args (NULL-terminated, program name excluded). stdout
 * goes to stdout_path when given, else to a scratch file read back into
 * result->out.
 */
static void run_ls(struct result *result, const char *stdout_path, const char *const *args)
{
    char out_path[256], err_path[256];
    const char *argv[32];
    size_t argc = 0;
    pid_t pid;
    int wstatus;

    snprintf(out_path, sizeof(out_path), "%s/stdout", scratch);
    snprintf(err_path, sizeof(err_path), "%s/stderr", scratch);
    argv[argc++] = ls_path;
    while (*args && argc < 31)
        argv[argc++] = *args++;
    argv[argc] = NULL;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open(stdout_path ? stdout_path : out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        execv(ls_path, (char *const *)argv);
        _exit(127);
    }
    assert_true(waitpid(pid, &wstatus, 0) == pid);
    result->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    result->out = stdout_path ? strdup("") : read_file(out_path);
    result->err = read_file(err_path);
}

static void result_free(struct result *result)
{
    free(result->out);
    free(result->err);
}

static void fixture_path(char *buf, size_t size, const char *relative)
{
    const char *root = getenv("BCPM_FIXTURES");
    int n = snprintf(buf, size, "%s/good/%s", root ? root : "fixtures", relative);

    assert_true(n > 0 && (size_t)n < size);
}

static json_t *load_expected(const char *relative)
{
    char path[4096];
    int n;
    json_error_t error;
    json_t *expected;

    fixture_path(path, sizeof(path) - 16, relative);
    n = (int)strlen(path);
    snprintf(path + n, sizeof(path) - (size_t)n, ".expected.json");
    expected = json_load_file(path, 0, &error);
    if (!expected)
        fail_msg("%s: cannot load: %s", path, error.text);
    return expected;
}

static size_t count_lines(const char *text)
{
    size_t lines = 0;

    for (; *text; text++)
        lines += *text == '\n';
    return lines;
}

/* The ordered integer array found equals the expected one. */
static void check_dims(const char *name, const char *key, const json_t *found,
                       const json_t *expected)
{
    if (!json_is_array(found) || json_array_size(found) != json_array_size(expected))
        fail_msg("'%s': %s: expected %zu values", name, key, json_array_size(expected));
    for (size_t d = 0; d < json_array_size(expected); d++) {
        json_int_t want = json_integer_value(json_array_get(expected, d));
        json_int_t got = json_integer_value(json_array_get(found, d));

        if (want != got)
            fail_msg("'%s': %s[%zu]: expected %lld, found %lld", name, key, d,
                     (long long)want, (long long)got);
    }
}

/* The found name array contains the same names as the expected one, in any order. */
static void check_name_set(const char *name, const json_t *found, const json_t *expected)
{
    size_t i, j;
    const json_t *want, *got;

    if (json_array_size(found) != json_array_size(expected))
        fail_msg("'%s': shared_with: expected %zu names, found %zu", name,
                 json_array_size(expected), json_array_size(found));
    json_array_foreach(expected, i, want) {
        int present = 0;

        json_array_foreach(found, j, got) {
            present |= json_equal(want, got);
        }
        if (!present)
            fail_msg("'%s': shared_with lacks '%s'", name, json_string_value(want));
    }
}

/* Compare one listing object of bitcpm-ls --format json with an expected.json file. */
static void check_listing(const json_t *listing, const json_t *expected, const char *path)
{
    const json_t *tensors = json_object_get(listing, "tensors");
    const json_t *want_tensors = json_object_get(expected, "tensors");
    size_t i;
    const json_t *want;

    assert_int_equal(json_object_size(listing), 3);
    assert_true(json_is_array(json_object_get(listing, "files")));
    assert_int_equal(json_array_size(json_object_get(listing, "files")),
                     json_array_size(json_object_get(expected, "files")));
    assert_int_equal(json_array_size(json_object_get(listing, "findings")), 0);
    assert_int_equal(json_array_size(tensors), json_array_size(want_tensors));

    json_array_foreach(want_tensors, i, want) {
        const char *name = json_string_value(json_object_get(want, "name"));
        const json_t *got = NULL, *candidate;
        size_t j;

        json_array_foreach(tensors, j, candidate) {
            if (strcmp(json_string_value(json_object_get(candidate, "name")), name) == 0)
                got = candidate;
        }
        if (!got)
            fail_msg("%s: tensor '%s' missing from the JSON listing", path, name);
        assert_int_equal(json_object_size(got), 9);
        assert_string_equal(json_string_value(json_object_get(got, "dtype")),
                            json_string_value(json_object_get(want, "dtype")));
        check_dims(name, "shape", json_object_get(got, "shape"), json_object_get(want, "shape"));
        check_dims(name, "strides", json_object_get(got, "strides"),
                   json_object_get(want, "stride"));
        assert_int_equal(json_integer_value(json_object_get(got, "storage_offset")),
                         json_integer_value(json_object_get(want, "storage_offset")));
        assert_int_equal(json_integer_value(json_object_get(got, "byte_offset")),
                         json_integer_value(json_object_get(want, "byte_offset")));
        assert_int_equal(json_integer_value(json_object_get(got, "nbytes")),
                         json_integer_value(json_object_get(want, "nbytes")));
        assert_true(json_is_string(json_object_get(got, "file")));
        check_name_set(name, json_object_get(got, "shared_with"),
                       json_object_get(want, "shared_with"));
    }
}

/* True when path is file_name or ends in "/file_name". */
static int names_file(const char *path, const char *file_name)
{
    size_t n = strlen(path), m = strlen(file_name);

    if (strcmp(path, file_name) == 0)
        return 1;
    return n > m && path[n - m - 1] == '/' && strcmp(path + n - m, file_name) == 0;
}

/* Each file of the expected list is in "files", and each tensor's "file" is one of them. */
static void check_files(const json_t *listing, const json_t *expected, const char *relative)
{
    const json_t *files = json_object_get(listing, "files");
    size_t i, j;
    const json_t *want, *got, *tensor;

    json_array_foreach(json_object_get(expected, "files"), i, want) {
        int present = 0;

        json_array_foreach(files, j, got) {
            present |= names_file(json_string_value(got), json_string_value(want));
        }
        if (!present)
            fail_msg("%s: \"files\" lacks %s", relative, json_string_value(want));
    }
    json_array_foreach(json_object_get(listing, "tensors"), i, tensor) {
        int present = 0;

        json_array_foreach(files, j, got) {
            present |= json_equal(got, json_object_get(tensor, "file"));
        }
        if (!present)
            fail_msg("%s: a tensor's \"file\" is not in \"files\"", relative);
    }
}

static void ls_json_matches(const char *relative)
{
    char path[4096];
    const char *args[] = {"--format", "json", path, NULL};
    struct result result;
    json_error_t error;
    json_t *listing, *expected = load_expected(relative);

    fixture_path(path, sizeof(path), relative);
    run_ls(&result, NULL, args);
    if (result.status != 0)
        fail_msg("%s: expected exit 0, found %d: %s", relative, result.status, result.err);
    assert_string_equal(result.err, "");
    listing = json_loads(result.out, 0, &error);
    if (!listing)
        fail_msg("%s: output is not JSON: %s (line %d)", relative, error.text, error.line);

    check_files(listing, expected, relative);
    check_listing(listing, expected, relative);

    json_decref(listing);
    json_decref(expected);
    result_free(&result);
}

static void json_views(void **state)
{
    (void)state;
    ls_json_matches("torch-zip-views.pt");
}

static void json_tied(void **state)
{
    (void)state;
    ls_json_matches("torch-zip-tied.pt");
}

static void json_deepspeed(void **state)
{
    (void)state;
    ls_json_matches("mp_rank_00_model_states.pt");
}

static void json_sharded_safetensors(void **state)
{
    (void)state;
    ls_json_matches("sharded-safetensors/model.safetensors.index.json");
}

/* Two paths give a JSON array of two listings, in argument order. */
static void json_two_paths(void **state)
{
    char first[4096], second[4096];
    const char *args[] = {"--format", "json", first, second, NULL};
    struct result result;
    json_t *listing;

    (void)state;
    fixture_path(first, sizeof(first), "torch-zip-tied.pt");
    fixture_path(second, sizeof(second), "single.safetensors");
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 0);
    listing = json_loads(result.out, 0, NULL);
    assert_true(json_is_array(listing));
    assert_int_equal(json_array_size(listing), 2);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(json_array_get(listing, 1), "files"), 0)),
        second);
    json_decref(listing);
    result_free(&result);
}

/* --keep-prefix lists the DeepSpeed names as stored, with "module.". */
static void keep_prefix_names(void **state)
{
    char path[4096];
    const char *args[] = {"--keep-prefix", "--format", "json", path, NULL};
    struct result result;
    json_t *listing, *expected = load_expected("mp_rank_00_model_states.pt");
    size_t i;
    const json_t *want;

    (void)state;
    fixture_path(path, sizeof(path), "mp_rank_00_model_states.pt");
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 0);
    listing = json_loads(result.out, 0, NULL);
    assert_non_null(listing);
    json_array_foreach(json_object_get(expected, "tensors"), i, want) {
        const json_t *got = json_array_get(json_object_get(listing, "tensors"), i);

        assert_string_equal(json_string_value(json_object_get(got, "name")),
                            json_string_value(json_object_get(want, "stored_name")));
    }
    json_decref(listing);
    json_decref(expected);
    result_free(&result);
}

/* The table has a header, one row per tensor and a summary naming the nesting and prefix. */
static void table_summary(void **state)
{
    char path[4096], summary[512];
    const char *args[] = {path, NULL};
    struct result result;
    json_t *expected = load_expected("mp_rank_00_model_states.pt");
    size_t ntensors = json_array_size(json_object_get(expected, "tensors"));
    json_int_t stripped = json_integer_value(json_object_get(expected, "stripped_count"));
    const char *last_line;

    (void)state;
    fixture_path(path, sizeof(path), "mp_rank_00_model_states.pt");
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 0);
    assert_string_equal(result.err, "");
    assert_int_equal(count_lines(result.out), ntensors + 2);
    assert_true(strncmp(result.out, "NAME ", 5) == 0);
    assert_non_null(strstr(result.out, "\nmodel.embed_tokens.weight "));

    result.out[strlen(result.out) - 1] = '\0';
    last_line = strrchr(result.out, '\n') + 1;
    snprintf(summary, sizeof(summary), "%zu tensors, ", ntensors);
    assert_true(strncmp(last_line, summary, strlen(summary)) == 0);
    assert_non_null(strstr(last_line, "weights nested under 'module'"));
    snprintf(summary, sizeof(summary), "prefix 'module.' stripped from %lld names",
             (long long)stripped);
    assert_non_null(strstr(last_line, summary));

    json_decref(expected);
    result_free(&result);
}

/*
 * A pickle that would call os.system is still listed, but its finding goes to
 * stderr and to "findings", and the exit code is 1. The fixture comes from the
 * hostile-pickle set of fixtures/hostile/pickle/.
 */
static void security_finding_exit(void **state)
{
    char path[4096], prefix[4200];
    const char *args[] = {"--format", "json", path, NULL};
    struct result result;
    json_t *listing, *finding;
    const char *root = getenv("BCPM_FIXTURES");

    (void)state;
    snprintf(path, sizeof(path), "%s/hostile/pickle/os_system_p2.pt", root ? root : "fixtures");
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 1);

    snprintf(prefix, sizeof(prefix), "bitcpm-ls: %s: security.unsafe-global: ", path);
    assert_int_equal(count_lines(result.err), 1);
    if (strncmp(result.err, prefix, strlen(prefix)) != 0)
        fail_msg("expected stderr to start with '%s', found: %s", prefix, result.err);
    assert_non_null(strstr(result.err, "system"));

    listing = json_loads(result.out, 0, NULL);
    assert_non_null(listing);
    assert_int_equal(json_array_size(json_object_get(listing, "tensors")), 1);
    assert_int_equal(json_array_size(json_object_get(listing, "findings")), 1);
    finding = json_array_get(json_object_get(listing, "findings"), 0);
    assert_string_equal(json_string_value(json_object_get(finding, "rule")),
                        "security.unsafe-global");
    assert_string_equal(json_string_value(json_object_get(finding, "file")), path);
    assert_true(json_is_integer(json_object_get(finding, "offset")));
    json_decref(listing);
    result_free(&result);
}

/* A missing file is exit 2 with one line naming it, and nothing on stdout. */
static void missing_file(void **state)
{
    char path[512];
    const char *args[] = {path, NULL};
    struct result result;

    (void)state;
    snprintf(path, sizeof(path), "%s/no-such-checkpoint.bin", scratch);
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 2);
    assert_string_equal(result.out, "");
    assert_true(strncmp(result.err, "bitcpm-ls: ", 11) == 0);
    assert_non_null(strstr(result.err, path));
    assert_int_equal(count_lines(result.err), 1);
    result_free(&result);
}

/* A file that is no checkpoint is exit 2, also when another path listed fine. */
static void unreadable_among_good(void **state)
{
    char good[4096], bad[512];
    const char *args[] = {good, bad, NULL};
    struct result result;
    FILE *f;

    (void)state;
    fixture_path(good, sizeof(good), "torch-zip-tied.pt");
    snprintf(bad, sizeof(bad), "%s/notes.txt", scratch);
    f = fopen(bad, "w");
    assert_non_null(f);
    fputs("not a checkpoint\n", f);
    fclose(f);

    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 2);
    assert_non_null(strstr(result.out, "lm_head.weight"));
    assert_true(strncmp(result.err, "bitcpm-ls: ", 11) == 0);
    assert_non_null(strstr(result.err, bad));
    result_free(&result);
}

static void help_to_stdout(void **state)
{
    const char *args[] = {"--help", NULL};
    struct result result;

    (void)state;
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 0);
    assert_true(strncmp(result.out, "Usage: bitcpm-ls ", 17) == 0);
    assert_non_null(strstr(result.out, "--format"));
    assert_non_null(strstr(result.out, "--keep-prefix"));
    assert_string_equal(result.err, "");
    result_free(&result);
}

static void version_to_stdout(void **state)
{
    const char *args[] = {"--version", NULL};
    struct result result;

    (void)state;
    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 0);
    assert_string_equal(result.out, "bitcpm-ls " BCPM_VERSION "\n");
    result_free(&result);
}

/* Misuse gives one line naming the problem plus the help hint, exit 2. */
static void check_usage_error(const char *const *args, const char *message)
{
    struct result result;

    run_ls(&result, NULL, args);
    assert_int_equal(result.status, 2);
    assert_string_equal(result.out, "");
    assert_int_equal(count_lines(result.err), 2);
    if (!strstr(result.err, message))
        fail_msg("expected '%s' on stderr, found: %s", message, result.err);
    assert_non_null(strstr(result.err, "Try 'bitcpm-ls --help'"));
    result_free(&result);
}

static void usage_errors(void **state)
{
    const char *unknown[] = {"--bogus", "x", NULL};
    const char *format[] = {"--format", "yaml", "x", NULL};
    const char *missing_arg[] = {"--format", NULL};
    const char *no_path[] = {NULL};

    (void)state;
    check_usage_error(unknown, "bitcpm-ls: unknown option '--bogus'");
    check_usage_error(format, "bitcpm-ls: invalid --format 'yaml': expected table or json");
    check_usage_error(missing_arg, "bitcpm-ls: option '--format' requires an argument");
    check_usage_error(no_path, "bitcpm-ls: missing PATH");
}

/* Output that cannot be written (a full disk) is exit 2, never a silent success. */
static void stdout_write_error(void **state)
{
    char path[4096];
    const char *args[] = {path, NULL};
    struct result result;

    (void)state;
    if (access("/dev/full", W_OK) != 0)
        skip();
    fixture_path(path, sizeof(path), "torch-zip-tied.pt");
    run_ls(&result, "/dev/full", args);
    assert_int_equal(result.status, 2);
    assert_non_null(strstr(result.err, "bitcpm-ls: cannot write standard output"));
    result_free(&result);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(scratch) ? 0 : -1;
}

static int teardown(void **state)
{
    char path[512];

    (void)state;
    snprintf(path, sizeof(path), "%s/stdout", scratch);
    unlink(path);
    snprintf(path, sizeof(path), "%s/stderr", scratch);
    unlink(path);
    snprintf(path, sizeof(path), "%s/notes.txt", scratch);
    unlink(path);
    return rmdir(scratch);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_views),
        cmocka_unit_test(json_tied),
        cmocka_unit_test(json_deepspeed),
        cmocka_unit_test(json_sharded_safetensors),
        cmocka_unit_test(json_two_paths),
        cmocka_unit_test(keep_prefix_names),
        cmocka_unit_test(table_summary),
        cmocka_unit_test(security_finding_exit),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(unreadable_among_good),
        cmocka_unit_test(help_to_stdout),
        cmocka_unit_test(version_to_stdout),
        cmocka_unit_test(usage_errors),
        cmocka_unit_test(stdout_write_error),
    };

    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-bitcpm-ls\n", argv[0]);
        return 2;
    }
    ls_path = argv[1];
    return cmocka_run_group_tests_name("ls_cli", tests, setup, teardown);
}
