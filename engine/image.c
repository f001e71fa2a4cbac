/* engine/image.c: opening one VHDX file through vxm_io with the vhdx/ codecs.
 *
 * Open order (each step validates before the next trusts its output):
 *   1. identifier, both headers -> the current header (fmt §1.3)
 *   2. log placement; when LogGuid != 0 the active sequence is found, every
 *      target of every entry validated, and the log replayed into an
 *      in-memory overlay before anything else is read (fmt §6.4)
 *   3. both region tables (through the overlay: the log may rewrite them)
 *   4. metadata region, its items, the parent locator
 *   5. BAT geometry and placement; entries are read lazily in windows
 *   6. a dirty log: the growth it asks for is judged against the replayed
 *      structures; then a writable open applies it in place
 *
 * I1..I3: see engine.h.
 * I4: a read-only open never writes; a writable open writes nothing unless
 *     the log is dirty, and then only once steps 1-6 have all passed (header
 *     update, apply, flush, grow, clear): a refusal leaves the file as it was.
 * I5: replayed updates stay inside the file's legitimate extent (see
 *     vxm_log_validate), growth past its end needs structures there (step
 *     6); such a log is corrupt.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vxm_image_note(struct vxm_image *img, int severity, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	if (img->nnotes == img->notes_cap) {
		unsigned cap = img->notes_cap ? img->notes_cap * 2 : 16;
		if (cap > 4096) {
			if (severity)
				img->nproblems++; /* counted, not listed */
			return;
		}
		struct vxm_note *n = realloc(img->notes, cap * sizeof(*n));
		if (!n) {
			if (severity)
				img->nproblems++;
			return;
		}
		img->notes = n;
		img->notes_cap = cap;
	}
	struct vxm_note *n = &img->notes[img->nnotes++];
	n->severity = severity;
	n->off = off;
	va_start(ap, fmt);
	vsnprintf(n->msg, sizeof(n->msg), fmt, ap);
	va_end(ap);
	if (severity)
		img->nproblems++;
}

/* ---- raw reads with the replay overlay ------------------------------------ */

int vxm_image_pread(struct vxm_image *img, void *buf, uint64_t len, uint64_t off,
		    struct vxm_err *err)
{
	uint8_t *p = buf;
	int64_t n = vxm_io_pread(img->io, img->slot, buf, len, off);

	if (n < 0) {
		/* name the file: callers (the writer's staging reads, the
		 * planner, finalize) pass err on as it is */
		vxm_fail(err, (int)n, off, "read of %llu bytes at 0x%llx failed: %s",
			 (unsigned long long)len, (unsigned long long)off, vxm_strerror((int)n));
		vxm_err_path(err, img->path);
		return (int)n;
	}
	if ((uint64_t)n < len)
		memset(p + n, 0, len - (uint64_t)n);
	/* Later updates win: apply in log order. */
	for (unsigned i = 0; i < img->nov; i++) {
		const struct vxm_overlay_upd *u = &img->ov[i];
		uint64_t a = u->off > off ? u->off : off;
		uint64_t b = u->off + u->len < off + len ? u->off + u->len : off + len;
		if (a >= b)
			continue;
		if (u->data)
			memcpy(p + (a - off), u->data + (a - u->off), b - a);
		else
			memset(p + (a - off), 0, b - a);
	}
	return 0;
}

/* ---- log replay ------------------------------------------------------------- */

/* A dirty log, replayed into the overlay by open_log and judged, then
 * applied in place, by log_finish once the replayed metadata is known. */
struct log_replay {
	struct vxm_image *img;
	struct vxm_err *err;
	bool pending;
	uint64_t size0;            /* the file's size before replay */
	struct vxm_log_need need;  /* the size replay grows it to, and who asks */
};

static int overlay_apply(void *vctx, uint64_t off, const uint8_t *data, uint64_t len)
{
	struct log_replay *c = vctx;
	struct vxm_image *img = c->img;

	if (img->nov == img->ov_cap) {
		unsigned cap = img->ov_cap ? img->ov_cap * 2 : 32;
		struct vxm_overlay_upd *n = realloc(img->ov, cap * sizeof(*n));
		if (!n)
			return vxm_fail(c->err, -ENOMEM, off, "log replay: out of memory");
		img->ov = n;
		img->ov_cap = cap;
	}
	struct vxm_overlay_upd *u = &img->ov[img->nov];
	u->off = off;
	u->len = len;
	u->data = NULL;
	if (data) {
		u->data = malloc(len);
		if (!u->data)
			return vxm_fail(c->err, -ENOMEM, off, "log replay: out of memory");
		memcpy(u->data, data, len);
	}
	img->nov++;
	return 0;
}

/* Header update procedure (fmt §1.3): write the non-current slot, flush,
 * then the other one, flush.  h is the new content; seq is assigned here. */
int vxm_image_write_headers(struct vxm_image *img, const struct vxm_hdr *h, const char *tag,
			    struct vxm_err *err)
{
	uint8_t buf[VXM_HDR_SIZE];
	struct vxm_hdr nh = *h;
	int ret;

	for (int round = 0; round < 2; round++) {
		int slot = 1 - img->hp.current;
		uint64_t off = slot ? VXM_HDR2_OFF : VXM_HDR1_OFF;
		nh.seq = img->hdr.seq + 1;
		nh.version = 1;
		nh.log_version = 0;
		vxm_hdr_encode(&nh, buf);
		ret = vxm_io_pwrite(img->io, img->slot, buf, VXM_HDR_SIZE, off);
		if (!ret)
			ret = vxm_io_sync(img->io, img->slot, tag, false);
		if (ret)
			return vxm_fail(err, ret, off, "header %d: write failed: %s", slot + 1,
					vxm_strerror(ret));
		memcpy(img->hdr_raw[slot], buf, VXM_HDR_SIZE);
		img->hp.h[slot] = nh;
		img->hp.status[slot] = 0;
		img->hp.current = slot;
		img->hp.tie = false;
		img->hdr = nh;
	}
	return 0;
}

static int open_log(struct vxm_image *img, struct log_replay *rp, struct vxm_err *err)
{
	const struct vxm_hdr *h = &img->hdr;
	uint8_t *log = NULL;
	int ret;

	if (h->log_off + h->log_len > img->file_size) {
		if (vxm_guid_is_zero(&h->log_guid)) {
			vxm_image_note(img, 1, h->log_off,
				       "log [0x%llx,+%u) extends past the end of the file (%llu bytes)",
				       (unsigned long long)h->log_off, h->log_len,
				       (unsigned long long)img->file_size);
			return 0;
		}
		return vxm_corrupt(err, h->log_off,
				   "log [0x%llx,+%u) extends past the end of the file (%llu bytes)",
				   (unsigned long long)h->log_off, h->log_len,
				   (unsigned long long)img->file_size);
	}
	if (vxm_guid_is_zero(&h->log_guid))
		return 0;
	img->log_dirty = true;
	if (h->log_len > VXM_MAX_LOG_LEN)
		return vxm_unsupported(err, h->log_off + 0, "log: %u bytes (this program replays at most %u)",
				       h->log_len, VXM_MAX_LOG_LEN);
	log = malloc(h->log_len);
	if (!log)
		return vxm_fail(err, -ENOMEM, h->log_off, "log: out of memory");
	ret = vxm_image_pread(img, log, h->log_len, h->log_off, err);
	if (ret)
		goto out_free;
	ret = vxm_log_find_active(log, h->log_len, h->log_off, &h->log_guid, &img->logseq, err);
	if (ret)
		goto out_free;
	if (!img->logseq.found) {
		/* fmt §6.3: in-place writes always follow a durable entry, so an
		 * empty log is safe to ignore (as QEMU does). */
		vxm_image_note(img, 1, h->log_off,
			       "log: LogGuid is set but no valid entry sequence exists; treated as empty");
		goto out_free;
	}
	img->log_entries = img->logseq.count;
	if (img->file_size < img->logseq.flushed_file_offset) {
		ret = vxm_corrupt(err, img->file_size,
				  "log: the file is %llu bytes but the log says %llu were durable: truncated",
				  (unsigned long long)img->file_size,
				  (unsigned long long)img->logseq.flushed_file_offset);
		goto out_free;
	}
	/* Every target judged before any is applied (I4, I5); the cap refuses an
	 * absurd LastFileOffset before the file is viewed as grown to it. */
	struct vxm_log_limits lim = { .file_size = img->file_size,
				      .max_size = VXM_MAX_VIRTUAL_SIZE * 2 };
	ret = vxm_log_validate(log, h->log_len, h->log_off, &img->logseq, &h->log_guid, &lim,
			       &rp->need, err);
	if (ret)
		goto out_free;
	/* Into memory first, RDWR too: the replayed metadata opens before any write. */
	ret = vxm_log_replay(log, h->log_len, h->log_off, &img->logseq, &h->log_guid,
			     overlay_apply, rp, err);
	if (ret)
		goto out_free;
	rp->pending = true;
	rp->size0 = img->file_size;
	if (rp->need.end > img->file_size)
		img->file_size = rp->need.end;
out_free:
	free(log);
	return ret;
}

/* Replay may grow the file (fmt §6.4) only as far as its replayed
 * structures reach, and by no more than all blocks and regions of its
 * geometry take: a CRC-valid entry asking 1 TiB of a 16 MiB file is corrupt. */
static int justify_growth(struct vxm_image *img, const struct log_replay *rp, struct vxm_err *err)
{
	const struct vxm_log_need *n = &rp->need;
	char who[128];
	uint64_t end;

	if (n->end <= rp->size0)
		return 0;
	int ret = vxm_image_alloc_end(img, &end, err);
	if (ret)
		return ret;
	uint64_t cap = VXM_HEADER_SECTION + (uint64_t)img->hdr.log_len +
		       vxm_geom_blocks_bytes(&img->g);
	for (uint32_t i = 0; i < img->rt->count; i++)
		cap += img->rt->e[i].len;
	if (n->desc < 0)
		snprintf(who, sizeof(who), "LastFileOffset 0x%llx", (unsigned long long)n->end);
	else
		snprintf(who, sizeof(who), "descriptor %d (at 0x%llx), writing up to 0x%llx,", n->desc,
			 (unsigned long long)n->field_off, (unsigned long long)n->end);
	if (n->end > end)
		return vxm_corrupt(err, n->field_off,
				   "log entry %llu at 0x%llx: %s asks for a %llu-byte file; the file has %llu bytes and its replayed structures end at 0x%llx",
				   (unsigned long long)n->seq, (unsigned long long)n->entry_off, who,
				   (unsigned long long)n->end, (unsigned long long)rp->size0,
				   (unsigned long long)end);
	if (n->end - rp->size0 > cap)
		return vxm_corrupt(err, n->field_off,
				   "log entry %llu at 0x%llx: %s grows the %llu-byte file by %llu bytes, more than all blocks and regions of this disk take (%llu bytes)",
				   (unsigned long long)n->seq, (unsigned long long)n->entry_off, who,
				   (unsigned long long)rp->size0,
				   (unsigned long long)(n->end - rp->size0), (unsigned long long)cap);
	return 0;
}

/* fmt §6.5: header update (new FileWriteGuid, LogGuid kept), the overlay in
 * log order, flush, grow, flush, drop the overlay (the file holds it now),
 * clear LogGuid.  DataWriteGuid is kept: replay re-applies committed work. */
static int replay_in_place(struct vxm_image *img, struct vxm_err *err)
{
	static const uint8_t zero[64 * 1024];
	struct vxm_hdr nh = img->hdr;
	int ret;

	vxm_guid_new(&nh.file_write);
	ret = vxm_image_write_headers(img, &nh, "replay-begin", err);
	if (ret)
		return ret;
	for (unsigned i = 0; i < img->nov && !ret; i++) {
		const struct vxm_overlay_upd *u = &img->ov[i];
		if (u->data)
			ret = vxm_io_pwrite(img->io, img->slot, u->data, u->len, u->off);
		for (uint64_t d = 0; !u->data && d < u->len && !ret; d += sizeof(zero)) {
			uint64_t n = u->len - d < sizeof(zero) ? u->len - d : sizeof(zero);
			ret = vxm_io_pwrite(img->io, img->slot, zero, n, u->off + d);
		}
		if (ret)
			return vxm_fail(err, ret, u->off, "log replay: write at 0x%llx failed: %s",
					(unsigned long long)u->off, vxm_strerror(ret));
	}
	uint64_t sz, last = img->logseq.last_file_offset;
	ret = vxm_io_sync(img->io, img->slot, "replay-apply", false);
	if (!ret && !(ret = vxm_io_size(img->io, img->slot, &sz)) && last > sz) {
		sz = last;
		ret = vxm_io_resize(img->io, img->slot, sz);
		if (!ret)
			ret = vxm_io_sync(img->io, img->slot, "replay-grow", true);
	}
	if (ret)
		return vxm_fail(err, ret, img->hdr.log_off, "log replay: flush failed: %s",
				vxm_strerror(ret));
	img->file_size = sz;
	for (unsigned i = 0; i < img->nov; i++)
		free(img->ov[i].data);
	img->nov = 0;
	nh = img->hdr;
	memset(nh.log_guid.b, 0, 16);
	return vxm_image_write_headers(img, &nh, "replay-done", err);
}

/* Once the replayed metadata has opened: the growth is judged, then a writable
 * open applies the log (I4), NO_REPLAY refuses it, read-only keeps the overlay. */
static int log_finish(struct vxm_image *img, const struct log_replay *rp, struct vxm_err *err)
{
	if (!rp->pending)
		return 0;
	int ret = justify_growth(img, rp, err);
	if (ret)
		return ret;
	if (img->flags & VXM_IMAGE_NO_REPLAY)
		return vxm_fail(err, -VXM_EDIRTY, img->hdr.log_off,
				"log: %u entries must be replayed (run: vhdxmerge check --repair)",
				img->log_entries);
	if ((img->flags & VXM_IMAGE_RDWR) && (ret = replay_in_place(img, err)))
		return ret;
	img->log_replayed = true;
	return 0;
}

/* ---- region tables, metadata, BAT placement ------------------------------ */

static const char *region_name(const struct vxm_region_table *rt, int i)
{
	return i == rt->bat ? "BAT" : i == rt->metadata ? "metadata" : "unknown";
}

static int open_regions(struct vxm_image *img, struct vxm_err *err)
{
	uint8_t *buf = malloc(2 * VXM_RT_SIZE);
	struct vxm_region_table *rt2 = malloc(sizeof(*rt2));
	struct vxm_err e[2] = { 0 };
	int ret;

	img->rt = malloc(sizeof(*img->rt));
	if (!buf || !rt2 || !img->rt) {
		ret = vxm_fail(err, -ENOMEM, VXM_RT1_OFF, "region table: out of memory");
		goto out;
	}
	ret = vxm_image_pread(img, buf, 2 * VXM_RT_SIZE, VXM_RT1_OFF, err);
	if (ret)
		goto out;
	img->rt_status[0] = vxm_region_parse(buf, VXM_RT_SIZE, VXM_RT1_OFF, img->rt, &e[0]);
	img->rt_status[1] = vxm_region_parse(buf + VXM_RT_SIZE, VXM_RT_SIZE, VXM_RT2_OFF, rt2, &e[1]);
	if (img->rt_status[0] && img->rt_status[1]) {
		int i = img->rt_status[0] == -VXM_EUNSUPPORTED ? 0 : 1;
		if (img->rt_status[1] == -VXM_EUNSUPPORTED)
			i = 1;
		if (img->rt_status[0] == -VXM_EUNSUPPORTED)
			i = 0;
		ret = vxm_fail(err, img->rt_status[i], e[i].off,
			       "no valid region table: copy 1: %s; copy 2: %s", e[0].msg, e[1].msg);
		goto out;
	}
	if (img->rt_status[0] == -VXM_EUNSUPPORTED || img->rt_status[1] == -VXM_EUNSUPPORTED) {
		int i = img->rt_status[0] == -VXM_EUNSUPPORTED ? 0 : 1;
		ret = vxm_fail(err, -VXM_EUNSUPPORTED, e[i].off, "%s", e[i].msg);
		goto out;
	}
	if (img->rt_status[0]) {
		/* fmt §1.4 [INFER]: fall back to copy 2 with a warning. */
		vxm_image_note(img, 1, e[0].off, "%s; using region table copy 2", e[0].msg);
		memcpy(img->rt, rt2, sizeof(*rt2));
		img->rt_used = 1;
	} else if (img->rt_status[1]) {
		vxm_image_note(img, 1, e[1].off, "%s; copy 1 is used", e[1].msg);
	} else if (memcmp(buf, buf + VXM_RT_SIZE, VXM_RT_SIZE) != 0) {
		img->rt_differ = true;
		ret = vxm_corrupt(err, VXM_RT2_OFF,
				  "region tables: both copies are valid but differ; refusing to guess");
		goto out;
	}
	img->bat_region = img->rt->e[img->rt->bat];
	img->meta_region = img->rt->e[img->rt->metadata];
	/* Errors point at the FileOffset field of the entry in the copy in use.
	 * Of the regions past the end of the file, the lowest is named: the
	 * file was most likely cut inside it. */
	uint64_t rt_off = img->rt_used ? VXM_RT2_OFF : VXM_RT1_OFF;
	int past = -1;
	for (uint32_t i = 0; i < img->rt->count; i++) {
		const struct vxm_region *r = &img->rt->e[i];
		uint64_t lo = img->hdr.log_off, hi = lo + img->hdr.log_len;
		if (r->off < hi && lo < r->off + r->len) {
			ret = vxm_corrupt(err, vxm_region_entry_off(rt_off, i) + VXM_RT_E_FILE_OFFSET,
					  "region table at 0x%llx: entry %u, the %s region [0x%llx,+0x%x) overlaps the log [0x%llx,+0x%x)",
					  (unsigned long long)rt_off, i, region_name(img->rt, (int)i),
					  (unsigned long long)r->off,
					  r->len, (unsigned long long)lo, img->hdr.log_len);
			goto out;
		}
		if (r->off > img->file_size || r->len > img->file_size - r->off)
			if (past < 0 || r->off < img->rt->e[past].off)
				past = (int)i;
	}
	if (past >= 0) {
		const struct vxm_region *r = &img->rt->e[past];
		ret = vxm_corrupt(err,
				  vxm_region_entry_off(rt_off, (uint32_t)past) + VXM_RT_E_FILE_OFFSET,
				  "region table at 0x%llx: entry %d, the %s region [0x%llx,+0x%x) extends past the end of the file (%llu bytes)",
				  (unsigned long long)rt_off, past, region_name(img->rt, past),
				  (unsigned long long)r->off, r->len, (unsigned long long)img->file_size);
		goto out;
	}
	ret = 0;
out:
	free(buf);
	free(rt2);
	return ret;
}

int vxm_image_meta_load(struct vxm_image *img, struct vxm_err *err)
{
	const struct vxm_region *r = &img->meta_region;

	if (img->meta_read >= r->len)
		return 0;
	int ret = vxm_image_pread(img, img->meta + img->meta_read, r->len - img->meta_read,
				  r->off + img->meta_read, err);
	if (!ret)
		img->meta_read = r->len;
	return ret;
}

static int open_metadata(struct vxm_image *img, struct vxm_err *err)
{
	const struct vxm_region *r = &img->meta_region;
	int ret;

	if (r->len > VXM_MAX_META_REGION)
		return vxm_unsupported(err, r->off, "metadata region: %u bytes (at most %u supported)",
				       r->len, VXM_MAX_META_REGION);
	/* The region is 1 MiB in files Hyper-V makes, its items a few KiB
	 * after the 64 KiB table.  Reading it whole costs a cold file ~6 ms (of
	 * ~10 ms per file open), which a 30-file chain pays 30 times: read the
	 * table, then up to the end of the last item; a write session reads
	 * the rest (vxm_image_meta_load). */
	img->meta = calloc(1, r->len);
	img->mt = malloc(sizeof(*img->mt));
	if (!img->meta || !img->mt)
		return vxm_fail(err, -ENOMEM, r->off, "metadata: out of memory");
	uint32_t head = r->len < VXM_META_TABLE_SIZE ? r->len : VXM_META_TABLE_SIZE;
	ret = vxm_image_pread(img, img->meta, head, r->off, err);
	if (ret)
		return ret;
	ret = vxm_meta_table_parse(img->meta, head, r->off, r->len, img->mt, err);
	if (ret)
		return ret;
	uint32_t end = head;
	for (unsigned i = 0; i < img->mt->count; i++) /* parse bounded them by r->len */
		if (img->mt->e[i].off + img->mt->e[i].len > end)
			end = img->mt->e[i].off + img->mt->e[i].len;
	end = (uint32_t)(((uint64_t)end + 4095) / 4096 * 4096);
	if (end > r->len)
		end = r->len;
	if (end > head) {
		ret = vxm_image_pread(img, img->meta + head, end - head, r->off + head, err);
		if (ret)
			return ret;
	}
	img->meta_read = end;
	ret = vxm_meta_parse(img->meta, r->len, r->off, img->mt, &img->m, err);
	if (ret)
		return ret;
	if (img->m.locator >= 0) {
		const struct vxm_meta_entry *e = &img->mt->e[img->m.locator];
		img->loc = malloc(sizeof(*img->loc));
		if (!img->loc)
			return vxm_fail(err, -ENOMEM, r->off, "metadata: out of memory");
		img->loc_item = img->meta + e->off;
		img->loc_len = e->len;
		ret = vxm_locator_parse(img->loc_item, e->len, r->off + e->off, img->loc, err);
		if (ret)
			return ret;
	}
	ret = vxm_geom_init(&img->g, img->m.virtual_size, img->m.block_size,
			    img->m.logical_sector_size, img->m.has_parent, err);
	if (ret)
		return ret;
	if (img->bat_region.len < vxm_geom_bat_bytes(&img->g))
		return vxm_corrupt(err, img->bat_region.off,
				   "BAT region: %u bytes hold fewer than the %llu entries the geometry needs",
				   img->bat_region.len, (unsigned long long)img->g.total_entries);
	img->batw = malloc(VXM_BAT_WINDOW * sizeof(uint64_t));
	img->sbw = malloc(vxm_sb_slice_len(&img->g));
	if (!img->batw || !img->sbw)
		return vxm_fail(err, -ENOMEM, r->off, "BAT: out of memory");
	img->batw_first = UINT64_MAX;
	img->sbw_block = UINT64_MAX;
	img->sbe_chunk = UINT64_MAX;
	return 0;
}

void vxm_image_invalidate(struct vxm_image *img)
{
	img->batw_first = UINT64_MAX;
	img->sbw_block = UINT64_MAX;
	img->sbe_chunk = UINT64_MAX;
}

/* ---- open / close ------------------------------------------------------------ */

static int open_common(struct vxm_image *img, struct vxm_err *err)
{
	uint8_t ident[VXM_IDENT_USED];
	int ret;

	ret = vxm_io_size(img->io, img->slot, &img->file_size);
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "cannot get the size: %s", vxm_strerror(ret));
	ret = vxm_image_pread(img, ident, sizeof(ident), 0, err);
	if (ret)
		return ret;
	ret = vxm_ident_parse(ident, img->file_size < sizeof(ident) ? img->file_size : sizeof(ident),
			      img->creator, sizeof(img->creator), err);
	if (ret)
		return ret;
	if (img->file_size < VXM_HEADER_SECTION)
		return vxm_corrupt(err, img->file_size,
				   "file is %llu bytes: truncated inside %s (the header section is 1 MiB)",
				   (unsigned long long)img->file_size,
				   vxm_header_section_part(img->file_size));
	ret = vxm_image_pread(img, img->hdr_raw[0], VXM_HDR_SIZE, VXM_HDR1_OFF, err);
	if (!ret)
		ret = vxm_image_pread(img, img->hdr_raw[1], VXM_HDR_SIZE, VXM_HDR2_OFF, err);
	if (ret)
		return ret;
	ret = vxm_hdr_select(img->hdr_raw[0], img->hdr_raw[1], &img->hp, err);
	if (ret)
		return ret;
	img->hdr = img->hp.h[img->hp.current];
	for (int i = 0; i < 2; i++)
		if (img->hp.status[i])
			vxm_image_note(img, 0, i ? VXM_HDR2_OFF : VXM_HDR1_OFF,
				       "header %d is not valid (a torn update leaves this); header %d is current",
				       i + 1, 2 - i);
	struct log_replay rp = { .img = img, .err = err };
	ret = open_log(img, &rp, err);
	if (ret)
		return ret;
	ret = open_regions(img, err);
	if (ret)
		return ret;
	ret = open_metadata(img, err);
	if (ret)
		return ret;
	return log_finish(img, &rp, err);
}

static int image_new(struct vxm_image **out, struct vxm_io *io, unsigned flags)
{
	struct vxm_image *img = calloc(1, sizeof(*img));

	if (!img)
		return -ENOMEM;
	img->flags = flags;
	img->slot = -1;
	if (io) {
		img->io = io;
	} else {
		img->io = calloc(1, sizeof(*img->io));
		if (!img->io) {
			free(img);
			return -ENOMEM;
		}
		img->own_io = true;
	}
	*out = img;
	return 0;
}

int vxm_image_open(struct vxm_image **out, struct vxm_io *io, const char *path, unsigned flags,
		   struct vxm_err *err)
{
	struct vxm_image *img;
	int ret = image_new(&img, io, flags);

	*out = NULL;
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "%s: out of memory", path);
	if (img->own_io) {
		ret = vxm_io_init(img->io, NULL, NULL);
		if (ret) {
			free(img->io);
			img->io = NULL;
			goto fail;
		}
	}
	img->path = strdup(path);
	if (!img->path) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = vxm_io_open(img->io, path, (flags & VXM_IMAGE_RDWR) ? VXM_O_RDWR : VXM_O_RDONLY);
	if (ret < 0) {
		vxm_fail(err, ret, VXM_OFF_NONE, "cannot open: %s", vxm_strerror(ret));
		goto fail;
	}
	img->slot = ret;
	ret = open_common(img, err);
	if (ret)
		goto fail;
	*out = img;
	return 0;
fail:
	vxm_err_path(err, path);
	if (err && !err->code)
		vxm_fail(err, ret, VXM_OFF_NONE, "%s", vxm_strerror(ret));
	vxm_image_close(img);
	return ret;
}

int vxm_image_open_mem(struct vxm_image **out, const void *buf, size_t len, unsigned flags,
		       struct vxm_err *err)
{
	struct vxm_image *img;
	int ret = image_new(&img, NULL, flags);

	*out = NULL;
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "out of memory");
	ret = vxm_io_init(img->io, &vxm_io_mem_ops, NULL);
	if (ret) {
		free(img->io);
		img->io = NULL;
		goto fail;
	}
	img->path = strdup("(memory)");
	ret = vxm_io_mem_add(img->io, buf, len, (flags & VXM_IMAGE_RDWR) ? VXM_O_RDWR : 0);
	if (ret < 0)
		goto fail;
	img->slot = ret;
	ret = open_common(img, err);
	if (ret)
		goto fail;
	*out = img;
	return 0;
fail:
	vxm_err_path(err, "(memory)");
	vxm_image_close(img);
	return ret;
}

void vxm_image_close(struct vxm_image *img)
{
	if (!img)
		return;
	if (img->io && img->slot >= 0)
		vxm_io_close(img->io, img->slot);
	if (img->own_io && img->io) {
		vxm_io_fini(img->io);
		free(img->io);
	}
	for (unsigned i = 0; i < img->nov; i++)
		free(img->ov[i].data);
	free(img->ov);
	free(img->rt);
	free(img->meta);
	free(img->mt);
	free(img->loc);
	free(img->batw);
	free(img->sbw);
	free(img->notes);
	free(img->path);
	free(img);
}

/* ---- BAT and lookups ------------------------------------------------------------ */

int vxm_image_bat_read(struct vxm_image *img, uint64_t first, uint64_t n, uint64_t *out,
		       struct vxm_err *err)
{
	if (first + n > img->g.total_entries || first + n < first)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "BAT: entries [%llu,+%llu) out of range",
				(unsigned long long)first, (unsigned long long)n);
	uint64_t off = vxm_bat_entry_off(img->bat_region.off, first);
	int ret = vxm_image_pread(img, out, n * VXM_BAT_ENTRY_SIZE, off, err);
	if (!ret)
		vxm_bat_decode(out, n);
	return ret;
}

int vxm_image_bat_get(struct vxm_image *img, uint64_t idx, uint64_t *entry, struct vxm_err *err)
{
	if (idx >= img->g.total_entries)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "BAT index %llu out of range",
				(unsigned long long)idx);
	if (img->batw_first == UINT64_MAX || idx < img->batw_first ||
	    idx >= img->batw_first + img->batw_n) {
		uint64_t first = idx - idx % VXM_BAT_WINDOW;
		uint64_t n = img->g.total_entries - first;
		if (n > VXM_BAT_WINDOW)
			n = VXM_BAT_WINDOW;
		img->batw_first = UINT64_MAX;
		int ret = vxm_image_bat_read(img, first, n, img->batw, err);
		if (ret)
			return ret;
		img->batw_first = first;
		img->batw_n = n;
	}
	*entry = img->batw[idx - img->batw_first];
	return vxm_bat_check_entry(&img->g, idx, *entry,
				   vxm_bat_entry_off(img->bat_region.off, idx), img->file_size, err);
}

int vxm_image_lookup(struct vxm_image *img, uint64_t sector, uint64_t max, struct vxm_run *run,
		     struct vxm_err *err)
{
	const struct vxm_geom *g = &img->g;
	uint64_t total = g->virtual_size / g->lss, entry;
	int ret;

	if (sector >= total || max == 0)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "lookup: sector %llu out of range",
				(unsigned long long)sector);
	uint64_t b = sector / g->spb, within = sector % g->spb;
	uint64_t lim = g->spb - within;
	if (lim > total - sector)
		lim = total - sector;
	if (lim > max)
		lim = max;
	ret = vxm_image_bat_get(img, vxm_geom_pb_index(g, b), &entry, err);
	if (ret)
		return ret;
	run->state = vxm_bat_state(entry);
	run->nsec = lim;
	run->file_off = 0;
	switch (run->state) {
	case VXM_PB_FULLY_PRESENT:
		run->kind = VXM_RUN_DATA;
		run->file_off = vxm_bat_offset(entry) + within * g->lss;
		return 0;
	case VXM_PB_NOT_PRESENT:
		run->kind = g->has_parent ? VXM_RUN_PARENT : VXM_RUN_ZERO;
		return 0;
	case VXM_PB_PARTIALLY_PRESENT:
		break;
	default: /* ZERO, and UNDEFINED/UNMAPPED: zeros [fmt P6, unsure] */
		run->kind = VXM_RUN_ZERO;
		return 0;
	}
	uint64_t c = b / g->chunk_ratio, sbe, sbi = vxm_geom_sb_index(g, c);
	if (img->sbe_chunk == c) {
		sbe = img->sbe_entry;
	} else {
		/* read it directly: fetching it through the window would evict
		 * the window of the payload entries around b */
		ret = vxm_image_bat_read(img, sbi, 1, &sbe, err);
		if (!ret)
			ret = vxm_bat_check_entry(g, sbi, sbe,
						  vxm_bat_entry_off(img->bat_region.off, sbi),
						  img->file_size, err);
		if (ret)
			return ret;
		img->sbe_chunk = c;
		img->sbe_entry = sbe;
	}
	if (vxm_bat_state(sbe) != VXM_SB_PRESENT)
		return vxm_corrupt(err,
				   vxm_bat_entry_off(img->bat_region.off, vxm_geom_pb_index(g, b)),
				   "BAT entry %llu (block %llu): PARTIALLY_PRESENT but the sector bitmap of chunk %llu is not present",
				   (unsigned long long)vxm_geom_pb_index(g, b), (unsigned long long)b,
				   (unsigned long long)c);
	if (img->sbw_block != b) {
		img->sbw_block = UINT64_MAX;
		ret = vxm_image_pread(img, img->sbw, vxm_sb_slice_len(g),
				      vxm_sb_slice_off(g, vxm_bat_offset(sbe), b), err);
		if (ret)
			return ret;
		img->sbw_block = b;
	}
	run->nsec = vxm_bitmap_run(img->sbw, within, within + lim);
	if (vxm_bit_get(img->sbw, within)) {
		run->kind = VXM_RUN_DATA;
		run->file_off = vxm_bat_offset(entry) + within * g->lss;
	} else {
		run->kind = VXM_RUN_PARENT;
	}
	return 0;
}

int vxm_image_read(struct vxm_image *img, void *buf, uint64_t len, uint64_t off,
		   struct vxm_err *err)
{
	const struct vxm_geom *g = &img->g;
	uint8_t *p = buf;
	int ret;

	if (g->has_parent)
		return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				"%s is a differencing image: read it through its chain", img->path);
	if (off % g->lss || len % g->lss || off + len > g->virtual_size || off + len < off)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"read [%llu,+%llu) is not sector aligned or past the %llu-byte disk",
				(unsigned long long)off, (unsigned long long)len,
				(unsigned long long)g->virtual_size);
	uint64_t s = off / g->lss, n = len / g->lss;
	while (n) {
		struct vxm_run r;
		ret = vxm_image_lookup(img, s, n, &r, err);
		if (ret) {
			vxm_err_path(err, img->path);
			return ret;
		}
		uint64_t bytes = r.nsec * g->lss;
		if (r.kind == VXM_RUN_DATA)
			ret = vxm_image_pread(img, p, bytes, r.file_off, err);
		else
			memset(p, 0, bytes);
		if (ret) {
			vxm_err_path(err, img->path);
			return ret;
		}
		p += bytes;
		s += r.nsec;
		n -= r.nsec;
	}
	return 0;
}

int vxm_image_bat_scan(struct vxm_image *img,
		       int (*fn)(void *ctx, uint64_t idx, uint64_t entry), void *ctx,
		       struct vxm_err *err)
{
	const struct vxm_geom *g = &img->g;
	uint64_t *w = malloc(VXM_BAT_WINDOW * sizeof(uint64_t));
	int ret = 0;

	if (!w)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	for (uint64_t first = 0; first < g->total_entries && !ret; first += VXM_BAT_WINDOW) {
		uint64_t n = g->total_entries - first;
		if (n > VXM_BAT_WINDOW)
			n = VXM_BAT_WINDOW;
		ret = vxm_image_bat_read(img, first, n, w, err);
		for (uint64_t i = 0; !ret && i < n; i++)
			ret = fn(ctx, first + i, w[i]);
	}
	free(w);
	return ret;
}

struct alloc_end_ctx {
	const struct vxm_geom *g;
	uint64_t end;
};

static int alloc_end_entry(void *vctx, uint64_t idx, uint64_t e)
{
	struct alloc_end_ctx *c = vctx;
	uint64_t off = vxm_bat_offset(e), len = 0;
	unsigned st = vxm_bat_state(e);

	if (!off)
		return 0;
	if (vxm_geom_is_sb_index(c->g, idx))
		len = st == VXM_SB_PRESENT ? VXM_SB_BLOCK_SIZE : 0;
	else if (st != VXM_PB_NOT_PRESENT && st != VXM_PB_ZERO)
		len = c->g->block_size; /* UNDEFINED/UNMAPPED may keep their old space */
	if (len && off + len > c->end)
		c->end = off + len;
	return 0;
}

int vxm_image_alloc_end(struct vxm_image *img, uint64_t *end, struct vxm_err *err)
{
	struct alloc_end_ctx c = { .g = &img->g, .end = VXM_HEADER_SECTION };

	if (img->hdr.log_off + img->hdr.log_len > c.end)
		c.end = img->hdr.log_off + img->hdr.log_len;
	for (uint32_t i = 0; i < img->rt->count; i++)
		if (img->rt->e[i].off + img->rt->e[i].len > c.end)
			c.end = img->rt->e[i].off + img->rt->e[i].len;
	int ret = vxm_image_bat_scan(img, alloc_end_entry, &c, err);
	*end = c.end;
	return ret;
}
