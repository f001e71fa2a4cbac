/* io/fault.c: the fault-injection wrapper (vxm_io_fault_ops) and its API.
 *
 * Sits on any context (params.lower) and forwards each request as a shadow
 * request, a private copy whose owner field leads back to the caller's
 * request, so the lower backend may use link and xfer freely.  Before
 * forwarding it numbers the op (per kind, since the last arm) and may
 * instead:
 *
 *   crash   the machine "loses power": the op fails with -VXM_ECRASHED, and
 *           so does every later op and every completion reaped afterwards
 *   fail    the op completes with -err_errno and never reaches the lower one
 *   shorten only a prefix is forwarded and the op completes short; the
 *           generic layer (no VXM_IO_WHOLE here) resubmits the rest (O4)
 *
 * With recording on it appends every forwarded WRITE (with a copy of the
 * bytes), SYNC and resize to a log, in queue order, for rebuilding the
 * states a crash could leave on disk:
 *
 *   log:  W0 W1 S2(file 0, completed) W3 W4 R5 S6(not completed) W7
 *         '---- durable (file 0) ----' '-------- pending --------'
 *
 * The public vxm_fault_* functions live here too, beside the state they
 * read (a deliberate exception to "the ops table is the only extern": the
 * wrapper's controls are meaningless apart from it).
 *
 * I1: after crashed is set, no op reaches the lower context and no record
 *     is added; ops already forwarded still finish there (the fini drain
 *     needs them), but report -VXM_ECRASHED.  Size queries still answer:
 *     they change nothing.
 * I2: a record is durable iff a SYNC record of the same file after it
 *     completed with 0 before the crash (synced).  Resizes are treated like
 *     writes (made durable by any later sync of the file).
 * I3: countdowns number only ops accepted before the crash; an op refused
 *     with -EBUSY by the lower context is not numbered, so a retry gets the
 *     same number.
 * I4: every shadow is either on the free list or live in the lower context;
 *     fini waits for the live ones before freeing.
 */
#define _GNU_SOURCE
#include "io_priv.h"
#include "vhdxmerge.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { NOPS = VXM_IO_COPY + 1, REAP_BATCH = 64 };

struct shadow {
	struct vxm_req low;      /* what the lower context sees */
	struct vxm_req *up;      /* the caller's request */
	size_t rec;              /* log index, or SIZE_MAX */
	struct shadow *next;     /* free list */
};

struct tagcount {
	char *tag;
	uint64_t n;
};

struct fault {
	struct vxm_fault arm;
	char *arm_tag;           /* copy of arm.crash_at_tag */
	uint64_t arm_tag_seen;   /* syncs with arm_tag since the arm */
	uint64_t cnt[NOPS];      /* accepted ops per kind since init/reset */
	uint64_t base[NOPS];     /* cnt at the last arm (countdown origin) */
	uint64_t resizes, injected, shortened;
	struct tagcount *tags;
	size_t ntags;
	bool crashed, recording;
	struct vxm_fault_rec *recs;
	size_t nrec, caprec;
	struct reqq done;        /* completed here, not yet reaped */
	struct shadow *free_sh;
	unsigned live;           /* I4 */
};

static struct fault *fault_of(const struct vxm_io *io)
{
	return io && io->ops == &vxm_io_fault_ops ? io->priv : NULL;
}

static uint64_t *tag_counter(struct fault *f, const char *tag)
{
	for (size_t i = 0; i < f->ntags; i++)
		if (!strcmp(f->tags[i].tag, tag))
			return &f->tags[i].n;
	struct tagcount *t = realloc(f->tags, (f->ntags + 1) * sizeof(*t));
	if (!t)
		return NULL;
	f->tags = t;
	t[f->ntags].tag = strdup(tag);
	if (!t[f->ntags].tag)
		return NULL;
	t[f->ntags].n = 0;
	return &t[f->ntags++].n;
}

static void clear_log(struct fault *f)
{
	for (size_t i = 0; i < f->nrec; i++)
		free((void *)f->recs[i].data);
	free(f->recs);
	f->recs = NULL;
	f->nrec = f->caprec = 0;
}

/* Reserves room for one more record. */
static int log_room(struct fault *f)
{
	if (f->nrec < f->caprec)
		return 0;
	size_t cap = f->caprec ? f->caprec * 2 : 64;
	struct vxm_fault_rec *r = realloc(f->recs, cap * sizeof(*r));
	if (!r)
		return -ENOMEM;
	f->recs = r;
	f->caprec = cap;
	return 0;
}

static int fault_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	(void)p;
	io->priv = calloc(1, sizeof(struct fault));
	return io->priv ? 0 : -ENOMEM;
}

static void complete_shadow(struct fault *f, struct shadow *sh)
{
	struct vxm_req *up = sh->up;

	up->res = sh->low.res;
	if (sh->rec != SIZE_MAX) {
		struct vxm_fault_rec *r = &f->recs[sh->rec];
		if (sh->low.res < 0)
			r->failed = true;
		else if (r->kind == VXM_FAULT_REC_SYNC && !f->crashed)
			r->synced = true; /* I2 */
	}
	if (f->crashed)
		up->res = -VXM_ECRASHED; /* I1 */
	sh->next = f->free_sh;
	f->free_sh = sh;
	f->live--;
}

static void fault_fini(struct vxm_io *io)
{
	struct fault *f = io->priv;
	struct vxm_req *low[REAP_BATCH];

	if (!f)
		return;
	if (f->live) { /* I4: normally vxm_io_fini's drain already did this */
		(void)vxm_io_submit(io->lower);
		while (f->live) {
			int n = vxm_io_reap(io->lower, 1, low, REAP_BATCH);
			if (n <= 0)
				break;
			for (int i = 0; i < n; i++)
				complete_shadow(f, low[i]->owner);
		}
	}
	while (f->free_sh) {
		struct shadow *sh = f->free_sh;
		f->free_sh = sh->next;
		free(sh);
	}
	clear_log(f);
	for (size_t i = 0; i < f->ntags; i++)
		free(f->tags[i].tag);
	free(f->tags);
	free(f->arm_tag);
	free(f);
	io->priv = NULL;
}

static int fault_size(struct vxm_io *io, int slot, uint64_t *size)
{
	return vxm_io_size(io->lower, slot, size);
}

static int fault_resize(struct vxm_io *io, int slot, uint64_t size)
{
	struct fault *f = io->priv;
	int ret;

	if (f->crashed)
		return -VXM_ECRASHED;
	if (f->recording && log_room(f) < 0)
		return -ENOMEM;
	ret = vxm_io_resize(io->lower, slot, size);
	f->resizes++;
	if (f->recording)
		f->recs[f->nrec++] = (struct vxm_fault_rec){
			.kind = VXM_FAULT_REC_RESIZE, .file = slot, .off = size,
			.failed = ret < 0 };
	return ret;
}

static bool countdown_hits(unsigned at, bool sticky, uint64_t n)
{
	return at && (n == at || (sticky && n > at));
}

static void fail_here(struct fault *f, struct vxm_req *up, int64_t res)
{
	up->res = res;
	reqq_push(&f->done, up);
}

static int fault_queue(struct vxm_io *io, struct vxm_req *up)
{
	struct fault *f = io->priv;
	const struct vxm_fault *a = &f->arm;
	unsigned op = up->op;
	uint64_t n, len = up->len;
	bool crash = false, tag_hit = false, shortened = false;
	int err = 0;

	if (f->crashed) {
		fail_here(f, up, -VXM_ECRASHED); /* I1 */
		return 0;
	}
	n = f->cnt[op] - f->base[op] + 1; /* this op's number since the arm (I3) */
	if (op == VXM_IO_WRITE && a->crash_at_write && n == a->crash_at_write)
		crash = true;
	if (op == VXM_IO_SYNC && a->crash_at_sync && n == a->crash_at_sync)
		crash = true;
	if (op == VXM_IO_SYNC && f->arm_tag && up->tag && !strcmp(up->tag, f->arm_tag)) {
		tag_hit = true;
		if (f->arm_tag_seen + 1 == (a->crash_at_tag_nth ? a->crash_at_tag_nth : 1))
			crash = true;
	}
	if (!crash && a->err_op == op && countdown_hits(a->err_at, a->err_sticky, n))
		err = a->err_errno ? a->err_errno : EIO;
	if (!crash && !err && a->short_op == op && (op == VXM_IO_READ || op == VXM_IO_WRITE) &&
	    up->len > 1 && (!a->short_len || a->short_len < up->len) &&
	    countdown_hits(a->short_at, a->short_sticky, n)) {
		len = a->short_len ? a->short_len : up->len / 2; /* 1 <= len < up->len */
		shortened = true;
	}

	struct shadow *sh = NULL;
	uint8_t *copy = NULL;
	bool rec = f->recording && !crash && !err &&
		   (op == VXM_IO_WRITE || op == VXM_IO_SYNC);
	if (!crash && !err) {
		sh = f->free_sh;
		if (sh)
			f->free_sh = sh->next;
		else if (!(sh = malloc(sizeof(*sh))))
			return -ENOMEM;
		if (rec && (log_room(f) < 0 ||
			    (op == VXM_IO_WRITE && !(copy = malloc(len ? len : 1))))) {
			sh->next = f->free_sh;
			f->free_sh = sh;
			return -ENOMEM;
		}
		sh->low = *up;
		sh->low.len = len;
		sh->low.owner = sh;
		sh->low.link = NULL;
		sh->up = up;
		sh->rec = SIZE_MAX;
		int ret = vxm_io_queue(io->lower, &sh->low);
		if (ret < 0) { /* not numbered (I3) */
			free(copy);
			sh->next = f->free_sh;
			f->free_sh = sh;
			return ret;
		}
		f->live++;
	}

	/* the op is accepted: number it */
	f->cnt[op]++;
	if (op == VXM_IO_SYNC && up->tag) {
		uint64_t *c = tag_counter(f, up->tag);
		if (c)
			(*c)++;
	}
	if (tag_hit)
		f->arm_tag_seen++;
	if (crash) {
		f->crashed = true;
		fail_here(f, up, -VXM_ECRASHED);
		return 0;
	}
	if (err) {
		f->injected++;
		fail_here(f, up, -err);
		return 0;
	}
	if (shortened)
		f->shortened++;
	if (rec) {
		if (copy)
			memcpy(copy, up->buf, len);
		sh->rec = f->nrec;
		f->recs[f->nrec++] = (struct vxm_fault_rec){
			.kind = op == VXM_IO_WRITE ? VXM_FAULT_REC_WRITE : VXM_FAULT_REC_SYNC,
			.file = up->file,
			.off = up->off,
			.len = op == VXM_IO_WRITE ? len : 0,
			.data = copy,
			.tag = up->tag,
			.full = (up->flags & VXM_REQ_FULLSYNC) != 0,
		};
	}
	return 0;
}

static int fault_submit(struct vxm_io *io)
{
	return vxm_io_submit(io->lower);
}

static int fault_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct fault *f = io->priv;
	struct vxm_req *low[REAP_BATCH];
	unsigned n = 0;

	while (n < max && f->done.head)
		done[n++] = reqq_pop(&f->done);
	if (n == max || !f->live)
		return (int)n;
	unsigned room = max - n > REAP_BATCH ? REAP_BATCH : max - n;
	unsigned want = min > n ? min - n : 0;
	if (want > room)
		want = room;
	int m = vxm_io_reap(io->lower, want, low, room);
	if (m < 0)
		return n ? (int)n : m;
	for (int i = 0; i < m; i++) {
		struct shadow *sh = low[i]->owner;
		done[n++] = sh->up;
		complete_shadow(f, sh);
	}
	return (int)n;
}

static int fault_register_bufs(struct vxm_io *io, void *const *bufs, const size_t *lens,
			       unsigned n)
{
	return vxm_io_register_bufs(io->lower, bufs, lens, n);
}

const struct vxm_io_ops vxm_io_fault_ops = {
	.name = "fault",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_ASYNC | VXM_IO_WRAPPER,
	.init = fault_init,
	.fini = fault_fini,
	.file_size = fault_size,
	.file_resize = fault_resize,
	.queue = fault_queue,
	.submit = fault_submit,
	.reap = fault_reap,
	.register_bufs = fault_register_bufs,
};

/* ---- the controls ---- */

int vxm_fault_arm(struct vxm_io *io, const struct vxm_fault *arm)
{
	struct fault *f = fault_of(io);
	char *tag = NULL;

	if (!f)
		return -EINVAL;
	if (arm && arm->crash_at_tag && !(tag = strdup(arm->crash_at_tag)))
		return -ENOMEM;
	free(f->arm_tag);
	f->arm_tag = tag;
	f->arm = arm ? *arm : (struct vxm_fault){0};
	f->arm.crash_at_tag = tag;
	f->arm_tag_seen = 0;
	memcpy(f->base, f->cnt, sizeof(f->base));
	return 0;
}

int vxm_fault_record(struct vxm_io *io, bool on)
{
	struct fault *f = fault_of(io);

	if (!f)
		return -EINVAL;
	f->recording = on;
	return 0;
}

int vxm_fault_reset(struct vxm_io *io)
{
	struct fault *f = fault_of(io);

	if (!f)
		return -EINVAL;
	if (f->live)
		return -EBUSY; /* records of live shadows would dangle */
	vxm_fault_arm(io, NULL);
	clear_log(f);
	for (size_t i = 0; i < f->ntags; i++)
		free(f->tags[i].tag);
	free(f->tags);
	f->tags = NULL;
	f->ntags = 0;
	memset(f->cnt, 0, sizeof(f->cnt));
	memset(f->base, 0, sizeof(f->base));
	f->resizes = f->injected = f->shortened = 0;
	f->crashed = false;
	return 0;
}

bool vxm_fault_crashed(const struct vxm_io *io)
{
	const struct fault *f = fault_of(io);
	return f && f->crashed;
}

int vxm_fault_counts(const struct vxm_io *io, struct vxm_fault_counts *out)
{
	const struct fault *f = fault_of(io);

	if (!f)
		return -EINVAL;
	*out = (struct vxm_fault_counts){
		.reads = f->cnt[VXM_IO_READ],
		.writes = f->cnt[VXM_IO_WRITE],
		.syncs = f->cnt[VXM_IO_SYNC],
		.clones = f->cnt[VXM_IO_CLONE],
		.copies = f->cnt[VXM_IO_COPY],
		.resizes = f->resizes,
		.injected = f->injected,
		.shortened = f->shortened,
	};
	return 0;
}

uint64_t vxm_fault_tag_count(const struct vxm_io *io, const char *tag)
{
	const struct fault *f = fault_of(io);

	if (!f || !tag)
		return 0;
	for (size_t i = 0; i < f->ntags; i++)
		if (!strcmp(f->tags[i].tag, tag))
			return f->tags[i].n;
	return 0;
}

size_t vxm_fault_recs(const struct vxm_io *io, const struct vxm_fault_rec **out)
{
	const struct fault *f = fault_of(io);

	*out = f ? f->recs : NULL;
	return f ? f->nrec : 0;
}

/* durable[i] per I2; the caller frees it.  NULL on ENOMEM. */
static bool *durable_map(const struct fault *f)
{
	bool *d = calloc(f->nrec ? f->nrec : 1, sizeof(*d));
	int maxslot = -1;
	size_t *last;

	if (!d)
		return NULL;
	for (size_t i = 0; i < f->nrec; i++)
		if (f->recs[i].file > maxslot)
			maxslot = f->recs[i].file;
	last = calloc((size_t)maxslot + 2, sizeof(*last)); /* one past the last synced SYNC */
	if (!last) {
		free(d);
		return NULL;
	}
	for (size_t i = 0; i < f->nrec; i++)
		if (f->recs[i].kind == VXM_FAULT_REC_SYNC && f->recs[i].synced &&
		    f->recs[i].file >= 0)
			last[f->recs[i].file] = i + 1;
	for (size_t i = 0; i < f->nrec; i++)
		d[i] = f->recs[i].file >= 0 && i < last[f->recs[i].file];
	free(last);
	return d;
}

static bool is_data(const struct vxm_fault_rec *r)
{
	return (r->kind == VXM_FAULT_REC_WRITE || r->kind == VXM_FAULT_REC_RESIZE) && !r->failed;
}

size_t vxm_fault_pending(const struct vxm_io *io, size_t *idx, size_t max)
{
	const struct fault *f = fault_of(io);
	size_t n = 0;
	bool *d;

	if (!f || !(d = durable_map(f)))
		return 0;
	for (size_t i = 0; i < f->nrec; i++) {
		if (!is_data(&f->recs[i]) || d[i])
			continue;
		if (n < max)
			idx[n] = i;
		n++;
	}
	free(d);
	return n;
}

static int apply(const struct vxm_fault_rec *r, struct vxm_io *dst, const int *map)
{
	int slot = map ? map[r->file] : r->file;

	if (r->kind == VXM_FAULT_REC_WRITE)
		return vxm_io_pwrite(dst, slot, r->data, r->len, r->off);
	if (r->kind == VXM_FAULT_REC_RESIZE)
		return vxm_io_resize(dst, slot, r->off);
	return 0;
}

int vxm_fault_replay(const struct vxm_io *io, size_t n, struct vxm_io *dst, const int *map)
{
	const struct fault *f = fault_of(io);

	if (!f)
		return -EINVAL;
	if (n > f->nrec)
		n = f->nrec;
	for (size_t i = 0; i < n; i++) {
		if (!is_data(&f->recs[i]))
			continue;
		int ret = apply(&f->recs[i], dst, map);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int vxm_fault_replay_crash(const struct vxm_io *io, const bool *keep, size_t nkeep,
			   struct vxm_io *dst, const int *map)
{
	const struct fault *f = fault_of(io);
	size_t k = 0;
	bool *d;
	int ret = 0;

	if (!f)
		return -EINVAL;
	if (!(d = durable_map(f)))
		return -ENOMEM;
	for (size_t i = 0; i < f->nrec && ret == 0; i++) {
		const struct vxm_fault_rec *r = &f->recs[i];
		if (!is_data(r))
			continue;
		if (d[i])
			ret = apply(r, dst, map);
		else if (k++ < nkeep && keep[k - 1])
			ret = apply(r, dst, map);
	}
	free(d);
	return ret;
}
