/* engine/convert.c: a chain's view into a new file (VHDX or sparse raw),
 * the chain untouched: the same preflight as a merge (validate, plan, lock,
 * space), then the executor into OUT.vxmerge-partial, a flush, the rename to
 * OUT and a flush of the directory, so OUT appears only complete.  The
 * journal (engine/journal.c) makes an interrupted convert resumable.
 */
#define _GNU_SOURCE
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int mg_convert_run(const struct vxm_merge_opts *o, struct vxm_merge_result *r,
		   struct vxm_err *err)
{
	struct vxm_chain_opts co = { .search_dirs = o->search_dirs, .nsearch = o->nsearch, .io = o->io };
	struct vxm_chain *c = NULL;
	struct vxm_journal j = { 0 };
	struct locks l = { .n = 0 };
	char *out = mg_abspath(o->out), *jpath = NULL, *partial = NULL, *top_abs = mg_abspath(o->top);
	struct stat st;
	int ret;

	if (!out || !top_abs || !(jpath = vxm_journal_path(out)) ||
	    asprintf(&partial, "%s.vxmerge-partial", out) < 0) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(r->dest, sizeof(r->dest), "%s", out);
	bool have_journal = vxm_journal_load(&j, jpath, NULL) == 0;
	if (!have_journal && stat(out, &st) == 0) {
		ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE, "%s exists; refusing to overwrite it", out);
		goto out;
	}
	mg_progress(o, "preflight", 0, 0, 0, 0, 0);
	ret = vxm_chain_open(&c, o->top, &co, err);
	if (!ret)
		ret = mg_preflight_layers(o, c, VXM_PLAN_NEW_FILE, err);
	if (ret)
		goto out;
	int top = (int)c->n - 1;
	struct vxm_plan_opts po = { .dest = VXM_PLAN_NEW_FILE, .top = top,
				    .new_block_size = o->out_block_size, .new_fixed = o->out_fixed };
	ret = vxm_plan(c, &po, NULL, NULL, &r->plan, err);
	if (ret)
		goto out;
	if (o->out_format == VXM_OUT_RAW)
		r->plan.dest_growth_bytes = r->plan.copy_bytes; /* sparse: data only */
	ret = mg_take_locks(&l, c, -1, &j, err);
	if (ret)
		goto out;
	if (have_journal) {
		if (!j.convert || strcmp(j.top, top_abs) || j.nlayers != c->n) {
			ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
				       "%s belongs to another interrupted run (of %s); finish or remove it first",
				       jpath, j.top);
			goto out;
		}
		for (unsigned i = 0; i < j.nlayers; i++)
			if (!vxm_guid_eq(&j.layer_dwg[i], &c->layer[i].img->hdr.data_write)) {
				ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
					       "%s changed since the interrupted convert began; remove %s and %s to start over",
					       c->layer[i].img->path, jpath, partial);
				goto out;
			}
		r->resumed = true;
		if (stat(partial, &st) != 0) {
			/* Only the rename removes the partial file while a journal
			 * exists: a crash after it, before the journal's removal
			 * was durable, leaves the complete output.  Finish. */
			if (stat(out, &st) == 0) {
				ret = vxm_fsync_dir(out);
				if (!ret)
					ret = vxm_journal_remove(jpath, err);
				goto out;
			}
			ret = vxm_fail(err, -ENOENT, VXM_OFF_NONE, "%s: the partial output is missing",
				       partial);
			goto out;
		}
	} else {
		ret = mg_check_space(out, &r->plan, r, err);
		if (!ret)
			ret = mg_preflight_io(o, err);
		if (ret || o->dry_run) {
			r->dry_run = o->dry_run;
			goto out;
		}
		j.convert = true;
		j.seed = o->seed ? o->seed : mg_random_seed();
		j.top = strdup(top_abs);
		j.dest = strdup(partial);
		j.out = strdup(out);
		j.out_format = o->out_format;
		j.dest_index = -1;
		for (unsigned i = 0; i < c->n; i++) {
			j.layer_dwg[i] = c->layer[i].img->hdr.data_write;
			j.layer_seq[i] = c->layer[i].img->hdr.seq;
			j.layer_path[i] = mg_abspath(c->layer[i].img->path);
		}
		j.nlayers = c->n;
		if (!mg_journal_paths_ok(&j)) {
			ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
			goto out;
		}
		vxm_guid_derive(j.seed, "dest-dwg", 0, &j.dest_new_dwg);
		unlink(partial);
		vxm_guid_seed(j.seed); /* the new file's GUIDs, identical in every run */
		if (o->out_format == VXM_OUT_RAW) {
			int fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
			if (fd < 0 || ftruncate(fd, (off_t)c->virtual_size) < 0 || fsync(fd) < 0)
				ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot create: %s", partial,
					       strerror(errno));
			if (fd >= 0)
				close(fd);
		} else {
			struct vxm_image *t = c->layer[top].img;
			struct vxm_create_params cp = {
				.virtual_size = t->m.virtual_size,
				.block_size = o->out_block_size ? o->out_block_size : t->m.block_size,
				.logical_sector_size = t->m.logical_sector_size,
				.physical_sector_size = t->m.physical_sector_size,
				.fixed = o->out_fixed, .io = c->io,
			};
			ret = vxm_image_create(partial, &cp, err);
			if (!ret) {
				struct vxm_image *d;
				ret = vxm_image_open(&d, c->io, partial, 0, err);
				if (!ret) {
					j.dest_orig_seq = d->hdr.seq;
					ret = mg_alloc_base(d, &j.alloc_base, err);
					vxm_image_close(d);
				}
			}
		}
		if (!ret)
			ret = vxm_journal_save(&j, jpath, err);
		if (ret)
			goto out;
	}
	if (j.out_format == VXM_OUT_RAW) {
		struct exec x = { .o = o, .err = err, .c = c, .top = top, .dest = -1, .lss = c->lss,
				  .j = &j, .jpath = jpath, .cursor = j.cursor,
				  .total_bytes = r->plan.copy_bytes + r->plan.zero_bytes };
		ret = ex_init(&x, partial, true);
		if (!ret)
			ret = ex_run(&x);
		ex_report(&x, r);
		ex_fini(&x);
	} else {
		ret = mg_phase_copy(o, c, &j, jpath, r, err);
	}
	if (ret)
		goto out;
	/* The output appears only complete: flush, rename, flush the directory. */
	int fd = open(partial, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: flush failed: %s", partial, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	vxm_killpoint("rename");
	if (rename(partial, out) < 0) {
		ret = vxm_fail(err, -errno, VXM_OFF_NONE, "%s: cannot rename to %s: %s", partial, out,
			       strerror(errno));
		goto out;
	}
	ret = vxm_fsync_dir(out);
	if (!ret)
		ret = vxm_journal_remove(jpath, err);
out:
	mg_unlock_all(&l);
	vxm_chain_close(c);
	vxm_journal_fini(&j);
	free(out);
	free(jpath);
	free(partial);
	free(top_abs);
	return ret;
}
