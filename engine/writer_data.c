/* engine/writer_data.c: writes and zeroes of the virtual disk in a write
 * session (engine/writer.c): allocation at the end of the file (fmt §7),
 * the payload, and the block state changes each request makes (fmt §5,
 * §8.2).
 *
 * A request is cut into blocks; each block's payload goes to the file
 * first, then its BAT entry, its chunk's sector-bitmap entry and bits are
 * staged together (engine/txn.c), so the "data-sync" of the commit covers
 * the payload before any entry refers to it.
 *
 * Invariants kept here (stated in engine/writer.c): I4 (allocation past
 * EOF and every earlier allocation, 1 MiB aligned, the file extended
 * first, nothing handed out twice), I5 (a block's updates in one entry:
 * commit first when they might not fit), I6 (a fixed file's zeros are
 * written as data), and the session's DataWriteGuid rule: a new one
 * before the first change a read could see, and none for a request that
 * changes nothing a read sees (zeroing what reads zeros keeps children
 * linked).
 */
#define _GNU_SOURCE
#include "writer_priv.h"

#include <errno.h>
#include <string.h>

/* ---- allocation (fmt §7) --------------------------------------------------------- */

int vxm_writer_alloc(struct vxm_writer *w, uint64_t len, uint64_t *off, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	ret = vxm_wr_touch(w, false, NULL, err);
	if (ret)
		return ret;
	len = round_up(len, VXM_MiB);
	uint64_t at = round_up(img->file_size > w->alloc_end ? img->file_size : w->alloc_end,
			       VXM_MiB);
	uint64_t end = at + len;
	if (end < at || end > 2 * VXM_MAX_VIRTUAL_SIZE)
		return vxm_fail(err, -EFBIG, at, "%s: allocation past any plausible file size",
				img->path);
	/* I4: extend before anything is written into the new space. */
	vxm_killpoint("extend");
	ret = vxm_io_resize(img->io, img->slot, end);
	if (ret)
		return vxm_wr_fail(w, vxm_fail(err, ret, at,
					       "%s: extending the file to %llu bytes failed: %s",
					       img->path, (unsigned long long)end, vxm_strerror(ret)));
	img->file_size = end;
	w->alloc_end = end;
	w->data_dirty = true;
	*off = at;
	return 0;
}

void vxm_writer_data_written(struct vxm_writer *w)
{
	w->data_dirty = true;
}

int vxm_writer_reserve(struct vxm_writer *w, uint64_t off, uint64_t len, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (off % VXM_MiB || off < VXM_HEADER_SECTION || off + len < off)
		return vxm_fail(err, -EINVAL, off, "%s: reservation at 0x%llx is not 1 MiB aligned",
				img->path, (unsigned long long)off);
	ret = vxm_wr_touch(w, false, NULL, err);
	if (ret)
		return ret;
	uint64_t end = off + round_up(len, VXM_MiB);
	if (end > img->file_size) {
		/* I4: extend before anything is written into the new space. */
		vxm_killpoint("extend");
		ret = vxm_io_resize(img->io, img->slot, end);
		if (ret)
			return vxm_wr_fail(w, vxm_fail(err, ret, off,
						       "%s: extending the file to %llu bytes failed: %s",
						       img->path, (unsigned long long)end,
						       vxm_strerror(ret)));
		img->file_size = end;
	}
	if (end > w->alloc_end)
		w->alloc_end = end;
	w->data_dirty = true;
	return 0;
}

/* ---- payload ------------------------------------------------------------------------- */

static const uint8_t zeros[1 << 20];

static int payload(struct vxm_writer *w, uint64_t off, const uint8_t *src, uint64_t len,
		   struct vxm_err *err)
{
	int ret;

	if (src) {
		ret = vxm_wr_write(w, src, len, off, "payload", err);
	} else {
		ret = 0;
		for (uint64_t d = 0; d < len && !ret; d += sizeof(zeros)) {
			uint64_t n = len - d < sizeof(zeros) ? len - d : sizeof(zeros);
			ret = vxm_wr_write(w, zeros, n, off + d, "zeros", err);
		}
	}
	if (ret)
		return ret;
	w->data_dirty = true;
	w->stats.bytes_written += len;
	return 0;
}

/* Sector-bitmap block of chunk c, allocated (zeroed: fresh space) and staged
 * as present when absent.  *sb_off receives its offset. */
static int ensure_sb(struct vxm_writer *w, uint64_t c, uint64_t *sb_off, struct vxm_err *err)
{
	const struct vxm_geom *g = &w->img->g;
	uint64_t idx = vxm_geom_sb_index(g, c), e;
	int ret = vxm_txn_get_bat(w, idx, &e, err);

	if (ret)
		return ret;
	if (vxm_bat_state(e) == VXM_SB_PRESENT) {
		*sb_off = vxm_bat_offset(e);
		return 0;
	}
	ret = vxm_writer_alloc(w, VXM_SB_BLOCK_SIZE, sb_off, err);
	if (ret)
		return ret;
	w->stats.bitmaps_allocated++;
	return vxm_txn_set_bat(w, idx, vxm_bat_entry(VXM_SB_PRESENT, *sb_off), err);
}

/* Sectors of staging one block's update can take (I5). */
static unsigned block_need(const struct vxm_geom *g, uint64_t b, uint64_t within, uint64_t cnt)
{
	uint64_t first = (b % g->chunk_ratio) * g->spb + within; /* bit in the chunk */
	uint64_t last = first + (cnt ? cnt : 1) - 1;
	uint64_t per = SECT * 8ull;
	return (unsigned)(2 + (last / per - first / per + 1));
}

/* Block b's bitmap slice as the session sees it, into w->slice. */
static int slice_read(struct vxm_writer *w, uint64_t sb_off, uint64_t b, struct vxm_err *err)
{
	const struct vxm_geom *g = &w->img->g;
	uint64_t off = vxm_sb_slice_off(g, sb_off, b), len = g->spb / 8;
	int ret = vxm_image_pread(w->img, w->slice, len, off, err);

	if (ret)
		return ret;
	for (uint64_t s = off / SECT * SECT; s < off + len; s += SECT) {
		int k = vxm_wr_st_find(w, s);
		if (k < 0)
			continue;
		uint64_t a = s > off ? s : off, e = s + SECT < off + len ? s + SECT : off + len;
		memcpy(w->slice + (a - off), st_img(w, k) + (a - s), e - a);
	}
	return 0;
}

/* One block's part of a write (src) or zero (src NULL) request. */
static int block_op(struct vxm_writer *w, uint64_t b, uint64_t within, uint64_t cnt,
		    const uint8_t *src, bool zero_state, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_geom *g = &img->g;
	uint64_t total = g->virtual_size / g->lss;
	uint64_t blk = total - b * g->spb < g->spb ? total - b * g->spb : g->spb;
	bool whole = within == 0 && cnt == blk;
	bool diff = g->has_parent;
	bool fixed = !diff && img->m.leave_blocks_allocated;
	uint64_t idx = vxm_geom_pb_index(g, b), e, boff;
	int ret;

	/* I5: the whole block's update goes into one entry. */
	unsigned need = block_need(g, b, whole ? 0 : within, whole ? blk : cnt);
	if (need > vxm_txn_room(w)) {
		ret = vxm_txn_commit(w, "write", err);
		if (ret)
			return ret;
	}
	ret = vxm_txn_get_bat(w, idx, &e, err);
	if (ret) {
		vxm_err_path(err, img->path);
		return ret;
	}
	unsigned st = vxm_bat_state(e);
	uint64_t first_sector = b * g->spb;

	if (!src && zero_state && whole && !fixed) {
		if (st == VXM_PB_ZERO)
			return 0;
		ret = vxm_wr_touch(w, true, NULL, err); /* I1: a visible change follows */
		if (ret)
			return ret;
		if (diff && st == VXM_PB_PARTIALLY_PRESENT) {
			/* keep the bits of a non-present block 0 (libvhdi, fmt §5.3) */
			ret = vxm_txn_set_bits(w, first_sector, blk, false, err);
			if (ret)
				return ret;
		}
		return vxm_txn_set_bat(w, idx, vxm_bat_entry(VXM_PB_ZERO, 0), err);
	}
	if (!src && st == VXM_PB_ZERO)
		return 0;
	if (!src && !diff && st == VXM_PB_NOT_PRESENT)
		return 0; /* reads zeros already */
	/* The DataWriteGuid changes before the first change a read could see,
	 * and only then: zeroing what reads zeros already keeps it (and so
	 * keeps children linked). */
	ret = vxm_wr_touch(w, true, NULL, err);
	if (ret)
		return ret;

	switch (st) {
	case VXM_PB_FULLY_PRESENT:
		return payload(w, vxm_bat_offset(e) + within * g->lss, src, cnt * g->lss, err);
	case VXM_PB_PARTIALLY_PRESENT: {
		/* Sectors with bit 0 are invisible until the bits commit. */
		ret = payload(w, vxm_bat_offset(e) + within * g->lss, src, cnt * g->lss, err);
		if (ret)
			return ret;
		ret = vxm_txn_set_bits(w, first_sector + within, cnt, true, err);
		if (ret)
			return ret;
		uint64_t c = b / g->chunk_ratio, sbe;
		ret = vxm_txn_get_bat(w, vxm_geom_sb_index(g, c), &sbe, err);
		if (!ret)
			ret = slice_read(w, vxm_bat_offset(sbe), b, err);
		if (ret)
			return ret;
		if (vxm_bitmap_count(w->slice, 0, blk) == blk)
			return vxm_txn_set_bat(w, idx,
					       vxm_bat_entry(VXM_PB_FULLY_PRESENT, vxm_bat_offset(e)),
					       err);
		return 0;
	}
	default:
		break;
	}
	/* NOT_PRESENT, ZERO, UNDEFINED, UNMAPPED: a new block.  In a
	 * differencing file a partial write over NOT_PRESENT keeps the rest
	 * transparent (PARTIALLY_PRESENT); over the other states the rest reads
	 * zeros, which the fresh block holds (fmt §8.2). */
	bool partial = diff && st == VXM_PB_NOT_PRESENT && !whole;
	uint64_t sb_off = 0;
	if (partial) {
		ret = ensure_sb(w, b / g->chunk_ratio, &sb_off, err);
		if (ret)
			return ret;
	}
	ret = vxm_writer_alloc(w, g->block_size, &boff, err);
	if (ret)
		return ret;
	w->stats.blocks_allocated++;
	if (src) {
		ret = payload(w, boff + within * g->lss, src, cnt * g->lss, err);
		if (ret)
			return ret;
	} else {
		w->stats.bytes_written += cnt * g->lss; /* fresh space is zero (fmt §7) */
	}
	if (partial) {
		ret = vxm_txn_set_bits(w, first_sector + within, cnt, true, err);
		if (ret)
			return ret;
		return vxm_txn_set_bat(w, idx, vxm_bat_entry(VXM_PB_PARTIALLY_PRESENT, boff), err);
	}
	return vxm_txn_set_bat(w, idx, vxm_bat_entry(VXM_PB_FULLY_PRESENT, boff), err);
}

static int check_request(struct vxm_writer *w, const char *what, uint64_t off, uint64_t len,
			 struct vxm_err *err)
{
	const struct vxm_geom *g = &w->img->g;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (off % g->lss || len % g->lss)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: %s of %llu bytes at virtual offset %llu is not aligned to the %u-byte logical sector",
				w->img->path, what, (unsigned long long)len, (unsigned long long)off,
				g->lss);
	if (off > g->virtual_size || len > g->virtual_size - off)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: %s of %llu bytes at virtual offset %llu ends past the %llu-byte virtual disk",
				w->img->path, what, (unsigned long long)len, (unsigned long long)off,
				(unsigned long long)g->virtual_size);
	return 0;
}

static int range_op(struct vxm_writer *w, uint64_t off, uint64_t len, const uint8_t *src,
		    bool zero_state, struct vxm_err *err)
{
	const struct vxm_geom *g = &w->img->g;
	uint64_t s = off / g->lss, n = len / g->lss, total = g->virtual_size / g->lss;
	int ret;

	if (!n)
		return 0;
	while (n) {
		uint64_t b = s / g->spb, within = s % g->spb;
		uint64_t blk = total - b * g->spb < g->spb ? total - b * g->spb : g->spb;
		uint64_t cnt = blk - within < n ? blk - within : n;
		ret = block_op(w, b, within, cnt, src, zero_state, err);
		if (ret)
			return ret;
		s += cnt;
		n -= cnt;
		if (src)
			src += cnt * g->lss;
	}
	return 0;
}

int vxm_writer_write(struct vxm_writer *w, uint64_t off, const void *buf, uint64_t len,
		     struct vxm_err *err)
{
	int ret = check_request(w, "write", off, len, err);
	if (ret)
		return ret;
	if (!buf && len)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "%s: write without a buffer",
				w->img->path);
	return range_op(w, off, len, buf, false, err);
}

int vxm_writer_zero(struct vxm_writer *w, uint64_t off, uint64_t len, enum vxm_zero_mode mode,
		    struct vxm_err *err)
{
	int ret = check_request(w, "zero", off, len, err);
	if (ret)
		return ret;
	return range_op(w, off, len, NULL, mode == VXM_ZERO_STATE, err);
}
