/* tests/fuzz/fuzz_chain.c: libFuzzer target for chain resolution and the
 * merge planner over 2-4 images held in memory.
 *
 * The input is split into images; each is either built by tests/lib/memvhdx
 * from a compact spec (structurally valid: the fuzzer spends its time in
 * resolution and planning: block states, bitmaps, block sizes, virtual sizes
 * and sector sizes that differ between layers) or expanded from raw sparse
 * bytes (the fuzz_open format: the parsers are in the loop too).  They are
 * opened with vxm_image_open_mem (read-only, dirty logs replay in memory)
 * and stacked with vxm_chain_from_images, base first.  Then:
 *
 *   - vxm_chain_read of two windows of the top's disk;
 *   - vxm_plan into every possible destination (each layer below the top)
 *     and into a new file, extents to a callback that checks plan.c's
 *     invariants: I1 (strictly increasing, non-overlapping, sector
 *     multiples, inside the disk), I2 (a COPY's layer lies in (dest, top],
 *     or [0, top] for a new file), the stats add up, and, inside the
 *     windows, that the merged result reads as the chain: a COPY's source
 *     bytes and a ZERO's zeros are what the top shows, and a sector no
 *     extent covers shows what the destination's own chain shows;
 *   - a plan stopped by its callback returns the callback's value.
 *
 * Input format:
 *   byte 0  images: 2 + b % 3
 *   byte 1  flags: bit 0 lss 4096 (memvhdx images), bits 2-3 new-file block
 *           size (0: the top's, 1/2/3: 1/2/4 MiB), bit 4 new file fixed
 *   byte 2  second window position (fraction of the disk, /256)
 *   byte 3  stop the first plan's callback at this extent (0: never)
 *   then per image: u16 LE length, that many bytes of spec (the last image
 *   takes the rest).  Spec byte 0 bit 0: raw.
 *     memvhdx: [1] virtual size: (1 + b % 8) * 256 KiB + (b >> 3) % 32 sectors;
 *              [2] block size 1/2/4 MiB (b % 3); [3] payload fill;
 *              [4] bit 0: no parent (a differencing layer above the base
 *              otherwise), bit 1: shared payload, bit 2: fixed (base),
 *              bit 3: the other sector size, bit 4: parent on the base too;
 *              then one byte per block: state (b % 6 -> 0,1,2,3,6,7; 0xff:
 *              a reserved state), then bitmap bytes, cycled over the disk.
 *     raw:     u32 LE size (mod 8 MiB + 1), u8 CRC flags (as fuzz_open:
 *              bit 2 log entries, bit 1 region tables, bit 0 headers), then
 *              chunks (u32 offset, u16 length, bytes).
 * tests/fuzz/mkseed_chain.py writes raw-mode inputs from real chains.
 */
#include "fuzz_common.h"
#include "engine/engine.h"

#include <malloc.h>
#include <stdbool.h>

/* the builder, compiled in (the replay build links only vxm_engine) */
#include "../lib/memvhdx.c"

#define FZ_MAX_RAW (8u << 20)
#define FZ_WINDOW (128u * 1024)
#define FZ_MAX_PLAN_BLOCKS 4096

static uint8_t *build_memvhdx(const uint8_t *sp, size_t n, unsigned idx, unsigned flags,
			      size_t *len)
{
	uint8_t opt = n > 4 ? sp[4] : 0;
	uint32_t lss = ((flags & 1) ^ ((opt >> 3) & 1)) ? 4096 : 512;
	struct mv_spec s = { 0 };
	s.lss = lss;
	/* small disks: the builder writes every payload byte, and what the
	 * planner does depends on states, bitmaps and geometry, not size */
	s.vsize = (uint64_t)(1 + (n > 1 ? sp[1] & 7 : 0)) * 256 * 1024 +
		  (uint64_t)((n > 1 ? sp[1] >> 3 : 0) % 32) * lss;
	s.block_size = (uint32_t)VXM_MiB << (n > 2 ? sp[2] % 3 : 0);
	s.fill = n > 3 ? sp[3] : (uint8_t)idx;
	s.has_parent = idx ? !(opt & 1) : !!(opt & 16);
	s.shared_payload = opt & 2;
	s.fixed = idx == 0 && (opt & 4);
	s.data_write.b[0] = (uint8_t)(idx + 1);
	s.data_write.b[15] = 0xd0;
	s.parent_linkage.b[0] = (uint8_t)idx;
	s.parent_linkage.b[15] = 0xd0;
	s.relative_path = ".\\parent.vhdx";

	struct vxm_geom g;
	if (vxm_geom_init(&g, s.vsize, s.block_size, lss, s.has_parent, NULL))
		return NULL;
	uint8_t *states = calloc(g.payload_blocks + 1, 1);
	uint64_t nsec = s.vsize / lss;
	uint8_t *bits = calloc((nsec + 7) / 8 + 1, 1);
	if (!states || !bits) {
		free(states);
		free(bits);
		return NULL;
	}
	static const uint8_t map[6] = { 0, 1, 2, 3, 6, 7 };
	size_t p = 5;
	for (uint64_t b = 0; b < g.payload_blocks; b++, p++) {
		uint8_t v = p < n ? sp[p] : 0;
		states[b] = v == 0xff ? 4 + (b & 1) : map[v % 6];
	}
	if (p < n)
		for (uint64_t i = 0; i < (nsec + 7) / 8; i++)
			bits[i] = sp[p + i % (n - p)];
	s.states = states;
	s.bits = bits;
	uint8_t *img = mv_build(&s, len);
	free(states);
	free(bits);
	return img;
}

static uint8_t *build_raw(const uint8_t *in, size_t n, size_t *len)
{
	size_t size = n >= 4 ? fz_u32(in, n, 0) % (FZ_MAX_RAW + 1) : 0;
	unsigned flags = n > 4 ? in[4] : 0;
	uint8_t *img = calloc(1, size ? size : 1);

	if (!img)
		return NULL;
	fz_chunks(in, n, 5, img, size, NULL);
	if ((flags & 4) && size >= VXM_HEADER_SECTION) {
		uint64_t s1 = vxm_le64(img + VXM_HDR1_OFF + 8), s2 = vxm_le64(img + VXM_HDR2_OFF + 8);
		const uint8_t *h = img + (s2 > s1 ? VXM_HDR2_OFF : VXM_HDR1_OFF);
		uint32_t log_len = vxm_le32(h + 68);
		uint64_t log_off = vxm_le64(h + 72);
		if (log_off < size && log_len <= size - log_off)
			fz_fix_log(img + log_off, log_len);
	}
	if ((flags & 2) && size >= VXM_RT2_OFF + VXM_RT_SIZE) {
		fz_fix_crc(img + VXM_RT1_OFF, VXM_RT_SIZE);
		fz_fix_crc(img + VXM_RT2_OFF, VXM_RT_SIZE);
	}
	if ((flags & 1) && size >= VXM_HDR2_OFF + VXM_HDR_SIZE) {
		fz_fix_crc(img + VXM_HDR1_OFF, VXM_HDR_SIZE);
		fz_fix_crc(img + VXM_HDR2_OFF, VXM_HDR_SIZE);
	}
	*len = size;
	return img;
}

struct window {
	uint64_t off, len;
	uint8_t *top;    /* what the top shows */
	uint8_t *dest;   /* what the destination's own chain shows (NULL: zeros) */
	uint8_t *cover;  /* one byte per sector: covered by an extent */
};

struct check {
	struct vxm_chain *c;
	int dest, top;
	uint32_t lss;
	uint64_t vsize;
	uint64_t next;   /* I1: the next extent starts at or after this */
	uint64_t copy, zero, count, stop_at;
	struct window w[2];
	uint8_t *tmp;
};

static int on_extent(void *vctx, const struct vxm_extent *e)
{
	struct check *k = vctx;

	k->count++;
	FZ_ASSERT(e->len > 0 && e->len % k->lss == 0 && e->voff % k->lss == 0);
	FZ_ASSERT(e->voff >= k->next);                     /* I1 */
	FZ_ASSERT(e->voff + e->len <= k->vsize && e->voff + e->len > e->voff);
	k->next = e->voff + e->len;
	if (e->kind == VXM_EXT_COPY) {
		FZ_ASSERT(e->layer > k->dest && e->layer <= k->top); /* I2 */
		k->copy += e->len;
	} else {
		FZ_ASSERT(e->kind == VXM_EXT_ZERO);
		k->zero += e->len;
	}
	for (int i = 0; i < 2; i++) {
		struct window *w = &k->w[i];
		uint64_t a = e->voff > w->off ? e->voff : w->off;
		uint64_t b = e->voff + e->len < w->off + w->len ? e->voff + e->len : w->off + w->len;
		if (a >= b || !w->top)
			continue;
		memset(w->cover + (a - w->off) / k->lss, 1, (b - a) / k->lss);
		if (e->kind == VXM_EXT_ZERO) {
			for (uint64_t o = a; o < b; o++)
				FZ_ASSERT(w->top[o - w->off] == 0);
			continue;
		}
		struct vxm_image *src = k->c->layer[e->layer].img;
		if (vxm_image_pread(src, k->tmp, b - a, e->src_off + (a - e->voff), NULL))
			continue;
		FZ_ASSERT(!memcmp(k->tmp, w->top + (a - w->off), b - a));
	}
	if (k->stop_at && k->count == k->stop_at)
		return 4242;
	return 0;
}

static void plan_one(struct vxm_chain *c, struct vxm_image **imgs, int dest, unsigned flags,
		     uint64_t stop_at, struct window *win)
{
	struct check k = { .c = c, .dest = dest, .top = (int)c->n - 1, .lss = c->lss,
			   .vsize = c->virtual_size, .stop_at = stop_at };
	struct vxm_plan_stats st;
	struct vxm_plan_opts po = { .dest = dest, .top = -1, .new_fixed = (flags >> 4) & 1 };
	static const uint32_t bsz[4] = { 0, 1u << 20, 2u << 20, 4u << 20 };
	struct vxm_chain *dc = NULL;

	if (dest == VXM_PLAN_NEW_FILE)
		po.new_block_size = bsz[(flags >> 2) & 3];
	else if (vxm_chain_from_images(&dc, imgs, (unsigned)dest + 1, NULL))
		dc = NULL;
	k.tmp = malloc(FZ_WINDOW);
	if (!k.tmp)
		abort();
	for (int i = 0; i < 2; i++) {
		k.w[i] = win[i];
		k.w[i].cover = win[i].top ? calloc(win[i].len / c->lss + 1, 1) : NULL;
		k.w[i].dest = NULL;
		if (!win[i].top)
			continue;
		if (dc) {
			/* the destination's own view, inside its disk */
			k.w[i].dest = calloc(1, win[i].len);
			uint64_t dv = dc->virtual_size, n = 0;
			if (win[i].off < dv)
				n = dv - win[i].off < win[i].len ? dv - win[i].off : win[i].len;
			if (!k.w[i].dest || (n && vxm_chain_read(dc, k.w[i].dest, n, win[i].off, NULL))) {
				free(k.w[i].dest);
				k.w[i].dest = NULL;
				k.w[i].top = NULL; /* unreadable: no value checks here */
			}
		}
	}
	int ret = vxm_plan(c, &po, on_extent, &k, &st, NULL);
	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("VXM_FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "fuzz_chain: plan into %d: %d, %llu extents (%llu copy, %llu zero bytes)\n",
			dest, ret, (unsigned long long)k.count, (unsigned long long)k.copy,
			(unsigned long long)k.zero);
	if (stop_at && k.count == stop_at) {
		FZ_ASSERT(ret == 4242);
	} else if (ret == 0) {
		FZ_ASSERT(st.copy_bytes == k.copy && st.zero_bytes == k.zero);
		FZ_ASSERT(st.extents == k.count);
		FZ_ASSERT(st.dest_virtual_size == c->virtual_size);
		/* sectors no extent covers keep the destination's value; a new
		 * file reads zeros there when the base has no parent */
		for (int i = 0; i < 2; i++) {
			struct window *w = &k.w[i];
			if (!w->top)
				continue;
			bool zeros = dest == VXM_PLAN_NEW_FILE && !imgs[0]->m.has_parent;
			if (!w->dest && !zeros)
				continue;
			for (uint64_t s = 0; s < w->len / c->lss; s++) {
				if (w->cover[s])
					continue;
				const uint8_t *t = w->top + s * c->lss;
				for (uint32_t b = 0; b < c->lss; b++)
					FZ_ASSERT(t[b] == (w->dest ? w->dest[s * c->lss + b] : 0));
			}
		}
	}
	for (int i = 0; i < 2; i++) {
		free(k.w[i].cover);
		free(k.w[i].dest);
	}
	free(k.tmp);
	vxm_chain_release(dc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	struct vxm_image *imgs[4] = { 0 };
	uint8_t *bufs[4] = { 0 };
	struct vxm_chain *c = NULL;
	struct window win[2] = { { 0 } };

	static bool once;
	if (!once) {
		once = true;
#ifndef FZ_ASAN
		/* every run allocates several MiB (images, metadata copies):
		 * keep them in the heap instead of faulting in fresh maps */
		mallopt(M_MMAP_THRESHOLD, 64 << 20);
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
	}
	if (n < 4)
		return 0;
	unsigned nimg = 2 + data[0] % 3, flags = data[1];
	size_t p = 4;
	bool ok = true;
	for (unsigned i = 0; i < nimg && ok; i++) {
		size_t len = n - p;
		if (i + 1 < nimg) {
			len = fz_u16(data, n, p);
			p += 2;
			if (p > n)
				p = n;
			if (len > n - p)
				len = n - p;
		}
		const uint8_t *sp = data + p;
		size_t size = 0;
		p += len;
		bufs[i] = len && (sp[0] & 1) ? build_raw(sp + 1, len - 1, &size)
					     : build_memvhdx(sp, len, i, flags, &size);
		struct vxm_err err = { 0 };
		ok = bufs[i] && vxm_image_open_mem(&imgs[i], bufs[i], size, 0, &err) == 0;
		if (getenv("VXM_FUZZ_VERBOSE")) {
			char m[1400];
			fprintf(stderr, "fuzz_chain: image %u (%s, %zu bytes): %s\n", i,
				len && (sp[0] & 1) ? "raw" : "memvhdx", size,
				ok ? "opened" : vxm_err_format(&err, m, sizeof(m)));
		}
	}
	if (!ok || vxm_chain_from_images(&c, imgs, nimg, NULL))
		goto out;

	/* two windows of the top's disk */
	uint64_t vs = c->virtual_size, lss = c->lss;
	uint64_t o2 = vs / 256 * data[2] / lss * lss;
	win[0].off = 0;
	win[1].off = o2 < vs ? o2 : 0;
	for (int i = 0; i < 2; i++) {
		uint64_t left = vs - win[i].off;
		win[i].len = (left < FZ_WINDOW ? left : FZ_WINDOW) / lss * lss;
		if (!win[i].len)
			continue;
		win[i].top = malloc(win[i].len);
		if (!win[i].top)
			abort();
		if (vxm_chain_read(c, win[i].top, win[i].len, win[i].off, NULL)) {
			free(win[i].top);
			win[i].top = NULL;
		}
	}

	/* the planner walks the whole disk: keep it to small ones */
	const struct vxm_image *top = imgs[nimg - 1];
	if (top->g.payload_blocks <= FZ_MAX_PLAN_BLOCKS) {
		for (int d = VXM_PLAN_NEW_FILE; d < (int)nimg - 1; d++)
			plan_one(c, imgs, d, flags, d == VXM_PLAN_NEW_FILE ? data[3] : 0, win);
	}
out:
	for (int i = 0; i < 2; i++)
		free(win[i].top);
	vxm_chain_release(c);
	for (unsigned i = 0; i < 4; i++) {
		vxm_image_close(imgs[i]);
		free(bufs[i]);
	}
	return 0;
}
