/* tests/io/test_clone.c: copy offload on a real reflink filesystem.
 *
 * The test builds its own: a 512 MiB sparse file under $VXM_TEST_TMP (or
 * /tmp), mkfs.xfs -m reflink=1, mounted with -o loop.  Where that is not
 * permitted (no root, no loop devices, no mkfs.xfs) it exits 77 (skip) and
 * says why.  A watchdog child unmounts and removes everything when this
 * process ends, however it ends (even killed or aborted by a sanitizer).
 *
 * Cases run on psync and on uring: CLONE shares extents (FIEMAP shows
 * FIEMAP_EXTENT_SHARED) and reads back identical; the probe; an unaligned
 * CLONE fails (the merge executor then copies); COPY (copy_file_range)
 * within XFS and across to another filesystem (kernel refuses, the
 * bounce-buffer fallback moves the bytes).  Requests go through the queue,
 * as the executor issues them.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/io.h"

static char dir[PATH_MAX / 4], img[PATH_MAX / 2], mnt[PATH_MAX / 2];
static char other[PATH_MAX / 2]; /* a directory on the host filesystem */
static const struct vxm_io_ops *ops;
static unsigned seq;

enum { SRC_SZ = 8 << 20 };

/* ---- the filesystem ---- */

static int run(const char *cmd)
{
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void cleanup(void)
{
	char cmd[PATH_MAX * 2];

	if (umount2(mnt, 0) < 0 && errno != EINVAL && errno != ENOENT)
		umount2(mnt, MNT_DETACH);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)run(cmd);
}

/* Forks a child that waits for our end (the pipe closes) and cleans up. */
static void start_watchdog(void)
{
	int p[2];

	if (pipe(p) < 0)
		return;
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(p[1]);
		setsid();
		signal(SIGINT, SIG_IGN);
		while (read(p[0], &c, 1) != 0 && errno == EINTR)
			;
		cleanup();
		_exit(0);
	}
	close(p[0]); /* p[1] stays open in us until we are gone */
}

static int skip_because(const char *why)
{
	fprintf(stderr, "test_clone: skipped: %s\n", why);
	cleanup();
	return 77;
}

static int make_fs(void)
{
	char cmd[PATH_MAX * 2];
	const char *base = getenv("VXM_TEST_TMP");
	int fd;

	if (!base || !*base)
		base = "/tmp";
	mkdir(base, 0755);
	snprintf(dir, sizeof(dir), "%s/io_clone.XXXXXX", base);
	if (!mkdtemp(dir))
		return skip_because("cannot create a temporary directory");
	snprintf(img, sizeof(img), "%s/xfs.img", dir);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	snprintf(other, sizeof(other), "%s/host", dir);
	if (mkdir(mnt, 0755) < 0 || mkdir(other, 0755) < 0)
		return skip_because("cannot create the mount point");
	start_watchdog();
	if (geteuid() != 0)
		return skip_because("mounting a loop device needs root");
	fd = open(img, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || ftruncate(fd, 512ll << 20) < 0)
		return skip_because("cannot create the 512 MiB image file");
	close(fd);
	snprintf(cmd, sizeof(cmd), "mkfs.xfs -q -f -m reflink=1 '%s' >/dev/null 2>&1", img);
	if (run(cmd) != 0)
		return skip_because("mkfs.xfs -m reflink=1 failed or is not installed");
	snprintf(cmd, sizeof(cmd), "mount -o loop '%s' '%s' 2>/dev/null", img, mnt);
	if (run(cmd) != 0)
		return skip_because("mount -o loop is not permitted here (container, no loop devices?)");
	return 0;
}

/* ---- helpers ---- */

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

static int open_new(struct vxm_io *io, const char *where)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/f%u", where, seq++);
	int slot = vxm_io_open(io, path, VXM_O_RDWR | VXM_O_CREATE);
	assert_true(slot >= 0);
	return slot;
}

/* A source file of SRC_SZ random bytes, on disk (so FIEMAP sees extents). */
static int make_src(struct vxm_io *io, const char *where, uint8_t *data)
{
	int s = open_new(io, where);
	fill(data, SRC_SZ, seq);
	assert_int_equal(vxm_io_pwrite(io, s, data, SRC_SZ, 0), 0);
	assert_int_equal(vxm_io_sync(io, s, "src", true), 0);
	return s;
}

/* True when every byte of [off, off+len) lies in extents marked SHARED. */
static bool all_shared(int fd, uint64_t off, uint64_t len)
{
	enum { MAXEXT = 256 };
	struct fiemap *fm = calloc(1, sizeof(*fm) + MAXEXT * sizeof(struct fiemap_extent));
	uint64_t covered = off;
	bool ok = true;

	fm->fm_start = off;
	fm->fm_length = len;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = MAXEXT;
	assert_int_equal(ioctl(fd, FS_IOC_FIEMAP, fm), 0);
	assert_true(fm->fm_mapped_extents > 0);
	for (unsigned i = 0; i < fm->fm_mapped_extents; i++) {
		const struct fiemap_extent *e = &fm->fm_extents[i];
		if (e->fe_logical > covered)
			ok = false; /* a hole inside the range */
		if (!(e->fe_flags & FIEMAP_EXTENT_SHARED))
			ok = false;
		if (e->fe_logical + e->fe_length > covered)
			covered = e->fe_logical + e->fe_length;
	}
	free(fm);
	return ok && covered >= off + len;
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
	assert_int_equal(vxm_io_reap(io, 1, &done, 1), 1);
	assert_ptr_equal(done, &r);
	return r.res;
}

static void each_backend(void (*body)(struct vxm_io *io))
{
	const struct vxm_io_ops *all[] = { &vxm_io_psync_ops, &vxm_io_uring_ops };

	for (unsigned i = 0; i < 2; i++) {
		struct vxm_io io;
		ops = all[i];
		if (vxm_io_init(&io, ops, NULL) < 0) {
			print_message("  %s: unavailable, not run\n", ops->name);
			continue;
		}
		print_message("  backend %s\n", ops->name);
		body(&io);
		vxm_io_fini(&io);
	}
}

/* ---- cases ---- */

static void probe_(struct vxm_io *io)
{
	uint8_t *data = malloc(SRC_SZ);
	int s = make_src(io, mnt, data);
	int d = open_new(io, mnt);
	int h = open_new(io, other);
	int h2 = open_new(io, other);

	assert_int_equal(vxm_io_clone_supported(io, d, s), 1);
	assert_int_equal(vxm_io_clone_supported(io, s, s), 1);
	assert_int_equal(vxm_io_clone_supported(io, h, s), 0);  /* across filesystems */
	assert_int_equal(vxm_io_clone_supported(io, h2, h), 0); /* ext4: no reflink */
	assert_int_equal(vxm_io_fs_block(io, d), 4096);
	/* the probe changed nothing */
	uint64_t size = 1;
	assert_int_equal(vxm_io_size(io, d, &size), 0);
	assert_int_equal(size, 0);
	free(data);
}

static void clone_probe_says_yes_only_within_a_reflink_filesystem(void **state)
{
	(void)state;
	each_backend(probe_);
}

static void clone_body(struct vxm_io *io)
{
	uint8_t *data = malloc(SRC_SZ), *got = malloc(SRC_SZ);
	int s = make_src(io, mnt, data);
	int d = open_new(io, mnt);
	struct {
		uint64_t src, dst, len;
	} r[] = {
		{ 0, 0, 1 << 20 },
		{ 3 << 20, 5 << 20, 2 << 20 },
		{ 7 << 20, 1 << 20, 4096 },
	};
	struct vxm_req q[3], *done[3];

	for (unsigned i = 0; i < 3; i++) {
		q[i] = (struct vxm_req){ .op = VXM_IO_CLONE, .file = d, .off = r[i].dst,
					 .len = r[i].len, .src_file = s, .src_off = r[i].src };
		assert_int_equal(vxm_io_queue(io, &q[i]), 0);
	}
	assert_true(vxm_io_submit(io) >= 0);
	unsigned n = 0;
	while (io->inflight)
		n += (unsigned)vxm_io_reap(io, 1, done + n, 3 - n);
	assert_int_equal(n, 3);
	uint64_t total = 0;
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(q[i].res, (int64_t)r[i].len);
		assert_int_equal(vxm_io_pread(io, d, got, r[i].len, r[i].dst), (int64_t)r[i].len);
		assert_memory_equal(got, data + r[i].src, r[i].len);
		assert_true(all_shared(vxm_io_fd(io, d), r[i].dst, r[i].len));
		assert_true(all_shared(vxm_io_fd(io, s), r[i].src, r[i].len));
		total += r[i].len;
	}
	assert_int_equal(io->stats.clones, 3);
	assert_int_equal(io->stats.bytes_cloned, total);
	/* a range nobody cloned is not shared */
	assert_false(all_shared(vxm_io_fd(io, s), 2 << 20, 1 << 20));
	free(data);
	free(got);
}

static void cloned_ranges_read_back_identical_and_share_their_extents(void **state)
{
	(void)state;
	each_backend(clone_body);
}

static void unaligned_body(struct vxm_io *io)
{
	uint8_t *data = malloc(SRC_SZ);
	int s = make_src(io, mnt, data);
	int d = open_new(io, mnt);

	assert_int_equal(vxm_io_clone_supported(io, d, s), 1);
	/* the kernel refuses what is not whole filesystem blocks */
	assert_int_equal(offload(io, VXM_IO_CLONE, d, 100, s, 4096, 65536), -EINVAL);
	assert_int_equal(offload(io, VXM_IO_CLONE, d, 8192, s, 4096, 65536 + 512), -EINVAL);
	assert_int_equal(offload(io, VXM_IO_CLONE, d, 8192, s, 4096, 65536), 65536);
	assert_int_equal(io->stats.clones, 1);
	free(data);
}

static void unaligned_clones_fail_and_aligned_ones_work(void **state)
{
	(void)state;
	each_backend(unaligned_body);
}

static void copy_body(struct vxm_io *io)
{
	uint8_t *data = malloc(SRC_SZ), *got = malloc(SRC_SZ);
	int s = make_src(io, mnt, data);
	int d = open_new(io, mnt);
	int h = open_new(io, other);

	/* within XFS: copy_file_range (unaligned on purpose) */
	assert_int_equal(offload(io, VXM_IO_COPY, d, 1000, s, 12345, 3 << 20), 3 << 20);
	assert_int_equal(vxm_io_pread(io, d, got, 3 << 20, 1000), 3 << 20);
	assert_memory_equal(got, data + 12345, 3 << 20);
	/* across filesystems: the kernel may refuse; the bytes still move */
	assert_int_equal(offload(io, VXM_IO_COPY, h, 0, s, 0, SRC_SZ), SRC_SZ);
	assert_int_equal(vxm_io_pread(io, h, got, SRC_SZ, 0), SRC_SZ);
	assert_memory_equal(got, data, SRC_SZ);
	assert_int_equal(io->stats.bytes_copied, (3 << 20) + SRC_SZ);
	/* a source range past its end is an error */
	assert_true(offload(io, VXM_IO_COPY, h, 0, s, SRC_SZ - 10, 4096) < 0);
	free(data);
	free(got);
}

static void copy_moves_bytes_within_and_across_filesystems(void **state)
{
	(void)state;
	each_backend(copy_body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(clone_probe_says_yes_only_within_a_reflink_filesystem),
		cmocka_unit_test(cloned_ranges_read_back_identical_and_share_their_extents),
		cmocka_unit_test(unaligned_clones_fail_and_aligned_ones_work),
		cmocka_unit_test(copy_moves_bytes_within_and_across_filesystems),
	};
	int ret = make_fs();
	if (ret)
		return ret;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	cleanup();
	return ret;
}
