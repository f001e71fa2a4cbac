/* engine/exec_queue.c: the executor's requests.  Transfers that continue
 * each other in the destination are gathered into one write of up to a
 * chunk (ex_transfer, the stage); each write covers whole 4 KiB pages of D,
 * D's own sectors read back around odd runs (padding), so every write to D
 * goes direct; clones (reflinks) are grown while they continue each other;
 * completions are reaped in any order and the first error is sticky.
 *
 * I1: a request buffer is reused only after its write completed.
 * I2: no page of D is in two requests at once.
 */
#define _GNU_SOURCE
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int ex_file(int dslot, int bslot, uint64_t off, uint64_t len, uint32_t align)
{
	return (off | len) % align ? bslot : dslot;
}

/* The file offset alignment O_DIRECT needs on path (statx), else 4 KiB. */
uint32_t ex_dio_align(const char *path)
{
#ifdef STATX_DIOALIGN
	struct statx sx;
	if (!statx(AT_FDCWD, path, 0, STATX_DIOALIGN, &sx) && (sx.stx_mask & STATX_DIOALIGN) &&
	    sx.stx_dio_offset_align && sx.stx_dio_offset_align <= EX_DIO_ALIGN &&
	    sx.stx_dio_mem_align <= EX_DIO_ALIGN)
		return sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align :
									 sx.stx_dio_mem_align;
#else
	(void)path;
#endif
	return EX_DIO_ALIGN;
}

/* The buffered twin of a direct slot, or -1. */
static int ex_twin(const struct exec *x, int slot)
{
	if (slot == x->dslot_d)
		return x->bslot_d != slot ? x->bslot_d : -1;
	for (int i = 0; i <= x->top; i++)
		if (x->dslot_open[i] && x->dslot[i] == slot)
			return x->bslot[i] != slot ? x->bslot[i] : -1;
	return -1;
}

static int ex_reap_once(struct exec *x, unsigned min)
{
	struct vxm_req *done[64];
	int n, ret;

	ret = vxm_io_submit(x->io);
	if (ret < 0)
		return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O submit failed: %s", vxm_strerror(ret));
	n = vxm_io_reap(x->io, min, done, 64);
	if (n < 0)
		return vxm_fail(x->err, n, VXM_OFF_NONE, "data I/O failed: %s", vxm_strerror(n));
	for (int i = 0; i < n; i++) {
		struct dreq *r = done[i]->owner;
		struct vxm_req *q = done[i];
		int twin;
		if (q->res == -EINVAL && (q->op == VXM_IO_READ || q->op == VXM_IO_WRITE) &&
		    (twin = ex_twin(x, q->file)) >= 0) {
			/* O_DIRECT refused a request: buffered from now on */
			for (int k = 0; k <= x->top; k++)
				x->dslot[k] = x->bslot[k];
			x->dslot_d = x->bslot_d;
			q->file = twin;
			ret = vxm_io_queue(x->io, q);
			if (ret)
				return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
						vxm_strerror(ret));
			continue;
		}
		if (q == &r->rd && q->op == VXM_IO_CLONE) {
			if (q->res < 0) {
				/* no reflinks here: copy this block and every later one */
				if (x->clone_ok)
					mg_say(x->o, "reflinks not available here (%s): copying data instead",
					       vxm_strerror((int)q->res));
				x->clone_ok = false;
				/* copied instead, a buffer at a time (r->more) */
				uint64_t n = r->rd.len < x->chunk ? r->rd.len : x->chunk;
				r->more = r->rd.len - n;
				r->rd = (struct vxm_req){ .op = VXM_IO_READ, .file = r->rd.src_file,
							  .off = r->rd.src_off, .len = n,
							  .buf = r->buf, .owner = r };
				r->reads_left = 1;
				r->wr.len = n;
				r->wr.buf = r->buf;
				ret = vxm_io_queue(x->io, &r->rd);
				if (ret)
					return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
							vxm_strerror(ret));
				continue;
			}
			x->cloned += r->rd.len;
			x->done += r->rd.len;
			r->busy = false;
			continue;
		}
		if (q != &r->wr) {
			if (q->res < 0)
				return vxm_fail(x->err, (int)q->res, q->off, "%s: read failed: %s",
						vxm_io_path(x->io, q->file), vxm_strerror((int)q->res));
			/* a source block stored short at the end of its file reads zeros */
			if ((uint64_t)q->res < q->len)
				memset((uint8_t *)q->buf + q->res, 0, q->len - (uint64_t)q->res);
			if (--r->reads_left)
				continue;
			ret = vxm_io_queue(x->io, &r->wr);
			if (ret)
				return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
						vxm_strerror(ret));
			continue;
		}
		if (q->res < 0 || (uint64_t)q->res != q->len)
			return vxm_fail(x->err, q->res < 0 ? (int)q->res : -EIO, q->off,
					"%s: write of %llu bytes at 0x%llx failed: %s",
					vxm_io_path(x->io, q->file), (unsigned long long)q->len,
					(unsigned long long)q->off,
					vxm_strerror(q->res < 0 ? (int)q->res : -EIO));
		if (q->buf == x->zero) {
			x->zeroed += q->len;
		} else {
			x->copied += q->len - r->zlen - r->plen;
			x->zeroed += r->zlen;
		}
		x->done += q->len - r->plen;
		x->writes++;
		if (q->file != x->dio_d)
			x->buffered += q->len;
		if (r->more) { /* the next piece of a clone copied instead */
			uint64_t n = r->more < x->chunk ? r->more : x->chunk;
			r->more -= n;
			r->reads_left = 1;
			r->rd.off += r->rd.len;
			r->rd.len = n;
			r->wr.off += r->wr.len;
			r->wr.len = n;
			ret = vxm_io_queue(x->io, &r->rd);
			if (ret)
				return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
						vxm_strerror(ret));
			continue;
		}
		r->busy = false;
	}
	return 0;
}

/* Submits and reaps.  The first failure is kept in x->failed and returned
 * by every later reap and commit: nothing is queued or committed after it
 * (a raw convert's journal must never claim bytes past a failed write), and
 * the completions reaped with it are dropped with the run. */
static int ex_reap(struct exec *x, unsigned min)
{
	if (!x->failed)
		x->failed = ex_reap_once(x, min);
	return x->failed;
}

/* Queues q, reaping completions while the ring is full. */
static int ex_queue_wait(struct exec *x, struct vxm_req *q)
{
	int ret;

	while ((ret = vxm_io_queue(x->io, q)) == -EBUSY) {
		ret = ex_reap(x, 1);
		if (ret)
			return ret;
	}
	return ret;
}

static int ex_queue_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len);

static int ex_queue_gather(struct exec *x, unsigned n);

/* Queues the held-back transfers as they are, if any; the stage is left
 * empty at their end. */
static int ex_stage_queue(struct exec *x)
{
	unsigned n = x->stg.n, real = 0;
	if (!n)
		return 0; /* (a drain inside ex_queue_gather: the stage is its) */
	for (unsigned i = 0; i < n; i++)
		real += x->stg.seg[i].layer != EX_DEST;
	x->stg.n = 0;
	int ret = 0;
	if (n == 1 && real)
		ret = ex_queue_transfer(x, x->stg.seg[0].layer, x->stg.seg[0].src, x->stg.dst,
					x->stg.len);
	else if (real)
		ret = ex_queue_gather(x, n);
	x->stg.dst += x->stg.len; /* nothing but D's own sectors: nothing to write */
	x->stg.len = 0;
	return ret;
}

/* Appends a piece at the stage's end (room checked by the caller). */
static void ex_stage_add(struct exec *x, int layer, uint64_t src, uint64_t len)
{
	unsigned n = x->stg.n;
	struct ex_seg *last = n ? &x->stg.seg[n - 1] : NULL;
	if (last && last->layer == layer && (layer == EX_ZERO || last->src + last->len == src))
		last->len += len;
	else
		x->stg.seg[x->stg.n++] = (struct ex_seg){ .layer = layer, .src = src, .len = len };
	x->stg.len += len;
}

/* A stage of EX_SEGS pieces ending inside a page: queues it up
 * to the page boundary and keeps the rest as the next stage's start.  The
 * stage starts on a page and a page holds at most 8 pieces (all of them
 * whole sectors), so the cut leaves pieces on both sides. */
static int ex_stage_cut(struct exec *x)
{
	struct ex_seg tail[EX_SEGS];
	unsigned n = x->stg.n, nt = 0;
	uint64_t end = x->stg.dst + x->stg.len, cut = end - end % x->pad, pos = end;
	if (cut <= x->stg.dst)
		return vxm_fail(x->err, -EINVAL, x->stg.dst, "internal: a stage of %u pieces inside one page",
				n);
	while (pos > cut) {
		struct ex_seg *sg = &x->stg.seg[n - 1];
		uint64_t start = pos - sg->len;
		if (start >= cut) {
			tail[nt++] = *sg;
			n--;
			pos = start;
		} else {
			uint64_t keep = cut - start;
			tail[nt++] = (struct ex_seg){ .layer = sg->layer,
						      .src = sg->layer == EX_ZERO ? 0 : sg->src + keep,
						      .len = sg->len - keep };
			sg->len = keep;
			pos = cut;
		}
	}
	x->stg.n = n;
	x->stg.len = cut - x->stg.dst;
	int ret = ex_stage_queue(x);
	for (unsigned i = 0; i < nt; i++)
		x->stg.seg[i] = tail[nt - 1 - i];
	x->stg.n = nt;
	x->stg.len = end - cut;
	return ret;
}

/* Queues the held-back transfers, if any, up to the end of their last
 * page, with D's own sectors after them. */
static int ex_stage_flush(struct exec *x)
{
	if (x->stg.n) {
		uint64_t end = x->stg.dst + x->stg.len, up = end + (x->pad - end % x->pad) % x->pad;
		if (up != end && up <= x->pad_end) {
			if (x->stg.n == EX_SEGS) {
				int ret = ex_stage_cut(x);
				if (ret)
					return ret;
			}
			ex_stage_add(x, EX_DEST, end, up - end);
		}
	}
	return ex_stage_queue(x);
}

int ex_drain(struct exec *x)
{
	int ret = ex_stage_flush(x);
	while (!ret && x->io->inflight)
		ret = ex_reap(x, 1);
	return ret;
}

static int ex_slot(struct exec *x, struct dreq **out)
{
	for (;;) {
		for (unsigned i = 0; i < x->qd; i++)
			if (!x->q[i].busy) {
				x->q[i].busy = true;
				x->q[i].more = 0;
				x->q[i].zlen = 0;
				x->q[i].plen = 0;
				*out = &x->q[i];
				return 0;
			}
		int ret = ex_reap(x, 1);
		if (ret)
			return ret;
	}
}

/* Queues a transfer: from layer (src_off) or zeros (layer < 0) to dst. */
static int ex_queue_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len)
{
	struct vxm_image *src = layer >= 0 ? x->c->layer[layer].img : NULL;

	while (len) {
		uint64_t n = len < x->chunk ? len : x->chunk;
		struct dreq *r;
		int ret = ex_slot(x, &r);
		if (ret)
			return ret;
		r->wr = (struct vxm_req){ .op = VXM_IO_WRITE,
					  .file = ex_file(x->dslot_d, x->bslot_d, dst, n, EX_DIO_ALIGN),
					  .off = dst, .len = n, .buf = layer < 0 ? x->zero : r->buf,
					  .owner = r };
		r->reads_left = 1;
		if (layer < 0) {
			ret = ex_queue_wait(x, &r->wr);
		} else if (src->nov) {
			/* a source replayed in memory: read through its overlay,
			 * synchronously (a shared context drains first) */
			ret = x->dio_up ? 0 : ex_drain(x);
			if (!ret)
				ret = vxm_image_pread(src, r->buf, n, src_off, x->err);
			if (!ret)
				ret = ex_queue_wait(x, &r->wr);
		} else {
			r->rd = (struct vxm_req){ .op = VXM_IO_READ,
						  .file = ex_file(x->dslot[layer], x->bslot[layer], src_off,
								  n, x->ralign[layer]),
						  .off = src_off, .len = n, .buf = r->buf, .owner = r };
			ret = ex_queue_wait(x, &r->rd);
		}
		if (ret)
			return vxm_fail(x->err, ret, dst, "data I/O queue failed: %s", vxm_strerror(ret));
		src_off += n;
		dst += n;
		len -= n;
	}
	return 0;
}

/* Queues the n pieces of x->stg (ex_stage_flush has emptied it, so a
 * drain in here queues nothing) as one write of a request's buffer: zero
 * pieces are cleared in it, the others read into their place, and the
 * write goes when the last read completes (ex_reap). */
static int ex_queue_gather(struct exec *x, unsigned n)
{
	struct dreq *r;
	int ret = ex_slot(x, &r);
	if (ret)
		return ret;
	r->wr = (struct vxm_req){ .op = VXM_IO_WRITE,
				  .file = ex_file(x->dslot_d, x->bslot_d, x->stg.dst, x->stg.len,
						  EX_DIO_ALIGN),
				  .off = x->stg.dst, .len = x->stg.len, .buf = r->buf, .owner = r };
	/* one extra count while the reads are queued, so that none completing
	 * meanwhile sends the write early */
	r->reads_left = 1;
	uint64_t boff = 0;
	unsigned nrd = 0;
	for (unsigned i = 0; i < n; i++) {
		int layer = x->stg.seg[i].layer;
		uint64_t src_off = x->stg.seg[i].src, len = x->stg.seg[i].len;
		struct vxm_image *src = layer >= 0 ? x->c->layer[layer].img : NULL;
		if (layer == EX_ZERO) {
			memset(r->buf + boff, 0, len);
			r->zlen += len;
		} else if (layer >= 0 && src->nov) {
			/* a source replayed in memory: read through its overlay
			 * (a shared context drains first; nothing is held back) */
			ret = x->dio_up ? 0 : ex_drain(x);
			if (!ret)
				ret = vxm_image_pread(src, r->buf + boff, len, src_off, x->err);
			if (ret)
				return ret;
		} else {
			/* a layer, or D's own sectors (no request in flight writes
			 * them: ex_transfer); O_DIRECT wants the memory aligned too */
			bool own = layer == EX_DEST;
			int dslot = own ? x->dslot_d : x->dslot[layer], bslot = own ? x->bslot_d : x->bslot[layer];
			uint32_t al = own ? x->dalign : x->ralign[layer];
			struct vxm_req *q = nrd ? &r->xrd[nrd - 1] : &r->rd;
			*q = (struct vxm_req){ .op = VXM_IO_READ,
					       .file = boff % al ? bslot : ex_file(dslot, bslot, src_off, len, al),
					       .off = src_off, .len = len, .buf = r->buf + boff, .owner = r };
			nrd++;
			r->reads_left++;
			r->plen += own ? len : 0;
			ret = ex_queue_wait(x, q);
			if (ret)
				return vxm_fail(x->err, ret, x->stg.dst + boff, "data I/O queue failed: %s",
						vxm_strerror(ret));
		}
		boff += len;
	}
	if (--r->reads_left)
		return 0;
	ret = ex_queue_wait(x, &r->wr);
	return ret ? vxm_fail(x->err, ret, x->stg.dst, "data I/O queue failed: %s", vxm_strerror(ret)) : 0;
}

/* Appends a piece at the stage's end, queueing the stage whenever it
 * holds chunk bytes (it then ends on a page) or EX_SEGS pieces (cut on a
 * page). */
static int ex_stage_put(struct exec *x, int layer, uint64_t src, uint64_t len)
{
	while (len) {
		int ret = 0;
		if (x->stg.n == EX_SEGS)
			ret = ex_stage_cut(x);
		if (ret)
			return ret;
		uint64_t room = x->chunk - x->stg.len, n = len < room ? len : room;
		ex_stage_add(x, layer, src, n);
		if (x->stg.len == x->chunk)
			ret = ex_stage_queue(x);
		if (ret)
			return ret;
		src += layer == EX_ZERO ? 0 : n;
		len -= n;
	}
	return 0;
}

/* A transfer, held back with those before it while it continues them in
 * the destination, so that blocks allocated in plan order become
 * chunk-sized writes whatever layer each comes from (ex_queue_gather).
 * Every ex_drain queues what is held back first, so commits, barriers and
 * synchronous metadata reads see every transfer before them issued.
 *
 * Every request covers whole pages of D (x->pad; with direct writes 4 KiB,
 * else a sector, where nothing is ever padded), the sectors it does not
 * change read back from D, so that no page is ever written buffered (a
 * sub-page write costs the kernel a synchronous read, and a sub-block
 * direct write is serialized against all others by ext4 and XFS) nor by
 * two requests at once.  Pieces in the same page join one stage, the gap
 * between them read back from D: no request in flight writes there (a
 * merge writes every sector of D at most once, in order within a block,
 * and blocks start on pages). */
int ex_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len)
{
	const uint64_t pg = x->pad;
	int ret = 0;
	if (x->stg.n) {
		uint64_t end = x->stg.dst + x->stg.len;
		if (dst == end)
			return ex_stage_put(x, layer, src_off, len);
		if (dst > end && dst - dst % pg < end + (pg - end % pg) % pg) {
			ret = ex_stage_put(x, EX_DEST, end, dst - end);
			return ret ? ret : ex_stage_put(x, layer, src_off, len);
		}
		ret = ex_stage_flush(x);
		if (ret)
			return ret;
	}
	x->stg.n = 0;
	x->stg.len = 0;
	x->stg.dst = dst - dst % pg;
	if (dst % pg)
		return (ret = ex_stage_put(x, EX_DEST, x->stg.dst, dst % pg)) ? ret :
			ex_stage_put(x, layer, src_off, len);
	if (len >= x->chunk) { /* whole chunks straight away */
		uint64_t n = len - len % x->chunk;
		ret = ex_queue_transfer(x, layer, src_off, dst, n);
		if (ret)
			return ret;
		src_off += layer == EX_ZERO ? 0 : n;
		dst += n;
		len -= n;
		x->stg.dst = dst;
	}
	return ex_stage_put(x, layer, src_off, len);
}

static int ex_clone(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len)
{
	struct dreq *r;
	int ret = ex_slot(x, &r);
	if (ret)
		return ret;
	r->rd = (struct vxm_req){ .op = VXM_IO_CLONE, .file = x->dslot_d, .off = dst, .len = len,
				  .src_file = x->dslot[layer], .src_off = src_off, .owner = r };
	r->wr = (struct vxm_req){ .op = VXM_IO_WRITE, .file = x->dslot_d, .off = dst, .len = len,
				  .buf = r->buf, .owner = r };
	ret = vxm_io_queue(x->io, &r->rd);
	if (ret)
		r->busy = false;
	return ret == -EBUSY ? ex_transfer(x, layer, src_off, dst, len) : ret;
}

#define EX_CLONE_MAX (1ull << 30) /* bytes per coalesced clone request */

/* Queues the pending clone. */
int ex_clone_flush(struct exec *x)
{
	uint64_t len = x->pc_len;
	if (!len)
		return 0;
	x->pc_len = 0;
	return ex_clone(x, x->pc_layer, x->pc_src, x->pc_dst, len);
}

/* Clones [src, src + len) of layer to dst: one request with the clones
 * before it while they continue each other in both files (blocks allocated
 * in plan order from a layer written in order: most of a merge). */
int ex_clone_add(struct exec *x, int layer, uint64_t src, uint64_t dst, uint64_t len)
{
	if (x->pc_len && x->pc_layer == layer && x->pc_src + x->pc_len == src &&
	    x->pc_dst + x->pc_len == dst && x->pc_len + len <= EX_CLONE_MAX) {
		x->pc_len += len;
		return 0;
	}
	int ret = ex_clone_flush(x);
	x->pc_layer = layer;
	x->pc_src = src;
	x->pc_dst = dst;
	x->pc_len = len;
	return ret;
}
