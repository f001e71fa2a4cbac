/* tests/fuzz/fuzz_open.c: libFuzzer target for the whole read path of one
 * image: vxm_image_open_mem, vxm_image_info, vxm_image_check and its
 * findings, then lookups and reads of a few ranges.  Never writes: the image
 * is opened read-only from memory (a dirty log replays into the overlay).
 *
 * Input format ("sparse image"; real images are tens of MiB of mostly zeros,
 * so the fuzzer would spend its time in payload bytes no parser reads):
 *
 *   off 0  u32 LE  image size in bytes, reduced modulo FZ_MAX_IMAGE + 1 (8 MiB)
 *   off 4  u8      flags, applied after expansion, in this order:
 *                    bit 2: recompute the CRC of every log entry in the log
 *                           the current header points at
 *                    bit 1: recompute the CRC of both region table copies
 *                    bit 0: recompute the CRC of both headers
 *   off 5  chunks until the input ends (fz_chunks):
 *            u32 LE  file offset (a chunk at or past the image size is skipped)
 *            u16 LE  length n
 *            n bytes (fewer when the input ends; clipped at the image size)
 *
 * The image starts all zero and chunks are copied in order (later ones win).
 * tests/fuzz/mkseed.py writes this format from real files.  With
 * VXM_FUZZ_VERBOSE set, the outcome of the open and the check is printed.
 */
#include "fuzz_common.h"
#include "engine/engine.h"

#define FZ_MAX_IMAGE (8u << 20)

/* One buffer for every run: a fresh 8 MiB allocation per input costs more
 * than the open.  The image sits at the end of the pool so that reading past
 * it runs into ASan's redzone, and the unused front is poisoned.  Only the
 * bytes a run wrote are zeroed again for the next one. */
static uint8_t *pool;
static struct span {
	size_t off, len;
} *dirty;
static size_t ndirty, dirty_cap;

static void mark(size_t off, size_t len)
{
	if (ndirty == dirty_cap) {
		dirty_cap = dirty_cap ? 2 * dirty_cap : 256;
		dirty = realloc(dirty, dirty_cap * sizeof(*dirty));
		if (!dirty)
			abort();
	}
	dirty[ndirty++] = (struct span){ off, len };
}

static size_t image_at; /* pool offset of the image */

static void written(size_t off, size_t len)
{
	mark(image_at + off, len);
}

static void fix(uint8_t *img, size_t off, size_t len)
{
	fz_fix_crc(img + off, len);
	mark((size_t)(img - pool) + off + 4, 4);
}

static uint8_t *expand(const uint8_t *in, size_t n, size_t *size_out)
{
	size_t size = n >= 4 ? fz_u32(in, n, 0) % (FZ_MAX_IMAGE + 1) : 0;
	unsigned flags = n > 4 ? in[4] : 0;

	if (!pool) {
		pool = calloc(1, FZ_MAX_IMAGE);
		if (!pool)
			abort();
	}
	FZ_UNPOISON(pool, FZ_MAX_IMAGE);
	for (size_t i = 0; i < ndirty; i++)
		memset(pool + dirty[i].off, 0, dirty[i].len);
	ndirty = 0;
	uint8_t *img = pool + (FZ_MAX_IMAGE - size);
	FZ_POISON(pool, FZ_MAX_IMAGE - size);

	image_at = (size_t)(img - pool);
	fz_chunks(in, n, 5, img, size, written);
	if ((flags & 4) && size >= VXM_HEADER_SECTION) {
		/* The current header by sequence number, CRC not consulted. */
		uint64_t s1 = vxm_le64(img + VXM_HDR1_OFF + 8), s2 = vxm_le64(img + VXM_HDR2_OFF + 8);
		const uint8_t *h = img + (s2 > s1 ? VXM_HDR2_OFF : VXM_HDR1_OFF);
		uint32_t log_len = vxm_le32(h + 68);
		uint64_t log_off = vxm_le64(h + 72);
		if (log_off < size && log_len <= size - log_off)
			for (uint32_t pos = 0; pos + VXM_LOG_SECTOR <= log_len; pos += VXM_LOG_SECTOR) {
				fz_fix_log_entry(img + log_off, log_len, pos);
				mark((size_t)(img - pool) + log_off + pos + 4, 4);
			}
	}
	if ((flags & 2) && size >= VXM_RT2_OFF + VXM_RT_SIZE) {
		fix(img, VXM_RT1_OFF, VXM_RT_SIZE);
		fix(img, VXM_RT2_OFF, VXM_RT_SIZE);
	}
	if ((flags & 1) && size >= VXM_HDR2_OFF + VXM_HDR_SIZE) {
		fix(img, VXM_HDR1_OFF, VXM_HDR_SIZE);
		fix(img, VXM_HDR2_OFF, VXM_HDR_SIZE);
	}
	*size_out = size;
	return img;
}

/* Walks runs from sector s; every run is non-empty, no longer than asked,
 * inside one block, and a DATA run lies inside the (replayed) file. */
static void walk(struct vxm_image *img, uint64_t s, unsigned max_runs)
{
	const struct vxm_geom *g = &img->g;
	uint64_t total = g->virtual_size / g->lss;

	for (unsigned i = 0; i < max_runs && s < total; i++) {
		struct vxm_run run;
		struct vxm_err err = { 0 };
		uint64_t want = 3 * (uint64_t)g->spb;
		if (vxm_image_lookup(img, s, want, &run, &err))
			return;
		FZ_ASSERT(run.nsec >= 1 && run.nsec <= want && run.nsec <= total - s);
		FZ_ASSERT(s / g->spb == (s + run.nsec - 1) / g->spb);
		if (run.kind == VXM_RUN_DATA)
			FZ_ASSERT(run.file_off >= VXM_HEADER_SECTION &&
				  run.file_off <= img->file_size &&
				  run.nsec * g->lss <= img->file_size - run.file_off);
		if (!g->has_parent)
			FZ_ASSERT(run.kind != VXM_RUN_PARENT);
		s += run.nsec;
	}
}

static void read_some(struct vxm_image *img, uint64_t sector, uint64_t nsec)
{
	static uint8_t buf[64 * 1024];
	const struct vxm_geom *g = &img->g;
	uint64_t total = g->virtual_size / g->lss;

	if (sector >= total)
		return;
	if (nsec > total - sector)
		nsec = total - sector;
	if (nsec * g->lss > sizeof(buf))
		nsec = sizeof(buf) / g->lss;
	(void)vxm_image_read(img, buf, nsec * g->lss, sector * g->lss, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	struct vxm_image *img;
	struct vxm_err err = { 0 };
	size_t size = 0;
	uint8_t *buf = expand(data, n, &size);

	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("VXM_FUZZ_VERBOSE") != NULL;
	int ret = vxm_image_open_mem(&img, buf, size, 0, &err);
	if (verbose) {
		char msg[1400];
		fprintf(stderr, "fuzz_open: %zu-byte image: %s\n", size,
			ret ? vxm_err_format(&err, msg, sizeof(msg)) : "opened");
	}
	if (ret) {
		FZ_ASSERT(ret < 0 && err.code == ret && err.msg[0]);
		return 0;
	}

	struct vxm_info info;
	if (vxm_image_info(img, &info, NULL) == 0) {
		FZ_ASSERT(info.bat_entries == img->g.total_entries);
		FZ_ASSERT(info.block_size == img->g.block_size);
	}
	int problems = vxm_image_check(img, NULL);
	if (verbose)
		fprintf(stderr, "fuzz_open: check: %d problems\n", problems);
	unsigned nf = vxm_image_findings(img, NULL, 0);
	struct vxm_finding *f = calloc(nf + 1, sizeof(*f));
	if (f) {
		unsigned got = vxm_image_findings(img, f, nf);
		FZ_ASSERT(got == nf);
		unsigned listed = 0;
		for (unsigned i = 0; i < nf; i++) {
			FZ_ASSERT(f[i].msg && strlen(f[i].msg) < 512);
			listed += f[i].severity == 1;
		}
		FZ_ASSERT(problems < 0 || (unsigned)problems >= listed);
		free(f);
	}

	const struct vxm_geom *g = &img->g;
	uint64_t total = g->virtual_size / g->lss;
	uint64_t at[] = { 0, g->spb - 1, g->spb, total / 2, total - 1,
			  (uint64_t)g->chunk_ratio * g->spb };
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		walk(img, at[i], 4);
		read_some(img, at[i], 9);
	}
	walk(img, 0, 64);
	read_some(img, 0, 128);
	vxm_image_close(img);
	return 0;
}
