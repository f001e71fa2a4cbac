/* vhdx/region.c: the region table (fmt §1.4), two 64 KiB copies at 192 KiB
 * and 256 KiB, each with a CRC-32C over the full 64 KiB.
 *
 *   0 "regi"  4 crc  8 EntryCount  12 reserved  16 entries[32 bytes each]
 *   entry: 0 guid  16 FileOffset  24 Length  28 Required
 *
 * I1: a parsed table has exactly one BAT and one metadata region, both at
 *     1 MiB multiples past the header section, none overlapping.
 * I2: an unknown region with Required set refuses the file (unsupported).
 */
#include "vhdx.h"
#include "endian.h"

#include <string.h>

enum { RT_SIG = 0, RT_CRC = 4, RT_COUNT = 8, RT_RSVD = 12, RT_ENTRIES = 16, RT_ENTRY = 32 };
_Static_assert(RT_ENTRIES + RT_ENTRY * VXM_MAX_TABLE_ENTRIES <= VXM_RT_SIZE, "2047 entries fit");
_Static_assert(RT_ENTRIES == (int)VXM_RT_ENTRIES && RT_ENTRY == (int)VXM_RT_ENTRY_SIZE, "vhdx.h map");
enum { E_OFF = VXM_RT_E_FILE_OFFSET, E_LEN = VXM_RT_E_LENGTH, E_REQ = VXM_RT_E_REQUIRED };
#define SIG_REGI 0x69676572u

int vxm_region_parse(const uint8_t *buf, size_t len, uint64_t off, struct vxm_region_table *rt,
		     struct vxm_err *err)
{
	unsigned long long o = off;

	if (len < VXM_RT_SIZE)
		return vxm_corrupt(err, off, "region table at 0x%llx: truncated (%zu of %d bytes)", o,
				   len, VXM_RT_SIZE);
	if (vxm_le32(buf + RT_SIG) != SIG_REGI)
		return vxm_corrupt(err, off, "region table at 0x%llx: bad signature", o);
	uint32_t want = vxm_le32(buf + RT_CRC);
	uint32_t got = vxm_crc32c_skip(buf, VXM_RT_SIZE, RT_CRC);
	if (want != got)
		return vxm_corrupt(err, off + RT_CRC,
				   "region table at 0x%llx: checksum 0x%08x, computed 0x%08x", o, want,
				   got);
	rt->checksum = want;
	rt->count = vxm_le32(buf + RT_COUNT);
	if (rt->count > VXM_MAX_TABLE_ENTRIES)
		return vxm_corrupt(err, off + RT_COUNT,
				   "region table at 0x%llx: %u entries (at most 2047)", o, rt->count);
	if (vxm_le32(buf + RT_RSVD))
		return vxm_corrupt(err, off + RT_RSVD,
				   "region table at 0x%llx: reserved field is not zero", o);
	rt->bat = rt->metadata = -1;
	for (uint32_t i = 0; i < rt->count; i++) {
		const uint8_t *p = buf + RT_ENTRIES + RT_ENTRY * i;
		uint64_t eoff = vxm_region_entry_off(off, i);
		struct vxm_region *r = &rt->e[i];
		memcpy(r->guid.b, p, 16);
		r->off = vxm_le64(p + E_OFF);
		r->len = vxm_le32(p + E_LEN);
		r->required = vxm_le32(p + E_REQ);
		if (r->off < VXM_MiB || r->off % VXM_MiB)
			return vxm_corrupt(err, eoff + E_OFF,
					   "region table at 0x%llx: entry %u offset 0x%llx is not a multiple of 1 MiB past the header section",
					   o, i, (unsigned long long)r->off);
		if (r->len == 0 || r->len % VXM_MiB)
			return vxm_corrupt(err, eoff + E_LEN,
					   "region table at 0x%llx: entry %u length %u is not a non-zero multiple of 1 MiB",
					   o, i, r->len);
		if (r->off + r->len < r->off)
			return vxm_corrupt(err, eoff + E_OFF,
					   "region table at 0x%llx: entry %u extent [0x%llx,+0x%x) overflows",
					   o, i, (unsigned long long)r->off, r->len);
		if (r->required > 1)
			return vxm_corrupt(err, eoff + E_REQ,
					   "region table at 0x%llx: entry %u Required field %u (reserved bits set)",
					   o, i, r->required);
		for (uint32_t j = 0; j < i; j++) {
			const struct vxm_region *q = &rt->e[j];
			if (vxm_guid_eq(&q->guid, &r->guid))
				return vxm_corrupt(err, eoff,
						   "region table at 0x%llx: entries %u and %u have the same GUID",
						   o, j, i);
			if (r->off < q->off + q->len && q->off < r->off + r->len)
				return vxm_corrupt(err, eoff + E_OFF,
						   "region table at 0x%llx: region %u [0x%llx,+0x%x) overlaps region %u [0x%llx,+0x%x)",
						   o, i, (unsigned long long)r->off, r->len, j,
						   (unsigned long long)q->off, q->len);
		}
		if (vxm_guid_eq(&r->guid, &VXM_GUID_REGION_BAT)) {
			rt->bat = (int)i;
		} else if (vxm_guid_eq(&r->guid, &VXM_GUID_REGION_METADATA)) {
			rt->metadata = (int)i;
		} else if (r->required) {
			char g[VXM_GUID_STRLEN + 1];
			return vxm_unsupported(err, eoff,
					       "region table at 0x%llx: unknown required region {%s}",
					       o, vxm_guid_fmt(&r->guid, g));
		}
	}
	if (rt->bat < 0)
		return vxm_corrupt(err, off, "region table at 0x%llx: no BAT region", o);
	if (rt->metadata < 0)
		return vxm_corrupt(err, off, "region table at 0x%llx: no metadata region", o);
	return 0;
}

void vxm_region_encode(const struct vxm_region_table *rt, uint8_t *buf)
{
	memset(buf, 0, VXM_RT_SIZE);
	vxm_put_le32(buf + RT_SIG, SIG_REGI);
	vxm_put_le32(buf + RT_COUNT, rt->count);
	for (uint32_t i = 0; i < rt->count; i++) {
		uint8_t *p = buf + RT_ENTRIES + RT_ENTRY * i;
		memcpy(p, rt->e[i].guid.b, 16);
		vxm_put_le64(p + E_OFF, rt->e[i].off);
		vxm_put_le32(p + E_LEN, rt->e[i].len);
		vxm_put_le32(p + E_REQ, rt->e[i].required);
	}
	vxm_put_le32(buf + RT_CRC, vxm_crc32c_skip(buf, VXM_RT_SIZE, RT_CRC));
}
