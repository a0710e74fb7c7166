/* Filling struct bcpm_audit_run_info: clock, host, user, quoted command line. */
#include "audit/audit.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t bcpm_audit_now_ns(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static int is_bare_word(const char *word)
{
    if (!word[0])
        return 0;
    for (const char *p = word; *p; p++) {
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                    "_@%+=:,./-",
                    *p))
            return 0;
    }
    return 1;
}

char *bcpm_audit_join_argv(int argc, char *const *argv)
{
    size_t size = 1;
    char *line, *p;

    /* Worst case per word: every byte a quote ('\'' is 4 bytes), 2 quotes, 1 space. */
    for (int i = 0; i < argc; i++)
        size += 4 * strlen(argv[i]) + 3;
    line = malloc(size);
    if (!line)
        return NULL;

    p = line;
    for (int i = 0; i < argc; i++) {
        if (i > 0)
            *p++ = ' ';
        if (is_bare_word(argv[i])) {
            size_t n = strlen(argv[i]);
            memcpy(p, argv[i], n);
            p += n;
            continue;
        }
        *p++ = '\'';
        for (const char *c = argv[i]; *c; c++) {
            if (*c == '\'') {
                memcpy(p, "'\\''", 4);
                p += 4;
            } else {
                *p++ = *c;
            }
        }
        *p++ = '\'';
    }
    *p = '\0';
    return line;
}

static char *host_name(void)
{
    char name[256];

    if (gethostname(name, sizeof(name)) != 0)
        return NULL;
    name[sizeof(name) - 1] = '\0';
    return strdup(name);
}

/* The login name of the real user, else $USER; NULL when neither is known. */
static char *user_name(void)
{
    struct passwd *pw = getpwuid(getuid());
    const char *env = getenv("USER");

    if (pw && pw->pw_name)
        return strdup(pw->pw_name);
    return env && env[0] ? strdup(env) : NULL;
}

int bcpm_audit_run_info_init(struct bcpm_audit_run_info *info, const char *command,
                             int argc, char *const *argv, struct bcpm_error *err)
{
    memset(info, 0, sizeof(*info));
    info->started_ns = bcpm_audit_now_ns();
    info->ended_ns = info->started_ns;
    info->tool_version = strdup(BCPM_VERSION);
    info->command = strdup(command);
    info->command_line = bcpm_audit_join_argv(argc, argv);
    info->host = host_name();
    info->user = user_name();

    if (!info->tool_version || !info->command || !info->command_line) {
        bcpm_audit_run_info_free(info);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL,
                              "out of memory for the audit run record");
    }
    return 0;
}

int bcpm_audit_run_info_alloc_digests(struct bcpm_audit_run_info *info, size_t nfiles,
                                      struct bcpm_error *err)
{
    free(info->digests);
    info->ndigests = 0;
    info->digests = calloc(nfiles ? nfiles : 1, sizeof(*info->digests));
    if (!info->digests)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL,
                              "out of memory for %zu file digests", nfiles);
    info->ndigests = nfiles;
    return 0;
}

void bcpm_audit_file_digest_free_parts(struct bcpm_audit_file_digest *digest)
{
    for (size_t i = 0; i < digest->nparts; i++)
        free(digest->parts[i].path);
    free(digest->parts);
    digest->parts = NULL;
    digest->nparts = 0;
}

void bcpm_audit_run_info_free(struct bcpm_audit_run_info *info)
{
    for (size_t i = 0; info->digests && i < info->ndigests; i++)
        bcpm_audit_file_digest_free_parts(&info->digests[i]);
    free(info->tool_version);
    free(info->command);
    free(info->command_line);
    free(info->host);
    free(info->user);
    free(info->digests);
    memset(info, 0, sizeof(*info));
}
