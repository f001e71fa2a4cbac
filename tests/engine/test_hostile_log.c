/* tests/engine/test_hostile_log.c: a log whose entries are valid (CRC,
 * sequence, LogGuid and all) but aim where no log may write is refused as
 * corrupt by every open, the repair and the merge, and costs the file
 * nothing; a valid log still replays.
 *
 * Inputs are built here, no fixtures: `vhdxmerge synth` makes a 24 MiB
 * chain (base.vhdx is 14 MiB: log at 1 MiB, BAT and metadata regions,
 * 2 MiB blocks), then the log codec's own encoder writes entries into the
 * base's log and a fresh LogGuid into both headers.  For every refusal:
 *   - vxm_image_open read-only, NO_REPLAY and RDWR, and vxm_image_repair,
 *     all return -VXM_ECORRUPT; err.msg names "log entry <seq> at <entry
 *     offset>", the descriptor, its offset and the target; err.off is the
 *     descriptor's (or the header field's) file offset;
 *   - the program: `check --repair` exits 3 and `info` 3 saying the same,
 *     `check` reports it as a problem (exit 1);
 *   - the file's sha256 and size are unchanged after all of it.
 * Until the rule existed, --repair of the first case wrote new headers and
 * then exited 2 (a write at 2^64 - 4096 is EINVAL), and the 1 TiB case grew
 * the file to 1 TiB.
 */
#include "wtest.h"

#include "vhdx/endian.h"

#define SEQ0 1000u /* sequence number of a test log's first entry */
#define SECT VXM_LOG_SECTOR
#define MAX_UPD 4

static char *tmp;

/* The synth chain every case copies, and the base's layout. */
static struct {
	char dir[512], base[600];
	uint64_t size, log_off, bat_off, vsize;
	uint64_t alloc_end; /* where its structures end */
	uint32_t log_len, block;
	uint64_t k;  /* a FULLY_PRESENT block */
	uint64_t j;  /* a NOT_PRESENT block */
	uint8_t bat[SECT]; /* the BAT's first sector (every block's entry) */
	uint8_t rt1[SECT]; /* region table 1's first sector */
} L;

static int setup(void **state)
{
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	int st;
	(void)state;

	tmp = tl_mkdtemp("hostile-log");
	snprintf(L.dir, sizeof(L.dir), "%s/chain", tmp);
	char *out = tl_sh_out(&st, "'%s' synth '%s' --seed 11 --size 24M --layers 2 --block-size 2M",
			      tl_bin(), L.dir);
	free(out);
	if (st != 0)
		return -1;
	snprintf(L.base, sizeof(L.base), "%s/base.vhdx", L.dir);
	if (vxm_image_open(&img, NULL, L.base, 0, &err))
		return -1;
	L.size = img->file_size;
	L.log_off = img->hdr.log_off;
	L.log_len = img->hdr.log_len;
	L.bat_off = img->bat_region.off;
	L.vsize = img->g.virtual_size;
	L.block = img->g.block_size;
	L.k = L.j = UINT64_MAX;
	for (uint64_t b = 0; b < img->g.payload_blocks; b++) {
		uint64_t e;
		if (vxm_image_bat_get(img, vxm_geom_pb_index(&img->g, b), &e, &err))
			return -1;
		if (vxm_bat_state(e) == VXM_PB_FULLY_PRESENT && L.k == UINT64_MAX)
			L.k = b;
		if (vxm_bat_state(e) == VXM_PB_NOT_PRESENT && L.j == UINT64_MAX)
			L.j = b;
	}
	int ret = vxm_image_alloc_end(img, &L.alloc_end, &err);
	if (!ret)
		ret = vxm_image_pread(img, L.bat, SECT, L.bat_off, &err);
	if (!ret)
		ret = vxm_image_pread(img, L.rt1, SECT, VXM_RT1_OFF, &err);
	bool ok = !ret && !img->log_dirty && img->g.total_entries <= SECT / 8 &&
		  L.k != UINT64_MAX && L.j != UINT64_MAX && L.size % VXM_MiB == 0;
	vxm_image_close(img);
	return ok ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", tmp);
	free(tmp);
	return 0;
}

/* ---- building a log ------------------------------------------------------------ */

struct ent {
	struct vxm_log_update u[MAX_UPD];
	unsigned n;
	uint64_t last; /* LastFileOffset; 0: the file's size */
};

static char *fresh_copy(const char *tag)
{
	char *p;
	assert_true(asprintf(&p, "%s/%s.vhdx", tmp, tag) > 0);
	assert_int_equal(tl_copy_file(L.base, p), 0);
	return p;
}

static void pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
}

/* Writes e[0..n) from log offset 0 as one sequence whose Tail is the first
 * entry, sequence numbers SEQ0, SEQ0 + 1..., then installs a new LogGuid in
 * both headers (their other fields kept).  at[i]: entry i's file offset. */
static void write_log(const char *path, const struct ent *e, unsigned n, uint64_t *at)
{
	static const struct vxm_guid g = { { 0x6c, 0x6f, 0x67, 0x21, 0x68, 0x6f, 0x73, 0x74,
					     0x69, 0x6c, 0x65, 0x21, 0x00, 0x11, 0x22, 0x33 } };
	uint8_t *buf = calloc(1, L.log_len);
	int fd = open(path, O_RDWR);
	uint32_t pos = 0;

	assert_non_null(buf);
	assert_true(fd >= 0);
	for (unsigned i = 0; i < n; i++) {
		struct vxm_log_entry le = { .tail = 0, .seq = SEQ0 + i, .guid = g,
					    .flushed_file_offset = L.size,
					    .last_file_offset = e[i].last ? e[i].last : L.size };
		assert_int_equal(vxm_log_entry_encode(&le, e[i].u, e[i].n, buf + pos,
						      L.log_len - pos, NULL), 0);
		at[i] = L.log_off + pos;
		pos += le.len;
	}
	pwrite_all(fd, buf, L.log_len, L.log_off);
	for (uint64_t off = VXM_HDR1_OFF; off <= VXM_HDR2_OFF; off += VXM_HDR2_OFF - VXM_HDR1_OFF) {
		uint8_t h[VXM_HDR_SIZE];
		struct vxm_hdr hdr;
		assert_int_equal(pread(fd, h, sizeof(h), (off_t)off), (ssize_t)sizeof(h));
		assert_int_equal(vxm_hdr_parse(h, sizeof(h), off, &hdr, NULL), 0);
		hdr.log_guid = g;
		vxm_hdr_encode(&hdr, h);
		pwrite_all(fd, h, sizeof(h), off);
	}
	assert_int_equal(close(fd), 0);
	free(buf);
}

/* One-entry log of a single update. */
static void write_one(const char *path, uint64_t off, const uint8_t *data, uint64_t len,
		      uint64_t last, uint64_t *at)
{
	struct ent e = { .u = { { .file_off = off, .data = data, .len = len } }, .n = 1,
			 .last = last };
	write_log(path, &e, 1, at);
}

static const uint8_t junk[SECT] = { 0xde, 0xad, 0xbe, 0xef };

/* BAT sector 0 with block b's entry set to (state, off). */
static void bat_with(uint8_t *out, const uint8_t *from, uint64_t b, unsigned state, uint64_t off)
{
	memcpy(out, from, SECT);
	vxm_put_le64(out + 8 * b, vxm_bat_entry(state, off));
}

/* ---- expectations ---------------------------------------------------------------- */

static void need(const char *hay, const char *needle, const char *what)
{
	if (!hay || !strstr(hay, needle)) {
		print_error("%s: expected \"%s\" in:\n%s\n", what, needle, hay ? hay : "(null)");
		fail();
	}
}

struct state {
	char sha[65];
	off_t size;
};

static void snap(const char *path, struct state *s)
{
	struct stat st;
	assert_int_equal(tl_sha256_file(path, s->sha), 0);
	assert_int_equal(stat(path, &st), 0);
	s->size = st.st_size;
}

static void unchanged(const char *path, const struct state *before, const char *after_what)
{
	struct state now;
	struct stat st;
	/* the size first: a grown file may be 1 TiB (sparse), too long to hash */
	assert_int_equal(stat(path, &st), 0);
	if (st.st_size != before->size) {
		print_error("%s grew the file from %lld to %lld bytes\n", after_what,
			    (long long)before->size, (long long)st.st_size);
		fail();
	}
	snap(path, &now);
	if (strcmp(now.sha, before->sha) || now.size != before->size) {
		print_error("%s changed the file: %lld -> %lld bytes, sha256 %s -> %s\n", after_what,
			    (long long)before->size, (long long)now.size, before->sha, now.sha);
		fail();
	}
}

static void open_refused(const char *path, unsigned flags, uint64_t off, const char *what,
			 const char *what2)
{
	struct vxm_image *img = NULL;
	struct vxm_err err = { 0 };
	char tag[64];

	snprintf(tag, sizeof(tag), "open flags %u", flags);
	int ret = vxm_image_open(&img, NULL, path, flags, &err);
	if (ret != -VXM_ECORRUPT) {
		print_error("%s: %d (%s), expected -VXM_ECORRUPT: %s\n", tag, ret, vxm_strerror(ret),
			    err.msg);
		fail();
	}
	assert_null(img);
	assert_int_equal(err.code, -VXM_ECORRUPT);
	need(err.msg, what, tag);
	need(err.msg, what2, tag);
	if (err.off != off) {
		print_error("%s: err.off 0x%llx, expected 0x%llx: %s\n", tag,
			    (unsigned long long)err.off, (unsigned long long)off, err.msg);
		fail();
	}
	assert_string_equal(err.path, path);
}

static void cli_says(const char *path, const char *args, int want, uint64_t off, const char *what)
{
	char hex[40];
	int st;
	char *out = tl_sh_out(&st, "'%s' %s '%s' 2>&1", tl_bin(), args, path);

	assert_non_null(out);
	if (st != want) {
		print_error("vhdxmerge %s: exit %d, expected %d\n%s\n", args, st, want, out);
		fail();
	}
	need(out, path, args);
	need(out, what, args);
	if (off != VXM_OFF_NONE) {
		snprintf(hex, sizeof(hex), "0x%llx)", (unsigned long long)off);
		need(out, hex, args);
	}
	free(out);
}

/* Every way in refuses the log at off naming what and what2; nothing is
 * written, the file keeps its size. */
static void expect_refused(const char *path, uint64_t off, const char *what, const char *what2)
{
	struct state before;
	bool replayed = true;
	struct vxm_err err = { 0 };

	snap(path, &before);
	open_refused(path, 0, off, what, what2);
	open_refused(path, VXM_IMAGE_NO_REPLAY, off, what, what2);
	open_refused(path, VXM_IMAGE_RDWR, off, what, what2);
	unchanged(path, &before, "the opens");
	assert_int_equal(vxm_image_repair(path, &replayed, &err), -VXM_ECORRUPT);
	assert_false(replayed);
	need(err.msg, what, "vxm_image_repair");
	assert_int_equal(err.off, off);
	unchanged(path, &before, "vxm_image_repair");
	cli_says(path, "check --repair", VXM_EXIT_CORRUPT, off, what);
	cli_says(path, "check --repair --json", VXM_EXIT_CORRUPT, VXM_OFF_NONE, what);
	cli_says(path, "info", VXM_EXIT_CORRUPT, off, what);
	cli_says(path, "check", VXM_EXIT_PROBLEMS, off, what);
	unchanged(path, &before, "the program");
}

/* "log entry <seq> at <entry>: descriptor <i> (<kind>, at <desc>) writes [off,+len)" */
static const char *desc_msg(unsigned seq, uint64_t entry, unsigned i, bool zero, uint64_t off,
			    uint64_t len)
{
	static char m[256];
	snprintf(m, sizeof(m), "log entry %u at 0x%llx: descriptor %u (%s, at 0x%llx) writes [0x%llx,+0x%llx)",
		 seq, (unsigned long long)entry, i, zero ? "zero" : "data",
		 (unsigned long long)(entry + 64 + 32 * i), (unsigned long long)off,
		 (unsigned long long)len);
	return m;
}

/* ---- targets outside the file's extent --------------------------------------------- */

static void data_target_at_2_pow_64_minus_4096_wraps_and_is_refused_before_any_write(void **state)
{
	uint64_t at;
	(void)state;
	char *p = fresh_copy("wrap-data");
	write_one(p, 0xfffffffffffff000ull, junk, SECT, 0, &at);
	expect_refused(p, at + 64, desc_msg(SEQ0, at, 0, false, 0xfffffffffffff000ull, SECT),
		       "the range wraps past 2^64");
	free(p);
}

static void data_target_at_1_tib_of_a_14_mib_file_is_refused_and_the_file_keeps_its_size(void **state)
{
	uint64_t at;
	(void)state;
	char *p = fresh_copy("one-tib");
	write_one(p, VXM_TiB, junk, SECT, 0, &at);
	char why[160];
	snprintf(why, sizeof(why),
		 "past the end of the file (%llu bytes) and of the entry's LastFileOffset (0x%llx)",
		 (unsigned long long)L.size, (unsigned long long)L.size);
	expect_refused(p, at + 64, desc_msg(SEQ0, at, 0, false, VXM_TiB, SECT), why);
	free(p);
}

static void zero_descriptor_whose_range_wraps_past_2_pow_64_is_refused(void **state)
{
	uint64_t at, off = 0xffffffffffe00000ull, len = 4 * VXM_MiB;
	(void)state;
	char *p = fresh_copy("wrap-zero");
	write_one(p, off, NULL, len, 0, &at);
	expect_refused(p, at + 64, desc_msg(SEQ0, at, 0, true, off, len), "the range wraps past 2^64");
	free(p);
}

static void zero_descriptor_of_4_eib_is_refused(void **state)
{
	uint64_t at, off = 4 * VXM_MiB, len = 1ull << 62;
	(void)state;
	char *p = fresh_copy("zero-4eib");
	write_one(p, off, NULL, len, 0, &at);
	expect_refused(p, at + 64, desc_msg(SEQ0, at, 0, true, off, len), "past the end of the file");
	free(p);
}

static void target_inside_the_log_itself_is_refused(void **state)
{
	uint64_t at, off = L.log_off + 0x3000;
	char in[80];
	(void)state;
	char *p = fresh_copy("into-log");
	write_one(p, off, junk, SECT, 0, &at);
	snprintf(in, sizeof(in), "inside the log [0x%llx,+0x%x) itself",
		 (unsigned long long)L.log_off, L.log_len);
	expect_refused(p, at + 64, desc_msg(SEQ0, at, 0, false, off, SECT), in);
	free(p);
}

/* Headers are never logged; of the rest of the header section only the
 * region tables are (a whole-table rewrite replays in the last test). */
static void targets_in_the_header_section_outside_the_region_tables_are_refused(void **state)
{
	static const struct {
		uint64_t off, len;
		const char *why;
	} t[] = {
		{ VXM_HDR1_OFF, SECT, "inside the file identifier and headers (never logged)" },
		{ 0, 64 * 1024, "inside the file identifier and headers (never logged)" },
		{ VXM_RT2_OFF + VXM_RT_SIZE, SECT, "outside the region tables" },
		/* starts in region table 2, runs into the reserved space */
		{ VXM_RT2_OFF, 2 * VXM_RT_SIZE, "outside the region tables" },
	};
	(void)state;
	for (unsigned i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char tag[32];
		uint64_t at;
		snprintf(tag, sizeof(tag), "into-header-%u", i);
		char *p = fresh_copy(tag);
		bool zero = t[i].len != SECT;
		write_one(p, t[i].off, zero ? NULL : junk, t[i].len, 0, &at);
		expect_refused(p, at + 64, desc_msg(SEQ0, at, 0, zero, t[i].off, t[i].len), t[i].why);
		free(p);
	}
}

/* ---- growth ---------------------------------------------------------------------------- */

/* A legitimate BAT rewrite with LastFileOffset = 1 TiB: nothing the
 * replayed file holds is there. */
static void last_file_offset_of_1_tib_no_structure_reaches_is_refused(void **state)
{
	uint64_t at;
	char what[160], why[160];
	(void)state;
	char *p = fresh_copy("last-1tib");
	write_one(p, L.bat_off, L.bat, SECT, VXM_TiB, &at);
	snprintf(what, sizeof(what),
		 "log entry %u at 0x%llx: LastFileOffset 0x10000000000 asks for a 1099511627776-byte file",
		 SEQ0, (unsigned long long)at);
	snprintf(why, sizeof(why),
		 "the file has %llu bytes and its replayed structures end at 0x%llx",
		 (unsigned long long)L.size, (unsigned long long)L.alloc_end);
	expect_refused(p, at + 56, what, why);
	free(p);
}

/* The entry also points a block at 1 TiB - 2 MiB, so a structure does
 * reach there; but twelve 2 MiB blocks cannot need a terabyte. */
static void growth_to_a_block_logged_at_1_tib_exceeds_what_the_disk_can_take(void **state)
{
	uint8_t bat[SECT];
	uint64_t at;
	char what[200];
	(void)state;
	char *p = fresh_copy("block-1tib");
	bat_with(bat, L.bat, L.j, VXM_PB_FULLY_PRESENT, VXM_TiB - 2 * VXM_MiB);
	write_one(p, L.bat_off, bat, SECT, VXM_TiB, &at);
	snprintf(what, sizeof(what),
		 "log entry %u at 0x%llx: LastFileOffset 0x10000000000 grows the %llu-byte file by %llu bytes",
		 SEQ0, (unsigned long long)at, (unsigned long long)L.size,
		 (unsigned long long)(VXM_TiB - L.size));
	expect_refused(p, at + 56, what, "more than all blocks and regions of this disk take");
	free(p);
}

static void last_file_offset_of_4_eib_is_implausible_whatever_the_file(void **state)
{
	uint64_t at;
	char what[160];
	(void)state;
	char *p = fresh_copy("last-4eib");
	write_one(p, L.bat_off, L.bat, SECT, 1ull << 62, &at);
	snprintf(what, sizeof(what),
		 "log entry %u at 0x%llx: LastFileOffset 0x4000000000000000 is implausibly large",
		 SEQ0, (unsigned long long)at);
	expect_refused(p, at + 56, what, "more than 128 TiB");
	free(p);
}

/* ---- the whole sequence first ----------------------------------------------------------- */

/* A valid entry followed by a hostile head, and a hostile tail followed by
 * a valid head: the valid entry is not applied either. */
static void one_hostile_entry_refuses_the_whole_sequence_with_nothing_applied(void **state)
{
	uint8_t bat[SECT];
	uint64_t at[2];
	(void)state;
	bat_with(bat, L.bat, L.k, VXM_PB_ZERO, 0);
	struct ent good = { .u = { { .file_off = L.bat_off, .data = bat, .len = SECT } }, .n = 1 };
	struct ent bad = { .u = { { .file_off = L.bat_off, .data = bat, .len = SECT },
				  { .file_off = VXM_TiB, .data = junk, .len = SECT } },
			   .n = 2 };

	char *p = fresh_copy("hostile-head");
	struct ent e1[] = { good, bad };
	write_log(p, e1, 2, at);
	expect_refused(p, at[1] + 64 + 32, desc_msg(SEQ0 + 1, at[1], 1, false, VXM_TiB, SECT),
		       "past the end of the file");
	free(p);

	p = fresh_copy("hostile-tail");
	struct ent e2[] = { bad, good };
	write_log(p, e2, 2, at);
	expect_refused(p, at[0] + 64 + 32, desc_msg(SEQ0, at[0], 1, false, VXM_TiB, SECT),
		       "past the end of the file");
	free(p);
}

/* The merge opens the chain read-only first: the same rule, exit 3, and
 * no file of the chain changes. */
static void merge_refuses_a_chain_whose_base_log_is_hostile_and_writes_nothing(void **state)
{
	char dir[600], top[700], sums[700];
	uint64_t at;
	int st;
	(void)state;

	snprintf(dir, sizeof(dir), "%s/merge", tmp);
	assert_int_equal(tl_sh("rm -rf '%s' && cp -a '%s' '%s'", dir, L.dir, dir), 0);
	char *base;
	assert_true(asprintf(&base, "%s/base.vhdx", dir) > 0);
	write_one(base, 0xfffffffffffff000ull, junk, SECT, 0, &at);
	snprintf(top, sizeof(top), "%s/snap01.avhdx", dir);
	snprintf(sums, sizeof(sums), "%s/sums", tmp);
	assert_int_equal(tl_sh("cd '%s' && sha256sum * >'%s'", dir, sums), 0);
	const char *what = desc_msg(SEQ0, at, 0, false, 0xfffffffffffff000ull, SECT);
	cli_says(top, "merge --progress none", VXM_EXIT_CORRUPT, at + 64, what);
	cli_says(top, "chain", VXM_EXIT_CORRUPT, at + 64, what);
	char *out = tl_sh_out(&st, "cd '%s' && sha256sum --quiet -c '%s' && ls", dir, sums);
	assert_int_equal(st, 0);
	need(out, "base.vhdx\nsnap01.avhdx\n", "files after the merge");
	free(out);
	free(base);
}

/* ---- the positive control --------------------------------------------------------------- */

static void sha_expected(char out[65])
{
	struct vxm_image *img;
	uint8_t *disk = malloc(L.vsize);

	assert_non_null(disk);
	assert_int_equal(vxm_image_open(&img, NULL, L.base, 0, NULL), 0);
	assert_int_equal(vxm_image_read(img, disk, L.vsize, 0, NULL), 0);
	vxm_image_close(img);
	memset(disk + L.k * L.block, 0, L.block);
	tl_sha256(disk, L.vsize, out);
	free(disk);
}

/* Two entries Hyper-V could have written: (1) block k becomes ZERO and
 * region table 1 is rewritten as it is; (2) block j is allocated at the end
 * of the file, the entry's LastFileOffset covering it, so replay grows the
 * file (fmt §7 [OBS]).  Read through the overlay, replayed in place by
 * --repair, then read back by us, qemu-img and libvhdi: block k reads
 * zeros, the rest as before, the file is 2 MiB longer and clean. */
static void a_valid_log_replays_in_memory_and_in_place_and_the_oracles_agree(void **state)
{
	uint8_t bat1[SECT], bat2[SECT];
	uint64_t at[2];
	char want[65], got[65];
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	struct state before;
	int st;
	(void)state;

	sha_expected(want);
	char *p = fresh_copy("valid");
	bat_with(bat1, L.bat, L.k, VXM_PB_ZERO, 0);
	bat_with(bat2, bat1, L.j, VXM_PB_FULLY_PRESENT, L.size);
	struct ent e[] = {
		{ .u = { { .file_off = L.bat_off, .data = bat1, .len = SECT },
			 { .file_off = VXM_RT1_OFF, .data = L.rt1, .len = SECT } },
		  .n = 2 },
		{ .u = { { .file_off = L.bat_off, .data = bat2, .len = SECT } },
		  .n = 1,
		  .last = L.size + L.block },
	};
	write_log(p, e, 2, at);
	snap(p, &before);

	/* read-only: replayed into memory, nothing written */
	assert_int_equal(vxm_image_open(&img, NULL, p, 0, &err), 0);
	assert_true(img->log_dirty && img->log_replayed);
	assert_int_equal(img->log_entries, 2);
	assert_int_equal(img->file_size, L.size + L.block);
	assert_int_equal(tl_sha256_image(img, got), 0);
	assert_string_equal(got, want);
	struct vxm_hdr h0 = img->hdr;
	vxm_image_close(img);
	assert_int_equal(vxm_image_open(&img, NULL, p, VXM_IMAGE_NO_REPLAY, &err), -VXM_EDIRTY);
	unchanged(p, &before, "the read-only opens");

	/* in place */
	char *out = tl_sh_out(&st, "'%s' check --repair '%s'", tl_bin(), p);
	assert_int_equal(st, 0);
	need(out, "log replayed in place", "check --repair");
	free(out);
	struct stat sb;
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, L.size + L.block);
	assert_int_equal(vxm_image_open(&img, NULL, p, 0, &err), 0);
	assert_false(img->log_dirty);
	assert_false(vxm_guid_eq(&img->hdr.file_write, &h0.file_write));
	assert_true(vxm_guid_eq(&img->hdr.data_write, &h0.data_write));
	assert_int_equal(tl_sha256_image(img, got), 0);
	assert_string_equal(got, want);
	vxm_image_close(img);
	assert_int_equal(tl_sh("'%s' check '%s' >/dev/null", tl_bin(), p), 0);

	/* oracles we did not write */
	if (tl_have("qemu-img")) {
		char raw[700];
		out = tl_sh_out(&st, "qemu-img check -f vhdx '%s' 2>&1", p);
		if (st != 0)
			print_error("qemu-img check: %s\n", out);
		assert_int_equal(st, 0);
		free(out);
		snprintf(raw, sizeof(raw), "%s/valid.raw", tmp);
		assert_int_equal(tl_sh("qemu-img convert -f vhdx -O raw '%s' '%s'", p, raw), 0);
		assert_int_equal(tl_sha256_file(raw, got), 0);
		assert_string_equal(got, want);
		unlink(raw);
	} else {
		printf("  (qemu-img not installed: its check and convert skipped)\n");
	}
	if (tl_have_pyvhdi()) {
		out = tl_sh_out(&st, "/usr/bin/python3 '%s/tests/cli/pyvhdi_sha256.py' '%s'",
				getenv("VXM_SOURCE_DIR"), p);
		assert_int_equal(st, 0);
		assert_non_null(out);
		assert_int_equal(strncmp(out, want, 64), 0);
		free(out);
	} else {
		printf("  (pyvhdi not importable: libvhdi's read skipped)\n");
	}
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(data_target_at_2_pow_64_minus_4096_wraps_and_is_refused_before_any_write),
		cmocka_unit_test(data_target_at_1_tib_of_a_14_mib_file_is_refused_and_the_file_keeps_its_size),
		cmocka_unit_test(zero_descriptor_whose_range_wraps_past_2_pow_64_is_refused),
		cmocka_unit_test(zero_descriptor_of_4_eib_is_refused),
		cmocka_unit_test(target_inside_the_log_itself_is_refused),
		cmocka_unit_test(targets_in_the_header_section_outside_the_region_tables_are_refused),
		cmocka_unit_test(last_file_offset_of_1_tib_no_structure_reaches_is_refused),
		cmocka_unit_test(growth_to_a_block_logged_at_1_tib_exceeds_what_the_disk_can_take),
		cmocka_unit_test(last_file_offset_of_4_eib_is_implausible_whatever_the_file),
		cmocka_unit_test(one_hostile_entry_refuses_the_whole_sequence_with_nothing_applied),
		cmocka_unit_test(merge_refuses_a_chain_whose_base_log_is_hostile_and_writes_nothing),
		cmocka_unit_test(a_valid_log_replays_in_memory_and_in_place_and_the_oracles_agree),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
