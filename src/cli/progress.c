#include "progress.h"

#include <stdio.h>
#include <unistd.h>

#include "cli.h"

static void progress_start(otl_progress *p, const char *what, const char *unit, size_t total, bool quiet) {
    *p = (otl_progress){.what = what, .unit = unit, .total = total, .quiet = quiet,
                        .tty = isatty(STDERR_FILENO), .start = otl_now()};
    p->last = p->start;
}

static void format_eta(double s, char *buf, size_t n) {
    if (s < 0 || s > 359999) snprintf(buf, n, "--:--");
    else if (s >= 3600) snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s / 60 % 60);
    else snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
}

static void draw(otl_progress *p, double now) {
    p->shown = true;
    double elapsed = now - p->start, rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    double frac = p->total ? (double)p->done / (double)p->total : 1;
    char eta[16];
    format_eta(rate > 0 ? (double)(p->total - p->done) / rate : -1, eta, sizeof eta);
    if (p->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%% %zu/%zu  %.1f %s/s  ETA %s ", p->what, bar, (int)(frac * 100),
                p->done, p->total, rate, p->unit, eta);
    } else {
        fprintf(stderr, "%s: %zu/%zu %s (%d%%), %.1f %s/s, ETA %s\n", p->what, p->done, p->total,
                p->unit, (int)(frac * 100), rate, p->unit, eta);
    }
    fflush(stderr);
}

static void progress_update(otl_progress *p, size_t done) {
    p->done = done;
    if (p->quiet) return;
    double now = otl_now();
    if (now - p->last < (p->tty ? 0.2 : 10.0)) return;
    p->last = now;
    draw(p, now);
}

static void progress_end(otl_progress *p) {
    if (p->quiet || (!p->tty && !p->shown)) return; /* short work needs no closing line */
    draw(p, otl_now());
    if (p->tty) fputc('\n', stderr);
}

static void on_progress(void *ctx, const char *what, const char *unit, size_t done, size_t total) {
    cli_reporter *r = ctx;
    if (!done) progress_start(&r->bar, what, unit, total, r->quiet);
    else progress_update(&r->bar, done);
    if (done == total) progress_end(&r->bar);
}

static void on_note(void *ctx, const char *text) {
    const cli_reporter *r = ctx;
    if (!r->quiet) fprintf(stderr, "%s\n", text);
}

static void on_warning(void *ctx, const char *text) { cli_message("warning", text); }

static void on_epoch(void *ctx, const otl_epoch_figures *e) {
    const cli_reporter *r = ctx;
    if (r->quiet) return;
    printf("epoch %d/%d: train loss %.4f acc %.4f", e->epoch, e->epochs, e->train_loss, e->train_acc);
    if (e->eval_split) printf(", %s loss %.4f acc %.4f", e->eval_split, e->eval_loss, e->eval_acc);
    printf("\n");
    fflush(stdout);
}

otl_events cli_reporter_events(cli_reporter *r, bool quiet) {
    *r = (cli_reporter){.quiet = quiet};
    return (otl_events){.ctx = r, .progress = on_progress, .note = on_note, .warning = on_warning, .epoch = on_epoch};
}
