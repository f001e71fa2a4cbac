/* vhdx/endian.h: little-endian loads and stores for on-disk fields.
 *
 * Every multi-byte VHDX integer is little-endian.  Disk bytes are never cast to
 * structs (alignment and endianness would leak into the code); every field is
 * read through these helpers at its offset.  memcpy keeps them free of
 * alignment traps and compiles to one load on x86-64.
 */
#ifndef VXM_VHDX_ENDIAN_H
#define VXM_VHDX_ENDIAN_H

#include <stdint.h>
#include <string.h>

static inline uint16_t vxm_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t vxm_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t vxm_le64(const uint8_t *p)
{
	return (uint64_t)vxm_le32(p) | (uint64_t)vxm_le32(p + 4) << 32;
}

static inline void vxm_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void vxm_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void vxm_put_le64(uint8_t *p, uint64_t v)
{
	vxm_put_le32(p, (uint32_t)v);
	vxm_put_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
