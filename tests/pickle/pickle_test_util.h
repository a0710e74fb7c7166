/*
 * Helpers for the pickle machine's tests: reading fixtures and their
 * expectations, and the canonical text of a value tree that
 * tools/gen_pickle_fixtures.py writes for what Python loaded.
 */
#ifndef BCPM_TESTS_PICKLE_TEST_UTIL_H
#define BCPM_TESTS_PICKLE_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "format/pickle.h"

struct fixture {
    char *path;
    uint8_t *data;
    size_t size;
};

/* Read $BCPM_FIXTURES/relative into memory; fails the test when missing. */
void fixture_read(struct fixture *out, const char *relative);
void fixture_free(struct fixture *fixture);

/* Parse $BCPM_FIXTURES/relative as JSON; fails the test when missing. */
json_t *fixture_json(const char *relative);

/* Run bcpm_pickle_load over a fixture with base offset 0 and no zip entry. */
int load_fixture(struct bcpm_pickle **out, const struct fixture *fixture,
                 const struct bcpm_open_options *options, struct bcpm_findings *findings,
                 struct bcpm_error *err);

/*
 * The canonical text of value, in the format of canonical() in
 * tools/gen_pickle_fixtures.py. Returns a malloc'd string, or NULL for a
 * value kind that has no canonical form (global, object, persistent id).
 */
char *canonical_text(const struct bcpm_pickle_value *value);

#endif
