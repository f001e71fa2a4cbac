/* tests/cli/test_progress.c: cli/progress.c with a fake clock: the bar and
 * JSON throttles (I1), the sliding-window rate and ETA (I2), every JSON line
 * parsing (python3 json.loads, line by line), no allocation per update, the
 * bar never wider than the terminal, auto mode off a terminal.
 *
 * progress.c uses libc only, so it is included here as it is (SPDK-style),
 * which also reaches its statics (rate, eta). */
#include "cli/progress.c" /* first: it defines _GNU_SOURCE */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

#define MiB (1024ull * 1024)
#define MS 1000000ull
#define SEC 1000000000ull

struct fake_clock {
	uint64_t now;
};

static uint64_t fake_now(void *ctx)
{
	return ((struct fake_clock *)ctx)->now;
}

/* A progress in mode on a fake clock, writing into tmpfiles. */
static void start(struct cli_progress *p, const char *mode, struct fake_clock *c, FILE **out,
		  uint64_t total)
{
	*out = tmpfile();
	assert_non_null(*out);
	assert_int_equal(cli_progress_init(p, mode, "merge", total), 0);
	c->now = 1000 * SEC; /* not zero: nothing may assume a clock starting at 0 */
	cli_progress_set_clock(p, fake_now, c);
	cli_progress_set_output(p, *out, *out);
}

/* The bytes written to f, NUL-terminated (caller frees). */
static char *slurp(FILE *f, size_t *len)
{
	long n;
	fflush(f);
	n = ftell(f);
	assert_true(n >= 0);
	char *s = malloc((size_t)n + 1);
	rewind(f);
	assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
	s[n] = 0;
	if (len)
		*len = (size_t)n;
	return s;
}

static unsigned count(const char *s, const char *what)
{
	unsigned n = 0;
	for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
		n++;
	return n;
}

/* Every line of s is one JSON object (python3 json.loads); returns lines. */
static unsigned json_lines_parse(const char *s)
{
	char *dir = tl_mkdtemp("progress");
	char path[1200];
	snprintf(path, sizeof(path), "%s/lines.json", dir);
	assert_int_equal(tl_write_file(path, s, strlen(s)), 0);
	int st;
	char *out = tl_sh_out(&st,
			      "python3 -c 'import json,sys\n"
			      "n=0\n"
			      "for l in open(sys.argv[1]).read().split(\"\\n\")[:-1]:\n"
			      "    assert isinstance(json.loads(l), dict), l\n"
			      "    n+=1\n"
			      "print(n)' '%s'",
			      path);
	assert_int_equal(st, 0);
	unsigned n = (unsigned)strtoul(out, NULL, 10);
	free(out);
	tl_sh("rm -rf '%s'", dir);
	free(dir);
	return n;
}

static void bar_redraws_at_most_ten_times_a_second(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	start(&p, "bar", &c, &f, 10 * 1000 * MiB);
	cli_progress_phase(&p, "copy");
	/* 10 s of updates every millisecond: 10000 calls */
	for (unsigned i = 1; i <= 10000; i++) {
		c.now += MS;
		cli_progress_update(&p, i * MiB, i * MiB, 0, 0);
	}
	assert_true(p.redraws <= 10 * 10 + 1);
	assert_true(p.redraws >= 10 * 10 - 1); /* and it does redraw */
	char *s = slurp(f, NULL);
	assert_int_equal(count(s, "\r"), p.redraws);
	assert_int_equal(count(s, "\n"), 0); /* one line, redrawn in place */
	free(s);
	cli_progress_finish(&p, true);
	s = slurp(f, NULL);
	assert_int_equal(count(s, "\n"), 1);
	free(s);
	fclose(f);
}

static void bar_shows_percent_sizes_rate_eta_and_phase(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	setenv("COLUMNS", "120", 1);
	start(&p, "bar", &c, &f, 4096 * MiB);
	cli_progress_phase(&p, "copy");
	/* 200 MiB/s for 10 s: 2000 MiB of 4096, ETA (4096 - 2000) / 200 = 10.48 -> 11 s */
	for (unsigned i = 0; i <= 100; i++) {
		cli_progress_update(&p, i * 20 * MiB, i * 20 * MiB, 0, 0);
		c.now += 100 * MS;
	}
	c.now -= 100 * MS;
	char *s = slurp(f, NULL);
	const char *last = strrchr(s, '\r');
	assert_non_null(last);
	assert_non_null(strstr(last, " 48.8%"));
	assert_non_null(strstr(last, "2.0 GiB / 4.0 GiB"));
	assert_non_null(strstr(last, "200.0 MiB/s"));
	assert_non_null(strstr(last, "ETA 0:11"));
	assert_non_null(strstr(last, "copy"));
	assert_non_null(strstr(last, "[####"));
	free(s);
	cli_progress_finish(&p, false);
	s = slurp(f, NULL);
	last = strrchr(s, '\r');
	assert_non_null(strstr(last, "failed"));
	assert_true(s[strlen(s) - 1] == '\n');
	free(s);
	fclose(f);
}

static void bar_never_wraps_a_narrow_terminal(void **state)
{
	(void)state;
	for (unsigned cols = 20; cols <= 100; cols += 7) {
		char v[16];
		snprintf(v, sizeof(v), "%u", cols);
		setenv("COLUMNS", v, 1);
		struct cli_progress p;
		struct fake_clock c;
		FILE *f;
		start(&p, "bar", &c, &f, 123456 * MiB);
		cli_progress_phase(&p, "finalize-and-repoint");
		for (unsigned i = 0; i < 50; i++) {
			c.now += 200 * MS;
			cli_progress_update(&p, i * 999 * MiB, 0, 0, 0);
		}
		cli_progress_finish(&p, true);
		char *s = slurp(f, NULL);
		/* each redraw: "\r" + visible text + "\033[K" */
		for (char *r = strchr(s, '\r'); r; r = strchr(r + 1, '\r')) {
			char *end = strstr(r, "\033[K");
			assert_non_null(end);
			assert_true((size_t)(end - r - 1) <= cols - 1);
		}
		free(s);
		fclose(f);
	}
	unsetenv("COLUMNS");
}

static void json_lines_parse_and_come_at_most_once_a_second_plus_a_final_one(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	start(&p, "json", &c, &f, 10 * 1000 * MiB);
	cli_progress_phase(&p, "preflight");
	cli_progress_phase(&p, "copy");
	for (unsigned i = 1; i <= 10000; i++) {
		c.now += MS;
		cli_progress_update(&p, i * MiB, i * MiB / 2, i * MiB / 4, i * MiB / 4);
	}
	unsigned progress_lines = p.lines - 2;
	assert_true(progress_lines <= 10 + 1);
	assert_true(progress_lines >= 10);
	cli_progress_finish(&p, true);
	cli_progress_finish(&p, true); /* idempotent */
	char *s = slurp(f, NULL);
	/* 2 phases, the throttled lines, a final progress line, the finish line */
	assert_int_equal(json_lines_parse(s), 2 + progress_lines + 2);
	assert_int_equal(count(s, "\"event\":\"phase\""), 2);
	assert_int_equal(count(s, "\"event\":\"finish\""), 1);
	assert_non_null(strstr(s, "\"event\":\"finish\",\"op\":\"merge\",\"ok\":true,"
				  "\"done\":10485760000,\"total\":10485760000"));
	/* the throttled progress lines are >= 1 s apart on the clock */
	double prev = -1;
	unsigned seen = 0;
	for (const char *l = strstr(s, "\"event\":\"progress\""); l;
	     l = strstr(l + 1, "\"event\":\"progress\"")) {
		const char *e = strstr(l, "\"elapsed_s\":");
		assert_non_null(e);
		double t = strtod(e + 12, NULL);
		if (++seen <= progress_lines) {
			assert_true(prev < 0 || t - prev >= 1.0 - 1e-9);
			prev = t;
		}
	}
	assert_int_equal(seen, progress_lines + 1);
	free(s);
	fclose(f);
}

static void json_escapes_op_and_phase_and_writes_null_for_unknowns(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	start(&p, "json", &c, &f, 0); /* total unknown */
	p.op = "we\"ird\\op\n";
	cli_progress_phase(&p, "ph\"ase\t1");
	cli_progress_update(&p, 5 * MiB, 0, 0, 0);
	cli_progress_finish(&p, false);
	char *s = slurp(f, NULL);
	assert_int_equal(json_lines_parse(s), 4);
	assert_non_null(strstr(s, "\"percent\":null"));
	assert_non_null(strstr(s, "\"eta_s\":null"));
	assert_non_null(strstr(s, "\"ok\":false"));
	free(s);
	fclose(f);
}

static void rate_follows_the_last_seconds_not_the_whole_run(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	start(&p, "json", &c, &f, 100000 * MiB);
	uint64_t done = 0;
	/* 100 MiB/s for 20 s, updates every 10 ms */
	for (unsigned i = 0; i < 2000; i++) {
		c.now += 10 * MS;
		done += MiB;
		cli_progress_update(&p, done, done, 0, 0);
	}
	double r = rate(&p, c.now);
	assert_true(r > 99 * MiB && r < 101 * MiB);
	/* then 10 MiB/s: after 6 s the window holds the new speed only */
	for (unsigned i = 0; i < 600; i++) {
		c.now += 10 * MS;
		done += MiB / 10;
		cli_progress_update(&p, done, done, 0, 0);
	}
	r = rate(&p, c.now);
	assert_true(r > 9.5 * MiB && r < 10.5 * MiB);
	/* ETA from that rate */
	int64_t left = eta(&p, r);
	double want = (double)(100000 * MiB - done) / r;
	assert_true(left >= (int64_t)want && left <= (int64_t)want + 1);
	/* a stall: no progress for 10 s brings the rate to zero, ETA unknown */
	c.now += 10 * SEC;
	cli_progress_update(&p, done, done, 0, 0);
	assert_true(rate(&p, c.now) == 0);
	assert_int_equal(eta(&p, rate(&p, c.now)), -1);
	fclose(f);
}

static void rate_starts_from_the_first_update_of_a_resumed_run(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	start(&p, "json", &c, &f, 1000 * MiB);
	/* a resumed operation: 600 MiB were done by an earlier run */
	cli_progress_update(&p, 600 * MiB, 0, 0, 0);
	c.now += 500 * MS;
	cli_progress_update(&p, 610 * MiB, 0, 0, 0);
	double r = rate(&p, c.now);
	assert_true(r > 19 * MiB && r < 21 * MiB); /* 10 MiB in 0.5 s, not 610 */
	c.now += 500 * MS;
	cli_progress_update(&p, 620 * MiB, 0, 0, 0);
	r = avg_rate(&p, c.now);
	assert_true(r > 19 * MiB && r < 21 * MiB);
	fclose(f);
}

static void updates_never_allocate(void **state)
{
	(void)state;
	static const char *const modes[] = { "bar", "json", "none" };
	for (unsigned m = 0; m < 3; m++) {
		struct cli_progress p;
		struct fake_clock c;
		FILE *f = fopen("/dev/null", "w");
		assert_non_null(f);
		assert_int_equal(cli_progress_init(&p, modes[m], "merge", 1ull << 40), 0);
		cli_progress_set_clock(&p, fake_now, &c);
		cli_progress_set_output(&p, f, f);
		cli_progress_phase(&p, "copy");
		c.now += SEC;
		cli_progress_update(&p, 1, 0, 0, 0); /* stdio sets up its buffer here */
		struct mallinfo2 before = mallinfo2();
		for (unsigned i = 0; i < 100000; i++) {
			c.now += 7 * MS;
			cli_progress_update(&p, (uint64_t)i * MiB, i, i, i);
		}
		struct mallinfo2 after = mallinfo2();
		assert_int_equal(before.uordblks, after.uordblks);
		assert_int_equal(before.hblkhd, after.hblkhd);
		assert_true(m == 2 || p.redraws + p.lines > 100);
		cli_progress_finish(&p, true);
		fclose(f);
	}
}

static void auto_is_none_off_a_terminal_and_modes_are_checked(void **state)
{
	(void)state;
	struct cli_progress p;
	/* stderr on a file: not a terminal */
	fflush(stderr);
	int saved = dup(2);
	int fd = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	assert_int_equal(cli_progress_init(&p, "auto", "merge", 1), 0);
	enum cli_progress_mode got = p.mode;
	assert_int_equal(cli_progress_init(&p, NULL, "merge", 1), 0);
	enum cli_progress_mode got_null = p.mode;
	dup2(saved, 2);
	close(saved);
	close(fd);
	assert_int_equal(got, CLI_PROGRESS_NONE);
	assert_int_equal(got_null, CLI_PROGRESS_NONE);
	assert_int_equal(cli_progress_init(&p, "bar", "merge", 1), 0);
	assert_int_equal(p.mode, CLI_PROGRESS_BAR);
	assert_int_equal(cli_progress_init(&p, "sometimes", "merge", 1), -1);
	assert_int_equal(p.mode, CLI_PROGRESS_NONE);

	/* none writes nothing at all */
	struct fake_clock c;
	FILE *f;
	start(&p, "none", &c, &f, 100);
	cli_progress_phase(&p, "copy");
	cli_progress_update(&p, 50, 0, 0, 0);
	cli_progress_clear(&p);
	cli_progress_finish(&p, true);
	size_t len;
	char *s = slurp(f, &len);
	assert_int_equal(len, 0);
	free(s);
	fclose(f);
}

static void clear_erases_the_bar_and_the_next_update_draws_it_again(void **state)
{
	(void)state;
	struct cli_progress p;
	struct fake_clock c;
	FILE *f;
	start(&p, "bar", &c, &f, 100 * MiB);
	cli_progress_update(&p, 10 * MiB, 0, 0, 0);
	assert_true(p.bar_visible);
	cli_progress_clear(&p);
	assert_false(p.bar_visible);
	c.now += 200 * MS;
	cli_progress_update(&p, 20 * MiB, 0, 0, 0);
	assert_true(p.bar_visible);
	char *s = slurp(f, NULL);
	assert_non_null(strstr(s, "\r\033[K\r"));
	free(s);
	fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bar_redraws_at_most_ten_times_a_second),
		cmocka_unit_test(bar_shows_percent_sizes_rate_eta_and_phase),
		cmocka_unit_test(bar_never_wraps_a_narrow_terminal),
		cmocka_unit_test(json_lines_parse_and_come_at_most_once_a_second_plus_a_final_one),
		cmocka_unit_test(json_escapes_op_and_phase_and_writes_null_for_unknowns),
		cmocka_unit_test(rate_follows_the_last_seconds_not_the_whole_run),
		cmocka_unit_test(rate_starts_from_the_first_update_of_a_resumed_run),
		cmocka_unit_test(updates_never_allocate),
		cmocka_unit_test(auto_is_none_off_a_terminal_and_modes_are_checked),
		cmocka_unit_test(clear_erases_the_bar_and_the_next_update_draws_it_again),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
