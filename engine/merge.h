/* engine/merge.h: what the files of the merge share (merge.c, preflight.c,
 * finalize.c, exec.c, exec_queue.c, convert.c).  The states, transitions and
 * invariants are in engine/merge.c's design note. */
#ifndef VXM_MERGE_H
#define VXM_MERGE_H

#include "engine.h"

#include <sys/types.h>

/* ---- locks ---------------------------------------------------------------- */

/* Each file gets its own lock descriptor, so our data descriptors never
 * conflict with our own locks, and two kinds of lock on it, as Linux keeps
 * them apart: flock() (what `flock`, Python's fcntl.flock and many backup
 * tools take) and an OFD lock over the whole file, which conflicts with
 * POSIX (lockf) locks, with another vhdxmerge and with qemu.  qemu
 * (file-posix) holds one-byte OFD read locks: byte 100 + n for each
 * permission n it uses, 200 + n for each it does not share.  Our exclusive
 * lock conflicts with any of them; our shared lock conflicts with none, so
 * for a file we only read, a qemu that writes (byte 101) or resizes (103) it
 * is asked for separately.  Our shared lock covers bytes 200 + n, so a qemu
 * started later finds the file in use. */
struct locks {
	int fd[VXM_JOURNAL_MAX * 2 + 4];
	unsigned n;
};

/* The locator edit that re-points a child of TOP at D: D's DataWriteGuid g,
 * no second linkage, a relative path to D, and the child's Windows paths
 * (oldabs, oldvol) with D's file name swapped in when D sits where TOP did,
 * otherwise dropped (fmt §8.4 step 7). */
struct relink {
	struct vxm_kv set[5];
	char guid[40], zero[40];
	char *rel, *nabs, *nvol;
};

/* ---- the executor ------------------------------------------------------------------ */

/* pieces of the sources gathered into one write (ex_transfer): twice a
 * page's worth of 512-byte sectors, so that a page-aligned cut of a full
 * stage always leaves something before it (ex_stage_cut) */
#define EX_SEGS 16

#define EX_ZERO (-1) /* a piece of zeros */
#define EX_DEST (-2) /* a piece of D's own sectors, read back (padding) */

struct ex_seg {
	int layer; /* or EX_ZERO, EX_DEST */
	uint64_t src, len;
};

struct dreq {
	struct vxm_req rd, wr;     /* rd: the first read, or a clone */
	struct vxm_req xrd[EX_SEGS - 1]; /* the other reads of a gathered write */
	unsigned reads_left;       /* reads to complete before wr is queued */
	uint64_t zlen;             /* bytes of wr zeroed in buf, not read */
	uint64_t plen;             /* bytes of wr that are D's own (padding) */
	uint8_t *buf;
	bool busy;
	int layer;         /* for a clone that falls back to a copy */
	uint64_t more;     /* a clone copied instead: bytes after the current piece */
};

struct exec {
	const struct vxm_merge_opts *o;
	struct vxm_err *err;
	struct vxm_chain *c;
	struct vxm_image *d;      /* destination (RDWR), NULL for raw output */
	struct vxm_writer *w;
	int top, dest;
	uint32_t lss;
	uint64_t spb, bs;         /* destination geometry */
	bool d_parent, d_fixed;
	uint64_t total;           /* destination sectors */
	/* M3 */
	uint64_t alloc_base, alloc_next, cursor;
	uint64_t sb_chunk_done;
	/* the destination block being filled */
	uint64_t blk;             /* UINT64_MAX: none */
	uint64_t blk_off;         /* 0: not allocated (yet) */
	unsigned blk_state;       /* state when the block was entered */
	bool blk_alloc_orig;      /* allocated when entered */
	bool blk_fresh;           /* space the merge allocated: reads zeros */
	uint64_t blk_resolved, blk_zero;
	uint64_t blk_alloc_at;    /* alloc_next when the block was entered */
	uint8_t *blk_bits;        /* resolved sectors of the block (differencing D) */
	/* data path */
	struct vxm_io dio;
	/* the request buffers and the zero buffer in one area: for direct
	 * I/O on the NUMA node the merge runs on, huge-page backed (io/topo.c,
	 * mem); on a shared context plain heap memory (heap) */
	struct vxm_topo *topo;
	struct vxm_topo_mem mem;
	uint8_t *heap;
	bool dio_up;
	struct vxm_io *io;        /* &dio, or the caller's single context */
	int dslot[VXM_CHAIN_MAX_DEPTH];
	int dslot_d;
	bool dslot_open[VXM_CHAIN_MAX_DEPTH], dslot_d_open;
	/* a private context moves data with O_DIRECT (dslot, dslot_d) and
	 * sends what O_DIRECT cannot take to a buffered twin of the same file
	 * (bslot, bslot_d; the same slots otherwise) */
	int bslot[VXM_CHAIN_MAX_DEPTH], bslot_d;
	uint32_t ralign[VXM_CHAIN_MAX_DEPTH]; /* O_DIRECT read alignment of each layer */
	uint32_t dalign;          /* ... and of D (its own sectors read back) */
	/* the page every write to D covers whole, so that no page of D is in
	 * two requests at once nor written buffered: 4 KiB with direct writes,
	 * else a sector (nothing padded) */
	uint32_t pad;
	uint64_t pad_end;         /* no padding past this offset (a raw output's end) */
	struct dreq *q;
	unsigned qd;
	uint32_t chunk;
	int failed;      /* the data path's first error (ex_reap): sticky */
	uint64_t writes; /* data write requests completed */
	uint64_t buffered; /* ... their bytes written buffered (not through dio_d) */
	int dio_d;         /* D's O_DIRECT slot, or -1 */
	/* the transfers held back for one write: the next one joins while it
	 * continues them in the destination (up to chunk bytes, EX_SEGS
	 * pieces; a piece grows while its source continues too), so blocks
	 * allocated in plan order become chunk-sized writes whatever layer
	 * each comes from */
	struct {
		unsigned n;
		uint64_t dst, len;
		struct ex_seg seg[EX_SEGS];
	} stg;
	uint8_t *zero;
	bool clone_ok;
	dev_t d_dev, layer_dev[VXM_CHAIN_MAX_DEPTH];
	bool layer_clone[VXM_CHAIN_MAX_DEPTH]; /* reflinks from this layer into D work */
	uint32_t clone_blk;       /* D's filesystem block: clone granularity */
	/* a clone not queued yet, grown while the next one continues it in both
	 * files (ex_clone_add); queued before every commit (M2) */
	int pc_layer;
	uint64_t pc_src, pc_dst, pc_len;
	/* accounting */
	uint64_t done, total_bytes, copied, cloned, zeroed, since_commit;
	uint64_t commit_min; /* COMMIT_BYTES (test programs: VXM_COMMIT_BYTES) */
	double commit_end, commit_cost; /* when the last commit ended, what it took (s) */
	uint64_t commits;
	double commit_seconds;
	double last_progress;
	struct vxm_journal *j;
	const char *jpath;
};

#define EX_CLONE_MIN (64u << 10) /* a shorter run inside a block is copied */

/* Writes to D go direct only when 4 KiB aligned (offset and length; the
 * buffers are): then no page is ever shared by a direct and a buffered
 * write.  Reads go direct at the source's own O_DIRECT alignment. */
#define EX_DIO_ALIGN 4096u

/* ---- merge.c: reporting, and the phases a convert shares ---------------- */
double mg_now(void);
/* One line to o->log (notices the user should read). */
void mg_say(const struct vxm_merge_opts *o, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void mg_progress(const struct vxm_merge_opts *o, const char *phase, uint64_t done,
		 uint64_t total, uint64_t copied, uint64_t cloned, uint64_t zeroed);
uint64_t mg_random_seed(void);
/* Records phase `to` in j (saved by the caller), asserting the transition
 * is one of the design note's and what it promises of the journal holds
 * (test and sanitizer builds keep the asserts). */
void mg_phase_enter(struct vxm_journal *j, enum vxm_jphase to);
/* LINKED -> COPIED (a convert: its whole data phase). */
int mg_phase_copy(const struct vxm_merge_opts *o, struct vxm_chain *c, struct vxm_journal *j,
		  const char *jpath, struct vxm_merge_result *r, struct vxm_err *err);

/* ---- preflight.c: before the first write --------------------------------- */
/* Absolute path; realpath where the file exists. */
char *mg_abspath(const char *p);
/* Absolute, the directory resolved but not a symlink's last component. */
char *mg_abspath_link(const char *p);
/* What a symlink points to, or NULL for a file that is no symlink. */
char *mg_link_target(const char *p);
/* flock and an OFD lock on path (exclusive when excl); -EBUSY naming it. */
int mg_lock_file(struct locks *l, const char *path, bool excl, struct vxm_err *err);
void mg_unlock_all(struct locks *l);
/* Every layer shared, [dest, top] and each child of TOP exclusive. */
int mg_take_locks(struct locks *l, struct vxm_chain *c, int dest, const struct vxm_journal *j,
		  struct vxm_err *err);
bool mg_ends_ci(const char *s, const char *suf);
/* Where D's allocations start (M3): past its file and every object. */
int mg_alloc_base(struct vxm_image *d, uint64_t *base, struct vxm_err *err);
/* Children of TOP into j (to re-point); other checkpoints of a merged layer
 * or D refused by name (-EEXIST) unless o->force. */
int mg_preflight_relatives(const struct vxm_merge_opts *o, struct vxm_chain *c, int dest,
			   struct vxm_journal *j, struct vxm_err *err);
/* vxm_plan_preflight, and a notice for layers of another virtual size. */
int mg_preflight_layers(const struct vxm_merge_opts *o, struct vxm_chain *c, int dest,
			struct vxm_err *err);
/* C1 and each child of TOP: valid, and room for the locator edit. */
int mg_preflight_relinks(struct vxm_chain *c, int dest, const struct vxm_journal *j,
			 const char *top, struct vxm_io *io, struct vxm_err *err);
/* The destination's growth against the free space (-ENOSPC). */
int mg_check_space(const char *dest, const struct vxm_plan_stats *st, struct vxm_merge_result *r,
		   struct vxm_err *err);
bool mg_journal_paths_ok(const struct vxm_journal *j);
/* The data path the executor will open can be opened (-EINVAL for a name
 * that is none, or the backend's own error). */
int mg_preflight_io(const struct vxm_merge_opts *o, struct vxm_err *err);

/* ---- finalize.c: after the data ------------------------------------------ */
/* Zeroed log, both headers final (M3); idempotent. */
int mg_finalize_file(struct vxm_io *io, const char *path, uint64_t orig_seq,
		     const struct vxm_guid *fwg, struct vxm_err *err);
/* The locator of path with `set` applied, through its log. */
int mg_set_locator(struct vxm_io *io, const char *path, const struct vxm_kv *set, unsigned nset,
		   struct vxm_err *err);
/* "{guid}" */
void mg_braced(const struct vxm_guid *g, char out[40]);
/* The locator edit re-pointing child at dest (fmt §8.4 step 7). */
int mg_relink_child(struct relink *k, const char *child, const char *top, const char *dest,
		    const struct vxm_guid *g, const char *oldabs, const char *oldvol);
void mg_relink_free(struct relink *k);
/* Room in img's metadata region for its locator with `set` applied:
 * 0, or -VXM_EUNSUPPORTED naming the region. */
int mg_locator_room(struct vxm_image *img, const struct vxm_kv *set, unsigned nset,
		    struct vxm_err *err);
/* COPIED -> REPOINTED */
int mg_phase_repoint(const struct vxm_merge_opts *o, struct vxm_io *io, struct vxm_journal *j,
		     const char *jpath, struct vxm_merge_result *r, struct vxm_err *err);
/* REPOINTED -> CLEANUP -> the journal removed */
int mg_phase_cleanup(const struct vxm_merge_opts *o, struct vxm_journal *j, const char *jpath,
		     struct vxm_merge_result *r, struct vxm_err *err);

/* ---- exec.c: the executor ------------------------------------------------ */
/* The data path's context parameters (a preflight probes them). */
struct vxm_io_params ex_io_params(const struct vxm_merge_opts *o);
/* Opens the data path: D's and the layers' data slots, the buffers. */
int ex_init(struct exec *x, const char *dest_path, bool dest_raw);
/* Every extent of the plan into D, then the final commit (M2). */
int ex_run(struct exec *x);
/* What the run moved, into the caller's result. */
void ex_report(const struct exec *x, struct vxm_merge_result *r);
void ex_fini(struct exec *x);

/* ---- exec_queue.c: the executor's requests -------------------------------- */
uint32_t ex_dio_align(const char *path);
/* len bytes of layer (EX_ZERO: zeros) at src_off to D at dst, gathered with
 * the transfers before it while they continue each other. */
int ex_transfer(struct exec *x, int layer, uint64_t src_off, uint64_t dst, uint64_t len);
/* A reflink, grown while the next one continues it. */
int ex_clone_add(struct exec *x, int layer, uint64_t src, uint64_t dst, uint64_t len);
int ex_clone_flush(struct exec *x);
/* Everything staged queued, everything queued completed (before a commit). */
int ex_drain(struct exec *x);

/* ---- convert.c ----------------------------------------------------------- */
int mg_convert_run(const struct vxm_merge_opts *o, struct vxm_merge_result *r,
		   struct vxm_err *err);

#endif
