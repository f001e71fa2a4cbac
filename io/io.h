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
 * Errors: functions return 0 (or a count where stated) or -errno; request
 * results are in req->res.  This module knows nothing of VHDX.
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
};

enum vxm_io_backend_flags {
	VXM_IO_ASYNC = 1u << 0,      /* requests complete after queue() returns */
	VXM_IO_FIXED_BUFS = 1u << 1, /* register_bufs is meaningful */
	VXM_IO_MEMFILES = 1u << 2,   /* files live in memory (vxm_io_mem_add) */
	VXM_IO_WRAPPER = 1u << 3,    /* forwards to a lower context */
};

enum vxm_open_flags {
	VXM_O_RDONLY = 0,
	VXM_O_RDWR = 1u << 0,
	VXM_O_CREATE = 1u << 1,  /* create; fails if it exists (O_EXCL) */
	VXM_O_TRUNC = 1u << 2,
	VXM_O_DIRECT = 1u << 3,  /* try O_DIRECT; fall back with a log line */
};

struct vxm_io_stats {
	uint64_t bytes_read, bytes_written, bytes_cloned, bytes_copied;
	uint64_t reads, writes, syncs, clones, copies;
	unsigned max_inflight;
	uint64_t wait_ns;     /* time spent blocked in reap */
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
};

struct vxm_io_params {
	unsigned queue_depth;  /* 0: backend default */
	unsigned workers;      /* psync threads; 0: default */
	const char *backend;   /* "auto", "uring", "psync", "mem"; NULL = auto */
	void (*log)(void *ctx, const char *line); /* one-line notices; may be NULL */
	void *log_ctx;
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
extern const struct vxm_io_ops vxm_io_psync_ops;
extern const struct vxm_io_ops vxm_io_mem_ops;

/* Registry of backends by name ("auto" picks the best that initialises). */
const struct vxm_io_ops *vxm_io_backend(const char *name);

/* Sets up io with ops (NULL: chosen by p->backend).  Returns 0 or -errno. */
int vxm_io_init(struct vxm_io *io, const struct vxm_io_ops *ops, const struct vxm_io_params *p);
/* Closes every file and releases the backend. */
void vxm_io_fini(struct vxm_io *io);

/* Opens path; returns the slot (>= 0) or -errno. */
int vxm_io_open(struct vxm_io *io, const char *path, unsigned flags);
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

#ifdef __cplusplus
}
#endif
#endif
