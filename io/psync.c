/* io/psync.c: the portable backend, a small pool of threads doing
 * pread/pwrite/fdatasync.
 *
 * It is the fallback wherever io_uring is unavailable, and the reference the
 * other backends are tested against, so it stays simple: one mutex guards
 * everything, and requests move through three FIFOs.
 *
 *   queue()  ──> staged ──submit()──> run ──worker──> (executing) ──> done ──reap()──>
 *
 * Workers (params->workers, default 4) take requests from the head of run.
 * A barrier request (SYNC, CLONE, COPY) is taken only when no request is
 * executing; since run is strictly FIFO, every request queued before it has
 * then completed (O1).  Requests behind the barrier wait until it has
 * started, then run alongside it (O2 allows that).
 *
 * I1: pending == staged.n + run.n + running + done.n: every request is in
 *     exactly one place between queue() and reap().
 * I2: a barrier leaves run only when running == 0 (O1).
 * I3: workers see descriptors only through ps->files, copied under the mutex
 *     by file_added/file_removed; they never read io->files, which the caller
 *     may reallocate while they run.
 * I4: reap() never waits for more than pending requests, and submits what is
 *     staged before it waits, so it cannot sleep forever.
 * I5: READ/WRITE complete whole or at end of file (vxm_fd_rw, O4).
 */
#define _GNU_SOURCE
#include "io_priv.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct pfile {
	int fd;
	bool direct;
};

struct psync {
	pthread_mutex_t mu;
	pthread_cond_t work;    /* workers: something runnable, or stop */
	pthread_cond_t done_cv; /* reaper: a completion */
	struct reqq staged, run, done;
	unsigned running;       /* taken by a worker, not finished */
	unsigned pending;       /* queued, not reaped (I1) */
	unsigned depth;         /* -EBUSY beyond this many pending */
	unsigned nworkers, started;
	bool stop;
	struct pfile *files;    /* I3 */
	unsigned nfiles;
	pthread_t *threads;
	struct vxm_topo *topo;
};

enum { DEFAULT_DEPTH = 64, DEFAULT_WORKERS = 4 };

static bool is_barrier(const struct vxm_req *r)
{
	return r->op == VXM_IO_SYNC || r->op == VXM_IO_CLONE || r->op == VXM_IO_COPY;
}

static bool runnable(const struct psync *ps)
{
	return ps->run.head && (!is_barrier(ps->run.head) || ps->running == 0); /* I2 */
}

/* Debug checker for I1 and I2, run under the mutex at each transition. */
static inline __attribute__((unused)) bool psync_check(const struct psync *ps)
{
	if (ps->pending != ps->staged.n + ps->run.n + ps->running + ps->done.n)
		return false; /* I1 */
	if (ps->pending > ps->depth)
		return false;
	return true;
}

static struct pfile file_at(const struct psync *ps, int slot)
{
	if (slot >= 0 && (unsigned)slot < ps->nfiles)
		return ps->files[slot];
	return (struct pfile){ .fd = -1 };
}

static void *worker(void *arg)
{
	struct psync *ps = arg;

	pthread_mutex_lock(&ps->mu);
	unsigned idx = ps->started++;
	pthread_mutex_unlock(&ps->mu);
	if (ps->topo)
		(void)vxm_topo_bind_thread(ps->topo, idx % vxm_topo_nodes(ps->topo));

	pthread_mutex_lock(&ps->mu);
	for (;;) {
		while (!ps->stop && !runnable(ps))
			pthread_cond_wait(&ps->work, &ps->mu);
		if (ps->stop)
			break;
		struct vxm_req *req = reqq_pop(&ps->run);
		struct pfile f = file_at(ps, req->file);
		struct pfile s = file_at(ps, req->src_file);
		ps->running++;
		if (runnable(ps))
			pthread_cond_signal(&ps->work); /* pass the baton */
		pthread_mutex_unlock(&ps->mu);

		int64_t res = f.fd < 0 ? -EBADF : vxm_fd_exec(req, f.fd, f.direct, s.fd);

		pthread_mutex_lock(&ps->mu);
		req->res = res;
		ps->running--;
		reqq_push(&ps->done, req);
		assert(psync_check(ps));
		pthread_cond_signal(&ps->done_cv);
	}
	pthread_mutex_unlock(&ps->mu);
	return NULL;
}

static void stop_workers(struct psync *ps, unsigned n)
{
	pthread_mutex_lock(&ps->mu);
	ps->stop = true;
	pthread_cond_broadcast(&ps->work);
	pthread_mutex_unlock(&ps->mu);
	for (unsigned i = 0; i < n; i++)
		pthread_join(ps->threads[i], NULL);
}

static int psync_init(struct vxm_io *io, const struct vxm_io_params *p)
{
	struct psync *ps = calloc(1, sizeof(*ps));
	unsigned i;
	int ret;

	if (!ps)
		return -ENOMEM;
	ps->depth = p->queue_depth ? p->queue_depth : DEFAULT_DEPTH;
	ps->nworkers = p->workers ? p->workers : DEFAULT_WORKERS;
	ps->topo = p->topo;
	ps->threads = calloc(ps->nworkers, sizeof(*ps->threads));
	if (!ps->threads) {
		ret = -ENOMEM;
		goto out_free;
	}
	pthread_mutex_init(&ps->mu, NULL);
	pthread_cond_init(&ps->work, NULL);
	pthread_cond_init(&ps->done_cv, NULL);
	for (i = 0; i < ps->nworkers; i++) {
		ret = -pthread_create(&ps->threads[i], NULL, worker, ps);
		if (ret < 0)
			goto out_stop;
	}
	io->priv = ps;
	return 0;

out_stop:
	stop_workers(ps, i);
	pthread_cond_destroy(&ps->done_cv);
	pthread_cond_destroy(&ps->work);
	pthread_mutex_destroy(&ps->mu);
out_free:
	free(ps->threads);
	free(ps);
	return ret;
}

static void psync_fini(struct vxm_io *io)
{
	struct psync *ps = io->priv;

	if (!ps)
		return;
	stop_workers(ps, ps->nworkers); /* requests never taken are dropped */
	pthread_cond_destroy(&ps->done_cv);
	pthread_cond_destroy(&ps->work);
	pthread_mutex_destroy(&ps->mu);
	free(ps->files);
	free(ps->threads);
	free(ps);
	io->priv = NULL;
}

static int psync_file_added(struct vxm_io *io, int slot)
{
	struct psync *ps = io->priv;
	int ret = 0;

	pthread_mutex_lock(&ps->mu);
	if ((unsigned)slot >= ps->nfiles) {
		unsigned n = ps->nfiles ? ps->nfiles : 8;
		while (n <= (unsigned)slot)
			n *= 2;
		struct pfile *f = realloc(ps->files, n * sizeof(*f));
		if (!f) {
			ret = -ENOMEM;
			goto out;
		}
		for (unsigned i = ps->nfiles; i < n; i++)
			f[i] = (struct pfile){ .fd = -1 };
		ps->files = f;
		ps->nfiles = n;
	}
	ps->files[slot] = (struct pfile){ .fd = io->files[slot].fd,
					  .direct = io->files[slot].direct };
out:
	pthread_mutex_unlock(&ps->mu);
	return ret;
}

static void psync_file_removed(struct vxm_io *io, int slot)
{
	struct psync *ps = io->priv;

	pthread_mutex_lock(&ps->mu);
	if ((unsigned)slot < ps->nfiles)
		ps->files[slot].fd = -1;
	pthread_mutex_unlock(&ps->mu);
}

static int psync_size(struct vxm_io *io, int slot, uint64_t *size)
{
	return vxm_fd_size(io->files[slot].fd, size);
}

static int psync_resize(struct vxm_io *io, int slot, uint64_t size)
{
	return vxm_fd_resize(io->files[slot].fd, size);
}

static int psync_queue(struct vxm_io *io, struct vxm_req *req)
{
	struct psync *ps = io->priv;
	int ret = 0;

	pthread_mutex_lock(&ps->mu);
	if (ps->pending >= ps->depth) {
		ret = -EBUSY;
	} else {
		reqq_push(&ps->staged, req);
		ps->pending++;
		assert(psync_check(ps));
	}
	pthread_mutex_unlock(&ps->mu);
	return ret;
}

/* Caller holds ps->mu.  Moves staged requests to run; returns how many. */
static unsigned dispatch(struct psync *ps)
{
	unsigned n = ps->staged.n;
	struct vxm_req *r;

	while ((r = reqq_pop(&ps->staged)))
		reqq_push(&ps->run, r);
	if (n)
		pthread_cond_broadcast(&ps->work);
	return n;
}

static int psync_submit(struct vxm_io *io)
{
	struct psync *ps = io->priv;

	pthread_mutex_lock(&ps->mu);
	unsigned n = dispatch(ps);
	pthread_mutex_unlock(&ps->mu);
	return (int)n;
}

static int psync_reap(struct vxm_io *io, unsigned min, struct vxm_req **done, unsigned max)
{
	struct psync *ps = io->priv;
	unsigned n = 0;

	pthread_mutex_lock(&ps->mu);
	if (min > ps->pending)
		min = ps->pending; /* I4 */
	while (ps->done.n < min) {
		dispatch(ps);
		pthread_cond_wait(&ps->done_cv, &ps->mu);
	}
	while (n < max && ps->done.head)
		done[n++] = reqq_pop(&ps->done);
	ps->pending -= n;
	assert(psync_check(ps));
	pthread_mutex_unlock(&ps->mu);
	return (int)n;
}

const struct vxm_io_ops vxm_io_psync_ops = {
	.name = "psync",
	.version = VXM_IO_OPS_VERSION,
	.flags = VXM_IO_ASYNC | VXM_IO_WHOLE,
	.init = psync_init,
	.fini = psync_fini,
	.file_added = psync_file_added,
	.file_removed = psync_file_removed,
	.file_size = psync_size,
	.file_resize = psync_resize,
	.queue = psync_queue,
	.submit = psync_submit,
	.reap = psync_reap,
};
