/* tests/lib/fxsynth.c: see fxsynth.h. */
#define _GNU_SOURCE
#include "fxsynth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "vhdx/endian.h"
#include "vhdx/vhdx.h"

#define MiB (1024ull * 1024)
#define SECT VXM_LOG_SECTOR

/* n consecutive blocks from b in one state, the first at off and each next
 * one block further (off 0: no payload).  hidden: the payload is written but
 * the BAT on disk says NOT_PRESENT (a log entry makes it present). */
struct run {
	uint64_t b, n;
	unsigned state;
	uint64_t off;
	bool hidden;
};

struct spec {
	const char *creator;
	uint64_t vsize;
	uint32_t bs, lss, pss;
	bool fixed;
	bool tie;        /* both headers the same sequence number and bytes */
	bool meta_first; /* the region table lists the metadata region first */
	uint32_t required;
	uint64_t seq;    /* header 1's; header 2 is current with seq + 1 */
	uint64_t log_off, meta_off, bat_off;
	const struct vxm_kv *loc; /* differencing when set */
	unsigned nloc;
	const struct run *runs;
	unsigned nruns;
	uint64_t sb_off[2]; /* sector bitmap of chunk c, 0: not present */
	uint64_t size;
};

static const struct fxs_info infos[FXS_COUNT] = {
	[FXS_FIXED] = { "dissect-fixed-vhdx", "fixed.vhdx", "10 MiB fixed, 2 MiB blocks" },
	[FXS_DYNAMIC] = { "dissect-dynamic-vhdx", "dynamic.vhdx", "10 MiB in one 32 MiB block" },
	[FXS_DIFF] = { "dissect-differencing-avhdx", "differencing.avhdx",
		       "8 GiB differencing, partial blocks in two chunks" },
	[FXS_LOGREPLAY] = { "discutils-vhdx-log-replay", "vhdx-log-replay.vhdx",
			    "1 GiB, dirty log of 5 entries" },
	[FXS_DIRTYLOG] = { "qemu-iotest-dirtylog-10G-4M", "iotest-dirtylog-10G-4M.vhdx",
			   "10 GiB, QEMU layout, 6 stale log entries and a current one" },
	[FXS_ZEROBLOCKS] = { "qemu-iotest-dynamic-1G-hyperv2012", "iotest-dynamic-1G.vhdx",
			     "1 GiB, 3 present and 29 ZERO blocks" },
	[FXS_TIED] = { "qemu-test-disk2vhd", "test-disk2vhd.vhdx",
		       "256 MiB, both headers sequence 1" },
};

const struct fxs_info *fxs_info(enum fxs_kind k)
{
	return k < FXS_COUNT ? &infos[k] : NULL;
}

/* Deterministic GUIDs and bytes per (kind, use): reproducible files. */
static struct vxm_guid guid_of(enum fxs_kind k, unsigned use)
{
	struct vxm_guid g;
	uint64_t s = tl_mix(0xf15e ^ ((uint64_t)k << 16 | use));
	uint64_t a = tl_rnd(&s), b = tl_rnd(&s);
	memcpy(g.b, &a, 8);
	memcpy(g.b + 8, &b, 8);
	g.b[7] = (uint8_t)((g.b[7] & 0x0f) | 0x40); /* version 4, variant 1 */
	g.b[8] = (uint8_t)((g.b[8] & 0x3f) | 0x80);
	return g;
}

static int put(int fd, const void *buf, size_t n, uint64_t off)
{
	ssize_t w = pwrite(fd, buf, n, (off_t)off);
	return w == (ssize_t)n ? 0 : w < 0 ? -errno : -EIO;
}

static uint64_t bat_len(const struct vxm_geom *g)
{
	return (g->total_entries * 8 + MiB - 1) / MiB * MiB;
}

/* The three 4 KiB pieces of block b's payload: start, middle, end of its
 * virtual bytes (block-relative; fewer when the block is short). */
static unsigned pieces(const struct vxm_geom *g, uint64_t b, uint64_t at[3])
{
	uint64_t n = vxm_geom_block_bytes(g, b) / SECT * SECT;
	unsigned k = 0;
	at[k++] = 0;
	if (n / 2 / SECT * SECT > 0)
		at[k++] = n / 2 / SECT * SECT;
	if (n - SECT > at[k - 1])
		at[k++] = n - SECT;
	return k;
}

/* The BAT sector holding entries [first, first + 512) with the runs'
 * entries (hidden ones as present). */
static void bat_sector(const struct vxm_geom *g, const struct run *r, unsigned nr, uint64_t first,
		       uint8_t out[SECT])
{
	memset(out, 0, SECT);
	for (unsigned i = 0; i < nr; i++)
		for (uint64_t j = 0; j < r[i].n; j++) {
			uint64_t idx = vxm_geom_pb_index(g, r[i].b + j);
			uint64_t off = r[i].off ? r[i].off + j * g->block_size : 0;
			if (idx >= first && idx < first + SECT / 8)
				vxm_put_le64(out + 8 * (idx - first), vxm_bat_entry(r[i].state, off));
		}
}

static int build(int fd, enum fxs_kind k, const struct spec *s, const struct vxm_guid *log_guid)
{
	static struct vxm_region_table rt;
	static struct vxm_meta_table mt;
	struct vxm_geom g;
	uint8_t *buf = NULL, *bat = NULL, *sbm[2] = { NULL, NULL };
	int ret = -ENOMEM;

	if (vxm_geom_init(&g, s->vsize, s->bs, s->lss, s->nloc > 0, NULL) ||
	    (s->nloc && g.sb_blocks > 2))
		return -EINVAL;
	buf = calloc(1, MiB);
	bat = calloc(1, bat_len(&g));
	if (!buf || !bat)
		goto out;

	vxm_ident_encode(buf, s->creator);
	if ((ret = put(fd, buf, 64 * 1024, 0)))
		goto out;

	struct vxm_hdr h = { .seq = s->seq, .version = 1, .log_len = (uint32_t)MiB,
			     .log_off = s->log_off, .file_write = guid_of(k, 1),
			     .data_write = guid_of(k, 2) };
	if (log_guid)
		h.log_guid = *log_guid;
	memset(buf, 0, SECT);
	vxm_hdr_encode(&h, buf);
	if ((ret = put(fd, buf, SECT, VXM_HDR1_OFF)))
		goto out;
	h.seq += !s->tie;
	vxm_hdr_encode(&h, buf);
	if ((ret = put(fd, buf, SECT, VXM_HDR2_OFF)))
		goto out;

	memset(&rt, 0, sizeof(rt));
	rt.count = 2;
	rt.e[s->meta_first] = (struct vxm_region){ VXM_GUID_REGION_BAT, s->bat_off,
						   (uint32_t)bat_len(&g), s->required };
	rt.e[!s->meta_first] = (struct vxm_region){ VXM_GUID_REGION_METADATA, s->meta_off,
						    (uint32_t)MiB, s->required };
	memset(buf, 0, VXM_RT_SIZE);
	vxm_region_encode(&rt, buf);
	if ((ret = put(fd, buf, VXM_RT_SIZE, VXM_RT1_OFF)) ||
	    (ret = put(fd, buf, VXM_RT_SIZE, VXM_RT2_OFF)))
		goto out;

	/* metadata: items packed from 64 KiB in Hyper-V's order, its flags */
	memset(buf, 0, MiB);
	memset(&mt, 0, sizeof(mt));
	uint32_t pos = 64 * 1024;
#define ITEM(guid, flags, n)                                                              \
	(mt.e[mt.count] = (struct vxm_meta_entry){ guid, pos, n, flags }, mt.count++, pos += n, \
	 buf + pos - n)
	uint8_t *p = ITEM(VXM_GUID_META_FILE_PARAMS, 4, 8);
	vxm_put_le32(p, s->bs);
	vxm_put_le32(p + 4, (s->fixed ? 1u : 0u) | (s->nloc ? 2u : 0u));
	vxm_put_le64(ITEM(VXM_GUID_META_VIRTUAL_SIZE, 6, 8), s->vsize);
	vxm_put_le32(ITEM(VXM_GUID_META_LOGICAL_SECTOR, 6, 4), s->lss);
	vxm_put_le32(ITEM(VXM_GUID_META_PHYSICAL_SECTOR, 6, 4), s->pss);
	struct vxm_guid id = guid_of(k, 3);
	memcpy(ITEM(VXM_GUID_META_DISK_ID, 6, 16), id.b, 16);
	if (s->nloc) {
		uint8_t tmp[8192];
		long n = vxm_locator_encode(s->loc, s->nloc, tmp, sizeof(tmp));
		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		memcpy(ITEM(VXM_GUID_META_PARENT_LOCATOR, 4, (uint32_t)n), tmp, (size_t)n);
	}
#undef ITEM
	vxm_meta_table_encode(&mt, buf);
	if ((ret = put(fd, buf, MiB, s->meta_off)))
		goto out;

	/* payload, BAT, sector bitmaps */
	for (unsigned i = 0; i < s->nruns; i++) {
		const struct run *r = &s->runs[i];
		for (uint64_t j = 0; j < r->n; j++) {
			uint64_t b = r->b + j, off = r->off ? r->off + j * s->bs : 0, at[3];
			if (!r->hidden)
				vxm_put_le64(bat + 8 * vxm_geom_pb_index(&g, b),
					     vxm_bat_entry(r->state, off));
			if (r->state != VXM_PB_FULLY_PRESENT && r->state != VXM_PB_PARTIALLY_PRESENT)
				continue;
			unsigned np = pieces(&g, b, at);
			for (unsigned q = 0; q < np; q++) {
				uint64_t seed = (uint64_t)k << 40 ^ b << 8 ^ q;
				for (unsigned w = 0; w < SECT; w += 8) {
					uint64_t v = tl_mix(seed * 4096 + w);
					memcpy(buf + w, &v, 8);
				}
				if ((ret = put(fd, buf, SECT, off + at[q])))
					goto out;
				if (r->state != VXM_PB_PARTIALLY_PRESENT)
					continue;
				uint64_t c = b / g.chunk_ratio;
				if (!sbm[c] && !(sbm[c] = calloc(1, MiB))) {
					ret = -ENOMEM;
					goto out;
				}
				vxm_bitmap_fill(sbm[c], (b % g.chunk_ratio) * g.spb + at[q] / s->lss,
						SECT / s->lss, true);
			}
		}
	}
	for (uint64_t c = 0; c < g.sb_blocks && s->nloc; c++) {
		if (!s->sb_off[c])
			continue;
		vxm_put_le64(bat + 8 * vxm_geom_sb_index(&g, c),
			     vxm_bat_entry(VXM_SB_PRESENT, s->sb_off[c]));
		if (sbm[c] && (ret = put(fd, sbm[c], MiB, s->sb_off[c])))
			goto out;
	}
	if ((ret = put(fd, bat, bat_len(&g), s->bat_off)))
		goto out;
	ret = ftruncate(fd, (off_t)s->size) ? -errno : 0;
out:
	free(buf);
	free(bat);
	free(sbm[0]);
	free(sbm[1]);
	return ret;
}

/* One log entry: at log offset pos, with tail, seq and guid; sector (NULL:
 * no descriptor) is the new image of the 4 KiB at target. */
struct lent {
	uint32_t pos, tail;
	uint64_t seq;
	struct vxm_guid guid;
	uint64_t flushed, last;
	const uint8_t *sector;
	uint64_t target;
};

static int put_log(int fd, const struct spec *s, const struct lent *e, unsigned n)
{
	uint8_t *log = calloc(1, MiB);
	int ret = log ? 0 : -ENOMEM;

	for (unsigned i = 0; i < n && !ret; i++) {
		struct vxm_log_update u = { .file_off = e[i].target, .data = e[i].sector, .len = SECT };
		struct vxm_log_entry le = { .tail = e[i].tail, .seq = e[i].seq, .guid = e[i].guid,
					    .flushed_file_offset = e[i].flushed,
					    .last_file_offset = e[i].last };
		ret = vxm_log_entry_encode(&le, &u, e[i].sector ? 1 : 0, log + e[i].pos,
					   MiB - e[i].pos, NULL);
	}
	if (!ret)
		ret = put(fd, log, MiB, s->log_off);
	free(log);
	return ret;
}

/* ---- the stand-ins ---------------------------------------------------------------- */

#define HYPERV(creator_) .creator = creator_, .lss = 512, .required = 1, \
	.log_off = 1 * MiB, .meta_off = 2 * MiB, .bat_off = 3 * MiB

static int fixed(int fd)
{
	static const struct run r[] = { { 0, 5, VXM_PB_FULLY_PRESENT, 4 * MiB, false } };
	const struct spec s = { HYPERV("vhdxmerge stand-in for a Windows fixed disk"),
				.pss = 4096, .vsize = 10 * MiB, .bs = 2 * MiB, .fixed = true, .seq = 3,
				.runs = r, .nruns = 1, .size = 14 * MiB };
	return build(fd, FXS_FIXED, &s, NULL);
}

static int dynamic(int fd)
{
	static const struct run r[] = { { 0, 1, VXM_PB_FULLY_PRESENT, 4 * MiB, false } };
	const struct spec s = { HYPERV("vhdxmerge stand-in for a Windows dynamic disk"),
				.pss = 4096, .vsize = 10 * MiB, .bs = 32 * MiB, .seq = 21, .runs = r, .nruns = 1,
				.size = 36 * MiB };
	return build(fd, FXS_DYNAMIC, &s, NULL);
}

static int diff(int fd)
{
	/* allocated as Hyper-V does on demand: chunk 1's bitmap first, a block,
	 * then chunk 0's bitmap and the other blocks */
	static const struct run r[] = {
		{ 2509, 1, VXM_PB_PARTIALLY_PRESENT, 5 * MiB, false },
		{ 0, 1, VXM_PB_PARTIALLY_PRESENT, 8 * MiB, false },
		{ 256, 1, VXM_PB_PARTIALLY_PRESENT, 10 * MiB, false },
		{ 923, 1, VXM_PB_PARTIALLY_PRESENT, 12 * MiB, false },
		{ 1018, 1, VXM_PB_PARTIALLY_PRESENT, 14 * MiB, false },
		{ 1027, 1, VXM_PB_PARTIALLY_PRESENT, 16 * MiB, false },
		{ 4095, 1, VXM_PB_PARTIALLY_PRESENT, 18 * MiB, false },
	};
	char linkage[48], gs[VXM_GUID_STRLEN + 1];
	struct vxm_guid pl = guid_of(FXS_DIFF, 4);
	vxm_guid_fmt(&pl, gs);
	snprintf(linkage, sizeof(linkage), "{%s}", gs);
	const struct vxm_kv kv[] = {
		{ "parent_linkage", linkage },
		{ "absolute_win32_path", "D:\\Stand-ins\\Checkpoints\\Parent disk_0F1E2D3C.avhdx" },
		{ "relative_path", ".\\Parent disk_0F1E2D3C.avhdx" },
		{ "volume_path", "\\\\?\\Volume{5ca1ab1e-0000-4000-8000-000000000001}"
				 "\\Stand-ins\\Checkpoints\\Parent disk_0F1E2D3C.avhdx" },
		{ "parent_linkage2", "{00000000-0000-0000-0000-000000000000}" },
	};
	const struct spec s = { HYPERV("vhdxmerge stand-in for a Hyper-V checkpoint"),
				.pss = 4096, .vsize = 8192 * MiB, .bs = 2 * MiB, .seq = 11,
				.loc = kv, .nloc = 5, .runs = r, .nruns = sizeof(r) / sizeof(r[0]),
				.sb_off = { 7 * MiB, 4 * MiB }, .size = 20 * MiB };
	return build(fd, FXS_DIFF, &s, NULL);
}

/* Entry 0 has no descriptor; 1 and 2 set blocks ZERO; 3 (tail 0x1000)
 * makes block 0 present and asks for the 36 MiB file; 4 (tail 0x5000) adds
 * a third ZERO block.  A full replay applies 3 and 4; without 4, 1 to 3. */
static int logreplay(int fd)
{
	static const struct run hidden[] = { { 0, 1, VXM_PB_FULLY_PRESENT, 4 * MiB, true } };
	const struct spec s = { HYPERV("vhdxmerge stand-in for a Windows disk with a dirty log"),
				.pss = 4096, .vsize = 1024 * MiB, .bs = 32 * MiB, .seq = 4, .runs = hidden,
				.nruns = 1, .size = 36 * MiB };
	const struct run z1[] = { { 0, 1, VXM_PB_ZERO, 0, false } };
	const struct run z2[] = { { 0, 2, VXM_PB_ZERO, 0, false } };
	const struct run p3[] = { { 0, 1, VXM_PB_FULLY_PRESENT, 4 * MiB, false },
				  { 1, 2, VXM_PB_ZERO, 0, false } };
	const struct run p4[] = { { 0, 1, VXM_PB_FULLY_PRESENT, 4 * MiB, false },
				  { 1, 3, VXM_PB_ZERO, 0, false } };
	struct vxm_geom g;
	uint8_t sec[4][SECT];
	const uint64_t seq = 0x0123456789abc000ull;
	struct vxm_guid lg = guid_of(FXS_LOGREPLAY, 5);
	int ret;

	if (vxm_geom_init(&g, s.vsize, s.bs, s.lss, false, NULL))
		return -EINVAL;
	bat_sector(&g, z1, 1, 0, sec[0]);
	bat_sector(&g, z2, 1, 0, sec[1]);
	bat_sector(&g, p3, 2, 0, sec[2]);
	bat_sector(&g, p4, 2, 0, sec[3]);
	const struct lent e[] = {
		{ 0x0000, 0x0000, seq + 0, lg, 4 * MiB, 4 * MiB, NULL, 0 },
		{ 0x1000, 0x1000, seq + 1, lg, 4 * MiB, 4 * MiB, sec[0], s.bat_off },
		{ 0x3000, 0x1000, seq + 2, lg, 4 * MiB, 4 * MiB, sec[1], s.bat_off },
		{ 0x5000, 0x1000, seq + 3, lg, 4 * MiB, 36 * MiB, sec[2], s.bat_off },
		{ 0x7000, 0x5000, seq + 4, lg, 36 * MiB, 36 * MiB, sec[3], s.bat_off },
	};
	if ((ret = build(fd, FXS_LOGREPLAY, &s, &lg)))
		return ret;
	return put_log(fd, &s, e, 5);
}

/* Entries 1..6 carry other LogGuids (QEMU left them behind) and would each
 * make one more block of BAT sector 1 present; entry 7 makes block 17
 * (data at 29 MiB) present. */
static int dirtylog(int fd)
{
	static const struct run r[] = { { 0, 17, VXM_PB_FULLY_PRESENT, 8 * MiB, false },
					{ 17, 1, VXM_PB_FULLY_PRESENT, 29 * MiB, true } };
	const struct spec s = { .creator = "vhdxmerge stand-in for a QEMU disk with a dirty log",
				.lss = 512, .pss = 512, .required = 0, .log_off = 1 * MiB,
				.bat_off = 2 * MiB, .meta_off = 3 * MiB, .vsize = 10240 * MiB,
				.bs = 1 * MiB, .seq = 0x3e1a2b04, .runs = r, .nruns = 2,
				.size = 30 * MiB };
	struct vxm_geom g;
	uint8_t cur[SECT], stale[6][SECT];
	struct vxm_guid lg = guid_of(FXS_DIRTYLOG, 5);
	struct lent e[7];
	int ret;

	if (vxm_geom_init(&g, s.vsize, s.bs, s.lss, false, NULL))
		return -EINVAL;
	bat_sector(&g, r, 2, 0, cur);
	for (unsigned i = 0; i < 6; i++) {
		const struct run one[] = { { 512 + i, 1, VXM_PB_FULLY_PRESENT, (8 + i) * MiB, false } };
		bat_sector(&g, one, 1, SECT / 8, stale[i]);
		e[i] = (struct lent){ 0x2000 * i, 0x2000 * i, i + 1, guid_of(FXS_DIRTYLOG, 10 + i),
				      (24 + i) * MiB, (24 + i) * MiB, stale[i], s.bat_off + SECT };
	}
	e[6] = (struct lent){ 0xc000, 0xc000, 7, lg, 30 * MiB, 30 * MiB, cur, s.bat_off };
	if ((ret = build(fd, FXS_DIRTYLOG, &s, &lg)))
		return ret;
	return put_log(fd, &s, e, 7);
}

static int zeroblocks(int fd)
{
	static const struct run r[] = { { 0, 3, VXM_PB_FULLY_PRESENT, 4 * MiB, false },
					{ 3, 29, VXM_PB_ZERO, 0, false } };
	const struct spec s = { HYPERV("vhdxmerge stand-in for a Hyper-V 2012 dynamic disk"),
				.pss = 4096, .vsize = 1024 * MiB, .bs = 32 * MiB, .seq = 14, .runs = r,
				.nruns = 2, .size = 100 * MiB };
	return build(fd, FXS_ZEROBLOCKS, &s, NULL);
}

static int tied(int fd)
{
	static const struct run r[] = { { 0, 128, VXM_PB_FULLY_PRESENT, 4 * MiB, false } };
	const struct spec s = { HYPERV("vhdxmerge stand-in for a Disk2vhd disk"), .pss = 512,
				.tie = true, .meta_first = true, .vsize = 256 * MiB, .bs = 2 * MiB, .seq = 1, .runs = r, .nruns = 1,
				.size = 260 * MiB };
	return build(fd, FXS_TIED, &s, NULL);
}

int fxs_build(enum fxs_kind k, const char *path)
{
	static int (*const make[FXS_COUNT])(int) = {
		[FXS_FIXED] = fixed,	     [FXS_DYNAMIC] = dynamic,	  [FXS_DIFF] = diff,
		[FXS_LOGREPLAY] = logreplay, [FXS_DIRTYLOG] = dirtylog,	  [FXS_TIED] = tied,
		[FXS_ZEROBLOCKS] = zeroblocks,
	};
	if (k >= FXS_COUNT)
		return -EINVAL;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -errno;
	int ret = make[k](fd);
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}
