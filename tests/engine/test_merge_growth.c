/* tests/engine/test_merge_growth.c: a merge whose top is larger than the
 * destination (fmt §8.3): the destination takes TOP's IsVirtualDisk items,
 * its BAT covers the new blocks, the sectors past its old end read as the
 * chain showed them (zeros where nothing defines them), and qemu-img agrees. */
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

static void put(const char *path, uint64_t vsize, const uint8_t *st, uint8_t dw, uint8_t pl,
		const char *rel)
{
	struct mv_spec sp = { .vsize = vsize, .block_size = 2 * MiB, .lss = 512,
			      .has_parent = rel != NULL, .states = st, .fill = dw,
			      .relative_path = rel };
	memset(sp.data_write.b, dw, 16);
	memset(sp.parent_linkage.b, pl, 16);
	size_t len;
	uint8_t *f = mv_build(&sp, &len);
	assert_non_null(f);
	assert_int_equal(tl_write_file(path, f, len), 0);
	free(f);
}

static void a_larger_top_grows_the_destination_and_reads_as_the_chain(void **state)
{
	(void)state;
	char *dir = tl_mkdtemp("growth");
	char base[1200], top[1200], raw[1200];
	snprintf(base, sizeof(base), "%s/base.vhdx", dir);
	snprintf(top, sizeof(top), "%s/top.avhdx", dir);
	snprintf(raw, sizeof(raw), "%s/base.raw", dir);
	uint8_t st0[8] = { VXM_PB_FULLY_PRESENT, 0, VXM_PB_FULLY_PRESENT, 0, 0, 0, 0, 0 };
	/* 12 blocks: data in the old part and past the base's 16 MiB end */
	uint8_t st1[12] = { 0, VXM_PB_FULLY_PRESENT, 0, 0, 0, 0, 0, 0,
			    VXM_PB_FULLY_PRESENT, 0, VXM_PB_FULLY_PRESENT, 0 };
	put(base, 16 * MiB, st0, 1, 0, NULL);
	put(top, 24 * MiB, st1, 2, 1, "base.vhdx");
	char want[65], got[65];
	assert_int_equal(tl_sha256_view(top, want), 0);
	int st;
	char *out = tl_sh_out(&st, "'%s' merge '%s' --progress none 2>&1", tl_bin(), top);
	printf("%s", out);
	assert_int_equal(st, 0);
	free(out);
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_image_open(&img, NULL, base, 0, &err), 0);
	assert_int_equal(img->m.virtual_size, 24 * MiB);
	assert_int_equal(tl_sha256_image(img, got), 0);
	vxm_image_close(img);
	assert_string_equal(got, want);
	assert_int_equal(tl_sh("qemu-img check -q -f vhdx '%s'", base), 0);
	assert_int_equal(tl_sh("qemu-img convert -f vhdx -O raw '%s' '%s'", base, raw), 0);
	assert_int_equal(tl_sha256_file(raw, got), 0);
	assert_string_equal(got, want);
	printf("  base grew from 16 to 24 MiB; our reader and qemu-img read %.16s...\n", got);
	tl_sh("rm -rf '%s'", dir);
	free(dir);
}

int main(void)
{
	if (!tl_have("qemu-img")) {
		fprintf(stderr, "SKIP: qemu-img missing\n");
		return TL_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_larger_top_grows_the_destination_and_reads_as_the_chain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
