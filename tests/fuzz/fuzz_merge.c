/* tests/fuzz/fuzz_merge.c: differential merge fuzzer.
 *
 * Each input describes a small chain (2-4 layers, tests/lib/memvhdx images)
 * and a list of structural mutations applied to its files, checksums
 * recomputed unless the mutation asks to leave them broken.  The files are
 * written into a scratch directory (fuzz_merge_files.h says why not memory
 * files) and the operations the CLI runs are run on them, every I/O through
 * one inline context (vxm_merge_opts.io):
 *
 *   oracle   what the chain's top reads (vxm_chain_open + vxm_chain_read,
 *            every byte), and what a child of TOP reads, BEFORE anything;
 *   plan     vxm_plan into the destination, read-only (`vhdxmerge plan`);
 *   convert  vxm_merge_run with out = out.vhdx (picked by the input);
 *   merge    vxm_merge_run --dry-run, then the real one, into the base or
 *            --into a middle layer (picked by the input), TOP's child
 *            re-pointed (found next to it, or given with --rebase).
 *
 * After each operation exactly one of these must hold, anything else aborts
 * as a finding named by its class:
 *   (a) it returned an error and every file is byte-identical to what the
 *       harness wrote (nothing created, nothing removed) -- else
 *       "changed-on-refusal" (a dry run or a plan must always leave them so);
 *   (b) it succeeded and the destination reads exactly the oracle, every
 *       byte; for a merge also the re-pointed child (its own view) and, with
 *       --keep-merged, TOP -- else "view-differs"; a success that leaves a
 *       journal or a partial file behind, changes a file it must not (a
 *       layer below the destination, a source of a convert) is
 *       "changed-on-success".
 * A chain whose view could not be opened or read whole before must be
 * refused: a success on it is "accepted-unreadable" (the view is then read
 * in 64 KiB pieces, and the pieces that did read must read the same after
 * the operation, else view-differs).
 * Crashes and sanitizer reports are the class "crash", libFuzzer's
 * timeouts "hang"; an operation that leaves a file of the context open
 * trips FZ_ASSERT.
 *
 * Known classes (VXM_FUZZ_MERGE_KNOWN, comma-separated [CLASS:]TRAIT, e.g.
 * "changed-on-refusal:dirty,accepted-unreadable:check,vsize" or "all"):
 * when a finding is made, the bytes the harness wrote are opened from
 * memory and checked (vxm_image_check), giving the input's traits:
 * "overlap" (check reports two objects overlapping: two BAT entries sharing
 * a payload block, an entry in the log, metadata or BAT region), "check"
 * (any other problem check reports), "vsize" (the layers' virtual sizes
 * differ), "dirty" (a LogGuid is set).  A finding of a listed class on an
 * input with a listed trait is counted and the input dropped instead of
 * aborting, so that exploration continues while those bugs are open.  Every
 * finding message names the traits.
 *
 * Speed: the files are rebuilt only when their description changes, a file
 * a refusal left intact is rewritten only where it changes, and inotify
 * says which files an operation touched (fuzz_merge_files.h).
 *
 * The input and the mutations: fuzz_merge_input.h.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"
#include "engine/engine.h"

#include <malloc.h>
#include <stdarg.h>

/* The builder (compiled in: the replay build links only vxm_engine) and the
 * file helpers are the harness's own machinery: without coverage
 * instrumentation, which made mv_build's per-byte payload loop a fifth of
 * every run and would only add features that say nothing of the engine. */
#ifdef __clang__
#pragma clang attribute push(__attribute__((no_sanitize("coverage"))), apply_to = function)
#endif
#include "../lib/memvhdx.c"
#include "fuzz_merge_files.h"
#ifdef __clang__
#pragma clang attribute pop
#endif
#include "fuzz_merge_input.h"

#define FM_MAX_VIEW (64ull << 20) /* a larger disk is not read whole at every run */

enum { T_OVERLAP = 1, T_CHECK = 2, T_VSIZE = 4, T_DIRTY = 8, T_NONE = 16 };

static struct vxm_io g_io;
static unsigned traits;
static bool traits_known;
static char traits_why[600];
static int verbose;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	if (!verbose)
		return;
	va_start(ap, fmt);
	fprintf(stderr, "fuzz_merge: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}


/* ---- traits: what check and the metadata say about the files --------------------- */

/* From the bytes the harness wrote (held until the run ends), only when a
 * finding needs them or VXM_FUZZ_VERBOSE asks: opening and checking every
 * file at every run cost a tenth of the time. */
static void find_traits(void)
{
	size_t w = 0;
	uint64_t vs0 = 0;

	traits = 0;
	traits_why[0] = 0;
	traits_known = true;
	for (unsigned i = 0; i < nfiles; i++) {
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		if (vxm_image_open_mem(&img, F[i].buf, F[i].len, 0, &err))
			continue;
		unsigned t = 0;
		if (img->log_dirty)
			t |= T_DIRTY;
		if (i < nlayers) {
			if (!i)
				vs0 = img->m.virtual_size;
			else if (img->m.virtual_size != vs0)
				t |= T_VSIZE;
		}
		const char *first = NULL;
		if (vxm_image_check(img, &err) > 0) {
			struct vxm_finding fd[64];
			unsigned nf = vxm_image_findings(img, fd, 64);
			for (unsigned k = 0; k < nf && k < 64; k++) {
				if (!fd[k].severity)
					continue;
				if (strstr(fd[k].msg, "overlaps"))
					t |= T_OVERLAP;
				else if (!strstr(fd[k].msg, "log is dirty"))
					t |= T_CHECK;
				if (!first)
					first = fd[k].msg;
			}
		}
		if (t && w < sizeof(traits_why))
			w += (size_t)snprintf(traits_why + w, sizeof(traits_why) - w, "%s%s:%s%s%s%s%s%.160s",
					      w ? "; " : "", F[i].name, (t & T_OVERLAP) ? " overlap" : "",
					      (t & T_CHECK) ? " check" : "", (t & T_VSIZE) ? " vsize" : "",
					      (t & T_DIRTY) ? " dirty" : "", first ? ": " : "",
					      first ? first : "");
		traits |= t;
		vxm_image_close(img);
	}
}

/* VXM_FUZZ_MERGE_KNOWN: comma-separated [CLASS:]TRAIT entries, TRAIT one of
 * overlap, check, vsize, dirty, none (no trait at all) or all (any input);
 * an entry without CLASS matches every class. */
#define FM_MAX_KNOWN 16
static struct known {
	char cls[32];
	unsigned mask;
	unsigned long count;
} known[FM_MAX_KNOWN];
static unsigned nknown;
/* VXM_FUZZ_MERGE_ONLY (same syntax): every finding but those listed is
 * tolerated, so that -minimize_crash keeps the finding it started from */
static bool only;

static void parse_known(const char *s)
{
	static const char *names[5] = { "overlap", "check", "vsize", "dirty", "none" };
	while (s && *s && nknown < FM_MAX_KNOWN) {
		size_t n = strcspn(s, ",");
		char e[64];
		snprintf(e, sizeof(e), "%.*s", (int)(n < 63 ? n : 63), s);
		s += n + (s[n] == ',');
		struct known *k = &known[nknown];
		char *colon = strchr(e, ':'), *t = colon ? colon + 1 : e;
		if (colon)
			snprintf(k->cls, sizeof(k->cls), "%.*s", (int)(colon - e), e);
		for (unsigned i = 0; i < 5; i++)
			if (!strcmp(t, names[i]) || !strcmp(t, "all"))
				k->mask |= 1u << i;
		if (!k->mask) {
			fprintf(stderr, "fuzz_merge: VXM_FUZZ_MERGE_KNOWN: no trait in '%s'\n", e);
			abort();
		}
		nknown++;
	}
}

static void report_tolerated(void)
{
	for (unsigned i = 0; i < nknown; i++)
		if (known[i].count)
			fprintf(stderr, "fuzz_merge: %lu finding(s) tolerated as known (%s%s%#x)\n",
				known[i].count, known[i].cls, known[i].cls[0] ? ":" : "", known[i].mask);
}

/* A finding: aborts, unless the input has a trait listed as known (then
 * returns true: the caller drops the input). */
static bool finding(const char *cls, const char *what, int ret, const struct vxm_err *err,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static bool finding(const char *cls, const char *what, int ret, const struct vxm_err *err,
		    const char *fmt, ...)
{
	char detail[1024], em[1400] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (!traits_known)
		find_traits();
	bool listed = false;
	for (unsigned i = 0; i < nknown && !listed; i++) {
		if ((known[i].cls[0] && strcmp(known[i].cls, cls)) ||
		    !(traits ? traits & known[i].mask : known[i].mask & T_NONE))
			continue;
		known[i].count++;
		listed = true;
	}
	if (listed != only) {
		say("tolerated %s (%s): %s; traits: %s", cls, what, detail, traits_why);
		return true;
	}
	if (ret && err)
		vxm_err_format(err, em, sizeof(em));
	fprintf(stderr,
		"fuzz_merge: FINDING %s: %s returned %d (%s)%s%s: %s\n"
		"fuzz_merge: traits of the input: %s\n",
		cls, what, ret, ret ? vxm_strerror(ret) : "success", em[0] ? ": " : "", em, detail,
		traits_why[0] ? traits_why : "none (every file passes check)");
	if (getenv("VXM_FUZZ_KEEP"))
		fprintf(stderr, "fuzz_merge: the files are in %s\n", fm_dir);
	fm_dir_remove(); /* abort() runs no atexit handler */
	abort();
}

/* ---- views -----------------------------------------------------------------------
 * A view is the whole disk a chain top shows.  When a read of it fails (a
 * BAT entry the reader refuses), it is read again in FM_UNIT pieces: the
 * ones that read are still an oracle, the others are marked bad. */

#define FM_UNIT (64u * 1024)

struct view {
	uint8_t *p;                 /* NULL: the chain could not be opened */
	uint64_t len;
	uint8_t *bad;               /* per FM_UNIT: unreadable (NULL: none is) */
	uint64_t nbad;
	struct vxm_err err;         /* why the chain or its first bad piece failed */
	uint32_t lss;
};

static void view_free(struct view *v)
{
	free(v->p);
	free(v->bad);
	memset(v, 0, sizeof(*v));
}

/* 0, or the error of vxm_chain_open (-EFBIG: too large to read whole). */
static int view_of(const char *name, struct view *v)
{
	char path[1024];
	struct vxm_chain *c;
	struct vxm_chain_opts co = { .io = &g_io };
	fm_path(path, sizeof(path), name);
	memset(v, 0, sizeof(*v));
	int ret = vxm_chain_open(&c, path, &co, &v->err);
	if (ret)
		return ret;
	v->len = vxm_chain_virtual_size(c);
	v->lss = vxm_chain_sector_size(c);
	if (v->len > FM_MAX_VIEW) {
		vxm_chain_close(c);
		return -EFBIG;
	}
	v->p = malloc(v->len ? v->len : 1);
	if (!v->p)
		abort();
	if (vxm_chain_read(c, v->p, v->len, 0, &v->err)) {
		uint64_t n = (v->len + FM_UNIT - 1) / FM_UNIT;
		v->bad = calloc(n + 1, 1);
		if (!v->bad)
			abort();
		vxm_err_clear(&v->err);
		for (uint64_t u = 0; u < n; u++) {
			uint64_t off = u * FM_UNIT, l = v->len - off < FM_UNIT ? v->len - off : FM_UNIT;
			struct vxm_err e = { 0 };
			if (vxm_chain_read(c, v->p + off, l, off, &e)) {
				v->bad[u] = 1;
				memset(v->p + off, 0, l);
				if (!v->nbad++)
					v->err = e;
			}
		}
	}
	vxm_chain_close(c);
	return 0;
}

/* Does name read exactly what want read (its readable pieces)?  Returns
 * false after a finding was tolerated. */
static bool view_equals(const char *what, const char *name, const struct view *want, uint32_t lss)
{
	struct view got;
	int ret = view_of(name, &got);
	if (ret)
		return !finding("view-differs", what, 0, NULL, "%s cannot be opened afterwards: %s", name,
				vxm_err_format(&got.err, (char[1400]){ 0 }, 1400));
	bool ok = true;
	if (got.len != want->len) {
		ok = !finding("view-differs", what, 0, NULL, "%s: virtual size %llu, the chain showed %llu",
			      name, (unsigned long long)got.len, (unsigned long long)want->len);
		goto out;
	}
	for (uint64_t off = 0; off < want->len && ok; off += FM_UNIT) {
		uint64_t u = off / FM_UNIT, l = want->len - off < FM_UNIT ? want->len - off : FM_UNIT;
		if (want->bad && want->bad[u])
			continue;
		if (got.bad && got.bad[u]) {
			ok = !finding("view-differs", what, 0, NULL,
				      "%s: [0x%llx, +%llu) cannot be read any more (%s); the chain read it",
				      name, (unsigned long long)off, (unsigned long long)l,
				      vxm_err_format(&got.err, (char[1400]){ 0 }, 1400));
		} else if (memcmp(got.p + off, want->p + off, l)) {
			uint64_t at = off;
			while (got.p[at] == want->p[at])
				at++;
			ok = !finding("view-differs", what, 0, NULL,
				      "%s: sector %llu (byte 0x%llx) reads 0x%02x, the chain showed 0x%02x",
				      name, (unsigned long long)(at / lss), (unsigned long long)at,
				      got.p[at], want->p[at]);
		}
	}
out:
	view_free(&got);
	return ok;
}

/* The operation succeeded although the chain's view could not be opened or
 * read whole: bad input must be refused before anything is written.  (The
 * readable pieces were compared first: a difference there is view-differs.) */
static bool accepted_unreadable(const char *what, const struct view *o)
{
	if (o->p && !o->bad)
		return true;
	char em[1400];
	vxm_err_format(&o->err, em, sizeof(em));
	if (!o->p)
		return !finding("accepted-unreadable", what, 0, NULL,
				"the chain could not be opened before (%s) but %s succeeded", em, what);
	return !finding("accepted-unreadable", what, 0, NULL,
			"%llu of %llu 64 KiB pieces of the chain's view could not be read before (first: %s) "
			"but %s succeeded; the rest reads as before",
			(unsigned long long)o->nbad, (unsigned long long)((o->len + FM_UNIT - 1) / FM_UNIT),
			em, what);
}

static bool journal_left(char *name, size_t cap)
{
	DIR *d = opendir(fm_dir);
	struct dirent *e;
	bool found = false;
	while (!found && d && (e = readdir(d)))
		if (strstr(e->d_name, ".vxmerge-")) {
			snprintf(name, cap, "%s", e->d_name);
			found = true;
		}
	if (d)
		closedir(d);
	return found;
}

/* ---- the run ------------------------------------------------------------------------ */

struct run {
	struct fm_snap snap;
	struct view oracle;         /* what TOP showed */
	uint32_t lss;
	int ochild;                 /* file index of TOP's child, -1 */
	struct view child;          /* what it showed */
	bool intact;                /* the files are as written (verified) */
};

/* (a) or (b) for a convert into out.vhdx. */
static bool check_convert(struct run *R, int ret, const struct vxm_err *err)
{
	char why[1200], left[256];
	if (ret) {
		if (!fm_dir_same(&R->snap, NULL, why, sizeof(why)))
			return !finding("changed-on-refusal", "convert", ret, err, "%s", why);
		return R->intact = true;
	}
	if (!R->oracle.p || !view_equals("convert", "out.vhdx", &R->oracle, R->lss))
		return R->oracle.p ? false : accepted_unreadable("convert", &R->oracle);
	if (journal_left(left, sizeof(left)))
		return !finding("changed-on-success", "convert", 0, NULL, "%s is left over", left);
	if (!fm_dir_same(&R->snap, "out.vhdx", why, sizeof(why)))
		return !finding("changed-on-success", "convert", 0, NULL, "a source: %s", why);
	if (!accepted_unreadable("convert", &R->oracle))
		return false;
	char path[1024];
	fm_path(path, sizeof(path), "out.vhdx");
	unlink(path);
	return R->intact = true;
}

/* (a) or (b) for a merge into layer dest. */
static bool check_merge(struct run *R, int ret, const struct vxm_err *err, unsigned dest,
			bool keep)
{
	char why[1200], left[256], what[64];
	snprintf(what, sizeof(what), "merge into %s", F[dest].name);
	if (ret) {
		if (!fm_dir_same(&R->snap, NULL, why, sizeof(why)))
			return !finding("changed-on-refusal", what, ret, err, "%s", why);
		return R->intact = true;
	}
	if (!R->oracle.p)
		return accepted_unreadable(what, &R->oracle);
	if (!view_equals(what, F[dest].name, &R->oracle, R->lss))
		return false;
	if (R->child.p && !view_equals(what, F[R->ochild].name, &R->child, R->lss))
		return false;
	if (keep && !view_equals(what, F[nlayers - 1].name, &R->oracle, R->lss))
		return false;
	if (journal_left(left, sizeof(left)))
		return !finding("changed-on-success", what, 0, NULL, "%s is left over", left);
	fm_watch_drain(&R->snap);
	for (unsigned i = 0; i < dest; i++) {
		uint64_t at;
		if ((R->snap.touched[i] || fm_ino_broken) && fm_file_same(&R->snap.f[i], &at) != 1)
			return !finding("changed-on-success", what, 0, NULL,
					"%s, below the destination, changed at 0x%llx", F[i].name,
					(unsigned long long)at);
	}
	return accepted_unreadable(what, &R->oracle);
}

static void plan_only(struct run *R, unsigned dest)
{
	char path[1024], why[1200];
	struct vxm_chain *c;
	struct vxm_chain_opts co = { .io = &g_io };
	struct vxm_plan_stats st;
	struct vxm_err err = { 0 };
	fm_path(path, sizeof(path), F[nlayers - 1].name);
	int ret = vxm_chain_open(&c, path, &co, &err);
	if (!ret) {
		struct vxm_plan_opts po = { .dest = (int)dest, .top = -1 };
		ret = vxm_plan(c, &po, NULL, NULL, &st, &err);
		say("plan into %s: %d", F[dest].name, ret);
		vxm_chain_close(c);
	}
	if (!fm_dir_same(&R->snap, NULL, why, sizeof(why)))
		finding("changed-on-refusal", "plan (read-only)", ret, &err, "%s", why);
}

/* Writes the files and fills s.  A file the last run left intact (a
 * refusal, verified byte for byte) and built from the same description is
 * rewritten only in the pieces either run changed: the payload, most of
 * the bytes, stays where it is. */
static void write_files(struct fm_snap *s)
{
	const char *keep[FM_MAX_FILES];
	unsigned nkeep = 0;
	for (unsigned i = 0; i < FM_MAX_FILES; i++) {
		struct fm_file *f = &F[i];
		if (i < nfiles && f->on_disk && !strcmp(f->disk_name, f->name))
			keep[nkeep++] = f->name;
		else
			f->on_disk = false;
	}
	fm_dir_clear(keep, nkeep);
	for (unsigned i = 0; i < nfiles; i++) {
		struct fm_file *f = &F[i];
		if (!f->hdr_broken) {
			fix_crc(f, VXM_HDR1_OFF, VXM_HDR_SIZE);
			fix_crc(f, VXM_HDR2_OFF, VXM_HDR_SIZE);
		}
		if (!f->rt_broken) {
			fix_crc(f, VXM_RT1_OFF, VXM_RT_SIZE);
			fix_crc(f, VXM_RT2_OFF, VXM_RT_SIZE);
		}
		size_t np = f->len / FM_PIECE + 1;
		uint8_t *nz = malloc(np), *w = calloc(np, 1);
		if (!nz || !w)
			abort();
		for (size_t k = 0; k < np; k++) {
			bool t = k < f->touch_n && f->touch[k];
			nz[k] = t || k * FM_PIECE >= f->built_len ? fm_piece_nz(f->buf, f->len, k)
								    : f->pnz[k];
			w[k] = t || (k < f->touch_n && f->ptouch[k]);
		}
		s->f[i] = (struct fm_blob){ .name = f->name, .p = f->buf, .len = f->len, .nz = nz };
		fm_write_file(&s->f[i], f->on_disk ? w : NULL);
		free(w);
		if (f->touch_n) {
			memcpy(f->ptouch, f->touch, f->touch_n);
			memset(f->touch, 0, f->touch_n);
		}
		memcpy(f->disk_name, f->name, sizeof(f->disk_name));
		f->on_disk = false; /* until the run proves the files intact */
	}
	s->n = nfiles;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static bool once;
	if (!once) {
		once = true;
		verbose = getenv("VXM_FUZZ_VERBOSE") != NULL;
		only = getenv("VXM_FUZZ_MERGE_ONLY") != NULL;
		parse_known(getenv(only ? "VXM_FUZZ_MERGE_ONLY" : "VXM_FUZZ_MERGE_KNOWN"));
		fm_dir_make();
		if (vxm_io_init(&g_io, &fm_inline_ops, NULL))
			abort();
		atexit(report_tolerated);
#ifndef FZ_ASAN
		/* every run allocates tens of MiB (images, views, the engine's
		 * metadata copies): heap memory is reused, fresh maps fault in
		 * (measured: a third more runs per second than without) */
		mallopt(M_MMAP_THRESHOLD, 64 << 20);
		mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
	}
	struct run R = { .ochild = -1 };
	uint8_t geo = in_at(data, n, 1), opb = in_at(data, n, 2), xb = in_at(data, n, 3);
	static const unsigned tails[4] = { 0, 1, 3, 37 };
	uint32_t lss = (geo & 0x20) ? 4096 : 512, bs = (geo & 0x10) ? 2 * MiB : MiB;
	uint64_t vsize = (uint64_t)(1 + (geo & 15)) * MiB + tails[geo >> 6] * lss;
	unsigned kind = opb & 3;
	bool keep = opb & 8;

	nlayers = 2 + in_at(data, n, 0) % 3;
	nfiles = nlayers;
	unsigned dest = kind == 1 && nlayers > 2 ? 1 + (xb & 3) % (nlayers - 2) : 0;
	for (unsigned i = 0; i < nlayers; i++) {
		snprintf(F[i].name, sizeof(F[i].name), i ? "snap%u.avhdx" : "base.vhdx", i);
		F[i].parent = (int)i - 1;
	}
	if (opb & 4) {
		R.ochild = (int)nfiles;
		snprintf(F[nfiles].name, sizeof(F[nfiles].name), "child.avhdx");
		F[nfiles++].parent = (int)nlayers - 1;
	}
	if (opb & 0x80) {
		snprintf(F[nfiles].name, sizeof(F[nfiles].name), "sib.avhdx");
		F[nfiles++].parent = (int)dest;
	}
	bool ok = true;
	for (unsigned i = 0; i < nfiles && ok; i++) {
		uint8_t sec[FM_SEC];
		for (unsigned k = 0; k < FM_SEC; k++)
			sec[k] = in_at(data, n, 4 + i * FM_SEC + k);
		ok = build_file(i, sec, geo, vsize, bs, lss);
	}
	if (!ok)
		goto out;
	size_t p = 4 + nfiles * FM_SEC;
	for (unsigned m = 0; m < FM_MAX_MUT && p + 8 <= n; m++, p += 8)
		mutate(data + p);
	write_files(&R.snap);
	fm_watch_start(&R.snap);
	traits_known = false;
	if (verbose)
		find_traits();

	/* the oracle, before anything runs */
	const char *top = F[nlayers - 1].name;
	int oret = view_of(top, &R.oracle);
	if (oret == -EFBIG)
		goto out; /* too large to read whole at every run */
	R.lss = R.oracle.p ? R.oracle.lss : lss;
	if (R.ochild >= 0 && view_of(F[R.ochild].name, &R.child) == -EFBIG)
		goto out;
	say("%u layers, %llu bytes, lss %u, block %u: top %s (%llu bad pieces)%s%s", nlayers,
	    (unsigned long long)vsize, lss, bs, R.oracle.p ? "opens" : "does not open",
	    (unsigned long long)R.oracle.nbad, traits ? "; traits: " : "", traits_why);

	char tpath[1024], dpath[1024], cpath[1024], opath[1024];
	fm_path(tpath, sizeof(tpath), top);
	fm_path(dpath, sizeof(dpath), F[dest].name);
	plan_only(&R, dest);
	struct vxm_merge_result res;
	struct vxm_err err = { 0 };
	int ret;
	if (kind >= 2) {
		static const uint32_t cbs[4] = { 0, 1u << 20, 2u << 20, 4u << 20 };
		fm_path(opath, sizeof(opath), "out.vhdx");
		struct vxm_merge_opts o = { .top = tpath, .out = opath, .out_fixed = opb & 16,
					    .out_block_size = cbs[(opb >> 5) & 3], .seed = 42,
					    .no_clone = true, .io = &g_io };
		ret = vxm_merge_run(&o, &res, &err);
		say("convert: %d %s", ret, ret ? err.msg : "");
		FZ_ASSERT(fm_open_slots(&g_io) == 0);
		if (!check_convert(&R, ret, &err))
			goto out;
	}
	if (kind != 2) {
		const char *rebase[1] = { cpath };
		if (R.ochild >= 0)
			fm_path(cpath, sizeof(cpath), F[R.ochild].name);
		struct vxm_merge_opts o = { .top = tpath, .into = dest ? dpath : NULL, .seed = 42,
					    .no_clone = true, .io = &g_io, .keep_merged = keep,
					    .rebase = rebase, .nrebase = R.ochild >= 0 && (xb & 4),
					    .dry_run = true };
		vxm_err_clear(&err);
		ret = vxm_merge_run(&o, &res, &err);
		say("merge --dry-run into %s: %d %s", F[dest].name, ret, ret ? err.msg : "");
		char why[1200];
		if (!fm_dir_same(&R.snap, NULL, why, sizeof(why)) &&
		    finding("changed-on-refusal", "merge --dry-run", ret, &err, "%s", why))
			goto out;
		o.dry_run = false;
		R.intact = false;
		vxm_err_clear(&err);
		ret = vxm_merge_run(&o, &res, &err);
		say("merge into %s: %d %s", F[dest].name, ret, ret ? err.msg : "");
		FZ_ASSERT(fm_open_slots(&g_io) == 0);
		check_merge(&R, ret, &err, dest, keep);
	}
out:
	for (unsigned i = 0; i < R.snap.n; i++) {
		F[i].on_disk = R.intact;
		free(R.snap.f[i].nz);
	}
	view_free(&R.oracle);
	view_free(&R.child);
	undo_all();
	return 0;
}
