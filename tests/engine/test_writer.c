/* tests/engine/test_writer.c: write sessions (engine/writer.c) against
 * independent oracles: qemu-img check/compare against a raw mirror of the
 * same writes, qemu-img check -r all replaying our dirty logs, and our own
 * reader.  Invariants cited are engine/writer.c I1..I7. */
#include "wtest.h"

#include <sys/wait.h>

#include "fxsynth.h"

static char *tmp;

static int setup(void **state)
{
	(void)state;
	tmp = tl_mkdtemp("writer");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", tmp);
	free(tmp);
	return 0;
}

static bool have_qemu(void)
{
	return tl_have("qemu-img");
}

/* ---- a reproducible workload ------------------------------------------------ */

enum { W_WRITE, W_ZERO_STATE, W_ZERO_DATA, W_FLUSH };

/* One op of the base workload; w NULL computes the mirror only. */
static void do_op(struct vxm_writer *w, struct wt_mirror *m, int kind, uint64_t off, uint64_t len,
		  uint8_t *buf, uint64_t seed, uint64_t tag)
{
	static uint8_t chunk[1 << 20];
	struct vxm_err err = { 0 };
	char msg[1400];
	int ret = 0;

	(void)buf;
	switch (kind) {
	case W_WRITE:
		/* 1 MiB pieces of content derived from (seed, tag, piece) */
		for (uint64_t d = 0; d < len && !ret; d += sizeof(chunk)) {
			uint64_t n = len - d < sizeof(chunk) ? len - d : sizeof(chunk);
			wt_fill(chunk, n, seed, tag * 1000003 + d / sizeof(chunk));
			if (w)
				ret = vxm_writer_write(w, off + d, chunk, n, &err);
			if (m)
				wt_mirror_write(m, off + d, chunk, n);
		}
		break;
	case W_ZERO_STATE:
	case W_ZERO_DATA:
		if (w)
			ret = vxm_writer_zero(w, off, len,
					      kind == W_ZERO_STATE ? VXM_ZERO_STATE : VXM_ZERO_DATA, &err);
		if (m)
			wt_mirror_write(m, off, NULL, len);
		break;
	case W_FLUSH:
		if (w)
			ret = vxm_writer_flush(w, &err);
		break;
	}
	if (ret)
		fprintf(stderr, "op %d [%llu,+%llu): %s\n", kind, (unsigned long long)off,
			(unsigned long long)len, vxm_err_format(&err, msg, sizeof(msg)));
	assert_int_equal(ret, 0);
}

/* ~40 random writes and zeroes (odd lengths, block-crossing, whole blocks,
 * the trailing partial block), with flushes in between. */
static void base_workload(struct vxm_writer *w, struct wt_mirror *m, uint64_t vsize, uint32_t bs,
			  uint32_t lss, uint64_t seed)
{
	const uint64_t maxlen = 4u << 20;
	uint8_t *buf = malloc(maxlen);
	uint64_t r = seed, total = vsize / lss, nblocks = (vsize + bs - 1) / bs;

	assert_non_null(buf);
	for (unsigned i = 0; i < 40; i++) {
		unsigned kind = (unsigned)(tl_rnd(&r) % 10);
		uint64_t s = tl_rnd(&r) % total;
		uint64_t n = tl_rnd(&r) % 3 ? 1 + tl_rnd(&r) % 63 : 1 + tl_rnd(&r) % (maxlen / lss);
		if (n > total - s)
			n = total - s;
		if (kind < 6) {
			do_op(w, m, W_WRITE, s * lss, n * lss, buf, seed, i);
		} else if (kind == 6) {
			uint64_t b = tl_rnd(&r) % nblocks, off = b * (uint64_t)bs;
			uint64_t len = vsize - off < (uint64_t)bs ? vsize - off : bs;
			/* a whole block, sometimes with a ragged sector on each side */
			if (tl_rnd(&r) % 2 && off >= lss && off + len + lss <= vsize) {
				off -= lss;
				len += 2 * lss;
			}
			do_op(w, m, W_ZERO_STATE, off, len, buf, seed, i);
		} else if (kind == 7) {
			do_op(w, m, W_ZERO_DATA, s * lss, n * lss, buf, seed, i);
		} else if (kind == 8) {
			do_op(w, m, W_FLUSH, 0, 0, buf, seed, i);
		} else {
			uint64_t k = 1 + tl_rnd(&r) % 77;
			do_op(w, m, W_WRITE, vsize - k * lss, k * lss, buf, seed, i);
		}
	}
	/* the last sector of the disk, always */
	do_op(w, m, W_WRITE, vsize - lss, lss, buf, seed, 1000);
	free(buf);
}

static void qemu_ok(const char *img, const char *raw)
{
	int st;
	char *out = tl_sh_out(&st, "qemu-img check -f vhdx '%s' 2>&1", img);
	if (st != 0 || !strstr(out, "No errors were found"))
		fprintf(stderr, "qemu-img check %s (exit %d):\n%s", img, st, out);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "No errors were found"));
	free(out);
	out = tl_sh_out(&st, "qemu-img compare -f vhdx -F raw '%s' '%s' 2>&1", img, raw);
	if (st != 0)
		fprintf(stderr, "qemu-img compare %s %s (exit %d):\n%s", img, raw, st, out);
	assert_int_equal(st, 0);
	assert_non_null(strstr(out, "Images are identical"));
	free(out);
}

static void log_guid_zero(const char *path)
{
	int st;
	char v[128];
	char *out = tl_sh_out(&st, "'%s' info --json '%s'", tl_bin(), path);
	assert_int_equal(st, 0);
	assert_true(tl_json_get(out, "log", "log_guid", v, sizeof(v)));
	assert_string_equal(v, "00000000-0000-0000-0000-000000000000");
	assert_true(tl_json_get(out, "log", "dirty", v, sizeof(v)));
	assert_string_equal(v, "false");
	free(out);
}

/* Acceptance (1) and (3, clean half): every base image we write, fixed and
 * dynamic with 1, 2, 32 and 256 MiB blocks and a size that is not a multiple
 * of the block size, passes qemu-img check and equals a raw mirror of the
 * same writes (qemu-img compare and our reader); closed, its LogGuid is 0. */
static void base_images_pass_qemu_check_and_equal_a_raw_mirror(void **state)
{
	static const uint32_t mib[] = { 1, 2, 32, 256 };
	(void)state;
	if (!have_qemu())
		skip();
	for (int fixed = 0; fixed < 2; fixed++) {
		for (unsigned k = 0; k < 4; k++) {
			uint32_t bs = mib[k] << 20;
			uint64_t vsize = 2ull * bs + bs / 2 + 7 * 512;
			char path[512], raw[600], a[65], b[65];
			struct vxm_create_params p = { .virtual_size = vsize, .block_size = bs,
						       .fixed = fixed };
			struct wt_mirror m;
			struct vxm_image *img;
			struct vxm_writer *w;
			struct vxm_writer_stats st;

			snprintf(path, sizeof(path), "%s/%s-%uM.vhdx", tmp, fixed ? "fixed" : "dyn",
				 mib[k]);
			snprintf(raw, sizeof(raw), "%s.raw", path);
			wt_create(path, &p);
			wt_mirror_open(&m, raw, vsize);
			wt_begin(path, &img, &w);
			base_workload(w, &m, vsize, bs, 512, 0x1234 + k * 7 + (uint64_t)fixed);
			vxm_writer_get_stats(w, &st);
			wt_end(img, w);
			wt_mirror_close(&m);

			qemu_ok(path, raw);
			if (fixed) {
				/* I6: a fixed file's blocks never leave FULLY_PRESENT */
				struct vxm_info in;
				struct vxm_err err = { 0 };
				assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
				assert_int_equal(vxm_image_info(img, &in, &err), 0);
				assert_int_equal(in.bat.fully_present, img->g.payload_blocks);
				assert_int_equal(in.bat.zero + in.bat.not_present, 0);
				vxm_image_close(img);
			}
			assert_int_equal(wt_image_sha(path, a), 0);
			assert_int_equal(tl_sha256_file(raw, b), 0);
			assert_string_equal(a, b);
			wt_check_clean(path);
			log_guid_zero(path);
			printf("%-8s %3u MiB blocks, %llu bytes: qemu check+compare ok, sha %.16s, %llu blocks allocated, %llu entries\n",
			       fixed ? "fixed" : "dynamic", mib[k], (unsigned long long)vsize, a,
			       (unsigned long long)st.blocks_allocated,
			       (unsigned long long)st.entries);
			unlink(path);
			unlink(raw);
		}
	}
}

/* ---- cuts with the kill point ------------------------------------------------ */

/* Two batches, each followed by a flush (one commit each). */
static void two_batches(struct vxm_writer *w, struct wt_mirror *m, uint64_t vsize)
{
	uint8_t *buf = malloc(1 << 20);
	assert_non_null(buf);
	/* batch 1: new blocks 0..2 and a zero block */
	do_op(w, m, W_WRITE, 0, 3 << 20, buf, 1, 1);
	do_op(w, m, W_ZERO_STATE, 5 << 20, 1 << 20, buf, 1, 2);
	do_op(w, m, W_FLUSH, 0, 0, buf, 1, 3);
	/* batch 2: new blocks (odd runs), an overwrite, the trailing sectors */
	do_op(w, m, W_WRITE, (10ull << 20) + 512 * 3, 512 * 37, buf, 1, 4);
	do_op(w, m, W_WRITE, (20ull << 20) - 512, 512 * 5, buf, 1, 5);
	do_op(w, m, W_WRITE, 512 * 100, 512 * 9, buf, 1, 6);
	do_op(w, m, W_WRITE, vsize - 512 * 11, 512 * 11, buf, 1, 7);
	do_op(w, m, W_FLUSH, 0, 0, buf, 1, 8);
	free(buf);
}

/* Runs two_batches in a child armed with spec; returns its exit status. */
static int run_killed(const char *path, uint64_t vsize, const char *spec)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vxm_image *img;
		struct vxm_writer *w;
		vxm_killpoint_arm(spec);
		wt_begin(path, &img, &w);
		two_batches(w, NULL, vsize);
		wt_end(img, w);
		_exit(0);
	}
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Acceptance (3): a writer cut after an entry's log-commit and before its
 * apply leaves a dirty log (info --json says so, LogGuid set); our reader
 * replays it in memory without writing, qemu-img check -r all replays it on
 * a copy, and both show the mirror of every committed write. */
static void a_cut_between_log_commit_and_apply_is_replayed_alike_by_us_and_qemu(void **state)
{
	(void)state;
	for (int n = 1; n <= 2; n++) {
		uint64_t vsize = (40ull << 20) + 1536;
		char path[512], raw[600], cp[600], cp2[600], spec[64];
		char a[65], b[65], f1[65], f2[65], v[128];
		struct vxm_create_params p = { .virtual_size = vsize, .block_size = 1 << 20 };
		struct wt_mirror m;
		int st;

		snprintf(path, sizeof(path), "%s/cut%d.vhdx", tmp, n);
		snprintf(raw, sizeof(raw), "%s.raw", path);
		snprintf(cp, sizeof(cp), "%s.qemu.vhdx", path);
		snprintf(cp2, sizeof(cp2), "%s.ours.vhdx", path);
		snprintf(spec, sizeof(spec), "log-commit:%d", n);
		wt_create(path, &p);
		assert_int_equal(run_killed(path, vsize, spec), 137);

		/* the mirror of everything up to the cut commit */
		wt_mirror_open(&m, raw, vsize);
		if (n == 1) {
			uint8_t *buf = malloc(1 << 20);
			do_op(NULL, &m, W_WRITE, 0, 3 << 20, buf, 1, 1);
			do_op(NULL, &m, W_ZERO_STATE, 5 << 20, 1 << 20, buf, 1, 2);
			free(buf);
		} else {
			two_batches(NULL, &m, vsize);
		}
		wt_mirror_close(&m);
		assert_int_equal(tl_sha256_file(raw, b), 0);

		char *out = tl_sh_out(&st, "'%s' info --json '%s'", tl_bin(), path);
		assert_int_equal(st, 0);
		assert_true(tl_json_get(out, "log", "dirty", v, sizeof(v)));
		assert_string_equal(v, "true");
		assert_true(tl_json_get(out, "log", "log_guid", v, sizeof(v)));
		assert_string_not_equal(v, "00000000-0000-0000-0000-000000000000");
		free(out);

		/* a reader that refuses replay sees the file dirty */
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		assert_int_equal(vxm_image_open(&img, NULL, path, VXM_IMAGE_NO_REPLAY, &err),
				 -VXM_EDIRTY);

		/* ours: in memory, the file untouched */
		assert_int_equal(tl_sha256_file(path, f1), 0);
		assert_int_equal(wt_image_sha(path, a), 0);
		assert_int_equal(tl_sha256_file(path, f2), 0);
		assert_string_equal(f1, f2);
		assert_string_equal(a, b);

		/* ours in place: check --repair */
		assert_int_equal(tl_copy_file(path, cp2), 0);
		assert_int_equal(tl_sh("'%s' check --repair '%s' >/dev/null", tl_bin(), cp2), 0);
		log_guid_zero(cp2);
		assert_int_equal(wt_image_sha(cp2, a), 0);
		assert_string_equal(a, b);

		/* qemu: check -r all on a copy, then compare with the mirror */
		if (have_qemu()) {
			assert_int_equal(tl_copy_file(path, cp), 0);
			out = tl_sh_out(&st, "qemu-img check -r all -f vhdx '%s' 2>&1", cp);
			if (st != 0)
				fprintf(stderr, "qemu-img check -r all (exit %d):\n%s", st, out);
			assert_int_equal(st, 0);
			free(out);
			qemu_ok(cp, raw);
			assert_int_equal(wt_image_sha(cp, a), 0);
			assert_string_equal(a, b);
		}
		printf("cut at %s: dirty log replayed by us (in memory and in place)%s: sha %.16s\n",
		       spec, have_qemu() ? " and by qemu-img check -r all" : "", b);
	}
}

/* ---- bad requests --------------------------------------------------------------- */

/* Acceptance (5): a write past the end, an unaligned offset or length, a
 * child on a parent with another sector size or size, metadata from an image
 * with another sector size: each fails with a clear error and the files stay
 * byte-identical (I1). */
static void bad_requests_fail_clearly_and_leave_the_files_byte_identical(void **state)
{
	char base[512], child[512], other[512], bad[512];
	char s1[65], s2[65], c1[65], c2[65];
	struct vxm_create_params p = { .virtual_size = 64 << 20, .block_size = 2 << 20 };
	struct vxm_image *img, *o;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	uint8_t buf[8192] = { 1 };
	(void)state;

	snprintf(base, sizeof(base), "%s/bad-base.vhdx", tmp);
	snprintf(child, sizeof(child), "%s/bad-child.avhdx", tmp);
	snprintf(other, sizeof(other), "%s/bad-4k.vhdx", tmp);
	snprintf(bad, sizeof(bad), "%s/bad-never.avhdx", tmp);
	wt_create(base, &p);
	wt_begin(base, &img, &w);
	assert_int_equal(vxm_writer_write(w, 0, buf, sizeof(buf), &err), 0);
	wt_end(img, w);
	wt_create(child, &(struct vxm_create_params){ .parent = base });
	wt_create(other, &(struct vxm_create_params){ .virtual_size = 64 << 20,
						       .logical_sector_size = 4096 });
	assert_int_equal(tl_sha256_file(base, s1), 0);
	assert_int_equal(tl_sha256_file(child, c1), 0);

	struct {
		const char *what;
		uint64_t off, len;
		const char *needle;
	} cases[] = {
		{ "past the end", (64 << 20) - 512, 1024, "past the" },
		{ "starting at the end", 64 << 20, 512, "past the" },
		{ "unaligned offset", 100, 512, "not aligned" },
		{ "unaligned length", 512, 700, "not aligned" },
		{ "huge length wrapping", 512, UINT64_MAX - 511, "past the" },
	};
	const char *files[] = { base, child };
	for (int f = 0; f < 2; f++) {
		wt_begin(files[f], &img, &w);
		for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			for (int zero = 0; zero < 2; zero++) {
				vxm_err_clear(&err);
				int ret = zero ? vxm_writer_zero(w, cases[i].off, cases[i].len,
								 VXM_ZERO_STATE, &err)
					       : vxm_writer_write(w, cases[i].off, buf, cases[i].len,
								  &err);
				assert_int_equal(ret, -EINVAL);
				assert_non_null(strstr(err.msg, cases[i].needle));
				if (f == 0 && zero == 0)
					printf("%-20s -> %s\n", cases[i].what, err.msg);
			}
		}
		/* another sector size: the IsVirtualDisk items are refused */
		assert_int_equal(vxm_image_open(&o, NULL, other, 0, &err), 0);
		vxm_err_clear(&err);
		assert_int_equal(vxm_writer_set_vd_items(w, o, &err), -VXM_ECHAIN);
		assert_non_null(strstr(err.msg, "logical sectors"));
		printf("vd items, 4096 on 512 -> %s\n", err.msg);
		vxm_image_close(o);
		if (f == 0) {
			struct vxm_kv kv[] = { { "parent_linkage", "{00000000-0000-0000-0000-000000000001}" },
					       { "relative_path", ".\\x.vhdx" } };
			vxm_err_clear(&err);
			assert_int_equal(vxm_writer_set_locator(w, kv, 2, &err), -EINVAL);
			assert_non_null(strstr(err.msg, "not a differencing file"));
		} else {
			struct vxm_kv kv[] = { { "relative_path", ".\\x.vhdx" } };
			vxm_err_clear(&err);
			assert_int_equal(vxm_writer_set_locator(w, kv, 1, &err), -EINVAL);
			assert_non_null(strstr(err.msg, "parent_linkage"));
		}
		assert_int_equal(vxm_writer_state(w), VXM_WS_CLEAN);
		wt_end(img, w);
	}
	/* a session on a read-only image is refused */
	assert_int_equal(vxm_image_open(&img, NULL, base, 0, &err), 0);
	vxm_err_clear(&err);
	assert_int_equal(vxm_writer_begin(&w, img, &err), -EBADF);
	assert_non_null(strstr(err.msg, "read-only"));
	vxm_image_close(img);

	/* children that cannot be: another sector size, another size */
	vxm_err_clear(&err);
	assert_int_equal(vxm_image_create(bad, &(struct vxm_create_params){
				.parent = base, .logical_sector_size = 4096 }, &err),
			 -VXM_ECHAIN);
	assert_non_null(strstr(err.msg, "equal logical sector sizes"));
	printf("child 4096 on 512   -> %s\n", err.msg);
	assert_int_equal(access(bad, F_OK), -1);
	vxm_err_clear(&err);
	assert_int_equal(vxm_image_create(bad, &(struct vxm_create_params){
				.parent = base, .virtual_size = 32 << 20 }, &err),
			 -VXM_ECHAIN);
	assert_non_null(strstr(err.msg, "virtual size"));
	printf("child of other size -> %s\n", err.msg);
	assert_int_equal(access(bad, F_OK), -1);
	/* and the CLI says the same, exit 4 (chain) */
	int st;
	char *out = tl_sh_out(&st, "'%s' create '%s' --parent '%s' --logical-sector 4096 2>&1",
			      tl_bin(), bad, base);
	assert_int_equal(st, VXM_EXIT_CHAIN);
	assert_non_null(strstr(out, "equal logical sector sizes"));
	free(out);
	assert_int_equal(access(bad, F_OK), -1);

	assert_int_equal(tl_sha256_file(base, s2), 0);
	assert_int_equal(tl_sha256_file(child, c2), 0);
	assert_string_equal(s1, s2);
	assert_string_equal(c1, c2);
	printf("files byte-identical after every refused request: %.16s %.16s\n", s2, c2);
}

/* Zeroing what already reads zeros (NOT_PRESENT or ZERO blocks of a base,
 * ZERO blocks of a child) is no change at all: the file stays
 * byte-identical, so the DataWriteGuid children link to stays too. */
static void zeroing_what_reads_zeros_changes_nothing(void **state)
{
	char base[512], child[512], s1[65], s2[65], c1[65], c2[65];
	struct vxm_image *img;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	uint8_t buf[4096] = { 3 };
	(void)state;

	snprintf(base, sizeof(base), "%s/z-base.vhdx", tmp);
	snprintf(child, sizeof(child), "%s/z-child.avhdx", tmp);
	wt_create(base, &(struct vxm_create_params){ .virtual_size = 20 << 20, .block_size = 1 << 20 });
	wt_begin(base, &img, &w);
	assert_int_equal(vxm_writer_write(w, 3 << 20, buf, sizeof(buf), &err), 0);
	assert_int_equal(vxm_writer_zero(w, 5 << 20, 2 << 20, VXM_ZERO_STATE, &err), 0);
	wt_end(img, w);
	wt_create(child, &(struct vxm_create_params){ .parent = base, .block_size = 1 << 20 });
	wt_begin(child, &img, &w);
	assert_int_equal(vxm_writer_zero(w, 8 << 20, 1 << 20, VXM_ZERO_STATE, &err), 0);
	wt_end(img, w);
	assert_int_equal(tl_sha256_file(base, s1), 0);
	assert_int_equal(tl_sha256_file(child, c1), 0);

	wt_begin(base, &img, &w);
	assert_int_equal(vxm_writer_zero(w, 0, 3 << 20, VXM_ZERO_DATA, &err), 0);
	assert_int_equal(vxm_writer_zero(w, 5 << 20, 2 << 20, VXM_ZERO_DATA, &err), 0);
	assert_int_equal(vxm_writer_zero(w, 5 << 20, 2 << 20, VXM_ZERO_STATE, &err), 0);
	assert_int_equal(vxm_writer_zero(w, 10 << 20, 10 << 20, VXM_ZERO_DATA, &err), 0);
	assert_int_equal(vxm_writer_state(w), VXM_WS_CLEAN);
	wt_end(img, w);
	wt_begin(child, &img, &w);
	assert_int_equal(vxm_writer_zero(w, 8 << 20, 1 << 20, VXM_ZERO_STATE, &err), 0);
	assert_int_equal(vxm_writer_zero(w, (8 << 20) + 4096, 8192, VXM_ZERO_DATA, &err), 0);
	assert_int_equal(vxm_writer_state(w), VXM_WS_CLEAN);
	wt_end(img, w);
	assert_int_equal(tl_sha256_file(base, s2), 0);
	assert_int_equal(tl_sha256_file(child, c2), 0);
	assert_string_equal(s1, s2);
	assert_string_equal(c1, c2);
}

/* ---- differencing files --------------------------------------------------------- */

/* Writes into a child through every state transition, with a base of
 * another block size; the chain read by our reader equals the mirror
 * (base writes, then the child's on top). */
static void differencing_writes_read_back_through_the_chain_as_the_mirror(void **state)
{
	(void)state;
	for (int lss4k = 0; lss4k < 2; lss4k++) {
		uint32_t lss = lss4k ? 4096 : 512;
		uint64_t vsize = (100ull << 20) + 3 * lss;
		char base[512], child[512], raw[512], a[65], b[65];
		struct vxm_create_params p = { .virtual_size = vsize, .block_size = 32 << 20,
					       .logical_sector_size = lss };
		struct vxm_image *img;
		struct vxm_writer *w;
		struct wt_mirror m;
		struct vxm_info in;
		struct vxm_err err = { 0 };
		uint8_t *buf = malloc(4 << 20);

		snprintf(base, sizeof(base), "%s/d%u-base.vhdx", tmp, lss);
		snprintf(child, sizeof(child), "%s/d%u-child.avhdx", tmp, lss);
		snprintf(raw, sizeof(raw), "%s/d%u.raw", tmp, lss);
		wt_create(base, &p);
		wt_mirror_open(&m, raw, vsize);
		wt_begin(base, &img, &w);
		do_op(w, &m, W_WRITE, 0, 40 << 20, buf, 9, 1);     /* [0, 40M) */
		do_op(w, &m, W_WRITE, 64 << 20, vsize - (64 << 20), buf, 9, 2);
		wt_end(img, w);

		wt_create(child, &(struct vxm_create_params){ .parent = base, .block_size = 2 << 20 });
		wt_begin(child, &img, &w);
		/* NOT_PRESENT -> PARTIALLY_PRESENT: scattered odd runs */
		for (unsigned k = 0; k < 9; k++)
			do_op(w, &m, W_WRITE, (uint64_t)lss * (3 + 97 * k), (uint64_t)lss * (1 + 2 * k),
			      buf, 9, 10 + k);
		do_op(w, &m, W_FLUSH, 0, 0, buf, 9, 0);
		/* PARTIALLY_PRESENT filled up -> FULLY_PRESENT */
		do_op(w, &m, W_WRITE, 2 << 20, lss * 5, buf, 9, 30);
		do_op(w, &m, W_WRITE, (2 << 20) + lss * 5, (2 << 20) - lss * 5, buf, 9, 31);
		/* ZERO over parent data (whole blocks), and zero data at the edges */
		do_op(w, &m, W_ZERO_STATE, (6 << 20) - lss, (4 << 20) + 2 * lss, buf, 9, 32);
		/* zero data over a partial block and over NOT_PRESENT */
		do_op(w, &m, W_ZERO_DATA, lss * 50, lss * 13, buf, 9, 33);
		do_op(w, &m, W_ZERO_DATA, (20 << 20) + lss, lss * 3, buf, 9, 34);
		/* a ZERO block written again partially (-> FULLY_PRESENT, zeros) */
		do_op(w, &m, W_WRITE, (7 << 20) + lss * 7, lss * 3, buf, 9, 35);
		/* a PARTIALLY_PRESENT block zeroed whole: ZERO, bits cleared */
		do_op(w, &m, W_ZERO_STATE, 0, 2 << 20, buf, 9, 36);
		/* the trailing partial block, past the parent's data */
		do_op(w, &m, W_WRITE, vsize - lss * 2, lss * 2, buf, 9, 37);
		wt_end(img, w);
		wt_mirror_close(&m);

		char *chain[2] = { base, child };
		assert_int_equal(wt_chain_sha(chain, 2, a), 0);
		assert_int_equal(tl_sha256_file(raw, b), 0);
		assert_string_equal(a, b);
		wt_check_clean(child);
		log_guid_zero(child);

		assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
		assert_int_equal(vxm_image_info(img, &in, &err), 0);
		assert_true(in.bat.partially_present >= 1);
		assert_true(in.bat.fully_present >= 2);
		assert_true(in.bat.zero >= 2);
		/* the block zeroed whole keeps no bits (libvhdi reads them) */
		uint64_t sbe;
		assert_int_equal(vxm_image_bat_get(img, vxm_geom_sb_index(&img->g, 0), &sbe, &err), 0);
		uint8_t *slice = malloc(img->g.spb / 8);
		assert_int_equal(vxm_image_pread(img, slice, img->g.spb / 8,
						 vxm_sb_slice_off(&img->g, vxm_bat_offset(sbe), 0), &err),
				 0);
		assert_int_equal(vxm_bitmap_count(slice, 0, img->g.spb), 0);
		free(slice);
		printf("differencing, %u-byte sectors: chain == mirror (%.16s); %llu fully, %llu partially present, %llu zero\n",
		       lss, a, (unsigned long long)in.bat.fully_present,
		       (unsigned long long)in.bat.partially_present, (unsigned long long)in.bat.zero);
		vxm_image_close(img);
		free(buf);
	}
}

/* The locator is rewritten through the log into free metadata space, its
 * table entry in the same entry; the DataWriteGuid stays, the FileWriteGuid
 * changes, and the chain reads the same. */
static void set_locator_rewrites_the_item_through_the_log_and_keeps_the_data_guid(void **state)
{
	char base[512], child[512], sub[512], a[65], b[65];
	struct vxm_image *img;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	(void)state;

	snprintf(sub, sizeof(sub), "%s/sub", tmp);
	mkdir(sub, 0755);
	snprintf(base, sizeof(base), "%s/loc-base.vhdx", tmp);
	snprintf(child, sizeof(child), "%s/sub/loc-child.avhdx", tmp);
	wt_create(base, &(struct vxm_create_params){ .virtual_size = 16 << 20 });
	wt_create(child, &(struct vxm_create_params){ .parent = base });

	assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
	assert_string_equal(img->loc->relative_path, "..\\loc-base.vhdx");
	struct vxm_guid dwg = img->hdr.data_write, fwg = img->hdr.file_write;
	uint32_t old_off = img->mt->e[img->m.locator].off;
	char link[64], g[VXM_GUID_STRLEN + 1];
	snprintf(link, sizeof(link), "{%s}", vxm_guid_fmt(&img->loc->parent_linkage, g));
	vxm_image_close(img);
	char *chain[2] = { base, child };
	assert_int_equal(wt_chain_sha(chain, 2, a), 0);

	wt_begin(child, &img, &w);
	struct vxm_kv kv[] = {
		{ "parent_linkage", link },
		{ "parent_linkage2", "{00000000-0000-0000-0000-000000000000}" },
		{ "relative_path", "..\\a-much-longer-name-so-the-item-grows\\..\\loc-base.vhdx" },
		{ "absolute_win32_path", "C:\\VMs\\loc-base.vhdx" },
	};
	assert_int_equal(vxm_writer_set_locator(w, kv, 4, &err), 0);
	struct vxm_writer_stats st;
	vxm_writer_get_stats(w, &st);
	assert_int_equal(st.commits, 1);
	wt_end(img, w);

	assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
	assert_string_equal(img->loc->absolute_win32_path, "C:\\VMs\\loc-base.vhdx");
	assert_true(img->loc->linkage2_key);
	assert_true(vxm_guid_eq(&img->hdr.data_write, &dwg));
	assert_false(vxm_guid_eq(&img->hdr.file_write, &fwg));
	assert_int_not_equal(img->mt->e[img->m.locator].off, old_off);
	assert_true(vxm_guid_is_zero(&img->hdr.log_guid));
	printf("locator moved 0x%x -> 0x%x (%u bytes), DataWriteGuid kept\n", old_off,
	       img->mt->e[img->m.locator].off, img->mt->e[img->m.locator].len);
	vxm_image_close(img);
	wt_check_clean(child);
	assert_int_equal(wt_chain_sha(chain, 2, b), 0);
	assert_string_equal(a, b);
}

/* An open reads the metadata table and the items, not the whole (1 MiB)
 * region; an item placed at the region's end is still read, and a write
 * session, which works on the whole region, keeps bytes no item covers. */
static void metadata_items_anywhere_in_the_region_are_read_and_unused_bytes_survive(void **state)
{
	char base[512], child[512], a[65], b[65];
	struct vxm_image *img;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	uint8_t item[4096], junk[4096], back[4096], ent[4];
	(void)state;

	snprintf(base, sizeof(base), "%s/mr-base.vhdx", tmp);
	snprintf(child, sizeof(child), "%s/mr-child.avhdx", tmp);
	wt_create(base, &(struct vxm_create_params){ .virtual_size = 16 << 20 });
	wt_create(child, &(struct vxm_create_params){ .parent = base });
	char *chain[2] = { base, child };
	assert_int_equal(wt_chain_sha(chain, 2, a), 0);

	assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
	uint64_t roff = img->meta_region.off;
	uint32_t rlen = img->meta_region.len, loc = (uint32_t)img->m.locator;
	uint32_t ioff = img->mt->e[loc].off, ilen = img->mt->e[loc].len;
	assert_true(rlen >= 256 * 1024);
	assert_true(img->meta_read < rlen);
	assert_true(ilen <= sizeof(item));
	vxm_image_close(img);

	/* junk in the middle, where no item is: an open leaves it unread, a
	 * write session reads it */
	int fd = open(child, O_RDWR);
	assert_true(fd >= 0);
	wt_fill(junk, sizeof(junk), 7, 7);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)(roff + rlen / 2)), (ssize_t)sizeof(junk));
	assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
	assert_true(img->meta_read <= rlen / 2);
	vxm_image_close(img);
	wt_begin(child, &img, &w);
	assert_memory_equal(img->meta + rlen / 2, junk, sizeof(junk));
	wt_end(img, w);

	/* the locator moves to the last 4 KiB of the region */
	assert_int_equal(pread(fd, item, ilen, (off_t)(roff + ioff)), (ssize_t)ilen);
	uint32_t noff = rlen - 4096;
	assert_int_equal(pwrite(fd, item, ilen, (off_t)(roff + noff)), (ssize_t)ilen);
	memset(item, 0, ilen);
	assert_int_equal(pwrite(fd, item, ilen, (off_t)(roff + ioff)), (ssize_t)ilen);
	ent[0] = (uint8_t)noff, ent[1] = (uint8_t)(noff >> 8), ent[2] = (uint8_t)(noff >> 16),
	ent[3] = (uint8_t)(noff >> 24);
	assert_int_equal(pwrite(fd, ent, 4, (off_t)(roff + 32 + 32 * loc + 16)), 4);
	close(fd);

	assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
	assert_int_equal(img->mt->e[img->m.locator].off, noff);
	assert_string_equal(img->loc->relative_path, ".\\mr-base.vhdx");
	assert_int_equal(img->meta_read, rlen);
	char link[64], g[VXM_GUID_STRLEN + 1];
	snprintf(link, sizeof(link), "{%s}", vxm_guid_fmt(&img->loc->parent_linkage, g));
	vxm_image_close(img);
	assert_int_equal(wt_chain_sha(chain, 2, b), 0);
	assert_string_equal(a, b);

	wt_begin(child, &img, &w);
	struct vxm_kv kv[] = {
		{ "parent_linkage", link },
		{ "relative_path", "..\\elsewhere\\..\\mr-base.vhdx" },
	};
	assert_int_equal(vxm_writer_set_locator(w, kv, 2, &err), 0);
	wt_end(img, w);

	fd = open(child, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, back, sizeof(back), (off_t)(roff + rlen / 2)), (ssize_t)sizeof(back));
	close(fd);
	assert_memory_equal(back, junk, sizeof(junk));
	assert_int_equal(vxm_image_open(&img, NULL, child, 0, &err), 0);
	assert_string_equal(img->loc->relative_path, "..\\elsewhere\\..\\mr-base.vhdx");
	vxm_image_close(img);
	wt_check_clean(child);
}

/* IsVirtualDisk items come from another image (the merge's last step):
 * size, disk id, sector sizes; the BAT region already holds the larger disk
 * (1 MiB of entries), so the disk grows in place; qemu agrees. */
static void set_vd_items_copies_virtual_disk_items_and_grows_the_disk(void **state)
{
	char d[512], src[512], raw[512];
	struct vxm_image *img, *s;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	struct wt_mirror m;
	uint8_t *buf = malloc(1 << 20);
	(void)state;

	snprintf(d, sizeof(d), "%s/vd-d.vhdx", tmp);
	snprintf(src, sizeof(src), "%s/vd-src.vhdx", tmp);
	snprintf(raw, sizeof(raw), "%s/vd.raw", tmp);
	wt_create(d, &(struct vxm_create_params){ .virtual_size = 64 << 20, .block_size = 1 << 20 });
	wt_create(src, &(struct vxm_create_params){ .virtual_size = 96 << 20,
						    .physical_sector_size = 512 });
	wt_mirror_open(&m, raw, 96 << 20);
	wt_begin(d, &img, &w);
	struct vxm_guid dwg = img->hdr.data_write;
	assert_int_equal(vxm_image_open(&s, NULL, src, 0, &err), 0);
	/* the first change of the session: a new DataWriteGuid (fmt §1.3) */
	assert_int_equal(vxm_writer_set_vd_items(w, s, &err), 0);
	assert_false(vxm_guid_eq(&img->hdr.data_write, &dwg));
	do_op(w, &m, W_WRITE, 1 << 20, 3 << 20, buf, 5, 1);
	assert_int_equal(img->g.virtual_size, 96 << 20);
	do_op(w, &m, W_WRITE, (96 << 20) - (3 << 20) - 512, 3 << 20, buf, 5, 2);
	wt_end(img, w);
	wt_mirror_close(&m);

	assert_int_equal(vxm_image_open(&img, NULL, d, 0, &err), 0);
	assert_int_equal(img->m.virtual_size, 96 << 20);
	assert_int_equal(img->m.physical_sector_size, 512);
	assert_true(vxm_guid_eq(&img->m.disk_id, &s->m.disk_id));
	assert_false(vxm_guid_eq(&img->hdr.data_write, &dwg));
	vxm_image_close(img);
	vxm_image_close(s);
	wt_check_clean(d);
	if (have_qemu())
		qemu_ok(d, raw);
	free(buf);
}

/* vxm_writer_set_data_guid installs a chosen DataWriteGuid (a merge's G',
 * promised to a child in parent_linkage2, fmt §8.4) once per session, with
 * a new FileWriteGuid in the same header update; later writes keep it. */
static void set_data_guid_installs_the_promised_guid_once(void **state)
{
	char path[512];
	struct vxm_image *img;
	struct vxm_writer *w;
	struct vxm_err err = { 0 };
	struct vxm_guid g;
	uint8_t buf[4096] = { 7 };
	(void)state;

	snprintf(path, sizeof(path), "%s/dwg.vhdx", tmp);
	wt_create(path, &(struct vxm_create_params){ .virtual_size = 8 << 20 });
	vxm_guid_new(&g);
	wt_begin(path, &img, &w);
	struct vxm_guid fwg = img->hdr.file_write;
	uint64_t seq = img->hdr.seq;
	assert_int_equal(vxm_writer_set_data_guid(w, &g, &err), 0);
	assert_true(vxm_guid_eq(&img->hdr.data_write, &g));
	assert_false(vxm_guid_eq(&img->hdr.file_write, &fwg));
	assert_int_equal(img->hdr.seq, seq + 2); /* one update: both slots */
	assert_int_equal(vxm_writer_set_data_guid(w, NULL, &err), -EBUSY);
	assert_int_equal(vxm_writer_write(w, 0, buf, sizeof(buf), &err), 0);
	wt_end(img, w);
	assert_int_equal(vxm_image_open(&img, NULL, path, 0, &err), 0);
	assert_true(vxm_guid_eq(&img->hdr.data_write, &g));
	assert_true(vxm_guid_eq(&img->hp.h[0].data_write, &img->hp.h[1].data_write));
	vxm_image_close(img);
}

/* Files other writers made (Hyper-V, Disk2vhd, QEMU's dirty-log sample),
 * each as its synthesized stand-in (tests/lib/fxsynth.h: laid out like the
 * real file, always) and as the real file (when the fixtures are present),
 * in this order: */
static const enum fxs_kind others[] = { FXS_FIXED,	  FXS_DYNAMIC, FXS_ZEROBLOCKS,
					FXS_LOGREPLAY, FXS_TIED,    FXS_DIRTYLOG };

/* A writable open replays src's log (on a copy), a session writes and
 * zeroes at random (seed from i), and qemu-img check and compare against a
 * raw mirror agree. */
static void write_into_a_copy_of(const char *src, const char *name, unsigned i, uint8_t *buf,
				 uint64_t step)
{
	char path[600], raw[640];
	snprintf(path, sizeof(path), "%s/other-%s", tmp, name);
	snprintf(raw, sizeof(raw), "%s.raw", path);
	assert_int_equal(tl_copy_file(src, path), 0);
	struct vxm_image *img;
	struct vxm_writer *w;
	struct wt_mirror m;
	struct vxm_err err = { 0 };
	wt_begin(path, &img, &w); /* replays a dirty log in place */
	uint64_t vs = img->g.virtual_size;
	wt_mirror_open(&m, raw, vs);
	for (uint64_t o = 0; o < vs; o += step) {
		uint64_t n = vs - o < step ? vs - o : step;
		struct vxm_run r;
		/* copy only what is stored: the mirror is sparse */
		assert_int_equal(vxm_image_lookup(img, o / 512, n / 512, &r, &err), 0);
		if (r.kind == VXM_RUN_ZERO && r.nsec == n / 512)
			continue;
		assert_int_equal(vxm_image_read(img, buf, n, o, &err), 0);
		wt_mirror_write(&m, o, buf, n);
	}
	uint64_t r = 77 + i;
	for (unsigned k = 0; k < 40; k++) {
		uint64_t s = tl_rnd(&r) % (vs / 512), n = 1 + tl_rnd(&r) % 2047;
		if (n > vs / 512 - s)
			n = vs / 512 - s;
		do_op(w, &m, k % 6 == 5 ? W_ZERO_STATE : W_WRITE, s * 512, n * 512, buf, r, k);
	}
	do_op(w, &m, W_WRITE, vs - 512 * 9, 512 * 9, buf, r, 99);
	wt_end(img, w);
	wt_mirror_close(&m);
	qemu_ok(path, raw);
	wt_check_clean(path);
	log_guid_zero(path);
	printf("%-38s written: qemu check + compare ok\n", name);
	unlink(path);
	unlink(raw);
}

static void writes_into_stand_ins_of_files_others_made_pass_qemu_check_and_compare(void **state)
{
	const uint64_t step = 1 << 20;
	(void)state;

	if (!have_qemu())
		skip(); /* before the allocation: skip() does not return */
	uint8_t *buf = malloc(step);
	for (unsigned i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		char src[600], name[300];
		snprintf(src, sizeof(src), "%s/standin-%s", tmp, fxs_info(others[i])->file);
		snprintf(name, sizeof(name), "standin-%s", fxs_info(others[i])->file);
		assert_int_equal(fxs_build(others[i], src), 0);
		write_into_a_copy_of(src, name, i, buf, step);
		unlink(src);
	}
	free(buf);
}

static void writes_into_files_others_made_pass_qemu_check_and_compare(void **state)
{
	const uint64_t step = 1 << 20;
	unsigned done = 0;
	(void)state;

	if (!tl_fixtures_dir() || !have_qemu())
		skip(); /* before the allocation: skip() does not return */
	uint8_t *buf = malloc(step);
	for (unsigned i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		const struct fxs_info *fx = fxs_info(others[i]);
		char *src = tl_fixture(fx->folder, fx->file);
		if (!src)
			continue;
		write_into_a_copy_of(src, fx->file, i, buf, step);
		free(src);
		done++;
	}
	free(buf);
	if (!done)
		skip();
}

/* ---- the log itself ----------------------------------------------------------------- */

/* A transaction larger than one entry is split (each entry atomic); an
 * entry that does not fit before the end of the log starts over at offset
 * 0, and a cut right after that entry's commit is replayed: the blocks of
 * every committed entry read back, in order, the rest read the parent. */
static void entries_that_do_not_fit_start_over_at_log_offset_zero(void **state)
{
	/* 1 MiB blocks at 512 bytes: 16 blocks per bitmap sector, so one sector
	 * in each of 5000 blocks stages ~320 bitmap and BAT sectors: commit 1
	 * (10 blocks, flushed), commit 2 (~250 sectors, automatic, does not fit
	 * behind commit 1 and wraps to 0), commit 3 (the rest). */
	const uint64_t nblk = 5000, vsize = nblk << 20;
	char base[512], child[512];
	(void)state;

	snprintf(base, sizeof(base), "%s/wrap-base.vhdx", tmp);
	snprintf(child, sizeof(child), "%s/wrap-child.avhdx", tmp);
	wt_create(base, &(struct vxm_create_params){ .virtual_size = vsize, .block_size = 1 << 20 });
	wt_create(child, &(struct vxm_create_params){ .parent = base, .block_size = 1 << 20 });

	for (int killed = 0; killed < 2; killed++) {
		char work[512];
		snprintf(work, sizeof(work), "%s/wrap-%d.avhdx", tmp, killed);
		assert_int_equal(tl_copy_file(child, work), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct vxm_image *img;
			struct vxm_writer *w;
			struct vxm_err err = { 0 };
			uint8_t sec[512];
			if (killed)
				vxm_killpoint_arm("log-commit:2");
			wt_begin(work, &img, &w);
			for (uint64_t b = 0; b < nblk; b++) {
				wt_fill(sec, sizeof(sec), 77, b);
				if (vxm_writer_write(w, (b << 20) + 512 * (b % 7), sec, 512, &err))
					_exit(3);
				if (b == 9 && vxm_writer_flush(w, &err))
					_exit(3);
			}
			struct vxm_writer_stats st;
			if (vxm_writer_flush(w, &err))
				_exit(4);
			vxm_writer_get_stats(w, &st);
			printf("%llu blocks, %llu bitmaps: %llu commits, %llu entries, %llu sectors logged\n",
			       (unsigned long long)st.blocks_allocated,
			       (unsigned long long)st.bitmaps_allocated, (unsigned long long)st.commits,
			       (unsigned long long)st.entries, (unsigned long long)st.sectors_logged);
			fflush(stdout);
			if (st.commits < 3 || vxm_writer_end(w, &err))
				_exit(5);
			vxm_image_close(img);
			_exit(0);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), killed ? 137 : 0);

		/* Every block written before the cut entry reads back; ours replays. */
		struct vxm_image *imgs[2];
		struct vxm_err err = { 0 };
		assert_int_equal(vxm_image_open(&imgs[0], NULL, base, 0, &err), 0);
		assert_int_equal(vxm_image_open(&imgs[1], NULL, work, 0, &err), 0);
		assert_int_equal(imgs[1]->log_dirty, killed);
		uint64_t present = 0;
		for (uint64_t b = 0; b < nblk; b++) {
			uint8_t want[512], got[512];
			wt_fill(want, sizeof(want), 77, b);
			assert_int_equal(wt_chain_read(imgs, 1, (b << 11) + b % 7, 1, got), 0);
			if (!memcmp(want, got, 512)) {
				present++;
			} else {
				static const uint8_t z[512];
				assert_memory_equal(got, z, 512);
			}
		}
		/* the blocks of the cut transaction form a prefix */
		for (uint64_t b = 0; b < present; b++) {
			uint8_t want[512], got[512];
			wt_fill(want, sizeof(want), 77, b);
			assert_int_equal(wt_chain_read(imgs, 1, (b << 11) + b % 7, 1, got), 0);
			assert_memory_equal(want, got, 512);
		}
		printf("%s: %llu of %llu blocks visible\n", killed ? "cut after entry 2" : "complete",
		       (unsigned long long)present, (unsigned long long)nblk);
		if (!killed)
			assert_int_equal(present, nblk);
		else
			assert_true(present > 0 && present < nblk);
		vxm_image_close(imgs[0]);
		vxm_image_close(imgs[1]);
		if (!killed)
			wt_check_clean(work);
		assert_int_equal(tl_sh("'%s' check --repair '%s' >/dev/null", tl_bin(), work), 0);
		unlink(work);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bad_requests_fail_clearly_and_leave_the_files_byte_identical),
		cmocka_unit_test(zeroing_what_reads_zeros_changes_nothing),
		cmocka_unit_test(differencing_writes_read_back_through_the_chain_as_the_mirror),
		cmocka_unit_test(set_locator_rewrites_the_item_through_the_log_and_keeps_the_data_guid),
		cmocka_unit_test(metadata_items_anywhere_in_the_region_are_read_and_unused_bytes_survive),
		cmocka_unit_test(set_vd_items_copies_virtual_disk_items_and_grows_the_disk),
		cmocka_unit_test(set_data_guid_installs_the_promised_guid_once),
		cmocka_unit_test(writes_into_stand_ins_of_files_others_made_pass_qemu_check_and_compare),
		cmocka_unit_test(writes_into_files_others_made_pass_qemu_check_and_compare),
		cmocka_unit_test(a_cut_between_log_commit_and_apply_is_replayed_alike_by_us_and_qemu),
		cmocka_unit_test(entries_that_do_not_fit_start_over_at_log_offset_zero),
		cmocka_unit_test(base_images_pass_qemu_check_and_equal_a_raw_mirror),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
