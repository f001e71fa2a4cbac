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

#include <stdio.h>
#include <sys/types.h>

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

	uint8_t *meta;                /* the metadata region (after replay): bytes
				       * [0, meta_read) read, the table and every
				       * item among them; the rest zero until
				       * vxm_image_meta_load */
	uint32_t meta_read;
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

	/* the sector-bitmap BAT entry of one chunk: it sits after the chunk's
	 * payload entries, outside the window of most lookups that need it */
	uint64_t sbe_chunk;           /* UINT64_MAX = empty */
	uint64_t sbe_entry;

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

/* Reads the rest of the metadata region into img->meta (an open reads the
 * table and the items only). */
int vxm_image_meta_load(struct vxm_image *img, struct vxm_err *err);
/* BAT entry idx (validated, I3). */
int vxm_image_bat_get(struct vxm_image *img, uint64_t idx, uint64_t *entry, struct vxm_err *err);
/* Raw entries [first, first+n) (not validated) into out. */
int vxm_image_bat_read(struct vxm_image *img, uint64_t first, uint64_t n, uint64_t *out,
		       struct vxm_err *err);
/* Calls fn(ctx, idx, entry) for every BAT entry in order, reading the BAT
 * in windows (I2); stops at the first non-zero return. */
int vxm_image_bat_scan(struct vxm_image *img,
		       int (*fn)(void *ctx, uint64_t idx, uint64_t entry), void *ctx,
		       struct vxm_err *err);
/* End of the highest object the file references: log, regions, and every
 * block or bitmap a BAT entry points at (UNDEFINED/UNMAPPED offsets too). */
int vxm_image_alloc_end(struct vxm_image *img, uint64_t *end, struct vxm_err *err);
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

/* The structural rules (engine/validate.c) `check` reports and every
 * operation enforces before its first write: BAT entries, bitmap presence,
 * overlaps between any two objects of the file, and the open's own notes.
 * Returns the number of problems (noted on img), or -errno. */
int vxm_image_validate(struct vxm_image *img, struct vxm_err *err);
/* Preflight: 0 when img breaks no rule, else -VXM_ECORRUPT naming the
 * file, its role in the operation, the first problem and its offset. */
int vxm_image_require_valid(struct vxm_image *img, const char *role, struct vxm_err *err);

/* Notes gathered while opening and checking. */
void vxm_image_note(struct vxm_image *img, int severity, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ==== planner (engine/plan.c) ================================================
 *
 * vxm_plan (include/vhdxmerge.h) as an iterator: the executor takes the
 * extents one by one, in destination order, so the data path reads top to
 * bottom (ex_run).  vxm_plan_next returns 1 with the next extent, 0 at the
 * end (it->st then complete), or an error.  Without `account` the
 * destination's accounting (new blocks, bitmaps, growth) is skipped: the
 * preflight's pass has it already. */
struct vxm_plan_dest {
	bool on;
	const struct vxm_image *d;   /* NULL for a new file */
	uint64_t spb;                /* sectors per destination block */
	uint64_t block;              /* current block, UINT64_MAX none */
	uint64_t resolved, zeros;    /* sectors of the current block */
	uint64_t block_sectors;      /* sectors of the current block */
	uint64_t chunk;              /* chunk of the last bitmap counted */
	bool new_fixed;
};

struct vxm_plan_iter {
	struct vxm_chain *c;
	int top, dest;
	unsigned floor;              /* lowest layer that defines (dest + 1, or 0) */
	uint32_t lss;
	uint64_t total, d_end;       /* sectors: of the top, of D */
	uint64_t s;                  /* next sector to resolve */
	bool have, finished;
	struct vxm_extent e;         /* the extent being coalesced */
	struct vxm_plan_dest t;
	struct vxm_plan_stats st;
};

int vxm_plan_begin(struct vxm_plan_iter *it, struct vxm_chain *c, const struct vxm_plan_opts *o,
		   bool account, struct vxm_err *err);
int vxm_plan_next(struct vxm_plan_iter *it, struct vxm_extent *e, struct vxm_err *err);

/* ==== writer (engine/writer*.c, engine/txn.c) ================================
 *
 * engine/writer.c       the session: begin, end, states, header updates
 * engine/txn.c          staging, BAT and bitmap updates, log entries, commit
 * engine/writer_meta.c  metadata items, the locator, IsVirtualDisk items
 * engine/writer_data.c  allocation, writes and zeroes (block states)
 * engine/writer_priv.h  struct vxm_writer and what those files share
 *
 * Session states (enum vxm_writer_state), each transition checked by
 * writer_check():
 *
 *   vxm_writer_begin -> CLEAN --first change--> DIRTY --first entry--> LOGGING
 *        (nothing written)   (new FileWriteGuid)       (init entry, new LogGuid)
 *   DIRTY/LOGGING --vxm_writer_end--> (LogGuid 0, freed)
 *   any I/O failure --> FAILED: only vxm_writer_end is accepted; it flushes
 *        nothing and keeps the LogGuid so a later writable open replays.
 *
 * Transactions: vxm_txn_* stage whole 4 KiB sector images (BAT, sector
 * bitmap and metadata sectors, read from the file or the staged copy and
 * patched); vxm_txn_commit writes them as log entries.  A transaction that
 * fits one entry (vxm_txn_room() > 0 before each staging) is atomic; a
 * larger one is split into several entries in staging order, each atomic.
 * The high-level vxm_writer_write/zero commit on their own so that the
 * updates of one block (BAT entry, SB entry, bitmap bits) share an entry.
 * Payload written through the session is referenced by staged entries only
 * after the commit's "data-sync".
 */

enum vxm_writer_state {
	VXM_WS_CLEAN = 0, /* nothing written in this session */
	VXM_WS_DIRTY,     /* headers updated (new FileWriteGuid) */
	VXM_WS_LOGGING,   /* a LogGuid is set; entries may be live */
	VXM_WS_FAILED,
};

/* Sync tags (durability points) of a session, also kill-point names. */
#define VXM_TAG_SESSION_BEGIN "session-begin" /* header: new FileWriteGuid */
#define VXM_TAG_DATA_GUID "data-guid"         /* header: new DataWriteGuid */
#define VXM_TAG_LOG_INIT "log-init"           /* init entry, before the LogGuid */
#define VXM_TAG_LOG_GUID "log-guid"           /* header: new LogGuid */
#define VXM_TAG_DATA_SYNC "data-sync"         /* payload and file extension */
#define VXM_TAG_LOG_COMMIT "log-commit"       /* log entry durable: commit point */
#define VXM_TAG_LOG_APPLY "log-apply"         /* entry applied in place: retired */
#define VXM_TAG_SESSION_END "session-end"     /* header: LogGuid 0 */

/* Most 4 KiB updates staged at once (a commit splits them into entries). */
#define VXM_TXN_MAX_SECTORS 4096u

/* Sector images a new entry can still take before the log would need a
 * second one (0: commit first to stay atomic). */
unsigned vxm_txn_room(const struct vxm_writer *w);
/* Stages bytes [file_off, file_off+len) of a metadata structure (the BAT
 * region, the metadata region or a present sector-bitmap block; nothing
 * else may be logged here).  -EINVAL for other targets, -E2BIG when
 * VXM_TXN_MAX_SECTORS would be exceeded. */
int vxm_txn_patch(struct vxm_writer *w, uint64_t file_off, const void *bytes, uint32_t len,
		  struct vxm_err *err);
/* Stages BAT entry idx (validated: state legal for the file type, offset
 * rules of fmt P13). */
int vxm_txn_set_bat(struct vxm_writer *w, uint64_t idx, uint64_t entry, struct vxm_err *err);
/* Current BAT entry idx as the session sees it (staged value first). */
int vxm_txn_get_bat(struct vxm_writer *w, uint64_t idx, uint64_t *entry, struct vxm_err *err);
/* Sets (value true) or clears the sector-bitmap bits of virtual sectors
 * [sector, sector+n); their chunks must have a present SB block (staged or
 * on disk).  Differencing files only. */
int vxm_txn_set_bits(struct vxm_writer *w, uint64_t sector, uint64_t n, bool value,
		     struct vxm_err *err);
/* Adds or replaces metadata item (id, flags & IsUser) with len bytes of
 * data: placed in free space of the metadata region (never over the old
 * copy) and its table entry updated, staged together.  -ENOSPC when the
 * region has no room. */
int vxm_txn_set_meta(struct vxm_writer *w, const struct vxm_guid *id, uint32_t flags,
		     const void *data, uint32_t len, struct vxm_err *err);
/* Removes item (id, is_user) from the table (0 when absent). */
int vxm_txn_del_meta(struct vxm_writer *w, const struct vxm_guid *id, bool is_user,
		     struct vxm_err *err);
/* Commits what is staged: data-sync (when payload or size changed), one
 * entry per vxm_txn_room()-sized group with log-commit, log-apply.  tag
 * names the transaction in errors.  No-op when nothing is staged. */
int vxm_txn_commit(struct vxm_writer *w, const char *tag, struct vxm_err *err);

/* Whether a session's first metadata change, an item of len bytes, would
 * find room in img's metadata region (the writer places it in a gap and
 * keeps the item it replaces until the change commits): 0 or -ENOSPC. */
int vxm_image_meta_room(const struct vxm_image *img, uint32_t len);
/* Whether the writer can give img the virtual size vsize (the merge's
 * IsVirtualDisk items): never smaller, and a growth only where the BAT
 * region holds the new entries and, for a fixed file, no block is added.
 * 0, or -VXM_EUNSUPPORTED naming the file and the structure. */
int vxm_image_resize_check(const struct vxm_image *img, uint64_t vsize, struct vxm_err *err);

/* Allocates len bytes (rounded up to 1 MiB) at round_up(max(EOF, highest
 * allocation), 1 MiB) and extends the file first (fmt §7); the space reads
 * zeros and is never handed out twice in a session.  *off receives it. */
int vxm_writer_alloc(struct vxm_writer *w, uint64_t len, uint64_t *off, struct vxm_err *err);
/* Reserves [off, off+len) (off 1 MiB aligned) for a caller that places its
 * allocations itself (a resumable merge allocates at fixed offsets so a
 * resumed run ends byte-identical): extends the file when it ends before,
 * and keeps later vxm_writer_alloc calls past it. */
int vxm_writer_reserve(struct vxm_writer *w, uint64_t off, uint64_t len, struct vxm_err *err);
/* Marks payload written by the caller (not through vxm_writer_write) as
 * needing the next data-sync. */
void vxm_writer_data_written(struct vxm_writer *w);
/* Rewrites the parent locator through the log: the new item goes to free
 * metadata space and its table entry changes in the same entry.  Changes the
 * FileWriteGuid only (fmt §1.3 [INFER]). */
int vxm_writer_set_locator(struct vxm_writer *w, const struct vxm_kv *kv, unsigned n,
			   struct vxm_err *err);
/* Replaces every IsVirtualDisk item with src's (fmt §8.3), with a new
 * DataWriteGuid.  The logical sector size must match (-VXM_ECHAIN); a
 * larger virtual size must fit the BAT region and not need new fixed
 * blocks (else -VXM_EUNSUPPORTED); shrinking is refused. */
int vxm_writer_set_vd_items(struct vxm_writer *w, struct vxm_image *src, struct vxm_err *err);
enum vxm_writer_state vxm_writer_state(const struct vxm_writer *w);

/* ==== kill points (engine/killpoint.c) =======================================
 * vxm_killpoint(name) marks a point a crash test may cut the process at:
 * each sync tag above after its flush, "write" before every write of the
 * writer and of create, "extend" before every file extension, "create-data"
 * and "create-header" in create.  It calls vxm_test_killpoint_hook, which
 * only test programs set (tests/hooks/engine_hooks.c: VXM_KILL_AT=name:N
 * makes the process _exit(137) the N-th time point name runs); in the
 * library and the vhdxmerge program it is NULL and a point does nothing. */
void vxm_killpoint(const char *name);
extern void (*vxm_test_killpoint_hook)(const char *name);
/* Test programs only (tests/hooks/engine_hooks.c): replaces the armed
 * specification (NULL: disarm) and resets the counts; times an armed point
 * was reached since arming. */
void vxm_killpoint_arm(const char *spec);
unsigned long vxm_killpoint_count(const char *name);
/* Tests: the bytes between a copy's commits (merge.c COMMIT_BYTES) when it
 * returns non-zero, so that a small chain commits many times; NULL outside
 * test programs (tests/hooks/engine_hooks.c: VXM_COMMIT_BYTES). */
extern uint64_t (*vxm_test_commit_bytes_hook)(void);

/* ---- chains (engine/chain.c) ------------------------------------------------ */

struct vxm_chain_layer {
	struct vxm_image *img;
	char *via;       /* how this layer was found from its child; "top" for the top */
	int linked_by;   /* how the layer above links here: 1 parent_linkage, 2 parent_linkage2 */
	dev_t dev;
	ino_t ino;
};

struct vxm_chain {
	struct vxm_io *io;
	bool own_io;
	bool borrowed;              /* vxm_chain_from_images: images not owned */
	unsigned n;
	struct vxm_chain_layer *layer; /* [0] = base ... [n-1] = top */
	uint32_t lss;
	uint64_t virtual_size;      /* of the top layer */
};

/* One resolved run: sectors [s, s+nsec) are defined by layer `layer` (DATA
 * at file_off, or ZERO), or by no layer at or below top (layer -1, kind
 * PARENT: only when the chain does not reach a base). */
struct vxm_resolved {
	int layer;
	enum vxm_run_kind kind;
	uint64_t nsec;
	uint64_t file_off;
};

/* Walks from layer `top` down to layer `floor` (I3 of chain.c) for the run
 * starting at sector, at most max sectors long, uniform in every layer it
 * passed.  Layer -1 / PARENT: no layer in [floor, top] defines it. */
int vxm_chain_resolve(struct vxm_chain *c, unsigned top, unsigned floor, uint64_t sector,
		      uint64_t max, struct vxm_resolved *r, struct vxm_err *err);
/* A chain over images the caller keeps (base first); for tests and fuzzing.
 * Release with vxm_chain_release (which closes nothing). */
int vxm_chain_from_images(struct vxm_chain **out, struct vxm_image **imgs, unsigned n,
			  struct vxm_err *err);
void vxm_chain_release(struct vxm_chain *c);

/* ---- merge journal (engine/journal.c) --------------------------------------- */

#define VXM_JOURNAL_MAX (VXM_CHAIN_MAX_DEPTH + 8)

enum vxm_jphase {
	VXM_JPHASE_PLANNED = 0, /* recorded; nothing changed yet */
	VXM_JPHASE_LINKED,      /* C1 accepts D's new DataWriteGuid (parent_linkage2) */
	VXM_JPHASE_COPYING,     /* D carries the new DataWriteGuid; data up to cursor durable */
	VXM_JPHASE_COPIED,      /* D complete, log clear, headers final */
	VXM_JPHASE_REPOINTED,   /* every child re-pointed at D and final */
	VXM_JPHASE_CLEANUP,     /* merged files being removed */
};

struct vxm_journal {
	bool convert;
	enum vxm_jphase phase;
	uint64_t seed;            /* GUID seed: a resumed run draws the same GUIDs */
	char *top, *dest, *out;   /* absolute paths; out: convert's final name */
	int out_format;
	int dest_index;           /* layer index of D, -1 for a new file */
	struct vxm_guid dest_orig_dwg, dest_new_dwg;
	uint64_t dest_orig_seq;
	uint64_t alloc_base;      /* first byte the merge allocates in D */
	uint64_t cursor;          /* virtual bytes [0, cursor) are durable in D */
	uint64_t alloc_next;      /* allocation point at the cursor */
	int keep_merged;
	unsigned nlayers;         /* merged layers, base side first */
	struct vxm_guid layer_dwg[VXM_JOURNAL_MAX];
	uint64_t layer_seq[VXM_JOURNAL_MAX];
	char *layer_path[VXM_JOURNAL_MAX]; /* as the chain found it: a symlink stays one */
	char *layer_target[VXM_JOURNAL_MAX]; /* a symlinked layer's file, kept; else NULL */
	unsigned nchildren;       /* children of TOP re-pointed at D */
	struct vxm_guid child_dwg[VXM_JOURNAL_MAX];
	uint64_t child_seq[VXM_JOURNAL_MAX];
	char *child_path[VXM_JOURNAL_MAX];
};

char *vxm_journal_path(const char *dest);
const char *vxm_journal_phase_name(enum vxm_jphase p);
/* Refuses (-EINVAL, nothing written) a journal with a path missing or
 * holding a line break. */
int vxm_journal_save(const struct vxm_journal *j, const char *path, struct vxm_err *err);
/* -ENOENT when there is none; -VXM_ECORRUPT for a damaged one (err: the
 * line and its byte offset in the journal). */
int vxm_journal_load(struct vxm_journal *j, const char *path, struct vxm_err *err);
/* The text of a journal, as save writes it and load reads it (name: the
 * file named in messages).  j is left zeroed on failure. */
int vxm_journal_write(const struct vxm_journal *j, FILE *f);
int vxm_journal_read(struct vxm_journal *j, FILE *f, const char *name, struct vxm_err *err);
int vxm_journal_remove(const char *path, struct vxm_err *err);
void vxm_journal_fini(struct vxm_journal *j);
/* fsync of the directory holding path (after renames and deletes). */
int vxm_fsync_dir(const char *path);
/* Crash tests: called after every successful vxm_fsync_dir(), the instant
 * the directory changes before it (a journal saved or removed, a merged file
 * deleted, the convert's rename) became durable.  NULL (always, outside
 * tests): nothing is called. */
extern void (*vxm_test_dirsync_hook)(const char *path);
/* A GUID derived from (seed, label, n): the final FileWriteGuids and D's new
 * DataWriteGuid, identical in every run of the same merge. */
void vxm_guid_derive(uint64_t seed, const char *label, unsigned n, struct vxm_guid *g);

#ifdef __cplusplus
}
#endif
#endif
