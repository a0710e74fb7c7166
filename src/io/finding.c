/* Growable list of findings; see finding.h. */
#include "io/finding.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct bcpm_finding *bcpm_findings_add(struct bcpm_findings *list, const char *rule,
                                       enum bcpm_severity severity, const char *file,
                                       const char *tensor, const char *fmt, ...)
{
    struct bcpm_finding *f;
    char text[2048];
    va_list ap;

    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 16;
        struct bcpm_finding *items = realloc(list->items, capacity * sizeof(*items));
        if (!items)
            return NULL;
        list->items = items;
        list->capacity = capacity;
    }

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);

    f = &list->items[list->count];
    memset(f, 0, sizeof(*f));
    f->rule = strdup(rule);
    f->severity = severity;
    f->file = dup_or_null(file);
    f->tensor = dup_or_null(tensor);
    f->message = strdup(text);
    f->row = -1;
    f->column = -1;
    f->value = NAN;
    if (!f->rule || !f->message || (file && !f->file) || (tensor && !f->tensor)) {
        free(f->rule);
        free(f->file);
        free(f->tensor);
        free(f->message);
        return NULL;
    }
    list->count++;
    return f;
}

int bcpm_findings_move(struct bcpm_findings *dst, struct bcpm_findings *src)
{
    if (src->count == 0)
        return 0;
    if (dst->count + src->count > dst->capacity) {
        size_t capacity = dst->count + src->count;
        struct bcpm_finding *items = realloc(dst->items, capacity * sizeof(*items));
        if (!items)
            return -1;
        dst->items = items;
        dst->capacity = capacity;
    }
    memcpy(dst->items + dst->count, src->items, src->count * sizeof(*src->items));
    dst->count += src->count;
    free(src->items);
    src->items = NULL;
    src->count = src->capacity = 0;
    return 0;
}

void bcpm_findings_clear(struct bcpm_findings *list)
{
    for (size_t i = 0; i < list->count; i++) {
        free(list->items[i].rule);
        free(list->items[i].file);
        free(list->items[i].tensor);
        free(list->items[i].message);
    }
    free(list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
}

static const char *const severity_names[] = {"info", "warning", "error", "critical"};

const char *bcpm_severity_name(enum bcpm_severity severity)
{
    if ((unsigned)severity > BCPM_SEVERITY_CRITICAL)
        return "?";
    return severity_names[severity];
}

int bcpm_severity_from_name(const char *name, enum bcpm_severity *out)
{
    for (int i = 0; i <= BCPM_SEVERITY_CRITICAL; i++) {
        if (strcmp(name, severity_names[i]) == 0) {
            *out = (enum bcpm_severity)i;
            return 0;
        }
    }
    return -1;
}
