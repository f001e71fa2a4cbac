/* tests/engine/test_writer_crash.c: power loss at every write and every
 * flush of a small write session (acceptance item 4).
 *
 * The session runs on the fault-injection wrapper (io/fault.c) with
 * recording on, armed to "lose power" at the N-th write (N = 1..W) or the
 * N-th sync (N = 1..S) of the run.  Each cut yields several disk states:
 * every write made durable by a completed flush, plus a subset of the
 * pending ones (none, all, every other, only the last; under VXM_SANITIZED=1
 * none and one of the others, in turn).  Each state is
 * rebuilt on a fresh copy of the starting file and must
 *   - open read-only (the log replayed in memory) and read as S_j or
 *     S_j+1, where S_0..S_k are the disk contents after each logged update
 *     of the workload and j the updates that had completed (their flush
 *     returned) before the cut;
 *   - replay in place on a writable open, read the same, end with a zero
 *     LogGuid and pass `vhdxmerge check` (no overlaps, no bad entries).
 * The workload only writes where no reader looks yet (new blocks, bit-0
 * sectors of a partial block, ZERO through the BAT), so each update is
 * atomic through the log (engine/writer.c I2, I3, I5).  A base and a
 * differencing start file are both cut. */
#include "wtest.h"

static char *tmp;

static int setup(void **state)
{
	(void)state;
	/* tmpfs when there is one: the session's hundreds of fsyncs are real,
	 * and the crash states are built by the fault log, not by the disk */
	struct stat st;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
		tmp = strdup("/dev/shm/vxm-wcrash.XXXXXX");
		if (!tmp || !mkdtemp(tmp)) {
			free(tmp);
			tmp = NULL;
		}
	}
	if (!tmp)
		tmp = tl_mkdtemp("wcrash");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", tmp);
	free(tmp);
	return 0;
}

#define LSS 512u
#define BS (1u << 20)
#define VSIZE ((8ull << 20) + 3 * LSS)
#define MAXOPS 16

struct fx {
	bool diff;
	char base[512];   /* the parent (diff) */
	char start[512];  /* the file the session runs on, as it starts */
	char link[64];    /* parent_linkage text */
	unsigned nops;
	char sha[MAXOPS + 1][65]; /* S_0..S_nops */
};

/* Runs the first `limit` ops (each one logged update, ending with a
 * flush) on w and/or mirror m.  Returns the ops that completed. */
static unsigned workload(struct fx *fx, struct vxm_writer *w, struct wt_mirror *m, unsigned limit)
{
	static uint8_t buf[3 * BS];
	struct vxm_err err = { 0 };
	unsigned done = 0;

#define OP(call, mirror)                                                      \
	do {                                                                  \
		if (done == limit)                                            \
			return done;                                          \
		if (w && ((call) || vxm_writer_flush(w, &err)))               \
			return done;                                          \
		if (m) {                                                      \
			mirror;                                               \
		}                                                             \
		done++;                                                       \
	} while (0)

	/* 1: a new block, partially (an odd run) */
	wt_fill(buf, 37 * LSS, 11, 1);
	OP(vxm_writer_write(w, 2 * BS + 5 * LSS, buf, 37 * LSS, &err),
	   wt_mirror_write(m, 2 * BS + 5 * LSS, buf, 37 * LSS));
	/* 2: more sectors of the same block (bit-0 sectors in a child) */
	wt_fill(buf, 3 * LSS, 11, 2);
	OP(vxm_writer_write(w, 2 * BS + 100 * LSS, buf, 3 * LSS, &err),
	   wt_mirror_write(m, 2 * BS + 100 * LSS, buf, 3 * LSS));
	/* 3: ZERO over data (block 0 of the base) */
	OP(vxm_writer_zero(w, 0, BS, VXM_ZERO_STATE, &err), wt_mirror_write(m, 0, NULL, BS));
	/* 4: a whole new block */
	wt_fill(buf, BS, 11, 4);
	OP(vxm_writer_write(w, 5 * BS, buf, BS, &err), wt_mirror_write(m, 5 * BS, buf, BS));
	/* 5: the trailing partial block */
	wt_fill(buf, 3 * LSS, 11, 5);
	OP(vxm_writer_write(w, VSIZE - 3 * LSS, buf, 3 * LSS, &err),
	   wt_mirror_write(m, VSIZE - 3 * LSS, buf, 3 * LSS));
	/* 6: (children) the parent locator, moved through the log */
	if (fx->diff) {
		struct vxm_kv kv[] = { { "parent_linkage", fx->link },
				       { "relative_path", ".\\.\\d-base.vhdx" } };
		OP(vxm_writer_set_locator(w, kv, 2, &err), (void)0);
	}
	/* 7: two new blocks and zero data in a third, one transaction */
	wt_fill(buf, 2 * BS - 2 * LSS, 11, 7);
	OP(vxm_writer_write(w, 6 * BS + LSS, buf, 2 * BS - 2 * LSS, &err) ||
		   vxm_writer_zero(w, 3 * BS + 8 * LSS, 8 * LSS, VXM_ZERO_DATA, &err),
	   (wt_mirror_write(m, 6 * BS + LSS, buf, 2 * BS - 2 * LSS),
	    wt_mirror_write(m, 3 * BS + 8 * LSS, NULL, 8 * LSS)));
#undef OP
	return done;
}

/* SHA-256 of what file shows (through the base for a child). */
static int content_sha(const struct fx *fx, const char *file, char out[65])
{
	char *chain[2] = { (char *)fx->base, (char *)file };
	return fx->diff ? wt_chain_sha(chain, 2, out) : wt_image_sha(file, out);
}

static void fx_prepare(struct fx *fx, bool diff)
{
	struct vxm_image *img;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	static uint8_t buf[2 * BS];
	char raw[600];

	memset(fx, 0, sizeof(*fx));
	fx->diff = diff;
	snprintf(fx->base, sizeof(fx->base), "%s/d-base.vhdx", tmp);
	snprintf(fx->start, sizeof(fx->start), "%s/%s", tmp, diff ? "d-start.avhdx" : "b-start.vhdx");
	unlink(fx->base);
	unlink(fx->start);
	const char *first = diff ? fx->base : fx->start;
	wt_create(first, &(struct vxm_create_params){ .virtual_size = VSIZE, .block_size = BS });
	wt_begin(first, &img, &w);
	wt_fill(buf, 2 * BS, 3, 3);
	assert_int_equal(vxm_writer_write(w, 0, buf, 2 * BS, &err), 0);
	wt_end(img, w);
	if (diff) {
		wt_create(fx->start, &(struct vxm_create_params){ .parent = fx->base,
								  .block_size = BS });
		char g[VXM_GUID_STRLEN + 1];
		assert_int_equal(vxm_image_open(&img, NULL, fx->base, 0, &err), 0);
		snprintf(fx->link, sizeof(fx->link), "{%s}", vxm_guid_fmt(&img->hdr.data_write, g));
		vxm_image_close(img);
	}
	/* S_i: the mirror after the first i ops */
	snprintf(raw, sizeof(raw), "%s.raw", fx->start);
	fx->nops = workload(fx, NULL, NULL, MAXOPS);
	for (unsigned i = 0; i <= fx->nops; i++) {
		struct wt_mirror m;
		wt_mirror_open(&m, raw, VSIZE);
		wt_mirror_write(&m, 0, buf, 2 * BS);
		assert_int_equal(workload(fx, NULL, &m, i), i);
		wt_mirror_close(&m);
		assert_int_equal(tl_sha256_file(raw, fx->sha[i]), 0);
	}
	unlink(raw);
	char s0[65];
	assert_int_equal(content_sha(fx, fx->start, s0), 0);
	assert_string_equal(s0, fx->sha[0]);
}

struct run {
	struct vxm_io lower, fio;
	struct vxm_image *img;
	unsigned done;
	int slot;
};

/* Runs the workload on a copy of the start file through the fault wrapper
 * armed with f; the recording stays in r->fio until run_fini. */
static void run_start(struct fx *fx, struct run *r, const struct vxm_fault *f, const char *work)
{
	struct vxm_io_params p = { 0 };
	struct vxm_err err = { 0 };
	struct vxm_writer *w = NULL;

	memset(r, 0, sizeof(*r));
	assert_int_equal(tl_copy_file(fx->start, work), 0);
	assert_int_equal(vxm_io_init(&r->lower, &vxm_io_psync_ops, NULL), 0);
	p.lower = &r->lower;
	assert_int_equal(vxm_io_init(&r->fio, &vxm_io_fault_ops, &p), 0);
	assert_int_equal(vxm_fault_record(&r->fio, true), 0);
	assert_int_equal(vxm_fault_arm(&r->fio, f), 0);
	assert_int_equal(vxm_image_open(&r->img, &r->fio, work, VXM_IMAGE_RDWR, &err), 0);
	r->slot = r->img->slot;
	assert_int_equal(vxm_writer_begin(&w, r->img, &err), 0);
	r->done = workload(fx, w, NULL, MAXOPS);
	int ret = vxm_writer_end(w, &err);
	if (!f) {
		assert_int_equal(ret, 0);
		assert_int_equal(r->done, fx->nops);
	} else {
		/* a crash or an injected error always surfaces */
		assert_int_not_equal(ret, 0);
		assert_true(vxm_fault_crashed(&r->fio) || !f->crash_at_write);
	}
	vxm_image_close(r->img);
	r->img = NULL;
}

static void run_fini(struct run *r)
{
	vxm_io_fini(&r->fio);
	vxm_io_fini(&r->lower);
}

/* Rebuilds one crash state of r on a copy of the start file (dst). */
static void crash_state(struct fx *fx, struct run *r, const bool *keep, size_t nkeep,
			const char *dst)
{
	struct vxm_io d;
	int map[64];

	assert_int_equal(tl_copy_file(fx->start, dst), 0);
	assert_int_equal(vxm_io_init(&d, &vxm_io_psync_ops, NULL), 0);
	int slot = vxm_io_open(&d, dst, VXM_O_RDWR);
	assert_true(slot >= 0);
	assert_true(r->slot < 64);
	for (int i = 0; i < 64; i++)
		map[i] = slot;
	assert_int_equal(vxm_fault_replay_crash(&r->fio, keep, nkeep, &d, map), 0);
	vxm_io_fini(&d);
}

/* The checks of one crash state; returns the state index it matched. */
static int verify_state(struct fx *fx, const char *file, unsigned done, const char *what)
{
	char sha[65], sha2[65];
	int ret = content_sha(fx, file, sha);

	if (ret) {
		fprintf(stderr, "%s: does not open/read (%d)\n", what, ret);
		fail();
	}
	int match = -1;
	for (unsigned i = done; i <= done + 1 && i <= fx->nops; i++)
		if (!strcmp(sha, fx->sha[i]))
			match = (int)i;
	if (match < 0) {
		fprintf(stderr, "%s: content %.16s is neither S_%u nor S_%u\n", what, sha, done,
			done + 1);
		for (unsigned i = 0; i <= fx->nops; i++)
			fprintf(stderr, "  S_%u %.16s\n", i, fx->sha[i]);
		fail();
	}
	/* in place: a writable open replays and clears the LogGuid; then every
	 * structural rule holds (before, check counts the dirty log itself) */
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_image_open(&img, NULL, file, VXM_IMAGE_RDWR, &err), 0);
	assert_true(vxm_guid_is_zero(&img->hdr.log_guid));
	if (fx->diff) {
		/* the locator is the old or the new one, whole */
		assert_true(!strcmp(img->loc->relative_path, ".\\d-base.vhdx") ||
			    !strcmp(img->loc->relative_path, ".\\.\\d-base.vhdx"));
	}
	vxm_image_close(img);
	assert_int_equal(content_sha(fx, file, sha2), 0);
	assert_string_equal(sha, sha2);
	wt_check_clean(file);
	return match;
}

static void cut_everywhere(bool diff)
{
	struct fx fx;
	struct run r;
	struct vxm_fault_counts c;
	char work[600], dst[600];
	unsigned cuts = 0, states = 0, hist[MAXOPS + 1] = { 0 };

	fx_prepare(&fx, diff);
	snprintf(work, sizeof(work), "%s.work", fx.start);
	snprintf(dst, sizeof(dst), "%s.crash", fx.start);

	/* the uncut run: how many writes and syncs there are */
	run_start(&fx, &r, NULL, work);
	assert_int_equal(vxm_fault_counts(&r.fio, &c), 0);
	run_fini(&r);
	char sha[65];
	assert_int_equal(content_sha(&fx, work, sha), 0);
	assert_string_equal(sha, fx.sha[fx.nops]);

	const char *san = getenv("VXM_SANITIZED");
	bool sanitized = san && *san == '1';
	for (int kind = 0; kind < 2; kind++) {
		uint64_t n = kind ? c.syncs : c.writes;
		for (uint64_t k = 1; k <= n; k++) {
			struct vxm_fault f = { 0 };
			if (kind)
				f.crash_at_sync = (unsigned)k;
			else
				f.crash_at_write = (unsigned)k;
			run_start(&fx, &r, &f, work);
			assert_true(vxm_fault_crashed(&r.fio));
			cuts++;
			size_t np = vxm_fault_pending(&r.fio, NULL, 0);
			bool *keep = calloc(np + 1, sizeof(bool));
			for (int pat = 0; pat < 4; pat++) {
				if (pat && !np)
					break;
				/* sanitized builds look for memory errors: the
				 * durable state and one other pattern per cut */
				if (sanitized && pat && pat != (int)(1 + k % 3))
					continue;
				for (size_t i = 0; i < np; i++)
					keep[i] = pat == 1 || (pat == 2 && i % 2 == 0) ||
						  (pat == 3 && i == np - 1);
				crash_state(&fx, &r, keep, np, dst);
				char what[128];
				snprintf(what, sizeof(what), "%s cut at %s %llu, pending %zu, pattern %d",
					 diff ? "child" : "base", kind ? "sync" : "write",
					 (unsigned long long)k, np, pat);
				hist[verify_state(&fx, dst, r.done, what)]++;
				states++;
			}
			free(keep);
			run_fini(&r);
		}
	}
	printf("%s: %llu writes, %llu syncs in the session; cut points: %u, crash states: %u\n",
	       diff ? "differencing" : "dynamic base", (unsigned long long)c.writes,
	       (unsigned long long)c.syncs, cuts, states);
	printf("  states seen:");
	for (unsigned i = 0; i <= fx.nops; i++)
		printf(" S_%u x%u", i, hist[i]);
	printf("\n");
}

/* An I/O error (not a crash) at each write and each flush: the session
 * goes FAILED, vxm_writer_end reports the error and writes nothing more
 * (the LogGuid stays set when an entry may be unapplied), and the file as
 * left reads as before or after the update in flight once reopened. */
static void an_io_error_at_any_write_or_flush_fails_the_session_cleanly(void **state)
{
	struct fx fx;
	struct run r;
	struct vxm_fault_counts c;
	char work[600];
	unsigned errors = 0;
	(void)state;

	fx_prepare(&fx, true);
	snprintf(work, sizeof(work), "%s.work", fx.start);
	run_start(&fx, &r, NULL, work);
	assert_int_equal(vxm_fault_counts(&r.fio, &c), 0);
	run_fini(&r);
	for (int kind = 0; kind < 2; kind++) {
		uint64_t n = kind ? c.syncs : c.writes;
		for (uint64_t k = 1; k <= n; k++) {
			struct vxm_fault f = { .err_op = kind ? VXM_IO_SYNC : VXM_IO_WRITE,
					       .err_at = (unsigned)k, .err_errno = kind ? EIO : ENOSPC };
			run_start(&fx, &r, &f, work);
			assert_false(vxm_fault_crashed(&r.fio));
			run_fini(&r);
			char what[128];
			snprintf(what, sizeof(what), "error at %s %llu", kind ? "sync" : "write",
				 (unsigned long long)k);
			verify_state(&fx, work, r.done, what);
			errors++;
		}
	}
	printf("I/O errors injected at %u points: each session failed cleanly\n", errors);
}

/* Acceptance (4), a dynamic base. */
static void power_loss_at_every_write_and_flush_of_a_base_leaves_before_or_after(void **state)
{
	(void)state;
	cut_everywhere(false);
}

/* Acceptance (4), a differencing child (bitmaps, the locator). */
static void power_loss_at_every_write_and_flush_of_a_child_leaves_before_or_after(void **state)
{
	(void)state;
	cut_everywhere(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(power_loss_at_every_write_and_flush_of_a_base_leaves_before_or_after),
		cmocka_unit_test(power_loss_at_every_write_and_flush_of_a_child_leaves_before_or_after),
		cmocka_unit_test(an_io_error_at_any_write_or_flush_fails_the_session_cleanly),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
