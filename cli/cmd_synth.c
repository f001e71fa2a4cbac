/* cli/cmd_synth.c: `vhdxmerge synth DIR --seed S ...`: a deterministic
 * differencing chain of realistic checkpoints, and the SHA-256 of the disk
 * it shows, computed from synth's own model (never by reading the files).
 *
 * Model.  Layer L (0 = base) is a sorted list of disjoint sector extents,
 * each DATA or ZERO, drawn block by block on that layer's own block grid
 * from a splitmix64 stream seeded by (seed, L):
 *   - with probability --zero a whole block is zeroed (the ZERO state in a
 *     dynamic or differencing file with --zero-mode state; zero data in a
 *     fixed base or with --zero-mode data);
 *   - with probability --fill it is written: with probability --partial as
 *     scattered runs of odd and even lengths (some of them zero runs), else
 *     whole;
 *   - the last block (the trailing partial one when --size is not a multiple
 *     of the block size) is always written in layers 0 and 1.
 * Draws are independent of the other layers, so layers overlap at random,
 * and children's ZERO blocks shadow parent data where the parent wrote.
 * DATA sector s of layer L holds gen(seed, L, s): 8 bytes (L << 48 | s),
 * then splitmix64 words, so content never has to be stored: the model is the
 * extent lists only (memory grows with the number of extents, not with the
 * disk).  The expected disk is, per sector, the topmost layer with an extent
 * covering it (zeros for ZERO, zeros where none does); a sweep over the
 * extent lists streams it into SHA-256.
 *
 * Files: DIR/base.vhdx, DIR/snap01.avhdx, ... each child created on the
 * previous one after that one is complete (so its parent_linkage matches),
 * written through one write session (engine/writer.c) in offset order.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ext {
	uint64_t s, n; /* sectors */
	bool zero;
};

struct layer {
	char path[PATH_MAX];
	uint32_t bs;
	struct ext *e;
	size_t n, cap;
	uint64_t data_ext, zero_ext, data_bytes, zero_bytes;
	uint64_t full_blocks, partial_blocks, zero_blocks;
	struct vxm_writer_stats ws;
	struct vxm_info info;
};

struct synth {
	const char *dir;
	uint64_t seed, vsize;
	uint32_t lss, pss, bs, child_bs;
	unsigned layers;
	bool fixed, zero_state, force, json, no_digest;
	double fill, partial, zero;
	struct layer *ly;
};

static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s)
{
	return mix64(*s += 0x9E3779B97F4A7C15ull);
}

static double unif(uint64_t *s)
{
	return (double)(rnd(s) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t below(uint64_t *s, uint64_t n)
{
	return n ? rnd(s) % n : 0;
}

/* Content of DATA sector `sector` of layer L (lss bytes). */
static void gen(uint64_t seed, unsigned L, uint64_t sector, uint8_t *out, uint32_t lss)
{
	uint64_t x = mix64(seed ^ mix64(((uint64_t)L << 56) ^ sector ^ 0xA5A5A5A5ull));
	uint64_t tag = (uint64_t)L << 48 | sector;
	memcpy(out, &tag, 8);
	for (uint32_t i = 8; i < lss; i += 8) {
		uint64_t v = rnd(&x);
		memcpy(out + i, &v, 8);
	}
}

static int add(struct layer *ly, uint64_t s, uint64_t n, bool zero)
{
	if (!n)
		return 0;
	if (ly->n == ly->cap) {
		size_t cap = ly->cap ? ly->cap * 2 : 256;
		struct ext *e = realloc(ly->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		ly->e = e;
		ly->cap = cap;
	}
	ly->e[ly->n++] = (struct ext){ s, n, zero };
	return 0;
}

/* Draws layer L's extents (see the design note). */
static int plan_layer(struct synth *sy, unsigned L)
{
	struct layer *ly = &sy->ly[L];
	uint64_t total = sy->vsize / sy->lss, spb = ly->bs / sy->lss;
	uint64_t nblocks = (total + spb - 1) / spb;
	uint64_t r = mix64(sy->seed * 0x2545F4914F6CDD1Dull + L + 1);
	int ret = 0;

	for (uint64_t b = 0; b < nblocks && !ret; b++) {
		uint64_t start = b * spb, blk = total - start < spb ? total - start : spb;
		bool force = b == nblocks - 1 && L <= 1;
		double u = unif(&r);
		if (!force && u < sy->zero) {
			ret = add(ly, start, blk, true);
			ly->zero_blocks++;
			continue;
		}
		if (!force && u >= sy->zero + sy->fill)
			continue;
		if (!force && unif(&r) >= sy->partial) {
			ret = add(ly, start, blk, false);
			ly->full_blocks++;
			continue;
		}
		/* scattered runs, odd lengths included, gaps of at least 1 */
		ly->partial_blocks++;
		uint64_t pos = below(&r, blk / 3 + 1), end = 0;
		while (pos < blk && !ret) {
			uint64_t len = 1 + below(&r, blk / 5 > 1 ? blk / 5 : 1);
			if (len > blk - pos)
				len = blk - pos;
			bool z = sy->zero > 0 && unif(&r) < 0.15;
			ret = add(ly, start + pos, len, z);
			end = pos + len;
			pos = end + 1 + below(&r, blk / 4 > 1 ? blk / 4 : 1);
		}
		if (force && end < blk && !ret) {
			/* the block's (and disk's) last sectors, an odd-ish count */
			uint64_t k = 1 + below(&r, blk < 37 ? blk : 37);
			uint64_t s = blk - k > end ? blk - k : end;
			ret = add(ly, start + s, blk - s, false);
		}
	}
	for (size_t i = 0; i < ly->n; i++) {
		if (ly->e[i].zero) {
			ly->zero_ext++;
			ly->zero_bytes += ly->e[i].n * sy->lss;
		} else {
			ly->data_ext++;
			ly->data_bytes += ly->e[i].n * sy->lss;
		}
	}
	return ret;
}

#define BUF_BYTES (8u << 20)

static int write_layer(struct synth *sy, unsigned L, uint8_t *buf, struct vxm_err *err)
{
	struct layer *ly = &sy->ly[L];
	struct vxm_create_params p = {
		.virtual_size = sy->vsize,
		.block_size = ly->bs,
		.logical_sector_size = sy->lss,
		.physical_sector_size = sy->pss,
		.fixed = L == 0 && sy->fixed,
		.parent = L ? sy->ly[L - 1].path : NULL,
	};
	struct vxm_image *img = NULL;
	struct vxm_writer *w = NULL;
	int ret;

	if (L)
		p.virtual_size = 0; /* the parent's */
	ret = vxm_image_create(ly->path, &p, err);
	if (ret)
		return ret;
	ret = vxm_image_open(&img, NULL, ly->path, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	ret = vxm_writer_begin(&w, img, err);
	if (ret)
		goto out;
	uint32_t per = BUF_BYTES / sy->lss;
	for (size_t i = 0; i < ly->n && !ret; i++) {
		const struct ext *e = &ly->e[i];
		if (e->zero) {
			ret = vxm_writer_zero(w, e->s * sy->lss, e->n * sy->lss,
					      sy->zero_state ? VXM_ZERO_STATE : VXM_ZERO_DATA, err);
			continue;
		}
		for (uint64_t d = 0; d < e->n && !ret; d += per) {
			uint64_t n = e->n - d < per ? e->n - d : per;
			for (uint64_t k = 0; k < n; k++)
				gen(sy->seed, L, e->s + d + k, buf + k * sy->lss, sy->lss);
			ret = vxm_writer_write(w, (e->s + d) * sy->lss, buf, n * sy->lss, err);
		}
	}
	if (!ret)
		ret = vxm_writer_flush(w, err);
	vxm_writer_get_stats(w, &ly->ws);
	int r2 = vxm_writer_end(w, ret ? NULL : err);
	if (!ret)
		ret = r2;
	if (!ret)
		ret = vxm_image_info(img, &ly->info, err);
	ly->info.path = NULL;
	ly->info.creator = NULL;
	ly->info.type = NULL;
out:
	vxm_image_close(img);
	if (ret)
		vxm_err_path(err, ly->path);
	return ret;
}

/* SHA-256 of the disk the model says the chain shows (see the note). */
static int model_sha(struct synth *sy, uint8_t *buf, char hex[65])
{
	uint64_t total = sy->vsize / sy->lss, p = 0;
	size_t *cur = calloc(sy->layers, sizeof(*cur));
	uint32_t per = BUF_BYTES / sy->lss, fill = 0;
	struct vxm_sha256 sh;

	if (!cur || vxm_sha256_init(&sh)) {
		free(cur);
		return -ENOMEM;
	}
	while (p < total) {
		int owner = -1;
		uint64_t end = total;
		for (int L = (int)sy->layers - 1; L >= 0; L--) {
			struct layer *ly = &sy->ly[L];
			while (cur[L] < ly->n && ly->e[cur[L]].s + ly->e[cur[L]].n <= p)
				cur[L]++;
			if (cur[L] == ly->n)
				continue;
			const struct ext *e = &ly->e[cur[L]];
			if (e->s <= p) {
				/* the topmost cover; layers below cannot matter */
				if (e->s + e->n < end)
					end = e->s + e->n;
				owner = L;
				break;
			}
			if (e->s < end)
				end = e->s;
		}
		const struct ext *oe = owner >= 0 ? &sy->ly[owner].e[cur[owner]] : NULL;
		for (uint64_t s = p; s < end; s++) {
			uint8_t *out = buf + (size_t)fill * sy->lss;
			if (oe && !oe->zero)
				gen(sy->seed, (unsigned)owner, s, out, sy->lss);
			else
				memset(out, 0, sy->lss);
			if (++fill == per) {
				vxm_sha256_update(&sh, buf, (size_t)fill * sy->lss);
				fill = 0;
			}
		}
		p = end;
	}
	if (fill)
		vxm_sha256_update(&sh, buf, (size_t)fill * sy->lss);
	vxm_sha256_final(&sh, hex);
	free(cur);
	return 0;
}

void help_synth(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge synth DIR --seed S [--size SIZE] [--layers N] [--block-size B]\n"
		"                       [--child-block-size B] [--logical-sector 512|4096]\n"
		"                       [--physical-sector 512|4096] [--base fixed|dynamic]\n"
		"                       [--fill F] [--partial P] [--zero Z] [--zero-mode state|data]\n"
		"                       [--force] [--no-digest] [--json]\n"
		"\n"
		"Writes a deterministic chain DIR/base.vhdx, DIR/snap01.avhdx, ... of N layers\n"
		"(base + N-1 differencing checkpoints) with overlapping writes, partial blocks of\n"
		"scattered odd-length sector runs, ZERO blocks shadowing parent data and a\n"
		"trailing partial block when SIZE is not a multiple of the block size.  Prints\n"
		"the SHA-256 of the disk the chain shows, computed from synth's own model.\n"
		"\n"
		"  --seed S             content, layout and GUIDs derive from S (required)\n"
		"  --size SIZE          virtual size (default 256 MiB)\n"
		"  --layers N           files in the chain, base included (default 3)\n"
		"  --block-size B       base block size (default 2 MiB)\n"
		"  --child-block-size B block size of the children (default: --block-size);\n"
		"                       e.g. --block-size 32M --child-block-size 2M as Hyper-V\n"
		"  --logical-sector N   512 (default) or 4096\n"
		"  --physical-sector N  512 or 4096 (default 4096)\n"
		"  --base fixed|dynamic base type (default dynamic)\n"
		"  --fill F             fraction of blocks written per layer (default 0.3)\n"
		"  --partial P          fraction of written blocks written partially (0.5)\n"
		"  --zero Z             fraction of blocks zeroed per layer (default 0.05)\n"
		"  --zero-mode M        state: whole zeroed blocks get the ZERO state (default);\n"
		"                       data: zero data instead, no ZERO/UNDEFINED/UNMAPPED\n"
		"                       anywhere (libvhdi reads a child's ZERO block as its\n"
		"                       parent's data)\n"
		"  --force              replace existing chain files in DIR\n"
		"  --no-digest          skip the SHA-256 (it reads the model's every sector:\n"
		"                       hours for terabyte disks); JSON then has no sha256\n"
		"  --json               {\"files\": [base first...], \"virtual_size\",\n"
		"                       \"logical_sector_size\", \"sha256\", \"layers\": [stats]}\n");
}

static int parse_frac(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if (*end || v < 0 || v > 1)
		return -1;
	*out = v;
	return 0;
}

static void print_json(const struct synth *sy, const char *sha)
{
	struct json j;

	json_init(&j, stdout);
	json_obj_begin(&j, NULL);
	json_arr_begin(&j, "files");
	for (unsigned L = 0; L < sy->layers; L++)
		json_str(&j, NULL, sy->ly[L].path);
	json_arr_end(&j);
	json_u64(&j, "virtual_size", sy->vsize);
	json_u64(&j, "logical_sector_size", sy->lss);
	if (sha[0])
		json_str(&j, "sha256", sha);
	json_u64(&j, "seed", sy->seed);
	json_arr_begin(&j, "layers");
	for (unsigned L = 0; L < sy->layers; L++) {
		const struct layer *ly = &sy->ly[L];
		json_obj_begin(&j, NULL);
		json_str(&j, "file", ly->path);
		json_str(&j, "type", L ? "differencing" : sy->fixed ? "fixed" : "dynamic");
		json_u64(&j, "block_size", ly->bs);
		json_u64(&j, "file_size", ly->info.file_size);
		json_u64(&j, "data_extents", ly->data_ext);
		json_u64(&j, "zero_extents", ly->zero_ext);
		json_u64(&j, "data_bytes", ly->data_bytes);
		json_u64(&j, "zero_bytes", ly->zero_bytes);
		json_u64(&j, "full_blocks", ly->full_blocks);
		json_u64(&j, "partial_blocks", ly->partial_blocks);
		json_u64(&j, "zeroed_blocks", ly->zero_blocks);
		json_obj_begin(&j, "bat");
		json_u64(&j, "fully_present", ly->info.bat.fully_present);
		json_u64(&j, "partially_present", ly->info.bat.partially_present);
		json_u64(&j, "zero", ly->info.bat.zero);
		json_u64(&j, "not_present", ly->info.bat.not_present);
		json_u64(&j, "sector_bitmaps_present", ly->info.bat.sector_bitmaps_present);
		json_obj_end(&j);
		json_obj_begin(&j, "writer");
		json_u64(&j, "bytes_written", ly->ws.bytes_written);
		json_u64(&j, "blocks_allocated", ly->ws.blocks_allocated);
		json_u64(&j, "bitmaps_allocated", ly->ws.bitmaps_allocated);
		json_u64(&j, "log_entries", ly->ws.entries);
		json_u64(&j, "sectors_logged", ly->ws.sectors_logged);
		json_u64(&j, "commits", ly->ws.commits);
		json_u64(&j, "syncs", ly->ws.syncs);
		json_obj_end(&j);
		json_obj_end(&j);
	}
	json_arr_end(&j);
	json_obj_end(&j);
	json_end(&j);
}

int cmd_synth(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 'S' },
		{ "size", required_argument, NULL, 's' },
		{ "layers", required_argument, NULL, 'n' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "child-block-size", required_argument, NULL, 'c' },
		{ "logical-sector", required_argument, NULL, 'l' },
		{ "physical-sector", required_argument, NULL, 'p' },
		{ "base", required_argument, NULL, 'B' },
		{ "fill", required_argument, NULL, 'F' },
		{ "partial", required_argument, NULL, 'P' },
		{ "zero", required_argument, NULL, 'Z' },
		{ "zero-mode", required_argument, NULL, 'M' },
		{ "force", no_argument, NULL, 'f' },
		{ "no-digest", no_argument, NULL, 'N' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct synth sy = { .vsize = 256ull << 20, .lss = 512, .pss = 4096, .bs = 2u << 20,
			    .layers = 3, .fill = 0.3, .partial = 0.5, .zero = 0.05,
			    .zero_state = true };
	bool have_seed = false;
	uint64_t v;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "S:s:n:b:c:l:p:B:F:P:Z:M:fjh", opts, NULL)) != -1) {
		switch (c) {
		case 'S':
			errno = 0;
			sy.seed = strtoull(optarg, &end, 0);
			if (errno || *end)
				return cli_usage("synth", "bad --seed '%s'", optarg);
			have_seed = true;
			break;
		case 's':
			if (cli_parse_size(optarg, &sy.vsize) || !sy.vsize)
				return cli_usage("synth", "bad --size '%s'", optarg);
			break;
		case 'n':
			sy.layers = (unsigned)strtoul(optarg, &end, 10);
			if (*end || sy.layers < 1 || sy.layers > 1000)
				return cli_usage("synth", "--layers must be 1..1000");
			break;
		case 'b':
		case 'c':
			if (cli_parse_size(optarg, &v) || v < (1u << 20) || v > (256u << 20) ||
			    (v & (v - 1)))
				return cli_usage("synth", "block sizes are powers of two, 1 MiB to 256 MiB");
			if (c == 'b')
				sy.bs = (uint32_t)v;
			else
				sy.child_bs = (uint32_t)v;
			break;
		case 'l':
		case 'p':
			if (strcmp(optarg, "512") && strcmp(optarg, "4096"))
				return cli_usage("synth", "sector sizes are 512 or 4096");
			if (c == 'l')
				sy.lss = (uint32_t)atoi(optarg);
			else
				sy.pss = (uint32_t)atoi(optarg);
			break;
		case 'B':
			if (!strcmp(optarg, "fixed"))
				sy.fixed = true;
			else if (strcmp(optarg, "dynamic"))
				return cli_usage("synth", "--base is fixed or dynamic");
			break;
		case 'F':
		case 'P':
		case 'Z': {
			double *d = c == 'F' ? &sy.fill : c == 'P' ? &sy.partial : &sy.zero;
			if (parse_frac(optarg, d))
				return cli_usage("synth", "fractions are numbers from 0 to 1");
			break;
		}
		case 'M':
			if (!strcmp(optarg, "state"))
				sy.zero_state = true;
			else if (!strcmp(optarg, "data"))
				sy.zero_state = false;
			else
				return cli_usage("synth", "--zero-mode is state or data");
			break;
		case 'f':
			sy.force = true;
			break;
		case 'N':
			sy.no_digest = true;
			break;
		case 'j':
			sy.json = true;
			break;
		case 'h':
			help_synth(stdout);
			return 0;
		default:
			return cli_usage("synth", "unknown option");
		}
	}
	if (optind != argc - 1)
		return cli_usage("synth", "expects exactly one DIR");
	if (!have_seed)
		return cli_usage("synth", "--seed is required");
	if (sy.vsize % sy.lss)
		return cli_usage("synth", "--size must be a multiple of the %u-byte logical sector",
				 sy.lss);
	if (sy.fill + sy.zero > 1)
		return cli_usage("synth", "--fill + --zero must not exceed 1");
	if (!sy.child_bs)
		sy.child_bs = sy.bs;
	sy.dir = argv[optind];

	struct vxm_err err = { 0 };
	int ret = 0;
	uint8_t *buf = malloc(BUF_BYTES);
	sy.ly = calloc(sy.layers, sizeof(*sy.ly));
	if (!buf || !sy.ly) {
		fprintf(stderr, "%s synth: out of memory\n", cli_prog);
		free(buf);
		free(sy.ly);
		return VXM_EXIT_INTERNAL;
	}
	if (mkdir(sy.dir, 0777) && errno != EEXIST) {
		ret = -errno;
		vxm_fail(&err, ret, VXM_OFF_NONE, "cannot create directory %s: %s", sy.dir,
			 strerror(errno));
		goto out;
	}
	for (unsigned L = 0; L < sy.layers; L++) {
		struct layer *ly = &sy.ly[L];
		if (L)
			snprintf(ly->path, sizeof(ly->path), "%s/snap%02u.avhdx", sy.dir, L);
		else
			snprintf(ly->path, sizeof(ly->path), "%s/base.vhdx", sy.dir);
		ly->bs = L ? sy.child_bs : sy.bs;
		if (!access(ly->path, F_OK)) {
			if (!sy.force) {
				ret = -EEXIST;
				vxm_fail(&err, ret, VXM_OFF_NONE,
					 "%s exists (use --force to replace the chain)", ly->path);
				goto out;
			}
			unlink(ly->path);
		}
	}
	/* Deterministic GUIDs too: byte-identical files for one seed. */
	vxm_guid_seed(mix64(sy.seed ^ 0x5EED5EED5EEDull) | 1);
	for (unsigned L = 0; L < sy.layers && !ret; L++) {
		ret = plan_layer(&sy, L);
		if (ret) {
			vxm_fail(&err, ret, VXM_OFF_NONE, "synth: out of memory");
			break;
		}
		ret = write_layer(&sy, L, buf, &err);
	}
	if (ret)
		goto out;
	char sha[65] = "";
	/* the digest walks every sector of the disk: hours at terabytes */
	ret = sy.no_digest ? 0 : model_sha(&sy, buf, sha);
	if (ret) {
		vxm_fail(&err, ret, VXM_OFF_NONE, "synth: out of memory");
		goto out;
	}
	if (sy.json) {
		print_json(&sy, sha);
	} else {
		char h[32];
		for (unsigned L = 0; L < sy.layers; L++)
			printf("%s  %s blocks, %" PRIu64 " data + %" PRIu64 " zero extents\n",
			       sy.ly[L].path, cli_human(sy.ly[L].bs, h, sizeof(h)),
			       sy.ly[L].data_ext, sy.ly[L].zero_ext);
		printf("virtual size %" PRIu64 ", %u-byte sectors\nsha256 %s\n", sy.vsize, sy.lss,
		       sha[0] ? sha : "not computed (--no-digest)");
	}
out:
	for (unsigned L = 0; L < sy.layers; L++)
		free(sy.ly[L].e);
	free(sy.ly);
	free(buf);
	return ret ? cli_fail(&err, ret) : 0;
}
