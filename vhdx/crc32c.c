/* vhdx/crc32c.c: CRC-32C (Castagnoli), fmt §2.
 *
 * Reflected polynomial 0x82F63B78, init and final XOR 0xFFFFFFFF; check value
 * crc("123456789") = 0xE3069283.  Two paths with identical results: the
 * SSE4.2 crc32 instruction (8 bytes per step), chosen at run time by CPUID,
 * and slicing-by-8 tables for every other CPU.  vxm_crc32c(crc, ...) chains:
 * feed the previous return value back in to continue a running CRC.
 */
#include "vhdx.h"

#include <pthread.h>

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}

uint32_t vxm_crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&table_once, table_init);
	crc = ~crc;
	while (len && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
				     (uint32_t)p[3] << 24);
		uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
			      (uint32_t)p[7] << 24;
		crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
		      table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
		      table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const void *buf,
							   size_t len)
{
	const uint8_t *p = buf;
	uint64_t c = ~crc;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	while (len >= 8) {
		uint64_t v;
		__builtin_memcpy(&v, p, 8);
		c = _mm_crc32_u64(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return ~(uint32_t)c;
}

static int hw_state = -1;

bool vxm_crc32c_hw(void)
{
	if (hw_state < 0) {
		unsigned a, b, c, d;
		hw_state = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
	}
	return hw_state;
}

uint32_t vxm_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return vxm_crc32c_hw() ? crc32c_hw(crc, buf, len) : vxm_crc32c_sw(crc, buf, len);
}
#else
bool vxm_crc32c_hw(void)
{
	return false;
}

uint32_t vxm_crc32c(uint32_t crc, const void *buf, size_t len)
{
	return vxm_crc32c_sw(crc, buf, len);
}
#endif

uint32_t vxm_crc32c_skip(const void *buf, size_t len, size_t field_off)
{
	static const uint8_t zero[4];
	const uint8_t *p = buf;
	uint32_t crc;

	crc = vxm_crc32c(0, p, field_off);
	crc = vxm_crc32c(crc, zero, 4);
	return vxm_crc32c(crc, p + field_off + 4, len - field_off - 4);
}
