/* tests/engine/test_crash.c: power loss at every barrier of a merge, of its
 * resume and of a log replay, SQLite test6-style (issue 7, item 1).
 *
 * Recording.  The operation runs once, uninterrupted, on real files in a
 * scratch directory, with opts.io a stack of three contexts:
 *
 *   tracker (this file)  ->  fault wrapper, recording  ->  psync
 *
 * The fault wrapper (io/fault.c) logs every write (with its bytes), sync and
 * resize in queue order.  Its records name slots, and slots are reused as
 * files are closed and opened, so the tracker, a pass-through wrapper, notes
 * which file (inode, hence a stable file id) each slot holds from which
 * record on; a file opened with VXM_O_CREATE is a new id that starts empty.
 * Directory state is outside vxm_io: the merge journal (stdio, rename,
 * directory fsync), deletions (unlink) and the convert's rename.  The engine
 * calls vxm_test_dirsync_hook after every directory fsync (journal.c,
 * VXM_TEST_HOOKS); there, and at every fsync of a directory opened through
 * vxm_io (create's "create-dir"), the tracker snapshots the directory: which
 * names exist, which file id each is, and the journal's text.  The model:
 * a directory change is durable at the next directory sync; before it the
 * directory is the last snapshot, or (the change reached the disk anyway)
 * the next one when no record lies between.
 *
 * Crash points.  Before every sync record (it did not complete), before
 * every directory snapshot, and at the end.  At point (r, s) records
 * [0, r) were issued and snapshots [0, s) are durable.  A write or resize of
 * file F is durable when a sync of F after it is among the issued records;
 * the others are pending.  States per point:
 *   durable   only what is durable
 *   all       every pending write, in order
 *   subset    a random subset, in order
 *   shuffled  a random subset in random order (overlapping writes may land
 *             old-over-new)
 *   torn-cut  a subset whose last write stops at a random 512-byte boundary
 *   torn-junk the same with random bytes after the boundary
 *   dir-next  the pending directory change happened, plus a random subset
 *
 * Checks of every state (rebuilt in a worker directory; the journal's paths
 * are rewritten to it):
 *   C1 every VHDX file opens (a dirty log replays in memory); the convert's
 *      partial output only once a journal names it
 *   C2 the chain from TOP, and from the child being re-pointed, reads every
 *      sector as before; once TOP is gone the destination does
 *   C3 the destination alone reads, sector by sector, as before the merge or
 *      as after it (a torn-junk sector it stores in flight aside, counted);
 *      a convert's inputs are byte-identical and its output, once it
 *      exists, reads as the chain
 *   C4 re-running the operation (plain, no fault context, the same seed)
 *      succeeds and every file ends byte-identical to an uninterrupted run
 * A sample of states also has its resume recorded and crashed at each of
 * the resume's barriers, and states with a dirty log have the in-place
 * replay of a writable open recorded and crashed at each of its barriers;
 * those states get the same checks.
 *
 * Scale: VXM_CRASH_BUDGET (default 1) multiplies the random states;
 * VXM_SANITIZED=1 samples a tenth of them and a sixth of the durable ones,
 * and crashes 3 resumes per scenario instead of 8.
 * States are spread over one forked worker per CPU (at most 4).  Prints
 * "crash states: N, resumes: R, data lost: 0".
 */
#include "crashlib.h"

#include <malloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#ifndef VXM_TEST_HOOKS
int main(void)
{
	fprintf(stderr, "test_crash: built without VXM_TEST_HOOKS (no directory sync hook); skipped\n");
	return TL_SKIP;
}
#else

#define MAXID 64
#define JOURNAL_ID (-2)
#define DIR_ID (-1)

/* ---- the recording ----------------------------------------------------------- */

struct bind {
	size_t at; /* from record index at on */
	int slot, id;
};

struct sent {
	char *name;
	int id;         /* file id, or JOURNAL_ID (text in data) */
	uint8_t *data;
	size_t len;
};

struct snap {
	size_t at;      /* taken after records [0, at) */
	unsigned n;
	struct sent e[CL_MAXF];
};

struct rrec {        /* a copy of one fault record */
	uint8_t kind;
	bool failed, full;
	int id;          /* file id (DIR_ID for a directory) */
	uint64_t off, len;
	uint8_t *data;
	const char *tag;
};

struct recording {
	char dir[1024];
	unsigned nid;
	struct cl_blob init[MAXID];
	ino_t ino[MAXID];
	char *idname[MAXID];
	struct bind *binds;
	size_t nbind, capbind;
	struct snap *snaps;
	unsigned nsnap, capsnap;
	struct rrec *r;
	size_t nrec;
	/* live while recording */
	struct vxm_io lower, fio, trk;
	bool bad;        /* the model met something it cannot represent */
	char bad_why[512];
};

static struct recording *g_rec;

static size_t rec_count(void)
{
	const struct vxm_fault_rec *r;
	return vxm_fault_recs(&g_rec->fio, &r);
}

static int id_of_ino(struct recording *R, ino_t ino)
{
	for (unsigned i = 0; i < R->nid; i++)
		if (R->ino[i] == ino)
			return (int)i;
	return -1;
}

static int new_id(struct recording *R, ino_t ino, const char *name)
{
	CL_ASSERT(R->nid < MAXID);
	for (unsigned i = 0; i < R->nid; i++)
		if (R->ino[i] == ino)
			R->ino[i] = 0; /* that inode number now names the new file */
	unsigned id = R->nid++;
	memset(&R->init[id], 0, sizeof(R->init[id]));
	R->ino[id] = ino;
	R->idname[id] = strdup(name);
	return (int)id;
}

static void take_snap(struct recording *R, size_t at)
{
	DIR *d = opendir(R->dir);
	struct dirent *e;
	char path[2048];

	CL_ASSERT(d);
	if (R->nsnap == R->capsnap) {
		R->capsnap = R->capsnap ? R->capsnap * 2 : 16;
		R->snaps = realloc(R->snaps, R->capsnap * sizeof(*R->snaps));
		CL_ASSERT(R->snaps);
	}
	struct snap *s = &R->snaps[R->nsnap++];
	memset(s, 0, sizeof(*s));
	s->at = at;
	while ((e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || cl_ends(e->d_name, ".lock"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", R->dir, e->d_name);
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		CL_ASSERT(s->n < CL_MAXF);
		struct sent *x = &s->e[s->n++];
		x->name = strdup(e->d_name);
		if (cl_ends(e->d_name, ".vxmerge-journal")) {
			struct cl_blob b = { 0 };
			CL_ASSERT(cl_read_into(path, &b));
			x->id = JOURNAL_ID;
			x->data = b.p;
			x->len = b.len;
			continue;
		}
		x->id = id_of_ino(R, st.st_ino);
		if (x->id < 0 && !R->bad) {
			R->bad = true;
			snprintf(R->bad_why, sizeof(R->bad_why),
				 "%s appeared without being created through vxm_io", e->d_name);
		}
	}
	closedir(d);
}

static void dirsync_hook(const char *path)
{
	(void)path;
	if (g_rec)
		take_snap(g_rec, rec_count());
}

/* The tracker: forwards everything to its lower context (the fault
 * wrapper), noting which file each slot holds. */
static int trk_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)io;
	(void)p;
	return 0;
}

static void trk_fini(struct vxm_io *io)
{
	(void)io;
}

static int trk_added(struct vxm_io *io, int slot)
{
	struct recording *R = g_rec;
	const struct vxm_io_file *f = &io->files[slot];
	struct stat st;
	int id;

	if (!R || !f->path || stat(f->path, &st))
		return 0;
	if (S_ISDIR(st.st_mode)) {
		id = DIR_ID;
	} else if (f->flags & VXM_O_CREATE) {
		const char *b = strrchr(f->path, '/');
		id = new_id(R, st.st_ino, b ? b + 1 : f->path);
	} else {
		id = id_of_ino(R, st.st_ino);
		if (id < 0) {
			R->bad = true;
			snprintf(R->bad_why, sizeof(R->bad_why), "%s: opened but unknown", f->path);
		}
	}
	if (R->nbind == R->capbind) {
		R->capbind = R->capbind ? R->capbind * 2 : 64;
		R->binds = realloc(R->binds, R->capbind * sizeof(*R->binds));
		CL_ASSERT(R->binds);
	}
	R->binds[R->nbind++] = (struct bind){ .at = rec_count(), .slot = slot, .id = id };
	return 0;
}

static int trk_size(struct vxm_io *io, int slot, uint64_t *size)
{
	return vxm_io_size(io->lower, slot, size);
}

static int trk_resize(struct vxm_io *io, int slot, uint64_t size)
{
	return vxm_io_resize(io->lower, slot, size);
}

static bool slot_is_dir(int slot)
{
	for (size_t i = g_rec->nbind; i-- > 0;)
		if (g_rec->binds[i].slot == slot)
			return g_rec->binds[i].id == DIR_ID;
	return false;
}

static int trk_queue(struct vxm_io *io, struct vxm_req *req)
{
	int ret = vxm_io_queue(io->lower, req);
	/* a directory fsync through vxm_io (create-dir): its entries are
	 * durable once it completes; the helpers run it synchronously */
	if (!ret && g_rec && req->op == VXM_IO_SYNC && slot_is_dir(req->file))
		take_snap(g_rec, rec_count());
	return ret;
}

static int trk_submit(struct vxm_io *io)
{
	return vxm_io_submit(io->lower);
}

static int trk_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	return vxm_io_reap(io->lower, min, done, max);
}

static int trk_register_bufs(struct vxm_io *io, void *const *bufs, const size_t *lens, unsigned n)
{
	return vxm_io_register_bufs(io->lower, bufs, lens, n);
}

static const struct vxm_io_ops trk_ops = {
	.name = "tracker",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_ASYNC | VXM_IO_WRAPPER | VXM_IO_WHOLE,
	.init = trk_init,
	.fini = trk_fini,
	.file_added = trk_added,
	.file_size = trk_size,
	.file_resize = trk_resize,
	.queue = trk_queue,
	.submit = trk_submit,
	.reap = trk_reap,
	.register_bufs = trk_register_bufs,
};

/* Starts recording whatever happens in dir: its files as they are now are
 * the initial state.  Returns the context to pass as opts.io. */
static struct vxm_io *rec_begin(struct recording *R, const char *dir)
{
	DIR *d;
	struct dirent *e;
	char path[2048];

	memset(R, 0, sizeof(*R));
	snprintf(R->dir, sizeof(R->dir), "%s", dir);
	d = opendir(dir);
	CL_ASSERT(d);
	while ((e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || cl_ends(e->d_name, ".lock") ||
		    cl_ends(e->d_name, ".vxmerge-journal"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		int id = new_id(R, st.st_ino, e->d_name);
		CL_ASSERT(cl_read_into(path, &R->init[id]));
	}
	closedir(d);
	CL_ASSERT(vxm_io_init(&R->lower, &cl_inline_ops, NULL) == 0);
	CL_ASSERT(vxm_io_init(&R->fio, &vxm_io_fault_ops, &(struct vxm_io_params){ .lower = &R->lower }) == 0);
	CL_ASSERT(vxm_io_init(&R->trk, &trk_ops, &(struct vxm_io_params){ .lower = &R->fio }) == 0);
	CL_ASSERT(vxm_fault_record(&R->fio, true) == 0);
	g_rec = R;
	take_snap(R, 0);
	vxm_test_dirsync_hook = dirsync_hook;
	return &R->trk;
}

/* Stops recording: copies the fault log (file ids resolved) and releases
 * the contexts, so that no I/O thread survives into a fork. */
static void rec_end(struct recording *R)
{
	const struct vxm_fault_rec *fr;

	vxm_test_dirsync_hook = NULL;
	R->nrec = vxm_fault_recs(&R->fio, &fr);
	R->r = calloc(R->nrec ? R->nrec : 1, sizeof(*R->r));
	CL_ASSERT(R->r);
	for (size_t i = 0; i < R->nrec; i++) {
		struct rrec *x = &R->r[i];
		x->kind = fr[i].kind;
		x->failed = fr[i].failed;
		x->full = fr[i].full;
		x->off = fr[i].off;
		x->len = fr[i].len;
		x->tag = fr[i].tag;
		x->id = DIR_ID;
		bool found = false;
		for (size_t b = R->nbind; b-- > 0;)
			if (R->binds[b].slot == fr[i].file && R->binds[b].at <= i) {
				x->id = R->binds[b].id;
				found = true;
				break;
			}
		if (!found && !R->bad) {
			R->bad = true;
			snprintf(R->bad_why, sizeof(R->bad_why), "record %zu: slot %d never opened", i,
				 fr[i].file);
		}
		if (x->kind == VXM_FAULT_REC_WRITE) {
			x->data = malloc(x->len ? x->len : 1);
			CL_ASSERT(x->data);
			memcpy(x->data, fr[i].data, x->len);
		}
	}
	g_rec = NULL;
	vxm_io_fini(&R->trk);
	vxm_io_fini(&R->fio);
	vxm_io_fini(&R->lower);
}

static void rec_free(struct recording *R)
{
	for (unsigned i = 0; i < R->nid; i++) {
		free(R->init[i].p);
		free(R->idname[i]);
	}
	for (unsigned i = 0; i < R->nsnap; i++)
		for (unsigned k = 0; k < R->snaps[i].n; k++) {
			free(R->snaps[i].e[k].name);
			free(R->snaps[i].e[k].data);
		}
	for (size_t i = 0; i < R->nrec; i++)
		free(R->r[i].data);
	free(R->r);
	free(R->snaps);
	free(R->binds);
	memset(R, 0, sizeof(*R));
}

/* ---- crash points and states ----------------------------------------------------------- */

struct cpoint {
	size_t r;        /* records [0, r) issued */
	unsigned s;      /* snapshots [0, s) durable */
	bool dir_next;   /* snapshot s may have reached the disk too */
	const char *why; /* the barrier: a sync tag, or "directory" / "end" */
};

enum variant { V_DURABLE, V_ALL, V_SUBSET, V_SHUFFLED, V_TORN_CUT, V_TORN_JUNK, V_DIR_NEXT, V_N };
static const char *const vname[V_N] = { "durable", "all", "subset", "shuffled",
					 "torn-cut", "torn-junk", "dir-next" };

static size_t points_of(const struct recording *R, struct cpoint **out)
{
	size_t n = 0, cap = R->nrec + R->nsnap + 2;
	struct cpoint *p = calloc(cap, sizeof(*p));
	unsigned s = 0;

	CL_ASSERT(p);
	for (size_t i = 0; i <= R->nrec; i++) {
		/* snapshots taken after records [0, i) */
		while (s < R->nsnap && R->snaps[s].at <= i) {
			if (s > 0) /* before snapshot s: the change may or may not be there */
				p[n++] = (struct cpoint){ .r = i, .s = s, .dir_next = true,
							  .why = "directory" };
			s++;
		}
		if (i == R->nrec)
			p[n++] = (struct cpoint){ .r = i, .s = s, .why = "end" };
		else if (R->r[i].kind == VXM_FAULT_REC_SYNC)
			p[n++] = (struct cpoint){ .r = i, .s = s, .why = R->r[i].tag ? R->r[i].tag : "sync" };
	}
	*out = p;
	return n;
}

/* Indices of the pending writes and resizes at r. */
static size_t pending_at(const struct recording *R, size_t r, size_t *idx)
{
	size_t last[MAXID] = { 0 }; /* one past the last sync of each id */
	size_t n = 0;
	for (size_t i = 0; i < r; i++)
		if (R->r[i].kind == VXM_FAULT_REC_SYNC && !R->r[i].failed && R->r[i].id >= 0)
			last[R->r[i].id] = i + 1;
	for (size_t i = 0; i < r; i++) {
		const struct rrec *x = &R->r[i];
		if (x->kind == VXM_FAULT_REC_SYNC || x->failed || x->id < 0)
			continue;
		if (i >= last[x->id])
			idx[n++] = i;
	}
	return n;
}

struct torn {
	int id;          /* -1: none */
	uint64_t off, len; /* junk range (torn-junk) */
	bool junk;
};

struct state {
	struct cl_tree t;
	struct torn torn;
	char dest_name[64];
	int dest_id;
};

static void apply_rec(struct cl_blob *b, const struct rrec *x, uint64_t keep, bool junk,
		      uint64_t *rng)
{
	if (x->kind == VXM_FAULT_REC_RESIZE) {
		cl_blob_resize(b, x->off);
		return;
	}
	if (keep >= x->len) {
		cl_blob_write(b, x->off, x->data, x->len);
		return;
	}
	cl_blob_write(b, x->off, x->data, keep);
	if (junk) {
		uint8_t *g = malloc(x->len - keep);
		CL_ASSERT(g);
		for (uint64_t i = 0; i < x->len - keep; i++)
			g[i] = (uint8_t)tl_rnd(rng);
		cl_blob_write(b, x->off + keep, g, x->len - keep);
		free(g);
	}
}

/* Rebuilds state (point p, variant v, seed) of R; the journal's paths are
 * rewritten from R->dir to dir. */
static void build_state(const struct recording *R, const struct cpoint *p, enum variant v,
			uint64_t seed, const char *dir, struct state *st)
{
	size_t *pend = malloc((p->r + 1) * sizeof(size_t));
	size_t np = pending_at(R, p->r, pend);
	size_t *pick = malloc((np + 1) * sizeof(size_t));
	size_t nk = 0;
	uint64_t rng = tl_mix(seed + 1);

	CL_ASSERT(pend && pick);
	cl_tree_reset(&st->t); /* its buffers are reused */
	memset(&st->torn, 0, sizeof(st->torn));
	st->dest_name[0] = 0;
	st->torn.id = -1;
	st->dest_id = -1;
	for (size_t i = 0; i < np; i++) {
		bool take = v == V_ALL || (v != V_DURABLE && tl_rnd(&rng) % 2);
		if (take)
			pick[nk++] = pend[i];
	}
	if (v == V_SHUFFLED || ((v == V_TORN_CUT || v == V_TORN_JUNK) && tl_rnd(&rng) % 2))
		for (size_t i = nk; i > 1; i--) {
			size_t k = tl_rnd(&rng) % i, t = pick[i - 1];
			pick[i - 1] = pick[k];
			pick[k] = t;
		}
	/* the torn write: the last write applied */
	ssize_t tw = -1;
	uint64_t keep = 0;
	if (v == V_TORN_CUT || v == V_TORN_JUNK) {
		for (size_t i = nk; i-- > 0;)
			if (R->r[pick[i]].kind == VXM_FAULT_REC_WRITE && R->r[pick[i]].len >= 512) {
				tw = (ssize_t)i;
				break;
			}
		if (tw < 0 && np) { /* nothing chosen to tear: tear one pending write */
			for (size_t i = np; i-- > 0;)
				if (R->r[pend[i]].kind == VXM_FAULT_REC_WRITE && R->r[pend[i]].len >= 512) {
					pick[nk] = pend[i];
					tw = (ssize_t)nk++;
					break;
				}
		}
		if (tw >= 0) {
			const struct rrec *x = &R->r[pick[tw]];
			keep = (tl_rnd(&rng) % (x->len / 512)) * 512;
			st->torn = (struct torn){ .id = x->id, .off = x->off + keep, .len = x->len - keep,
						  .junk = v == V_TORN_JUNK };
			if (getenv("VXM_CRASH_ONLY"))
				fprintf(stderr, "  torn: record %zu, %s [0x%llx,+0x%llx) keeps 0x%llx\n",
					pick[tw], R->idname[x->id], (unsigned long long)x->off,
					(unsigned long long)x->len, (unsigned long long)keep);
		}
	}
	const struct snap *sn = &R->snaps[(v == V_DIR_NEXT && p->dir_next) ? p->s : p->s - 1];
	for (unsigned k = 0; k < sn->n; k++) {
		const struct sent *e = &sn->e[k];
		struct cl_blob *b = cl_tree_add(&st->t, e->name);
		if (e->id == JOURNAL_ID) {
			/* the journal names files by absolute path: move them */
			size_t dl = strlen(R->dir), nl = strlen(dir);
			for (size_t i = 0; i < e->len;) {
				if (i + dl <= e->len && !memcmp(e->data + i, R->dir, dl)) {
					cl_blob_write(b, b->len, dir, nl);
					i += dl;
				} else {
					cl_blob_write(b, b->len, e->data + i, 1);
					i++;
				}
			}
			continue;
		}
		if (e->id < 0)
			continue;
		cl_blob_copy(b, &R->init[e->id]);
		size_t last = 0;
		for (size_t i = 0; i < p->r; i++)
			if (R->r[i].kind == VXM_FAULT_REC_SYNC && !R->r[i].failed && R->r[i].id == e->id)
				last = i + 1;
		for (size_t i = 0; i < last; i++)
			if (R->r[i].id == e->id && R->r[i].kind != VXM_FAULT_REC_SYNC && !R->r[i].failed)
				apply_rec(b, &R->r[i], UINT64_MAX, false, &rng);
		for (size_t i = 0; i < nk; i++)
			if (R->r[pick[i]].id == e->id)
				apply_rec(b, &R->r[pick[i]], (ssize_t)i == tw ? keep : UINT64_MAX,
					  (ssize_t)i == tw && v == V_TORN_JUNK, &rng);
	}
	free(pend);
	free(pick);
}

/* ---- checking one state ---------------------------------------------------------------- */

struct tally {
	uint64_t states, resumes, own_io, lost, exempt, resume_recs, replay_recs, dirty_seen;
	uint64_t qemu_same;
	uint64_t var[V_N];
};

struct wctx {
	const struct cl_scen *s;
	char dir[1200];
	struct vxm_io io;         /* read-only opens of the checks */
	struct tally t;
	unsigned reported;
	bool dir_is_ref;          /* w->dir holds s->ref (a re-run just passed) */
	double budget;
	unsigned replay_left;     /* replays still to crash in this worker */
	unsigned qemu_left;       /* dirty bases still to compare with qemu-img */
};

static bool is_vhdx(const char *n)
{
	return cl_ends(n, ".vhdx") || cl_ends(n, ".avhdx");
}

/* Item 4: a dirty 512-byte base, replayed by qemu-img (check -r all on a
 * copy), reads as our reader shows it (the log replayed in memory). */
static bool qemu_agrees(struct wctx *w, const char *path, char *why, size_t cap)
{
	const uint8_t *v;
	uint64_t vl;
	struct vxm_err err = { 0 };
	char copy[1400], raw[1400], m[1400];
	struct cl_blob b = { 0 };
	bool ok;

	w->qemu_left--;
	snprintf(copy, sizeof(copy), "%s.qemu.vhdx", w->dir);
	snprintf(raw, sizeof(raw), "%s.qemu.raw", w->dir);
	if (tl_sh("cp '%s' '%s' && qemu-img check -q -r all '%s' >/dev/null 2>&1; "
		  "qemu-img convert -O raw '%s' '%s' 2>/dev/null",
		  path, copy, copy, copy, raw)) {
		snprintf(why, cap, "qemu-img cannot replay and read %s", path);
		return false;
	}
	if (cl_view_tmp(&w->io, path, &v, &vl, &err)) {
		snprintf(why, cap, "%s does not read: %s", path, vxm_err_format(&err, m, sizeof(m)));
		return false;
	}
	ok = cl_read_into(raw, &b) && b.len == vl && !memcmp(b.p, v, vl);
	if (!ok)
		snprintf(why, cap, "qemu-img replays %s to other content than our reader shows", path);
	else
		w->t.qemu_same++;
	free(b.p);
	unlink(copy);
	unlink(raw);
	return ok;
}

/* C3 for a merge: every sector of D alone is D's old or the merged value. */
static bool dest_alone_ok(struct wctx *w, const struct state *st, const char *dpath, char *why,
			  size_t cap)
{
	const struct cl_scen *s = w->s;
	const uint8_t *v;
	uint64_t vl;
	struct vxm_err err = { 0 };
	char m[1400];
	bool ok = true;

	if (cl_view_tmp(&w->io, dpath, &v, &vl, &err)) {
		snprintf(why, cap, "the destination alone does not read: %s",
			 vxm_err_format(&err, m, sizeof(m)));
		return false;
	}
	if (vl != s->vsize && vl != s->d_before_len) {
		snprintf(why, cap, "the destination alone is %llu bytes", (unsigned long long)vl);
		return false;
	}
	if ((vl == s->vsize && !memcmp(v, s->view, vl)) ||
	    (vl == s->d_before_len && !memcmp(v, s->d_before, vl)))
		return true;
	struct vxm_image *img = NULL;
	for (uint64_t o = 0; o < vl && ok; o += s->lss) {
		bool after = o + s->lss <= s->vsize && !memcmp(v + o, s->view + o, s->lss);
		bool before = o + s->lss <= s->d_before_len && !memcmp(v + o, s->d_before + o, s->lss);
		if (after || before)
			continue;
		/* junk a torn write left in D's payload, in flight at the crash */
		bool exempt = false;
		if (st->torn.junk && st->torn.id == st->dest_id) {
			struct vxm_run run;
			if (!img && vxm_image_open(&img, &w->io, dpath, 0, &err))
				img = NULL;
			if (img && !vxm_image_lookup(img, o / s->lss, 1, &run, &err) &&
			    run.kind == VXM_RUN_DATA && run.file_off >= st->torn.off &&
			    run.file_off < st->torn.off + st->torn.len)
				exempt = true;
		}
		if (exempt) {
			w->t.exempt++;
			continue;
		}
		snprintf(why, cap, "the destination alone reads sector %llu as neither before nor after",
			 (unsigned long long)(o / s->lss));
		ok = false;
	}
	vxm_image_close(img);
	return ok;
}

/* C1-C3 on the state in w->dir; *dirty receives a file with a dirty log. */
static bool check_files(struct wctx *w, const struct state *st, char *dirty, size_t dcap, char *why,
			size_t cap)
{
	const struct cl_scen *s = w->s;
	struct cl_paths p;
	struct vxm_err err = { 0 };
	char path[2400], m[1400];
	struct stat sb;
	bool journal;

	cl_paths(s, w->dir, &p);
	journal = stat(p.journal, &sb) == 0;
	if (dirty)
		dirty[0] = 0;
	/* C1 */
	for (unsigned i = 0; i < st->t.n; i++) {
		const char *n = st->t.name[i];
		bool partial = cl_ends(n, ".vxmerge-partial");
		if (!is_vhdx(n) && !(partial && journal))
			continue;
		struct vxm_image *img;
		snprintf(path, sizeof(path), "%s/%s", w->dir, n);
		vxm_err_clear(&err);
		if (vxm_image_open(&img, &w->io, path, 0, &err)) {
			snprintf(why, cap, "%s does not open: %s", n, vxm_err_format(&err, m, sizeof(m)));
			return false;
		}
		if (img->log_dirty && dirty && !dirty[0] && !partial)
			snprintf(dirty, dcap, "%s", path);
		bool qemu = img->log_dirty && !strcmp(n, "base.vhdx") && img->g.lss == 512;
		vxm_image_close(img);
		if (qemu && w->qemu_left && !qemu_agrees(w, path, why, cap))
			return false;
	}
	/* C2 */
	const char *views[3];
	unsigned nv = 0;
	bool top = stat(p.top, &sb) == 0, layers = top;
	if (s->kind != CL_CONVERT)
		for (unsigned i = 0; i < s->start.n; i++) {
			const char *n = s->start.name[i];
			bool merged = strcmp(n, cl_dest_name(s)) && strcmp(n, "base.vhdx") &&
				      strcmp(n, "child.avhdx") && is_vhdx(n);
			snprintf(path, sizeof(path), "%s/%s", w->dir, n);
			if (merged && stat(path, &sb) != 0)
				layers = false;
		}
	if (top && !layers) {
		/* merged files half deleted: only in the cleanup phase (M5),
		 * when nothing reads through them any more */
		int k = cl_tree_find(&st->t, strrchr(p.journal, '/') + 1);
		if (k < 0 || !memmem(st->t.b[k].p, st->t.b[k].len, "\nphase cleanup\n", 15)) {
			snprintf(why, cap, "merged files are missing outside the cleanup phase");
			return false;
		}
	}
	if (layers)
		views[nv++] = p.top;
	if (s->kind == CL_MERGE_INTO)
		views[nv++] = p.child;
	else if (!layers && s->kind == CL_MERGE_BASE)
		views[nv++] = p.dest;
	for (unsigned i = 0; i < nv; i++) {
		const uint8_t *v;
		uint64_t vl;
		vxm_err_clear(&err);
		if (cl_view_tmp(&w->io, views[i], &v, &vl, &err)) {
			snprintf(why, cap, "the chain from %s does not read: %s", strrchr(views[i], '/') + 1,
				 vxm_err_format(&err, m, sizeof(m)));
			return false;
		}
		bool same = vl == s->vsize && !memcmp(v, s->view, vl);
		if (!same) {
			snprintf(why, cap, "the chain from %s reads differently", strrchr(views[i], '/') + 1);
			return false;
		}
	}
	/* C3 */
	if (s->kind == CL_CONVERT) {
		for (unsigned i = 0; i < s->start.n; i++) {
			int k = cl_tree_find(&st->t, s->start.name[i]);
			if (k < 0 || st->t.b[k].len != s->start.b[i].len ||
			    memcmp(st->t.b[k].p, s->start.b[i].p, s->start.b[i].len)) {
				snprintf(why, cap, "input %s changed", s->start.name[i]);
				return false;
			}
		}
		if (stat(p.out, &sb) == 0) {
			const uint8_t *v;
			uint64_t vl;
			vxm_err_clear(&err);
			if (cl_view_tmp(&w->io, p.out, &v, &vl, &err) || vl != s->vsize ||
			    memcmp(v, s->view, vl)) {
				snprintf(why, cap, "the output exists but does not read as the chain");
				return false;
			}
		}
		return true;
	}
	return dest_alone_ok(w, st, p.dest, why, cap);
}

/* C4: the plain re-run ends as the uninterrupted run did. */
static bool rerun_ok(struct wctx *w, char *why, size_t cap)
{
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char m[1400], d[600];

	if (getenv("VXM_CRASH_ONLY"))
		tl_sh("rm -rf '%s.state' && cp -a '%s' '%s.state'", w->dir, w->dir, w->dir);
	if (!cl_completed(w->s, w->dir)) {
		/* every fourth re-run on the program's own contexts (io_uring or
		 * psync, the data path pipelined), the others on the inline
		 * backend, which is many times faster here */
		bool own = w->t.resumes % 4 == 0;
		int ret = cl_run(w->s, w->dir, own ? NULL : &w->io, &r, &err);
		w->t.resumes++;
		w->t.own_io += own;
		if (ret) {
			snprintf(why, cap, "the re-run fails: %s", vxm_err_format(&err, m, sizeof(m)));
			return false;
		}
	}
	if (!cl_dir_equals(w->dir, &w->s->ref, d, sizeof(d))) {
		snprintf(why, cap, "after the re-run %s", d);
		return false;
	}
	w->dir_is_ref = true;
	return true;
}

static void lost(struct wctx *w, const char *what, const char *why)
{
	w->t.lost++;
	if (w->reported++ < 12)
		fprintf(stderr, "  LOST [%s] %s: %s\n", w->s->label, what, why);
	if (getenv("VXM_CRASH_ONLY")) { /* keep the evidence */
		tl_sh("rm -rf '%s.lost' && cp -a '%s' '%s.lost'", w->dir, w->dir, w->dir);
		fprintf(stderr, "  the files after the re-run are in %s.lost\n", w->dir);
	}
}

static void run_states(struct wctx *w, const struct recording *R, const char *what, int depth);

/* J (journal.c I2, merge.c M2): whenever the journal changes, every write
 * made before it is durable: no file has a pending write at a journal
 * save.  Returns the violations; why describes the first. */
static unsigned journal_order_violations(const struct recording *R, char *why, size_t cap)
{
	size_t *pend = malloc((R->nrec + 1) * sizeof(size_t));
	const struct sent *prev = NULL;
	unsigned bad = 0;

	CL_ASSERT(pend);
	for (unsigned j = 0; j < R->nsnap; j++) {
		const struct sent *jn = NULL;
		for (unsigned k = 0; k < R->snaps[j].n; k++)
			if (R->snaps[j].e[k].id == JOURNAL_ID)
				jn = &R->snaps[j].e[k];
		bool changed = jn && (!prev || prev->len != jn->len || memcmp(prev->data, jn->data, jn->len));
		prev = jn;
		if (!changed || j == 0)
			continue;
		size_t np = pending_at(R, R->snaps[j].at, pend);
		if (np && !bad++)
			snprintf(why, cap, "the journal was saved after record %zu while %s had %zu pending write(s) (record %zu, %s [0x%llx,+0x%llx))",
				 R->snaps[j].at, R->idname[R->r[pend[0]].id], np, pend[0],
				 R->r[pend[0]].kind == VXM_FAULT_REC_WRITE ? "write" : "resize",
				 (unsigned long long)R->r[pend[0]].off, (unsigned long long)R->r[pend[0]].len);
	}
	free(pend);
	return bad;
}

/* Writes state st into w->dir and runs every check.  depth 0 states may
 * spawn a recorded resume or replay, crashed in turn. */
static void one_state(struct wctx *w, const struct recording *R, struct state *st,
		      enum variant v, const char *what, bool crash_resume, int depth)
{
	char why[2000], dirty[2400];

	for (unsigned i = 0; i < st->t.n; i++)
		if (!strcmp(st->t.name[i], cl_dest_name(w->s)))
			snprintf(st->dest_name, sizeof(st->dest_name), "%s", st->t.name[i]);
	/* the destination's file id, for the junk exemption */
	st->dest_id = -1;
	for (unsigned i = 0; i < R->nid; i++)
		if (R->idname[i] && !strcmp(R->idname[i], cl_dest_name(w->s)))
			st->dest_id = (int)i;
	cl_tree_write_known(&st->t, w->dir, w->dir_is_ref ? &w->s->ref : NULL);
	w->dir_is_ref = false;
	w->t.states++;
	w->t.var[v]++;
	if (!check_files(w, st, dirty, sizeof(dirty), why, sizeof(why))) {
		lost(w, what, why);
		return;
	}
	if (dirty[0])
		w->t.dirty_seen++;
	if (depth == 0 && dirty[0] && w->replay_left) {
		/* crash the in-place replay of a writable open */
		w->replay_left--;
		struct recording RR;
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		char m[1400], label[2600];
		struct vxm_io *io = rec_begin(&RR, w->dir);
		int ret = vxm_image_open(&img, io, dirty, VXM_IMAGE_RDWR, &err);
		if (!ret)
			vxm_image_close(img);
		rec_end(&RR);
		w->t.replay_recs++;
		if (ret || RR.bad) {
			snprintf(why, sizeof(why), "the writable open (replay) of %s: %s", dirty,
				 ret ? vxm_err_format(&err, m, sizeof(m)) : RR.bad_why);
			lost(w, what, why);
		} else {
			snprintf(label, sizeof(label), "%s, replay of %s", what, strrchr(dirty, '/') + 1);
			run_states(w, &RR, label, depth + 1);
		}
		rec_free(&RR);
		cl_tree_write(&st->t, w->dir); /* back to the state for its own re-run */
	}
	if (depth == 0 && crash_resume) {
		/* record the resume, then crash it at each of its barriers */
		struct recording RR;
		struct vxm_merge_result r;
		struct vxm_err err = { 0 };
		char m[1400], d[600], label[2600];
		struct vxm_io *io = rec_begin(&RR, w->dir);
		int ret = cl_completed(w->s, w->dir) ? 0 : cl_run(w->s, w->dir, io, &r, &err);
		rec_end(&RR);
		w->t.resume_recs++;
		w->t.resumes++;
		if (ret || RR.bad || !cl_dir_equals(w->dir, &w->s->ref, d, sizeof(d))) {
			snprintf(why, sizeof(why), "the recorded resume: %s",
				 ret ? vxm_err_format(&err, m, sizeof(m)) : RR.bad ? RR.bad_why : d);
			lost(w, what, why);
		} else {
			snprintf(label, sizeof(label), "%s, its resume", what);
			run_states(w, &RR, label, depth + 1);
		}
		rec_free(&RR);
		return;
	}
	if (!rerun_ok(w, why, sizeof(why)))
		lost(w, what, why);
}

/* Every state of recording R this worker owns (depth 0: spread over the
 * workers by index; deeper: all, in this worker). */
static int g_worker, g_nworkers;

static void run_states(struct wctx *w, const struct recording *R, const char *what, int depth)
{
	struct cpoint *pts;
	size_t npts = points_of(R, &pts);
	size_t *pend = malloc((R->nrec + 1) * sizeof(size_t));
	uint64_t k = 0;
	/* random variants per point: the budget at the top, one of each
	 * kind, alternating, deeper down */
	double b = w->budget;
	unsigned reps = depth ? 1 : (unsigned)(b < 1 ? 1 : b);
	double keep_prob = depth ? (b < 1 ? b : 1) * 0.5 : (b < 1 ? b : 1);

	CL_ASSERT(pend);
	if (depth > 0 || g_worker == 0) {
		char why[1000];
		if (journal_order_violations(R, why, sizeof(why)))
			lost(w, what, why);
	}
	for (size_t i = 0; i < npts; i++) {
		const struct cpoint *p = &pts[i];
		size_t np = pending_at(R, p->r, pend);
		for (int v = 0; v < V_N; v++) {
			unsigned n = v == V_DURABLE ? 1 : v == V_ALL ? (np ? 1 : 0) : reps;
			if (v == V_DIR_NEXT && !p->dir_next)
				n = 0;
			if (v != V_DURABLE && v != V_DIR_NEXT && !np)
				n = 0;
			for (unsigned rep = 0; rep < n; rep++, k++) {
				uint64_t seed = tl_mix(k * 7919 + i * 104729 + (uint64_t)depth);
				/* sampling (sanitized builds, small budgets, deeper levels) */
				if (v != V_DURABLE && (tl_mix(seed) % 1000) >= keep_prob * 1000)
					continue;
				if (depth == 0 && (k % (uint64_t)g_nworkers) != (uint64_t)g_worker)
					continue;
				char label[3000];
				snprintf(label, sizeof(label), "%s: before %s #%zu (record %zu), %s", what, p->why,
					 i, p->r, vname[v]);
				/* VXM_CRASH_ONLY=LABEL: only that state (and the ones
				 * leading to it), for debugging a reported loss */
				const char *only = getenv("VXM_CRASH_ONLY");
				if (only && *only && strncmp(only, label, strlen(label)) &&
				    strncmp(label, only, strlen(only)))
					continue;
				/* crash the resume of a durable state now and then
				 * (about 8 per scenario, 3 in sanitized builds) */
				double nres = cl_sanitized() ? 3 : 8 * (b < 1 ? 1 : b);
				bool cr = depth == 0 && v == V_DURABLE &&
					  i % (size_t)(npts / nres + 1) == 0;
				/* sanitized builds look for memory errors, not new
				 * orders: a sixth of the durable states, at every
				 * depth (the normal build checks every one) */
				if (v == V_DURABLE && !cr && cl_sanitized() && (i + (size_t)depth) % 6)
					continue;
				static struct state sts[4]; /* per depth, buffers reused */
				struct state *st = &sts[depth];
				build_state(R, p, (enum variant)v, seed, w->dir, st);
				one_state(w, R, st, (enum variant)v, label, cr, depth);
			}
		}
	}
	free(pend);
	free(pts);
}

/* ---- the scenarios ----------------------------------------------------------------------- */

static char *root;
static struct tally total;
static unsigned nscen;

static int setup(void **state)
{
	(void)state;
	root = cl_scratch("crash");
	return root ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (root && !getenv("VXM_CRASH_ONLY"))
		tl_sh("rm -rf '%s'", root);
	free(root);
	return 0;
}

/* Every crash state of one operation; budget_scale scales VXM_CRASH_BUDGET
 * (the sampled variants, not the durable states: every one is checked), and
 * the recorded run must have committed at least min_commits times. */
static void crash_everywhere_at(enum cl_kind kind, const char *tag, double budget_scale,
				uint64_t min_commits)
{
	struct cl_scen s;
	struct recording R;
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char sroot[1200], rec_dir[1300], m[1400], d[600];
	double budget = cl_env_double("VXM_CRASH_BUDGET", 1.0);
	double t0 = (double)time(NULL);

	budget *= budget_scale;
	if (cl_sanitized())
		budget *= 0.1;
	snprintf(sroot, sizeof(sroot), "%s/%s", root, tag);
	cl_scen_setup(&s, kind, sroot, "12M", 4);
	snprintf(rec_dir, sizeof(rec_dir), "%s/rec", sroot);
	assert_int_equal(tl_sh("mkdir -p '%s'", rec_dir), 0);

	/* record the uninterrupted operation */
	cl_tree_write(&s.start, rec_dir);
	struct vxm_io *io = rec_begin(&R, rec_dir);
	int ret = cl_run(&s, rec_dir, io, &r, &err);
	rec_end(&R);
	if (ret)
		fprintf(stderr, "recorded run: %s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	if (r.commits < min_commits)
		fprintf(stderr, "recorded run: %llu commits, want at least %llu\n",
			(unsigned long long)r.commits, (unsigned long long)min_commits);
	assert_true(r.commits >= min_commits);
	if (R.bad)
		fprintf(stderr, "recording: %s\n", R.bad_why);
	assert_false(R.bad);
	/* the recording ends where the reference run did */
	if (!cl_dir_equals(rec_dir, &s.ref, d, sizeof(d)))
		fprintf(stderr, "recorded run: %s\n", d);
	assert_true(cl_dir_equals(rec_dir, &s.ref, d, sizeof(d)));
	size_t syncs = 0, writes = 0;
	for (size_t i = 0; i < R.nrec; i++) {
		syncs += R.r[i].kind == VXM_FAULT_REC_SYNC;
		writes += R.r[i].kind == VXM_FAULT_REC_WRITE;
	}
	struct cpoint *pts;
	size_t npts = points_of(&R, &pts);
	free(pts);
	printf("%s: %zu writes, %zu syncs, %u directory syncs recorded; %zu crash points\n", s.label,
	       writes, syncs, R.nsnap - 1, npts);
	fflush(stdout);

	bool have_qemu = kind == CL_MERGE_BASE && tl_have("qemu-img");
	/* the states, over forked workers */
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nw = ncpu < 1 ? 1 : ncpu > 4 ? 4 : (int)ncpu;
	if (getenv("VXM_CRASH_ONLY"))
		nw = 1;
	pid_t pid[4];
	int fd[4][2];
	for (int i = 0; i < nw; i++) {
		assert_int_equal(pipe(fd[i]), 0);
		fflush(NULL);
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			struct wctx w = { .s = &s, .budget = budget, .replay_left = 2,
					  .qemu_left = have_qemu ? (unsigned)(20 * (budget < 1 ? 1 : budget)) : 0 };
			close(fd[i][0]);
			g_worker = i;
			g_nworkers = nw;
			snprintf(w.dir, sizeof(w.dir), "%s/w%d", sroot, i);
			CL_ASSERT(tl_sh("mkdir -p '%s'", w.dir) == 0);
			CL_ASSERT(vxm_io_init(&w.io, &cl_inline_ops, NULL) == 0);
			run_states(&w, &R, s.label, 0);
			vxm_io_fini(&w.io);
			CL_ASSERT(write(fd[i][1], &w.t, sizeof(w.t)) == (ssize_t)sizeof(w.t));
			fflush(NULL);
			_exit(0);
		}
		close(fd[i][1]);
	}
	struct tally t = { 0 };
	bool died = false;
	for (int i = 0; i < nw; i++) {
		struct tally wt;
		int status;
		ssize_t n = read(fd[i][0], &wt, sizeof(wt));
		close(fd[i][0]);
		waitpid(pid[i], &status, 0);
		if (n != (ssize_t)sizeof(wt) || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "worker %d died (status 0x%x)\n", i, status);
			died = true;
			continue;
		}
		t.states += wt.states;
		t.resumes += wt.resumes;
		t.own_io += wt.own_io;
		t.lost += wt.lost;
		t.exempt += wt.exempt;
		t.resume_recs += wt.resume_recs;
		t.replay_recs += wt.replay_recs;
		t.dirty_seen += wt.dirty_seen;
		t.qemu_same += wt.qemu_same;
		for (int v = 0; v < V_N; v++)
			t.var[v] += wt.var[v];
	}
	printf("  %llu states (", (unsigned long long)t.states);
	for (int v = 0; v < V_N; v++)
		printf("%s%s %llu", v ? ", " : "", vname[v], (unsigned long long)t.var[v]);
	printf("), %llu re-runs (%llu on the program's own I/O contexts); %llu resumes and %llu log replays recorded and crashed; "
	       "%llu states had a dirty log (%llu dirty bases replayed by qemu-img to the same content); "
	       "%llu junk sectors in flight; lost: %llu; %.0f s\n",
	       (unsigned long long)t.resumes, (unsigned long long)t.own_io,
	       (unsigned long long)t.resume_recs,
	       (unsigned long long)t.replay_recs, (unsigned long long)t.dirty_seen,
	       (unsigned long long)t.qemu_same,
	       (unsigned long long)t.exempt, (unsigned long long)t.lost, (double)time(NULL) - t0);
	fflush(stdout);
	total.states += t.states;
	total.resumes += t.resumes;
	total.lost += t.lost;
	total.qemu_same += t.qemu_same;
	nscen++;
	rec_free(&R);
	cl_scen_free(&s);
	if (!getenv("VXM_CRASH_ONLY"))
		tl_sh("rm -rf '%s'", sroot);
	assert_false(died);
	assert_int_equal(t.lost, 0);
}

static void crash_everywhere(enum cl_kind kind, const char *tag)
{
	crash_everywhere_at(kind, tag, 1.0, 0);
}

/* M1-M5 of engine/merge.c under power loss. */
static void power_loss_anywhere_in_a_merge_into_the_base_loses_nothing(void **state)
{
	(void)state;
	crash_everywhere(CL_MERGE_BASE, "base");
}

static void power_loss_anywhere_in_a_merge_into_an_intermediate_with_a_child_loses_nothing(void **state)
{
	(void)state;
	crash_everywhere(CL_MERGE_INTO, "into");
}

static void power_loss_anywhere_in_a_convert_loses_nothing(void **state)
{
	(void)state;
	crash_everywhere(CL_CONVERT, "convert");
}

/* The same with a commit every MiB of the 12 MiB chain (VXM_COMMIT_BYTES,
 * test builds; real merges commit after 1 GiB at the soonest): BAT commits
 * with the cursor between them, and resumes from such a cursor, each under
 * power loss. */
static void power_loss_anywhere_in_a_merge_committing_every_mib_loses_nothing(void **state)
{
	(void)state;
	assert_int_equal(setenv("VXM_COMMIT_BYTES", "1048576", 1), 0);
	crash_everywhere_at(CL_MERGE_BASE, "base-commits", 0.3, 3);
	unsetenv("VXM_COMMIT_BYTES");
}

/* Regression: a convert cut after its rename became durable but before the
 * journal's removal did (out complete, partial gone, journal still there)
 * must finish on the re-run; it used to fail with "the partial output is
 * missing" and leave the user to delete the journal by hand. */
static char g_out[1300], g_journal[1400];
static struct cl_blob g_jcopy;
static bool g_jseen;

static void journal_after_rename(const char *path)
{
	struct stat st;
	(void)path;
	if (stat(g_out, &st) == 0 && cl_read_into(g_journal, &g_jcopy))
		g_jseen = true;
}

static void a_convert_cut_between_its_rename_and_the_journal_removal_finishes_on_rerun(void **state)
{
	struct cl_scen s;
	struct cl_paths p;
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char sroot[1200], dir[1300], m[1400], d[600];
	(void)state;

	snprintf(sroot, sizeof(sroot), "%s/rename", root);
	cl_scen_setup(&s, CL_CONVERT, sroot, "4M", 4);
	snprintf(dir, sizeof(dir), "%s/w", sroot);
	assert_int_equal(tl_sh("mkdir -p '%s'", dir), 0);
	cl_tree_write(&s.start, dir);
	cl_paths(&s, dir, &p);
	snprintf(g_out, sizeof(g_out), "%s", p.out);
	snprintf(g_journal, sizeof(g_journal), "%s", p.journal);
	g_jseen = false;
	vxm_test_dirsync_hook = journal_after_rename;
	int ret = cl_run(&s, dir, NULL, &r, &err);
	vxm_test_dirsync_hook = NULL;
	assert_int_equal(ret, 0);
	assert_true(g_jseen); /* the journal outlived the rename's directory sync */
	/* the state a crash right there leaves */
	cl_write_sparse(p.journal, g_jcopy.p, g_jcopy.len);
	ret = cl_run(&s, dir, NULL, &r, &err);
	if (ret)
		fprintf(stderr, "re-run: %s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	if (!cl_dir_equals(dir, &s.ref, d, sizeof(d)))
		fprintf(stderr, "after the re-run: %s\n", d);
	assert_true(cl_dir_equals(dir, &s.ref, d, sizeof(d)));
	free(g_jcopy.p);
	memset(&g_jcopy, 0, sizeof(g_jcopy));
	cl_scen_free(&s);
	tl_sh("rm -rf '%s'", sroot);
}

/* Regression: a resume that finds every BAT entry in place (the last
 * commit's log entry was durable, the journal's cursor not yet) staged
 * nothing, so its commit skipped the data-sync, and the journal claimed
 * the whole copy while the rewritten payload was still in the page cache:
 * a torn rewrite was then never repaired.  Cut a convert and a merge right
 * after their last log commit, record the resume, and check J. */
static void resume_after_the_last_commit(enum cl_kind kind, const char *tag)
{
	struct cl_scen s;
	struct recording R;
	struct vxm_io low, fio;
	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	char sroot[1200], dir[1300], why[1000], m[1400], d[600];

	snprintf(sroot, sizeof(sroot), "%s/%s", root, tag);
	cl_scen_setup(&s, kind, sroot, "12M", 4);
	snprintf(dir, sizeof(dir), "%s/w", sroot);
	assert_int_equal(tl_sh("mkdir -p '%s'", dir), 0);
	assert_int_equal(vxm_io_init(&low, &cl_inline_ops, NULL), 0);
	assert_int_equal(vxm_io_init(&fio, &vxm_io_fault_ops, &(struct vxm_io_params){ .lower = &low }), 0);
	/* crash at the log-apply of the final commit: count log-applies up to
	 * the journal save of the cursor, found by recording a clean run */
	cl_tree_write(&s.start, dir);
	struct vxm_io *io = rec_begin(&R, dir);
	assert_int_equal(cl_run(&s, dir, io, &r, &err), 0);
	rec_end(&R);
	unsigned nth = 0, applies = 0;
	for (unsigned j = 1; j < R.nsnap && !nth; j++) {
		for (unsigned k = 0; k < R.snaps[j].n; k++) {
			const struct sent *e = &R.snaps[j].e[k];
			if (e->id == JOURNAL_ID && memmem(e->data, e->len, "\ncursor 12582912\n", 17)) {
				applies = 0;
				for (size_t i = 0; i < R.snaps[j].at; i++)
					applies += R.r[i].kind == VXM_FAULT_REC_SYNC && R.r[i].tag &&
						   !strcmp(R.r[i].tag, "log-apply");
				nth = applies;
			}
		}
	}
	rec_free(&R);
	assert_true(nth > 0);
	cl_tree_write(&s.start, dir);
	assert_int_equal(vxm_fault_reset(&fio), 0);
	assert_int_equal(vxm_fault_arm(&fio, &(struct vxm_fault){ .crash_at_tag = "log-apply",
								 .crash_at_tag_nth = nth }), 0);
	assert_int_equal(cl_run(&s, dir, &fio, &r, &err), -VXM_ECRASHED);
	vxm_io_fini(&fio);
	vxm_io_fini(&low);
	/* the resume, recorded */
	io = rec_begin(&R, dir);
	vxm_err_clear(&err);
	int ret = cl_run(&s, dir, io, &r, &err);
	rec_end(&R);
	if (ret)
		fprintf(stderr, "resume: %s\n", vxm_err_format(&err, m, sizeof(m)));
	assert_int_equal(ret, 0);
	assert_true(r.resumed);
	unsigned bad = journal_order_violations(&R, why, sizeof(why));
	if (bad)
		fprintf(stderr, "%s: %s\n", s.label, why);
	assert_int_equal(bad, 0);
	if (!cl_dir_equals(dir, &s.ref, d, sizeof(d)))
		fprintf(stderr, "after the resume: %s\n", d);
	assert_true(cl_dir_equals(dir, &s.ref, d, sizeof(d)));
	rec_free(&R);
	cl_scen_free(&s);
	tl_sh("rm -rf '%s'", sroot);
}

static void a_resumed_convert_records_its_cursor_only_after_a_data_sync(void **state)
{
	(void)state;
	resume_after_the_last_commit(CL_CONVERT, "cursor-convert");
}

static void a_resumed_merge_records_its_cursor_only_after_a_data_sync(void **state)
{
	(void)state;
	resume_after_the_last_commit(CL_MERGE_BASE, "cursor-merge");
}

static void summary(void **state)
{
	(void)state;
	printf("dirty 512-byte bases replayed by qemu-img check -r all to our reader's content: %llu\n",
	       (unsigned long long)total.qemu_same);
	printf("crash states: %llu, resumes: %llu, data lost: %llu\n", (unsigned long long)total.states,
	       (unsigned long long)total.resumes, (unsigned long long)total.lost);
	assert_int_equal(nscen, 4);
	assert_int_equal(total.lost, 0);
}

int main(void)
{
	/* keep big buffers in the heap: every state reuses the same pages
	 * instead of faulting in fresh mappings */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 1 << 30);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_convert_cut_between_its_rename_and_the_journal_removal_finishes_on_rerun),
		cmocka_unit_test(a_resumed_convert_records_its_cursor_only_after_a_data_sync),
		cmocka_unit_test(a_resumed_merge_records_its_cursor_only_after_a_data_sync),
		cmocka_unit_test(power_loss_anywhere_in_a_merge_into_the_base_loses_nothing),
		cmocka_unit_test(power_loss_anywhere_in_a_merge_into_an_intermediate_with_a_child_loses_nothing),
		cmocka_unit_test(power_loss_anywhere_in_a_convert_loses_nothing),
		cmocka_unit_test(power_loss_anywhere_in_a_merge_committing_every_mib_loses_nothing),
		cmocka_unit_test(summary),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
#endif
