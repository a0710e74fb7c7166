/*
 * The progress bar of bitcpm-check on stderr: "checking PATH [####....] 42%
 * 3.1 of 7.4 GiB". It is drawn with a carriage return and erased with spaces,
 * so it needs no terminal capabilities beyond a cursor that returns.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/check.h"

#define BAR_WIDTH 24

/* Paths longer than this are shown by their last characters. */
#define LABEL_WIDTH 36

static double monotonic_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void check_progress_init(struct check_progress *p, int enabled)
{
    memset(p, 0, sizeof(*p));
    p->enabled = enabled;
    p->started = monotonic_seconds();
}

void check_progress_begin(struct check_progress *p, const char *label)
{
    p->label = label;
}

void check_progress_update(void *ctx, uint64_t done_bytes, uint64_t total_bytes)
{
    struct check_progress *p = ctx;
    double now, fraction;
    const char *label;
    char bar[BAR_WIDTH + 1];
    size_t filled, len;
    int written;

    if (!p->enabled || total_bytes == 0)
        return;
    now = monotonic_seconds();
    if (now - p->started < CHECK_PROGRESS_DELAY || now - p->last_draw < 1.0 / CHECK_PROGRESS_RATE)
        return;
    p->last_draw = now;

    fraction = done_bytes >= total_bytes ? 1.0 : (double)done_bytes / (double)total_bytes;
    filled = (size_t)(fraction * BAR_WIDTH);
    memset(bar, '#', filled);
    memset(bar + filled, '.', BAR_WIDTH - filled);
    bar[BAR_WIDTH] = '\0';

    label = p->label ? p->label : "";
    len = strlen(label);
    if (len > LABEL_WIDTH)
        label += len - LABEL_WIDTH;

    written = fprintf(stderr, "\rchecking %s [%s] %3d%% %.1f of %.1f GiB", label, bar,
                      (int)(fraction * 100.0), (double)done_bytes / 1073741824.0,
                      (double)total_bytes / 1073741824.0);

    /* Pad over the rest of a longer previous line. */
    if (written > 0 && (size_t)written - 1 < p->drawn)
        fprintf(stderr, "%*s", (int)(p->drawn - ((size_t)written - 1)), "");
    if (written > 0 && (size_t)written - 1 > p->drawn)
        p->drawn = (size_t)written - 1;
    fflush(stderr);
}

void check_progress_clear(struct check_progress *p)
{
    if (!p->drawn)
        return;
    fprintf(stderr, "\r%*s\r", (int)p->drawn, "");
    fflush(stderr);
    p->drawn = 0;
}
