/* tests/engine/test_raw_errors.c: I/O errors injected into the raw convert
 * (issue 19).
 *
 * A raw convert (--format raw) of a 12 MiB four-layer chain runs on real
 * files through the fault wrapper (io/fault.c) as opts.io, over the inline
 * backend of crashlib.h, in 256 KiB requests, committing after 64 KiB
 * (VXM_COMMIT_BYTES, tests/hooks/) and at the latest after 512 KiB: dozens
 * of data commits, each a flush of the partial output and a journal
 * recording the cursor.  One uninterrupted run counts the writes and
 * flushes; then, for every N:
 *
 *   write N   EIO once, ENOSPC from N on
 *   flush N   EIO once (a commit's or the final one), EIO from N on
 *
 * Each injected error must end the run with that error (-EIO, -ENOSPC) and a
 * message naming a file of the run, and leave no output file.  What it
 * leaves must not pass for more than was written: when the journal remains,
 * the bytes before its cursor in the partial file are the chain's (a
 * failure the convert ignored would let a later commit claim the bytes of
 * the failed write, which the partial file holds as zeros).  Re-running
 * without faults finishes: the output is the chain's disk byte for byte and
 * nothing else is left beside the inputs.
 */
#include "crashlib.h"

#include <time.h>

#define CHUNK (256u << 10)

static char *root;
static struct cl_tree start, ref;
static uint8_t *view;
static uint64_t vsize;

struct tally {
	unsigned runs, clean, clean_flush, unreached, journals, claimed_mib, reruns, resumed, bad;
};

static int setup(void **state)
{
	char dir[1200], top[1300], msg[1400];
	struct vxm_err err = { 0 };
	(void)state;

	root = cl_scratch("raw-errors");
	if (!root)
		return -1;
	snprintf(dir, sizeof(dir), "%s/pristine", root);
	if (tl_sh("mkdir -p '%s' && VXM_GUID_SEED=4242 '%s' synth '%s' --seed 3 --size 12M --layers 4 "
		  "--block-size 1M >/dev/null",
		  dir, tl_bin(), dir))
		return -1;
	cl_tree_load(&start, dir);
	snprintf(top, sizeof(top), "%s/%s", dir, cl_top_name());
	if (cl_view(NULL, top, &view, &vsize, &err)) {
		fprintf(stderr, "%s\n", vxm_err_format(&err, msg, sizeof(msg)));
		return -1;
	}
	/* what a complete run leaves: the inputs and the chain's disk */
	cl_tree_load(&ref, dir);
	struct cl_blob *b = cl_tree_add(&ref, "out.raw");
	cl_blob_write(b, 0, view, vsize);
	return setenv("VXM_COMMIT_BYTES", "65536", 1);
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("VXM_COMMIT_BYTES");
	if (root)
		tl_sh("rm -rf '%s'", root);
	free(root);
	cl_tree_free(&start);
	cl_tree_free(&ref);
	free(view);
	return 0;
}

static int convert(const char *dir, struct vxm_io *io, struct vxm_merge_result *r, struct vxm_err *err)
{
	char top[1300], out[1300];

	snprintf(top, sizeof(top), "%s/%s", dir, cl_top_name());
	snprintf(out, sizeof(out), "%s/out.raw", dir);
	struct vxm_merge_opts o = {
		.top = top, .out = out, .out_format = VXM_OUT_RAW, .seed = 42,
		.no_clone = true, .chunk_size = CHUNK, .queue_depth = 4, .io = io,
	};
	return vxm_merge_run(&o, r, err);
}

struct ctx {
	char dir[1200];
	struct vxm_io low, fio, plain;
	struct tally t;
};

static void bad(struct ctx *x, const char *what, const char *why)
{
	x->t.bad++;
	if (x->t.bad <= 12)
		fprintf(stderr, "  FAIL %s: %s\n", what, why);
}

/* The journal left by a failed run, if any, claims [0, cursor) of the
 * partial file: those bytes must be the chain's.  why says what is wrong. */
static bool leftovers_honest(struct ctx *x, char *why, size_t cap)
{
	char jpath[1400], partial[1400];
	struct vxm_journal j;
	struct vxm_err err = { 0 };
	struct cl_blob p = { 0 };
	struct stat st;
	bool ok = true;

	snprintf(jpath, sizeof(jpath), "%s/out.raw.vxmerge-journal", x->dir);
	snprintf(partial, sizeof(partial), "%s/out.raw.vxmerge-partial", x->dir);
	if (stat(jpath, &st) != 0)
		return true; /* nothing recorded: a re-run starts over */
	int ret = vxm_journal_load(&j, jpath, &err);
	if (ret) {
		snprintf(why, cap, "the journal does not load: %s", err.msg);
		return false;
	}
	x->t.journals++;
	uint64_t claimed = j.cursor < vsize ? j.cursor : vsize;
	if (!j.convert || j.out_format != VXM_OUT_RAW) {
		snprintf(why, cap, "the journal records another operation");
		ok = false;
	} else if (!cl_read_into(partial, &p) || p.len != vsize) {
		snprintf(why, cap, "the partial output is missing or not %llu bytes",
			 (unsigned long long)vsize);
		ok = false;
	} else if (memcmp(p.p, view, claimed)) {
		uint64_t at = 0;
		while (p.p[at] == view[at])
			at++;
		snprintf(why, cap, "the journal claims %llu bytes, but byte 0x%llx is not the chain's",
			 (unsigned long long)claimed, (unsigned long long)at);
		ok = false;
	}
	x->t.claimed_mib += (unsigned)(claimed >> 20);
	free(p.p);
	vxm_journal_fini(&j);
	return ok;
}

/* One faulted run and its checks; want: the error expected. */
static void one_run(struct ctx *x, const struct vxm_fault *f, int want, const char *what)
{
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	struct vxm_fault_counts fc;
	char m[1400], why[1600], d[600], out[1300];
	struct stat st;

	cl_tree_write(&start, x->dir);
	assert_int_equal(vxm_fault_reset(&x->fio), 0);
	assert_int_equal(vxm_fault_arm(&x->fio, f), 0);
	int ret = convert(x->dir, &x->fio, &r, &err);
	assert_int_equal(vxm_fault_counts(&x->fio, &fc), 0);
	assert_int_equal(vxm_fault_arm(&x->fio, NULL), 0);
	assert_int_equal(x->fio.inflight, 0);
	x->t.runs++;
	vxm_err_format(&err, m, sizeof(m));
	snprintf(out, sizeof(out), "%s/out.raw", x->dir);
	if (!fc.injected) {
		/* commits are spaced by their cost too (merge.c ex_commit_due):
		 * a faster run may flush fewer times than the counting run */
		x->t.unreached++;
		if (ret) {
			snprintf(why, sizeof(why), "failed with nothing injected: %s", m);
			bad(x, what, why);
		} else if (!cl_dir_equals(x->dir, &ref, d, sizeof(d))) {
			snprintf(why, sizeof(why), "nothing injected, and %s", d);
			bad(x, what, why);
		}
		return;
	}
	if (ret != -want) {
		snprintf(why, sizeof(why), "returned %d (%s), not %d: %s", ret, vxm_strerror(ret), -want,
			 ret ? m : "success");
		bad(x, what, why);
	} else if (!strstr(m, x->dir)) {
		snprintf(why, sizeof(why), "the message names no file: %s", m);
		bad(x, what, why);
	} else if (stat(out, &st) == 0) {
		bad(x, what, "out.raw exists after the failure");
	} else if (!leftovers_honest(x, why, sizeof(why))) {
		bad(x, what, why);
	} else {
		x->t.clean++;
		x->t.clean_flush += f->err_op == VXM_IO_SYNC;
	}
	/* the re-run without faults; every fourth on the program's own I/O */
	bool own = x->t.reruns % 4 == 0;
	vxm_err_clear(&err);
	ret = convert(x->dir, own ? NULL : &x->plain, &r, &err);
	x->t.reruns++;
	x->t.resumed += r.resumed;
	if (ret) {
		snprintf(why, sizeof(why), "the re-run fails: %s", vxm_err_format(&err, m, sizeof(m)));
		bad(x, what, why);
	} else if (!cl_dir_equals(x->dir, &ref, d, sizeof(d))) {
		snprintf(why, sizeof(why), "after the re-run %s", d);
		bad(x, what, why);
	}
}

static void io_errors_in_a_raw_convert_fail_and_never_pass_for_complete(void **state)
{
	struct ctx x = { 0 };
	struct vxm_fault_counts c;
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char what[120], m[1400];
	double t0 = (double)time(NULL);
	(void)state;

	snprintf(x.dir, sizeof(x.dir), "%s/w", root);
	assert_int_equal(tl_sh("mkdir -p '%s'", x.dir), 0);
	assert_int_equal(vxm_io_init(&x.low, &cl_inline_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&x.fio, &vxm_io_fault_ops,
				     &(struct vxm_io_params){ .lower = &x.low }), 0);
	assert_int_equal(vxm_io_init(&x.plain, &cl_inline_ops, NULL), 0);

	/* the uninterrupted run: what there is to fail, and that it is right */
	cl_tree_write(&start, x.dir);
	int ret = convert(x.dir, &x.fio, &r, &err);
	if (ret)
		fprintf(stderr, "%s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	assert_int_equal(vxm_fault_counts(&x.fio, &c), 0);
	char d[600];
	assert_true(cl_dir_equals(x.dir, &ref, d, sizeof(d)));
	printf("raw convert of %llu MiB: %llu writes, %llu flushes, %llu commits\n",
	       (unsigned long long)(vsize >> 20), (unsigned long long)c.writes,
	       (unsigned long long)c.syncs, (unsigned long long)r.commits);
	/* the commits this test is about: one at least every 512 KiB */
	assert_true(r.commits >= (vsize >> 19) / 2);
	assert_true(c.syncs >= r.commits);

	for (unsigned n = 1; n <= c.writes; n++) {
		snprintf(what, sizeof(what), "EIO at write %u", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_WRITE, .err_at = n, .err_errno = EIO },
			EIO, what);
		snprintf(what, sizeof(what), "ENOSPC from write %u on", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_WRITE, .err_at = n, .err_sticky = true,
						 .err_errno = ENOSPC },
			ENOSPC, what);
	}
	for (unsigned n = 1; n <= c.syncs; n++) {
		snprintf(what, sizeof(what), "EIO at flush %u", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_SYNC, .err_at = n, .err_errno = EIO },
			EIO, what);
		snprintf(what, sizeof(what), "EIO from flush %u on", n);
		one_run(&x, &(struct vxm_fault){ .err_op = VXM_IO_SYNC, .err_at = n, .err_sticky = true,
						 .err_errno = EIO },
			EIO, what);
	}
	printf("  %u runs: %u failed cleanly (error returned, a file named, no out.raw; %u at a "
	       "flush), %u flushed "
	       "fewer times than N and completed; %u left a journal, whose cursors claimed %u MiB, "
	       "all of them the chain's; %u re-runs (%u resumed) ended with the chain's disk and "
	       "nothing else; failures: %u; %.0f s\n",
	       x.t.runs, x.t.clean, x.t.clean_flush, x.t.unreached, x.t.journals, x.t.claimed_mib, x.t.reruns,
	       x.t.resumed, x.t.bad, (double)time(NULL) - t0);
	vxm_io_fini(&x.fio);
	vxm_io_fini(&x.low);
	vxm_io_fini(&x.plain);
	assert_int_equal(x.t.bad, 0);
	assert_int_equal(x.t.clean + x.t.unreached, x.t.runs);
	/* every run reaches the flushes of its forced commits (one per 512 KiB) */
	assert_true(x.t.clean_flush >= 2 * (vsize >> 19) / 2);
	assert_true(x.t.journals > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(io_errors_in_a_raw_convert_fail_and_never_pass_for_complete),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
