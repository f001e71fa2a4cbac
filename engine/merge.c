/* engine/merge.c: the merge, newest wins per sector, into an ancestor D in
 * place or into a new file, crash-safe and resumable (fmt §8.4).
 *
 * Phases (each recorded in the journal only once durable, journal.c I2):
 *
 *   PLANNED    chain validated, locks held, no sibling, space checked
 *      |  C1 (D's child in the chain) gets parent_linkage2 = G', D's new
 *      v  DataWriteGuid, through C1's log, flushed
 *   LINKED     C1 accepts D before and after its GUID changes
 *      |  D's headers carry G'; data streamed by the executor; BAT and
 *      v  bitmaps committed through D's log every ~1 GiB (cursor advances)
 *   COPYING
 *      |  IsVirtualDisk items of TOP, writer ended (LogGuid 0), log zeroed,
 *      v  headers final; fsync barrier
 *   COPIED
 *      |  each child R of TOP re-pointed at D through R's log, finalized
 *      v
 *   REPOINTED
 *      |  merged files and their .mrt/.rct removed (unless kept), dir fsync
 *      v
 *   CLEANUP -> journal removed
 *
 * Invariants
 * M1 (fmt §8.2): D changes only in sectors C1..Ck define, to the value the
 *    chain shows already, so the view from TOP and from every child R never
 *    changes: a crash at any instant is invisible through the chain.
 * M2: payload is durable before the BAT entry or bitmap bit that publishes
 *    it (the writer's data-sync precedes every log commit).
 * M3: the k-th allocation of the merge lands at alloc_base plus the sizes of
 *    the allocations before it, in plan order, so a resumed run allocates
 *    exactly where an uninterrupted run does; metadata edits are skipped
 *    when already in place; the final headers carry GUIDs derived from the
 *    journal's seed and a fixed sequence number, and the dead log is zeroed:
 *    a resumed merge ends byte-identical to an uninterrupted one.
 * M4: a parent pointer is rewritten only after D is final and flushed.
 * M5: nothing is deleted before every child is re-pointed and durable.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FINAL_SEQ_STEP (1ull << 20) /* M3: final header sequence = original + this */
/* Commits of BAT updates and the cursor (ex_commit_due): no sooner than
 * COMMIT_BYTES after the last, no later than COMMIT_BYTES_MAX (what a crash
 * can make a resumed run redo), and in between once the time since the last
 * commit is COMMIT_RATIO times what it cost.  A commit stalls the data path
 * for device flushes: tens of ms when little waits in the device's cache
 * (commits stay at 1 GiB; the log's own flushes take 0.05-0.09 s here),
 * 0.5-0.9 s for the data-sync on the virtio disk measured here, whose host
 * cache writes back on every flush (commits at 1 GiB cost a quarter of the
 * run). */
#define COMMIT_BYTES (1ull << 30)
#define COMMIT_BYTES_MAX (8ull << 30)
#define COMMIT_RATIO 8.0
/* 16 requests of up to 4 MiB: the virtio disk measured here moves 896 MB/s
 * with 4 MiB requests and 627 with 1 MiB (fio, read || write); the joined
 * transfers (ex_transfer) reach 4 MiB where the plan allows.  64 MiB of
 * buffers, whatever the disk size. */
#define EX_QD_DEFAULT 16u
#define EX_CHUNK_DEFAULT (4u << 20)

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void say(const struct vxm_merge_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void say(const struct vxm_merge_opts *o, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (!o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	o->log(o->log_ctx, line);
}

static void progress(const struct vxm_merge_opts *o, const char *phase, uint64_t done,
		     uint64_t total, uint64_t copied, uint64_t cloned, uint64_t zeroed)
{
	if (o->progress) {
		struct vxm_merge_progress p = { phase, done, total, copied, cloned, zeroed };
		o->progress(o->progress_ctx, &p);
	}
}

static char *abspath(const char *p)
{
	char *r = realpath(p, NULL);
	if (r)
		return r;
	/* a file that does not exist (yet, or any more): make it absolute */
	if (p[0] == '/')
		return strdup(p);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return strdup(p);
	char *out;
	if (asprintf(&out, "%s/%s", cwd, p) < 0)
		return NULL;
	return out;
}

/* A layer's path as the chain found it, absolute, its directory resolved but
 * not its last component: a symlinked layer is named (and later removed) as
 * the link, never as the file it points to.  For a path that is no symlink
 * this is realpath(), what journals recorded before. */
static char *abspath_link(const char *p)
{
	char *d = strdup(p), *b = strdup(p), *rd = NULL, *out = NULL;
	if (d && b) {
		const char *base = basename(b);
		rd = realpath(dirname(d), NULL);
		if (rd && strcmp(base, ".") && strcmp(base, "..") && strcmp(base, "/") &&
		    asprintf(&out, "%s/%s", strcmp(rd, "/") ? rd : "", base) < 0)
			out = NULL;
	}
	free(d);
	free(b);
	free(rd);
	return out ? out : abspath(p);
}

/* The file a symlinked layer points to (kept at cleanup), or NULL. */
static char *link_target(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0 && S_ISLNK(st.st_mode) ? realpath(p, NULL) : NULL;
}

/* ---- locks ---------------------------------------------------------------- */

/* Each file gets its own lock descriptor, so our data descriptors never
 * conflict with our own locks, and two kinds of lock on it, as Linux keeps
 * them apart: flock() (what `flock`, Python's fcntl.flock and many backup
 * tools take) and an OFD lock over the whole file, which conflicts with
 * POSIX (lockf) locks, with another vhdxmerge and with qemu.  qemu
 * (file-posix) holds one-byte OFD read locks: byte 100 + n for each
 * permission n it uses, 200 + n for each it does not share.  Our exclusive
 * lock conflicts with any of them; our shared lock conflicts with none, so
 * for a file we only read, a qemu that writes (byte 101) or resizes (103) it
 * is asked for separately.  Our shared lock covers bytes 200 + n, so a qemu
 * started later finds the file in use. */
struct locks {
	int fd[VXM_JOURNAL_MAX * 2 + 4];
	unsigned n;
};

static int lock_busy(const char *path, const char *how, struct vxm_err *err)
{
	return vxm_fail(err, -EBUSY, VXM_OFF_NONE,
			"%s is in use by another process (%s); stop the VM, backup agent or other tool using it and try again",
			path, how);
}

static int lock_file(struct locks *l, const char *path, bool excl, struct vxm_err *err)
{
	const char *kind = NULL;
	int fd = vxm_file_open(path, excl ? VXM_O_RDWR : VXM_O_RDONLY, &kind);
	if (fd == -VXM_ENOTFILE)
		return vxm_fail(err, fd, VXM_OFF_NONE, "%s is %s, not a disk image file", path, kind);
	if (fd < 0)
		return vxm_fail(err, fd, VXM_OFF_NONE, "%s: cannot open: %s", path, strerror(-fd));
	/* a filesystem without flock (some FUSE and network mounts) still
	 * has the OFD lock */
	if (flock(fd, (excl ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0 && errno != EOPNOTSUPP &&
	    errno != ENOLCK && errno != ENOSYS && errno != EINVAL) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK)
			return lock_busy(path, "locked with flock", err);
		return vxm_fail(err, -e, VXM_OFF_NONE, "%s: cannot lock: %s", path, strerror(e));
	}
	struct flock fl = { .l_type = excl ? F_WRLCK : F_RDLCK, .l_whence = SEEK_SET };
	if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		int e = errno;
		close(fd);
		if (e == EAGAIN || e == EACCES)
			return lock_busy(path, "locked", err);
		return vxm_fail(err, -e, VXM_OFF_NONE, "%s: cannot lock: %s", path, strerror(e));
	}
	for (int b = 101; !excl && b <= 103; b += 2) {
		struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = b, .l_len = 1 };
		/* a whole-file read lock (another reader) starts at 0 */
		if (fcntl(fd, F_OFD_GETLK, &q) == 0 && q.l_type != F_UNLCK && q.l_start >= 100) {
			close(fd);
			return lock_busy(path, b == 101 ? "qemu has it open for writing" : "qemu may resize it", err);
		}
	}
	if (l->n < sizeof(l->fd) / sizeof(l->fd[0]))
		l->fd[l->n++] = fd;
	else
		close(fd);
	return 0;
}

static void unlock_all(struct locks *l)
{
	for (unsigned i = 0; i < l->n; i++)
		close(l->fd[i]);
	l->n = 0;
}

/* ---- finding relatives (siblings that a merge would invalidate, children
 * of TOP to re-point) -------------------------------------------------------- */

struct relative {
	char *path;
	struct vxm_guid dwg, linkage, linkage2;
	bool has_linkage2;
	uint64_t seq;
};

struct relatives {
	struct relative *r;
	unsigned n, cap;
};

static void relatives_free(struct relatives *rs)
{
	for (unsigned i = 0; i < rs->n; i++)
		free(rs->r[i].path);
	free(rs->r);
	memset(rs, 0, sizeof(*rs));
}

/* Appends r, which owns r.path; -ENOMEM (r.path freed) when out of memory. */
static int relatives_add(struct relatives *rs, struct relative r)
{
	if (!r.path)
		return -ENOMEM;
	if (rs->n == rs->cap) {
		unsigned cap = rs->cap ? rs->cap * 2 : 8;
		struct relative *p = realloc(rs->r, cap * sizeof(*p));
		if (!p) {
			free(r.path);
			return -ENOMEM;
		}
		rs->r = p;
		rs->cap = cap;
	}
	rs->r[rs->n++] = r;
	return 0;
}

static bool ends_ci(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcasecmp(s + a - b, suf);
}

/* Every differencing file in dir (not recursive) not already in the chain.
 * 0 or -ENOMEM: a file skipped could be a checkpoint the merge invalidates. */
static int scan_dir(const char *dir, struct vxm_chain *c, struct relatives *rs)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int ret = 0;
	if (!d)
		return 0;
	while (!ret && (e = readdir(d))) {
		if (!ends_ci(e->d_name, ".vhdx") && !ends_ci(e->d_name, ".avhdx"))
			continue;
		char *p;
		if (asprintf(&p, "%s/%s", dir, e->d_name) < 0) {
			ret = -ENOMEM;
			break;
		}
		bool dup = vxm_chain_index_of(c, p) >= 0;
		for (unsigned i = 0; !dup && i < rs->n; i++) {
			struct stat a, b;
			dup = !stat(p, &a) && !stat(rs->r[i].path, &b) && a.st_dev == b.st_dev &&
			      a.st_ino == b.st_ino;
		}
		struct vxm_image *img;
		if (dup || vxm_image_open(&img, NULL, p, 0, NULL)) {
			free(p);
			continue;
		}
		if (img->loc) {
			ret = relatives_add(rs, (struct relative){
				.path = p, .dwg = img->hdr.data_write,
				.linkage = img->loc->parent_linkage,
				.linkage2 = img->loc->parent_linkage2,
				.has_linkage2 = img->loc->has_linkage2, .seq = img->hdr.seq,
			});
			p = NULL;
		}
		vxm_image_close(img);
		free(p);
	}
	closedir(d);
	return ret;
}

static bool links_to(const struct relative *r, const struct vxm_guid *g)
{
	return vxm_guid_eq(&r->linkage, g) || (r->has_linkage2 && vxm_guid_eq(&r->linkage2, g));
}

/* ---- finalizing a file (M3) -------------------------------------------------- */

/* Zeroes the (dead) log and writes both headers with fwg, LogGuid 0 and the
 * sequence numbers orig_seq + FINAL_SEQ_STEP (+1), keeping a valid current
 * header at every step.  Idempotent. */
static int finalize_file(struct vxm_io *io, const char *path, uint64_t orig_seq,
			 const struct vxm_guid *fwg, struct vxm_err *err)
{
	struct vxm_image *img;
	int ret = vxm_image_open(&img, io, path, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	uint8_t *buf = calloc(1, VXM_MiB);
	uint8_t *zero = calloc(1, VXM_MiB);
	if (!buf || !zero) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint64_t o = 0; o < img->hdr.log_len && !ret; o += VXM_MiB) {
		uint64_t n = img->hdr.log_len - o < VXM_MiB ? img->hdr.log_len - o : VXM_MiB;
		ret = vxm_image_pread(img, buf, n, img->hdr.log_off + o, err);
		if (!ret && memcmp(buf, zero, n))
			ret = vxm_io_pwrite(img->io, img->slot, zero, n, img->hdr.log_off + o);
	}
	if (!ret)
		ret = vxm_io_sync(img->io, img->slot, "finalize-log", false);
	if (ret)
		goto fail;
	uint64_t S = orig_seq + FINAL_SEQ_STEP;
	uint8_t want[2][VXM_HDR_SIZE];
	struct vxm_hdr h = img->hdr;
	h.file_write = *fwg;
	memset(h.log_guid.b, 0, 16);
	h.seq = S;
	vxm_hdr_encode(&h, want[0]);
	h.seq = S + 1;
	vxm_hdr_encode(&h, want[1]);
	/* Write the non-current slot first, so a valid current one exists at
	 * every instant; both targets exceed any sequence used before. */
	for (int round = 0; round < 2; round++) {
		int slot = round == 0 ? 1 - img->hp.current : img->hp.current;
		if (!memcmp(img->hdr_raw[slot], want[slot], VXM_HDR_SIZE))
			continue;
		uint64_t off = slot ? VXM_HDR2_OFF : VXM_HDR1_OFF;
		vxm_killpoint("write");
		ret = vxm_io_pwrite(img->io, img->slot, want[slot], VXM_HDR_SIZE, off);
		if (!ret)
			ret = vxm_io_sync(img->io, img->slot, "finalize-header", false);
		if (ret)
			goto fail;
		vxm_killpoint("finalize-header");
	}
	goto out;
fail:
	vxm_fail(err, ret, VXM_OFF_NONE, "%s: finalizing failed: %s", path, vxm_strerror(ret));
out:
	free(buf);
	free(zero);
	vxm_image_close(img);
	return ret;
}

/* ---- locator edits --------------------------------------------------------------- */

/* The locator of img as UTF-8 pairs, with `set` replacing or adding keys;
 * keys whose new value is NULL are dropped.  Caller frees kv[i].value. */
static int locator_with(const struct vxm_image *img, const struct vxm_kv *set, unsigned nset,
			struct vxm_kv *kv, char keys[][64], unsigned *n)
{
	unsigned k = 0;
	for (unsigned i = 0; i < img->loc->count; i++) {
		char *val = malloc(VXM_LOCATOR_PATH_MAX);
		if (!val || vxm_locator_key(img->loc, img->loc_item, i, keys[k], 64) ||
		    vxm_locator_value(img->loc, img->loc_item, i, val, VXM_LOCATOR_PATH_MAX)) {
			free(val);
			continue; /* an unreadable or overlong pair is dropped */
		}
		bool replaced = false;
		for (unsigned s = 0; s < nset; s++)
			replaced |= !strcmp(keys[k], set[s].key);
		if (replaced) {
			free(val);
			continue;
		}
		kv[k].key = keys[k];
		kv[k].value = val;
		k++;
	}
	for (unsigned s = 0; s < nset; s++) {
		if (!set[s].value)
			continue;
		snprintf(keys[k], 64, "%s", set[s].key);
		kv[k].key = keys[k];
		kv[k].value = strdup(set[s].value);
		k++;
	}
	*n = k;
	return 0;
}

static int set_locator(struct vxm_io *io, const char *path, const struct vxm_kv *set,
		       unsigned nset, struct vxm_err *err)
{
	struct vxm_image *img;
	struct vxm_writer *w = NULL;
	struct vxm_kv kv[VXM_LOCATOR_MAX_PAIRS + 8];
	static char keys[VXM_LOCATOR_MAX_PAIRS + 8][64];
	unsigned n = 0;
	int ret = vxm_image_open(&img, io, path, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	if (!img->loc) {
		vxm_image_close(img);
		return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE, "%s has no parent locator", path);
	}
	locator_with(img, set, nset, kv, keys, &n);
	ret = vxm_writer_begin(&w, img, err);
	if (!ret)
		ret = vxm_writer_set_locator(w, kv, n, err);
	if (w) {
		int r2 = vxm_writer_end(w, ret ? NULL : err);
		if (!ret)
			ret = r2;
	}
	for (unsigned i = 0; i < n; i++)
		free((void *)kv[i].value);
	vxm_image_close(img);
	return ret;
}

/* "{guid}" */
static void braced(const struct vxm_guid *g, char out[40])
{
	char s[VXM_GUID_STRLEN + 1];
	snprintf(out, 40, "{%s}", vxm_guid_fmt(g, s));
}

/* A relative Windows path (".\x.vhdx", "..\dir\x.vhdx") from the directory
 * of `from` to the file `to`, by path components of their absolute paths. */
static char *win_relative(const char *from, const char *to)
{
	char *a = abspath(from), *b = abspath(to), *out = NULL;
	char *ca[256], *cb[256];
	unsigned na = 0, nb = 0;

	if (!a || !b)
		goto done;
	for (char *sv = NULL, *t = strtok_r(a, "/", &sv); t && na < 256; t = strtok_r(NULL, "/", &sv))
		ca[na++] = t;
	for (char *sv = NULL, *t = strtok_r(b, "/", &sv); t && nb < 256; t = strtok_r(NULL, "/", &sv))
		cb[nb++] = t;
	if (!na || !nb)
		goto done;
	na--; /* the directory of `from` */
	unsigned common = 0;
	while (common < na && common + 1 < nb && !strcmp(ca[common], cb[common]))
		common++;
	size_t cap = 3 * (na - common) + strlen(to) + 4 + 256;
	for (unsigned i = common; i < nb; i++)
		cap += strlen(cb[i]) + 1;
	out = malloc(cap);
	if (!out)
		goto done;
	size_t o = 0;
	if (na == common)
		o += (size_t)sprintf(out + o, ".\\");
	for (unsigned i = common; i < na; i++)
		o += (size_t)sprintf(out + o, "..\\");
	for (unsigned i = common; i < nb; i++)
		o += (size_t)sprintf(out + o, "%s%s", cb[i], i + 1 < nb ? "\\" : "");
done:
	free(a);
	free(b);
	return out;
}

/* The locator edit that re-points a child of TOP at D: D's DataWriteGuid g,
 * no second linkage, a relative path to D, and the child's Windows paths
 * (oldabs, oldvol) with D's file name swapped in when D sits where TOP did,
 * otherwise dropped (fmt §8.4 step 7). */
struct relink {
	struct vxm_kv set[5];
	char guid[40], zero[40];
	char *rel, *nabs, *nvol;
};

static void relink_free(struct relink *k)
{
	free(k->rel);
	free(k->nabs);
	free(k->nvol);
}

static char *swap_name(const char *winpath, const char *name)
{
	const char *slash = strrchr(winpath, '\\');
	char *out;
	if (!slash || asprintf(&out, "%.*s\\%s", (int)(slash - winpath), winpath, name) < 0)
		return NULL;
	return out;
}

static int relink_child(struct relink *k, const char *child, const char *top, const char *dest,
			const struct vxm_guid *g, const char *oldabs, const char *oldvol)
{
	static const struct vxm_guid z;
	memset(k, 0, sizeof(*k));
	braced(g, k->guid);
	braced(&z, k->zero);
	k->rel = win_relative(child, dest);
	char *tdir = strdup(top), *ddir = strdup(dest), *dbase = strdup(dest);
	bool same_dir = tdir && ddir && !strcmp(dirname(tdir), dirname(ddir));
	if (same_dir && dbase && oldabs[0])
		k->nabs = swap_name(oldabs, basename(dbase));
	if (same_dir && dbase && oldvol[0])
		k->nvol = swap_name(oldvol, basename(dbase));
	free(tdir);
	free(ddir);
	free(dbase);
	k->set[0] = (struct vxm_kv){ "parent_linkage", k->guid };
	k->set[1] = (struct vxm_kv){ "parent_linkage2", k->zero };
	k->set[2] = (struct vxm_kv){ "relative_path", k->rel };
	k->set[3] = (struct vxm_kv){ "absolute_win32_path", k->nabs };
	k->set[4] = (struct vxm_kv){ "volume_path", k->nvol };
	return k->rel ? 0 : -ENOMEM;
}

/* Would img's metadata region hold its locator with `set` applied?  The
 * writer places the new item beside the old one, so a packed region fails
 * only after D is merged: checked before the first write instead. */
static int locator_room(struct vxm_image *img, const struct vxm_kv *set, unsigned nset,
			struct vxm_err *err)
{
	struct vxm_kv kv[VXM_LOCATOR_MAX_PAIRS + 8];
	static char keys[VXM_LOCATOR_MAX_PAIRS + 8][64];
	unsigned n = 0;
	uint8_t *buf = malloc(64 * 1024);
	int ret = buf ? 0 : -ENOMEM;
	if (!ret && img->loc) {
		locator_with(img, set, nset, kv, keys, &n);
		long len = vxm_locator_encode(kv, n, buf, 64 * 1024);
		ret = len < 0 ? (int)len : vxm_image_meta_room(img, (uint32_t)len);
		if (ret == -ENOSPC)
			ret = vxm_fail(err, -VXM_EUNSUPPORTED, img->meta_region.off,
				       "%s: its metadata region (%u bytes at 0x%llx) has no room for the %ld-byte parent locator the merge writes; nothing was changed",
				       img->path, img->meta_region.len,
				       (unsigned long long)img->meta_region.off, len);
		for (unsigned i = 0; i < n; i++)
			free((void *)kv[i].value);
	}
	free(buf);
	return ret;
}

/* ---- the executor ------------------------------------------------------------------ */

/* pieces of the sources gathered into one write (ex_transfer): twice a
 * page's worth of 512-byte sectors, so that a page-aligned cut of a full
 * stage always leaves something before it (ex_stage_cut) */
#define EX_SEGS 16

#define EX_ZERO (-1) /* a piece of zeros */
#define EX_DEST (-2) /* a piece of D's own sectors, read back (padding) */

struct ex_seg {
	int layer; /* or EX_ZERO, EX_DEST */
	uint64_t src, len;
};

struct dreq {
	struct vxm_req rd, wr;     /* rd: the first read, or a clone */
	struct vxm_req xrd[EX_SEGS - 1]; /* the other reads of a gathered write */
	unsigned reads_left;       /* reads to complete before wr is queued */
	uint64_t zlen;             /* bytes of wr zeroed in buf, not read */
	uint64_t plen;             /* bytes of wr that are D's own (padding) */
	uint8_t *buf;
	bool busy;
	int layer;         /* for a clone that falls back to a copy */
	uint64_t more;     /* a clone copied instead: bytes after the current piece */
};

struct exec {
	const struct vxm_merge_opts *o;
	struct vxm_err *err;
	struct vxm_chain *c;
	struct vxm_image *d;      /* destination (RDWR), NULL for raw output */
	struct vxm_writer *w;
	int top, dest;
	uint32_t lss;
	uint64_t spb, bs;         /* destination geometry */
	bool d_parent, d_fixed;
	uint64_t total;           /* destination sectors */
	/* M3 */
	uint64_t alloc_base, alloc_next, cursor;
	uint64_t sb_chunk_done;
	/* the destination block being filled */
	uint64_t blk;             /* UINT64_MAX: none */
	uint64_t blk_off;         /* 0: not allocated (yet) */
	unsigned blk_state;       /* state when the block was entered */
	bool blk_alloc_orig;      /* allocated when entered */
	bool blk_fresh;           /* space the merge allocated: reads zeros */
	uint64_t blk_resolved, blk_zero;
	uint64_t blk_alloc_at;    /* alloc_next when the block was entered */
	uint8_t *blk_bits;        /* resolved sectors of the block (differencing D) */
	/* data path */
	struct vxm_io dio;
	/* the request buffers and the zero buffer in one area: for direct
	 * I/O on the NUMA node the merge runs on, huge-page backed (io/topo.c,
	 * mem); on a shared context plain heap memory (heap) */
	struct vxm_topo *topo;
	struct vxm_topo_mem mem;
	uint8_t *heap;
	bool dio_up;
	struct vxm_io *io;        /* &dio, or the caller's single context */
	int dslot[VXM_CHAIN_MAX_DEPTH];
	int dslot_d;
	bool dslot_open[VXM_CHAIN_MAX_DEPTH], dslot_d_open;
	/* a private context moves data with O_DIRECT (dslot, dslot_d) and
	 * sends what O_DIRECT cannot take to a buffered twin of the same file
	 * (bslot, bslot_d; the same slots otherwise) */
	int bslot[VXM_CHAIN_MAX_DEPTH], bslot_d;
	uint32_t ralign[VXM_CHAIN_MAX_DEPTH]; /* O_DIRECT read alignment of each layer */
	uint32_t dalign;          /* ... and of D (its own sectors read back) */
	/* the page every write to D covers whole, so that no page of D is in
	 * two requests at once nor written buffered: 4 KiB with direct writes,
	 * else a sector (nothing padded) */
	uint32_t pad;
	uint64_t pad_end;         /* no padding past this offset (a raw output's end) */
	struct dreq *q;
	unsigned qd;
	uint32_t chunk;
	int failed;      /* the data path's first error (ex_reap): sticky */
	uint64_t writes; /* data write requests completed */
	uint64_t buffered; /* ... their bytes written buffered (not through dio_d) */
	int dio_d;         /* D's O_DIRECT slot, or -1 */
	/* the transfers held back for one write: the next one joins while it
	 * continues them in the destination (up to chunk bytes, EX_SEGS
	 * pieces; a piece grows while its source continues too), so blocks
	 * allocated in plan order become chunk-sized writes whatever layer
	 * each comes from */
	struct {
		unsigned n;
		uint64_t dst, len;
		struct ex_seg seg[EX_SEGS];
	} stg;
	uint8_t *zero;
	bool clone_ok;
	dev_t d_dev, layer_dev[VXM_CHAIN_MAX_DEPTH];
	bool layer_clone[VXM_CHAIN_MAX_DEPTH]; /* reflinks from this layer into D work */
	uint32_t clone_blk;       /* D's filesystem block: clone granularity */
	/* a clone not queued yet, grown while the next one continues it in both
	 * files (ex_clone_add); queued before every commit (M2) */
	int pc_layer;
	uint64_t pc_src, pc_dst, pc_len;
	/* accounting */
	uint64_t done, total_bytes, copied, cloned, zeroed, since_commit;
	uint64_t commit_min; /* COMMIT_BYTES (test programs: VXM_COMMIT_BYTES) */
	double commit_end, commit_cost; /* when the last commit ended, what it took (s) */
	uint64_t commits;
	double commit_seconds;
	double last_progress;
	struct vxm_journal *j;
	const char *jpath;
};

/* Writes to D go direct only when 4 KiB aligned (offset and length; the
 * buffers are): then no page is ever shared by a direct and a buffered
 * write.  Reads go direct at the source's own O_DIRECT alignment. */
#define EX_DIO_ALIGN 4096u

static int ex_file(int dslot, int bslot, uint64_t off, uint64_t len, uint32_t align)
{
	return (off | len) % align ? bslot : dslot;
}

/* The file offset alignment O_DIRECT needs on path (statx), else 4 KiB. */
static uint32_t ex_dio_align(const char *path)
{
#ifdef STATX_DIOALIGN
	struct statx sx;
	if (!statx(AT_FDCWD, path, 0, STATX_DIOALIGN, &sx) && (sx.stx_mask & STATX_DIOALIGN) &&
	    sx.stx_dio_offset_align && sx.stx_dio_offset_align <= EX_DIO_ALIGN &&
	    sx.stx_dio_mem_align <= EX_DIO_ALIGN)
		return sx.stx_dio_offset_align > sx.stx_dio_mem_align ? sx.stx_dio_offset_align :
									 sx.stx_dio_mem_align;
#else
	(void)path;
#endif
	return EX_DIO_ALIGN;
}

/* The buffered twin of a direct slot, or -1. */
static int ex_twin(const struct exec *x, int slot)
{
	if (slot == x->dslot_d)
		return x->bslot_d != slot ? x->bslot_d : -1;
	for (int i = 0; i <= x->top; i++)
		if (x->dslot_open[i] && x->dslot[i] == slot)
			return x->bslot[i] != slot ? x->bslot[i] : -1;
	return -1;
}

static int ex_reap_once(struct exec *x, unsigned min)
{
	struct vxm_req *done[64];
	int n, ret;

	ret = vxm_io_submit(x->io);
	if (ret < 0)
		return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O submit failed: %s", vxm_strerror(ret));
	n = vxm_io_reap(x->io, min, done, 64);
	if (n < 0)
		return vxm_fail(x->err, n, VXM_OFF_NONE, "data I/O failed: %s", vxm_strerror(n));
	for (int i = 0; i < n; i++) {
		struct dreq *r = done[i]->owner;
		struct vxm_req *q = done[i];
		int twin;
		if (q->res == -EINVAL && (q->op == VXM_IO_READ || q->op == VXM_IO_WRITE) &&
		    (twin = ex_twin(x, q->file)) >= 0) {
			/* O_DIRECT refused a request: buffered from now on */
			for (int k = 0; k <= x->top; k++)
				x->dslot[k] = x->bslot[k];
			x->dslot_d = x->bslot_d;
			q->file = twin;
			ret = vxm_io_queue(x->io, q);
			if (ret)
				return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
						vxm_strerror(ret));
			continue;
		}
		if (q == &r->rd && q->op == VXM_IO_CLONE) {
			if (q->res < 0) {
				/* no reflinks here: copy this block and every later one */
				if (x->clone_ok)
					say(x->o, "reflinks not available here (%s): copying data instead",
					    vxm_strerror((int)q->res));
				x->clone_ok = false;
				/* copied instead, a buffer at a time (r->more) */
				uint64_t n = r->rd.len < x->chunk ? r->rd.len : x->chunk;
				r->more = r->rd.len - n;
				r->rd = (struct vxm_req){ .op = VXM_IO_READ, .file = r->rd.src_file,
							  .off = r->rd.src_off, .len = n,
							  .buf = r->buf, .owner = r };
				r->reads_left = 1;
				r->wr.len = n;
				r->wr.buf = r->buf;
				ret = vxm_io_queue(x->io, &r->rd);
				if (ret)
					return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
							vxm_strerror(ret));
				continue;
			}
			x->cloned += r->rd.len;
			x->done += r->rd.len;
			r->busy = false;
			continue;
		}
		if (q != &r->wr) {
			if (q->res < 0)
				return vxm_fail(x->err, (int)q->res, q->off, "%s: read failed: %s",
						vxm_io_path(x->io, q->file), vxm_strerror((int)q->res));
			/* a source block stored short at the end of its file reads zeros */
			if ((uint64_t)q->res < q->len)
				memset((uint8_t *)q->buf + q->res, 0, q->len - (uint64_t)q->res);
			if (--r->reads_left)
				continue;
			ret = vxm_io_queue(x->io, &r->wr);
			if (ret)
				return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
						vxm_strerror(ret));
			continue;
		}
		if (q->res < 0 || (uint64_t)q->res != q->len)
			return vxm_fail(x->err, q->res < 0 ? (int)q->res : -EIO, q->off,
					"%s: write of %llu bytes at 0x%llx failed: %s",
					vxm_io_path(x->io, q->file), (unsigned long long)q->len,
					(unsigned long long)q->off,
					vxm_strerror(q->res < 0 ? (int)q->res : -EIO));
		if (q->buf == x->zero) {
			x->zeroed += q->len;
		} else {
			x->copied += q->len - r->zlen - r->plen;
			x->zeroed += r->zlen;
		}
		x->done += q->len - r->plen;
		x->writes++;
		if (q->file != x->dio_d)
			x->buffered += q->len;
		if (r->more) { /* the next piece of a clone copied instead */
			uint64_t n = r->more < x->chunk ? r->more : x->chunk;
			r->more -= n;
			r->reads_left = 1;
			r->rd.off += r->rd.len;
			r->rd.len = n;
			r->wr.off += r->wr.len;
			r->wr.len = n;
			ret = vxm_io_queue(x->io, &r->rd);
			if (ret)
				return vxm_fail(x->err, ret, VXM_OFF_NONE, "data I/O queue failed: %s",
						vxm_strerror(ret));
			continue;
		}
		r->busy = false;
	}
	return 0;
}

/* Submits and reaps.  The first failure is kept in x->failed and returned
 * by every later reap and commit: nothing is queued or committed after it
 * (a raw convert's journal must never claim bytes past a failed write), and
 * the completions reaped with it are dropped with the run. */
static int ex_reap(struct exec *x, unsigned min)
{
	if (!x->failed)
		x->failed = ex_reap_once(x, min);
	return x->failed;
}

/* Queues q, reaping completions while the ring is full. */
static int ex_queue_wait(struct exec *x, struct vxm_req *q)
{
	int ret;

	while ((ret = vxm_io_queue(x->io, q)) == -EBUSY) {
		ret = ex_reap(x, 1);
		if (ret)
			return ret;
	}
	return ret;
}

static int ex_queue_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len);

static int ex_queue_gather(struct exec *x, unsigned n);

/* Queues the held-back transfers as they are, if any; the stage is left
 * empty at their end. */
static int ex_stage_queue(struct exec *x)
{
	unsigned n = x->stg.n, real = 0;
	if (!n)
		return 0; /* (a drain inside ex_queue_gather: the stage is its) */
	for (unsigned i = 0; i < n; i++)
		real += x->stg.seg[i].layer != EX_DEST;
	x->stg.n = 0;
	int ret = 0;
	if (n == 1 && real)
		ret = ex_queue_transfer(x, x->stg.seg[0].layer, x->stg.seg[0].src, x->stg.dst,
					x->stg.len);
	else if (real)
		ret = ex_queue_gather(x, n);
	x->stg.dst += x->stg.len; /* nothing but D's own sectors: nothing to write */
	x->stg.len = 0;
	return ret;
}

/* Appends a piece at the stage's end (room checked by the caller). */
static void ex_stage_add(struct exec *x, int layer, uint64_t src, uint64_t len)
{
	unsigned n = x->stg.n;
	struct ex_seg *last = n ? &x->stg.seg[n - 1] : NULL;
	if (last && last->layer == layer && (layer == EX_ZERO || last->src + last->len == src))
		last->len += len;
	else
		x->stg.seg[x->stg.n++] = (struct ex_seg){ .layer = layer, .src = src, .len = len };
	x->stg.len += len;
}

/* A stage of EX_SEGS pieces ending inside a page: queues it up
 * to the page boundary and keeps the rest as the next stage's start.  The
 * stage starts on a page and a page holds at most 8 pieces (all of them
 * whole sectors), so the cut leaves pieces on both sides. */
static int ex_stage_cut(struct exec *x)
{
	struct ex_seg tail[EX_SEGS];
	unsigned n = x->stg.n, nt = 0;
	uint64_t end = x->stg.dst + x->stg.len, cut = end - end % x->pad, pos = end;
	if (cut <= x->stg.dst)
		return vxm_fail(x->err, -EINVAL, x->stg.dst, "internal: a stage of %u pieces inside one page",
				n);
	while (pos > cut) {
		struct ex_seg *sg = &x->stg.seg[n - 1];
		uint64_t start = pos - sg->len;
		if (start >= cut) {
			tail[nt++] = *sg;
			n--;
			pos = start;
		} else {
			uint64_t keep = cut - start;
			tail[nt++] = (struct ex_seg){ .layer = sg->layer,
						      .src = sg->layer == EX_ZERO ? 0 : sg->src + keep,
						      .len = sg->len - keep };
			sg->len = keep;
			pos = cut;
		}
	}
	x->stg.n = n;
	x->stg.len = cut - x->stg.dst;
	int ret = ex_stage_queue(x);
	for (unsigned i = 0; i < nt; i++)
		x->stg.seg[i] = tail[nt - 1 - i];
	x->stg.n = nt;
	x->stg.len = end - cut;
	return ret;
}

/* Queues the held-back transfers, if any, up to the end of their last
 * page, with D's own sectors after them. */
static int ex_stage_flush(struct exec *x)
{
	if (x->stg.n) {
		uint64_t end = x->stg.dst + x->stg.len, up = end + (x->pad - end % x->pad) % x->pad;
		if (up != end && up <= x->pad_end) {
			if (x->stg.n == EX_SEGS) {
				int ret = ex_stage_cut(x);
				if (ret)
					return ret;
			}
			ex_stage_add(x, EX_DEST, end, up - end);
		}
	}
	return ex_stage_queue(x);
}

static int ex_drain(struct exec *x)
{
	int ret = ex_stage_flush(x);
	while (!ret && x->io->inflight)
		ret = ex_reap(x, 1);
	return ret;
}

static int ex_slot(struct exec *x, struct dreq **out)
{
	for (;;) {
		for (unsigned i = 0; i < x->qd; i++)
			if (!x->q[i].busy) {
				x->q[i].busy = true;
				x->q[i].more = 0;
				x->q[i].zlen = 0;
				x->q[i].plen = 0;
				*out = &x->q[i];
				return 0;
			}
		int ret = ex_reap(x, 1);
		if (ret)
			return ret;
	}
}

static void ex_progress(struct exec *x, const char *phase, bool force)
{
	double t = now_s();
	if (force || t - x->last_progress >= 0.2) {
		x->last_progress = t;
		progress(x->o, phase, x->done, x->total_bytes, x->copied, x->cloned, x->zeroed);
	}
}

/* Queues a transfer: from layer (src_off) or zeros (layer < 0) to dst. */
static int ex_queue_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len)
{
	struct vxm_image *src = layer >= 0 ? x->c->layer[layer].img : NULL;

	while (len) {
		uint64_t n = len < x->chunk ? len : x->chunk;
		struct dreq *r;
		int ret = ex_slot(x, &r);
		if (ret)
			return ret;
		r->wr = (struct vxm_req){ .op = VXM_IO_WRITE,
					  .file = ex_file(x->dslot_d, x->bslot_d, dst, n, EX_DIO_ALIGN),
					  .off = dst, .len = n, .buf = layer < 0 ? x->zero : r->buf,
					  .owner = r };
		r->reads_left = 1;
		if (layer < 0) {
			ret = ex_queue_wait(x, &r->wr);
		} else if (src->nov) {
			/* a source replayed in memory: read through its overlay,
			 * synchronously (a shared context drains first) */
			ret = x->dio_up ? 0 : ex_drain(x);
			if (!ret)
				ret = vxm_image_pread(src, r->buf, n, src_off, x->err);
			if (!ret)
				ret = ex_queue_wait(x, &r->wr);
		} else {
			r->rd = (struct vxm_req){ .op = VXM_IO_READ,
						  .file = ex_file(x->dslot[layer], x->bslot[layer], src_off,
								  n, x->ralign[layer]),
						  .off = src_off, .len = n, .buf = r->buf, .owner = r };
			ret = ex_queue_wait(x, &r->rd);
		}
		if (ret)
			return vxm_fail(x->err, ret, dst, "data I/O queue failed: %s", vxm_strerror(ret));
		src_off += n;
		dst += n;
		len -= n;
	}
	return 0;
}

/* Queues the n pieces of x->stg (ex_stage_flush has emptied it, so a
 * drain in here queues nothing) as one write of a request's buffer: zero
 * pieces are cleared in it, the others read into their place, and the
 * write goes when the last read completes (ex_reap). */
static int ex_queue_gather(struct exec *x, unsigned n)
{
	struct dreq *r;
	int ret = ex_slot(x, &r);
	if (ret)
		return ret;
	r->wr = (struct vxm_req){ .op = VXM_IO_WRITE,
				  .file = ex_file(x->dslot_d, x->bslot_d, x->stg.dst, x->stg.len,
						  EX_DIO_ALIGN),
				  .off = x->stg.dst, .len = x->stg.len, .buf = r->buf, .owner = r };
	/* one extra count while the reads are queued, so that none completing
	 * meanwhile sends the write early */
	r->reads_left = 1;
	uint64_t boff = 0;
	unsigned nrd = 0;
	for (unsigned i = 0; i < n; i++) {
		int layer = x->stg.seg[i].layer;
		uint64_t src_off = x->stg.seg[i].src, len = x->stg.seg[i].len;
		struct vxm_image *src = layer >= 0 ? x->c->layer[layer].img : NULL;
		if (layer == EX_ZERO) {
			memset(r->buf + boff, 0, len);
			r->zlen += len;
		} else if (layer >= 0 && src->nov) {
			/* a source replayed in memory: read through its overlay
			 * (a shared context drains first; nothing is held back) */
			ret = x->dio_up ? 0 : ex_drain(x);
			if (!ret)
				ret = vxm_image_pread(src, r->buf + boff, len, src_off, x->err);
			if (ret)
				return ret;
		} else {
			/* a layer, or D's own sectors (no request in flight writes
			 * them: ex_transfer); O_DIRECT wants the memory aligned too */
			bool own = layer == EX_DEST;
			int dslot = own ? x->dslot_d : x->dslot[layer], bslot = own ? x->bslot_d : x->bslot[layer];
			uint32_t al = own ? x->dalign : x->ralign[layer];
			struct vxm_req *q = nrd ? &r->xrd[nrd - 1] : &r->rd;
			*q = (struct vxm_req){ .op = VXM_IO_READ,
					       .file = boff % al ? bslot : ex_file(dslot, bslot, src_off, len, al),
					       .off = src_off, .len = len, .buf = r->buf + boff, .owner = r };
			nrd++;
			r->reads_left++;
			r->plen += own ? len : 0;
			ret = ex_queue_wait(x, q);
			if (ret)
				return vxm_fail(x->err, ret, x->stg.dst + boff, "data I/O queue failed: %s",
						vxm_strerror(ret));
		}
		boff += len;
	}
	if (--r->reads_left)
		return 0;
	ret = ex_queue_wait(x, &r->wr);
	return ret ? vxm_fail(x->err, ret, x->stg.dst, "data I/O queue failed: %s", vxm_strerror(ret)) : 0;
}

/* Appends a piece at the stage's end, queueing the stage whenever it
 * holds chunk bytes (it then ends on a page) or EX_SEGS pieces (cut on a
 * page). */
static int ex_stage_put(struct exec *x, int layer, uint64_t src, uint64_t len)
{
	while (len) {
		int ret = 0;
		if (x->stg.n == EX_SEGS)
			ret = ex_stage_cut(x);
		if (ret)
			return ret;
		uint64_t room = x->chunk - x->stg.len, n = len < room ? len : room;
		ex_stage_add(x, layer, src, n);
		if (x->stg.len == x->chunk)
			ret = ex_stage_queue(x);
		if (ret)
			return ret;
		src += layer == EX_ZERO ? 0 : n;
		len -= n;
	}
	return 0;
}

/* A transfer, held back with those before it while it continues them in
 * the destination, so that blocks allocated in plan order become
 * chunk-sized writes whatever layer each comes from (ex_queue_gather).
 * Every ex_drain queues what is held back first, so commits, barriers and
 * synchronous metadata reads see every transfer before them issued.
 *
 * Every request covers whole pages of D (x->pad; with direct writes 4 KiB,
 * else a sector, where nothing is ever padded), the sectors it does not
 * change read back from D, so that no page is ever written buffered (a
 * sub-page write costs the kernel a synchronous read, and a sub-block
 * direct write is serialized against all others by ext4 and XFS) nor by
 * two requests at once.  Pieces in the same page join one stage, the gap
 * between them read back from D: no request in flight writes there (a
 * merge writes every sector of D at most once, in order within a block,
 * and blocks start on pages). */
static int ex_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len)
{
	const uint64_t pg = x->pad;
	int ret = 0;
	if (x->stg.n) {
		uint64_t end = x->stg.dst + x->stg.len;
		if (dst == end)
			return ex_stage_put(x, layer, src_off, len);
		if (dst > end && dst - dst % pg < end + (pg - end % pg) % pg) {
			ret = ex_stage_put(x, EX_DEST, end, dst - end);
			return ret ? ret : ex_stage_put(x, layer, src_off, len);
		}
		ret = ex_stage_flush(x);
		if (ret)
			return ret;
	}
	x->stg.n = 0;
	x->stg.len = 0;
	x->stg.dst = dst - dst % pg;
	if (dst % pg)
		return (ret = ex_stage_put(x, EX_DEST, x->stg.dst, dst % pg)) ? ret :
			ex_stage_put(x, layer, src_off, len);
	if (len >= x->chunk) { /* whole chunks straight away */
		uint64_t n = len - len % x->chunk;
		ret = ex_queue_transfer(x, layer, src_off, dst, n);
		if (ret)
			return ret;
		src_off += layer == EX_ZERO ? 0 : n;
		dst += n;
		len -= n;
		x->stg.dst = dst;
	}
	return ex_stage_put(x, layer, src_off, len);
}

static int ex_clone(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len)
{
	struct dreq *r;
	int ret = ex_slot(x, &r);
	if (ret)
		return ret;
	r->rd = (struct vxm_req){ .op = VXM_IO_CLONE, .file = x->dslot_d, .off = dst, .len = len,
				  .src_file = x->dslot[layer], .src_off = src_off, .owner = r };
	r->wr = (struct vxm_req){ .op = VXM_IO_WRITE, .file = x->dslot_d, .off = dst, .len = len,
				  .buf = r->buf, .owner = r };
	ret = vxm_io_queue(x->io, &r->rd);
	if (ret)
		r->busy = false;
	return ret == -EBUSY ? ex_transfer(x, layer, src_off, dst, len) : ret;
}

#define EX_CLONE_MAX (1ull << 30) /* bytes per coalesced clone request */
#define EX_CLONE_MIN (64u << 10)  /* a shorter run inside a block is copied */

/* Queues the pending clone. */
static int ex_clone_flush(struct exec *x)
{
	uint64_t len = x->pc_len;
	if (!len)
		return 0;
	x->pc_len = 0;
	return ex_clone(x, x->pc_layer, x->pc_src, x->pc_dst, len);
}

/* Clones [src, src + len) of layer to dst: one request with the clones
 * before it while they continue each other in both files (blocks allocated
 * in plan order from a layer written in order: most of a merge). */
static int ex_clone_add(struct exec *x, int layer, uint64_t src, uint64_t dst, uint64_t len)
{
	if (x->pc_len && x->pc_layer == layer && x->pc_src + x->pc_len == src &&
	    x->pc_dst + x->pc_len == dst && x->pc_len + len <= EX_CLONE_MAX) {
		x->pc_len += len;
		return 0;
	}
	int ret = ex_clone_flush(x);
	x->pc_layer = layer;
	x->pc_src = src;
	x->pc_dst = dst;
	x->pc_len = len;
	return ret;
}

/* Allocates the next len bytes (M3). */
static int ex_alloc(struct exec *x, uint64_t len, uint64_t *off)
{
	*off = x->alloc_next;
	int ret = vxm_writer_reserve(x->w, x->alloc_next, len, x->err);
	if (ret)
		return ret;
	x->alloc_next += len;
	return 0;
}

/* An object found allocated at off (len bytes): the merge's own from an
 * earlier run advances the allocation point; anything else must lie below
 * alloc_base. */
static int ex_account(struct exec *x, uint64_t off, uint64_t len, const char *what)
{
	if (off < x->alloc_base || off < x->alloc_next)
		return 0;
	if (off != x->alloc_next)
		return vxm_fail(x->err, -VXM_ECORRUPT, off,
				"%s: %s at 0x%llx, but this merge allocates at 0x%llx next: the file changed since the merge started",
				x->d->path, what, (unsigned long long)off,
				(unsigned long long)x->alloc_next);
	x->alloc_next = off + len;
	return 0;
}

static int ex_ensure_sb(struct exec *x, uint64_t chunk)
{
	const struct vxm_geom *g = &x->d->g;
	uint64_t idx = vxm_geom_sb_index(g, chunk), e, off;
	int ret = vxm_txn_get_bat(x->w, idx, &e, x->err);
	if (ret)
		return ret;
	if (vxm_bat_state(e) == VXM_SB_PRESENT) {
		if (chunk != x->sb_chunk_done) {
			ret = ex_account(x, vxm_bat_offset(e), VXM_SB_BLOCK_SIZE, "a sector bitmap");
			x->sb_chunk_done = chunk;
		}
		return ret;
	}
	ret = ex_alloc(x, VXM_SB_BLOCK_SIZE, &off);
	if (!ret)
		ret = vxm_txn_set_bat(x->w, idx, vxm_bat_entry(VXM_SB_PRESENT, off), x->err);
	x->sb_chunk_done = chunk;
	return ret;
}

static bool ex_commit_due(struct exec *x)
{
	if (x->since_commit < x->commit_min)
		return false;
	return x->since_commit >= x->commit_min * (COMMIT_BYTES_MAX / COMMIT_BYTES) ||
	       now_s() - x->commit_end >= COMMIT_RATIO * x->commit_cost;
}

static int ex_commit(struct exec *x, uint64_t cursor, const char *tag)
{
	double t0 = now_s();
	int ret = x->failed; /* a flush after a failed write or flush proves nothing */
	if (!ret)
		ret = ex_clone_flush(x); /* M2: cloned before published */
	if (!ret)
		ret = ex_drain(x);
	if (ret)
		return ret;
	if (x->w) {
		vxm_writer_data_written(x->w);
		ret = vxm_txn_commit(x->w, tag, x->err);
		/* M2 for the cursor too: a resume whose BAT entries are all in
		 * place already stages nothing, and the commit then skips its
		 * data-sync; the journal must not claim the data before it is
		 * durable */
		if (!ret)
			ret = vxm_writer_flush(x->w, x->err);
		if (ret)
			return x->failed = ret;
	} else {
		ret = vxm_io_sync(x->io, x->dslot_d, tag, false);
		if (ret)
			return x->failed = vxm_fail(x->err, ret, VXM_OFF_NONE, "%s: flush failed: %s",
						    vxm_io_path(x->io, x->dslot_d), vxm_strerror(ret));
	}
	x->since_commit = 0;
	if (x->j && cursor > x->j->cursor) {
		x->j->cursor = cursor;
		x->j->alloc_next = x->alloc_next;
		ret = vxm_journal_save(x->j, x->jpath, x->err);
	}
	x->commit_end = now_s();
	x->commit_cost = x->commit_end - t0;
	x->commit_seconds += x->commit_cost;
	x->commits++;
	return ret;
}

static int ex_block_finish(struct exec *x)
{
	if (x->blk == UINT64_MAX || !x->d)
		return 0;
	const struct vxm_geom *g = &x->d->g;
	uint64_t b = x->blk, first = b * x->spb;
	uint64_t nsec = x->total - first < x->spb ? x->total - first : x->spb;
	uint64_t idx = vxm_geom_pb_index(g, b);
	bool new_here = x->blk_off && !x->blk_alloc_orig;
	int ret = 0;

	x->blk = UINT64_MAX;
	if (!x->d_parent) {
		if (new_here)
			ret = vxm_txn_set_bat(x->w, idx, vxm_bat_entry(VXM_PB_FULLY_PRESENT, x->blk_off), x->err);
		else if (!x->blk_off && !x->d_fixed && x->blk_resolved == nsec &&
			 x->blk_zero == nsec && x->blk_state != VXM_PB_ZERO)
			ret = vxm_txn_set_bat(x->w, idx, vxm_bat_entry(VXM_PB_ZERO, 0), x->err);
	} else {
		bool partial_now = x->blk_alloc_orig && x->blk_state == VXM_PB_PARTIALLY_PRESENT;
		if (new_here) {
			bool full = x->blk_resolved == nsec || x->blk_state == VXM_PB_ZERO ||
				    x->blk_state == VXM_PB_UNDEFINED || x->blk_state == VXM_PB_UNMAPPED;
			if (full) {
				ret = vxm_txn_set_bat(x->w, idx,
						      vxm_bat_entry(VXM_PB_FULLY_PRESENT, x->blk_off), x->err);
			} else {
				ret = ex_ensure_sb(x, b / g->chunk_ratio);
				if (!ret)
					ret = vxm_txn_set_bat(x->w, idx,
							      vxm_bat_entry(VXM_PB_PARTIALLY_PRESENT, x->blk_off),
							      x->err);
				partial_now = true;
			}
		}
		if (!ret && partial_now) {
			if (!new_here)
				ret = ex_ensure_sb(x, b / g->chunk_ratio);
			for (uint64_t s = 0; !ret && s < nsec;) {
				uint64_t run = vxm_bitmap_run(x->blk_bits, s, nsec);
				if (vxm_bit_get(x->blk_bits, s))
					ret = vxm_txn_set_bits(x->w, first + s, run, true, x->err);
				s += run;
			}
		}
	}
	if (ret)
		return ret;
	x->since_commit += nsec * x->lss;
	if (ex_commit_due(x) || vxm_txn_room(x->w) < 64)
		ret = ex_commit(x, (first + nsec) * x->lss, "bat-commit");
	return ret;
}

static int ex_block_begin(struct exec *x, uint64_t b)
{
	const struct vxm_geom *g = &x->d->g;
	uint64_t e;
	int ret = vxm_txn_get_bat(x->w, vxm_geom_pb_index(g, b), &e, x->err);
	if (ret)
		return ret;
	unsigned st = vxm_bat_state(e);
	x->blk = b;
	x->blk_state = st;
	x->blk_alloc_orig = st == VXM_PB_FULLY_PRESENT || st == VXM_PB_PARTIALLY_PRESENT;
	x->blk_off = x->blk_alloc_orig ? vxm_bat_offset(e) : 0;
	x->blk_fresh = false;
	x->blk_resolved = x->blk_zero = 0;
	x->blk_alloc_at = x->alloc_next;
	if (x->blk_bits)
		memset(x->blk_bits, 0, (x->spb + 7) / 8);
	if (x->blk_alloc_orig && x->blk_off >= x->alloc_base) {
		/* allocated by an earlier run of this merge: space it wrote only
		 * where data goes, so the rest still reads zeros (M3) */
		x->blk_fresh = true;
		ret = ex_account(x, x->blk_off, x->bs, "a payload block");
	}
	return ret;
}

struct plan_ctx {
	struct exec *x;
	int ret;
};

static int ex_extent(void *vctx, const struct vxm_extent *e)
{
	struct plan_ctx *pc = vctx;
	struct exec *x = pc->x;
	uint64_t a = e->voff, end = e->voff + e->len;
	int ret;

	if (x->o->stop && *x->o->stop)
		return -EINTR;
	if (end <= x->cursor)
		return 0; /* durable already */
	if (a < x->cursor)
		a = x->cursor;
	uint64_t src = e->src_off + (a - e->voff);

	if (!x->d) { /* raw output: the virtual offset is the file offset */
		if (e->kind == VXM_EXT_COPY) {
			ret = ex_transfer(x, e->layer, src, a, end - a);
			if (ret)
				return ret;
		} else {
			x->done += end - a;
		}
		x->since_commit += end - a;
		if (ex_commit_due(x) && (ret = ex_commit(x, end, "data-commit")))
			return ret;
		ex_progress(x, "copy", false);
		/* a shared context must be idle for the planner's reads (io.h) */
		return x->dio_up ? 0 : ex_drain(x);
	}
	while (a < end) {
		uint64_t s = a / x->lss, b = s / x->spb;
		if (b != x->blk) {
			/* finishing and entering a block read metadata
			 * synchronously: a shared context must be idle (io.h) */
			ret = x->dio_up ? 0 : ex_drain(x);
			if (!ret)
				ret = ex_block_finish(x);
			if (!ret)
				ret = ex_block_begin(x, b);
			if (ret)
				return ret;
		}
		uint64_t bend = (b + 1) * x->spb * x->lss;
		uint64_t n = (end < bend ? end : bend) - a;
		uint64_t in_blk = a - b * x->spb * x->lss;
		bool whole = in_blk == 0 && n == x->bs;
		if (e->kind == VXM_EXT_COPY || (x->d_parent && !x->blk_off)) {
			if (!x->blk_off) {
				ret = ex_alloc(x, x->bs, &x->blk_off);
				if (ret)
					return ret;
				x->blk_fresh = true;
			}
		}
		uint64_t dst = x->blk_off + in_blk;
		if (e->kind == VXM_EXT_COPY) {
			if (x->clone_ok && x->layer_clone[e->layer] && (src | dst | n) % x->clone_blk == 0 &&
			    (whole || n >= EX_CLONE_MIN))
				ret = ex_clone_add(x, e->layer, src, dst, n);
			else
				ret = ex_transfer(x, e->layer, src, dst, n);
		} else if (x->blk_off && !x->blk_fresh) {
			ret = ex_transfer(x, -1, 0, dst, n); /* zeros over old data */
		} else {
			x->done += n; /* fresh space or an unallocated base block reads zeros */
			ret = 0;
		}
		if (ret)
			return ret;
		uint64_t ns = n / x->lss;
		if (x->blk_bits)
			vxm_bitmap_fill(x->blk_bits, s - b * x->spb, ns, true);
		x->blk_resolved += ns;
		if (e->kind == VXM_EXT_ZERO)
			x->blk_zero += ns;
		a += n;
		src += n;
	}
	ex_progress(x, "copy", false);
	/* the planner's metadata reads need an idle context when it is shared */
	if (x->dio_up)
		return 0;
	ret = ex_clone_flush(x);
	return ret ? ret : ex_drain(x);
}

static void ex_fini(struct exec *x)
{
	struct vxm_req *done[64];

	/* a run that failed mid-pipeline leaves requests in flight: reap them
	 * (without acting on them) so the caller's shared context is idle */
	while (!x->dio_up && x->io && x->io->inflight) {
		(void)vxm_io_submit(x->io);
		if (vxm_io_reap(x->io, 1, done, 64) <= 0)
			break;
	}
	if (x->dio_up)
		vxm_io_fini(&x->dio);
	else if (x->io)
		for (unsigned i = 0; i < VXM_CHAIN_MAX_DEPTH; i++)
			if (x->dslot_open[i])
				vxm_io_close(x->io, x->dslot[i]);
	if (!x->dio_up && x->io && x->dslot_d_open)
		vxm_io_close(x->io, x->dslot_d);
	vxm_topo_free(x->topo, &x->mem); /* after the context that registered it */
	vxm_topo_close(x->topo);
	free(x->heap);
	free(x->q);
	free(x->blk_bits);
}

#define EX_HUGE (2u << 20) /* a huge page */

/* Sets up the data path: its own I/O context and descriptors, so the
 * metadata reads of the planner never wait behind data requests. */
static int ex_init(struct exec *x, const char *dest_path, bool dest_raw)
{
	const struct vxm_merge_opts *o = x->o;
	unsigned qd = o->queue_depth ? o->queue_depth : EX_QD_DEFAULT;
	/* room for every read of every request's gathered write, within
	 * 4096 entries unless the caller asked for more requests than that */
	unsigned depth = qd * EX_SEGS;
	if (depth > 4096)
		depth = qd > 4096 ? qd : 4096;
	struct vxm_io_params p = { .queue_depth = depth,
				   .backend = o->backend, .log = o->log, .log_ctx = o->log_ctx };
	struct stat st;
	int ret;
	if (o->io) {
		x->io = o->io; /* one context for everything: drain per extent */
	} else {
		ret = vxm_io_init(&x->dio, NULL, &p);
		if (ret)
			return vxm_fail(x->err, ret, VXM_OFF_NONE, "I/O setup (%s) failed: %s",
					o->backend ? o->backend : "auto", vxm_strerror(ret));
		x->dio_up = true;
		x->io = &x->dio;
	}
	/* A private context: O_DIRECT (no page-cache copies, no write-back
	 * burst at each commit's data-sync) and fixed buffers. */
	unsigned dflag = x->dio_up ? VXM_O_DIRECT : 0;
	x->qd = qd;
	x->chunk = o->chunk_size ? o->chunk_size : EX_CHUNK_DEFAULT;
	/* whole sectors (ex_transfer cuts requests on pages) */
	x->chunk = x->chunk < x->lss ? x->lss : x->chunk - x->chunk % x->lss;
	x->q = calloc(x->qd, sizeof(*x->q));
	if (!x->q)
		return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	/* Direct I/O: buffers on the node of the CPU running the merge, each
	 * on 2 MiB boundaries when a chunk is that large, so that huge pages
	 * let a 4 MiB request reach the disk as a few large segments instead
	 * of 1,024 pages (virtio-blk takes 254 segments a request: ~0.8 MiB
	 * requests from 4 KiB pages).  Without a topology: one node, nothing
	 * bound.  A shared context (buffered; tests) keeps plain heap memory,
	 * touched only where used. */
	size_t stride = x->chunk >= EX_HUGE ? (x->chunk + EX_HUGE - 1) / EX_HUGE * EX_HUGE : x->chunk;
	size_t area = stride * (x->qd + 1);
	uint8_t *base;
	if (x->dio_up) {
		if (vxm_topo_open(&x->topo, NULL))
			x->topo = NULL;
		int cpu = sched_getcpu();
		int nd = x->topo && cpu >= 0 ? vxm_topo_cpu_node(x->topo, (unsigned)cpu) : -1;
		ret = vxm_topo_alloc(x->topo, nd > 0 ? (unsigned)nd : 0, area, &x->mem);
		if (ret)
			return vxm_fail(x->err, ret, VXM_OFF_NONE, "cannot allocate %zu bytes of I/O buffers: %s",
					area, vxm_strerror(ret));
		base = x->mem.p; /* zero-filled (vxm_topo_alloc I2) */
	} else {
		base = x->heap = aligned_alloc(4096, area);
		if (!base)
			return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		memset(base + stride * x->qd, 0, x->chunk);
	}
	for (unsigned i = 0; i < x->qd; i++)
		x->q[i].buf = base + stride * i;
	x->zero = base + stride * x->qd;
	if (x->dio_up) { /* fixed buffers (io_uring READ/WRITE_FIXED): best effort */
		void **bufs = calloc(x->qd + 1, sizeof(*bufs));
		size_t *lens = calloc(x->qd + 1, sizeof(*lens));
		if (bufs && lens) {
			for (unsigned i = 0; i < x->qd; i++) {
				bufs[i] = x->q[i].buf;
				lens[i] = x->chunk;
			}
			bufs[x->qd] = x->zero;
			lens[x->qd] = x->chunk;
			(void)vxm_io_register_bufs(x->io, bufs, lens, x->qd + 1);
		}
		free(bufs);
		free(lens);
	}
	for (int i = x->dest < 0 ? 0 : x->dest + 1; i <= x->top; i++) {
		const char *p2 = x->c->layer[i].img->path;
		x->dslot[i] = vxm_io_open(x->io, p2, VXM_O_RDONLY | dflag);
		if (x->dslot[i] < 0)
			return vxm_fail(x->err, x->dslot[i], VXM_OFF_NONE, "%s: cannot open: %s", p2,
					vxm_strerror(x->dslot[i]));
		x->dslot_open[i] = true;
		x->bslot[i] = dflag ? vxm_io_open(x->io, p2, VXM_O_RDONLY) : x->dslot[i];
		if (x->bslot[i] < 0)
			return vxm_fail(x->err, x->bslot[i], VXM_OFF_NONE, "%s: cannot open: %s", p2,
					vxm_strerror(x->bslot[i]));
		x->layer_dev[i] = stat(p2, &st) == 0 ? st.st_dev : (dev_t)-1;
		x->ralign[i] = ex_dio_align(p2);
	}
	x->dslot_d = vxm_io_open(x->io, dest_path, VXM_O_RDWR | dflag);
	if (x->dslot_d < 0)
		return vxm_fail(x->err, x->dslot_d, VXM_OFF_NONE, "%s: cannot open: %s", dest_path,
				vxm_strerror(x->dslot_d));
	x->dslot_d_open = true;
	x->dio_d = dflag ? x->dslot_d : -1;
	x->dalign = ex_dio_align(dest_path);
	/* direct writes to D in whole pages, D's own sectors read back around
	 * the pieces (ex_transfer); a raw output ends at the virtual size (a
	 * VHDX block ends on a page boundary).  A request is whole pages too. */
	x->pad = x->dio_up && x->chunk % EX_DIO_ALIGN == 0 ? EX_DIO_ALIGN : x->lss;
	x->pad_end = x->d ? UINT64_MAX : x->c->layer[x->top].img->m.virtual_size;
	x->bslot_d = dflag ? vxm_io_open(x->io, dest_path, VXM_O_RDWR) : x->dslot_d;
	if (x->bslot_d < 0)
		return vxm_fail(x->err, x->bslot_d, VXM_OFF_NONE, "%s: cannot open: %s", dest_path,
				vxm_strerror(x->bslot_d));
	x->d_dev = stat(dest_path, &st) == 0 ? st.st_dev : (dev_t)-2;
	x->clone_ok = !o->no_clone && !dest_raw;
	/* reflinks where they work (asked once per layer, so a filesystem
	 * without them never sees a clone request) */
	for (int i = x->dest < 0 ? 0 : x->dest + 1; x->clone_ok && i <= x->top; i++)
		x->layer_clone[i] = x->layer_dev[i] == x->d_dev &&
				    vxm_io_clone_supported(x->io, x->dslot_d, x->dslot[i]) == 1;
	x->clone_blk = vxm_io_fs_block(x->io, x->dslot_d);
	if (x->clone_blk < 4096)
		x->clone_blk = 4096;
	x->blk = UINT64_MAX;
	x->sb_chunk_done = UINT64_MAX;
	return 0;
}

/* Streams the plan into the destination.  Returns 0, -EINTR (stopped and
 * recorded), or an error. */
static int ex_run(struct exec *x)
{
	struct vxm_plan_opts po = { .dest = x->dest, .top = x->top };
	struct vxm_plan_stats st;
	struct plan_ctx pc = { .x = x };
	int ret;

	if (x->d) {
		x->spb = x->d->g.spb;
		x->bs = x->d->g.block_size;
		x->d_parent = x->d->m.has_parent;
		x->d_fixed = x->d->m.leave_blocks_allocated;
		x->total = x->d->g.virtual_size / x->lss;
		if (x->d_parent) {
			x->blk_bits = calloc(1, (x->spb + 7) / 8 + 8);
			if (!x->blk_bits)
				return vxm_fail(x->err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		}
	}
	x->done = x->cursor; /* bytes before the cursor count as done */
	x->commit_min = COMMIT_BYTES;
	/* tests: a small chain with many commits (the bytes must not change) */
	uint64_t cbn = vxm_test_commit_bytes_hook ? vxm_test_commit_bytes_hook() : 0;
	if (cbn)
		x->commit_min = cbn;
	x->commit_end = now_s();
	ret = vxm_plan(x->c, &po, ex_extent, &pc, &st, x->err);
	if (ret == -EINTR) {
		/* Record what is durable: the blocks before the current one. */
		uint64_t cur = x->blk == UINT64_MAX ? x->cursor : x->blk * x->spb * x->lss;
		if (x->blk != UINT64_MAX)
			x->alloc_next = x->blk_alloc_at;
		x->blk = UINT64_MAX;
		int r2 = ex_commit(x, cur, "interrupt-commit");
		return r2 ? r2 : -EINTR;
	}
	if (!ret)
		ret = ex_block_finish(x);
	if (!ret)
		ret = ex_commit(x, x->d ? x->total * x->lss : UINT64_MAX - 1, "final-commit");
	ex_progress(x, "copy", true);
	return ret;
}

/* ---- phases ----------------------------------------------------------------------- */

static uint64_t random_seed(void)
{
	struct vxm_guid g;
	uint64_t s;
	vxm_guid_seed(0);
	vxm_guid_new(&g);
	memcpy(&s, g.b, 8);
	return s ? s : 1;
}

/* The journal of an interrupted merge with this top, if any: next to the
 * destination given, else in the top's directory (the top itself may be
 * gone when only cleanup remained). */
static char *find_journal(const struct vxm_merge_opts *o, const char *top_abs)
{
	char *p;
	struct stat st;
	if (o->out) {
		char *oa = abspath(o->out);
		p = oa ? vxm_journal_path(oa) : NULL;
		free(oa);
		if (p && stat(p, &st) == 0)
			return p;
		free(p);
		return NULL;
	}
	if (o->into) {
		char *ia = abspath(o->into);
		p = ia ? vxm_journal_path(ia) : NULL;
		free(ia);
		if (p && stat(p, &st) == 0)
			return p;
		free(p);
	}
	char *t = strdup(top_abs);
	const char *dir = dirname(t);
	DIR *d = opendir(dir);
	struct dirent *e;
	char *found = NULL;
	while (d && (e = readdir(d)) && !found) {
		if (!ends_ci(e->d_name, ".vxmerge-journal"))
			continue;
		if (asprintf(&p, "%s/%s", dir, e->d_name) < 0)
			continue;
		struct vxm_journal j;
		if (vxm_journal_load(&j, p, NULL) == 0) {
			if (!strcmp(j.top, top_abs) && !j.convert)
				found = p;
			vxm_journal_fini(&j);
		}
		if (found != p)
			free(p);
	}
	if (d)
		closedir(d);
	free(t);
	return found;
}

static int remove_file(const char *path, unsigned *count)
{
	static const char *const side[] = { ".mrt", ".rct" };
	int ret = 0;
	if (unlink(path) == 0)
		(*count)++;
	else if (errno != ENOENT)
		ret = -errno;
	/* Resilient change tracking sidecars: "<file>.mrt" and "<name>.mrt" */
	for (int k = 0; k < 2; k++) {
		char *s1;
		if (asprintf(&s1, "%s%s", path, side[k]) >= 0) {
			unlink(s1);
			free(s1);
		}
		char *base = strdup(path), *dot = base ? strrchr(base, '.') : NULL;
		if (dot && !strchr(dot, '/')) {
			*dot = 0;
			if (asprintf(&s1, "%s%s", base, side[k]) >= 0) {
				unlink(s1);
				free(s1);
			}
		}
		free(base);
	}
	return ret;
}

static bool same_dir(const char *a, const char *b)
{
	char *x = strdup(a), *y = strdup(b);
	bool eq = x && y && !strcmp(dirname(x), dirname(y));
	free(x);
	free(y);
	return eq;
}

/* A symlinked layer lost its link; the file it pointed to stays where it is
 * (it may be outside every directory the chain was found in, where nothing
 * is deleted unnamed) and is named. */
static void kept_target(const struct vxm_merge_opts *o, const struct vxm_journal *j, unsigned i,
			struct vxm_merge_result *r)
{
	const char *t = j->layer_target[i];
	struct stat st;
	if (!t || stat(t, &st) < 0)
		return;
	bool inside = same_dir(t, j->top) || same_dir(t, j->dest);
	for (unsigned k = 0; k < j->nlayers && !inside; k++)
		inside = same_dir(t, j->layer_path[k]);
	for (unsigned k = 0; k < j->nchildren && !inside; k++)
		inside = same_dir(t, j->child_path[k]);
	say(o, "kept %s: the target of the symlink %s%s; it is no longer a valid checkpoint", t,
	    j->layer_path[i], inside ? "" : ", outside the chain's directories");
	size_t n = strlen(r->kept);
	snprintf(r->kept + n, sizeof(r->kept) - n, "%s%s", n ? "\n" : "", t);
}

static int phase_cleanup(const struct vxm_merge_opts *o, struct vxm_journal *j, const char *jpath,
			 struct vxm_merge_result *r, struct vxm_err *err)
{
	int ret;
	if (j->phase < VXM_JPHASE_CLEANUP) {
		j->phase = VXM_JPHASE_CLEANUP;
		ret = vxm_journal_save(j, jpath, err);
		if (ret)
			return ret;
	}
	progress(o, "cleanup", 0, 0, 0, 0, 0);
	if (!j->keep_merged) {
		/* the top last: while it exists the journal is found from it */
		for (unsigned i = 0; i < j->nlayers; i++) {
			vxm_killpoint("delete");
			ret = remove_file(j->layer_path[i], &r->files_removed);
			if (ret)
				return vxm_fail(err, ret, VXM_OFF_NONE, "%s: cannot remove: %s",
						j->layer_path[i], strerror(-ret));
			vxm_fsync_dir(j->layer_path[i]);
			kept_target(o, j, i, r);
		}
	}
	return vxm_journal_remove(jpath, err);
}

static int phase_repoint(const struct vxm_merge_opts *o, struct vxm_io *io, struct vxm_journal *j,
			 const char *jpath, struct vxm_merge_result *r, struct vxm_err *err)
{
	int ret;
	progress(o, "repoint", 0, 0, 0, 0, 0);
	for (unsigned i = 0; i < j->nchildren; i++) {
		const char *path = j->child_path[i];
		struct vxm_image *img;
		ret = vxm_image_open(&img, io, path, VXM_IMAGE_RDWR, err);
		if (ret)
			return ret;
		bool done = img->loc && vxm_guid_eq(&img->loc->parent_linkage, &j->dest_new_dwg);
		char oldabs[VXM_LOCATOR_PATH_MAX], oldvol[VXM_LOCATOR_PATH_MAX];
		snprintf(oldabs, sizeof(oldabs), "%s", img->loc ? img->loc->absolute_win32_path : "");
		snprintf(oldvol, sizeof(oldvol), "%s", img->loc ? img->loc->volume_path : "");
		vxm_image_close(img);
		if (!done) {
			/* M4: D is final and flushed (phase COPIED) before this. */
			struct relink k;
			ret = relink_child(&k, path, j->top, j->dest, &j->dest_new_dwg, oldabs, oldvol);
			if (!ret)
				ret = set_locator(io, path, k.set, 5, err);
			relink_free(&k);
			if (ret)
				return ret;
		}
		struct vxm_guid fwg;
		vxm_guid_derive(j->seed, "child-fwg", i, &fwg);
		ret = finalize_file(io, path, j->child_seq[i], &fwg, err);
		if (ret)
			return ret;
		vxm_killpoint("reparent");
		r->children_repointed++;
	}
	j->phase = VXM_JPHASE_REPOINTED;
	return vxm_journal_save(j, jpath, err);
}

/* Do D's IsVirtualDisk items already equal TOP's (M3: edit only once)? */
static bool vd_items_equal(const struct vxm_image *d, const struct vxm_image *top)
{
	unsigned nd = 0, nt = 0;
	for (unsigned i = 0; i < d->mt->count; i++)
		nd += !!(d->mt->e[i].flags & VXM_META_IS_VIRTUAL_DISK);
	for (unsigned i = 0; i < top->mt->count; i++) {
		const struct vxm_meta_entry *e = &top->mt->e[i];
		if (!(e->flags & VXM_META_IS_VIRTUAL_DISK))
			continue;
		nt++;
		int k = vxm_meta_find(d->mt, &e->id, e->flags & VXM_META_IS_USER);
		if (k < 0 || d->mt->e[k].len != e->len || d->mt->e[k].flags != e->flags ||
		    memcmp(d->meta + d->mt->e[k].off, top->meta + e->off, e->len))
			return false;
	}
	return nd == nt;
}

static int phase_copy(const struct vxm_merge_opts *o, struct vxm_chain *c, struct vxm_journal *j,
		      const char *jpath, struct vxm_merge_result *r, struct vxm_err *err)
{
	struct exec x = { .o = o, .err = err, .c = c, .top = (int)c->n - 1, .dest = j->dest_index,
			  .lss = c->lss, .j = j, .jpath = jpath, .alloc_base = j->alloc_base,
			  .alloc_next = j->alloc_next ? j->alloc_next : j->alloc_base,
			  .cursor = j->cursor };
	struct vxm_image *top = c->layer[c->n - 1].img;
	int ret = vxm_image_open(&x.d, c->io, j->dest, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	ret = vxm_writer_begin(&x.w, x.d, err);
	if (ret)
		goto out;
	/* Always, even when D already carries G' from an interrupted run: the
	 * session must know its DataWriteGuid is set, or its first visible
	 * change would draw a new one (M3). */
	ret = vxm_writer_set_data_guid(x.w, &j->dest_new_dwg, err);
	if (ret)
		goto out;
	vxm_killpoint("dest-guid");
	if (j->phase < VXM_JPHASE_COPYING) {
		j->phase = VXM_JPHASE_COPYING;
		ret = vxm_journal_save(j, jpath, err);
		if (ret)
			goto out;
	}
	if (!vd_items_equal(x.d, top)) {
		if (!vxm_guid_eq(&x.d->hdr.data_write, &j->dest_new_dwg)) {
			ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE, "internal: DataWriteGuid not set");
			goto out;
		}
		ret = vxm_writer_set_vd_items(x.w, top, err);
		if (ret)
			goto out;
	}
	x.total_bytes = r->plan.copy_bytes + r->plan.zero_bytes;
	ret = ex_init(&x, j->dest, false);
	if (!ret)
		ret = ex_run(&x);
	r->copied = x.copied;
	r->cloned = x.cloned;
	r->zeroed = x.zeroed;
	r->data_writes = x.writes;
	r->buffered_bytes = x.buffered;
	r->commits = x.commits;
	r->commit_seconds = x.commit_seconds;
out:
	ex_fini(&x);
	if (x.w) {
		int r2 = vxm_writer_end(x.w, ret ? NULL : err);
		if (!ret)
			ret = r2;
	}
	vxm_image_close(x.d);
	if (ret)
		return ret;
	/* M3: final headers and a zeroed log; then the barrier of M4. */
	progress(o, "finalize", 0, 0, 0, 0, 0);
	struct vxm_guid fwg;
	vxm_guid_derive(j->seed, "dest-fwg", 0, &fwg);
	ret = finalize_file(c->io, j->dest, j->dest_orig_seq, &fwg, err);
	if (ret)
		return ret;
	j->phase = VXM_JPHASE_COPIED;
	return vxm_journal_save(j, jpath, err);
}

static int phase_link(const struct vxm_merge_opts *o, struct vxm_chain *c, struct vxm_journal *j,
		      const char *jpath, struct vxm_err *err)
{
	struct vxm_image *c1 = c->layer[j->dest_index + 1].img;
	int ret;
	progress(o, "link", 0, 0, 0, 0, 0);
	if (!c1->loc || !c1->loc->has_linkage2 ||
	    !vxm_guid_eq(&c1->loc->parent_linkage2, &j->dest_new_dwg)) {
		char want[40];
		braced(&j->dest_new_dwg, want);
		struct vxm_kv set[] = { { "parent_linkage2", want } };
		ret = set_locator(c->io, c1->path, set, 1, err);
		if (ret)
			return ret;
		vxm_killpoint("link");
	}
	/* C1 is removed at the end, or kept and valid: final either way (M3) */
	struct vxm_guid fwg;
	vxm_guid_derive(j->seed, "c1-fwg", 0, &fwg);
	ret = finalize_file(c->io, c1->path, j->layer_seq[0], &fwg, err);
	if (ret)
		return ret;
	j->phase = VXM_JPHASE_LINKED;
	return vxm_journal_save(j, jpath, err);
}

/* Past the end of the file and of everything D references, 1 MiB aligned. */
static int alloc_base_of(struct vxm_image *d, uint64_t *base, struct vxm_err *err)
{
	uint64_t end;
	int ret = vxm_image_alloc_end(d, &end, err);
	if (end < d->file_size)
		end = d->file_size;
	*base = (end + VXM_MiB - 1) / VXM_MiB * VXM_MiB;
	return ret;
}

static int preflight_relatives(const struct vxm_merge_opts *o, struct vxm_chain *c, int dest,
			       struct vxm_journal *j, struct vxm_err *err)
{
	struct relatives rs = { 0 };
	char *dirs[VXM_JOURNAL_MAX + 64];
	unsigned nd = 0;
	int top = (int)c->n - 1;
	int ret = 0;

	for (int i = dest; i <= top && nd < VXM_JOURNAL_MAX; i++) {
		char *t = strdup(c->layer[i].img->path);
		dirs[nd++] = t ? strdup(dirname(t)) : NULL;
		free(t);
	}
	for (unsigned i = 0; i < o->nsearch && nd < VXM_JOURNAL_MAX + 64; i++)
		dirs[nd++] = strdup(o->search_dirs[i]);
	for (unsigned i = 0; i < nd && !ret; i++) {
		bool seen = false;
		for (unsigned k = 0; k < i && dirs[i]; k++)
			seen |= dirs[k] && !strcmp(dirs[k], dirs[i]);
		ret = !dirs[i] ? -ENOMEM : seen ? 0 : scan_dir(dirs[i], c, &rs);
	}
	if (ret) {
		ret = vxm_fail(err, ret, VXM_OFF_NONE, "out of memory looking for other checkpoints");
		goto out;
	}
	for (unsigned i = 0; i < o->nrebase; i++) {
		struct vxm_image *img;
		ret = vxm_image_open(&img, NULL, o->rebase[i], 0, err);
		if (ret)
			goto out;
		bool ok = img->loc && (vxm_guid_eq(&img->loc->parent_linkage, &c->layer[top].img->hdr.data_write) ||
				       (img->loc->has_linkage2 &&
					vxm_guid_eq(&img->loc->parent_linkage2, &c->layer[top].img->hdr.data_write)));
		bool dup = false;
		for (unsigned k = 0; k < rs.n; k++) {
			struct stat a, b;
			dup |= !stat(rs.r[k].path, &a) && !stat(o->rebase[i], &b) && a.st_ino == b.st_ino &&
			       a.st_dev == b.st_dev;
		}
		if (ok && !dup)
			ret = relatives_add(&rs, (struct relative){ .path = strdup(o->rebase[i]),
								    .dwg = img->hdr.data_write,
								    .linkage = img->loc->parent_linkage,
								    .linkage2 = img->loc->parent_linkage2,
								    .has_linkage2 = img->loc->has_linkage2,
								    .seq = img->hdr.seq });
		vxm_image_close(img);
		if (ret) {
			ret = vxm_fail(err, ret, VXM_OFF_NONE, "out of memory");
			goto out;
		}
		if (!ok) {
			ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				       "--rebase %s: it is not a child of %s (its parent_linkage names another file)",
				       o->rebase[i], c->layer[top].img->path);
			goto out;
		}
	}
	/* Children of TOP are re-pointed; children of D or of a merged layer
	 * other than the chain's own next layer would be invalidated. */
	char names[2048] = "";
	size_t nl = 0;
	unsigned nsib = 0;
	for (unsigned k = 0; k < rs.n; k++) {
		const struct relative *r = &rs.r[k];
		if (links_to(r, &c->layer[top].img->hdr.data_write)) {
			if (j->nchildren < VXM_JOURNAL_MAX) {
				j->child_path[j->nchildren] = abspath(r->path);
				j->child_dwg[j->nchildren] = r->dwg;
				j->child_seq[j->nchildren] = r->seq;
				j->nchildren++;
			}
			continue;
		}
		for (int i = dest; i < top; i++)
			if (links_to(r, &c->layer[i].img->hdr.data_write)) {
				nsib++;
				nl += (size_t)snprintf(names + nl, nl < sizeof(names) ? sizeof(names) - nl : 0,
						       "%s%s (child of %s)", nsib > 1 ? ", " : "", r->path,
						       c->layer[i].img->path);
				break;
			}
	}
	if (nsib && !o->force)
		ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
			       "merging would invalidate %u other checkpoint%s: %s; nothing was changed (use --force to merge anyway)",
			       nsib, nsib == 1 ? "" : "s", names);
	else if (nsib)
		say(o, "--force: %u other checkpoint%s will no longer open: %s", nsib, nsib == 1 ? "" : "s",
		    names);
out:
	for (unsigned i = 0; i < nd; i++)
		free(dirs[i]);
	relatives_free(&rs);
	return ret;
}

/* The layers a merge or convert reads pass vxm_plan_preflight before the
 * first write.  A layer of another virtual size than the top is merged
 * exactly as the chain shows it (zeros past its end, vxm_chain_resolve I3):
 * say so. */
static int preflight_layers(const struct vxm_merge_opts *o, struct vxm_chain *c, int dest,
			    struct vxm_err *err)
{
	int ret = vxm_plan_preflight(c, dest, err);
	int top = (int)c->n - 1;
	const struct vxm_image *t = c->layer[top].img;
	for (int i = dest < 0 ? 0 : dest; i < top && !ret; i++) {
		const struct vxm_image *img = c->layer[i].img;
		if (img->m.virtual_size != t->m.virtual_size)
			say(o, "%s has a virtual size of %llu bytes, the top %llu: the result reads exactly as the chain shows it (zeros past the end of a smaller layer%s)",
			    img->path, (unsigned long long)img->m.virtual_size,
			    (unsigned long long)t->m.virtual_size,
			    i == dest ? "; the destination grows" : "");
	}
	return ret;
}

/* The files whose locator the merge edits pass the rules too, and have
 * room for the edit: each child of TOP (re-pointed at D after the data is
 * merged) and C1 (parent_linkage2, before any other write). */
static int preflight_relinks(struct vxm_chain *c, int dest, const struct vxm_journal *j,
			     const char *top, struct vxm_io *io, struct vxm_err *err)
{
	static const struct vxm_guid any; /* the edit's size does not depend on it */
	char *dpath = abspath(c->layer[dest].img->path);
	int ret = dpath ? 0 : -ENOMEM;
	for (unsigned i = 0; i < j->nchildren && !ret; i++) {
		struct vxm_image *img = NULL;
		struct relink k = { 0 };
		ret = vxm_image_open(&img, io, j->child_path[i], 0, err);
		if (!ret)
			ret = vxm_image_require_valid(img, "a child of the top, to re-point", err);
		if (!ret && img->loc)
			ret = relink_child(&k, j->child_path[i], top, dpath, &any,
					   img->loc->absolute_win32_path, img->loc->volume_path);
		if (!ret)
			ret = locator_room(img, k.set, 5, err);
		relink_free(&k);
		vxm_image_close(img);
	}
	if (!ret) {
		char g[40];
		braced(&any, g);
		struct vxm_kv set[] = { { "parent_linkage2", g } };
		ret = locator_room(c->layer[dest + 1].img, set, 1, err);
	}
	free(dpath);
	return ret;
}

static int take_locks(struct locks *l, struct vxm_chain *c, int dest, const struct vxm_journal *j,
		      struct vxm_err *err)
{
	int ret = 0;
	for (int i = 0; i < (int)c->n && !ret; i++)
		ret = lock_file(l, c->layer[i].img->path, dest >= 0 && i >= dest, err);
	for (unsigned i = 0; i < j->nchildren && !ret; i++)
		ret = lock_file(l, j->child_path[i], true, err);
	return ret;
}

static int check_space(const char *dest, const struct vxm_plan_stats *st, struct vxm_merge_result *r,
		       struct vxm_err *err)
{
	int ret = vxm_space_free(dest, &r->free_bytes, err);
	if (ret)
		return ret;
	if (r->free_bytes < st->dest_growth_bytes)
		return vxm_fail(err, -ENOSPC, VXM_OFF_NONE,
				"not enough space: the destination grows by %llu bytes (%.1f GiB) but its filesystem has %llu bytes (%.1f GiB) free; nothing was changed",
				(unsigned long long)st->dest_growth_bytes,
				st->dest_growth_bytes / (double)VXM_GiB, (unsigned long long)r->free_bytes,
				r->free_bytes / (double)VXM_GiB);
	return 0;
}

/* Every path a new journal records was allocated (strdup, abspath). */
static bool journal_paths_ok(const struct vxm_journal *j)
{
	bool ok = j->top && j->dest && (!j->convert || j->out);
	for (unsigned i = 0; i < j->nlayers; i++)
		ok &= j->layer_path[i] != NULL;
	for (unsigned i = 0; i < j->nchildren; i++)
		ok &= j->child_path[i] != NULL;
	return ok;
}

static int convert_run(const struct vxm_merge_opts *o, struct vxm_merge_result *r,
		       struct vxm_err *err)
{
	struct vxm_chain_opts co = { .search_dirs = o->search_dirs, .nsearch = o->nsearch, .io = o->io };
	struct vxm_chain *c = NULL;
	struct vxm_journal j = { 0 };
	struct locks l = { .n = 0 };
	char *out = abspath(o->out), *jpath = NULL, *partial = NULL, *top_abs = abspath(o->top);
	struct stat st;
	int ret;

	if (!out || !top_abs || !(jpath = vxm_journal_path(out)) ||
	    asprintf(&partial, "%s.vxmerge-partial", out) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(r->dest, sizeof(r->dest), "%s", out);
	bool have_journal = vxm_journal_load(&j, jpath, NULL) == 0;
	if (!have_journal && stat(out, &st) == 0) {
		ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE, "%s exists; refusing to overwrite it", out);
		goto out;
	}
	progress(o, "preflight", 0, 0, 0, 0, 0);
	ret = vxm_chain_open(&c, o->top, &co, err);
	if (!ret)
		ret = preflight_layers(o, c, VXM_PLAN_NEW_FILE, err);
	if (ret)
		goto out;
	int top = (int)c->n - 1;
	struct vxm_plan_opts po = { .dest = VXM_PLAN_NEW_FILE, .top = top,
				    .new_block_size = o->out_block_size, .new_fixed = o->out_fixed };
	ret = vxm_plan(c, &po, NULL, NULL, &r->plan, err);
	if (ret)
		goto out;
	if (o->out_format == VXM_OUT_RAW)
		r->plan.dest_growth_bytes = r->plan.copy_bytes; /* sparse: data only */
	ret = take_locks(&l, c, -1, &j, err);
	if (ret)
		goto out;
	if (have_journal) {
		if (!j.convert || strcmp(j.top, top_abs) || j.nlayers != c->n) {
			ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
				       "%s belongs to another interrupted run (of %s); finish or remove it first",
				       jpath, j.top);
			goto out;
		}
		for (unsigned i = 0; i < j.nlayers; i++)
			if (!vxm_guid_eq(&j.layer_dwg[i], &c->layer[i].img->hdr.data_write)) {
				ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
					       "%s changed since the interrupted convert began; remove %s and %s to start over",
					       c->layer[i].img->path, jpath, partial);
				goto out;
			}
		r->resumed = true;
		if (stat(partial, &st) != 0) {
			/* Only the rename removes the partial file while a journal
			 * exists: a crash after it, before the journal's removal
			 * was durable, leaves the complete output.  Finish. */
			if (stat(out, &st) == 0) {
				ret = vxm_fsync_dir(out);
				if (!ret)
					ret = vxm_journal_remove(jpath, err);
				goto out;
			}
			ret = vxm_fail(err, -ENOENT, VXM_OFF_NONE, "%s: the partial output is missing",
				       partial);
			goto out;
		}
	} else {
		ret = check_space(out, &r->plan, r, err);
		if (ret || o->dry_run) {
			r->dry_run = o->dry_run;
			goto out;
		}
		j.convert = true;
		j.seed = o->seed ? o->seed : random_seed();
		j.top = strdup(top_abs);
		j.dest = strdup(partial);
		j.out = strdup(out);
		j.out_format = o->out_format;
		j.dest_index = -1;
		for (unsigned i = 0; i < c->n; i++) {
			j.layer_dwg[i] = c->layer[i].img->hdr.data_write;
			j.layer_seq[i] = c->layer[i].img->hdr.seq;
			j.layer_path[i] = abspath(c->layer[i].img->path);
		}
		j.nlayers = c->n;
		if (!journal_paths_ok(&j)) {
			ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
			goto out;
		}
		vxm_guid_derive(j.seed, "dest-dwg", 0, &j.dest_new_dwg);
		unlink(partial);
		vxm_guid_seed(j.seed); /* the new file's GUIDs, identical in every run */
		if (o->out_format == VXM_OUT_RAW) {
			int fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd < 0 || ftruncate(fd, (off_t)c->virtual_size) < 0 || fsync(fd) < 0)
				ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot create: %s", partial,
					       strerror(errno));
			if (fd >= 0)
				close(fd);
		} else {
			struct vxm_image *t = c->layer[top].img;
			struct vxm_create_params cp = {
				.virtual_size = t->m.virtual_size,
				.block_size = o->out_block_size ? o->out_block_size : t->m.block_size,
				.logical_sector_size = t->m.logical_sector_size,
				.physical_sector_size = t->m.physical_sector_size,
				.fixed = o->out_fixed, .io = c->io,
			};
			ret = vxm_image_create(partial, &cp, err);
			if (!ret) {
				struct vxm_image *d;
				ret = vxm_image_open(&d, c->io, partial, 0, err);
				if (!ret) {
					j.dest_orig_seq = d->hdr.seq;
					ret = alloc_base_of(d, &j.alloc_base, err);
					vxm_image_close(d);
				}
			}
		}
		if (!ret)
			ret = vxm_journal_save(&j, jpath, err);
		if (ret)
			goto out;
	}
	if (j.out_format == VXM_OUT_RAW) {
		struct exec x = { .o = o, .err = err, .c = c, .top = top, .dest = -1, .lss = c->lss,
				  .j = &j, .jpath = jpath, .cursor = j.cursor,
				  .total_bytes = r->plan.copy_bytes + r->plan.zero_bytes };
		ret = ex_init(&x, partial, true);
		if (!ret)
			ret = ex_run(&x);
		r->copied = x.copied;
		r->data_writes = x.writes;
		r->buffered_bytes = x.buffered;
		r->commits = x.commits;
		r->commit_seconds = x.commit_seconds;
		ex_fini(&x);
	} else {
		ret = phase_copy(o, c, &j, jpath, r, err);
	}
	if (ret)
		goto out;
	/* The output appears only complete: flush, rename, flush the directory. */
	int fd = open(partial, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: flush failed: %s", partial, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	vxm_killpoint("rename");
	if (rename(partial, out) < 0) {
		ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot rename to %s: %s", partial, out,
			       strerror(errno));
		goto out;
	}
	ret = vxm_fsync_dir(out);
	if (!ret)
		ret = vxm_journal_remove(jpath, err);
out:
	unlock_all(&l);
	vxm_chain_close(c);
	vxm_journal_fini(&j);
	free(out);
	free(jpath);
	free(partial);
	free(top_abs);
	return ret;
}

int vxm_merge_run(const struct vxm_merge_opts *o, struct vxm_merge_result *r, struct vxm_err *err)
{
	struct vxm_chain_opts co = { .search_dirs = o->search_dirs, .nsearch = o->nsearch, .io = o->io };
	struct vxm_chain *c = NULL;
	struct vxm_journal j = { 0 };
	struct locks l = { .n = 0 };
	struct vxm_io io = { 0 };
	bool io_up = false;
	char *top_abs = abspath_link(o->top), *jpath = NULL;
	double t0 = now_s();
	int ret;

	memset(r, 0, sizeof(*r));
	if (!top_abs)
		return -ENOMEM;
	if (o->out) {
		ret = convert_run(o, r, err);
		goto done;
	}
	jpath = find_journal(o, top_abs);
	if (!jpath && access(o->top, F_OK) < 0 && errno == ENOENT) {
		/* The usual cause: this merge finished and removed its merged
		 * layers.  That is no I/O error, and nothing is left to do. */
		ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE,
			       "%s does not exist and no interrupted merge of it is recorded beside it or its destination: nothing to merge (a finished merge removes the layers it merged; `vhdxmerge merge --status DEST` tells whether one is pending)",
			       o->top);
		goto done;
	}
	if (jpath) {
		ret = vxm_journal_load(&j, jpath, err);
		if (ret)
			goto done;
		if (j.convert || strcmp(j.top, top_abs)) {
			ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
				       "%s records an interrupted merge of %s; finish it first (run that merge again)",
				       jpath, j.top);
			goto done;
		}
		if (o->into) {
			char *ia = abspath(o->into);
			bool other = ia && strcmp(ia, j.dest);
			free(ia);
			if (other) {
				ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
					       "an interrupted merge of %s into %s is recorded in %s; finish it first (run it again without --into %s)",
					       j.top, j.dest, jpath, o->into);
				goto done;
			}
		}
		r->resumed = true;
		snprintf(r->dest, sizeof(r->dest), "%s", j.dest);
		say(o, "resuming the interrupted merge into %s (phase %s)", j.dest,
		    vxm_journal_phase_name(j.phase));
	}
	if (!jpath || j.phase < VXM_JPHASE_COPIED) {
		progress(o, "preflight", 0, 0, 0, 0, 0);
		ret = vxm_chain_open(&c, o->top, &co, err);
		if (ret)
			goto done;
		int dest = 0;
		if (o->into || jpath) {
			dest = vxm_chain_index_of(c, jpath ? j.dest : o->into);
			if (dest < 0) {
				ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE, "%s is not an ancestor of %s",
					       jpath ? j.dest : o->into, o->top);
				goto done;
			}
		}
		int top = (int)c->n - 1;
		if (dest >= top) {
			ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				       "nothing to merge: %s is the top of its chain", o->top);
			goto done;
		}
		struct vxm_image *d = c->layer[dest].img;
		snprintf(r->dest, sizeof(r->dest), "%s", d->path);
		r->layers_merged = (unsigned)(top - dest);
		ret = preflight_layers(o, c, dest, err);
		if (ret)
			goto done;
		struct vxm_plan_opts po = { .dest = dest, .top = top };
		ret = vxm_plan(c, &po, NULL, NULL, &r->plan, err);
		if (ret)
			goto done;
		if (jpath) {
			/* M1 holds only if the sources are the ones recorded */
			if (j.dest_index != dest || j.nlayers != (unsigned)(top - dest)) {
				ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
					       "the chain of %s no longer matches the interrupted merge in %s",
					       o->top, jpath);
				goto done;
			}
			for (unsigned i = 0; i < j.nlayers; i++)
				if (!vxm_guid_eq(&j.layer_dwg[i], &c->layer[dest + 1 + (int)i].img->hdr.data_write)) {
					ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
						       "%s changed since the interrupted merge began (DataWriteGuid); refusing to continue",
						       c->layer[dest + 1 + (int)i].img->path);
					goto done;
				}
			ret = take_locks(&l, c, dest, &j, err);
			if (!ret)
				ret = preflight_relinks(c, dest, &j, j.top, o->io, err);
			if (ret)
				goto done;
		} else {
			ret = preflight_relatives(o, c, dest, &j, err);
			if (!ret)
				ret = preflight_relinks(c, dest, &j, top_abs, o->io, err);
			if (!ret)
				ret = take_locks(&l, c, dest, &j, err);
			if (!ret)
				ret = check_space(d->path, &r->plan, r, err);
			if (ret)
				goto done;
			if (d->log_dirty) {
				ret = vxm_fail(err, -VXM_EDIRTY, VXM_OFF_NONE,
					       "%s has a log to replay; run `vhdxmerge check --repair %s` first",
					       d->path, d->path);
				goto done;
			}
			if (o->dry_run) {
				r->dry_run = true;
				goto done;
			}
			j.seed = o->seed ? o->seed : random_seed();
			j.top = strdup(top_abs);
			j.dest = abspath(d->path);
			j.dest_index = dest;
			j.dest_orig_dwg = d->hdr.data_write;
			j.dest_orig_seq = d->hdr.seq;
			vxm_guid_derive(j.seed, "dest-dwg", 0, &j.dest_new_dwg);
			j.keep_merged = o->keep_merged;
			ret = alloc_base_of(d, &j.alloc_base, err);
			if (ret)
				goto done;
			j.alloc_next = j.alloc_base;
			for (int i = dest + 1; i <= top; i++) {
				unsigned k = j.nlayers++;
				j.layer_dwg[k] = c->layer[i].img->hdr.data_write;
				j.layer_seq[k] = c->layer[i].img->hdr.seq;
				j.layer_path[k] = abspath_link(c->layer[i].img->path);
				j.layer_target[k] = link_target(j.layer_path[k]);
			}
			jpath = journal_paths_ok(&j) ? vxm_journal_path(j.dest) : NULL;
			if (!jpath) {
				ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
				goto done;
			}
			ret = vxm_journal_save(&j, jpath, err); /* journal.c I1 */
			if (ret)
				goto done;
		}
		vxm_guid_seed(j.seed);
		if (j.phase < VXM_JPHASE_LINKED) {
			ret = phase_link(o, c, &j, jpath, err);
			if (ret)
				goto done;
		}
		ret = phase_copy(o, c, &j, jpath, r, err);
		if (ret)
			goto done;
		vxm_chain_close(c);
		c = NULL;
	} else {
		/* only children and cleanup remain: no chain needed (the top may be
		 * gone already); lock what is left */
		for (unsigned i = 0; i < j.nchildren && !ret; i++)
			ret = lock_file(&l, j.child_path[i], true, err);
		if (!ret)
			ret = lock_file(&l, j.dest, true, err);
		if (ret)
			goto done;
	}
	if (!o->io) {
		ret = vxm_io_init(&io, &vxm_io_psync_ops, NULL);
		if (ret)
			goto done;
		io_up = true;
	}
	if (j.phase < VXM_JPHASE_REPOINTED) {
		ret = phase_repoint(o, o->io ? o->io : &io, &j, jpath, r, err);
		if (ret)
			goto done;
	}
	unlock_all(&l);
	ret = phase_cleanup(o, &j, jpath, r, err);
done:
	if (ret == -EINTR)
		snprintf(r->phase, sizeof(r->phase), "%s", vxm_journal_phase_name(j.phase));
	if (io_up)
		vxm_io_fini(&io);
	unlock_all(&l);
	vxm_chain_close(c);
	vxm_journal_fini(&j);
	free(jpath);
	free(top_abs);
	r->seconds = now_s() - t0;
	return ret;
}

int vxm_merge_status(const char *dest, struct vxm_merge_state *st, struct vxm_err *err)
{
	char *a = abspath(dest), *jp = a ? vxm_journal_path(a) : NULL;
	struct vxm_journal j;
	int ret;

	memset(st, 0, sizeof(*st));
	free(a);
	if (!jp)
		return -ENOMEM;
	snprintf(st->journal, sizeof(st->journal), "%s", jp);
	ret = vxm_journal_load(&j, jp, err);
	free(jp);
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return ret;
	st->in_progress = true;
	st->convert = j.convert;
	st->cursor = j.cursor;
	snprintf(st->phase, sizeof(st->phase), "%s", vxm_journal_phase_name(j.phase));
	snprintf(st->top, sizeof(st->top), "%s", j.top);
	vxm_journal_fini(&j);
	return 0;
}
