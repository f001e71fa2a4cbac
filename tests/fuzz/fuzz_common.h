/* tests/fuzz/fuzz_common.h: helpers shared by the libFuzzer harnesses.
 *
 * The harnesses are built twice: with clang -fsanitize=fuzzer,address,undefined
 * (VXM_FUZZ=ON), and as plain programs around replay.c that feed the files of
 * tests/fuzz/regressions/<target>/ through the same LLVMFuzzerTestOneInput in
 * the normal test suite.  Nothing here writes a file.
 *
 * CRC repair.  A mutated header, region table or log entry almost never keeps
 * a matching CRC-32C, so most mutations would stop at the checksum.  The
 * inputs therefore carry flag bits asking the harness to recompute CRCs after
 * decoding; with the bits clear the CRC paths themselves are fuzzed.
 *
 * FZ_ASSERT states a property the reader promises (a run stays inside its
 * block, a parsed table re-encodes to the same table...).  Breaking one is a
 * finding, so it traps in both builds.
 */
#ifndef VXM_FUZZ_COMMON_H
#define VXM_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhdx/vhdx.h"
#include "vhdx/endian.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#endif
#ifdef FZ_ASAN
#include <sanitizer/asan_interface.h>
#define FZ_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define FZ_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define FZ_POISON(p, n) ((void)(p), (void)(n))
#define FZ_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define FZ_ASSERT(cond)                                                                   \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, \
				#cond);                                                   \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* Little-endian field readers over a possibly short input. */
static inline uint32_t fz_u32(const uint8_t *p, size_t len, size_t off)
{
	uint8_t b[4] = { 0 };
	for (size_t i = 0; i < 4 && off + i < len; i++)
		b[i] = p[off + i];
	return vxm_le32(b);
}

static inline uint16_t fz_u16(const uint8_t *p, size_t len, size_t off)
{
	uint8_t b[2] = { 0 };
	for (size_t i = 0; i < 2 && off + i < len; i++)
		b[i] = p[off + i];
	return vxm_le16(b);
}

/* Sparse input: chunks (u32 LE offset, u16 LE length, bytes) from in[p] to
 * the end are copied into dst[0..size), clipped, later chunks winning; a
 * chunk at or past size is skipped, a short last one is used as far as it
 * goes.  written(off, len) is told about each copy (may be NULL). */
static inline void fz_chunks(const uint8_t *in, size_t n, size_t p, uint8_t *dst, size_t size,
			     void (*written)(size_t off, size_t len))
{
	while (p + 6 <= n) {
		uint32_t off = fz_u32(in, n, p);
		size_t len = fz_u16(in, n, p + 4);
		p += 6;
		if (len > n - p)
			len = n - p;
		if (off < size) {
			size_t k = len < size - off ? len : size - off;
			memcpy(dst + off, in + p, k);
			if (written)
				written(off, k);
		}
		p += len;
	}
}

/* Recomputes the CRC of the entry at log-relative pos when it carries the
 * "loge" signature and a plausible length (the entry may wrap at the end of
 * the log, as the codec allows). */
static inline void fz_fix_log_entry(uint8_t *log, uint32_t log_len, uint32_t pos)
{
	static const uint8_t zero4[4];
	const uint32_t sect = VXM_LOG_SECTOR;
	uint8_t *h = log + pos;

	if (log_len < sect || log_len % sect || pos % sect || pos >= log_len)
		return;
	uint32_t len = vxm_le32(h + 8);
	if (memcmp(h, "loge", 4) != 0 || len < sect || len % sect || len > log_len)
		return;
	uint32_t crc = vxm_crc32c(0, h, 4);
	crc = vxm_crc32c(crc, zero4, 4);
	crc = vxm_crc32c(crc, h + 8, sect - 8);
	for (uint64_t k = 1; k < len / sect; k++)
		crc = vxm_crc32c(crc, log + (uint32_t)(((uint64_t)pos + k * sect) % log_len), sect);
	vxm_put_le32(h + 4, crc);
}

static inline void fz_fix_log(uint8_t *log, uint32_t log_len)
{
	for (uint32_t pos = 0; pos + VXM_LOG_SECTOR <= log_len; pos += VXM_LOG_SECTOR)
		fz_fix_log_entry(log, log_len, pos);
}

/* CRC at offset 4 over the first len bytes at p. */
static inline void fz_fix_crc(uint8_t *p, size_t len)
{
	vxm_put_le32(p + 4, vxm_crc32c_skip(p, len, 4));
}

#endif
