/* engine/writer.c: write sessions on an open image, every metadata change
 * through the VHDX log (fmt §6.5, §7).
 *
 * A session (struct vxm_writer) owns, for one image opened with
 * VXM_IMAGE_RDWR:
 *   - the header updates of the session: a new FileWriteGuid before the
 *     first change, a new DataWriteGuid before the first change a read of
 *     the virtual disk could observe, a new LogGuid before the first entry
 *     and LogGuid 0 at the end (fmt §1.3);
 *   - the log: entries written from log offset 0, an init entry (no
 *     descriptors, Tail pointing at itself) first, flushed before the
 *     header names its LogGuid, then one entry per transaction, each
 *     retired (applied and flushed) before the next is written, so every
 *     entry's Tail points at itself;
 *   - the staging area of the open transaction: whole 4 KiB images of BAT,
 *     sector-bitmap and metadata sectors, keyed by file offset;
 *   - allocation at the end of the file (fmt §7).
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
 * Invariants (tests cite them):
 * I1: nothing is written before the first header update of the session
 *     (new FileWriteGuid); a request refused by validation writes nothing.
 * I2: a BAT or bitmap entry is logged only after the payload and the file
 *     extension it depends on passed a "data-sync".
 * I3: no sector is written in place (BAT, bitmap, metadata) before the log
 *     entry holding its image passed a "log-commit".
 * I4: space is allocated at round_up(max(EOF, highest allocation), 1 MiB),
 *     the file is extended before data is written into it, and no space is
 *     handed out twice in a session (freed blocks are never reused).
 * I5: a block's BAT entry, its chunk's SB entry and its bitmap bits are
 *     staged into the same entry (the high-level calls commit first when
 *     the entry could overflow), so each entry moves blocks between
 *     consistent states: NOT_PRESENT -> PARTIALLY_PRESENT -> FULLY_PRESENT,
 *     any -> ZERO (bits cleared).
 * I6: a fixed file's blocks (LeaveBlocksAllocated, no parent) never leave
 *     FULLY_PRESENT; zeros are written as data.
 * I7: at vxm_writer_end every entry is applied and flushed before the
 *     LogGuid is cleared; after a failure the LogGuid is left set.
 * I8: a non-zero LogGuid is never current without a durable valid entry of
 *     that GUID in the log (the init entry is flushed first), so no crash
 *     leaves a log the spec would call corrupt (fmt §6.3).
 */
#define _GNU_SOURCE
#include "engine.h"
#include "vhdx/endian.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECT VXM_LOG_SECTOR
#define HASH_CAP (2 * VXM_TXN_MAX_SECTORS) /* power of two */

struct freed {
	uint32_t off, len;
};

struct vxm_writer {
	struct vxm_image *img;
	enum vxm_writer_state state;
	bool data_guid_done;
	int fail_code;
	const char *txn_tag;     /* the transaction being committed (errors) */

	/* log */
	uint64_t seq;            /* sequence number of the last entry written */
	uint32_t log_pos;        /* log-relative offset of the next entry */
	uint32_t entry_cap;      /* data sectors one entry can hold */
	uint8_t *ebuf;           /* log_len bytes: the entry being written */

	/* allocation (fmt §7) */
	uint64_t alloc_end;      /* end of the highest allocation */
	uint64_t durable_size;   /* file size covered by the last data-sync */
	bool data_dirty;         /* payload or size changed since that sync */

	/* staging: images in staging order */
	uint64_t *st_off;
	uint8_t *st_buf;
	unsigned nst, st_cap;
	int32_t *hash;           /* sector number -> staging index, -1 empty */

	/* metadata: the session's working copy of the region and table */
	uint8_t *meta;
	struct vxm_meta_table *mt;
	bool meta_staged;
	struct freed *freed;     /* item space released in the open txn */
	unsigned nfreed, freed_cap;

	uint8_t *slice;          /* one block's bitmap slice */
	struct vxm_writer_stats stats;
};

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static uint32_t desc_sectors(uint32_t n)
{
	return (n + 2 + 127) / 128;
}

/* Debug checker, run at each state transition (house style 12). */
static __attribute__((unused)) bool writer_check(const struct vxm_writer *w)
{
	const struct vxm_image *img = w->img;

	if (w->state > VXM_WS_FAILED)
		return false;
	if (w->state == VXM_WS_LOGGING && vxm_guid_is_zero(&img->hdr.log_guid))
		return false;
	if ((w->state == VXM_WS_CLEAN || w->state == VXM_WS_DIRTY) &&
	    !vxm_guid_is_zero(&img->hdr.log_guid))
		return false;
	if (w->nst > w->st_cap || w->log_pos >= img->hdr.log_len || w->log_pos % SECT)
		return false;
	return true;
}

static int fail(struct vxm_writer *w, int code)
{
	w->state = VXM_WS_FAILED;
	if (!w->fail_code)
		w->fail_code = code;
	return code;
}

enum vxm_writer_state vxm_writer_state(const struct vxm_writer *w)
{
	return w->state;
}

void vxm_writer_get_stats(const struct vxm_writer *w, struct vxm_writer_stats *st)
{
	*st = w->stats;
}

static int usable(struct vxm_writer *w, struct vxm_err *err)
{
	if (w->state == VXM_WS_FAILED)
		return vxm_fail(err, w->fail_code ? w->fail_code : -EIO, VXM_OFF_NONE,
				"%s: the write session failed earlier; only vxm_writer_end is possible",
				w->img->path);
	return 0;
}

/* ---- raw writes and syncs ---------------------------------------------------- */

static int do_write(struct vxm_writer *w, const void *buf, uint64_t len, uint64_t off,
		    const char *what, struct vxm_err *err)
{
	vxm_killpoint("write");
	int ret = vxm_io_pwrite(w->img->io, w->img->slot, buf, len, off);
	if (ret)
		return fail(w, vxm_fail(err, ret, off,
					"%s: writing %s (%llu bytes at 0x%llx%s%s) failed: %s",
					w->img->path, what, (unsigned long long)len,
					(unsigned long long)off, w->txn_tag ? ", transaction " : "",
					w->txn_tag ? w->txn_tag : "", vxm_strerror(ret)));
	return 0;
}

static int do_sync(struct vxm_writer *w, const char *tag, struct vxm_err *err)
{
	int ret = vxm_io_sync(w->img->io, w->img->slot, tag, false);
	w->stats.syncs++;
	if (ret)
		return fail(w, vxm_fail(err, ret, VXM_OFF_NONE, "%s: flush (%s) of %s failed: %s",
					w->img->path, tag, w->txn_tag ? w->txn_tag : "the session",
					vxm_strerror(ret)));
	vxm_killpoint(tag);
	return 0;
}

static int headers(struct vxm_writer *w, const struct vxm_hdr *h, const char *tag,
		   struct vxm_err *err)
{
	int ret = vxm_image_write_headers(w->img, h, tag, err);
	w->stats.header_updates++;
	w->stats.syncs += 2;
	if (ret) {
		vxm_err_path(err, w->img->path);
		return fail(w, ret);
	}
	vxm_killpoint(tag);
	return 0;
}

/* The first change of the session updates the headers (I1); the first
 * visible change also installs a new DataWriteGuid (dwg, or random). */
static int touch(struct vxm_writer *w, bool data, const struct vxm_guid *dwg,
		 struct vxm_err *err)
{
	bool need_file = w->state == VXM_WS_CLEAN;
	bool need_data = data && !w->data_guid_done;
	int ret;

	if (!need_file && !need_data)
		return 0;
	struct vxm_hdr h = w->img->hdr;
	if (need_file)
		vxm_guid_new(&h.file_write);
	if (need_data) {
		if (dwg)
			h.data_write = *dwg;
		else
			vxm_guid_new(&h.data_write);
	}
	ret = headers(w, &h, need_file ? VXM_TAG_SESSION_BEGIN : VXM_TAG_DATA_GUID, err);
	if (ret)
		return ret;
	if (need_file)
		w->state = VXM_WS_DIRTY;
	if (need_data)
		w->data_guid_done = true;
	assert(writer_check(w));
	return 0;
}

int vxm_writer_set_data_guid(struct vxm_writer *w, const struct vxm_guid *g, struct vxm_err *err)
{
	int ret = usable(w, err);
	if (ret)
		return ret;
	if (w->data_guid_done)
		return vxm_fail(err, -EBUSY, VXM_OFF_NONE,
				"%s: the DataWriteGuid was already changed in this session",
				w->img->path);
	return touch(w, true, g, err);
}

/* ---- allocation (fmt §7) --------------------------------------------------------- */

int vxm_writer_alloc(struct vxm_writer *w, uint64_t len, uint64_t *off, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	int ret = usable(w, err);

	if (ret)
		return ret;
	ret = touch(w, false, NULL, err);
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
		return fail(w, vxm_fail(err, ret, at, "%s: extending the file to %llu bytes failed: %s",
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

/* ---- staging ------------------------------------------------------------------------- */

static unsigned hslot(uint64_t sector)
{
	uint64_t h = sector * 0x9E3779B97F4A7C15ull;
	return (unsigned)(h >> 40) & (HASH_CAP - 1);
}

static int st_find(const struct vxm_writer *w, uint64_t off)
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

static uint8_t *st_img(const struct vxm_writer *w, int k)
{
	return w->st_buf + (size_t)k * SECT;
}

static void st_reset(struct vxm_writer *w)
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
static int st_get(struct vxm_writer *w, uint64_t off, int *out, struct vxm_err *err)
{
	int k = st_find(w, off);

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
	int ret = usable(w, err);

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
		ret = st_get(w, s, &k, err);
		if (ret)
			return ret;
	}
	for (uint64_t s = first; s < last; s += SECT) {
		int k = st_find(w, s);
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
	int k = st_find(w, off / SECT * SECT);
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
		int ret = st_get(w, sb_off + sec * SECT, &k, err);
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
	int ret = usable(w, err);

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

/* Block b's bitmap slice as the session sees it, into w->slice. */
static int slice_read(struct vxm_writer *w, uint64_t sb_off, uint64_t b, struct vxm_err *err)
{
	const struct vxm_geom *g = &w->img->g;
	uint64_t off = vxm_sb_slice_off(g, sb_off, b), len = g->spb / 8;
	int ret = vxm_image_pread(w->img, w->slice, len, off, err);

	if (ret)
		return ret;
	for (uint64_t s = off / SECT * SECT; s < off + len; s += SECT) {
		int k = st_find(w, s);
		if (k < 0)
			continue;
		uint64_t a = s > off ? s : off, e = s + SECT < off + len ? s + SECT : off + len;
		memcpy(w->slice + (a - off), st_img(w, k) + (a - s), e - a);
	}
	return 0;
}

/* ---- metadata items ---------------------------------------------------------------- */

static int cmp_freed(const void *a, const void *b)
{
	const struct freed *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* Lowest offset >= 64 KiB with len free bytes: not under any item of the
 * working table nor under space released in the open transaction. */
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

static int meta_find_space(struct vxm_writer *w, uint32_t len, uint32_t *out)
{
	return meta_gap(w->mt, w->freed, w->nfreed, w->img->meta_region.len, len, out);
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
	int ret = usable(w, err);

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
	int ret = usable(w, err);
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
static int meta_reload(struct vxm_writer *w, struct vxm_err *err)
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
		return fail(w, ret);
	ret = do_write(w, w->ebuf, SECT, img->hdr.log_off, "the log's init entry", err);
	if (!ret)
		ret = do_sync(w, VXM_TAG_LOG_INIT, err);
	if (ret)
		return ret;
	w->stats.entries++;
	w->log_pos = SECT;
	ret = headers(w, &h, VXM_TAG_LOG_GUID, err);
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
		return fail(w, ret);
	ret = do_write(w, w->ebuf, size, img->hdr.log_off + pos, "a log entry", err);
	if (ret)
		return ret;
	ret = do_sync(w, VXM_TAG_LOG_COMMIT, err); /* the commit point (I3) */
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
		int ret = do_write(w, st_img(w, (int)i), (uint64_t)(j - i) * SECT, w->st_off[i],
				   "logged metadata in place", err);
		if (ret)
			return ret;
		i = j;
	}
	return do_sync(w, VXM_TAG_LOG_APPLY, err);
}

int vxm_txn_commit(struct vxm_writer *w, const char *tag, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	struct vxm_log_update *u = NULL;
	int ret = usable(w, err);

	if (ret || w->nst == 0)
		return ret;
	w->txn_tag = tag;
	ret = touch(w, false, NULL, err);
	if (ret)
		return ret;
	/* 1. data first (I2) */
	if (w->data_dirty) {
		ret = do_sync(w, VXM_TAG_DATA_SYNC, err);
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
		ret = meta_reload(w, err);
		if (ret) {
			vxm_err_path(err, img->path);
			fail(w, ret);
			goto out;
		}
	}
	st_reset(w);
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
		ret = do_sync(w, VXM_TAG_DATA_SYNC, err);
		if (!ret) {
			w->data_dirty = false;
			w->durable_size = w->img->file_size;
		}
	}
	return ret;
}

/* ---- session --------------------------------------------------------------------------- */

/* End of the highest allocation: regions, log and every block the BAT
 * references (streamed in windows, engine.h I2). */
static int scan_alloc_end(struct vxm_writer *w, struct vxm_err *err)
{
	return vxm_image_alloc_end(w->img, &w->alloc_end, err);
}

static void writer_free(struct vxm_writer *w)
{
	if (!w)
		return;
	free(w->ebuf);
	free(w->st_off);
	free(w->st_buf);
	free(w->hash);
	free(w->meta);
	free(w->mt);
	free(w->freed);
	free(w->slice);
	free(w);
}

int vxm_writer_begin(struct vxm_writer **out, struct vxm_image *img, struct vxm_err *err)
{
	struct vxm_writer *w;
	int ret;

	*out = NULL;
	if (!(img->flags & VXM_IMAGE_RDWR))
		return vxm_fail(err, -EBADF, VXM_OFF_NONE,
				"%s: opened read-only; a write session needs VXM_IMAGE_RDWR", img->path);
	if (!vxm_guid_is_zero(&img->hdr.log_guid))
		return vxm_fail(err, -VXM_EDIRTY, img->hdr.log_off,
				"%s: the log is not clean; replay it first", img->path);
	if (img->hdr.log_len > VXM_MAX_LOG_LEN || img->hdr.log_off + img->hdr.log_len > img->file_size)
		return vxm_unsupported(err, img->hdr.log_off, "%s: log of %u bytes at 0x%llx unusable",
				       img->path, img->hdr.log_len,
				       (unsigned long long)img->hdr.log_off);
	ret = vxm_image_meta_load(img, err); /* the writer works on the whole region */
	if (ret)
		return ret;
	w = calloc(1, sizeof(*w));
	if (!w)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	w->img = img;
	w->state = VXM_WS_CLEAN;
	/* An entry leaves room for the init entry in front of it. */
	uint32_t sectors = img->hdr.log_len / SECT - 1, n = sectors;
	while (n && desc_sectors(n) + n > sectors)
		n--;
	w->entry_cap = n < VXM_TXN_MAX_SECTORS ? n : VXM_TXN_MAX_SECTORS;
	w->ebuf = malloc(img->hdr.log_len);
	w->hash = malloc(HASH_CAP * sizeof(*w->hash));
	w->meta = malloc(img->meta_region.len);
	w->mt = malloc(sizeof(*w->mt));
	w->slice = malloc(img->g.spb / 8);
	if (!w->ebuf || !w->hash || !w->meta || !w->mt || !w->slice || !w->entry_cap) {
		writer_free(w);
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	}
	memcpy(w->meta, img->meta, img->meta_region.len);
	*w->mt = *img->mt;
	st_reset(w);
	w->durable_size = img->file_size;
	ret = scan_alloc_end(w, err);
	if (ret) {
		vxm_err_path(err, img->path);
		writer_free(w);
		return ret;
	}
	if (w->alloc_end > img->file_size) {
		/* A block or region reaches past EOF (a truncated trailing block):
		 * allocation continues past it, never inside it. */
		w->alloc_end = round_up(w->alloc_end, VXM_MiB);
	}
	*out = w;
	return 0;
}

int vxm_writer_end(struct vxm_writer *w, struct vxm_err *err)
{
	int ret;

	if (!w)
		return 0;
	ret = usable(w, err);
	if (!ret)
		ret = vxm_writer_flush(w, err);
	if (!ret && w->state == VXM_WS_LOGGING) {
		/* I7: every entry applied and flushed; the log is empty. */
		struct vxm_hdr h = w->img->hdr;
		memset(h.log_guid.b, 0, 16);
		ret = headers(w, &h, VXM_TAG_SESSION_END, err);
	}
	vxm_image_invalidate(w->img);
	writer_free(w);
	return ret;
}

/* ---- payload ------------------------------------------------------------------------- */

static const uint8_t zeros[1 << 20];

static int payload(struct vxm_writer *w, uint64_t off, const uint8_t *src, uint64_t len,
		   struct vxm_err *err)
{
	int ret;

	if (src) {
		ret = do_write(w, src, len, off, "payload", err);
	} else {
		ret = 0;
		for (uint64_t d = 0; d < len && !ret; d += sizeof(zeros)) {
			uint64_t n = len - d < sizeof(zeros) ? len - d : sizeof(zeros);
			ret = do_write(w, zeros, n, off + d, "zeros", err);
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
		ret = touch(w, true, NULL, err); /* I1: a visible change follows */
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
	ret = touch(w, true, NULL, err);
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
	int ret = usable(w, err);

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

/* ---- metadata changes --------------------------------------------------------------- */

int vxm_writer_set_locator(struct vxm_writer *w, const struct vxm_kv *kv, unsigned n,
			   struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	enum { CAP = 64 * 1024 };
	uint8_t *buf;
	int ret = usable(w, err);

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
		fail(w, ret); /* the working metadata may be half changed */
out:
	free(buf);
	free(loc);
	return ret;
}

int vxm_writer_set_vd_items(struct vxm_writer *w, struct vxm_image *src, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	int ret = usable(w, err);

	if (ret)
		return ret;
	if (src->m.logical_sector_size != img->m.logical_sector_size)
		return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				"%s has %u-byte logical sectors, %s %u: they must be equal (fmt P4)",
				src->path, src->m.logical_sector_size, img->path,
				img->m.logical_sector_size);
	if (src->m.virtual_size < img->m.virtual_size)
		return vxm_unsupported(err, VXM_OFF_NONE,
				       "%s: shrinking the virtual disk from %llu to %llu bytes is refused",
				       img->path, (unsigned long long)img->m.virtual_size,
				       (unsigned long long)src->m.virtual_size);
	if (src->m.virtual_size > img->m.virtual_size) {
		struct vxm_geom ng;
		ret = vxm_geom_init(&ng, src->m.virtual_size, img->m.block_size,
				    img->m.logical_sector_size, img->m.has_parent, err);
		if (ret)
			return ret;
		if (ng.total_entries * 8 > img->bat_region.len)
			return vxm_unsupported(err, img->bat_region.off,
					       "%s: growing to %llu bytes needs a larger BAT region (not implemented)",
					       img->path, (unsigned long long)src->m.virtual_size);
		if (!img->m.has_parent && img->m.leave_blocks_allocated &&
		    ng.payload_blocks > img->g.payload_blocks)
			return vxm_unsupported(err, VXM_OFF_NONE,
					       "%s: growing a fixed file needs new blocks (not implemented)",
					       img->path);
	}
	ret = vxm_txn_commit(w, "before-vd-items", err);
	if (!ret)
		ret = touch(w, true, NULL, err);
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
	if (ret)
		fail(w, ret); /* the working metadata may be half changed */
	return ret;
}

int vxm_writer_reserve(struct vxm_writer *w, uint64_t off, uint64_t len, struct vxm_err *err)
{
	struct vxm_image *img = w->img;
	int ret = usable(w, err);

	if (ret)
		return ret;
	if (off % VXM_MiB || off < VXM_HEADER_SECTION || off + len < off)
		return vxm_fail(err, -EINVAL, off, "%s: reservation at 0x%llx is not 1 MiB aligned",
				img->path, (unsigned long long)off);
	ret = touch(w, false, NULL, err);
	if (ret)
		return ret;
	uint64_t end = off + round_up(len, VXM_MiB);
	if (end > img->file_size) {
		/* I4: extend before anything is written into the new space. */
		vxm_killpoint("extend");
		ret = vxm_io_resize(img->io, img->slot, end);
		if (ret)
			return fail(w, vxm_fail(err, ret, off, "%s: extending the file to %llu bytes failed: %s",
						img->path, (unsigned long long)end, vxm_strerror(ret)));
		img->file_size = end;
	}
	if (end > w->alloc_end)
		w->alloc_end = end;
	w->data_dirty = true;
	return 0;
}
