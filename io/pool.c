/* io/pool.c: the I/O buffer pool, one slab and one free list per NUMA node.
 *
 * At init each node gets a single slab (vxm_topo_alloc: bound to the node
 * when the topology is this machine, 4 KiB aligned, pages touched) sized for
 * the workers of that node, carved into equal buffers.  get/put only move
 * pointers on a per-node stack under that node's mutex; the hot path never
 * allocates.  Registering the slabs with an io context (split at 1 GiB, the
 * io_uring limit per registered buffer) lets every pool buffer be used with
 * READ_FIXED/WRITE_FIXED.
 *
 *   node k:  slab [ buf 0 | buf 1 | ... | buf n-1 ]   free: stack of buf*
 *   worker w ──> node w % nnodes
 *
 * I1: a buffer belongs to exactly one slab, found by address; it is either
 *     on that node's free stack or out with a caller.
 * I2: every buffer is buf_size bytes, buf_size % 4096 == 0, and starts on a
 *     4 KiB boundary (slabs are aligned, buf_size is a multiple).
 * I3: node k's slab holds bufs_per_worker buffers per worker w with
 *     w % nnodes == k (no slab when no worker lives there).
 */
#define _GNU_SOURCE
#include "io_priv.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { ALIGN = 4096, DEFAULT_BPW = 8 };
#define DEFAULT_BUF (1u << 20)
#define REG_MAX ((size_t)1 << 30)

struct vxm_pool_node {
	pthread_mutex_t mu;
	struct vxm_topo_mem mem;  /* the slab */
	void **stack;             /* free buffers */
	unsigned nfree, nbufs, workers;
};

static int slab_of(const struct vxm_pool *pool, const void *buf)
{
	uintptr_t a = (uintptr_t)buf;

	for (unsigned k = 0; k < pool->nnodes; k++) {
		const struct vxm_topo_mem *m = &pool->node[k].mem;
		uintptr_t b = (uintptr_t)m->p;
		if (m->p && a >= b && a < b + (uintptr_t)pool->node[k].nbufs * pool->buf_size)
			return (int)k;
	}
	return -EINVAL;
}

void vxm_pool_fini(struct vxm_pool *pool)
{
	if (!pool->node)
		return;
	for (unsigned k = 0; k < pool->nnodes; k++) {
		struct vxm_pool_node *nd = &pool->node[k];
		pthread_mutex_destroy(&nd->mu);
		vxm_topo_free(pool->topo, &nd->mem);
		free(nd->stack);
	}
	free(pool->node);
	memset(pool, 0, sizeof(*pool));
}

int vxm_pool_init(struct vxm_pool *pool, const struct vxm_pool_params *p)
{
	struct vxm_pool_params def = {0};
	int ret;

	if (!p)
		p = &def;
	memset(pool, 0, sizeof(*pool));
	pool->topo = p->topo;
	pool->nnodes = vxm_topo_nodes(p->topo);
	pool->buf_size = p->buf_size ? (p->buf_size + ALIGN - 1) / ALIGN * ALIGN : DEFAULT_BUF;
	pool->workers = p->workers ? p->workers : pool->nnodes;
	unsigned bpw = p->bufs_per_worker ? p->bufs_per_worker : DEFAULT_BPW;
	pool->node = calloc(pool->nnodes, sizeof(*pool->node));
	if (!pool->node)
		return -ENOMEM;
	for (unsigned k = 0; k < pool->nnodes; k++) {
		struct vxm_pool_node *nd = &pool->node[k];
		pthread_mutex_init(&nd->mu, NULL);
		/* I3 */
		nd->workers = pool->workers / pool->nnodes + (k < pool->workers % pool->nnodes);
		nd->nbufs = nd->workers * bpw;
		if (!nd->nbufs)
			continue;
		nd->stack = calloc(nd->nbufs, sizeof(*nd->stack));
		if (!nd->stack) {
			ret = -ENOMEM;
			goto out_fini;
		}
		ret = vxm_topo_alloc(p->topo, k, (size_t)nd->nbufs * pool->buf_size, &nd->mem);
		if (ret < 0)
			goto out_fini;
		for (unsigned i = nd->nbufs; i-- > 0;) /* lowest address handed out first */
			nd->stack[nd->nfree++] = (uint8_t *)nd->mem.p + (size_t)i * pool->buf_size;
		pool->nbufs += nd->nbufs;
	}
	if (p->io) {
		ret = vxm_pool_register(pool, p->io);
		if (ret < 0 && ret != -EOPNOTSUPP)
			goto out_fini;
	}
	return 0;

out_fini:
	vxm_pool_fini(pool);
	return ret;
}

static void *pop(struct vxm_pool_node *nd)
{
	void *b = NULL;

	pthread_mutex_lock(&nd->mu);
	if (nd->nfree)
		b = nd->stack[--nd->nfree];
	pthread_mutex_unlock(&nd->mu);
	return b;
}

void *vxm_pool_get(struct vxm_pool *pool, unsigned node)
{
	unsigned home = node % pool->nnodes;
	void *b = pop(&pool->node[home]);

	for (unsigned i = 1; !b && i < pool->nnodes; i++) {
		b = pop(&pool->node[(home + i) % pool->nnodes]);
		if (b)
			__atomic_fetch_add(&pool->remote_gets, 1, __ATOMIC_RELAXED);
	}
	return b;
}

void vxm_pool_put(struct vxm_pool *pool, void *buf)
{
	int k = buf ? slab_of(pool, buf) : -EINVAL;

	if (k < 0)
		return; /* not ours: ignore rather than corrupt a free list */
	struct vxm_pool_node *nd = &pool->node[k];
	pthread_mutex_lock(&nd->mu);
	if (nd->nfree < nd->nbufs)
		nd->stack[nd->nfree++] = buf;
	pthread_mutex_unlock(&nd->mu);
}

int vxm_pool_buf_node(const struct vxm_pool *pool, const void *buf)
{
	return slab_of(pool, buf);
}

unsigned vxm_pool_free_count(struct vxm_pool *pool, unsigned node)
{
	unsigned n;

	if (node >= pool->nnodes)
		return 0;
	pthread_mutex_lock(&pool->node[node].mu);
	n = pool->node[node].nfree;
	pthread_mutex_unlock(&pool->node[node].mu);
	return n;
}

unsigned vxm_pool_worker_node(const struct vxm_pool *pool, unsigned worker)
{
	return worker % pool->nnodes;
}

int vxm_pool_bind_worker(const struct vxm_pool *pool, unsigned worker)
{
	unsigned node = vxm_pool_worker_node(pool, worker);
	int ret = pool->topo ? vxm_topo_bind_thread(pool->topo, node) : 0;

	return ret < 0 ? ret : (int)node;
}

int vxm_pool_register(struct vxm_pool *pool, struct vxm_io *io)
{
	void *bufs[64];
	size_t lens[64];
	unsigned n = 0;
	int ret;

	for (unsigned k = 0; k < pool->nnodes; k++) {
		uint8_t *p = pool->node[k].mem.p;
		size_t left = (size_t)pool->node[k].nbufs * pool->buf_size;
		while (p && left) {
			size_t chunk = left > REG_MAX ? REG_MAX : left;
			if (n == 64)
				return -E2BIG;
			bufs[n] = p;
			lens[n++] = chunk;
			p += chunk;
			left -= chunk;
		}
	}
	ret = vxm_io_register_bufs(io, bufs, lens, n);
	pool->registered = ret == 0 && n;
	return ret;
}
