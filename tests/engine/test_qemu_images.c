/* tests/engine/test_qemu_images.c: images made by `qemu-img create -f vhdx`
 * (dynamic and fixed; block sizes 1, 2, 32, 256 MiB; virtual sizes that are
 * not a multiple of the block size) parse, their BAT counts are what the
 * writes imply, and their content equals `qemu-img convert -O raw`.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define MiB (1024ull * 1024)

/* Writes at these virtual offsets (fractions of the disk), 64 KiB each. */
static const double where[] = { 0.0, 0.37, 0.5, 0.999 };

static void qemu_made_images_parse_with_matching_bat_counts_and_content(void **state)
{
	(void)state;
	static const uint32_t bs[] = { 1, 2, 32, 256 };
	char *dir = tl_mkdtemp("qemu-img");
	int images = 0;

	for (int fixed = 0; fixed < 2; fixed++) {
		for (size_t i = 0; i < 4; i++) {
			uint64_t block = bs[i] * MiB;
			/* three blocks and a bit: the trailing block is partial */
			uint64_t size = 3 * block + 1536 * 1024;
			char path[1200];
			snprintf(path, sizeof(path), "%s/q-%s-%u.vhdx", dir, fixed ? "fixed" : "dyn", bs[i]);
			assert_int_equal(tl_sh("qemu-img create -q -f vhdx -o subformat=%s,block_size=%llu '%s' %llu",
					       fixed ? "fixed" : "dynamic", (unsigned long long)block, path,
					       (unsigned long long)size), 0);
			uint64_t blocks_written[8];
			unsigned nb = 0;
			for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
				uint64_t off = (uint64_t)(where[w] * (double)size) & ~(64 * 1024ull - 1);
				if (off + 64 * 1024 > size)
					off = size - 64 * 1024;
				assert_int_equal(tl_sh("qemu-io -f vhdx -c 'write -q -P 0x%02x %llu 64k' '%s' >/dev/null",
						       (unsigned)(0x11 * (w + 1)), (unsigned long long)off, path), 0);
				uint64_t b = off / block;
				bool seen = false;
				for (unsigned k = 0; k < nb; k++)
					seen |= blocks_written[k] == b;
				if (!seen)
					blocks_written[nb++] = b;
			}
			struct vxm_image *img;
			struct vxm_err err = { 0 };
			struct vxm_info in;
			assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
			assert_int_equal(vxm_image_info(img, &in, &err), 0);
			uint64_t nblocks = (size + block - 1) / block;
			assert_int_equal(in.virtual_size, size);
			assert_int_equal(in.block_size, block);
			assert_int_equal(in.bat.fully_present + in.bat.not_present + in.bat.zero, nblocks);
			/* qemu-img 7.2 creates every block in the ZERO state, in fixed
			 * and dynamic images alike (legal to read: fmt §5.3); each block
			 * qemu-io wrote becomes FULLY_PRESENT. */
			assert_string_equal(in.type, fixed ? "fixed" : "dynamic");
			assert_int_equal(in.bat.fully_present, nb);
			assert_int_equal(in.bat.zero, nblocks - nb);
			assert_int_equal(vxm_image_check(img, &err), 0);

			char ours[65];
			assert_int_equal(tl_sha256_image(img, ours), 0);
			char raw[1300], theirs[65];
			snprintf(raw, sizeof(raw), "%s.raw", path);
			assert_int_equal(tl_sh("qemu-img convert -f vhdx -O raw '%s' '%s'", path, raw), 0);
			assert_int_equal(tl_sha256_file(raw, theirs), 0);
			assert_string_equal(ours, theirs);
			tl_sh("rm -f '%s'", raw);
			printf("  %-22s %4u MiB blocks, %llu blocks, %llu fully present, sha256 %.16s...\n",
			       fixed ? "fixed" : "dynamic", bs[i], (unsigned long long)nblocks,
			       (unsigned long long)in.bat.fully_present, ours);
			vxm_image_close(img);
			tl_sh("rm -f '%s'", path);
			images++;
		}
	}
	printf("  qemu-img images checked: %d\n", images);
	tl_sh("rm -rf '%s'", dir);
	free(dir);
}

static void chunk_ratio_is_eight_times_larger_at_4096_byte_sectors(void **state)
{
	(void)state;
	/* qemu-img cannot make 4096-byte-sector images; the writer's tests cover
	 * them.  This pins the geometry: a chunk is 2^23 sectors (fmt §5.1). */
	struct vxm_geom g;
	assert_int_equal(vxm_geom_init(&g, 10 * MiB, 32 * MiB, 4096, false, NULL), 0);
	assert_int_equal(g.chunk_ratio, 1024);
	assert_int_equal(vxm_geom_init(&g, 10 * MiB, 32 * MiB, 512, false, NULL), 0);
	assert_int_equal(g.chunk_ratio, 128);
}

int main(void)
{
	if (!tl_have("qemu-img") || !tl_have("qemu-io")) {
		fprintf(stderr, "SKIP: qemu-img/qemu-io not installed (apt-get install qemu-utils)\n");
		return TL_SKIP;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(qemu_made_images_parse_with_matching_bat_counts_and_content),
		cmocka_unit_test(chunk_ratio_is_eight_times_larger_at_4096_byte_sectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
