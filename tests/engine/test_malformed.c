/* tests/engine/test_malformed.c: damaged VHDX files fail precisely and are
 * never written.
 *
 * Every case copies a source file into a scratch file, damages a few bytes
 * of one structure (recomputing CRCs where the damage must get past them),
 * and then asserts:
 *
 *   (a) the error code of vxm_image_open (-VXM_ECORRUPT, -VXM_EUNSUPPORTED,
 *       -VXM_ENOTVHDX), or, for damage only a check can see, the finding of
 *       vxm_image_check (and the same error from a lookup that reaches it);
 *   (b) err.msg / the finding names the structure and err.off / the finding's
 *       offset is the exact file offset (asserted as a number);
 *   (c) the real program agrees: `vhdxmerge info` exits 3 (corrupt) or 9
 *       (unsupported), or 0 when the file opens; `vhdxmerge check` exits 1;
 *       both print the file's path, the structure and the offset;
 *   (d) the file's sha256 is unchanged by all of it, `check --repair`
 *       included (repair may only write to replay a dirty log, so the one
 *       case with a legitimately dirty log checks that separately); a dirty
 *       log that repair must not replay makes it fail as info does (exit
 *       3), not report a problem (exit 1).
 *
 * Sources: every case runs on a synthesized stand-in (tests/lib/fxsynth.h:
 * built with the codec's encoders, laid out like the real file), so a clone
 * without $VHDX_FIXTURES runs them all; with the fixtures present every case
 * runs again on the real Hyper-V / Windows / QEMU file.  Offsets, indices,
 * sequence numbers and sizes come from the pristine source's own bytes
 * (struct mf_layout, tests/lib/malformed.h), never from one file's values;
 * offsets in case names are those of the Hyper-V layout both share (fmt
 * §11: log at 1 MiB, metadata at 2 MiB with items from 0x210000, BAT at
 * 3 MiB).  No case is fixture-only.
 *
 * With VXM_MALFORMED_SAVE=DIR every damaged file is also copied into DIR
 * (stand-in variants prefixed "standin-"): tests/fuzz/make_seeds.sh makes
 * fuzzer seeds of them.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "malformed.h"
#include "vhdx/endian.h"

#define HDR1 VXM_HDR1_OFF
#define HDR2 VXM_HDR2_OFF
#define RT1 VXM_RT1_OFF
#define RT2 VXM_RT2_OFF
#define ULL(x) ((unsigned long long)(x))
#define MASK VXM_BAT_OFFSET_MASK
#define ROUND_MIB(x) (((x) + VXM_MiB - 1) / VXM_MiB * VXM_MiB)

/* Every case starts from a pristine copy of kind k; L is its layout. */
#define BEGIN(k, tag)                          \
	struct mc c;                           \
	mc_begin(&c, state, k, tag);           \
	const struct mf_layout *L = c.L;       \
	(void)L

static const uint8_t unknown_guid[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
					  0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01 };

/* ===== the stand-ins themselves ===================================================== */

/* Before anything is damaged: each stand-in checks clean with us (a dirty
 * log aside), qemu-img calls it clean too and, with libvhdi, reads the same
 * disk as we do; a dirty log replayed by `check --repair` gives what
 * `qemu-img check -r all` gives.  qemu has no differencing support and
 * libvhdi does not replay logs; of the child, without its parent, libvhdi
 * reads the size and the parent's id. */
static void standins_check_clean_and_read_alike_with_qemu_and_libvhdi(void **state)
{
	static const enum fxs_kind kinds[] = { FXS_FIXED, FXS_DYNAMIC, FXS_DIFF, FXS_LOGREPLAY,
					       FXS_DIRTYLOG };
	bool qemu = tl_have("qemu-img"), vhdi = tl_have_pyvhdi();
	(void)state;

	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *p = mf_standin(kinds[i]);
		struct vxm_image *img;
		char ours[65], theirs[65], a[700], b[700];
		assert_int_equal(vxm_image_open(&img, NULL, p, 0, NULL), 0);
		bool dirty = img->log_dirty, diff = img->m.has_parent;
		assert_int_equal(vxm_image_check(img, NULL), dirty ? 1 : 0);
		if (!dirty && !diff)
			assert_int_equal(tl_sha256_image(img, ours), 0);
		if (diff) /* what libvhdi must read from the child alone */
			snprintf(ours, sizeof(ours), "%llu %s", ULL(img->g.virtual_size),
				 vxm_guid_fmt(&img->loc->parent_linkage, theirs));
		vxm_image_close(img);
		printf("stand-in %-28s %s%s\n", fxs_info(kinds[i])->file, fxs_info(kinds[i])->what,
		       dirty ? " (log dirty)" : "");
		snprintf(a, sizeof(a), "%s.a", p);
		snprintf(b, sizeof(b), "%s.b", p);
		if (qemu && dirty) {
			assert_int_equal(tl_copy_file(p, a), 0);
			assert_int_equal(tl_copy_file(p, b), 0);
			assert_int_equal(tl_sh("'%s' check --repair '%s' >/dev/null", tl_bin(), a), 0);
			assert_int_equal(tl_sh("qemu-img check -q -r all -f vhdx '%s' >/dev/null 2>&1", b), 0);
			assert_int_equal(tl_sh("qemu-img check -q -f vhdx '%s' && "
					       "qemu-img compare -q -f vhdx -F vhdx '%s' '%s'", a, a, b),
					 0);
		} else if (qemu && !diff) {
			assert_int_equal(tl_sh("qemu-img check -q -f vhdx '%s' && "
					       "qemu-img convert -f vhdx -O raw '%s' '%s'", p, p, a),
					 0);
			assert_int_equal(tl_sha256_file(a, theirs), 0);
			assert_string_equal(ours, theirs);
		}
		if (vhdi && !dirty) {
			int st;
			char *out = tl_sh_out(&st,
				"/usr/bin/python3 -c 'import pyvhdi,hashlib\n"
				"f=pyvhdi.file(); f.open(\"%s\"); h=hashlib.sha256(); n=f.get_media_size(); o=0\n"
				"if %d: print(n, f.get_parent_identifier()); exit()\n"
				"while o<n:\n b=f.read_buffer_at_offset(min(1<<22,n-o),o); h.update(b); o+=len(b)\n"
				"print(h.hexdigest())'", p, diff);
			assert_int_equal(st, 0);
			assert_int_equal(strncmp(out, ours, strlen(ours)), 0);
			free(out);
		}
		unlink(a);
		unlink(b);
	}
	if (!qemu || !vhdi)
		printf("(qemu-img %s, pyvhdi %s)\n", qemu ? "used" : "absent", vhdi ? "used" : "absent");
}

/* ===== truncation at every structure =============================================== */

static void file_cut_to_4_bytes_inside_the_signature_is_not_vhdx_at_0(void **state)
{
	BEGIN(FXS_FIXED, "cut-4");
	cut(&c, 4);
	expect_error(&c, -VXM_ENOTVHDX, 0, "file identifier", "vhdxfile");
}

static void file_without_the_vhdxfile_signature_is_not_vhdx_at_0(void **state)
{
	BEGIN(FXS_FIXED, "no-signature");
	poke(&c, 0, 'V');
	expect_error(&c, -VXM_ENOTVHDX, 0, "file identifier", "vhdxfile");
}

static void file_cut_inside_the_identifier_is_corrupt_at_its_end_0x8000(void **state)
{
	BEGIN(FXS_FIXED, "cut-ident");
	cut(&c, 0x8000);
	expect_error(&c, -VXM_ECORRUPT, 0x8000, "truncated inside the file identifier", NULL);
}

static void file_cut_inside_header_1_is_corrupt_at_0x10800(void **state)
{
	BEGIN(FXS_FIXED, "cut-hdr1");
	cut(&c, HDR1 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, HDR1 + 0x800, "truncated inside header 1", NULL);
}

static void file_cut_inside_header_2_is_corrupt_at_0x20800(void **state)
{
	BEGIN(FXS_FIXED, "cut-hdr2");
	cut(&c, HDR2 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, HDR2 + 0x800, "truncated inside header 2", NULL);
}

static void file_cut_inside_region_table_1_is_corrupt_at_0x30800(void **state)
{
	BEGIN(FXS_FIXED, "cut-rt1");
	cut(&c, RT1 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, RT1 + 0x800, "truncated inside region table 1", NULL);
}

static void file_cut_inside_region_table_2_is_corrupt_at_0x40800(void **state)
{
	BEGIN(FXS_FIXED, "cut-rt2");
	cut(&c, RT2 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, RT2 + 0x800, "truncated inside region table 2", NULL);
}

/* A dirty log must be read whole: its start is the damaged structure. */
static void file_cut_inside_a_dirty_log_is_corrupt_at_the_log_0x100000(void **state)
{
	BEGIN(FXS_LOGREPLAY, "cut-dirty-log");
	cut(&c, L->log + 0x4000);
	expect_log_refusal(&c, -VXM_ECORRUPT, L->log,
			   mf_fmt("log [0x%llx,+%u) extends past the end", ULL(L->log), L->log_len),
			   NULL);
}

/* A clean log is not read; the first structure the open needs that lies
 * past the cut is the metadata region, named by its region table entry. */
static void file_cut_inside_a_clean_log_is_corrupt_at_the_metadata_region_entry_0x30040(void **state)
{
	BEGIN(FXS_FIXED, "cut-clean-log");
	assert_true(L->log < L->meta && L->meta < L->bat);
	cut(&c, L->log + L->log_len / 2);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, L->rt_meta) + 16, "metadata region",
		     mf_fmt("extends past the end of the file (%llu bytes)",
			    ULL(L->log + L->log_len / 2)));
}

static void file_cut_inside_the_metadata_table_is_corrupt_at_its_region_entry_0x30040(void **state)
{
	BEGIN(FXS_FIXED, "cut-meta-table");
	cut(&c, L->meta + 0x100);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, L->rt_meta) + 16, "metadata region",
		     mf_fmt("extends past the end of the file (%llu bytes)", ULL(L->meta + 0x100)));
}

static void file_cut_inside_a_metadata_item_is_corrupt_at_the_metadata_region_entry_0x30040(void **state)
{
	BEGIN(FXS_FIXED, "cut-item");
	uint64_t at = ITEM(L, L->mt_params) + 4;
	cut(&c, at);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, L->rt_meta) + 16, "metadata region",
		     mf_fmt("extends past the end of the file (%llu bytes)", ULL(at)));
}

static void file_cut_inside_the_bat_is_corrupt_at_the_bat_region_entry_0x30020(void **state)
{
	BEGIN(FXS_FIXED, "cut-bat");
	cut(&c, L->bat + 0x10);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, L->rt_bat) + 16, "BAT region",
		     mf_fmt("extends past the end of the file (%llu bytes)", ULL(L->bat + 0x10)));
}

/* Fixed disk: block 3 is cut in half, block 4 after it is gone. */
static void file_cut_inside_a_payload_block_is_a_problem_at_bat_entry_3_0x300018(void **state)
{
	BEGIN(FXS_FIXED, "cut-block");
	uint64_t off = get64(&c, BAT_ENTRY(L, 3)) & MASK;
	cut(&c, off + L->block_size / 2);
	expect_problem_on_read(&c, BAT_ENTRY(L, 3),
			       mf_fmt("BAT entry 3 (block 3): payload at 0x%llx extends past the end",
				      ULL(off)),
			       3 * L->spb);
}

/* A disk smaller than its one block (10 MiB in 32 MiB): storing only the
 * block's virtual bytes is legal (fmt P8), and reads are unchanged. */
static void trailing_block_stored_short_up_to_the_disk_end_is_legal(void **state)
{
	struct vxm_image *img;
	char full[65], shortened[65];
	BEGIN(FXS_DYNAMIC, "trailing-short-ok");

	assert_int_equal(L->blocks, 1);
	assert_true(L->vsize < L->block_size);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(tl_sha256_image(img, full), 0);
	vxm_image_close(img);
	cut(&c, (get64(&c, BAT_ENTRY(L, 0)) & MASK) + L->vsize);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(tl_sha256_image(img, shortened), 0);
	vxm_image_close(img);
	assert_string_equal(full, shortened);
	struct want w = { .finding = -1 };
	mc_run(&c, &w);
}

static void trailing_block_cut_before_the_disk_end_is_a_problem_at_bat_entry_0_0x300000(void **state)
{
	BEGIN(FXS_DYNAMIC, "trailing-cut");
	uint64_t off = get64(&c, BAT_ENTRY(L, 0)) & MASK;
	cut(&c, off + L->vsize - VXM_MiB);
	expect_problem_on_read(&c, BAT_ENTRY(L, 0),
			       mf_fmt("BAT entry 0 (block 0): payload at 0x%llx extends past the end",
				      ULL(off)),
			       0);
}

/* Differencing disk: the sector bitmap of chunk 1 (BAT entry 4097 at 2 MiB
 * blocks) is moved to the end of the file, which is then cut half-way
 * through it.  Looking up a partially present block of chunk 1 needs that
 * bitmap. */
static void file_cut_inside_a_sector_bitmap_block_is_a_problem_at_bat_entry_4097_0x308008(void **state)
{
	BEGIN(FXS_DIFF, "cut-sb");
	uint64_t idx = 2 * L->chunk_ratio + 1, e = get64(&c, BAT_ENTRY(L, idx));
	uint64_t b = mf_find_block(&c, L->chunk_ratio, 2 * L->chunk_ratio, VXM_PB_PARTIALLY_PRESENT);
	uint64_t to = ROUND_MIB(L->size);
	assert_int_equal(e & 7, VXM_SB_PRESENT);
	assert_true(b != UINT64_MAX);
	copy_range(&c, e & MASK, to, 0x80000);
	cut(&c, to + 0x80000);
	put64(&c, BAT_ENTRY(L, idx), to | VXM_SB_PRESENT);
	expect_problem_on_read(&c, BAT_ENTRY(L, idx),
			       mf_fmt("BAT entry %llu (sector bitmap of chunk 1): block at 0x%llx extends past the end",
				      ULL(idx), ULL(to)),
			       b * L->spb);
}

/* ===== headers ============================================================================ */

/* A torn header update is not corruption: the other copy is current. */
static void header_2_with_bad_crc_is_a_torn_copy_and_the_file_opens_from_header_1(void **state)
{
	struct vxm_image *img;
	struct vxm_info in;
	BEGIN(FXS_FIXED, "hdr2-torn");

	flip(&c, HDR2 + 0x100);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_int_equal(in.current_header, 1);
	assert_int_equal(in.header_seq, L->seq[0]);
	vxm_image_close(img);
	struct want w = { .off = HDR2, .what = "header 2 is not valid", .finding = 0 };
	mc_run(&c, &w);
}

static void header_with_bad_crc_in_both_copies_is_corrupt_at_0x10004(void **state)
{
	BEGIN(FXS_FIXED, "hdr-crc-both");
	flip(&c, HDR1 + 0x100);
	flip(&c, HDR2 + 0x100);
	expect_error(&c, -VXM_ECORRUPT, HDR1 + 4, "no valid header", "header at 0x10000: checksum");
}

/* The current header (valid CRC, larger sequence number) says version 2:
 * a newer writer owns the file; falling back to the older header 1 would
 * read stale structures. */
static void current_header_with_version_2_is_unsupported_at_0x20042(void **state)
{
	BEGIN(FXS_FIXED, "hdr-version2");
	assert_true(L->seq[1] > L->seq[0]);
	put16(&c, HDR2 + 66, 2);
	fix_hdr(&c, HDR2);
	expect_error(&c, -VXM_EUNSUPPORTED, HDR2 + 66, "header at 0x20000: version 2", NULL);
}

static void header_version_2_in_both_copies_is_unsupported_at_0x20042(void **state)
{
	BEGIN(FXS_FIXED, "hdr-version2-both");
	put16(&c, HDR1 + 66, 2);
	put16(&c, HDR2 + 66, 2);
	fix_hdr(&c, HDR1);
	fix_hdr(&c, HDR2);
	expect_error(&c, -VXM_EUNSUPPORTED, HDR2 + 66, "version 2", NULL);
}

/* The stale copy (smaller sequence number) is never used: it only earns a note. */
static void stale_header_with_version_2_is_ignored_and_the_file_opens(void **state)
{
	BEGIN(FXS_FIXED, "hdr1-version2");
	put16(&c, HDR1 + 66, 2);
	fix_hdr(&c, HDR1);
	struct want w = { .off = HDR1, .what = "header 1 is not valid", .finding = 0 };
	mc_run(&c, &w);
}

static void current_header_with_log_offset_not_1mib_aligned_is_corrupt_at_0x20048(void **state)
{
	BEGIN(FXS_FIXED, "hdr-log-align");
	put64(&c, HDR2 + 72, L->log + VXM_MiB / 2);
	fix_hdr(&c, HDR2);
	expect_error(&c, -VXM_ECORRUPT, HDR2 + 72,
		     mf_fmt("header at 0x20000: log offset 0x%llx", ULL(L->log + VXM_MiB / 2)), NULL);
}

/* ===== region tables ====================================================================== */

static void region_table_1_with_bad_crc_opens_from_copy_2_with_a_problem_at_0x30004(void **state)
{
	BEGIN(FXS_FIXED, "rt1-crc");
	flip(&c, RT1 + 0x1000);
	expect_problem(&c, RT1 + 4, "region table at 0x30000: checksum", "using region table copy 2");
}

static void region_tables_with_bad_crc_in_both_copies_are_corrupt_at_0x40004(void **state)
{
	BEGIN(FXS_FIXED, "rt-crc-both");
	flip(&c, RT1 + 0x1000);
	flip(&c, RT2 + 0x1000);
	expect_error(&c, -VXM_ECORRUPT, RT2 + 4, "no valid region table", "checksum");
}

/* Copy 2 lists the same two regions in the other order: valid, but which
 * copy is right cannot be known. */
static void two_valid_but_different_region_tables_are_corrupt_at_0x40000(void **state)
{
	uint8_t e0[32], e1[32];
	BEGIN(FXS_FIXED, "rt-differ");
	rd(&c, RT_ENTRY(RT2, 0), e0, 32);
	rd(&c, RT_ENTRY(RT2, 1), e1, 32);
	wr(&c, RT_ENTRY(RT2, 0), e1, 32);
	wr(&c, RT_ENTRY(RT2, 1), e0, 32);
	fix_rt(&c, RT2);
	expect_error(&c, -VXM_ECORRUPT, RT2, "region tables: both copies are valid but differ", NULL);
}

/* The metadata region grows until it runs 1 MiB into the BAT after it
 * (both copies). */
static void overlapping_regions_are_corrupt_at_region_entry_1_0x40040(void **state)
{
	BEGIN(FXS_FIXED, "rt-overlap");
	assert_true(L->meta < L->bat);
	uint32_t len = (uint32_t)(L->bat - L->meta + VXM_MiB);
	rt_put32_both(&c, RT_ENTRY(0, L->rt_meta) + 24, len);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT2, L->rt_meta) + 16,
		     mf_fmt("region %u [0x%llx,+0x%x) overlaps region %u", L->rt_meta, ULL(L->meta),
			    len, L->rt_bat),
		     NULL);
}

static void region_overlapping_the_log_is_corrupt_at_its_entry_0x30040(void **state)
{
	BEGIN(FXS_FIXED, "rt-over-log");
	rt_put64_both(&c, RT_ENTRY(0, L->rt_meta) + 16, L->log);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, L->rt_meta) + 16,
		     mf_fmt("metadata region [0x%llx,+0x%x) overlaps the log", ULL(L->log), L->meta_len),
		     NULL);
}

static void region_past_the_end_of_the_file_is_corrupt_at_its_entry_0x30020(void **state)
{
	BEGIN(FXS_FIXED, "rt-past-eof");
	assert_true(L->size < 4 * VXM_GiB);
	rt_put64_both(&c, RT_ENTRY(0, L->rt_bat) + 16, 4 * VXM_GiB);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, L->rt_bat) + 16,
		     mf_fmt("BAT region [0x100000000,+0x%x) extends past the end", L->bat_len), NULL);
}

/* FileOffset at the top of the u64 range: offset + length wraps to 0. */
static void region_whose_extent_wraps_past_2_pow_64_is_corrupt_at_its_entry_0x40020(void **state)
{
	BEGIN(FXS_FIXED, "rt-wrap");
	rt_put64_both(&c, RT_ENTRY(0, L->rt_bat) + 16, 0xFFFFFFFFFFF00000ull);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT2, L->rt_bat) + 16,
		     mf_fmt("region table at 0x40000: entry %u", L->rt_bat), "overflows");
}

static void unknown_required_region_is_unsupported_at_entry_2_0x30050(void **state)
{
	BEGIN(FXS_FIXED, "rt-unknown-required");
	unsigned n = L->rt_count;
	for (uint64_t rt = RT1; rt <= RT2; rt += RT2 - RT1) {
		wr(&c, RT_ENTRY(rt, n), unknown_guid, 16);
		put64(&c, RT_ENTRY(rt, n) + 16, 0x1000000);
		put32(&c, RT_ENTRY(rt, n) + 24, VXM_MiB);
		put32(&c, RT_ENTRY(rt, n) + 28, 1);
		put32(&c, rt + 8, n + 1);
		fix_rt(&c, rt);
	}
	expect_error(&c, -VXM_EUNSUPPORTED, RT_ENTRY(RT1, n),
		     "unknown required region {44332211-6655-8877-99aa-bbccddeef001}", NULL);
}

/* ===== metadata =============================================================================== */

/* The Virtual Disk ID entry gets an unknown id and loses IsRequired. */
static void missing_required_metadata_item_is_corrupt_at_the_metadata_table_0x200000(void **state)
{
	BEGIN(FXS_FIXED, "meta-missing");
	wr(&c, MT_ENTRY(L, L->mt_diskid), unknown_guid, 16);
	put32(&c, MT_ENTRY(L, L->mt_diskid) + 24, VXM_META_IS_VIRTUAL_DISK);
	expect_error(&c, -VXM_ECORRUPT, L->meta, "required item Virtual Disk ID is missing", NULL);
}

/* The Virtual Disk ID entry (IsRequired) gets an unknown id. */
static void unknown_required_metadata_item_is_unsupported_at_entry_4_0x2000a0(void **state)
{
	BEGIN(FXS_FIXED, "meta-unknown-required");
	assert_true(L->mt[L->mt_diskid].flags & VXM_META_IS_REQUIRED);
	wr(&c, MT_ENTRY(L, L->mt_diskid), unknown_guid, 16);
	expect_error(&c, -VXM_EUNSUPPORTED, MT_ENTRY(L, L->mt_diskid),
		     "unknown required system item {44332211-6655-8877-99aa-bbccddeef001}", NULL);
}

static void metadata_item_outside_its_region_is_corrupt_at_entry_0_offset_field_0x200030(void **state)
{
	BEGIN(FXS_FIXED, "meta-item-bounds");
	put32(&c, MT_ENTRY(L, 0) + 16, L->meta_len - 4);
	expect_error(&c, -VXM_ECORRUPT, MT_ENTRY(L, 0) + 16,
		     mf_fmt("metadata table at 0x%llx: entry 0 item [0x%x,+%u) outside the region",
			    ULL(L->meta), L->meta_len - 4, L->mt[0].len),
		     NULL);
}

static void duplicate_metadata_item_ids_are_corrupt_at_entry_4_0x2000a0(void **state)
{
	uint8_t id[16];
	BEGIN(FXS_FIXED, "meta-dup");
	assert_true(L->mt_count >= 5);
	rd(&c, MT_ENTRY(L, 3), id, 16);
	wr(&c, MT_ENTRY(L, 4), id, 16);
	expect_error(&c, -VXM_ECORRUPT, MT_ENTRY(L, 4), "entries 3 and 4 have the same item id", NULL);
}

static void block_size_of_3_mib_is_corrupt_at_the_file_parameters_item_0x210000(void **state)
{
	BEGIN(FXS_FIXED, "meta-block-size");
	uint64_t at = ITEM(L, L->mt_params);
	put32(&c, at, 3 * VXM_MiB);
	expect_error(&c, -VXM_ECORRUPT, at,
		     mf_fmt("File Parameters at 0x%llx: block size 3145728", ULL(at)), NULL);
}

static void logical_sector_size_of_1024_is_corrupt_at_its_item_0x210010(void **state)
{
	BEGIN(FXS_FIXED, "meta-lss");
	uint64_t at = ITEM(L, L->mt_lss);
	put32(&c, at, 1024);
	expect_error(&c, -VXM_ECORRUPT, at, mf_fmt("Logical Sector Size at 0x%llx: 1024", ULL(at)),
		     NULL);
}

static void virtual_size_not_a_multiple_of_the_sector_is_corrupt_at_its_item_0x210008(void **state)
{
	BEGIN(FXS_FIXED, "meta-vsize");
	uint64_t at = ITEM(L, L->mt_vsize);
	put64(&c, at, L->vsize + 1);
	expect_error(&c, -VXM_ECORRUPT, at,
		     mf_fmt("Virtual Disk Size at 0x%llx: %llu", ULL(at), ULL(L->vsize + 1)), NULL);
}

static void virtual_size_above_64_tib_is_corrupt_at_its_item_0x210008(void **state)
{
	BEGIN(FXS_FIXED, "meta-vsize-big");
	uint64_t at = ITEM(L, L->mt_vsize);
	put64(&c, at, 64 * VXM_TiB + 512);
	expect_error(&c, -VXM_ECORRUPT, at, mf_fmt("Virtual Disk Size at 0x%llx", ULL(at)), "64 TiB");
}

/* ===== BAT (check-level: the file opens, check and reads find the damage) ======================
 * Fixed disk: blocks 0, 1, 2 are FULLY_PRESENT; block 1 (or 2) is re-aimed. */

static uint64_t block_off(struct mc *c, uint64_t b)
{
	uint64_t e = get64(c, BAT_ENTRY(c->L, b));
	assert_int_equal(e & 7, VXM_PB_FULLY_PRESENT);
	return e & MASK;
}

static void bat_entries_sharing_a_block_are_a_problem_naming_both_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-overlap");
	uint64_t off0 = block_off(&c, 0);
	put64(&c, BAT_ENTRY(L, 1), off0 | VXM_PB_FULLY_PRESENT);
	expect_problem(&c, BAT_ENTRY(L, 1), mf_fmt("block 1 (BAT entry 1) at 0x%llx overlaps", ULL(off0)),
		       mf_fmt("block 0 (BAT entry 0) [0x%llx,0x%llx)", ULL(off0),
			      ULL(off0 + L->block_size)));
}

static void bat_entry_overlapping_the_metadata_region_is_a_problem_naming_both_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-over-meta");
	put64(&c, BAT_ENTRY(L, 1), L->meta | VXM_PB_FULLY_PRESENT);
	expect_problem(&c, BAT_ENTRY(L, 1),
		       mf_fmt("block 1 (BAT entry 1) at 0x%llx overlaps", ULL(L->meta)),
		       mf_fmt("the metadata region [0x%llx,0x%llx)", ULL(L->meta),
			      ULL(L->meta + L->meta_len)));
}

static void bat_entry_overlapping_the_log_is_a_problem_naming_both_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-over-log");
	put64(&c, BAT_ENTRY(L, 1), L->log | VXM_PB_FULLY_PRESENT);
	expect_problem(&c, BAT_ENTRY(L, 1),
		       mf_fmt("block 1 (BAT entry 1) at 0x%llx overlaps", ULL(L->log)),
		       mf_fmt("the log [0x%llx,0x%llx)", ULL(L->log), ULL(L->log + L->log_len)));
}

static void bat_entry_past_the_end_of_the_file_is_a_problem_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-past-eof");
	uint64_t off = ROUND_MIB(L->size) + 2 * VXM_MiB;
	put64(&c, BAT_ENTRY(L, 1), off | VXM_PB_FULLY_PRESENT);
	expect_problem_on_read(&c, BAT_ENTRY(L, 1),
			       mf_fmt("BAT entry 1 (block 1): payload at 0x%llx extends past the end",
				      ULL(off)),
			       L->spb);
}

/* FileOffsetMB at its maximum: offset + block size wraps past 2^64. */
static void bat_entry_at_the_top_of_the_offset_range_is_a_problem_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-wrap");
	put64(&c, BAT_ENTRY(L, 1), 0xFFFFFFFFFFF00006ull);
	expect_problem_on_read(&c, BAT_ENTRY(L, 1),
			       "BAT entry 1 (block 1): payload at 0xfffffffffff00000 extends past the end",
			       L->spb);
}

static void reserved_bat_state_4_is_a_problem_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-state4");
	put64(&c, BAT_ENTRY(L, 1), block_off(&c, 1) | 4);
	expect_problem_on_read(&c, BAT_ENTRY(L, 1), "BAT entry 1 (block 1): reserved state 4", L->spb);
}

static void reserved_bat_state_5_is_a_problem_at_0x300010(void **state)
{
	BEGIN(FXS_FIXED, "bat-state5");
	put64(&c, BAT_ENTRY(L, 2), block_off(&c, 2) | 5);
	expect_problem_on_read(&c, BAT_ENTRY(L, 2), "BAT entry 2 (block 2): reserved state 5",
			       2 * L->spb);
}

static void bat_entry_with_reserved_bits_set_is_a_problem_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-reserved-bits");
	put64(&c, BAT_ENTRY(L, 1), block_off(&c, 1) | VXM_PB_FULLY_PRESENT | 0x100);
	expect_problem_on_read(&c, BAT_ENTRY(L, 1), "BAT entry 1: reserved bits set", L->spb);
}

static void partially_present_block_in_a_file_without_parent_is_a_problem_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-partial-nodiff");
	put64(&c, BAT_ENTRY(L, 1), block_off(&c, 1) | VXM_PB_PARTIALLY_PRESENT);
	expect_problem_on_read(&c, BAT_ENTRY(L, 1),
			       "BAT entry 1 (block 1): PARTIALLY_PRESENT in a file without parent",
			       L->spb);
}

/* Differencing disk: chunk 0's bitmap entry (2048 at 2 MiB blocks) is
 * cleared; its first partially present block then has no bitmap. */
static void partially_present_block_without_its_chunk_bitmap_is_a_problem_at_0x300000(void **state)
{
	BEGIN(FXS_DIFF, "bat-partial-no-sb");
	uint64_t b = mf_find_block(&c, 0, L->chunk_ratio, VXM_PB_PARTIALLY_PRESENT);
	assert_true(b != UINT64_MAX);
	assert_int_equal(get64(&c, BAT_ENTRY(L, L->chunk_ratio)) & 7, VXM_SB_PRESENT);
	put64(&c, BAT_ENTRY(L, L->chunk_ratio), 0);
	expect_problem_on_read(&c, BAT_ENTRY(L, b),
			       mf_fmt("BAT entry %llu (block %llu): PARTIALLY_PRESENT but the sector bitmap of chunk 0",
				      ULL(b), ULL(b)),
			       b * L->spb);
}

static void not_present_entry_with_an_offset_is_a_problem_at_0x300008(void **state)
{
	BEGIN(FXS_FIXED, "bat-np-offset");
	uint64_t off = block_off(&c, 1);
	put64(&c, BAT_ENTRY(L, 1), off);
	expect_problem_on_read(&c, BAT_ENTRY(L, 1),
			       mf_fmt("BAT entry 1 (block 1): state NOT_PRESENT with non-zero offset 0x%llx",
				      ULL(off)),
			       L->spb);
}

static void zero_entry_with_an_offset_is_a_problem_at_0x300010(void **state)
{
	BEGIN(FXS_FIXED, "bat-zero-offset");
	uint64_t off = block_off(&c, 2);
	put64(&c, BAT_ENTRY(L, 2), off | VXM_PB_ZERO);
	expect_problem_on_read(&c, BAT_ENTRY(L, 2),
			       mf_fmt("BAT entry 2 (block 2): state ZERO with non-zero offset 0x%llx",
				      ULL(off)),
			       2 * L->spb);
}

/* ===== parent locator (differencing disk, item at 0x210028) ============================================
 * Hyper-V's key order: 0 parent_linkage, 1 absolute_win32_path,
 * 2 relative_path, 3 volume_path, 4 parent_linkage2; strings packed after
 * the entry table, key then value. */

static const char *in_locator(const struct mf_layout *L, const char *rest)
{
	return mf_fmt("parent locator at 0x%llx: %s", ULL(L->loc), rest);
}

static void locator_value_with_a_lone_surrogate_is_corrupt_at_that_value(void **state)
{
	BEGIN(FXS_DIFF, "loc-utf16");
	unsigned i = mf_kv(L, "relative_path");
	uint64_t at = L->loc + L->kv[i].val_off;
	put16(&c, at, 0xDC00);
	expect_error(&c, -VXM_ECORRUPT, at,
		     in_locator(L, mf_fmt("entry %u value is not valid UTF-16", i)), NULL);
}

static void locator_key_of_length_zero_is_corrupt_at_entry_2_key_length_0x21005c(void **state)
{
	BEGIN(FXS_DIFF, "loc-key-len0");
	unsigned i = mf_kv(L, "relative_path");
	put16(&c, LOC_ENTRY(L, i) + 8, 0);
	expect_error(&c, -VXM_ECORRUPT, LOC_ENTRY(L, i) + 8, in_locator(L, mf_fmt("entry %u", i)),
		     "key length 0");
}

static void locator_value_of_odd_length_is_corrupt_at_entry_3_value_length_0x21006a(void **state)
{
	BEGIN(FXS_DIFF, "loc-odd");
	unsigned i = mf_kv(L, "volume_path");
	uint16_t odd = (uint16_t)(L->kv[i].val_len - 1);
	put16(&c, LOC_ENTRY(L, i) + 10, odd);
	expect_error(&c, -VXM_ECORRUPT, LOC_ENTRY(L, i) + 10, in_locator(L, mf_fmt("entry %u", i)),
		     mf_fmt("value length %u", odd));
}

static void locator_without_parent_linkage_is_corrupt_at_the_item_0x210028(void **state)
{
	BEGIN(FXS_DIFF, "loc-no-linkage");
	/* "qarent_linkage": an unknown key */
	put16(&c, L->loc + L->kv[mf_kv(L, "parent_linkage")].key_off, 'q');
	expect_error(&c, -VXM_ECORRUPT, L->loc, in_locator(L, "no parent_linkage"), NULL);
}

static void locator_linkage_that_is_not_a_guid_is_corrupt_at_its_value_0x210094(void **state)
{
	BEGIN(FXS_DIFF, "loc-linkage-guid");
	uint64_t at = L->loc + L->kv[mf_kv(L, "parent_linkage")].val_off;
	put16(&c, at + 2, 'x');
	expect_error(&c, -VXM_ECORRUPT, at, in_locator(L, "parent_linkage value is not a GUID"), NULL);
}

/* The last entry (parent_linkage2) gets parent_linkage's key. */
static void locator_with_a_duplicate_key_is_corrupt_at_entry_4_0x21006c(void **state)
{
	BEGIN(FXS_DIFF, "loc-dup-key");
	unsigned pl = mf_kv(L, "parent_linkage"), j = L->loc_count - 1;
	assert_true(j > pl);
	put32(&c, LOC_ENTRY(L, j), L->kv[pl].key_off);
	put16(&c, LOC_ENTRY(L, j) + 8, L->kv[pl].key_len);
	expect_error(&c, -VXM_ECORRUPT, LOC_ENTRY(L, j),
		     mf_fmt("entries %u and %u have the same key", pl, j), NULL);
}

static void locator_without_a_path_key_is_corrupt_at_the_item_0x210028(void **state)
{
	static const char *const paths[] = { "absolute_win32_path", "relative_path", "volume_path" };
	BEGIN(FXS_DIFF, "loc-no-path");
	for (unsigned k = 0; k < 3; k++)
		put16(&c, L->loc + L->kv[mf_kv(L, paths[k])].key_off, 'X');
	expect_error(&c, -VXM_ECORRUPT, L->loc,
		     "none of relative_path, volume_path, absolute_win32_path", NULL);
}

/* ===== log ========================================================================================
 * Log-replay disk (Windows): five entries at log 0, 0x1000, 0x3000, 0x5000,
 * 0x7000; the head (0x7000) has tail 0x5000, the one before it tail 0x1000;
 * every block NOT_PRESENT on disk.  QEMU's dirty-log disk: seven entries,
 * each its own tail, only the last with the headers' LogGuid. */

static const char *dirty_msg(const struct mf_layout *L, const struct mf_logent *head)
{
	const struct mf_logent *tail = mf_log_at(L, head->tail);
	assert_non_null(tail);
	return mf_fmt("log is dirty: %u entries (sequence %llu..%llu)", mf_log_span(L, head),
		      ULL(tail->seq), ULL(head->seq));
}

/* Both headers get a new LogGuid, so all CRC-valid entries are stale.  They
 * must not be replayed: the BAT stays as on disk. */
static void dirty_log_whose_entries_all_carry_another_log_guid_is_ignored_with_a_problem_at_0x100000(void **state)
{
	struct vxm_image *img;
	struct vxm_info in;
	uint64_t disk[8], replayed[8];
	BEGIN(FXS_LOGREPLAY, "log-stale");

	mf_bat_states(&c, disk);
	mf_bat_states_after(&c, mf_log_head(L), replayed);
	assert_true(memcmp(disk, replayed, sizeof(disk)) != 0); /* a replay would show */
	wr(&c, HDR1 + 48, unknown_guid, 16);
	wr(&c, HDR2 + 48, unknown_guid, 16);
	fix_hdr(&c, HDR1);
	fix_hdr(&c, HDR2);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_true(in.log.dirty);
	assert_false(in.log.replayed);
	assert_int_equal(in.log.entries, 0);
	assert_int_equal(in.bat.fully_present, disk[VXM_PB_FULLY_PRESENT]);
	assert_int_equal(in.bat.zero, disk[VXM_PB_ZERO]);
	assert_int_equal(in.bat.not_present, disk[VXM_PB_NOT_PRESENT]);
	vxm_image_close(img);
	expect_problem(&c, L->log, "LogGuid is set but no valid entry sequence exists", NULL);
}

/* Stale entries (another LogGuid) precede the current one, which is its own
 * tail: only it is replayed, and the BAT is the disk's with its update. */
static void dirty_log_with_six_stale_entries_replays_only_the_current_one(void **state)
{
	struct vxm_image *img;
	struct vxm_info in;
	uint64_t want[8];
	unsigned stale = 0;
	BEGIN(FXS_DIRTYLOG, "log-six-stale");

	const struct mf_logent *head = mf_log_head(L);
	for (unsigned i = 0; i < L->nlog; i++)
		stale += !vxm_guid_eq(&L->le[i].guid, &L->log_guid);
	assert_int_equal(stale, 6);
	assert_int_equal(mf_log_span(L, head), 1);
	mf_bat_states_after(&c, head, want);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_true(in.log.replayed);
	assert_int_equal(in.log.entries, 1);
	assert_int_equal(in.bat.fully_present, want[VXM_PB_FULLY_PRESENT]);
	assert_int_equal(in.bat.not_present, want[VXM_PB_NOT_PRESENT]);
	vxm_image_close(img);
	struct want w = { .off = L->log, .what = dirty_msg(L, head), .finding = 1, .dirty = true };
	mc_run(&c, &w);
}

/* The head entry's (first) data sector is torn.  It never committed: the
 * active sequence ends at the entry before it, which has an older tail. */
static void dirty_log_with_a_torn_data_sector_replays_up_to_the_entry_before(void **state)
{
	struct vxm_image *img;
	struct vxm_info in;
	BEGIN(FXS_LOGREPLAY, "log-torn");

	const struct mf_logent *head = mf_log_head(L), *prev = mf_log_before(L, head);
	assert_true(head->ndesc >= 1 && head->ndesc < 126);
	flip(&c, head->off + VXM_LOG_SECTOR + 4092);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_true(in.log.replayed);
	assert_int_equal(in.log.entries, mf_log_span(L, prev));
	assert_int_equal(img->logseq.head, prev->pos);
	assert_int_equal(img->logseq.head_seq, prev->seq);
	vxm_image_close(img);
	struct want w = { .off = L->log, .what = dirty_msg(L, prev), .finding = 1, .dirty = true };
	mc_run(&c, &w);
}

/* The head entry's descriptor is re-aimed from the BAT at header 1 (CRC
 * recomputed): headers are never logged.  Neither a read-only open nor
 * --repair may apply any of it. */
static void log_replay_that_would_write_into_the_headers_is_corrupt_at_its_descriptor_0x107040(void **state)
{
	BEGIN(FXS_LOGREPLAY, "log-into-headers");
	const struct mf_logent *h = mf_log_head(L);
	assert_int_equal(get64(&c, h->off + 64 + 16), L->bat);
	put64(&c, h->off + 64 + 16, HDR1);
	fix_crc(&c, h->off, h->len);
	expect_log_refusal(&c, -VXM_ECORRUPT, h->off + 64,
			   mf_fmt("log entry %llu at 0x%llx: descriptor 0 (data, at 0x%llx) writes [0x10000,+0x1000)",
				  ULL(h->seq), ULL(h->off), ULL(h->off + 64)),
			   "inside the file identifier and headers");
}

/* The head entry (CRC recomputed) says the file grows to 4 EiB.  Replay
 * would ftruncate to that: a read-only open reported a 4096 PiB file and
 * --repair wrote the headers, then failed with EFBIG (or, on XFS, made a
 * 4 EiB sparse file). */
static void log_entry_growing_the_file_to_4_eib_is_corrupt_at_its_last_file_offset_0x107038(void **state)
{
	BEGIN(FXS_LOGREPLAY, "log-last-4eib");
	const struct mf_logent *h = mf_log_head(L);
	put64(&c, h->off + 56, 1ull << 62);
	fix_crc(&c, h->off, h->len);
	expect_log_refusal(&c, -VXM_ECORRUPT, h->off + 56,
			   mf_fmt("log entry %llu at 0x%llx: LastFileOffset 0x4000000000000000 is implausibly large",
				  ULL(h->seq), ULL(h->off)),
			   NULL);
}

/* The log moves to a new 32 MiB region at the end of the file, filled with
 * 4096 valid 8 KiB entries (the header's LogGuid, consecutive sequence
 * numbers) whose Tail names a data sector: no active sequence exists.  The
 * search used to restart one sector after each such run, parsing O(n^2)
 * entries (seconds here, ~17 minutes for a 256 MiB log); it must stay
 * linear. */
static void dirty_log_of_32_mib_whose_entries_name_no_tail_is_scanned_in_linear_time(void **state)
{
	enum { LOG_LEN = 32 << 20, ENTRY = 8192 };
	uint8_t *log = calloc(1, LOG_LEN), data[VXM_LOG_SECTOR] = { 0x5a };
	BEGIN(FXS_LOGREPLAY, "log-linear-scan");
	const uint64_t new_log = ROUND_MIB(L->size);

	assert_non_null(log);
	for (uint32_t pos = 0, i = 0; pos < LOG_LEN; pos += ENTRY, i++) {
		struct vxm_log_update u = { .file_off = L->bat, .data = data, .len = VXM_LOG_SECTOR };
		struct vxm_log_entry e = { .tail = VXM_LOG_SECTOR, .seq = 1000 + i, .guid = L->log_guid,
					   .flushed_file_offset = new_log,
					   .last_file_offset = new_log };
		assert_int_equal(vxm_log_entry_encode(&e, &u, 1, log + pos, ENTRY, NULL), 0);
	}
	wr(&c, new_log, log, LOG_LEN);
	free(log);
	for (uint64_t h = HDR1; h <= HDR2; h += HDR2 - HDR1) {
		put32(&c, h + 68, LOG_LEN);
		put64(&c, h + 72, new_log);
		fix_hdr(&c, h);
	}

	struct timespec t0, t1;
	struct vxm_image *img;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	vxm_image_close(img);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (secs > 5) {
		print_error("open took %.1f s: the log search is not linear\n", secs);
		fail();
	}
	expect_problem(&c, new_log, "LogGuid is set but no valid entry sequence exists", NULL);
}

/* The head entry says FlushedFileOffset bytes were durable; the file is
 * 1 MiB shorter. */
static void file_shorter_than_the_flushed_file_offset_is_corrupt_at_its_end_0x2300000(void **state)
{
	BEGIN(FXS_LOGREPLAY, "log-flushed");
	const struct mf_logent *h = mf_log_head(L);
	assert_true(h->flushed <= L->size && h->flushed > VXM_MiB);
	cut(&c, h->flushed - VXM_MiB);
	expect_log_refusal(&c, -VXM_ECORRUPT, h->flushed - VXM_MiB,
			   mf_fmt("log: the file is %llu bytes but the log says %llu",
				  ULL(h->flushed - VXM_MiB), ULL(h->flushed)),
			   "truncated");
}

/* ===== the run ==================================================================================== */

#define CASES(X)                                                                                     \
	/* truncation */                                                                             \
	X(file_cut_to_4_bytes_inside_the_signature_is_not_vhdx_at_0)                                 \
	X(file_without_the_vhdxfile_signature_is_not_vhdx_at_0)                                      \
	X(file_cut_inside_the_identifier_is_corrupt_at_its_end_0x8000)                               \
	X(file_cut_inside_header_1_is_corrupt_at_0x10800)                                            \
	X(file_cut_inside_header_2_is_corrupt_at_0x20800)                                            \
	X(file_cut_inside_region_table_1_is_corrupt_at_0x30800)                                      \
	X(file_cut_inside_region_table_2_is_corrupt_at_0x40800)                                      \
	X(file_cut_inside_a_dirty_log_is_corrupt_at_the_log_0x100000)                                \
	X(file_cut_inside_a_clean_log_is_corrupt_at_the_metadata_region_entry_0x30040)               \
	X(file_cut_inside_the_metadata_table_is_corrupt_at_its_region_entry_0x30040)                 \
	X(file_cut_inside_a_metadata_item_is_corrupt_at_the_metadata_region_entry_0x30040)           \
	X(file_cut_inside_the_bat_is_corrupt_at_the_bat_region_entry_0x30020)                        \
	X(file_cut_inside_a_payload_block_is_a_problem_at_bat_entry_3_0x300018)                      \
	X(trailing_block_stored_short_up_to_the_disk_end_is_legal)                                   \
	X(trailing_block_cut_before_the_disk_end_is_a_problem_at_bat_entry_0_0x300000)               \
	X(file_cut_inside_a_sector_bitmap_block_is_a_problem_at_bat_entry_4097_0x308008)             \
	/* headers */                                                                                \
	X(header_2_with_bad_crc_is_a_torn_copy_and_the_file_opens_from_header_1)                     \
	X(header_with_bad_crc_in_both_copies_is_corrupt_at_0x10004)                                  \
	X(current_header_with_version_2_is_unsupported_at_0x20042)                                   \
	X(header_version_2_in_both_copies_is_unsupported_at_0x20042)                                 \
	X(stale_header_with_version_2_is_ignored_and_the_file_opens)                                 \
	X(current_header_with_log_offset_not_1mib_aligned_is_corrupt_at_0x20048)                     \
	/* region tables */                                                                          \
	X(region_table_1_with_bad_crc_opens_from_copy_2_with_a_problem_at_0x30004)                   \
	X(region_tables_with_bad_crc_in_both_copies_are_corrupt_at_0x40004)                          \
	X(two_valid_but_different_region_tables_are_corrupt_at_0x40000)                              \
	X(overlapping_regions_are_corrupt_at_region_entry_1_0x40040)                                 \
	X(region_overlapping_the_log_is_corrupt_at_its_entry_0x30040)                                \
	X(region_past_the_end_of_the_file_is_corrupt_at_its_entry_0x30020)                           \
	X(region_whose_extent_wraps_past_2_pow_64_is_corrupt_at_its_entry_0x40020)                   \
	X(unknown_required_region_is_unsupported_at_entry_2_0x30050)                                 \
	/* metadata */                                                                               \
	X(missing_required_metadata_item_is_corrupt_at_the_metadata_table_0x200000)                  \
	X(unknown_required_metadata_item_is_unsupported_at_entry_4_0x2000a0)                         \
	X(metadata_item_outside_its_region_is_corrupt_at_entry_0_offset_field_0x200030)              \
	X(duplicate_metadata_item_ids_are_corrupt_at_entry_4_0x2000a0)                               \
	X(block_size_of_3_mib_is_corrupt_at_the_file_parameters_item_0x210000)                       \
	X(logical_sector_size_of_1024_is_corrupt_at_its_item_0x210010)                               \
	X(virtual_size_not_a_multiple_of_the_sector_is_corrupt_at_its_item_0x210008)                 \
	X(virtual_size_above_64_tib_is_corrupt_at_its_item_0x210008)                                 \
	/* BAT */                                                                                    \
	X(bat_entries_sharing_a_block_are_a_problem_naming_both_at_0x300008)                         \
	X(bat_entry_overlapping_the_metadata_region_is_a_problem_naming_both_at_0x300008)            \
	X(bat_entry_overlapping_the_log_is_a_problem_naming_both_at_0x300008)                        \
	X(bat_entry_past_the_end_of_the_file_is_a_problem_at_0x300008)                               \
	X(bat_entry_at_the_top_of_the_offset_range_is_a_problem_at_0x300008)                         \
	X(reserved_bat_state_4_is_a_problem_at_0x300008)                                             \
	X(reserved_bat_state_5_is_a_problem_at_0x300010)                                             \
	X(bat_entry_with_reserved_bits_set_is_a_problem_at_0x300008)                                 \
	X(partially_present_block_in_a_file_without_parent_is_a_problem_at_0x300008)                 \
	X(partially_present_block_without_its_chunk_bitmap_is_a_problem_at_0x300000)                 \
	X(not_present_entry_with_an_offset_is_a_problem_at_0x300008)                                 \
	X(zero_entry_with_an_offset_is_a_problem_at_0x300010)                                        \
	/* parent locator */                                                                         \
	X(locator_value_with_a_lone_surrogate_is_corrupt_at_that_value)                              \
	X(locator_key_of_length_zero_is_corrupt_at_entry_2_key_length_0x21005c)                      \
	X(locator_value_of_odd_length_is_corrupt_at_entry_3_value_length_0x21006a)                   \
	X(locator_without_parent_linkage_is_corrupt_at_the_item_0x210028)                            \
	X(locator_linkage_that_is_not_a_guid_is_corrupt_at_its_value_0x210094)                       \
	X(locator_with_a_duplicate_key_is_corrupt_at_entry_4_0x21006c)                               \
	X(locator_without_a_path_key_is_corrupt_at_the_item_0x210028)                                \
	/* log */                                                                                    \
	X(dirty_log_whose_entries_all_carry_another_log_guid_is_ignored_with_a_problem_at_0x100000)  \
	X(dirty_log_with_six_stale_entries_replays_only_the_current_one)                             \
	X(dirty_log_with_a_torn_data_sector_replays_up_to_the_entry_before)                          \
	X(log_replay_that_would_write_into_the_headers_is_corrupt_at_its_descriptor_0x107040)        \
	X(dirty_log_of_32_mib_whose_entries_name_no_tail_is_scanned_in_linear_time)                  \
	X(log_entry_growing_the_file_to_4_eib_is_corrupt_at_its_last_file_offset_0x107038)           \
	X(file_shorter_than_the_flushed_file_offset_is_corrupt_at_its_end_0x2300000)

int main(void)
{
	static enum mf_source standin = MF_STANDIN, fixture = MF_FIXTURE;
#define ON_STANDIN(f) cmocka_unit_test_prestate(f, &standin),
#define ON_FIXTURE(f) cmocka_unit_test_prestate(f, &fixture),
	const struct CMUnitTest standins[] = {
		cmocka_unit_test(standins_check_clean_and_read_alike_with_qemu_and_libvhdi),
		CASES(ON_STANDIN)
	};
	const struct CMUnitTest fixtures[] = { CASES(ON_FIXTURE) };
	const char *fx = tl_fixtures_dir();

	printf("== synthesized stand-ins (tests/lib/fxsynth.c)\n");
	int failed = cmocka_run_group_tests_name("stand-ins", standins, NULL, NULL);
	if (fx) {
		printf("== real fixtures from %s\n", fx);
		failed += cmocka_run_group_tests_name("fixtures", fixtures, NULL, NULL);
	} else {
		printf("== real fixtures: none (set VHDX_FIXTURES; default ../shared/fixtures): "
		       "the %zu cases ran on the stand-ins only\n",
		       sizeof(fixtures) / sizeof(fixtures[0]));
	}
	mf_cleanup();
	return failed ? 1 : 0;
}
