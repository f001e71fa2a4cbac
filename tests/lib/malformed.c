/* tests/lib/malformed.c: see malformed.h. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "malformed.h"
#include "vhdx/endian.h"

static char *scratch;

static const char *scratch_dir(void)
{
	if (!scratch)
		scratch = tl_mkdtemp("malformed");
	return scratch;
}

void mf_cleanup(void)
{
	if (scratch)
		tl_sh("rm -rf '%s'", scratch);
	free(scratch);
	scratch = NULL;
}

const char *mf_fmt(const char *fmt, ...)
{
	static char ring[8][512];
	static unsigned next;
	char *out = ring[next++ % 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out, sizeof(ring[0]), fmt, ap);
	va_end(ap);
	return out;
}

/* ---- the pristine layout, read raw ----------------------------------------------- */

static void raw(int fd, uint64_t off, void *buf, size_t n)
{
	assert_int_equal(pread(fd, buf, n, (off_t)off), (ssize_t)n);
}

static uint64_t raw64(int fd, uint64_t off)
{
	uint8_t b[8];
	raw(fd, off, b, 8);
	return vxm_le64(b);
}

static uint32_t raw32(int fd, uint64_t off)
{
	uint8_t b[4];
	raw(fd, off, b, 4);
	return vxm_le32(b);
}

static uint16_t raw16(int fd, uint64_t off)
{
	uint8_t b[2];
	raw(fd, off, b, 2);
	return vxm_le16(b);
}

static void read_tables(int fd, struct mf_layout *L)
{
	/* headers: the current one has the larger sequence number (a tie
	 * means identical copies) */
	for (int i = 0; i < 2; i++)
		L->seq[i] = raw64(fd, (i ? VXM_HDR2_OFF : VXM_HDR1_OFF) + 8);
	uint64_t cur = L->seq[1] >= L->seq[0] ? VXM_HDR2_OFF : VXM_HDR1_OFF;
	raw(fd, cur + 48, L->log_guid.b, 16);
	L->log_len = raw32(fd, cur + 68);
	L->log = raw64(fd, cur + 72);

	L->rt_count = raw32(fd, VXM_RT1_OFF + 8);
	assert_true(L->rt_count >= 2 && L->rt_count < 16);
	L->rt_bat = L->rt_meta = UINT32_MAX;
	for (unsigned i = 0; i < L->rt_count; i++) {
		struct vxm_guid g;
		raw(fd, RT_ENTRY(VXM_RT1_OFF, i), g.b, 16);
		uint64_t off = raw64(fd, RT_ENTRY(VXM_RT1_OFF, i) + 16);
		uint32_t len = raw32(fd, RT_ENTRY(VXM_RT1_OFF, i) + 24);
		if (vxm_guid_eq(&g, &VXM_GUID_REGION_BAT)) {
			L->rt_bat = i;
			L->bat = off;
			L->bat_len = len;
		} else if (vxm_guid_eq(&g, &VXM_GUID_REGION_METADATA)) {
			L->rt_meta = i;
			L->meta = off;
			L->meta_len = len;
		}
	}
	assert_true(L->rt_bat != UINT32_MAX && L->rt_meta != UINT32_MAX);

	L->mt_count = raw16(fd, L->meta + 10);
	assert_true(L->mt_count <= MF_MAX_ITEMS);
	L->mt_params = L->mt_vsize = L->mt_lss = L->mt_diskid = L->mt_loc = -1;
	for (unsigned i = 0; i < L->mt_count; i++) {
		raw(fd, MT_ENTRY(L, i), L->mt[i].id.b, 16);
		L->mt[i].off = raw32(fd, MT_ENTRY(L, i) + 16);
		L->mt[i].len = raw32(fd, MT_ENTRY(L, i) + 20);
		L->mt[i].flags = raw32(fd, MT_ENTRY(L, i) + 24);
		const struct vxm_guid *id = &L->mt[i].id;
		int *slot = vxm_guid_eq(id, &VXM_GUID_META_FILE_PARAMS)	       ? &L->mt_params
			    : vxm_guid_eq(id, &VXM_GUID_META_VIRTUAL_SIZE)     ? &L->mt_vsize
			    : vxm_guid_eq(id, &VXM_GUID_META_LOGICAL_SECTOR)   ? &L->mt_lss
			    : vxm_guid_eq(id, &VXM_GUID_META_DISK_ID)	       ? &L->mt_diskid
			    : vxm_guid_eq(id, &VXM_GUID_META_PARENT_LOCATOR) ? &L->mt_loc
									       : NULL;
		if (slot && !(L->mt[i].flags & VXM_META_IS_USER))
			*slot = (int)i;
	}
	assert_true(L->mt_params >= 0 && L->mt_vsize >= 0 && L->mt_lss >= 0 && L->mt_diskid >= 0);
	L->block_size = raw32(fd, ITEM(L, L->mt_params));
	L->has_parent = raw32(fd, ITEM(L, L->mt_params) + 4) & 2;
	L->vsize = raw64(fd, ITEM(L, L->mt_vsize));
	L->lss = raw32(fd, ITEM(L, L->mt_lss));
	L->spb = L->block_size / L->lss;
	L->chunk_ratio = (VXM_SECTORS_PER_CHUNK * L->lss) / L->block_size;
	L->blocks = (L->vsize + L->block_size - 1) / L->block_size;
}

static void read_locator(int fd, struct mf_layout *L)
{
	L->loc = ITEM(L, L->mt_loc);
	L->loc_count = raw16(fd, L->loc + 18);
	assert_true(L->loc_count <= MF_MAX_KV);
	for (unsigned i = 0; i < L->loc_count; i++) {
		uint8_t u16[64];
		L->kv[i].key_off = raw32(fd, LOC_ENTRY(L, i));
		L->kv[i].val_off = raw32(fd, LOC_ENTRY(L, i) + 4);
		L->kv[i].key_len = raw16(fd, LOC_ENTRY(L, i) + 8);
		L->kv[i].val_len = raw16(fd, LOC_ENTRY(L, i) + 10);
		unsigned n = L->kv[i].key_len / 2 < sizeof(L->kv[i].key) - 1 ? L->kv[i].key_len / 2
									  : sizeof(L->kv[i].key) - 1;
		raw(fd, L->loc + L->kv[i].key_off, u16, 2 * n);
		for (unsigned j = 0; j < n; j++) /* the keys are ASCII */
			L->kv[i].key[j] = (char)u16[2 * j];
		L->kv[i].key[n] = 0;
	}
}

static void read_log(int fd, struct mf_layout *L)
{
	for (uint32_t pos = 0; pos < L->log_len; pos += VXM_LOG_SECTOR) {
		uint64_t at = L->log + pos;
		if (raw32(fd, at) != 0x65676f6c) /* "loge" */
			continue;
		assert_true(L->nlog < MF_MAX_LOG);
		struct mf_logent *e = &L->le[L->nlog++];
		e->off = at;
		e->pos = pos;
		e->len = raw32(fd, at + 8);
		e->tail = raw32(fd, at + 12);
		e->seq = raw64(fd, at + 16);
		e->ndesc = raw32(fd, at + 24);
		raw(fd, at + 32, e->guid.b, 16);
		e->flushed = raw64(fd, at + 48);
		e->last = raw64(fd, at + 56);
	}
}

static void read_layout(const char *path, struct mf_layout *L)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	memset(L, 0, sizeof(*L));
	L->size = (uint64_t)st.st_size;
	read_tables(fd, L);
	if (L->mt_loc >= 0)
		read_locator(fd, L);
	if (!vxm_guid_is_zero(&L->log_guid))
		read_log(fd, L);
	close(fd);
}

unsigned mf_kv(const struct mf_layout *L, const char *key)
{
	for (unsigned i = 0; i < L->loc_count; i++)
		if (!strcmp(L->kv[i].key, key))
			return i;
	print_error("no locator key %s\n", key);
	fail();
	return 0;
}

const struct mf_logent *mf_log_head(const struct mf_layout *L)
{
	const struct mf_logent *h = NULL;
	for (unsigned i = 0; i < L->nlog; i++)
		if (vxm_guid_eq(&L->le[i].guid, &L->log_guid) && (!h || L->le[i].seq > h->seq))
			h = &L->le[i];
	assert_non_null(h);
	return h;
}

const struct mf_logent *mf_log_at(const struct mf_layout *L, uint32_t pos)
{
	for (unsigned i = 0; i < L->nlog; i++)
		if (L->le[i].pos == pos)
			return &L->le[i];
	return NULL;
}

const struct mf_logent *mf_log_before(const struct mf_layout *L, const struct mf_logent *e)
{
	const struct mf_logent *p = NULL;
	for (unsigned i = 0; i < L->nlog; i++)
		if (vxm_guid_eq(&L->le[i].guid, &L->log_guid) && L->le[i].seq < e->seq &&
		    (!p || L->le[i].seq > p->seq))
			p = &L->le[i];
	assert_non_null(p);
	return p;
}

unsigned mf_log_span(const struct mf_layout *L, const struct mf_logent *e)
{
	unsigned n = 0;
	assert_true(e->tail <= e->pos);
	for (unsigned i = 0; i < L->nlog; i++)
		n += vxm_guid_eq(&L->le[i].guid, &L->log_guid) && L->le[i].pos >= e->tail &&
		     L->le[i].pos <= e->pos;
	return n;
}

void mf_bat_states_after(struct mc *c, const struct mf_logent *e, uint64_t counts[8])
{
	const struct mf_layout *L = c->L;
	uint8_t *bat = malloc(L->bat_len), d[32], *sec = malloc(VXM_LOG_SECTOR);
	uint32_t data = 0, dsec = (e->ndesc + 2 + 127) / 128; /* descriptor sectors */

	assert_true(bat && sec);
	rd(c, L->bat, bat, L->bat_len);
	for (uint32_t i = 0; i < e->ndesc; i++) {
		rd(c, e->off + 64 + 32 * (uint64_t)i, d, sizeof(d));
		uint64_t to = vxm_le64(d + 16), len = VXM_LOG_SECTOR;
		if (!memcmp(d, "zero", 4)) {
			len = vxm_le64(d + 8);
			memset(sec, 0, VXM_LOG_SECTOR);
		} else {
			/* leading 8 bytes and trailing 4 live in the descriptor */
			rd(c, e->off + VXM_LOG_SECTOR * (uint64_t)(dsec + data++), sec, VXM_LOG_SECTOR);
			memcpy(sec, d + 8, 8);
			memcpy(sec + VXM_LOG_SECTOR - 4, d + 4, 4);
		}
		for (uint64_t o = to; o < to + len; o += VXM_LOG_SECTOR)
			if (o >= L->bat && o + VXM_LOG_SECTOR <= L->bat + L->bat_len)
				memcpy(bat + (o - L->bat), sec, VXM_LOG_SECTOR);
	}
	memset(counts, 0, 8 * sizeof(counts[0]));
	for (uint64_t b = 0; b < L->blocks; b++)
		counts[vxm_le64(bat + 8 * (b + b / L->chunk_ratio)) & 7]++;
	free(bat);
	free(sec);
}

void mf_bat_states(struct mc *c, uint64_t counts[8])
{
	memset(counts, 0, 8 * sizeof(counts[0]));
	for (uint64_t b = 0; b < c->L->blocks; b++)
		counts[get64(c, BAT_ENTRY(c->L, b + b / c->L->chunk_ratio)) & 7]++;
}

uint64_t mf_find_block(struct mc *c, uint64_t from, uint64_t to, unsigned st)
{
	for (uint64_t b = from; b < to && b < c->L->blocks; b++)
		if ((get64(c, BAT_ENTRY(c->L, b + b / c->L->chunk_ratio)) & 7) == st)
			return b;
	return UINT64_MAX;
}

/* ---- sources ---------------------------------------------------------------------- */

const char *mf_standin(enum fxs_kind k)
{
	static char *built[FXS_COUNT];
	if (!built[k]) {
		char *p;
		assert_true(asprintf(&p, "%s/standin-%s", scratch_dir(), fxs_info(k)->file) > 0);
		assert_int_equal(fxs_build(k, p), 0);
		built[k] = p;
	}
	return built[k];
}

void mc_begin(struct mc *c, void **state, enum fxs_kind k, const char *tag)
{
	static struct mf_layout layouts[2][FXS_COUNT];
	static bool known[2][FXS_COUNT];
	enum mf_source src = *(const enum mf_source *)*state;
	char *fx = NULL;
	const char *from;

	if (src == MF_FIXTURE) {
		fx = tl_fixture(fxs_info(k)->folder, fxs_info(k)->file);
		assert_non_null(fx);
		from = fx;
	} else {
		from = mf_standin(k);
	}
	if (!known[src][k]) {
		read_layout(from, &layouts[src][k]);
		known[src][k] = true;
	}
	c->src = src;
	c->L = &layouts[src][k];
	/* distinct names: VXM_MALFORMED_SAVE keeps both variants */
	assert_true(asprintf(&c->path, "%s/%s%s.vhdx", scratch_dir(),
			     src == MF_STANDIN ? "standin-" : "", tag) > 0);
	assert_int_equal(tl_copy_file(from, c->path), 0);
	c->fd = open(c->path, O_RDWR);
	assert_true(c->fd >= 0);
	free(fx);
}

/* ---- byte surgery -------------------------------------------------------------- */

void wr(struct mc *c, uint64_t off, const void *buf, size_t n)
{
	assert_int_equal(pwrite(c->fd, buf, n, (off_t)off), (ssize_t)n);
}

void rd(struct mc *c, uint64_t off, void *buf, size_t n)
{
	assert_int_equal(pread(c->fd, buf, n, (off_t)off), (ssize_t)n);
}

void put16(struct mc *c, uint64_t off, uint16_t v)
{
	uint8_t b[2];
	vxm_put_le16(b, v);
	wr(c, off, b, 2);
}

void put32(struct mc *c, uint64_t off, uint32_t v)
{
	uint8_t b[4];
	vxm_put_le32(b, v);
	wr(c, off, b, 4);
}

void put64(struct mc *c, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	vxm_put_le64(b, v);
	wr(c, off, b, 8);
}

uint64_t get64(struct mc *c, uint64_t off)
{
	uint8_t b[8];
	rd(c, off, b, 8);
	return vxm_le64(b);
}

void poke(struct mc *c, uint64_t off, uint8_t v)
{
	wr(c, off, &v, 1);
}

void flip(struct mc *c, uint64_t off)
{
	uint8_t v;
	rd(c, off, &v, 1);
	v ^= 0xff;
	wr(c, off, &v, 1);
}

void fix_crc(struct mc *c, uint64_t off, size_t len)
{
	uint8_t *b = malloc(len);
	assert_non_null(b);
	rd(c, off, b, len);
	put32(c, off + 4, vxm_crc32c_skip(b, len, 4));
	free(b);
}

void fix_hdr(struct mc *c, uint64_t slot) { fix_crc(c, slot, VXM_HDR_SIZE); }
void fix_rt(struct mc *c, uint64_t rt) { fix_crc(c, rt, VXM_RT_SIZE); }

void cut(struct mc *c, uint64_t size)
{
	assert_int_equal(ftruncate(c->fd, (off_t)size), 0);
}

void copy_range(struct mc *c, uint64_t from, uint64_t to, size_t n)
{
	uint8_t *b = malloc(n);
	assert_non_null(b);
	rd(c, from, b, n);
	wr(c, to, b, n);
	free(b);
}

void rt_put64_both(struct mc *c, uint64_t rel, uint64_t v)
{
	put64(c, VXM_RT1_OFF + rel, v);
	put64(c, VXM_RT2_OFF + rel, v);
	fix_rt(c, VXM_RT1_OFF);
	fix_rt(c, VXM_RT2_OFF);
}

void rt_put32_both(struct mc *c, uint64_t rel, uint32_t v)
{
	put32(c, VXM_RT1_OFF + rel, v);
	put32(c, VXM_RT2_OFF + rel, v);
	fix_rt(c, VXM_RT1_OFF);
	fix_rt(c, VXM_RT2_OFF);
}

/* ---- expectations ---------------------------------------------------------------- */

static void need(const char *hay, const char *needle, const char *what)
{
	if (!hay || !strstr(hay, needle)) {
		print_error("%s: expected \"%s\" in:\n%s\n", what, needle, hay ? hay : "(null)");
		fail();
	}
}

static void sha(const char *path, char out[65])
{
	assert_int_equal(tl_sha256_file(path, out), 0);
}

/* (c): the program's exit code and what it prints. */
static void run_cli(const struct mc *c, const struct want *w, const char *args, int want_exit)
{
	char hex[40];
	int st;
	char *out = tl_sh_out(&st, "'%s' %s '%s' 2>&1", tl_bin(), args, c->path);

	assert_non_null(out);
	if (st != want_exit) {
		print_error("vhdxmerge %s %s: exit %d, expected %d\n%s\n", args, c->path, st,
			    want_exit, out);
		fail();
	}
	if (want_exit) {
		snprintf(hex, sizeof(hex), "0x%llx)", (unsigned long long)w->off);
		need(out, c->path, args);
		need(out, w->what, args);
		if (w->what2)
			need(out, w->what2, args);
		need(out, hex, args);
	}
	free(out);
}

static bool finding_matches(const struct vxm_finding *f, const struct want *w)
{
	return f->severity == (w->finding > 0) && f->off == w->off && strstr(f->msg, w->what) &&
	       (!w->what2 || strstr(f->msg, w->what2));
}

void mc_run(struct mc *c, const struct want *w)
{
	struct vxm_err err = { 0 };
	struct vxm_image *img = NULL;
	char before[65], after[65];
	int ret, problems = 0;

	assert_int_equal(close(c->fd), 0);
	c->fd = -1;
	sha(c->path, before);
	/* tests/fuzz/make_seeds.sh turns every damaged file into fuzzer seeds. */
	const char *save = getenv("VXM_MALFORMED_SAVE");
	if (save && *save)
		assert_int_equal(tl_sh("cp --sparse=always '%s' '%s/'", c->path, save), 0);

	/* (a), (b) through the library */
	ret = vxm_image_open(&img, NULL, c->path, 0, &err);
	if (ret != w->code) {
		char buf[1400];
		print_error("open: %d (%s), expected %d: %s\n", ret, vxm_strerror(ret), w->code,
			    vxm_err_format(&err, buf, sizeof(buf)));
		fail();
	}
	if (w->code) {
		assert_null(img);
		assert_int_equal(err.code, w->code);
		need(err.msg, w->what, "err.msg");
		if (w->what2)
			need(err.msg, w->what2, "err.msg");
		if (err.off != w->off) {
			print_error("err.off 0x%llx, expected 0x%llx: %s\n",
				    (unsigned long long)err.off, (unsigned long long)w->off, err.msg);
			fail();
		}
		assert_string_equal(err.path, c->path);
	} else {
		problems = vxm_image_check(img, &err);
		assert_true(problems >= 0);
		unsigned n = vxm_image_findings(img, NULL, 0);
		struct vxm_finding *f = calloc(n + 1, sizeof(*f));
		bool found = false;
		assert_non_null(f);
		vxm_image_findings(img, f, n);
		for (unsigned i = 0; i < n && !found; i++)
			found = w->finding >= 0 && finding_matches(&f[i], w);
		if (w->finding < 0 ? problems != 0 : !found || (problems > 0) != (w->finding > 0)) {
			print_error("check: %d problems, %u findings; expected %s at 0x%llx \"%s\"\n",
				    problems, n,
				    w->finding > 0 ? "a problem" : w->finding == 0 ? "a note" : "none",
				    (unsigned long long)w->off, w->what ? w->what : "");
			for (unsigned i = 0; i < n; i++)
				print_error("  [%d] 0x%llx %s\n", f[i].severity,
					    (unsigned long long)f[i].off, f[i].msg);
			fail();
		}
		free(f);
		if (w->lookup) {
			struct vxm_err le = { 0 };
			struct vxm_run run;
			assert_int_equal(vxm_image_lookup(img, w->sector, 1, &run, &le), -VXM_ECORRUPT);
			need(le.msg, w->what, "lookup err.msg");
			assert_int_equal(le.off, w->off);
		}
		vxm_image_close(img);
	}

	/* (c) through the program */
	run_cli(c, w, "info", w->code ? vxm_exit_code(w->code) : 0);
	run_cli(c, w, "check", w->code || problems ? 1 : 0);
	sha(c->path, after);
	assert_string_equal(before, after);

	/* (d) --repair writes nothing to a damaged file that is not dirty */
	if (!w->dirty) {
		run_cli(c, w, "check --repair",
			w->log_refused ? vxm_exit_code(w->code) : w->code || problems ? 1 : 0);
		sha(c->path, after);
		assert_string_equal(before, after);
	}
	unlink(c->path);
	free(c->path);
}

void expect_error(struct mc *c, int code, uint64_t off, const char *what, const char *what2)
{
	struct want w = { .code = code, .off = off, .what = what, .what2 = what2 };
	mc_run(c, &w);
}

void expect_log_refusal(struct mc *c, int code, uint64_t off, const char *what, const char *what2)
{
	struct want w = { .code = code, .off = off, .what = what, .what2 = what2,
			  .log_refused = true };
	mc_run(c, &w);
}

void expect_problem(struct mc *c, uint64_t off, const char *what, const char *what2)
{
	struct want w = { .off = off, .what = what, .what2 = what2, .finding = 1 };
	mc_run(c, &w);
}

void expect_problem_on_read(struct mc *c, uint64_t off, const char *what, uint64_t sector)
{
	struct want w = { .off = off, .what = what, .finding = 1, .lookup = true, .sector = sector };
	mc_run(c, &w);
}
