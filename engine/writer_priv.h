/* engine/writer_priv.h: what the files of the write session share (not
 * installed, not part of the API; like every engine symbol these have hidden
 * visibility).
 *
 *   struct vxm_writer   the session; its fields are grouped by the part that
 *                       works on them (log and staging: txn.c, working
 *                       metadata: writer_meta.c, allocation: writer_data.c,
 *                       whose allocation end txn.c also writes into every
 *                       log entry); writer.c sets them all up at begin
 *   vxm_wr_*            the session's primitives every part goes through
 *                       (writer.c), the staging area (txn.c), the reload of
 *                       the image's metadata after a commit (writer_meta.c)
 *
 * The invariants I1..I8 are stated in engine/writer.c; the state diagram in
 * engine/engine.h's writer section.
 */
#ifndef VXM_WRITER_PRIV_H
#define VXM_WRITER_PRIV_H

#include "engine.h"

#define SECT VXM_LOG_SECTOR
#define HASH_CAP (2 * VXM_TXN_MAX_SECTORS) /* power of two */

struct freed {
	uint32_t off, len;
};

struct vxm_writer {
	struct vxm_image *img;
	enum vxm_writer_state state;
	bool data_guid_done;
	int fail_code;
	const char *txn_tag;     /* the transaction being committed (errors) */

	/* log */
	uint64_t seq;            /* sequence number of the last entry written */
	uint32_t log_pos;        /* log-relative offset of the next entry */
	uint32_t entry_cap;      /* data sectors one entry can hold */
	uint8_t *ebuf;           /* log_len bytes: the entry being written */

	/* allocation (fmt §7) */
	uint64_t alloc_end;      /* end of the highest allocation */
	uint64_t durable_size;   /* file size covered by the last data-sync */
	bool data_dirty;         /* payload or size changed since that sync */

	/* staging: images in staging order */
	uint64_t *st_off;
	uint8_t *st_buf;
	unsigned nst, st_cap;
	int32_t *hash;           /* sector number -> staging index, -1 empty */

	/* metadata: the session's working copy of the region and table */
	uint8_t *meta;
	struct vxm_meta_table *mt;
	bool meta_staged;
	struct freed *freed;     /* item space released in the open txn */
	unsigned nfreed, freed_cap;

	uint8_t *slice;          /* one block's bitmap slice */
	struct vxm_writer_stats stats;
};

static inline uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Debug checker, run at each state transition (house style 12). */
static inline __attribute__((unused)) bool writer_check(const struct vxm_writer *w)
{
	const struct vxm_image *img = w->img;

	if (w->state > VXM_WS_FAILED)
		return false;
	if (w->state == VXM_WS_LOGGING && vxm_guid_is_zero(&img->hdr.log_guid))
		return false;
	if ((w->state == VXM_WS_CLEAN || w->state == VXM_WS_DIRTY) &&
	    !vxm_guid_is_zero(&img->hdr.log_guid))
		return false;
	if (w->nst > w->st_cap || w->log_pos >= img->hdr.log_len || w->log_pos % SECT)
		return false;
	return true;
}

/* ---- the session (writer.c) ---------------------------------------------- */

/* Marks the session FAILED, keeping the first failure's code; returns code.
 * Callers fail the session when what is on disk or in the working copy may
 * be half changed; a refusal before any change leaves it usable. */
int vxm_wr_fail(struct vxm_writer *w, int code);
/* 0, or the failure that ended the session (only vxm_writer_end is left). */
int vxm_wr_usable(struct vxm_writer *w, struct vxm_err *err);
/* Writes or flushes through the image's I/O slot; a failure fails the
 * session and names the transaction being committed.  Kill points "write"
 * before a write, tag after a flush. */
int vxm_wr_write(struct vxm_writer *w, const void *buf, uint64_t len, uint64_t off,
		 const char *what, struct vxm_err *err);
int vxm_wr_sync(struct vxm_writer *w, const char *tag, struct vxm_err *err);
/* Header update (fmt §1.3) through vxm_image_write_headers, counted. */
int vxm_wr_headers(struct vxm_writer *w, const struct vxm_hdr *h, const char *tag,
		   struct vxm_err *err);
/* The first change of the session updates the headers (I1); the first
 * visible change (data) also installs a new DataWriteGuid (dwg, or random). */
int vxm_wr_touch(struct vxm_writer *w, bool data, const struct vxm_guid *dwg,
		 struct vxm_err *err);

/* ---- the staging area (txn.c) -------------------------------------------- */

/* Staging index of the 4 KiB sector at off (aligned), -1 when not staged. */
int vxm_wr_st_find(const struct vxm_writer *w, uint64_t off);
/* Index of the staged image of the sector at off (aligned), staging it
 * from the file when absent; -E2BIG past VXM_TXN_MAX_SECTORS. */
int vxm_wr_st_get(struct vxm_writer *w, uint64_t off, int *out, struct vxm_err *err);
/* Empties the staging area (after a commit, and at begin). */
void vxm_wr_st_reset(struct vxm_writer *w);

static inline uint8_t *st_img(const struct vxm_writer *w, int k)
{
	return w->st_buf + (size_t)k * SECT;
}

/* ---- metadata (writer_meta.c) -------------------------------------------- */

/* After a metadata commit: the image adopts the working copy (parsed again,
 * so the image never holds what the reader would refuse). */
int vxm_wr_meta_reload(struct vxm_writer *w, struct vxm_err *err);

#endif
