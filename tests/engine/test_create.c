/* tests/engine/test_create.c: new files (engine/create.c) are laid out as
 * Hyper-V lays them out, link to their parent, and an interrupted create
 * leaves nothing a reader accepts. */
#include "wtest.h"

#include <sys/wait.h>

#include "vhdx/endian.h"

static char *tmp;

static int setup(void **state)
{
	(void)state;
	tmp = tl_mkdtemp("create");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", tmp);
	free(tmp);
	return 0;
}

static struct vxm_image *open_ro(const char *path)
{
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	char m[1400];
	int ret = vxm_image_open(&img, NULL, path, 0, &err);
	if (ret)
		fprintf(stderr, "%s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	return img;
}

/* The region table Hyper-V writes for a new file, put together byte by byte
 * from fmt §1.4 and §1.5 (not with the codec's encoder): BAT at 3 MiB,
 * metadata at 2 MiB, 1 MiB each, both required, CRC-32C over the 64 KiB. */
static void hyper_v_region_table(uint8_t rt[VXM_RT_SIZE])
{
	static const uint8_t bat[16] = { 0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
					 0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08 };
	static const uint8_t meta[16] = { 0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
					  0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e };
	memset(rt, 0, VXM_RT_SIZE);
	memcpy(rt, "regi", 4);
	vxm_put_le32(rt + 8, 2);
	memcpy(rt + 16, bat, 16);
	vxm_put_le64(rt + 32, 3 << 20);
	vxm_put_le32(rt + 40, 1 << 20);
	vxm_put_le32(rt + 44, 1);
	memcpy(rt + 48, meta, 16);
	vxm_put_le64(rt + 64, 2 << 20);
	vxm_put_le32(rt + 72, 1 << 20);
	vxm_put_le32(rt + 76, 1);
	vxm_put_le32(rt + 4, vxm_crc32c(0, rt, VXM_RT_SIZE));
}

/* The dissect fixtures dynamic.vhdx (32 MiB blocks, 10 MiB) and fixed.vhdx
 * (2 MiB blocks, 10 MiB) as Hyper-V wrote them (fmt §11): our files of the
 * same parameters have the same layout, the same region table bytes (CRC
 * 0xc66b8cae; compared with the table built from the format always, and
 * with the real file's when the fixtures are present) and the same item
 * placement and flags. */
static void new_files_have_the_layout_hyper_v_gives_them(void **state)
{
	char dyn[512], fix[512];
	(void)state;

	snprintf(dyn, sizeof(dyn), "%s/dynamic.vhdx", tmp);
	snprintf(fix, sizeof(fix), "%s/fixed.vhdx", tmp);
	wt_create(dyn, &(struct vxm_create_params){ .virtual_size = 10 << 20 });
	wt_create(fix, &(struct vxm_create_params){ .virtual_size = 10 << 20, .fixed = true });

	struct vxm_image *d = open_ro(dyn), *f = open_ro(fix);
	/* sizes: 4 MiB of structures; + five 2 MiB blocks from 4 MiB */
	assert_int_equal(d->file_size, 4 << 20);
	assert_int_equal(f->file_size, 14 << 20);
	assert_int_equal(d->m.block_size, 32 << 20);
	assert_int_equal(f->m.block_size, 2 << 20);
	assert_true(f->m.leave_blocks_allocated);
	assert_int_equal(d->m.logical_sector_size, 512);
	assert_int_equal(d->m.physical_sector_size, 4096);
	for (uint64_t b = 0; b < 5; b++) {
		uint64_t e;
		assert_int_equal(vxm_image_bat_get(f, vxm_geom_pb_index(&f->g, b), &e, NULL), 0);
		assert_int_equal(e, vxm_bat_entry(VXM_PB_FULLY_PRESENT, (4 + 2 * b) << 20));
	}
	struct vxm_image *imgs[2] = { d, f };
	for (int i = 0; i < 2; i++) {
		struct vxm_image *img = imgs[i];
		assert_string_equal(img->creator, "vhdxmerge 0.1.0");
		assert_int_equal(img->hdr.log_off, 1 << 20);
		assert_int_equal(img->hdr.log_len, 1 << 20);
		assert_true(vxm_guid_is_zero(&img->hdr.log_guid));
		/* header 2 current, seq 2, the same GUIDs in both slots */
		assert_int_equal(img->hp.current, 1);
		assert_int_equal(img->hp.h[0].seq + 1, img->hp.h[1].seq);
		assert_true(vxm_guid_eq(&img->hp.h[0].file_write, &img->hp.h[1].file_write));
		assert_true(vxm_guid_eq(&img->hp.h[0].data_write, &img->hp.h[1].data_write));
		assert_int_equal(img->meta_region.off, 2 << 20);
		assert_int_equal(img->bat_region.off, 3 << 20);
		assert_int_equal(img->bat_region.len, 1 << 20);
		assert_int_equal(img->rt->checksum, 0xc66b8cae);
		assert_int_equal(img->rt->bat, 0);
		/* items packed from 64 KiB in Hyper-V's order, with its flags */
		static const uint32_t offs[] = { 0x10000, 0x10008, 0x10010, 0x10014, 0x10018 };
		static const uint32_t flags[] = { 4, 6, 6, 6, 6 };
		const struct vxm_guid *ids[] = { &VXM_GUID_META_FILE_PARAMS,
						 &VXM_GUID_META_VIRTUAL_SIZE,
						 &VXM_GUID_META_LOGICAL_SECTOR,
						 &VXM_GUID_META_PHYSICAL_SECTOR, &VXM_GUID_META_DISK_ID };
		assert_int_equal(img->mt->count, 5);
		for (int k = 0; k < 5; k++) {
			assert_true(vxm_guid_eq(&img->mt->e[k].id, ids[k]));
			assert_int_equal(img->mt->e[k].off, offs[k]);
			assert_int_equal(img->mt->e[k].flags, flags[k]);
		}
	}
	/* Both copies of both files' region tables equal Hyper-V's byte for
	 * byte: the one built from the format here, and the fixture's. */
	static uint8_t want[VXM_RT_SIZE];
	hyper_v_region_table(want);
	assert_int_equal(vxm_le32(want + 4), 0xc66b8cae);
	const char *made[2] = { dyn, fix };
	for (int i = 0; i < 2; i++) {
		size_t n;
		uint8_t *b = tl_read_file(made[i], &n);
		assert_non_null(b);
		assert_memory_equal(b + VXM_RT1_OFF, want, VXM_RT_SIZE);
		assert_memory_equal(b + VXM_RT2_OFF, want, VXM_RT_SIZE);
		free(b);
	}
	printf("region tables byte-identical to the one fmt §1.4 gives for Hyper-V's layout\n");
	char *fx = tl_fixture("dissect-dynamic-vhdx", "dynamic.vhdx");
	if (fx) {
		size_t n1, n2;
		uint8_t *a = tl_read_file(fx, &n1), *b = tl_read_file(dyn, &n2);
		assert_non_null(a);
		assert_non_null(b);
		assert_memory_equal(a + VXM_RT1_OFF, b + VXM_RT1_OFF, 2 * VXM_RT_SIZE);
		printf("region tables byte-identical to Hyper-V's dynamic.vhdx\n");
		free(a);
		free(b);
		free(fx);
	}
	vxm_image_close(d);
	vxm_image_close(f);
	wt_check_clean(dyn);
	wt_check_clean(fix);
	if (tl_have("qemu-img")) {
		assert_int_equal(tl_sh("qemu-img check -q -f vhdx '%s' && qemu-img check -q -f vhdx '%s'",
				       dyn, fix),
				 0);
	}
}

/* A child takes its parent's size, sector size, disk id and every
 * IsVirtualDisk item (a user one too), links to the parent's DataWriteGuid,
 * and names it relative to its own directory with `\` separators. */
static void a_child_links_to_its_parent_and_copies_its_virtual_disk_items(void **state)
{
	char base[512], dir[512], child[600], sib[600];
	struct vxm_image *img;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	static const struct vxm_guid user = { { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 } };
	(void)state;

	snprintf(base, sizeof(base), "%s/vms/base disk.vhdx", tmp);
	snprintf(dir, sizeof(dir), "%s/vms", tmp);
	mkdir(dir, 0755);
	snprintf(dir, sizeof(dir), "%s/snaps", tmp);
	mkdir(dir, 0755);
	snprintf(child, sizeof(child), "%s/c1.avhdx", dir);
	snprintf(sib, sizeof(sib), "%s/vms/c2.avhdx", tmp);
	wt_create(base, &(struct vxm_create_params){ .virtual_size = (3ull << 30) + 4096 * 3,
						     .logical_sector_size = 4096,
						     .physical_sector_size = 512 });
	/* a user IsVirtualDisk item, added through the log */
	wt_begin(base, &img, &w);
	assert_int_equal(vxm_txn_set_meta(w, &user, VXM_META_IS_USER | VXM_META_IS_VIRTUAL_DISK,
					  "hello", 5, &err),
			 0);
	assert_int_equal(vxm_txn_commit(w, "user-item", &err), 0);
	wt_end(img, w);

	wt_create(child, &(struct vxm_create_params){ .parent = base });
	wt_create(sib, &(struct vxm_create_params){ .parent = base, .block_size = 1 << 20,
						    .flags = VXM_CREATE_NO_ABSOLUTE_PATH |
							     VXM_CREATE_LAZY_BITMAPS });
	struct vxm_image *b = open_ro(base), *c = open_ro(child), *s = open_ro(sib);
	assert_true(c->m.has_parent);
	assert_false(c->m.leave_blocks_allocated);
	assert_int_equal(c->m.block_size, 2 << 20);
	assert_int_equal(c->m.virtual_size, b->m.virtual_size);
	assert_int_equal(c->m.logical_sector_size, 4096);
	assert_int_equal(c->m.physical_sector_size, 512);
	assert_true(vxm_guid_eq(&c->m.disk_id, &b->m.disk_id));
	assert_true(vxm_guid_eq(&c->loc->parent_linkage, &b->hdr.data_write));
	assert_false(vxm_guid_eq(&c->hdr.data_write, &b->hdr.data_write));
	assert_string_equal(c->loc->relative_path, "..\\vms\\base disk.vhdx");
	char *real = realpath(base, NULL);
	for (char *p = real; *p; p++)
		if (*p == '/')
			*p = '\\';
	assert_string_equal(c->loc->absolute_win32_path, real);
	free(real);
	assert_string_equal(s->loc->relative_path, ".\\base disk.vhdx");
	assert_string_equal(s->loc->absolute_win32_path, "");
	assert_false(c->loc->linkage2_key);
	/* the user item came along; File Parameters and the locator are the
	 * child's own (flags as Hyper-V: 0x4) */
	int u = vxm_meta_find(c->mt, &user, true);
	assert_true(u >= 0);
	assert_int_equal(c->mt->e[u].len, 5);
	assert_memory_equal(c->meta + c->mt->e[u].off, "hello", 5);
	assert_int_equal(c->mt->e[c->m.locator].flags, VXM_META_IS_REQUIRED);
	assert_int_equal(c->mt->e[0].flags, VXM_META_IS_REQUIRED);
	/* one sector bitmap per chunk at creation (3 GiB at 4096: 1 chunk),
	 * none with lazy bitmaps */
	struct vxm_info in;
	assert_int_equal(vxm_image_info(c, &in, &err), 0);
	assert_int_equal(in.bat.sector_bitmaps_present, 1);
	assert_int_equal(vxm_image_info(s, &in, &err), 0);
	assert_int_equal(in.bat.sector_bitmaps_present, 0);
	printf("child: relative %s, absolute %s, %u metadata items\n", c->loc->relative_path,
	       c->loc->absolute_win32_path, c->mt->count);
	vxm_image_close(b);
	vxm_image_close(c);
	vxm_image_close(s);
	wt_check_clean(child);
	wt_check_clean(sib);
	char *chain[2] = { base, child };
	char sha[65], z[65];
	assert_int_equal(wt_chain_sha(chain, 2, sha), 0);
	/* a new child shows its (empty) parent: zeros */
	uint64_t vs = (3ull << 30) + 4096 * 3;
	struct vxm_sha256 h;
	uint8_t *zero = calloc(1, 1 << 20);
	assert_int_equal(vxm_sha256_init(&h), 0);
	for (uint64_t o = 0; o < vs; o += 1 << 20)
		vxm_sha256_update(&h, zero, vs - o < (1 << 20) ? vs - o : (1 << 20));
	vxm_sha256_final(&h, z);
	free(zero);
	assert_string_equal(sha, z);
}

/* I1 of engine/create.c: killed at any write or flush before the headers,
 * the file does not open (no valid header), for us or for qemu; killed
 * after the first header, everything else was already durable and the file
 * is complete. */
static void an_interrupted_create_leaves_no_file_a_reader_accepts(void **state)
{
	char path[512];
	(void)state;

	snprintf(path, sizeof(path), "%s/cut.vhdx", tmp);
	unsigned points = 0, invalid = 0;
	for (unsigned n = 1;; n++) {
		unlink(path);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			char spec[32];
			snprintf(spec, sizeof(spec), "*:%u", n);
			vxm_killpoint_arm(spec);
			struct vxm_err err = { 0 };
			int ret = vxm_image_create(path, &(struct vxm_create_params){
							  .virtual_size = 50 << 20, .fixed = true },
						  &err);
			_exit(ret ? 1 : 0);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st) == 0)
			break; /* ran to the end: every point was cut once */
		assert_int_equal(WEXITSTATUS(st), 137);
		points++;
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		int ret = vxm_image_open(&img, NULL, path, 0, &err);
		if (ret) {
			invalid++;
			if (tl_have("qemu-img"))
				assert_int_not_equal(tl_sh("qemu-img info -f vhdx '%s' >/dev/null 2>&1", path), 0);
		} else {
			/* only once a header is durable, and then it is whole */
			assert_true(img->hp.status[0] == 0 || img->hp.status[1] == 0);
			vxm_image_close(img);
			wt_check_clean(path);
		}
	}
	printf("create cut at %u points: %u left an invalid file, %u a complete one\n", points,
	       invalid, points - invalid);
	assert_true(invalid >= 6);
	assert_true(points > invalid);
}

/* The CLI: create refuses to overwrite, reports JSON, and a size that is not
 * a multiple of the sector is a usage error. */
static void the_create_command_refuses_to_overwrite_and_reports_what_it_made(void **state)
{
	char path[512];
	int st;
	(void)state;

	snprintf(path, sizeof(path), "%s/cli.vhdx", tmp);
	char *out = tl_sh_out(&st, "'%s' create '%s' --size 1G --block-size 1M --json", tl_bin(), path);
	assert_int_equal(st, 0);
	char v[64];
	assert_true(tl_json_get(out, NULL, "type", v, sizeof(v)));
	assert_string_equal(v, "dynamic");
	assert_true(tl_json_get(out, NULL, "block_size", v, sizeof(v)));
	assert_string_equal(v, "1048576");
	free(out);
	char before[65], after[65];
	assert_int_equal(tl_sha256_file(path, before), 0);
	out = tl_sh_out(&st, "'%s' create '%s' --size 2G 2>&1", tl_bin(), path);
	assert_int_not_equal(st, 0);
	assert_non_null(strstr(out, "refusing to overwrite"));
	free(out);
	assert_int_equal(tl_sha256_file(path, after), 0);
	assert_string_equal(before, after);
	out = tl_sh_out(&st, "'%s' create '%s.2' --size 1000 2>&1", tl_bin(), path);
	assert_int_equal(st, VXM_EXIT_USAGE);
	free(out);
	out = tl_sh_out(&st, "'%s' create '%s.3' --size 1G --block-size 3M 2>&1", tl_bin(), path);
	assert_int_equal(st, VXM_EXIT_USAGE);
	assert_non_null(strstr(out, "power of two"));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(new_files_have_the_layout_hyper_v_gives_them),
		cmocka_unit_test(a_child_links_to_its_parent_and_copies_its_virtual_disk_items),
		cmocka_unit_test(an_interrupted_create_leaves_no_file_a_reader_accepts),
		cmocka_unit_test(the_create_command_refuses_to_overwrite_and_reports_what_it_made),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
