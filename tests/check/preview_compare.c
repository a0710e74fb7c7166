/*
 * preview_compare: compare the export preview in a bitcpm-check JSON report
 * with the numbers PyTorch computed for the same latent checkpoint
 * (tools/gen_preview_expected.py). Code counts must be equal; the smallest
 * and largest scale of each tensor may differ by at most one float32 ulp,
 * because the order in which a row mean is summed is not part of the formula.
 *
 * Usage: preview_compare REPORT.json EXPECTED.json
 * Exit status: 0 all equal, 1 a difference (printed), 2 unreadable input.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ulps between two positive finite floats. */
static uint32_t ulps_apart(float a, float b)
{
    uint32_t ua, ub;

    memcpy(&ua, &a, sizeof(ua));
    memcpy(&ub, &b, sizeof(ub));
    return ua > ub ? ua - ub : ub - ua;
}

static json_t *report_tensor(json_t *report, const char *name)
{
    size_t i;
    json_t *t;

    json_array_foreach(json_object_get(report, "tensors"), i, t) {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            return t;
    }
    return NULL;
}

static int compare_tensor(json_t *report, json_t *want)
{
    static const char *const codes[] = {"-1", "0", "+1"};
    const char *name = json_string_value(json_object_get(want, "name"));
    json_t *t = name ? report_tensor(report, name) : NULL;
    json_t *got = t ? json_object_get(t, "preview") : NULL;
    int bad = 0;

    if (!json_is_object(got)) {
        printf("%s: no preview in the report\n", name ? name : "?");
        return 1;
    }
    for (int c = 0; c < 3; c++) {
        json_t *got_codes = json_object_get(got, "codes");
        json_t *want_codes = json_object_get(want, "codes");
        json_int_t g = json_integer_value(json_object_get(got_codes, codes[c]));
        json_int_t w = json_integer_value(json_object_get(want_codes, codes[c]));
        if (g != w) {
            printf("%s: %" JSON_INTEGER_FORMAT " codes %s, PyTorch %" JSON_INTEGER_FORMAT "\n",
                   name, g, codes[c], w);
            bad = 1;
        }
    }
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "max" : "min";
        const char *want_key = k ? "scale_max" : "scale_min";
        float g = (float)json_number_value(json_object_get(json_object_get(got, "scale"), key));
        float w = (float)json_number_value(json_object_get(want, want_key));
        if (ulps_apart(g, w) > 1) {
            printf("%s: scale %s %.9g, PyTorch %.9g (%u ulps apart)\n", name, key, g, w,
                   ulps_apart(g, w));
            bad = 1;
        }
    }
    if (json_integer_value(json_object_get(got, "eps_floor_groups")) !=
        json_integer_value(json_object_get(want, "eps_floor_groups"))) {
        printf("%s: eps floor groups differ\n", name);
        bad = 1;
    }
    return bad;
}

int main(int argc, char **argv)
{
    json_error_t error;
    json_t *report, *expected, *want;
    size_t i, compared = 0, previewed = 0;
    int bad = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: preview_compare REPORT.json EXPECTED.json\n");
        return 2;
    }
    report = json_load_file(argv[1], 0, &error);
    expected = json_load_file(argv[2], 0, &error);
    if (!report || !expected) {
        fprintf(stderr, "preview_compare: %s: %s\n", error.source, error.text);
        return 2;
    }

    json_array_foreach(json_object_get(expected, "tensors"), i, want) {
        bad |= compare_tensor(report, want);
        compared++;
    }
    json_array_foreach(json_object_get(report, "tensors"), i, want) {
        previewed += json_is_object(json_object_get(want, "preview"));
    }
    if (compared == 0 || previewed != compared) {
        printf("%zu tensors previewed, PyTorch has %zu\n", previewed, compared);
        bad = 1;
    }
    json_decref(report);
    json_decref(expected);
    if (!bad)
        printf("%zu tensors match PyTorch\n", compared);
    return bad;
}
