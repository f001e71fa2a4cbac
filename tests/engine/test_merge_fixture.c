/* tests/engine/test_merge_fixture.c: the real Hyper-V checkpoint
 * (dissect-differencing-avhdx, Windows 10.0.17763) merged into a parent
 * built for it: an 8 GiB base whose DataWriteGuid is the child's
 * parent_linkage {ff34003b-...}, named as the child's relative_path says,
 * with data under and around the child's partial blocks.  The merged base
 * must read exactly as libvhdi reads the pair before the merge, and qemu-img
 * must call it clean. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define PARENT "Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385.avhdx"

static void hyperv_checkpoint_merges_into_a_parent_built_for_it_as_libvhdi_reads_the_pair(void **state)
{
	(void)state;
	char *src = tl_fixture("dissect-differencing-avhdx", "differencing.avhdx");
	assert_non_null(src);
	char *dir = tl_mkdtemp("hyperv-merge");
	char child[1400], parent[1400];
	snprintf(child, sizeof(child), "%s/differencing.avhdx", dir);
	snprintf(parent, sizeof(parent), "%s/%s", dir, PARENT);
	assert_int_equal(tl_copy_file(src, child), 0);

	/* The parent: dynamic, 8 GiB, 512-byte sectors like the child. */
	struct vxm_err err = { 0 };
	struct vxm_create_params cp = { .virtual_size = 8ull << 30, .block_size = 32u << 20,
					.logical_sector_size = 512, .physical_sector_size = 4096 };
	assert_int_equal(vxm_image_create(parent, &cp, &err), 0);
	struct vxm_image *img;
	assert_int_equal(vxm_image_open(&img, NULL, parent, VXM_IMAGE_RDWR, &err), 0);
	struct vxm_writer *w;
	assert_int_equal(vxm_writer_begin(&w, img, &err), 0);
	struct vxm_guid g;
	assert_int_equal(vxm_guid_parse("ff34003b-11ed-4cf8-a166-b2be05e20b80", 36, &g), 0);
	assert_int_equal(vxm_writer_set_data_guid(w, &g, &err), 0);
	/* Data under the child's partial blocks 0 and 256 and far away. */
	static uint8_t buf[4 << 20];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(vxm_writer_write(w, 0, buf, sizeof(buf), &err), 0);
	assert_int_equal(vxm_writer_write(w, 256ull * 2 * 1024 * 1024 - 65536, buf, sizeof(buf), &err), 0);
	assert_int_equal(vxm_writer_write(w, 6ull << 30, buf, sizeof(buf), &err), 0);
	assert_int_equal(vxm_writer_end(w, &err), 0);
	vxm_image_close(img);

	/* libvhdi's view of the pair, before. */
	int st;
	char *before = tl_sh_out(&st, "/usr/bin/python3 '%s/tests/cli/pyvhdi_sha256.py' '%s' '%s'",
				 getenv("VXM_SOURCE_DIR"), parent, child);
	assert_int_equal(st, 0);
	printf("  libvhdi, parent + Hyper-V child: %.64s\n", before);

	char *out = tl_sh_out(&st, "'%s' merge '%s' --progress none 2>&1", tl_bin(), child);
	printf("%s", out);
	assert_int_equal(st, 0);
	free(out);

	char *after = tl_sh_out(&st, "/usr/bin/python3 '%s/tests/cli/pyvhdi_sha256.py' '%s'",
				getenv("VXM_SOURCE_DIR"), parent);
	assert_int_equal(st, 0);
	printf("  libvhdi, merged parent:          %.64s\n", after);
	assert_memory_equal(before, after, 64);
	out = tl_sh_out(&st, "qemu-img check -f vhdx '%s' 2>&1", parent);
	printf("  qemu-img check: %s", out);
	assert_int_equal(st, 0);
	free(out);
	/* the merged base alone: our reader agrees as well */
	assert_int_equal(vxm_image_open(&img, NULL, parent, 0, &err), 0);
	char ours[65];
	assert_int_equal(tl_sha256_image(img, ours), 0);
	assert_memory_equal(ours, before, 64);
	vxm_image_close(img);
	free(before);
	free(after);
	tl_sh("rm -rf '%s'", dir);
	free(dir);
	free(src);
}

int main(void)
{
	tl_require_fixtures();
	if (!tl_have_pyvhdi()) {
		fprintf(stderr, "SKIP: python3-libvhdi (pyvhdi) is not installed\n");
		return TL_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hyperv_checkpoint_merges_into_a_parent_built_for_it_as_libvhdi_reads_the_pair),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
