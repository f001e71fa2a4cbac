/* tests/engine/test_compare.c: vxm_compare on chains written to disk by the
 * test builder (tests/lib/memvhdx, distinct payload), against raw images
 * computed straight from the builder's spec, never read back through the
 * engine: a chain top equals its raw image, a flipped byte (in a raw copy or
 * in a layer's payload) is found at its exact offset at chunk edges and
 * inside, sizes that differ are a difference, a differencing top differs
 * from its base where the child first writes other bytes, and errors name
 * the file.  The binary's side is tests/cli/compare.sh. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "memvhdx.h"

#define MiB (1024ull * 1024)
#define VSIZE (16 * MiB)
#define BS (2 * MiB)
#define NB (VSIZE / BS)
#define LSS 512u

static char *dir;

/*   block     0 1 2 3 4 5 6 7
 *   base      F F F F N N N F
 *   c1        N F N N F N P N     (block 6: sectors 7..1000 of it)
 *   c2        N N F Z N P N N     (block 5: sectors 100..149 and 4000..4095)
 * Fill bytes 1, 2, 3 make each layer's payload distinct. */
static const char *const layout[3] = { "FFFFNNNF", "NFNNFNPN", "NNFZNPNN" };
static const char *const names[3] = { "base.vhdx", "c1.avhdx", "c2.avhdx" };
static struct mv_spec spec[3];
static uint8_t st[3][NB];
static uint8_t *bits[3];

static char *P(const char *name)
{
	static char buf[4][1200];
	static int k;
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static struct vxm_guid G(uint8_t v)
{
	struct vxm_guid g = { { 0 } };
	memset(g.b, v, 16);
	return g;
}

static void build_layer(unsigned i, const char *name, uint64_t vsize)
{
	for (unsigned b = 0; b < NB; b++) {
		char c = layout[i][b];
		st[i][b] = (uint8_t)(c == 'F' ? VXM_PB_FULLY_PRESENT
				     : c == 'P' ? VXM_PB_PARTIALLY_PRESENT
				     : c == 'Z' ? VXM_PB_ZERO
						: VXM_PB_NOT_PRESENT);
	}
	spec[i] = (struct mv_spec){ .vsize = vsize, .block_size = BS, .lss = LSS,
				    .has_parent = i > 0, .states = st[i], .bits = bits[i],
				    .fill = (uint8_t)(i + 1), .data_write = G((uint8_t)(i + 1)),
				    .parent_linkage = G((uint8_t)i),
				    .relative_path = i ? names[i - 1] : NULL };
	size_t len;
	uint8_t *f = mv_build(&spec[i], &len);
	assert_non_null(f);
	assert_int_equal(tl_write_file(P(name), f, len), 0);
	free(f);
}

/* The disk layer `top` shows, sector by sector from the spec (fmt §8.1). */
static uint8_t *model_raw(int top)
{
	uint8_t *raw = calloc(1, VSIZE);
	assert_non_null(raw);
	uint64_t spb = BS / LSS;
	for (uint64_t s = 0; s < VSIZE / LSS; s++) {
		for (int i = top; i >= 0; i--) {
			unsigned state = st[i][s / spb];
			bool data = state == VXM_PB_FULLY_PRESENT ||
				    (state == VXM_PB_PARTIALLY_PRESENT && vxm_bit_get(bits[i], s));
			if (data) {
				for (unsigned k = 0; k < LSS; k++)
					raw[s * LSS + k] = mv_byte(&spec[i], s, k);
				break;
			}
			if (state == VXM_PB_ZERO)
				break; /* zeros shadow the parents */
		}
	}
	return raw;
}

static int setup(void **state)
{
	(void)state;
	dir = tl_mkdtemp("compare");
	for (unsigned i = 0; i < 3; i++)
		bits[i] = calloc(1, VSIZE / LSS / 8);
	vxm_bitmap_fill(bits[1], 6 * 4096 + 7, 994, true);
	vxm_bitmap_fill(bits[2], 5 * 4096 + 100, 50, true);
	vxm_bitmap_fill(bits[2], 5 * 4096 + 4000, 96, true);
	for (unsigned i = 0; i < 3; i++)
		build_layer(i, names[i], VSIZE);
	uint8_t *raw = model_raw(2);
	assert_int_equal(tl_write_file(P("top.raw"), raw, VSIZE), 0);
	free(raw);
	raw = model_raw(0);
	assert_int_equal(tl_write_file(P("base.raw"), raw, VSIZE), 0);
	free(raw);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", dir);
	free(dir);
	for (unsigned i = 0; i < 3; i++)
		free(bits[i]);
	return 0;
}

static void cmp_ok(const char *a, const char *b, uint32_t chunk, struct vxm_compare_result *r)
{
	struct vxm_compare_opts o = { .chunk = chunk };
	struct vxm_err err = { 0 };
	int ret = vxm_compare_with(a, b, &o, r, &err);
	if (ret)
		fail_msg("compare %s %s: %s (%d)", a, b, err.msg, ret);
}

/* Writes a copy of from with byte off xor'ed. */
static void flipped_copy(const char *from, const char *to, uint64_t off)
{
	size_t len;
	uint8_t *f = tl_read_file(from, &len);
	assert_non_null(f);
	assert_true(off < len);
	f[off] ^= 0xa5;
	assert_int_equal(tl_write_file(to, f, len), 0);
	free(f);
}

static void chain_top_reads_the_same_as_the_raw_image_of_its_spec(void **state)
{
	(void)state;
	static const uint32_t chunks[] = { 0, 4096, 64 * 1024, 3 * MiB, 64 * MiB };
	for (unsigned k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		struct vxm_compare_result r;
		cmp_ok(P("c2.avhdx"), P("top.raw"), chunks[k], &r);
		assert_true(r.same);
		assert_false(r.size_differs);
		assert_false(r.differ_in_common);
		assert_true(r.first_difference == VXM_OFF_NONE);
		assert_int_equal(r.bytes_compared, VSIZE);
		assert_int_equal(r.size_a, VSIZE);
		assert_int_equal(r.size_b, VSIZE);
		assert_false(r.a.raw);
		assert_int_equal(r.a.depth, 3);
		assert_int_equal(r.a.sector_size, LSS);
		assert_true(r.b.raw);
		assert_int_equal(r.b.depth, 0);
		assert_int_equal(r.sector_size, LSS);
	}
	/* either order, and the base against its own raw image */
	struct vxm_compare_result r;
	assert_int_equal(vxm_compare(P("top.raw"), P("c2.avhdx"), NULL, &r, NULL), 0);
	assert_true(r.same);
	assert_int_equal(r.sector_size, LSS); /* B's, A being raw */
	assert_int_equal(vxm_compare(P("base.vhdx"), P("base.raw"), NULL, &r, NULL), 0);
	assert_true(r.same);
	assert_int_equal(r.a.depth, 1);
}

static void base_equals_qemu_img_raw_conversion(void **state)
{
	(void)state;
	if (!tl_have("qemu-img"))
		skip();
	assert_int_equal(tl_sh("qemu-img convert -f vhdx -O raw '%s' '%s'", P("base.vhdx"),
			       P("base-qemu.raw")), 0);
	struct vxm_compare_result r;
	assert_int_equal(vxm_compare(P("base.vhdx"), P("base-qemu.raw"), NULL, &r, NULL), 0);
	assert_true(r.same);
	/* and qemu's raw equals the spec's: the test's model is right too */
	assert_int_equal(vxm_compare(P("base.raw"), P("base-qemu.raw"), NULL, &r, NULL), 0);
	assert_true(r.same);
	assert_true(r.a.raw && r.b.raw);
}

static void a_flipped_byte_is_found_at_its_exact_offset(void **state)
{
	(void)state;
	static const uint64_t offs[] = { 0, 1, 511, 512, 4095, 4096, 4 * MiB - 1, 4 * MiB,
					 5 * MiB + 100 * 512 + 3, 9 * MiB + 12345, VSIZE - 1 };
	for (unsigned k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
		flipped_copy(P("top.raw"), P("flip.raw"), offs[k]);
		for (uint32_t chunk = 0; chunk <= 64 * 1024; chunk += 64 * 1024) {
			struct vxm_compare_result r;
			cmp_ok(P("c2.avhdx"), P("flip.raw"), chunk, &r);
			assert_false(r.same);
			assert_false(r.size_differs);
			assert_true(r.differ_in_common);
			assert_int_equal(r.first_difference, offs[k]);
			assert_int_equal(r.first_difference / r.sector_size, offs[k] / LSS);
			assert_int_equal(r.bytes_compared, offs[k] + 1);
		}
	}
}

static void a_flipped_byte_in_a_layer_payload_shows_at_its_virtual_offset(void **state)
{
	(void)state;
	/* c1's block 4 is FULLY_PRESENT and nothing above covers it: byte k of
	 * its payload is virtual byte 4 * BS + k of the top.  The chain is
	 * copied so that c2 links to the damaged c1. */
	assert_int_equal(tl_sh("mkdir -p '%s/dmg' && cp '%s' '%s' '%s' '%s/dmg/'", dir,
			       P("base.vhdx"), P("c1.avhdx"), P("c2.avhdx"), dir), 0);
	uint64_t k = 777777;
	char c1[1300], c2[1300];
	snprintf(c1, sizeof(c1), "%s/dmg/c1.avhdx", dir);
	snprintf(c2, sizeof(c2), "%s/dmg/c2.avhdx", dir);
	flipped_copy(c1, c1, mv_payload_off(&spec[1], 4) + k);
	struct vxm_compare_result r;
	cmp_ok(c2, P("top.raw"), 0, &r);
	assert_false(r.same);
	assert_int_equal(r.first_difference, 4 * BS + k);
	/* the undamaged chain and the damaged one, VHDX against VHDX */
	cmp_ok(P("c2.avhdx"), c2, 0, &r);
	assert_int_equal(r.first_difference, 4 * BS + k);
	assert_int_equal(r.a.depth, 3);
	assert_int_equal(r.b.depth, 3);
}

static void different_sizes_are_a_difference_and_the_common_part_is_still_compared(void **state)
{
	(void)state;
	size_t len;
	uint8_t *raw = tl_read_file(P("top.raw"), &len);
	assert_non_null(raw);
	assert_int_equal(tl_write_file(P("short.raw"), raw, VSIZE - 512), 0);
	struct vxm_compare_result r;
	cmp_ok(P("c2.avhdx"), P("short.raw"), 0, &r);
	assert_false(r.same);
	assert_true(r.size_differs);
	assert_false(r.differ_in_common);
	assert_int_equal(r.first_difference, VSIZE - 512); /* where B ends */
	assert_int_equal(r.bytes_compared, VSIZE - 512);
	assert_int_equal(r.size_b, VSIZE - 512);

	/* one byte longer (an odd size), the extra byte a zero */
	uint8_t *longer = calloc(1, VSIZE + 1);
	memcpy(longer, raw, VSIZE);
	assert_int_equal(tl_write_file(P("long.raw"), longer, VSIZE + 1), 0);
	cmp_ok(P("long.raw"), P("c2.avhdx"), 0, &r);
	assert_true(r.size_differs);
	assert_false(r.same);
	assert_int_equal(r.first_difference, VSIZE);

	/* shorter and different inside: the differing byte is reported */
	raw[3 * MiB + 5] ^= 1;
	assert_int_equal(tl_write_file(P("short.raw"), raw, 10 * MiB + 3), 0);
	cmp_ok(P("short.raw"), P("c2.avhdx"), 0, &r);
	assert_true(r.size_differs);
	assert_true(r.differ_in_common);
	assert_int_equal(r.first_difference, 3 * MiB + 5);

	/* two VHDX disks of different virtual sizes with the same first 8 MiB */
	build_layer(0, "base8.vhdx", 8 * MiB);
	cmp_ok(P("base.vhdx"), P("base8.vhdx"), 0, &r);
	assert_true(r.size_differs);
	assert_false(r.differ_in_common);
	assert_int_equal(r.first_difference, 8 * MiB);
	build_layer(0, "base-again.vhdx", VSIZE); /* restores spec[0] */
	free(raw);
	free(longer);
}

static void differencing_top_differs_from_its_base_where_the_child_first_writes(void **state)
{
	(void)state;
	uint8_t *top1 = model_raw(1), *base = model_raw(0);
	uint64_t want = 0;
	while (want < VSIZE && top1[want] == base[want])
		want++;
	assert_true(want < VSIZE);
	/* c1 rewrites block 1 with its own bytes: byte 0 of block 1 already differs */
	assert_int_equal(want, BS);
	struct vxm_compare_result r;
	cmp_ok(P("c1.avhdx"), P("base.vhdx"), 0, &r);
	assert_false(r.same);
	assert_int_equal(r.first_difference, want);
	assert_int_equal(r.a.depth, 2);
	assert_int_equal(r.b.depth, 1);
	/* c2 against c1: block 2 (c2's data over base data) comes first */
	uint8_t *top2 = model_raw(2);
	want = 0;
	while (want < VSIZE && top2[want] == top1[want])
		want++;
	assert_int_equal(want, 2 * BS);
	cmp_ok(P("c2.avhdx"), P("c1.avhdx"), 0, &r);
	assert_int_equal(r.first_difference, want);
	free(top1);
	free(top2);
	free(base);
}

static void raw_files_of_odd_sizes_compare_to_the_byte(void **state)
{
	(void)state;
	uint8_t buf[1000];
	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 13);
	assert_int_equal(tl_write_file(P("odd1.raw"), buf, sizeof(buf)), 0);
	assert_int_equal(tl_write_file(P("odd2.raw"), buf, sizeof(buf)), 0);
	struct vxm_compare_result r;
	cmp_ok(P("odd1.raw"), P("odd2.raw"), 4096, &r);
	assert_true(r.same);
	assert_int_equal(r.bytes_compared, 1000);
	assert_int_equal(r.sector_size, 512); /* both raw */
	buf[999] ^= 0x80;
	assert_int_equal(tl_write_file(P("odd2.raw"), buf, sizeof(buf)), 0);
	cmp_ok(P("odd1.raw"), P("odd2.raw"), 4096, &r);
	assert_int_equal(r.first_difference, 999);
	/* an empty file against an empty file is the same; against data not */
	assert_int_equal(tl_write_file(P("empty1.raw"), buf, 0), 0);
	assert_int_equal(tl_write_file(P("empty2.raw"), buf, 0), 0);
	cmp_ok(P("empty1.raw"), P("empty2.raw"), 0, &r);
	assert_true(r.same);
	assert_int_equal(r.bytes_compared, 0);
	cmp_ok(P("empty1.raw"), P("odd1.raw"), 0, &r);
	assert_false(r.same);
	assert_int_equal(r.first_difference, 0);
}

struct prog_log {
	uint64_t calls, last, total;
	int stop_at;
};

static int prog(void *ctx, uint64_t done, uint64_t total)
{
	struct prog_log *l = ctx;
	assert_true(done > l->last);
	l->last = done;
	l->total = total;
	return ++l->calls == (uint64_t)l->stop_at ? -EINTR : 0;
}

static void progress_reports_each_chunk_and_can_stop_the_comparison(void **state)
{
	(void)state;
	struct prog_log l = { 0 };
	struct vxm_compare_opts o = { .chunk = 1 * MiB, .progress = prog, .progress_ctx = &l };
	struct vxm_compare_result r;
	assert_int_equal(vxm_compare_with(P("c2.avhdx"), P("top.raw"), &o, &r, NULL), 0);
	assert_int_equal(l.calls, VSIZE / MiB);
	assert_int_equal(l.last, VSIZE);
	assert_int_equal(l.total, VSIZE);
	memset(&l, 0, sizeof(l));
	l.stop_at = 3;
	assert_int_equal(vxm_compare_with(P("c2.avhdx"), P("top.raw"), &o, &r, NULL), -EINTR);
	assert_int_equal(l.calls, 3);
}

static void errors_name_the_file_at_fault(void **state)
{
	(void)state;
	struct vxm_compare_result r;
	struct vxm_err err = { 0 };
	assert_int_equal(vxm_compare(P("c2.avhdx"), P("missing.raw"), NULL, &r, &err), -ENOENT);
	assert_non_null(strstr(err.path, "missing.raw"));

	/* the identifier but nothing valid after it: corrupt, not raw */
	uint8_t *junk = malloc(2 * MiB);
	memset(junk, 0x11, 2 * MiB);
	memcpy(junk, "vhdxfile", 8);
	assert_int_equal(tl_write_file(P("junk.vhdx"), junk, 2 * MiB), 0);
	free(junk);
	vxm_err_clear(&err);
	int ret = vxm_compare(P("top.raw"), P("junk.vhdx"), NULL, &r, &err);
	assert_int_equal(vxm_exit_code(ret), VXM_EXIT_CORRUPT);
	assert_non_null(strstr(err.path, "junk.vhdx"));

	/* a child whose parent is gone */
	assert_int_equal(tl_sh("mkdir -p '%s/orphan' && cp '%s' '%s/orphan/'", dir, P("c2.avhdx"),
			       dir), 0);
	char orphan[1300];
	snprintf(orphan, sizeof(orphan), "%s/orphan/c2.avhdx", dir);
	vxm_err_clear(&err);
	assert_int_equal(vxm_compare(orphan, P("top.raw"), NULL, &r, &err), -VXM_ECHAIN);
	char text[1400];
	assert_non_null(strstr(vxm_err_format(&err, text, sizeof(text)), "orphan/c2.avhdx"));

	/* a chunk that is not a multiple of 4 KiB */
	struct vxm_compare_opts o = { .chunk = 1000 };
	assert_int_equal(vxm_compare_with(P("top.raw"), P("top.raw"), &o, &r, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(chain_top_reads_the_same_as_the_raw_image_of_its_spec),
		cmocka_unit_test(base_equals_qemu_img_raw_conversion),
		cmocka_unit_test(a_flipped_byte_is_found_at_its_exact_offset),
		cmocka_unit_test(a_flipped_byte_in_a_layer_payload_shows_at_its_virtual_offset),
		cmocka_unit_test(different_sizes_are_a_difference_and_the_common_part_is_still_compared),
		cmocka_unit_test(differencing_top_differs_from_its_base_where_the_child_first_writes),
		cmocka_unit_test(raw_files_of_odd_sizes_compare_to_the_byte),
		cmocka_unit_test(progress_reports_each_chunk_and_can_stop_the_comparison),
		cmocka_unit_test(errors_name_the_file_at_fault),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
