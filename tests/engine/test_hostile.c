/* tests/engine/test_hostile.c: issue 18's table, row by row, through the
 * real program: a merge (or plan, or convert) given a chain with a
 * structure `check` calls invalid, or sizes a merge cannot honour, refuses
 * before its first write with the exit code of the class (3 corrupt,
 * 4 chain), naming the file, the structure and its offset, and every file
 * stays byte-identical; where the chain is valid but unusual (sizes that
 * differ along the chain) the merge succeeds and the result reads exactly
 * as the chain did, through our reader and through qemu-img.
 *
 * Chains are built here (tests/lib/memvhdx.c), so the layout is known:
 * log at 1 MiB, metadata at 2 MiB, BAT at 3 MiB; 2 MiB blocks of 512-byte
 * sectors, so block b's BAT entry is at 3 MiB + 8 b (b < 2048). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "memvhdx.h"

#define MiB (1024ull * 1024)
#define LOG_AT (1 * MiB)
#define META_AT (2 * MiB)
#define BAT_AT (3 * MiB)
#define ENTRY(b) (BAT_AT + 8 * (uint64_t)(b))
#define F VXM_PB_FULLY_PRESENT
#define P VXM_PB_PARTIALLY_PRESENT

struct layer_spec {
	const char *name;
	uint64_t vsize;
	uint8_t st[16];
	uint8_t dw;     /* DataWriteGuid bytes */
	uint8_t parent; /* parent's DataWriteGuid bytes; 0: a base */
	const char *rel;
};

static char *dir_of_test(const char *tag)
{
	return tl_mkdtemp(tag);
}

static void put_layer(const char *dir, const struct layer_spec *l)
{
	static uint8_t bits[16 * MiB / 512 / 8];
	char path[1200];
	/* partial blocks carry every other run of 8 sectors */
	memset(bits, 0x0f, sizeof(bits));
	struct mv_spec sp = { .vsize = l->vsize, .block_size = 2 * MiB, .lss = 512,
			      .has_parent = l->parent != 0, .states = l->st, .bits = bits,
			      .fill = l->dw, .relative_path = l->rel };
	memset(sp.data_write.b, l->dw, 16);
	memset(sp.parent_linkage.b, l->parent, 16);
	size_t len;
	uint8_t *f = mv_build(&sp, &len);
	assert_non_null(f);
	snprintf(path, sizeof(path), "%s/%s", dir, l->name);
	assert_int_equal(tl_write_file(path, f, len), 0);
	free(f);
}

/* base.vhdx <- s1.avhdx <- s2.avhdx [<- s3.avhdx], 16 MiB each. */
static char *chain(const char *tag, bool with_s3)
{
	char *dir = dir_of_test(tag);
	const struct layer_spec L[] = {
		{ "base.vhdx", 16 * MiB, { F, F, F, F, 0, F, 0, F }, 0x11, 0, NULL },
		{ "s1.avhdx", 16 * MiB, { F, 0, P, 0, F, 0, 0, P }, 0x22, 0x11, "base.vhdx" },
		{ "s2.avhdx", 16 * MiB, { 0, F, P, F, 0, 0, F, 0 }, 0x33, 0x22, "s1.avhdx" },
		{ "s3.avhdx", 16 * MiB, { 0, 0, 0, 0, F, 0, 0, 0 }, 0x44, 0x33, "s2.avhdx" },
	};
	for (unsigned i = 0; i < (with_s3 ? 4u : 3u); i++)
		put_layer(dir, &L[i]);
	return dir;
}

static void patch64(const char *dir, const char *name, uint64_t off, uint64_t v)
{
	char path[1200];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint8_t *f = tl_read_file(path, &len);
	assert_non_null(f);
	assert_true(off + 8 <= len);
	for (int i = 0; i < 8; i++)
		f[off + (uint64_t)i] = (uint8_t)(v >> (8 * i));
	assert_int_equal(tl_write_file(path, f, len), 0);
	free(f);
}

static uint64_t get64(const char *dir, const char *name, uint64_t off)
{
	char path[1200];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint8_t *f = tl_read_file(path, &len);
	assert_non_null(f);
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | f[off + (uint64_t)i];
	free(f);
	return v;
}

/* sha256 over every file of dir, names included. */
static char *tree_sum(const char *dir)
{
	int st;
	char *out = tl_sh_out(&st, "cd '%s' && find . -type f | sort | xargs sha256sum | sha256sum",
			      dir);
	assert_int_equal(st, 0);
	return out;
}

/* Runs `vhdxmerge CMD ARGS` in dir; expects exit `code`, every string of
 * the NULL-terminated list in its output, and (refusals) every file of dir
 * unchanged. */
static void expect(const char *dir, int code, const char *args, ...)
{
	char *before = tree_sum(dir);
	int st;
	bool runs = !strncmp(args, "merge", 5) || !strncmp(args, "convert", 7);
	char *out = tl_sh_out(&st, "cd '%s' && '%s' %s%s 2>&1", dir, tl_bin(), args,
			      runs ? " --progress none" : "");
	printf("  $ vhdxmerge %s -> exit %d: %s", args, st, out);
	assert_int_equal(st, code);
	va_list ap;
	va_start(ap, args);
	for (const char *want; (want = va_arg(ap, const char *));)
		if (!strstr(out, want))
			fail_msg("output lacks \"%s\"", want);
	va_end(ap);
	if (code) {
		char *after = tree_sum(dir);
		assert_string_equal(before, after);
		free(after);
	}
	free(out);
	free(before);
}

static void done(char *dir)
{
	tl_sh("rm -rf '%s'", dir);
	free(dir);
}

/* Row 1: two BAT entries of the destination share one payload block. */
static void destination_entries_sharing_a_block_are_refused_before_any_write(void **state)
{
	(void)state;
	char *dir = chain("shared-block", false);
	patch64(dir, "base.vhdx", ENTRY(1), get64(dir, "base.vhdx", ENTRY(0)));
	expect(dir, 3, "merge s2.avhdx", "base.vhdx (the destination)", "block 1 (BAT entry 1)",
	       "overlaps block 0 (BAT entry 0)", "nothing was changed", NULL);
	expect(dir, 3, "plan s2.avhdx", "base.vhdx (the destination)", NULL);
	expect(dir, 3, "merge s2.avhdx --dry-run", "overlaps", NULL);
	expect(dir, 1, "check base.vhdx", "overlaps", NULL);
	done(dir);
}

/* Row 2: a destination BAT entry pointing into its own log, metadata or
 * BAT region, or at the header section (offset 0: no payload there). */
static void destination_entries_into_its_own_structures_are_refused(void **state)
{
	(void)state;
	const struct {
		uint64_t at;
		const char *says;
	} where[] = {
		{ LOG_AT, "overlaps the log" },
		{ META_AT, "overlaps the metadata region" },
		{ BAT_AT, "overlaps the BAT region" },
		{ 0, "BAT entry 1" },
	};
	for (unsigned i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		char *dir = chain("into-structures", false);
		patch64(dir, "base.vhdx", ENTRY(1), vxm_bat_entry(F, where[i].at));
		expect(dir, 3, "merge s2.avhdx", "base.vhdx (the destination)", where[i].says,
		       "nothing was changed", NULL);
		done(dir);
	}
}

/* The same classes in every other file the merge relies on: a merged
 * middle layer, the top, the destination of --into (a sector-bitmap block
 * over a payload block), and a child of the top that would be re-pointed. */
static void every_file_the_merge_reads_or_changes_passes_the_same_rules(void **state)
{
	(void)state;
	char *dir = chain("middle", false);
	patch64(dir, "s1.avhdx", ENTRY(4), get64(dir, "s1.avhdx", ENTRY(0)));
	expect(dir, 3, "merge s2.avhdx", "s1.avhdx (a layer to merge)", "overlaps", NULL);
	expect(dir, 3, "convert s2.avhdx new.vhdx", "s1.avhdx (a layer the new file is read from)",
	       NULL);
	done(dir);

	dir = chain("top", false);
	patch64(dir, "s2.avhdx", ENTRY(3), vxm_bat_entry(F, META_AT));
	expect(dir, 3, "merge s2.avhdx", "s2.avhdx (the top)", "overlaps the metadata region",
	       NULL);
	done(dir);

	dir = chain("into-bitmap", false);
	/* s1's chunk bitmap (BAT entry 2048) moved onto its block 0 payload */
	patch64(dir, "s1.avhdx", ENTRY(2048),
		vxm_bat_entry(VXM_SB_PRESENT, vxm_bat_offset(get64(dir, "s1.avhdx", ENTRY(0)))));
	expect(dir, 3, "merge s2.avhdx --into s1.avhdx", "s1.avhdx (the destination)",
	       "overlaps", NULL);
	done(dir);

	dir = chain("child", true);
	patch64(dir, "s3.avhdx", ENTRY(1), vxm_bat_entry(F, LOG_AT));
	expect(dir, 3, "merge s2.avhdx", "s3.avhdx (a child of the top, to re-point)",
	       "overlaps the log", NULL);
	done(dir);
}

/* Rewrites the metadata table of dir/name after edit() changed it. */
static void edit_meta_table(const char *dir, const char *name,
			    void (*edit)(struct vxm_meta_table *mt))
{
	char path[1200];
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint8_t *f = tl_read_file(path, &len);
	assert_non_null(f);
	struct vxm_meta_table mt;
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_meta_table_parse(f + META_AT, 64 * 1024, META_AT, MiB, &mt, &err), 0);
	edit(&mt);
	vxm_meta_table_encode(&mt, f + META_AT);
	assert_int_equal(tl_write_file(path, f, len), 0);
	free(f);
}

/* A file whose locator the merge edits must have room for the edit in its
 * metadata region: a child of the top (re-pointed after the data is merged)
 * or C1 (edited first) with a packed region is refused before any write. */
static void pack_region(struct vxm_meta_table *mt)
{
	uint32_t end = 0;
	for (unsigned i = 0; i < mt->count; i++)
		if (mt->e[i].off + mt->e[i].len > end)
			end = mt->e[i].off + mt->e[i].len;
	/* a user item (unknown, not required: kept as is) over the rest */
	struct vxm_meta_entry *e = &mt->e[mt->count++];
	memset(e, 0, sizeof(*e));
	memset(e->id.b, 0x5a, 16);
	e->off = end;
	e->len = (uint32_t)MiB - end;
	e->flags = VXM_META_IS_USER;
}

static void a_locator_edit_without_room_is_refused_before_any_write(void **state)
{
	(void)state;
	char *dir = chain("packed-child", true);
	edit_meta_table(dir, "s3.avhdx", pack_region);
	expect(dir, 0, "check s3.avhdx", NULL);
	expect(dir, 9, "merge s2.avhdx", "s3.avhdx: its metadata region", "no room",
	       "nothing was changed", NULL);
	done(dir);

	dir = chain("packed-c1", false);
	edit_meta_table(dir, "s1.avhdx", pack_region);
	expect(dir, 9, "merge s2.avhdx", "s1.avhdx: its metadata region", NULL);
	/* the same chain converts: nothing of it is edited */
	expect(dir, 0, "convert s2.avhdx new.vhdx", NULL);
	done(dir);
}

/* A file-level item flagged as a disk item would be copied into the
 * destination with the disk's items (fmt §8.3), HasParent with it: check
 * reports the flag and the merge and the convert refuse it. */
static void flag_file_parameters(struct vxm_meta_table *mt)
{
	int i = vxm_meta_find(mt, &VXM_GUID_META_FILE_PARAMS, false);
	assert_true(i >= 0);
	mt->e[i].flags |= VXM_META_IS_VIRTUAL_DISK;
}

static void a_file_item_flagged_as_a_disk_item_is_refused(void **state)
{
	(void)state;
	char *dir = chain("vd-flag", false);
	edit_meta_table(dir, "s2.avhdx", flag_file_parameters);
	expect(dir, 1, "check s2.avhdx", "(File Parameters): IsVirtualDisk is set", NULL);
	expect(dir, 3, "merge s2.avhdx", "s2.avhdx (the top)", "File Parameters", NULL);
	expect(dir, 3, "convert s2.avhdx new.vhdx", "File Parameters", NULL);
	done(dir);
}

/* Row 5, first half: a base larger than its children would have to shrink. */
static void a_top_smaller_than_the_destination_is_refused(void **state)
{
	(void)state;
	char *dir = dir_of_test("shrink");
	const struct layer_spec L[] = {
		{ "base.vhdx", 16 * MiB, { F, F, F, F, F, F, F, F }, 0x11, 0, NULL },
		{ "s1.avhdx", 8 * MiB, { F, 0, 0, P }, 0x22, 0x11, "base.vhdx" },
		{ "s2.avhdx", 8 * MiB, { 0, F, 0, 0 }, 0x33, 0x22, "s1.avhdx" },
	};
	for (unsigned i = 0; i < 3; i++)
		put_layer(dir, &L[i]);
	expect(dir, 4, "merge s2.avhdx", "smaller than the destination", "nothing was changed",
	       NULL);
	expect(dir, 4, "plan s2.avhdx", "would shrink the destination", NULL);
	/* the way out it names works, and reads as the chain did */
	char want[65], got[65], path[1200];
	snprintf(path, sizeof(path), "%s/s2.avhdx", dir);
	assert_int_equal(tl_sha256_view(path, want), 0);
	expect(dir, 0, "convert s2.avhdx new.vhdx", NULL);
	snprintf(path, sizeof(path), "%s/new.vhdx", dir);
	assert_int_equal(tl_sha256_view(path, got), 0);
	assert_string_equal(got, want);
	done(dir);
}

/* A growth the writer cannot make (a fixed base that would need new blocks)
 * is refused before the first write, not after C1 was linked. */
static void a_growth_the_writer_cannot_make_is_refused_before_any_write(void **state)
{
	(void)state;
	char *dir = dir_of_test("grow-fixed");
	uint8_t st[8] = { F, F, F, F, F, F, F, F };
	struct mv_spec sp = { .vsize = 16 * MiB, .block_size = 2 * MiB, .lss = 512,
			      .fixed = true, .states = st, .fill = 0x11 };
	memset(sp.data_write.b, 0x11, 16);
	size_t len;
	uint8_t *f = mv_build(&sp, &len);
	char path[1200];
	snprintf(path, sizeof(path), "%s/base.vhdx", dir);
	assert_int_equal(tl_write_file(path, f, len), 0);
	free(f);
	const struct layer_spec L[] = {
		{ "s1.avhdx", 20 * MiB, { F, 0, P, 0, 0, 0, 0, 0, 0, F }, 0x22, 0x11, "base.vhdx" },
	};
	put_layer(dir, &L[0]);
	expect(dir, VXM_EXIT_UNSUPPORTED, "merge s1.avhdx", "growing a fixed file needs new blocks",
	       NULL);
	expect(dir, VXM_EXIT_UNSUPPORTED, "plan s1.avhdx", "growing a fixed file", NULL);
	expect(dir, 0, "convert s1.avhdx new.vhdx", NULL);
	done(dir);
}

/* Merges dir/top (extra args), then checks the destination reads as the
 * chain did before, through our reader and (a base) through qemu-img. */
static void merge_reads_as_before(const char *dir, const char *top, const char *extra,
				  const char *dest, const char *says)
{
	char want[65], got[65], path[1200], args[600];
	snprintf(path, sizeof(path), "%s/%s", dir, top);
	assert_int_equal(tl_sha256_view(path, want), 0);
	snprintf(args, sizeof(args), "merge %s %s", top, extra);
	expect(dir, 0, args, says, NULL);
	snprintf(path, sizeof(path), "%s/%s", dir, dest);
	assert_int_equal(tl_sha256_view(path, got), 0);
	assert_string_equal(got, want);
	if (!strcmp(dest, "base.vhdx")) {
		assert_int_equal(tl_sh("qemu-img check -q -f vhdx '%s'", path), 0);
		assert_int_equal(tl_sh("qemu-img convert -f vhdx -O raw '%s' '%s.raw'", path, path), 0);
		snprintf(path, sizeof(path), "%s/base.vhdx.raw", dir);
		assert_int_equal(tl_sha256_file(path, got), 0);
		assert_string_equal(got, want);
	}
	printf("  %s reads as the chain did: %.16s...\n", dest, want);
}

/* Row 5, second half: a base smaller than its children grows, and what its
 * file holds past its old end (a trailing block's tail, BAT entries past
 * its old TotalBATEntries) never shows: the chain showed zeros there. */
static void a_destination_that_grows_shows_none_of_its_stale_bytes(void **state)
{
	(void)state;
	char *dir = dir_of_test("grow-stale");
	/* base: 7 MiB, so block 3 covers [6, 8) MiB of which [7, 8) is past the end */
	const struct layer_spec L[] = {
		{ "base.vhdx", 7 * MiB, { F, F, F, F }, 0x11, 0, NULL },
		{ "s1.avhdx", 16 * MiB, { 0, F, 0, 0, 0, 0, F, 0 }, 0x22, 0x11, "base.vhdx" },
		{ "s2.avhdx", 16 * MiB, { 0, 0, P, 0, 0, P, 0, 0 }, 0x33, 0x22, "s1.avhdx" },
	};
	for (unsigned i = 0; i < 3; i++)
		put_layer(dir, &L[i]);
	char path[1200];
	snprintf(path, sizeof(path), "%s/base.vhdx", dir);
	size_t len;
	uint8_t *f = tl_read_file(path, &len);
	assert_non_null(f);
	/* stale bytes: block 3's tail, and 4 blocks the BAT points at past entry 3 */
	uint64_t b3 = vxm_bat_offset(get64(dir, "base.vhdx", ENTRY(3)));
	uint64_t nlen = (len + MiB - 1) / MiB * MiB + 8 * MiB;
	uint8_t *g = realloc(f, nlen);
	assert_non_null(g);
	memset(g + len, 0, nlen - len);
	memset(g + b3 + MiB, 0xbb, MiB);
	uint64_t stale = nlen - 8 * MiB;
	memset(g + stale, 0xaa, 8 * MiB);
	for (int b = 4; b < 8; b++)
		for (int i = 0; i < 8; i++)
			g[ENTRY(b) + (uint64_t)i] =
				(uint8_t)(vxm_bat_entry(F, stale + (uint64_t)(b - 4) * 2 * MiB) >> (8 * i));
	assert_int_equal(tl_write_file(path, g, nlen), 0);
	free(g);
	expect(dir, 0, "check base.vhdx", NULL); /* entries past TotalBATEntries are not read */
	merge_reads_as_before(dir, "s2.avhdx", "", "base.vhdx", "the destination grows");
	done(dir);

	/* --into a smaller middle layer over a larger base: past the middle
	 * layer's end the chain showed zeros, never the base's data */
	dir = dir_of_test("grow-into");
	const struct layer_spec M[] = {
		{ "base.vhdx", 16 * MiB, { F, F, F, F, F, F, F, F }, 0x11, 0, NULL },
		{ "s1.avhdx", 8 * MiB, { 0, F, 0, P }, 0x22, 0x11, "base.vhdx" },
		{ "s2.avhdx", 16 * MiB, { 0, 0, F, 0, 0, P, 0, 0 }, 0x33, 0x22, "s1.avhdx" },
	};
	for (unsigned i = 0; i < 3; i++)
		put_layer(dir, &M[i]);
	merge_reads_as_before(dir, "s2.avhdx", "--into s1.avhdx", "s1.avhdx",
			      "the destination grows");
	merge_reads_as_before(dir, "s1.avhdx", "", "base.vhdx", "");
	done(dir);
}

/* Row 8: a middle layer of another virtual size merges exactly, and says so. */
static void a_middle_layer_of_another_size_merges_exactly_and_is_named(void **state)
{
	(void)state;
	char *dir = dir_of_test("middle-size");
	const struct layer_spec L[] = {
		{ "base.vhdx", 16 * MiB, { F, F, F, F, F, F, F, F }, 0x11, 0, NULL },
		{ "s1.avhdx", 8 * MiB, { 0, F, 0, P }, 0x22, 0x11, "base.vhdx" },
		{ "s2.avhdx", 16 * MiB, { 0, 0, F, 0, 0, P, 0, 0 }, 0x33, 0x22, "s1.avhdx" },
	};
	for (unsigned i = 0; i < 3; i++)
		put_layer(dir, &L[i]);
	merge_reads_as_before(dir, "s2.avhdx", "", "base.vhdx",
			      "s1.avhdx has a virtual size of 8388608 bytes, the top 16777216");
	done(dir);
}

/* The data path is opened only after the journal and D's headers are
 * written: a name that is none is refused before that. */
static void an_unknown_data_path_is_refused_before_any_write(void **state)
{
	(void)state;
	char *dir = chain("io-name", false);
	expect(dir, VXM_EXIT_USAGE, "merge s2.avhdx --io nosuch", "no data path named \"nosuch\"",
	       "nothing was changed", NULL);
	expect(dir, VXM_EXIT_USAGE, "convert s2.avhdx out.vhdx --io fault", "no data path named",
	       NULL);
	done(dir);
}

/* Row 9: re-running a merge that finished is no I/O error. */
static void rerunning_a_finished_merge_says_nothing_is_left_to_do(void **state)
{
	(void)state;
	char *dir = chain("rerun", false);
	expect(dir, 0, "merge s2.avhdx", NULL);
	expect(dir, VXM_EXIT_USAGE, "merge s2.avhdx", "s2.avhdx does not exist",
	       "nothing to merge", NULL);
	done(dir);
}

int main(void)
{
	if (!tl_have("qemu-img")) {
		fprintf(stderr, "SKIP: qemu-img missing\n");
		return TL_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(destination_entries_sharing_a_block_are_refused_before_any_write),
		cmocka_unit_test(destination_entries_into_its_own_structures_are_refused),
		cmocka_unit_test(every_file_the_merge_reads_or_changes_passes_the_same_rules),
		cmocka_unit_test(a_locator_edit_without_room_is_refused_before_any_write),
		cmocka_unit_test(a_file_item_flagged_as_a_disk_item_is_refused),
		cmocka_unit_test(a_top_smaller_than_the_destination_is_refused),
		cmocka_unit_test(a_destination_that_grows_shows_none_of_its_stale_bytes),
		cmocka_unit_test(a_growth_the_writer_cannot_make_is_refused_before_any_write),
		cmocka_unit_test(a_middle_layer_of_another_size_merges_exactly_and_is_named),
		cmocka_unit_test(an_unknown_data_path_is_refused_before_any_write),
		cmocka_unit_test(rerunning_a_finished_merge_says_nothing_is_left_to_do),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
