/* engine/inspect.c: `info` and `check` over one opened image.
 *
 * check streams the BAT window by window (engine.h I2) and validates each
 * entry, then sorts every allocated object of the file (header section, log,
 * regions, payload blocks, sector-bitmap blocks) by offset and reports each
 * overlap by name.  Memory: 16 bytes per allocated block, the one place the
 * program holds a per-block list (a 64 TiB disk of 1 MiB blocks fully
 * allocated needs 1 GiB here; the merge path never calls this).
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

struct object {
	uint64_t off, end;
	uint64_t what; /* BAT index, or one of the OBJ_* codes */
};
#define OBJ_HEADERS (UINT64_MAX - 1)
#define OBJ_LOG (UINT64_MAX - 2)
#define OBJ_REGION(i) (UINT64_MAX - 3 - (i))

#define OBJ_IS_BAT(w) ((w) < OBJ_REGION(VXM_MAX_TABLE_ENTRIES))

/* By offset; at equal offsets the file's fixed structures come first, then
 * BAT entries by index, so every overlap is reported the same way on every
 * run (qsort is not stable). */
static int cmp_obj(const void *a, const void *b)
{
	const struct object *x = a, *y = b;
	if (x->off != y->off)
		return x->off < y->off ? -1 : 1;
	if (OBJ_IS_BAT(x->what) != OBJ_IS_BAT(y->what))
		return OBJ_IS_BAT(x->what) ? 1 : -1;
	return x->what < y->what ? -1 : x->what > y->what;
}

static void obj_name(const struct vxm_image *img, uint64_t what, char *out, size_t n)
{
	if (what == OBJ_HEADERS) {
		snprintf(out, n, "the header section");
	} else if (what == OBJ_LOG) {
		snprintf(out, n, "the log");
	} else if (what >= UINT64_MAX - 3 - VXM_MAX_TABLE_ENTRIES) {
		uint64_t i = UINT64_MAX - 3 - what;
		snprintf(out, n, "%s region", (int)i == img->rt->bat ? "the BAT"
					       : (int)i == img->rt->metadata ? "the metadata"
									       : "a");
	} else if (vxm_geom_is_sb_index(&img->g, what)) {
		snprintf(out, n, "the sector bitmap of chunk %llu (BAT entry %llu)",
			 (unsigned long long)(what / (img->g.chunk_ratio + 1ull)),
			 (unsigned long long)what);
	} else {
		snprintf(out, n, "block %llu (BAT entry %llu)",
			 (unsigned long long)vxm_geom_block_of_index(&img->g, what),
			 (unsigned long long)what);
	}
}

struct check_ctx {
	struct vxm_image *img;
	struct object *obj;
	size_t nobj, cap;
	struct vxm_err *err;
};

static int add_obj(struct check_ctx *x, uint64_t off, uint64_t end, uint64_t what)
{
	if (x->nobj == x->cap) {
		size_t nc = x->cap ? x->cap * 2 : 256;
		struct object *no = realloc(x->obj, nc * sizeof(*no));
		if (!no)
			return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		x->obj = no;
		x->cap = nc;
	}
	x->obj[x->nobj++] = (struct object){ off, end, what };
	return 0;
}

static int check_entry(void *vctx, uint64_t idx, uint64_t e)
{
	struct check_ctx *x = vctx;
	struct vxm_image *img = x->img;
	const struct vxm_geom *g = &img->g;
	uint64_t eoff = img->bat_region.off + idx * 8;
	struct vxm_err ce = { 0 };

	if (vxm_bat_check_entry(g, idx, e, eoff, img->file_size, &ce)) {
		vxm_image_note(img, 1, ce.off, "%s", ce.msg);
		return 0;
	}
	unsigned st = vxm_bat_state(e);
	uint64_t off = vxm_bat_offset(e);
	if (vxm_geom_is_sb_index(g, idx))
		return st == VXM_SB_PRESENT ? add_obj(x, off, off + VXM_SB_BLOCK_SIZE, idx) : 0;
	if (st != VXM_PB_FULLY_PRESENT && st != VXM_PB_PARTIALLY_PRESENT)
		return 0;
	uint64_t b = vxm_geom_block_of_index(g, idx), end = off + g->block_size;
	if (end > img->file_size) /* stored short: the trailing block */
		end = off + vxm_geom_block_bytes(g, b);
	int ret = add_obj(x, off, end, idx);
	if (!ret && st == VXM_PB_PARTIALLY_PRESENT) {
		uint64_t c = b / g->chunk_ratio, sbe;
		struct vxm_err se = { 0 };
		uint64_t sbi = vxm_geom_sb_index(g, c);
		if (vxm_image_bat_read(img, sbi, 1, &sbe, &se) == 0 &&
		    vxm_bat_state(sbe) != VXM_SB_PRESENT)
			vxm_image_note(img, 1, eoff,
				       "BAT entry %llu (block %llu): PARTIALLY_PRESENT but the sector bitmap of chunk %llu (BAT entry %llu) is not present",
				       (unsigned long long)idx, (unsigned long long)b,
				       (unsigned long long)c, (unsigned long long)sbi);
	}
	return ret;
}

int vxm_image_check(struct vxm_image *img, struct vxm_err *err)
{
	struct check_ctx x = { .img = img, .err = err };
	int ret = 0;

	if (img->log_dirty && img->logseq.found)
		vxm_image_note(img, 1, img->hdr.log_off,
			       "log is dirty: %u entries (sequence %llu..%llu) must be replayed; reads show the replayed state; `check --repair` applies it",
			       img->log_entries, (unsigned long long)img->logseq.tail_seq,
			       (unsigned long long)img->logseq.head_seq);
	ret = add_obj(&x, 0, VXM_HEADER_SECTION, OBJ_HEADERS);
	if (!ret)
		ret = add_obj(&x, img->hdr.log_off, img->hdr.log_off + img->hdr.log_len, OBJ_LOG);
	for (uint32_t i = 0; !ret && i < img->rt->count; i++)
		ret = add_obj(&x, img->rt->e[i].off, img->rt->e[i].off + img->rt->e[i].len,
			      OBJ_REGION(i));
	if (!ret)
		ret = vxm_image_bat_scan(img, check_entry, &x, err);
	if (ret)
		goto out;
	struct object *obj = x.obj;
	size_t nobj = x.nobj;
	qsort(obj, nobj, sizeof(*obj), cmp_obj);
	/* Sweep: compare each object with the furthest-reaching one before it. */
	size_t far = 0;
	for (size_t i = 1; i < nobj; i++) {
		if (obj[i].off < obj[far].end) {
			char a[128], b[128];
			obj_name(img, obj[far].what, a, sizeof(a));
			obj_name(img, obj[i].what, b, sizeof(b));
			/* Point at the BAT entry that placed a block there, if any. */
			uint64_t at = OBJ_IS_BAT(obj[i].what)     ? img->bat_region.off + obj[i].what * 8
				      : OBJ_IS_BAT(obj[far].what) ? img->bat_region.off + obj[far].what * 8
								  : obj[i].off;
			vxm_image_note(img, 1, at, "%s at 0x%llx overlaps %s [0x%llx,0x%llx)", b,
				       (unsigned long long)obj[i].off, a,
				       (unsigned long long)obj[far].off,
				       (unsigned long long)obj[far].end);
		}
		if (obj[i].end > obj[far].end)
			far = i;
	}
	ret = (int)(img->nproblems > INT32_MAX ? INT32_MAX : img->nproblems);
out:
	free(x.obj);
	return ret;
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
