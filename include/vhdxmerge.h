/* include/vhdxmerge.h: the public API of libvhdxmerge.
 *
 * The vocabulary every layer shares (error codes, struct vxm_err, GUIDs) and
 * the engine entry points the vhdxmerge program is built on.  Functions
 * return 0 or a negative error: -errno, or -VXM_E* for format and chain
 * problems; details land in a caller-owned struct vxm_err passed last (may
 * be NULL).
 */
#ifndef VHDXMERGE_H
#define VHDXMERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is compiled with hidden visibility: what this header declares
 * is all the shared library exports. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define VXM_KiB 1024ull
#define VXM_MiB (1024ull * 1024ull)
#define VXM_GiB (1024ull * VXM_MiB)
#define VXM_TiB (1024ull * VXM_GiB)

/* ---- errors -------------------------------------------------------------- */

/* Codes outside the errno range, returned negated. */
enum vxm_errcode {
	VXM_ECORRUPT = 4096, /* a structure breaks a rule of the format */
	VXM_EUNSUPPORTED,    /* valid, but a feature this program does not handle */
	VXM_ECHAIN,          /* parent missing, linkage mismatch, cycle, mismatch */
	VXM_EDIRTY,          /* the log must be replayed and the caller said no */
	VXM_ECRASHED,        /* fault injection: the simulated machine lost power */
	VXM_ENOTVHDX,        /* no "vhdxfile" identifier: not a VHDX file at all */
	VXM_ENOTFILE,        /* a FIFO, socket, device or directory, not a file */
	VXM_ECODE_END
};

#define VXM_OFF_NONE UINT64_MAX

struct vxm_err {
	int code;          /* the negative value that was returned */
	uint64_t off;      /* absolute file offset of the damage, or VXM_OFF_NONE */
	int line;          /* __LINE__ of the check that failed */
	const char *where; /* source file of that check */
	char path[512];    /* the file, filled by the layer that knows it */
	char msg[512];     /* "structure: what is wrong" */
};

/* Records the first error only (later calls keep the earlier detail, as the
 * first failure is the cause).  Returns code, so checks read
 * `return vxm_corrupt(err, off, "bat[%u]: ...", i);`. */
int vxm_err_set(struct vxm_err *err, int code, uint64_t off, const char *where,
		int line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* Names the file in err->path unless a path is already there. */
void vxm_err_path(struct vxm_err *err, const char *path);
/* Clears err for reuse. */
void vxm_err_clear(struct vxm_err *err);
/* "PATH: MSG (offset 0x...)" into buf; returns buf. */
char *vxm_err_format(const struct vxm_err *err, char *buf, size_t len);
/* Text for -errno and -VXM_E* codes alike. */
const char *vxm_strerror(int code);

#define vxm_corrupt(err, off, ...) \
	vxm_err_set((err), -VXM_ECORRUPT, (off), __FILE__, __LINE__, __VA_ARGS__)
#define vxm_unsupported(err, off, ...) \
	vxm_err_set((err), -VXM_EUNSUPPORTED, (off), __FILE__, __LINE__, __VA_ARGS__)
#define vxm_fail(err, code, off, ...) \
	vxm_err_set((err), (code), (off), __FILE__, __LINE__, __VA_ARGS__)

/* ---- GUIDs --------------------------------------------------------------- */

struct vxm_guid {
	uint8_t b[16]; /* on-disk order: Data1 LE32, Data2 LE16, Data3 LE16, Data4 */
};

#define VXM_GUID_STRLEN 36 /* without braces and NUL */

bool vxm_guid_is_zero(const struct vxm_guid *g);
bool vxm_guid_eq(const struct vxm_guid *a, const struct vxm_guid *b);
/* Lower case, no braces; out holds VXM_GUID_STRLEN + 1 bytes. */
char *vxm_guid_fmt(const struct vxm_guid *g, char *out);
/* Accepts an optional pair of braces and either case; len excludes any NUL.
 * Returns 0 or -EINVAL. */
int vxm_guid_parse(const char *s, size_t len, struct vxm_guid *g);


/* ---- GUID generation ------------------------------------------------------ */

/* A fresh random (version 4) GUID.  After vxm_guid_seed(s) with s != 0, or
 * with VXM_GUID_SEED=s in the environment, the sequence is deterministic so
 * that a resumed run produces byte-identical files; the seed is recorded in
 * the merge journal. */
void vxm_guid_new(struct vxm_guid *g);
void vxm_guid_seed(uint64_t seed);

/* ---- digests --------------------------------------------------------------- */

/* SHA-256 of a byte stream (OpenSSL underneath, SHA-NI where the CPU has
 * it): the content digests `synth` prints and `compare` and tests use. */
struct vxm_sha256 {
	void *ctx;
};
int vxm_sha256_init(struct vxm_sha256 *s);
void vxm_sha256_update(struct vxm_sha256 *s, const void *buf, size_t len);
/* Writes 64 lower-case hex digits and a NUL; releases the context. */
void vxm_sha256_final(struct vxm_sha256 *s, char hex[65]);

/* ---- exit codes of the vhdxmerge program ---------------------------------- */

enum vxm_exit {
	VXM_EXIT_OK = 0,
	VXM_EXIT_PROBLEMS = 1,     /* check found problems, compare found a difference */
	VXM_EXIT_USAGE = 2,
	VXM_EXIT_CORRUPT = 3,      /* input breaks the format */
	VXM_EXIT_CHAIN = 4,        /* chain broken or mismatched, or a layer
				    * that is not a file (VXM_ENOTFILE) */
	VXM_EXIT_NOSPACE = 5,
	VXM_EXIT_IO = 6,
	VXM_EXIT_INUSE = 7,        /* locked by another process */
	VXM_EXIT_INTERRUPTED = 8,  /* stopped; re-run to resume */
	VXM_EXIT_UNSUPPORTED = 9,  /* valid, but a feature this program lacks */
	VXM_EXIT_INTERNAL = 10,
};

/* Maps a negative error code to the exit code of its class. */
int vxm_exit_code(int err);

/* ---- images ---------------------------------------------------------------- */

struct vxm_io;
struct vxm_image;

enum vxm_image_flags {
	VXM_IMAGE_RDWR = 1u << 0,      /* writable; a dirty log is replayed in place */
	VXM_IMAGE_NO_REPLAY = 1u << 1, /* refuse a dirty log (-VXM_EDIRTY) */
};

/* Opens path through io (NULL: a private context on the best backend).
 * Validates the identifier, headers, region tables, metadata and, when the
 * log is dirty, replays it: into memory for read-only opens (the file is
 * not written), in place for writable ones.  0 or a negative error with
 * err naming the file, the structure and the offset. */
int vxm_image_open(struct vxm_image **out, struct vxm_io *io, const char *path, unsigned flags,
		   struct vxm_err *err);
/* Opens an image held in memory (read-only unless VXM_IMAGE_RDWR, which
 * works on a private copy). */
int vxm_image_open_mem(struct vxm_image **out, const void *buf, size_t len, unsigned flags,
		       struct vxm_err *err);
void vxm_image_close(struct vxm_image *img);

struct vxm_info {
	const char *path;
	const char *type; /* "fixed", "dynamic" or "differencing" */
	const char *creator;
	uint64_t file_size;
	uint64_t virtual_size;
	uint32_t block_size;
	uint32_t logical_sector_size;
	uint32_t physical_sector_size;
	bool leave_blocks_allocated;
	bool has_parent;
	struct vxm_guid virtual_disk_id, data_write_guid, file_write_guid, log_guid;
	uint64_t header_seq;
	int current_header;       /* 1 or 2 */
	struct {
		bool dirty;           /* LogGuid set when the file was opened */
		uint32_t entries;     /* entries in the active sequence */
		bool replayed;        /* the values below are the replayed state */
	} log;
	struct {
		struct vxm_guid parent_linkage, parent_linkage2;
		bool has_linkage2;    /* the key is present (even as the zero GUID) */
		const char *relative_path, *volume_path, *absolute_win32_path; /* NULL if absent */
	} parent;
	uint32_t chunk_ratio;
	uint64_t bat_entries;
	struct {
		uint64_t not_present, undefined, zero, unmapped, fully_present, partially_present;
		uint64_t sector_bitmaps_present;
	} bat;
	/* bytes of payload and bitmap blocks the BAT references */
	uint64_t allocated_bytes;
};

/* Fills info; counts BAT states by streaming the BAT (the strings point
 * into img and live as long as it does). */
int vxm_image_info(struct vxm_image *img, struct vxm_info *info, struct vxm_err *err);

/* A finding of vxm_image_check(). */
struct vxm_finding {
	int severity;   /* 0: note, 1: problem */
	uint64_t off;   /* file offset, or VXM_OFF_NONE */
	const char *msg;
};

/* Checks every structural rule of an opened image (BAT entries, sector
 * bitmap presence, overlaps of every allocated object, log state) and
 * returns the number of problems found (>= 0) or a negative error when the
 * check itself could not run.  Findings, notes included, are listed by
 * vxm_image_findings(). */
int vxm_image_check(struct vxm_image *img, struct vxm_err *err);
unsigned vxm_image_findings(const struct vxm_image *img, struct vxm_finding *out, unsigned max);

/* check --repair: replays a dirty log in place following the writer
 * protocol (new FileWriteGuid, apply, flush, grow, clear LogGuid), once all
 * of it and the replayed metadata have validated.  Changes nothing when the
 * log is clean (0, also for a file damaged elsewhere: the check reports
 * that).  A log that must be replayed and cannot be returns its error
 * (-VXM_ECORRUPT...) with nothing written.  *replayed says whether it wrote. */
int vxm_image_repair(const char *path, bool *replayed, struct vxm_err *err);

/* Reads len bytes of the virtual disk at off from an image without parent
 * (-VXM_ECHAIN for a differencing image: it needs its chain). */
int vxm_image_read(struct vxm_image *img, void *buf, uint64_t len, uint64_t off,
		   struct vxm_err *err);

/* ---- creating and writing images (engine/create.c, engine/writer.c) -------
 *
 * vxm_image_create() writes a new file the way Hyper-V lays it out:
 *
 *   0     1M    2M         3M        3M+bat_len
 *   | hdr | log | metadata | BAT ... | SB blocks (diff.) | payload ...
 *
 * Creation is not logged: it writes everything else, flushes, and writes the
 * two headers LAST, so an interrupted create leaves a file without a valid
 * header that no reader accepts (fmt §8.4 "new standalone file").
 *
 * A write session (struct vxm_writer) changes an image opened with
 * VXM_IMAGE_RDWR following fmt §6.5 and §7: payload first and flushed
 * ("data-sync"), then BAT, sector-bitmap and metadata sectors as one log
 * entry ("log-commit"), then applied in place ("log-apply").  The session
 * changes nothing in the file until the first real change (a rejected
 * request leaves the file byte-identical); vxm_writer_end() leaves every
 * update applied and flushed and the LogGuid zero.  The low-level calls a
 * merge engine needs (staging BAT entries, bitmap ranges, metadata items)
 * are in engine/engine.h.
 */

enum vxm_create_flags {
	/* differencing: allocate sector-bitmap blocks on demand, as Hyper-V
	 * does, instead of one per chunk at creation (libvhdi reads the bitmap
	 * of every non-FULLY_PRESENT block and needs them, fmt §5.3) */
	VXM_CREATE_LAZY_BITMAPS = 1u << 0,
	/* differencing: write relative_path only, no absolute_win32_path */
	VXM_CREATE_NO_ABSOLUTE_PATH = 1u << 1,
};

struct vxm_create_params {
	uint64_t virtual_size;         /* bytes, a multiple of the logical sector;
					* 0 with a parent: the parent's */
	uint32_t block_size;           /* power of two, 1..256 MiB; 0: 32 MiB for
					* dynamic, 2 MiB for fixed and differencing */
	uint32_t logical_sector_size;  /* 512 or 4096; 0: 512, or the parent's */
	uint32_t physical_sector_size; /* 512 or 4096; 0: 4096, or the parent's */
	bool fixed;                    /* LeaveBlocksAllocated: every block
					* allocated FULLY_PRESENT (sparse zeros) */
	const char *parent;            /* differencing: path of the parent */
	unsigned flags;                /* enum vxm_create_flags */
	struct vxm_io *io;             /* NULL: a private context */
};

/* Creates path (which must not exist).  A differencing child opens its
 * parent read-only and takes its virtual size, logical sector size, disk id
 * and every IsVirtualDisk item; parent_linkage is the parent's current
 * DataWriteGuid.  A parent whose logical sector size or virtual size differs
 * from a value given in p is refused with -VXM_ECHAIN.  GUIDs come from
 * vxm_guid_new() (seedable).  On failure the partial file is removed.
 * 0, -EEXIST, -EINVAL (bad parameters), -VXM_ECHAIN, or another error. */
int vxm_image_create(const char *path, const struct vxm_create_params *p, struct vxm_err *err);

struct vxm_writer;

enum vxm_zero_mode {
	VXM_ZERO_DATA = 0,  /* zeros as data (or nothing where the block already
			     * reads zeros in a file without parent) */
	VXM_ZERO_STATE = 1, /* whole blocks become ZERO (offset 0); the ends of
			     * the range are written as data.  Never in fixed
			     * files: they get zero data. */
};

struct vxm_writer_stats {
	uint64_t bytes_written;     /* payload bytes written (data and zeros) */
	uint64_t blocks_allocated;  /* payload blocks */
	uint64_t bitmaps_allocated; /* sector-bitmap blocks */
	uint64_t entries;           /* log entries written (the init entry too) */
	uint64_t sectors_logged;    /* 4 KiB sector images logged */
	uint64_t commits;           /* transactions committed */
	uint64_t syncs;             /* flushes issued */
	uint64_t header_updates;
};

/* Starts a write session on img (opened with VXM_IMAGE_RDWR, log clean).
 * Nothing is written yet.  0, -EBADF (read-only image), -VXM_EDIRTY, or
 * -ENOMEM. */
int vxm_writer_begin(struct vxm_writer **out, struct vxm_image *img, struct vxm_err *err);
/* Writes len bytes of buf at virtual offset off (both multiples of the
 * logical sector size, inside the virtual disk).  Partial blocks are
 * handled per sector (differencing files: the sector bitmap).  -EINVAL for
 * a bad request, which changes nothing. */
int vxm_writer_write(struct vxm_writer *w, uint64_t off, const void *buf, uint64_t len,
		     struct vxm_err *err);
/* Makes [off, off+len) read zeros (shadowing the parent in a differencing
 * file), see enum vxm_zero_mode.  Same rules and errors as write. */
int vxm_writer_zero(struct vxm_writer *w, uint64_t off, uint64_t len, enum vxm_zero_mode mode,
		    struct vxm_err *err);
/* Sets the DataWriteGuid (g NULL: a new random one) through the header
 * procedure, now.  Writes do this themselves before the first visible
 * change; a merge calls it to install the GUID it already promised a child
 * in parent_linkage2 (fmt §8.4).  At most once per session. */
int vxm_writer_set_data_guid(struct vxm_writer *w, const struct vxm_guid *g, struct vxm_err *err);
/* Commits everything staged so far (data-sync, log-commit, log-apply). */
int vxm_writer_flush(struct vxm_writer *w, struct vxm_err *err);
/* Commits, flushes, clears the LogGuid (when a log entry was written) and
 * frees w, also on failure.  After a failed session the LogGuid stays set
 * when a committed entry may not be applied: the next writable open replays
 * it. */
int vxm_writer_end(struct vxm_writer *w, struct vxm_err *err);
void vxm_writer_get_stats(const struct vxm_writer *w, struct vxm_writer_stats *st);

/* ---- chains (engine/chain.c) ------------------------------------------------ */

#define VXM_CHAIN_MAX_DEPTH 256

struct vxm_chain;

struct vxm_chain_opts {
	const char *const *search_dirs; /* extra directories to look for parents in */
	unsigned nsearch;
	unsigned max_depth;             /* 0: VXM_CHAIN_MAX_DEPTH */
	unsigned image_flags;           /* enum vxm_image_flags for every layer */
	struct vxm_io *io;              /* NULL: a private context */
};

/* Opens the chain ending in top: finds each parent from the child's locator
 * (relative_path, then the file names of volume_path/absolute_win32_path in
 * the child's directory, case-insensitively, then the search directories),
 * accepts it only when its DataWriteGuid equals parent_linkage (or a
 * non-zero parent_linkage2), and refuses cycles, chains deeper than
 * max_depth and differing logical sector sizes (-VXM_ECHAIN, err saying
 * which file wants what and every candidate tried). */
int vxm_chain_open(struct vxm_chain **out, const char *top, const struct vxm_chain_opts *o,
		   struct vxm_err *err);
void vxm_chain_close(struct vxm_chain *c);
/* Layers, base first. */
unsigned vxm_chain_depth(const struct vxm_chain *c);
struct vxm_image *vxm_chain_image(const struct vxm_chain *c, unsigned i);
/* How layer i was found from its child ("top" for the top), and which
 * linkage key its child matched (1 parent_linkage, 2 parent_linkage2, 0 top). */
const char *vxm_chain_via(const struct vxm_chain *c, unsigned i);
int vxm_chain_linked_by(const struct vxm_chain *c, unsigned i);
uint64_t vxm_chain_virtual_size(const struct vxm_chain *c);
uint32_t vxm_chain_sector_size(const struct vxm_chain *c);
/* Reads the virtual disk as the top layer shows it. */
int vxm_chain_read(struct vxm_chain *c, void *buf, uint64_t len, uint64_t off, struct vxm_err *err);
/* Path of an image. */
const char *vxm_image_path(const struct vxm_image *img);
/* Index of the layer that is the file at path (same device and inode), or
 * -ENOENT when the file is not part of the chain. */
int vxm_chain_index_of(const struct vxm_chain *c, const char *path);

/* ---- the BAT-diff planner (engine/plan.c) ---------------------------------- */

#define VXM_PLAN_NEW_FILE (-1)

struct vxm_plan_opts {
	int dest;                  /* layer index of the destination D (0 = the base), or
				    * VXM_PLAN_NEW_FILE for a new standalone file */
	int top;                   /* newest merged layer; -1: the chain's top */
	uint32_t new_block_size;   /* new file: its block size (0: the top's) */
	bool new_fixed;            /* new file: fully allocated */
};

enum vxm_extent_kind {
	VXM_EXT_COPY = 1,          /* bytes from a source layer */
	VXM_EXT_ZERO,              /* the destination must read zeros here */
};

/* One planned write, in destination (virtual disk) order. */
struct vxm_extent {
	uint64_t voff;             /* virtual byte offset in the destination */
	uint64_t len;              /* bytes; a multiple of the sector size */
	enum vxm_extent_kind kind;
	int layer;                 /* COPY: source layer index (base = 0) */
	uint64_t src_off;          /* COPY: byte offset in that layer's file */
};

struct vxm_plan_stats {
	uint64_t copy_bytes;        /* resolved to data in a merged layer */
	uint64_t zero_bytes;        /* resolved to zeros in a merged layer */
	uint64_t extents;           /* after coalescing */
	uint64_t naive_copy_bytes;  /* written by merging one level at a time */
	uint64_t dest_new_blocks;   /* destination blocks to allocate */
	uint64_t dest_zero_blocks;  /* destination blocks that become ZERO (no data) */
	uint64_t dest_new_bitmaps;  /* sector-bitmap blocks to create (differencing D) */
	uint64_t dest_growth_bytes; /* how much the destination file grows */
	uint64_t dest_virtual_size; /* after the merge (the top's size) */
	uint64_t runs;              /* resolved runs before coalescing */
	uint64_t layer_copy_bytes[VXM_CHAIN_MAX_DEPTH]; /* copy_bytes by source layer */
};

/* Called for every extent in destination order; a non-zero return stops the
 * plan and is returned. */
typedef int (*vxm_extent_fn)(void *ctx, const struct vxm_extent *e);

/* Plans merging layers (dest, top] into dest, or every layer into a new
 * file, by the BATs and sector bitmaps alone: each sector's newest
 * definition wins (fmt §8.1).  Sectors no merged layer defines are not
 * emitted (D keeps them), except past D's end, where the chain shows zeros
 * and zeros are emitted.  Extents are coalesced into the longest runs the
 * sources allow.  Memory is bounded by the layers' BAT windows and bitmap
 * slices (engine.h I2), whatever the disk size.  fn may be NULL (stats only). */
int vxm_plan(struct vxm_chain *c, const struct vxm_plan_opts *o, vxm_extent_fn fn, void *ctx,
	     struct vxm_plan_stats *st, struct vxm_err *err);
/* The rules a merge into dest (VXM_PLAN_NEW_FILE: a convert) enforces
 * before its first write, for every layer of the chain: each passes every rule
 * vxm_image_check reports (-VXM_ECORRUPT naming the file, its role, the
 * first problem and its offset), the top is not smaller than dest
 * (-VXM_ECHAIN: a merge never shrinks its destination), and a growth of
 * dest is one this program writes (-VXM_EUNSUPPORTED otherwise).  vxm_merge_run calls
 * it; `plan` calls it so that what it says fits is what a merge accepts. */
int vxm_plan_preflight(struct vxm_chain *c, int dest, struct vxm_err *err);
/* Bytes available to an unprivileged writer on the filesystem holding path
 * (or, when path does not exist yet, its directory). */
int vxm_space_free(const char *path, uint64_t *bytes, struct vxm_err *err);

/* ---- comparing two disks (engine/compare.c) --------------------------------
 *
 * A logical comparison of what two disks read, independent of the planner
 * and of how either side stores its data: each side is read front to back
 * in large chunks (vxm_chain_read for VHDX, plain reads for raw files) and
 * the bytes are compared.  A side is a VHDX file (a base, or the top of a
 * differencing chain, opened with vxm_chain_open) or, when its first eight
 * bytes are not the "vhdxfile" identifier, a raw image compared byte for
 * byte as stored.  Everything is opened read-only; nothing is written.
 */

struct vxm_compare_side {
	bool raw;              /* no "vhdxfile" identifier: compared as plain bytes */
	unsigned depth;        /* layers of its chain (0 for a raw file) */
	uint64_t size;         /* virtual size, or the raw file's size */
	uint32_t sector_size;  /* logical sector size (0 for a raw file) */
};

struct vxm_compare_result {
	bool same;                 /* same size and the same bytes */
	bool size_differs;         /* size_a != size_b (a difference by itself) */
	bool differ_in_common;     /* the common range holds a differing byte */
	uint64_t size_a, size_b;
	/* First offset at which the disks read differently: the first differing
	 * byte of the common range, else (sizes differ, common range equal) the
	 * smaller size, where one side ends.  VXM_OFF_NONE when same. */
	uint64_t first_difference;
	uint32_t sector_size;      /* sector unit for reports: A's logical sector
				    * size, else B's, else 512 (both raw) */
	uint64_t bytes_compared;   /* bytes of the common range found equal,
				    * plus the differing byte when one was found */
	struct vxm_compare_side a, b;
};

/* Called after each chunk; a non-zero return stops the comparison and is
 * returned by vxm_compare_with(). */
typedef int (*vxm_compare_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct vxm_compare_opts {
	struct vxm_chain_opts chain;      /* for opening VHDX sides (both) */
	uint32_t chunk;                   /* bytes per read and side, a multiple
					   * of 4 KiB; 0: 4 MiB */
	vxm_compare_progress_fn progress; /* may be NULL */
	void *progress_ctx;
};

/* Compares the disks a and b show (see above) until the first difference.
 * Returns 0 when the comparison ran to its answer (r->same, and where they
 * first differ), or a negative error (-errno, -VXM_ECORRUPT, -VXM_ECHAIN,
 * ...) with err naming the file at fault.  o may be NULL. */
int vxm_compare(const char *a, const char *b, const struct vxm_chain_opts *o,
		struct vxm_compare_result *r, struct vxm_err *err);
/* The same with a chunk size and a progress callback (o may be NULL). */
int vxm_compare_with(const char *a, const char *b, const struct vxm_compare_opts *o,
		     struct vxm_compare_result *r, struct vxm_err *err);

/* ---- merge and convert (engine/merge.c) ------------------------------------- */

enum vxm_out_format {
	VXM_OUT_VHDX = 0,
	VXM_OUT_RAW = 1,
};

struct vxm_merge_progress {
	const char *phase;          /* "preflight", "link", "copy", "finalize", "repoint", "cleanup" */
	uint64_t done, total;       /* bytes of the plan */
	uint64_t copied, cloned, zeroed;
};

struct vxm_merge_opts {
	const char *top;            /* the newest file of the chain */
	const char *into;           /* merge: the destination ancestor (NULL: the base) */
	const char *out;            /* convert: the new file (merge when NULL) */
	enum vxm_out_format out_format;
	bool out_fixed;             /* convert: fully allocated VHDX */
	uint32_t out_block_size;    /* convert: 0 = the top's */
	const char *const *rebase;  /* children of TOP to re-point at the destination */
	unsigned nrebase;
	const char *const *search_dirs; /* parents, siblings and children are looked for here too */
	unsigned nsearch;
	bool keep_merged;           /* keep the merged files (they stay valid, see README) */
	bool force;                 /* merge although other checkpoints would be invalidated */
	bool dry_run;               /* preflight only: validate, lock, plan, check space */
	bool no_clone;              /* never use reflinks */
	uint64_t seed;              /* GUID seed (0: random); a resumed run takes the journal's */
	unsigned queue_depth;       /* in-flight data requests (0: 16) */
	uint32_t chunk_size;        /* bytes per data request (0: 4 MiB) */
	const char *backend;        /* io backend: NULL/"auto", "uring", "psync" */
	void (*progress)(void *ctx, const struct vxm_merge_progress *p);
	void *progress_ctx;
	void (*log)(void *ctx, const char *line); /* one-line notices */
	void *log_ctx;
	volatile int *stop;         /* set asynchronously (signals): drain, record, return -EINTR */
	struct vxm_io *io;          /* tests: one context for every file operation of the run
				     * (metadata and data), e.g. a fault-injecting or recording
				     * wrapper; the data path then drains after every extent */
};

struct vxm_merge_result {
	struct vxm_plan_stats plan;
	uint64_t copied, cloned, zeroed; /* bytes moved by each path */
	uint64_t free_bytes;
	double seconds;
	unsigned layers_merged, children_repointed, files_removed;
	char kept[2048];            /* symlinked merged layers: the link was
				     * removed, the files they pointed to kept,
				     * one per line */
	bool resumed;               /* continued an interrupted run */
	bool dry_run;
	char dest[4096];
	char backend[16];
	char phase[32];             /* where it stopped (interrupted runs) */
	uint64_t data_writes;       /* data write requests completed (copied and
				     * zeroed bytes / this: the request size the
				     * device saw) */
	uint64_t buffered_bytes;    /* of those, bytes written to the destination
				     * through the page cache: where O_DIRECT
				     * is refused, a raw output's partial last
				     * page, a caller's context (o->io) */
	uint64_t commits;           /* commit points of the copy (BAT updates
				     * and the resume cursor made durable; the
				     * final one too) */
	double commit_seconds;      /* time the copy stood in them (flushes) */
};

/* Merges (o->out NULL) or converts.  Merge: validates the chain, takes the
 * file locks (exclusive on every file it changes, shared on the rest;
 * -EBUSY when another process holds one), refuses when other checkpoints
 * would be invalidated (-EEXIST, naming them, unless o->force), checks the
 * space (-ENOSPC with the numbers), records a journal next to the
 * destination, then follows the crash-safe order of fmt §8.4.  Re-running
 * the same merge after a crash, a kill or -EINTR resumes it, and the files
 * end byte-identical to an uninterrupted run.  Convert writes the chain's
 * view to a new file that appears under o->out only when complete. */
int vxm_merge_run(const struct vxm_merge_opts *o, struct vxm_merge_result *r, struct vxm_err *err);

struct vxm_merge_state {
	bool in_progress;
	char journal[4200];
	char phase[32];
	char top[4096];
	uint64_t cursor;            /* virtual bytes durable in the destination */
	bool convert;
};

/* What state a destination (or convert output) is in: a journal of an
 * interrupted merge or convert, and its phase. */
int vxm_merge_status(const char *dest, struct vxm_merge_state *st, struct vxm_err *err);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif
