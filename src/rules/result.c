/* Names of stages and roles, and releasing a check result; see result.h. */
#include "rules/result.h"

#include <stdlib.h>
#include <string.h>

#include "rules/engine.h"

static const char *const stage_names[] = { "unknown", "latent", "finetuned", "pseudo" };
static const char *const role_names[] = { "other", "ternary", "embedding", "norm", "head" };

const char *bcpm_stage_name(enum bcpm_stage stage)
{
    if ((unsigned)stage >= sizeof(stage_names) / sizeof(stage_names[0]))
        return "unknown";
    return stage_names[stage];
}

int bcpm_stage_from_name(const char *name, enum bcpm_stage *out)
{
    for (size_t i = 0; i < sizeof(stage_names) / sizeof(stage_names[0]); i++) {
        if (strcmp(name, stage_names[i]) == 0) {
            *out = (enum bcpm_stage)i;
            return 0;
        }
    }
    return -1;
}

const char *bcpm_role_name(enum bcpm_tensor_role role)
{
    if ((unsigned)role >= sizeof(role_names) / sizeof(role_names[0]))
        return "other";
    return role_names[role];
}

void bcpm_check_result_free(struct bcpm_check_result *result)
{
    if (!result)
        return;
    for (size_t i = 0; i < result->nfiles; i++) {
        free(result->files[i].path);
        free(result->files[i].format);
        free(result->files[i].family);
        free(result->files[i].config_path);
    }
    free(result->files);
    for (size_t i = 0; i < result->ntensors; i++) {
        free(result->tensors[i].name);
        free(result->tensors[i].file);
    }
    free(result->tensors);
    bcpm_findings_clear(&result->findings);
    free(result->rules_digest);
    memset(result, 0, sizeof(*result));
}

void bcpm_check_result_finish(struct bcpm_check_result *result)
{
    result->failed = 0;
    for (size_t i = 0; i < result->findings.count; i++) {
        if (result->findings.items[i].severity >= result->fail_on)
            result->failed = 1;
    }
}
