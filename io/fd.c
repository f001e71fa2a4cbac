/* io/fd.c: one request carried out synchronously on file descriptors.
 *
 * The psync workers run every request through vxm_fd_exec(); the uring
 * backend uses the clone and copy halves for the CLONE/COPY requests it
 * executes inline.  Nothing here keeps state.
 *
 * I1: a READ/WRITE result is whole (len), or short only because the file
 *     ends (reads), or negative (O4).
 * I2: EINTR and EAGAIN are retried, never reported.
 * I3: COPY never reports a kernel refusal to offload (EXDEV, EOPNOTSUPP,
 *     EINVAL, ENOSYS): it moves the bytes itself instead.
 */
#define _GNU_SOURCE
#include "io_priv.h"

#include <errno.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_CHUNK = 1 << 30, BOUNCE = 1 << 20, EAGAIN_TRIES = 10000 };

bool vxm_fd_at_eof(int fd, uint64_t off_after)
{
	struct stat st;

	return fstat(fd, &st) == 0 && off_after >= (uint64_t)st.st_size;
}

int64_t vxm_fd_rw(int fd, bool write, bool direct, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;
	uint64_t done = 0;
	unsigned again = 0;

	while (done < len) {
		size_t n = len - done > MAX_CHUNK ? MAX_CHUNK : (size_t)(len - done);
		ssize_t r = write ? pwrite(fd, p + done, n, (off_t)(off + done))
				  : pread(fd, p + done, n, (off_t)(off + done));
		if (r < 0) {
			if (errno == EINTR || (errno == EAGAIN && ++again < EAGAIN_TRIES))
				continue; /* I2 */
			return -errno;
		}
		if (r == 0) {
			if (write)
				return -EIO;
			break; /* end of file */
		}
		done += (uint64_t)r;
		/* O_DIRECT: the remainder would start unaligned; ask the size */
		if (!write && direct && done < len && vxm_fd_at_eof(fd, off + done))
			break;
	}
	return (int64_t)done;
}

int vxm_fd_sync(int fd, bool full)
{
	int r;

	do
		r = full ? fsync(fd) : fdatasync(fd);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int vxm_fd_size(int fd, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

int vxm_fd_resize(int fd, uint64_t size)
{
	int r;

	do
		r = ftruncate(fd, (off_t)size);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

int64_t vxm_fd_clone(int dfd, uint64_t doff, int sfd, uint64_t soff, uint64_t len)
{
	struct file_clone_range fcr = {
		.src_fd = sfd,
		.src_offset = soff,
		.src_length = len,
		.dest_offset = doff,
	};

	if (!len)
		return 0; /* FICLONERANGE treats 0 as "to end of file" */
	while (ioctl(dfd, FICLONERANGE, &fcr) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return (int64_t)len;
}

static int64_t copy_bounce(int dfd, uint64_t doff, int sfd, uint64_t soff, uint64_t len)
{
	uint64_t done = 0;
	void *b = aligned_alloc(4096, BOUNCE);

	if (!b)
		return -ENOMEM;
	while (done < len) {
		uint64_t n = len - done > BOUNCE ? BOUNCE : len - done;
		int64_t r = vxm_fd_rw(sfd, false, false, b, n, soff + done);
		if (r >= 0 && (uint64_t)r < n)
			r = -EIO; /* the source ended inside the range */
		if (r >= 0)
			r = vxm_fd_rw(dfd, true, false, b, n, doff + done);
		if (r < 0) {
			free(b);
			return r;
		}
		done += n;
	}
	free(b);
	return (int64_t)done;
}

int64_t vxm_fd_copy(int dfd, uint64_t doff, int sfd, uint64_t soff, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		loff_t in = (loff_t)(soff + done), out = (loff_t)(doff + done);
		size_t n = len - done > MAX_CHUNK ? MAX_CHUNK : (size_t)(len - done);
		ssize_t r = copy_file_range(sfd, &in, dfd, &out, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL ||
			    errno == ENOSYS) { /* I3 */
				int64_t b = copy_bounce(dfd, doff + done, sfd, soff + done,
							len - done);
				return b < 0 ? b : (int64_t)len;
			}
			return -errno;
		}
		if (r == 0)
			return -EIO; /* source ended inside the range */
		done += (uint64_t)r;
	}
	return (int64_t)done;
}

int64_t vxm_fd_exec(const struct vxm_req *req, int fd, bool direct, int sfd)
{
	switch (req->op) {
	case VXM_IO_READ:
		return vxm_fd_rw(fd, false, direct, req->buf, req->len, req->off);
	case VXM_IO_WRITE:
		return vxm_fd_rw(fd, true, direct, req->buf, req->len, req->off);
	case VXM_IO_SYNC:
		return vxm_fd_sync(fd, req->flags & VXM_REQ_FULLSYNC);
	case VXM_IO_CLONE:
		return vxm_fd_clone(fd, req->off, sfd, req->src_off, req->len);
	case VXM_IO_COPY:
		return vxm_fd_copy(fd, req->off, sfd, req->src_off, req->len);
	}
	return -EINVAL;
}
