/* engine/engine.h: the engine's internal module header.
 *
 * engine/ joins the codec (vhdx/) and the I/O layer (io/): it opens VHDX
 * files, replays their logs, reads through chains, plans and runs merges.
 * The public face is include/vhdxmerge.h; this header holds the structures
 * the engine's own files and tests share.
 *
 * Image lifecycle
 *   vxm_image_open()  OPEN -> (dirty log: replay into overlay, or in place
 *                     when writable) -> READY
 *   vxm_image_close() READY -> closed
 *
 * I1: every read of metadata, BAT or bitmap bytes goes through image_pread(),
 *     which applies the replayed-log overlay of a read-only open, so a dirty
 *     file reads as its replayed state and is never written.
 * I2: the whole BAT is never held in memory: it is read in windows
 *     (VXM_BAT_WINDOW entries), so memory does not grow with disk size.
 * I3: a BAT entry is validated (vxm_bat_check_entry) before it is used.
 */
#ifndef VXM_ENGINE_H
#define VXM_ENGINE_H

#include "vhdxmerge.h"
#include "vhdx/vhdx.h"
#include "io/io.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VXM_BAT_WINDOW 8192u        /* entries per cached BAT window (64 KiB) */
#define VXM_MAX_META_REGION (256u * 1024 * 1024)
#define VXM_MAX_LOG_LEN (256u * 1024 * 1024)

/* One update replayed from the log into memory (read-only opens). */
struct vxm_overlay_upd {
	uint64_t off, len;
	uint8_t *data; /* len bytes; NULL = zeros */
};

struct vxm_note {
	int severity; /* 0 note, 1 problem */
	uint64_t off;
	char msg[384];
};

struct vxm_image {
	struct vxm_io *io;
	bool own_io;
	int slot;
	char *path;
	unsigned flags;          /* enum vxm_image_flags */
	uint64_t file_size;
	char creator[VXM_CREATOR_MAX * 3];

	uint8_t hdr_raw[2][VXM_HDR_SIZE];
	struct vxm_hdr_pair hp;
	struct vxm_hdr hdr;      /* the current header */

	struct vxm_region_table *rt;  /* the copy in use */
	int rt_used;                  /* 0 or 1 */
	int rt_status[2];
	bool rt_differ;               /* both valid, different bytes */
	struct vxm_region bat_region, meta_region;

	uint8_t *meta;                /* the whole metadata region (after replay) */
	struct vxm_meta_table *mt;
	struct vxm_meta m;
	struct vxm_locator *loc;      /* differencing files */
	const uint8_t *loc_item;      /* points into meta */
	uint32_t loc_len;
	struct vxm_geom g;

	/* log */
	bool log_dirty;               /* LogGuid non-zero at open */
	bool log_replayed;            /* in memory (read-only) or in place */
	struct vxm_log_seq logseq;
	uint32_t log_entries;         /* entries in the active sequence */
	struct vxm_overlay_upd *ov;
	unsigned nov, ov_cap;

	/* BAT window cache (I2) */
	uint64_t *batw;
	uint64_t batw_first;          /* index of batw[0]; UINT64_MAX = empty */
	uint64_t batw_n;

	/* sector-bitmap slice cache: the slice of one block */
	uint8_t *sbw;
	uint64_t sbw_block;           /* UINT64_MAX = empty */

	struct vxm_note *notes;
	unsigned nnotes, notes_cap;
	unsigned nproblems;
};

/* Reads raw file bytes, applying the replay overlay (I1).  Bytes past end of
 * file read as zeros.  0 or -errno. */
int vxm_image_pread(struct vxm_image *img, void *buf, uint64_t len, uint64_t off,
		    struct vxm_err *err);

/* BAT entry idx (validated, I3). */
int vxm_image_bat_get(struct vxm_image *img, uint64_t idx, uint64_t *entry, struct vxm_err *err);
/* Raw entries [first, first+n) (not validated) into out. */
int vxm_image_bat_read(struct vxm_image *img, uint64_t first, uint64_t n, uint64_t *out,
		       struct vxm_err *err);
/* Drops cached BAT and bitmap windows (after the writer changes them). */
void vxm_image_invalidate(struct vxm_image *img);

/* What one layer says about a run of sectors (fmt §5.3, §8.1). */
enum vxm_run_kind {
	VXM_RUN_PARENT = 0, /* transparent: the parent defines it */
	VXM_RUN_DATA,       /* stored in this file at run.file_off */
	VXM_RUN_ZERO,       /* reads zeros */
};

struct vxm_run {
	enum vxm_run_kind kind;
	uint64_t nsec;      /* sectors in the run (>= 1) */
	uint64_t file_off;  /* DATA: file offset of the first sector */
	unsigned state;     /* payload state of the block */
};

/* Describes sectors [sector, sector + n) of the virtual disk in this layer,
 * from sector on, as the longest uniform run that stays inside one block
 * and does not exceed max sectors.  A file without parent never answers
 * PARENT.  UNDEFINED/UNMAPPED read as zeros in every file type [fmt P6]. */
int vxm_image_lookup(struct vxm_image *img, uint64_t sector, uint64_t max, struct vxm_run *run,
		     struct vxm_err *err);

/* Header update procedure (fmt §1.3): writes h (seq assigned here, one
 * past the current) into the non-current slot, flushes with tag, and again
 * into the other slot, so both copies end up current and identical. */
int vxm_image_write_headers(struct vxm_image *img, const struct vxm_hdr *h, const char *tag,
			    struct vxm_err *err);

/* Notes gathered while opening and checking. */
void vxm_image_note(struct vxm_image *img, int severity, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
