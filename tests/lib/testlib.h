/* tests/lib/testlib.h: helpers shared by the cmocka suites.
 *
 * Fixtures come from $VHDX_FIXTURES (default ../shared/fixtures); they are
 * decompressed, sparse, into $VXM_TEST_TMP/fixtures once and reused.  A test
 * that needs them and finds none exits 77 (skipped) with a message saying so.
 */
#ifndef VXM_TESTLIB_H
#define VXM_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#define TL_SKIP 77

/* splitmix64: deterministic test randomness (seeded states, reproducible
 * failures) */
static inline uint64_t tl_mix(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline uint64_t tl_rnd(uint64_t *s)
{
	return tl_mix(*s += 0x9E3779B97F4A7C15ull);
}

/* Directory for scratch files of this test run (created). */
const char *tl_tmpdir(void);
/* A fresh empty directory under tl_tmpdir() named after tag. */
char *tl_mkdtemp(const char *tag);
/* Fixtures directory or NULL when absent. */
const char *tl_fixtures_dir(void);
/* Path of the decompressed fixture `folder/file` (e.g.
 * "dissect-fixed-vhdx/fixed.vhdx"); NULL when fixtures are absent. */
char *tl_fixture(const char *folder, const char *file);
/* Exits 77 with a message when fixtures are absent. */
void tl_require_fixtures(void);

/* Runs a shell command; returns its exit status (or -1). */
int tl_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs a command and captures stdout into a malloc'd string. */
char *tl_sh_out(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* sha256 of a file's bytes / of the virtual disk of an image without
 * parent (hex, 65 bytes). */
int tl_sha256_file(const char *path, char out[65]);
int tl_sha256_image(struct vxm_image *img, char out[65]);
/* sha256 of the disk the chain ending in top shows (our reader). */
int tl_sha256_view(const char *top, char out[65]);
/* sha256 of a buffer. */
void tl_sha256(const void *buf, size_t len, char out[65]);

/* Whole-file helpers. */
uint8_t *tl_read_file(const char *path, size_t *len);
int tl_write_file(const char *path, const void *buf, size_t len);
int tl_copy_file(const char *from, const char *to);

/* Tiny JSON lookup for test assertions: value text of "key" (first match
 * after the optional section key), copied into out. */
bool tl_json_get(const char *json, const char *section, const char *key, char *out, size_t cap);

/* Path of the built vhdxmerge binary ($VXM_BIN). */
const char *tl_bin(void);
/* True when /usr/bin/python3 can import pyvhdi. */
bool tl_have_pyvhdi(void);
bool tl_have(const char *program);

#endif
