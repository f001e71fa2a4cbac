/* tests/engine/test_malformed.c: damaged VHDX files fail precisely and are
 * never written.
 *
 * Every case copies a real fixture (Hyper-V / Windows / QEMU files from
 * $VHDX_FIXTURES) into a scratch file, damages a few bytes of one structure
 * (recomputing CRCs where the damage must get past them), and then asserts:
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
 * With VXM_MALFORMED_SAVE=DIR every damaged file is also copied into DIR:
 * tests/fuzz/make_seeds.sh makes fuzzer seeds of them.
 *
 * Offsets below refer to the fixtures' layout (fmt §11): header section,
 * log at 1 MiB, metadata region at 2 MiB (table entries at 0x200020 + 32 i,
 * items from 0x210000), BAT at 3 MiB; QEMU's dirty-log file has the BAT at
 * 2 MiB and metadata at 3 MiB.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "vhdx/endian.h"

/* ---- fixtures --------------------------------------------------------------- */

enum fx { FX_FIXED, FX_DYNAMIC, FX_DIFF, FX_LOGREPLAY, FX_DIRTY10G };

static const struct {
	const char *folder, *file;
} fixtures[] = {
	[FX_FIXED] = { "dissect-fixed-vhdx", "fixed.vhdx" },
	[FX_DYNAMIC] = { "dissect-dynamic-vhdx", "dynamic.vhdx" },
	[FX_DIFF] = { "dissect-differencing-avhdx", "differencing.avhdx" },
	[FX_LOGREPLAY] = { "discutils-vhdx-log-replay", "vhdx-log-replay.vhdx" },
	[FX_DIRTY10G] = { "qemu-iotest-dirtylog-10G-4M", "iotest-dirtylog-10G-4M.vhdx" },
};

/* Layout of the Windows-made fixtures. */
enum {
	HDR1 = 0x10000,
	HDR2 = 0x20000,
	RT1 = 0x30000,
	RT2 = 0x40000,
	LOG = 0x100000,
	META = 0x200000,
	BAT = 0x300000,
};
#define RT_ENTRY(rt, i) ((rt) + 16 + 32 * (i))
#define MT_ENTRY(i) (META + 32 + 32 * (i))
#define BAT_ENTRY(i) (BAT + 8 * (uint64_t)(i))
/* Metadata items (fixed, dynamic, differencing, log-replay). */
enum {
	ITEM_PARAMS = 0x210000,
	ITEM_VSIZE = 0x210008,
	ITEM_LSS = 0x210010,
	ITEM_PSS = 0x210014,
	ITEM_DISKID = 0x210018,
	ITEM_LOCATOR = 0x210028, /* differencing.avhdx, 1014 bytes, 5 entries */
};
#define LOC_ENTRY(i) (ITEM_LOCATOR + 20 + 12 * (i))

static const uint8_t unknown_guid[16] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
					  0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01 };

/* ---- one case ------------------------------------------------------------------ */

struct mc {
	char *path;
	int fd;
};

static char *scratch;

static void mc_begin(struct mc *c, enum fx fx, const char *tag)
{
	char *src = tl_fixture(fixtures[fx].folder, fixtures[fx].file);

	assert_non_null(src);
	if (!scratch)
		scratch = tl_mkdtemp("malformed");
	assert_true(asprintf(&c->path, "%s/%s.vhdx", scratch, tag) > 0);
	assert_int_equal(tl_copy_file(src, c->path), 0);
	c->fd = open(c->path, O_RDWR);
	assert_true(c->fd >= 0);
	free(src);
}

/* ---- byte surgery -------------------------------------------------------------- */

static void wr(struct mc *c, uint64_t off, const void *buf, size_t n)
{
	assert_int_equal(pwrite(c->fd, buf, n, (off_t)off), (ssize_t)n);
}

static void rd(struct mc *c, uint64_t off, void *buf, size_t n)
{
	assert_int_equal(pread(c->fd, buf, n, (off_t)off), (ssize_t)n);
}

static void put16(struct mc *c, uint64_t off, uint16_t v)
{
	uint8_t b[2];
	vxm_put_le16(b, v);
	wr(c, off, b, 2);
}

static void put32(struct mc *c, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	vxm_put_le32(b, v);
	wr(c, off, b, 4);
}

static void put64(struct mc *c, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	vxm_put_le64(b, v);
	wr(c, off, b, 8);
}

static uint64_t get64(struct mc *c, uint64_t off)
{
	uint8_t b[8];
	rd(c, off, b, 8);
	return vxm_le64(b);
}

static void poke(struct mc *c, uint64_t off, uint8_t v)
{
	wr(c, off, &v, 1);
}

/* Flips the bits of one byte (the structure's CRC no longer matches). */
static void flip(struct mc *c, uint64_t off)
{
	uint8_t v;
	rd(c, off, &v, 1);
	v ^= 0xff;
	wr(c, off, &v, 1);
}

/* Recomputes the CRC-32C at off + 4 of the len-byte structure at off. */
static void fix_crc(struct mc *c, uint64_t off, size_t len)
{
	uint8_t *b = malloc(len);
	assert_non_null(b);
	rd(c, off, b, len);
	put32(c, off + 4, vxm_crc32c_skip(b, len, 4));
	free(b);
}

static void fix_hdr(struct mc *c, uint64_t slot) { fix_crc(c, slot, VXM_HDR_SIZE); }
static void fix_rt(struct mc *c, uint64_t rt) { fix_crc(c, rt, VXM_RT_SIZE); }

static void cut(struct mc *c, uint64_t size)
{
	assert_int_equal(ftruncate(c->fd, (off_t)size), 0);
}

static void copy_range(struct mc *c, uint64_t from, uint64_t to, size_t n)
{
	uint8_t *b = malloc(n);
	assert_non_null(b);
	rd(c, from, b, n);
	wr(c, to, b, n);
	free(b);
}

/* Same change in both region table copies, CRCs recomputed. */
static void rt_put64_both(struct mc *c, uint64_t rel, uint64_t v)
{
	put64(c, RT1 + rel, v);
	put64(c, RT2 + rel, v);
	fix_rt(c, RT1);
	fix_rt(c, RT2);
}

static void rt_put32_both(struct mc *c, uint64_t rel, uint32_t v)
{
	put32(c, RT1 + rel, v);
	put32(c, RT2 + rel, v);
	fix_rt(c, RT1);
	fix_rt(c, RT2);
}

/* ---- expectations ---------------------------------------------------------------- */

struct want {
	int code;          /* vxm_image_open: 0 or a negative error */
	uint64_t off;      /* err.off, or the offset of the finding */
	const char *what;  /* in err.msg or the finding: names the structure */
	const char *what2; /* optional second name (overlaps name both objects) */
	int finding;       /* open succeeds: 1 a problem, 0 a note, -1 clean */
	bool dirty;        /* the log is legitimately dirty: --repair may write */
	bool log_refused;  /* the log is dirty and unreplayable: --repair fails */
	bool lookup;       /* a lookup of `sector` fails like the finding */
	uint64_t sector;
};

static void need(const char *hay, const char *needle, const char *what)
{
	if (!hay || !strstr(hay, needle)) {
		print_error("%s: expected \"%s\" in:\n%s\n", what, needle, hay ? hay : "(null)");
		fail();
	}
}

static void sha(const char *path, char out[65])
{
	assert_int_equal(tl_sha256_file(path, out), 0);
}

/* (c): the program's exit code and what it prints. */
static void run_cli(const struct mc *c, const struct want *w, const char *args, int want_exit)
{
	char hex[40];
	int st;
	char *out = tl_sh_out(&st, "'%s' %s '%s' 2>&1", tl_bin(), args, c->path);

	assert_non_null(out);
	if (st != want_exit) {
		print_error("vhdxmerge %s %s: exit %d, expected %d\n%s\n", args, c->path, st,
			    want_exit, out);
		fail();
	}
	if (want_exit) {
		snprintf(hex, sizeof(hex), "0x%llx)", (unsigned long long)w->off);
		need(out, c->path, args);
		need(out, w->what, args);
		if (w->what2)
			need(out, w->what2, args);
		need(out, hex, args);
	}
	free(out);
}

static bool finding_matches(const struct vxm_finding *f, const struct want *w)
{
	return f->severity == (w->finding > 0) && f->off == w->off && strstr(f->msg, w->what) &&
	       (!w->what2 || strstr(f->msg, w->what2));
}

static void mc_run(struct mc *c, const struct want *w)
{
	struct vxm_err err = { 0 };
	struct vxm_image *img = NULL;
	char before[65], after[65];
	int ret, problems = 0;

	assert_int_equal(close(c->fd), 0);
	c->fd = -1;
	sha(c->path, before);
	/* tests/fuzz/make_seeds.sh turns every damaged file into fuzzer seeds. */
	const char *save = getenv("VXM_MALFORMED_SAVE");
	if (save && *save)
		assert_int_equal(tl_sh("cp --sparse=always '%s' '%s/'", c->path, save), 0);

	/* (a), (b) through the library */
	ret = vxm_image_open(&img, NULL, c->path, 0, &err);
	if (ret != w->code) {
		char buf[1400];
		print_error("open: %d (%s), expected %d: %s\n", ret, vxm_strerror(ret), w->code,
			    vxm_err_format(&err, buf, sizeof(buf)));
		fail();
	}
	if (w->code) {
		assert_null(img);
		assert_int_equal(err.code, w->code);
		need(err.msg, w->what, "err.msg");
		if (w->what2)
			need(err.msg, w->what2, "err.msg");
		if (err.off != w->off) {
			print_error("err.off 0x%llx, expected 0x%llx: %s\n",
				    (unsigned long long)err.off, (unsigned long long)w->off, err.msg);
			fail();
		}
		assert_string_equal(err.path, c->path);
	} else {
		problems = vxm_image_check(img, &err);
		assert_true(problems >= 0);
		unsigned n = vxm_image_findings(img, NULL, 0);
		struct vxm_finding *f = calloc(n + 1, sizeof(*f));
		bool found = false;
		assert_non_null(f);
		vxm_image_findings(img, f, n);
		for (unsigned i = 0; i < n && !found; i++)
			found = w->finding >= 0 && finding_matches(&f[i], w);
		if (w->finding < 0 ? problems != 0 : !found || (problems > 0) != (w->finding > 0)) {
			print_error("check: %d problems, %u findings; expected %s at 0x%llx \"%s\"\n",
				    problems, n,
				    w->finding > 0 ? "a problem" : w->finding == 0 ? "a note" : "none",
				    (unsigned long long)w->off, w->what ? w->what : "");
			for (unsigned i = 0; i < n; i++)
				print_error("  [%d] 0x%llx %s\n", f[i].severity,
					    (unsigned long long)f[i].off, f[i].msg);
			fail();
		}
		free(f);
		if (w->lookup) {
			struct vxm_err le = { 0 };
			struct vxm_run run;
			assert_int_equal(vxm_image_lookup(img, w->sector, 1, &run, &le), -VXM_ECORRUPT);
			need(le.msg, w->what, "lookup err.msg");
			assert_int_equal(le.off, w->off);
		}
		vxm_image_close(img);
	}

	/* (c) through the program */
	run_cli(c, w, "info", w->code ? vxm_exit_code(w->code) : 0);
	run_cli(c, w, "check", w->code || problems ? 1 : 0);
	sha(c->path, after);
	assert_string_equal(before, after);

	/* (d) --repair writes nothing to a damaged file that is not dirty */
	if (!w->dirty) {
		run_cli(c, w, "check --repair",
			w->log_refused ? vxm_exit_code(w->code) : w->code || problems ? 1 : 0);
		sha(c->path, after);
		assert_string_equal(before, after);
	}
	unlink(c->path);
	free(c->path);
}

static void expect_error(struct mc *c, int code, uint64_t off, const char *what, const char *what2)
{
	struct want w = { .code = code, .off = off, .what = what, .what2 = what2 };
	mc_run(c, &w);
}

/* The open fails in a log that must be replayed: --repair refuses too. */
static void expect_log_refusal(struct mc *c, int code, uint64_t off, const char *what,
			       const char *what2)
{
	struct want w = { .code = code, .off = off, .what = what, .what2 = what2,
			  .log_refused = true };
	mc_run(c, &w);
}

static void expect_problem(struct mc *c, uint64_t off, const char *what, const char *what2)
{
	struct want w = { .off = off, .what = what, .what2 = what2, .finding = 1 };
	mc_run(c, &w);
}

/* The problem is also what a lookup of `sector` runs into. */
static void expect_problem_on_read(struct mc *c, uint64_t off, const char *what, uint64_t sector)
{
	struct want w = { .off = off, .what = what, .finding = 1, .lookup = true, .sector = sector };
	mc_run(c, &w);
}

/* ===== truncation at every structure =============================================== */

static void file_cut_to_4_bytes_inside_the_signature_is_not_vhdx_at_0(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-4");
	cut(&c, 4);
	expect_error(&c, -VXM_ENOTVHDX, 0, "file identifier", "vhdxfile");
}

static void file_without_the_vhdxfile_signature_is_not_vhdx_at_0(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "no-signature");
	poke(&c, 0, 'V');
	expect_error(&c, -VXM_ENOTVHDX, 0, "file identifier", "vhdxfile");
}

static void file_cut_inside_the_identifier_is_corrupt_at_its_end_0x8000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-ident");
	cut(&c, 0x8000);
	expect_error(&c, -VXM_ECORRUPT, 0x8000, "truncated inside the file identifier", NULL);
}

static void file_cut_inside_header_1_is_corrupt_at_0x10800(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-hdr1");
	cut(&c, HDR1 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, HDR1 + 0x800, "truncated inside header 1", NULL);
}

static void file_cut_inside_header_2_is_corrupt_at_0x20800(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-hdr2");
	cut(&c, HDR2 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, HDR2 + 0x800, "truncated inside header 2", NULL);
}

static void file_cut_inside_region_table_1_is_corrupt_at_0x30800(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-rt1");
	cut(&c, RT1 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, RT1 + 0x800, "truncated inside region table 1", NULL);
}

static void file_cut_inside_region_table_2_is_corrupt_at_0x40800(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-rt2");
	cut(&c, RT2 + 0x800);
	expect_error(&c, -VXM_ECORRUPT, RT2 + 0x800, "truncated inside region table 2", NULL);
}

/* A dirty log must be read whole: its start is the damaged structure. */
static void file_cut_inside_a_dirty_log_is_corrupt_at_the_log_0x100000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_LOGREPLAY, "cut-dirty-log");
	cut(&c, LOG + 0x4000);
	expect_log_refusal(&c, -VXM_ECORRUPT, LOG, "log [0x100000,+1048576) extends past the end",
			   NULL);
}

/* A clean log is not read; the first structure the open needs that lies
 * past the cut is the metadata region, named by its region table entry. */
static void file_cut_inside_a_clean_log_is_corrupt_at_the_metadata_region_entry_0x30040(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-clean-log");
	cut(&c, LOG + 0x80000);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, 1) + 16, "metadata region",
		     "extends past the end of the file (1572864 bytes)");
}

static void file_cut_inside_the_metadata_table_is_corrupt_at_its_region_entry_0x30040(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-meta-table");
	cut(&c, META + 0x100);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, 1) + 16, "metadata region",
		     "extends past the end of the file (2097408 bytes)");
}

static void file_cut_inside_a_metadata_item_is_corrupt_at_the_metadata_region_entry_0x30040(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-item");
	cut(&c, ITEM_PARAMS + 4);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, 1) + 16, "metadata region",
		     "extends past the end of the file (2162692 bytes)");
}

static void file_cut_inside_the_bat_is_corrupt_at_the_bat_region_entry_0x30020(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-bat");
	cut(&c, BAT + 0x10);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, 0) + 16, "BAT region",
		     "extends past the end of the file (3145744 bytes)");
}

/* fixed.vhdx: block 3 at 10 MiB is cut in half, block 4 at 12 MiB is gone. */
static void file_cut_inside_a_payload_block_is_a_problem_at_bat_entry_3_0x300018(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "cut-block");
	cut(&c, 0xB00000);
	expect_problem_on_read(&c, BAT_ENTRY(3),
			       "BAT entry 3 (block 3): payload at 0xa00000 extends past the end",
			       3 * 4096);
}

/* dynamic.vhdx: a 10 MiB disk in one 32 MiB block at 4 MiB.  Storing only
 * the block's virtual 10 MiB is legal (fmt P8), and reads are unchanged. */
static void trailing_block_stored_short_up_to_the_disk_end_is_legal(void **state)
{
	struct mc c;
	struct vxm_image *img;
	char full[65], shortened[65];
	(void)state;

	mc_begin(&c, FX_DYNAMIC, "trailing-short-ok");
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(tl_sha256_image(img, full), 0);
	vxm_image_close(img);
	cut(&c, 0x400000 + 10 * VXM_MiB);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(tl_sha256_image(img, shortened), 0);
	vxm_image_close(img);
	assert_string_equal(full, shortened);
	struct want w = { .finding = -1 };
	mc_run(&c, &w);
}

static void trailing_block_cut_before_the_disk_end_is_a_problem_at_bat_entry_0_0x300000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DYNAMIC, "trailing-cut");
	cut(&c, 0x400000 + 9 * VXM_MiB);
	expect_problem_on_read(&c, BAT_ENTRY(0),
			       "BAT entry 0 (block 0): payload at 0x400000 extends past the end", 0);
}

/* differencing.avhdx: the sector bitmap of chunk 1 (BAT entry 4097, at
 * 4 MiB) is moved to the end of the file, which is then cut half-way
 * through it.  Block 2509 (BAT entry 2510) is partially present in chunk 1,
 * so looking it up needs that bitmap. */
static void file_cut_inside_a_sector_bitmap_block_is_a_problem_at_bat_entry_4097_0x308008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "cut-sb");
	assert_int_equal(get64(&c, BAT_ENTRY(4097)), 0x400006);
	copy_range(&c, 0x400000, 0x4600000, 0x80000);
	cut(&c, 0x4680000);
	put64(&c, BAT_ENTRY(4097), 0x4600006);
	expect_problem_on_read(&c, BAT_ENTRY(4097),
			       "BAT entry 4097 (sector bitmap of chunk 1): block at 0x4600000 extends past the end",
			       2509ull * 4096);
}

/* ===== headers ============================================================================ */

/* A torn header update is not corruption: the other copy is current. */
static void header_2_with_bad_crc_is_a_torn_copy_and_the_file_opens_from_header_1(void **state)
{
	struct mc c;
	struct vxm_image *img;
	struct vxm_info in;
	(void)state;

	mc_begin(&c, FX_FIXED, "hdr2-torn");
	flip(&c, HDR2 + 0x100);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_int_equal(in.current_header, 1);
	assert_int_equal(in.header_seq, 6);
	vxm_image_close(img);
	struct want w = { .off = HDR2, .what = "header 2 is not valid", .finding = 0 };
	mc_run(&c, &w);
}

static void header_with_bad_crc_in_both_copies_is_corrupt_at_0x10004(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "hdr-crc-both");
	flip(&c, HDR1 + 0x100);
	flip(&c, HDR2 + 0x100);
	expect_error(&c, -VXM_ECORRUPT, HDR1 + 4, "no valid header", "header at 0x10000: checksum");
}

/* The current header (valid CRC, larger sequence number) says version 2:
 * a newer writer owns the file; falling back to the older header 1 would
 * read stale structures. */
static void current_header_with_version_2_is_unsupported_at_0x20042(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "hdr-version2");
	put16(&c, HDR2 + 66, 2);
	fix_hdr(&c, HDR2);
	expect_error(&c, -VXM_EUNSUPPORTED, HDR2 + 66, "header at 0x20000: version 2", NULL);
}

static void header_version_2_in_both_copies_is_unsupported_at_0x20042(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "hdr-version2-both");
	put16(&c, HDR1 + 66, 2);
	put16(&c, HDR2 + 66, 2);
	fix_hdr(&c, HDR1);
	fix_hdr(&c, HDR2);
	expect_error(&c, -VXM_EUNSUPPORTED, HDR2 + 66, "version 2", NULL);
}

/* The stale copy (smaller sequence number) is never used: it only earns a note. */
static void stale_header_with_version_2_is_ignored_and_the_file_opens(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "hdr1-version2");
	put16(&c, HDR1 + 66, 2);
	fix_hdr(&c, HDR1);
	struct want w = { .off = HDR1, .what = "header 1 is not valid", .finding = 0 };
	mc_run(&c, &w);
}

static void current_header_with_log_offset_not_1mib_aligned_is_corrupt_at_0x20048(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "hdr-log-align");
	put64(&c, HDR2 + 72, 0x180000);
	fix_hdr(&c, HDR2);
	expect_error(&c, -VXM_ECORRUPT, HDR2 + 72, "header at 0x20000: log offset 0x180000", NULL);
}

/* ===== region tables ====================================================================== */

static void region_table_1_with_bad_crc_opens_from_copy_2_with_a_problem_at_0x30004(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt1-crc");
	flip(&c, RT1 + 0x1000);
	expect_problem(&c, RT1 + 4, "region table at 0x30000: checksum", "using region table copy 2");
}

static void region_tables_with_bad_crc_in_both_copies_are_corrupt_at_0x40004(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-crc-both");
	flip(&c, RT1 + 0x1000);
	flip(&c, RT2 + 0x1000);
	expect_error(&c, -VXM_ECORRUPT, RT2 + 4, "no valid region table", "checksum");
}

/* Copy 2 lists the same two regions in the other order: valid, but which
 * copy is right cannot be known. */
static void two_valid_but_different_region_tables_are_corrupt_at_0x40000(void **state)
{
	struct mc c;
	uint8_t e0[32], e1[32];
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-differ");
	rd(&c, RT_ENTRY(RT2, 0), e0, 32);
	rd(&c, RT_ENTRY(RT2, 1), e1, 32);
	wr(&c, RT_ENTRY(RT2, 0), e1, 32);
	wr(&c, RT_ENTRY(RT2, 1), e0, 32);
	fix_rt(&c, RT2);
	expect_error(&c, -VXM_ECORRUPT, RT2, "region tables: both copies are valid but differ", NULL);
}

/* Metadata grows to 2 MiB and runs into the BAT at 3 MiB (both copies). */
static void overlapping_regions_are_corrupt_at_region_entry_1_0x40040(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-overlap");
	rt_put32_both(&c, RT_ENTRY(0, 1) + 24, 2 * VXM_MiB);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT2, 1) + 16, "region 1 [0x200000,+0x200000) overlaps region 0",
		     NULL);
}

static void region_overlapping_the_log_is_corrupt_at_its_entry_0x30040(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-over-log");
	rt_put64_both(&c, RT_ENTRY(0, 1) + 16, LOG);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, 1) + 16, "metadata region [0x100000,+0x100000) overlaps the log",
		     NULL);
}

static void region_past_the_end_of_the_file_is_corrupt_at_its_entry_0x30020(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-past-eof");
	rt_put64_both(&c, RT_ENTRY(0, 0) + 16, 4 * VXM_GiB);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT1, 0) + 16, "BAT region [0x100000000,+0x100000) extends past the end",
		     NULL);
}

/* FileOffset at the top of the u64 range: offset + length wraps to 0. */
static void region_whose_extent_wraps_past_2_pow_64_is_corrupt_at_its_entry_0x40020(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-wrap");
	rt_put64_both(&c, RT_ENTRY(0, 0) + 16, 0xFFFFFFFFFFF00000ull);
	expect_error(&c, -VXM_ECORRUPT, RT_ENTRY(RT2, 0) + 16, "region table at 0x40000: entry 0", "overflows");
}

static void unknown_required_region_is_unsupported_at_entry_2_0x30050(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "rt-unknown-required");
	for (uint64_t rt = RT1; rt <= RT2; rt += RT2 - RT1) {
		wr(&c, RT_ENTRY(rt, 2), unknown_guid, 16);
		put64(&c, RT_ENTRY(rt, 2) + 16, 0x1000000);
		put32(&c, RT_ENTRY(rt, 2) + 24, VXM_MiB);
		put32(&c, RT_ENTRY(rt, 2) + 28, 1);
		put32(&c, rt + 8, 3);
		fix_rt(&c, rt);
	}
	expect_error(&c, -VXM_EUNSUPPORTED, RT_ENTRY(RT1, 2),
		     "unknown required region {44332211-6655-8877-99aa-bbccddeef001}", NULL);
}

/* ===== metadata =============================================================================== */

/* The Virtual Disk ID entry gets an unknown id and loses IsRequired. */
static void missing_required_metadata_item_is_corrupt_at_the_metadata_table_0x200000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-missing");
	wr(&c, MT_ENTRY(4), unknown_guid, 16);
	put32(&c, MT_ENTRY(4) + 24, VXM_META_IS_VIRTUAL_DISK);
	expect_error(&c, -VXM_ECORRUPT, META, "required item Virtual Disk ID is missing", NULL);
}

static void unknown_required_metadata_item_is_unsupported_at_entry_4_0x2000a0(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-unknown-required");
	wr(&c, MT_ENTRY(4), unknown_guid, 16);
	expect_error(&c, -VXM_EUNSUPPORTED, MT_ENTRY(4),
		     "unknown required system item {44332211-6655-8877-99aa-bbccddeef001}", NULL);
}

static void metadata_item_outside_its_region_is_corrupt_at_entry_0_offset_field_0x200030(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-item-bounds");
	put32(&c, MT_ENTRY(0) + 16, VXM_MiB - 4);
	expect_error(&c, -VXM_ECORRUPT, MT_ENTRY(0) + 16,
		     "metadata table at 0x200000: entry 0 item [0xffffc,+8) outside the region", NULL);
}

static void duplicate_metadata_item_ids_are_corrupt_at_entry_4_0x2000a0(void **state)
{
	struct mc c;
	uint8_t id[16];
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-dup");
	rd(&c, MT_ENTRY(3), id, 16);
	wr(&c, MT_ENTRY(4), id, 16);
	expect_error(&c, -VXM_ECORRUPT, MT_ENTRY(4), "entries 3 and 4 have the same item id", NULL);
}

static void block_size_of_3_mib_is_corrupt_at_the_file_parameters_item_0x210000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-block-size");
	put32(&c, ITEM_PARAMS, 3 * VXM_MiB);
	expect_error(&c, -VXM_ECORRUPT, ITEM_PARAMS, "File Parameters at 0x210000: block size 3145728",
		     NULL);
}

static void logical_sector_size_of_1024_is_corrupt_at_its_item_0x210010(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-lss");
	put32(&c, ITEM_LSS, 1024);
	expect_error(&c, -VXM_ECORRUPT, ITEM_LSS, "Logical Sector Size at 0x210010: 1024", NULL);
}

static void virtual_size_not_a_multiple_of_the_sector_is_corrupt_at_its_item_0x210008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-vsize");
	put64(&c, ITEM_VSIZE, 10 * VXM_MiB + 1);
	expect_error(&c, -VXM_ECORRUPT, ITEM_VSIZE, "Virtual Disk Size at 0x210008: 10485761", NULL);
}

static void virtual_size_above_64_tib_is_corrupt_at_its_item_0x210008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "meta-vsize-big");
	put64(&c, ITEM_VSIZE, 64 * VXM_TiB + 512);
	expect_error(&c, -VXM_ECORRUPT, ITEM_VSIZE, "Virtual Disk Size at 0x210008", "64 TiB");
}

/* ===== BAT (check-level: the file opens, check and reads find the damage) ====================== */

static void bat_entries_sharing_a_block_are_a_problem_naming_both_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-overlap");
	put64(&c, BAT_ENTRY(1), 0x400006);
	expect_problem(&c, BAT_ENTRY(1), "block 1 (BAT entry 1) at 0x400000 overlaps",
		       "block 0 (BAT entry 0) [0x400000,0x600000)");
}

static void bat_entry_overlapping_the_metadata_region_is_a_problem_naming_both_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-over-meta");
	put64(&c, BAT_ENTRY(1), 0x200006);
	expect_problem(&c, BAT_ENTRY(1), "block 1 (BAT entry 1) at 0x200000 overlaps",
		       "the metadata region [0x200000,0x300000)");
}

static void bat_entry_overlapping_the_log_is_a_problem_naming_both_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-over-log");
	put64(&c, BAT_ENTRY(1), 0x100006);
	expect_problem(&c, BAT_ENTRY(1), "block 1 (BAT entry 1) at 0x100000 overlaps",
		       "the log [0x100000,0x200000)");
}

static void bat_entry_past_the_end_of_the_file_is_a_problem_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-past-eof");
	put64(&c, BAT_ENTRY(1), 0x1000006);
	expect_problem_on_read(&c, BAT_ENTRY(1),
			       "BAT entry 1 (block 1): payload at 0x1000000 extends past the end", 4096);
}

/* FileOffsetMB at its maximum: offset + block size wraps past 2^64. */
static void bat_entry_at_the_top_of_the_offset_range_is_a_problem_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-wrap");
	put64(&c, BAT_ENTRY(1), 0xFFFFFFFFFFF00006ull);
	expect_problem_on_read(&c, BAT_ENTRY(1),
			       "BAT entry 1 (block 1): payload at 0xfffffffffff00000 extends past the end",
			       4096);
}

static void reserved_bat_state_4_is_a_problem_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-state4");
	put64(&c, BAT_ENTRY(1), 0x600004);
	expect_problem_on_read(&c, BAT_ENTRY(1), "BAT entry 1 (block 1): reserved state 4", 4096);
}

static void reserved_bat_state_5_is_a_problem_at_0x300010(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-state5");
	put64(&c, BAT_ENTRY(2), 0x800005);
	expect_problem_on_read(&c, BAT_ENTRY(2), "BAT entry 2 (block 2): reserved state 5", 2 * 4096);
}

static void bat_entry_with_reserved_bits_set_is_a_problem_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-reserved-bits");
	put64(&c, BAT_ENTRY(1), 0x600006 | 0x100);
	expect_problem_on_read(&c, BAT_ENTRY(1), "BAT entry 1: reserved bits set", 4096);
}

static void partially_present_block_in_a_file_without_parent_is_a_problem_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-partial-nodiff");
	put64(&c, BAT_ENTRY(1), 0x600007);
	expect_problem_on_read(&c, BAT_ENTRY(1),
			       "BAT entry 1 (block 1): PARTIALLY_PRESENT in a file without parent", 4096);
}

/* differencing.avhdx: chunk 0's bitmap entry (2048) cleared; block 0 is
 * PARTIALLY_PRESENT at 26 MiB. */
static void partially_present_block_without_its_chunk_bitmap_is_a_problem_at_0x300000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "bat-partial-no-sb");
	assert_int_equal(get64(&c, BAT_ENTRY(2048)), 0x700006);
	put64(&c, BAT_ENTRY(2048), 0);
	expect_problem_on_read(&c, BAT_ENTRY(0),
			       "BAT entry 0 (block 0): PARTIALLY_PRESENT but the sector bitmap of chunk 0", 0);
}

static void not_present_entry_with_an_offset_is_a_problem_at_0x300008(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-np-offset");
	put64(&c, BAT_ENTRY(1), 0x600000);
	expect_problem_on_read(&c, BAT_ENTRY(1),
			       "BAT entry 1 (block 1): state NOT_PRESENT with non-zero offset 0x600000", 4096);
}

static void zero_entry_with_an_offset_is_a_problem_at_0x300010(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_FIXED, "bat-zero-offset");
	put64(&c, BAT_ENTRY(2), 0x800002);
	expect_problem_on_read(&c, BAT_ENTRY(2),
			       "BAT entry 2 (block 2): state ZERO with non-zero offset 0x800000", 2 * 4096);
}

/* ===== parent locator (differencing.avhdx, item at 0x210028) ============================================
 * entry 0 parent_linkage (value at 0x210094), 1 absolute_win32_path (key at
 * +0xb8), 2 relative_path (key +0x1b6, value 0x2101f8), 3 volume_path (key
 * +0x242), 4 parent_linkage2. */

static void locator_value_with_a_lone_surrogate_is_corrupt_at_0x2101f8(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-utf16");
	put16(&c, 0x2101f8, 0xDC00);
	expect_error(&c, -VXM_ECORRUPT, 0x2101f8,
		     "parent locator at 0x210028: entry 2 value is not valid UTF-16", NULL);
}

static void locator_key_of_length_zero_is_corrupt_at_entry_2_key_length_0x21005c(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-key-len0");
	put16(&c, LOC_ENTRY(2) + 8, 0);
	expect_error(&c, -VXM_ECORRUPT, LOC_ENTRY(2) + 8, "parent locator at 0x210028: entry 2",
		     "key length 0");
}

static void locator_value_of_odd_length_is_corrupt_at_entry_3_value_length_0x21006a(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-odd");
	put16(&c, LOC_ENTRY(3) + 10, 307);
	expect_error(&c, -VXM_ECORRUPT, LOC_ENTRY(3) + 10, "parent locator at 0x210028: entry 3",
		     "value length 307");
}

static void locator_without_parent_linkage_is_corrupt_at_the_item_0x210028(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-no-linkage");
	put16(&c, ITEM_LOCATOR + 0x50, 'q'); /* "qarent_linkage": an unknown key */
	expect_error(&c, -VXM_ECORRUPT, ITEM_LOCATOR, "parent locator at 0x210028: no parent_linkage",
		     NULL);
}

static void locator_linkage_that_is_not_a_guid_is_corrupt_at_its_value_0x210094(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-linkage-guid");
	put16(&c, 0x210094 + 2, 'x');
	expect_error(&c, -VXM_ECORRUPT, 0x210094, "parent locator at 0x210028: parent_linkage value is not a GUID",
		     NULL);
}

static void locator_with_a_duplicate_key_is_corrupt_at_entry_4_0x21006c(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-dup-key");
	put32(&c, LOC_ENTRY(4), 0x50); /* key "parent_linkage" again */
	put16(&c, LOC_ENTRY(4) + 8, 28);
	expect_error(&c, -VXM_ECORRUPT, LOC_ENTRY(4), "entries 0 and 4 have the same key", NULL);
}

static void locator_without_a_path_key_is_corrupt_at_the_item_0x210028(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_DIFF, "loc-no-path");
	put16(&c, ITEM_LOCATOR + 0xb8, 'X');
	put16(&c, ITEM_LOCATOR + 0x1b6, 'X');
	put16(&c, ITEM_LOCATOR + 0x242, 'X');
	expect_error(&c, -VXM_ECORRUPT, ITEM_LOCATOR,
		     "none of relative_path, volume_path, absolute_win32_path", NULL);
}

/* ===== log ======================================================================================== */

/* vhdx-log-replay.vhdx: both headers get a new LogGuid, so all five CRC-valid
 * entries are stale.  They must not be replayed: the BAT stays as on disk. */
static void dirty_log_whose_entries_all_carry_another_log_guid_is_ignored_with_a_problem_at_0x100000(void **state)
{
	struct mc c;
	struct vxm_image *img;
	struct vxm_info in;
	(void)state;

	mc_begin(&c, FX_LOGREPLAY, "log-stale");
	wr(&c, HDR1 + 48, unknown_guid, 16);
	wr(&c, HDR2 + 48, unknown_guid, 16);
	fix_hdr(&c, HDR1);
	fix_hdr(&c, HDR2);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_true(in.log.dirty);
	assert_false(in.log.replayed);
	assert_int_equal(in.log.entries, 0);
	assert_int_equal(in.bat.fully_present, 0);
	assert_int_equal(in.bat.not_present, 32);
	vxm_image_close(img);
	expect_problem(&c, LOG, "LogGuid is set but no valid entry sequence exists", NULL);
}

/* QEMU's dirty-log image: 7 CRC-valid entries, only seq 7 has the header's
 * LogGuid.  The six stale ones are ignored, one entry is replayed. */
static void dirty_log_with_six_stale_entries_replays_only_the_current_one(void **state)
{
	struct mc c;
	struct vxm_image *img;
	struct vxm_info in;
	(void)state;

	mc_begin(&c, FX_DIRTY10G, "log-six-stale");
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_true(in.log.replayed);
	assert_int_equal(in.log.entries, 1);
	assert_int_equal(in.bat.fully_present, 18);
	vxm_image_close(img);
	struct want w = { .off = LOG, .what = "log is dirty: 1 entries (sequence 7..7)", .finding = 1,
			  .dirty = true };
	mc_run(&c, &w);
}

/* vhdx-log-replay.vhdx: the head entry (seq ...391 at log 0x7000) has its
 * data sector at 0x108000 torn.  It never committed: the active sequence
 * ends at the entry before it. */
static void dirty_log_with_a_torn_data_sector_replays_up_to_the_entry_before(void **state)
{
	struct mc c;
	struct vxm_image *img;
	struct vxm_info in;
	(void)state;

	mc_begin(&c, FX_LOGREPLAY, "log-torn");
	flip(&c, 0x108000 + 4092);
	assert_int_equal(vxm_image_open(&img, NULL, c.path, 0, NULL), 0);
	assert_int_equal(vxm_image_info(img, &in, NULL), 0);
	assert_true(in.log.replayed);
	assert_int_equal(in.log.entries, 3);
	assert_int_equal(img->logseq.head, 0x5000);
	assert_int_equal(img->logseq.head_seq, 80117443871106390ull);
	vxm_image_close(img);
	struct want w = { .off = LOG,
			  .what = "log is dirty: 3 entries (sequence 80117443871106388..80117443871106390)",
			  .finding = 1,
			  .dirty = true };
	mc_run(&c, &w);
}

/* The head entry's descriptor is re-aimed at header 1 (CRC recomputed):
 * headers are never logged.  Neither a read-only open nor --repair may
 * apply any of it. */
static void log_replay_that_would_write_into_the_headers_is_corrupt_at_its_descriptor_0x107040(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_LOGREPLAY, "log-into-headers");
	assert_int_equal(get64(&c, 0x107000 + 64 + 16), 0x300000);
	put64(&c, 0x107000 + 64 + 16, HDR1);
	fix_crc(&c, 0x107000, 0x2000);
	expect_log_refusal(&c, -VXM_ECORRUPT, 0x107040,
			   "log entry 80117443871106391 at 0x107000: descriptor 0 (data, at 0x107040) writes [0x10000,+0x1000)",
			   "inside the file identifier and headers");
}

/* The head entry (CRC recomputed) says the file grows to 4 EiB.  Replay
 * would ftruncate to that: a read-only open reported a 4096 PiB file and
 * --repair wrote the headers, then failed with EFBIG (or, on XFS, made a
 * 4 EiB sparse file). */
static void log_entry_growing_the_file_to_4_eib_is_corrupt_at_its_last_file_offset_0x107038(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_LOGREPLAY, "log-last-4eib");
	put64(&c, 0x107000 + 56, 1ull << 62);
	fix_crc(&c, 0x107000, 0x2000);
	expect_log_refusal(&c, -VXM_ECORRUPT, 0x107038,
			   "log entry 80117443871106391 at 0x107000: LastFileOffset 0x4000000000000000 is implausibly large",
			   NULL);
}

/* vhdx-log-replay.vhdx with its log moved to a new 32 MiB region at the end
 * of the file, filled with 4096 valid 8 KiB entries (the header's LogGuid,
 * consecutive sequence numbers) whose Tail names a data sector: no active
 * sequence exists.  The search used to restart one sector after each such
 * run, parsing O(n^2) entries (seconds here, ~17 minutes for a 256 MiB log);
 * it must stay linear. */
static void dirty_log_of_32_mib_whose_entries_name_no_tail_is_scanned_in_linear_time(void **state)
{
	enum { NEW_LOG = 0x2400000, LOG_LEN = 32 << 20, ENTRY = 8192 };
	struct mc c;
	struct vxm_guid g;
	uint8_t *log = calloc(1, LOG_LEN), data[VXM_LOG_SECTOR] = { 0x5a };
	(void)state;

	assert_non_null(log);
	mc_begin(&c, FX_LOGREPLAY, "log-linear-scan");
	rd(&c, HDR2 + 48, g.b, 16);
	for (uint32_t pos = 0, i = 0; pos < LOG_LEN; pos += ENTRY, i++) {
		struct vxm_log_update u = { .file_off = BAT, .data = data, .len = VXM_LOG_SECTOR };
		struct vxm_log_entry e = { .tail = VXM_LOG_SECTOR, .seq = 1000 + i, .guid = g,
					   .flushed_file_offset = NEW_LOG,
					   .last_file_offset = NEW_LOG };
		assert_int_equal(vxm_log_entry_encode(&e, &u, 1, log + pos, ENTRY, NULL), 0);
	}
	wr(&c, NEW_LOG, log, LOG_LEN);
	free(log);
	for (uint64_t h = HDR1; h <= HDR2; h += HDR2 - HDR1) {
		put32(&c, h + 68, LOG_LEN);
		put64(&c, h + 72, NEW_LOG);
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
	expect_problem(&c, NEW_LOG, "LogGuid is set but no valid entry sequence exists", NULL);
}

/* The head entry says 36 MiB were durable; the file has 35. */
static void file_shorter_than_the_flushed_file_offset_is_corrupt_at_its_end_0x2300000(void **state)
{
	struct mc c;
	(void)state;
	mc_begin(&c, FX_LOGREPLAY, "log-flushed");
	cut(&c, 0x2300000);
	expect_log_refusal(&c, -VXM_ECORRUPT, 0x2300000,
			   "log: the file is 36700160 bytes but the log says 37748736", "truncated");
}

int main(void)
{
	tl_require_fixtures();
	const struct CMUnitTest tests[] = {
		/* truncation */
		cmocka_unit_test(file_cut_to_4_bytes_inside_the_signature_is_not_vhdx_at_0),
		cmocka_unit_test(file_without_the_vhdxfile_signature_is_not_vhdx_at_0),
		cmocka_unit_test(file_cut_inside_the_identifier_is_corrupt_at_its_end_0x8000),
		cmocka_unit_test(file_cut_inside_header_1_is_corrupt_at_0x10800),
		cmocka_unit_test(file_cut_inside_header_2_is_corrupt_at_0x20800),
		cmocka_unit_test(file_cut_inside_region_table_1_is_corrupt_at_0x30800),
		cmocka_unit_test(file_cut_inside_region_table_2_is_corrupt_at_0x40800),
		cmocka_unit_test(file_cut_inside_a_dirty_log_is_corrupt_at_the_log_0x100000),
		cmocka_unit_test(file_cut_inside_a_clean_log_is_corrupt_at_the_metadata_region_entry_0x30040),
		cmocka_unit_test(file_cut_inside_the_metadata_table_is_corrupt_at_its_region_entry_0x30040),
		cmocka_unit_test(file_cut_inside_a_metadata_item_is_corrupt_at_the_metadata_region_entry_0x30040),
		cmocka_unit_test(file_cut_inside_the_bat_is_corrupt_at_the_bat_region_entry_0x30020),
		cmocka_unit_test(file_cut_inside_a_payload_block_is_a_problem_at_bat_entry_3_0x300018),
		cmocka_unit_test(trailing_block_stored_short_up_to_the_disk_end_is_legal),
		cmocka_unit_test(trailing_block_cut_before_the_disk_end_is_a_problem_at_bat_entry_0_0x300000),
		cmocka_unit_test(file_cut_inside_a_sector_bitmap_block_is_a_problem_at_bat_entry_4097_0x308008),
		/* headers */
		cmocka_unit_test(header_2_with_bad_crc_is_a_torn_copy_and_the_file_opens_from_header_1),
		cmocka_unit_test(header_with_bad_crc_in_both_copies_is_corrupt_at_0x10004),
		cmocka_unit_test(current_header_with_version_2_is_unsupported_at_0x20042),
		cmocka_unit_test(header_version_2_in_both_copies_is_unsupported_at_0x20042),
		cmocka_unit_test(stale_header_with_version_2_is_ignored_and_the_file_opens),
		cmocka_unit_test(current_header_with_log_offset_not_1mib_aligned_is_corrupt_at_0x20048),
		/* region tables */
		cmocka_unit_test(region_table_1_with_bad_crc_opens_from_copy_2_with_a_problem_at_0x30004),
		cmocka_unit_test(region_tables_with_bad_crc_in_both_copies_are_corrupt_at_0x40004),
		cmocka_unit_test(two_valid_but_different_region_tables_are_corrupt_at_0x40000),
		cmocka_unit_test(overlapping_regions_are_corrupt_at_region_entry_1_0x40040),
		cmocka_unit_test(region_overlapping_the_log_is_corrupt_at_its_entry_0x30040),
		cmocka_unit_test(region_past_the_end_of_the_file_is_corrupt_at_its_entry_0x30020),
		cmocka_unit_test(region_whose_extent_wraps_past_2_pow_64_is_corrupt_at_its_entry_0x40020),
		cmocka_unit_test(unknown_required_region_is_unsupported_at_entry_2_0x30050),
		/* metadata */
		cmocka_unit_test(missing_required_metadata_item_is_corrupt_at_the_metadata_table_0x200000),
		cmocka_unit_test(unknown_required_metadata_item_is_unsupported_at_entry_4_0x2000a0),
		cmocka_unit_test(metadata_item_outside_its_region_is_corrupt_at_entry_0_offset_field_0x200030),
		cmocka_unit_test(duplicate_metadata_item_ids_are_corrupt_at_entry_4_0x2000a0),
		cmocka_unit_test(block_size_of_3_mib_is_corrupt_at_the_file_parameters_item_0x210000),
		cmocka_unit_test(logical_sector_size_of_1024_is_corrupt_at_its_item_0x210010),
		cmocka_unit_test(virtual_size_not_a_multiple_of_the_sector_is_corrupt_at_its_item_0x210008),
		cmocka_unit_test(virtual_size_above_64_tib_is_corrupt_at_its_item_0x210008),
		/* BAT */
		cmocka_unit_test(bat_entries_sharing_a_block_are_a_problem_naming_both_at_0x300008),
		cmocka_unit_test(bat_entry_overlapping_the_metadata_region_is_a_problem_naming_both_at_0x300008),
		cmocka_unit_test(bat_entry_overlapping_the_log_is_a_problem_naming_both_at_0x300008),
		cmocka_unit_test(bat_entry_past_the_end_of_the_file_is_a_problem_at_0x300008),
		cmocka_unit_test(bat_entry_at_the_top_of_the_offset_range_is_a_problem_at_0x300008),
		cmocka_unit_test(reserved_bat_state_4_is_a_problem_at_0x300008),
		cmocka_unit_test(reserved_bat_state_5_is_a_problem_at_0x300010),
		cmocka_unit_test(bat_entry_with_reserved_bits_set_is_a_problem_at_0x300008),
		cmocka_unit_test(partially_present_block_in_a_file_without_parent_is_a_problem_at_0x300008),
		cmocka_unit_test(partially_present_block_without_its_chunk_bitmap_is_a_problem_at_0x300000),
		cmocka_unit_test(not_present_entry_with_an_offset_is_a_problem_at_0x300008),
		cmocka_unit_test(zero_entry_with_an_offset_is_a_problem_at_0x300010),
		/* parent locator */
		cmocka_unit_test(locator_value_with_a_lone_surrogate_is_corrupt_at_0x2101f8),
		cmocka_unit_test(locator_key_of_length_zero_is_corrupt_at_entry_2_key_length_0x21005c),
		cmocka_unit_test(locator_value_of_odd_length_is_corrupt_at_entry_3_value_length_0x21006a),
		cmocka_unit_test(locator_without_parent_linkage_is_corrupt_at_the_item_0x210028),
		cmocka_unit_test(locator_linkage_that_is_not_a_guid_is_corrupt_at_its_value_0x210094),
		cmocka_unit_test(locator_with_a_duplicate_key_is_corrupt_at_entry_4_0x21006c),
		cmocka_unit_test(locator_without_a_path_key_is_corrupt_at_the_item_0x210028),
		/* log */
		cmocka_unit_test(dirty_log_whose_entries_all_carry_another_log_guid_is_ignored_with_a_problem_at_0x100000),
		cmocka_unit_test(dirty_log_with_six_stale_entries_replays_only_the_current_one),
		cmocka_unit_test(dirty_log_with_a_torn_data_sector_replays_up_to_the_entry_before),
		cmocka_unit_test(log_replay_that_would_write_into_the_headers_is_corrupt_at_its_descriptor_0x107040),
		cmocka_unit_test(dirty_log_of_32_mib_whose_entries_name_no_tail_is_scanned_in_linear_time),
		cmocka_unit_test(log_entry_growing_the_file_to_4_eib_is_corrupt_at_its_last_file_offset_0x107038),
		cmocka_unit_test(file_shorter_than_the_flushed_file_offset_is_corrupt_at_its_end_0x2300000),
	};
	int ret = cmocka_run_group_tests(tests, NULL, NULL);
	if (scratch)
		tl_sh("rm -rf '%s'", scratch);
	return ret;
}
