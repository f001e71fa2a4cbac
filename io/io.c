/* io/io.c: the backend-independent half of the I/O layer.
 *
 * Owns the file table (slots), the backend registry and the synchronous
 * helpers.  Backends see files only through slots, so a wrapper (fault
 * injection, recording) can sit between the engine and any backend.
 *
 * I1: a slot is used iff files[slot].used; closed slots are reused.
 * I2: the synchronous helpers run only with io->inflight == 0, so the one
 *     completion they reap is their own.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct vxm_io_ops *const backends[] = {
	&vxm_io_psync_ops,
	&vxm_io_mem_ops,
};

const struct vxm_io_ops *vxm_io_backend(const char *name)
{
	if (!name || !strcmp(name, "auto"))
		return &vxm_io_psync_ops;
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

int vxm_io_init(struct vxm_io *io, const struct vxm_io_ops *ops, const struct vxm_io_params *p)
{
	struct vxm_io_params def = {0};
	int ret;

	memset(io, 0, sizeof(*io));
	if (!p)
		p = &def;
	if (!ops)
		ops = vxm_io_backend(p->backend);
	if (!ops)
		return -ENOENT;
	if (ops->version != VXM_IO_OPS_VERSION)
		return -EPROTO;
	io->ops = ops;
	io->params = *p;
	ret = ops->init ? ops->init(io, p) : 0;
	if (ret < 0)
		io->ops = NULL;
	return ret;
}

void vxm_io_fini(struct vxm_io *io)
{
	if (!io->ops)
		return;
	for (unsigned i = 0; i < io->nfiles; i++)
		if (io->files[i].used)
			vxm_io_close(io, (int)i);
	if (io->ops->fini)
		io->ops->fini(io);
	free(io->files);
	io->files = NULL;
	io->nfiles = 0;
	io->ops = NULL;
}

static int slot_alloc(struct vxm_io *io)
{
	for (unsigned i = 0; i < io->nfiles; i++)
		if (!io->files[i].used)
			return (int)i;
	unsigned n = io->nfiles ? io->nfiles * 2 : 8;
	struct vxm_io_file *f = realloc(io->files, n * sizeof(*f));
	if (!f)
		return -ENOMEM;
	memset(f + io->nfiles, 0, (n - io->nfiles) * sizeof(*f));
	for (unsigned i = io->nfiles; i < n; i++)
		f[i].fd = -1;
	io->files = f;
	int slot = (int)io->nfiles;
	io->nfiles = n;
	return slot;
}

static int slot_publish(struct vxm_io *io, int slot)
{
	int ret = io->ops->file_added ? io->ops->file_added(io, slot) : 0;

	if (ret < 0) {
		struct vxm_io_file *f = &io->files[slot];
		if (f->fd >= 0)
			close(f->fd);
		free(f->path);
		if (f->mem_owned)
			free(f->mem);
		memset(f, 0, sizeof(*f));
		f->fd = -1;
		return ret;
	}
	return slot;
}

int vxm_io_add_fd(struct vxm_io *io, int fd, const char *path, unsigned flags)
{
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

int vxm_io_open(struct vxm_io *io, const char *path, unsigned flags)
{
	int oflags = O_CLOEXEC;
	int fd;

	if (io->ops->flags & VXM_IO_MEMFILES)
		return -EOPNOTSUPP;
	oflags |= (flags & VXM_O_RDWR) ? O_RDWR : O_RDONLY;
	if (flags & VXM_O_CREATE)
		oflags |= O_CREAT | O_EXCL;
	if (flags & VXM_O_TRUNC)
		oflags |= O_TRUNC;
	fd = -1;
	if (flags & VXM_O_DIRECT) {
		fd = open(path, oflags | O_DIRECT, 0644);
		if (fd < 0 && errno == EINVAL && io->params.log) {
			char line[600];
			snprintf(line, sizeof(line), "%s: O_DIRECT not supported here, using buffered I/O",
				 path);
			io->params.log(io->params.log_ctx, line);
		}
	}
	if (fd < 0)
		fd = open(path, oflags, 0644);
	if (fd < 0)
		return -errno;
	int slot = vxm_io_add_fd(io, fd, path, flags);
	if (slot < 0 && slot != -ENOMEM)
		return slot;
	if (slot == -ENOMEM)
		close(fd);
	return slot;
}

int vxm_io_mem_add(struct vxm_io *io, const void *buf, size_t len, unsigned flags)
{
	int slot;

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

static struct vxm_io_file *file_of(const struct vxm_io *io, int slot)
{
	if (slot < 0 || (unsigned)slot >= io->nfiles || !io->files[slot].used)
		return NULL;
	return &io->files[slot];
}

int vxm_io_close(struct vxm_io *io, int slot)
{
	struct vxm_io_file *f = file_of(io, slot);
	int ret = 0;

	if (!f)
		return -EBADF;
	if (io->ops->file_removed)
		io->ops->file_removed(io, slot);
	if (f->fd >= 0 && close(f->fd) < 0)
		ret = -errno;
	free(f->path);
	if (f->mem_owned)
		free(f->mem);
	memset(f, 0, sizeof(*f));
	f->fd = -1;
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

int vxm_io_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	int n = io->ops->reap(io, min, done, max);

	if (n > 0) {
		io->inflight -= (unsigned)n;
		for (int i = 0; i < n; i++) {
			struct vxm_req *r = done[i];
			if (r->res < 0)
				continue;
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
	}
	return n;
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
	if (ret < 0)
		return ret;
	do
		ret = vxm_io_reap(io, 1, &done, 1);
	while (ret == 0);
	if (ret < 0)
		return ret;
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
