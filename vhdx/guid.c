/* vhdx/guid.c: GUID text and the well-known GUIDs of the format (fmt §12).
 *
 * On disk a GUID is Data1 (LE32), Data2 (LE16), Data3 (LE16), Data4 (8 bytes
 * in order).  The canonical text prints Data1..Data3 as numbers, so their
 * bytes appear reversed relative to the disk.
 */
#include "vhdx.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define G(a, b, c, d0, d1, d2, d3, d4, d5, d6, d7)                                          \
	{ { (a) & 0xff, ((a) >> 8) & 0xff, ((a) >> 16) & 0xff, ((a) >> 24) & 0xff, (b) & 0xff,  \
	    ((b) >> 8) & 0xff, (c) & 0xff, ((c) >> 8) & 0xff, d0, d1, d2, d3, d4, d5, d6, d7 } }

const struct vxm_guid VXM_GUID_REGION_BAT =
	G(0x2DC27766u, 0xF623u, 0x4200u, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD, 0x4A, 0x08);
const struct vxm_guid VXM_GUID_REGION_METADATA =
	G(0x8B7CA206u, 0x4790u, 0x4B9Au, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E);
const struct vxm_guid VXM_GUID_META_FILE_PARAMS =
	G(0xCAA16737u, 0xFA36u, 0x4D43u, 0xB3, 0xB6, 0x33, 0xF0, 0xAA, 0x44, 0xE7, 0x6B);
const struct vxm_guid VXM_GUID_META_VIRTUAL_SIZE =
	G(0x2FA54224u, 0xCD1Bu, 0x4876u, 0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8);
const struct vxm_guid VXM_GUID_META_DISK_ID =
	G(0xBECA12ABu, 0xB2E6u, 0x4523u, 0x93, 0xEF, 0xC3, 0x09, 0xE0, 0x00, 0xC7, 0x46);
const struct vxm_guid VXM_GUID_META_LOGICAL_SECTOR =
	G(0x8141BF1Du, 0xA96Fu, 0x4709u, 0xBA, 0x47, 0xF2, 0x33, 0xA8, 0xFA, 0xAB, 0x5F);
const struct vxm_guid VXM_GUID_META_PHYSICAL_SECTOR =
	G(0xCDA348C7u, 0x445Du, 0x4471u, 0x9C, 0xC9, 0xE9, 0x88, 0x52, 0x51, 0xC5, 0x56);
const struct vxm_guid VXM_GUID_META_PARENT_LOCATOR =
	G(0xA8D35F2Du, 0xB30Bu, 0x454Du, 0xAB, 0xF7, 0xD3, 0xD8, 0x48, 0x34, 0xAB, 0x0C);
const struct vxm_guid VXM_GUID_LOCATOR_VHDX =
	G(0xB04AEFB7u, 0xD19Eu, 0x4A81u, 0xB7, 0x89, 0x25, 0xB8, 0xE9, 0x44, 0x59, 0x13);

bool vxm_guid_is_zero(const struct vxm_guid *g)
{
	static const struct vxm_guid zero;
	return memcmp(g->b, zero.b, 16) == 0;
}

bool vxm_guid_eq(const struct vxm_guid *a, const struct vxm_guid *b)
{
	return memcmp(a->b, b->b, 16) == 0;
}

/* Text position order of the 16 disk bytes. */
static const unsigned char text_order[16] = { 3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15 };

char *vxm_guid_fmt(const struct vxm_guid *g, char *out)
{
	static const char hex[] = "0123456789abcdef";
	char *p = out;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		uint8_t v = g->b[text_order[i]];
		*p++ = hex[v >> 4];
		*p++ = hex[v & 15];
	}
	*p = 0;
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vxm_guid_parse(const char *s, size_t len, struct vxm_guid *g)
{
	struct vxm_guid out;

	if (len == VXM_GUID_STRLEN + 2) {
		if (s[0] != '{' || s[len - 1] != '}')
			return -EINVAL;
		s++;
		len -= 2;
	}
	if (len != VXM_GUID_STRLEN)
		return -EINVAL;
	int byte = 0;
	for (size_t i = 0; i < len;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out.b[text_order[byte++]] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	*g = out;
	return 0;
}
