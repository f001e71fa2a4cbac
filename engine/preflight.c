/* engine/preflight.c: everything a merge or convert checks and takes before
 * its first write (engine/merge.c, state PLANNED): the paths it records,
 * the locks it holds, the relatives it would invalidate or must re-point,
 * the rules every file it reads or edits passes (validate.c), the space the
 * destination needs and where its allocations start (M3).
 *
 * I1: nothing here writes to any file of the chain; a refusal leaves every
 *     file byte-identical.
 */
#define _GNU_SOURCE
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *mg_abspath(const char *p)
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
char *mg_abspath_link(const char *p)
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
	return out ? out : mg_abspath(p);
}

/* The file a symlinked layer points to (kept at cleanup), or NULL. */
char *mg_link_target(const char *p)
{
	struct stat st;
	return lstat(p, &st) == 0 && S_ISLNK(st.st_mode) ? realpath(p, NULL) : NULL;
}

static int lock_busy(const char *path, const char *how, struct vxm_err *err)
{
	return vxm_fail(err, -EBUSY, VXM_OFF_NONE,
			"%s is in use by another process (%s); stop the VM, backup agent or other tool using it and try again",
			path, how);
}

int mg_lock_file(struct locks *l, const char *path, bool excl, struct vxm_err *err)
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

void mg_unlock_all(struct locks *l)
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

bool mg_ends_ci(const char *s, const char *suf)
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
		if (!mg_ends_ci(e->d_name, ".vhdx") && !mg_ends_ci(e->d_name, ".avhdx"))
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

/* Past the end of the file and of everything D references, 1 MiB aligned. */
int mg_alloc_base(struct vxm_image *d, uint64_t *base, struct vxm_err *err)
{
	uint64_t end;
	int ret = vxm_image_alloc_end(d, &end, err);
	if (end < d->file_size)
		end = d->file_size;
	*base = (end + VXM_MiB - 1) / VXM_MiB * VXM_MiB;
	return ret;
}

int mg_preflight_relatives(const struct vxm_merge_opts *o, struct vxm_chain *c, int dest,
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
				j->child_path[j->nchildren] = mg_abspath(r->path);
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
		mg_say(o, "--force: %u other checkpoint%s will no longer open: %s", nsib, nsib == 1 ? "" : "s",
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
int mg_preflight_layers(const struct vxm_merge_opts *o, struct vxm_chain *c, int dest,
			struct vxm_err *err)
{
	int ret = vxm_plan_preflight(c, dest, err);
	int top = (int)c->n - 1;
	const struct vxm_image *t = c->layer[top].img;
	for (int i = dest < 0 ? 0 : dest; i < top && !ret; i++) {
		const struct vxm_image *img = c->layer[i].img;
		if (img->m.virtual_size != t->m.virtual_size)
			mg_say(o, "%s has a virtual size of %llu bytes, the top %llu: the result reads exactly as the chain shows it (zeros past the end of a smaller layer%s)",
			       img->path, (unsigned long long)img->m.virtual_size,
			       (unsigned long long)t->m.virtual_size,
			       i == dest ? "; the destination grows" : "");
	}
	return ret;
}

/* The files whose locator the merge edits pass the rules too, and have
 * room for the edit: each child of TOP (re-pointed at D after the data is
 * merged) and C1 (parent_linkage2, before any other write). */
int mg_preflight_relinks(struct vxm_chain *c, int dest, const struct vxm_journal *j,
			 const char *top, struct vxm_io *io, struct vxm_err *err)
{
	static const struct vxm_guid any; /* the edit's size does not depend on it */
	char *dpath = mg_abspath(c->layer[dest].img->path);
	int ret = dpath ? 0 : -ENOMEM;
	for (unsigned i = 0; i < j->nchildren && !ret; i++) {
		struct vxm_image *img = NULL;
		struct relink k = { 0 };
		ret = vxm_image_open(&img, io, j->child_path[i], 0, err);
		if (!ret)
			ret = vxm_image_require_valid(img, "a child of the top, to re-point", err);
		if (!ret && img->loc)
			ret = mg_relink_child(&k, j->child_path[i], top, dpath, &any,
					      img->loc->absolute_win32_path, img->loc->volume_path);
		if (!ret)
			ret = mg_locator_room(img, k.set, 5, err);
		mg_relink_free(&k);
		vxm_image_close(img);
	}
	if (!ret) {
		char g[40];
		mg_braced(&any, g);
		struct vxm_kv set[] = { { "parent_linkage2", g } };
		ret = mg_locator_room(c->layer[dest + 1].img, set, 1, err);
	}
	free(dpath);
	return ret;
}

int mg_take_locks(struct locks *l, struct vxm_chain *c, int dest, const struct vxm_journal *j,
		  struct vxm_err *err)
{
	int ret = 0;
	for (int i = 0; i < (int)c->n && !ret; i++)
		ret = mg_lock_file(l, c->layer[i].img->path, dest >= 0 && i >= dest, err);
	for (unsigned i = 0; i < j->nchildren && !ret; i++)
		ret = mg_lock_file(l, j->child_path[i], true, err);
	return ret;
}

int mg_check_space(const char *dest, const struct vxm_plan_stats *st, struct vxm_merge_result *r,
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
bool mg_journal_paths_ok(const struct vxm_journal *j)
{
	bool ok = j->top && j->dest && (!j->convert || j->out);
	for (unsigned i = 0; i < j->nlayers; i++)
		ok &= j->layer_path[i] != NULL;
	for (unsigned i = 0; i < j->nchildren; i++)
		ok &= j->child_path[i] != NULL;
	return ok;
}

int mg_preflight_io(const struct vxm_merge_opts *o, struct vxm_err *err)
{
	static const char *const names[] = { "auto", "uring", "psync" };
	bool known = !o->backend;
	for (unsigned i = 0; i < 3 && !known; i++)
		known = !strcmp(o->backend, names[i]);
	if (o->io)
		return 0; /* a caller's context: nothing to open */
	if (!known)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"no data path named \"%s\" (auto, uring or psync); nothing was changed",
				o->backend);
	struct vxm_io probe;
	struct vxm_io_params p = ex_io_params(o);
	p.log = NULL; /* the run itself says which path it takes */
	int ret = vxm_io_init(&probe, NULL, &p);
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE,
				"the %s data path cannot be set up: %s; nothing was changed",
				o->backend ? o->backend : "auto", vxm_strerror(ret));
	vxm_io_fini(&probe);
	return 0;
}
