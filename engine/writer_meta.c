/* engine/writer_meta.c: metadata items in a write session (engine/writer.c):
 * adding, replacing and removing items of the metadata region through the
 * log, the parent locator, and the IsVirtualDisk items a merge installs
 * (fmt §3, §8.3).
 *
 * The session works on its own copy of the region and table (w->meta,
 * w->mt); vxm_txn_commit hands it to the image (vxm_wr_meta_reload) only
 * after the entry holding it is applied, parsed again as the reader would.
 *
 * Invariants:
 * M1: an item is placed in a gap past the table, never over an item of the
 *     working table nor over the space of one released in the open
 *     transaction (w->freed), so until the entry commits the old item is
 *     intact where the old table says it is.
 * M2: an item and its table entry are staged into the same transaction;
 *     the locator and the IsVirtualDisk items commit what was staged before
 *     them first, so their transaction holds nothing else.
 * M3: once vxm_writer_set_locator or vxm_writer_set_vd_items began to
 *     change the working copy, any error fails the session, as a commit
 *     whose reload fails does: the working copy and the image's may
 *     disagree.
 */
#define _GNU_SOURCE
#include "writer_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmp_freed(const void *a, const void *b)
{
	const struct freed *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* The first gap of len bytes in a metadata region of `region` bytes, past
 * the table, between the items of mt and the extra spans (item space freed
 * in an open transaction, still live until it commits). */
static int meta_gap(const struct vxm_meta_table *mt, const struct freed *extra, unsigned nextra,
		    uint32_t region, uint32_t len, uint32_t *out)
{
	struct freed *v = malloc((mt->count + nextra + 1) * sizeof(*v));
	uint32_t at = VXM_META_TABLE_SIZE;
	unsigned m = 0;

	if (!v)
		return -ENOMEM;
	for (unsigned i = 0; i < mt->count; i++)
		if (mt->e[i].len)
			v[m++] = (struct freed){ mt->e[i].off, mt->e[i].len };
	for (unsigned i = 0; i < nextra; i++)
		v[m++] = extra[i];
	qsort(v, m, sizeof(*v), cmp_freed);
	for (unsigned i = 0; i < m; i++) {
		if (v[i].off >= at && v[i].off - at >= len)
			break;
		if (v[i].off + v[i].len > at)
			at = v[i].off + v[i].len;
	}
	free(v);
	if ((uint64_t)at + len > region)
		return -ENOSPC;
	*out = at;
	return 0;
}

/* Lowest offset >= 64 KiB with len free bytes: not under any item of the
 * working table nor under space released in the open transaction. */
static int meta_find_space(struct vxm_writer *w, uint32_t len, uint32_t *out)
{
	return meta_gap(w->mt, w->freed, w->nfreed, w->img->meta_region.len, len, out);
}

int vxm_image_resize_check(const struct vxm_image *img, uint64_t vsize, struct vxm_err *err)
{
	struct vxm_geom ng;

	if (vsize < img->m.virtual_size)
		return vxm_unsupported(err, VXM_OFF_NONE,
				       "%s: shrinking the virtual disk from %llu to %llu bytes is refused",
				       img->path, (unsigned long long)img->m.virtual_size,
				       (unsigned long long)vsize);
	if (vsize == img->m.virtual_size)
		return 0;
	int ret = vxm_geom_init(&ng, vsize, img->m.block_size, img->m.logical_sector_size,
				img->m.has_parent, err);
	if (ret)
		return ret;
	if (vxm_geom_bat_bytes(&ng) > img->bat_region.len)
		return vxm_unsupported(err, img->bat_region.off,
				       "%s: growing to %llu bytes needs a larger BAT region than its %u bytes at 0x%llx (not implemented; `vhdxmerge convert` writes the grown disk to a new file)",
				       img->path, (unsigned long long)vsize, img->bat_region.len,
				       (unsigned long long)img->bat_region.off);
	if (!img->m.has_parent && img->m.leave_blocks_allocated &&
	    ng.payload_blocks > img->g.payload_blocks)
		return vxm_unsupported(err, VXM_OFF_NONE,
				       "%s: growing a fixed file needs new blocks (not implemented; `vhdxmerge convert` writes the grown disk to a new file)",
				       img->path);
	return 0;
}

int vxm_image_meta_room(const struct vxm_image *img, uint32_t len)
{
	uint32_t at;
	if (img->mt->count >= VXM_MAX_TABLE_ENTRIES)
		return -ENOSPC;
	return meta_gap(img->mt, NULL, 0, img->meta_region.len, len, &at);
}

static int remember_freed(struct vxm_writer *w, uint32_t off, uint32_t len)
{
	if (!len)
		return 0;
	if (w->nfreed == w->freed_cap) {
		unsigned cap = w->freed_cap ? w->freed_cap * 2 : 8;
		struct freed *f = realloc(w->freed, cap * sizeof(*f));
		if (!f)
			return -ENOMEM;
		w->freed = f;
		w->freed_cap = cap;
	}
	w->freed[w->nfreed++] = (struct freed){ off, len };
	return 0;
}

/* Re-encodes the working table and stages the table sectors covering the
 * header and entries [0, max(old, new count)). */
static int meta_stage_table(struct vxm_writer *w, unsigned old_count, struct vxm_err *err)
{
	const struct vxm_region *r = &w->img->meta_region;
	unsigned n = old_count > w->mt->count ? old_count : w->mt->count;
	uint32_t len = 32 + 32 * n;

	vxm_meta_table_encode(w->mt, w->meta);
	return vxm_txn_patch(w, r->off, w->meta, len, err);
}

int vxm_txn_set_meta(struct vxm_writer *w, const struct vxm_guid *id, uint32_t flags,
		     const void *data, uint32_t len, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_region *r = &img->meta_region;
	bool user = flags & VXM_META_IS_USER;
	uint32_t at = 0;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (len > VXM_MAX_ITEM_SIZE || (flags & ~7u))
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: metadata item of %u bytes with flags 0x%x is not allowed",
				img->path, len, flags);
	int i = vxm_meta_find(w->mt, id, user);
	if (i < 0 && w->mt->count >= VXM_MAX_TABLE_ENTRIES)
		return vxm_fail(err, -ENOSPC, r->off, "%s: the metadata table is full", img->path);
	if (len) {
		ret = meta_find_space(w, len, &at);
		if (ret)
			return vxm_fail(err, ret, r->off,
					"%s: no room for a %u-byte metadata item in the %u-byte region",
					img->path, len, r->len);
	}
	/* Room in the transaction for the item and the table sectors. */
	uint64_t need = (len + 2 * SECT - 1) / SECT + 2;
	if (need > VXM_TXN_MAX_SECTORS - w->nst)
		return vxm_fail(err, -E2BIG, r->off, "%s: the transaction is full; commit first",
				img->path);
	unsigned old_count = w->mt->count;
	if (i >= 0) {
		ret = remember_freed(w, w->mt->e[i].off, w->mt->e[i].len);
		if (ret)
			return vxm_fail(err, ret, r->off, "out of memory");
	} else {
		i = w->mt->count++;
	}
	struct vxm_meta_entry *e = &w->mt->e[i];
	e->id = *id;
	e->flags = flags;
	e->len = len;
	e->off = at;
	if (len) {
		ret = vxm_txn_patch(w, r->off + at, data, len, err);
		if (ret)
			return ret;
	}
	return meta_stage_table(w, old_count, err);
}

int vxm_txn_del_meta(struct vxm_writer *w, const struct vxm_guid *id, bool is_user,
		     struct vxm_err *err)
{
	int ret = vxm_wr_usable(w, err);
	if (ret)
		return ret;
	int i = vxm_meta_find(w->mt, id, is_user);
	if (i < 0)
		return 0;
	unsigned old_count = w->mt->count;
	ret = remember_freed(w, w->mt->e[i].off, w->mt->e[i].len);
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "out of memory");
	memmove(&w->mt->e[i], &w->mt->e[i + 1], (old_count - (unsigned)i - 1) * sizeof(w->mt->e[0]));
	w->mt->count--;
	return meta_stage_table(w, old_count, err);
}

/* After a metadata commit: the image adopts the working copy (parsed again,
 * so the image never holds what the reader would refuse). */
int vxm_wr_meta_reload(struct vxm_writer *w, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_region *r = &img->meta_region;
	struct vxm_meta m;
	struct vxm_geom g;
	int ret;

	memcpy(img->meta, w->meta, r->len);
	*img->mt = *w->mt;
	ret = vxm_meta_parse(img->meta, r->len, r->off, img->mt, &m, err);
	if (ret)
		return ret;
	ret = vxm_geom_init(&g, m.virtual_size, m.block_size, m.logical_sector_size, m.has_parent,
			    err);
	if (ret)
		return ret;
	if (m.locator >= 0) {
		const struct vxm_meta_entry *e = &img->mt->e[m.locator];
		if (!img->loc) {
			img->loc = malloc(sizeof(*img->loc));
			if (!img->loc)
				return vxm_fail(err, -ENOMEM, r->off, "out of memory");
		}
		img->loc_item = img->meta + e->off;
		img->loc_len = e->len;
		ret = vxm_locator_parse(img->loc_item, e->len, r->off + e->off, img->loc, err);
		if (ret)
			return ret;
	}
	img->m = m;
	img->g = g;
	return 0;
}

/* ---- metadata changes of the session ------------------------------------------- */

int vxm_writer_set_locator(struct vxm_writer *w, const struct vxm_kv *kv, unsigned n,
			   struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	enum { CAP = 64 * 1024 };
	uint8_t *buf;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (!img->g.has_parent)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: not a differencing file: it has no parent locator", img->path);
	buf = malloc(CAP);
	struct vxm_locator *loc = malloc(sizeof(*loc));
	if (!buf || !loc) {
		ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		goto out;
	}
	long len = vxm_locator_encode(kv, n, buf, CAP);
	if (len < 0) {
		ret = vxm_fail(err, (int)len, VXM_OFF_NONE, "%s: cannot encode the locator: %s",
			       img->path, vxm_strerror((int)len));
		goto out;
	}
	/* Refuse what our own reader would refuse (parent_linkage, a path key). */
	struct vxm_err perr = { 0 };
	if (vxm_locator_parse(buf, (size_t)len, 0, loc, &perr)) {
		ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE, "%s: new parent locator refused: %s",
			       img->path, perr.msg);
		goto out;
	}
	int i = vxm_meta_find(w->mt, &VXM_GUID_META_PARENT_LOCATOR, false);
	uint32_t flags = i >= 0 ? w->mt->e[i].flags : VXM_META_IS_REQUIRED;
	/* Its own entry: item and table entry together, nothing else. */
	ret = vxm_txn_commit(w, "before-locator", err);
	if (ret)
		goto out;
	ret = vxm_txn_set_meta(w, &VXM_GUID_META_PARENT_LOCATOR, flags, buf, (uint32_t)len, err);
	if (!ret)
		ret = vxm_txn_commit(w, "set-locator", err);
	if (ret)
		vxm_wr_fail(w, ret); /* the working metadata may be half changed */
out:
	free(buf);
	free(loc);
	return ret;
}

/* The entries a growth adds were never the disk's: whatever the BAT region
 * held there (a shrunk file's leftovers, junk) must not become its blocks,
 * so each non-zero one is zeroed through the log right after the size
 * changes (fmt §8.3).  Files Hyper-V or we wrote hold zeros there: nothing
 * is staged. */
static int clear_new_entries(struct vxm_writer *w, const struct vxm_geom *old,
			     struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_geom *g = &img->g;
	uint64_t n = (g->payload_blocks - old->payload_blocks) + (g->sb_blocks - old->sb_blocks);
	int ret = 0;

	for (uint64_t k = 0; !ret && k < n; k++) {
		uint64_t b = old->payload_blocks + k, c = old->sb_blocks + (b - g->payload_blocks);
		uint64_t idx = b < g->payload_blocks ? vxm_geom_pb_index(g, b) : vxm_geom_sb_index(g, c);
		uint64_t e;
		ret = vxm_image_bat_read(img, idx, 1, &e, err);
		if (!ret && e) {
			if (vxm_txn_room(w) < 2)
				ret = vxm_txn_commit(w, "clear-new-entries", err);
			if (!ret)
				ret = vxm_txn_set_bat(w, idx, 0, err);
		}
	}
	return ret ? ret : vxm_txn_commit(w, "clear-new-entries", err);
}

/* The trailing block may be stored short (fmt P8); once the disk grows it
 * trails no more and must be whole in the file: extended (the new bytes read
 * zeros) before the new size commits, whose data-sync makes it durable. */
static int whole_trailing_block(struct vxm_writer *w, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_geom *g = &img->g;
	uint64_t e;

	if (!g->payload_blocks)
		return 0;
	int ret = vxm_image_bat_get(img, vxm_geom_pb_index(g, g->payload_blocks - 1), &e, err);
	if (ret)
		return ret;
	unsigned st = vxm_bat_state(e);
	uint64_t off = vxm_bat_offset(e);
	if ((st != VXM_PB_FULLY_PRESENT && st != VXM_PB_PARTIALLY_PRESENT) ||
	    off + g->block_size <= img->file_size)
		return 0;
	return vxm_writer_reserve(w, off, g->block_size, err);
}

int vxm_writer_set_vd_items(struct vxm_writer *w, struct vxm_image *src, struct vxm_err *err)
{
	const struct vxm_geom old = w->img->g;
	struct vxm_image *img = w->img;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (src->m.logical_sector_size != img->m.logical_sector_size)
		return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				"%s has %u-byte logical sectors, %s %u: they must be equal (fmt P4)",
				src->path, src->m.logical_sector_size, img->path,
				img->m.logical_sector_size);
	ret = vxm_image_resize_check(img, src->m.virtual_size, err);
	if (ret)
		return ret;
	ret = vxm_txn_commit(w, "before-vd-items", err);
	if (!ret)
		ret = vxm_wr_touch(w, true, NULL, err);
	if (!ret && src->m.virtual_size > img->m.virtual_size)
		ret = whole_trailing_block(w, err);
	if (ret)
		return ret;
	for (unsigned i = 0; !ret && i < w->mt->count;) {
		const struct vxm_meta_entry *e = &w->mt->e[i];
		if (e->flags & VXM_META_IS_VIRTUAL_DISK)
			ret = vxm_txn_del_meta(w, &e->id, e->flags & VXM_META_IS_USER, err);
		else
			i++;
	}
	for (unsigned i = 0; !ret && i < src->mt->count; i++) {
		const struct vxm_meta_entry *e = &src->mt->e[i];
		if (e->flags & VXM_META_IS_VIRTUAL_DISK)
			ret = vxm_txn_set_meta(w, &e->id, e->flags, src->meta + e->off, e->len, err);
	}
	if (!ret)
		ret = vxm_txn_commit(w, "vd-items", err);
	if (!ret && img->g.total_entries > old.total_entries)
		ret = clear_new_entries(w, &old, err);
	if (ret)
		vxm_wr_fail(w, ret); /* the working metadata may be half changed */
	return ret;
}
