/* tests/vhdx/test_codec.c: the pure codec, bytes in and structs out. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhdx/vhdx.h"
#include "vhdx/endian.h"

static void crc32c_has_the_castagnoli_check_value_on_both_paths(void **state)
{
	(void)state;
	assert_int_equal(vxm_crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(vxm_crc32c_sw(0, "123456789", 9), 0xE3069283u);
	/* chaining equals one pass; hardware equals software on odd lengths
	 * and alignments */
	uint8_t buf[4099];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len + off <= sizeof(buf); len += 509) {
			uint32_t a = vxm_crc32c(0, buf + off, len);
			assert_int_equal(a, vxm_crc32c_sw(0, buf + off, len));
			uint32_t b = vxm_crc32c(vxm_crc32c(0, buf + off, len / 3), buf + off + len / 3,
						len - len / 3);
			assert_int_equal(a, b);
		}
}

static void guid_text_round_trips_in_microsoft_byte_order(void **state)
{
	(void)state;
	char s[40];
	/* fmt §1.5: BAT GUID bytes on disk */
	static const uint8_t disk[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
					  0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
	assert_memory_equal(VXM_GUID_REGION_BAT.b, disk, 16);
	assert_string_equal(vxm_guid_fmt(&VXM_GUID_REGION_BAT, s), "2dc27766-f623-4200-9d64-115e9bfd4a08");
	struct vxm_guid g;
	assert_int_equal(vxm_guid_parse("{2DC27766-F623-4200-9D64-115E9BFD4A08}", 38, &g), 0);
	assert_true(vxm_guid_eq(&g, &VXM_GUID_REGION_BAT));
	assert_int_equal(vxm_guid_parse("2dc27766-f623-4200-9d64-115e9bfd4a0", 35, &g), -EINVAL);
	assert_int_equal(vxm_guid_parse("{2dc27766-f623-4200-9d64-115e9bfd4a08", 37, &g), -EINVAL);
	assert_int_equal(vxm_guid_parse("2dc27766+f623-4200-9d64-115e9bfd4a08", 36, &g), -EINVAL);
	assert_int_equal(vxm_guid_parse("2dc27766-f623-4200-9d64-115e9bfd4a0g", 36, &g), -EINVAL);
}

static void make_hdr(uint8_t *buf, uint64_t seq)
{
	struct vxm_hdr h = { .seq = seq, .version = 1, .log_len = 1 << 20, .log_off = 1 << 20 };
	h.data_write.b[0] = 0xd1;
	vxm_hdr_encode(&h, buf);
}

static void select_takes_the_larger_sequence_number(void **state)
{
	(void)state;
	uint8_t a[4096], b[4096];
	struct vxm_hdr_pair p;
	make_hdr(a, 7);
	make_hdr(b, 8);
	assert_int_equal(vxm_hdr_select(a, b, &p, NULL), 0);
	assert_int_equal(p.current, 1);
	assert_int_equal(vxm_hdr_select(b, a, &p, NULL), 0);
	assert_int_equal(p.current, 0);
}

static void select_survives_one_torn_copy(void **state)
{
	(void)state;
	uint8_t a[4096], b[4096];
	struct vxm_hdr_pair p;
	make_hdr(a, 7);
	make_hdr(b, 8);
	b[100] ^= 1; /* torn: the newer copy fails its CRC */
	assert_int_equal(vxm_hdr_select(a, b, &p, NULL), 0);
	assert_int_equal(p.current, 0);
	assert_int_equal(p.status[1], -VXM_ECORRUPT);
}

static void select_fails_when_both_copies_are_torn_naming_both(void **state)
{
	(void)state;
	uint8_t a[4096], b[4096];
	struct vxm_hdr_pair p;
	struct vxm_err err = { 0 };
	make_hdr(a, 7);
	make_hdr(b, 8);
	a[9] ^= 1;
	memcpy(b, "xxxx", 4);
	assert_int_equal(vxm_hdr_select(a, b, &p, &err), -VXM_ECORRUPT);
	assert_non_null(strstr(err.msg, "header 1"));
	assert_non_null(strstr(err.msg, "header 2"));
	assert_non_null(strstr(err.msg, "checksum"));
	assert_non_null(strstr(err.msg, "signature"));
}

static void equal_sequence_numbers_need_identical_copies_disk2vhd_tie(void **state)
{
	(void)state;
	uint8_t a[4096], b[4096];
	struct vxm_hdr_pair p;
	make_hdr(a, 1);
	make_hdr(b, 1);
	assert_int_equal(vxm_hdr_select(a, b, &p, NULL), 0);
	assert_true(p.tie);
	assert_int_equal(p.current, 0);
	struct vxm_hdr h = { .seq = 1, .version = 1, .log_len = 1 << 20, .log_off = 1 << 20 };
	h.data_write.b[0] = 0xd2;
	vxm_hdr_encode(&h, b);
	assert_int_equal(vxm_hdr_select(a, b, &p, NULL), -VXM_ECORRUPT);
}

static void bat_geometry_interleaves_sector_bitmap_entries(void **state)
{
	(void)state;
	struct vxm_geom g;
	/* fmt §11 differencing.avhdx: 8 GiB, 2 MiB blocks: 4096 blocks in 2 chunks */
	assert_int_equal(vxm_geom_init(&g, 8ull << 30, 2u << 20, 512, true, NULL), 0);
	assert_int_equal(g.chunk_ratio, 2048);
	assert_int_equal(g.payload_blocks, 4096);
	assert_int_equal(g.total_entries, 4098);
	assert_int_equal(vxm_geom_sb_index(&g, 0), 2048);
	assert_int_equal(vxm_geom_sb_index(&g, 1), 4097);
	assert_int_equal(vxm_geom_pb_index(&g, 2048), 2049);
	assert_true(vxm_geom_is_sb_index(&g, 2048));
	assert_int_equal(vxm_geom_block_of_index(&g, 2049), 2048);
	/* dynamic.vhdx: 10 MiB, 32 MiB blocks: one entry, partial block */
	assert_int_equal(vxm_geom_init(&g, 10u << 20, 32u << 20, 512, false, NULL), 0);
	assert_int_equal(g.total_entries, 1);
	assert_int_equal(vxm_geom_block_bytes(&g, 0), 10u << 20);
	assert_int_equal(vxm_geom_init(&g, 10u << 20, 3u << 20, 512, false, NULL), -VXM_ECORRUPT);
	assert_int_equal(vxm_geom_init(&g, 1000, 1u << 20, 512, false, NULL), -VXM_ECORRUPT);
	assert_int_equal(vxm_geom_init(&g, 65ull << 40, 1u << 20, 512, false, NULL), -VXM_ECORRUPT);
}

static void bat_entry_rules_reject_reserved_states_and_bits(void **state)
{
	(void)state;
	struct vxm_geom g;
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_geom_init(&g, 64u << 20, 2u << 20, 512, false, NULL), 0);
	uint64_t fs = 100u << 20;
	assert_int_equal(vxm_bat_check_entry(&g, 0, vxm_bat_entry(6, 4u << 20), 0, fs, NULL), 0);
	assert_int_equal(vxm_bat_check_entry(&g, 0, 4, 0x300000, fs, &err), -VXM_ECORRUPT);
	assert_int_equal(err.off, 0x300000);
	assert_non_null(strstr(err.msg, "reserved state 4"));
	assert_int_equal(vxm_bat_check_entry(&g, 0, 5, 0, fs, NULL), -VXM_ECORRUPT);
	assert_int_equal(vxm_bat_check_entry(&g, 0, vxm_bat_entry(7, 4u << 20), 0, fs, NULL),
			 -VXM_ECORRUPT); /* partial without parent */
	assert_int_equal(vxm_bat_check_entry(&g, 0, (4u << 20) | 6 | (1 << 5), 0, fs, NULL),
			 -VXM_ECORRUPT); /* reserved bit */
	assert_int_equal(vxm_bat_check_entry(&g, 0, vxm_bat_entry(2, 4u << 20), 0, fs, NULL),
			 -VXM_ECORRUPT); /* ZERO with an offset */
	assert_int_equal(vxm_bat_check_entry(&g, 0, vxm_bat_entry(6, 99u << 20), 0, fs, NULL),
			 -VXM_ECORRUPT); /* past EOF */
	assert_int_equal(vxm_bat_check_entry(&g, 0, vxm_bat_entry(6, 0), 0, fs, NULL),
			 -VXM_ECORRUPT); /* inside the header section */
}

static void bitmap_runs_stop_at_the_first_different_bit(void **state)
{
	(void)state;
	uint8_t bm[64] = { 0 };
	vxm_bitmap_fill(bm, 3, 200, true);
	assert_int_equal(vxm_bitmap_run(bm, 0, 512), 3);
	assert_int_equal(vxm_bitmap_run(bm, 3, 512), 200);
	assert_int_equal(vxm_bitmap_run(bm, 10, 100), 90);
	assert_int_equal(vxm_bitmap_run(bm, 203, 512), 512 - 203);
	assert_int_equal(vxm_bitmap_count(bm, 0, 512), 200);
	assert_true(vxm_bit_get(bm, 3) && !vxm_bit_get(bm, 2) && !vxm_bit_get(bm, 203));
	/* LSB first: sector 0 is bit 0 of byte 0 */
	memset(bm, 0, sizeof(bm));
	vxm_bit_set(bm, 0);
	assert_int_equal(bm[0], 1);
	vxm_bit_set(bm, 15);
	assert_int_equal(bm[1], 0x80);
}

static void locator_round_trips_utf16_and_rejects_bad_strings(void **state)
{
	(void)state;
	uint8_t item[2048];
	struct vxm_kv kv[] = {
		{ "parent_linkage", "{ff34003b-11ed-4cf8-a166-b2be05e20b80}" },
		{ "relative_path", ".\\Gen\xc3\xa9ration 1.avhdx" },
		{ "parent_linkage2", "{00000000-0000-0000-0000-000000000000}" },
	};
	long n = vxm_locator_encode(kv, 3, item, sizeof(item));
	assert_true(n > 0);
	struct vxm_locator *loc = malloc(sizeof(*loc));
	assert_int_equal(vxm_locator_parse(item, (size_t)n, 0x1000, loc, NULL), 0);
	assert_true(loc->has_linkage);
	assert_false(loc->has_linkage2); /* the zero GUID counts as absent */
	assert_true(loc->linkage2_key);
	assert_string_equal(loc->relative_path, ".\\Gen\xc3\xa9ration 1.avhdx");
	char s[40];
	assert_string_equal(vxm_guid_fmt(&loc->parent_linkage, s), "ff34003b-11ed-4cf8-a166-b2be05e20b80");
	/* an unpaired surrogate in the value */
	uint8_t bad[2048];
	memcpy(bad, item, (size_t)n);
	vxm_put_le16(bad + loc->kv[1].val_off, 0xD800);
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_locator_parse(bad, (size_t)n, 0x1000, loc, &err), -VXM_ECORRUPT);
	assert_int_equal(err.off, 0x1000 + loc->kv[1].val_off);
	free(loc);
}

struct collect {
	uint64_t off[16], len[16];
	uint8_t first[16];
	int n;
};

static int collect_apply(void *ctx, uint64_t off, const uint8_t *data, uint64_t len)
{
	struct collect *c = ctx;
	c->off[c->n] = off;
	c->len[c->n] = len;
	c->first[c->n] = data ? data[0] ^ data[4095] : 0xEE;
	c->n++;
	return 0;
}

static void log_entries_round_trip_across_the_end_of_the_log(void **state)
{
	(void)state;
	const uint32_t L = 64 * 1024;
	uint8_t *log = calloc(1, L), *ent = malloc(L);
	uint8_t s1[4096], s2[4096];
	struct vxm_guid g = { { 1, 2, 3 } }, other = { { 9 } };
	memset(s1, 0x5a, sizeof(s1));
	memset(s2, 0xa5, sizeof(s2));
	s2[4095] = 0x01;
	struct vxm_log_update u[] = {
		{ .file_off = 0x300000, .data = s1 },
		{ .file_off = 0x310000, .data = NULL, .len = 8192 },
		{ .file_off = 0x301000, .data = s2 },
	};
	/* entry A (seq 10) at 48 KiB, 3 sectors; entry B (seq 11) wraps:
	 * starts at 60 KiB, continues at 0. */
	struct vxm_log_entry a = { .seq = 10, .tail = 48 * 1024, .guid = g,
				   .flushed_file_offset = 4 << 20, .last_file_offset = 4 << 20 };
	assert_int_equal(vxm_log_entry_encode(&a, u, 3, ent, L, NULL), 0);
	assert_int_equal(a.len, 3 * 4096);
	memcpy(log + 48 * 1024, ent, a.len);
	struct vxm_log_entry b = a;
	b.seq = 11;
	b.tail = 48 * 1024;
	assert_int_equal(vxm_log_entry_encode(&b, u, 1, ent, L, NULL), 0);
	assert_int_equal(b.len, 2 * 4096);
	memcpy(log + 60 * 1024, ent, 4096);
	memcpy(log, ent + 4096, 4096);
	/* a stale entry of another LogGuid at 16 KiB with a higher sequence */
	struct vxm_log_entry c = a;
	c.seq = 99;
	c.tail = 16 * 1024;
	c.guid = other;
	assert_int_equal(vxm_log_entry_encode(&c, u, 1, ent, L, NULL), 0);
	memcpy(log + 16 * 1024, ent, c.len);

	struct vxm_log_seq seq;
	assert_int_equal(vxm_log_find_active(log, L, 0x100000, &g, &seq, NULL), 0);
	assert_true(seq.found);
	assert_int_equal(seq.tail, 48 * 1024);
	assert_int_equal(seq.head, 60 * 1024);
	assert_int_equal(seq.count, 2);
	assert_int_equal(seq.head_seq, 11);
	struct collect col = { 0 };
	assert_int_equal(vxm_log_replay(log, L, 0x100000, &seq, &g, collect_apply, &col, NULL), 0);
	assert_int_equal(col.n, 4);
	assert_int_equal(col.off[0], 0x300000);
	assert_int_equal(col.first[0], 0x5a ^ 0x5a);
	assert_int_equal(col.off[1], 0x310000);
	assert_int_equal(col.len[1], 8192);
	assert_int_equal(col.off[2], 0x301000);
	assert_int_equal(col.first[2], 0xa5 ^ 0x01);
	assert_int_equal(col.off[3], 0x300000);

	/* a torn data sector invalidates the wrapped entry: only A remains */
	log[4096 - 1] ^= 0xff; /* SequenceLow of B's data sector at log offset 0 */
	assert_int_equal(vxm_log_find_active(log, L, 0x100000, &g, &seq, NULL), 0);
	assert_true(seq.found);
	assert_int_equal(seq.head_seq, 10);
	assert_int_equal(seq.count, 1);
	/* the other GUID's entry is found only with its own GUID */
	assert_int_equal(vxm_log_find_active(log, L, 0x100000, &other, &seq, NULL), 0);
	assert_true(seq.found);
	assert_int_equal(seq.head_seq, 99);
	free(log);
	free(ent);
}

/* The layout helpers of vhdx.h name the bytes the encoders write, and the
 * offsets the parsers report: the engine places and names bytes only
 * through them. */
static void layout_helpers_name_the_fields_the_encoders_write(void **state)
{
	static struct vxm_region_table rt;
	static uint8_t buf[VXM_RT_SIZE];
	struct vxm_err err = { 0 };
	(void)state;

	rt.count = 2;
	rt.e[0] = (struct vxm_region){ VXM_GUID_REGION_BAT, 3 * VXM_MiB, VXM_MiB, 1 };
	rt.e[1] = (struct vxm_region){ VXM_GUID_REGION_METADATA, 7 * VXM_MiB, 2 * VXM_MiB, 1 };
	vxm_region_encode(&rt, buf);
	/* fmt §1.4: entry i at 16 + 32 i, FileOffset at +16, Length +24,
	 * Required +28; fmt §1.5: the BAT entry's GUID at 0x30010 */
	assert_int_equal(vxm_region_entry_off(VXM_RT1_OFF, 0), 0x30010);
	uint64_t e1 = vxm_region_entry_off(VXM_RT2_OFF, 1) - VXM_RT2_OFF;
	assert_int_equal(e1, 48);
	assert_memory_equal(buf + 48, VXM_GUID_REGION_METADATA.b, 16);
	assert_int_equal(e1 + VXM_RT_E_FILE_OFFSET, 64);
	assert_int_equal(vxm_le64(buf + 64), 7 * VXM_MiB);
	assert_int_equal(e1 + VXM_RT_E_LENGTH, 72);
	assert_int_equal(vxm_le32(buf + 72), 2 * VXM_MiB);
	assert_int_equal(e1 + VXM_RT_E_REQUIRED, 76);
	assert_int_equal(vxm_le32(buf + 76), 1);
	/* damage there is reported there (the offset engine/image.c names) */
	vxm_put_le64(buf + e1 + VXM_RT_E_FILE_OFFSET, 7 * VXM_MiB + 4096);
	vxm_put_le32(buf + 4, vxm_crc32c_skip(buf, VXM_RT_SIZE, 4));
	assert_int_equal(vxm_region_parse(buf, VXM_RT_SIZE, VXM_RT2_OFF, &rt, &err), -VXM_ECORRUPT);
	assert_int_equal(err.off, vxm_region_entry_off(VXM_RT2_OFF, 1) + VXM_RT_E_FILE_OFFSET);

	/* the header section, slot by slot */
	assert_string_equal(vxm_header_section_part(0), "the file identifier");
	assert_string_equal(vxm_header_section_part(VXM_HDR1_OFF - 1), "the file identifier");
	assert_string_equal(vxm_header_section_part(VXM_HDR1_OFF), "header 1");
	assert_string_equal(vxm_header_section_part(VXM_HDR2_OFF + 4095), "header 2");
	assert_string_equal(vxm_header_section_part(VXM_RT1_OFF), "region table 1");
	assert_string_equal(vxm_header_section_part(VXM_RT2_OFF + VXM_RT_SIZE - 1),
			    "region table 2");
	assert_string_equal(vxm_header_section_part(VXM_RT2_OFF + VXM_RT_SIZE),
			    "the reserved part of the header section");
	assert_string_equal(vxm_header_section_part(VXM_HEADER_SECTION - 1),
			    "the reserved part of the header section");

	/* the identifier: the signature is all it takes, the creator follows */
	static uint8_t ident[VXM_IDENT_SIZE];
	char creator[VXM_CREATOR_MAX];
	vxm_ident_encode(ident, "vhdxmerge test");
	assert_int_equal(vxm_ident_parse(ident, VXM_IDENT_USED, creator, sizeof(creator), NULL), 0);
	assert_string_equal(creator, "vhdxmerge test");
	assert_int_equal(vxm_ident_parse(ident, 7, NULL, 0, NULL), -VXM_ENOTVHDX);
	for (size_t i = VXM_IDENT_USED; i < VXM_IDENT_SIZE; i++)
		assert_int_equal(ident[i], 0);
}

/* vxm_meta_items_encode is the reverse of vxm_meta_parse, and the table
 * helpers point at the entries vxm_meta_table_encode writes. */
static void meta_items_encode_round_trips_through_the_parser(void **state)
{
	static uint8_t region[VXM_MiB];
	static struct vxm_meta_table t;
	struct vxm_meta m = { .block_size = 32u << 20, .leave_blocks_allocated = true,
			      .virtual_size = 5ull << 30, .logical_sector_size = 4096,
			      .physical_sector_size = 512 }, got;
	struct vxm_meta_items mi;
	(void)state;

	for (unsigned i = 0; i < 16; i++)
		m.disk_id.b[i] = (uint8_t)(0xA0 + i);
	vxm_meta_items_encode(&m, &mi);
	assert_int_equal(vxm_le32(mi.file_params), 32u << 20);
	assert_int_equal(vxm_le32(mi.file_params + 4), VXM_FP_LEAVE_BLOCKS_ALLOCATED);
	const struct {
		const struct vxm_guid *id;
		const uint8_t *data;
		uint32_t len;
	} it[] = {
		{ &VXM_GUID_META_FILE_PARAMS, mi.file_params, sizeof(mi.file_params) },
		{ &VXM_GUID_META_VIRTUAL_SIZE, mi.virtual_size, sizeof(mi.virtual_size) },
		{ &VXM_GUID_META_LOGICAL_SECTOR, mi.logical_sector, sizeof(mi.logical_sector) },
		{ &VXM_GUID_META_PHYSICAL_SECTOR, mi.physical_sector, sizeof(mi.physical_sector) },
		{ &VXM_GUID_META_DISK_ID, mi.disk_id, sizeof(mi.disk_id) },
	};
	uint32_t at = VXM_META_TABLE_SIZE;
	t.count = 5;
	for (unsigned i = 0; i < 5; i++) {
		t.e[i] = (struct vxm_meta_entry){ *it[i].id, at, it[i].len,
						  i ? 6u : (unsigned)VXM_META_IS_REQUIRED };
		memcpy(region + at, it[i].data, it[i].len);
		at += it[i].len;
	}
	vxm_meta_table_encode(&t, region);
	/* fmt §3: entry i at 32 + 32 i, its Offset at +16; Hyper-V's items
	 * packed from 0x10000, the disk ID fifth at 0x10018 */
	assert_int_equal(vxm_meta_table_bytes(5), 192);
	assert_int_equal(vxm_meta_entry_off(0x200000, 4), 0x200000 + 160);
	assert_memory_equal(region + 160, VXM_GUID_META_DISK_ID.b, 16);
	assert_int_equal(vxm_le32(region + 176), 0x10018);
	assert_int_equal(vxm_meta_table_parse(region, VXM_META_TABLE_SIZE, 0, sizeof(region), &t,
					      NULL), 0);
	assert_int_equal(vxm_meta_parse(region, sizeof(region), 0, &t, &got, NULL), 0);
	assert_int_equal(got.block_size, m.block_size);
	assert_true(got.leave_blocks_allocated);
	assert_false(got.has_parent);
	assert_int_equal(got.virtual_size, m.virtual_size);
	assert_int_equal(got.logical_sector_size, 4096);
	assert_int_equal(got.physical_sector_size, 512);
	assert_memory_equal(got.disk_id.b, m.disk_id.b, 16);
	m.leave_blocks_allocated = false;
	m.has_parent = true;
	vxm_meta_items_encode(&m, &mi);
	assert_int_equal(vxm_le32(mi.file_params + 4), VXM_FP_HAS_PARENT);
}

/* BAT entries go to disk little-endian at bat_off + 8 idx; the region
 * needs total_entries of them, rounded up to 1 MiB by the creator. */
static void bat_entries_encode_little_endian_and_size_their_region(void **state)
{
	uint64_t e[3] = { vxm_bat_entry(VXM_PB_FULLY_PRESENT, 5 * VXM_MiB), 0x0123456789ABCDEFull,
			  VXM_PB_ZERO };
	uint64_t host[3];
	struct vxm_geom g;
	(void)state;

	memcpy(host, e, sizeof(e));
	vxm_bat_encode(e, 3);
	const uint8_t *b = (const uint8_t *)e;
	assert_int_equal(b[0], VXM_PB_FULLY_PRESENT);
	assert_int_equal(b[2], 0x50); /* 5 MiB = 0x500000 */
	assert_int_equal(b[VXM_BAT_ENTRY_SIZE], 0xEF);
	assert_int_equal(b[2 * VXM_BAT_ENTRY_SIZE - 1], 0x01);
	assert_int_equal(vxm_le64(b + VXM_BAT_ENTRY_SIZE), 0x0123456789ABCDEFull);
	vxm_bat_decode(e, 3);
	assert_memory_equal(e, host, sizeof(host));
	assert_int_equal(vxm_bat_entry_off(3 * VXM_MiB, 10), 3 * VXM_MiB + 80);

	/* 3 TiB in 1 MiB blocks, no parent: 3 Mi blocks, 768 chunks, one SB slot
	 * after each of the first 767: 3146495 entries, 25171960 bytes */
	assert_int_equal(vxm_geom_init(&g, 3ull << 40, 1u << 20, 512, false, NULL), 0);
	assert_int_equal(vxm_geom_bat_bytes(&g), 25171960);
	assert_int_equal(vxm_geom_bat_region_len(&g), 25 * VXM_MiB);
	assert_int_equal(vxm_geom_blocks_bytes(&g), (3ull << 40) + 768 * VXM_MiB);
	/* 8 GiB in 2 MiB blocks with a parent: 2 chunks, whole-chunk BAT */
	assert_int_equal(vxm_geom_init(&g, 8ull << 30, 2u << 20, 512, true, NULL), 0);
	assert_int_equal(vxm_geom_bat_bytes(&g), 4098 * 8);
	assert_int_equal(vxm_geom_bat_region_len(&g), VXM_MiB);
	assert_int_equal(vxm_sb_slice_len(&g), 512); /* 4096 sectors a block */
	for (uint64_t c = 0; c < 2; c++)
		assert_int_equal(vxm_geom_chunk_of_index(&g, vxm_geom_sb_index(&g, c)), c);
	assert_int_equal(vxm_geom_chunk_of_index(&g, vxm_geom_pb_index(&g, 2047)), 0);
	assert_int_equal(vxm_geom_chunk_of_index(&g, vxm_geom_pb_index(&g, 2048)), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(crc32c_has_the_castagnoli_check_value_on_both_paths),
		cmocka_unit_test(guid_text_round_trips_in_microsoft_byte_order),
		cmocka_unit_test(select_takes_the_larger_sequence_number),
		cmocka_unit_test(select_survives_one_torn_copy),
		cmocka_unit_test(select_fails_when_both_copies_are_torn_naming_both),
		cmocka_unit_test(equal_sequence_numbers_need_identical_copies_disk2vhd_tie),
		cmocka_unit_test(bat_geometry_interleaves_sector_bitmap_entries),
		cmocka_unit_test(bat_entry_rules_reject_reserved_states_and_bits),
		cmocka_unit_test(bitmap_runs_stop_at_the_first_different_bit),
		cmocka_unit_test(locator_round_trips_utf16_and_rejects_bad_strings),
		cmocka_unit_test(log_entries_round_trip_across_the_end_of_the_log),
		cmocka_unit_test(layout_helpers_name_the_fields_the_encoders_write),
		cmocka_unit_test(meta_items_encode_round_trips_through_the_parser),
		cmocka_unit_test(bat_entries_encode_little_endian_and_size_their_region),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
