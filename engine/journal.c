/* engine/journal.c: the merge journal, a sidecar text file next to the
 * destination ("<DEST>.vxmerge-journal").
 *
 * Why a sidecar and not a user metadata item in D: the journal must survive
 * every phase, including the ones where D is finished and only children and
 * cleanup remain, and it must be readable without opening D; it is also the
 * record an administrator can read with `cat`.
 *
 * Commit protocol (git's lockfile): write "<journal>.lock" (O_EXCL), fsync
 * it, rename over the journal, fsync the directory.  A crash leaves the old
 * journal or the new one, never a torn one; a stale .lock from a killed run
 * is removed by the next one (the merge holds the file locks that make it
 * the only writer).
 *
 * Content: "key value" lines, first line "vhdxmerge-journal 1", last line
 * "end" (a file without it is refused).  Paths are absolute and never hold a
 * line break (save refuses them).  The reader is strict (see "reading").
 * "layer_target K PATH" (the file a symlinked layer K points to) is optional:
 * journals of runs without symlinks, and of older versions, have none.
 *
 * I1: the journal is written before the first change to any file of the
 *     merge and removed only after the last one is durable.
 * I2: a phase is recorded only after everything it names is durable.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const phase_names[] = {
	[VXM_JPHASE_PLANNED] = "planned",
	[VXM_JPHASE_LINKED] = "linked",
	[VXM_JPHASE_COPYING] = "copying",
	[VXM_JPHASE_COPIED] = "copied",
	[VXM_JPHASE_REPOINTED] = "repointed",
	[VXM_JPHASE_CLEANUP] = "cleanup",
};

const char *vxm_journal_phase_name(enum vxm_jphase p)
{
	return (unsigned)p < sizeof(phase_names) / sizeof(phase_names[0]) && phase_names[p]
		       ? phase_names[p]
		       : "unknown";
}

char *vxm_journal_path(const char *dest)
{
	char *p;
	if (asprintf(&p, "%s.vxmerge-journal", dest) < 0)
		return NULL;
	return p;
}

void vxm_journal_fini(struct vxm_journal *j)
{
	free(j->top);
	free(j->dest);
	free(j->out);
	for (unsigned i = 0; i < j->nlayers; i++) {
		free(j->layer_path[i]);
		free(j->layer_target[i]);
	}
	for (unsigned i = 0; i < j->nchildren; i++)
		free(j->child_path[i]);
	memset(j, 0, sizeof(*j));
}

void (*vxm_test_dirsync_hook)(const char *path);

int vxm_fsync_dir(const char *path)
{
	char *tmp = strdup(path);
	int fd, ret = 0;

	if (!tmp)
		return -ENOMEM;
	fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(tmp);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (!ret && vxm_test_dirsync_hook)
		vxm_test_dirsync_hook(path);
	return ret;
}

int vxm_journal_write(const struct vxm_journal *j, FILE *f)
{
	char g1[VXM_GUID_STRLEN + 1], g2[VXM_GUID_STRLEN + 1];

	fprintf(f, "vhdxmerge-journal 1\n");
	fprintf(f, "op %s\n", j->convert ? "convert" : "merge");
	fprintf(f, "phase %s\n", vxm_journal_phase_name(j->phase));
	fprintf(f, "seed %" PRIu64 "\n", j->seed);
	fprintf(f, "top %s\n", j->top);
	fprintf(f, "dest %s\n", j->dest);
	if (j->out)
		fprintf(f, "out %s\n", j->out);
	fprintf(f, "out_format %d\n", j->out_format);
	fprintf(f, "dest_index %d\n", j->dest_index);
	fprintf(f, "dest_orig_dwg %s\n", vxm_guid_fmt(&j->dest_orig_dwg, g1));
	fprintf(f, "dest_new_dwg %s\n", vxm_guid_fmt(&j->dest_new_dwg, g2));
	fprintf(f, "dest_orig_seq %" PRIu64 "\n", j->dest_orig_seq);
	fprintf(f, "alloc_base %" PRIu64 "\n", j->alloc_base);
	fprintf(f, "cursor %" PRIu64 "\n", j->cursor);
	fprintf(f, "alloc_next %" PRIu64 "\n", j->alloc_next);
	fprintf(f, "keep_merged %d\n", j->keep_merged);
	for (unsigned i = 0; i < j->nlayers; i++)
		fprintf(f, "layer %s %" PRIu64 " %s\n", vxm_guid_fmt(&j->layer_dwg[i], g1),
			j->layer_seq[i], j->layer_path[i]);
	for (unsigned i = 0; i < j->nlayers; i++)
		if (j->layer_target[i])
			fprintf(f, "layer_target %u %s\n", i, j->layer_target[i]);
	for (unsigned i = 0; i < j->nchildren; i++)
		fprintf(f, "child %s %" PRIu64 " %s\n", vxm_guid_fmt(&j->child_dwg[i], g1),
			j->child_seq[i], j->child_path[i]);
	fprintf(f, "end\n");
	return ferror(f) ? -EIO : 0;
}

/* A path is the rest of its line: a line break in it would end the line
 * and make what follows read as keys of their own. */
static bool jpath_ok(const char *p)
{
	return p && *p && !strchr(p, '\n');
}

int vxm_journal_save(const struct vxm_journal *j, const char *path, struct vxm_err *err)
{
	char *lock;
	int ret = 0;

	const char *bad = !jpath_ok(j->top) ? j->top : !jpath_ok(j->dest) ? j->dest
			  : j->out && !jpath_ok(j->out) ? j->out : NULL;
	bool missing = !j->top || !j->dest;
	for (unsigned i = 0; i < j->nlayers && !bad && !missing; i++) {
		if (!jpath_ok(j->layer_path[i]))
			missing = !(bad = j->layer_path[i]);
		else if (j->layer_target[i] && !jpath_ok(j->layer_target[i]))
			bad = j->layer_target[i];
	}
	for (unsigned i = 0; i < j->nchildren && !bad && !missing; i++)
		if (!jpath_ok(j->child_path[i]))
			missing = !(bad = j->child_path[i]);
	if (missing || bad) /* before the lock file: nothing is written */
		return vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				"%s: cannot record the path \"%s\" in the merge journal (one line per path)",
				path, bad ? bad : "(none)");
	const char *kind = vxm_file_kind(path);
	if (kind) /* the rename below would replace it */
		return vxm_fail(err, -VXM_ENOTFILE, VXM_OFF_NONE,
				"%s is %s, not a merge journal; remove it or move it away", path, kind);
	if (asprintf(&lock, "%s.lock", path) < 0)
		return -ENOMEM;
	unlink(lock); /* a stale lock of a killed run: we hold the file locks */
	int fd = open(lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot create: %s", lock, strerror(errno));
		free(lock);
		return ret;
	}
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(lock);
		free(lock);
		return -ENOMEM;
	}
	ret = vxm_journal_write(j, f);
	if (!ret && (fflush(f) != 0 || fsync(fd) < 0))
		ret = -errno;
	if (fclose(f) != 0 && !ret)
		ret = -errno;
	if (!ret) {
		vxm_killpoint("journal-write");
		if (rename(lock, path) < 0)
			ret = -errno;
	}
	if (!ret)
		ret = vxm_fsync_dir(path);
	if (ret) {
		unlink(lock);
		vxm_fail(err, ret, VXM_OFF_NONE, "%s: cannot write the merge journal: %s", path,
			 strerror(-ret));
	}
	free(lock);
	return ret;
}

/* ---- reading -------------------------------------------------------------
 *
 * Strict, because a resume acts on what the journal says: every key that
 * vxm_journal_write() writes must be there exactly once (layer and child
 * lines aside), with a value of its type and range, every line must end in
 * a newline, and "end" must be the last line.  An unknown key, a repeated
 * one, a line longer than JLINE_MAX or holding a NUL byte, a number with a
 * sign, spaces or too many digits: the journal is damaged. */

#define JLINE_MAX 8192 /* with the newline; a path is at most PATH_MAX */

enum jkey {
	K_OP, K_PHASE, K_SEED, K_TOP, K_DEST, K_OUT, K_OUT_FORMAT, K_DEST_INDEX,
	K_DEST_ORIG_DWG, K_DEST_NEW_DWG, K_DEST_ORIG_SEQ, K_ALLOC_BASE, K_CURSOR,
	K_ALLOC_NEXT, K_KEEP_MERGED, K_LAYER, K_LAYER_TARGET, K_CHILD, K_END, K_COUNT
};

static const char *const key_names[K_COUNT] = {
	[K_OP] = "op", [K_PHASE] = "phase", [K_SEED] = "seed", [K_TOP] = "top",
	[K_DEST] = "dest", [K_OUT] = "out", [K_OUT_FORMAT] = "out_format",
	[K_DEST_INDEX] = "dest_index", [K_DEST_ORIG_DWG] = "dest_orig_dwg",
	[K_DEST_NEW_DWG] = "dest_new_dwg", [K_DEST_ORIG_SEQ] = "dest_orig_seq",
	[K_ALLOC_BASE] = "alloc_base", [K_CURSOR] = "cursor", [K_ALLOC_NEXT] = "alloc_next",
	[K_KEEP_MERGED] = "keep_merged", [K_LAYER] = "layer",
	[K_LAYER_TARGET] = "layer_target", [K_CHILD] = "child", [K_END] = "end",
};

/* keys every journal has once (out: a convert's only) */
#define K_REQUIRED                                                                   \
	((1u << K_COUNT) - 1 - (1u << K_OUT) - (1u << K_LAYER) - (1u << K_LAYER_TARGET) - \
	 (1u << K_CHILD))

static int jphase(const char *s)
{
	for (unsigned i = 0; i < sizeof(phase_names) / sizeof(phase_names[0]); i++)
		if (phase_names[i] && !strcmp(s, phase_names[i]))
			return (int)i;
	return -1;
}

/* Unsigned decimal, digits only, no overflow. */
static bool ju64(const char *s, uint64_t *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*v = x;
	return true;
}

/* lo..hi, lo >= -1: "-1" or unsigned decimal. */
static bool jint(const char *s, int lo, int hi, int *v)
{
	uint64_t u;

	if (lo < 0 && !strcmp(s, "-1")) {
		*v = -1;
		return true;
	}
	if (!ju64(s, &u) || u > (uint64_t)hi || (int)u < lo)
		return false;
	*v = (int)u;
	return true;
}

static bool jguid(const char *s, struct vxm_guid *g)
{
	return vxm_guid_parse(s, strlen(s), g) == 0;
}

/* One line into buf without its newline: 1, 0 at the end of the file, or
 * -1 for a line that is too long, holds a NUL byte or has no newline (cut
 * short).  A read error shows in ferror(f). */
static int jline(FILE *f, char *buf, size_t cap, uint64_t *pos)
{
	size_t n = 0;
	int c;

	while ((c = getc(f)) != EOF && c != '\n') {
		if (!c || n + 2 > cap)
			return -1;
		buf[n++] = (char)c;
	}
	buf[n] = 0;
	*pos += n + (c == '\n');
	if (c == EOF)
		return n ? -1 : 0;
	return 1;
}

/* The value of one key into j; a message for what is wrong, or NULL.  -ENOMEM
 * lands in *ret. */
static const char *jvalue(struct vxm_journal *j, enum jkey k, char *val, int *ret)
{
	char **str = k == K_TOP ? &j->top : k == K_DEST ? &j->dest : k == K_OUT ? &j->out : NULL;
	uint64_t *u64 = k == K_SEED ? &j->seed : k == K_DEST_ORIG_SEQ ? &j->dest_orig_seq
			: k == K_ALLOC_BASE ? &j->alloc_base : k == K_CURSOR ? &j->cursor
			: k == K_ALLOC_NEXT ? &j->alloc_next : NULL;
	int p;

	if (str) {
		if (!*val)
			return "an empty path";
		if (!(*str = strdup(val)))
			*ret = -ENOMEM;
		return NULL;
	}
	if (u64)
		return ju64(val, u64) ? NULL : "not an unsigned decimal number";
	switch (k) {
	case K_OP:
		if (strcmp(val, "merge") && strcmp(val, "convert"))
			return "neither merge nor convert";
		j->convert = val[0] == 'c';
		return NULL;
	case K_PHASE:
		if ((p = jphase(val)) < 0)
			return "no such phase";
		j->phase = (enum vxm_jphase)p;
		return NULL;
	case K_OUT_FORMAT:
		return jint(val, VXM_OUT_VHDX, VXM_OUT_RAW, &j->out_format) ? NULL : "no such format";
	case K_DEST_INDEX:
		return jint(val, -1, VXM_CHAIN_MAX_DEPTH - 1, &j->dest_index) ? NULL
										 : "not a layer index";
	case K_KEEP_MERGED:
		return jint(val, 0, 1, &j->keep_merged) ? NULL : "neither 0 nor 1";
	case K_DEST_ORIG_DWG:
		return jguid(val, &j->dest_orig_dwg) ? NULL : "not a GUID";
	case K_DEST_NEW_DWG:
		return jguid(val, &j->dest_new_dwg) ? NULL : "not a GUID";
	case K_LAYER:
	case K_CHILD: {
		bool layer = k == K_LAYER;
		unsigned *cnt = layer ? &j->nlayers : &j->nchildren;
		char *sp1 = strchr(val, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
		struct vxm_guid g;
		uint64_t seq;
		if (*cnt >= VXM_JOURNAL_MAX)
			return "too many of them";
		if (!sp2 || !sp2[1])
			return "not \"GUID SEQUENCE PATH\"";
		*sp1 = *sp2 = 0;
		if (!jguid(val, &g) || !ju64(sp1 + 1, &seq))
			return "not \"GUID SEQUENCE PATH\"";
		char *path = strdup(sp2 + 1);
		if (!path) {
			*ret = -ENOMEM;
			return NULL;
		}
		(layer ? j->layer_dwg : j->child_dwg)[*cnt] = g;
		(layer ? j->layer_seq : j->child_seq)[*cnt] = seq;
		(layer ? j->layer_path : j->child_path)[*cnt] = path;
		(*cnt)++;
		return NULL;
	}
	case K_LAYER_TARGET: {
		/* after the "layer" line it names */
		char *sp = strchr(val, ' ');
		uint64_t k;
		if (!sp || !sp[1])
			return "not \"LAYER PATH\"";
		*sp = 0;
		if (!ju64(val, &k) || k >= j->nlayers)
			return "not the index of a layer before it";
		if (j->layer_target[k])
			return "a layer given two targets";
		if (!(j->layer_target[k] = strdup(sp + 1)))
			*ret = -ENOMEM;
		return NULL;
	}
	case K_END:
		return *val ? "text after \"end\"" : NULL;
	default:
		return "unexpected";
	}
}

int vxm_journal_read(struct vxm_journal *j, FILE *f, const char *name, struct vxm_err *err)
{
	static const char *const damaged =
		"the merge journal is damaged; remove it only after checking the files with `vhdxmerge check`";
	char *line = malloc(JLINE_MAX);
	const char *why = NULL;
	uint64_t pos = 0, at = 0;
	unsigned lineno = 0, seen = 0;
	int ret = 0, r;

	memset(j, 0, sizeof(*j));
	if (!line)
		return vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
	while (!ret && !why && (at = pos, r = jline(f, line, JLINE_MAX, &pos)) != 0) {
		lineno++;
		if (r < 0) {
			why = "a line too long, not text, or cut short";
			break;
		}
		if (seen & (1u << K_END)) {
			why = "text after \"end\"";
			break;
		}
		if (lineno == 1) {
			if (strcmp(line, "vhdxmerge-journal 1"))
				why = "not a vhdxmerge journal of version 1";
			continue;
		}
		char *val = strchr(line, ' ');
		if (val)
			*val++ = 0;
		else
			val = line + strlen(line);
		unsigned k = 0;
		while (k < K_COUNT && strcmp(line, key_names[k]))
			k++;
		if (k == K_COUNT) {
			why = "an unknown key";
		} else if (k != K_LAYER && k != K_LAYER_TARGET && k != K_CHILD && (seen & (1u << k))) {
			why = "a key given twice";
		} else {
			seen |= 1u << k;
			why = jvalue(j, (enum jkey)k, val, &ret);
		}
	}
	free(line);
	if (ferror(f) && !ret) {
		ret = -EIO;
		why = NULL;
	}
	char where[32], missing[48];
	snprintf(where, sizeof(where), "line %u", lineno);
	if (!ret && !why) {
		/* what the writer always writes, and how the fields go together */
		unsigned k = 0;
		while (k < K_COUNT && !(~seen & K_REQUIRED & (1u << k)))
			k++;
		snprintf(where, sizeof(where), "the end");
		at = pos;
		if (!(seen & (1u << K_END)))
			why = "no \"end\" line (cut short?)";
		else if (k < K_COUNT)
			why = (snprintf(missing, sizeof(missing), "no \"%s\" line", key_names[k]), missing);
		else if (j->convert != !!j->out || j->convert != (j->dest_index < 0))
			why = "op, out and dest_index disagree";
		else if (!j->nlayers)
			why = "no layer";
	}
	if (!ret && !why)
		return 0;
	vxm_journal_fini(j);
	if (ret == -ENOMEM)
		return vxm_fail(err, ret, VXM_OFF_NONE, "out of memory");
	if (ret)
		return vxm_fail(err, ret, VXM_OFF_NONE, "%s: cannot read the merge journal: %s", name,
				strerror(-ret));
	return vxm_fail(err, -VXM_ECORRUPT, at, "%s: %s: %s: %s", name, where, why, damaged);
}

int vxm_journal_load(struct vxm_journal *j, const char *path, struct vxm_err *err)
{
	const char *kind = NULL;
	int ret;

	memset(j, 0, sizeof(*j));
	/* journals are looked for by name: a FIFO so named must not block */
	int fd = vxm_file_open(path, VXM_O_RDONLY, &kind);
	if (fd == -VXM_ENOTFILE)
		return vxm_fail(err, fd, VXM_OFF_NONE,
				"%s is %s, not a merge journal; remove it or move it away", path, kind);
	if (fd < 0)
		return fd;
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	ret = vxm_journal_read(j, f, path, err);
	fclose(f);
	return ret;
}

int vxm_journal_remove(const char *path, struct vxm_err *err)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot remove: %s", path, strerror(errno));
	return vxm_fsync_dir(path);
}
