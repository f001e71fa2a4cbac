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
 * "end" (a file without it is refused).  Paths are absolute.
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
	for (unsigned i = 0; i < j->nlayers; i++)
		free(j->layer_path[i]);
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

int vxm_journal_save(const struct vxm_journal *j, const char *path, struct vxm_err *err)
{
	char *lock;
	char g1[VXM_GUID_STRLEN + 1], g2[VXM_GUID_STRLEN + 1];
	int ret = 0;

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
		free(lock);
		return -ENOMEM;
	}
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
	for (unsigned i = 0; i < j->nchildren; i++)
		fprintf(f, "child %s %" PRIu64 " %s\n", vxm_guid_fmt(&j->child_dwg[i], g1),
			j->child_seq[i], j->child_path[i]);
	fprintf(f, "end\n");
	if (fflush(f) != 0 || fsync(fd) < 0)
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

static int jphase(const char *s)
{
	for (unsigned i = 0; i < sizeof(phase_names) / sizeof(phase_names[0]); i++)
		if (phase_names[i] && !strcmp(s, phase_names[i]))
			return (int)i;
	return -1;
}

int vxm_journal_load(struct vxm_journal *j, const char *path, struct vxm_err *err)
{
	FILE *f = fopen(path, "r");
	char line[8192];
	bool ended = false, first = true;
	int ret = 0;

	memset(j, 0, sizeof(*j));
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strlen(line);
		if (n && line[n - 1] == '\n')
			line[--n] = 0;
		char *val = strchr(line, ' ');
		if (val)
			*val++ = 0;
		else
			val = line + n;
		if (first) {
			first = false;
			if (strcmp(line, "vhdxmerge-journal") || strcmp(val, "1")) {
				ret = -VXM_ECORRUPT;
				break;
			}
			continue;
		}
		if (!strcmp(line, "end")) {
			ended = true;
		} else if (!strcmp(line, "op")) {
			j->convert = !strcmp(val, "convert");
		} else if (!strcmp(line, "phase")) {
			int p = jphase(val);
			if (p < 0) {
				ret = -VXM_ECORRUPT;
				break;
			}
			j->phase = (enum vxm_jphase)p;
		} else if (!strcmp(line, "seed")) {
			j->seed = strtoull(val, NULL, 10);
		} else if (!strcmp(line, "top")) {
			j->top = strdup(val);
		} else if (!strcmp(line, "dest")) {
			j->dest = strdup(val);
		} else if (!strcmp(line, "out")) {
			j->out = strdup(val);
		} else if (!strcmp(line, "out_format")) {
			j->out_format = atoi(val);
		} else if (!strcmp(line, "dest_index")) {
			j->dest_index = atoi(val);
		} else if (!strcmp(line, "dest_orig_dwg")) {
			ret = vxm_guid_parse(val, strlen(val), &j->dest_orig_dwg);
		} else if (!strcmp(line, "dest_new_dwg")) {
			ret = vxm_guid_parse(val, strlen(val), &j->dest_new_dwg);
		} else if (!strcmp(line, "dest_orig_seq")) {
			j->dest_orig_seq = strtoull(val, NULL, 10);
		} else if (!strcmp(line, "alloc_base")) {
			j->alloc_base = strtoull(val, NULL, 10);
		} else if (!strcmp(line, "cursor")) {
			j->cursor = strtoull(val, NULL, 10);
		} else if (!strcmp(line, "alloc_next")) {
			j->alloc_next = strtoull(val, NULL, 10);
		} else if (!strcmp(line, "keep_merged")) {
			j->keep_merged = atoi(val);
		} else if (!strcmp(line, "layer") || !strcmp(line, "child")) {
			bool layer = line[0] == 'l';
			unsigned *cnt = layer ? &j->nlayers : &j->nchildren;
			char *sp1 = strchr(val, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
			if (!sp1 || !sp2 || *cnt >= VXM_JOURNAL_MAX) {
				ret = -VXM_ECORRUPT;
				break;
			}
			*sp1 = *sp2 = 0;
			struct vxm_guid g;
			if (vxm_guid_parse(val, strlen(val), &g)) {
				ret = -VXM_ECORRUPT;
				break;
			}
			if (layer) {
				j->layer_dwg[*cnt] = g;
				j->layer_seq[*cnt] = strtoull(sp1 + 1, NULL, 10);
				j->layer_path[*cnt] = strdup(sp2 + 1);
			} else {
				j->child_dwg[*cnt] = g;
				j->child_seq[*cnt] = strtoull(sp1 + 1, NULL, 10);
				j->child_path[*cnt] = strdup(sp2 + 1);
			}
			(*cnt)++;
		}
		if (ret)
			break;
	}
	fclose(f);
	if (!ret && (!ended || !j->top || !j->dest))
		ret = -VXM_ECORRUPT;
	if (ret) {
		vxm_journal_fini(j);
		return vxm_fail(err, ret == -EINVAL ? -VXM_ECORRUPT : ret, VXM_OFF_NONE,
				"%s: the merge journal is damaged; remove it only after checking the files with `vhdxmerge check`",
				path);
	}
	return 0;
}

int vxm_journal_remove(const char *path, struct vxm_err *err)
{
	if (unlink(path) < 0 && errno != ENOENT)
		return vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot remove: %s", path, strerror(errno));
	return vxm_fsync_dir(path);
}
