/* tests/engine/wtest.h: helpers shared by the writer tests (test_create,
 * test_writer, test_writer_crash, test_synth): a tiny chain reader built on
 * vxm_image_lookup (independent of engine/chain.c), a raw mirror of writes,
 * deterministic content and a few shell wrappers.  Header-only: each test is
 * its own executable. */
#ifndef VXM_WTEST_H
#define VXM_WTEST_H

#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

/* n pseudo-random bytes from (seed, tag). */
static inline void wt_fill(uint8_t *p, size_t n, uint64_t seed, uint64_t tag)
{
	uint64_t s = tl_mix(seed ^ tl_mix(tag));
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = tl_rnd(&s);
		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

/* Reads sectors [s, s+n) of the chain imgs[0..top] (base first) into out,
 * resolving each run in the topmost layer that defines it (fmt §8.1). */
static inline int wt_chain_read(struct vxm_image **imgs, int top, uint64_t s, uint64_t n,
				uint8_t *out)
{
	struct vxm_image *img = imgs[top];
	uint32_t lss = img->g.lss;

	while (n) {
		struct vxm_run r;
		struct vxm_err err = { 0 };
		int ret = vxm_image_lookup(img, s, n, &r, &err);
		if (ret) {
			fprintf(stderr, "lookup %s sector %llu: %s\n", img->path,
				(unsigned long long)s, err.msg);
			return ret;
		}
		uint64_t bytes = r.nsec * lss;
		if (r.kind == VXM_RUN_DATA)
			ret = vxm_image_pread(img, out, bytes, r.file_off, &err);
		else if (r.kind == VXM_RUN_ZERO || top == 0)
			memset(out, 0, bytes);
		else
			ret = wt_chain_read(imgs, top - 1, s, r.nsec, out);
		if (ret)
			return ret;
		out += bytes;
		s += r.nsec;
		n -= r.nsec;
	}
	return 0;
}

/* SHA-256 of the disk the chain paths[0..n) (base first) shows, read with
 * our reader (a dirty log is replayed in memory).  0 or the error. */
static inline int wt_chain_sha(char **paths, int n, char hex[65])
{
	struct vxm_image *imgs[64] = { 0 };
	struct vxm_sha256 sh;
	const uint64_t step = 1 << 20;
	uint8_t *buf = malloc(step);
	int ret = 0;

	assert_non_null(buf);
	assert_true(n <= 64);
	for (int i = 0; i < n && !ret; i++) {
		struct vxm_err err = { 0 };
		ret = vxm_image_open(&imgs[i], NULL, paths[i], 0, &err);
		if (ret) {
			char m[1400];
			fprintf(stderr, "open: %s\n", vxm_err_format(&err, m, sizeof(m)));
		}
	}
	if (!ret) {
		uint32_t lss = imgs[n - 1]->g.lss;
		uint64_t total = imgs[n - 1]->g.virtual_size / lss;
		assert_int_equal(vxm_sha256_init(&sh), 0);
		for (uint64_t s = 0; s < total && !ret; s += step / lss) {
			uint64_t k = total - s < step / lss ? total - s : step / lss;
			ret = wt_chain_read(imgs, n - 1, s, k, buf);
			if (!ret)
				vxm_sha256_update(&sh, buf, k * lss);
		}
		vxm_sha256_final(&sh, hex);
	}
	for (int i = 0; i < n; i++)
		vxm_image_close(imgs[i]);
	free(buf);
	return ret;
}

static inline int wt_image_sha(const char *path, char hex[65])
{
	char *p = (char *)path;
	return wt_chain_sha(&p, 1, hex);
}

/* A raw mirror of the virtual disk (a sparse file, written alongside). */
struct wt_mirror {
	int fd;
	uint64_t size;
};

static inline void wt_mirror_open(struct wt_mirror *m, const char *path, uint64_t size)
{
	m->fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	assert_true(m->fd >= 0);
	assert_int_equal(ftruncate(m->fd, (off_t)size), 0);
	m->size = size;
}

static inline void wt_mirror_write(struct wt_mirror *m, uint64_t off, const void *buf, uint64_t len)
{
	static const uint8_t z[1 << 16];
	for (uint64_t d = 0; d < len;) {
		size_t n = len - d < sizeof(z) ? (size_t)(len - d) : sizeof(z);
		const void *src = buf ? (const uint8_t *)buf + d : z;
		assert_int_equal(pwrite(m->fd, src, n, (off_t)(off + d)), (ssize_t)n);
		d += n;
	}
}

static inline void wt_mirror_close(struct wt_mirror *m)
{
	close(m->fd);
}

/* Opens path RDWR and begins a session; asserts success. */
static inline void wt_begin(const char *path, struct vxm_image **img, struct vxm_writer **w)
{
	struct vxm_err err = { 0 };
	char m[1400];
	int ret = vxm_image_open(img, NULL, path, VXM_IMAGE_RDWR, &err);
	if (ret)
		fprintf(stderr, "%s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	ret = vxm_writer_begin(w, *img, &err);
	if (ret)
		fprintf(stderr, "%s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
}

static inline void wt_end(struct vxm_image *img, struct vxm_writer *w)
{
	struct vxm_err err = { 0 };
	char m[1400];
	int ret = vxm_writer_end(w, &err);
	if (ret)
		fprintf(stderr, "%s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	vxm_image_close(img);
}

static inline void wt_create(const char *path, const struct vxm_create_params *p)
{
	struct vxm_err err = { 0 };
	char m[1400];
	int ret = vxm_image_create(path, p, &err);
	if (ret)
		fprintf(stderr, "%s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
}

/* `vhdxmerge check FILE` is clean. */
static inline void wt_check_clean(const char *path)
{
	int st;
	char *out = tl_sh_out(&st, "'%s' check '%s' 2>&1", tl_bin(), path);
	if (st != 0)
		fprintf(stderr, "vhdxmerge check %s (exit %d):\n%s", path, st, out);
	assert_int_equal(st, 0);
	free(out);
}

#endif
