/* engine/exec.c: the executor, the part of a merge that moves data: it
 * takes the plan's extents in destination order, fills D block by block
 * (fmt §8.2), allocates where M3 says, and commits BAT entries, bitmap bits
 * and the journal's cursor through D's log once the data they publish is
 * durable (M2).  A raw output has no BAT: only its data and the cursor.
 * The requests themselves (reads, gathered writes, clones, padding) are
 * engine/exec_queue.c's.
 *
 * Commits of BAT updates and the cursor (ex_commit_due): no sooner than
 * COMMIT_BYTES after the last, no later than COMMIT_BYTES_MAX (what a crash
 * can make a resumed run redo), and in between once the time since the last
 * commit is COMMIT_RATIO times what it cost.
 */
#define _GNU_SOURCE
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Commits of BAT updates and the cursor (ex_commit_due): no sooner than
 * COMMIT_BYTES after the last, no later than COMMIT_BYTES_MAX (what a crash
 * can make a resumed run redo), and in between once the time since the last
 * commit is COMMIT_RATIO times what it cost.  A commit stalls the data path
 * for device flushes: tens of ms when little waits in the device's cache
 * (commits stay at 1 GiB; the log's own flushes take 0.05-0.09 s here),
 * 0.5-0.9 s for the data-sync on the virtio disk measured here, whose host
 * cache writes back on every flush (commits at 1 GiB cost a quarter of the
 * run). */
#define COMMIT_BYTES (1ull << 30)
#define COMMIT_BYTES_MAX (8ull << 30)
#define COMMIT_RATIO 8.0
/* 16 requests of up to 4 MiB: the virtio disk measured here moves 896 MB/s
 * with 4 MiB requests and 627 with 1 MiB (fio, read || write); the joined
 * transfers (ex_transfer) reach 4 MiB where the plan allows.  64 MiB of
 * buffers, whatever the disk size. */
#define EX_QD_DEFAULT 16u
#define EX_CHUNK_DEFAULT (4u << 20)

static void ex_progress(struct exec *x, const char *phase, bool force)
{
	double t = mg_now();
	if (force || t - x->last_progress >= 0.2) {
		x->last_progress = t;
		mg_progress(x->o, phase, x->done, x->total_bytes, x->copied, x->cloned, x->zeroed);
	}
}

/* Allocates the next len bytes (M3). */
static int ex_alloc(struct exec *x, uint64_t len, uint64_t *off)
{
	*off = x->alloc_next;
	int ret = vxm_writer_reserve(x->w, x->alloc_next, len, x->err);
	if (ret)
		return ret;
	x->alloc_next += len;
	return 0;
}

/* An object found allocated at off (len bytes): the merge's own from an
 * earlier run advances the allocation point; anything else must lie below
 * alloc_base. */
static int ex_account(struct exec *x, uint64_t off, uint64_t len, const char *what)
{
	if (off < x->alloc_base || off < x->alloc_next)
		return 0;
	if (off != x->alloc_next)
		return vxm_fail(x->err, -VXM_ECORRUPT, off,
				"%s: %s at 0x%llx, but this merge allocates at 0x%llx next: the file changed since the merge started",
				x->d->path, what, (unsigned long long)off,
				(unsigned long long)x->alloc_next);
	x->alloc_next = off + len;
	return 0;
}

static int ex_ensure_sb(struct exec *x, uint64_t chunk)
{
	const struct vxm_geom *g = &x->d->g;
	uint64_t idx = vxm_geom_sb_index(g, chunk), e, off;
	int ret = vxm_txn_get_bat(x->w, idx, &e, x->err);
	if (ret)
		return ret;
	if (vxm_bat_state(e) == VXM_SB_PRESENT) {
		if (chunk != x->sb_chunk_done) {
			ret = ex_account(x, vxm_bat_offset(e), VXM_SB_BLOCK_SIZE, "a sector bitmap");
			x->sb_chunk_done = chunk;
		}
		return ret;
	}
	ret = ex_alloc(x, VXM_SB_BLOCK_SIZE, &off);
	if (!ret)
		ret = vxm_txn_set_bat(x->w, idx, vxm_bat_entry(VXM_SB_PRESENT, off), x->err);
	x->sb_chunk_done = chunk;
	return ret;
}

static bool ex_commit_due(struct exec *x)
{
	if (x->since_commit < x->commit_min)
		return false;
	return x->since_commit >= x->commit_min * (COMMIT_BYTES_MAX / COMMIT_BYTES) ||
	       mg_now() - x->commit_end >= COMMIT_RATIO * x->commit_cost;
}

static int ex_commit(struct exec *x, uint64_t cursor, const char *tag)
{
	double t0 = mg_now();
	int ret = x->failed; /* a flush after a failed write or flush proves nothing */
	if (!ret)
		ret = ex_clone_flush(x); /* M2: cloned before published */
	if (!ret)
		ret = ex_drain(x);
	if (ret)
		return ret;
	if (x->w) {
		vxm_writer_data_written(x->w);
		ret = vxm_txn_commit(x->w, tag, x->err);
		/* M2 for the cursor too: a resume whose BAT entries are all in
		 * place already stages nothing, and the commit then skips its
		 * data-sync; the journal must not claim the data before it is
		 * durable */
		if (!ret)
			ret = vxm_writer_flush(x->w, x->err);
		if (ret)
			return x->failed = ret;
	} else {
		ret = vxm_io_sync(x->io, x->dslot_d, tag, false);
		if (ret)
			return x->failed = vxm_fail(x->err, ret, VXM_OFF_NONE, "%s: flush failed: %s",
						    vxm_io_path(x->io, x->dslot_d), vxm_strerror(ret));
	}
	x->since_commit = 0;
	if (x->j && cursor > x->j->cursor) {
		x->j->cursor = cursor;
		x->j->alloc_next = x->alloc_next;
		ret = vxm_journal_save(x->j, x->jpath, x->err);
	}
	x->commit_end = mg_now();
	x->commit_cost = x->commit_end - t0;
	x->commit_seconds += x->commit_cost;
	x->commits++;
	return ret;
}

static int ex_block_finish(struct exec *x)
{
	if (x->blk == UINT64_MAX || !x->d)
		return 0;
	const struct vxm_geom *g = &x->d->g;
	uint64_t b = x->blk, first = b * x->spb;
	uint64_t nsec = x->total - first < x->spb ? x->total - first : x->spb;
	uint64_t idx = vxm_geom_pb_index(g, b);
	bool new_here = x->blk_off && !x->blk_alloc_orig;
	int ret = 0;

	x->blk = UINT64_MAX;
	if (!x->d_parent) {
		if (new_here)
			ret = vxm_txn_set_bat(x->w, idx, vxm_bat_entry(VXM_PB_FULLY_PRESENT, x->blk_off), x->err);
		else if (!x->blk_off && !x->d_fixed && x->blk_resolved == nsec &&
			 x->blk_zero == nsec && x->blk_state != VXM_PB_ZERO)
			ret = vxm_txn_set_bat(x->w, idx, vxm_bat_entry(VXM_PB_ZERO, 0), x->err);
	} else {
		bool partial_now = x->blk_alloc_orig && x->blk_state == VXM_PB_PARTIALLY_PRESENT;
		if (new_here) {
			bool full = x->blk_resolved == nsec || x->blk_state == VXM_PB_ZERO ||
				    x->blk_state == VXM_PB_UNDEFINED || x->blk_state == VXM_PB_UNMAPPED;
			if (full) {
				ret = vxm_txn_set_bat(x->w, idx,
						      vxm_bat_entry(VXM_PB_FULLY_PRESENT, x->blk_off), x->err);
			} else {
				ret = ex_ensure_sb(x, b / g->chunk_ratio);
				if (!ret)
					ret = vxm_txn_set_bat(x->w, idx,
							      vxm_bat_entry(VXM_PB_PARTIALLY_PRESENT, x->blk_off),
							      x->err);
				partial_now = true;
			}
		}
		if (!ret && partial_now) {
			if (!new_here)
				ret = ex_ensure_sb(x, b / g->chunk_ratio);
			for (uint64_t s = 0; !ret && s < nsec;) {
				uint64_t run = vxm_bitmap_run(x->blk_bits, s, nsec);
				if (vxm_bit_get(x->blk_bits, s))
					ret = vxm_txn_set_bits(x->w, first + s, run, true, x->err);
				s += run;
			}
		}
	}
	if (ret)
		return ret;
	x->since_commit += nsec * x->lss;
	if (ex_commit_due(x) || vxm_txn_room(x->w) < 64)
		ret = ex_commit(x, (first + nsec) * x->lss, "bat-commit");
	return ret;
}

static int ex_block_begin(struct exec *x, uint64_t b)
{
	const struct vxm_geom *g = &x->d->g;
	uint64_t e;
	int ret = vxm_txn_get_bat(x->w, vxm_geom_pb_index(g, b), &e, x->err);
	if (ret)
		return ret;
	unsigned st = vxm_bat_state(e);
	x->blk = b;
	x->blk_state = st;
	x->blk_alloc_orig = st == VXM_PB_FULLY_PRESENT || st == VXM_PB_PARTIALLY_PRESENT;
	x->blk_off = x->blk_alloc_orig ? vxm_bat_offset(e) : 0;
	x->blk_fresh = false;
	x->blk_resolved = x->blk_zero = 0;
	x->blk_alloc_at = x->alloc_next;
	if (x->blk_bits)
		memset(x->blk_bits, 0, (x->spb + 7) / 8);
	if (x->blk_alloc_orig && x->blk_off >= x->alloc_base) {
		/* allocated by an earlier run of this merge: space it wrote only
		 * where data goes, so the rest still reads zeros (M3) */
		x->blk_fresh = true;
		ret = ex_account(x, x->blk_off, x->bs, "a payload block");
	}
	return ret;
}

/* One extent of the plan into D: block by block, each entered (allocated
 * where M3 says) and finished (its BAT entry and bitmap bits staged). */
static int ex_extent(struct exec *x, const struct vxm_extent *e)
{
	uint64_t a = e->voff, end = e->voff + e->len;
	int ret;

	if (x->o->stop && *x->o->stop)
		return -EINTR;
	if (end <= x->cursor)
		return 0; /* durable already */
	if (a < x->cursor)
		a = x->cursor;
	uint64_t src = e->src_off + (a - e->voff);

	if (!x->d) { /* raw output: the virtual offset is the file offset */
		if (e->kind == VXM_EXT_COPY) {
			ret = ex_transfer(x, e->layer, src, a, end - a);
			if (ret)
				return ret;
		} else {
			x->done += end - a;
		}
		x->since_commit += end - a;
		if (ex_commit_due(x) && (ret = ex_commit(x, end, "data-commit")))
			return ret;
		ex_progress(x, "copy", false);
		/* a shared context must be idle for the planner's reads (io.h) */
		return x->dio_up ? 0 : ex_drain(x);
	}
	while (a < end) {
		uint64_t s = a / x->lss, b = s / x->spb;
		if (b != x->blk) {
			/* finishing and entering a block read metadata
			 * synchronously: a shared context must be idle (io.h) */
			ret = x->dio_up ? 0 : ex_drain(x);
			if (!ret)
				ret = ex_block_finish(x);
			if (!ret)
				ret = ex_block_begin(x, b);
			if (ret)
				return ret;
		}
		uint64_t bend = (b + 1) * x->spb * x->lss;
		uint64_t n = (end < bend ? end : bend) - a;
		uint64_t in_blk = a - b * x->spb * x->lss;
		bool whole = in_blk == 0 && n == x->bs;
		if (e->kind == VXM_EXT_COPY || (x->d_parent && !x->blk_off)) {
			if (!x->blk_off) {
				ret = ex_alloc(x, x->bs, &x->blk_off);
				if (ret)
					return ret;
				x->blk_fresh = true;
			}
		}
		uint64_t dst = x->blk_off + in_blk;
		if (e->kind == VXM_EXT_COPY) {
			if (x->clone_ok && x->layer_clone[e->layer] && (src | dst | n) % x->clone_blk == 0 &&
			    (whole || n >= EX_CLONE_MIN))
				ret = ex_clone_add(x, e->layer, src, dst, n);
			else
				ret = ex_transfer(x, e->layer, src, dst, n);
		} else if (x->blk_off && !x->blk_fresh) {
			ret = ex_transfer(x, -1, 0, dst, n); /* zeros over old data */
		} else {
			x->done += n; /* fresh space or an unallocated base block reads zeros */
			ret = 0;
		}
		if (ret)
			return ret;
		uint64_t ns = n / x->lss;
		if (x->blk_bits)
			vxm_bitmap_fill(x->blk_bits, s - b * x->spb, ns, true);
		x->blk_resolved += ns;
		if (e->kind == VXM_EXT_ZERO)
			x->blk_zero += ns;
		a += n;
		src += n;
	}
	ex_progress(x, "copy", false);
	/* the planner's metadata reads need an idle context when it is shared */
	if (x->dio_up)
		return 0;
	ret = ex_clone_flush(x);
	return ret ? ret : ex_drain(x);
}

void ex_fini(struct exec *x)
{
	struct vxm_req *done[64];

	/* a run that failed mid-pipeline leaves requests in flight: reap them
	 * (without acting on them) so the caller's shared context is idle */
	while (!x->dio_up && x->io && x->io->inflight) {
		(void)vxm_io_submit(x->io);
		if (vxm_io_reap(x->io, 1, done, 64) <= 0)
			break;
	}
	if (x->dio_up)
		vxm_io_fini(&x->dio);
	else if (x->io)
		for (unsigned i = 0; i < VXM_CHAIN_MAX_DEPTH; i++)
			if (x->dslot_open[i])
				vxm_io_close(x->io, x->dslot[i]);
	if (!x->dio_up && x->io && x->dslot_d_open)
		vxm_io_close(x->io, x->dslot_d);
	vxm_topo_free(x->topo, &x->mem); /* after the context that registered it */
	vxm_topo_close(x->topo);
	free(x->heap);
	free(x->q);
	free(x->blk_bits);
}

#define EX_HUGE (2u << 20) /* a huge page */

/* Sets up the data path: its own I/O context and descriptors, so the
 * metadata reads of the planner never wait behind data requests. */
struct vxm_io_params ex_io_params(const struct vxm_merge_opts *o)
{
	unsigned qd = o->queue_depth ? o->queue_depth : EX_QD_DEFAULT;
	/* room for every read of every request's gathered write, within
	 * 4096 entries unless the caller asked for more requests than that */
	unsigned depth = qd * EX_SEGS;
	if (depth > 4096)
		depth = qd > 4096 ? qd : 4096;
	return (struct vxm_io_params){ .queue_depth = depth, .backend = o->backend, .log = o->log,
				       .log_ctx = o->log_ctx };
}

int ex_init(struct exec *x, const char *dest_path, bool dest_raw)
{
	const struct vxm_merge_opts *o = x->o;
	unsigned qd = o->queue_depth ? o->queue_depth : EX_QD_DEFAULT;
	struct vxm_io_params p = ex_io_params(o);
	struct stat st;
	int ret;
	if (o->io) {
		x->io = o->io; /* one context for everything: drain per extent */
	} else {
		ret = vxm_io_init(&x->dio, NULL, &p);
		if (ret)
			return vxm_fail(x->err, ret, VXM_OFF_NONE, "I/O setup (%s) failed: %s",
					o->backend ? o->backend : "auto", vxm_strerror(ret));
		x->dio_up = true;
		x->io = &x->dio;
	}
	/* A private context: O_DIRECT (no page-cache copies, no write-back
	 * burst at each commit's data-sync) and fixed buffers. */
	unsigned dflag = x->dio_up ? VXM_O_DIRECT : 0;
	x->qd = qd;
	x->chunk = o->chunk_size ? o->chunk_size : EX_CHUNK_DEFAULT;
	/* whole sectors (ex_transfer cuts requests on pages) */
	x->chunk = x->chunk < x->lss ? x->lss : x->chunk - x->chunk % x->lss;
	x->q = calloc(x->qd, sizeof(*x->q));
	if (!x->q)
		return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	/* Direct I/O: buffers on the node of the CPU running the merge, each
	 * on 2 MiB boundaries when a chunk is that large, so that huge pages
	 * let a 4 MiB request reach the disk as a few large segments instead
	 * of 1,024 pages (virtio-blk takes 254 segments a request: ~0.8 MiB
	 * requests from 4 KiB pages).  Without a topology: one node, nothing
	 * bound.  A shared context (buffered; tests) keeps plain heap memory,
	 * touched only where used. */
	size_t stride = x->chunk >= EX_HUGE ? (x->chunk + EX_HUGE - 1) / EX_HUGE * EX_HUGE : x->chunk;
	size_t area = stride * (x->qd + 1);
	uint8_t *base;
	if (x->dio_up) {
		if (vxm_topo_open(&x->topo, NULL))
			x->topo = NULL;
		int cpu = sched_getcpu();
		int nd = x->topo && cpu >= 0 ? vxm_topo_cpu_node(x->topo, (unsigned)cpu) : -1;
		ret = vxm_topo_alloc(x->topo, nd > 0 ? (unsigned)nd : 0, area, &x->mem);
		if (ret)
			return vxm_fail(x->err, ret, VXM_OFF_NONE, "cannot allocate %zu bytes of I/O buffers: %s",
					area, vxm_strerror(ret));
		base = x->mem.p; /* zero-filled (vxm_topo_alloc I2) */
	} else {
		base = x->heap = aligned_alloc(4096, area);
		if (!base)
			return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		memset(base + stride * x->qd, 0, x->chunk);
	}
	for (unsigned i = 0; i < x->qd; i++)
		x->q[i].buf = base + stride * i;
	x->zero = base + stride * x->qd;
	if (x->dio_up) { /* fixed buffers (io_uring READ/WRITE_FIXED): best effort */
		void **bufs = calloc(x->qd + 1, sizeof(*bufs));
		size_t *lens = calloc(x->qd + 1, sizeof(*lens));
		if (bufs && lens) {
			for (unsigned i = 0; i < x->qd; i++) {
				bufs[i] = x->q[i].buf;
				lens[i] = x->chunk;
			}
			bufs[x->qd] = x->zero;
			lens[x->qd] = x->chunk;
			(void)vxm_io_register_bufs(x->io, bufs, lens, x->qd + 1);
		}
		free(bufs);
		free(lens);
	}
	for (int i = x->dest < 0 ? 0 : x->dest + 1; i <= x->top; i++) {
		const char *p2 = x->c->layer[i].img->path;
		x->dslot[i] = vxm_io_open(x->io, p2, VXM_O_RDONLY | dflag);
		if (x->dslot[i] < 0)
			return vxm_fail(x->err, x->dslot[i], VXM_OFF_NONE, "%s: cannot open: %s", p2,
					vxm_strerror(x->dslot[i]));
		x->dslot_open[i] = true;
		x->bslot[i] = dflag ? vxm_io_open(x->io, p2, VXM_O_RDONLY) : x->dslot[i];
		if (x->bslot[i] < 0)
			return vxm_fail(x->err, x->bslot[i], VXM_OFF_NONE, "%s: cannot open: %s", p2,
					vxm_strerror(x->bslot[i]));
		x->layer_dev[i] = stat(p2, &st) == 0 ? st.st_dev : (dev_t)-1;
		x->ralign[i] = ex_dio_align(p2);
	}
	x->dslot_d = vxm_io_open(x->io, dest_path, VXM_O_RDWR | dflag);
	if (x->dslot_d < 0)
		return vxm_fail(x->err, x->dslot_d, VXM_OFF_NONE, "%s: cannot open: %s", dest_path,
				vxm_strerror(x->dslot_d));
	x->dslot_d_open = true;
	x->dio_d = dflag ? x->dslot_d : -1;
	x->dalign = ex_dio_align(dest_path);
	/* direct writes to D in whole pages, D's own sectors read back around
	 * the pieces (ex_transfer); a raw output ends at the virtual size (a
	 * VHDX block ends on a page boundary).  A request is whole pages too. */
	x->pad = x->dio_up && x->chunk % EX_DIO_ALIGN == 0 ? EX_DIO_ALIGN : x->lss;
	x->pad_end = x->d ? UINT64_MAX : x->c->layer[x->top].img->m.virtual_size;
	x->bslot_d = dflag ? vxm_io_open(x->io, dest_path, VXM_O_RDWR) : x->dslot_d;
	if (x->bslot_d < 0)
		return vxm_fail(x->err, x->bslot_d, VXM_OFF_NONE, "%s: cannot open: %s", dest_path,
				vxm_strerror(x->bslot_d));
	x->d_dev = stat(dest_path, &st) == 0 ? st.st_dev : (dev_t)-2;
	x->clone_ok = !o->no_clone && !dest_raw;
	/* reflinks where they work (asked once per layer, so a filesystem
	 * without them never sees a clone request) */
	for (int i = x->dest < 0 ? 0 : x->dest + 1; x->clone_ok && i <= x->top; i++)
		x->layer_clone[i] = x->layer_dev[i] == x->d_dev &&
				    vxm_io_clone_supported(x->io, x->dslot_d, x->dslot[i]) == 1;
	x->clone_blk = vxm_io_fs_block(x->io, x->dslot_d);
	if (x->clone_blk < 4096)
		x->clone_blk = 4096;
	x->blk = UINT64_MAX;
	x->sb_chunk_done = UINT64_MAX;
	return 0;
}

/* Streams the plan into the destination.  Returns 0, -EINTR (stopped and
 * recorded), or an error. */
int ex_run(struct exec *x)
{
	struct vxm_plan_opts po = { .dest = x->dest, .top = x->top };
	struct vxm_plan_iter it;
	struct vxm_extent e;
	int ret;

	if (x->d) {
		x->spb = x->d->g.spb;
		x->bs = x->d->g.block_size;
		x->d_parent = x->d->m.has_parent;
		x->d_fixed = x->d->m.leave_blocks_allocated;
		x->total = x->d->g.virtual_size / x->lss;
		if (x->d_parent) {
			x->blk_bits = calloc(1, (x->spb + 7) / 8 + 8);
			if (!x->blk_bits)
				return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		}
	}
	x->done = x->cursor; /* bytes before the cursor count as done */
	x->commit_min = COMMIT_BYTES;
	/* tests: a small chain with many commits (the bytes must not change) */
	uint64_t cbn = vxm_test_commit_bytes_hook ? vxm_test_commit_bytes_hook() : 0;
	if (cbn)
		x->commit_min = cbn;
	x->commit_end = mg_now();
	/* one pass over the plan; the preflight's pass did the accounting */
	ret = vxm_plan_begin(&it, x->c, &po, false, x->err);
	while (!ret && (ret = vxm_plan_next(&it, &e, x->err)) > 0)
		ret = ex_extent(x, &e);
	if (ret == -EINTR) {
		/* Record what is durable: the blocks before the current one. */
		uint64_t cur = x->blk == UINT64_MAX ? x->cursor : x->blk * x->spb * x->lss;
		if (x->blk != UINT64_MAX)
			x->alloc_next = x->blk_alloc_at;
		x->blk = UINT64_MAX;
		int r2 = ex_commit(x, cur, "interrupt-commit");
		return r2 ? r2 : -EINTR;
	}
	if (!ret)
		ret = ex_block_finish(x);
	if (!ret)
		ret = ex_commit(x, x->d ? x->total * x->lss : UINT64_MAX - 1, "final-commit");
	ex_progress(x, "copy", true);
	return ret;
}

void ex_report(const struct exec *x, struct vxm_merge_result *r)
{
	r->copied = x->copied;
	r->cloned = x->cloned;
	r->zeroed = x->zeroed;
	r->data_writes = x->writes;
	r->buffered_bytes = x->buffered;
	r->commits = x->commits;
	r->commit_seconds = x->commit_seconds;
}
