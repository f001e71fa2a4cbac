/* tests/engine/test_synth.c: `vhdxmerge synth` chains read back through our
 * own reader (ZERO blocks included, which libvhdi cannot show, fmt §5.3)
 * equal the SHA-256 synth computed from its model; every file is clean and
 * closed with LogGuid 0; a seed gives byte-identical files. */
#include "wtest.h"

static char *tmp;

static int setup(void **state)
{
	(void)state;
	tmp = tl_mkdtemp("synth");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tl_sh("rm -rf '%s'", tmp);
	free(tmp);
	return 0;
}

struct chain {
	char dir[512];
	char *files[64];
	int n;
	char sha[65];
	uint64_t zero_blocks, partial_blocks;
};

/* Runs synth with args into a fresh dir; fills c. */
static void synth(struct chain *c, const char *name, const char *args)
{
	int st;
	snprintf(c->dir, sizeof(c->dir), "%s/%s", tmp, name);
	char *out = tl_sh_out(&st, "'%s' synth '%s' %s --json", tl_bin(), c->dir, args);
	if (st != 0)
		fprintf(stderr, "synth %s: exit %d\n%s", args, st, out);
	assert_int_equal(st, 0);
	assert_true(tl_json_get(out, NULL, "sha256", c->sha, sizeof(c->sha)));
	/* files: base.vhdx, snap01.avhdx, ... in the order synth prints them */
	c->n = 0;
	c->zero_blocks = c->partial_blocks = 0;
	for (const char *p = out; (p = strstr(p, "\"file\":")) != NULL; p++) {
		char v[600];
		assert_true(tl_json_get(p, NULL, "file", v, sizeof(v)));
		c->files[c->n++] = strdup(v);
		char z[32];
		assert_true(tl_json_get(p, "bat", "zero", z, sizeof(z)));
		if (c->n > 1)
			c->zero_blocks += strtoull(z, NULL, 10);
		assert_true(tl_json_get(p, "bat", "partially_present", z, sizeof(z)));
		c->partial_blocks += strtoull(z, NULL, 10);
	}
	free(out);
	assert_true(c->n >= 1);
}

static void chain_free(struct chain *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->files[i]);
	tl_sh("rm -rf '%s'", c->dir);
}

static void each_file_clean_and_closed(struct chain *c)
{
	for (int i = 0; i < c->n; i++) {
		int st;
		char v[64];
		wt_check_clean(c->files[i]);
		char *out = tl_sh_out(&st, "'%s' info --json '%s'", tl_bin(), c->files[i]);
		assert_int_equal(st, 0);
		assert_true(tl_json_get(out, "log", "log_guid", v, sizeof(v)));
		assert_string_equal(v, "00000000-0000-0000-0000-000000000000");
		free(out);
	}
}

/* Chains of 1 to 30 layers, 512 and 4096-byte sectors, 1/2/32/256 MiB blocks
 * (children with other block sizes than the base), sizes that are not a
 * multiple of the block size, ZERO blocks in children: our reader shows what
 * synth's model says. */
static void synth_chains_read_back_as_the_model_says(void **state)
{
	static const struct {
		const char *name, *args;
	} cases[] = {
		{ "one-1m", "--seed 1 --size 64M --layers 1 --block-size 1M --zero 0.1" },
		{ "fixed-base", "--seed 2 --size 70M --layers 3 --base fixed --block-size 2M" },
		{ "hyperv-32m-2m", "--seed 3 --size 300M --layers 6 --block-size 32M --child-block-size 2M" },
		{ "mixed-1m-256m", "--seed 4 --size 600M --layers 3 --block-size 1M --child-block-size 256M --fill 0.5" },
		{ "4k-2m", "--seed 5 --size 129M --layers 5 --logical-sector 4096 --block-size 2M" },
		{ "4k-256m", "--seed 6 --size 520M --layers 3 --logical-sector 4096 --block-size 256M --child-block-size 32M" },
		{ "thirty", "--seed 7 --size 64M --layers 30 --block-size 1M --child-block-size 2M" },
	};
	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct chain c;
		char sha[65];
		synth(&c, cases[i].name, cases[i].args);
		assert_int_equal(wt_chain_sha(c.files, c.n, sha), 0);
		if (strcmp(sha, c.sha))
			fprintf(stderr, "%s: our reader %s, synth model %s\n", cases[i].name, sha, c.sha);
		assert_string_equal(sha, c.sha);
		each_file_clean_and_closed(&c);
		if (c.n > 1)
			assert_true(c.zero_blocks > 0 || c.partial_blocks > 0);
		printf("%-14s %2d layers: reader == model %.16s (%llu ZERO blocks in children, %llu partial blocks)\n",
		       cases[i].name, c.n, sha, (unsigned long long)c.zero_blocks,
		       (unsigned long long)c.partial_blocks);
		chain_free(&c);
	}
}

/* The same seed writes byte-identical files (GUIDs included; the same
 * directory, as the locator holds the absolute path) and the same digest;
 * another seed does not. */
static void synth_is_deterministic_for_a_seed(void **state)
{
	struct chain a, b, c;
	char sums[8][65];
	(void)state;
	synth(&a, "det", "--seed 42 --size 40M --layers 3");
	assert_true(a.n <= 8);
	for (int i = 0; i < a.n; i++)
		assert_int_equal(tl_sha256_file(a.files[i], sums[i]), 0);
	synth(&b, "det", "--seed 42 --size 40M --layers 3 --force");
	assert_string_equal(a.sha, b.sha);
	for (int i = 0; i < b.n; i++) {
		char y[65];
		assert_int_equal(tl_sha256_file(b.files[i], y), 0);
		assert_string_equal(sums[i], y);
	}
	synth(&c, "det", "--seed 43 --size 40M --layers 3 --force");
	assert_string_not_equal(a.sha, c.sha);
	chain_free(&a);
	chain_free(&b);
	chain_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(synth_chains_read_back_as_the_model_says),
		cmocka_unit_test(synth_is_deterministic_for_a_seed),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
