/* io/io.h: the I/O layer every byte of vhdxmerge goes through.
 *
 * A struct vxm_io is one I/O context: a backend (psync thread pool, io_uring,
 * memory files, or a wrapper such as the fault injector) plus a table of open
 * files addressed by slot number.  The engine drives it fio-style with three
 * separate steps, so batching stays visible:
 *
 *     vxm_io_queue(io, req)   ... more queues ...   vxm_io_submit(io)
 *     vxm_io_reap(io, min, done, max)
 *
 * Synchronous helpers (vxm_io_pread/pwrite/sync) are built on the same three
 * steps; they must only be used while the context has nothing else in flight
 * (metadata phases drain the data pipeline first).
 *
 * Ordering contract
 *  O1  A VXM_IO_SYNC request covers every request queued before it on the
 *      same context: it starts only after they complete (a drain barrier),
 *      so a flush never races the writes it is meant to cover.
 *  O2  Requests queued after a SYNC may complete before it.  To order a write
 *      after a flush, wait for the flush's completion first.
 *  O3  Every durability point is a SYNC with a tag ("bat-commit", "reparent",
 *      ...).  The tag names the point for fault injection and kill points.
 *  O4  A read or write completes whole (backends finish short transfers) or
 *      with res < 0.  A read that reaches end of file completes with the bytes
 *      read (res < len) and the rest of the buffer untouched.
 *
 * O4 is also enforced by the generic layer: for a backend without
 * VXM_IO_WHOLE (the fault wrapper), vxm_io_reap() resubmits the remainder of a
 * short READ/WRITE itself and hands back only whole (or EOF-short) requests.
 *
 * A context is driven by one thread at a time (backends may run threads of
 * their own).  Errors: functions return 0 (or a count where stated) or
 * -errno; request results are in req->res.  This module knows nothing of
 * VHDX.
 *
 * Sections below: requests and backends; the context; copy offload; the
 * fault-injection wrapper (io/fault.c); NUMA topology and placed memory
 * (io/topo.c).
 */
#ifndef VXM_IO_H
#define VXM_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VXM_IO_OPS_VERSION 1

enum vxm_io_op {
	VXM_IO_READ = 1,
	VXM_IO_WRITE,
	VXM_IO_SYNC,  /* fdatasync, or fsync with VXM_REQ_FULLSYNC (O1) */
	VXM_IO_CLONE, /* FICLONERANGE src_file/src_off -> file/off, len */
	VXM_IO_COPY,  /* copy_file_range src_file/src_off -> file/off, len */
};

enum vxm_req_flags {
	VXM_REQ_FULLSYNC = 1u << 0, /* SYNC: fsync (size and metadata too) */
};

struct vxm_req {
	uint8_t op;          /* enum vxm_io_op */
	uint8_t flags;       /* enum vxm_req_flags */
	int file;            /* slot */
	uint64_t off;
	uint64_t len;
	void *buf;           /* READ/WRITE */
	int src_file;        /* CLONE/COPY */
	uint64_t src_off;
	const char *tag;     /* SYNC: durability point name (O3); static string */
	int64_t res;         /* on completion: bytes, or -errno */
	void *owner;         /* caller context; backends never touch it */
	struct vxm_req *link; /* backend-private */
	uint64_t xfer;       /* generic layer (O4): bytes done by earlier partial
			      * completions; zeroed by vxm_io_queue() */
};

enum vxm_io_backend_flags {
	VXM_IO_ASYNC = 1u << 0,      /* requests complete after queue() returns */
	VXM_IO_FIXED_BUFS = 1u << 1, /* register_bufs is meaningful */
	VXM_IO_MEMFILES = 1u << 2,   /* files live in memory (vxm_io_mem_add) */
	VXM_IO_WRAPPER = 1u << 3,    /* forwards to a lower context */
	VXM_IO_WHOLE = 1u << 4,      /* completes short transfers itself (O4) */
};

enum vxm_open_flags {
	VXM_O_RDONLY = 0,
	VXM_O_RDWR = 1u << 0,
	VXM_O_CREATE = 1u << 1,  /* create; fails if it exists (O_EXCL) */
	VXM_O_TRUNC = 1u << 2,
	VXM_O_DIRECT = 1u << 3,  /* try O_DIRECT; fall back with a log line */
	VXM_O_DIR = 1u << 4,     /* a directory, read-only (to sync it) */
};

struct vxm_io_stats {
	uint64_t bytes_read, bytes_written, bytes_cloned, bytes_copied;
	uint64_t reads, writes, syncs, clones, copies;
	unsigned max_inflight;
	uint64_t wait_ns;     /* time spent blocked in reap */
	uint64_t errors;      /* requests that completed with res < 0 */
	uint64_t resubmits;   /* remainders of short transfers resubmitted (O4) */
	uint64_t fixed_file_ops; /* uring: SQEs that named a registered file */
	uint64_t fixed_buf_ops;  /* uring: SQEs that used a registered buffer */
};

struct vxm_io_file {
	int fd;               /* -1 for memory files */
	char *path;           /* NULL for memory files */
	unsigned flags;       /* enum vxm_open_flags as opened */
	bool direct;          /* O_DIRECT is in effect */
	bool used;
	/* memory files */
	uint8_t *mem;
	uint64_t mem_size, mem_cap;
	bool mem_owned;
	/* wrappers: a mirror of the lower context's slot (fd not owned) */
	bool borrowed;
	uint32_t fs_block;    /* clone granularity, probed lazily; 0: unknown */
};

struct vxm_io_params {
	unsigned queue_depth;  /* 0: backend default */
	unsigned workers;      /* psync threads; 0: default */
	const char *backend;   /* "auto", "uring", "psync", "mem"; NULL = auto */
	void (*log)(void *ctx, const char *line); /* one-line notices; may be NULL */
	void *log_ctx;
	struct vxm_io *lower;  /* VXM_IO_WRAPPER backends: the context to forward to
				* (not owned: finish it after the wrapper) */
	struct vxm_topo *topo; /* psync: bind worker i to node i % nodes; may be NULL */
};

struct vxm_io;

struct vxm_io_ops {
	const char *name;
	unsigned version; /* VXM_IO_OPS_VERSION */
	unsigned flags;   /* enum vxm_io_backend_flags */
	int (*init)(struct vxm_io *io, const struct vxm_io_params *p);
	void (*fini)(struct vxm_io *io);
	/* Called after the generic layer opened/added slot; may register it. */
	int (*file_added)(struct vxm_io *io, int slot);
	void (*file_removed)(struct vxm_io *io, int slot);
	int (*file_size)(struct vxm_io *io, int slot, uint64_t *size);
	int (*file_resize)(struct vxm_io *io, int slot, uint64_t size);
	/* 0 queued; -EBUSY: the queue is full, submit and reap first. */
	int (*queue)(struct vxm_io *io, struct vxm_req *req);
	/* >= 0 requests sent, or -errno. */
	int (*submit)(struct vxm_io *io);
	/* Waits for at least min completions; >= 0 reaped into done[], or -errno. */
	int (*reap)(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max);
	int (*register_bufs)(struct vxm_io *io, void *const *bufs, const size_t *lens, unsigned n);
};

struct vxm_io {
	const struct vxm_io_ops *ops;
	void *priv;               /* backend state */
	struct vxm_io *lower;     /* wrappers: the context they forward to */
	struct vxm_io_file *files;
	unsigned nfiles;          /* slots in use or free, table size */
	unsigned inflight;
	struct vxm_io_stats stats;
	struct vxm_io_params params;
};

/* Backends. */
extern const struct vxm_io_ops vxm_io_psync_ops;  /* thread pool, pread/pwrite */
extern const struct vxm_io_ops vxm_io_mem_ops;    /* memory files */
extern const struct vxm_io_ops vxm_io_uring_ops;  /* io_uring (-ENOSYS if not built) */
extern const struct vxm_io_ops vxm_io_fault_ops;  /* wrapper: p->lower required */

/* Registry of backends by name: "uring", "psync", "mem", "fault".  "auto"
 * (or NULL) returns uring when an io_uring instance can be set up here, else
 * psync; the probe runs once per process. */
const struct vxm_io_ops *vxm_io_backend(const char *name);

/* Sets up io with ops (NULL: chosen by p->backend).  Returns 0 or -errno.
 * With no ops and backend "auto"/NULL, uring is tried first; when its init
 * fails, psync is used and one line goes to p->log:
 *   "io_uring unavailable (<reason>); using the portable psync backend".
 * A backend forced by name never falls back. */
int vxm_io_init(struct vxm_io *io, const struct vxm_io_ops *ops, const struct vxm_io_params *p);
/* Submits whatever is still queued and waits for everything in flight
 * (results are dropped, so no caller buffer is touched after return), then
 * closes every file and releases the backend.  Safe on a zeroed or failed io. */
void vxm_io_fini(struct vxm_io *io);

/* Opens path; returns the slot (>= 0) or -errno.  Only a regular file (a
 * directory with VXM_O_DIR) is opened: anything else (a FIFO, socket,
 * device) is refused with -VXM_ENOTFILE, never read, written or waited on
 * (F1 in io.c: open never blocks). */
int vxm_io_open(struct vxm_io *io, const char *path, unsigned flags);
/* The same check for a descriptor of the caller's own (lock descriptors,
 * journals): a blocking, close-on-exec descriptor, or -errno; on
 * -VXM_ENOTFILE *kind (may be NULL) names what path is, "a FIFO". */
int vxm_file_open(const char *path, unsigned flags, const char **kind);
/* What path is when it is not a regular file ("a FIFO", "a directory", ...),
 * for messages; NULL for a regular file or a path stat() cannot reach. */
const char *vxm_file_kind(const char *path);
/* Adds an existing descriptor (ownership passes to io). */
int vxm_io_add_fd(struct vxm_io *io, int fd, const char *path, unsigned flags);
/* Memory backends only: a file backed by buf.  With VXM_O_RDWR the bytes are
 * copied and the file may grow; read-only files borrow buf. */
int vxm_io_mem_add(struct vxm_io *io, const void *buf, size_t len, unsigned flags);
int vxm_io_close(struct vxm_io *io, int slot);
const char *vxm_io_path(const struct vxm_io *io, int slot);
int vxm_io_fd(const struct vxm_io *io, int slot); /* -1 for memory files */

int vxm_io_size(struct vxm_io *io, int slot, uint64_t *size);
int vxm_io_resize(struct vxm_io *io, int slot, uint64_t size);

int vxm_io_queue(struct vxm_io *io, struct vxm_req *req);
int vxm_io_submit(struct vxm_io *io);
int vxm_io_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max);

/* Synchronous helpers (nothing else may be in flight).
 * pread returns the bytes read (< len only at end of file) or -errno. */
int64_t vxm_io_pread(struct vxm_io *io, int slot, void *buf, uint64_t len, uint64_t off);
/* Writes all of buf; 0 or -errno. */
int vxm_io_pwrite(struct vxm_io *io, int slot, const void *buf, uint64_t len, uint64_t off);
/* Named durability point (O3): fdatasync, or fsync when full. */
int vxm_io_sync(struct vxm_io *io, int slot, const char *tag, bool full);

/* Registers buffers for fixed-buffer I/O (io_uring READ_FIXED/WRITE_FIXED);
 * replaces any earlier set, n == 0 unregisters.  Requests whose buffer lies
 * inside a registered range use it automatically.  Wrappers forward to their
 * lower context.  0, -EOPNOTSUPP when the backend has no such notion, or
 * -errno.  Call with nothing in flight. */
int vxm_io_register_bufs(struct vxm_io *io, void *const *bufs, const size_t *lens, unsigned n);

/* ---- copy offload ---------------------------------------------------------
 * Besides READ then WRITE through the pipeline, an extent can move between
 * files as CLONE (FICLONERANGE, shares blocks, needs the same
 * reflink-capable filesystem and block-aligned ranges) or COPY
 * (copy_file_range, the kernel moves the bytes; backends fall back to a
 * bounce buffer when the kernel refuses).  CLONE and COPY requests go
 * through vxm_io_queue() like any other and drain the requests queued
 * before them.  The merge executor clones where vxm_io_clone_supported()
 * said yes and ranges are multiples of vxm_io_fs_block(), else reads and
 * writes. */

/* 1 when CLONE from src to dst works (same filesystem, reflink support),
 * 0 when it does not, or -errno (-EBADF: bad slot or dst not writable).
 * Probes with a zero-length FICLONERANGE at src's end of file: src must not
 * be growing concurrently. */
int vxm_io_clone_supported(struct vxm_io *io, int dst, int src);
/* The filesystem block of slot (clone granularity): 0 for memory files. */
uint32_t vxm_io_fs_block(struct vxm_io *io, int slot);

/* ---- fault injection (io/fault.c) -----------------------------------------
 * vxm_io_fault_ops wraps any context (params.lower) and forwards every
 * request to it, except the ones it was armed to fail.  Countdowns count the
 * ops of one kind queued since the last vxm_fault_arm() (1-based).  After a
 * simulated crash (power loss) every later op, and every completion reaped
 * after it, ends with -VXM_ECRASHED (include/vhdxmerge.h).
 *
 * With recording on, every write (slot, offset, a copy of the bytes), sync
 * (slot, tag) and resize is logged in queue order.  A sync that completes
 * successfully before the crash makes the earlier records of its file
 * durable; the records after it are pending, and any subset of them may have
 * reached the disk.  vxm_fault_replay_crash() rebuilds one such state. */
struct vxm_fault {
	/* countdown error: fail the err_at-th op of kind err_op (once, or from
	 * err_at on when err_sticky) with -err_errno (0 means EIO) */
	uint8_t err_op;          /* enum vxm_io_op; 0 = off */
	unsigned err_at;
	bool err_sticky;
	int err_errno;           /* positive: EIO, ENOSPC, ... */
	/* short transfer: the short_at-th op of kind short_op (READ or WRITE)
	 * moves only short_len bytes (0: half) and completes with that count;
	 * the generic layer finishes it (O4) as a new op; an op no longer than
	 * short_len is left alone */
	uint8_t short_op;
	unsigned short_at;
	bool short_sticky;
	uint64_t short_len;
	/* power loss instead of the N-th write / N-th sync (0 = off) */
	unsigned crash_at_write;
	unsigned crash_at_sync;
	/* power loss at the crash_at_tag_nth-th (0 means first) sync tagged so */
	const char *crash_at_tag;
	unsigned crash_at_tag_nth;
};

enum vxm_fault_rec_kind {
	VXM_FAULT_REC_WRITE = 1,
	VXM_FAULT_REC_SYNC,
	VXM_FAULT_REC_RESIZE,
};

struct vxm_fault_rec {
	uint8_t kind;            /* enum vxm_fault_rec_kind */
	int file;                /* slot */
	uint64_t off, len;       /* WRITE: the range; RESIZE: off is the new size */
	const uint8_t *data;     /* WRITE: copy of the bytes (owned by the log) */
	const char *tag;         /* SYNC: durability point */
	bool full;               /* SYNC: fsync rather than fdatasync */
	bool failed;             /* completed with res < 0: never reached disk */
	bool synced;             /* SYNC: completed with 0 before any crash */
};

struct vxm_fault_counts {
	uint64_t reads, writes, syncs, resizes, clones, copies;
	uint64_t injected;       /* ops failed by a countdown */
	uint64_t shortened;      /* ops cut short */
};

/* Replaces the armed faults (f NULL disarms) and restarts the countdowns.
 * 0, or -EINVAL when io is not a fault context. */
int vxm_fault_arm(struct vxm_io *io, const struct vxm_fault *f);
/* Starts or stops the op log (off by default). */
int vxm_fault_record(struct vxm_io *io, bool on);
/* Clears the crash, the counters, the log and the armed faults. */
int vxm_fault_reset(struct vxm_io *io);
bool vxm_fault_crashed(const struct vxm_io *io);
/* Ops accepted since init/reset (ops refused after a crash not counted). */
int vxm_fault_counts(const struct vxm_io *io, struct vxm_fault_counts *out);
/* Syncs queued with tag since init/reset. */
uint64_t vxm_fault_tag_count(const struct vxm_io *io, const char *tag);
/* The log: *out points at n records valid until the next op or reset. */
size_t vxm_fault_recs(const struct vxm_io *io, const struct vxm_fault_rec **out);
/* Indices of the pending records (writes and resizes not covered by a
 * completed sync of their file), in log order.  Returns how many there are;
 * stores at most max of them. */
size_t vxm_fault_pending(const struct vxm_io *io, size_t *idx, size_t max);
/* Applies records [0, n) (writes and resizes, failed ones skipped) in log
 * order to dst; map[slot] names dst's slot for a recorded slot (NULL: the
 * same numbers).  dst: any context with nothing in flight.  0 or -errno. */
int vxm_fault_replay(const struct vxm_io *io, size_t n, struct vxm_io *dst, const int *map);
/* Rebuilds one crash state on dst: every durable record, plus pending record
 * k (the k-th index vxm_fault_pending() returns) when keep[k]; nkeep may be
 * less than the pending count (the rest are dropped).  Log order is kept. */
int vxm_fault_replay_crash(const struct vxm_io *io, const bool *keep, size_t nkeep,
			   struct vxm_io *dst, const int *map);

/* ---- NUMA topology (io/topo.c) ---------------------------------------------
 * Nodes are numbered 0..n-1 in hwloc's logical order; a machine without NUMA
 * (or a build without hwloc) is one node holding every CPU.  A synthetic
 * topology ("pack:2 numa:1 core:2 pu:1") describes an imaginary machine:
 * binding and placement are then computed but not applied. */
struct vxm_topo;

/* Discovers this machine (synthetic NULL) or builds the described one.
 * 0 or -errno (-EINVAL: bad synthetic string, -ENOSYS: no hwloc). */
int vxm_topo_open(struct vxm_topo **out, const char *synthetic);
void vxm_topo_close(struct vxm_topo *topo);
unsigned vxm_topo_nodes(const struct vxm_topo *topo);
/* True when the topology is the machine we run on (binding is real). */
bool vxm_topo_is_system(const struct vxm_topo *topo);
/* OS indexes of the CPUs (PUs) of node, ascending; returns how many there
 * are (storing at most max), or -EINVAL for a bad node. */
int vxm_topo_node_cpus(const struct vxm_topo *topo, unsigned node, unsigned *cpus, unsigned max);
/* The node holding CPU os index cpu, or -ENOENT. */
int vxm_topo_cpu_node(const struct vxm_topo *topo, unsigned cpu);
/* Binds the calling thread to node's CPUs (a no-op returning 0 on a
 * synthetic topology).  0 or -errno. */
int vxm_topo_bind_thread(const struct vxm_topo *topo, unsigned node);

/* Memory placed on a node: page aligned (2 MiB aligned and huge-page
 * advised from 2 MiB up), zero-filled, pages touched. */
struct vxm_topo_mem {
	void *p;
	size_t len;              /* as mapped: len rounded up */
	unsigned node;
	bool bound;              /* the kernel was told to keep it on node */
};
int vxm_topo_alloc(const struct vxm_topo *topo, unsigned node, size_t len,
		   struct vxm_topo_mem *out);
void vxm_topo_free(const struct vxm_topo *topo, struct vxm_topo_mem *m);
/* The node where the pages of [p, p+len) live, asked of the kernel:
 * node, -EXDEV when they span nodes, -ENOSYS on a synthetic topology. */
int vxm_topo_mem_node(const struct vxm_topo *topo, const void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif
