/* cli/progress.h: progress of long operations (merge, convert, compare).
 *
 * Three renderings of the same numbers:
 *   bar   one line on stderr, redrawn in place (at most 10 times a second):
 *           [########......]  57%  1.1 GiB / 2.0 GiB  312 MiB/s  ETA 0:03  copy
 *   json  one compact JSON object per line on stdout (at most one progress
 *         line a second, plus a final one), for appliances and scripts:
 *           {"event":"phase","op":"merge","phase":"copy","elapsed_s":0.004}
 *           {"event":"progress","op":"merge","phase":"copy","done":N,"total":N,
 *            "percent":57.1,"copied":N,"cloned":N,"zeroed":N,"rate":N,
 *            "eta_s":N,"elapsed_s":1.502}
 *           {"event":"finish","op":"merge","ok":true,"done":N,"total":N,
 *            "rate":N,"elapsed_s":9.913}
 *         rate is bytes per second over the last few seconds, eta_s whole
 *         seconds (null while the rate is unknown or total is 0).
 *   none  nothing.
 * "auto" is bar when stderr is a terminal, else none.
 *
 * Calling sequence
 *   struct cli_progress p;
 *   if (cli_progress_init(&p, mode, "merge", total) < 0) usage error;
 *   cli_progress_phase(&p, "copy");
 *   for (...) cli_progress_update(&p, done, copied, cloned, zeroed);
 *   cli_progress_finish(&p, ok);
 *
 * The state is caller-owned and fixed-size: updates never allocate, so the
 * copy loop may call cli_progress_update after every request; throttling
 * is inside.  Not thread-safe: call from one thread.  This file and
 * progress.c use libc only (tests include progress.c directly).
 *
 * I1: bar redraws are >= 100 ms apart and progress lines >= 1 s apart on
 *     the progress clock.  Exempt: the first update, and finish (one last
 *     rendering); json phase lines are not progress lines and are always
 *     written (phases are few).
 * I2: the rate is measured from the newest known point (a ring sample,
 *     taken at most every 250 ms, or the previous update) that is at least
 *     5 s old, so it follows the last seconds and drops to 0 in a stall;
 *     the ring spans >= 8 s, more than the window.  A run younger than
 *     5 s shows its average since the first update.
 */
#ifndef VXM_CLI_PROGRESS_H
#define VXM_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum cli_progress_mode {
	CLI_PROGRESS_NONE = 0,
	CLI_PROGRESS_BAR,
	CLI_PROGRESS_JSON,
};

/* Monotonic time in nanoseconds; ctx as given to cli_progress_set_clock. */
typedef uint64_t (*cli_progress_clock_fn)(void *ctx);

#define CLI_PROGRESS_SAMPLES 32

struct cli_progress {
	enum cli_progress_mode mode;
	const char *op;                /* not copied: a string that outlives p */
	char phase[32];
	uint64_t total, done, copied, cloned, zeroed;

	cli_progress_clock_fn clock;
	void *clock_ctx;
	uint64_t t0;                   /* init time */
	uint64_t last_draw;            /* last bar redraw or progress line */
	bool drawn_once;               /* something was drawn / emitted */
	bool bar_visible;              /* the bar line is on the terminal now */
	bool finished;
	bool updated;                  /* base_done is set */
	uint64_t base_done;            /* done at the first update */

	/* rate window (I2): ring of (time, done) samples, the last two updates */
	struct {
		uint64_t t, done;
	} s[CLI_PROGRESS_SAMPLES];
	unsigned s_head, s_n;
	uint64_t upd_t, upd_done, prev_t, prev_done;
	bool have_upd, have_prev;      /* upd_* / prev_* hold an update */

	FILE *bar_out;                 /* stderr */
	FILE *json_out;                /* stdout */
	unsigned width;                /* terminal columns for the bar */
	unsigned redraws, lines;       /* counters for tests and --debug */
	char line[512];
};

/* Sets up p for operation op (e.g. "merge") over total bytes (0: unknown).
 * mode: "auto", "bar", "json" or "none" (NULL: "auto").  Returns 0, or
 * -1 for an unknown mode (p is then set up as "none"). */
int cli_progress_init(struct cli_progress *p, const char *mode, const char *op,
		      uint64_t total_bytes);
/* Replaces the clock (tests) and restarts the elapsed time from its now. */
void cli_progress_set_clock(struct cli_progress *p, cli_progress_clock_fn fn, void *ctx);
/* Redirects the bar (default stderr) and the JSON lines (default stdout). */
void cli_progress_set_output(struct cli_progress *p, FILE *bar, FILE *json);
/* Changes the total (e.g. once a plan is known). */
void cli_progress_set_total(struct cli_progress *p, uint64_t total_bytes);
/* Reports bytes done so far and how they were moved; throttled (I1).
 * The first update's done_bytes is the starting point of the average rate
 * (call it once with the starting count, 0 or a resumed total). */
void cli_progress_update(struct cli_progress *p, uint64_t done_bytes, uint64_t copied,
			 uint64_t cloned, uint64_t zeroed);
/* Names the current phase ("preflight", "copy", ...); json: a phase line. */
void cli_progress_phase(struct cli_progress *p, const char *phase);
/* Erases the bar so that a message can be printed; the next update
 * redraws it. */
void cli_progress_clear(struct cli_progress *p);
/* Final rendering, unthrottled: the bar redrawn with the average rate and
 * ended with a newline ("failed" instead of the phase when !ok); json a
 * final progress line and a finish line.  Later calls do nothing. */
void cli_progress_finish(struct cli_progress *p, bool ok);

/* Mode names for --help. */
#define CLI_PROGRESS_MODES "auto|bar|json|none"

#endif
