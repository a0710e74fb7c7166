/*
 * Rule sets: finding and reading rule files, merging them (a later check with
 * the same id or layout with the same family replaces the earlier one), the
 * SHA-256 digest that the audit log records, and lookups for the checks.
 */
#include "rules/ruleset.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rules/rules_paths.h"

/* A rule file is hand-written text; anything bigger is a mistake. */
#define RULE_FILE_MAX_BYTES (4u << 20)

/* Rule files in one folder; the shipped set has three. */
#define RULE_DIR_MAX_FILES 1024

static const char *const role_names[] = { "other", "ternary", "embedding", "norm", "head" };

int rules_role_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
        if (strcmp(name, role_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

int bcpm_ruleset_new(struct bcpm_ruleset **out, struct bcpm_error *err)
{
    struct bcpm_ruleset *rs = calloc(1, sizeof(*rs));
    EVP_MD_CTX *sha = EVP_MD_CTX_new();

    *out = NULL;
    if (!rs || !sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        free(rs);
        EVP_MD_CTX_free(sha);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL, "cannot start a SHA-256 digest");
    }
    rs->sha = sha;
    *out = rs;
    return 0;
}

void bcpm_ruleset_free(struct bcpm_ruleset *rs)
{
    struct rule_file all;

    if (!rs)
        return;
    all.checks = rs->checks;
    all.nchecks = rs->nchecks;
    all.layouts = rs->layouts;
    all.nlayouts = rs->nlayouts;
    all.globals = rs->globals;
    all.nglobals = rs->nglobals;
    rule_file_clear(&all);
    for (size_t i = 0; i < rs->nfiles; i++)
        free(rs->files[i]);
    free(rs->files);
    EVP_MD_CTX_free(rs->sha);
    free(rs);
}

static int read_file(const char *path, unsigned char **out, size_t *size, struct bcpm_error *err)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    size_t n;

    if (!f)
        return bcpm_error_set(err, errno == ENOENT ? BCPM_ERR_NOT_FOUND : BCPM_ERR_IO, path,
                              NULL, "cannot open rule file: %s", strerror(errno));
    buf = malloc(RULE_FILE_MAX_BYTES + 1);
    if (!buf) {
        fclose(f);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }
    n = fread(buf, 1, RULE_FILE_MAX_BYTES + 1, f);
    if (ferror(f)) {
        fclose(f);
        free(buf);
        return bcpm_error_set(err, BCPM_ERR_IO, path, NULL, "cannot read rule file");
    }
    fclose(f);
    if (n > RULE_FILE_MAX_BYTES) {
        free(buf);
        return bcpm_error_set(err, BCPM_ERR_LIMIT, path, NULL,
                              "rule file is larger than %u bytes", RULE_FILE_MAX_BYTES);
    }
    *out = buf;
    *size = n;
    return 0;
}

static int append(void **items, size_t count, size_t size)
{
    void *grown = realloc(*items, (count + 1) * size);

    if (!grown)
        return -1;
    *items = grown;
    return 0;
}

/* Reserve room for everything rf adds, so that merging cannot fail half-way. */
static int reserve_all(struct bcpm_ruleset *rs, const struct rule_file *rf)
{
    void *p;

    p = realloc(rs->checks, (rs->nchecks + rf->nchecks + 1) * sizeof(*rs->checks));
    if (!p)
        return -1;
    rs->checks = p;
    p = realloc(rs->layouts, (rs->nlayouts + rf->nlayouts + 1) * sizeof(*rs->layouts));
    if (!p)
        return -1;
    rs->layouts = p;
    p = realloc(rs->globals, (rs->nglobals + rf->nglobals + 1) * sizeof(*rs->globals));
    if (!p)
        return -1;
    rs->globals = p;
    return append((void **)&rs->files, rs->nfiles, sizeof(*rs->files));
}

static void merge(struct bcpm_ruleset *rs, struct rule_file *rf)
{
    for (size_t i = 0; i < rf->nchecks; i++) {
        size_t j = 0;

        while (j < rs->nchecks && strcmp(rs->checks[j].id, rf->checks[i].id) != 0)
            j++;
        if (j < rs->nchecks)
            rule_check_clear(&rs->checks[j]);
        else
            rs->nchecks++;
        rs->checks[j] = rf->checks[i];
    }
    for (size_t i = 0; i < rf->nlayouts; i++) {
        size_t j = 0;

        while (j < rs->nlayouts && strcmp(rs->layouts[j].family, rf->layouts[i].family) != 0)
            j++;
        if (j < rs->nlayouts)
            layout_clear(&rs->layouts[j]);
        else
            rs->nlayouts++;
        rs->layouts[j] = rf->layouts[i];
    }
    for (size_t i = 0; i < rf->nglobals; i++)
        rs->globals[rs->nglobals++] = rf->globals[i];

    /* The entries now belong to rs. */
    free(rf->checks);
    free(rf->layouts);
    free(rf->globals);
    memset(rf, 0, sizeof(*rf));
}

static void update_digest(struct bcpm_ruleset *rs, const unsigned char *text, size_t size)
{
    unsigned char hash[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX *copy;

    EVP_DigestUpdate(rs->sha, text, size);
    copy = EVP_MD_CTX_new();
    if (copy && EVP_MD_CTX_copy_ex(copy, rs->sha) == 1 &&
        EVP_DigestFinal_ex(copy, hash, &len) == 1) {
        for (unsigned i = 0; i < len && i < 32; i++)
            snprintf(rs->digest + 2 * i, 3, "%02x", hash[i]);
    }
    EVP_MD_CTX_free(copy);
}

int bcpm_ruleset_add_file(struct bcpm_ruleset *rs, const char *path, struct bcpm_error *err)
{
    struct rule_file rf;
    unsigned char *text = NULL;
    char *file_copy;
    size_t size = 0;
    int rc;

    rc = read_file(path, &text, &size, err);
    if (rc != 0)
        return rc;
    file_copy = strdup(path);
    if (!file_copy) {
        free(text);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }

    /* Marks inside the entries point at file_copy, which rs keeps. */
    rc = rules_parse(&rf, file_copy, text, size, err);
    if (rc != 0) {
        free(text);
        free(file_copy);
        return rc;
    }
    if (reserve_all(rs, &rf) != 0) {
        rule_file_clear(&rf);
        free(text);
        free(file_copy);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, path, NULL, "out of memory");
    }
    merge(rs, &rf);
    rs->files[rs->nfiles++] = file_copy;
    update_digest(rs, text, size);
    free(text);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *path)
{
    struct stat st;

    return path && *path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Load every *.yaml of dir in name order, so that the digest does not depend on readdir. */
static int load_dir(struct bcpm_ruleset *rs, const char *dir, struct bcpm_error *err)
{
    char *names[RULE_DIR_MAX_FILES];
    size_t count = 0;
    struct dirent *entry;
    DIR *d = opendir(dir);
    int rc = 0;

    if (!d)
        return bcpm_error_set(err, BCPM_ERR_IO, dir, NULL, "cannot open rules folder: %s",
                              strerror(errno));
    while ((entry = readdir(d)) != NULL && rc == 0) {
        if (fnmatch("*.yaml", entry->d_name, 0) != 0 || entry->d_name[0] == '.')
            continue;
        if (count == RULE_DIR_MAX_FILES)
            rc = bcpm_error_set(err, BCPM_ERR_LIMIT, dir, NULL,
                                "more than %d rule files in the folder", RULE_DIR_MAX_FILES);
        else if (!(names[count++] = strdup(entry->d_name)))
            rc = bcpm_error_set(err, BCPM_ERR_NOMEM, dir, NULL, "out of memory");
    }
    closedir(d);

    if (rc == 0 && count == 0)
        rc = bcpm_error_set(err, BCPM_ERR_NOT_FOUND, dir, NULL,
                            "the rules folder holds no *.yaml files");
    qsort(names, count, sizeof(names[0]), compare_names);
    for (size_t i = 0; i < count; i++) {
        if (rc == 0 && names[i]) {
            size_t len = strlen(dir) + strlen(names[i]) + 2;
            char *path = malloc(len);

            if (!path) {
                rc = bcpm_error_set(err, BCPM_ERR_NOMEM, dir, NULL, "out of memory");
            } else {
                snprintf(path, len, "%s/%s", dir, names[i]);
                rc = bcpm_ruleset_add_file(rs, path, err);
                free(path);
            }
        }
        free(names[i]);
    }
    return rc;
}

int bcpm_ruleset_load_default(struct bcpm_ruleset **out, struct bcpm_error *err)
{
    const char *env = getenv("BITCPM_RULES_DIR");
    const char *candidates[3];
    struct bcpm_ruleset *rs;
    int rc;

    *out = NULL;

    /* An explicit folder that does not exist is a mistake worth reporting, not skipping. */
    if (env && *env && !is_dir(env))
        return bcpm_error_set(err, BCPM_ERR_NOT_FOUND, env, NULL,
                              "BITCPM_RULES_DIR names no folder");
    candidates[0] = env;
    candidates[1] = BCPM_RULES_INSTALL_DIR;
    candidates[2] = BCPM_RULES_SOURCE_DIR;

    for (size_t i = 0; i < 3; i++) {
        if (!is_dir(candidates[i]))
            continue;
        rc = bcpm_ruleset_new(&rs, err);
        if (rc == 0)
            rc = load_dir(rs, candidates[i], err);
        if (rc != 0) {
            bcpm_ruleset_free(rs);
            return rc;
        }
        *out = rs;
        return 0;
    }
    return bcpm_error_set(err, BCPM_ERR_NOT_FOUND, NULL, NULL,
                          "no rules folder found: set BITCPM_RULES_DIR, or install the rules "
                          "to %s", BCPM_RULES_INSTALL_DIR);
}

const char *bcpm_ruleset_digest(const struct bcpm_ruleset *rs)
{
    return rs->digest;
}

size_t bcpm_ruleset_file_count(const struct bcpm_ruleset *rs)
{
    return rs->nfiles;
}

const char *bcpm_ruleset_file_path(const struct bcpm_ruleset *rs, size_t i)
{
    return i < rs->nfiles ? rs->files[i] : NULL;
}

void bcpm_ruleset_allowed_globals(const struct bcpm_ruleset *rs,
                                  const struct bcpm_global_rule **out, size_t *count)
{
    *out = rs->globals;
    *count = rs->nglobals;
}

size_t bcpm_ruleset_check_count(const struct bcpm_ruleset *rs)
{
    return rs->nchecks;
}

void bcpm_ruleset_check_info(const struct bcpm_ruleset *rs, size_t i, struct bcpm_rule_info *out)
{
    const struct rule_check *c = &rs->checks[i];

    out->id = c->id;
    out->kind = c->kind;
    out->severity = c->severity;
    out->enabled = c->enabled;
    out->description = c->description;
    out->file = c->file;
    out->line = c->line;
}

size_t bcpm_ruleset_layout_count(const struct bcpm_ruleset *rs)
{
    return rs->nlayouts;
}

const char *bcpm_ruleset_layout_family(const struct bcpm_ruleset *rs, size_t i)
{
    return i < rs->nlayouts ? rs->layouts[i].family : NULL;
}

int bcpm_ruleset_param_number(const struct bcpm_ruleset *rs, const char *id, const char *key,
                              double *out)
{
    const struct rule_param *p = rules_param(rules_find_id(rs, id), key);

    if (!p || p->type != PARAM_NUMBER)
        return BCPM_ERR_NOT_FOUND;
    *out = p->number;
    return 0;
}

static void free_finding(struct bcpm_finding *f)
{
    free(f->rule);
    free(f->file);
    free(f->tensor);
    free(f->message);
}

void bcpm_ruleset_apply(const struct bcpm_ruleset *rs, struct bcpm_findings *findings,
                        size_t first)
{
    size_t kept = first;

    for (size_t i = first; i < findings->count; i++) {
        struct bcpm_finding *f = &findings->items[i];
        const struct rule_check *c = rules_find_id(rs, f->rule);

        if (c && !c->enabled) {
            free_finding(f);
            continue;
        }
        if (c)
            f->severity = c->severity;
        findings->items[kept++] = *f;
    }
    findings->count = kept;
}

/* ---- lookups ---- */

static int selects(const struct rule_check *c, const char *name, enum bcpm_tensor_role role)
{
    int named = c->nnames == 0;

    if (c->roles && !(c->roles & (1u << role)))
        return 0;
    for (size_t i = 0; i < c->nnames && !named; i++)
        named = name && fnmatch(c->names[i], name, 0) == 0;
    return named;
}

const struct rule_check *rules_select(const struct bcpm_ruleset *rs, const char *kind,
                                      const char *name, enum bcpm_tensor_role role)
{
    for (size_t i = 0; i < rs->nchecks; i++) {
        const struct rule_check *c = &rs->checks[i];

        if (c->enabled && strcmp(c->kind, kind) == 0 && selects(c, name, role))
            return c;
    }
    return NULL;
}

const struct rule_check *rules_find_kind(const struct bcpm_ruleset *rs, const char *kind)
{
    for (size_t i = 0; i < rs->nchecks; i++) {
        if (rs->checks[i].enabled && strcmp(rs->checks[i].kind, kind) == 0)
            return &rs->checks[i];
    }
    return NULL;
}

const struct rule_check *rules_find_id(const struct bcpm_ruleset *rs, const char *id)
{
    for (size_t i = 0; i < rs->nchecks; i++) {
        if (strcmp(rs->checks[i].id, id) == 0)
            return &rs->checks[i];
    }
    return NULL;
}

const struct rule_param *rules_param(const struct rule_check *check, const char *key)
{
    for (size_t i = 0; check && i < check->nparams; i++) {
        if (strcmp(check->params[i].key, key) == 0)
            return &check->params[i];
    }
    return NULL;
}

double rules_param_number(const struct rule_check *check, const char *key, double fallback)
{
    const struct rule_param *p = rules_param(check, key);

    return p && p->type == PARAM_NUMBER ? p->number : fallback;
}

enum bcpm_severity rules_param_severity(const struct rule_check *check, const char *key,
                                        enum bcpm_severity fallback)
{
    const struct rule_param *p = rules_param(check, key);
    enum bcpm_severity severity;

    if (p && p->type == PARAM_STRING && bcpm_severity_from_name(p->string, &severity) == 0)
        return severity;
    return fallback;
}
