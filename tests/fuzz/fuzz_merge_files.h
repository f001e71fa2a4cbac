/* tests/fuzz/fuzz_merge_files.h: the file side of fuzz_merge.c: a scratch
 * directory, an inline I/O backend, and byte-for-byte comparisons of the
 * directory with what the harness wrote there.
 *
 * vxm_merge_run works on paths (locks, journal, the convert's rename, the
 * removal of merged files, parents found through their locators), so the
 * memory backend (io/mem.c: files without paths) cannot carry it.  The files
 * live in a per-process directory on tmpfs (/dev/shm, else $TMPDIR or /tmp),
 * and every I/O of a run goes through one context (vxm_merge_opts.io) whose
 * backend does each request inside queue() with pread/pwrite: no threads, no
 * io_uring set-up per call, the same as tests/engine/crashlib.h's.
 */
#ifndef VXM_FUZZ_MERGE_FILES_H
#define VXM_FUZZ_MERGE_FILES_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"

/* ---- the inline backend ------------------------------------------------------ */

struct fm_q {
	struct vxm_req *head, *tail;
};

static int fm_inl_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)p;
	io->priv = calloc(1, sizeof(struct fm_q));
	return io->priv ? 0 : -ENOMEM;
}

static void fm_inl_fini(struct vxm_io *io)
{
	free(io->priv);
	io->priv = NULL;
}

static int fm_inl_size(struct vxm_io *io, int slot, uint64_t *size)
{
	struct stat st;
	if (fstat(io->files[slot].fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int fm_inl_resize(struct vxm_io *io, int slot, uint64_t size)
{
	return ftruncate(io->files[slot].fd, (off_t)size) < 0 ? -errno : 0;
}

static int64_t fm_rw(int fd, bool wr, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t done = 0;
	while (done < len) {
		ssize_t n = wr ? pwrite(fd, buf + done, len - done, (off_t)(off + done))
			       : pread(fd, buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break; /* end of file (reads) */
		done += (uint64_t)n;
	}
	return (int64_t)done;
}

static int fm_inl_queue(struct vxm_io *io, struct vxm_req *req)
{
	struct fm_q *q = io->priv;
	int fd = io->files[req->file].fd;

	switch (req->op) {
	case VXM_IO_READ:
	case VXM_IO_WRITE:
		req->res = fm_rw(fd, req->op == VXM_IO_WRITE, req->buf, req->len, req->off);
		break;
	case VXM_IO_SYNC:
		req->res = 0; /* tmpfs: nothing to make durable */
		break;
	case VXM_IO_COPY: {
		static uint8_t *b;
		int sfd = io->files[req->src_file].fd;
		if (!b)
			b = malloc(1 << 20);
		req->res = b ? 0 : -ENOMEM;
		for (uint64_t o = 0; b && o < req->len && req->res >= 0;) {
			uint64_t n = req->len - o < (1 << 20) ? req->len - o : (1 << 20);
			int64_t r = fm_rw(sfd, false, b, n, req->src_off + o);
			if (r == (int64_t)n)
				r = fm_rw(fd, true, b, n, req->off + o);
			if (r != (int64_t)n)
				req->res = r < 0 ? r : -EIO;
			o += n;
		}
		if (req->res >= 0)
			req->res = (int64_t)req->len;
		break;
	}
	default:
		req->res = -EOPNOTSUPP;
	}
	req->link = NULL;
	if (q->tail)
		q->tail->link = req;
	else
		q->head = req;
	q->tail = req;
	return 0;
}

static int fm_inl_submit(struct vxm_io *io)
{
	(void)io;
	return 0;
}

static int fm_inl_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct fm_q *q = io->priv;
	unsigned n = 0;
	(void)min;
	while (n < max && q->head) {
		done[n++] = q->head;
		q->head = q->head->link;
		if (!q->head)
			q->tail = NULL;
	}
	return (int)n;
}

static const struct vxm_io_ops fm_inline_ops = {
	.name = "inline",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_WHOLE,
	.init = fm_inl_init,
	.fini = fm_inl_fini,
	.file_size = fm_inl_size,
	.file_resize = fm_inl_resize,
	.queue = fm_inl_queue,
	.submit = fm_inl_submit,
	.reap = fm_inl_reap,
};

/* Slots of io still open (the engine closes every file it opened). */
static unsigned fm_open_slots(const struct vxm_io *io)
{
	unsigned n = 0;
	for (unsigned i = 0; i < io->nfiles; i++)
		n += io->files[i].used;
	return n;
}

/* ---- the scratch directory ------------------------------------------------------ */

static char fm_dir[512];

static void fm_path(char *out, size_t cap, const char *name)
{
	if ((size_t)snprintf(out, cap, "%s/%s", fm_dir, name) >= cap)
		abort(); /* the names are the harness's own, the directory short */
}

/* Removes every file but those named in keep[0..nkeep). */
static void fm_dir_clear(const char *const *keep, unsigned nkeep)
{
	DIR *d = opendir(fm_dir);
	struct dirent *e;
	char path[1024];

	if (!d)
		return;
	while ((e = readdir(d))) {
		bool kept = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
		for (unsigned i = 0; i < nkeep && !kept; i++)
			kept = !strcmp(e->d_name, keep[i]);
		if (kept)
			continue;
		fm_path(path, sizeof(path), e->d_name);
		unlink(path);
	}
	closedir(d);
}

static void fm_dir_remove(void)
{
	if (!fm_dir[0] || getenv("VXM_FUZZ_KEEP"))
		return;
	fm_dir_clear(NULL, 0);
	rmdir(fm_dir);
}

static void fm_dir_make(void)
{
	const char *bases[3] = { "/dev/shm", getenv("TMPDIR"), "/tmp" };
	for (int i = 0; i < 3; i++) {
		if (!bases[i] || access(bases[i], W_OK))
			continue;
		snprintf(fm_dir, sizeof(fm_dir), "%s/vxm-fuzz-merge.%d.XXXXXX", bases[i], (int)getpid());
		if (mkdtemp(fm_dir)) {
			atexit(fm_dir_remove);
			return;
		}
	}
	fprintf(stderr, "fuzz_merge: no writable scratch directory\n");
	abort();
}

#define FM_PIECE 65536

/* A file as the harness wrote it: nz[k] says whether piece k (FM_PIECE
 * bytes) holds a non-zero byte (written) or not (left a hole). */
struct fm_blob {
	const char *name;
	const uint8_t *p;
	size_t len;
	uint8_t *nz;
};

struct fm_snap {
	unsigned n;
	struct fm_blob f[8];
	bool touched[8];            /* an inotify event named the file */
};

/* ---- watching the directory ---------------------------------------------------
 * Reading back every file after every operation cost as much as the merge.
 * Every way this program changes a file (write, pwrite, io_uring writes,
 * copy_file_range, truncate, create, unlink, rename) raises an inotify
 * event naming it, and nothing writes through a shared mapping, so a file
 * no event named since the harness wrote it still holds those bytes; the
 * others are compared byte for byte.  Without inotify (or when the queue
 * overflowed) every file is compared.  The replay build (no libFuzzer)
 * always compares every byte. */
static int fm_ino = -1;
static bool fm_ino_broken;

static void fm_watch_drain(struct fm_snap *s)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;
	if (fm_ino < 0) {
		fm_ino_broken = true;
		return;
	}
	while ((n = read(fm_ino, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				fm_ino_broken = true;
			for (unsigned i = 0; s && ev->len && i < s->n; i++)
				if (!strcmp(ev->name, s->f[i].name))
					s->touched[i] = true;
			p += sizeof(*ev) + ev->len;
		}
	}
}

/* From now on, events count against s's files. */
static void fm_watch_start(struct fm_snap *s)
{
#ifdef FZ_LIBFUZZER
	if (fm_ino < 0 && !fm_ino_broken) {
		fm_ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (fm_ino < 0 || inotify_add_watch(fm_ino, fm_dir, IN_MODIFY | IN_ATTRIB | IN_CREATE |
									 IN_DELETE | IN_MOVED_FROM |
									 IN_MOVED_TO) < 0)
			fm_ino_broken = true;
	}
#endif
	fm_watch_drain(NULL);
	fm_ino_broken = fm_ino < 0;
	memset(s->touched, 0, sizeof(s->touched));
}

/* Does piece k of p[0..len) hold a non-zero byte? */
static bool fm_piece_nz(const uint8_t *p, size_t len, size_t k)
{
	size_t o = k * FM_PIECE, n = len - o < FM_PIECE ? len - o : FM_PIECE;
	/* all zero: the first byte is, and every byte equals the next */
	return o < len && (p[o] || memcmp(p + o, p + o + 1, n - 1));
}

/* The piece map of p[0..len) (malloc'd). */
static uint8_t *fm_nonzero(const uint8_t *p, size_t len)
{
	uint8_t *nz = malloc(len / FM_PIECE + 1);
	if (!nz)
		abort();
	for (size_t k = 0; k <= len / FM_PIECE; k++)
		nz[k] = fm_piece_nz(p, len, k);
	return nz;
}

/* Writes b->name from b->nz: all of it (pieces NULL: a new file, zero
 * pieces left as holes, the images being mostly zeros), or only the pieces
 * k with pieces[k] set (the file holds the right bytes elsewhere). */
static void fm_write_file(const struct fm_blob *b, const uint8_t *pieces)
{
	char path[1024];
	fm_path(path, sizeof(path), b->name);
	int fd = open(path, O_WRONLY | O_CREAT | (pieces ? 0 : O_TRUNC) | O_CLOEXEC, 0644);
	if (fd < 0 || (pieces && ftruncate(fd, (off_t)b->len))) {
		perror(path);
		abort();
	}
	for (size_t o = 0, k = 0; o < b->len; o += FM_PIECE, k++) {
		size_t n = b->len - o < FM_PIECE ? b->len - o : FM_PIECE;
		if (pieces ? !pieces[k] : !b->nz[k])
			continue;
		if (pwrite(fd, b->p + o, n, (off_t)o) != (ssize_t)n) {
			perror(path);
			abort();
		}
	}
	if (!pieces && ftruncate(fd, (off_t)b->len)) {
		perror(path);
		abort();
	}
	close(fd);
}

/* Are [from, to) of b all zero? */
static bool fm_blob_zero(const struct fm_blob *b, uint64_t from, uint64_t to, uint64_t *at)
{
	for (uint64_t o = from; o < to;) {
		uint64_t k = o / FM_PIECE, end = (k + 1) * FM_PIECE < to ? (k + 1) * FM_PIECE : to;
		if (b->nz[k])
			for (uint64_t i = o; i < end; i++)
				if (b->p[i]) {
					*at = i;
					return false;
				}
		o = end;
	}
	return true;
}

/* Is the file b->name exactly b's bytes?  *at receives the first differing
 * offset (or the smaller size when the sizes differ); -1: missing.  Only the
 * file's data extents are read (SEEK_DATA): its holes must be zeros in b,
 * which the piece map mostly answers without looking. */
static int fm_file_same(const struct fm_blob *b, uint64_t *at)
{
	static uint8_t *buf;
	const size_t chunk = 1 << 20;
	char path[1024];
	struct stat st;
	fm_path(path, sizeof(path), b->name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (!buf && !(buf = malloc(chunk)))
		abort();
	*at = 0;
	if (fstat(fd, &st) || (uint64_t)st.st_size != b->len) {
		*at = (uint64_t)st.st_size < b->len ? (uint64_t)st.st_size : b->len;
		close(fd);
		return 0;
	}
	int same = 1;
	uint64_t off = 0, len = b->len;
	while (off < len && same) {
		off_t d = lseek(fd, (off_t)off, SEEK_DATA);
		uint64_t data = d < 0 ? len : (uint64_t)d;
		if (!fm_blob_zero(b, off, data, at)) {
			same = 0;
			break;
		}
		if (data >= len)
			break;
		off_t h = lseek(fd, (off_t)data, SEEK_HOLE);
		uint64_t hole = h < 0 || (uint64_t)h > len ? len : (uint64_t)h;
		for (uint64_t o = data; o < hole && same; o += chunk) {
			size_t n = hole - o < chunk ? (size_t)(hole - o) : chunk;
			if (fm_rw(fd, false, buf, n, o) != (int64_t)n) {
				perror(path);
				abort();
			}
			if (memcmp(buf, b->p + o, n)) {
				*at = o;
				while (buf[*at - o] == b->p[*at])
					(*at)++;
				same = 0;
			}
		}
		off = hole;
	}
	close(fd);
	return same;
}

/* Does the directory hold exactly the files of s (skip: a name allowed to
 * exist besides them, NULL for none)?  On a difference, why says which file
 * and where. */
static bool fm_dir_same(struct fm_snap *s, const char *skip, char *why, size_t cap)
{
	fm_watch_drain(s);
	DIR *d = opendir(fm_dir);
	struct dirent *e;
	bool ok = true;

	if (!d)
		abort();
	while (ok && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (skip && !strcmp(e->d_name, skip))
			continue;
		bool known = false;
		for (unsigned i = 0; i < s->n; i++)
			known |= !strcmp(s->f[i].name, e->d_name);
		if (!known) {
			snprintf(why, cap, "%.200s was created", e->d_name);
			ok = false;
		}
	}
	closedir(d);
	for (unsigned i = 0; i < s->n && ok; i++) {
		uint64_t at;
		if (!s->touched[i] && !fm_ino_broken)
			continue;
		int r = fm_file_same(&s->f[i], &at);
		if (r < 0)
			snprintf(why, cap, "%s was removed", s->f[i].name);
		else if (!r)
			snprintf(why, cap, "%s changed at file offset 0x%llx (%zu bytes before)",
				 s->f[i].name, (unsigned long long)at, s->f[i].len);
		ok = r > 0;
	}
	return ok;
}

#endif
