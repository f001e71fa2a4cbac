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

static int dest_finish_block(struct vxm_plan_dest *t, struct vxm_plan_stats *st, struct vxm_err *err)
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
static int dest_account(struct vxm_plan_dest *t, uint64_t s, uint64_t n, bool resolved, bool zero,
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

int vxm_plan_begin(struct vxm_plan_iter *it, struct vxm_chain *c, const struct vxm_plan_opts *o,
		   bool account, struct vxm_err *err)
{
	int top = o->top < 0 ? (int)c->n - 1 : o->top;
	int dest = o->dest;

	memset(it, 0, sizeof(*it));
	if (top < 0 || top >= (int)c->n || dest < VXM_PLAN_NEW_FILE || dest >= top)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"plan: destination layer %d must be below the top layer %d of %u", dest,
				top, c->n);
	const struct vxm_image *topimg = c->layer[top].img;
	it->c = c;
	it->top = top;
	it->dest = dest;
	it->lss = c->lss;
	it->total = topimg->m.virtual_size / it->lss;
	it->floor = dest == VXM_PLAN_NEW_FILE ? 0 : (unsigned)dest + 1;
	it->t = (struct vxm_plan_dest){ .on = account, .block = UINT64_MAX, .chunk = UINT64_MAX,
					.new_fixed = o->new_fixed };
	it->st.dest_virtual_size = topimg->m.virtual_size;
	if (dest == VXM_PLAN_NEW_FILE) {
		uint32_t bs = o->new_block_size ? o->new_block_size : topimg->m.block_size;
		it->t.spb = bs / it->lss;
	} else {
		it->t.d = c->layer[dest].img;
		it->t.spb = it->t.d->g.spb;
	}
	/* Past D's end the chain reads zeros (vxm_chain_resolve I3), whatever D's
	 * file holds there (a trailing block's tail, stale BAT entries past its
	 * old TotalBATEntries, its own parent's data): once D grows, those
	 * sectors are D's, so they are written as zeros like any resolved run. */
	it->d_end = it->t.d ? it->t.d->m.virtual_size / it->lss : it->total;
	return 0;
}

/* The growth of D once every extent is out: new blocks and bitmaps, a
 * larger BAT when the disk grows, and for a new file its fixed structures
 * (header section, log, metadata, BAT: 4 MiB + the BAT rounded up to 1 MiB). */
static void plan_growth(struct vxm_plan_iter *it)
{
	struct vxm_plan_stats *st = &it->st;
	const struct vxm_image *topimg = it->c->layer[it->top].img, *d = it->t.d;
	uint64_t bs = d ? d->g.block_size : it->t.spb * it->lss;
	struct vxm_geom ng;

	st->dest_growth_bytes = st->dest_new_blocks * bs + st->dest_new_bitmaps * VXM_SB_BLOCK_SIZE;
	if (d) {
		if (topimg->m.virtual_size > d->m.virtual_size &&
		    !vxm_geom_init(&ng, topimg->m.virtual_size, d->g.block_size, it->lss,
				   d->g.has_parent, NULL) &&
		    vxm_geom_bat_bytes(&ng) > d->bat_region.len)
			st->dest_growth_bytes += vxm_geom_bat_region_len(&ng);
	} else if (!vxm_geom_init(&ng, topimg->m.virtual_size, (uint32_t)bs, it->lss, false, NULL)) {
		st->dest_growth_bytes += 4 * VXM_MiB + vxm_geom_bat_region_len(&ng);
	}
}

int vxm_plan_next(struct vxm_plan_iter *it, struct vxm_extent *out, struct vxm_err *err)
{
	struct vxm_plan_stats *st = &it->st;
	int ret;

	while (it->s < it->total) {
		uint64_t s = it->s, total = it->total, d_end = it->d_end;
		struct vxm_resolved r;
		uint64_t max = s < d_end && d_end < total ? d_end - s : total - s;
		ret = vxm_chain_resolve(it->c, (unsigned)it->top, it->floor, s, max, &r, err);
		if (ret)
			return ret;
		if (r.layer < 0 && s >= d_end) {
			r.layer = (int)it->floor;
			r.kind = VXM_RUN_ZERO;
		}
		st->runs++;
		bool resolved = r.layer >= 0;
		bool zero = r.kind == VXM_RUN_ZERO;
		ret = dest_account(&it->t, s, r.nsec, resolved, zero, total, st, err);
		if (ret)
			return ret;
		it->s += r.nsec;
		bool had = it->have;
		if (!resolved) {
			it->have = false;
			if (had) {
				*out = it->e;
				st->extents++;
				return 1;
			}
			continue;
		}
		uint64_t bytes = r.nsec * it->lss, voff = s * it->lss;
		/* I3: rewritten once per level from its layer down to D (a new
		 * file: down to the base, then copied once more). */
		st->naive_copy_bytes +=
			bytes * (uint64_t)(r.layer - (it->dest == VXM_PLAN_NEW_FILE ? -1 : it->dest));
		if (zero) {
			st->zero_bytes += bytes;
		} else {
			st->copy_bytes += bytes;
			st->layer_copy_bytes[r.layer] += bytes;
		}
		enum vxm_extent_kind kind = zero ? VXM_EXT_ZERO : VXM_EXT_COPY;
		struct vxm_extent *e = &it->e;
		if (had && e->kind == kind && e->voff + e->len == voff &&
		    (kind == VXM_EXT_ZERO || (e->layer == r.layer && e->src_off + e->len == r.file_off))) {
			e->len += bytes; /* joins */
			continue;
		}
		struct vxm_extent next = { .voff = voff, .len = bytes, .kind = kind,
					   .layer = zero ? -1 : r.layer,
					   .src_off = zero ? 0 : r.file_off };
		it->have = true;
		if (had) {
			*out = *e;
			*e = next;
			st->extents++;
			return 1;
		}
		*e = next;
	}
	if (it->have) {
		it->have = false;
		*out = it->e;
		st->extents++;
		return 1;
	}
	if (!it->finished) {
		it->finished = true;
		ret = dest_finish_block(&it->t, st, err);
		if (ret)
			return ret;
		plan_growth(it);
	}
	return 0;
}

int vxm_plan(struct vxm_chain *c, const struct vxm_plan_opts *o, vxm_extent_fn fn, void *ctx,
	     struct vxm_plan_stats *st, struct vxm_err *err)
{
	struct vxm_plan_iter it;
	struct vxm_extent e;
	int ret;

	memset(st, 0, sizeof(*st));
	ret = vxm_plan_begin(&it, c, o, true, err);
	while (!ret && (ret = vxm_plan_next(&it, &e, err)) > 0)
		ret = fn ? fn(ctx, &e) : 0;
	if (!ret)
		*st = it.st;
	return ret;
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
