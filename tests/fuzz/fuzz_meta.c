/* tests/fuzz/fuzz_meta.c: libFuzzer target for the table parsers of vhdx/:
 * region table, metadata table and items, parent locator, header pair, BAT
 * entries.  Each parse that succeeds is checked against the invariants its
 * file promises, and re-encoded where the codec has an encoder.
 *
 * Input format: byte 0 selects the parser (modulo 5), the rest is its input:
 *   0 region table: byte 1 bit 0 recomputes the CRC; bytes 2.. are the table
 *     (zero padded to 64 KiB), parsed as copy 1 (file offset 0x30000)
 *   1 metadata region of 1 MiB at file offset 2 MiB: u16 LE table length t,
 *     t bytes of table at region offset 0 (zero padded to 64 KiB), the rest
 *     is placed at region offset 64 KiB (where Hyper-V packs the items)
 *   2 parent locator item: the bytes are the item, at file offset 0x210028
 *   3 header pair: byte 1 bit 0/1 recompute the CRC of header 1/2; then
 *     4 KiB of header 1 and 4 KiB of header 2 (zero padded)
 *   4 BAT: u64 virtual size, u32 block size, u32 sector size, u8 has_parent,
 *     u64 file size, then u64 entries from BAT index 0
 */
#include "fuzz_common.h"

static uint64_t u64at(const uint8_t *p, size_t n, size_t off)
{
	return fz_u32(p, n, off) | (uint64_t)fz_u32(p, n, off + 4) << 32;
}

static void region_table(const uint8_t *d, size_t n)
{
	static uint8_t buf[VXM_RT_SIZE], again[VXM_RT_SIZE];
	static struct vxm_region_table rt, rt2;
	struct vxm_err err = { 0 };

	if (n < 2)
		return;
	size_t len = n - 2 < VXM_RT_SIZE ? n - 2 : VXM_RT_SIZE;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, d + 2, len);
	if (d[1] & 1)
		fz_fix_crc(buf, VXM_RT_SIZE);
	int ret = vxm_region_parse(buf, VXM_RT_SIZE, VXM_RT1_OFF, &rt, &err);
	if (ret) {
		FZ_ASSERT(ret == -VXM_ECORRUPT || ret == -VXM_EUNSUPPORTED);
		FZ_ASSERT(err.code == ret && err.off >= VXM_RT1_OFF && err.off < VXM_RT2_OFF);
		return;
	}
	/* I1: one BAT, one metadata region, aligned, inside 2^64, disjoint */
	FZ_ASSERT(rt.bat >= 0 && rt.metadata >= 0 && rt.bat != rt.metadata);
	FZ_ASSERT((uint32_t)rt.bat < rt.count && (uint32_t)rt.metadata < rt.count);
	for (uint32_t i = 0; i < rt.count; i++) {
		const struct vxm_region *r = &rt.e[i];
		FZ_ASSERT(r->off >= VXM_MiB && r->off % VXM_MiB == 0 && r->len % VXM_MiB == 0);
		FZ_ASSERT(r->len && r->off + r->len > r->off);
		for (uint32_t j = 0; j < i; j++)
			FZ_ASSERT(r->off >= rt.e[j].off + rt.e[j].len ||
				  rt.e[j].off >= r->off + r->len);
	}
	vxm_region_encode(&rt, again);
	FZ_ASSERT(vxm_region_parse(again, VXM_RT_SIZE, VXM_RT1_OFF, &rt2, NULL) == 0);
	FZ_ASSERT(rt2.count == rt.count && rt2.bat == rt.bat && rt2.metadata == rt.metadata);
	FZ_ASSERT(memcmp(rt2.e, rt.e, rt.count * sizeof(rt.e[0])) == 0);
}

static void locator(const uint8_t *item, size_t len, uint64_t off)
{
	static struct vxm_locator loc, loc2;
	enum { STR = 1024 };
	/* every UTF-8 byte of a key or value becomes at most 2 bytes of UTF-16 */
	static uint8_t out[20 + 12 * VXM_LOCATOR_MAX_PAIRS + VXM_LOCATOR_MAX_PAIRS * 4 * STR];
	static char keys[VXM_LOCATOR_MAX_PAIRS][STR], vals[VXM_LOCATOR_MAX_PAIRS][STR];
	struct vxm_kv kv[VXM_LOCATOR_MAX_PAIRS];
	struct vxm_err err = { 0 };

	int ret = vxm_locator_parse(item, len, off, &loc, &err);
	if (ret) {
		FZ_ASSERT(ret == -VXM_ECORRUPT || ret == -VXM_EUNSUPPORTED);
		FZ_ASSERT(err.off >= off && err.off < off + (len ? len : 1) + 20);
		return;
	}
	/* I1, I2 */
	FZ_ASSERT(loc.count >= 1 && loc.has_linkage);
	FZ_ASSERT(loc.relative_path[0] || loc.volume_path[0] || loc.absolute_win32_path[0]);
	unsigned m = 0;
	bool fits = true;
	for (unsigned i = 0; i < loc.count; i++) {
		const struct vxm_locator_pair *p = &loc.kv[i];
		FZ_ASSERT(p->key_len && p->val_len && p->key_len % 2 == 0 && p->val_len % 2 == 0);
		FZ_ASSERT((uint64_t)p->key_off + p->key_len <= len &&
			  (uint64_t)p->val_off + p->val_len <= len);
		if (vxm_locator_key(&loc, item, i, keys[i], sizeof(keys[i])) ||
		    vxm_locator_value(&loc, item, i, vals[i], sizeof(vals[i]))) {
			fits = false; /* longer than the scratch strings: skip the round trip */
			continue;
		}
		kv[m].key = keys[i];
		kv[m].value = vals[i];
		m++;
	}
	if (!fits)
		return;
	/* Re-encode Hyper-V style and parse again: the same meaning. */
	long n = vxm_locator_encode(kv, m, out, sizeof(out));
	FZ_ASSERT(n > 0);
	FZ_ASSERT(vxm_locator_parse(out, (size_t)n, off, &loc2, NULL) == 0);
	FZ_ASSERT(loc2.count == loc.count && loc2.has_linkage && loc2.has_linkage2 == loc.has_linkage2);
	FZ_ASSERT(vxm_guid_eq(&loc2.parent_linkage, &loc.parent_linkage));
	FZ_ASSERT(vxm_guid_eq(&loc2.parent_linkage2, &loc.parent_linkage2));
	FZ_ASSERT(!strcmp(loc2.relative_path, loc.relative_path));
	FZ_ASSERT(!strcmp(loc2.volume_path, loc.volume_path));
	FZ_ASSERT(!strcmp(loc2.absolute_win32_path, loc.absolute_win32_path));
}

static void metadata(const uint8_t *d, size_t n)
{
	enum { REGION = 1 << 20, AT = 2 << 20 };
	static uint8_t region[REGION];
	static struct vxm_meta_table t;
	static size_t dirty_items;
	struct vxm_meta m;
	struct vxm_err err = { 0 };

	if (n < 3)
		return;
	size_t tl = fz_u16(d, n, 1);
	const uint8_t *table = d + 3, *items;
	if (tl > n - 3)
		tl = n - 3;
	if (tl > VXM_META_TABLE_SIZE)
		tl = VXM_META_TABLE_SIZE;
	items = table + tl;
	size_t il = n - 3 - tl;
	if (il > REGION - VXM_META_TABLE_SIZE)
		il = REGION - VXM_META_TABLE_SIZE;
	memset(region, 0, VXM_META_TABLE_SIZE);
	memset(region + VXM_META_TABLE_SIZE, 0, dirty_items);
	memcpy(region, table, tl);
	memcpy(region + VXM_META_TABLE_SIZE, items, il);
	dirty_items = il;

	int ret = vxm_meta_table_parse(region, REGION, AT, REGION, &t, &err);
	if (ret) {
		FZ_ASSERT(ret == -VXM_ECORRUPT && err.off >= AT && err.off < AT + VXM_META_TABLE_SIZE);
		return;
	}
	/* I1, I2 */
	for (unsigned i = 0; i < t.count; i++) {
		const struct vxm_meta_entry *e = &t.e[i];
		if (e->len)
			FZ_ASSERT(e->off >= VXM_META_TABLE_SIZE && e->off + (uint64_t)e->len <= REGION);
		for (unsigned j = 0; j < i; j++)
			FZ_ASSERT(!vxm_guid_eq(&e->id, &t.e[j].id) ||
				  (e->flags & VXM_META_IS_USER) != (t.e[j].flags & VXM_META_IS_USER));
	}
	memset(&err, 0, sizeof(err));
	ret = vxm_meta_parse(region, REGION, AT, &t, &m, &err);
	if (ret) {
		FZ_ASSERT(ret == -VXM_ECORRUPT || ret == -VXM_EUNSUPPORTED);
		FZ_ASSERT(err.off >= AT && err.off < AT + REGION);
		return;
	}
	/* I3 */
	FZ_ASSERT(m.block_size >= VXM_MIN_BLOCK_SIZE && m.block_size <= VXM_MAX_BLOCK_SIZE &&
		  !(m.block_size & (m.block_size - 1)));
	FZ_ASSERT(m.logical_sector_size == 512 || m.logical_sector_size == 4096);
	FZ_ASSERT(m.virtual_size && m.virtual_size <= VXM_MAX_VIRTUAL_SIZE &&
		  m.virtual_size % m.logical_sector_size == 0);
	FZ_ASSERT(m.has_parent == (m.locator >= 0));
	struct vxm_geom g;
	FZ_ASSERT(vxm_geom_init(&g, m.virtual_size, m.block_size, m.logical_sector_size,
				m.has_parent, NULL) == 0);
	if (m.locator >= 0) {
		const struct vxm_meta_entry *e = &t.e[m.locator];
		locator(region + e->off, e->len, AT + e->off);
	}
}

static void headers(const uint8_t *d, size_t n)
{
	static uint8_t h[2][VXM_HDR_SIZE];
	struct vxm_hdr_pair p;
	struct vxm_err err = { 0 };

	if (n < 2)
		return;
	for (int i = 0; i < 2; i++) {
		size_t from = 2 + (size_t)i * VXM_HDR_SIZE, len = 0;
		if (n > from)
			len = n - from < VXM_HDR_SIZE ? n - from : VXM_HDR_SIZE;
		memset(h[i], 0, VXM_HDR_SIZE);
		if (len)
			memcpy(h[i], d + from, len);
		if (d[1] & (1u << i))
			fz_fix_crc(h[i], VXM_HDR_SIZE);
	}
	int ret = vxm_hdr_select(h[0], h[1], &p, &err);
	if (ret) {
		FZ_ASSERT(ret == -VXM_ECORRUPT || ret == -VXM_EUNSUPPORTED);
		FZ_ASSERT(err.off >= VXM_HDR1_OFF && err.off < VXM_HDR2_OFF + VXM_HDR_SIZE);
		return;
	}
	/* I2: the current copy parsed, and no copy whose signature and CRC
	 * match (valid, fmt §1.3, whatever its other fields) has a larger
	 * sequence number */
	const struct vxm_hdr *c = &p.h[p.current];
	const uint8_t *ob = h[1 - p.current];
	bool other_valid = vxm_le32(ob) == 0x64616568u &&
			   vxm_le32(ob + 4) == vxm_crc32c_skip(ob, VXM_HDR_SIZE, 4);
	FZ_ASSERT(p.status[p.current] == 0);
	FZ_ASSERT(!other_valid || vxm_le64(ob + 8) < c->seq || (p.tie && p.current == 0));
	FZ_ASSERT(c->version == 1 && c->log_version == 0);
	FZ_ASSERT(c->log_off >= VXM_MiB && c->log_off % VXM_MiB == 0 && c->log_len &&
		  c->log_len % VXM_MiB == 0 && c->log_off + c->log_len > c->log_off);
	uint8_t again[VXM_HDR_SIZE];
	struct vxm_hdr back;
	vxm_hdr_encode(c, again);
	FZ_ASSERT(memcmp(again, h[p.current], VXM_HDR_SIZE) == 0);
	FZ_ASSERT(vxm_hdr_parse(again, VXM_HDR_SIZE, VXM_HDR1_OFF, &back, NULL) == 0);
	FZ_ASSERT(back.seq == c->seq);
}

static void bat(const uint8_t *d, size_t n)
{
	struct vxm_geom g;
	uint64_t vsize = u64at(d, n, 1), file_size = u64at(d, n, 18);
	uint32_t bs = fz_u32(d, n, 9), lss = fz_u32(d, n, 13);
	bool parent = n > 17 && (d[17] & 1);

	if (vxm_geom_init(&g, vsize, bs, lss, parent, NULL))
		return;
	FZ_ASSERT(g.spb * (uint64_t)g.lss == g.block_size && g.chunk_ratio >= 1);
	FZ_ASSERT(g.payload_blocks * g.block_size >= vsize);
	FZ_ASSERT(g.total_entries >= g.payload_blocks);
	for (uint64_t b = 0; b < g.payload_blocks && b < 4; b++) {
		uint64_t idx = vxm_geom_pb_index(&g, b);
		FZ_ASSERT(!vxm_geom_is_sb_index(&g, idx) && vxm_geom_block_of_index(&g, idx) == b);
	}
	for (size_t i = 0; 26 + 8 * i + 8 <= n && i < g.total_entries; i++) {
		uint64_t e = u64at(d, n, 26 + 8 * i);
		struct vxm_err err = { 0 };
		if (vxm_bat_check_entry(&g, i, e, 0x300000 + 8 * i, file_size, &err)) {
			FZ_ASSERT(err.code == -VXM_ECORRUPT && err.off == 0x300000 + 8 * i);
			continue;
		}
		unsigned st = vxm_bat_state(e);
		uint64_t off = vxm_bat_offset(e);
		if (vxm_geom_is_sb_index(&g, i)) {
			FZ_ASSERT(st == VXM_SB_NOT_PRESENT || st == VXM_SB_PRESENT);
			if (st == VXM_SB_PRESENT)
				FZ_ASSERT(parent && off >= VXM_MiB && off <= file_size &&
					  file_size - off >= VXM_SB_BLOCK_SIZE);
			continue;
		}
		/* I2..I4 of vhdx/bat.c */
		FZ_ASSERT(st != 4 && st != 5);
		if (st == VXM_PB_NOT_PRESENT || st == VXM_PB_ZERO)
			FZ_ASSERT(off == 0);
		if (st == VXM_PB_PARTIALLY_PRESENT)
			FZ_ASSERT(parent);
		if (st == VXM_PB_FULLY_PRESENT || st == VXM_PB_PARTIALLY_PRESENT) {
			uint64_t bytes = vxm_geom_block_bytes(&g, vxm_geom_block_of_index(&g, i));
			FZ_ASSERT(off >= VXM_MiB && off <= file_size && file_size - off >= bytes);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	if (n < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		region_table(data, n);
		break;
	case 1:
		metadata(data, n);
		break;
	case 2:
		if (n - 1 <= 64 * 1024)
			locator(data + 1, n - 1, 0x210028);
		break;
	case 3:
		headers(data, n);
		break;
	case 4:
		bat(data, n);
		break;
	}
	return 0;
}
