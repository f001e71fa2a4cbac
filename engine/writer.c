/* engine/writer.c: write sessions on an open image, every metadata change
 * through the VHDX log (fmt §6.5, §7).  This file holds the session: begin
 * and end, its states (engine.h's writer section), the header updates and
 * the raw writes and flushes every other part goes through.
 *
 * A session (struct vxm_writer, engine/writer_priv.h) owns, for one image
 * opened with VXM_IMAGE_RDWR:
 *   - the header updates of the session: a new FileWriteGuid before the
 *     first change, a new DataWriteGuid before the first change a read of
 *     the virtual disk could observe, a new LogGuid before the first entry
 *     and LogGuid 0 at the end (fmt §1.3);
 *   - the log: entries written from log offset 0, an init entry (no
 *     descriptors, Tail pointing at itself) first, flushed before the
 *     header names its LogGuid, then one entry per transaction, each
 *     retired (applied and flushed) before the next is written, so every
 *     entry's Tail points at itself (engine/txn.c);
 *   - the staging area of the open transaction: whole 4 KiB images of BAT,
 *     sector-bitmap and metadata sectors, keyed by file offset
 *     (engine/txn.c; metadata items: engine/writer_meta.c);
 *   - allocation at the end of the file (fmt §7) and the block updates of
 *     writes and zeroes (engine/writer_data.c).
 *
 * Invariants (tests cite them; the files named keep them):
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
 * Where they are kept: I1, I7 here (vxm_wr_touch and every entry point's
 * validation; vxm_writer_end); I2, I3, I8 in engine/txn.c; I4, I5, I6 in
 * engine/writer_data.c (vxm_txn_set_bat, txn.c, also refuses I6's moves).
 */
#define _GNU_SOURCE
#include "writer_priv.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t desc_sectors(uint32_t n)
{
	return (n + 2 + 127) / 128;
}

int vxm_wr_fail(struct vxm_writer *w, int code)
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

int vxm_wr_usable(struct vxm_writer *w, struct vxm_err *err)
{
	if (w->state == VXM_WS_FAILED)
		return vxm_fail(err, w->fail_code ? w->fail_code : -EIO, VXM_OFF_NONE,
				"%s: the write session failed earlier; only vxm_writer_end is possible",
				w->img->path);
	return 0;
}

/* ---- raw writes and syncs ---------------------------------------------------- */

int vxm_wr_write(struct vxm_writer *w, const void *buf, uint64_t len, uint64_t off,
		 const char *what, struct vxm_err *err)
{
	vxm_killpoint("write");
	int ret = vxm_io_pwrite(w->img->io, w->img->slot, buf, len, off);
	if (ret)
		return vxm_wr_fail(w, vxm_fail(err, ret, off,
					       "%s: writing %s (%llu bytes at 0x%llx%s%s) failed: %s",
					       w->img->path, what, (unsigned long long)len,
					       (unsigned long long)off,
					       w->txn_tag ? ", transaction " : "",
					       w->txn_tag ? w->txn_tag : "", vxm_strerror(ret)));
	return 0;
}

int vxm_wr_sync(struct vxm_writer *w, const char *tag, struct vxm_err *err)
{
	int ret = vxm_io_sync(w->img->io, w->img->slot, tag, false);
	w->stats.syncs++;
	if (ret)
		return vxm_wr_fail(w, vxm_fail(err, ret, VXM_OFF_NONE,
					       "%s: flush (%s) of %s failed: %s", w->img->path, tag,
					       w->txn_tag ? w->txn_tag : "the session",
					       vxm_strerror(ret)));
	vxm_killpoint(tag);
	return 0;
}

int vxm_wr_headers(struct vxm_writer *w, const struct vxm_hdr *h, const char *tag,
		   struct vxm_err *err)
{
	int ret = vxm_image_write_headers(w->img, h, tag, err);
	w->stats.header_updates++;
	w->stats.syncs += 2;
	if (ret) {
		vxm_err_path(err, w->img->path);
		return vxm_wr_fail(w, ret);
	}
	vxm_killpoint(tag);
	return 0;
}

/* The first change of the session updates the headers (I1); the first
 * visible change also installs a new DataWriteGuid (dwg, or random). */
int vxm_wr_touch(struct vxm_writer *w, bool data, const struct vxm_guid *dwg,
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
	ret = vxm_wr_headers(w, &h, need_file ? VXM_TAG_SESSION_BEGIN : VXM_TAG_DATA_GUID, err);
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
	int ret = vxm_wr_usable(w, err);
	if (ret)
		return ret;
	if (w->data_guid_done)
		return vxm_fail(err, -EBUSY, VXM_OFF_NONE,
				"%s: the DataWriteGuid was already changed in this session",
				w->img->path);
	return vxm_wr_touch(w, true, g, err);
}

/* ---- begin and end ------------------------------------------------------------------- */

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
	vxm_wr_st_reset(w);
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
	ret = vxm_wr_usable(w, err);
	if (!ret)
		ret = vxm_writer_flush(w, err);
	if (!ret && w->state == VXM_WS_LOGGING) {
		/* I7: every entry applied and flushed; the log is empty. */
		struct vxm_hdr h = w->img->hdr;
		memset(h.log_guid.b, 0, 16);
		ret = vxm_wr_headers(w, &h, VXM_TAG_SESSION_END, err);
	}
	vxm_image_invalidate(w->img);
	writer_free(w);
	return ret;
}
