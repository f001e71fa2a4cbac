/* engine/inspect.c: `info` and `check` over one opened image.
 *
 * check is the dirty-log note plus the structural rules of validate.c, the
 * same rules every operation's preflight enforces before its first write.
 *
 * I1: check never writes; repair writes only to replay a dirty log.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct count_ctx {
	const struct vxm_geom *g;
	struct vxm_bat_counts c;
};

static int count_entry(void *vctx, uint64_t idx, uint64_t e)
{
	struct count_ctx *x = vctx;
	if (vxm_geom_is_sb_index(x->g, idx))
		x->c.sb[vxm_bat_state(e)]++;
	else
		x->c.pb[vxm_bat_state(e)]++;
	return 0;
}

int vxm_image_info(struct vxm_image *img, struct vxm_info *info, struct vxm_err *err)
{
	const struct vxm_geom *g = &img->g;
	struct count_ctx x = { .g = g };
	int ret;

	memset(info, 0, sizeof(*info));
	ret = vxm_image_bat_scan(img, count_entry, &x, err);
	if (ret)
		return ret;
	const struct vxm_bat_counts c = x.c;
	info->path = img->path;
	info->type = img->m.has_parent ? "differencing"
				       : img->m.leave_blocks_allocated ? "fixed" : "dynamic";
	info->creator = img->creator;
	info->file_size = img->file_size;
	info->virtual_size = img->m.virtual_size;
	info->block_size = img->m.block_size;
	info->logical_sector_size = img->m.logical_sector_size;
	info->physical_sector_size = img->m.physical_sector_size;
	info->leave_blocks_allocated = img->m.leave_blocks_allocated;
	info->has_parent = img->m.has_parent;
	info->virtual_disk_id = img->m.disk_id;
	info->data_write_guid = img->hdr.data_write;
	info->file_write_guid = img->hdr.file_write;
	info->log_guid = img->hdr.log_guid;
	info->header_seq = img->hdr.seq;
	info->current_header = img->hp.current + 1;
	info->log.dirty = img->log_dirty;
	info->log.entries = img->log_entries;
	info->log.replayed = img->log_replayed;
	if (img->loc) {
		info->parent.parent_linkage = img->loc->parent_linkage;
		info->parent.parent_linkage2 = img->loc->parent_linkage2;
		info->parent.has_linkage2 = img->loc->linkage2_key;
		info->parent.relative_path = img->loc->relative_path[0] ? img->loc->relative_path : NULL;
		info->parent.volume_path = img->loc->volume_path[0] ? img->loc->volume_path : NULL;
		info->parent.absolute_win32_path =
			img->loc->absolute_win32_path[0] ? img->loc->absolute_win32_path : NULL;
	}
	info->chunk_ratio = g->chunk_ratio;
	info->bat_entries = g->total_entries;
	info->bat.not_present = c.pb[VXM_PB_NOT_PRESENT];
	info->bat.undefined = c.pb[VXM_PB_UNDEFINED];
	info->bat.zero = c.pb[VXM_PB_ZERO];
	info->bat.unmapped = c.pb[VXM_PB_UNMAPPED];
	info->bat.fully_present = c.pb[VXM_PB_FULLY_PRESENT];
	info->bat.partially_present = c.pb[VXM_PB_PARTIALLY_PRESENT];
	info->bat.sector_bitmaps_present = c.sb[VXM_SB_PRESENT];
	info->allocated_bytes = (c.pb[VXM_PB_FULLY_PRESENT] + c.pb[VXM_PB_PARTIALLY_PRESENT]) *
					(uint64_t)g->block_size +
				c.sb[VXM_SB_PRESENT] * (uint64_t)VXM_SB_BLOCK_SIZE;
	return 0;
}

int vxm_image_check(struct vxm_image *img, struct vxm_err *err)
{
	if (img->log_dirty && img->logseq.found)
		vxm_image_note(img, 1, img->hdr.log_off,
			       "log is dirty: %u entries (sequence %llu..%llu) must be replayed; reads show the replayed state; `check --repair` applies it",
			       img->log_entries, (unsigned long long)img->logseq.tail_seq,
			       (unsigned long long)img->logseq.head_seq);
	return vxm_image_validate(img, err);
}

unsigned vxm_image_findings(const struct vxm_image *img, struct vxm_finding *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < img->nnotes && n < max; i++, n++) {
		out[n].severity = img->notes[i].severity;
		out[n].off = img->notes[i].off;
		out[n].msg = img->notes[i].msg;
	}
	return img->nnotes;
}

/* Whether path's current header names a log to replay.  A file that fails
 * to open with a clean log (or with no readable header) has nothing for
 * --repair to do: the check that follows reports the damage. */
static bool log_pending(const char *path)
{
	struct vxm_io io = { 0 };
	uint8_t h[2][VXM_HDR_SIZE];
	struct vxm_hdr_pair hp;
	bool dirty = false;

	if (vxm_io_init(&io, vxm_io_backend("psync"), NULL))
		return false;
	int slot = vxm_io_open(&io, path, VXM_O_RDONLY);
	if (slot >= 0 && vxm_io_pread(&io, slot, h[0], VXM_HDR_SIZE, VXM_HDR1_OFF) == VXM_HDR_SIZE &&
	    vxm_io_pread(&io, slot, h[1], VXM_HDR_SIZE, VXM_HDR2_OFF) == VXM_HDR_SIZE &&
	    vxm_hdr_select(h[0], h[1], &hp, NULL) == 0)
		dirty = !vxm_guid_is_zero(&hp.h[hp.current].log_guid);
	vxm_io_fini(&io);
	return dirty;
}

int vxm_image_repair(const char *path, bool *replayed, struct vxm_err *err)
{
	struct vxm_image *img = NULL;
	int ret;

	*replayed = false;
	/* A read-only open first: a clean file is never opened for writing.
	 * It validates all a writable open does before its first write (the
	 * whole log, the replayed metadata, the growth), so a refusal here
	 * costs the file nothing. */
	ret = vxm_image_open(&img, NULL, path, 0, err);
	if (ret) {
		if ((ret == -VXM_ECORRUPT || ret == -VXM_EUNSUPPORTED || ret == -VXM_ENOTVHDX) &&
		    !log_pending(path)) {
			vxm_err_clear(err);
			return 0;
		}
		return ret;
	}
	bool dirty = img->log_dirty && img->logseq.found;
	vxm_image_close(img);
	if (!dirty)
		return 0;
	ret = vxm_image_open(&img, NULL, path, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	*replayed = img->log_replayed;
	vxm_image_close(img);
	return 0;
}
