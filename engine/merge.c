/* engine/merge.c: the merge's phases.  A merge writes layers C1..Ck (the
 * top) into their ancestor D in place, newest wins per sector, crash-safe
 * and resumable (fmt §8.4); a convert writes them into a new file
 * (convert.c).  Read this note, then vxm_merge_run top to bottom.
 *
 * Where things are
 *   merge.c      the phases and their order (this file)
 *   preflight.c  what is checked and taken before the first write
 *   exec.c       the executor: the plan's extents into D, commits (M2, M3)
 *   exec_queue.c the executor's requests: gathered writes, padding, clones
 *   finalize.c   final headers, locator edits, removal of merged files
 *   journal.c    the journal, the record of the phase reached
 *   writer.c     D's log session (txn.c, writer_meta.c, writer_data.c): every
 *                metadata change goes through it
 * A newcomer's path to the disk: cli/cmd_merge.c -> vxm_merge_run ->
 * mg_phase_copy -> ex_run (exec.c), which takes the plan's extents one by
 * one (vxm_plan_next, plan.c) -> ex_extent -> ex_transfer (exec_queue.c)
 * -> ex_stage_queue -> vxm_io_queue (io/io.c) -> io/uring.c submits; and
 * ex_commit -> vxm_txn_commit (txn.c) publishes what is durable.
 *
 * States (recorded in the journal only once durable, journal.c I2)
 *
 *   (none)     vxm_merge_run: chain opened, every file validated, plan,
 *      |       relatives found, locks held, space checked (preflight.c);
 *      |       nothing written.  Then the journal is written (journal.c I1).
 *      v       [durable: "journal-write" kill point, directory fsync]
 *   PLANNED
 *      |  phase_link: C1 gets parent_linkage2 = G', D's new DataWriteGuid,
 *      |  through C1's log (writer.c: "log-commit", "log-apply"); C1's
 *      v  headers final (mg_finalize_file: "finalize-log", "finalize-header")
 *   LINKED     C1 accepts D before and after D's GUID changes
 *      |  mg_phase_copy: D's headers carry G' ("data-guid"); ex_run streams
 *      |  the data; every commit (ex_commit) first makes the data durable
 *      |  ("data-sync"), then logs BAT entries and bitmap bits
 *      |  ("log-commit"), then records the cursor in the journal
 *      v
 *   COPYING    the journal's cursor: how far D is durable and published
 *      |  mg_phase_copy: TOP's IsVirtualDisk items, the writer ended
 *      |  ("session-end": LogGuid 0), D's log zeroed and headers final
 *      v  (mg_finalize_file): the fsync barrier of M4
 *   COPIED
 *      |  mg_phase_repoint (finalize.c): each child R of TOP re-pointed at D
 *      v  through R's log, then R's headers final
 *   REPOINTED
 *      |  mg_phase_cleanup (finalize.c): merged files and their .mrt/.rct
 *      v  removed (unless kept), the directory flushed
 *   CLEANUP -> the journal removed (vxm_journal_remove, directory fsync)
 *
 * A run that finds a journal resumes at the phase it records: the chain is
 * reopened and checked against the journal's DataWriteGuids (M1 holds only
 * for the sources recorded), and each phase redoes what is not yet in place.
 *
 * Invariants, and the tests that hold them
 * M1 (fmt §8.2): D changes only in sectors C1..Ck define, to the value the
 *    chain shows already, so the view from TOP and from every child R never
 *    changes: a crash at any instant is invisible through the chain.
 *    [test_crash.c C2/C3 at every sync of four scenarios; merge_kill.sh]
 * M2: payload is durable before the BAT entry or bitmap bit that publishes
 *    it, and before the cursor that says it is done (the writer's data-sync
 *    precedes every log commit; ex_commit saves the cursor after both).
 *    [test_crash.c a_resumed_merge_records_its_cursor_only_after_a_data_sync
 *    and the every-MiB scenario; test_writer_crash.c]
 * M3: the k-th allocation of the merge lands at alloc_base plus the sizes of
 *    the allocations before it, in plan order, so a resumed run allocates
 *    exactly where an uninterrupted run does; metadata edits are skipped
 *    when already in place; the final headers carry GUIDs derived from the
 *    journal's seed and a fixed sequence number, and the dead log is zeroed:
 *    a resumed merge ends byte-identical to an uninterrupted one.
 *    [test_crash.c C4; merge_kill.sh; merge_matrix.sh run_commits]
 * M4: a parent pointer is rewritten only after D is final and flushed.
 *    [test_crash.c, the intermediate scenario with a child to re-point]
 * M5: nothing is deleted before every child is re-pointed and durable.
 *    [the same scenario; hostile_files.sh kills in cleanup and resumes]
 * M6: nothing is written before every check a file allows has passed
 *    (preflight.c I1): structure, sizes, locks, relatives, locator room,
 *    space, the data path.  [test_hostile.c, hostile_log.sh, hostile_files.sh,
 *    merge_preflight.sh, fuzz_merge.c]
 */
#define _GNU_SOURCE
#include "merge.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double mg_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

void mg_say(const struct vxm_merge_opts *o, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (!o->log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	o->log(o->log_ctx, line);
}

void mg_progress(const struct vxm_merge_opts *o, const char *phase, uint64_t done,
		 uint64_t total, uint64_t copied, uint64_t cloned, uint64_t zeroed)
{
	if (o->progress) {
		struct vxm_merge_progress p = { phase, done, total, copied, cloned, zeroed };
		o->progress(o->progress_ctx, &p);
	}
}

/* ---- phases ----------------------------------------------------------------------- */

void mg_phase_enter(struct vxm_journal *j, enum vxm_jphase to)
{
	/* what every recorded phase has: the run's identity and M3's anchor */
	assert(j->top && j->dest && j->seed && j->nlayers >= 1);
	assert(j->alloc_base % VXM_MiB == 0 && (!j->alloc_next || j->alloc_next >= j->alloc_base));
	assert(to > j->phase);
	switch (to) {
	case VXM_JPHASE_LINKED: /* a merge only: C1 exists */
		assert(!j->convert && j->dest_index >= 0 && j->phase == VXM_JPHASE_PLANNED);
		break;
	case VXM_JPHASE_COPYING: /* a convert has no C1 to link */
		assert(j->phase == (j->convert ? VXM_JPHASE_PLANNED : VXM_JPHASE_LINKED));
		break;
	case VXM_JPHASE_COPIED: /* the final commit recorded the whole disk */
		assert(j->phase == VXM_JPHASE_COPYING && j->cursor > 0);
		break;
	case VXM_JPHASE_REPOINTED: /* M4: only after D is final */
		assert(!j->convert && j->phase == VXM_JPHASE_COPIED);
		break;
	case VXM_JPHASE_CLEANUP: /* M5: only after every child is re-pointed */
		assert(!j->convert && j->phase == VXM_JPHASE_REPOINTED);
		break;
	default:
		assert(!"no such transition");
	}
	j->phase = to;
}

uint64_t mg_random_seed(void)
{
	struct vxm_guid g;
	uint64_t s;
	vxm_guid_seed(0);
	vxm_guid_new(&g);
	memcpy(&s, g.b, 8);
	return s ? s : 1;
}

/* The journal of an interrupted merge with this top, if any: next to the
 * destination given, else in the top's directory (the top itself may be
 * gone when only cleanup remained). */
static char *find_journal(const struct vxm_merge_opts *o, const char *top_abs)
{
	char *p;
	struct stat st;
	if (o->out) {
		char *oa = mg_abspath(o->out);
		p = oa ? vxm_journal_path(oa) : NULL;
		free(oa);
		if (p && stat(p, &st) == 0)
			return p;
		free(p);
		return NULL;
	}
	if (o->into) {
		char *ia = mg_abspath(o->into);
		p = ia ? vxm_journal_path(ia) : NULL;
		free(ia);
		if (p && stat(p, &st) == 0)
			return p;
		free(p);
	}
	char *t = strdup(top_abs);
	const char *dir = dirname(t);
	DIR *d = opendir(dir);
	struct dirent *e;
	char *found = NULL;
	while (d && (e = readdir(d)) && !found) {
		if (!mg_ends_ci(e->d_name, ".vxmerge-journal"))
			continue;
		if (asprintf(&p, "%s/%s", dir, e->d_name) < 0)
			continue;
		struct vxm_journal j;
		if (vxm_journal_load(&j, p, NULL) == 0) {
			if (!strcmp(j.top, top_abs) && !j.convert)
				found = p;
			vxm_journal_fini(&j);
		}
		if (found != p)
			free(p);
	}
	if (d)
		closedir(d);
	free(t);
	return found;
}

/* Do D's IsVirtualDisk items already equal TOP's (M3: edit only once)? */
static bool vd_items_equal(const struct vxm_image *d, const struct vxm_image *top)
{
	unsigned nd = 0, nt = 0;
	for (unsigned i = 0; i < d->mt->count; i++)
		nd += !!(d->mt->e[i].flags & VXM_META_IS_VIRTUAL_DISK);
	for (unsigned i = 0; i < top->mt->count; i++) {
		const struct vxm_meta_entry *e = &top->mt->e[i];
		if (!(e->flags & VXM_META_IS_VIRTUAL_DISK))
			continue;
		nt++;
		int k = vxm_meta_find(d->mt, &e->id, e->flags & VXM_META_IS_USER);
		if (k < 0 || d->mt->e[k].len != e->len || d->mt->e[k].flags != e->flags ||
		    memcmp(d->meta + d->mt->e[k].off, top->meta + e->off, e->len))
			return false;
	}
	return nd == nt;
}

int mg_phase_copy(const struct vxm_merge_opts *o, struct vxm_chain *c, struct vxm_journal *j,
		  const char *jpath, struct vxm_merge_result *r, struct vxm_err *err)
{
	struct exec x = { .o = o, .err = err, .c = c, .top = (int)c->n - 1, .dest = j->dest_index,
			  .lss = c->lss, .j = j, .jpath = jpath, .alloc_base = j->alloc_base,
			  .alloc_next = j->alloc_next ? j->alloc_next : j->alloc_base,
			  .cursor = j->cursor };
	struct vxm_image *top = c->layer[c->n - 1].img;
	int ret = vxm_image_open(&x.d, c->io, j->dest, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	ret = vxm_writer_begin(&x.w, x.d, err);
	if (ret)
		goto out;
	/* Always, even when D already carries G' from an interrupted run: the
	 * session must know its DataWriteGuid is set, or its first visible
	 * change would draw a new one (M3). */
	ret = vxm_writer_set_data_guid(x.w, &j->dest_new_dwg, err);
	if (ret)
		goto out;
	vxm_killpoint("dest-guid");
	if (j->phase < VXM_JPHASE_COPYING) {
		mg_phase_enter(j, VXM_JPHASE_COPYING);
		ret = vxm_journal_save(j, jpath, err);
		if (ret)
			goto out;
	}
	if (!vd_items_equal(x.d, top)) {
		if (!vxm_guid_eq(&x.d->hdr.data_write, &j->dest_new_dwg)) {
			ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE, "internal: DataWriteGuid not set");
			goto out;
		}
		ret = vxm_writer_set_vd_items(x.w, top, err);
		if (ret)
			goto out;
	}
	x.total_bytes = r->plan.copy_bytes + r->plan.zero_bytes;
	ret = ex_init(&x, j->dest, false);
	if (!ret)
		ret = ex_run(&x);
	ex_report(&x, r);
out:
	ex_fini(&x);
	if (x.w) {
		int r2 = vxm_writer_end(x.w, ret ? NULL : err);
		if (!ret)
			ret = r2;
	}
	vxm_image_close(x.d);
	if (ret)
		return ret;
	/* M3: final headers and a zeroed log; then the barrier of M4. */
	mg_progress(o, "finalize", 0, 0, 0, 0, 0);
	struct vxm_guid fwg;
	vxm_guid_derive(j->seed, "dest-fwg", 0, &fwg);
	ret = mg_finalize_file(c->io, j->dest, j->dest_orig_seq, &fwg, err);
	if (ret)
		return ret;
	if (j->phase == VXM_JPHASE_COPIED)
		return 0; /* a resumed convert redoes this phase: recorded already */
	mg_phase_enter(j, VXM_JPHASE_COPIED);
	return vxm_journal_save(j, jpath, err);
}

static int phase_link(const struct vxm_merge_opts *o, struct vxm_chain *c, struct vxm_journal *j,
		      const char *jpath, struct vxm_err *err)
{
	struct vxm_image *c1 = c->layer[j->dest_index + 1].img;
	int ret;
	mg_progress(o, "link", 0, 0, 0, 0, 0);
	if (!c1->loc || !c1->loc->has_linkage2 ||
	    !vxm_guid_eq(&c1->loc->parent_linkage2, &j->dest_new_dwg)) {
		char want[40];
		mg_braced(&j->dest_new_dwg, want);
		struct vxm_kv set[] = { { "parent_linkage2", want } };
		ret = mg_set_locator(c->io, c1->path, set, 1, err);
		if (ret)
			return ret;
		vxm_killpoint("link");
	}
	/* C1 is removed at the end, or kept and valid: final either way (M3) */
	struct vxm_guid fwg;
	vxm_guid_derive(j->seed, "c1-fwg", 0, &fwg);
	ret = mg_finalize_file(c->io, c1->path, j->layer_seq[0], &fwg, err);
	if (ret)
		return ret;
	mg_phase_enter(j, VXM_JPHASE_LINKED);
	return vxm_journal_save(j, jpath, err);
}

int vxm_merge_run(const struct vxm_merge_opts *o, struct vxm_merge_result *r, struct vxm_err *err)
{
	struct vxm_chain_opts co = { .search_dirs = o->search_dirs, .nsearch = o->nsearch, .io = o->io };
	struct vxm_chain *c = NULL;
	struct vxm_journal j = { 0 };
	struct locks l = { .n = 0 };
	struct vxm_io io = { 0 };
	bool io_up = false;
	char *top_abs = mg_abspath_link(o->top), *jpath = NULL;
	double t0 = mg_now();
	int ret;

	memset(r, 0, sizeof(*r));
	if (!top_abs)
		return -ENOMEM;
	if (o->out) {
		ret = mg_convert_run(o, r, err);
		goto done;
	}
	jpath = find_journal(o, top_abs);
	if (!jpath && access(o->top, F_OK) < 0 && errno == ENOENT) {
		/* The usual cause: this merge finished and removed its merged
		 * layers.  That is no I/O error, and nothing is left to do. */
		ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE,
			       "%s does not exist and no interrupted merge of it is recorded beside it or its destination: nothing to merge (a finished merge removes the layers it merged; `vhdxmerge merge --status DEST` tells whether one is pending)",
			       o->top);
		goto done;
	}
	if (jpath) {
		ret = vxm_journal_load(&j, jpath, err);
		if (ret)
			goto done;
		if (j.convert || strcmp(j.top, top_abs)) {
			ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
				       "%s records an interrupted merge of %s; finish it first (run that merge again)",
				       jpath, j.top);
			goto done;
		}
		if (o->into) {
			char *ia = mg_abspath(o->into);
			bool other = ia && strcmp(ia, j.dest);
			free(ia);
			if (other) {
				ret = vxm_fail(err, -EEXIST, VXM_OFF_NONE,
					       "an interrupted merge of %s into %s is recorded in %s; finish it first (run it again without --into %s)",
					       j.top, j.dest, jpath, o->into);
				goto done;
			}
		}
		r->resumed = true;
		snprintf(r->dest, sizeof(r->dest), "%s", j.dest);
		mg_say(o, "resuming the interrupted merge into %s (phase %s)", j.dest,
		       vxm_journal_phase_name(j.phase));
	}
	if (!jpath || j.phase < VXM_JPHASE_COPIED) {
		mg_progress(o, "preflight", 0, 0, 0, 0, 0);
		ret = vxm_chain_open(&c, o->top, &co, err);
		if (ret)
			goto done;
		int dest = 0;
		if (o->into || jpath) {
			dest = vxm_chain_index_of(c, jpath ? j.dest : o->into);
			if (dest < 0) {
				ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE, "%s is not an ancestor of %s",
					       jpath ? j.dest : o->into, o->top);
				goto done;
			}
		}
		int top = (int)c->n - 1;
		if (dest >= top) {
			ret = vxm_fail(err, -EINVAL, VXM_OFF_NONE,
				       "nothing to merge: %s is the top of its chain", o->top);
			goto done;
		}
		struct vxm_image *d = c->layer[dest].img;
		snprintf(r->dest, sizeof(r->dest), "%s", d->path);
		r->layers_merged = (unsigned)(top - dest);
		ret = mg_preflight_layers(o, c, dest, err);
		if (ret)
			goto done;
		struct vxm_plan_opts po = { .dest = dest, .top = top };
		ret = vxm_plan(c, &po, NULL, NULL, &r->plan, err);
		if (ret)
			goto done;
		if (jpath) {
			/* M1 holds only if the sources are the ones recorded */
			if (j.dest_index != dest || j.nlayers != (unsigned)(top - dest)) {
				ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
					       "the chain of %s no longer matches the interrupted merge in %s",
					       o->top, jpath);
				goto done;
			}
			for (unsigned i = 0; i < j.nlayers; i++)
				if (!vxm_guid_eq(&j.layer_dwg[i], &c->layer[dest + 1 + (int)i].img->hdr.data_write)) {
					ret = vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE,
						       "%s changed since the interrupted merge began (DataWriteGuid); refusing to continue",
						       c->layer[dest + 1 + (int)i].img->path);
					goto done;
				}
			ret = mg_take_locks(&l, c, dest, &j, err);
			if (!ret)
				ret = mg_preflight_relinks(c, dest, &j, j.top, o->io, err);
			if (!ret)
				ret = mg_preflight_io(o, err);
			if (ret)
				goto done;
		} else {
			ret = mg_preflight_relatives(o, c, dest, &j, err);
			if (!ret)
				ret = mg_preflight_relinks(c, dest, &j, top_abs, o->io, err);
			if (!ret)
				ret = mg_take_locks(&l, c, dest, &j, err);
			if (!ret)
				ret = mg_check_space(d->path, &r->plan, r, err);
			if (!ret)
				ret = mg_preflight_io(o, err);
			if (ret)
				goto done;
			if (d->log_dirty) {
				ret = vxm_fail(err, -VXM_EDIRTY, VXM_OFF_NONE,
					       "%s has a log to replay; run `vhdxmerge check --repair %s` first",
					       d->path, d->path);
				goto done;
			}
			if (o->dry_run) {
				r->dry_run = true;
				goto done;
			}
			j.seed = o->seed ? o->seed : mg_random_seed();
			j.top = strdup(top_abs);
			j.dest = mg_abspath(d->path);
			j.dest_index = dest;
			j.dest_orig_dwg = d->hdr.data_write;
			j.dest_orig_seq = d->hdr.seq;
			vxm_guid_derive(j.seed, "dest-dwg", 0, &j.dest_new_dwg);
			j.keep_merged = o->keep_merged;
			ret = mg_alloc_base(d, &j.alloc_base, err);
			if (ret)
				goto done;
			j.alloc_next = j.alloc_base;
			for (int i = dest + 1; i <= top; i++) {
				unsigned k = j.nlayers++;
				j.layer_dwg[k] = c->layer[i].img->hdr.data_write;
				j.layer_seq[k] = c->layer[i].img->hdr.seq;
				j.layer_path[k] = mg_abspath_link(c->layer[i].img->path);
				j.layer_target[k] = mg_link_target(j.layer_path[k]);
			}
			jpath = mg_journal_paths_ok(&j) ? vxm_journal_path(j.dest) : NULL;
			if (!jpath) {
				ret = vxm_fail(err, -ENOMEM, VXM_OFF_NONE, "out of memory");
				goto done;
			}
			ret = vxm_journal_save(&j, jpath, err); /* journal.c I1 */
			if (ret)
				goto done;
		}
		vxm_guid_seed(j.seed);
		if (j.phase < VXM_JPHASE_LINKED) {
			ret = phase_link(o, c, &j, jpath, err);
			if (ret)
				goto done;
		}
		ret = mg_phase_copy(o, c, &j, jpath, r, err);
		if (ret)
			goto done;
		vxm_chain_close(c);
		c = NULL;
	} else {
		/* only children and cleanup remain: no chain needed (the top may be
		 * gone already); lock what is left */
		for (unsigned i = 0; i < j.nchildren && !ret; i++)
			ret = mg_lock_file(&l, j.child_path[i], true, err);
		if (!ret)
			ret = mg_lock_file(&l, j.dest, true, err);
		if (ret)
			goto done;
	}
	if (!o->io) {
		ret = vxm_io_init(&io, &vxm_io_psync_ops, NULL);
		if (ret)
			goto done;
		io_up = true;
	}
	if (j.phase < VXM_JPHASE_REPOINTED) {
		ret = mg_phase_repoint(o, o->io ? o->io : &io, &j, jpath, r, err);
		if (ret)
			goto done;
	}
	mg_unlock_all(&l);
	ret = mg_phase_cleanup(o, &j, jpath, r, err);
done:
	if (ret == -EINTR)
		snprintf(r->phase, sizeof(r->phase), "%s", vxm_journal_phase_name(j.phase));
	if (io_up)
		vxm_io_fini(&io);
	mg_unlock_all(&l);
	vxm_chain_close(c);
	vxm_journal_fini(&j);
	free(jpath);
	free(top_abs);
	r->seconds = mg_now() - t0;
	return ret;
}

int vxm_merge_status(const char *dest, struct vxm_merge_state *st, struct vxm_err *err)
{
	char *a = mg_abspath(dest), *jp = a ? vxm_journal_path(a) : NULL;
	struct vxm_journal j;
	int ret;

	memset(st, 0, sizeof(*st));
	free(a);
	if (!jp)
		return -ENOMEM;
	snprintf(st->journal, sizeof(st->journal), "%s", jp);
	ret = vxm_journal_load(&j, jp, err);
	free(jp);
	if (ret == -ENOENT)
		return 0;
	if (ret)
		return ret;
	st->in_progress = true;
	st->convert = j.convert;
	st->cursor = j.cursor;
	snprintf(st->phase, sizeof(st->phase), "%s", vxm_journal_phase_name(j.phase));
	snprintf(st->top, sizeof(st->top), "%s", j.top);
	vxm_journal_fini(&j);
	return 0;
}
