/*
 * json_probe: read a JSON file and print the values at the given paths, one
 * per line, so that shell tests can assert on bitcpm-check's JSON and SARIF
 * output without a JSON tool beyond jansson.
 *
 * A path is a dot-separated list of object keys and array indices
 * ("findings.0.rule"). A final "#" prints the length of an array or object
 * ("findings.#"), and a final "keys" prints the keys of an object,
 * space-separated. Strings
 * print raw, other values as compact JSON.
 *
 * Exit status: 0 all paths found, 1 the file is not valid JSON, 3 a path is
 * missing (printed as "<missing>").
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *step(json_t *value, const char *key)
{
    char *end;
    long index;

    if (json_is_object(value))
        return json_object_get(value, key);
    if (!json_is_array(value))
        return NULL;
    index = strtol(key, &end, 10);
    if (*key == '\0' || *end != '\0' || index < 0)
        return NULL;
    return json_array_get(value, (size_t)index);
}

static void print_keys(json_t *value)
{
    const char *key;
    json_t *member;
    int first = 1;

    json_object_foreach(value, key, member) {
        (void)member;
        printf("%s%s", first ? "" : " ", key);
        first = 0;
    }
    putchar('\n');
}

/* Print the value at path; returns 0, or 3 when it is missing. */
static int probe(json_t *root, const char *path)
{
    char *copy = strdup(path);
    char *saveptr = NULL;
    json_t *value = root;
    char *text;

    for (char *part = strtok_r(copy, ".", &saveptr); part && value;
         part = strtok_r(NULL, ".", &saveptr)) {
        if (strcmp(part, "#") == 0) {
            printf("%zu\n", json_is_array(value) ? json_array_size(value) : json_object_size(value));
            free(copy);
            return 0;
        }
        if (strcmp(part, "keys") == 0 && json_is_object(value)) {
            print_keys(value);
            free(copy);
            return 0;
        }
        value = step(value, part);
    }
    free(copy);

    if (!value) {
        puts("<missing>");
        return 3;
    }
    if (json_is_string(value)) {
        puts(json_string_value(value));
        return 0;
    }
    text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    puts(text ? text : "<unprintable>");
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    json_error_t error;
    json_t *root;
    int rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: json_probe FILE [PATH]...\n");
        return 2;
    }
    root = json_load_file(argv[1], JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        fprintf(stderr, "json_probe: %s:%d:%d: %s\n", argv[1], error.line, error.column,
                error.text);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        if (probe(root, argv[i]) != 0)
            rc = 3;
    }
    json_decref(root);
    return rc;
}
