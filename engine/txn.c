/* engine/txn.c: transactions of a write session (engine/writer.c): the
 * staging area, BAT and sector-bitmap staging, and the commit that turns
 * what is staged into VHDX log entries and applies them (fmt §6.5).
 *
 * Staging holds whole 4 KiB images of BAT, sector-bitmap and metadata
 * sectors (read from the file, or the staged copy, then patched), in
 * staging order, found through an open-addressing hash keyed by sector.
 * What is staged is the BAT, the metadata region and present sector-bitmap
 * blocks; vxm_txn_patch refuses the header section and the log outright.
 *
 * One transaction (vxm_txn_commit):
 *
 *   payload pwrite ... extend ...  -> "data-sync"   (fdatasync)
 *   log entry at the log head      -> "log-commit"  (the commit point)
 *   staged images pwrite in place  -> "log-apply"   (the entry is retired)
 *
 * Log placement: the head advances contiguously; an entry that does not fit
 * before the end of the log starts over at offset 0 (never split across the
 * end).  That is safe because every earlier entry is already retired, and
 * the new entry's Tail is itself, so it forms its own sequence with the
 * highest sequence number (fmt §6.3).
 *
 * Invariants kept here (stated in engine/writer.c): I2 (data-sync before
 * the entry), I3 (log-commit before any in-place write), I8 (the init entry
 * flushed before the header names its LogGuid), and the part of I6 that
 * refuses a fixed file's block any state but FULLY_PRESENT.
 */
#define _GNU_SOURCE
#include "writer_priv.h"
#include "vhdx/endian.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- staging ------------------------------------------------------------------------- */

static unsigned hslot(uint64_t sector)
{
	uint64_t h = sector * 0x9E3779B97F4A7C15ull;
	return (unsigned)(h >> 40) & (HASH_CAP - 1);
}

int vxm_wr_st_find(const struct vxm_writer *w, uint64_t off)
{
	uint64_t s = off / SECT;
	for (unsigned i = hslot(s);; i = (i + 1) & (HASH_CAP - 1)) {
		int32_t k = w->hash[i];
		if (k < 0)
			return -1;
		if (w->st_off[k] == off)
			return k;
	}
}

void vxm_wr_st_reset(struct vxm_writer *w)
{
	w->nst = 0;
	w->meta_staged = false;
	w->nfreed = 0;
	for (unsigned i = 0; i < HASH_CAP; i++)
		w->hash[i] = -1;
}

unsigned vxm_txn_room(const struct vxm_writer *w)
{
	return w->entry_cap > w->nst ? w->entry_cap - w->nst : 0;
}

/* Index of the staged image of the 4 KiB sector at off (aligned), staging
 * it from the file when absent. */
int vxm_wr_st_get(struct vxm_writer *w, uint64_t off, int *out, struct vxm_err *err)
{
	int k = vxm_wr_st_find(w, off);

	if (k >= 0) {
		*out = k;
		return 0;
	}
	if (w->nst >= VXM_TXN_MAX_SECTORS)
		return vxm_fail(err, -E2BIG, off,
				"%s: transaction holds %u sector images, the most one can stage; commit first",
				w->img->path, w->nst);
	if (w->nst == w->st_cap) {
		unsigned cap = w->st_cap ? w->st_cap * 2 : 64;
		if (cap > VXM_TXN_MAX_SECTORS)
			cap = VXM_TXN_MAX_SECTORS;
		uint64_t *o = realloc(w->st_off, cap * sizeof(*o));
		if (!o)
			return vxm_fail(err, -ENOMEM, off, "out of memory");
		w->st_off = o;
		uint8_t *b = realloc(w->st_buf, (size_t)cap * SECT);
		if (!b)
			return vxm_fail(err, -ENOMEM, off, "out of memory");
		w->st_buf = b;
		w->st_cap = cap;
	}
	k = (int)w->nst;
	int ret = vxm_image_pread(w->img, st_img(w, k), SECT, off, err);
	if (ret)
		return ret;
	w->st_off[k] = off;
	w->nst++;
	unsigned i = hslot(off / SECT);
	while (w->hash[i] >= 0)
		i = (i + 1) & (HASH_CAP - 1);
	w->hash[i] = k;
	*out = k;
	return 0;
}

static bool in_range(uint64_t off, uint64_t len, uint64_t lo, uint64_t n)
{
	return off >= lo && off + len <= lo + n && off + len >= off;
}

int vxm_txn_patch(struct vxm_writer *w, uint64_t file_off, const void *bytes, uint32_t len,
		  struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const uint8_t *src = bytes;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (file_off < VXM_HEADER_SECTION || file_off + len < file_off ||
	    (file_off < img->hdr.log_off + img->hdr.log_len &&
	     img->hdr.log_off < file_off + len))
		return vxm_fail(err, -EINVAL, file_off,
				"%s: [0x%llx,+%u) is in the header section or the log: never logged",
				img->path, (unsigned long long)file_off, len);
	bool meta = in_range(file_off, len, img->meta_region.off, img->meta_region.len);
	/* Stage every sector first, so a failure leaves nothing half patched. */
	uint64_t first = file_off / SECT * SECT, last = (file_off + len + SECT - 1) / SECT * SECT;
	if ((last - first) / SECT > VXM_TXN_MAX_SECTORS - w->nst)
		return vxm_fail(err, -E2BIG, file_off, "%s: patch of %u bytes exceeds the transaction",
				img->path, len);
	for (uint64_t s = first; s < last; s += SECT) {
		int k = -1; /* set by st_get on success */
		ret = vxm_wr_st_get(w, s, &k, err);
		if (ret)
			return ret;
	}
	for (uint64_t s = first; s < last; s += SECT) {
		int k = vxm_wr_st_find(w, s);
		uint64_t a = s > file_off ? s : file_off;
		uint64_t b = s + SECT < file_off + len ? s + SECT : file_off + len;
		memcpy(st_img(w, k) + (a - s), src + (a - file_off), b - a);
	}
	if (meta) {
		memcpy(w->meta + (file_off - img->meta_region.off), src, len);
		w->meta_staged = true;
	}
	return 0;
}

int vxm_txn_get_bat(struct vxm_writer *w, uint64_t idx, uint64_t *entry, struct vxm_err *err)
{
	struct vxm_image *img = w->img;

	if (idx >= img->g.total_entries)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "%s: BAT index %llu out of range",
				img->path, (unsigned long long)idx);
	uint64_t off = img->bat_region.off + idx * 8;
	int k = vxm_wr_st_find(w, off / SECT * SECT);
	if (k >= 0) {
		*entry = vxm_le64(st_img(w, k) + off % SECT);
		return 0;
	}
	return vxm_image_bat_get(img, idx, entry, err);
}

int vxm_txn_set_bat(struct vxm_writer *w, uint64_t idx, uint64_t entry, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_geom *g = &img->g;
	uint8_t b[8];
	int ret;

	if (idx >= g->total_entries)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "%s: BAT index %llu out of range",
				img->path, (unsigned long long)idx);
	uint64_t off = img->bat_region.off + idx * 8;
	ret = vxm_bat_check_entry(g, idx, entry, off, img->file_size, err);
	if (ret) {
		vxm_err_path(err, img->path);
		return -EINVAL;
	}
	unsigned st = vxm_bat_state(entry);
	if (!vxm_geom_is_sb_index(g, idx) && !g->has_parent && img->m.leave_blocks_allocated &&
	    st != VXM_PB_FULLY_PRESENT) /* I6 */
		return vxm_fail(err, -EINVAL, off,
				"%s: block %llu of a fixed file cannot become %s (fmt P7)", img->path,
				(unsigned long long)vxm_geom_block_of_index(g, idx),
				vxm_pb_state_name(st));
	vxm_put_le64(b, entry);
	return vxm_txn_patch(w, off, b, 8, err);
}

/* Sets or clears bits [bit, bit+n) of the SB block at sb_off (one chunk). */
static int bits_apply(struct vxm_writer *w, uint64_t sb_off, uint64_t bit, uint64_t n, bool value,
		      struct vxm_err *err)
{
	const uint64_t per = SECT * 8ull; /* bits per sector */

	while (n) {
		uint64_t sec = bit / per, in = bit % per;
		uint64_t cnt = per - in < n ? per - in : n;
		int k = -1; /* set by st_get on success */
		int ret = vxm_wr_st_get(w, sb_off + sec * SECT, &k, err);
		if (ret)
			return ret;
		vxm_bitmap_fill(st_img(w, k), in, cnt, value);
		bit += cnt;
		n -= cnt;
	}
	return 0;
}

int vxm_txn_set_bits(struct vxm_writer *w, uint64_t sector, uint64_t n, bool value,
		     struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	const struct vxm_geom *g = &img->g;
	uint64_t total = g->virtual_size / g->lss;
	int ret = vxm_wr_usable(w, err);

	if (ret)
		return ret;
	if (!g->has_parent)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: sector bitmaps exist only in differencing files", img->path);
	if (sector > total || n > total - sector)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: sectors [%llu,+%llu) past the end of the disk (%llu sectors)",
				img->path, (unsigned long long)sector, (unsigned long long)n,
				(unsigned long long)total);
	while (n) {
		uint64_t c = sector >> 23, k = sector & (VXM_SECTORS_PER_CHUNK - 1);
		uint64_t cnt = VXM_SECTORS_PER_CHUNK - k < n ? VXM_SECTORS_PER_CHUNK - k : n;
		uint64_t sbe;
		ret = vxm_txn_get_bat(w, vxm_geom_sb_index(g, c), &sbe, err);
		if (ret)
			return ret;
		if (vxm_bat_state(sbe) != VXM_SB_PRESENT)
			return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
					"%s: chunk %llu has no sector bitmap block", img->path,
					(unsigned long long)c);
		ret = bits_apply(w, vxm_bat_offset(sbe), k, cnt, value, err);
		if (ret)
			return ret;
		sector += cnt;
		n -= cnt;
	}
	return 0;
}

/* ---- the log ------------------------------------------------------------------------- */

/* fmt §6.5 step 2, ordered so that a LogGuid is never current without a
 * valid entry of that GUID in the log (the spec calls such a file corrupt):
 * the init entry (no descriptors, Tail pointing at itself, a random starting
 * sequence number, as Hyper-V writes it) goes to log offset 0 under the new
 * GUID and is flushed ("log-init") while the header still says LogGuid 0,
 * which makes the log dead to every reader; then the header update installs
 * the GUID ("log-guid"). */
static int log_start(struct vxm_writer *w, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	struct vxm_hdr h = img->hdr;
	struct vxm_guid r;
	int ret;

	vxm_guid_new(&h.log_guid); /* never zero: version bits are set */
	vxm_guid_new(&r);
	w->seq = vxm_le64(r.b) & 0x00FFFFFFFFFFFFFFull;
	struct vxm_log_entry e = { 0 };
	e.guid = h.log_guid;
	e.tail = 0;
	e.seq = ++w->seq;
	e.flushed_file_offset = w->durable_size / VXM_MiB * VXM_MiB;
	e.last_file_offset =
		round_up(img->file_size > w->alloc_end ? img->file_size : w->alloc_end, VXM_MiB);
	ret = vxm_log_entry_encode(&e, NULL, 0, w->ebuf, SECT, err);
	if (ret)
		return vxm_wr_fail(w, ret);
	ret = vxm_wr_write(w, w->ebuf, SECT, img->hdr.log_off, "the log's init entry", err);
	if (!ret)
		ret = vxm_wr_sync(w, VXM_TAG_LOG_INIT, err);
	if (ret)
		return ret;
	w->stats.entries++;
	w->log_pos = SECT;
	ret = vxm_wr_headers(w, &h, VXM_TAG_LOG_GUID, err);
	if (ret)
		return ret;
	w->state = VXM_WS_LOGGING;
	assert(writer_check(w));
	return 0;
}

static int log_write(struct vxm_writer *w, const struct vxm_log_update *u, unsigned n,
		     struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	uint32_t log_len = img->hdr.log_len;
	uint32_t size = vxm_log_entry_size(u, n);
	uint32_t pos = w->log_pos;
	int ret;

	if ((uint64_t)pos + size > log_len)
		pos = 0; /* never split an entry; every earlier one is retired */
	struct vxm_log_entry e = { 0 };
	e.guid = img->hdr.log_guid;
	e.flushed_file_offset = w->durable_size / VXM_MiB * VXM_MiB;
	e.last_file_offset =
		round_up(img->file_size > w->alloc_end ? img->file_size : w->alloc_end, VXM_MiB);
	e.tail = pos; /* every earlier entry is retired: Tail is itself */
	e.seq = ++w->seq;
	ret = vxm_log_entry_encode(&e, u, n, w->ebuf, log_len, err);
	if (ret)
		return vxm_wr_fail(w, ret);
	ret = vxm_wr_write(w, w->ebuf, size, img->hdr.log_off + pos, "a log entry", err);
	if (ret)
		return ret;
	ret = vxm_wr_sync(w, VXM_TAG_LOG_COMMIT, err); /* the commit point (I3) */
	if (ret)
		return ret;
	w->stats.entries++;
	w->stats.sectors_logged += n;
	w->log_pos = (pos + size) % log_len;
	return 0;
}

/* Applies staged images [a, b) in place (consecutive sectors coalesced). */
static int apply(struct vxm_writer *w, unsigned a, unsigned b, struct vxm_err *err)
{
	for (unsigned i = a; i < b;) {
		unsigned j = i + 1;
		while (j < b && w->st_off[j] == w->st_off[j - 1] + SECT)
			j++;
		int ret = vxm_wr_write(w, st_img(w, (int)i), (uint64_t)(j - i) * SECT,
				       w->st_off[i], "logged metadata in place", err);
		if (ret)
			return ret;
		i = j;
	}
	return vxm_wr_sync(w, VXM_TAG_LOG_APPLY, err);
}

int vxm_txn_commit(struct vxm_writer *w, const char *tag, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	struct vxm_log_update *u = NULL;
	int ret = vxm_wr_usable(w, err);

	if (ret || w->nst == 0)
		return ret;
	w->txn_tag = tag;
	ret = vxm_wr_touch(w, false, NULL, err);
	if (ret)
		return ret;
	/* 1. data first (I2) */
	if (w->data_dirty) {
		ret = vxm_wr_sync(w, VXM_TAG_DATA_SYNC, err);
		if (ret)
			return ret;
		w->data_dirty = false;
		w->durable_size = img->file_size;
	}
	if (w->state != VXM_WS_LOGGING) {
		ret = log_start(w, err);
		if (ret)
			return ret;
	}
	u = malloc(sizeof(*u) * (w->entry_cap < w->nst ? w->entry_cap : w->nst));
	if (!u)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	/* 2-4. one entry per group: commit, then apply and retire */
	for (unsigned a = 0; a < w->nst; a += w->entry_cap) {
		unsigned b = a + w->entry_cap < w->nst ? a + w->entry_cap : w->nst;
		for (unsigned i = a; i < b; i++)
			u[i - a] = (struct vxm_log_update){ w->st_off[i], st_img(w, (int)i), SECT };
		ret = log_write(w, u, b - a, err);
		if (!ret)
			ret = apply(w, a, b, err);
		if (ret)
			goto out;
	}
	w->stats.commits++;
	if (w->meta_staged) {
		ret = vxm_wr_meta_reload(w, err);
		if (ret) {
			vxm_err_path(err, img->path);
			vxm_wr_fail(w, ret);
			goto out;
		}
	}
	vxm_wr_st_reset(w);
	vxm_image_invalidate(img);
	assert(writer_check(w));
out:
	w->txn_tag = NULL;
	free(u);
	return ret;
}

int vxm_writer_flush(struct vxm_writer *w, struct vxm_err *err)
{
	int ret = vxm_txn_commit(w, "flush", err);
	if (!ret && w->data_dirty) {
		ret = vxm_wr_sync(w, VXM_TAG_DATA_SYNC, err);
		if (!ret) {
			w->data_dirty = false;
			w->durable_size = w->img->file_size;
		}
	}
	return ret;
}
