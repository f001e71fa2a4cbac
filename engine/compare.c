/* engine/compare.c: do two disks read the same?
 *
 * The check a user runs after a merge or a convert ("verify", users.md
 * item 8), so it must not share the code it checks: it never looks at a
 * plan, a BAT diff or an extent.  Each side is a byte source:
 *
 *   VHDX  first 8 bytes "vhdxfile": vxm_chain_open(path) (a base is a
 *         chain of one) and vxm_chain_read, the same sector reader every
 *         consumer of the virtual disk uses;
 *   raw   anything else: the file's bytes as stored (vxm_io_pread).
 *
 * Both are read front to back in chunks (4 MiB by default, one buffer per
 * side) over the common range [0, min(size_a, size_b)), compared with
 * memcmp, and, in the first chunk that differs, narrowed to the byte.
 *
 * I1: nothing is opened writable; a dirty log is replayed in memory only.
 * I2: a VHDX side is read in whole logical sectors: a chunk's length is
 *     rounded up to the sector, which never passes the side's virtual size
 *     (chunk offsets are multiples of 4 KiB, virtual sizes of the sector).
 * I3: sizes that differ are a difference by themselves; the common range is
 *     still compared so the report names the first differing byte when
 *     there is one, else the offset where the shorter side ends.
 * I4: memory is two chunk buffers and the chains' BAT windows, whatever
 *     the disk size.
 */
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMP_CHUNK_DEFAULT (4u * 1024 * 1024)
#define CMP_ALIGN 4096u

struct side {
	const char *path;
	struct vxm_chain *chain; /* VHDX */
	int slot;                /* raw: slot in the shared io, else -1 */
	uint64_t size;
	uint32_t lss;            /* VHDX: logical sector size */
};

/* Raw files report st_size; a block device reports 0 there, so ask the
 * device for its end. */
static int raw_size(struct vxm_io *io, int slot, uint64_t *size)
{
	int ret = vxm_io_size(io, slot, size);
	int fd = vxm_io_fd(io, slot);
	struct stat st;

	if (ret || *size || fd < 0)
		return ret;
	if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0)
			return -errno;
		*size = (uint64_t)end;
	}
	return 0;
}

/* Opens path as a VHDX chain or a raw file (see the note at the top). */
static int side_open(struct side *s, const char *path, struct vxm_io *io,
		     const struct vxm_chain_opts *co, struct vxm_err *err)
{
	uint8_t sig[VXM_IDENT_USED];
	int64_t n;
	int ret;

	memset(s, 0, sizeof(*s));
	s->path = path;
	s->slot = vxm_io_open(io, path, VXM_O_RDONLY);
	if (s->slot < 0) {
		ret = vxm_fail(err, s->slot, VXM_OFF_NONE, "cannot open: %s", vxm_strerror(s->slot));
		goto out_path;
	}
	n = vxm_io_pread(io, s->slot, sig, sizeof(sig), 0);
	if (n < 0) {
		ret = vxm_fail(err, (int)n, 0, "cannot read: %s", vxm_strerror((int)n));
		goto out_close;
	}
	if (vxm_ident_parse(sig, (size_t)n, NULL, 0, NULL) == 0) {
		vxm_io_close(io, s->slot);
		s->slot = -1;
		/* vxm_chain_open names the file at fault itself. */
		ret = vxm_chain_open(&s->chain, path, co, err);
		if (ret)
			return ret;
		s->size = vxm_chain_virtual_size(s->chain);
		s->lss = vxm_chain_sector_size(s->chain);
		return 0;
	}
	ret = raw_size(io, s->slot, &s->size);
	if (ret) {
		ret = vxm_fail(err, ret, VXM_OFF_NONE, "cannot size: %s", vxm_strerror(ret));
		goto out_close;
	}
	return 0;

out_close:
	vxm_io_close(io, s->slot);
	s->slot = -1;
out_path:
	vxm_err_path(err, path);
	return ret;
}

static void side_close(struct side *s, struct vxm_io *io)
{
	if (s->chain)
		vxm_chain_close(s->chain);
	if (s->slot >= 0)
		vxm_io_close(io, s->slot);
	s->chain = NULL;
	s->slot = -1;
}

/* Reads len bytes at off (off a multiple of CMP_ALIGN, off + len within
 * the side); buf holds at least len rounded up to CMP_ALIGN. */
static int side_read(struct side *s, struct vxm_io *io, uint8_t *buf, uint64_t len, uint64_t off,
		     struct vxm_err *err)
{
	if (s->chain) {
		/* I2: whole sectors; the rounded length stays inside the disk. */
		uint64_t rlen = (len + s->lss - 1) / s->lss * s->lss;
		return vxm_chain_read(s->chain, buf, rlen, off, err);
	}
	while (len) {
		int64_t n = vxm_io_pread(io, s->slot, buf, len, off);
		if (n < 0) {
			vxm_fail(err, (int)n, off, "read of %llu bytes at 0x%llx failed: %s",
				 (unsigned long long)len, (unsigned long long)off,
				 vxm_strerror((int)n));
			vxm_err_path(err, s->path);
			return (int)n;
		}
		if (n == 0) {
			vxm_fail(err, -EIO, off, "the file ended at 0x%llx during the comparison",
				 (unsigned long long)off);
			vxm_err_path(err, s->path);
			return -EIO;
		}
		buf += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

/* Index of the first byte where a and b differ (they are known to). */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t i = 0;

	/* Narrow by 4 KiB memcmp first, then word by word, then bytes. */
	while (n - i > CMP_ALIGN && !memcmp(a + i, b + i, CMP_ALIGN))
		i += CMP_ALIGN;
	while (n - i >= 8) {
		uint64_t x, y;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
			break;
		i += 8;
	}
	while (i < n && a[i] == b[i])
		i++;
	return i;
}

static void describe(struct vxm_compare_side *d, const struct side *s)
{
	d->raw = !s->chain;
	d->depth = s->chain ? vxm_chain_depth(s->chain) : 0;
	d->size = s->size;
	d->sector_size = s->chain ? s->lss : 0;
}

int vxm_compare_with(const char *a, const char *b, const struct vxm_compare_opts *o,
		     struct vxm_compare_result *r, struct vxm_err *err)
{
	static const struct vxm_compare_opts defaults = { .chunk = 0 };
	struct vxm_chain_opts co;
	struct side sa, sb;
	struct vxm_io *io;
	bool own_io = false;
	uint8_t *ba, *bb;
	uint32_t chunk;
	int ret;

	if (!o)
		o = &defaults;
	memset(r, 0, sizeof(*r));
	r->first_difference = VXM_OFF_NONE;
	chunk = o->chunk ? o->chunk : CMP_CHUNK_DEFAULT;
	if (chunk % CMP_ALIGN)
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"compare: chunk of %u bytes is not a multiple of %u", chunk, CMP_ALIGN);

	/* One I/O context for both sides and every layer of their chains. */
	co = o->chain;
	io = co.io;
	if (!io) {
		io = calloc(1, sizeof(*io));
		if (!io)
			return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
		ret = vxm_io_init(io, NULL, NULL);
		if (ret) {
			free(io);
			return vxm_fail(err, ret, VXM_OFF_NONE, "I/O setup failed: %s",
					vxm_strerror(ret));
		}
		own_io = true;
		co.io = io;
	}
	co.image_flags &= ~(unsigned)VXM_IMAGE_RDWR; /* I1 */

	ret = side_open(&sa, a, io, &co, err);
	if (ret)
		goto out_io;
	ret = side_open(&sb, b, io, &co, err);
	if (ret)
		goto out_close_a;
	ba = aligned_alloc(CMP_ALIGN, chunk);
	bb = aligned_alloc(CMP_ALIGN, chunk);
	if (!ba || !bb) {
		ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory (2 x %u bytes)", chunk);
		goto out_free;
	}

	describe(&r->a, &sa);
	describe(&r->b, &sb);
	r->size_a = sa.size;
	r->size_b = sb.size;
	r->size_differs = sa.size != sb.size;
	r->sector_size = sa.chain ? sa.lss : sb.chain ? sb.lss : 512;

	uint64_t common = sa.size < sb.size ? sa.size : sb.size;
	for (uint64_t off = 0; off < common;) {
		uint64_t n = common - off < chunk ? common - off : chunk;
		ret = side_read(&sa, io, ba, n, off, err);
		if (ret)
			goto out_free;
		ret = side_read(&sb, io, bb, n, off, err);
		if (ret)
			goto out_free;
		if (memcmp(ba, bb, n)) {
			size_t i = first_diff(ba, bb, n);
			r->differ_in_common = true;
			r->first_difference = off + i;
			r->bytes_compared = off + i + 1;
			break;
		}
		off += n;
		r->bytes_compared = off;
		if (o->progress) {
			ret = o->progress(o->progress_ctx, off, common);
			if (ret)
				goto out_free;
		}
	}
	if (!r->differ_in_common && r->size_differs)
		r->first_difference = common; /* I3 */
	r->same = !r->differ_in_common && !r->size_differs;
	ret = 0;

out_free:
	free(ba);
	free(bb);
	side_close(&sb, io);
out_close_a:
	side_close(&sa, io);
out_io:
	if (own_io) {
		vxm_io_fini(io);
		free(io);
	}
	return ret;
}

int vxm_compare(const char *a, const char *b, const struct vxm_chain_opts *o,
		struct vxm_compare_result *r, struct vxm_err *err)
{
	struct vxm_compare_opts co = { .chunk = 0 };

	if (o)
		co.chain = *o;
	return vxm_compare_with(a, b, &co, r, err);
}
