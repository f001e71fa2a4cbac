/* tests/io/test_conformance.c: one contract, every backend.
 *
 * The same cases run against psync, uring (skipped where io_uring cannot be
 * set up), mem (where the case applies to memory files), and the fault
 * wrapper over psync and over uring.  Cases cite the ordering rules of
 * io/io.h (O1-O4).  A last group checks the registry: "auto" picks uring and
 * falls back to psync with one log line.
 *
 * Files live under $VXM_TEST_TMP (or /tmp) in a directory removed at exit.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "include/vhdxmerge.h"

struct backend {
	const char *name;
	const struct vxm_io_ops *ops; /* the leaf backend */
	bool fault;                   /* wrapped in the fault layer */
	bool files;                   /* real files, not memory */
};

static const struct backend backends[] = {
	{ "psync", &vxm_io_psync_ops, false, true },
	{ "uring", &vxm_io_uring_ops, false, true },
	{ "mem", &vxm_io_mem_ops, false, false },
	{ "fault+psync", &vxm_io_psync_ops, true, true },
	{ "fault+uring", &vxm_io_uring_ops, true, true },
};

static const struct backend *cur;
static bool cur_ok;
static char tmpdir[PATH_MAX / 2];
static unsigned file_seq;

/* One context under test, optionally with an extra fault layer on top that
 * the case drives (short transfers, errors) while the backend row is what
 * sits beneath it. */
struct t {
	struct vxm_io leaf, wrap, extra;
	struct vxm_io *io;      /* the top of the stack */
	struct vxm_io *below;   /* what the extra fault layer wraps, if any */
	bool has_extra;
	char path[8][PATH_MAX];
};

static void t_init(struct t *t, unsigned depth, bool extra)
{
	struct vxm_io_params p = { .queue_depth = depth };

	memset(t, 0, sizeof(*t));
	assert_int_equal(vxm_io_init(&t->leaf, cur->ops, &p), 0);
	t->io = &t->leaf;
	if (cur->fault) {
		p.lower = &t->leaf;
		assert_int_equal(vxm_io_init(&t->wrap, &vxm_io_fault_ops, &p), 0);
		t->io = &t->wrap;
	}
	if (extra) {
		t->below = t->io;
		p.lower = t->io;
		assert_int_equal(vxm_io_init(&t->extra, &vxm_io_fault_ops, &p), 0);
		t->io = &t->extra;
		t->has_extra = true;
	}
}

static void t_fini(struct t *t)
{
	if (t->has_extra)
		vxm_io_fini(&t->extra);
	if (cur->fault)
		vxm_io_fini(&t->wrap);
	vxm_io_fini(&t->leaf);
	for (unsigned i = 0; i < 8; i++)
		if (t->path[i][0])
			unlink(t->path[i]);
}

/* A fresh zero-filled file of size bytes on t->io; returns its slot. */
static int t_file(struct t *t, uint64_t size, unsigned flags)
{
	int slot;

	if (!cur->files) {
		void *z = calloc(1, size ? size : 1);
		assert_non_null(z);
		slot = vxm_io_mem_add(t->io, z, size, VXM_O_RDWR);
		free(z);
		assert_true(slot >= 0);
		return slot;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s-%u", tmpdir, cur->name, file_seq++);
	unlink(path);
	slot = vxm_io_open(t->io, path, VXM_O_RDWR | VXM_O_CREATE | flags);
	assert_true(slot >= 0);
	assert_true(slot < 8);
	strcpy(t->path[slot], path);
	if (size)
		assert_int_equal(vxm_io_resize(t->io, slot, size), 0);
	return slot;
}

static void fill(uint8_t *b, size_t n, unsigned seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (uint8_t)x;
	}
}

/* Reaps until every request queued on io is back; returns how many. */
static unsigned reap_all(struct vxm_io *io, struct vxm_req **order, unsigned max)
{
	unsigned n = 0;
	while (io->inflight) {
		int r = vxm_io_reap(io, 1, order + n, max - n);
		assert_true(r > 0);
		n += (unsigned)r;
	}
	return n;
}

/* One CLONE or COPY request through queue, submit and reap: its result. */
static int64_t offload(struct vxm_io *io, uint8_t op, int dst, uint64_t dst_off, int src,
		       uint64_t src_off, uint64_t len)
{
	struct vxm_req r = { .op = op, .file = dst, .off = dst_off, .len = len, .src_file = src,
			     .src_off = src_off },
		       *done;

	assert_int_equal(vxm_io_queue(io, &r), 0);
	assert_true(vxm_io_submit(io) >= 0);
	assert_int_equal(reap_all(io, &done, 1), 1);
	assert_ptr_equal(done, &r);
	return r.res;
}

static void need(bool files)
{
	if (!cur_ok)
		skip();
	if (files && !cur->files)
		skip();
}

/* ---- cases ---- */

/* O4: every write completes whole and reads return exactly what was written. */
static void write_then_read_round_trips_every_byte(void **state)
{
	need(false);
	enum { N = 16, SZ = 65536 };
	struct t t;
	struct vxm_req w[N], r[N], *done[2 * N];
	uint8_t *src = malloc(N * SZ), *dst = malloc(N * SZ);
	(void)state;

	t_init(&t, 0, false);
	int f = t_file(&t, 0, 0);
	fill(src, N * SZ, 1);
	for (unsigned i = 0; i < N; i++) { /* scattered order */
		unsigned k = (i * 7) % N;
		w[i] = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f, .off = (uint64_t)k * SZ,
					 .len = SZ, .buf = src + (size_t)k * SZ };
		assert_int_equal(vxm_io_queue(t.io, &w[i]), 0);
	}
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(reap_all(t.io, done, 2 * N), N);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(w[i].res, SZ);
	memset(dst, 0, N * SZ);
	for (unsigned i = 0; i < N; i++) {
		r[i] = (struct vxm_req){ .op = VXM_IO_READ, .file = f, .off = (uint64_t)i * SZ,
					 .len = SZ, .buf = dst + (size_t)i * SZ };
		assert_int_equal(vxm_io_queue(t.io, &r[i]), 0);
	}
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(reap_all(t.io, done, 2 * N), N);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(r[i].res, SZ);
	assert_memory_equal(src, dst, N * SZ);

	/* odd sizes and offsets through the synchronous helpers */
	assert_int_equal(vxm_io_pwrite(t.io, f, src + 3, 1000, 12345), 0);
	assert_int_equal(vxm_io_pread(t.io, f, dst, 1000, 12345), 1000);
	assert_memory_equal(src + 3, dst, 1000);
	assert_true(t.io->stats.bytes_written >= N * SZ + 1000);
	assert_true(t.io->stats.max_inflight >= 1);
	t_fini(&t);
	free(src);
	free(dst);
}

/* O4: a read reaching EOF returns the bytes read, the rest untouched. */
static void read_at_end_of_file_is_short_and_leaves_the_rest_untouched(void **state)
{
	struct t t;
	uint8_t data[10000], buf[8192];
	(void)state;

	need(false);
	t_init(&t, 0, false);
	int f = t_file(&t, 0, 0);
	fill(data, sizeof(data), 2);
	assert_int_equal(vxm_io_pwrite(t.io, f, data, sizeof(data), 0), 0);
	memset(buf, 0xAA, sizeof(buf));
	assert_int_equal(vxm_io_pread(t.io, f, buf, sizeof(buf), 4096), 10000 - 4096);
	assert_memory_equal(buf, data + 4096, 10000 - 4096);
	for (size_t i = 10000 - 4096; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xAA);
	assert_int_equal(vxm_io_pread(t.io, f, buf, sizeof(buf), 20000), 0);
	assert_int_equal(vxm_io_pread(t.io, f, buf, sizeof(buf), 10000), 0);
	t_fini(&t);
}

/* O1: a SYNC starts only after every earlier request completed, so when it is
 * reaped every earlier write was reaped before it and is visible through an
 * unrelated descriptor; for uring this is IOSQE_IO_DRAIN at work. */
static void sync_waits_for_every_earlier_write(void **state)
{
	need(false);
	enum { N = 24, AFTER = 4, SZ = 128 * 1024, ROUNDS = 16 };
	struct t t;
	struct vxm_req w[N + AFTER], s, *done[N + AFTER + 1];
	uint8_t *src = aligned_alloc(4096, (N + AFTER) * SZ), *chk = malloc(SZ);
	(void)state;

	t_init(&t, 64, false);
	/* O_DIRECT writes complete asynchronously on uring, so a SYNC without
	 * the drain would overtake them; buffered rounds run on the other file */
	int files[2] = { t_file(&t, 0, 0), t_file(&t, 0, cur->files ? VXM_O_DIRECT : 0) };
	for (unsigned round = 0; round < ROUNDS; round++) {
		int f = files[round & 1];
		fill(src, (N + AFTER) * SZ, 10 + round);
		for (unsigned i = 0; i < N + AFTER; i++) {
			w[i] = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f,
						 .off = (uint64_t)i * SZ, .len = SZ,
						 .buf = src + (size_t)i * SZ, .owner = &w[i] };
			if (i == N) {
				s = (struct vxm_req){ .op = VXM_IO_SYNC, .file = f,
						      .tag = "conformance-barrier" };
				assert_int_equal(vxm_io_queue(t.io, &s), 0);
			}
			assert_int_equal(vxm_io_queue(t.io, &w[i]), 0);
		}
		assert_true(vxm_io_submit(t.io) >= 0);
		unsigned n = 0, before = 0;
		bool seen_sync = false;
		while (t.io->inflight) {
			struct vxm_req *one;
			assert_int_equal(vxm_io_reap(t.io, 1, &one, 1), 1);
			done[n++] = one;
			if (one == &s) {
				assert_int_equal(s.res, 0);
				seen_sync = true;
				/* every earlier write already came back ... */
				for (unsigned k = 0; k < n - 1; k++)
					if (done[k] != &s && (struct vxm_req *)done[k]->owner < &w[N])
						before++;
				assert_int_equal(before, N);
				/* ... and its bytes are in the file for anyone to read */
				if (cur->files) {
					int fd = open(t.path[f], O_RDONLY | O_CLOEXEC);
					assert_true(fd >= 0);
					for (unsigned k = 0; k < N; k++) {
						assert_int_equal(pread(fd, chk, SZ, (off_t)k * SZ), SZ);
						assert_memory_equal(chk, src + (size_t)k * SZ, SZ);
					}
					close(fd);
				}
			}
		}
		assert_true(seen_sync);
		assert_int_equal(n, N + AFTER + 1);
		for (unsigned i = 0; i < N + AFTER; i++)
			assert_int_equal(w[i].res, SZ);
	}
	t_fini(&t);
	free(src);
	free(chk);
}

/* O4: short transfers underneath (the fault layer moves 1000 bytes per op)
 * are finished by the generic layer above it: writes complete whole, reads
 * complete whole except at end of file. */
static void short_transfers_underneath_are_completed_above(void **state)
{
	need(false);
	enum { SZ = 65536 };
	struct t t;
	struct vxm_fault_counts c;
	uint8_t *src = malloc(SZ), *dst = malloc(SZ);
	struct vxm_req w, r, *done[2];
	(void)state;

	t_init(&t, 0, true);
	int f = t_file(&t, 0, 0);
	fill(src, SZ, 3);
	assert_int_equal(vxm_fault_arm(t.io, &(struct vxm_fault){
		.short_op = VXM_IO_WRITE, .short_at = 1, .short_sticky = true,
		.short_len = 1000 }), 0);
	w = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f, .len = SZ, .buf = src };
	assert_int_equal(vxm_io_queue(t.io, &w), 0);
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(reap_all(t.io, done, 2), 1);
	assert_int_equal(w.res, SZ);
	assert_ptr_equal(w.buf, src); /* the request is handed back as queued */
	assert_int_equal(w.off, 0);
	assert_int_equal(w.len, SZ);
	assert_int_equal(vxm_fault_counts(t.io, &c), 0);
	assert_int_equal(c.writes, (SZ + 999) / 1000);
	assert_int_equal(c.shortened, SZ / 1000);
	assert_int_equal(t.io->stats.resubmits, SZ / 1000);
	/* the bytes below are whole: read them without the short layer */
	assert_int_equal(vxm_io_pread(t.below, f, dst, SZ, 0), SZ);
	assert_memory_equal(src, dst, SZ);

	assert_int_equal(vxm_fault_arm(t.io, &(struct vxm_fault){
		.short_op = VXM_IO_READ, .short_at = 1, .short_sticky = true,
		.short_len = 1000 }), 0);
	memset(dst, 0, SZ);
	r = (struct vxm_req){ .op = VXM_IO_READ, .file = f, .len = SZ, .buf = dst };
	assert_int_equal(vxm_io_queue(t.io, &r), 0);
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(reap_all(t.io, done, 2), 1);
	assert_int_equal(r.res, SZ);
	assert_memory_equal(src, dst, SZ);
	/* at end of file the read is short, by exactly the missing bytes */
	memset(dst, 0xAA, SZ);
	assert_int_equal(vxm_io_pread(t.io, f, dst, 8192, SZ - 3000), 3000);
	assert_memory_equal(dst, src + SZ - 3000, 3000);
	assert_int_equal(dst[3000], 0xAA);
	t_fini(&t);
	free(src);
	free(dst);
}

/* O4 with a real kernel short write: RLIMIT_FSIZE cuts a write short; the
 * backend resubmits the remainder, which fails with EFBIG, and that error
 * (not a short count) is the result.  A SYNC queued behind it still comes
 * back after it (O1; on uring the drained fsync is issued again, I3). */
static void kernel_short_write_is_resubmitted_until_it_fails(void **state)
{
	struct t t;
	struct rlimit old, lim;
	uint8_t *src;
	(void)state;

	need(true);
	src = malloc(200000);
	t_init(&t, 0, false);
	int f = t_file(&t, 0, 0);
	fill(src, 200000, 4);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 100000;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int ret = vxm_io_pwrite(t.io, f, src, 200000, 0);
	struct vxm_req w = { .op = VXM_IO_WRITE, .file = f, .len = 200000, .buf = src };
	struct vxm_req s = { .op = VXM_IO_SYNC, .file = f, .tag = "after-short" };
	struct vxm_req *done[2];
	assert_int_equal(vxm_io_queue(t.io, &w), 0);
	assert_int_equal(vxm_io_queue(t.io, &s), 0);
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(vxm_io_reap(t.io, 1, &done[0], 1), 1);
	assert_int_equal(vxm_io_reap(t.io, 1, &done[1], 1), 1);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(ret, -EFBIG);
	assert_ptr_equal(done[0], &w);
	assert_ptr_equal(done[1], &s);
	assert_int_equal(w.res, -EFBIG);
	assert_int_equal(s.res, 0);
	if (cur->ops == &vxm_io_uring_ops)
		assert_true(t.leaf.stats.resubmits >= 2);
	uint64_t size = 0;
	assert_int_equal(vxm_io_size(t.io, f, &size), 0);
	assert_int_equal(size, 100000);
	t_fini(&t);
	free(src);
}

/* Errors injected underneath surface in req->res, once or from N on. */
static void injected_errors_surface_in_res(void **state)
{
	struct t t;
	uint8_t buf[4096];
	struct vxm_req w[4], *done[4];
	(void)state;

	need(false);
	t_init(&t, 0, true);
	int f = t_file(&t, 0, 0);
	fill(buf, sizeof(buf), 5);
	assert_int_equal(vxm_fault_arm(t.io, &(struct vxm_fault){
		.err_op = VXM_IO_WRITE, .err_at = 2, .err_errno = EIO }), 0);
	for (unsigned i = 0; i < 3; i++) {
		w[i] = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f, .off = i * 4096u,
					 .len = 4096, .buf = buf };
		assert_int_equal(vxm_io_queue(t.io, &w[i]), 0);
	}
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(reap_all(t.io, done, 4), 3);
	assert_int_equal(w[0].res, 4096);
	assert_int_equal(w[1].res, -EIO);
	assert_int_equal(w[2].res, 4096);
	assert_int_equal(t.io->stats.errors, 1);

	assert_int_equal(vxm_fault_arm(t.io, &(struct vxm_fault){
		.err_op = VXM_IO_WRITE, .err_at = 2, .err_sticky = true,
		.err_errno = ENOSPC }), 0);
	assert_int_equal(vxm_io_pwrite(t.io, f, buf, 4096, 0), 0);
	assert_int_equal(vxm_io_pwrite(t.io, f, buf, 4096, 0), -ENOSPC);
	assert_int_equal(vxm_io_pwrite(t.io, f, buf, 4096, 0), -ENOSPC);

	assert_int_equal(vxm_fault_arm(t.io, &(struct vxm_fault){
		.err_op = VXM_IO_SYNC, .err_at = 1 }), 0);
	assert_int_equal(vxm_io_sync(t.io, f, "conformance", false), -EIO);
	assert_int_equal(vxm_io_sync(t.io, f, "conformance", false), 0);
	assert_int_equal(vxm_fault_arm(t.io, &(struct vxm_fault){
		.err_op = VXM_IO_READ, .err_at = 1, .err_errno = EIO }), 0);
	assert_int_equal(vxm_io_pread(t.io, f, buf, 4096, 0), -EIO);
	assert_int_equal(vxm_io_pread(t.io, f, buf, 4096, 0), 4096);
	t_fini(&t);
}

/* vxm_io_fini with requests queued and submitted: it flushes and waits, so
 * nothing leaks (ASan) and no buffer is written after it returns. */
static void fini_with_requests_in_flight_neither_leaks_nor_crashes(void **state)
{
	need(false);
	enum { N = 8, SZ = 256 * 1024 };
	struct t t;
	struct vxm_req w[N], s;
	uint8_t *src = malloc(N * SZ);
	(void)state;

	t_init(&t, 0, false);
	int f = t_file(&t, 0, 0);
	char path[PATH_MAX];
	strcpy(path, t.path[f]);
	t.path[f][0] = 0; /* keep the file past t_fini */
	fill(src, N * SZ, 6);
	for (unsigned i = 0; i < N; i++) {
		w[i] = (struct vxm_req){ .op = VXM_IO_WRITE, .file = f, .off = (uint64_t)i * SZ,
					 .len = SZ, .buf = src + (size_t)i * SZ };
		assert_int_equal(vxm_io_queue(t.io, &w[i]), 0);
		if (i == N / 2) {
			s = (struct vxm_req){ .op = VXM_IO_SYNC, .file = f, .tag = "fini" };
			assert_int_equal(vxm_io_queue(t.io, &s), 0);
			assert_true(vxm_io_submit(t.io) >= 0); /* the rest stays queued */
		}
	}
	t_fini(&t);
	memset(src, 0, N * SZ); /* a late kernel write would be caught below */
	free(src);
	if (cur->files) {
		struct stat st;
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_size, N * SZ);
		unlink(path);
	}
	/* and a double fini is harmless */
	vxm_io_fini(&t.leaf);
}

/* queue() refuses with -EBUSY when the depth is used up, and recovers. */
static void queue_is_busy_when_the_depth_is_full(void **state)
{
	struct t t;
	uint8_t buf[512];
	struct vxm_req r[5], *done[5];
	(void)state;

	need(true); /* memory files have no depth */
	t_init(&t, 4, false);
	int f = t_file(&t, 4096, 0);
	for (unsigned i = 0; i < 5; i++)
		r[i] = (struct vxm_req){ .op = VXM_IO_READ, .file = f, .len = sizeof(buf), .buf = buf };
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(vxm_io_queue(t.io, &r[i]), 0);
	assert_int_equal(vxm_io_queue(t.io, &r[4]), -EBUSY);
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(vxm_io_reap(t.io, 1, done, 1), 1);
	assert_int_equal(vxm_io_queue(t.io, &r[4]), 0);
	assert_true(vxm_io_submit(t.io) >= 0);
	assert_int_equal(reap_all(t.io, done, 5), 4);
	assert_int_equal(t.io->stats.max_inflight, 4);
	t_fini(&t);
}

/* COPY moves a range between files; CLONE either works or says why not. */
static void copy_request_moves_the_range_and_clone_reports_support(void **state)
{
	need(false);
	enum { SZ = 256 * 1024 };
	struct t t;
	uint8_t *src = malloc(SZ), *dst = malloc(SZ);
	(void)state;

	t_init(&t, 0, false);
	int a = t_file(&t, 0, 0), b = t_file(&t, 0, 0);
	fill(src, SZ, 7);
	assert_int_equal(vxm_io_pwrite(t.io, a, src, SZ, 0), 0);
	assert_int_equal(offload(t.io, VXM_IO_COPY, b, 8192, a, 4096, SZ - 4096), SZ - 4096);
	assert_int_equal(vxm_io_pread(t.io, b, dst, SZ - 4096, 8192), SZ - 4096);
	assert_memory_equal(dst, src + 4096, SZ - 4096);
	assert_int_equal(t.io->stats.bytes_copied, SZ - 4096);
	/* a source that ends inside the range is an error, not a short copy */
	assert_true(offload(t.io, VXM_IO_COPY, b, 0, a, SZ - 100, 4096) < 0);

	int sup = vxm_io_clone_supported(t.io, b, a);
	assert_true(sup == 0 || sup == 1);
	int64_t r = offload(t.io, VXM_IO_CLONE, b, 0, a, 0, 65536);
	if (sup)
		assert_int_equal(r, 65536);
	else
		assert_true(r == -EOPNOTSUPP || r == -EXDEV || r == -EINVAL);
	t_fini(&t);
	free(src);
	free(dst);
}

/* Sizes follow resizes and writes past the end. */
static void resize_and_size_agree(void **state)
{
	struct t t;
	uint64_t size = 1;
	uint8_t b[100];
	(void)state;

	need(false);
	t_init(&t, 0, false);
	int f = t_file(&t, 0, 0);
	assert_int_equal(vxm_io_size(t.io, f, &size), 0);
	assert_int_equal(size, 0);
	assert_int_equal(vxm_io_resize(t.io, f, 123456), 0);
	assert_int_equal(vxm_io_size(t.io, f, &size), 0);
	assert_int_equal(size, 123456);
	fill(b, sizeof(b), 8);
	assert_int_equal(vxm_io_pwrite(t.io, f, b, sizeof(b), 200000), 0);
	assert_int_equal(vxm_io_size(t.io, f, &size), 0);
	assert_int_equal(size, 200100);
	assert_int_equal(vxm_io_resize(t.io, f, 10), 0);
	assert_int_equal(vxm_io_size(t.io, f, &size), 0);
	assert_int_equal(size, 10);
	t_fini(&t);
}

/* Registered buffers are picked up by address (READ_FIXED/WRITE_FIXED on
 * uring), including a request in the middle of one; elsewhere the call
 * says -EOPNOTSUPP and I/O is unchanged. */
static void registered_buffers_are_used_transparently(void **state)
{
	need(false);
	enum { SZ = 1 << 20 };
	struct t t;
	uint8_t *reg = aligned_alloc(4096, SZ), *chk = malloc(SZ);
	(void)state;

	t_init(&t, 0, false);
	int f = t_file(&t, 0, 0);
	void *bufs[1] = { reg };
	size_t lens[1] = { SZ };
	int ret = vxm_io_register_bufs(t.io, bufs, lens, 1);
	if (cur->ops == &vxm_io_uring_ops)
		assert_int_equal(ret, 0);
	else
		assert_int_equal(ret, -EOPNOTSUPP);
	fill(reg, SZ, 9);
	assert_int_equal(vxm_io_pwrite(t.io, f, reg + 4096, SZ - 8192, 4096), 0);
	memcpy(chk, reg, SZ);
	memset(reg, 0, SZ);
	assert_int_equal(vxm_io_pread(t.io, f, reg + 8192, SZ - 8192, 4096), SZ - 8192);
	assert_memory_equal(reg + 8192, chk + 4096, SZ - 8192);
	/* uring: the leaf context says both registrations were used */
	if (cur->ops == &vxm_io_uring_ops) {
		assert_int_equal(t.leaf.stats.fixed_buf_ops, 2);
		assert_true(t.leaf.stats.fixed_file_ops >= 2);
	}
	/* a buffer outside the registered one still works */
	uint8_t *other = malloc(8192);
	assert_int_equal(vxm_io_pread(t.io, f, other, 8192, 4096), 8192);
	assert_memory_equal(other, chk + 4096, 8192);
	free(other);
	if (cur->ops == &vxm_io_uring_ops)
		assert_int_equal(t.leaf.stats.fixed_buf_ops, 2);
	if (ret == 0)
		assert_int_equal(vxm_io_register_bufs(t.io, NULL, NULL, 0), 0);
	t_fini(&t);
	free(reg);
	free(chk);
}

/* O_DIRECT: aligned round trip, and a read at an unaligned end of file. */
static void direct_io_round_trips_and_stops_at_end_of_file(void **state)
{
	enum { SZ = 1 << 20 };
	struct t t;
	uint8_t *b, *c;
	(void)state;

	need(true);
	t_init(&t, 0, false);
	int f = t_file(&t, 0, VXM_O_DIRECT);
	if (!t.io->files[f].direct) {
		t_fini(&t);
		skip();
	}
	b = aligned_alloc(4096, SZ);
	c = aligned_alloc(4096, SZ);
	fill(b, SZ, 11);
	assert_int_equal(vxm_io_pwrite(t.io, f, b, SZ, 0), 0);
	assert_int_equal(vxm_io_pread(t.io, f, c, SZ, 0), SZ);
	assert_memory_equal(b, c, SZ);
	assert_int_equal(vxm_io_resize(t.io, f, SZ - 1000), 0);
	assert_int_equal(vxm_io_pread(t.io, f, c, SZ, 0), SZ - 1000);
	assert_int_equal(vxm_io_pread(t.io, f, c, 65536, SZ - 65536), 65536 - 1000);
	t_fini(&t);
	free(b);
	free(c);
}

/* A long random mix kept at full depth matches a model of the file. */
static void full_queue_random_mix_matches_a_model(void **state)
{
	need(false);
	enum { FILE_SZ = 4 << 20, BLK = 4096, OPS = 3000, DEPTH = 16 };
	struct t t;
	uint8_t *model = calloc(1, FILE_SZ);
	struct slot { struct vxm_req r; uint8_t buf[4 * BLK]; uint8_t want[4 * BLK]; } *s;
	struct vxm_req *done[DEPTH];
	unsigned issued = 0, freeidx[DEPTH], nfree = DEPTH;
	uint32_t x = 12345;
	(void)state;

	s = calloc(DEPTH, sizeof(*s));
	t_init(&t, DEPTH, false);
	int f = t_file(&t, FILE_SZ, 0);
	for (unsigned i = 0; i < DEPTH; i++)
		freeidx[i] = i;
	/* writes go to disjoint blocks per in-flight request: a block is busy
	 * while a request covering it is in flight */
	uint8_t *busy = calloc(FILE_SZ / BLK, 1);
	while (issued < OPS || t.io->inflight) {
		while (issued < OPS && nfree) {
			x = x * 1103515245 + 12345;
			unsigned nblk = 1 + (x >> 8) % 4;
			unsigned blk = (x >> 12) % (FILE_SZ / BLK - 4);
			bool clash = false;
			for (unsigned k = 0; k < nblk; k++)
				clash |= busy[blk + k];
			if (clash)
				break;
			unsigned i = freeidx[--nfree];
			bool wr = (x >> 3) & 1;
			s[i].r = (struct vxm_req){ .op = wr ? VXM_IO_WRITE : VXM_IO_READ, .file = f,
						   .off = (uint64_t)blk * BLK, .len = nblk * BLK,
						   .buf = s[i].buf, .owner = &s[i] };
			if (wr) {
				fill(s[i].buf, nblk * BLK, x);
				memcpy(model + (size_t)blk * BLK, s[i].buf, nblk * BLK);
			} else {
				memcpy(s[i].want, model + (size_t)blk * BLK, nblk * BLK);
			}
			for (unsigned k = 0; k < nblk; k++)
				busy[blk + k] = 1;
			assert_int_equal(vxm_io_queue(t.io, &s[i].r), 0);
			issued++;
		}
		assert_true(vxm_io_submit(t.io) >= 0);
		int n = vxm_io_reap(t.io, 1, done, DEPTH);
		assert_true(n > 0);
		for (int k = 0; k < n; k++) {
			struct slot *sl = done[k]->owner;
			assert_int_equal(sl->r.res, (int64_t)sl->r.len);
			if (sl->r.op == VXM_IO_READ)
				assert_memory_equal(sl->buf, sl->want, sl->r.len);
			for (unsigned b = 0; b < sl->r.len / BLK; b++)
				busy[sl->r.off / BLK + b] = 0;
			freeidx[nfree++] = (unsigned)(sl - s);
		}
	}
	uint8_t *all = malloc(FILE_SZ);
	assert_int_equal(vxm_io_pread(t.io, f, all, FILE_SZ, 0), FILE_SZ);
	assert_memory_equal(all, model, FILE_SZ);
	t_fini(&t);
	free(all);
	free(busy);
	free(s);
	free(model);
}

/* ---- the registry ---- */

static char logged[4][256];
static unsigned nlogged;

static void log_line(void *ctx, const char *line)
{
	(void)ctx;
	if (nlogged < 4)
		snprintf(logged[nlogged], sizeof(logged[0]), "%s", line);
	nlogged++;
}

static bool uring_works(void)
{
	struct vxm_io io;
	if (vxm_io_init(&io, &vxm_io_uring_ops, NULL) < 0)
		return false;
	vxm_io_fini(&io);
	return true;
}

static void auto_picks_uring_when_it_initialises(void **state)
{
	struct vxm_io io;
	struct vxm_io_params p = { .backend = "auto", .log = log_line };
	(void)state;

	if (!uring_works())
		skip();
	nlogged = 0;
	assert_int_equal(vxm_io_init(&io, NULL, &p), 0);
	assert_ptr_equal(io.ops, &vxm_io_uring_ops);
	assert_int_equal(nlogged, 0);
	vxm_io_fini(&io);
	assert_ptr_equal(vxm_io_backend("auto"), &vxm_io_uring_ops);
	assert_ptr_equal(vxm_io_backend(NULL), &vxm_io_uring_ops);
}

static void auto_falls_back_to_psync_with_one_log_line(void **state)
{
	struct vxm_io io;
	struct vxm_io_params p = { .log = log_line };
	const char *tail = "); using the portable psync backend";
	(void)state;

	setenv("VXM_URING_DISABLED", "1", 1);
	nlogged = 0;
	assert_int_equal(vxm_io_init(&io, NULL, &p), 0);
	unsetenv("VXM_URING_DISABLED");
	assert_ptr_equal(io.ops, &vxm_io_psync_ops);
	assert_int_equal(nlogged, 1);
	assert_int_equal(strncmp(logged[0], "io_uring unavailable (", 22), 0);
	assert_string_equal(logged[0] + strlen(logged[0]) - strlen(tail), tail);
	print_message("  logged: %s\n", logged[0]);
	vxm_io_fini(&io);
}

static void backends_forced_by_name_never_fall_back(void **state)
{
	struct vxm_io io;
	(void)state;

	setenv("VXM_URING_DISABLED", "1", 1);
	nlogged = 0;
	int ret = vxm_io_init(&io, NULL, &(struct vxm_io_params){
		.backend = "uring", .log = log_line });
	assert_true(ret == -EPERM || ret == -ENOSYS); /* ENOSYS: built without liburing */
	unsetenv("VXM_URING_DISABLED");
	assert_int_equal(nlogged, 0);
	vxm_io_fini(&io); /* harmless after a failed init */
	const char *names[] = { "psync", "mem" };
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(vxm_io_init(&io, NULL, &(struct vxm_io_params){
			.backend = names[i] }), 0);
		assert_string_equal(io.ops->name, names[i]);
		vxm_io_fini(&io);
	}
	assert_ptr_equal(vxm_io_backend("uring"), &vxm_io_uring_ops);
	assert_ptr_equal(vxm_io_backend("fault"), &vxm_io_fault_ops);
	assert_int_equal(vxm_io_init(&io, NULL, &(struct vxm_io_params){ .backend = "nope" }),
			 -ENOENT);
	/* a wrapper needs something to wrap */
	assert_int_equal(vxm_io_init(&io, &vxm_io_fault_ops, NULL), -EINVAL);
}

/* ---- main ---- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Failed cases skip their t_fini, so remove whatever is left. */
static void rm_tmpdir(void)
{
	if (tmpdir[0])
		nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest suite[] = {
		cmocka_unit_test(write_then_read_round_trips_every_byte),
		cmocka_unit_test(read_at_end_of_file_is_short_and_leaves_the_rest_untouched),
		cmocka_unit_test(sync_waits_for_every_earlier_write),
		cmocka_unit_test(short_transfers_underneath_are_completed_above),
		cmocka_unit_test(kernel_short_write_is_resubmitted_until_it_fails),
		cmocka_unit_test(injected_errors_surface_in_res),
		cmocka_unit_test(fini_with_requests_in_flight_neither_leaks_nor_crashes),
		cmocka_unit_test(queue_is_busy_when_the_depth_is_full),
		cmocka_unit_test(copy_request_moves_the_range_and_clone_reports_support),
		cmocka_unit_test(resize_and_size_agree),
		cmocka_unit_test(registered_buffers_are_used_transparently),
		cmocka_unit_test(direct_io_round_trips_and_stops_at_end_of_file),
		cmocka_unit_test(full_queue_random_mix_matches_a_model),
	};
	const struct CMUnitTest registry[] = {
		cmocka_unit_test(auto_picks_uring_when_it_initialises),
		cmocka_unit_test(auto_falls_back_to_psync_with_one_log_line),
		cmocka_unit_test(backends_forced_by_name_never_fall_back),
	};
	const char *base = getenv("VXM_TEST_TMP");
	int fails = 0;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(tmpdir, sizeof(tmpdir), "%s/io_conformance.XXXXXX", base);
	if (!mkdtemp(tmpdir)) {
		perror(tmpdir);
		return 1;
	}
	atexit(rm_tmpdir);
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		struct vxm_io probe;
		char name[64];
		cur = &backends[i];
		cur_ok = vxm_io_init(&probe, cur->ops, NULL) == 0;
		if (cur_ok)
			vxm_io_fini(&probe);
		else
			fprintf(stderr, "%s: backend unavailable here, its cases are skipped\n",
				cur->name);
		snprintf(name, sizeof(name), "conformance[%s]", cur->name);
		print_message("[----------] %s\n", name);
		fails += _cmocka_run_group_tests(name, suite, sizeof(suite) / sizeof(suite[0]),
						 NULL, NULL);
	}
	fails += cmocka_run_group_tests_name("registry", registry, NULL, NULL);
	return fails;
}
