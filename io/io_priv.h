/* io/io_priv.h: helpers shared by the backends in io/ (not installed, not
 * part of the API).  Everything here has hidden visibility, as the whole
 * library has: the shared library exports only include/vhdxmerge.h.
 *
 *   struct reqq      FIFO of requests threaded through req->link (the field
 *                    is backend-private, so each backend may use it while it
 *                    owns a request)
 *   vxm_fd_*         one request carried out synchronously on descriptors:
 *                    whole transfers (O4), sync, clone, copy with fallback
 */
#ifndef VXM_IO_PRIV_H
#define VXM_IO_PRIV_H

#include "io.h"

#define VXM_HIDDEN __attribute__((visibility("hidden")))
#define vxm_unlikely(x) __builtin_expect(!!(x), 0)

struct reqq {
	struct vxm_req *head, *tail;
	unsigned n;
};

static inline void reqq_push(struct reqq *q, struct vxm_req *r)
{
	r->link = NULL;
	if (q->tail)
		q->tail->link = r;
	else
		q->head = r;
	q->tail = r;
	q->n++;
}

static inline struct vxm_req *reqq_pop(struct reqq *q)
{
	struct vxm_req *r = q->head;

	if (r) {
		q->head = r->link;
		if (!q->head)
			q->tail = NULL;
		q->n--;
		r->link = NULL;
	}
	return r;
}

/* Reads or writes all of [off, off+len) (O4), retrying EINTR/EAGAIN.  A read
 * stops at end of file; on an O_DIRECT descriptor (direct) a short read is
 * checked against the file size instead of retried at an unaligned offset.
 * Returns bytes moved or -errno. */
VXM_HIDDEN int64_t vxm_fd_rw(int fd, bool write, bool direct, void *buf, uint64_t len,
			     uint64_t off);
/* True when off_after is at or past the end of the file. */
VXM_HIDDEN bool vxm_fd_at_eof(int fd, uint64_t off_after);
/* fdatasync, or fsync when full; 0 or -errno. */
VXM_HIDDEN int vxm_fd_sync(int fd, bool full);
VXM_HIDDEN int vxm_fd_size(int fd, uint64_t *size);
VXM_HIDDEN int vxm_fd_resize(int fd, uint64_t size);

/* Tests: consulted by io_uring's setup, which fails with a non-zero result
 * (tests/hooks/io_hooks.c: VXM_URING_DISABLED); NULL outside test programs. */
VXM_HIDDEN extern int (*vxm_test_uring_hook)(void);
/* FICLONERANGE; len bytes or -errno. */
VXM_HIDDEN int64_t vxm_fd_clone(int dfd, uint64_t doff, int sfd, uint64_t soff, uint64_t len);
/* copy_file_range, falling back to pread/pwrite through a 4 KiB-aligned
 * bounce buffer when the kernel refuses (EXDEV, EOPNOTSUPP, EINVAL, ENOSYS).
 * A source that ends early is an error (-EIO).  len or -errno. */
VXM_HIDDEN int64_t vxm_fd_copy(int dfd, uint64_t doff, int sfd, uint64_t soff, uint64_t len);
/* Runs one request on descriptors (fd: req->file, sfd: req->src_file) and
 * returns what belongs in req->res. */
VXM_HIDDEN int64_t vxm_fd_exec(const struct vxm_req *req, int fd, bool direct, int sfd);

#endif
