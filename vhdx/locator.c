/* vhdx/locator.c: the parent locator item (fmt §4) and UTF-16LE text.
 *
 *   0 LocatorType  16 rsvd16  18 KeyValueCount  20 entries[12 bytes each]
 *   entry: 0 KeyOffset  4 ValueOffset  8 KeyLength  10 ValueLength
 *
 * Keys and values are UTF-16LE without terminator, offsets from the item
 * start.  Known keys: parent_linkage (required), parent_linkage2,
 * relative_path, volume_path, absolute_win32_path.
 *
 * I1: every key and value lies inside the item, has a non-zero even length,
 *     is valid UTF-16 without NUL; keys are unique (case-sensitive).
 * I2: parent_linkage is present and parses as a GUID; a zero
 *     parent_linkage2 counts as absent (fmt P11).
 */
#include "vhdx.h"
#include "endian.h"

#include <errno.h>
#include <string.h>

enum { LOC_TYPE = 0, LOC_RSVD = 16, LOC_COUNT = 18, LOC_ENTRIES = 20, LOC_ENTRY = 12 };

long vxm_utf16le_to_utf8(const uint8_t *in, size_t in_len, char *out, size_t cap)
{
	size_t o = 0;

	if (in_len % 2)
		return -EINVAL;
	for (size_t i = 0; i < in_len; i += 2) {
		uint32_t c = vxm_le16(in + i);
		if (c == 0)
			return -EINVAL;
		if (c >= 0xD800 && c <= 0xDBFF) {
			if (i + 2 >= in_len)
				return -EINVAL;
			uint32_t lo = vxm_le16(in + i + 2);
			if (lo < 0xDC00 || lo > 0xDFFF)
				return -EINVAL;
			c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
			i += 2;
		} else if (c >= 0xDC00 && c <= 0xDFFF) {
			return -EINVAL;
		}
		uint8_t b[4];
		size_t n;
		if (c < 0x80) {
			b[0] = (uint8_t)c;
			n = 1;
		} else if (c < 0x800) {
			b[0] = (uint8_t)(0xC0 | c >> 6);
			b[1] = (uint8_t)(0x80 | (c & 0x3F));
			n = 2;
		} else if (c < 0x10000) {
			b[0] = (uint8_t)(0xE0 | c >> 12);
			b[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			b[2] = (uint8_t)(0x80 | (c & 0x3F));
			n = 3;
		} else {
			b[0] = (uint8_t)(0xF0 | c >> 18);
			b[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
			b[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
			b[3] = (uint8_t)(0x80 | (c & 0x3F));
			n = 4;
		}
		if (o + n + 1 > cap)
			return -ENOSPC;
		memcpy(out + o, b, n);
		o += n;
	}
	if (o + 1 > cap)
		return -ENOSPC;
	out[o] = 0;
	return (long)o;
}

long vxm_utf8_to_utf16le(const char *in, size_t in_len, uint8_t *out, size_t cap)
{
	const uint8_t *s = (const uint8_t *)in;
	size_t o = 0;

	for (size_t i = 0; i < in_len;) {
		uint32_t c = s[i];
		size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
		if (!n || i + n > in_len || c == 0)
			return -EINVAL;
		if (n > 1) {
			c &= 0x7Fu >> n;
			for (size_t k = 1; k < n; k++) {
				if ((s[i + k] & 0xC0) != 0x80)
					return -EINVAL;
				c = c << 6 | (s[i + k] & 0x3F);
			}
			static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
			if (c < min[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
				return -EINVAL;
		}
		i += n;
		if (c >= 0x10000) {
			if (o + 4 > cap)
				return -ENOSPC;
			c -= 0x10000;
			vxm_put_le16(out + o, (uint16_t)(0xD800 + (c >> 10)));
			vxm_put_le16(out + o + 2, (uint16_t)(0xDC00 + (c & 0x3FF)));
			o += 4;
		} else {
			if (o + 2 > cap)
				return -ENOSPC;
			vxm_put_le16(out + o, (uint16_t)c);
			o += 2;
		}
	}
	return (long)o;
}

static bool key_is(const uint8_t *item, const struct vxm_locator_pair *kv, const char *ascii)
{
	size_t n = strlen(ascii);
	if (kv->key_len != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (vxm_le16(item + kv->key_off + 2 * i) != (uint8_t)ascii[i])
			return false;
	return true;
}

static int parse_linkage(const uint8_t *item, const struct vxm_locator_pair *kv, uint64_t off,
			 const char *name, struct vxm_guid *g, struct vxm_err *err)
{
	char text[80];
	long n = vxm_utf16le_to_utf8(item + kv->val_off, kv->val_len, text, sizeof(text));
	if (n < 0 || vxm_guid_parse(text, (size_t)n, g) < 0)
		return vxm_corrupt(err, off + kv->val_off,
				   "parent locator at 0x%llx: %s value is not a GUID",
				   (unsigned long long)off, name);
	return 0;
}

int vxm_locator_parse(const uint8_t *item, size_t len, uint64_t off, struct vxm_locator *loc,
		      struct vxm_err *err)
{
	unsigned long long o = off;

	memset(loc, 0, offsetof(struct vxm_locator, relative_path));
	loc->relative_path[0] = loc->volume_path[0] = loc->absolute_win32_path[0] = 0;
	if (len < LOC_ENTRIES)
		return vxm_corrupt(err, off, "parent locator at 0x%llx: %zu bytes, too short", o, len);
	memcpy(loc->type.b, item + LOC_TYPE, 16);
	if (!vxm_guid_eq(&loc->type, &VXM_GUID_LOCATOR_VHDX)) {
		char g[VXM_GUID_STRLEN + 1];
		return vxm_unsupported(err, off, "parent locator at 0x%llx: unknown locator type {%s}",
				       o, vxm_guid_fmt(&loc->type, g));
	}
	if (vxm_le16(item + LOC_RSVD))
		return vxm_corrupt(err, off + LOC_RSVD,
				   "parent locator at 0x%llx: reserved field is not zero", o);
	loc->count = vxm_le16(item + LOC_COUNT);
	if (loc->count == 0)
		return vxm_corrupt(err, off + LOC_COUNT, "parent locator at 0x%llx: no entries", o);
	if (loc->count > VXM_LOCATOR_MAX_PAIRS)
		return vxm_unsupported(err, off + LOC_COUNT,
				       "parent locator at 0x%llx: %u entries (this program reads at most %d)",
				       o, loc->count, VXM_LOCATOR_MAX_PAIRS);
	if (LOC_ENTRIES + (size_t)LOC_ENTRY * loc->count > len)
		return vxm_corrupt(err, off + LOC_COUNT,
				   "parent locator at 0x%llx: %u entries do not fit in %zu bytes", o,
				   loc->count, len);
	int has_path = 0;
	for (unsigned i = 0; i < loc->count; i++) {
		const uint8_t *p = item + LOC_ENTRIES + LOC_ENTRY * i;
		uint64_t eoff = off + LOC_ENTRIES + LOC_ENTRY * (uint64_t)i;
		struct vxm_locator_pair *kv = &loc->kv[i];
		kv->key_off = vxm_le32(p);
		kv->val_off = vxm_le32(p + 4);
		kv->key_len = vxm_le16(p + 8);
		kv->val_len = vxm_le16(p + 10);
		if (!kv->key_len || kv->key_len % 2)
			return vxm_corrupt(err, eoff + 8,
					   "parent locator at 0x%llx: entry %u key length %u is zero or odd",
					   o, i, kv->key_len);
		if (!kv->val_len || kv->val_len % 2)
			return vxm_corrupt(err, eoff + 10,
					   "parent locator at 0x%llx: entry %u value length %u is zero or odd",
					   o, i, kv->val_len);
		if ((uint64_t)kv->key_off + kv->key_len > len ||
		    (uint64_t)kv->val_off + kv->val_len > len)
			return vxm_corrupt(err, eoff,
					   "parent locator at 0x%llx: entry %u points past the item (%zu bytes)",
					   o, i, len);
		char tmp[VXM_LOCATOR_PATH_MAX];
		if (vxm_utf16le_to_utf8(item + kv->key_off, kv->key_len, tmp, sizeof(tmp)) < 0)
			return vxm_corrupt(err, off + kv->key_off,
					   "parent locator at 0x%llx: entry %u key is not valid UTF-16", o, i);
		long vn = vxm_utf16le_to_utf8(item + kv->val_off, kv->val_len, tmp, sizeof(tmp));
		if (vn == -EINVAL)
			return vxm_corrupt(err, off + kv->val_off,
					   "parent locator at 0x%llx: entry %u value is not valid UTF-16 (or holds a NUL)",
					   o, i);
		for (unsigned j = 0; j < i; j++) {
			const struct vxm_locator_pair *q = &loc->kv[j];
			if (q->key_len == kv->key_len &&
			    !memcmp(item + q->key_off, item + kv->key_off, kv->key_len))
				return vxm_corrupt(err, eoff,
						   "parent locator at 0x%llx: entries %u and %u have the same key",
						   o, j, i);
		}
		char *dst = NULL;
		if (key_is(item, kv, "parent_linkage")) {
			int r = parse_linkage(item, kv, off, "parent_linkage", &loc->parent_linkage, err);
			if (r)
				return r;
			loc->has_linkage = true;
		} else if (key_is(item, kv, "parent_linkage2")) {
			int r = parse_linkage(item, kv, off, "parent_linkage2", &loc->parent_linkage2, err);
			if (r)
				return r;
			loc->has_linkage2 = !vxm_guid_is_zero(&loc->parent_linkage2);
			loc->linkage2_key = true;
		} else if (key_is(item, kv, "relative_path")) {
			dst = loc->relative_path;
		} else if (key_is(item, kv, "volume_path")) {
			dst = loc->volume_path;
		} else if (key_is(item, kv, "absolute_win32_path")) {
			dst = loc->absolute_win32_path;
		}
		if (dst) {
			if (vn < 0)
				return vxm_unsupported(err, off + kv->val_off,
						       "parent locator at 0x%llx: entry %u path longer than %d bytes",
						       o, i, VXM_LOCATOR_PATH_MAX - 1);
			memcpy(dst, tmp, (size_t)vn + 1);
			has_path = 1;
		}
	}
	if (!loc->has_linkage)
		return vxm_corrupt(err, off, "parent locator at 0x%llx: no parent_linkage entry", o);
	if (!has_path)
		return vxm_corrupt(err, off,
				   "parent locator at 0x%llx: none of relative_path, volume_path, absolute_win32_path",
				   o);
	return 0;
}

long vxm_locator_encode(const struct vxm_kv *kv, unsigned n, uint8_t *out, size_t cap)
{
	size_t pos = LOC_ENTRIES + (size_t)LOC_ENTRY * n;

	if (n == 0 || n > VXM_LOCATOR_MAX_PAIRS)
		return -EINVAL;
	if (pos > cap)
		return -ENOSPC;
	memset(out, 0, pos);
	memcpy(out + LOC_TYPE, VXM_GUID_LOCATOR_VHDX.b, 16);
	vxm_put_le16(out + LOC_COUNT, (uint16_t)n);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = out + LOC_ENTRIES + LOC_ENTRY * i;
		long kl, vl;
		if (!kv[i].key[0] || !kv[i].value[0])
			return -EINVAL;
		kl = vxm_utf8_to_utf16le(kv[i].key, strlen(kv[i].key), out + pos, cap - pos);
		if (kl < 0 || kl > 0xFFFF)
			return kl < 0 ? kl : -EINVAL;
		vxm_put_le32(e, (uint32_t)pos);
		vxm_put_le16(e + 8, (uint16_t)kl);
		pos += (size_t)kl;
		vl = vxm_utf8_to_utf16le(kv[i].value, strlen(kv[i].value), out + pos, cap - pos);
		if (vl < 0 || vl > 0xFFFF)
			return vl < 0 ? vl : -EINVAL;
		vxm_put_le32(e + 4, (uint32_t)pos);
		vxm_put_le16(e + 10, (uint16_t)vl);
		pos += (size_t)vl;
	}
	return (long)pos;
}

int vxm_locator_key(const struct vxm_locator *loc, const uint8_t *item, unsigned i, char *out,
		    size_t cap)
{
	if (i >= loc->count)
		return -EINVAL;
	long r = vxm_utf16le_to_utf8(item + loc->kv[i].key_off, loc->kv[i].key_len, out, cap);
	return r < 0 ? (int)r : 0;
}

int vxm_locator_value(const struct vxm_locator *loc, const uint8_t *item, unsigned i, char *out,
		      size_t cap)
{
	if (i >= loc->count)
		return -EINVAL;
	long r = vxm_utf16le_to_utf8(item + loc->kv[i].val_off, loc->kv[i].val_len, out, cap);
	return r < 0 ? (int)r : 0;
}
