/* io/uring.c: the io_uring backend (liburing).
 *
 * One ring per context.  queue() only fills an SQE; submit() is the one
 * io_uring_enter that sends the batch; reap() harvests CQEs.  Each request
 * in the ring owns a slot (user_data is the slot index), which also carries
 * the progress of a short transfer, so the hot path never allocates.
 *
 *   queue ──> slot + SQE ──submit──> kernel ──CQE──> on_cqe ─┬─> done list ──reap──>
 *                ^                                          │
 *                └──── short / EINTR / EAGAIN: resubmit ────┘
 *
 * Files are registered in a sparse table indexed by slot number
 * (IOSQE_FIXED_FILE); buffers registered through register_bufs are used with
 * READ_FIXED/WRITE_FIXED whenever a request's buffer lies inside one.  SYNC
 * is an fsync SQE with IOSQE_IO_DRAIN, so the kernel starts it only after
 * every SQE submitted before it has completed (O1).  CLONE and COPY have no
 * SQE: queue() drains the ring and runs them inline (FICLONERANGE,
 * copy_file_range); their completion is handed out by the next reap().
 *
 * I1: used == slots holding a request; used <= depth <= SQ entries, and each
 *     used slot has at most one SQE/CQE outstanding, so get_sqe() cannot fail
 *     and the CQ (2 x SQ) cannot overflow.  queue() returns -EBUSY when
 *     used == depth.
 * I2: a READ/WRITE completes when done == len, at end of file (reads), or on
 *     an error; otherwise the remainder is resubmitted from the same slot
 *     (O4).  EINTR/EAGAIN resubmit the same remainder (bounded).
 * I3: when a WRITE is resubmitted, every SYNC in the ring queued after it is
 *     marked redo: its drain may have been satisfied by the short completion,
 *     so on its CQE it is issued once more (drained again) before it
 *     completes.  A SYNC therefore never completes ahead of a byte of an
 *     earlier write (O1).
 * I4: reg[slot] >= 0 iff slot is in the kernel's file table with that fd.
 * I5: reap() never waits unless used > 0, and submits before waiting.
 */
#define _GNU_SOURCE
#include "io_priv.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

int (*vxm_test_uring_hook)(void);

#ifdef VXM_HAVE_URING
#include <liburing.h>

enum {
	DEFAULT_DEPTH = 64,
	MAX_DEPTH = 4096,
	FILES_INIT = 64,
	MAX_SQE_LEN = 1u << 30,
	RETRY_MAX = 10000,
	CQE_BATCH = 64,
};

struct uslot {
	struct vxm_req *req;
	uint64_t done;       /* bytes moved so far (I2) */
	uint64_t seq;        /* queue order (I3) */
	unsigned retries;
	unsigned next_free;
	int fd;              /* descriptor, or registered index when fixed */
	int real_fd;
	bool fixed;
	bool direct;
	bool redo;           /* SYNC: issue once more (I3) */
};

struct ubuf {
	uintptr_t base;
	size_t len;
	unsigned idx;        /* index given to io_uring_register_buffers */
};

struct uring {
	struct io_uring ring;
	struct vxm_io *io;   /* for stats */
	unsigned depth;
	struct uslot *slots;
	unsigned free_head;  /* UINT_MAX: none */
	unsigned used;       /* I1 */
	unsigned unsubmitted;
	unsigned resubmitted;
	uint64_t seq;
	int *reg;            /* I4 */
	unsigned nreg;       /* 0: registration unavailable */
	struct ubuf *bufs;   /* sorted by base */
	unsigned nbufs;
	struct reqq done;
};

/* Debug checker for I1, run when reap hands requests out (O(depth)). */
static inline __attribute__((unused)) bool uring_check(const struct uring *u)
{
	unsigned busy = 0;

	for (unsigned i = 0; i < u->depth; i++)
		busy += u->slots[i].req != NULL;
	return busy == u->used && u->used <= u->depth && u->unsubmitted <= u->used;
}

static unsigned slot_get(struct uring *u)
{
	unsigned i = u->free_head;

	u->free_head = u->slots[i].next_free;
	u->used++;
	return i;
}

static void slot_put(struct uring *u, unsigned i)
{
	u->slots[i].req = NULL;
	u->slots[i].next_free = u->free_head;
	u->free_head = i;
	u->used--;
}

/* Index of the registered buffer holding [p, p+len), or -1. */
static int buf_index(const struct uring *u, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;
	unsigned lo = 0, hi = u->nbufs;

	while (lo < hi) { /* last buffer with base <= a */
		unsigned mid = (lo + hi) / 2;
		if (u->bufs[mid].base <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return -1;
	const struct ubuf *b = &u->bufs[lo - 1];
	if (a - b->base + len <= b->len)
		return (int)b->idx;
	return -1;
}

static struct io_uring_sqe *get_sqe(struct uring *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (vxm_unlikely(!sqe)) { /* cannot happen while I1 holds */
		if (io_uring_submit(&u->ring) >= 0)
			u->unsubmitted = 0;
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

/* Fills the SQE for slot i's request (or the rest of it). */
static int prep(struct uring *u, unsigned i)
{
	struct uslot *s = &u->slots[i];
	struct vxm_req *r = s->req;
	struct io_uring_sqe *sqe = get_sqe(u);
	unsigned flags = s->fixed ? IOSQE_FIXED_FILE : 0;

	if (!sqe)
		return -EBUSY;
	if (s->fixed)
		u->io->stats.fixed_file_ops++;
	if (r->op == VXM_IO_SYNC) {
		io_uring_prep_fsync(sqe, s->fd,
				    (r->flags & VXM_REQ_FULLSYNC) ? 0 : IORING_FSYNC_DATASYNC);
		flags |= IOSQE_IO_DRAIN; /* O1 */
	} else {
		uint64_t left = r->len - s->done;
		unsigned n = left > MAX_SQE_LEN ? MAX_SQE_LEN : (unsigned)left;
		uint8_t *p = (uint8_t *)r->buf + s->done;
		uint64_t off = r->off + s->done;
		int bi = u->nbufs ? buf_index(u, p, n) : -1;

		if (bi >= 0)
			u->io->stats.fixed_buf_ops++;

		if (r->op == VXM_IO_WRITE) {
			if (bi >= 0)
				io_uring_prep_write_fixed(sqe, s->fd, p, n, off, bi);
			else
				io_uring_prep_write(sqe, s->fd, p, n, off);
		} else {
			if (bi >= 0)
				io_uring_prep_read_fixed(sqe, s->fd, p, n, off, bi);
			else
				io_uring_prep_read(sqe, s->fd, p, n, off);
		}
	}
	io_uring_sqe_set_flags(sqe, flags);
	io_uring_sqe_set_data64(sqe, i);
	u->unsubmitted++;
	return 0;
}

static void finish(struct uring *u, unsigned i, int64_t res)
{
	struct vxm_req *r = u->slots[i].req;

	r->res = res;
	reqq_push(&u->done, r);
	slot_put(u, i);
}

static void resubmit(struct uring *u, unsigned i)
{
	struct uslot *s = &u->slots[i];

	if (s->req->op == VXM_IO_WRITE) { /* I3 */
		for (unsigned k = 0; k < u->depth; k++) {
			struct uslot *t = &u->slots[k];
			if (t->req && t->req->op == VXM_IO_SYNC && t->seq > s->seq)
				t->redo = true;
		}
	}
	int ret = prep(u, i);
	if (ret < 0)
		finish(u, i, ret);
	else
		u->resubmitted++;
}

static void on_cqe(struct uring *u, unsigned i, int res)
{
	struct uslot *s = &u->slots[i];
	struct vxm_req *r = s->req;

	if ((res == -EINTR || res == -EAGAIN) && s->retries++ < RETRY_MAX) {
		resubmit(u, i); /* I2 */
		return;
	}
	if (r->op == VXM_IO_SYNC) {
		if (res == 0 && s->redo) {
			s->redo = false;
			resubmit(u, i); /* I3 */
			return;
		}
		finish(u, i, res);
		return;
	}
	if (res < 0) {
		finish(u, i, res);
		return;
	}
	s->done += (uint64_t)res;
	if (s->done >= r->len)
		finish(u, i, (int64_t)s->done);
	else if (res == 0)
		finish(u, i, r->op == VXM_IO_READ ? (int64_t)s->done : -EIO); /* EOF */
	else if (r->op == VXM_IO_READ && s->direct && vxm_fd_at_eof(s->real_fd, r->off + s->done))
		finish(u, i, (int64_t)s->done); /* O_DIRECT: do not retry unaligned */
	else {
		u->io->stats.resubmits++;
		resubmit(u, i); /* short transfer (O4) */
	}
}

/* Harvests every CQE that is ready; resubmissions are sent at once. */
static int harvest(struct uring *u)
{
	struct io_uring_cqe *cqes[CQE_BATCH];
	unsigned n;
	int ret = 0;

	do {
		n = io_uring_peek_batch_cqe(&u->ring, cqes, CQE_BATCH);
		uint64_t data[CQE_BATCH];
		int res[CQE_BATCH];
		for (unsigned k = 0; k < n; k++) {
			data[k] = io_uring_cqe_get_data64(cqes[k]);
			res[k] = cqes[k]->res;
		}
		io_uring_cq_advance(&u->ring, n);
		for (unsigned k = 0; k < n; k++)
			on_cqe(u, (unsigned)data[k], res[k]);
	} while (n == CQE_BATCH);
	if (u->resubmitted) {
		ret = io_uring_submit(&u->ring);
		if (ret >= 0) {
			u->unsubmitted = 0;
			u->resubmitted = 0;
			ret = 0;
		}
	}
	return ret;
}

/* Waits until the ring holds no request (I5). */
static int drain_ring(struct uring *u)
{
	while (u->used) {
		int ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			return ret;
		if (ret >= 0)
			u->unsubmitted = 0;
		ret = harvest(u);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void unregister_bufs(struct uring *u)
{
	if (u->nbufs)
		io_uring_unregister_buffers(&u->ring);
	free(u->bufs);
	u->bufs = NULL;
	u->nbufs = 0;
}

static int uring_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	struct uring *u;
	int ret;

	if (vxm_test_uring_hook && (ret = vxm_test_uring_hook()))
		return ret;
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->io = io;
	u->depth = p->queue_depth ? p->queue_depth : DEFAULT_DEPTH;
	if (u->depth > MAX_DEPTH)
		u->depth = MAX_DEPTH;
	ret = io_uring_queue_init(u->depth, &u->ring,
				  IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN);
	if (ret == -EINVAL) /* kernels before 5.19 */
		ret = io_uring_queue_init(u->depth, &u->ring, 0);
	if (ret < 0)
		goto out_free;
	u->slots = calloc(u->depth, sizeof(*u->slots));
	if (!u->slots) {
		ret = -ENOMEM;
		goto out_exit;
	}
	for (unsigned i = 0; i < u->depth; i++)
		u->slots[i].next_free = i + 1 < u->depth ? i + 1 : UINT_MAX;
	u->free_head = 0;
	u->reg = malloc(FILES_INIT * sizeof(*u->reg));
	if (u->reg && io_uring_register_files_sparse(&u->ring, FILES_INIT) == 0) {
		u->nreg = FILES_INIT;
		for (unsigned i = 0; i < u->nreg; i++)
			u->reg[i] = -1;
	}
	io->priv = u;
	return 0;

out_exit:
	io_uring_queue_exit(&u->ring);
out_free:
	free(u);
	return ret;
}

static void uring_fini(struct vxm_io *io)
{
	struct uring *u = io->priv;

	if (!u)
		return;
	(void)drain_ring(u); /* the kernel must not touch buffers after we return */
	unregister_bufs(u);
	if (u->nreg)
		io_uring_unregister_files(&u->ring);
	io_uring_queue_exit(&u->ring);
	free(u->reg);
	free(u->slots);
	free(u);
	io->priv = NULL;
}

/* Re-creates the file table with at least want entries (ring idle only). */
static int grow_files(struct vxm_io *io, unsigned want)
{
	struct uring *u = io->priv;
	unsigned n = u->nreg;
	int *reg;

	while (n < want)
		n *= 2;
	reg = realloc(u->reg, n * sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	u->reg = reg;
	for (unsigned i = u->nreg; i < n; i++)
		reg[i] = -1;
	io_uring_unregister_files(&u->ring);
	if (io_uring_register_files_sparse(&u->ring, n) < 0) {
		u->nreg = 0; /* carry on with plain descriptors */
		return 0;
	}
	u->nreg = n;
	for (unsigned i = 0; i < n; i++) {
		int fd = reg[i];
		if (fd >= 0 && io_uring_register_files_update(&u->ring, i, &fd, 1) != 1)
			reg[i] = -1;
	}
	return 0;
}

static int uring_file_added(struct vxm_io *io, int slot)
{
	struct uring *u = io->priv;
	int fd = io->files[slot].fd;

	if (fd < 0 || !u->nreg)
		return 0;
	if ((unsigned)slot >= u->nreg) {
		if (u->used)
			return 0; /* registered later never; plain fd works */
		int ret = grow_files(io, (unsigned)slot + 1);
		if (ret < 0 || !u->nreg)
			return 0;
	}
	if (io_uring_register_files_update(&u->ring, (unsigned)slot, &fd, 1) == 1)
		u->reg[slot] = fd;
	return 0;
}

static void uring_file_removed(struct vxm_io *io, int slot)
{
	struct uring *u = io->priv;
	int none = -1;

	if ((unsigned)slot < u->nreg && u->reg[slot] >= 0) {
		io_uring_register_files_update(&u->ring, (unsigned)slot, &none, 1);
		u->reg[slot] = -1;
	}
}

static int uring_size(struct vxm_io *io, int slot, uint64_t *size)
{
	return vxm_fd_size(io->files[slot].fd, size);
}

static int uring_resize(struct vxm_io *io, int slot, uint64_t size)
{
	return vxm_fd_resize(io->files[slot].fd, size);
}

/* CLONE/COPY: drain the ring, run inline, complete on the next reap. */
static int run_inline(struct vxm_io *io, struct vxm_req *req)
{
	struct uring *u = io->priv;
	int fd = io->files[req->file].fd, sfd = io->files[req->src_file].fd;
	int ret = drain_ring(u);

	if (ret < 0)
		return ret;
	if (fd < 0 || sfd < 0)
		req->res = -EOPNOTSUPP;
	else if (req->op == VXM_IO_CLONE)
		req->res = vxm_fd_clone(fd, req->off, sfd, req->src_off, req->len);
	else
		req->res = vxm_fd_copy(fd, req->off, sfd, req->src_off, req->len);
	reqq_push(&u->done, req);
	return 0;
}

static int uring_queue(struct vxm_io *io, struct vxm_req *req)
{
	struct uring *u = io->priv;
	const struct vxm_io_file *f = &io->files[req->file];
	unsigned i;
	int ret;

	if (req->op == VXM_IO_CLONE || req->op == VXM_IO_COPY)
		return run_inline(io, req);
	if (req->op != VXM_IO_READ && req->op != VXM_IO_WRITE && req->op != VXM_IO_SYNC)
		return -EINVAL;
	if (f->fd < 0)
		return -EBADF;
	if (u->used >= u->depth)
		return -EBUSY; /* I1 */
	i = slot_get(u);
	struct uslot *s = &u->slots[i];
	bool fixed = (unsigned)req->file < u->nreg && u->reg[req->file] == f->fd;
	*s = (struct uslot){
		.req = req,
		.seq = ++u->seq,
		.fd = fixed ? req->file : f->fd,
		.real_fd = f->fd,
		.fixed = fixed,
		.direct = f->direct,
	};
	ret = prep(u, i);
	if (ret < 0)
		slot_put(u, i);
	return ret;
}

static int uring_submit(struct vxm_io *io)
{
	struct uring *u = io->priv;
	int ret;

	if (!u->unsubmitted)
		return 0;
	do
		ret = io_uring_submit(&u->ring);
	while (ret == -EINTR);
	if (ret >= 0) {
		u->unsubmitted = 0;
		u->resubmitted = 0;
	}
	return ret;
}

static int uring_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct uring *u = io->priv;
	unsigned n = 0;
	int ret = harvest(u);

	while (ret == 0 && u->done.n < min && u->used) { /* I5 */
		ret = io_uring_submit_and_wait(&u->ring, 1);
		if (ret >= 0) {
			u->unsubmitted = 0;
			ret = 0;
		} else if (ret == -EINTR || ret == -EAGAIN || ret == -EBUSY) {
			ret = 0;
		}
		if (ret == 0)
			ret = harvest(u);
	}
	while (n < max && u->done.head)
		done[n++] = reqq_pop(&u->done);
	assert(uring_check(u));
	return n ? (int)n : ret;
}

static int cmp_buf(const void *a, const void *b)
{
	const struct ubuf *x = a, *y = b;
	return x->base < y->base ? -1 : x->base > y->base;
}

static int uring_register_bufs(struct vxm_io *io, void *const *bufs, const size_t *lens,
			       unsigned n)
{
	struct uring *u = io->priv;
	struct iovec *iov;
	int ret;

	unregister_bufs(u);
	if (!n)
		return 0;
	iov = calloc(n, sizeof(*iov));
	u->bufs = calloc(n, sizeof(*u->bufs));
	if (!iov || !u->bufs) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		iov[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = lens[i] };
		u->bufs[i] = (struct ubuf){ .base = (uintptr_t)bufs[i], .len = lens[i], .idx = i };
	}
	ret = io_uring_register_buffers(&u->ring, iov, n);
	if (ret == 0) {
		qsort(u->bufs, n, sizeof(*u->bufs), cmp_buf);
		u->nbufs = n;
	}
out:
	free(iov);
	if (ret < 0) {
		free(u->bufs);
		u->bufs = NULL;
	}
	return ret;
}

const struct vxm_io_ops vxm_io_uring_ops = {
	.name = "uring",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_ASYNC | VXM_IO_FIXED_BUFS | VXM_IO_WHOLE,
	.init = uring_init,
	.fini = uring_fini,
	.file_added = uring_file_added,
	.file_removed = uring_file_removed,
	.file_size = uring_size,
	.file_resize = uring_resize,
	.queue = uring_queue,
	.submit = uring_submit,
	.reap = uring_reap,
	.register_bufs = uring_register_bufs,
};

#else /* !VXM_HAVE_URING */

static int uring_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)io;
	(void)p;
	return -ENOSYS; /* built without liburing: the registry falls back */
}

const struct vxm_io_ops vxm_io_uring_ops = {
	.name = "uring",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_ASYNC | VXM_IO_WHOLE,
	.init = uring_init,
};

#endif
