/* tests/lib/testlib.c: fixture access, shell, hashing and files for tests. */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- hashing (the engine's SHA-256) ------------------------------------ */

void tl_sha256(const void *buf, size_t len, char out[65])
{
	struct vxm_sha256 s;
	if (vxm_sha256_init(&s))
		abort();
	vxm_sha256_update(&s, buf, len);
	vxm_sha256_final(&s, out);
}

int tl_sha256_file(const char *path, char out[65])
{
	struct vxm_sha256 s;
	static uint8_t buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t n;
	if (fd < 0)
		return -errno;
	if (vxm_sha256_init(&s))
		abort();
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		vxm_sha256_update(&s, buf, (size_t)n);
	close(fd);
	vxm_sha256_final(&s, out);
	return n < 0 ? -EIO : 0;
}

int tl_sha256_image(struct vxm_image *img, char out[65])
{
	struct vxm_sha256 s;
	const size_t step = 4u << 20;
	uint8_t *buf = malloc(step);
	uint64_t size = img->g.virtual_size;
	int ret = 0;

	if (!buf || vxm_sha256_init(&s))
		abort();
	for (uint64_t off = 0; off < size && !ret; off += step) {
		uint64_t n = size - off < step ? size - off : step;
		ret = vxm_image_read(img, buf, n, off, NULL);
		if (!ret)
			vxm_sha256_update(&s, buf, n);
	}
	free(buf);
	vxm_sha256_final(&s, out);
	return ret;
}

int tl_sha256_view(const char *top, char out[65])
{
	struct vxm_chain *c;
	struct vxm_sha256 s;
	const size_t step = 4u << 20;
	int ret = vxm_chain_open(&c, top, NULL, NULL);
	if (ret)
		return ret;
	uint8_t *buf = malloc(step);
	if (!buf || vxm_sha256_init(&s))
		abort();
	for (uint64_t off = 0; off < c->virtual_size && !ret; off += step) {
		uint64_t n = c->virtual_size - off < step ? c->virtual_size - off : step;
		ret = vxm_chain_read(c, buf, n, off, NULL);
		if (!ret)
			vxm_sha256_update(&s, buf, n);
	}
	free(buf);
	vxm_sha256_final(&s, out);
	vxm_chain_close(c);
	return ret;
}

/* ---- files, dirs, shell --------------------------------------------------- */

const char *tl_tmpdir(void)
{
	static char dir[1024];
	if (!dir[0]) {
		const char *e = getenv("VXM_TEST_TMP");
		snprintf(dir, sizeof(dir), "%s", e && *e ? e : "/tmp/vxm-test");
		tl_sh("mkdir -p '%s'", dir);
	}
	return dir;
}

char *tl_mkdtemp(const char *tag)
{
	char *p;
	if (asprintf(&p, "%s/%s.XXXXXX", tl_tmpdir(), tag) < 0)
		abort();
	if (!mkdtemp(p))
		abort();
	return p;
}

const char *tl_fixtures_dir(void)
{
	static char dir[1024];
	struct stat st;
	if (!dir[0]) {
		const char *e = getenv("VHDX_FIXTURES");
		snprintf(dir, sizeof(dir), "%s", e && *e ? e : "../shared/fixtures");
	}
	return stat(dir, &st) == 0 && S_ISDIR(st.st_mode) ? dir : NULL;
}

void tl_require_fixtures(void)
{
	if (!tl_fixtures_dir()) {
		fprintf(stderr, "SKIP: VHDX fixtures not found (set VHDX_FIXTURES; default ../shared/fixtures)\n");
		exit(TL_SKIP);
	}
}

char *tl_fixture(const char *folder, const char *file)
{
	const char *fx = tl_fixtures_dir();
	char *out, *src = NULL;
	struct stat st;

	if (!fx)
		return NULL;
	if (asprintf(&out, "%s/fixtures/%s", tl_tmpdir(), file) < 0)
		abort();
	if (stat(out, &st) == 0)
		return out;
	const char *tool = NULL;
	if (asprintf(&src, "%s/%s/%s.gz", fx, folder, file) < 0)
		abort();
	if (stat(src, &st) == 0) {
		tool = "zcat";
	} else {
		free(src);
		if (asprintf(&src, "%s/%s/%s.bz2", fx, folder, file) < 0)
			abort();
		if (stat(src, &st) == 0)
			tool = "bzcat";
	}
	if (!tool) {
		fprintf(stderr, "fixture %s/%s not found under %s\n", folder, file, fx);
		free(src);
		free(out);
		return NULL;
	}
	/* Decompress to a temporary name, then rename: parallel tests may race. */
	if (tl_sh("mkdir -p '%s/fixtures' && %s '%s' | cp --sparse=always /dev/stdin '%s.part.%d' && mv '%s.part.%d' '%s'",
		  tl_tmpdir(), tool, src, out, (int)getpid(), out, (int)getpid(), out) != 0) {
		free(src);
		free(out);
		return NULL;
	}
	free(src);
	return out;
}

int tl_sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	int st = system(cmd);
	free(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

char *tl_sh_out(int *status, const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	FILE *p = popen(cmd, "r");
	free(cmd);
	if (!p)
		return NULL;
	size_t cap = 4096, n = 0;
	char *out = malloc(cap);
	size_t r;
	while ((r = fread(out + n, 1, cap - n - 1, p)) > 0) {
		n += r;
		if (cap - n < 2) {
			cap *= 2;
			out = realloc(out, cap);
		}
	}
	out[n] = 0;
	int st = pclose(p);
	if (status)
		*status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
	return out;
}

uint8_t *tl_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf && len)
		*len = (size_t)n;
	return buf;
}

int tl_write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -errno;
	size_t w = fwrite(buf, 1, len, f);
	return fclose(f) == 0 && w == len ? 0 : -EIO;
}

int tl_copy_file(const char *from, const char *to)
{
	return tl_sh("cp --sparse=always '%s' '%s'", from, to) == 0 ? 0 : -EIO;
}

bool tl_json_get(const char *json, const char *section, const char *key, char *out, size_t cap)
{
	const char *p = json;
	char pat[256];
	if (section) {
		snprintf(pat, sizeof(pat), "\"%s\"", section);
		p = strstr(p, pat);
		if (!p)
			return false;
	}
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(p, pat);
	if (!p)
		return false;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (*p && *p != '"' && n + 1 < cap) {
			if (*p == '\\' && p[1])
				p++;
			out[n++] = *p++;
		}
	} else {
		while (*p && *p != ',' && *p != '\n' && *p != '}' && n + 1 < cap)
			out[n++] = *p++;
	}
	out[n] = 0;
	return true;
}

const char *tl_bin(void)
{
	const char *b = getenv("VXM_BIN");
	return b && *b ? b : "vhdxmerge";
}

bool tl_have(const char *program)
{
	return tl_sh("command -v %s >/dev/null 2>&1", program) == 0;
}

bool tl_have_pyvhdi(void)
{
	return tl_sh("/usr/bin/python3 -c 'import pyvhdi' >/dev/null 2>&1") == 0;
}
