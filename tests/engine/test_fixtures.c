/* tests/engine/test_fixtures.c: the reader against real Microsoft-made files.
 *
 * Content: the sha256 of every fixture's virtual disk, read with our reader,
 * equals what qemu-img and libvhdi computed (content-hashes.json; for the two
 * dirty-log files the figure taken after qemu-img's own replay).
 * Dirty logs: check reports them, a read-only open shows the replayed state
 * without writing, and check --repair makes a copy clean with the content
 * unchanged and qemu-img agreeing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"

struct fx {
	const char *folder, *file, *key;
	bool big; /* 10 GiB of virtual disk: skipped under sanitizers */
};

static const struct fx all[] = {
	{ "dissect-dynamic-vhdx", "dynamic.vhdx", "dissect-dynamic-vhdx", false },
	{ "dissect-fixed-vhdx", "fixed.vhdx", "dissect-fixed-vhdx", false },
	{ "coreos-hyperv-config2-base", "config2_base.vhdx", "coreos-hyperv-config2-base", false },
	{ "qemu-test-disk2vhd", "test-disk2vhd.vhdx", "qemu-test-disk2vhd", false },
	{ "qemu-iotest-dynamic-1G-hyperv2012", "iotest-dynamic-1G.vhdx",
	  "qemu-iotest-dynamic-1G-hyperv2012", false },
	{ "discutils-vhdx-log-replay", "vhdx-log-replay.vhdx", "discutils-vhdx-log-replay", false },
	{ "discutils-btrfs", "btrfs.vhdx", "discutils-btrfs", false },
	{ "qemu-iotest-dirtylog-10G-4M", "iotest-dirtylog-10G-4M.vhdx",
	  "qemu-iotest-dirtylog-10G-4M", false },
	{ "discutils-swap", "swap.vhdx", "discutils-swap", true },
	{ "discutils-xfs5", "xfs5.vhdx", "discutils-xfs5", true },
	{ "discutils-xfs", "xfs.vhdx", "discutils-xfs", true },
	{ "discutils-lvm2", "lvm2.vhdx", "discutils-lvm2", true },
};

static bool sanitized(void)
{
	const char *s = getenv("VXM_SANITIZED");
	return s && *s == '1';
}

/* "key": { ... "qemu_sha256": "..." } from content-hashes.json */
static bool expected_hash(const char *key, char out[65])
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/content-hashes.json", tl_fixtures_dir());
	char *json = (char *)tl_read_file(path, NULL);
	assert_non_null(json);
	bool ok = tl_json_get(json, key, "qemu_sha256", out, 65);
	free(json);
	return ok && strlen(out) == 64;
}

static void every_fixture_reads_with_the_content_qemu_and_libvhdi_computed(void **state)
{
	(void)state;
	int checked = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i].big && sanitized()) {
			printf("  (skipped under sanitizers: %s, 10 GiB of hashing)\n", all[i].file);
			continue;
		}
		char *path = tl_fixture(all[i].folder, all[i].file);
		assert_non_null(path);
		char want[65], got[65];
		assert_true(expected_hash(all[i].key, want));
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
		assert_int_equal(tl_sha256_image(img, got), 0);
		printf("  %-28s %s\n", all[i].file, got);
		assert_string_equal(got, want);
		vxm_image_close(img);
		free(path);
		checked++;
	}
	printf("  content hashes equal: %d fixtures\n", checked);
}

static void read_only_open_of_a_dirty_log_replays_in_memory_and_writes_nothing(void **state)
{
	(void)state;
	const char *dirty[][2] = { { "discutils-vhdx-log-replay", "vhdx-log-replay.vhdx" },
				   { "qemu-iotest-dirtylog-10G-4M", "iotest-dirtylog-10G-4M.vhdx" } };
	for (int i = 0; i < 2; i++) {
		char *path = tl_fixture(dirty[i][0], dirty[i][1]);
		char before[65], after[65];
		assert_int_equal(tl_sha256_file(path, before), 0);
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
		assert_true(img->log_dirty);
		assert_true(img->log_replayed);
		assert_true(vxm_image_check(img, &err) >= 1); /* the dirty log is reported */
		vxm_image_close(img);
		assert_int_equal(tl_sha256_file(path, after), 0);
		assert_string_equal(before, after);

		/* NO_REPLAY refuses instead of replaying. */
		vxm_err_clear(&err);
		assert_int_equal(vxm_image_open(&img, NULL, path, VXM_IMAGE_NO_REPLAY, &err),
				 -VXM_EDIRTY);
		assert_non_null(strstr(err.msg, "replayed"));
		free(path);
	}
}

static void qemu_stale_log_entries_of_an_older_log_guid_are_not_replayed(void **state)
{
	(void)state;
	char *path = tl_fixture("qemu-iotest-dirtylog-10G-4M", "iotest-dirtylog-10G-4M.vhdx");
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
	/* Seven CRC-valid entries, only seq 7 at 0xC000 carries the LogGuid. */
	assert_true(img->logseq.found);
	assert_int_equal(img->logseq.count, 1);
	assert_int_equal(img->logseq.head, 49152);
	assert_int_equal(img->logseq.tail, 49152);
	assert_int_equal(img->logseq.head_seq, 7);
	/* After qemu's own replay the disk holds 0xa5 over [0, 18 MiB) and zeros
	 * after it; the 18th MiB is the block the log adds (17 -> 18 FULLY_PRESENT).
	 * (The format notes quote 0xc025000 from iotest 070; the bytes say 18 MiB.) */
	uint8_t buf[4096];
	assert_int_equal(vxm_image_read(img, buf, sizeof(buf), 0x1200000 - 4096, &err), 0);
	for (size_t k = 0; k < sizeof(buf); k++)
		assert_int_equal(buf[k], 0xa5);
	assert_int_equal(vxm_image_read(img, buf, sizeof(buf), 0x1200000, &err), 0);
	for (size_t k = 0; k < sizeof(buf); k++)
		assert_int_equal(buf[k], 0);
	vxm_image_close(img);
	free(path);
}

static void windows_log_replays_from_tail_0x5000_to_head_0x7000(void **state)
{
	(void)state;
	char *path = tl_fixture("discutils-vhdx-log-replay", "vhdx-log-replay.vhdx");
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	uint64_t e;
	assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
	assert_int_equal(img->logseq.tail, 0x5000);
	assert_int_equal(img->logseq.head, 0x7000);
	assert_int_equal(img->logseq.count, 2);
	assert_true(img->logseq.head_seq == 80117443871106391ull);
	/* fmt §11: BAT[0] = 0x400006, BAT[3], BAT[9], BAT[31] = ZERO */
	assert_int_equal(vxm_image_bat_get(img, 0, &e, &err), 0);
	assert_true(e == 0x400006);
	assert_int_equal(vxm_image_bat_get(img, 3, &e, &err), 0);
	assert_true(e == 0x2);
	assert_int_equal(vxm_image_bat_get(img, 9, &e, &err), 0);
	assert_true(e == 0x2);
	assert_int_equal(vxm_image_bat_get(img, 31, &e, &err), 0);
	assert_true(e == 0x2);
	vxm_image_close(img);
	free(path);
}

static void check_repair_cleans_a_dirty_copy_and_qemu_agrees(void **state)
{
	(void)state;
	const char *dirty[][3] = {
		{ "discutils-vhdx-log-replay", "vhdx-log-replay.vhdx", "discutils-vhdx-log-replay" },
		{ "qemu-iotest-dirtylog-10G-4M", "iotest-dirtylog-10G-4M.vhdx",
		  "qemu-iotest-dirtylog-10G-4M" },
	};
	char *dir = tl_mkdtemp("repair");
	for (int i = 0; i < 2; i++) {
		char *src = tl_fixture(dirty[i][0], dirty[i][1]);
		char copy[1400], want[65], got[65];
		snprintf(copy, sizeof(copy), "%s/%s", dir, dirty[i][1]);
		assert_int_equal(tl_copy_file(src, copy), 0);
		assert_true(expected_hash(dirty[i][2], want));

		/* check reports the dirty log: exit 1 */
		assert_int_equal(tl_sh("'%s' check '%s' >/dev/null", tl_bin(), copy), 1);
		/* qemu refuses a read-only open of the unreplayed file */
		assert_int_not_equal(tl_sh("qemu-img info '%s' >/dev/null 2>&1", copy), 0);

		int st;
		char *out = tl_sh_out(&st, "'%s' check --repair '%s'", tl_bin(), copy);
		printf("%s", out);
		assert_int_equal(st, 0);
		assert_non_null(strstr(out, "log replayed in place"));
		free(out);

		/* clean now: our check, our info, qemu-img check all agree */
		assert_int_equal(tl_sh("'%s' check '%s' >/dev/null", tl_bin(), copy), 0);
		out = tl_sh_out(&st, "'%s' info --json '%s'", tl_bin(), copy);
		char v[64];
		assert_true(tl_json_get(out, "log", "dirty", v, sizeof(v)));
		assert_string_equal(v, "false");
		free(out);
		out = tl_sh_out(&st, "qemu-img check -f vhdx '%s' 2>&1", copy);
		printf("  qemu-img check: %s", out);
		assert_int_equal(st, 0);
		assert_non_null(strstr(out, "No errors were found"));
		free(out);

		/* the content is the replayed content */
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		assert_int_equal(vxm_image_open(&img, NULL, copy, 0, &err), 0);
		assert_false(img->log_dirty);
		/* replay keeps the DataWriteGuid (fmt P15) */
		char g[40];
		vxm_guid_fmt(&img->hdr.data_write, g);
		assert_string_equal(g, i == 0 ? "8fbc9db8-2cfd-45b8-9688-1c6fedbc7230"
					      : "5ab1b2ee-2f64-2e40-8a9b-0f0bcfdcd544");
		if (!(i == 1 && sanitized())) {
			assert_int_equal(tl_sha256_image(img, got), 0);
			assert_string_equal(got, want);
		}
		vxm_image_close(img);
		if (!(i == 1 && sanitized())) {
			char raw[1500], qh[65];
			snprintf(raw, sizeof(raw), "%s.raw", copy);
			assert_int_equal(tl_sh("qemu-img convert -f vhdx -O raw '%s' '%s'", copy, raw), 0);
			assert_int_equal(tl_sha256_file(raw, qh), 0);
			assert_string_equal(qh, want);
			unlink(raw);
		}

		/* a second repair has nothing to do and writes nothing */
		char h1[65], h2[65];
		assert_int_equal(tl_sha256_file(copy, h1), 0);
		out = tl_sh_out(&st, "'%s' check --repair '%s'", tl_bin(), copy);
		assert_int_equal(st, 0);
		assert_null(strstr(out, "replayed"));
		free(out);
		assert_int_equal(tl_sha256_file(copy, h2), 0);
		assert_string_equal(h1, h2);
		free(src);
	}
	tl_sh("rm -rf '%s'", dir);
	free(dir);
}

static void differencing_fixture_lookup_follows_its_sector_bitmap(void **state)
{
	(void)state;
	char *path = tl_fixture("dissect-differencing-avhdx", "differencing.avhdx");
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	struct vxm_run r;
	assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
	/* fmt §11: block 0 has bits 2048-2055 set, the rest falls through. */
	assert_int_equal(vxm_image_lookup(img, 0, UINT64_MAX, &r, &err), 0);
	assert_int_equal(r.kind, VXM_RUN_PARENT);
	assert_int_equal(r.nsec, 2048);
	assert_int_equal(vxm_image_lookup(img, 2048, UINT64_MAX, &r, &err), 0);
	assert_int_equal(r.kind, VXM_RUN_DATA);
	assert_int_equal(r.nsec, 8);
	assert_int_equal(vxm_image_lookup(img, 2056, UINT64_MAX, &r, &err), 0);
	assert_int_equal(r.kind, VXM_RUN_PARENT);
	assert_int_equal(r.nsec, 4096 - 2056);
	/* block 256: 32 bits set in its slice at 0x720000 */
	uint64_t set = 0;
	for (uint64_t s = 256 * 4096; s < 257 * 4096;) {
		assert_int_equal(vxm_image_lookup(img, s, UINT64_MAX, &r, &err), 0);
		if (r.kind == VXM_RUN_DATA)
			set += r.nsec;
		s += r.nsec;
	}
	assert_int_equal(set, 32);
	/* a NOT_PRESENT block of a differencing file is transparent */
	assert_int_equal(vxm_image_lookup(img, 5 * 4096, UINT64_MAX, &r, &err), 0);
	assert_int_equal(r.kind, VXM_RUN_PARENT);
	assert_int_equal(r.nsec, 4096);
	/* reading it alone is refused: it needs its chain */
	uint8_t buf[512];
	assert_int_equal(vxm_image_read(img, buf, 512, 0, &err), -VXM_ECHAIN);
	vxm_image_close(img);
	free(path);
}

int main(void)
{
	tl_require_fixtures();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(windows_log_replays_from_tail_0x5000_to_head_0x7000),
		cmocka_unit_test(qemu_stale_log_entries_of_an_older_log_guid_are_not_replayed),
		cmocka_unit_test(read_only_open_of_a_dirty_log_replays_in_memory_and_writes_nothing),
		cmocka_unit_test(differencing_fixture_lookup_follows_its_sector_bitmap),
		cmocka_unit_test(check_repair_cleans_a_dirty_copy_and_qemu_agrees),
		cmocka_unit_test(every_fixture_reads_with_the_content_qemu_and_libvhdi_computed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
