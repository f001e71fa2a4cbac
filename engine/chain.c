/* engine/chain.c: finding and validating a differencing chain from its
 * newest file, and reading the virtual disk through it.
 *
 * Discovery (fmt §4), for each child until a file without parent:
 *   1. relative_path, '\' mapped to '/', against the child's directory;
 *   2. the file names of volume_path and absolute_win32_path in the child's
 *      directory (exact, then case-insensitive: files copied from Windows);
 *   3. absolute_win32_path as a path when it is already a POSIX path;
 *   4. every name above in each --search-dir, the same way.
 * A candidate is accepted only when its current DataWriteGuid equals the
 * child's parent_linkage, or a non-zero parent_linkage2 (fmt §4 step 3).
 *
 * I1: layers are ordered base first; layer 0 has no parent, every other
 *     layer's linkage matches the DataWriteGuid of the layer below it.
 * I2: no file appears twice (device and inode), the chain has at most
 *     max_depth layers, and every layer has the same logical sector size.
 * I3: a read of sector s walks from the top down to the first layer that
 *     defines s; a layer that ends before s defines it as zeros (fmt §8.3).
 */
#define _GNU_SOURCE
#include "engine.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static void chain_free_layers(struct vxm_chain *c)
{
	for (unsigned i = 0; i < c->n; i++) {
		vxm_image_close(c->layer[i].img);
		free(c->layer[i].via);
	}
	free(c->layer);
	c->layer = NULL;
	c->n = 0;
}

void vxm_chain_close(struct vxm_chain *c)
{
	if (!c)
		return;
	if (c->borrowed) {
		vxm_chain_release(c);
		return;
	}
	chain_free_layers(c);
	if (c->own_io && c->io) {
		vxm_io_fini(c->io);
		free(c->io);
	}
	free(c);
}

static char *dir_of(const char *path)
{
	char *tmp = strdup(path), *d;
	if (!tmp)
		return NULL;
	d = strdup(dirname(tmp));
	free(tmp);
	return d;
}

/* dir + "/" + rel with "." segments dropped and "x/.." folded lexically
 * (symlinks are not resolved: the path shown is the path the user gave). */
static char *path_join(const char *dir, const char *rel)
{
	char *raw, *out;
	if (rel[0] == '/') {
		raw = strdup(rel);
	} else if (asprintf(&raw, "%s/%s", dir, rel) < 0) {
		raw = NULL;
	}
	if (!raw)
		return NULL;
	out = malloc(strlen(raw) + 2);
	if (!out) {
		free(raw);
		return NULL;
	}
	size_t o = 0;
	bool abs = raw[0] == '/';
	if (abs)
		out[o++] = '/';
	for (char *save = NULL, *seg = strtok_r(raw, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
		if (!strcmp(seg, "."))
			continue;
		if (!strcmp(seg, "..")) {
			/* drop the previous segment unless there is none or it is ".." */
			size_t end = o;
			while (end > (abs ? 1u : 0u) && out[end - 1] == '/')
				end--;
			size_t start = end;
			while (start > 0 && out[start - 1] != '/')
				start--;
			if (end > start && !(end - start == 2 && !strncmp(out + start, "..", 2))) {
				o = start;
				continue;
			}
			if (abs && end <= 1)
				continue; /* "/.." is "/" */
		}
		size_t n = strlen(seg);
		memcpy(out + o, seg, n);
		o += n;
		out[o++] = '/';
	}
	if (o > 1 && out[o - 1] == '/')
		o--;
	if (o == 0)
		out[o++] = '.';
	out[o] = 0;
	free(raw);
	return out;
}

/* The last component of a Windows or POSIX path. */
static const char *win_basename(const char *p)
{
	const char *b = p;
	for (const char *q = p; *q; q++)
		if (*q == '\\' || *q == '/')
			b = q + 1;
	return b;
}

/* Finds name in dir: exact first, then case-insensitively.  Returns a
 * malloc'd path or NULL.  A regular file wins; failing one, a name that is
 * something else (a FIFO, a directory) is returned all the same, so that
 * open_parent() can say it was skipped and why. */
static char *find_in_dir(const char *dir, const char *name)
{
	char *p, *other = NULL;
	struct stat st;

	if (!name[0])
		return NULL;
	p = path_join(dir, name);
	if (!p)
		return NULL;
	if (stat(p, &st) == 0) {
		if (S_ISREG(st.st_mode))
			return p;
		other = p;
	} else {
		free(p);
	}
	DIR *d = opendir(dir);
	if (!d)
		return other;
	struct dirent *e;
	p = NULL;
	while ((e = readdir(d))) {
		if (strcasecmp(e->d_name, name))
			continue;
		char *q = path_join(dir, e->d_name);
		if (q && stat(q, &st) == 0 && S_ISREG(st.st_mode)) {
			p = q;
			break;
		}
		if (q && !other)
			other = q;
		else
			free(q);
	}
	closedir(d);
	if (p) {
		free(other);
		return p;
	}
	return other;
}

struct cand_list {
	char *path[32];
	const char *via[32];
	unsigned n;
};

static void cand_add(struct cand_list *l, char *path, const char *via)
{
	if (!path)
		return;
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->path[i], path)) {
			free(path);
			return;
		}
	if (l->n == 32) {
		free(path);
		return;
	}
	l->path[l->n] = path;
	l->via[l->n] = via;
	l->n++;
}

static void candidates(const struct vxm_image *child, const struct vxm_chain_opts *o,
		       struct cand_list *l)
{
	const struct vxm_locator *loc = child->loc;
	char *dir = dir_of(child->path);
	struct stat st;

	if (!dir)
		return;
	if (loc->relative_path[0]) {
		char *rel = strdup(loc->relative_path), *p = NULL;
		if (rel) {
			for (char *q = rel; *q; q++)
				if (*q == '\\')
					*q = '/';
			if ((p = path_join(dir, rel)) != NULL) {
				if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
					cand_add(l, p, "relative_path");
				} else {
					/* same directory, the name case-insensitively;
					 * something not a file under the very name is
					 * kept to be reported as skipped */
					char *pdir = dir_of(p);
					if (stat(p, &st) == 0)
						cand_add(l, p, "relative_path");
					else
						free(p);
					if (pdir)
						cand_add(l, find_in_dir(pdir, win_basename(rel)),
							 "relative_path (case-insensitive)");
					free(pdir);
				}
			}
			free(rel);
		}
	}
	const char *names[3] = {
		loc->relative_path[0] ? win_basename(loc->relative_path) : "",
		loc->volume_path[0] ? win_basename(loc->volume_path) : "",
		loc->absolute_win32_path[0] ? win_basename(loc->absolute_win32_path) : "",
	};
	static const char *const vias[3] = { "relative_path (file name)", "volume_path (file name)",
					     "absolute_win32_path (file name)" };
	for (int k = 0; k < 3; k++)
		cand_add(l, find_in_dir(dir, names[k]), vias[k]);
	if (loc->absolute_win32_path[0] == '/' && stat(loc->absolute_win32_path, &st) == 0)
		cand_add(l, strdup(loc->absolute_win32_path), "absolute_win32_path");
	for (unsigned s = 0; o && s < o->nsearch; s++)
		for (int k = 0; k < 3; k++)
			cand_add(l, find_in_dir(o->search_dirs[s], names[k]), "--search-dir");
	free(dir);
}

static int layer_push(struct vxm_chain *c, struct vxm_image *img, const char *via, int linked_by,
		      const struct stat *st)
{
	struct vxm_chain_layer *n = realloc(c->layer, (c->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	c->layer = n;
	n[c->n] = (struct vxm_chain_layer){ .img = img, .via = strdup(via), .linked_by = linked_by,
					    .dev = st->st_dev, .ino = st->st_ino };
	c->n++;
	return 0;
}

static bool in_chain(const struct vxm_chain *c, const struct stat *st)
{
	for (unsigned i = 0; i < c->n; i++)
		if (c->layer[i].dev == st->st_dev && c->layer[i].ino == st->st_ino)
			return true;
	return false;
}

/* Opens the parent of child (the last layer pushed).  0 and *out set, or a
 * negative error with err explaining every candidate. */
static int open_parent(struct vxm_chain *c, const struct vxm_image *child,
		       const struct vxm_chain_opts *o, struct vxm_err *err)
{
	const struct vxm_locator *loc = child->loc;
	struct cand_list l = { 0 };
	char want[VXM_GUID_STRLEN + 1], want2[VXM_GUID_STRLEN + 1];
	char tried[2048] = "", skipped[1024] = "";
	size_t tl = 0, sl = 0;
	unsigned ntried = 0;
	struct vxm_err first_open = { 0 };
	int ret = -VXM_ECHAIN;

	vxm_guid_fmt(&loc->parent_linkage, want);
	vxm_guid_fmt(&loc->parent_linkage2, want2);
	candidates(child, o, &l);
	for (unsigned i = 0; i < l.n; i++) {
		struct stat st;
		struct vxm_image *img = NULL;
		struct vxm_err e = { 0 };
		char have[VXM_GUID_STRLEN + 1];

		if (stat(l.path[i], &st) < 0)
			continue;
		if (!S_ISREG(st.st_mode)) {
			/* not a candidate: never opened (a FIFO would block the
			 * open, a device is no checkpoint), only reported */
			const char *k = vxm_file_kind(l.path[i]);
			sl += (size_t)snprintf(skipped + sl, sl < sizeof(skipped) ? sizeof(skipped) - sl : 0,
					       "%s%s (via %s) is %s, not a disk image file", sl ? "; " : "",
					       l.path[i], l.via[i], k ? k : "not a regular file");
			continue;
		}
		ntried++;
		if (in_chain(c, &st)) {
			ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				       "%s: its parent %s is already in the chain (a cycle)",
				       child->path, l.path[i]);
			goto out;
		}
		int r = vxm_image_open(&img, c->io, l.path[i], o ? o->image_flags : 0, &e);
		if (r) {
			if (!first_open.code)
				first_open = e;
			tl += (size_t)snprintf(tried + tl, tl < sizeof(tried) ? sizeof(tried) - tl : 0,
					       "%s%s (via %s: %s)", tl ? "; " : "", l.path[i], l.via[i],
					       vxm_strerror(r));
			continue;
		}
		int linked_by = vxm_guid_eq(&img->hdr.data_write, &loc->parent_linkage) ? 1
				: loc->has_linkage2 &&
						vxm_guid_eq(&img->hdr.data_write, &loc->parent_linkage2)
					? 2
					: 0;
		if (!linked_by) {
			tl += (size_t)snprintf(tried + tl, tl < sizeof(tried) ? sizeof(tried) - tl : 0,
					       "%s%s (via %s: DataWriteGuid {%s})", tl ? "; " : "",
					       l.path[i], l.via[i], vxm_guid_fmt(&img->hdr.data_write, have));
			vxm_image_close(img);
			continue;
		}
		if (img->m.logical_sector_size != child->m.logical_sector_size) {
			ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				       "%s: logical sector size %u differs from its child %s's %u (fmt P4: forbidden)",
				       l.path[i], img->m.logical_sector_size, child->path,
				       child->m.logical_sector_size);
			vxm_image_close(img);
			goto out;
		}
		ret = layer_push(c, img, l.via[i], linked_by, &st);
		if (ret) {
			vxm_image_close(img);
			ret = vxm_fail(err, ret, VXM_OFF_NONE, "out of memory");
		}
		goto out;
	}
	if (ntried == 0)
		ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
			       "%s: parent not found%s%s%s: relative_path '%s', absolute_win32_path '%s' (linkage {%s}); no %s next to it%s",
			       child->path, sl ? " (skipped " : "", skipped, sl ? ")" : "",
			       loc->relative_path, loc->absolute_win32_path, want,
			       sl ? "disk image file" : "such file",
			       o && o->nsearch ? " or in the search directories" : "; try --search-dir DIR");
	else if (first_open.code && !strstr(tried, "DataWriteGuid"))
		ret = vxm_fail(err, first_open.code, first_open.off, "%s: parent %s: %s%s%s", child->path,
			       first_open.path, first_open.msg, sl ? "; skipped " : "", skipped);
	else
		ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
			       "%s: no candidate parent has DataWriteGuid {%s}%s%s%s: tried %s%s%s (the parent was modified after this checkpoint was taken, or it is another file)",
			       child->path, want, loc->has_linkage2 ? " or {" : "",
			       loc->has_linkage2 ? want2 : "", loc->has_linkage2 ? "}" : "", tried,
			       sl ? "; skipped " : "", skipped);
out:
	for (unsigned i = 0; i < l.n; i++)
		free(l.path[i]);
	return ret;
}

int vxm_chain_open(struct vxm_chain **out, const char *top, const struct vxm_chain_opts *o,
		   struct vxm_err *err)
{
	struct vxm_chain *c = calloc(1, sizeof(*c));
	unsigned max_depth = o && o->max_depth ? o->max_depth : VXM_CHAIN_MAX_DEPTH;
	struct vxm_image *img = NULL;
	struct stat st;
	int ret;

	*out = NULL;
	if (!c)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	if (o && o->io) {
		c->io = o->io;
	} else {
		c->io = calloc(1, sizeof(*c->io));
		if (!c->io) {
			free(c);
			return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		}
		c->own_io = true;
		ret = vxm_io_init(c->io, NULL, NULL);
		if (ret) {
			free(c->io);
			free(c);
			return vxm_fail(err, ret, VXM_OFF_NONE, "I/O setup failed: %s", vxm_strerror(ret));
		}
	}
	if (stat(top, &st) < 0) {
		ret = vxm_fail(err, -errno, VXM_OFF_NONE, "cannot open: %s", strerror(errno));
		vxm_err_path(err, top);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		const char *k = vxm_file_kind(top);
		ret = vxm_fail(err, -VXM_ENOTFILE, VXM_OFF_NONE, "is %s, not a disk image file",
			       k ? k : "not a regular file");
		vxm_err_path(err, top);
		goto fail;
	}
	ret = vxm_image_open(&img, c->io, top, o ? o->image_flags : 0, err);
	if (ret)
		goto fail;
	ret = layer_push(c, img, "top", 0, &st);
	if (ret) {
		vxm_image_close(img);
		goto fail;
	}
	while (c->layer[c->n - 1].img->m.has_parent) {
		if (c->n >= max_depth) {
			ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
				       "%s: the chain is deeper than %u layers", top, max_depth);
			goto fail;
		}
		ret = open_parent(c, c->layer[c->n - 1].img, o, err);
		if (ret)
			goto fail;
	}
	/* Base first (I1). */
	for (unsigned i = 0; i < c->n / 2; i++) {
		struct vxm_chain_layer t = c->layer[i];
		c->layer[i] = c->layer[c->n - 1 - i];
		c->layer[c->n - 1 - i] = t;
	}
	/* Each parent was pushed with how its child linked to it and how it was
	 * found: after the reversal layer i describes the link from i+1 to i. */
	c->lss = c->layer[0].img->m.logical_sector_size;
	c->virtual_size = c->layer[c->n - 1].img->m.virtual_size;
	*out = c;
	return 0;
fail:
	vxm_chain_close(c);
	return ret;
}

int vxm_chain_from_images(struct vxm_chain **out, struct vxm_image **imgs, unsigned n,
			  struct vxm_err *err)
{
	struct vxm_chain *c = calloc(1, sizeof(*c));
	struct stat st = { 0 };

	*out = NULL;
	if (!c || !n) {
		free(c);
		return vxm_fail(err, n ? -ENOMEM : -EINVAL, VXM_OFF_NONE, "chain: no layers");
	}
	for (unsigned i = 0; i < n; i++) {
		if (i && imgs[i]->m.logical_sector_size != imgs[0]->m.logical_sector_size) {
			vxm_chain_release(c); /* the layers pushed so far, names too */
			return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
					"chain: layer %u has logical sector size %u, layer 0 %u", i,
					imgs[i]->m.logical_sector_size, imgs[0]->m.logical_sector_size);
		}
		st.st_ino = i + 1;
		if (layer_push(c, imgs[i], "given", 1, &st)) {
			for (unsigned k = 0; k < c->n; k++)
				free(c->layer[k].via);
			free(c->layer);
			free(c);
			return -ENOMEM;
		}
	}
	c->layer[n - 1].linked_by = 0;
	c->lss = imgs[0]->m.logical_sector_size;
	c->virtual_size = imgs[n - 1]->m.virtual_size;
	c->borrowed = true;
	*out = c;
	return 0;
}

void vxm_chain_release(struct vxm_chain *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->n; i++)
		free(c->layer[i].via);
	free(c->layer);
	free(c);
}

int vxm_chain_resolve(struct vxm_chain *c, unsigned top, unsigned floor, uint64_t sector,
		      uint64_t max, struct vxm_resolved *r, struct vxm_err *err)
{
	uint64_t lim = max;

	for (int i = (int)top; i >= (int)floor; i--) {
		struct vxm_image *img = c->layer[i].img;
		uint64_t end = img->m.virtual_size / c->lss;
		struct vxm_run run;

		if (sector >= end) { /* I3: past this layer's end reads zeros */
			r->layer = i;
			r->kind = VXM_RUN_ZERO;
			r->nsec = lim;
			r->file_off = 0;
			return 0;
		}
		if (lim > end - sector)
			lim = end - sector;
		int ret = vxm_image_lookup(img, sector, lim, &run, err);
		if (ret) {
			vxm_err_path(err, img->path);
			return ret;
		}
		if (run.kind != VXM_RUN_PARENT) {
			r->layer = i;
			r->kind = run.kind;
			r->nsec = run.nsec;
			r->file_off = run.file_off;
			return 0;
		}
		lim = run.nsec;
	}
	/* Layer 0 never answers PARENT, so this is reached only with floor > 0:
	 * no layer in [floor, top] defines the run. */
	r->layer = -1;
	r->kind = VXM_RUN_PARENT;
	r->nsec = lim;
	r->file_off = 0;
	return 0;
}

int vxm_chain_read(struct vxm_chain *c, void *buf, uint64_t len, uint64_t off, struct vxm_err *err)
{
	uint8_t *p = buf;
	uint32_t lss = c->lss;

	if (off % lss || len % lss || off + len > c->virtual_size || off + len < off)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"read [%llu,+%llu) is not sector aligned or past the %llu-byte disk",
				(unsigned long long)off, (unsigned long long)len,
				(unsigned long long)c->virtual_size);
	uint64_t s = off / lss, n = len / lss;
	while (n) {
		struct vxm_resolved r;
		int ret = vxm_chain_resolve(c, c->n - 1, 0, s, n, &r, err);
		if (ret)
			return ret;
		uint64_t bytes = r.nsec * lss;
		if (r.kind == VXM_RUN_DATA) {
			ret = vxm_image_pread(c->layer[r.layer].img, p, bytes, r.file_off, err);
			if (ret) {
				vxm_err_path(err, c->layer[r.layer].img->path);
				return ret;
			}
		} else {
			memset(p, 0, bytes);
		}
		p += bytes;
		s += r.nsec;
		n -= r.nsec;
	}
	return 0;
}

unsigned vxm_chain_depth(const struct vxm_chain *c)
{
	return c->n;
}

struct vxm_image *vxm_chain_image(const struct vxm_chain *c, unsigned i)
{
	return i < c->n ? c->layer[i].img : NULL;
}

const char *vxm_chain_via(const struct vxm_chain *c, unsigned i)
{
	return i < c->n && c->layer[i].via ? c->layer[i].via : "";
}

int vxm_chain_linked_by(const struct vxm_chain *c, unsigned i)
{
	return i < c->n ? c->layer[i].linked_by : 0;
}

uint64_t vxm_chain_virtual_size(const struct vxm_chain *c)
{
	return c->virtual_size;
}

uint32_t vxm_chain_sector_size(const struct vxm_chain *c)
{
	return c->lss;
}

const char *vxm_image_path(const struct vxm_image *img)
{
	return img->path;
}

int vxm_chain_index_of(const struct vxm_chain *c, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	for (unsigned i = 0; i < c->n; i++)
		if (c->layer[i].dev == st.st_dev && c->layer[i].ino == st.st_ino)
			return (int)i;
	return -ENOENT;
}
