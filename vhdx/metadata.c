/* vhdx/metadata.c: the metadata region (fmt §3).
 *
 *   region: | table (64 KiB) | items, unaligned and unordered, free space |
 *   table:  0 "metadata"  8 rsvd16  10 EntryCount  12 rsvd[20]  32 entries
 *   entry:  0 ItemId  16 Offset  20 Length  24 Flags  28 rsvd32
 *
 * I1: every item lies inside the region, past the table, without overlap.
 * I2: (ItemId, IsUser) is unique; an unknown IsRequired item refuses the file.
 * I3: the known system items have their exact sizes and legal values; the
 *     parent locator is present exactly when HasParent is set.
 */
#include "vhdx.h"
#include "endian.h"

#include <string.h>

enum { MT_SIG = 0, MT_RSVD = 8, MT_COUNT = 10, MT_RSVD2 = 12, MT_ENTRIES = 32, MT_ENTRY = 32 };
_Static_assert(MT_ENTRIES + MT_ENTRY * VXM_MAX_TABLE_ENTRIES == VXM_META_TABLE_SIZE, "table");
_Static_assert(MT_ENTRIES == (int)VXM_MT_ENTRIES && MT_ENTRY == (int)VXM_MT_ENTRY_SIZE, "vhdx.h map");
#define SIG_METADATA 0x617461646174656Dull
#define META_FLAGS_KNOWN (VXM_META_IS_USER | VXM_META_IS_VIRTUAL_DISK | VXM_META_IS_REQUIRED)
#define FP_FLAGS_KNOWN (VXM_FP_LEAVE_BLOCKS_ALLOCATED | VXM_FP_HAS_PARENT)

static bool all_zero(const uint8_t *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

int vxm_meta_table_parse(const uint8_t *buf, size_t len, uint64_t off, uint32_t region_len,
			 struct vxm_meta_table *t, struct vxm_err *err)
{
	unsigned long long o = off;
	unsigned users = 0;

	if (len < VXM_META_TABLE_SIZE || region_len < VXM_META_TABLE_SIZE)
		return vxm_corrupt(err, off, "metadata table at 0x%llx: truncated", o);
	if (vxm_le64(buf + MT_SIG) != SIG_METADATA)
		return vxm_corrupt(err, off, "metadata table at 0x%llx: bad signature", o);
	if (vxm_le16(buf + MT_RSVD) || !all_zero(buf + MT_RSVD2, 20))
		return vxm_corrupt(err, off + MT_RSVD,
				   "metadata table at 0x%llx: reserved header field is not zero", o);
	t->count = vxm_le16(buf + MT_COUNT);
	if (t->count > VXM_MAX_TABLE_ENTRIES)
		return vxm_corrupt(err, off + MT_COUNT,
				   "metadata table at 0x%llx: %u entries (at most 2047)", o, t->count);
	for (unsigned i = 0; i < t->count; i++) {
		const uint8_t *p = buf + MT_ENTRIES + MT_ENTRY * i;
		uint64_t eoff = off + MT_ENTRIES + MT_ENTRY * (uint64_t)i;
		struct vxm_meta_entry *e = &t->e[i];
		memcpy(e->id.b, p, 16);
		e->off = vxm_le32(p + 16);
		e->len = vxm_le32(p + 20);
		e->flags = vxm_le32(p + 24);
		if (e->flags & ~META_FLAGS_KNOWN)
			return vxm_corrupt(err, eoff + 24,
					   "metadata table at 0x%llx: entry %u flags 0x%x have reserved bits set",
					   o, i, e->flags);
		if (vxm_le32(p + 28))
			return vxm_corrupt(err, eoff + 28,
					   "metadata table at 0x%llx: entry %u reserved field is not zero",
					   o, i);
		if (e->len == 0) {
			if (e->off != 0)
				return vxm_corrupt(err, eoff + 16,
						   "metadata table at 0x%llx: entry %u has length 0 but offset %u",
						   o, i, e->off);
		} else {
			if (e->len > VXM_MAX_ITEM_SIZE)
				return vxm_corrupt(err, eoff + 20,
						   "metadata table at 0x%llx: entry %u length %u exceeds 1 MiB",
						   o, i, e->len);
			if (e->off < VXM_META_TABLE_SIZE ||
			    (uint64_t)e->off + e->len > region_len)
				return vxm_corrupt(err, eoff + 16,
						   "metadata table at 0x%llx: entry %u item [0x%x,+%u) outside the region (64 KiB..%u)",
						   o, i, e->off, e->len, region_len);
		}
		if (e->flags & VXM_META_IS_USER)
			users++;
		for (unsigned j = 0; j < i; j++) {
			const struct vxm_meta_entry *q = &t->e[j];
			if (vxm_guid_eq(&q->id, &e->id) &&
			    (q->flags & VXM_META_IS_USER) == (e->flags & VXM_META_IS_USER))
				return vxm_corrupt(err, eoff,
						   "metadata table at 0x%llx: entries %u and %u have the same item id",
						   o, j, i);
			if (e->len && q->len && e->off < q->off + q->len && q->off < e->off + e->len)
				return vxm_corrupt(err, eoff + 16,
						   "metadata table at 0x%llx: item %u [0x%x,+%u) overlaps item %u [0x%x,+%u)",
						   o, i, e->off, e->len, j, q->off, q->len);
		}
	}
	if (users > VXM_MAX_USER_ITEMS)
		return vxm_corrupt(err, off + MT_COUNT,
				   "metadata table at 0x%llx: %u user items (at most 1024)", o, users);
	return 0;
}

void vxm_meta_table_encode(const struct vxm_meta_table *t, uint8_t *buf)
{
	memset(buf, 0, VXM_META_TABLE_SIZE);
	vxm_put_le64(buf + MT_SIG, SIG_METADATA);
	vxm_put_le16(buf + MT_COUNT, t->count);
	for (unsigned i = 0; i < t->count; i++) {
		uint8_t *p = buf + MT_ENTRIES + MT_ENTRY * i;
		memcpy(p, t->e[i].id.b, 16);
		vxm_put_le32(p + 16, t->e[i].off);
		vxm_put_le32(p + 20, t->e[i].len);
		vxm_put_le32(p + 24, t->e[i].flags);
	}
}

int vxm_meta_find(const struct vxm_meta_table *t, const struct vxm_guid *id, bool is_user)
{
	for (unsigned i = 0; i < t->count; i++)
		if (vxm_guid_eq(&t->e[i].id, id) &&
		    !!(t->e[i].flags & VXM_META_IS_USER) == is_user)
			return (int)i;
	return -1;
}

static const struct {
	const struct vxm_guid *id;
	uint32_t size; /* 0: variable */
	const char *name;
} known[] = {
	{ &VXM_GUID_META_FILE_PARAMS, VXM_META_FILE_PARAMS_LEN, "File Parameters" },
	{ &VXM_GUID_META_VIRTUAL_SIZE, VXM_META_VIRTUAL_SIZE_LEN, "Virtual Disk Size" },
	{ &VXM_GUID_META_DISK_ID, VXM_META_DISK_ID_LEN, "Virtual Disk ID" },
	{ &VXM_GUID_META_LOGICAL_SECTOR, VXM_META_SECTOR_SIZE_LEN, "Logical Sector Size" },
	{ &VXM_GUID_META_PHYSICAL_SECTOR, VXM_META_SECTOR_SIZE_LEN, "Physical Sector Size" },
	{ &VXM_GUID_META_PARENT_LOCATOR, 0, "Parent Locator" },
};
enum { K_PARAMS, K_VSIZE, K_DISKID, K_LSS, K_PSS, K_LOCATOR, K_COUNT };

int vxm_meta_parse(const uint8_t *region, size_t region_len, uint64_t off,
		   const struct vxm_meta_table *t, struct vxm_meta *m, struct vxm_err *err)
{
	int idx[K_COUNT];
	unsigned long long o = off;

	memset(m, 0, sizeof(*m));
	m->locator = -1;
	for (int k = 0; k < K_COUNT; k++)
		idx[k] = vxm_meta_find(t, known[k].id, false);
	for (unsigned i = 0; i < t->count; i++) {
		const struct vxm_meta_entry *e = &t->e[i];
		bool is_known = false;
		for (int k = 0; k < K_COUNT && !is_known; k++)
			is_known = idx[k] == (int)i;
		if (!is_known && (e->flags & VXM_META_IS_REQUIRED)) {
			char g[VXM_GUID_STRLEN + 1];
			return vxm_unsupported(err, vxm_meta_entry_off(off, i),
					       "metadata table at 0x%llx: unknown required %s item {%s}",
					       o, (e->flags & VXM_META_IS_USER) ? "user" : "system",
					       vxm_guid_fmt(&e->id, g));
		}
		if ((uint64_t)e->off + e->len > region_len)
			return vxm_corrupt(err, off + e->off, "metadata item %u: past the region", i);
	}
	for (int k = 0; k < K_LOCATOR; k++) {
		if (idx[k] < 0)
			return vxm_corrupt(err, off,
					   "metadata region at 0x%llx: required item %s is missing",
					   o, known[k].name);
		const struct vxm_meta_entry *e = &t->e[idx[k]];
		if (e->len != known[k].size)
			return vxm_corrupt(err, off + e->off,
					   "metadata item %s at 0x%llx: %u bytes, expected %u",
					   known[k].name, o + e->off, e->len, known[k].size);
	}
	const uint8_t *p = region + t->e[idx[K_PARAMS]].off;
	uint64_t poff = off + t->e[idx[K_PARAMS]].off;
	uint32_t fpflags = vxm_le32(p + 4);
	m->block_size = vxm_le32(p);
	m->leave_blocks_allocated = fpflags & VXM_FP_LEAVE_BLOCKS_ALLOCATED;
	m->has_parent = fpflags & VXM_FP_HAS_PARENT;
	if (fpflags & ~FP_FLAGS_KNOWN)
		return vxm_corrupt(err, poff + 4,
				   "metadata item File Parameters at 0x%llx: reserved flag bits 0x%x set",
				   (unsigned long long)poff, fpflags & ~FP_FLAGS_KNOWN);
	if (m->block_size < VXM_MIN_BLOCK_SIZE || m->block_size > VXM_MAX_BLOCK_SIZE ||
	    (m->block_size & (m->block_size - 1)))
		return vxm_corrupt(err, poff,
				   "metadata item File Parameters at 0x%llx: block size %u is not a power of two from 1 MiB to 256 MiB",
				   (unsigned long long)poff, m->block_size);

	uint64_t loff = off + t->e[idx[K_LSS]].off;
	m->logical_sector_size = vxm_le32(region + t->e[idx[K_LSS]].off);
	if (m->logical_sector_size != 512 && m->logical_sector_size != 4096)
		return vxm_corrupt(err, loff,
				   "metadata item Logical Sector Size at 0x%llx: %u (must be 512 or 4096)",
				   (unsigned long long)loff, m->logical_sector_size);
	uint64_t psoff = off + t->e[idx[K_PSS]].off;
	m->physical_sector_size = vxm_le32(region + t->e[idx[K_PSS]].off);
	if (m->physical_sector_size != 512 && m->physical_sector_size != 4096)
		return vxm_corrupt(err, psoff,
				   "metadata item Physical Sector Size at 0x%llx: %u (must be 512 or 4096)",
				   (unsigned long long)psoff, m->physical_sector_size);
	uint64_t voff = off + t->e[idx[K_VSIZE]].off;
	m->virtual_size = vxm_le64(region + t->e[idx[K_VSIZE]].off);
	if (m->virtual_size == 0 || m->virtual_size > VXM_MAX_VIRTUAL_SIZE ||
	    m->virtual_size % m->logical_sector_size)
		return vxm_corrupt(err, voff,
				   "metadata item Virtual Disk Size at 0x%llx: %llu is not a non-zero multiple of the %u-byte sector up to 64 TiB",
				   (unsigned long long)voff, (unsigned long long)m->virtual_size,
				   m->logical_sector_size);
	memcpy(m->disk_id.b, region + t->e[idx[K_DISKID]].off, 16);

	if (m->has_parent && idx[K_LOCATOR] < 0)
		return vxm_corrupt(err, poff,
				   "metadata region at 0x%llx: HasParent is set but there is no parent locator",
				   o);
	if (!m->has_parent && idx[K_LOCATOR] >= 0)
		return vxm_corrupt(err, off + t->e[idx[K_LOCATOR]].off,
				   "metadata region at 0x%llx: a parent locator is present but HasParent is clear",
				   o);
	m->locator = idx[K_LOCATOR];
	return 0;
}

void vxm_meta_items_encode(const struct vxm_meta *m, struct vxm_meta_items *out)
{
	vxm_put_le32(out->file_params, m->block_size);
	vxm_put_le32(out->file_params + 4,
		     (m->leave_blocks_allocated ? VXM_FP_LEAVE_BLOCKS_ALLOCATED : 0u) |
			     (m->has_parent ? VXM_FP_HAS_PARENT : 0u));
	vxm_put_le64(out->virtual_size, m->virtual_size);
	memcpy(out->disk_id, m->disk_id.b, VXM_META_DISK_ID_LEN);
	vxm_put_le32(out->logical_sector, m->logical_sector_size);
	vxm_put_le32(out->physical_sector, m->physical_sector_size);
}
