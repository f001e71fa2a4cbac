/* tests/lib/memvhdx.c: see memvhdx.h. */
#include "memvhdx.h"
#include "vhdx/endian.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB (1024ull * 1024)
#define LOG_OFF (1 * MiB)
#define META_OFF (2 * MiB)
#define BAT_OFF (3 * MiB)

static uint64_t bat_len(const struct vxm_geom *g)
{
	uint64_t n = (g->total_entries * 8 + MiB - 1) / MiB * MiB;
	return n ? n : MiB;
}

static uint64_t sb_off(const struct vxm_geom *g, uint64_t c)
{
	return BAT_OFF + bat_len(g) + c * MiB;
}

static uint64_t payload_base(const struct vxm_geom *g)
{
	return BAT_OFF + bat_len(g) + (g->has_parent ? g->sb_blocks * MiB : 0);
}

uint64_t mv_payload_off(const struct mv_spec *sp, uint64_t b)
{
	struct vxm_geom g;
	if (vxm_geom_init(&g, sp->vsize, sp->block_size, sp->lss, sp->has_parent, NULL))
		return 0;
	uint64_t base = (payload_base(&g) + MiB - 1) / MiB * MiB;
	return sp->shared_payload ? base : base + b * (uint64_t)sp->block_size;
}

uint8_t mv_byte(const struct mv_spec *sp, uint64_t s, unsigned i)
{
	return (uint8_t)(sp->fill * 31u + (unsigned)(s * 7) + i);
}

uint8_t *mv_build(const struct mv_spec *sp, size_t *len)
{
	struct vxm_geom g;
	if (vxm_geom_init(&g, sp->vsize, sp->block_size, sp->lss, sp->has_parent, NULL))
		return NULL;
	uint64_t end = mv_payload_off(sp, 0) +
		       (sp->shared_payload ? sp->block_size : g.payload_blocks * (uint64_t)sp->block_size);
	uint8_t *f = calloc(1, end);
	if (!f)
		return NULL;

	vxm_ident_encode(f, "memvhdx test builder");
	struct vxm_hdr h = { .seq = 1, .version = 1, .log_len = MiB, .log_off = LOG_OFF,
			     .data_write = sp->data_write };
	h.file_write.b[0] = 0xf1;
	vxm_hdr_encode(&h, f + VXM_HDR1_OFF);
	h.seq = 2;
	vxm_hdr_encode(&h, f + VXM_HDR2_OFF);

	static struct vxm_region_table rt;
	memset(&rt, 0, sizeof(rt));
	rt.count = 2;
	rt.e[0] = (struct vxm_region){ VXM_GUID_REGION_BAT, BAT_OFF, (uint32_t)bat_len(&g), 1 };
	rt.e[1] = (struct vxm_region){ VXM_GUID_REGION_METADATA, META_OFF, (uint32_t)MiB, 1 };
	vxm_region_encode(&rt, f + VXM_RT1_OFF);
	vxm_region_encode(&rt, f + VXM_RT2_OFF);

	/* metadata: items packed from 64 KiB, as Hyper-V does */
	static struct vxm_meta_table mt;
	memset(&mt, 0, sizeof(mt));
	uint8_t *m = f + META_OFF;
	uint32_t pos = 64 * 1024;
#define ITEM(guid, flags, n)                                                              \
	(mt.e[mt.count] = (struct vxm_meta_entry){ guid, pos, n, flags }, mt.count++, pos += n, \
	 m + pos - n)
	uint8_t *p = ITEM(VXM_GUID_META_FILE_PARAMS, 4, 8);
	vxm_put_le32(p, sp->block_size);
	vxm_put_le32(p + 4, (sp->fixed ? 1u : 0u) | (sp->has_parent ? 2u : 0u));
	p = ITEM(VXM_GUID_META_VIRTUAL_SIZE, 6, 8);
	vxm_put_le64(p, sp->vsize);
	p = ITEM(VXM_GUID_META_LOGICAL_SECTOR, 6, 4);
	vxm_put_le32(p, sp->lss);
	p = ITEM(VXM_GUID_META_PHYSICAL_SECTOR, 6, 4);
	vxm_put_le32(p, 4096);
	p = ITEM(VXM_GUID_META_DISK_ID, 6, 16);
	memset(p, 0x83, 16);
	if (sp->has_parent) {
		char l1[48], l2[48], g1[40], g2[40];
		vxm_guid_fmt(&sp->parent_linkage, g1);
		vxm_guid_fmt(&sp->parent_linkage2, g2);
		snprintf(l1, sizeof(l1), "{%s}", g1);
		snprintf(l2, sizeof(l2), "{%s}", g2);
		struct vxm_kv kv[5];
		unsigned n = 0;
		kv[n++] = (struct vxm_kv){ "parent_linkage", l1 };
		kv[n++] = (struct vxm_kv){ "parent_linkage2", l2 };
		if (sp->relative_path)
			kv[n++] = (struct vxm_kv){ "relative_path", sp->relative_path };
		if (sp->absolute_win32_path)
			kv[n++] = (struct vxm_kv){ "absolute_win32_path", sp->absolute_win32_path };
		if (sp->volume_path)
			kv[n++] = (struct vxm_kv){ "volume_path", sp->volume_path };
		uint8_t tmp[8192];
		long ln = vxm_locator_encode(kv, n, tmp, sizeof(tmp));
		if (ln < 0) {
			free(f);
			return NULL;
		}
		p = ITEM(VXM_GUID_META_PARENT_LOCATOR, 4, (uint32_t)ln);
		memcpy(p, tmp, (size_t)ln);
	}
#undef ITEM
	vxm_meta_table_encode(&mt, m);

	/* BAT, bitmaps, payload */
	uint8_t *bat = f + BAT_OFF;
	for (uint64_t b = 0; b < g.payload_blocks; b++) {
		unsigned st = sp->states[b];
		uint64_t off = 0;
		if (st == VXM_PB_FULLY_PRESENT || st == VXM_PB_PARTIALLY_PRESENT) {
			off = mv_payload_off(sp, b);
			if (!sp->shared_payload)
				for (uint64_t s = 0; s < g.spb && b * g.spb + s < sp->vsize / sp->lss; s++)
					for (unsigned i = 0; i < sp->lss; i++)
						f[off + s * sp->lss + i] = mv_byte(sp, b * g.spb + s, i);
		}
		vxm_put_le64(bat + 8 * vxm_geom_pb_index(&g, b), vxm_bat_entry(st, off));
	}
	if (sp->has_parent) {
		for (uint64_t c = 0; c < g.sb_blocks; c++)
			vxm_put_le64(bat + 8 * vxm_geom_sb_index(&g, c),
				     vxm_bat_entry(VXM_SB_PRESENT, sb_off(&g, c)));
		uint64_t nsec = sp->vsize / sp->lss;
		/* only partial blocks carry bits: walk those, not the whole disk */
		for (uint64_t b = 0; sp->bits && b < g.payload_blocks; b++) {
			if (sp->states[b] != VXM_PB_PARTIALLY_PRESENT)
				continue;
			uint64_t end = (b + 1) * g.spb < nsec ? (b + 1) * g.spb : nsec;
			for (uint64_t s = b * g.spb; s < end; s++)
				if (vxm_bit_get(sp->bits, s))
					vxm_bit_set(f + sb_off(&g, s >> 23), s & ((1ull << 23) - 1));
		}
	}
	*len = end;
	return f;
}
