/* tests/fuzz/fuzz_merge_input.h: the input side of fuzz_merge.c: the chain
 * an input describes, built with tests/lib/memvhdx, the structural
 * mutations applied to its files (checksums recomputed unless asked not to),
 * their undo log, and a custom mutator for libFuzzer.
 *
 * Input format (bytes past the end read as zero; the empty input is a
 * two-layer 1 MiB chain, merged into its base):
 *   [0] layers: 2 + b % 3 (base + differencing children)
 *   [1] geometry: bits 0-3 virtual size in MiB - 1, bit 4 2 MiB blocks (else
 *       1 MiB), bit 5 4096-byte sectors (else 512), bits 6-7 extra sectors
 *       past the last MiB (0, 1, 3, 37)
 *   [2] operation: bits 0-1 0 merge into the base, 1 merge --into a middle
 *       layer (the base with 2 layers), 2 convert, 3 convert then merge into
 *       the base; bit 2 TOP has a child (child.avhdx); bit 3 --keep-merged;
 *       bit 4 convert --fixed; bits 5-6 convert block size (TOP's, 1, 2,
 *       4 MiB); bit 7 the destination has another child (sib.avhdx: a
 *       checkpoint the merge would invalidate)
 *   [3] bits 0-1 which middle layer (1 + b % (layers - 2)); bit 2 the child
 *       is given with --rebase
 *   then FM_SEC bytes per file (layers base first, then child, sibling):
 *       [0] bit 0 fixed (base only)  [1] payload fill  [2] bitmap shift
 *       [3..22] block states: b & 7, 4/5 -> 6/7 (FULLY/PARTIALLY_PRESENT)
 *               unless b & 0x80 (then the reserved value); PARTIALLY_PRESENT
 *               becomes FULLY_PRESENT in the base unless b & 0x80
 *       [23..42] bitmap pattern per block: sector s of a block is present
 *               when bit ((s >> shift % 10) & 7) of its pattern is set
 *   then 8-byte mutations until the end (at most FM_MAX_MUT):
 *       [0] op (table ops[] below, b & 15); bit 7 leave the checksum of
 *           what it changes broken  [1] file (b % files)  [2] a  [3] b
 *       [4..7] v, u32 LE.  See mutate() for what a, b and v select.
 * tests/fuzz/mkseed_merge.py writes seeds in this format.
 */
#ifndef VXM_FUZZ_MERGE_INPUT_H
#define VXM_FUZZ_MERGE_INPUT_H

#define FM_MAX_FILES 6
#define FM_MAX_BLOCKS 20
#define FM_SEC 43
#define FM_MAX_MUT 64
/* memvhdx's layout */
#define FM_LOG_OFF (1 * MiB)
#define FM_META_OFF (2 * MiB)
#define FM_BAT_OFF (3 * MiB)
#define FM_LOC_OFF (512 * 1024) /* where a rewritten locator goes in the metadata region */

struct fm_file {
	char name[16];
	int parent;                 /* file index, -1: none */
	uint8_t *buf;               /* mv_build's bytes, mutated; restored after the run */
	size_t len, cap;
	uint8_t key[4 + FM_SEC];    /* what buf was built from (cache, see build_file) */
	size_t built_len;
	uint8_t *pnz;               /* non-zero FM_PIECE pieces of the built bytes */
	uint8_t *touch, *ptouch;    /* pieces this run / the last run changed */
	size_t touch_n;
	bool on_disk;               /* the file disk_name holds the last run's bytes */
	char disk_name[16];
	struct mv_spec sp;
	struct vxm_geom g;
	uint8_t states[FM_MAX_BLOCKS + 1];
	struct vxm_guid dwg;        /* DataWriteGuid as last written */
	struct vxm_guid link, link2;
	bool has_link2;
	char rel[48], abs[64];
	bool hdr_broken, rt_broken;
	bool log_on;
	struct vxm_guid log_guid;
	uint32_t log_pos;
	uint64_t log_seq;
};

static struct fm_file F[FM_MAX_FILES];
static unsigned nfiles, nlayers;

static uint8_t in_at(const uint8_t *d, size_t n, size_t i)
{
	return i < n ? d[i] : 0;
}

/* ---- building the files ----------------------------------------------------------- */

static void make_guid(struct vxm_guid *g, uint8_t tag, uint32_t v)
{
	memset(g->b, 0x5a, 16);
	g->b[0] = tag;
	vxm_put_le32(g->b + 4, v);
	g->b[15] = 0xd0;
}

/* The file of slot i.  mv_build writes every payload byte and allocates
 * tens of MiB: the bytes built for the same description (geometry, slot,
 * parent, section) are kept from run to run, the mutations undone
 * (undo_all) instead. */
static bool build_file(unsigned i, const uint8_t *sec, uint8_t geo, uint64_t vsize, uint32_t bs,
		       uint32_t lss)
{
	struct fm_file *f = &F[i];
	struct mv_spec *s = &f->sp;
	uint8_t key[sizeof(f->key)] = { geo, (uint8_t)i, (uint8_t)(f->parent + 1), 1 };

	memcpy(key + 4, sec, FM_SEC);
	f->hdr_broken = f->rt_broken = f->log_on = f->has_link2 = false;
	f->rel[0] = f->abs[0] = 0;

	s->vsize = vsize;
	s->block_size = bs;
	s->lss = lss;
	s->has_parent = f->parent >= 0;
	s->fixed = !s->has_parent && (sec[0] & 1);
	s->fill = (uint8_t)(sec[1] + 37 * i); /* layers never share payload bytes */
	make_guid(&f->dwg, (uint8_t)(i + 1), 0);
	s->data_write = f->dwg;
	if (s->has_parent) {
		f->link = F[f->parent].dwg;
		char pname[sizeof(f->name)];
		memcpy(pname, F[f->parent].name, sizeof(pname));
		snprintf(f->rel, sizeof(f->rel), ".\\%s", pname);
		s->parent_linkage = f->link;
		s->relative_path = f->rel;
	}
	if (vxm_geom_init(&f->g, vsize, bs, lss, s->has_parent, NULL)) {
		f->key[3] = 0;
		return false;
	}
	for (uint64_t b = 0; b < f->g.payload_blocks; b++) {
		uint8_t v = sec[3 + b], st = v & 7;
		if ((st == 4 || st == 5) && !(v & 0x80))
			st += 2;
		if (!s->has_parent && st == VXM_PB_PARTIALLY_PRESENT && !(v & 0x80))
			st = VXM_PB_FULLY_PRESENT;
		f->states[b] = st;
	}
	uint64_t nsec = vsize / lss, spb = f->g.spb;
	s->states = f->states;
	if (f->buf && !memcmp(f->key, key, sizeof(key))) {
		f->len = f->built_len;
		return true;
	}
	uint8_t *bits = calloc((nsec + 7) / 8 + 1, 1);
	if (!bits)
		abort();
	unsigned shift = sec[2] % 10;
	for (uint64_t sct = 0; sct < nsec; sct++) {
		uint8_t pat = sec[23 + sct / spb];
		if ((pat >> (((sct % spb) >> shift) & 7)) & 1)
			vxm_bit_set(bits, sct);
	}
	free(f->buf);
	s->bits = bits;
	f->buf = mv_build(s, &f->len);
	free(bits);
	s->bits = NULL;
	f->cap = f->built_len = f->len;
	f->on_disk = false;
	free(f->pnz);
	f->pnz = f->buf ? fm_nonzero(f->buf, f->len) : NULL;
	memcpy(f->key, key, sizeof(key));
	if (!f->buf)
		f->key[3] = 0; /* never matches */
	return f->buf != NULL;
}

/* ---- mutations ----------------------------------------------------------------------- */

static bool in_file(const struct fm_file *f, uint64_t off, uint64_t n)
{
	return off <= f->len && n <= f->len - off;
}

static uint64_t rd64(const struct fm_file *f, uint64_t off)
{
	return in_file(f, off, 8) ? vxm_le64(f->buf + off) : 0;
}

/* Undo log: every change to a file's bytes or length, oldest first, so
 * that undo_all() gives back mv_build's bytes.  Records: u8 file, u64 off,
 * u32 n, then n old bytes; n == UINT32_MAX records an old length (off). */
static uint8_t *undo;
static size_t undo_len, undo_cap;

/* Marks the pieces of [from, to) as differing from the built bytes. */
static void touch_range(struct fm_file *f, uint64_t from, uint64_t to)
{
	size_t need = (size_t)(to / FM_PIECE + 2);
	if (need > f->touch_n) {
		f->touch = realloc(f->touch, need);
		f->ptouch = realloc(f->ptouch, need);
		if (!f->touch || !f->ptouch)
			abort();
		memset(f->touch + f->touch_n, 0, need - f->touch_n);
		memset(f->ptouch + f->touch_n, 0, need - f->touch_n);
		f->touch_n = need;
	}
	for (uint64_t k = from / FM_PIECE; k * FM_PIECE < to; k++)
		f->touch[k] = 1;
}

static void undo_rec(const struct fm_file *f, uint64_t off, uint32_t n, const uint8_t *old)
{
	size_t need = 13 + (n == UINT32_MAX ? 0 : n);
	if (undo_len + need > undo_cap) {
		undo_cap = (undo_len + need) * 2;
		undo = realloc(undo, undo_cap);
		if (!undo)
			abort();
	}
	if (n != UINT32_MAX)
		touch_range((struct fm_file *)f, off, off + n);
	undo[undo_len] = (uint8_t)(f - F);
	vxm_put_le64(undo + undo_len + 1, off);
	vxm_put_le32(undo + undo_len + 9, n);
	if (n != UINT32_MAX)
		memcpy(undo + undo_len + 13, old, n);
	undo_len += need;
}

/* Replays the log backwards (a record's old bytes are only right once every
 * later record is undone). */
static void undo_all(void)
{
	static size_t *at, cap;
	size_t n = 0;
	for (size_t o = 0; o < undo_len; n++) {
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			at = realloc(at, cap * sizeof(*at));
			if (!at)
				abort();
		}
		at[n] = o;
		uint32_t k = vxm_le32(undo + o + 9);
		o += 13 + (k == UINT32_MAX ? 0 : k);
	}
	while (n--) {
		const uint8_t *r = undo + at[n];
		struct fm_file *f = &F[r[0]];
		uint64_t off = vxm_le64(r + 1);
		uint32_t k = vxm_le32(r + 9);
		if (k == UINT32_MAX)
			f->len = off;
		else
			memcpy(f->buf + off, r + 13, k);
	}
	undo_len = 0;
}

static void put(struct fm_file *f, uint64_t off, const void *src, size_t n)
{
	if (!in_file(f, off, n))
		return;
	undo_rec(f, off, (uint32_t)n, f->buf + off);
	memcpy(f->buf + off, src, n);
}

static void put8(struct fm_file *f, uint64_t off, uint8_t v)
{
	put(f, off, &v, 1);
}

static void xor8(struct fm_file *f, uint64_t off, uint8_t v)
{
	if (in_file(f, off, 1))
		put8(f, off, f->buf[off] ^ v);
}

static void wr64(struct fm_file *f, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	vxm_put_le64(b, v);
	put(f, off, b, 8);
}

static void wr32(struct fm_file *f, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	vxm_put_le32(b, v);
	put(f, off, b, 4);
}

static void wr16(struct fm_file *f, uint64_t off, uint16_t v)
{
	uint8_t b[2];
	vxm_put_le16(b, v);
	put(f, off, b, 2);
}

static void resize(struct fm_file *f, size_t nl)
{
	undo_rec(f, f->len, UINT32_MAX, NULL);
	/* what the file holds there changes (a cut, or zeros) */
	touch_range(f, nl < f->len ? nl : f->len, nl < f->len ? f->len : nl);
	if (nl > f->cap) {
		uint8_t *nb = realloc(f->buf, nl);
		if (!nb)
			abort();
		f->buf = nb;
		f->cap = nl;
	}
	size_t old = f->len;
	f->len = nl;
	if (nl > old) { /* growth reads zeros, even where a truncation cut */
		static const uint8_t zero[65536];
		for (size_t o = old; o < nl; o += sizeof(zero))
			put(f, o, zero, nl - o < sizeof(zero) ? nl - o : sizeof(zero));
	}
}

/* CRC at offset 4 of the structure at off, over len bytes. */
static void fix_crc(struct fm_file *f, uint64_t off, size_t len)
{
	if (in_file(f, off, len))
		wr32(f, off + 4, vxm_crc32c_skip(f->buf + off, len, 4));
}

static uint64_t round_mib(uint64_t x)
{
	return (x + MiB - 1) / MiB * MiB;
}

/* The current header slot (larger sequence number), as a reader picks it
 * when both are valid. */
static uint64_t cur_hdr(const struct fm_file *f)
{
	return rd64(f, VXM_HDR2_OFF + 8) > rd64(f, VXM_HDR1_OFF + 8) ? VXM_HDR2_OFF : VXM_HDR1_OFF;
}

/* Metadata table entry of item id, or 0. */
static uint64_t meta_entry(const struct fm_file *f, const struct vxm_guid *id)
{
	if (!in_file(f, FM_META_OFF, VXM_META_TABLE_SIZE))
		return 0;
	unsigned count = vxm_le16(f->buf + FM_META_OFF + 10);
	for (unsigned i = 0; i < count && i < VXM_MAX_TABLE_ENTRIES; i++) {
		uint64_t e = FM_META_OFF + 32 + 32ull * i;
		if (!memcmp(f->buf + e, id->b, 16))
			return e;
	}
	return 0;
}

static uint64_t meta_item(const struct fm_file *f, const struct vxm_guid *id)
{
	uint64_t e = meta_entry(f, id);
	return e ? FM_META_OFF + vxm_le32(f->buf + e + 16) : 0;
}

static uint64_t bat_target(const struct fm_file *f, unsigned kind, uint32_t v)
{
	const struct vxm_geom *g = &f->g;
	switch (kind & 7) {
	case 0: return 0;
	case 1: return (v % (f->len / MiB + 8)) * MiB;
	case 2: return vxm_bat_offset(rd64(f, FM_BAT_OFF + 8 * (v % g->total_entries)));
	case 3: return FM_LOG_OFF;
	case 4: return FM_META_OFF;
	case 5: return FM_BAT_OFF;
	case 6: return round_mib(f->len) - MiB; /* a block reaching past EOF */
	default: return round_mib(f->len) + (v % 4) * MiB;
	}
}

static void rewrite_locator(struct fm_file *f)
{
	char l1[48], l2[48], g[VXM_GUID_STRLEN + 1];
	struct vxm_kv kv[4];
	unsigned n = 0;
	uint8_t tmp[8192];

	snprintf(l1, sizeof(l1), "{%s}", vxm_guid_fmt(&f->link, g));
	kv[n++] = (struct vxm_kv){ "parent_linkage", l1 };
	if (f->has_link2) {
		snprintf(l2, sizeof(l2), "{%s}", vxm_guid_fmt(&f->link2, g));
		kv[n++] = (struct vxm_kv){ "parent_linkage2", l2 };
	}
	if (f->rel[0])
		kv[n++] = (struct vxm_kv){ "relative_path", f->rel };
	if (f->abs[0])
		kv[n++] = (struct vxm_kv){ "absolute_win32_path", f->abs };
	long len = vxm_locator_encode(kv, n, tmp, sizeof(tmp));
	uint64_t e = meta_entry(f, &VXM_GUID_META_PARENT_LOCATOR);
	if (len < 0 || !e || !in_file(f, FM_META_OFF + FM_LOC_OFF, (uint64_t)len))
		return;
	put(f, FM_META_OFF + FM_LOC_OFF, tmp, (size_t)len);
	wr32(f, e + 16, FM_LOC_OFF);
	wr32(f, e + 20, (uint32_t)len);
}

static void set_dwg(struct fm_file *f, const struct vxm_guid *g, unsigned which)
{
	for (int h = 0; h < 2; h++)
		if (which & (1u << h))
			put(f, (h ? VXM_HDR2_OFF : VXM_HDR1_OFF) + 32, g->b, 16);
	if (which == 3)
		f->dwg = *g;
}

/* One log entry appended to the file's active sequence (LogGuid set). */
static void add_log_entry(unsigned fi, uint8_t a, uint8_t b, uint32_t v, bool broken)
{
	struct fm_file *f = &F[fi];
	uint64_t h = cur_hdr(f);
	uint64_t log_off = rd64(f, h + 72);
	uint32_t log_len = in_file(f, h + 68, 4) ? vxm_le32(f->buf + h + 68) : 0;
	if (!log_len || log_len % VXM_LOG_SECTOR || !in_file(f, log_off, log_len))
		return;

	static uint8_t sector[VXM_LOG_SECTOR];
	uint64_t t;
	const struct vxm_geom *g = &f->g;
	switch (a % 8) {
	case 0: /* a BAT sector with one entry replaced */
		t = FM_BAT_OFF + (v % ((g->total_entries * 8 + 4095) / 4096)) * 4096;
		break;
	case 1: t = FM_META_OFF + (v % 256) * 4096; break;
	case 2: t = bat_target(f, 2, g->chunk_ratio) + (v % 256) * 4096; break; /* SB block */
	case 3: t = vxm_bat_offset(rd64(f, FM_BAT_OFF + 8 * vxm_geom_pb_index(g, v % g->payload_blocks))) +
		    ((v >> 8) % 256) * 4096;
		break;
	case 4: t = (v % 5) * 65536ull; break; /* identifier, headers, region tables */
	case 5: t = log_off + (v % (log_len / 4096)) * 4096; break;
	case 6: t = (f->len + 4095) / 4096 * 4096 + (v % 4096) * 4096; break;
	default: t = (v % (f->len / 4096 + 64)) * 4096; break;
	}
	memset(sector, 0, sizeof(sector));
	if (in_file(f, t, 4096))
		memcpy(sector, f->buf + t, 4096);
	if (a % 8 == 0)
		vxm_put_le64(sector + 8 * ((b >> 1) % 512),
			     vxm_bat_entry((v >> 8) & 7, ((v >> 11) % (f->len / MiB + 4)) * MiB));
	else if (a % 8 == 1)
		vxm_put_le32(sector + 4 * ((b >> 1) % 1024), v);
	else
		for (unsigned i = 0; i < 4096; i += 64)
			sector[i] ^= (uint8_t)(b | 1);
	struct vxm_log_update u = { .file_off = t, .data = sector, .len = 4096 };
	if (b & 1) {
		u.data = NULL;
		u.len = 4096ull * (1 + (v >> 24) % 4);
	}
	if (!f->log_on) {
		f->log_on = true;
		make_guid(&f->log_guid, 0x4c, fi);
		f->log_pos = 0;
		f->log_seq = 1;
	}
	struct vxm_log_entry e = { .pos = f->log_pos, .tail = 0, .seq = f->log_seq, .guid = f->log_guid,
				   .flushed_file_offset = f->len, .last_file_offset = f->len };
	if (b & 0x80)
		e.last_file_offset += ((v >> 16) % 8) * MiB;
	uint32_t size = vxm_log_entry_size(&u, 1);
	static uint8_t out[5 * 4096 + 4096];
	if (size > sizeof(out) || (uint64_t)f->log_pos + size > log_len ||
	    vxm_log_entry_encode(&e, &u, 1, out, sizeof(out), NULL))
		return;
	if (broken)
		out[4] ^= 0x01;
	put(f, log_off + f->log_pos, out, size);
	f->log_pos += size;
	f->log_seq++;
	for (int k = 0; k < 2; k++)
		put(f, (k ? VXM_HDR2_OFF : VXM_HDR1_OFF) + 48, f->log_guid.b, 16);
}

enum { M_BAT, M_DUP, M_BITMAP, M_REGION, M_META, M_LOG, M_LINK, M_HEADER, M_SIZE, M_RAW };
static const uint8_t ops[16] = { M_BAT, M_BAT, M_DUP, M_BITMAP, M_REGION, M_META, M_META, M_LOG,
				 M_LOG, M_LINK, M_HEADER, M_SIZE, M_RAW, M_BAT, M_LOG, M_BITMAP };

static void mutate(const uint8_t *r)
{
	unsigned op = ops[r[0] & 15], fi = r[1] % nfiles;
	bool broken = r[0] & 0x80;
	uint8_t a = r[2], b = r[3];
	uint32_t v = vxm_le32(r + 4);
	struct fm_file *f = &F[fi];
	const struct vxm_geom *g = &f->g;

	switch (op) {
	case M_BAT: { /* any entry (SB entries too): state b & 7, a target picked by b >> 4 */
		uint64_t idx = a % g->total_entries;
		uint64_t e = vxm_bat_entry(b & 7, bat_target(f, b >> 4, v));
		if (b & 8)
			e |= ((uint64_t)(v >> 16) << 3) & VXM_BAT_RESERVED_MASK;
		wr64(f, FM_BAT_OFF + 8 * idx, e);
		break;
	}
	case M_DUP: { /* block a takes block b's payload */
		uint64_t ia = vxm_geom_pb_index(g, a % g->payload_blocks);
		uint64_t e = rd64(f, FM_BAT_OFF + 8 * vxm_geom_pb_index(g, b % g->payload_blocks));
		unsigned st = vxm_bat_state(e);
		if ((v & 1) || (st != VXM_PB_FULLY_PRESENT && st != VXM_PB_PARTIALLY_PRESENT))
			st = (v & 2) && f->sp.has_parent ? VXM_PB_PARTIALLY_PRESENT : VXM_PB_FULLY_PRESENT;
		wr64(f, FM_BAT_OFF + 8 * ia, vxm_bat_entry(st, vxm_bat_offset(e)));
		break;
	}
	case M_BITMAP: { /* sector bits of chunk 0, wherever its SB entry points */
		uint64_t sbe = rd64(f, FM_BAT_OFF + 8 * vxm_geom_sb_index(g, 0));
		uint64_t sb = vxm_bat_offset(sbe), nsec = g->virtual_size / g->lss;
		if (!f->sp.has_parent || !nsec)
			break;
		uint64_t start = v % nsec, cnt = (1ull + a) * ((b & 4) ? g->spb / 8 : 1);
		if ((b & 3) == 3) { /* a whole block's bits */
			start = start / g->spb * g->spb;
			cnt = g->spb;
		}
		uint64_t end = start + cnt < nsec ? start + cnt : nsec;
		uint64_t from = sb + start / 8, to = sb + (end + 7) / 8;
		if (!in_file(f, from, to - from))
			break;
		/* one undo record for the whole byte range */
		static uint8_t bm[VXM_SB_BLOCK_SIZE];
		memcpy(bm, f->buf + from, to - from);
		for (uint64_t s = start; s < end; s++) {
			uint8_t *p = bm + (s / 8 - start / 8), m = (uint8_t)(1u << (s & 7));
			switch (b & 3) {
			case 0: *p ^= m; break;
			case 1: *p |= m; break;
			case 2: *p &= (uint8_t)~m; break;
			default: *p = (a & 1) ? (uint8_t)(*p | m) : (uint8_t)(*p & ~m); break;
			}
		}
		put(f, from, bm, to - from);
		break;
	}
	case M_REGION: { /* entry a & 1 (BAT, metadata) of one or both tables */
		for (int t = 0; t < 2; t++) {
			if ((b & 3) == 1 + (1 - t))
				continue; /* b & 3 == 1: RT1 only, 2: RT2 only */
			uint64_t rt = t ? VXM_RT2_OFF : VXM_RT1_OFF, e = rt + 16 + 32 * (a & 1);
			switch ((a >> 1) % 5) {
			case 0: wr64(f, e + 16, (b & 4) ? v : (v % 64) * MiB); break;
			case 1: wr32(f, e + 24, (b & 4) ? v : (uint32_t)((v % 4 + 1) * MiB)); break;
			case 2: wr32(f, e + 28, v); break;
			case 3: xor8(f, e + v % 16, (uint8_t)((v >> 8) | 1)); break;
			default: wr32(f, rt + 8, v % 4); break;
			}
		}
		f->rt_broken |= broken;
		break;
	}
	case M_META: {
		uint64_t p = 0, e;
		uint32_t lss = f->sp.lss;
		switch (a % 7) {
		case 0:
			if ((p = meta_item(f, &VXM_GUID_META_VIRTUAL_SIZE)))
				wr64(f, p, (b & 1) ? v % (64 * MiB)
						   : (v % 32 + 1) * MiB + ((v >> 8) % 4) * lss);
			break;
		case 1:
			if ((p = meta_item(f, &VXM_GUID_META_FILE_PARAMS)))
				wr32(f, p, (b & 1) ? v : 1u << (20 + v % 9));
			break;
		case 2:
		case 3:
			p = meta_item(f, a % 7 == 2 ? &VXM_GUID_META_LOGICAL_SECTOR
						    : &VXM_GUID_META_PHYSICAL_SECTOR);
			if (p)
				wr32(f, p, (b & 1) ? v : (v & 1) ? 4096 : 512);
			break;
		case 4:
			if ((p = meta_item(f, &VXM_GUID_META_FILE_PARAMS)))
				wr32(f, p + 4, (b & 1) ? v : v & 3);
			break;
		default: { /* a table entry: offset, length, flags or id */
			if (!in_file(f, FM_META_OFF, 64))
				break;
			unsigned count = vxm_le16(f->buf + FM_META_OFF + 10);
			if (!count)
				break;
			e = FM_META_OFF + 32 + 32ull * (b % (count < 8 ? count : 8));
			switch (v & 3) {
			case 0: wr32(f, e + 16, (v >> 2) % (uint32_t)MiB); break;
			case 1: wr32(f, e + 20, (v >> 2) % 65536); break;
			case 2: wr32(f, e + 24, (v >> 2) & 7); break;
			default: xor8(f, e + (v >> 2) % 16, (uint8_t)((v >> 8) | 1)); break;
			}
		}
		}
		break;
	}
	case M_LOG:
		add_log_entry(fi, a, b, v, broken);
		f->hdr_broken |= broken && (a & 0x40); /* mostly the entry's CRC alone */
		break;
	case M_LINK: {
		struct vxm_guid gd;
		char oname[16]; /* o may be f */
		snprintf(oname, sizeof(oname), "%s", F[b % nfiles].name);
		struct vxm_guid odwg = F[b % nfiles].dwg;
		switch (a % 6) {
		case 0: make_guid(&f->link, 0x77, v); break;
		case 1: f->link = odwg; break;
		case 2: f->link2 = odwg; f->has_link2 = !(v & 1) || !f->has_link2; break;
		case 3:
			if (v & 1)
				f->rel[0] = 0;
			else
				snprintf(f->rel, sizeof(f->rel), ".\\%s", oname);
			break;
		case 4: /* this file's DataWriteGuid: in one header or both */
			make_guid(&gd, (uint8_t)(0x80 | fi), v);
			set_dwg(f, &gd, 1 + (v >> 8) % 3);
			f->hdr_broken |= broken;
			break;
		default:
			f->rel[0] = 0;
			snprintf(f->abs, sizeof(f->abs), "C:\\VMs\\%s", oname);
			if (v & 1)
				for (char *c = f->abs + 7; *c; c++)
					*c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
			break;
		}
		if (a % 6 != 4 && f->sp.has_parent)
			rewrite_locator(f);
		break;
	}
	case M_HEADER:
		for (int k = 0; k < 2; k++) {
			if ((a & 3) == (unsigned)(1 - k))
				continue; /* a & 3 == 0: header 1 only, 1: header 2 only */
			uint64_t h = k ? VXM_HDR2_OFF : VXM_HDR1_OFF;
			switch ((a >> 2) % 5) {
			case 0: wr64(f, h + 8, (b & 1) ? v : rd64(f, h + 8) + v % 4); break;
			case 1:
				wr64(f, h + 72, (v % 8) * MiB);
				wr32(f, h + 68, (uint32_t)(((v >> 8) % 4) * MiB));
				break;
			case 2:
				wr16(f, h + 64, (uint16_t)((v >> 2) & 1));
				wr16(f, h + 66, (uint16_t)(v & 3));
				break;
			case 3: xor8(f, h + 32 + v % 16, (uint8_t)((v >> 8) | 1)); break;
			default:
				{
					struct vxm_guid lg;
					make_guid(&lg, 0x4d, v);
					put(f, h + 48, lg.b, 16);
				}
				break;
			}
		}
		f->hdr_broken |= broken;
		break;
	case M_SIZE: {
		size_t nl;
		if (b & 1) {
			uint64_t cut = (v % (f->len / 4096 + 1)) * 4096;
			nl = f->len - (size_t)cut;
		} else {
			nl = f->len + (size_t)(v % 17) * 256 * 1024;
		}
		resize(f, nl);
		break;
	}
	default: /* M_RAW */
		if (f->len) {
			uint64_t off = v % f->len;
			put8(f, off, a);
			if (off + 1 < f->len)
				put8(f, off + 1, b);
		}
		break;
	}
}

#ifdef FZ_LIBFUZZER
/* Structure-aware mutations: keep the 8-byte records aligned (libFuzzer's
 * byte insertions shift every later record), add records with fields in
 * range, and otherwise let libFuzzer mutate. */
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed);

static uint64_t xorshift(uint64_t *r)
{
	*r ^= *r << 13;
	*r ^= *r >> 7;
	*r ^= *r << 17;
	return *r;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed)
{
	uint64_t r = seed * 0x9E3779B97F4A7C15ull + 1;
#define RND() xorshift(&r)
	unsigned choice = (unsigned)(RND() % 8);
	if (choice < 1 || size < 4)
		return LLVMFuzzerMutate(data, size, max);
	unsigned nf = 2 + data[0] % 3 + !!(data[2] & 4) + !!(data[2] & 0x80);
	size_t rs = 4 + nf * FM_SEC;
	/* libFuzzer's own mutations on the records alone: a new chain
	 * description costs a rebuild (build_file) */
	if (choice < 3 && size > rs && max > rs)
		return rs + LLVMFuzzerMutate(data + rs, size - rs, max - rs);
	if (size < rs) {
		if (max < rs)
			return LLVMFuzzerMutate(data, size, max);
		memset(data + size, 0, rs - size);
		size = rs;
	}
	size_t nrec = (size - rs) / 8;
	size = rs + nrec * 8;
	switch (choice) {
	case 3: /* a new record */
	case 4:
		if (size + 8 <= max && nrec < FM_MAX_MUT) {
			uint8_t *p = data + size;
			p[0] = (uint8_t)RND();
			p[1] = (uint8_t)(RND() % nf);
			p[2] = (uint8_t)RND();
			p[3] = (uint8_t)RND();
			uint64_t x = RND();
			vxm_put_le32(p + 4, (x >> 63) ? (uint32_t)x % 64 : (uint32_t)x);
			size += 8;
		}
		break;
	case 5: /* one field of a record */
		if (nrec) {
			uint8_t *p = data + rs + 8 * (RND() % nrec);
			unsigned k = (unsigned)(RND() % 8);
			uint64_t x = RND();
			p[k] = (x & 1) ? (uint8_t)(p[k] + 1 + (x >> 8) % 4) : (uint8_t)(x >> 16);
		}
		break;
	case 6: /* drop a record */
		if (nrec) {
			size_t k = RND() % nrec;
			memmove(data + rs + 8 * k, data + rs + 8 * (k + 1), 8 * (nrec - k - 1));
			size -= 8;
		}
		break;
	default: /* a byte of the chain's description */
		{
			size_t at = RND() % rs;
			data[at] = (uint8_t)RND();
		}
		break;
	}
#undef RND
	return size;
}
#endif

#endif
