/* vhdx/log.c: the VHDX log (fmt §6): entry codec, active-sequence search and
 * replay emitted as a list of in-place updates.
 *
 * The log is a circular buffer of 4 KiB sectors.  An entry is descriptor
 * sectors followed by one data sector per "desc" descriptor; it may wrap
 * from the end of the log to its start at any 4 KiB boundary.
 *
 *   sector 0:  hdr(64) desc0 desc1 ... (126 descriptors)
 *   sector k:  128 descriptors each
 *   then:      data sectors, in descriptor order
 *
 *   entry hdr: 0 "loge" 4 crc 8 EntryLength 12 Tail 16 Seq 24 DescCount
 *              28 rsvd 32 LogGuid 48 FlushedFileOffset 56 LastFileOffset
 *   zero desc: 0 "zero" 4 rsvd 8 ZeroLength 16 FileOffset 24 Seq
 *   data desc: 0 "desc" 4 Trailing4 8 Leading8 16 FileOffset 24 Seq
 *   data sect: 0 "data" 4 SeqHigh 8..4092 bytes 4092 SeqLow
 *
 * I1: an entry is valid only with every rule of fmt §6.2 met, including the
 *     LogGuid of the current header (entries of another LogGuid are dead even
 *     with a valid CRC).
 * I2: the active sequence is the valid run with the highest head sequence
 *     number whose head's Tail names one of its own entries; replay applies
 *     from that tail to the head in order.
 * I3: nothing here reads outside log[0..log_len).
 * I4: the active-sequence search parses each entry a bounded number of
 *     times: its cost is linear in the log length.
 * I5: an entry's validity (fmt §6.2) says nothing about where it writes: a
 *     CRC-valid entry may aim at the headers, the log, or 2^64 - 4096.  Its
 *     targets are judged by vxm_log_validate, over the whole active
 *     sequence, before the first update is applied; such an entry makes the
 *     file corrupt instead of being skipped like a torn one.
 */
#include "vhdx.h"
#include "endian.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

enum {
	E_SIG = 0, E_CRC = 4, E_LEN = 8, E_TAIL = 12, E_SEQ = 16, E_NDESC = 24, E_RSVD = 28,
	E_GUID = 32, E_FLUSHED = 48, E_LAST = 56,
	D_SIG = 0, D_TRAIL = 4, D_ZLEN = 8, D_LEAD = 8, D_FOFF = 16, D_SEQ = 24,
	S_SIG = 0, S_HIGH = 4, S_DATA = 8, S_LOW = 4092,
};
_Static_assert(E_LAST + 8 == VXM_LOG_ENTRY_HDR, "entry header is 64 bytes");

#define SIG_LOGE 0x65676F6Cu
#define SIG_ZERO 0x6F72657Au
#define SIG_DESC 0x63736564u
#define SIG_DATA 0x61746164u
#define SECT VXM_LOG_SECTOR

static const uint8_t *sector(const uint8_t *log, uint32_t log_len, uint32_t pos, uint64_t k)
{
	return log + (uint32_t)(((uint64_t)pos + k * SECT) % log_len);
}

/* Descriptor i lives at entry byte 64 + 32 i. */
static const uint8_t *descriptor(const uint8_t *log, uint32_t log_len, uint32_t pos, uint32_t i)
{
	uint64_t b = VXM_LOG_ENTRY_HDR + (uint64_t)VXM_LOG_DESC_SIZE * i;
	return sector(log, log_len, pos, b / SECT) + b % SECT;
}

static uint32_t desc_sectors(uint32_t ndesc)
{
	return (uint32_t)(((uint64_t)ndesc + 2 + 127) / 128);
}

int vxm_log_entry_parse(const uint8_t *log, uint32_t log_len, uint64_t log_off, uint32_t pos,
			const struct vxm_guid *want_guid, struct vxm_log_entry *e,
			struct vxm_err *err)
{
	uint64_t at = log_off + pos;
	unsigned long long a = at;

	if (log_len < SECT || log_len % SECT || pos % SECT || pos >= log_len)
		return vxm_corrupt(err, at, "log entry at 0x%llx: bad position", a);
	const uint8_t *h = log + pos;
	if (vxm_le32(h + E_SIG) != SIG_LOGE)
		return vxm_corrupt(err, at, "log entry at 0x%llx: no \"loge\" signature", a);
	memset(e, 0, sizeof(*e));
	e->pos = pos;
	e->len = vxm_le32(h + E_LEN);
	e->tail = vxm_le32(h + E_TAIL);
	e->seq = vxm_le64(h + E_SEQ);
	e->ndesc = vxm_le32(h + E_NDESC);
	memcpy(e->guid.b, h + E_GUID, 16);
	e->flushed_file_offset = vxm_le64(h + E_FLUSHED);
	e->last_file_offset = vxm_le64(h + E_LAST);
	if (e->len < SECT || e->len % SECT || e->len > log_len)
		return vxm_corrupt(err, at + E_LEN, "log entry at 0x%llx: length %u invalid", a, e->len);
	if (e->tail % SECT || e->tail >= log_len)
		return vxm_corrupt(err, at + E_TAIL, "log entry at 0x%llx: tail 0x%x invalid", a, e->tail);
	if (e->seq == 0)
		return vxm_corrupt(err, at + E_SEQ, "log entry at 0x%llx: sequence number 0", a);
	if (vxm_le32(h + E_RSVD))
		return vxm_corrupt(err, at + E_RSVD, "log entry at 0x%llx: reserved field not zero", a);
	if (want_guid && !vxm_guid_eq(&e->guid, want_guid))
		return vxm_corrupt(err, at + E_GUID,
				   "log entry at 0x%llx: LogGuid differs from the header's (stale entry)", a);
	if (e->flushed_file_offset % VXM_MiB || e->last_file_offset % VXM_MiB)
		return vxm_corrupt(err, at + E_FLUSHED,
				   "log entry at 0x%llx: file offsets not multiples of 1 MiB", a);
	uint32_t nds = desc_sectors(e->ndesc);
	if ((uint64_t)nds * SECT > e->len)
		return vxm_corrupt(err, at + E_NDESC,
				   "log entry at 0x%llx: %u descriptors do not fit in %u bytes", a,
				   e->ndesc, e->len);
	for (uint32_t i = 0; i < e->ndesc; i++) {
		const uint8_t *d = descriptor(log, log_len, pos, i);
		uint32_t sig = vxm_le32(d + D_SIG);
		uint64_t foff = vxm_le64(d + D_FOFF);
		if (sig == SIG_DESC) {
			e->ndata++;
		} else if (sig == SIG_ZERO) {
			uint64_t zl = vxm_le64(d + D_ZLEN);
			if (vxm_le32(d + D_TRAIL) || zl == 0 || zl % SECT)
				return vxm_corrupt(err, at, "log entry at 0x%llx: zero descriptor %u invalid",
						   a, i);
		} else {
			return vxm_corrupt(err, at, "log entry at 0x%llx: descriptor %u has no known signature",
					   a, i);
		}
		if (foff % SECT)
			return vxm_corrupt(err, at,
					   "log entry at 0x%llx: descriptor %u file offset 0x%llx not 4 KiB aligned",
					   a, i, (unsigned long long)foff);
		if (vxm_le64(d + D_SEQ) != e->seq)
			return vxm_corrupt(err, at,
					   "log entry at 0x%llx: descriptor %u sequence number differs", a, i);
	}
	if ((uint64_t)SECT * (nds + (uint64_t)e->ndata) != e->len)
		return vxm_corrupt(err, at + E_LEN,
				   "log entry at 0x%llx: length %u, but %u descriptor and %u data sectors",
				   a, e->len, nds, e->ndata);
	for (uint32_t j = 0; j < e->ndata; j++) {
		const uint8_t *s = sector(log, log_len, pos, nds + (uint64_t)j);
		uint64_t seq = (uint64_t)vxm_le32(s + S_HIGH) << 32 | vxm_le32(s + S_LOW);
		if (vxm_le32(s + S_SIG) != SIG_DATA || seq != e->seq)
			return vxm_corrupt(err, at,
					   "log entry at 0x%llx: data sector %u torn or misplaced", a, j);
	}
	static const uint8_t zero4[4];
	uint32_t crc = vxm_crc32c(0, h, E_CRC);
	crc = vxm_crc32c(crc, zero4, 4);
	crc = vxm_crc32c(crc, h + E_CRC + 4, SECT - E_CRC - 4);
	for (uint64_t k = 1; k < e->len / SECT; k++)
		crc = vxm_crc32c(crc, sector(log, log_len, pos, k), SECT);
	if (crc != vxm_le32(h + E_CRC))
		return vxm_corrupt(err, at + E_CRC,
				   "log entry at 0x%llx: checksum 0x%08x, computed 0x%08x", a,
				   vxm_le32(h + E_CRC), crc);
	return 0;
}

/* Does an entry of seq [start, +count) sit at log offset want? */
static bool seq_has_entry(const uint8_t *log, uint32_t log_len, uint64_t log_off, uint32_t start,
			  uint32_t count, const struct vxm_guid *g, uint32_t want)
{
	struct vxm_log_entry e;
	uint32_t pos = start;

	for (uint32_t i = 0; i < count; i++) {
		if (pos == want)
			return true;
		if (vxm_log_entry_parse(log, log_len, log_off, pos, g, &e, NULL))
			return false;
		pos = (uint32_t)(((uint64_t)pos + e.len) % log_len);
	}
	return false;
}

int vxm_log_find_active(const uint8_t *log, uint32_t log_len, uint64_t log_off,
			const struct vxm_guid *guid, struct vxm_log_seq *out, struct vxm_err *err)
{
	uint32_t cur = 0, old = 0;

	memset(out, 0, sizeof(*out));
	if (log_len < SECT || log_len % SECT)
		return vxm_corrupt(err, log_off, "log at 0x%llx: length %u is not a multiple of 4 KiB",
				   (unsigned long long)log_off, log_len);
	for (;;) {
		struct vxm_log_entry e, last;
		uint32_t pos = cur, count = 0;
		uint64_t span = 0;

		while (span < log_len &&
		       !vxm_log_entry_parse(log, log_len, log_off, pos, guid, &e, NULL) &&
		       (count == 0 || e.seq == last.seq + 1) && span + e.len <= log_len) {
			last = e;
			count++;
			span += e.len;
			pos = (uint32_t)(((uint64_t)pos + e.len) % log_len);
		}
		bool ok = count > 0 && seq_has_entry(log, log_len, log_off, cur, count, guid, last.tail);
		if (ok && (!out->found || last.seq > out->head_seq)) {
			struct vxm_log_entry t;
			uint32_t n = 0, p = last.tail;
			/* Count the entries from the tail to the head. */
			for (;;) {
				if (vxm_log_entry_parse(log, log_len, log_off, p, guid, &t, NULL))
					break;
				n++;
				if (p == last.pos)
					break;
				p = (uint32_t)(((uint64_t)p + t.len) % log_len);
			}
			vxm_log_entry_parse(log, log_len, log_off, last.tail, guid, &t, NULL);
			out->found = true;
			out->tail = last.tail;
			out->head = last.pos;
			out->count = n;
			out->tail_seq = t.seq;
			out->head_seq = last.seq;
			out->flushed_file_offset = last.flushed_file_offset;
			out->last_file_offset = last.last_file_offset;
			out->next = pos;
		}
		/* Go on after the run, active or not: no valid entry starts inside
		 * another (only an entry's first sector says "loge"), and a run
		 * started at a later entry of this one has the same head, so it
		 * cannot be active either.  Moving one sector made the scan
		 * quadratic: a log full of entries whose Tail names nothing
		 * took seconds per 8 MiB. */
		cur = count ? pos : (uint32_t)(((uint64_t)cur + SECT) % log_len);
		if (cur <= old) /* wrapped: one full lap done */
			break;
		old = cur;
	}
	return 0;
}

/* File offset of descriptor i of the entry at pos. */
static uint64_t descriptor_off(uint32_t log_len, uint64_t log_off, uint32_t pos, uint32_t i)
{
	uint64_t b = (uint64_t)pos + VXM_LOG_ENTRY_HDR + (uint64_t)VXM_LOG_DESC_SIZE * i;
	return log_off + b % log_len;
}

/* Why [off, +len) is no place for a logged update (into why), or false. */
static bool bad_target(uint64_t off, uint64_t len, uint64_t log_off, uint32_t log_len,
		       uint64_t file_size, uint64_t last, char *why, size_t cap)
{
	uint64_t bound = file_size > last ? file_size : last;
	uint64_t log_end = log_len > UINT64_MAX - log_off ? UINT64_MAX : log_off + log_len;

	if (len > UINT64_MAX - off)
		snprintf(why, cap, "the range wraps past 2^64");
	else if (off < VXM_RT1_OFF)
		snprintf(why, cap, "inside the file identifier and headers (never logged)");
	/* Region tables are updated through the log (fmt §1.4), nothing
	 * else of the header section is. */
	else if (off < VXM_HEADER_SECTION && off + len > VXM_RT2_OFF + VXM_RT_SIZE)
		snprintf(why, cap,
			 "inside the header section, outside the region tables (the only part ever logged)");
	else if (off < log_end && log_off < off + len)
		snprintf(why, cap, "inside the log [0x%llx,+0x%x) itself",
			 (unsigned long long)log_off, log_len);
	else if (off + len > bound)
		snprintf(why, cap,
			 "past the end of the file (%llu bytes) and of the entry's LastFileOffset (0x%llx)",
			 (unsigned long long)file_size, (unsigned long long)last);
	else
		return false;
	return true;
}

int vxm_log_validate(const uint8_t *log, uint32_t log_len, uint64_t log_off,
		     const struct vxm_log_seq *seq, const struct vxm_guid *guid,
		     const struct vxm_log_limits *lim, struct vxm_log_need *need,
		     struct vxm_err *err)
{
	struct vxm_log_need n = { 0 };
	uint32_t pos;

	if (need)
		*need = n;
	if (!seq->found)
		return 0;
	pos = seq->tail;
	for (uint32_t k = 0; k < seq->count; k++) {
		struct vxm_log_entry e;
		int ret = vxm_log_entry_parse(log, log_len, log_off, pos, guid, &e, err);
		if (ret)
			return ret;
		uint64_t at = log_off + pos;
		unsigned long long sq = e.seq, a = at;
		for (int f = 0; f < 2; f++) {
			uint64_t v = f ? e.flushed_file_offset : e.last_file_offset;
			if (v > lim->max_size)
				return vxm_corrupt(err, at + (f ? E_FLUSHED : E_LAST),
						   "log entry %llu at 0x%llx: %s 0x%llx is implausibly large (more than %llu TiB)",
						   sq, a, f ? "FlushedFileOffset" : "LastFileOffset",
						   (unsigned long long)v,
						   (unsigned long long)(lim->max_size / VXM_TiB));
		}
		for (uint32_t i = 0; i < e.ndesc; i++) {
			const uint8_t *d = descriptor(log, log_len, pos, i);
			uint64_t off = vxm_le64(d + D_FOFF);
			bool zero = vxm_le32(d + D_SIG) == SIG_ZERO;
			uint64_t len = zero ? vxm_le64(d + D_ZLEN) : SECT;
			uint64_t doff = descriptor_off(log_len, log_off, pos, i);
			char why[160];
			if (bad_target(off, len, log_off, log_len, lim->file_size,
				       e.last_file_offset, why, sizeof(why)))
				return vxm_corrupt(err, doff,
						   "log entry %llu at 0x%llx: descriptor %u (%s, at 0x%llx) writes [0x%llx,+0x%llx): %s",
						   sq, a, i, zero ? "zero" : "data",
						   (unsigned long long)doff, (unsigned long long)off,
						   (unsigned long long)len, why);
			if (off + len > n.end)
				n = (struct vxm_log_need){ off + len, e.seq, at, (int)i, doff };
		}
		/* Replay grows the file to the head's LastFileOffset (fmt §6.4). */
		if (k + 1 == seq->count && e.last_file_offset > n.end)
			n = (struct vxm_log_need){ e.last_file_offset, e.seq, at, -1, at + E_LAST };
		pos = (uint32_t)(((uint64_t)pos + e.len) % log_len);
	}
	if (need)
		*need = n;
	return 0;
}

int vxm_log_replay(const uint8_t *log, uint32_t log_len, uint64_t log_off,
		   const struct vxm_log_seq *seq, const struct vxm_guid *guid,
		   vxm_log_apply_fn apply, void *ctx, struct vxm_err *err)
{
	uint8_t buf[SECT];
	uint32_t pos;
	int ret;

	if (!seq->found)
		return 0;
	pos = seq->tail;
	for (uint32_t n = 0; n < seq->count; n++) {
		struct vxm_log_entry e;
		ret = vxm_log_entry_parse(log, log_len, log_off, pos, guid, &e, err);
		if (ret)
			return ret;
		uint32_t nds = desc_sectors(e.ndesc), data = 0;
		for (uint32_t i = 0; i < e.ndesc; i++) {
			const uint8_t *d = descriptor(log, log_len, pos, i);
			uint64_t foff = vxm_le64(d + D_FOFF);
			if (vxm_le32(d + D_SIG) == SIG_ZERO) {
				ret = apply(ctx, foff, NULL, vxm_le64(d + D_ZLEN));
			} else {
				const uint8_t *s = sector(log, log_len, pos, nds + (uint64_t)data++);
				memcpy(buf, d + D_LEAD, 8);
				memcpy(buf + 8, s + S_DATA, S_LOW - S_DATA);
				memcpy(buf + S_LOW, d + D_TRAIL, 4);
				ret = apply(ctx, foff, buf, SECT);
			}
			if (ret)
				return ret;
		}
		pos = (uint32_t)(((uint64_t)pos + e.len) % log_len);
	}
	return 0;
}

uint32_t vxm_log_entry_size(const struct vxm_log_update *u, unsigned n)
{
	uint32_t data = 0;
	for (unsigned i = 0; i < n; i++)
		data += u[i].data != NULL;
	return SECT * (desc_sectors(n) + data);
}

int vxm_log_entry_encode(struct vxm_log_entry *e, const struct vxm_log_update *u, unsigned n,
			 uint8_t *out, size_t cap, struct vxm_err *err)
{
	uint32_t len = vxm_log_entry_size(u, n), nds = desc_sectors(n), data = 0;

	if (cap < len)
		return vxm_fail(err, -ENOSPC, VXM_OFF_NONE, "log entry: %u bytes needed, %zu given",
				len, cap);
	memset(out, 0, len);
	e->len = len;
	e->ndesc = n;
	vxm_put_le32(out + E_SIG, SIG_LOGE);
	vxm_put_le32(out + E_LEN, len);
	vxm_put_le32(out + E_TAIL, e->tail);
	vxm_put_le64(out + E_SEQ, e->seq);
	vxm_put_le32(out + E_NDESC, n);
	memcpy(out + E_GUID, e->guid.b, 16);
	vxm_put_le64(out + E_FLUSHED, e->flushed_file_offset);
	vxm_put_le64(out + E_LAST, e->last_file_offset);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *d = out + VXM_LOG_ENTRY_HDR + (size_t)VXM_LOG_DESC_SIZE * i;
		if (u[i].file_off % SECT)
			return vxm_fail(err, -EINVAL, u[i].file_off,
					"log entry: update %u offset not 4 KiB aligned", i);
		vxm_put_le64(d + D_FOFF, u[i].file_off);
		vxm_put_le64(d + D_SEQ, e->seq);
		if (!u[i].data) {
			if (!u[i].len || u[i].len % SECT)
				return vxm_fail(err, -EINVAL, u[i].file_off,
						"log entry: zero update %u length not a 4 KiB multiple", i);
			vxm_put_le32(d + D_SIG, SIG_ZERO);
			vxm_put_le64(d + D_ZLEN, u[i].len);
			continue;
		}
		uint8_t *s = out + (size_t)SECT * (nds + data++);
		vxm_put_le32(d + D_SIG, SIG_DESC);
		memcpy(d + D_TRAIL, u[i].data + S_LOW, 4);
		memcpy(d + D_LEAD, u[i].data, 8);
		vxm_put_le32(s + S_SIG, SIG_DATA);
		vxm_put_le32(s + S_HIGH, (uint32_t)(e->seq >> 32));
		memcpy(s + S_DATA, u[i].data + S_DATA, S_LOW - S_DATA);
		vxm_put_le32(s + S_LOW, (uint32_t)e->seq);
	}
	e->ndata = data;
	vxm_put_le32(out + E_CRC, vxm_crc32c_skip(out, len, E_CRC));
	return 0;
}
