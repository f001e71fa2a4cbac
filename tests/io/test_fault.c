/* tests/io/test_fault.c: the fault-injection wrapper (io/fault.c).
 *
 * Crash at the N-th write, the N-th sync, or a named durability point; the
 * op log; and rebuilding every state a crash could leave (I1-I4 of
 * io/fault.c).  Most cases wrap the mem backend (fast, byte-exact); one
 * wraps psync and rebuilds real files.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "include/vhdxmerge.h"

#define CRASHED (-VXM_ECRASHED)

struct fx {
	struct vxm_io lower, io;
	int f[2];
};

static void fx_open(struct fx *x, const struct vxm_io_ops *lower_ops, unsigned nfiles)
{
	static const uint8_t zero[1];

	memset(x, 0, sizeof(*x));
	assert_int_equal(vxm_io_init(&x->lower, lower_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&x->io, &vxm_io_fault_ops,
				     &(struct vxm_io_params){ .lower = &x->lower }), 0);
	for (unsigned i = 0; i < nfiles; i++) {
		x->f[i] = vxm_io_mem_add(&x->io, zero, 0, VXM_O_RDWR);
		assert_true(x->f[i] >= 0);
	}
}

static void fx_close(struct fx *x)
{
	vxm_io_fini(&x->io);
	vxm_io_fini(&x->lower);
}

static void pattern(uint8_t *b, size_t n, uint8_t v)
{
	memset(b, v, n);
}

/* The N-th write does not happen, and nothing happens after it. */
static void crash_at_the_nth_write_fails_it_and_every_later_op(void **state)
{
	struct fx x;
	uint8_t b[512];
	struct vxm_fault_counts c;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	pattern(b, sizeof(b), 1);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){ .crash_at_write = 3 }), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 0), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 512), 0);
	assert_false(vxm_fault_crashed(&x.io));
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 1024), CRASHED);
	assert_true(vxm_fault_crashed(&x.io));
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 1536), CRASHED);
	assert_int_equal(vxm_io_pread(&x.io, x.f[0], b, 512, 0), CRASHED);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "after", false), CRASHED);
	assert_int_equal(vxm_io_resize(&x.io, x.f[0], 0), CRASHED);
	/* the lower file saw exactly two writes */
	uint64_t size;
	assert_int_equal(vxm_io_size(&x.lower, x.f[0], &size), 0);
	assert_int_equal(size, 1024);
	assert_int_equal(vxm_fault_counts(&x.io, &c), 0);
	assert_int_equal(c.writes, 3); /* the crashing one is numbered, later ones not */
	assert_int_equal(c.syncs, 0);
	fx_close(&x);
}

static void crash_at_the_nth_sync_loses_that_sync(void **state)
{
	struct fx x;
	uint8_t b[512] = {0};
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){ .crash_at_sync = 2 }), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 0), 0);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "one", false), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 0), 0);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "two", true), CRASHED);
	assert_true(vxm_fault_crashed(&x.io));
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 0), CRASHED);
	fx_close(&x);
}

/* crash_at_tag names a durability point (O3); _nth picks its occurrence. */
static void crash_at_a_named_tag_counts_only_that_tag(void **state)
{
	struct fx x;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){
		.crash_at_tag = "bat-commit", .crash_at_tag_nth = 2 }), 0);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "journal", false), 0);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "bat-commit", false), 0);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "journal", false), 0);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "bat-commit", false), CRASHED);
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "journal", false), CRASHED);
	assert_int_equal(vxm_fault_tag_count(&x.io, "journal"), 2);
	assert_int_equal(vxm_fault_tag_count(&x.io, "bat-commit"), 2);
	assert_int_equal(vxm_fault_tag_count(&x.io, "never"), 0);
	fx_close(&x);
}

/* Countdowns restart at every arm; the totals do not. */
static void countdowns_restart_at_every_arm(void **state)
{
	struct fx x;
	uint8_t b[64] = {0};
	struct vxm_fault_counts c;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	for (unsigned i = 0; i < 5; i++)
		assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 64, 0), 0);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){
		.err_op = VXM_IO_WRITE, .err_at = 2, .err_errno = ENOSPC }), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 64, 0), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 64, 0), -ENOSPC);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 64, 0), 0);
	assert_int_equal(vxm_fault_counts(&x.io, &c), 0);
	assert_int_equal(c.writes, 8);
	assert_int_equal(c.injected, 1);
	assert_int_equal(vxm_fault_arm(&x.io, NULL), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 64, 0), 0);
	fx_close(&x);
}

/* Requests already forwarded when the crash happens report it too (I1). */
static void completions_reaped_after_the_crash_report_it(void **state)
{
	struct fx x;
	uint8_t b[4096] = {0};
	struct vxm_req w[3], s, *done[8];
	(void)state;

	fx_open(&x, &vxm_io_psync_ops, 0);
	char path[] = "/tmp/vxm_fault_inflight.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int f = vxm_io_add_fd(&x.io, fd, path, VXM_O_RDWR);
	assert_true(f >= 0);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){ .crash_at_sync = 1 }), 0);
	for (unsigned i = 0; i < 2; i++) {
		w[i] = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f, .off = i * 4096u,
					 .len = 4096, .buf = b };
		assert_int_equal(vxm_io_queue(&x.io, &w[i]), 0);
	}
	s = (struct vxm_req){ .op = VXM_IO_SYNC, .file = f, .tag = "t" };
	assert_int_equal(vxm_io_queue(&x.io, &s), 0);
	w[2] = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f, .len = 4096, .buf = b };
	assert_int_equal(vxm_io_queue(&x.io, &w[2]), 0);
	assert_true(vxm_io_submit(&x.io) >= 0);
	unsigned n = 0;
	while (x.io.inflight) {
		int r = vxm_io_reap(&x.io, 1, done + n, 8 - n);
		assert_true(r > 0);
		n += (unsigned)r;
	}
	assert_int_equal(n, 4);
	assert_int_equal(s.res, CRASHED);
	assert_int_equal(w[0].res, CRASHED);
	assert_int_equal(w[1].res, CRASHED);
	assert_int_equal(w[2].res, CRASHED);
	fx_close(&x);
	unlink(path);
}

/* The log holds every write (bytes copied), sync (tag) and resize in order. */
static void recording_logs_writes_syncs_and_resizes_in_order(void **state)
{
	struct fx x;
	uint8_t a[100], b[50];
	const struct vxm_fault_rec *r;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 2);
	assert_int_equal(vxm_fault_record(&x.io, true), 0);
	pattern(a, sizeof(a), 0xA1);
	pattern(b, sizeof(b), 0xB2);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], a, 100, 1000), 0);
	pattern(a, sizeof(a), 0); /* the log kept its own copy */
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "hdr", true), 0);
	assert_int_equal(vxm_io_resize(&x.io, x.f[1], 4096), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[1], b, 50, 7), 0);
	assert_int_equal(vxm_io_pread(&x.io, x.f[1], a, 10, 0), 10); /* not logged */
	size_t n = vxm_fault_recs(&x.io, &r);
	assert_int_equal(n, 4);
	assert_int_equal(r[0].kind, VXM_FAULT_REC_WRITE);
	assert_int_equal(r[0].file, x.f[0]);
	assert_int_equal(r[0].off, 1000);
	assert_int_equal(r[0].len, 100);
	for (unsigned i = 0; i < 100; i++)
		assert_int_equal(r[0].data[i], 0xA1);
	assert_int_equal(r[1].kind, VXM_FAULT_REC_SYNC);
	assert_string_equal(r[1].tag, "hdr");
	assert_true(r[1].full);
	assert_true(r[1].synced);
	assert_int_equal(r[2].kind, VXM_FAULT_REC_RESIZE);
	assert_int_equal(r[2].file, x.f[1]);
	assert_int_equal(r[2].off, 4096);
	assert_int_equal(r[3].kind, VXM_FAULT_REC_WRITE);
	assert_int_equal(r[3].off, 7);
	assert_memory_equal(r[3].data, b, 50);
	fx_close(&x);
}

/* A short write is logged as the pieces that really went down. */
static void short_writes_are_logged_as_their_pieces(void **state)
{
	struct fx x;
	uint8_t b[300];
	const struct vxm_fault_rec *r;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	for (unsigned i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)i;
	assert_int_equal(vxm_fault_record(&x.io, true), 0);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){
		.short_op = VXM_IO_WRITE, .short_at = 1, .short_sticky = true,
		.short_len = 128 }), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 300, 10), 0);
	size_t n = vxm_fault_recs(&x.io, &r);
	assert_int_equal(n, 3);
	uint64_t lens[3] = { 128, 128, 44 };
	for (unsigned i = 0, off = 0; i < 3; off += lens[i], i++) {
		assert_int_equal(r[i].off, 10 + off);
		assert_int_equal(r[i].len, lens[i]);
		assert_memory_equal(r[i].data, b + off, lens[i]);
	}
	fx_close(&x);
}

/* A write that fails underneath is marked failed and never replayed. */
static void a_write_failing_underneath_is_never_replayed(void **state)
{
	struct vxm_io mem, inner, outer, dst;
	uint8_t b[16];
	const struct vxm_fault_rec *r;
	(void)state;

	assert_int_equal(vxm_io_init(&mem, &vxm_io_mem_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&inner, &vxm_io_fault_ops,
				     &(struct vxm_io_params){ .lower = &mem }), 0);
	assert_int_equal(vxm_io_init(&outer, &vxm_io_fault_ops,
				     &(struct vxm_io_params){ .lower = &inner }), 0);
	int f = vxm_io_mem_add(&outer, b, 0, VXM_O_RDWR);
	assert_true(f >= 0);
	assert_int_equal(vxm_fault_record(&outer, true), 0);
	assert_int_equal(vxm_fault_arm(&inner, &(struct vxm_fault){
		.err_op = VXM_IO_WRITE, .err_at = 2 }), 0);
	pattern(b, sizeof(b), 1);
	assert_int_equal(vxm_io_pwrite(&outer, f, b, 16, 0), 0);
	pattern(b, sizeof(b), 2);
	assert_int_equal(vxm_io_pwrite(&outer, f, b, 16, 0), -EIO);
	assert_int_equal(vxm_fault_recs(&outer, &r), 2);
	assert_false(r[0].failed);
	assert_true(r[1].failed);
	assert_int_equal(vxm_io_init(&dst, &vxm_io_mem_ops, NULL), 0);
	int d = vxm_io_mem_add(&dst, b, 0, VXM_O_RDWR);
	int map[1] = { d };
	assert_int_equal(f, 0);
	assert_int_equal(vxm_fault_replay(&outer, 2, &dst, map), 0);
	assert_int_equal(vxm_io_pread(&dst, d, b, 16, 0), 16);
	assert_int_equal(b[0], 1);
	vxm_io_fini(&dst);
	vxm_io_fini(&outer);
	vxm_io_fini(&inner);
	vxm_io_fini(&mem);
}

/* Replaying every prefix of the log walks the file through its history. */
static void replaying_a_prefix_rebuilds_the_file_after_that_op(void **state)
{
	enum { OPS = 40, FSZ = 8192 };
	struct fx x;
	uint8_t model[OPS + 1][FSZ], buf[FSZ];
	uint64_t msize[OPS + 1];
	uint32_t rnd = 7;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	assert_int_equal(vxm_fault_record(&x.io, true), 0);
	memset(model[0], 0, FSZ);
	msize[0] = 0;
	for (unsigned i = 1; i <= OPS; i++) {
		memcpy(model[i], model[i - 1], FSZ);
		msize[i] = msize[i - 1];
		rnd = rnd * 1103515245 + 12345;
		if (i % 7 == 0) {
			uint64_t sz = (rnd >> 8) % FSZ;
			assert_int_equal(vxm_io_resize(&x.io, x.f[0], sz), 0);
			if (sz < msize[i])
				memset(model[i] + sz, 0, FSZ - sz);
			msize[i] = sz;
		} else {
			uint64_t off = (rnd >> 8) % (FSZ - 512), len = 1 + (rnd >> 20) % 512;
			pattern(buf, len, (uint8_t)i);
			assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], buf, len, off), 0);
			memcpy(model[i] + off, buf, len);
			if (off + len > msize[i])
				msize[i] = off + len;
		}
		if (i % 5 == 0) /* syncs are logged too and change nothing */
			assert_int_equal(vxm_io_sync(&x.io, x.f[0], "step", false), 0);
	}
	const struct vxm_fault_rec *r;
	size_t n = vxm_fault_recs(&x.io, &r);
	for (size_t k = 0, data = 0; k <= n; k++) {
		struct vxm_io dst;
		uint64_t sz;
		assert_int_equal(vxm_io_init(&dst, &vxm_io_mem_ops, NULL), 0);
		int d = vxm_io_mem_add(&dst, buf, 0, VXM_O_RDWR);
		assert_int_equal(vxm_fault_replay(&x.io, k, &dst, NULL), 0);
		assert_int_equal(d, 0);
		assert_int_equal(vxm_io_size(&dst, d, &sz), 0);
		assert_int_equal(sz, msize[data]);
		memset(buf, 0, FSZ);
		assert_int_equal(vxm_io_pread(&dst, d, buf, sz, 0), (int64_t)sz);
		assert_memory_equal(buf, model[data], FSZ);
		vxm_io_fini(&dst);
		if (k < n && r[k].kind != VXM_FAULT_REC_SYNC)
			data++;
	}
	fx_close(&x);
}

/* Crash states: what a completed sync covered is always there; each subset
 * of the later writes gives one state; a sync of one file does not make the
 * other file's writes durable (I2). */
static void every_crash_state_keeps_what_a_completed_sync_covered(void **state)
{
	struct fx x;
	uint8_t b[512];
	size_t idx[8];
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 2);
	assert_int_equal(vxm_fault_record(&x.io, true), 0);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){ .crash_at_tag = "commit" }), 0);
	pattern(b, 512, 'A');
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 0), 0);    /* durable */
	pattern(b, 512, 'X');
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[1], b, 512, 0), 0);    /* other file */
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "journal", false), 0);
	pattern(b, 512, 'B');
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 512), 0);  /* pending */
	pattern(b, 512, 'C');
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 512, 0), 0);    /* pending, over A */
	assert_int_equal(vxm_io_sync(&x.io, x.f[0], "commit", false), CRASHED);

	size_t np = vxm_fault_pending(&x.io, idx, 8);
	assert_int_equal(np, 3); /* X, B, C */
	for (unsigned mask = 0; mask < 8; mask++) {
		bool keep[3] = { mask & 1, mask & 2, mask & 4 };
		struct vxm_io dst;
		uint8_t got[1024];
		assert_int_equal(vxm_io_init(&dst, &vxm_io_mem_ops, NULL), 0);
		int d0 = vxm_io_mem_add(&dst, got, 0, VXM_O_RDWR);
		int d1 = vxm_io_mem_add(&dst, got, 0, VXM_O_RDWR);
		int map[2] = { [0] = d0, [1] = d1 };
		map[x.f[0]] = d0;
		map[x.f[1]] = d1;
		assert_int_equal(vxm_fault_replay_crash(&x.io, keep, 3, &dst, map), 0);
		memset(got, 0, sizeof(got));
		int64_t n0 = vxm_io_pread(&dst, d0, got, 1024, 0);
		assert_int_equal(got[0], keep[2] ? 'C' : 'A');
		assert_int_equal(n0, keep[1] ? 1024 : 512);
		if (keep[1])
			assert_int_equal(got[512], 'B');
		uint64_t s1;
		assert_int_equal(vxm_io_size(&dst, d1, &s1), 0);
		assert_int_equal(s1, keep[0] ? 512 : 0);
		vxm_io_fini(&dst);
	}
	fx_close(&x);
}

/* A sync whose completion was not seen before the crash covers nothing. */
static void a_sync_still_in_flight_at_the_crash_covers_nothing(void **state)
{
	struct fx x;
	uint8_t b[512] = {0};
	struct vxm_req w1, s, w2, *done[4];
	size_t idx[4];
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	assert_int_equal(vxm_fault_record(&x.io, true), 0);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){ .crash_at_write = 2 }), 0);
	w1 = (struct vxm_req){ .op = VXM_IO_WRITE, .file = x.f[0], .len = 512, .buf = b };
	s = (struct vxm_req){ .op = VXM_IO_SYNC, .file = x.f[0], .tag = "s" };
	w2 = (struct vxm_req){ .op = VXM_IO_WRITE, .file = x.f[0], .off = 512, .len = 512,
			       .buf = b };
	assert_int_equal(vxm_io_queue(&x.io, &w1), 0);
	assert_int_equal(vxm_io_queue(&x.io, &s), 0);
	assert_int_equal(vxm_io_queue(&x.io, &w2), 0); /* crashes here */
	assert_true(vxm_io_submit(&x.io) >= 0);
	unsigned n = 0;
	while (x.io.inflight)
		n += (unsigned)vxm_io_reap(&x.io, 1, done + n, 4 - n);
	assert_int_equal(n, 3);
	assert_int_equal(s.res, CRASHED);
	assert_int_equal(vxm_fault_pending(&x.io, idx, 4), 1); /* w1 */
	assert_int_equal(idx[0], 0);
	fx_close(&x);
}

/* Over psync with real files, a crash state is rebuilt into real files. */
static void crash_states_rebuild_into_real_files(void **state)
{
	struct vxm_io ps, io, dst;
	uint8_t b[4096], got[8192];
	char src[] = "/tmp/vxm_fault_src.XXXXXX", out[] = "/tmp/vxm_fault_out.XXXXXX";
	(void)state;

	int sfd = mkstemp(src), ofd = mkstemp(out);
	assert_true(sfd >= 0 && ofd >= 0);
	assert_int_equal(vxm_io_init(&ps, &vxm_io_psync_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&io, &vxm_io_fault_ops,
				     &(struct vxm_io_params){ .lower = &ps }), 0);
	int f = vxm_io_add_fd(&io, sfd, src, VXM_O_RDWR);
	assert_true(f >= 0);
	assert_int_equal(vxm_fault_record(&io, true), 0);
	assert_int_equal(vxm_fault_arm(&io, &(struct vxm_fault){ .crash_at_sync = 2 }), 0);
	pattern(b, sizeof(b), 'D');
	assert_int_equal(vxm_io_pwrite(&io, f, b, 4096, 0), 0);
	assert_int_equal(vxm_io_sync(&io, f, "first", false), 0);
	pattern(b, sizeof(b), 'P');
	assert_int_equal(vxm_io_pwrite(&io, f, b, 4096, 4096), 0);
	assert_int_equal(vxm_io_sync(&io, f, "second", false), CRASHED);

	assert_int_equal(vxm_io_init(&dst, &vxm_io_psync_ops, NULL), 0);
	int d = vxm_io_add_fd(&dst, ofd, out, VXM_O_RDWR);
	assert_true(d >= 0);
	int map[8];
	for (unsigned i = 0; i < 8; i++)
		map[i] = d;
	/* the state where the pending write was lost */
	assert_int_equal(vxm_fault_replay_crash(&io, (bool[]){ false }, 1, &dst, map), 0);
	assert_int_equal(vxm_io_pread(&dst, d, got, sizeof(got), 0), 4096);
	assert_int_equal(got[0], 'D');
	assert_int_equal(got[4095], 'D');
	/* and the one where it made it */
	assert_int_equal(vxm_fault_replay_crash(&io, (bool[]){ true }, 1, &dst, map), 0);
	assert_int_equal(vxm_io_pread(&dst, d, got, sizeof(got), 0), 8192);
	assert_int_equal(got[4096], 'P');
	vxm_io_fini(&dst);
	vxm_io_fini(&io);
	vxm_io_fini(&ps);
	unlink(src);
	unlink(out);
}

static void reset_clears_the_crash_the_counters_and_the_log(void **state)
{
	struct fx x;
	uint8_t b[8] = {0};
	struct vxm_fault_counts c;
	const struct vxm_fault_rec *r;
	(void)state;

	fx_open(&x, &vxm_io_mem_ops, 1);
	assert_int_equal(vxm_fault_record(&x.io, true), 0);
	assert_int_equal(vxm_fault_arm(&x.io, &(struct vxm_fault){ .crash_at_write = 2 }), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 8, 0), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 8, 0), CRASHED);
	assert_int_equal(vxm_fault_reset(&x.io), 0);
	assert_false(vxm_fault_crashed(&x.io));
	assert_int_equal(vxm_fault_counts(&x.io, &c), 0);
	assert_int_equal(c.writes, 0);
	assert_int_equal(vxm_fault_recs(&x.io, &r), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 8, 0), 0);
	assert_int_equal(vxm_io_pwrite(&x.io, x.f[0], b, 8, 0), 0); /* disarmed */
	fx_close(&x);
}

static void controls_refuse_a_context_that_is_not_a_fault_wrapper(void **state)
{
	struct vxm_io io;
	struct vxm_fault_counts c;
	const struct vxm_fault_rec *r;
	(void)state;

	assert_int_equal(vxm_io_init(&io, &vxm_io_mem_ops, NULL), 0);
	assert_int_equal(vxm_fault_arm(&io, NULL), -EINVAL);
	assert_int_equal(vxm_fault_record(&io, true), -EINVAL);
	assert_int_equal(vxm_fault_counts(&io, &c), -EINVAL);
	assert_int_equal(vxm_fault_reset(&io), -EINVAL);
	assert_int_equal(vxm_fault_recs(&io, &r), 0);
	assert_false(vxm_fault_crashed(&io));
	vxm_io_fini(&io);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crash_at_the_nth_write_fails_it_and_every_later_op),
		cmocka_unit_test(crash_at_the_nth_sync_loses_that_sync),
		cmocka_unit_test(crash_at_a_named_tag_counts_only_that_tag),
		cmocka_unit_test(countdowns_restart_at_every_arm),
		cmocka_unit_test(completions_reaped_after_the_crash_report_it),
		cmocka_unit_test(recording_logs_writes_syncs_and_resizes_in_order),
		cmocka_unit_test(short_writes_are_logged_as_their_pieces),
		cmocka_unit_test(a_write_failing_underneath_is_never_replayed),
		cmocka_unit_test(replaying_a_prefix_rebuilds_the_file_after_that_op),
		cmocka_unit_test(every_crash_state_keeps_what_a_completed_sync_covered),
		cmocka_unit_test(a_sync_still_in_flight_at_the_crash_covers_nothing),
		cmocka_unit_test(crash_states_rebuild_into_real_files),
		cmocka_unit_test(reset_clears_the_crash_the_counters_and_the_log),
		cmocka_unit_test(controls_refuse_a_context_that_is_not_a_fault_wrapper),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
