/* engine/plan.c: the BAT-diff planner.
 *
 * One pass over the destination's sectors in order.  For each position the
 * chain is walked from the newest merged layer down to the layer just above
 * the destination (vxm_chain_resolve), which answers with the longest run
 * that is uniform in every layer it passed: DATA from a layer's file, ZERO,
 * or "not defined above D".  Runs are coalesced while the source stays
 * contiguous.  Nothing but the layers' BAT windows and bitmap slices is
 * held: memory is O(layers), not O(disk) (engine.h I2).
 *
 * Destination accounting walks D's blocks alongside: a D block that
 * receives a resolved sector and is not allocated must be allocated, unless
 * every sector of it resolves to zeros and D has neither parent nor
 * LeaveBlocksAllocated (then the ZERO state does, fmt §8.2).  A
 * differencing D needs its chunk's bitmap block for blocks left partial.
 *
 * I1: extents are emitted in strictly increasing voff, never overlapping.
 * I2: every emitted sector is defined by a layer in (dest, top] (or, for a
 *     new file, in [0, top]); the value is that layer's: the newest wins.
 *     A sector past D's end that no layer defines is emitted as zeros: the
 *     chain shows zeros there, and D's own bytes would show once it grows.
 * I3: naive_copy_bytes counts each resolved sector once per level it would
 *     be rewritten by merging newest-first one level at a time.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

struct dest_track {
	bool on;
	const struct vxm_image *d;   /* NULL for a new file */
	uint64_t spb;                /* sectors per destination block */
	uint64_t block;              /* current block, UINT64_MAX none */
	uint64_t resolved, zeros;    /* sectors of the current block */
	uint64_t block_sectors;      /* sectors of the current block */
	uint64_t chunk;              /* chunk of the last bitmap counted */
	bool new_fixed;
};

static int dest_finish_block(struct dest_track *t, struct vxm_plan_stats *st, struct vxm_err *err)
{
	if (!t->on || t->block == UINT64_MAX || t->resolved == 0)
		return 0;
	if (!t->d) { /* new file */
		if (t->new_fixed || t->zeros < t->resolved)
			st->dest_new_blocks++;
		return 0;
	}
	struct vxm_image *d = (struct vxm_image *)t->d;
	const struct vxm_geom *g = &d->g;
	unsigned state = VXM_PB_NOT_PRESENT;
	if (t->block < g->payload_blocks) {
		uint64_t e;
		int ret = vxm_image_bat_get(d, vxm_geom_pb_index(g, t->block), &e, err);
		if (ret)
			return ret;
		state = vxm_bat_state(e);
	}
	bool allocated = state == VXM_PB_FULLY_PRESENT || state == VXM_PB_PARTIALLY_PRESENT;
	bool whole = t->resolved == t->block_sectors;
	if (!allocated) {
		if (whole && t->zeros == t->resolved && !g->has_parent &&
		    !d->m.leave_blocks_allocated)
			st->dest_zero_blocks++;
		else
			st->dest_new_blocks++;
	}
	/* A differencing D keeps a block partial unless every sector is
	 * resolved or it was FULLY_PRESENT: its chunk needs a bitmap block. */
	if (g->has_parent && !whole && state != VXM_PB_FULLY_PRESENT) {
		uint64_t c = t->block / g->chunk_ratio;
		if (c != t->chunk) {
			t->chunk = c;
			uint64_t sbe = 0;
			if (c < g->sb_blocks) {
				int ret = vxm_image_bat_get(d, vxm_geom_sb_index(g, c), &sbe, err);
				if (ret)
					return ret;
			}
			if (vxm_bat_state(sbe) != VXM_SB_PRESENT)
				st->dest_new_bitmaps++;
		}
	}
	return 0;
}

/* Accounts sectors [s, s+n) for the destination; zero says they resolve to
 * zeros, resolved says whether any merged layer defines them. */
static int dest_account(struct dest_track *t, uint64_t s, uint64_t n, bool resolved, bool zero,
			uint64_t total, struct vxm_plan_stats *st, struct vxm_err *err)
{
	while (t->on && n) {
		uint64_t b = s / t->spb;
		if (b != t->block) {
			int ret = dest_finish_block(t, st, err);
			if (ret)
				return ret;
			t->block = b;
			t->resolved = t->zeros = 0;
			uint64_t end = (b + 1) * t->spb;
			t->block_sectors = (end > total ? total : end) - b * t->spb;
		}
		uint64_t take = (b + 1) * t->spb - s;
		if (take > n)
			take = n;
		if (resolved) {
			t->resolved += take;
			if (zero)
				t->zeros += take;
		}
		s += take;
		n -= take;
	}
	return 0;
}

struct pending {
	bool have;
	struct vxm_extent e;
};

static int flush(struct pending *p, vxm_extent_fn fn, void *ctx, struct vxm_plan_stats *st)
{
	int ret = 0;
	if (p->have) {
		st->extents++;
		if (fn)
			ret = fn(ctx, &p->e);
		p->have = false;
	}
	return ret;
}

int vxm_plan(struct vxm_chain *c, const struct vxm_plan_opts *o, vxm_extent_fn fn, void *ctx,
	     struct vxm_plan_stats *st, struct vxm_err *err)
{
	int top = o->top < 0 ? (int)c->n - 1 : o->top;
	int dest = o->dest;
	struct pending p = { 0 };
	struct dest_track t = { .on = true, .block = UINT64_MAX, .chunk = UINT64_MAX,
				.new_fixed = o->new_fixed };
	int ret;

	memset(st, 0, sizeof(*st));
	if (top < 0 || top >= (int)c->n || dest < VXM_PLAN_NEW_FILE || dest >= top)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"plan: destination layer %d must be below the top layer %d of %u", dest,
				top, c->n);
	const struct vxm_image *topimg = c->layer[top].img;
	uint32_t lss = c->lss;
	uint64_t total = topimg->m.virtual_size / lss;
	unsigned floor = dest == VXM_PLAN_NEW_FILE ? 0 : (unsigned)dest + 1;

	st->dest_virtual_size = topimg->m.virtual_size;
	if (dest == VXM_PLAN_NEW_FILE) {
		uint32_t bs = o->new_block_size ? o->new_block_size : topimg->m.block_size;
		t.spb = bs / lss;
		t.d = NULL;
	} else {
		t.d = c->layer[dest].img;
		t.spb = t.d->g.spb;
	}

	/* Past D's end the chain reads zeros (vxm_chain_resolve I3), whatever D's
	 * file holds there (a trailing block's tail, stale BAT entries past its
	 * old TotalBATEntries, its own parent's data): once D grows, those
	 * sectors are D's, so they are written as zeros like any resolved run. */
	uint64_t d_end = t.d ? t.d->m.virtual_size / lss : total;
	for (uint64_t s = 0; s < total;) {
		struct vxm_resolved r;
		uint64_t max = s < d_end && d_end < total ? d_end - s : total - s;
		ret = vxm_chain_resolve(c, (unsigned)top, floor, s, max, &r, err);
		if (ret)
			return ret;
		if (r.layer < 0 && s >= d_end) {
			r.layer = (int)floor;
			r.kind = VXM_RUN_ZERO;
		}
		st->runs++;
		bool resolved = r.layer >= 0;
		bool zero = r.kind == VXM_RUN_ZERO;
		ret = dest_account(&t, s, r.nsec, resolved, zero, total, st, err);
		if (ret)
			return ret;
		if (!resolved) {
			ret = flush(&p, fn, ctx, st);
			if (ret)
				return ret;
			s += r.nsec;
			continue;
		}
		uint64_t bytes = r.nsec * lss;
		uint64_t voff = s * lss;
		/* I3: rewritten once per level from its layer down to D (a new
		 * file: down to the base, then copied once more). */
		st->naive_copy_bytes += bytes * (uint64_t)(r.layer - (dest == VXM_PLAN_NEW_FILE ? -1 : dest));
		if (zero) {
			st->zero_bytes += bytes;
		} else {
			st->copy_bytes += bytes;
			st->layer_copy_bytes[r.layer] += bytes;
		}
		enum vxm_extent_kind kind = zero ? VXM_EXT_ZERO : VXM_EXT_COPY;
		bool joins = p.have && p.e.kind == kind && p.e.voff + p.e.len == voff &&
			     (kind == VXM_EXT_ZERO ||
			      (p.e.layer == r.layer && p.e.src_off + p.e.len == r.file_off));
		if (joins) {
			p.e.len += bytes;
		} else {
			ret = flush(&p, fn, ctx, st);
			if (ret)
				return ret;
			p.have = true;
			p.e = (struct vxm_extent){ .voff = voff, .len = bytes, .kind = kind,
						   .layer = zero ? -1 : r.layer,
						   .src_off = zero ? 0 : r.file_off };
		}
		s += r.nsec;
	}
	ret = flush(&p, fn, ctx, st);
	if (ret)
		return ret;
	ret = dest_finish_block(&t, st, err);
	if (ret)
		return ret;

	/* Growth: new blocks and bitmaps, a larger BAT when the disk grows, and
	 * for a new file its fixed structures (header section, log, metadata,
	 * BAT: 4 MiB + the BAT rounded up to 1 MiB). */
	uint64_t bs = t.d ? t.d->g.block_size : t.spb * lss;
	st->dest_growth_bytes = st->dest_new_blocks * bs + st->dest_new_bitmaps * VXM_SB_BLOCK_SIZE;
	if (t.d) {
		if (topimg->m.virtual_size > t.d->m.virtual_size) {
			struct vxm_geom ng;
			if (!vxm_geom_init(&ng, topimg->m.virtual_size, t.d->g.block_size, lss,
					   t.d->g.has_parent, NULL) &&
			    vxm_geom_bat_bytes(&ng) > t.d->bat_region.len)
				st->dest_growth_bytes += vxm_geom_bat_region_len(&ng);
		}
	} else {
		struct vxm_geom ng;
		if (!vxm_geom_init(&ng, topimg->m.virtual_size, (uint32_t)bs, lss, false, NULL))
			st->dest_growth_bytes += 4 * VXM_MiB + vxm_geom_bat_region_len(&ng);
	}
	return 0;
}

int vxm_space_free(const char *path, uint64_t *bytes, struct vxm_err *err)
{
	struct statvfs sv;
	char *dir = strdup(path);

	if (!dir)
		return -ENOMEM;
	/* A file that does not exist yet: ask its directory. */
	if (statvfs(path, &sv) < 0 && statvfs(dirname(dir), &sv) < 0) {
		int e = -errno;
		free(dir);
		return vxm_fail(err, e, VXM_OFF_NONE, "%s: cannot query free space: %s", path,
				strerror(-e));
	}
	free(dir);
	*bytes = (uint64_t)sv.f_bavail * sv.f_frsize;
	return 0;
}
