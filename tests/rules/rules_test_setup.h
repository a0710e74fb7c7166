/* Setup shared by the rule-engine tests: the shipped rule sets and one JSON expectation file. */
#ifndef BCPM_TESTS_RULES_TEST_SETUP_H
#define BCPM_TESTS_RULES_TEST_SETUP_H

#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "rules/engine.h"

/*
 * Load the rule sets of the source tree's rules/ folder into *rules and
 * $BCPM_FIXTURES/FOLDER/JSON_NAME into *json; dir receives the fixture folder.
 * Returns 0, or -1 when the environment, the rules or the JSON file is missing.
 */
static inline int rules_test_setup(const char *folder, const char *json_name, char *dir,
                                   size_t dir_size, struct bcpm_ruleset **rules, json_t **json)
{
    const char *source = getenv("BCPM_SOURCE"), *fixtures = getenv("BCPM_FIXTURES");
    struct bcpm_error err;
    char path[1400], rules_dir[1100];

    if (!source || !fixtures)
        return -1;
    snprintf(rules_dir, sizeof(rules_dir), "%s/rules", source);
    setenv("BITCPM_RULES_DIR", rules_dir, 1);
    bcpm_error_clear(&err);
    if (bcpm_ruleset_load_default(rules, &err) != 0)
        return -1;
    snprintf(dir, dir_size, "%s/%s", fixtures, folder);
    snprintf(path, sizeof(path), "%s/%s", dir, json_name);
    *json = json_load_file(path, 0, NULL);
    return *json ? 0 : -1;
}

#endif
