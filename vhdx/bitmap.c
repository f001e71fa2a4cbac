/* vhdx/bitmap.c: sector bitmaps (fmt §5.5).  One bit per sector, LSB first;
 * bit 1 means "this file holds the sector", bit 0 "read the parent".
 * Scans step a byte at a time over mixed bytes and 8 bytes at a time over
 * uniform stretches, which is where large blocks spend their bits.
 */
#include "vhdx.h"

#include <string.h>

uint64_t vxm_bitmap_run(const uint8_t *bm, uint64_t from, uint64_t limit)
{
	if (from >= limit)
		return 0;
	bool v = vxm_bit_get(bm, from);
	uint8_t all = v ? 0xFF : 0x00;
	uint64_t i = from + 1;

	while (i < limit && (i & 7)) {
		if (vxm_bit_get(bm, i) != v)
			return i - from;
		i++;
	}
	while (i + 64 <= limit) {
		uint64_t w, want = v ? ~0ull : 0;
		memcpy(&w, bm + (i >> 3), 8);
		if (w != want)
			break;
		i += 64;
	}
	while (i + 8 <= limit && bm[i >> 3] == all)
		i += 8;
	while (i < limit && vxm_bit_get(bm, i) == v)
		i++;
	return i - from;
}

void vxm_bitmap_fill(uint8_t *bm, uint64_t from, uint64_t n, bool value)
{
	uint64_t end = from + n;

	while (from < end && (from & 7)) {
		value ? vxm_bit_set(bm, from) : vxm_bit_clear(bm, from);
		from++;
	}
	if (end - from >= 8) {
		uint64_t bytes = (end - from) >> 3;
		memset(bm + (from >> 3), value ? 0xFF : 0, (size_t)bytes);
		from += bytes << 3;
	}
	while (from < end) {
		value ? vxm_bit_set(bm, from) : vxm_bit_clear(bm, from);
		from++;
	}
}

uint64_t vxm_bitmap_count(const uint8_t *bm, uint64_t from, uint64_t n)
{
	uint64_t end = from + n, c = 0;

	while (from < end && (from & 7))
		c += vxm_bit_get(bm, from++);
	while (from + 8 <= end) {
		c += (uint64_t)__builtin_popcount(bm[from >> 3]);
		from += 8;
	}
	while (from < end)
		c += vxm_bit_get(bm, from++);
	return c;
}
