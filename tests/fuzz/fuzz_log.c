/* tests/fuzz/fuzz_log.c: libFuzzer target for the log codec (vhdx/log.c):
 * vxm_log_entry_parse at every sector, vxm_log_find_active,
 * vxm_log_validate and vxm_log_replay over arbitrary log bytes, then an
 * encode/parse/replay round trip of the updates the replay produced.  The
 * file is taken to end where the log does: every update of a sequence
 * vxm_log_validate accepts must lie inside what it promises.
 *
 * Input format (sparse, like fuzz_open: a real 1 MiB log is mostly zeros):
 *   off 0   u8      flags: bit 0 recompute the CRC of every "loge" entry at a
 *                   4 KiB boundary (fuzz_common.h); bits 4..7 choose where
 *                   the round-trip entry is placed (so that it wraps)
 *   off 1   16      the LogGuid of the header (the one entries must carry)
 *   off 17  u32 LE  log length: modulo FZ_MAX_LOG + 1, rounded up to 4 KiB,
 *                   at least 4 KiB
 *   off 21  chunks (fz_chunks): u32 LE log-relative offset, u16 LE length,
 *                   bytes; the log starts all zero.  The log sits at file
 *                   offset 1 MiB.
 */
#include "fuzz_common.h"

#define FZ_MAX_LOG (1u << 20)
#define FZ_KEEP 8 /* updates kept for the round trip */

struct upd {
	uint64_t off, len;
	bool zero;
	uint8_t data[VXM_LOG_SECTOR];
};

struct collect {
	unsigned n, kept;
	struct upd u[FZ_KEEP];
	bool check; /* compare with u[] instead of collecting */
	uint32_t log_len;
	bool validated;    /* vxm_log_validate accepted the sequence... */
	uint64_t need_end; /* ...and said every update ends by here */
};

static int apply(void *vctx, uint64_t off, const uint8_t *data, uint64_t len)
{
	struct collect *c = vctx;

	FZ_ASSERT(off % VXM_LOG_SECTOR == 0);
	FZ_ASSERT(len && len % VXM_LOG_SECTOR == 0);
	FZ_ASSERT(!data || len == VXM_LOG_SECTOR);
	if (c->validated && !c->check) {
		FZ_ASSERT(len <= UINT64_MAX - off && off + len <= c->need_end);
		FZ_ASSERT(off >= VXM_RT1_OFF);
		FZ_ASSERT(off >= VXM_HEADER_SECTION || off + len <= VXM_RT2_OFF + VXM_RT_SIZE);
		FZ_ASSERT(off + len <= VXM_MiB || off >= VXM_MiB + c->log_len);
	}
	if (c->check) {
		FZ_ASSERT(c->n < c->kept);
		const struct upd *u = &c->u[c->n];
		FZ_ASSERT(u->off == off && u->len == len && u->zero == !data);
		FZ_ASSERT(!data || memcmp(u->data, data, VXM_LOG_SECTOR) == 0);
	} else if (c->kept < FZ_KEEP) {
		struct upd *u = &c->u[c->kept++];
		u->off = off;
		u->len = len;
		u->zero = !data;
		if (data)
			memcpy(u->data, data, VXM_LOG_SECTOR);
	}
	c->n++;
	return 0;
}

/* Encodes the kept updates as one entry, places it at sector `at` of a log
 * exactly as long as the entry (so it wraps when at > 0), and checks that the
 * codec finds it, alone, and replays the same updates. */
static void round_trip(struct collect *c, const struct vxm_guid *guid, uint64_t seq, unsigned at)
{
	struct vxm_log_update u[FZ_KEEP];
	static uint8_t entry[(FZ_KEEP + 1) * VXM_LOG_SECTOR], log[sizeof(entry)];

	for (unsigned i = 0; i < c->kept; i++) {
		u[i].file_off = c->u[i].off;
		u[i].len = c->u[i].len;
		u[i].data = c->u[i].zero ? NULL : c->u[i].data;
	}
	uint32_t len = vxm_log_entry_size(u, c->kept);
	FZ_ASSERT(len >= VXM_LOG_SECTOR && len <= sizeof(entry));
	uint32_t nsect = len / VXM_LOG_SECTOR, pos = (at % nsect) * VXM_LOG_SECTOR;
	struct vxm_log_entry e = { .tail = pos, .seq = seq ? seq : 1, .guid = *guid,
				   .flushed_file_offset = VXM_MiB, .last_file_offset = 2 * VXM_MiB };
	FZ_ASSERT(vxm_log_entry_encode(&e, u, c->kept, entry, sizeof(entry), NULL) == 0);
	FZ_ASSERT(e.len == len && e.ndesc == c->kept);
	for (uint32_t k = 0; k < nsect; k++)
		memcpy(log + ((pos / VXM_LOG_SECTOR + k) % nsect) * VXM_LOG_SECTOR,
		       entry + k * VXM_LOG_SECTOR, VXM_LOG_SECTOR);

	struct vxm_log_entry back;
	FZ_ASSERT(vxm_log_entry_parse(log, len, VXM_MiB, pos, guid, &back, NULL) == 0);
	FZ_ASSERT(back.len == len && back.seq == e.seq && back.ndesc == c->kept &&
		  back.tail == pos);
	struct vxm_log_seq s;
	FZ_ASSERT(vxm_log_find_active(log, len, VXM_MiB, guid, &s, NULL) == 0);
	FZ_ASSERT(s.found && s.count == 1 && s.head == pos && s.tail == pos && s.head_seq == e.seq);
	struct collect chk = *c;
	chk.n = 0;
	chk.check = true;
	FZ_ASSERT(vxm_log_replay(log, len, VXM_MiB, &s, guid, apply, &chk, NULL) == 0);
	FZ_ASSERT(chk.n == c->kept);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static uint8_t *pool;
	struct vxm_guid guid;

	if (n < 21)
		return 0;
	unsigned flags = data[0];
	memcpy(guid.b, data + 1, 16);
	uint32_t len = fz_u32(data, n, 17) % (FZ_MAX_LOG + 1);
	len = (len + VXM_LOG_SECTOR - 1) / VXM_LOG_SECTOR * VXM_LOG_SECTOR;
	if (!len)
		len = VXM_LOG_SECTOR;
	/* The log ends where the pool does: reads past it hit ASan's redzone. */
	if (!pool && !(pool = malloc(FZ_MAX_LOG)))
		abort();
	uint8_t *log = pool + FZ_MAX_LOG - len;
	FZ_UNPOISON(pool, FZ_MAX_LOG);
	FZ_POISON(pool, FZ_MAX_LOG - len);
	memset(log, 0, len);
	fz_chunks(data, n, 21, log, len, NULL);
	if (flags & 1)
		fz_fix_log(log, len);

	uint32_t valid = 0;
	for (uint32_t pos = 0; pos < len; pos += VXM_LOG_SECTOR) {
		struct vxm_log_entry e;
		struct vxm_err err = { 0 };
		if (vxm_log_entry_parse(log, len, VXM_MiB, pos, NULL, &e, &err) == 0) {
			FZ_ASSERT(e.pos == pos && e.len >= VXM_LOG_SECTOR && e.len <= len &&
				  e.len % VXM_LOG_SECTOR == 0 && e.ndata <= e.ndesc && e.tail < len);
			valid++;
			if (vxm_log_entry_parse(log, len, VXM_MiB, pos, &guid, &e, NULL) == 0)
				FZ_ASSERT(vxm_guid_eq(&e.guid, &guid));
		} else {
			FZ_ASSERT(err.code == -VXM_ECORRUPT && err.off >= VXM_MiB + pos);
		}
	}

	struct vxm_log_seq s;
	FZ_ASSERT(vxm_log_find_active(log, len, VXM_MiB, &guid, &s, NULL) == 0);
	if (!s.found)
		return 0;
	FZ_ASSERT(valid > 0);
	FZ_ASSERT(s.count >= 1 && s.count <= len / VXM_LOG_SECTOR);
	FZ_ASSERT(s.tail < len && s.head < len && s.next < len);
	FZ_ASSERT(s.head_seq >= s.tail_seq && s.head_seq - s.tail_seq == s.count - 1);
	struct vxm_log_entry head;
	FZ_ASSERT(vxm_log_entry_parse(log, len, VXM_MiB, s.head, &guid, &head, NULL) == 0);
	FZ_ASSERT(head.seq == s.head_seq);

	struct collect c = { .log_len = len };
	struct vxm_err err = { 0 };
	struct vxm_log_limits lim = { .file_size = VXM_MiB + len,
				      .max_size = VXM_MAX_VIRTUAL_SIZE * 2 };
	struct vxm_log_need need;
	int v = vxm_log_validate(log, len, VXM_MiB, &s, &guid, &lim, &need, &err);
	if (v) {
		FZ_ASSERT(v == -VXM_ECORRUPT && err.code == v && strstr(err.msg, "log entry ") &&
			  err.off >= VXM_MiB && err.off < VXM_MiB + len);
		memset(&err, 0, sizeof(err));
	} else {
		/* no update past the file and every entry's LastFileOffset */
		uint64_t bound = lim.file_size;
		for (uint32_t i = 0, pos = s.tail; i < s.count; i++) {
			struct vxm_log_entry e;
			FZ_ASSERT(vxm_log_entry_parse(log, len, VXM_MiB, pos, &guid, &e, NULL) == 0);
			if (e.last_file_offset > bound)
				bound = e.last_file_offset;
			pos = (uint32_t)(((uint64_t)pos + e.len) % len);
		}
		FZ_ASSERT(need.end >= head.last_file_offset && need.end <= bound &&
			  need.end <= lim.max_size);
		c.validated = true;
		c.need_end = need.end;
	}
	FZ_ASSERT(vxm_log_replay(log, len, VXM_MiB, &s, &guid, apply, &c, &err) == 0);
	if (c.kept)
		round_trip(&c, &guid, s.head_seq + 1, flags >> 4);
	return 0;
}
