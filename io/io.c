/* io/io.c: the backend-independent half of the I/O layer.
 *
 * Owns the file table (slots), the backend registry, the synchronous helpers,
 * statistics, and the parts of the contract every backend gets for free:
 *
 *   vxm_io_queue ──> ops->queue ──> (backend) ──> ops->reap ──> vxm_io_reap
 *                                                    │ short READ/WRITE from a
 *                                                    │ backend without
 *                                                    └ VXM_IO_WHOLE: requeue
 *                                                      the remainder (O4)
 *
 * Wrappers (VXM_IO_WRAPPER, e.g. the fault injector) get p->lower at init.
 * Files opened on a wrapper are opened on the lower context first and
 * mirrored into the wrapper's table under the same slot number, so a request
 * can be forwarded unchanged.
 *
 * I1: a slot is used iff files[slot].used; closed slots are reused.
 * I2: the synchronous helpers run only with io->inflight == 0, so the one
 *     completion they reap is their own.
 * I3: a wrapper's slot s mirrors its lower context's slot s (borrowed: the
 *     descriptor belongs to the lower context).
 * I4: io->inflight counts requests between vxm_io_queue() and the
 *     vxm_io_reap() that returns them; a generic requeue (O4) is not a new
 *     request and does not change it.
 * I5: while the generic layer finishes a short transfer, req->buf/off/len
 *     describe the remainder and req->xfer the bytes already done; they are
 *     restored before the request is returned.
 */
#define _GNU_SOURCE
#include "io_priv.h"
#include "vhdxmerge.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

static const struct vxm_io_ops *const backends[] = {
	&vxm_io_uring_ops,
	&vxm_io_psync_ops,
	&vxm_io_mem_ops,
	&vxm_io_fault_ops,
};

static _Atomic(const struct vxm_io_ops *) auto_pick;

/* Why io_uring cannot be used, for the fallback notice. */
static void uring_reason(int err, char *buf, size_t len)
{
	char sysctl[8] = "";
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "re");

	if (f) {
		if (!fgets(sysctl, sizeof(sysctl), f))
			sysctl[0] = 0;
		fclose(f);
		sysctl[strcspn(sysctl, "\n")] = 0;
	}
	if (sysctl[0] && strcmp(sysctl, "0"))
		snprintf(buf, len, "kernel.io_uring_disabled=%s: %s", sysctl, strerror(-err));
	else if (err == -ENOSYS)
		snprintf(buf, len, "not supported by this kernel or build");
	else
		snprintf(buf, len, "%s", strerror(-err));
}

const struct vxm_io_ops *vxm_io_backend(const char *name)
{
	if (!name || !strcmp(name, "auto")) {
		const struct vxm_io_ops *ops = atomic_load(&auto_pick);
		if (!ops) {
			struct vxm_io probe;
			struct vxm_io_params p = { .queue_depth = 2 };
			ops = &vxm_io_psync_ops;
			if (vxm_io_init(&probe, &vxm_io_uring_ops, &p) == 0) {
				vxm_io_fini(&probe);
				ops = &vxm_io_uring_ops;
			}
			atomic_store(&auto_pick, ops);
		}
		return ops;
	}
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

static int init_one(struct vxm_io *io, const struct vxm_io_ops *ops, const struct vxm_io_params *p)
{
	int ret;

	memset(io, 0, sizeof(*io));
	if (ops->version != VXM_IO_OPS_VERSION)
		return -EPROTO;
	if (ops->flags & VXM_IO_WRAPPER) {
		if (!p->lower || !p->lower->ops)
			return -EINVAL;
		io->lower = p->lower;
	}
	io->ops = ops;
	io->params = *p;
	ret = ops->init ? ops->init(io, p) : 0;
	if (ret < 0) {
		io->ops = NULL;
		io->lower = NULL;
	}
	return ret;
}

int vxm_io_init(struct vxm_io *io, const struct vxm_io_ops *ops, const struct vxm_io_params *p)
{
	struct vxm_io_params def = {0};
	int ret;

	if (!p)
		p = &def;
	if (ops)
		return init_one(io, ops, p);
	if (p->backend && strcmp(p->backend, "auto")) {
		ops = vxm_io_backend(p->backend);
		if (!ops) {
			memset(io, 0, sizeof(*io));
			return -ENOENT;
		}
		return init_one(io, ops, p);
	}
	ret = init_one(io, &vxm_io_uring_ops, p);
	if (ret == 0)
		return 0;
	if (p->log) {
		char why[160], line[256];
		uring_reason(ret, why, sizeof(why));
		snprintf(line, sizeof(line),
			 "io_uring unavailable (%s); using the portable psync backend", why);
		p->log(p->log_ctx, line);
	}
	return init_one(io, &vxm_io_psync_ops, p);
}

/* Submits what is queued and reaps until nothing is in flight. */
static void drain(struct vxm_io *io)
{
	struct vxm_req *done[32];

	if (!io->inflight)
		return;
	(void)vxm_io_submit(io);
	while (io->inflight) {
		int n = vxm_io_reap(io, 1, done, 32);
		if (n <= 0)
			break; /* the backend lost track or failed: nothing to wait on */
	}
}

void vxm_io_fini(struct vxm_io *io)
{
	if (!io->ops)
		return;
	drain(io);
	for (unsigned i = 0; i < io->nfiles; i++)
		if (io->files[i].used)
			vxm_io_close(io, (int)i);
	if (io->ops->fini)
		io->ops->fini(io);
	free(io->files);
	io->files = NULL;
	io->nfiles = 0;
	io->ops = NULL;
	io->lower = NULL;
}

/* Grows the table to hold at least want slots. */
static int table_grow(struct vxm_io *io, unsigned want)
{
	unsigned n = io->nfiles ? io->nfiles : 8;
	struct vxm_io_file *f;

	if (want <= io->nfiles)
		return 0;
	while (n < want)
		n *= 2;
	f = realloc(io->files, n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	memset(f + io->nfiles, 0, (n - io->nfiles) * sizeof(*f));
	for (unsigned i = io->nfiles; i < n; i++)
		f[i].fd = -1;
	io->files = f;
	io->nfiles = n;
	return 0;
}

static int slot_alloc(struct vxm_io *io)
{
	int ret;

	for (unsigned i = 0; i < io->nfiles; i++)
		if (!io->files[i].used)
			return (int)i;
	int slot = (int)io->nfiles;
	ret = table_grow(io, io->nfiles + 1);
	return ret < 0 ? ret : slot;
}

static void slot_clear(struct vxm_io_file *f)
{
	if (f->fd >= 0 && !f->borrowed)
		close(f->fd);
	free(f->path);
	if (f->mem_owned)
		free(f->mem);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
}

static int slot_publish(struct vxm_io *io, int slot)
{
	int ret = io->ops->file_added ? io->ops->file_added(io, slot) : 0;

	if (ret < 0) {
		slot_clear(&io->files[slot]);
		return ret;
	}
	return slot;
}

static struct vxm_io_file *file_of(const struct vxm_io *io, int slot)
{
	if (slot < 0 || (unsigned)slot >= io->nfiles || !io->files[slot].used)
		return NULL;
	return &io->files[slot];
}

/* I3: after the lower context opened slot, mirror it here. */
static int mirror(struct vxm_io *io, int slot)
{
	const struct vxm_io_file *lf = file_of(io->lower, slot);
	struct vxm_io_file *f;
	int ret;

	if (slot < 0)
		return slot;
	ret = table_grow(io, (unsigned)slot + 1);
	if (ret == 0 && io->files[slot].used)
		ret = -EEXIST; /* the lower slot was also opened directly here */
	if (ret < 0) {
		vxm_io_close(io->lower, slot);
		return ret;
	}
	f = &io->files[slot];
	f->path = lf->path ? strdup(lf->path) : NULL;
	if (lf->path && !f->path) {
		vxm_io_close(io->lower, slot);
		return -ENOMEM;
	}
	f->fd = lf->fd;
	f->flags = lf->flags;
	f->direct = lf->direct;
	f->borrowed = true;
	f->used = true;
	ret = slot_publish(io, slot);
	if (ret < 0)
		vxm_io_close(io->lower, slot);
	return ret;
}

int vxm_io_add_fd(struct vxm_io *io, int fd, const char *path, unsigned flags)
{
	if (io->lower)
		return mirror(io, vxm_io_add_fd(io->lower, fd, path, flags));

	int slot = slot_alloc(io);

	if (slot < 0)
		return slot;
	struct vxm_io_file *f = &io->files[slot];
	f->path = strdup(path ? path : "");
	if (!f->path)
		return -ENOMEM;
	f->fd = fd;
	f->flags = flags;
	f->direct = (fcntl(fd, F_GETFL) & O_DIRECT) != 0;
	f->used = true;
	return slot_publish(io, slot);
}

static const char *kind_of(mode_t m)
{
	if (S_ISREG(m))
		return "a regular file";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISLNK(m))
		return "a symbolic link";
	return "not a regular file";
}

const char *vxm_file_kind(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0 || S_ISREG(st.st_mode))
		return NULL;
	return kind_of(st.st_mode);
}

static bool kind_ok(mode_t m, unsigned flags)
{
	return (flags & VXM_O_DIR) ? S_ISDIR(m) : S_ISREG(m);
}

/* F1: stat() first, so a device is never even opened (opening one can have
 * effects of its own: a tape rewinds, a watchdog arms); O_NONBLOCK so a path
 * swapped for a FIFO after the stat() cannot block open() (a FIFO without a
 * writer would block it, and every read, forever); fstat() of what was
 * opened decides; O_NONBLOCK cleared again, as io_uring answers -EAGAIN
 * instead of waiting on a file opened non-blocking. */
static int open_checked(const char *path, int oflags, unsigned flags, const char **kind)
{
	struct stat st;
	int fd;

	if (!(oflags & O_CREAT) && stat(path, &st) == 0 && !kind_ok(st.st_mode, flags)) {
		if (kind)
			*kind = kind_of(st.st_mode);
		return -VXM_ENOTFILE;
	}
	fd = open(path, oflags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if (!kind_ok(st.st_mode, flags)) {
		if (kind)
			*kind = kind_of(st.st_mode);
		close(fd);
		return -VXM_ENOTFILE;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int open_flags(unsigned flags)
{
	int oflags = (flags & VXM_O_RDWR) ? O_RDWR : O_RDONLY;
	if (flags & VXM_O_CREATE)
		oflags |= O_CREAT | O_EXCL;
	if (flags & VXM_O_TRUNC)
		oflags |= O_TRUNC;
	if (flags & VXM_O_DIR)
		oflags = O_RDONLY | O_DIRECTORY;
	return oflags;
}

int vxm_file_open(const char *path, unsigned flags, const char **kind)
{
	return open_checked(path, open_flags(flags), flags, kind);
}

int vxm_io_open(struct vxm_io *io, const char *path, unsigned flags)
{
	int oflags = open_flags(flags);
	int fd;

	if (io->lower)
		return mirror(io, vxm_io_open(io->lower, path, flags));
	if (io->ops->flags & VXM_IO_MEMFILES)
		return -EOPNOTSUPP;
	fd = -1;
	if ((flags & VXM_O_DIRECT) && !(flags & VXM_O_DIR)) {
		fd = open_checked(path, oflags | O_DIRECT, flags, NULL);
		if (fd == -EINVAL && io->params.log) {
			char line[600];
			snprintf(line, sizeof(line), "%s: O_DIRECT not supported here, using buffered I/O",
				 path);
			io->params.log(io->params.log_ctx, line);
		}
		if (fd < 0 && fd != -EINVAL)
			return fd;
	}
	if (fd < 0)
		fd = open_checked(path, oflags, flags, NULL);
	if (fd < 0)
		return fd;
	int slot = vxm_io_add_fd(io, fd, path, flags);
	if (slot == -ENOMEM)
		close(fd);
	return slot;
}

int vxm_io_mem_add(struct vxm_io *io, const void *buf, size_t len, unsigned flags)
{
	int slot;

	if (io->lower)
		return mirror(io, vxm_io_mem_add(io->lower, buf, len, flags));
	if (!(io->ops->flags & VXM_IO_MEMFILES))
		return -EOPNOTSUPP;
	slot = slot_alloc(io);
	if (slot < 0)
		return slot;
	struct vxm_io_file *f = &io->files[slot];
	if (flags & VXM_O_RDWR) {
		f->mem = malloc(len ? len : 1);
		if (!f->mem)
			return -ENOMEM;
		if (len)
			memcpy(f->mem, buf, len);
		f->mem_cap = len;
		f->mem_owned = true;
	} else {
		f->mem = (uint8_t *)(uintptr_t)buf;
	}
	f->mem_size = len;
	f->flags = flags;
	f->used = true;
	return slot_publish(io, slot);
}

int vxm_io_close(struct vxm_io *io, int slot)
{
	struct vxm_io_file *f = file_of(io, slot);
	int ret = 0;

	if (!f)
		return -EBADF;
	if (io->ops->file_removed)
		io->ops->file_removed(io, slot);
	if (f->fd >= 0 && !f->borrowed && close(f->fd) < 0)
		ret = -errno;
	f->fd = -1;
	slot_clear(f);
	if (io->lower)
		ret = vxm_io_close(io->lower, slot);
	return ret;
}

const char *vxm_io_path(const struct vxm_io *io, int slot)
{
	const struct vxm_io_file *f = file_of(io, slot);
	return f && f->path ? f->path : "(memory)";
}

int vxm_io_fd(const struct vxm_io *io, int slot)
{
	const struct vxm_io_file *f = file_of(io, slot);
	return f ? f->fd : -1;
}

int vxm_io_size(struct vxm_io *io, int slot, uint64_t *size)
{
	if (!file_of(io, slot))
		return -EBADF;
	return io->ops->file_size(io, slot, size);
}

int vxm_io_resize(struct vxm_io *io, int slot, uint64_t size)
{
	struct vxm_io_file *f = file_of(io, slot);
	if (!f)
		return -EBADF;
	if (!(f->flags & VXM_O_RDWR))
		return -EBADF;
	return io->ops->file_resize(io, slot, size);
}

int vxm_io_queue(struct vxm_io *io, struct vxm_req *req)
{
	int ret;

	if (!file_of(io, req->file))
		return -EBADF;
	switch (req->op) {
	case VXM_IO_READ:
	case VXM_IO_WRITE:
		if (!req->buf && req->len)
			return -EINVAL;
		break;
	case VXM_IO_SYNC:
		break;
	case VXM_IO_CLONE:
	case VXM_IO_COPY:
		if (!file_of(io, req->src_file))
			return -EBADF;
		break;
	default:
		return -EINVAL;
	}
	req->xfer = 0;
	req->res = 0;
	ret = io->ops->queue(io, req);
	if (ret == 0) {
		io->inflight++;
		if (io->inflight > io->stats.max_inflight)
			io->stats.max_inflight = io->inflight;
	}
	return ret;
}

int vxm_io_submit(struct vxm_io *io)
{
	return io->ops->submit(io);
}

static void account(struct vxm_io *io, const struct vxm_req *r)
{
	if (r->res < 0) {
		io->stats.errors++;
		return;
	}
	switch (r->op) {
	case VXM_IO_READ:
		io->stats.reads++;
		io->stats.bytes_read += (uint64_t)r->res;
		break;
	case VXM_IO_WRITE:
		io->stats.writes++;
		io->stats.bytes_written += (uint64_t)r->res;
		break;
	case VXM_IO_SYNC:
		io->stats.syncs++;
		break;
	case VXM_IO_CLONE:
		io->stats.clones++;
		io->stats.bytes_cloned += (uint64_t)r->res;
		break;
	case VXM_IO_COPY:
		io->stats.copies++;
		io->stats.bytes_copied += (uint64_t)r->res;
		break;
	}
}

/* O4 for backends without VXM_IO_WHOLE.  Returns true when r went back to the
 * backend (it is not complete), false when r is final (fields restored, I5). */
static bool finish_short(struct vxm_io *io, struct vxm_req *r)
{
	bool rw = r->op == VXM_IO_READ || r->op == VXM_IO_WRITE;

	if (!rw || (io->ops->flags & VXM_IO_WHOLE))
		return false;
	if (r->res > 0 && (uint64_t)r->res < r->len) {
		uint64_t n = (uint64_t)r->res;
		r->buf = (uint8_t *)r->buf + n;
		r->off += n;
		r->len -= n;
		r->xfer += n;
		io->stats.resubmits++;
		if (io->ops->queue(io, r) == 0)
			return true;
		r->res = -EIO; /* cannot requeue: report, after restoring below */
	} else if (r->res > 0) {
		r->res += (int64_t)r->xfer;
	} else if (r->res == 0 && r->xfer) {
		/* read: end of file after a partial transfer; write: no progress */
		r->res = r->op == VXM_IO_READ ? (int64_t)r->xfer : -EIO;
	}
	if (r->xfer) {
		r->buf = (uint8_t *)r->buf - r->xfer;
		r->off -= r->xfer;
		r->len += r->xfer;
		r->xfer = 0;
	}
	return false;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int vxm_io_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	unsigned got = 0;

	if (min > max)
		min = max;
	while (got < max) {
		unsigned want = min > got ? min - got : 0;
		uint64_t t0 = want ? now_ns() : 0;
		int n = io->ops->reap(io, want, done + got, max - got);
		bool requeued = false;

		if (want)
			io->stats.wait_ns += now_ns() - t0;
		if (n < 0)
			return got ? (int)got : n; /* deliver what we hold; the error recurs */
		if (n == 0)
			break;
		unsigned base = got; /* compaction below never overtakes base + i */
		for (int i = 0; i < n; i++) {
			struct vxm_req *r = done[base + (unsigned)i];
			if (finish_short(io, r)) {
				requeued = true;
				continue;
			}
			account(io, r);
			done[got++] = r; /* compacts over requeued ones */
			io->inflight--;
		}
		if (requeued)
			(void)io->ops->submit(io);
		if (got >= min)
			break;
	}
	return (int)got;
}

static int64_t run_one(struct vxm_io *io, struct vxm_req *req)
{
	struct vxm_req *done = NULL;
	int ret;

	if (io->inflight)
		return -EBUSY; /* I2 */
	ret = vxm_io_queue(io, req);
	if (ret < 0)
		return ret;
	ret = vxm_io_submit(io);
	if (ret < 0) {
		drain(io);
		return ret;
	}
	do
		ret = vxm_io_reap(io, 1, &done, 1);
	while (ret == 0 && io->inflight);
	if (ret < 0)
		return ret;
	if (ret == 0)
		return -EIO; /* the backend lost the request */
	return req->res;
}

int64_t vxm_io_pread(struct vxm_io *io, int slot, void *buf, uint64_t len, uint64_t off)
{
	struct vxm_req r = { .op = VXM_IO_READ, .file = slot, .off = off, .len = len, .buf = buf };
	return run_one(io, &r);
}

int vxm_io_pwrite(struct vxm_io *io, int slot, const void *buf, uint64_t len, uint64_t off)
{
	struct vxm_req r = { .op = VXM_IO_WRITE, .file = slot, .off = off, .len = len,
			     .buf = (void *)(uintptr_t)buf };
	int64_t ret = run_one(io, &r);

	if (ret < 0)
		return (int)ret;
	return (uint64_t)ret == len ? 0 : -EIO;
}

int vxm_io_sync(struct vxm_io *io, int slot, const char *tag, bool full)
{
	struct vxm_req r = { .op = VXM_IO_SYNC, .file = slot, .tag = tag,
			     .flags = full ? VXM_REQ_FULLSYNC : 0 };
	int64_t ret = run_one(io, &r);
	return ret < 0 ? (int)ret : 0;
}

int vxm_io_register_bufs(struct vxm_io *io, void *const *bufs, const size_t *lens, unsigned n)
{
	if (!io->ops->register_bufs)
		return -EOPNOTSUPP;
	if (io->inflight)
		return -EBUSY;
	return io->ops->register_bufs(io, bufs, lens, n);
}

/* ---- copy offload ---- */

int vxm_io_clone_supported(struct vxm_io *io, int dst, int src)
{
	const struct vxm_io_file *d = file_of(io, dst), *s = file_of(io, src);
	struct stat ds, ss;
	int64_t r;

	if (!d || !s)
		return -EBADF;
	if (d->fd < 0 || s->fd < 0)
		return 0; /* memory files */
	if (!(d->flags & VXM_O_RDWR))
		return -EBADF;
	if (fstat(d->fd, &ds) < 0 || fstat(s->fd, &ss) < 0)
		return -errno;
	if (ds.st_dev != ss.st_dev)
		return 0;
	/* zero length at src's end of file: the filesystem accepts the clone
	 * and has nothing to do (a len of 0 elsewhere means "to EOF") */
	struct file_clone_range fcr = { .src_fd = s->fd, .src_offset = (uint64_t)ss.st_size,
					.src_length = 0, .dest_offset = 0 };
	do
		r = ioctl(d->fd, FICLONERANGE, &fcr);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 1;
	switch (errno) {
	case EOPNOTSUPP:
	case EXDEV:
	case ENOTTY:
	case EINVAL:
	case ENOSYS:
		return 0;
	default:
		return -errno;
	}
}

uint32_t vxm_io_fs_block(struct vxm_io *io, int slot)
{
	struct vxm_io_file *f = file_of(io, slot);
	struct statfs sf;

	if (!f || f->fd < 0)
		return 0;
	if (!f->fs_block) {
		if (fstatfs(f->fd, &sf) == 0 && sf.f_bsize > 0)
			f->fs_block = (uint32_t)sf.f_bsize;
		else
			f->fs_block = 4096;
	}
	return f->fs_block;
}
