/* cli/progress.c: see progress.h.  libc only: no vhdxmerge headers, so
 * tests/cli/test_progress.c can include this file as it is. */
#define _GNU_SOURCE
#include "progress.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S 1000000000ull
#define PROG_BAR_INTERVAL_NS (NS_PER_S / 10) /* I1: <= 10 redraws a second */
#define PROG_JSON_INTERVAL_NS NS_PER_S       /* I1: <= 1 progress line a second */
#define PROG_SAMPLE_NS (NS_PER_S / 4)        /* I2: sample spacing */
#define PROG_WINDOW_NS (5 * NS_PER_S)        /* I2: rate window */

_Static_assert(PROG_WINDOW_NS / PROG_SAMPLE_NS + 2 <= CLI_PROGRESS_SAMPLES,
	       "the sample ring must hold a whole rate window");

static uint64_t mono_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static unsigned term_width(FILE *f)
{
	struct winsize ws;
	const char *c = getenv("COLUMNS");
	long w = 0;

	if (ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col)
		w = ws.ws_col;
	else if (c)
		w = strtol(c, NULL, 10);
	if (w <= 0)
		w = 80;
	if (w < 20)
		w = 20;
	if (w > 300)
		w = 300;
	return (unsigned)w;
}

int cli_progress_init(struct cli_progress *p, const char *mode, const char *op,
		      uint64_t total_bytes)
{
	int ret = 0;

	memset(p, 0, sizeof(*p));
	p->op = op ? op : "";
	p->total = total_bytes;
	p->bar_out = stderr;
	p->json_out = stdout;
	p->clock = mono_ns;
	p->t0 = mono_ns(NULL);
	if (!mode || !strcmp(mode, "auto"))
		p->mode = isatty(fileno(stderr)) ? CLI_PROGRESS_BAR : CLI_PROGRESS_NONE;
	else if (!strcmp(mode, "bar"))
		p->mode = CLI_PROGRESS_BAR;
	else if (!strcmp(mode, "json"))
		p->mode = CLI_PROGRESS_JSON;
	else if (!strcmp(mode, "none"))
		p->mode = CLI_PROGRESS_NONE;
	else
		ret = -1;
	if (p->mode == CLI_PROGRESS_BAR)
		p->width = term_width(p->bar_out);
	return ret;
}

void cli_progress_set_clock(struct cli_progress *p, cli_progress_clock_fn fn, void *ctx)
{
	p->clock = fn ? fn : mono_ns;
	p->clock_ctx = fn ? ctx : NULL;
	p->t0 = p->clock(p->clock_ctx);
	p->s_n = p->s_head = 0;
}

void cli_progress_set_output(struct cli_progress *p, FILE *bar, FILE *json)
{
	if (bar) {
		p->bar_out = bar;
		if (p->mode == CLI_PROGRESS_BAR)
			p->width = term_width(bar);
	}
	if (json)
		p->json_out = json;
}

void cli_progress_set_total(struct cli_progress *p, uint64_t total_bytes)
{
	p->total = total_bytes;
}

/* ---- rate (I2) ---------------------------------------------------------------- */

/* Records the update at now: the previous update is kept as `prev`, and
 * the ring takes a sample when PROG_SAMPLE_NS have passed since its newest
 * (so its 32 samples span at least 8 s of updates, more than the window). */
static void sample(struct cli_progress *p, uint64_t now)
{
	if (p->have_upd) {
		p->prev_t = p->upd_t;
		p->prev_done = p->upd_done;
		p->have_prev = true;
	}
	p->upd_t = now;
	p->upd_done = p->done;
	p->have_upd = true;
	if (p->s_n) {
		unsigned newest = (p->s_head + CLI_PROGRESS_SAMPLES - 1) % CLI_PROGRESS_SAMPLES;
		if (now - p->s[newest].t < PROG_SAMPLE_NS)
			return;
	}
	p->s[p->s_head].t = now;
	p->s[p->s_head].done = p->done;
	p->s_head = (p->s_head + 1) % CLI_PROGRESS_SAMPLES;
	if (p->s_n < CLI_PROGRESS_SAMPLES)
		p->s_n++;
}

/* Bytes per second at now over the window (I2): from the newest known
 * point (ring sample or previous update) at least PROG_WINDOW_NS old, so
 * a stall longer than the window reads 0; a run younger than the window
 * has no such point and gets the average since its first update (a
 * resumed run counts from there, not from zero).  0 when unknown. */
static double rate(const struct cli_progress *p, uint64_t now)
{
	unsigned oldest = (p->s_head + CLI_PROGRESS_SAMPLES - p->s_n) % CLI_PROGRESS_SAMPLES;
	uint64_t t = 0, d = 0;
	bool have = false;

	if (!p->s_n)
		return 0;
	for (unsigned k = 0; k < p->s_n; k++) {
		unsigned i = (oldest + k) % CLI_PROGRESS_SAMPLES;
		if (now - p->s[i].t >= PROG_WINDOW_NS && (!have || p->s[i].t > t)) {
			t = p->s[i].t;
			d = p->s[i].done;
			have = true;
		}
	}
	if (p->have_prev && now - p->prev_t >= PROG_WINDOW_NS && (!have || p->prev_t > t)) {
		t = p->prev_t;
		d = p->prev_done;
		have = true;
	}
	if (!have) {
		t = p->s[oldest].t;
		d = p->s[oldest].done;
	}
	if (now <= t || p->done < d)
		return 0;
	return (double)(p->done - d) * (double)NS_PER_S / (double)(now - t);
}

static double avg_rate(const struct cli_progress *p, uint64_t now)
{
	if (now <= p->t0 || p->done < p->base_done)
		return 0;
	return (double)(p->done - p->base_done) * (double)NS_PER_S / (double)(now - p->t0);
}

/* Seconds left, or -1 when unknown. */
static int64_t eta(const struct cli_progress *p, double r)
{
	if (!p->total)
		return -1;
	if (p->done >= p->total)
		return 0;
	if (r <= 0)
		return -1;
	double s = (double)(p->total - p->done) / r;
	if (s > 1e9)
		return -1;
	return (int64_t)s + ((double)(int64_t)s < s);
}

/* ---- text --------------------------------------------------------------------- */

/* Appends to p->line at *pos (always NUL-terminated, never overflowing). */
static void put(struct cli_progress *p, size_t *pos, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void put(struct cli_progress *p, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	size_t cap = sizeof(p->line);
	int n;

	if (*pos >= cap - 1)
		return;
	va_start(ap, fmt);
	n = vsnprintf(p->line + *pos, cap - *pos, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*pos += (size_t)n < cap - *pos ? (size_t)n : cap - 1 - *pos;
}

static void put_json_str(struct cli_progress *p, size_t *pos, const char *s)
{
	put(p, pos, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			put(p, pos, "\\%c", c);
		else if (c < 0x20)
			put(p, pos, "\\u%04x", c);
		else
			put(p, pos, "%c", c);
	}
	put(p, pos, "\"");
}

/* "1.5 GiB" into buf. */
static const char *human(uint64_t v, char *buf, size_t len)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 6) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%llu B", (unsigned long long)v);
	else
		snprintf(buf, len, "%.1f %s", d, unit[u]);
	return buf;
}

static const char *hms(int64_t s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "--:--");
	else if (s >= 3600)
		snprintf(buf, len, "%lld:%02lld:%02lld", (long long)(s / 3600),
			 (long long)(s / 60 % 60), (long long)(s % 60));
	else
		snprintf(buf, len, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
	return buf;
}

static void draw_bar(struct cli_progress *p, double r, const char *tail)
{
	char a[24], b[24], c[24], e[24], text[200];
	size_t pos = 0;
	int tn;

	if (p->total) {
		double pct = p->done >= p->total ? 100.0 : 100.0 * (double)p->done / (double)p->total;
		tn = snprintf(text, sizeof(text), "%5.1f%%  %s / %s  %s/s  ETA %s  %s", pct,
			      human(p->done, a, sizeof(a)), human(p->total, b, sizeof(b)),
			      human((uint64_t)r, c, sizeof(c)), hms(eta(p, r), e, sizeof(e)), tail);
	} else {
		tn = snprintf(text, sizeof(text), "%s  %s/s  %s", human(p->done, a, sizeof(a)),
			      human((uint64_t)r, c, sizeof(c)), tail);
	}
	if (tn < 0)
		tn = 0;
	if ((size_t)tn >= sizeof(text))
		tn = sizeof(text) - 1;

	put(p, &pos, "\r");
	/* The bar takes what the terminal line has left, 10..40 cells. */
	int cells = (int)p->width - 1 - tn - 3;
	if (cells > 40)
		cells = 40;
	if (p->total && cells >= 10) {
		int fill = p->done >= p->total ? cells
						: (int)((double)cells * (double)p->done / (double)p->total);
		put(p, &pos, "[");
		for (int i = 0; i < cells; i++)
			put(p, &pos, "%c", i < fill ? '#' : '.');
		put(p, &pos, "] ");
	}
	/* Never wrap: a wrapped line cannot be redrawn with \r. */
	size_t used = pos - 1; /* visible cells so far, after the \r */
	size_t room = used < p->width - 1 ? p->width - 1 - used : 0;
	put(p, &pos, "%.*s\033[K", (int)((size_t)tn < room ? (size_t)tn : room), text);
	fputs(p->line, p->bar_out);
	fflush(p->bar_out);
	p->bar_visible = true;
	p->redraws++;
}

static void json_progress(struct cli_progress *p, uint64_t now, double r)
{
	size_t pos = 0;
	int64_t left = eta(p, r);

	put(p, &pos, "{\"event\":\"progress\",\"op\":");
	put_json_str(p, &pos, p->op);
	put(p, &pos, ",\"phase\":");
	put_json_str(p, &pos, p->phase);
	put(p, &pos, ",\"done\":%llu,\"total\":%llu", (unsigned long long)p->done,
	    (unsigned long long)p->total);
	if (p->total)
		put(p, &pos, ",\"percent\":%.1f",
		    p->done >= p->total ? 100.0 : 100.0 * (double)p->done / (double)p->total);
	else
		put(p, &pos, ",\"percent\":null");
	put(p, &pos, ",\"copied\":%llu,\"cloned\":%llu,\"zeroed\":%llu,\"rate\":%llu",
	    (unsigned long long)p->copied, (unsigned long long)p->cloned,
	    (unsigned long long)p->zeroed, (unsigned long long)r);
	if (left >= 0)
		put(p, &pos, ",\"eta_s\":%lld", (long long)left);
	else
		put(p, &pos, ",\"eta_s\":null");
	put(p, &pos, ",\"elapsed_s\":%.3f}\n", (double)(now - p->t0) / (double)NS_PER_S);
	fputs(p->line, p->json_out);
	fflush(p->json_out);
	p->lines++;
}

/* ---- the calls ------------------------------------------------------------------ */

void cli_progress_update(struct cli_progress *p, uint64_t done_bytes, uint64_t copied,
			 uint64_t cloned, uint64_t zeroed)
{
	uint64_t now;

	p->done = done_bytes;
	p->copied = copied;
	p->cloned = cloned;
	p->zeroed = zeroed;
	if (!p->updated) {
		p->updated = true;
		p->base_done = done_bytes;
	}
	if (p->mode == CLI_PROGRESS_NONE || p->finished)
		return;
	now = p->clock(p->clock_ctx);
	sample(p, now);
	uint64_t gap = p->mode == CLI_PROGRESS_BAR ? PROG_BAR_INTERVAL_NS : PROG_JSON_INTERVAL_NS;
	if (p->drawn_once && now - p->last_draw < gap) /* I1 */
		return;
	p->drawn_once = true;
	p->last_draw = now;
	if (p->mode == CLI_PROGRESS_BAR)
		draw_bar(p, rate(p, now), p->phase);
	else
		json_progress(p, now, rate(p, now));
}

void cli_progress_phase(struct cli_progress *p, const char *phase)
{
	uint64_t now;
	size_t pos = 0;

	snprintf(p->phase, sizeof(p->phase), "%s", phase ? phase : "");
	if (p->mode == CLI_PROGRESS_NONE || p->finished)
		return;
	now = p->clock(p->clock_ctx);
	if (p->mode == CLI_PROGRESS_JSON) {
		put(p, &pos, "{\"event\":\"phase\",\"op\":");
		put_json_str(p, &pos, p->op);
		put(p, &pos, ",\"phase\":");
		put_json_str(p, &pos, p->phase);
		put(p, &pos, ",\"elapsed_s\":%.3f}\n", (double)(now - p->t0) / (double)NS_PER_S);
		fputs(p->line, p->json_out);
		fflush(p->json_out);
		p->lines++;
		return;
	}
	/* bar: show the new phase now if the throttle allows, else at the next
	 * update */
	if (p->bar_visible && now - p->last_draw >= PROG_BAR_INTERVAL_NS) {
		p->last_draw = now;
		draw_bar(p, rate(p, now), p->phase);
	}
}

void cli_progress_clear(struct cli_progress *p)
{
	if (p->mode != CLI_PROGRESS_BAR || !p->bar_visible)
		return;
	fputs("\r\033[K", p->bar_out);
	fflush(p->bar_out);
	p->bar_visible = false;
}

void cli_progress_finish(struct cli_progress *p, bool ok)
{
	uint64_t now;
	size_t pos = 0;

	if (p->finished)
		return;
	p->finished = true;
	if (p->mode == CLI_PROGRESS_NONE)
		return;
	now = p->clock(p->clock_ctx);
	double avg = avg_rate(p, now);
	if (p->mode == CLI_PROGRESS_BAR) {
		draw_bar(p, avg, ok ? p->phase : "failed");
		fputc('\n', p->bar_out);
		fflush(p->bar_out);
		p->bar_visible = false;
		return;
	}
	json_progress(p, now, rate(p, now));
	put(p, &pos, "{\"event\":\"finish\",\"op\":");
	put_json_str(p, &pos, p->op);
	put(p, &pos, ",\"ok\":%s,\"done\":%llu,\"total\":%llu,\"rate\":%llu,\"elapsed_s\":%.3f}\n",
	    ok ? "true" : "false", (unsigned long long)p->done, (unsigned long long)p->total,
	    (unsigned long long)avg, (double)(now - p->t0) / (double)NS_PER_S);
	fputs(p->line, p->json_out);
	fflush(p->json_out);
	p->lines++;
}
