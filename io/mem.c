/* io/mem.c: files that live in memory.
 *
 * Used to open images from a buffer (fuzzing, malformed-input tests) and to
 * run crash enumeration fast.  Read-only files borrow the caller's bytes;
 * writable ones are private copies that grow on write or resize.  Syncs are
 * no-ops that still complete with their tag so wrappers can count them.
 * COPY is a memcpy between memory files; CLONE is not supported (memory
 * files share nothing), so vxm_io_clone_supported() says 0 for them.
 *
 * I1: every request completes inside queue(), whole (O4), in program order.
 */
#include "io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct memq {
	struct vxm_req *head, *tail;
};

static int mem_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)p;
	io->priv = calloc(1, sizeof(struct memq));
	return io->priv ? 0 : -ENOMEM;
}

static void mem_fini(struct vxm_io *io)
{
	free(io->priv);
	io->priv = NULL;
}

static int mem_size(struct vxm_io *io, int slot, uint64_t *size)
{
	*size = io->files[slot].mem_size;
	return 0;
}

static int mem_resize(struct vxm_io *io, int slot, uint64_t size)
{
	struct vxm_io_file *f = &io->files[slot];

	if (!f->mem_owned)
		return -EBADF;
	if (size > f->mem_cap) {
		uint64_t cap = f->mem_cap ? f->mem_cap : 4096;
		while (cap < size)
			cap *= 2;
		if (cap > SIZE_MAX)
			return -EFBIG;
		uint8_t *m = realloc(f->mem, (size_t)cap);
		if (!m)
			return -ENOMEM;
		f->mem = m;
		f->mem_cap = cap;
	}
	if (size > f->mem_size)
		memset(f->mem + f->mem_size, 0, (size_t)(size - f->mem_size));
	f->mem_size = size;
	return 0;
}

static int mem_queue(struct vxm_io *io, struct vxm_req *req)
{
	struct memq *q = io->priv;
	struct vxm_io_file *f = &io->files[req->file];
	int ret;

	switch (req->op) {
	case VXM_IO_READ:
		if (req->off >= f->mem_size) {
			req->res = 0;
		} else {
			uint64_t n = f->mem_size - req->off;
			if (n > req->len)
				n = req->len;
			memcpy(req->buf, f->mem + req->off, (size_t)n);
			req->res = (int64_t)n;
		}
		break;
	case VXM_IO_WRITE:
		if (!(f->flags & VXM_O_RDWR)) {
			req->res = -EBADF;
			break;
		}
		if (req->off + req->len > f->mem_size) {
			ret = mem_resize(io, req->file, req->off + req->len);
			if (ret < 0) {
				req->res = ret;
				break;
			}
		}
		memcpy(f->mem + req->off, req->buf, (size_t)req->len);
		req->res = (int64_t)req->len;
		break;
	case VXM_IO_SYNC:
		req->res = 0;
		break;
	case VXM_IO_COPY: {
		const struct vxm_io_file *s = &io->files[req->src_file];
		if (!(f->flags & VXM_O_RDWR)) {
			req->res = -EBADF;
			break;
		}
		if (req->src_off > s->mem_size || s->mem_size - req->src_off < req->len) {
			req->res = -EIO; /* the source ends inside the range */
			break;
		}
		if (req->off + req->len > f->mem_size) {
			ret = mem_resize(io, req->file, req->off + req->len);
			if (ret < 0) {
				req->res = ret;
				break;
			}
		}
		/* s->mem may be f->mem (same file): memmove */
		memmove(f->mem + req->off, io->files[req->src_file].mem + req->src_off,
			(size_t)req->len);
		req->res = (int64_t)req->len;
		break;
	}
	default:
		req->res = -EOPNOTSUPP;
		break;
	}
	req->link = NULL;
	if (q->tail)
		q->tail->link = req;
	else
		q->head = req;
	q->tail = req;
	return 0;
}

static int mem_submit(struct vxm_io *io)
{
	(void)io;
	return 0;
}

static int mem_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct memq *q = io->priv;
	unsigned n = 0;

	(void)min;
	while (q->head && n < max) {
		done[n++] = q->head;
		q->head = q->head->link;
	}
	if (!q->head)
		q->tail = NULL;
	return (int)n;
}

const struct vxm_io_ops vxm_io_mem_ops = {
	.name = "mem",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_MEMFILES | VXM_IO_WHOLE,
	.init = mem_init,
	.fini = mem_fini,
	.file_size = mem_size,
	.file_resize = mem_resize,
	.queue = mem_queue,
	.submit = mem_submit,
	.reap = mem_reap,
};
