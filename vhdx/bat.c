/* vhdx/bat.c: BAT geometry and entry rules (fmt §5).
 *
 * Payload entries and sector-bitmap (SB) entries are interleaved in every
 * file type: after each chunk_ratio payload entries comes the SB entry of
 * that chunk.  A chunk covers 2^23 sectors.
 *
 *   idx:  0 .. cr-1 | cr    | cr+1 .. 2cr | 2cr+1 | ...
 *         payload   | SB 0  | payload     | SB 1  |
 *
 * I1: an entry's reserved bits (3..19) are zero.
 * I2: payload states 4 and 5 are reserved; PARTIALLY_PRESENT exists only in
 *     differencing files; SB_PRESENT only in differencing files.
 * I3: NOT_PRESENT and ZERO payload entries carry offset 0 (fmt P13).
 * I4: a FULLY/PARTIALLY_PRESENT block starts at or past 1 MiB and its
 *     virtual bytes lie inside the file (the trailing partial block may be
 *     stored short, as old QEMU wrote it).
 */
#include "vhdx.h"
#include "endian.h"

#include <string.h>

const char *vxm_pb_state_name(unsigned state)
{
	static const char *const names[8] = {
		"NOT_PRESENT", "UNDEFINED", "ZERO", "UNMAPPED",
		"reserved(4)", "reserved(5)", "FULLY_PRESENT", "PARTIALLY_PRESENT",
	};
	return names[state & 7];
}

int vxm_geom_init(struct vxm_geom *g, uint64_t virtual_size, uint32_t block_size, uint32_t lss,
		  bool has_parent, struct vxm_err *err)
{
	memset(g, 0, sizeof(*g));
	if (block_size < VXM_MIN_BLOCK_SIZE || block_size > VXM_MAX_BLOCK_SIZE ||
	    (block_size & (block_size - 1)))
		return vxm_corrupt(err, VXM_OFF_NONE, "block size %u is not a power of two from 1 MiB to 256 MiB",
				   block_size);
	if (lss != 512 && lss != 4096)
		return vxm_corrupt(err, VXM_OFF_NONE, "logical sector size %u (must be 512 or 4096)", lss);
	if (!virtual_size || virtual_size > VXM_MAX_VIRTUAL_SIZE || virtual_size % lss)
		return vxm_corrupt(err, VXM_OFF_NONE,
				   "virtual size %llu is not a non-zero multiple of %u up to 64 TiB",
				   (unsigned long long)virtual_size, lss);
	g->virtual_size = virtual_size;
	g->block_size = block_size;
	g->lss = lss;
	g->has_parent = has_parent;
	g->spb = block_size / lss;
	g->chunk_ratio = (uint32_t)((VXM_SECTORS_PER_CHUNK * lss) / block_size);
	g->payload_blocks = (virtual_size + block_size - 1) / block_size;
	g->sb_blocks = (g->payload_blocks + g->chunk_ratio - 1) / g->chunk_ratio;
	if (has_parent)
		g->total_entries = g->sb_blocks * (g->chunk_ratio + 1ull);
	else
		g->total_entries = g->payload_blocks + (g->payload_blocks - 1) / g->chunk_ratio;
	return 0;
}

void vxm_bat_count(const struct vxm_geom *g, const uint64_t *entries, struct vxm_bat_counts *c)
{
	memset(c, 0, sizeof(*c));
	for (uint64_t i = 0; i < g->total_entries; i++) {
		if (vxm_geom_is_sb_index(g, i))
			c->sb[vxm_bat_state(entries[i])]++;
		else
			c->pb[vxm_bat_state(entries[i])]++;
	}
}

int vxm_bat_check_entry(const struct vxm_geom *g, uint64_t idx, uint64_t entry, uint64_t off,
			uint64_t file_size, struct vxm_err *err)
{
	unsigned st = vxm_bat_state(entry);
	uint64_t boff = vxm_bat_offset(entry);
	unsigned long long i = idx;

	if (entry & VXM_BAT_RESERVED_MASK)
		return vxm_corrupt(err, off, "BAT entry %llu: reserved bits set (0x%016llx)", i,
				   (unsigned long long)entry);
	if (vxm_geom_is_sb_index(g, idx)) {
		unsigned long long c = vxm_geom_chunk_of_index(g, idx);
		if (st != VXM_SB_NOT_PRESENT && st != VXM_SB_PRESENT)
			return vxm_corrupt(err, off,
					   "BAT entry %llu (sector bitmap of chunk %llu): reserved state %u",
					   i, c, st);
		if (st == VXM_SB_PRESENT) {
			if (!g->has_parent)
				return vxm_corrupt(err, off,
						   "BAT entry %llu (sector bitmap of chunk %llu): SB_BLOCK_PRESENT in a file without parent",
						   i, c);
			if (boff < VXM_MiB)
				return vxm_corrupt(err, off,
						   "BAT entry %llu (sector bitmap of chunk %llu): offset 0x%llx inside the header section",
						   i, c, (unsigned long long)boff);
			if (boff > file_size || VXM_SB_BLOCK_SIZE > file_size - boff)
				return vxm_corrupt(err, off,
						   "BAT entry %llu (sector bitmap of chunk %llu): block at 0x%llx extends past the end of the file (%llu bytes)",
						   i, c, (unsigned long long)boff,
						   (unsigned long long)file_size);
		}
		return 0;
	}
	uint64_t b = vxm_geom_block_of_index(g, idx);
	switch (st) {
	case VXM_PB_NOT_PRESENT:
	case VXM_PB_ZERO:
		if (boff)
			return vxm_corrupt(err, off,
					   "BAT entry %llu (block %llu): state %s with non-zero offset 0x%llx",
					   i, (unsigned long long)b, vxm_pb_state_name(st),
					   (unsigned long long)boff);
		return 0;
	case VXM_PB_UNDEFINED:
	case VXM_PB_UNMAPPED:
		return 0;
	case VXM_PB_PARTIALLY_PRESENT:
		if (!g->has_parent)
			return vxm_corrupt(err, off,
					   "BAT entry %llu (block %llu): PARTIALLY_PRESENT in a file without parent",
					   i, (unsigned long long)b);
		/* fall through */
	case VXM_PB_FULLY_PRESENT:
		if (boff < VXM_MiB)
			return vxm_corrupt(err, off,
					   "BAT entry %llu (block %llu): offset 0x%llx inside the header section",
					   i, (unsigned long long)b, (unsigned long long)boff);
		if (boff > file_size || vxm_geom_block_bytes(g, b) > file_size - boff)
			return vxm_corrupt(err, off,
					   "BAT entry %llu (block %llu): payload at 0x%llx extends past the end of the file (%llu bytes)",
					   i, (unsigned long long)b, (unsigned long long)boff,
					   (unsigned long long)file_size);
		return 0;
	default:
		return vxm_corrupt(err, off, "BAT entry %llu (block %llu): reserved state %u", i,
				   (unsigned long long)b, st);
	}
}

void vxm_bat_decode(uint64_t *e, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		e[i] = vxm_le64((const uint8_t *)&e[i]);
}

void vxm_bat_encode(uint64_t *e, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t v = e[i];
		vxm_put_le64((uint8_t *)&e[i], v);
	}
}
