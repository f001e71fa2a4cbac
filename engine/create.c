/* engine/create.c: new VHDX files, laid out as Hyper-V lays them out.
 *
 *   0       64K     128K    192K    256K         1M      2M         3M
 *   | ident | hdr 1 | hdr 2 | rt 1  | rt 2  | ... | log   | metadata | BAT ...
 *
 *   BAT:  3 MiB, length round_up(TotalBATEntries * 8, 1 MiB)
 *   then  differencing: one 1 MiB sector-bitmap block per chunk (unless
 *         VXM_CREATE_LAZY_BITMAPS), zero
 *         fixed: every payload block, whole BlockSize each (also the
 *         trailing partial one), FULLY_PRESENT, zero (sparse)
 *         dynamic: nothing (the file ends after the BAT)
 *
 * Metadata items are packed from region offset 64 KiB in Hyper-V's table
 * order (fmt §3 [OBS]): File Parameters (Required), Virtual Disk Size,
 * Logical Sector Size, Physical Sector Size, Virtual Disk ID (all
 * IsVirtualDisk|Required), Parent Locator (Required).  A differencing child
 * copies every IsVirtualDisk item of its parent, user items included, in the
 * parent's order (fmt §3, [SPEC §2.6.1.2]).
 *
 * Parent locator (fmt §4): parent_linkage = the parent's DataWriteGuid,
 * relative_path relative to the child's directory with `\` separators
 * (".\base.vhdx", "..\x\base.vhdx"), and absolute_win32_path.  The last is
 * the parent's Linux absolute path with `\` separators ("\srv\vm\base.vhdx"):
 * there is no drive letter or volume to name on Linux, so the value is what
 * a Windows host would read as a root-relative path.  Hyper-V tries the
 * relative path first [SPEC order], and our resolver maps `\` back to `/`;
 * VXM_CREATE_NO_ABSOLUTE_PATH leaves the key out.  volume_path and
 * parent_linkage2 are not written.
 *
 * I1: the headers are written last, after a full flush of everything else
 *     ("create-data"), so no reader accepts a file whose creation was
 *     interrupted (both header slots are zero until then).
 * I2: the first 64 KiB (identifier) are written exactly once.
 * I3: nothing is created when the parameters or the parent are refused;
 *     a partial file is unlinked on any later error.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VXM_VERSION
#define VXM_VERSION "dev"
#endif

#define LOG_OFF (1ull * VXM_MiB)
#define LOG_LEN (1u * 1024 * 1024)
#define META_OFF (2ull * VXM_MiB)
#define META_LEN (1u * 1024 * 1024)
#define BAT_OFF (3ull * VXM_MiB)

/* ---- parent locator paths ----------------------------------------------- */

/* Absolute, normalised path of an existing directory. */
static int dir_abs(const char *dir, char *out, size_t cap)
{
	char *r = realpath(dir, NULL);
	if (!r)
		return -errno;
	int n = snprintf(out, cap, "%s", r);
	free(r);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* rel (out) = path of target relative to dir, both absolute and normalised,
 * with `\` separators, ".\" in front when it does not start with "..". */
static int rel_path(const char *dir, const char *target, char *out, size_t cap)
{
	size_t i = 0, common = 0;
	size_t o = 0;

	/* common prefix, on whole components */
	while (dir[i] && target[i] && dir[i] == target[i]) {
		if (dir[i] == '/')
			common = i;
		i++;
	}
	if (!dir[i] && (target[i] == '/' || !target[i]))
		common = i;
	else if (!dir[i] && !strcmp(dir, "/"))
		common = 0;
	/* components of dir after the common prefix become ".." */
	const char *d = dir + common;
	bool up = false;
	while (*d) {
		if (*d == '/')
			d++;
		if (!*d)
			break;
		if (o + 4 > cap)
			return -ENAMETOOLONG;
		memcpy(out + o, "..\\", 3);
		o += 3;
		up = true;
		while (*d && *d != '/')
			d++;
	}
	if (!up) {
		if (o + 3 > cap)
			return -ENAMETOOLONG;
		memcpy(out + o, ".\\", 2);
		o += 2;
	}
	const char *t = target + common;
	while (*t == '/')
		t++;
	for (; *t; t++) {
		if (o + 2 > cap)
			return -ENAMETOOLONG;
		out[o++] = *t == '/' ? '\\' : *t;
	}
	out[o] = 0;
	return 0;
}

static void backslashes(char *s)
{
	for (; *s; s++)
		if (*s == '/')
			*s = '\\';
}

/* ---- building the structures -------------------------------------------- */

struct item {
	struct vxm_guid id;
	uint32_t flags;
	const uint8_t *data;
	uint32_t len;
};

struct plan {
	struct vxm_geom g;
	bool fixed, has_parent, sb_all;
	uint64_t bat_len;
	uint64_t sb_off;      /* first SB block (differencing, sb_all) */
	uint64_t data_off;    /* first payload block (fixed) */
	uint64_t file_size;
};

static void plan_layout(struct plan *pl)
{
	const struct vxm_geom *g = &pl->g;

	pl->bat_len = vxm_geom_bat_region_len(g);
	uint64_t end = BAT_OFF + pl->bat_len;
	if (pl->has_parent && pl->sb_all) {
		pl->sb_off = end;
		end += g->sb_blocks * VXM_SB_BLOCK_SIZE;
	}
	if (pl->fixed) {
		pl->data_off = end;
		end += g->payload_blocks * g->block_size;
	}
	pl->file_size = end;
}

static uint64_t bat_entry_at(const struct plan *pl, uint64_t idx)
{
	const struct vxm_geom *g = &pl->g;

	if (vxm_geom_is_sb_index(g, idx)) {
		if (pl->has_parent && pl->sb_all) {
			uint64_t c = vxm_geom_chunk_of_index(g, idx);
			return vxm_bat_entry(VXM_SB_PRESENT, pl->sb_off + c * VXM_SB_BLOCK_SIZE);
		}
		return 0;
	}
	if (pl->fixed) {
		uint64_t b = vxm_geom_block_of_index(g, idx);
		return vxm_bat_entry(VXM_PB_FULLY_PRESENT, pl->data_off + b * g->block_size);
	}
	return 0;
}

static int put(struct vxm_io *io, int slot, const void *buf, uint64_t len, uint64_t off,
	       const char *what, struct vxm_err *err)
{
	vxm_killpoint("write");
	int ret = vxm_io_pwrite(io, slot, buf, len, off);
	if (ret)
		return vxm_fail(err, ret, off, "create: writing the %s failed: %s", what,
				vxm_strerror(ret));
	return 0;
}

static int sync_point(struct vxm_io *io, int slot, const char *tag, bool full,
		      struct vxm_err *err)
{
	int ret = vxm_io_sync(io, slot, tag, full);
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "create: flush (%s) failed: %s", tag,
				vxm_strerror(ret));
	vxm_killpoint(tag);
	return 0;
}

/* Items to write, in table order; returns how many. */
static unsigned collect_items(struct item *it, unsigned cap, const struct plan *pl,
			      struct vxm_image *parent, const struct vxm_meta_items *mi,
			      const uint8_t *loc, uint32_t loc_len)
{
	unsigned n = 0;
	const uint32_t vd = VXM_META_IS_VIRTUAL_DISK | VXM_META_IS_REQUIRED;

	it[n++] = (struct item){ VXM_GUID_META_FILE_PARAMS, VXM_META_IS_REQUIRED,
				 mi->file_params, sizeof(mi->file_params) };
	if (!parent) {
		it[n++] = (struct item){ VXM_GUID_META_VIRTUAL_SIZE, vd, mi->virtual_size,
					 sizeof(mi->virtual_size) };
		it[n++] = (struct item){ VXM_GUID_META_LOGICAL_SECTOR, vd, mi->logical_sector,
					 sizeof(mi->logical_sector) };
		it[n++] = (struct item){ VXM_GUID_META_PHYSICAL_SECTOR, vd, mi->physical_sector,
					 sizeof(mi->physical_sector) };
		it[n++] = (struct item){ VXM_GUID_META_DISK_ID, vd, mi->disk_id,
					 sizeof(mi->disk_id) };
	} else {
		/* Every IsVirtualDisk item of the parent, in its order; the
		 * physical sector size may be overridden (fmt P4). */
		for (unsigned i = 0; i < parent->mt->count && n + 1 < cap; i++) {
			const struct vxm_meta_entry *e = &parent->mt->e[i];
			if (!(e->flags & VXM_META_IS_VIRTUAL_DISK))
				continue;
			const uint8_t *data = parent->meta + e->off;
			if (!(e->flags & VXM_META_IS_USER) &&
			    vxm_guid_eq(&e->id, &VXM_GUID_META_PHYSICAL_SECTOR))
				data = mi->physical_sector;
			it[n++] = (struct item){ e->id, e->flags, e->len ? data : NULL, e->len };
		}
	}
	(void)pl;
	if (loc)
		it[n++] = (struct item){ VXM_GUID_META_PARENT_LOCATOR, VXM_META_IS_REQUIRED, loc,
					 loc_len };
	return n;
}

static int build_locator(struct vxm_image *parent, const char *child_path, unsigned flags,
			 uint8_t *out, size_t cap, long *len, struct vxm_err *err)
{
	char *cdup = strdup(child_path);
	char cdir[PATH_MAX], pabs[PATH_MAX], rel[PATH_MAX + 64], absw[PATH_MAX];
	char linkage[VXM_GUID_STRLEN + 3], g[VXM_GUID_STRLEN + 1];
	int ret;

	if (!cdup)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	ret = dir_abs(dirname(cdup), cdir, sizeof(cdir));
	free(cdup);
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE,
				"create: cannot resolve the directory of %s: %s", child_path,
				vxm_strerror(ret));
	char *r = realpath(parent->path, NULL);
	if (!r)
		return vxm_fail(err, -errno, VXM_OFF_NONE, "create: cannot resolve parent %s: %s",
				parent->path, strerror(errno));
	snprintf(pabs, sizeof(pabs), "%s", r);
	free(r);
	ret = rel_path(cdir, pabs, rel, sizeof(rel));
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "create: parent path too long");
	snprintf(absw, sizeof(absw), "%s", pabs);
	backslashes(absw);
	snprintf(linkage, sizeof(linkage), "{%s}", vxm_guid_fmt(&parent->hdr.data_write, g));

	struct vxm_kv kv[3] = {
		{ "parent_linkage", linkage },
		{ "relative_path", rel },
		{ "absolute_win32_path", absw },
	};
	unsigned n = (flags & VXM_CREATE_NO_ABSOLUTE_PATH) ? 2 : 3;
	*len = vxm_locator_encode(kv, n, out, cap);
	if (*len < 0)
		return vxm_fail(err, (int)*len, VXM_OFF_NONE,
				"create: cannot encode the parent locator: %s",
				vxm_strerror((int)*len));
	return 0;
}

static int check_params(const struct vxm_create_params *p, struct vxm_err *err)
{
	if (p->logical_sector_size && p->logical_sector_size != 512 &&
	    p->logical_sector_size != 4096)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"create: logical sector size %u (must be 512 or 4096)",
				p->logical_sector_size);
	if (p->physical_sector_size && p->physical_sector_size != 512 &&
	    p->physical_sector_size != 4096)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"create: physical sector size %u (must be 512 or 4096)",
				p->physical_sector_size);
	if (p->block_size &&
	    (p->block_size < VXM_MIN_BLOCK_SIZE || p->block_size > VXM_MAX_BLOCK_SIZE ||
	     (p->block_size & (p->block_size - 1))))
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"create: block size %u is not a power of two from 1 MiB to 256 MiB",
				p->block_size);
	if (p->parent && p->fixed)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"create: a differencing file cannot be fixed");
	if (!p->parent && !p->virtual_size)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE, "create: the virtual size is required");
	if (p->virtual_size > VXM_MAX_VIRTUAL_SIZE)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"create: virtual size %llu exceeds 64 TiB",
				(unsigned long long)p->virtual_size);
	return 0;
}

int vxm_image_create(const char *path, const struct vxm_create_params *p, struct vxm_err *err)
{
	struct vxm_io own = { 0 }, *io = p->io;
	struct vxm_image *parent = NULL;
	struct plan pl = { 0 };
	uint8_t *buf = NULL, *loc = NULL;
	long loc_len = 0;
	int slot = -1, ret;
	bool created = false;

	ret = check_params(p, err);
	if (ret)
		goto out;
	if (!io) {
		ret = vxm_io_init(&own, NULL, NULL);
		if (ret) {
			vxm_fail(err, ret, VXM_OFF_NONE, "create: no I/O backend: %s",
				 vxm_strerror(ret));
			goto out;
		}
		io = &own;
	}

	uint64_t vsize = p->virtual_size;
	uint32_t lss = p->logical_sector_size ? p->logical_sector_size : 512;
	uint32_t pss = p->physical_sector_size ? p->physical_sector_size : 4096;
	uint32_t bs = p->block_size;
	struct vxm_guid disk_id;

	if (p->parent) {
		ret = vxm_image_open(&parent, io, p->parent, 0, err);
		if (ret)
			goto out;
		const struct vxm_meta *pm = &parent->m;
		if (p->logical_sector_size && p->logical_sector_size != pm->logical_sector_size) {
			ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				       "create: parent %s has %u-byte logical sectors, %u requested: parent and child must have equal logical sector sizes (fmt P4)",
				       p->parent, pm->logical_sector_size, p->logical_sector_size);
			goto out;
		}
		if (p->virtual_size && p->virtual_size != pm->virtual_size) {
			ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				       "create: parent %s has a virtual size of %llu bytes, %llu requested: a differencing child takes its parent's size",
				       p->parent, (unsigned long long)pm->virtual_size,
				       (unsigned long long)p->virtual_size);
			goto out;
		}
		vsize = pm->virtual_size;
		lss = pm->logical_sector_size;
		pss = p->physical_sector_size ? p->physical_sector_size : pm->physical_sector_size;
		disk_id = pm->disk_id;
		if (!bs)
			bs = 2u << 20;
	} else {
		vxm_guid_new(&disk_id);
		if (!bs)
			bs = p->fixed ? 2u << 20 : 32u << 20;
	}
	ret = vxm_geom_init(&pl.g, vsize, bs, lss, p->parent != NULL, err);
	if (ret) {
		ret = -EINVAL;
		if (err)
			err->code = ret;
		goto out;
	}
	pl.fixed = p->fixed;
	pl.has_parent = p->parent != NULL;
	pl.sb_all = !(p->flags & VXM_CREATE_LAZY_BITMAPS);
	plan_layout(&pl);

	/* The buffer holds the identifier (64 KiB) and later the whole metadata
	 * region and 1 MiB BAT pieces. */
	buf = calloc(1, META_LEN);
	loc = calloc(1, 64 * 1024);
	if (!buf || !loc) {
		ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		goto out;
	}
	if (parent) {
		ret = build_locator(parent, path, p->flags, loc, 64 * 1024, &loc_len, err);
		if (ret)
			goto out;
	}

	ret = vxm_io_open(io, path, VXM_O_RDWR | VXM_O_CREATE);
	if (ret < 0) {
		vxm_fail(err, ret, VXM_OFF_NONE, "create: cannot create: %s%s", vxm_strerror(ret),
			 ret == -EEXIST ? " (refusing to overwrite an existing file)" : "");
		goto out;
	}
	slot = ret;
	created = true;

	/* identifier */
	char creator[64];
	snprintf(creator, sizeof(creator), "vhdxmerge %s", VXM_VERSION);
	vxm_ident_encode(buf, creator);
	ret = put(io, slot, buf, VXM_IDENT_SIZE, VXM_IDENT_OFF, "file identifier", err);
	if (ret)
		goto out;

	/* region tables: BAT first, then metadata, as Hyper-V writes them */
	struct vxm_region_table *rt = calloc(1, sizeof(*rt));
	if (!rt) {
		ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		goto out;
	}
	rt->count = 2;
	rt->e[0] = (struct vxm_region){ VXM_GUID_REGION_BAT, BAT_OFF, (uint32_t)pl.bat_len, 1 };
	rt->e[1] = (struct vxm_region){ VXM_GUID_REGION_METADATA, META_OFF, META_LEN, 1 };
	vxm_region_encode(rt, buf);
	free(rt);
	ret = put(io, slot, buf, VXM_RT_SIZE, VXM_RT1_OFF, "region table 1", err);
	if (!ret)
		ret = put(io, slot, buf, VXM_RT_SIZE, VXM_RT2_OFF, "region table 2", err);
	if (ret)
		goto out;

	/* metadata region */
	struct vxm_meta_items mi;
	vxm_meta_items_encode(&(struct vxm_meta){ .block_size = bs,
						 .leave_blocks_allocated = p->fixed,
						 .has_parent = parent != NULL,
						 .virtual_size = vsize,
						 .disk_id = disk_id,
						 .logical_sector_size = lss,
						 .physical_sector_size = pss },
			      &mi);
	struct item items[VXM_MAX_TABLE_ENTRIES];
	unsigned nitems = collect_items(items, VXM_MAX_TABLE_ENTRIES, &pl, parent, &mi,
					parent ? loc : NULL, (uint32_t)loc_len);
	struct vxm_meta_table *mt = calloc(1, sizeof(*mt));
	if (!mt) {
		ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		goto out;
	}
	memset(buf, 0, META_LEN);
	uint32_t at = VXM_META_TABLE_SIZE;
	for (unsigned i = 0; i < nitems; i++) {
		if ((uint64_t)at + items[i].len > META_LEN) {
			free(mt);
			ret = vxm_fail(err, -ENOSPC, VXM_OFF_NONE,
				       "create: the metadata items do not fit in 1 MiB");
			goto out;
		}
		mt->e[i].id = items[i].id;
		mt->e[i].flags = items[i].flags;
		mt->e[i].len = items[i].len;
		mt->e[i].off = items[i].len ? at : 0;
		if (items[i].len)
			memcpy(buf + at, items[i].data, items[i].len);
		at += items[i].len;
	}
	mt->count = (uint16_t)nitems;
	vxm_meta_table_encode(mt, buf);
	free(mt);
	ret = put(io, slot, buf, META_LEN, META_OFF, "metadata region", err);
	if (ret)
		goto out;

	/* BAT, 1 MiB at a time; dynamic files only need it to exist (zeros) */
	if (pl.fixed || (pl.has_parent && pl.sb_all)) {
		const uint64_t per = META_LEN / VXM_BAT_ENTRY_SIZE;
		uint64_t *e = (uint64_t *)buf; /* calloc'd: aligned for entries */
		for (uint64_t first = 0; first < pl.g.total_entries; first += per) {
			uint64_t n = pl.g.total_entries - first;
			if (n > per)
				n = per;
			for (uint64_t i = 0; i < n; i++)
				e[i] = bat_entry_at(&pl, first + i);
			vxm_bat_encode(e, n);
			ret = put(io, slot, buf, n * VXM_BAT_ENTRY_SIZE,
				  vxm_bat_entry_off(BAT_OFF, first), "BAT", err);
			if (ret)
				goto out;
		}
	}
	vxm_killpoint("extend");
	ret = vxm_io_resize(io, slot, pl.file_size);
	if (ret) {
		vxm_fail(err, ret, pl.file_size, "create: cannot size the file to %llu bytes: %s",
			 (unsigned long long)pl.file_size, vxm_strerror(ret));
		goto out;
	}
	/* I1: everything but the headers is durable before the first header. */
	ret = sync_point(io, slot, "create-data", true, err);
	if (ret)
		goto out;

	struct vxm_hdr h = { 0 };
	vxm_guid_new(&h.file_write);
	vxm_guid_new(&h.data_write);
	h.version = 1;
	h.log_len = LOG_LEN;
	h.log_off = LOG_OFF;
	for (int i = 0; i < 2; i++) {
		uint8_t hb[VXM_HDR_SIZE];
		h.seq = (uint64_t)i + 1;
		vxm_hdr_encode(&h, hb);
		ret = put(io, slot, hb, VXM_HDR_SIZE, i ? VXM_HDR2_OFF : VXM_HDR1_OFF, "header", err);
		if (!ret)
			ret = sync_point(io, slot, "create-header", false, err);
		if (ret)
			goto out;
	}
	/* The new directory entry: best effort (not every backend syncs a
	 * directory; the file itself is complete either way). */
	{
		char *d = strdup(path);
		if (d) {
			int ds = vxm_io_open(io, dirname(d), VXM_O_RDONLY | VXM_O_DIR);
			if (ds >= 0) {
				(void)vxm_io_sync(io, ds, "create-dir", true);
				vxm_io_close(io, ds);
			}
			free(d);
		}
	}
	ret = 0;
out:
	if (slot >= 0)
		vxm_io_close(io, slot);
	if (ret && created)
		unlink(path); /* I3 */
	vxm_image_close(parent);
	if (io == &own)
		vxm_io_fini(&own);
	free(buf);
	free(loc);
	if (ret)
		vxm_err_path(err, path);
	return ret;
}
