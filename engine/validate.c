/* engine/validate.c: the structural rules of one opened image, shared by
 * `check` (which reports them) and by every operation's preflight (which
 * refuses a file that breaks one before the operation's first write).
 *
 * The rules, each a problem note naming the structure and the file offset
 * of the field at fault:
 *   - every BAT entry: a state legal for its slot and the file type, an
 *     offset of 0 where the state has none, and a block or sector-bitmap
 *     block that lies inside the file (vxm_bat_check_entry, fmt P13);
 *   - PARTIALLY_PRESENT only where the chunk's sector bitmap is present;
 *   - no two objects of the file share a byte: header section, log, every
 *     region, every payload block and sector-bitmap block (fmt P13);
 *   - the format's own metadata items flagged as the format defines them:
 *     IsVirtualDisk on the disk's items (size, ID, sector sizes), never on
 *     the file's (file parameters, parent locator), which a merge would
 *     otherwise copy into its destination as disk items (fmt §3, §8.3);
 *   - whatever the open itself noted (a damaged region-table copy, a log
 *     that cannot be replayed): vxm_image_open's notes count here too.
 *
 * Overlaps are found in one BAT pass with a bitmap of the file's MiB units:
 * every object of a VHDX file starts on a 1 MiB boundary (BAT offsets are
 * in MiB, regions and the log are MiB-aligned, fmt §1.1, §5.2) and no two
 * valid objects share a unit, so a unit marked twice is an overlap.  Memory
 * is one bit per MiB of file (8 MiB for a 64 TiB file), not a list of
 * blocks; the owners of a collision are named by a second pass over the
 * (rare) colliding units only.
 *
 * I1: validation never writes and never fails for what it finds: a problem
 *     is a note; only I/O or memory errors return non-zero.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Collisions named per file; past this many, further ones are counted. */
#define MAX_CLASH 64

/* A fixed structure of the file (header section, log, a region). */
struct fixed {
	uint64_t off, end;
	int region; /* index in the region table, -1 header section, -2 log */
};

struct clash {
	uint64_t unit;     /* first shared MiB unit */
	uint64_t idx;      /* the BAT entry that found the unit taken */
	uint64_t off, end; /* its object */
	int fixed;         /* the fixed structure covering the unit, else -1 */
	uint64_t owner;    /* else the lowest other BAT entry covering it */
	uint64_t owner_off, owner_end;
};

struct vctx {
	struct vxm_image *img;
	struct vxm_err *err;
	uint8_t *used;     /* one bit per MiB unit of the file */
	uint64_t units;
	struct fixed fx[VXM_MAX_TABLE_ENTRIES + 2];
	unsigned nfx;
	struct clash cl[MAX_CLASH];
	unsigned ncl;
};

static void region_name(const struct vxm_image *img, int region, char *out, size_t n)
{
	if (region == -1)
		snprintf(out, n, "the header section");
	else if (region == -2)
		snprintf(out, n, "the log");
	else
		snprintf(out, n, "%s region", region == img->rt->bat        ? "the BAT"
					      : region == img->rt->metadata ? "the metadata"
									    : "a");
}

static void entry_name(const struct vxm_image *img, uint64_t idx, char *out, size_t n)
{
	if (vxm_geom_is_sb_index(&img->g, idx))
		snprintf(out, n, "the sector bitmap of chunk %llu (BAT entry %llu)",
			 (unsigned long long)(idx / (img->g.chunk_ratio + 1ull)),
			 (unsigned long long)idx);
	else
		snprintf(out, n, "block %llu (BAT entry %llu)",
			 (unsigned long long)vxm_geom_block_of_index(&img->g, idx),
			 (unsigned long long)idx);
}

/* The bytes a present BAT entry's object occupies; false for entries that
 * reference nothing. */
static bool entry_object(const struct vxm_image *img, uint64_t idx, uint64_t e, uint64_t *off,
			 uint64_t *end)
{
	const struct vxm_geom *g = &img->g;
	unsigned st = vxm_bat_state(e);
	*off = vxm_bat_offset(e);
	if (vxm_geom_is_sb_index(g, idx)) {
		*end = *off + VXM_SB_BLOCK_SIZE;
		return st == VXM_SB_PRESENT;
	}
	if (st != VXM_PB_FULLY_PRESENT && st != VXM_PB_PARTIALLY_PRESENT)
		return false;
	uint64_t b = vxm_geom_block_of_index(g, idx);
	*end = *off + g->block_size;
	if (*end > img->file_size) /* stored short: the trailing block */
		*end = *off + vxm_geom_block_bytes(g, b);
	return true;
}

static bool unit_test_and_set(struct vctx *x, uint64_t u)
{
	if (u >= x->units)
		return false; /* past the file: vxm_bat_check_entry said so already */
	uint8_t m = (uint8_t)(1u << (u & 7));
	bool was = x->used[u >> 3] & m;
	x->used[u >> 3] |= m;
	return was;
}

static int mark_entry(void *vctx, uint64_t idx, uint64_t e)
{
	struct vctx *x = vctx;
	struct vxm_image *img = x->img;
	const struct vxm_geom *g = &img->g;
	uint64_t eoff = vxm_bat_entry_off(img->bat_region.off, idx);
	struct vxm_err ce = { 0 };
	uint64_t off, end;

	if (vxm_bat_check_entry(g, idx, e, eoff, img->file_size, &ce)) {
		vxm_image_note(img, 1, ce.off, "%s", ce.msg);
		return 0;
	}
	if (!entry_object(img, idx, e, &off, &end))
		return 0;
	bool clashed = false;
	for (uint64_t u = off / VXM_MiB; u < (end + VXM_MiB - 1) / VXM_MiB; u++) {
		if (!unit_test_and_set(x, u) || clashed)
			continue;
		clashed = true;
		if (x->ncl < MAX_CLASH)
			x->cl[x->ncl++] = (struct clash){ .unit = u, .idx = idx, .off = off, .end = end,
							  .fixed = -1, .owner = UINT64_MAX };
		else
			vxm_image_note(img, 1, eoff, "%s", "further overlaps (not named)");
	}
	if (vxm_bat_state(e) == VXM_PB_PARTIALLY_PRESENT && !vxm_geom_is_sb_index(g, idx)) {
		uint64_t b = vxm_geom_block_of_index(g, idx), c = b / g->chunk_ratio, sbe;
		uint64_t sbi = vxm_geom_sb_index(g, c);
		int ret = vxm_image_bat_read(img, sbi, 1, &sbe, x->err);
		if (ret)
			return ret; /* an I/O error is no finding: the caller fails */
		if (vxm_bat_state(sbe) != VXM_SB_PRESENT)
			vxm_image_note(img, 1, eoff,
				       "BAT entry %llu (block %llu): PARTIALLY_PRESENT but the sector bitmap of chunk %llu (BAT entry %llu) is not present",
				       (unsigned long long)idx, (unsigned long long)b,
				       (unsigned long long)c, (unsigned long long)sbi);
	}
	return 0;
}

/* Second pass: the lowest-indexed other entry covering each clash's unit. */
static int find_owner(void *vctx, uint64_t idx, uint64_t e)
{
	struct vctx *x = vctx;
	uint64_t off, end;
	struct vxm_err ce = { 0 };

	if (vxm_bat_check_entry(&x->img->g, idx, e, 0, x->img->file_size, &ce) ||
	    !entry_object(x->img, idx, e, &off, &end))
		return 0;
	for (unsigned i = 0; i < x->ncl; i++) {
		struct clash *c = &x->cl[i];
		uint64_t u0 = c->unit * VXM_MiB;
		if (c->owner == UINT64_MAX && c->fixed < 0 && idx != c->idx && off < u0 + VXM_MiB &&
		    end > u0) {
			c->owner = idx;
			c->owner_off = off;
			c->owner_end = end;
		}
	}
	return 0;
}

static int fixed_at(const struct vctx *x, uint64_t unit)
{
	for (unsigned k = 0; k < x->nfx; k++)
		if (x->fx[k].off < (unit + 1) * VXM_MiB && x->fx[k].end > unit * VXM_MiB)
			return (int)k;
	return -1;
}

/* fmt §3 [MS-VHDX §2.6.2]: which known items describe the virtual disk. */
static void check_item_flags(struct vxm_image *img)
{
	static const struct {
		const struct vxm_guid *id;
		const char *name;
		bool vd;
	} known[] = {
		{ &VXM_GUID_META_FILE_PARAMS, "File Parameters", false },
		{ &VXM_GUID_META_PARENT_LOCATOR, "Parent Locator", false },
		{ &VXM_GUID_META_VIRTUAL_SIZE, "Virtual Disk Size", true },
		{ &VXM_GUID_META_DISK_ID, "Virtual Disk ID", true },
		{ &VXM_GUID_META_LOGICAL_SECTOR, "Logical Sector Size", true },
		{ &VXM_GUID_META_PHYSICAL_SECTOR, "Physical Sector Size", true },
	};
	for (unsigned i = 0; i < img->mt->count; i++) {
		const struct vxm_meta_entry *e = &img->mt->e[i];
		for (unsigned k = 0; k < sizeof(known) / sizeof(known[0]); k++)
			if (!(e->flags & VXM_META_IS_USER) && vxm_guid_eq(&e->id, known[k].id) &&
			    !!(e->flags & VXM_META_IS_VIRTUAL_DISK) != known[k].vd)
				vxm_image_note(img, 1, vxm_meta_entry_off(img->meta_region.off, i),
					       "metadata table entry %u (%s): IsVirtualDisk is %s, the format says %s",
					       i, known[k].name,
					       e->flags & VXM_META_IS_VIRTUAL_DISK ? "set" : "clear",
					       known[k].vd ? "set" : "clear");
	}
}

static void add_fixed(struct vctx *x, uint64_t off, uint64_t len, int region)
{
	x->fx[x->nfx++] = (struct fixed){ off, off + len, region };
}

int vxm_image_validate(struct vxm_image *img, struct vxm_err *err)
{
	struct vctx *x = calloc(1, sizeof(*x));
	char a[128], b[128];
	int ret = 0;

	if (!x)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	x->img = img;
	x->err = err;
	check_item_flags(img);
	add_fixed(x, 0, VXM_HEADER_SECTION, -1);
	add_fixed(x, img->hdr.log_off, img->hdr.log_len, -2);
	for (uint32_t i = 0; i < img->rt->count && x->nfx < VXM_MAX_TABLE_ENTRIES + 2; i++)
		add_fixed(x, img->rt->e[i].off, img->rt->e[i].len, (int)i);
	/* The open refuses overlapping regions and a region over the log; the
	 * header section is checked here with the rest, pair by pair. */
	for (unsigned i = 0; i < x->nfx; i++)
		for (unsigned k = i + 1; k < x->nfx; k++)
			if (x->fx[k].off < x->fx[i].end && x->fx[i].off < x->fx[k].end) {
				region_name(img, x->fx[i].region, a, sizeof(a));
				region_name(img, x->fx[k].region, b, sizeof(b));
				vxm_image_note(img, 1, x->fx[k].off,
					       "%s at 0x%llx overlaps %s [0x%llx,0x%llx)", b,
					       (unsigned long long)x->fx[k].off, a,
					       (unsigned long long)x->fx[i].off,
					       (unsigned long long)x->fx[i].end);
			}
	x->units = (img->file_size + VXM_MiB - 1) / VXM_MiB;
	x->used = calloc(x->units / 8 + 1, 1);
	if (!x->used) {
		ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "%s: out of memory (%llu MiB units)",
			       img->path, (unsigned long long)x->units);
		goto out;
	}
	for (unsigned i = 0; i < x->nfx; i++)
		for (uint64_t u = x->fx[i].off / VXM_MiB;
		     u < (x->fx[i].end + VXM_MiB - 1) / VXM_MiB && u < x->units; u++)
			unit_test_and_set(x, u);
	ret = vxm_image_bat_scan(img, mark_entry, x, err);
	if (ret || !x->ncl)
		goto out;
	/* Name each clash's first owner: a fixed structure, else (second pass)
	 * the lowest BAT entry covering the unit. */
	for (unsigned i = 0; i < x->ncl; i++) {
		struct clash *c = &x->cl[i];
		c->fixed = fixed_at(x, c->unit);
		if (c->fixed >= 0) {
			c->owner_off = x->fx[c->fixed].off;
			c->owner_end = x->fx[c->fixed].end;
		}
	}
	ret = vxm_image_bat_scan(img, find_owner, x, err);
	if (ret)
		goto out;
	for (unsigned i = 0; i < x->ncl; i++) {
		const struct clash *c = &x->cl[i];
		if (c->fixed >= 0)
			region_name(img, x->fx[c->fixed].region, a, sizeof(a));
		else
			entry_name(img, c->owner, a, sizeof(a));
		entry_name(img, c->idx, b, sizeof(b));
		vxm_image_note(img, 1, vxm_bat_entry_off(img->bat_region.off, c->idx),
			       "%s at 0x%llx overlaps %s [0x%llx,0x%llx)", b,
			       (unsigned long long)c->off, a, (unsigned long long)c->owner_off,
			       (unsigned long long)c->owner_end);
	}
out:
	if (!ret)
		ret = (int)(img->nproblems > INT32_MAX ? INT32_MAX : img->nproblems);
	free(x->used);
	free(x);
	return ret;
}

int vxm_image_require_valid(struct vxm_image *img, const char *role, struct vxm_err *err)
{
	int n = vxm_image_validate(img, err);
	if (n <= 0)
		return n;
	const struct vxm_note *first = NULL;
	for (unsigned i = 0; i < img->nnotes && !first; i++)
		if (img->notes[i].severity)
			first = &img->notes[i];
	uint64_t off = first ? first->off : VXM_OFF_NONE;
	return vxm_fail(err, -VXM_ECORRUPT, off,
			"%s (%s): %s%s; nothing was changed (`vhdxmerge check %s` lists %s)", img->path,
			role, first ? first->msg : "a structural problem",
			n > 1 ? " (and more)" : "", img->path,
			n > 1 ? "every problem" : "it");
}

int vxm_plan_preflight(struct vxm_chain *c, int dest, struct vxm_err *err)
{
	int top = (int)c->n - 1;
	if (dest < VXM_PLAN_NEW_FILE || dest >= top)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"preflight: destination layer %d must be below the top layer %d", dest,
				top);
	const struct vxm_image *t = c->layer[top].img;
	/* Layers below D are neither read nor written by a merge, but a chain
	 * damaged anywhere is one to salvage, not to merge (fmt §8.4 step 1). */
	for (int i = 0; i <= top; i++) {
		int ret = vxm_image_require_valid(c->layer[i].img,
						  i == top    ? "the top"
						  : i == dest ? "the destination"
						  : dest < 0  ? "a layer the new file is read from"
						  : i < dest  ? "a layer below the destination"
							      : "a layer to merge",
						  err);
		if (ret)
			return ret;
	}
	if (dest >= 0 && t->m.virtual_size > c->layer[dest].img->m.virtual_size)
		return vxm_image_resize_check(c->layer[dest].img, t->m.virtual_size, err);
	if (dest >= 0 && t->m.virtual_size < c->layer[dest].img->m.virtual_size)
		return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				"%s has a virtual size of %llu bytes, smaller than the destination %s (%llu bytes): merging would shrink the destination, which is refused; nothing was changed (`vhdxmerge convert %s NEW.vhdx` writes the disk as the chain shows it)",
				t->path, (unsigned long long)t->m.virtual_size,
				c->layer[dest].img->path,
				(unsigned long long)c->layer[dest].img->m.virtual_size, t->path);
	return 0;
}
