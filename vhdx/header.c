/* vhdx/header.c: file identifier and the two headers (fmt §1.2, §1.3).
 *
 *   0        64K       128K      192K      256K      320K         1M
 *   | ident  | header1 | header2 | region1 | region2 | reserved... |
 *
 * Each header slot is 64 KiB; the first 4 KiB are the structure and are
 * covered by the CRC-32C (checksum at offset 4, read as zero).
 *
 * I1: no field of a header is trusted before its signature and CRC match.
 * I2: the current header is the only valid one or the valid one with the
 *     strictly larger sequence number; equal numbers are accepted only for
 *     byte-identical copies (Disk2vhd), and then slot 1 wins.  "Valid" is
 *     signature and CRC: a valid copy that breaks another rule (version,
 *     log placement) and is current by sequence number fails the open
 *     rather than letting the older copy stand in for it.
 */
#include "vhdx.h"
#include "endian.h"

#include <errno.h>
#include <string.h>

enum {
	HDR_SIG = 0,
	HDR_CRC = 4,
	HDR_SEQ = 8,
	HDR_FWG = 16,
	HDR_DWG = 32,
	HDR_LOG_GUID = 48,
	HDR_LOG_VER = 64,
	HDR_VER = 66,
	HDR_LOG_LEN = 68,
	HDR_LOG_OFF = 72,
	HDR_RESERVED = 80,
};
_Static_assert(VXM_HDR_SIZE == 4096, "header covers 4 KiB");
_Static_assert(HDR_RESERVED + 4016 == VXM_HDR_SIZE, "reserved tail");
_Static_assert(VXM_IDENT_USED == 8 + 512, "signature and creator");

#define SIG_HEAD 0x64616568u
#define SIG_FILE 0x656C696678646876ull

int vxm_ident_parse(const uint8_t *buf, size_t len, char *creator, size_t creator_len,
		    struct vxm_err *err)
{
	if (len < 8 || vxm_le64(buf) != SIG_FILE)
		return vxm_fail(err, -VXM_ENOTVHDX, 0,
				"file identifier: no \"vhdxfile\" signature");
	if (creator && creator_len) {
		size_t n = len - 8 < 512 ? len - 8 : 512, units = 0;
		while (units * 2 < n && vxm_le16(buf + 8 + units * 2))
			units++;
		long r = vxm_utf16le_to_utf8(buf + 8, units * 2, creator, creator_len);
		if (r < 0)
			creator[0] = 0; /* diagnostics only: a bad creator is not damage */
	}
	return 0;
}

void vxm_ident_encode(uint8_t *buf, const char *creator)
{
	memset(buf, 0, VXM_IDENT_SIZE);
	vxm_put_le64(buf, SIG_FILE);
	for (size_t i = 0; creator && creator[i] && i < 255; i++)
		vxm_put_le16(buf + 8 + 2 * i, (uint8_t)creator[i]);
}

const char *vxm_header_section_part(uint64_t off)
{
	static const char *const part[] = { "the file identifier", "header 1", "header 2",
					    "region table 1", "region table 2" };
	enum { SLOT = VXM_IDENT_SIZE };
	_Static_assert(VXM_HDR1_OFF == (int)SLOT && VXM_HDR2_OFF == 2 * (int)SLOT &&
		       VXM_RT1_OFF == 3 * (int)SLOT && VXM_RT2_OFF == 4 * (int)SLOT,
		       "five 64 KiB slots");
	uint64_t slot = off / VXM_IDENT_SIZE;

	return slot < 5 ? part[slot] : "the reserved part of the header section";
}

int vxm_hdr_parse(const uint8_t *buf, size_t len, uint64_t off, struct vxm_hdr *out,
		  struct vxm_err *err)
{
	uint32_t want, got;

	if (len < VXM_HDR_SIZE)
		return vxm_corrupt(err, off, "header at 0x%llx: truncated (%zu of %d bytes)",
				   (unsigned long long)off, len, VXM_HDR_SIZE);
	if (vxm_le32(buf + HDR_SIG) != SIG_HEAD)
		return vxm_corrupt(err, off + HDR_SIG, "header at 0x%llx: bad signature",
				   (unsigned long long)off);
	want = vxm_le32(buf + HDR_CRC);
	got = vxm_crc32c_skip(buf, VXM_HDR_SIZE, HDR_CRC);
	if (got != want)
		return vxm_corrupt(err, off + HDR_CRC,
				   "header at 0x%llx: checksum 0x%08x, computed 0x%08x",
				   (unsigned long long)off, want, got);
	out->checksum = want;
	out->seq = vxm_le64(buf + HDR_SEQ);
	memcpy(out->file_write.b, buf + HDR_FWG, 16);
	memcpy(out->data_write.b, buf + HDR_DWG, 16);
	memcpy(out->log_guid.b, buf + HDR_LOG_GUID, 16);
	out->log_version = vxm_le16(buf + HDR_LOG_VER);
	out->version = vxm_le16(buf + HDR_VER);
	out->log_len = vxm_le32(buf + HDR_LOG_LEN);
	out->log_off = vxm_le64(buf + HDR_LOG_OFF);

	if (out->version != 1)
		return vxm_unsupported(err, off + HDR_VER, "header at 0x%llx: version %u (only 1 is defined)",
				       (unsigned long long)off, out->version);
	if (out->log_version != 0)
		return vxm_unsupported(err, off + HDR_LOG_VER,
				       "header at 0x%llx: log version %u (only 0 is defined)",
				       (unsigned long long)off, out->log_version);
	if (out->log_len == 0 || out->log_len % VXM_MiB)
		return vxm_corrupt(err, off + HDR_LOG_LEN,
				   "header at 0x%llx: log length %u is not a non-zero multiple of 1 MiB",
				   (unsigned long long)off, out->log_len);
	if (out->log_off < VXM_MiB || out->log_off % VXM_MiB)
		return vxm_corrupt(err, off + HDR_LOG_OFF,
				   "header at 0x%llx: log offset 0x%llx is not a multiple of 1 MiB past the header section",
				   (unsigned long long)off, (unsigned long long)out->log_off);
	if (out->log_off + out->log_len < out->log_off)
		return vxm_corrupt(err, off + HDR_LOG_OFF, "header at 0x%llx: log extent overflows",
				   (unsigned long long)off);
	for (size_t i = HDR_RESERVED; i < VXM_HDR_SIZE; i++)
		if (buf[i])
			return vxm_corrupt(err, off + i,
					   "header at 0x%llx: reserved byte %zu is not zero",
					   (unsigned long long)off, i);
	return 0;
}

void vxm_hdr_encode(const struct vxm_hdr *h, uint8_t *buf)
{
	memset(buf, 0, VXM_HDR_SIZE);
	vxm_put_le32(buf + HDR_SIG, SIG_HEAD);
	vxm_put_le64(buf + HDR_SEQ, h->seq);
	memcpy(buf + HDR_FWG, h->file_write.b, 16);
	memcpy(buf + HDR_DWG, h->data_write.b, 16);
	memcpy(buf + HDR_LOG_GUID, h->log_guid.b, 16);
	vxm_put_le16(buf + HDR_LOG_VER, h->log_version);
	vxm_put_le16(buf + HDR_VER, h->version);
	vxm_put_le32(buf + HDR_LOG_LEN, h->log_len);
	vxm_put_le64(buf + HDR_LOG_OFF, h->log_off);
	vxm_put_le32(buf + HDR_CRC, vxm_crc32c_skip(buf, VXM_HDR_SIZE, HDR_CRC));
}

static bool sig_crc_ok(const uint8_t *buf)
{
	return vxm_le32(buf + HDR_SIG) == SIG_HEAD &&
	       vxm_le32(buf + HDR_CRC) == vxm_crc32c_skip(buf, VXM_HDR_SIZE, HDR_CRC);
}

int vxm_hdr_select(const uint8_t *h1, const uint8_t *h2, struct vxm_hdr_pair *p,
		   struct vxm_err *err)
{
	struct vxm_err e[2] = { 0 };

	memset(p, 0, sizeof(*p));
	p->status[0] = vxm_hdr_parse(h1, VXM_HDR_SIZE, VXM_HDR1_OFF, &p->h[0], &e[0]);
	p->status[1] = vxm_hdr_parse(h2, VXM_HDR_SIZE, VXM_HDR2_OFF, &p->h[1], &e[1]);

	if (p->status[0] && p->status[1]) {
		/* Report unsupported over corrupt: the file may be fine, just newer. */
		int i = p->status[1] == -VXM_EUNSUPPORTED ? 1 : 0;
		return vxm_fail(err, p->status[i], e[i].off,
				"no valid header: header 1: %s; header 2: %s", e[0].msg, e[1].msg);
	}
	if (p->status[0] || p->status[1]) {
		int bad = p->status[0] ? 0 : 1;
		/* A copy whose signature and CRC match is valid (fmt §1.3) even
		 * when a field breaks a rule; if it is the current one by its
		 * sequence number, the file is corrupt or newer than us: the
		 * older copy must not be used in its place. */
		if (sig_crc_ok(bad ? h2 : h1) && p->h[bad].seq > p->h[1 - bad].seq)
			return vxm_fail(err, p->status[bad], e[bad].off,
					"%s (header %d is current: sequence number %llu > %llu)",
					e[bad].msg, bad + 1, (unsigned long long)p->h[bad].seq,
					(unsigned long long)p->h[1 - bad].seq);
		/* Both valid, equal sequence numbers, different bytes: as below. */
		if (sig_crc_ok(bad ? h2 : h1) && p->h[bad].seq == p->h[1 - bad].seq)
			return vxm_corrupt(err, VXM_HDR1_OFF,
					   "headers: both valid with sequence number %llu but different contents, no current header (%s)",
					   (unsigned long long)p->h[0].seq, e[bad].msg);
		p->current = 1 - bad;
		return 0;
	}
	if (p->h[0].seq == p->h[1].seq) {
		if (memcmp(h1, h2, VXM_HDR_SIZE) != 0)
			return vxm_corrupt(err, VXM_HDR1_OFF,
					   "headers: both valid with sequence number %llu but different contents, no current header",
					   (unsigned long long)p->h[0].seq);
		p->tie = true;
		p->current = 0;
		return 0;
	}
	p->current = p->h[1].seq > p->h[0].seq ? 1 : 0;
	return 0;
}
