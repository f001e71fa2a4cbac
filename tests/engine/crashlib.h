/* tests/engine/crashlib.h: what the crash and fault tests (test_crash.c,
 * test_errors.c) share, header-only like wtest.h.
 *
 *   trees      a directory's regular files held in memory (name -> bytes),
 *              loaded, written back (sparse) and compared byte for byte
 *   scenarios  a small synthesized chain (vhdxmerge synth, seeded GUIDs) and
 *              one operation on it: a merge into the base, a merge into an
 *              intermediate layer with a child of TOP to re-point, or a
 *              convert into a new VHDX; plus what it must leave: the chain's
 *              view (every sector), the destination's view before it, and
 *              the files of an uninterrupted reference run (seed 42)
 *   views      the disk a chain top shows, through our reader (vxm_chain_open
 *              replays dirty logs in memory)
 *
 * A scenario's operation runs in any directory holding a copy of the files
 * (paths are rebuilt from the directory), so crash states can be rebuilt
 * elsewhere than where they were recorded.
 */
#ifndef VXM_CRASHLIB_H
#define VXM_CRASHLIB_H

#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

/* Paths here are built from directories of bounded length; truncation
 * would only shorten a test's own scratch path. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define CL_MAXF 32

/* Checks in code that also runs in forked workers, where a cmocka failure
 * would unwind into the child's copy of the test runner: abort instead (the
 * parent sees the signal and fails). */
#define CL_ASSERT(x)                                                                  \
	do {                                                                          \
		if (!(x)) {                                                           \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* ---- trees ----------------------------------------------------------------- */

struct cl_blob {
	uint8_t *p;
	size_t len, cap;
};

struct cl_tree {
	unsigned n;
	char *name[CL_MAXF];
	struct cl_blob b[CL_MAXF];
};

static inline void cl_blob_reserve(struct cl_blob *b, size_t len)
{
	if (len <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 1 << 20;
	while (cap < len)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	CL_ASSERT(p);
	b->p = p;
	b->cap = cap;
}

/* Sets the length (growth reads zeros, as a file extension does). */
static inline void cl_blob_resize(struct cl_blob *b, size_t len)
{
	cl_blob_reserve(b, len);
	if (len > b->len)
		memset(b->p + b->len, 0, len - b->len);
	b->len = len;
}

static inline void cl_blob_write(struct cl_blob *b, uint64_t off, const void *data, uint64_t len)
{
	if (off + len > b->len)
		cl_blob_resize(b, off + len);
	memcpy(b->p + off, data, len);
}

static inline void cl_blob_copy(struct cl_blob *dst, const struct cl_blob *src)
{
	cl_blob_reserve(dst, src->len);
	if (src->len)
		memcpy(dst->p, src->p, src->len);
	dst->len = src->len;
}

static inline void cl_tree_free(struct cl_tree *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		free(t->name[i]);
		free(t->b[i].p);
	}
	memset(t, 0, sizeof(*t));
}

static inline int cl_tree_find(const struct cl_tree *t, const char *name)
{
	for (unsigned i = 0; i < t->n; i++)
		if (!strcmp(t->name[i], name))
			return (int)i;
	return -1;
}

/* Adds an empty file; a tree emptied by cl_tree_reset reuses its buffers. */
static inline struct cl_blob *cl_tree_add(struct cl_tree *t, const char *name)
{
	CL_ASSERT(t->n < CL_MAXF);
	t->name[t->n] = strdup(name);
	t->b[t->n].len = 0;
	return &t->b[t->n++];
}

/* Empties t but keeps the buffers for the next fill (no page faults). */
static inline void cl_tree_reset(struct cl_tree *t)
{
	for (unsigned i = 0; i < t->n; i++) {
		free(t->name[i]);
		t->name[i] = NULL;
		t->b[i].len = 0;
	}
	t->n = 0;
}

static inline bool cl_ends(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

static inline bool cl_read_into(const char *path, struct cl_blob *b)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	cl_blob_reserve(b, (size_t)st.st_size);
	b->len = (size_t)st.st_size;
	size_t got = 0;
	while (got < b->len) {
		ssize_t n = pread(fd, b->p + got, b->len - got, (off_t)got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	return got == b->len;
}

/* Every regular file of dir except lock files (names sorted); t must be
 * zeroed or a tree of earlier loads (its buffers are reused). */
static inline void cl_tree_load(struct cl_tree *t, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	memset(t, 0, sizeof(*t));
	cl_tree_reset(t);
	CL_ASSERT(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || cl_ends(e->d_name, ".lock"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		struct cl_blob *b = cl_tree_add(t, e->d_name);
		CL_ASSERT(cl_read_into(path, b));
	}
	closedir(d);
	/* sort by name: comparisons and listings are stable */
	for (unsigned i = 1; i < t->n; i++)
		for (unsigned k = i; k > 0 && strcmp(t->name[k - 1], t->name[k]) > 0; k--) {
			char *n = t->name[k];
			struct cl_blob b = t->b[k];
			t->name[k] = t->name[k - 1];
			t->b[k] = t->b[k - 1];
			t->name[k - 1] = n;
			t->b[k - 1] = b;
		}
}

/* Removes every entry of dir (files only; dir itself stays). */
static inline void cl_dir_clear(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[4096];

	CL_ASSERT(d);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
}

/* Writes buf as the file path, leaving 64 KiB runs of zeros as holes. */
static inline void cl_write_sparse(const char *path, const uint8_t *p, size_t len)
{
	static const uint8_t zero[65536];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CL_ASSERT(fd >= 0);
	for (size_t o = 0; o < len; o += sizeof(zero)) {
		size_t n = len - o < sizeof(zero) ? len - o : sizeof(zero);
		if (!memcmp(p + o, zero, n))
			continue;
		CL_ASSERT(pwrite(fd, p + o, n, (off_t)o) == (ssize_t)n);
	}
	CL_ASSERT(ftruncate(fd, (off_t)len) == 0);
	close(fd);
}

/* Makes dir hold exactly the files of t, writing only the 64 KiB pieces
 * that differ from what is there (consecutive crash states differ in a few
 * MiB of a few files; rewriting every file costs far more).  known, when
 * not NULL, is what dir holds now (then nothing is read back). */
static inline void cl_tree_write_known(const struct cl_tree *t, const char *dir,
				       const struct cl_tree *known)
{
	static uint8_t *buf;
	const size_t piece = 65536;
	char path[4096];
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!buf)
		buf = malloc(piece);
	CL_ASSERT(d && buf);
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (cl_tree_find(t, e->d_name) < 0) {
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			unlink(path);
		}
	}
	closedir(d);
	for (unsigned i = 0; i < t->n; i++) {
		const struct cl_blob *b = &t->b[i];
		int k = known ? cl_tree_find(known, t->name[i]) : -1;
		const struct cl_blob *kb = k >= 0 ? &known->b[k] : NULL;
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, t->name[i]);
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		CL_ASSERT(fd >= 0 && fstat(fd, &st) == 0);
		if (known && kb && (size_t)st.st_size != kb->len)
			kb = NULL; /* not what we were told: compare with the file */
		size_t old = kb ? kb->len : (size_t)st.st_size;
		if (old > b->len) {
			CL_ASSERT(ftruncate(fd, (off_t)b->len) == 0);
			old = b->len;
		}
		for (size_t o = 0; o < b->len; o += piece) {
			size_t n = b->len - o < piece ? b->len - o : piece;
			if (o + n <= old) {
				const uint8_t *cur = kb ? kb->p + o : buf;
				if ((kb || pread(fd, buf, n, (off_t)o) == (ssize_t)n) &&
				    !memcmp(cur, b->p + o, n))
					continue;
			}
			if (o >= old) { /* past the old end: leave zeros as holes */
				size_t z = 0;
				while (z < n && !b->p[o + z])
					z++;
				if (z == n)
					continue;
			}
			CL_ASSERT(pwrite(fd, b->p + o, n, (off_t)o) == (ssize_t)n);
		}
		if (old < b->len)
			CL_ASSERT(ftruncate(fd, (off_t)b->len) == 0);
		close(fd);
	}
}

static inline void cl_tree_write(const struct cl_tree *t, const char *dir)
{
	cl_tree_write_known(t, dir, NULL);
}

/* Is the file at path exactly b?  (Through a mapping: no copy.) */
static inline bool cl_file_equals(const char *path, const struct cl_blob *b)
{
	struct stat st;
	bool same = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && (size_t)st.st_size == b->len) {
		if (!b->len) {
			same = true;
		} else {
			const uint8_t *m = mmap(NULL, b->len, PROT_READ, MAP_SHARED, fd, 0);
			CL_ASSERT(m != MAP_FAILED);
			same = !memcmp(m, b->p, b->len);
			munmap((void *)m, b->len);
		}
	}
	close(fd);
	return same;
}

/* Does dir hold exactly the files of want, byte for byte (lock files
 * aside)?  On a difference, a line saying which into why.  Compares through
 * mappings: no copies. */
static inline bool cl_dir_equals(const char *dir, const struct cl_tree *want, char *why, size_t cap)
{
	char path[4096];
	DIR *d = opendir(dir);
	struct dirent *e;
	bool ok = true;

	CL_ASSERT(d);
	while ((e = readdir(d)) && ok) {
		if (e->d_name[0] == '.' || cl_ends(e->d_name, ".lock"))
			continue;
		if (cl_tree_find(want, e->d_name) < 0) {
			snprintf(why, cap, "%s is left over", e->d_name);
			ok = false;
		}
	}
	closedir(d);
	for (unsigned i = 0; i < want->n && ok; i++) {
		const struct cl_blob *b = &want->b[i];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", dir, want->name[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			snprintf(why, cap, "%s is missing", want->name[i]);
			ok = false;
		} else if ((size_t)st.st_size != b->len) {
			snprintf(why, cap, "%s differs (%zu vs %zu bytes)", want->name[i],
				 (size_t)st.st_size, b->len);
			ok = false;
		} else if (b->len) {
			const uint8_t *m = mmap(NULL, b->len, PROT_READ, MAP_SHARED, fd, 0);
			CL_ASSERT(m != MAP_FAILED);
			if (memcmp(m, b->p, b->len)) {
				size_t at = 0;
				while (m[at] == b->p[at])
					at++;
				snprintf(why, cap, "%s differs (%zu vs %zu bytes, first at 0x%zx)",
					 want->name[i], (size_t)st.st_size, b->len, at);
				ok = false;
			}
			munmap((void *)m, b->len);
		}
		if (fd >= 0)
			close(fd);
	}
	return ok;
}

/* ---- an inline backend ---------------------------------------------------------
 * Does each request inside queue() with plain pread/pwrite/fdatasync on the
 * slot's descriptor: no threads, so no hand-offs (the psync pool costs tens
 * of microseconds per request, and thousands of crash states make millions
 * of small requests), and nothing that survives into a fork.  CLONE fails
 * (-EOPNOTSUPP); COPY goes through a bounce buffer. */

struct cl_inline {
	struct vxm_req *head, *tail;
};

static inline int cl_inl_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)p;
	io->priv = calloc(1, sizeof(struct cl_inline));
	return io->priv ? 0 : -ENOMEM;
}

static inline void cl_inl_fini(struct vxm_io *io)
{
	free(io->priv);
	io->priv = NULL;
}

static inline int cl_inl_size(struct vxm_io *io, int slot, uint64_t *size)
{
	struct stat st;
	if (fstat(io->files[slot].fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static inline int cl_inl_resize(struct vxm_io *io, int slot, uint64_t size)
{
	return ftruncate(io->files[slot].fd, (off_t)size) < 0 ? -errno : 0;
}

static inline int64_t cl_inl_rw(int fd, bool wr, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = wr ? pwrite(fd, buf + done, len - done, (off_t)(off + done))
			       : pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* end of file (reads) */
		done += (uint64_t)n;
	}
	return (int64_t)done;
}

static inline int cl_inl_queue(struct vxm_io *io, struct vxm_req *req)
{
	struct cl_inline *q = io->priv;
	int fd = io->files[req->file].fd;

	switch (req->op) {
	case VXM_IO_READ:
	case VXM_IO_WRITE:
		req->res = cl_inl_rw(fd, req->op == VXM_IO_WRITE, req->buf, req->len, req->off);
		break;
	case VXM_IO_SYNC:
		req->res = ((req->flags & VXM_REQ_FULLSYNC) ? fsync(fd) : fdatasync(fd)) < 0 ? -errno : 0;
		break;
	case VXM_IO_COPY: {
		uint8_t *b = malloc(1 << 20);
		int sfd = io->files[req->src_file].fd;
		req->res = b ? 0 : -ENOMEM;
		for (uint64_t o = 0; b && o < req->len && req->res >= 0;) {
			uint64_t n = req->len - o < (1 << 20) ? req->len - o : (1 << 20);
			int64_t r = cl_inl_rw(sfd, false, b, n, req->src_off + o);
			if (r == (int64_t)n)
				r = cl_inl_rw(fd, true, b, n, req->off + o);
			if (r != (int64_t)n)
				req->res = r < 0 ? r : -EIO;
			o += n;
		}
		if (req->res >= 0)
			req->res = (int64_t)req->len;
		free(b);
		break;
	}
	default:
		req->res = -EOPNOTSUPP;
	}
	req->link = NULL;
	if (q->tail)
		q->tail->link = req;
	else
		q->head = req;
	q->tail = req;
	return 0;
}

static inline int cl_inl_submit(struct vxm_io *io)
{
	(void)io;
	return 0;
}

static inline int cl_inl_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct cl_inline *q = io->priv;
	unsigned n = 0;
	(void)min;
	while (n < max && q->head) {
		done[n++] = q->head;
		q->head = q->head->link;
		if (!q->head)
			q->tail = NULL;
	}
	return (int)n;
}

static const struct vxm_io_ops cl_inline_ops = {
	.name = "inline",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_WHOLE,
	.init = cl_inl_init,
	.fini = cl_inl_fini,
	.file_size = cl_inl_size,
	.file_resize = cl_inl_resize,
	.queue = cl_inl_queue,
	.submit = cl_inl_submit,
	.reap = cl_inl_reap,
};

/* ---- views ------------------------------------------------------------------- */

/* The disk the chain ending in path shows, into a malloc'd buffer of *len
 * bytes; io may be NULL.  0 or the error (err filled). */
static inline int cl_view(struct vxm_io *io, const char *path, uint8_t **out, uint64_t *len,
			  struct vxm_err *err)
{
	struct vxm_chain *c;
	struct vxm_chain_opts co = { .io = io };
	int ret = vxm_chain_open(&c, path, &co, err);

	*out = NULL;
	if (ret)
		return ret;
	*len = vxm_chain_virtual_size(c);
	*out = malloc(*len ? *len : 1);
	CL_ASSERT(*out);
	ret = vxm_chain_read(c, *out, *len, 0, err);
	vxm_chain_close(c);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	return ret;
}

/* cl_view into a buffer reused from call to call: *out is valid until the
 * next call (no page faults for a fresh 12 MiB per view). */
static inline int cl_view_tmp(struct vxm_io *io, const char *path, const uint8_t **out,
			      uint64_t *len, struct vxm_err *err)
{
	static struct cl_blob b;
	struct vxm_chain *c;
	struct vxm_chain_opts co = { .io = io };
	int ret = vxm_chain_open(&c, path, &co, err);

	*out = NULL;
	if (ret)
		return ret;
	*len = vxm_chain_virtual_size(c);
	cl_blob_reserve(&b, *len ? *len : 1);
	ret = vxm_chain_read(c, b.p, *len, 0, err);
	vxm_chain_close(c);
	if (!ret)
		*out = b.p;
	return ret;
}

/* ---- scenarios ----------------------------------------------------------------- */

enum cl_kind {
	CL_MERGE_BASE,  /* merge TOP into the base */
	CL_MERGE_INTO,  /* merge TOP into snap01; child.avhdx (on TOP) re-pointed */
	CL_CONVERT,     /* convert TOP into out.vhdx */
};

struct cl_scen {
	enum cl_kind kind;
	const char *label;
	char root[1024];        /* scratch of this scenario */
	char pristine[1100];    /* the chain as synthesized */
	struct cl_tree start;   /* its files */
	struct cl_tree ref;     /* the files after an uninterrupted run */
	uint8_t *view;          /* what the chain shows: never changes */
	uint64_t vsize;
	uint8_t *d_before;      /* merges: the destination's own view before */
	uint64_t d_before_len;
	uint32_t lss;
};

static inline const char *cl_top_name(void)
{
	return "snap03.avhdx";
}

/* Names of the destination (merges) or output (convert). */
static inline const char *cl_dest_name(const struct cl_scen *s)
{
	return s->kind == CL_MERGE_BASE ? "base.vhdx" : s->kind == CL_MERGE_INTO ? "snap01.avhdx"
										    : "out.vhdx";
}

struct cl_paths {
	char top[1200], into[1200], out[1200], child[1200], dest[1200], journal[1300];
};

static inline void cl_paths(const struct cl_scen *s, const char *dir, struct cl_paths *p)
{
	snprintf(p->top, sizeof(p->top), "%s/%s", dir, cl_top_name());
	snprintf(p->into, sizeof(p->into), "%s/snap01.avhdx", dir);
	snprintf(p->out, sizeof(p->out), "%s/out.vhdx", dir);
	snprintf(p->child, sizeof(p->child), "%s/child.avhdx", dir);
	snprintf(p->dest, sizeof(p->dest), "%s/%s", dir, cl_dest_name(s));
	snprintf(p->journal, sizeof(p->journal), "%s.vxmerge-journal", p->dest);
}

/* The scenario's operation on the files in dir (io NULL: plain). */
static inline int cl_run(const struct cl_scen *s, const char *dir, struct vxm_io *io,
			 struct vxm_merge_result *r, struct vxm_err *err)
{
	struct cl_paths p;
	cl_paths(s, dir, &p);
	struct vxm_merge_opts o = {
		.top = p.top,
		.into = s->kind == CL_MERGE_INTO ? p.into : NULL,
		.out = s->kind == CL_CONVERT ? p.out : NULL,
		.seed = 42,
		.no_clone = true, /* the recording wrapper logs writes, not clones */
		.io = io,
	};
	return vxm_merge_run(&o, r, err);
}

/* Has the operation completed in dir (nothing left to re-run)? */
static inline bool cl_completed(const struct cl_scen *s, const char *dir)
{
	struct cl_paths p;
	struct stat st;
	cl_paths(s, dir, &p);
	if (stat(p.journal, &st) == 0)
		return false;
	if (s->kind == CL_CONVERT)
		return stat(p.out, &st) == 0;
	return stat(p.top, &st) != 0;
}

static inline void cl_scen_setup(struct cl_scen *s, enum cl_kind kind, const char *root,
				 const char *size, unsigned layers)
{
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char ref[1200], msg[1400];

	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->label = kind == CL_MERGE_BASE ? "merge into the base"
		   : kind == CL_MERGE_INTO ? "merge into snap01, child re-pointed"
					   : "convert to a new VHDX";
	snprintf(s->root, sizeof(s->root), "%s", root);
	snprintf(s->pristine, sizeof(s->pristine), "%s/pristine", root);
	snprintf(ref, sizeof(ref), "%s/ref", root);
	assert_int_equal(tl_sh("mkdir -p '%s' '%s'", s->pristine, ref), 0);
	/* seeded GUIDs: the same bytes in every run of the test */
	assert_int_equal(tl_sh("VXM_GUID_SEED=4242 '%s' synth '%s' --seed 3 --size %s --layers %u "
			       "--block-size 1M >/dev/null",
			       tl_bin(), s->pristine, size, layers), 0);
	if (kind == CL_MERGE_INTO)
		assert_int_equal(tl_sh("VXM_GUID_SEED=4243 '%s' create '%s/child.avhdx' --parent "
				       "'%s/%s' >/dev/null",
				       tl_bin(), s->pristine, s->pristine, cl_top_name()), 0);
	cl_tree_load(&s->start, s->pristine);

	struct cl_paths p;
	cl_paths(s, s->pristine, &p);
	if (cl_view(NULL, p.top, &s->view, &s->vsize, &err)) {
		fprintf(stderr, "%s\n", vxm_err_format(&err, msg, sizeof(msg)));
		fail();
	}
	if (kind != CL_CONVERT)
		assert_int_equal(cl_view(NULL, p.dest, &s->d_before, &s->d_before_len, &err), 0);
	struct vxm_image *img;
	assert_int_equal(vxm_image_open(&img, NULL, p.top, 0, &err), 0);
	s->lss = img->g.lss;
	vxm_image_close(img);

	/* the uninterrupted reference run */
	cl_tree_write(&s->start, ref);
	if (cl_run(s, ref, NULL, &r, &err)) {
		fprintf(stderr, "reference run: %s\n", vxm_err_format(&err, msg, sizeof(msg)));
		fail();
	}
	cl_tree_load(&s->ref, ref);
	/* and it shows what the chain showed */
	uint8_t *v;
	uint64_t vl;
	cl_paths(s, ref, &p);
	const char *from = kind == CL_MERGE_INTO ? p.child : p.dest;
	assert_int_equal(cl_view(NULL, from, &v, &vl, &err), 0);
	assert_int_equal(vl, s->vsize);
	assert_memory_equal(v, s->view, vl);
	free(v);
	tl_sh("rm -rf '%s'", ref);
}

static inline void cl_scen_free(struct cl_scen *s)
{
	cl_tree_free(&s->start);
	cl_tree_free(&s->ref);
	free(s->view);
	free(s->d_before);
}

/* ---- small things ---------------------------------------------------------------- */

/* A scratch root on tmpfs when there is one (thousands of fsyncs), else
 * under the test tmp dir. */
static inline char *cl_scratch(const char *tag)
{
	struct stat st;
	char *p = NULL;
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0 &&
	    asprintf(&p, "/dev/shm/vxm-%s.XXXXXX", tag) >= 0 && mkdtemp(p))
		return p;
	free(p);
	return tl_mkdtemp(tag);
}

static inline double cl_env_double(const char *name, double def)
{
	const char *e = getenv(name);
	return e && *e ? strtod(e, NULL) : def;
}

static inline bool cl_sanitized(void)
{
	const char *e = getenv("VXM_SANITIZED");
	return e && *e && strcmp(e, "0");
}

#endif
