/* tests/engine/test_chain.c: chain discovery, its failure cases, the plan's
 * JSON numbers and scan, on small chains written to disk by the test
 * builder (tests/lib/memvhdx) and through the real binary. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"
#include "memvhdx.h"

#define MiB (1024ull * 1024)

static char *dir;

static struct vxm_guid G(uint8_t v)
{
	struct vxm_guid g = { { 0 } };
	memset(g.b, v, 16);
	return g;
}

/* Writes a 16 MiB, 2 MiB-block image: states per block (8), data_write
 * GUID dw, linking to pl by relative path rel (NULL: a base). */
static void put(const char *name, const char *states, uint8_t dw, uint8_t pl, const char *rel,
		const char *abs, uint32_t lss, const uint8_t *bits)
{
	uint8_t st[8];
	for (int i = 0; i < 8; i++)
		st[i] = (uint8_t)(states[i] == 'F' ? VXM_PB_FULLY_PRESENT
				  : states[i] == 'P' ? VXM_PB_PARTIALLY_PRESENT
				  : states[i] == 'Z' ? VXM_PB_ZERO
						     : VXM_PB_NOT_PRESENT);
	struct mv_spec sp = { .vsize = 16 * MiB, .block_size = 2 * MiB, .lss = lss,
			      .has_parent = rel || abs, .states = st, .bits = bits, .fill = dw,
			      .data_write = G(dw), .parent_linkage = G(pl), .relative_path = rel,
			      .absolute_win32_path = abs };
	size_t len;
	uint8_t *f = mv_build(&sp, &len);
	assert_non_null(f);
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(tl_write_file(path, f, len), 0);
	free(f);
}

static char *P(const char *name)
{
	static char buf[4][1200];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static int setup(void **state)
{
	(void)state;
	dir = tl_mkdtemp("chain");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", dir);
	free(dir);
	return 0;
}

static int run(char **out, const char *fmt, const char *a, const char *b)
{
	int st;
	char cmd[4000];
	snprintf(cmd, sizeof(cmd), fmt, a, b);
	char full[4200];
	snprintf(full, sizeof(full), "'%s' %s 2>&1", tl_bin(), cmd);
	*out = tl_sh_out(&st, "%s", full);
	return st;
}

static void chain_lists_layers_base_first_with_their_links(void **state)
{
	(void)state;
	put("base.vhdx", "FFFFNNNN", 1, 0, NULL, NULL, 512, NULL);
	put("c1.avhdx", "NFNNFNNN", 2, 1, ".\\base.vhdx", NULL, 512, NULL);
	put("c2.avhdx", "NNFNNFNN", 3, 2, ".\\c1.avhdx", NULL, 512, NULL);
	char *out;
	assert_int_equal(run(&out, "chain --json %s", P("c2.avhdx"), ""), 0);
	char *b = strstr(out, "base.vhdx"), *c1 = strstr(out, "c1.avhdx"), *c2 = strstr(out, "c2.avhdx");
	assert_true(b && c1 && c2 && b < c1 && c1 < c2);
	assert_non_null(strstr(out, "\"depth\": 3"));
	assert_non_null(strstr(out, "\"found_via\": \"relative_path\""));
	free(out);
}

static void missing_middle_link_names_the_file_and_who_wants_it(void **state)
{
	(void)state;
	put("m-base.vhdx", "FFFFNNNN", 1, 0, NULL, NULL, 512, NULL);
	put("m-c2.avhdx", "NNFNNFNN", 3, 2, ".\\m-c1.avhdx", NULL, 512, NULL);
	char *out;
	assert_int_equal(run(&out, "chain %s", P("m-c2.avhdx"), ""), VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "m-c2.avhdx: parent not found"));
	assert_non_null(strstr(out, ".\\m-c1.avhdx"));
	assert_non_null(strstr(out, "02020202-0202-0202-0202-020202020202"));
	free(out);
	/* plan and every other chain command refuse the same way */
	assert_int_equal(run(&out, "plan %s", P("m-c2.avhdx"), ""), VXM_EXIT_CHAIN);
	free(out);
}

static void wrong_linkage_is_refused_naming_both_guids(void **state)
{
	(void)state;
	put("w-base.vhdx", "FFFFNNNN", 9, 0, NULL, NULL, 512, NULL); /* DataWriteGuid 09.. */
	put("w-c1.avhdx", "NFNNFNNN", 2, 1, ".\\w-base.vhdx", NULL, 512, NULL); /* wants 01.. */
	char *out;
	assert_int_equal(run(&out, "chain %s", P("w-c1.avhdx"), ""), VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "no candidate parent has DataWriteGuid {01010101-0101-0101-0101-010101010101}"));
	assert_non_null(strstr(out, "DataWriteGuid {09090909-0909-0909-0909-090909090909}"));
	free(out);
}

static void a_cycle_is_detected(void **state)
{
	(void)state;
	/* a <- b <- a: each names the other and carries the GUID it wants */
	put("cy-a.avhdx", "NFNNNNNN", 4, 5, ".\\cy-b.avhdx", NULL, 512, NULL);
	put("cy-b.avhdx", "FNNNNNNN", 5, 4, ".\\cy-a.avhdx", NULL, 512, NULL);
	char *out;
	assert_int_equal(run(&out, "chain %s", P("cy-a.avhdx"), ""), VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "already in the chain (a cycle)"));
	free(out);
}

static void differing_logical_sector_sizes_are_refused(void **state)
{
	(void)state;
	put("s-base.vhdx", "FFFFNNNN", 1, 0, NULL, NULL, 512, NULL);
	put("s-c1.avhdx", "NFNNFNNN", 2, 1, ".\\s-base.vhdx", NULL, 4096, NULL);
	char *out;
	assert_int_equal(run(&out, "chain %s", P("s-c1.avhdx"), ""), VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "logical sector size 512 differs from its child"));
	assert_non_null(strstr(out, "4096"));
	free(out);
}

static void renamed_parent_is_found_by_the_absolute_path_file_name_case_insensitively(void **state)
{
	(void)state;
	/* The relative path names a file that is gone; the absolute Windows
	 * path's file name matches the real file with other letter case. */
	put("Real-Name.VHDX", "FFFFNNNN", 1, 0, NULL, NULL, 512, NULL);
	put("r-c1.avhdx", "NFNNFNNN", 2, 1, ".\\old-name.vhdx",
	    "C:\\ClusterStorage\\VMs\\real-name.vhdx", 512, NULL);
	char *out;
	assert_int_equal(run(&out, "chain --json %s", P("r-c1.avhdx"), ""), 0);
	assert_non_null(strstr(out, "Real-Name.VHDX"));
	assert_non_null(strstr(out, "absolute_win32_path (file name)"));
	free(out);
	/* and elsewhere, through --search-dir */
	char *other = tl_mkdtemp("chain-other");
	assert_int_equal(tl_sh("mv '%s' '%s/'", P("Real-Name.VHDX"), other), 0);
	assert_int_equal(run(&out, "chain %s", P("r-c1.avhdx"), ""), VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "try --search-dir"));
	free(out);
	assert_int_equal(run(&out, "chain --search-dir %s %s", other, P("r-c1.avhdx")), 0);
	free(out);
	tl_sh("rm -rf '%s'", other);
	free(other);
}

static void parent_linkage2_is_accepted_during_a_merge(void **state)
{
	(void)state;
	/* The child's parent_linkage names an old GUID; linkage2 the current one. */
	uint8_t st[8] = { VXM_PB_FULLY_PRESENT };
	struct mv_spec base = { .vsize = 16 * MiB, .block_size = 2 * MiB, .lss = 512, .states = st,
				.data_write = G(0x77) };
	uint8_t st1[8] = { 0, VXM_PB_FULLY_PRESENT };
	struct mv_spec child = { .vsize = 16 * MiB, .block_size = 2 * MiB, .lss = 512, .has_parent = true,
				 .states = st1, .data_write = G(0x78), .parent_linkage = G(0x70),
				 .parent_linkage2 = G(0x77), .relative_path = "l2-base.vhdx" };
	size_t len;
	uint8_t *f = mv_build(&base, &len);
	assert_int_equal(tl_write_file(P("l2-base.vhdx"), f, len), 0);
	free(f);
	f = mv_build(&child, &len);
	assert_int_equal(tl_write_file(P("l2-c1.avhdx"), f, len), 0);
	free(f);
	char *out;
	assert_int_equal(run(&out, "chain --json %s", P("l2-c1.avhdx"), ""), 0);
	assert_non_null(strstr(out, "\"child_linkage\": \"parent_linkage2\""));
	free(out);
}

static void plan_json_numbers_are_exact(void **state)
{
	(void)state;
	/* base  F F F F N N N N
	 * c1    N F N N F N N N
	 * c2    N N F Z N P N N   (block 5 partial: sectors 100..149 of it)
	 * Into the base: blocks 1 and 4 from c1, block 2 from c2, block 3 zeros,
	 * 50 sectors of block 5 from c2. */
	uint8_t *bits = calloc(1, 16 * MiB / 512 / 8);
	vxm_bitmap_fill(bits, 5 * 4096 + 100, 50, true);
	put("p-base.vhdx", "FFFFNNNN", 1, 0, NULL, NULL, 512, NULL);
	put("p-c1.avhdx", "NFNNFNNN", 2, 1, ".\\p-base.vhdx", NULL, 512, NULL);
	put("p-c2.avhdx", "NNFZNPNN", 3, 2, ".\\p-c1.avhdx", NULL, 512, bits);
	free(bits);
	char *out, v[64];
	assert_int_equal(run(&out, "plan --json %s", P("p-c2.avhdx"), ""), 0);
	assert_true(tl_json_get(out, NULL, "copy_bytes", v, sizeof(v)));
	assert_string_equal(v, "6317056"); /* 3 blocks of 2 MiB + 50 * 512 */
	assert_true(tl_json_get(out, NULL, "zero_bytes", v, sizeof(v)));
	assert_string_equal(v, "2097152");
	assert_true(tl_json_get(out, NULL, "extents", v, sizeof(v)));
	assert_string_equal(v, "5"); /* c1 b1, c2 b2, zeros b3, c1 b4, c2 b5 run */
	assert_true(tl_json_get(out, NULL, "dest_new_blocks", v, sizeof(v)));
	assert_string_equal(v, "2"); /* blocks 4 and 5; 1..3 are allocated in the base */
	assert_true(tl_json_get(out, NULL, "dest_growth_bytes", v, sizeof(v)));
	assert_string_equal(v, "4194304");
	/* level by level: c2 into c1 (2 MiB data + 2 MiB zeros + 50 sectors), then
	 * c1, now holding those and its own two blocks, into the base */
	assert_true(tl_json_get(out, NULL, "naive_copy_bytes", v, sizeof(v)));
	assert_string_equal(v, "12634112"); /* (4M + 25600) * 2 + 4M */
	assert_true(tl_json_get(out, NULL, "fits", v, sizeof(v)));
	assert_string_equal(v, "true");
	free(out);
	/* into the intermediate c1: only c2 merges */
	assert_int_equal(run(&out, "plan --json --into %s %s", P("p-c1.avhdx"), P("p-c2.avhdx")), 0);
	assert_true(tl_json_get(out, NULL, "copy_bytes", v, sizeof(v)));
	assert_string_equal(v, "2122752"); /* 2 MiB + 50 sectors */
	assert_true(tl_json_get(out, NULL, "naive_copy_bytes", v, sizeof(v)));
	assert_string_equal(v, "4219904"); /* one level: what c2 defines */
	assert_true(tl_json_get(out, NULL, "dest_new_bitmaps", v, sizeof(v)));
	assert_string_equal(v, "0"); /* c1 already has its chunk's bitmap */
	free(out);
	/* a destination that is not in the chain */
	assert_int_equal(run(&out, "plan --into %s %s", P("base.vhdx"), P("p-c2.avhdx")), VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "is not a layer of the chain"));
	free(out);
}

static void scan_reports_trees_branches_broken_links_orphans_leftovers_and_sidecars(void **state)
{
	(void)state;
	char *sd = tl_mkdtemp("scan");
	char *save = dir;
	dir = sd;
	assert_int_equal(tl_sh("mkdir -p '%s/vm'", sd), 0);
	put("vm/base.vhdx", "FFFFNNNN", 1, 0, NULL, NULL, 512, NULL);
	put("vm/a.avhdx", "NFNNNNNN", 2, 1, ".\\base.vhdx", NULL, 512, NULL);
	put("vm/b.avhdx", "NNFNNNNN", 3, 2, ".\\a.avhdx", NULL, 512, NULL);
	put("vm/b2.avhdx", "NNNFNNNN", 4, 2, ".\\a.avhdx", NULL, 512, NULL); /* a has two children */
	put("vm/lost.avhdx", "NNNNFNNN", 5, 6, ".\\gone.avhdx", NULL, 512, NULL);
	put("vm/below-lost.avhdx", "NNNNNFNN", 7, 5, ".\\lost.avhdx", NULL, 512, NULL);
	assert_int_equal(tl_sh("touch -d '30 days ago' '%s'", P("vm/b.avhdx")), 0);
	assert_int_equal(tl_sh("echo x > '%s'; echo x > '%s'", P("vm/base.vhdx.rct"), P("vm/deleted.mrt")), 0);
	assert_int_equal(tl_sh("head -c 100 /dev/zero > '%s'", P("vm/junk.vhdx")), 0);
	char *out, *dpath = P("vm");
	assert_int_equal(run(&out, "scan --json %s", dpath, ""), VXM_EXIT_PROBLEMS);
	printf("%s", out);
	char *left = strstr(out, "\"leftover\""), *broken = strstr(out, "\"broken\""),
	     *branch = strstr(out, "\"branching\""), *orph = strstr(out, "\"orphans\""),
	     *unread = strstr(out, "\"unreadable\""), *side = strstr(out, "\"stale_sidecars\"");
	assert_true(left && broken && branch && orph && unread && side);
	assert_true(strstr(left, "b.avhdx") < broken);
	assert_true(strstr(broken, "lost.avhdx") < branch);
	assert_true(strstr(branch, "a.avhdx") < orph);
	assert_true(strstr(orph, "below-lost.avhdx") < unread);
	assert_true(strstr(unread, "junk.vhdx") < side);
	assert_non_null(strstr(side, "deleted.mrt"));
	assert_null(strstr(side, "base.vhdx.rct")); /* its disk exists */
	free(out);
	/* clean directory: exit 0 */
	tl_sh("rm -f '%s'/vm/b2.avhdx '%s'/vm/lost.avhdx '%s'/vm/below-lost.avhdx '%s'/vm/junk.vhdx '%s'/vm/deleted.mrt",
	      sd, sd, sd, sd, sd);
	assert_int_equal(run(&out, "scan --older-than 60 %s", dpath, ""), 0);
	assert_non_null(strstr(out, "clean"));
	free(out);
	dir = save;
	tl_sh("rm -rf '%s'", sd);
	free(sd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(chain_lists_layers_base_first_with_their_links),
		cmocka_unit_test(missing_middle_link_names_the_file_and_who_wants_it),
		cmocka_unit_test(wrong_linkage_is_refused_naming_both_guids),
		cmocka_unit_test(a_cycle_is_detected),
		cmocka_unit_test(differing_logical_sector_sizes_are_refused),
		cmocka_unit_test(renamed_parent_is_found_by_the_absolute_path_file_name_case_insensitively),
		cmocka_unit_test(parent_linkage2_is_accepted_during_a_merge),
		cmocka_unit_test(plan_json_numbers_are_exact),
		cmocka_unit_test(scan_reports_trees_branches_broken_links_orphans_leftovers_and_sidecars),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
