/* tests/engine/test_errors.c: I/O errors and short writes injected into a
 * merge and a convert (issue 7, item 2).
 *
 * The operation runs on real files through the fault wrapper (io/fault.c)
 * as opts.io, over the inline backend of crashlib.h.  One uninterrupted run
 * counts its reads, writes and syncs; then, for every N:
 *
 *   write N   EIO once, ENOSPC from N on, a short write (once, and from N
 *             on), and a short write whose remainder hits ENOSPC from then on
 *             (a disk filling up mid-request)
 *   sync N    EIO once, EIO from N on
 *   read N    EIO once (every third N)
 *
 * An injected error must surface as a clean failure: the call returns that
 * negative code (-EIO, -ENOSPC) and the message names a file of the run.  A
 * short write is finished by the I/O layer (io.h O4): the run succeeds.
 * After every run, failed or not:
 *   - every VHDX file opens (a dirty log replays in memory);
 *   - the chain from TOP (while its layers are all there) and from the
 *     child being re-pointed reads every sector as before; a convert's
 *     inputs are byte-identical and no output exists unless complete;
 *   - re-running without faults succeeds and every file ends byte-identical
 *     to an uninterrupted run.
 * Prints the counts; "invalid files: 0" is the point.
 */
#include "crashlib.h"

#include <malloc.h>
#include <time.h>

struct count {
	uint64_t runs, injected, clean, shorts_ok, invalid, reruns, bad;
	uint64_t eio, enospc, shortw;
	uint64_t best_effort; /* injected into a sync whose failure is ignored by design */
};

static char *root;
static struct count total;
static unsigned nscen;

static int setup(void **state)
{
	(void)state;
	root = cl_scratch("errors");
	return root ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (root)
		tl_sh("rm -rf '%s'", root);
	free(root);
	return 0;
}

static bool is_vhdx(const char *n)
{
	return cl_ends(n, ".vhdx") || cl_ends(n, ".avhdx");
}

/* Files valid and the chain's view unchanged; why says what is not. */
static bool files_valid(const struct cl_scen *s, const char *dir, struct vxm_io *io, char *why,
			size_t cap)
{
	struct cl_paths p;
	struct vxm_err err = { 0 };
	struct stat sb;
	struct dirent *e;
	char path[2400], m[1400];
	bool ok = true, layers = true;
	DIR *d = opendir(dir);

	cl_paths(s, dir, &p);
	assert_non_null(d);
	while ((e = readdir(d)) && ok) {
		struct vxm_image *img;
		if (!is_vhdx(e->d_name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		vxm_err_clear(&err);
		if (vxm_image_open(&img, io, path, 0, &err)) {
			snprintf(why, cap, "%s does not open: %s", e->d_name,
				 vxm_err_format(&err, m, sizeof(m)));
			ok = false;
		} else {
			vxm_image_close(img);
		}
	}
	closedir(d);
	for (unsigned i = 0; i < s->start.n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, s->start.name[i]);
		if (stat(path, &sb) != 0)
			layers = false;
	}
	const char *views[2];
	unsigned nv = 0;
	if (layers)
		views[nv++] = p.top;
	if (s->kind == CL_MERGE_INTO)
		views[nv++] = p.child;
	else if (!layers && s->kind == CL_MERGE_BASE)
		views[nv++] = p.dest;
	for (unsigned i = 0; i < nv && ok; i++) {
		const uint8_t *v;
		uint64_t vl;
		vxm_err_clear(&err);
		if (cl_view_tmp(io, views[i], &v, &vl, &err)) {
			snprintf(why, cap, "the chain from %s does not read: %s", strrchr(views[i], '/') + 1,
				 vxm_err_format(&err, m, sizeof(m)));
			ok = false;
			continue;
		}
		if (vl != s->vsize || memcmp(v, s->view, vl)) {
			snprintf(why, cap, "the chain from %s reads differently", strrchr(views[i], '/') + 1);
			ok = false;
		}
	}
	if (ok && s->kind == CL_CONVERT) {
		for (unsigned i = 0; i < s->start.n && ok; i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, s->start.name[i]);
			if (!cl_file_equals(path, &s->start.b[i])) {
				snprintf(why, cap, "input %s changed", s->start.name[i]);
				ok = false;
			}
		}
		if (ok && stat(p.out, &sb) == 0) {
			const uint8_t *v;
			uint64_t vl;
			if (cl_view_tmp(io, p.out, &v, &vl, &err) || vl != s->vsize || memcmp(v, s->view, vl)) {
				snprintf(why, cap, "%s exists but does not read as the chain", p.out);
				ok = false;
			}
		}
	}
	return ok;
}

struct ectx {
	const struct cl_scen *s;
	char dir[1300];
	struct vxm_io low, fio, plain;
	struct count c;
	unsigned reported;
	bool dir_is_ref;
};

static void bad(struct ectx *x, const char *what, const char *why)
{
	x->c.bad++;
	if (x->reported++ < 12)
		fprintf(stderr, "  FAIL [%s] %s: %s\n", x->s->label, what, why);
}

/* One faulted run and its checks.  want: the error expected (0 none). */
static void one_run(struct ectx *x, const struct vxm_fault *f, int want, const char *what)
{
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	struct vxm_fault_counts fc;
	char m[1400], why[1600], d[600];

	cl_tree_write_known(&x->s->start, x->dir, x->dir_is_ref ? &x->s->ref : NULL);
	x->dir_is_ref = false;
	assert_int_equal(vxm_fault_reset(&x->fio), 0);
	assert_int_equal(vxm_fault_arm(&x->fio, f), 0);
	int ret = cl_run(x->s, x->dir, &x->fio, &r, &err);
	assert_int_equal(vxm_fault_counts(&x->fio, &fc), 0);
	assert_int_equal(vxm_fault_arm(&x->fio, NULL), 0);
	x->c.runs++;
	x->c.injected += fc.injected;
	x->c.shortw += fc.shortened;
	if (fc.injected) {
		x->c.eio += f->err_errno == EIO || !f->err_errno;
		x->c.enospc += f->err_errno == ENOSPC;
	}
	vxm_err_format(&err, m, sizeof(m));
	if (want && fc.injected) {
		if (ret != -want) {
			snprintf(why, sizeof(why), "returned %d (%s), not %d: %s", ret, vxm_strerror(ret),
				 -want, ret ? m : "success");
			bad(x, what, why);
		} else if (!strstr(m, x->dir)) {
			snprintf(why, sizeof(why), "the message names no file: %s", m);
			bad(x, what, why);
		} else {
			x->c.clean++;
		}
	} else if (ret) {
		snprintf(why, sizeof(why), "failed without an injected error: %s", m);
		bad(x, what, why);
	} else if (fc.shortened) {
		x->c.shorts_ok++;
	}
	if (!files_valid(x->s, x->dir, &x->plain, why, sizeof(why))) {
		x->c.invalid++;
		bad(x, what, why);
		return;
	}
	/* the re-run without faults; every fourth on the program's own I/O */
	if (!cl_completed(x->s, x->dir)) {
		bool own = x->c.reruns % 4 == 0;
		vxm_err_clear(&err);
		ret = cl_run(x->s, x->dir, own ? NULL : &x->plain, &r, &err);
		x->c.reruns++;
		if (ret) {
			snprintf(why, sizeof(why), "the re-run fails: %s", vxm_err_format(&err, m, sizeof(m)));
			bad(x, what, why);
			return;
		}
	}
	if (!cl_dir_equals(x->dir, &x->s->ref, d, sizeof(d))) {
		snprintf(why, sizeof(why), "after the re-run %s", d);
		bad(x, what, why);
	} else {
		x->dir_is_ref = true;
	}
}

static void inject_everywhere(enum cl_kind kind, const char *tag)
{
	struct cl_scen s;
	struct ectx x = { .s = &s };
	struct vxm_fault_counts c;
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char sroot[1200], what[200];
	double budget = cl_env_double("VXM_CRASH_BUDGET", 1.0);
	unsigned stride = cl_sanitized() ? 29 : budget >= 1 ? 1 : (unsigned)(1 / budget);
	double t0 = (double)time(NULL);

	snprintf(sroot, sizeof(sroot), "%s/%s", root, tag);
	cl_scen_setup(&s, kind, sroot, "12M", 4);
	snprintf(x.dir, sizeof(x.dir), "%s/w", sroot);
	assert_int_equal(tl_sh("mkdir -p '%s'", x.dir), 0);
	assert_int_equal(vxm_io_init(&x.low, &cl_inline_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&x.fio, &vxm_io_fault_ops, &(struct vxm_io_params){ .lower = &x.low }), 0);
	assert_int_equal(vxm_io_init(&x.plain, &cl_inline_ops, NULL), 0);

	/* how many ops of each kind, and the tag of every sync */
	cl_tree_write(&s.start, x.dir);
	assert_int_equal(vxm_fault_record(&x.fio, true), 0);
	assert_int_equal(cl_run(&s, x.dir, &x.fio, &r, &err), 0);
	assert_int_equal(vxm_fault_counts(&x.fio, &c), 0);
	const struct vxm_fault_rec *rec;
	size_t nrec = vxm_fault_recs(&x.fio, &rec);
	char **tags = calloc(c.syncs + 2, sizeof(char *));
	assert_non_null(tags);
	for (size_t i = 0, k = 1; i < nrec && k <= c.syncs; i++)
		if (rec[i].kind == VXM_FAULT_REC_SYNC)
			tags[k++] = strdup(rec[i].tag ? rec[i].tag : "");
	assert_int_equal(vxm_fault_record(&x.fio, false), 0);
	assert_int_equal(vxm_fault_reset(&x.fio), 0);
	printf("%s: %llu reads, %llu writes, %llu syncs, %llu resizes\n", s.label,
	       (unsigned long long)c.reads, (unsigned long long)c.writes, (unsigned long long)c.syncs,
	       (unsigned long long)c.resizes);
	fflush(stdout);

	for (unsigned n = 1; n <= c.writes; n += stride) {
		snprintf(what, sizeof(what), "EIO at write %u", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_WRITE, .err_at = n, .err_errno = EIO },
			EIO, what);
		snprintf(what, sizeof(what), "ENOSPC from write %u on", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_WRITE, .err_at = n, .err_sticky = true,
						 .err_errno = ENOSPC },
			ENOSPC, what);
		snprintf(what, sizeof(what), "short write %u", n);
		one_run(&x, &(struct vxm_fault){ .short_op = VXM_IO_WRITE, .short_at = n }, 0, what);
		snprintf(what, sizeof(what), "short writes from %u on", n);
		one_run(&x, &(struct vxm_fault){ .short_op = VXM_IO_WRITE, .short_at = n,
						 .short_sticky = true },
			0, what);
		snprintf(what, sizeof(what), "short write %u, then ENOSPC", n);
		one_run(&x, &(struct vxm_fault){ .short_op = VXM_IO_WRITE, .short_at = n,
						 .err_op = VXM_IO_WRITE, .err_at = n + 1,
						 .err_sticky = true, .err_errno = ENOSPC },
			ENOSPC, what);
	}
	for (unsigned n = 1; n <= c.syncs; n += stride) {
		/* create.c syncs the new file's directory best effort (the
		 * convert's journal syncs the same directory right after) */
		bool best_effort = tags[n] && !strcmp(tags[n], "create-dir");
		snprintf(what, sizeof(what), "EIO at sync %u (%s)", n, tags[n] ? tags[n] : "?");
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_SYNC, .err_at = n, .err_errno = EIO },
			best_effort ? 0 : EIO, what);
		x.c.best_effort += best_effort;
		snprintf(what, sizeof(what), "EIO from sync %u (%s) on", n, tags[n] ? tags[n] : "?");
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_SYNC, .err_at = n, .err_sticky = true,
						 .err_errno = EIO },
			EIO, what);
	}
	for (unsigned n = 1; n <= c.reads; n += 3 * stride) {
		snprintf(what, sizeof(what), "EIO at read %u", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_READ, .err_at = n, .err_errno = EIO },
			EIO, what);
	}
	printf("  %llu runs: %llu errors injected (%llu EIO, %llu ENOSPC), %llu short writes; "
	       "%llu clean failures, %llu runs with short writes completed, %llu EIOs of the best-effort "
	       "directory sync ignored; %llu re-runs; "
	       "invalid files: %llu; failures: %llu; %.0f s\n",
	       (unsigned long long)x.c.runs, (unsigned long long)x.c.injected,
	       (unsigned long long)x.c.eio, (unsigned long long)x.c.enospc,
	       (unsigned long long)x.c.shortw, (unsigned long long)x.c.clean,
	       (unsigned long long)x.c.shorts_ok, (unsigned long long)x.c.best_effort,
	       (unsigned long long)x.c.reruns,
	       (unsigned long long)x.c.invalid, (unsigned long long)x.c.bad,
	       (double)time(NULL) - t0);
	fflush(stdout);
	total.runs += x.c.runs;
	total.injected += x.c.injected;
	total.eio += x.c.eio;
	total.enospc += x.c.enospc;
	total.shortw += x.c.shortw;
	total.clean += x.c.clean;
	total.shorts_ok += x.c.shorts_ok;
	total.reruns += x.c.reruns;
	total.invalid += x.c.invalid;
	total.bad += x.c.bad;
	nscen++;
	for (unsigned i = 0; i <= c.syncs; i++)
		free(tags[i]);
	free(tags);
	vxm_io_fini(&x.fio);
	vxm_io_fini(&x.low);
	vxm_io_fini(&x.plain);
	cl_scen_free(&s);
	tl_sh("rm -rf '%s'", sroot);
	assert_int_equal(x.c.bad, 0);
}

static void io_errors_in_a_merge_into_the_base_fail_cleanly_and_lose_nothing(void **state)
{
	(void)state;
	inject_everywhere(CL_MERGE_BASE, "base");
}

static void io_errors_in_a_merge_into_an_intermediate_fail_cleanly_and_lose_nothing(void **state)
{
	(void)state;
	inject_everywhere(CL_MERGE_INTO, "into");
}

static void io_errors_in_a_convert_fail_cleanly_and_leave_the_inputs_untouched(void **state)
{
	(void)state;
	inject_everywhere(CL_CONVERT, "convert");
}

/* Regression: with opts.io (one context for every file operation) the
 * data path staged BAT sectors and read sources with a dirty log through
 * synchronous reads while its own data requests were still in flight: the
 * run failed with -EBUSY.  A failed run also left its requests in flight,
 * so the caller's context refused every later synchronous request.  After
 * an EIO at any write, the context must be idle and a re-run on one shared
 * context must finish byte-identical. */
static void after_an_io_error_anywhere_a_rerun_on_one_shared_context_finishes(void **state)
{
	struct cl_scen s;
	struct vxm_io low, fio;
	struct vxm_fault_counts c;
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char sroot[1200], dir[1300], m[1400], d[600];
	unsigned reruns = 0;
	(void)state;

	snprintf(sroot, sizeof(sroot), "%s/shared", root);
	cl_scen_setup(&s, CL_MERGE_BASE, sroot, "12M", 4);
	snprintf(dir, sizeof(dir), "%s/w", sroot);
	assert_int_equal(tl_sh("mkdir -p '%s'", dir), 0);
	assert_int_equal(vxm_io_init(&low, &cl_inline_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&fio, &vxm_io_fault_ops, &(struct vxm_io_params){ .lower = &low }), 0);
	cl_tree_write(&s.start, dir);
	assert_int_equal(cl_run(&s, dir, &fio, &r, &err), 0);
	assert_int_equal(vxm_fault_counts(&fio, &c), 0);
	for (unsigned n = 1; n <= c.writes; n++) {
		cl_tree_write(&s.start, dir);
		assert_int_equal(vxm_fault_reset(&fio), 0);
		assert_int_equal(vxm_fault_arm(&fio, &(struct vxm_fault){ .err_op = VXM_IO_WRITE,
									 .err_at = n }), 0);
		vxm_err_clear(&err);
		assert_int_equal(cl_run(&s, dir, &fio, &r, &err), -EIO);
		assert_int_equal(fio.inflight, 0);
		assert_int_equal(vxm_fault_arm(&fio, NULL), 0);
		vxm_err_clear(&err);
		int ret = cl_run(&s, dir, &low, &r, &err);
		if (ret)
			fprintf(stderr, "EIO at write %u, re-run on one context: %s\n", n,
				vxm_err_format(&err, m, sizeof(m)));
		assert_int_equal(ret, 0);
		assert_int_equal(low.inflight, 0);
		if (!cl_dir_equals(dir, &s.ref, d, sizeof(d)))
			fprintf(stderr, "EIO at write %u, after the re-run: %s\n", n, d);
		assert_true(cl_dir_equals(dir, &s.ref, d, sizeof(d)));
		reruns++;
	}
	printf("EIO at each of %u writes, then a re-run on one shared context: all finished\n", reruns);
	vxm_io_fini(&fio);
	vxm_io_fini(&low);
	cl_scen_free(&s);
	tl_sh("rm -rf '%s'", sroot);
}

static void summary(void **state)
{
	(void)state;
	printf("errors injected: %llu (in %llu EIO and %llu ENOSPC runs), short writes: %llu, runs: %llu, "
	       "clean failures: %llu, re-runs byte-identical: %llu, invalid files: %llu\n",
	       (unsigned long long)total.injected, (unsigned long long)total.eio,
	       (unsigned long long)total.enospc, (unsigned long long)total.shortw,
	       (unsigned long long)total.runs, (unsigned long long)total.clean,
	       (unsigned long long)total.reruns, (unsigned long long)total.invalid);
	assert_int_equal(nscen, 3);
	assert_int_equal(total.invalid, 0);
	assert_int_equal(total.bad, 0);
}

int main(void)
{
	mallopt(M_MMAP_THRESHOLD, 256 << 20); /* reuse big buffers, no fresh page faults */
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(after_an_io_error_anywhere_a_rerun_on_one_shared_context_finishes),
		cmocka_unit_test(io_errors_in_a_merge_into_the_base_fail_cleanly_and_lose_nothing),
		cmocka_unit_test(io_errors_in_a_merge_into_an_intermediate_fail_cleanly_and_lose_nothing),
		cmocka_unit_test(io_errors_in_a_convert_fail_cleanly_and_leave_the_inputs_untouched),
		cmocka_unit_test(summary),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
