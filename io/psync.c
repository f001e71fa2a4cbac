/* io/psync.c: the portable backend, plain pread/pwrite/fdatasync.
 *
 * Each request is carried out inside queue() and parked on a completion list
 * that reap() hands back, so ordering is trivially program order (O1 holds
 * because nothing runs concurrently).  It is the fallback wherever io_uring
 * is unavailable, and the reference the other backends are tested against.
 */
#define _GNU_SOURCE
#include "io.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct psync {
	struct vxm_req *head, *tail; /* completed, not yet reaped */
};

static int psync_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)p;
	io->priv = calloc(1, sizeof(struct psync));
	return io->priv ? 0 : -ENOMEM;
}

static void psync_fini(struct vxm_io *io)
{
	free(io->priv);
	io->priv = NULL;
}

static int psync_size(struct vxm_io *io, int slot, uint64_t *size)
{
	struct stat st;

	if (fstat(io->files[slot].fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int psync_resize(struct vxm_io *io, int slot, uint64_t size)
{
	return ftruncate(io->files[slot].fd, (off_t)size) < 0 ? -errno : 0;
}

/* Loops over short transfers and EINTR (O4). */
static int64_t rw_full(int fd, bool write, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;

	while (done < len) {
		ssize_t n = write ? pwrite(fd, buf + done, len - done, (off_t)(off + done))
				  : pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		if (n == 0) {
			if (write)
				return -EIO;
			break; /* end of file */
		}
		done += (uint64_t)n;
	}
	return (int64_t)done;
}

static int64_t do_copy(int dfd, uint64_t doff, int sfd, uint64_t soff, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		loff_t in = (loff_t)(soff + done), out = (loff_t)(doff + done);
		ssize_t n = copy_file_range(sfd, &in, dfd, &out, len - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (uint64_t)n;
	}
	return (int64_t)done;
}

static int psync_queue(struct vxm_io *io, struct vxm_req *req)
{
	struct psync *ps = io->priv;
	int fd = io->files[req->file].fd;

	switch (req->op) {
	case VXM_IO_READ:
	case VXM_IO_WRITE:
		req->res = rw_full(fd, req->op == VXM_IO_WRITE, req->buf, req->len, req->off);
		break;
	case VXM_IO_SYNC:
		req->res = ((req->flags & VXM_REQ_FULLSYNC) ? fsync(fd) : fdatasync(fd)) < 0 ? -errno : 0;
		break;
	case VXM_IO_CLONE: {
		struct file_clone_range fcr = {
			.src_fd = io->files[req->src_file].fd,
			.src_offset = req->src_off,
			.src_length = req->len,
			.dest_offset = req->off,
		};
		req->res = ioctl(fd, FICLONERANGE, &fcr) < 0 ? -errno : (int64_t)req->len;
		break;
	}
	case VXM_IO_COPY:
		req->res = do_copy(fd, req->off, io->files[req->src_file].fd, req->src_off, req->len);
		break;
	default:
		return -EINVAL;
	}
	req->link = NULL;
	if (ps->tail)
		ps->tail->link = req;
	else
		ps->head = req;
	ps->tail = req;
	return 0;
}

static int psync_submit(struct vxm_io *io)
{
	(void)io;
	return 0;
}

static int psync_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct psync *ps = io->priv;
	unsigned n = 0;

	(void)min; /* everything queued has already completed */
	while (ps->head && n < max) {
		done[n++] = ps->head;
		ps->head = ps->head->link;
	}
	if (!ps->head)
		ps->tail = NULL;
	return (int)n;
}

const struct vxm_io_ops vxm_io_psync_ops = {
	.name = "psync",
	.version = VXM_IO_OPS_VERSION,
	.flags = 0,
	.init = psync_init,
	.fini = psync_fini,
	.file_size = psync_size,
	.file_resize = psync_resize,
	.queue = psync_queue,
	.submit = psync_submit,
	.reap = psync_reap,
};
