/* tests/io/test_topo.c: NUMA topology (io/topo.c) and the buffer pool
 * (io/pool.c).
 *
 * Synthetic topologies describe machines we do not have ("pack:2 numa:1
 * core:2 pu:1": two packages, each one NUMA node with two cores); there the
 * pool's bookkeeping says where buffers belong and binding is computed, not
 * applied.  On the machine itself (one node here) the kernel is asked: the
 * pages' node via hwloc_get_area_memlocation and the thread's CPUs via
 * sched_getaffinity.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/io.h"

#define TWO_NODES "pack:2 numa:1 core:2 pu:1"

/* Synthetic topologies need hwloc, which the build may lack (-ENOSYS). */
static struct vxm_topo *synthetic(const char *desc)
{
	struct vxm_topo *t;
	int ret = vxm_topo_open(&t, desc);

	if (ret == -ENOSYS)
		skip();
	assert_int_equal(ret, 0);
	return t;
}

static void synthetic_two_packages_are_two_nodes_with_their_own_cpus(void **state)
{
	struct vxm_topo *t;
	unsigned cpus[8];
	(void)state;

	t = synthetic(TWO_NODES);
	assert_false(vxm_topo_is_system(t));
	assert_int_equal(vxm_topo_nodes(t), 2);
	assert_int_equal(vxm_topo_node_cpus(t, 0, cpus, 8), 2);
	assert_int_equal(cpus[0], 0);
	assert_int_equal(cpus[1], 1);
	assert_int_equal(vxm_topo_node_cpus(t, 1, cpus, 8), 2);
	assert_int_equal(cpus[0], 2);
	assert_int_equal(cpus[1], 3);
	assert_int_equal(vxm_topo_node_cpus(t, 2, cpus, 8), -EINVAL);
	assert_int_equal(vxm_topo_cpu_node(t, 1), 0);
	assert_int_equal(vxm_topo_cpu_node(t, 3), 1);
	assert_int_equal(vxm_topo_cpu_node(t, 9), -ENOENT);
	/* binding an imaginary machine is computed, not applied */
	assert_int_equal(vxm_topo_bind_thread(t, 1), 0);
	assert_int_equal(vxm_topo_bind_thread(t, 2), -EINVAL);
	vxm_topo_close(t);
}

static void a_bad_synthetic_description_is_refused(void **state)
{
	struct vxm_topo *t = (void *)1;
	(void)state;

	int ret = vxm_topo_open(&t, "pack:two");
	if (ret == -ENOSYS)
		skip();
	assert_int_equal(ret, -EINVAL);
	assert_null(t);
}

/* Each node's slab holds its workers' buffers; get() prefers the node asked
 * for and borrows from another only when it is empty. */
static void pool_on_two_nodes_gives_each_worker_buffers_of_its_node(void **state)
{
	struct vxm_topo *t;
	struct vxm_pool pool;
	void *got[12];
	(void)state;

	t = synthetic(TWO_NODES);
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.topo = t, .buf_size = 5000, .workers = 4, .bufs_per_worker = 3 }), 0);
	assert_int_equal(pool.nnodes, 2);
	assert_int_equal(pool.buf_size, 8192); /* rounded up to 4 KiB */
	assert_int_equal(pool.nbufs, 12);
	assert_int_equal(vxm_pool_free_count(&pool, 0), 6);
	assert_int_equal(vxm_pool_free_count(&pool, 1), 6);
	for (unsigned w = 0; w < 4; w++)
		assert_int_equal(vxm_pool_worker_node(&pool, w), w % 2);
	for (unsigned i = 0; i < 6; i++) {
		got[i] = vxm_pool_get(&pool, 0);
		assert_non_null(got[i]);
		assert_int_equal((uintptr_t)got[i] % 4096, 0);
		assert_int_equal(vxm_pool_buf_node(&pool, got[i]), 0);
		/* memory is usable end to end */
		memset(got[i], (int)i, pool.buf_size);
	}
	/* the kernel cannot be asked about an imaginary machine */
	assert_int_equal(vxm_topo_mem_node(t, got[0], pool.buf_size), -ENOSYS);
	assert_int_equal(pool.remote_gets, 0);
	got[6] = vxm_pool_get(&pool, 0); /* node 0 is empty: borrowed from node 1 */
	assert_non_null(got[6]);
	assert_int_equal(vxm_pool_buf_node(&pool, got[6]), 1);
	assert_int_equal(pool.remote_gets, 1);
	for (unsigned i = 7; i < 12; i++)
		assert_non_null(got[i] = vxm_pool_get(&pool, 1));
	assert_null(vxm_pool_get(&pool, 1)); /* exhausted: never allocates */
	for (unsigned i = 0; i < 12; i++)
		for (unsigned j = i + 1; j < 12; j++)
			assert_ptr_not_equal(got[i], got[j]);
	for (unsigned i = 0; i < 12; i++)
		vxm_pool_put(&pool, got[i]);
	assert_int_equal(vxm_pool_free_count(&pool, 0), 6);
	assert_int_equal(vxm_pool_free_count(&pool, 1), 6);
	int outsider;
	vxm_pool_put(&pool, &outsider); /* ignored */
	assert_int_equal(vxm_pool_buf_node(&pool, &outsider), -EINVAL);
	vxm_pool_fini(&pool);
	vxm_topo_close(t);
}

/* Workers map to nodes round robin; binding a worker names its node, whose
 * cpuset is that node's CPUs. */
static void worker_binding_follows_each_nodes_cpuset(void **state)
{
	struct vxm_topo *t;
	struct vxm_pool pool;
	unsigned cpus[4];
	(void)state;

	t = synthetic(TWO_NODES);
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.topo = t, .buf_size = 4096, .workers = 3, .bufs_per_worker = 1 }), 0);
	/* three workers on two nodes: node 0 gets two of them */
	assert_int_equal(vxm_pool_free_count(&pool, 0), 2);
	assert_int_equal(vxm_pool_free_count(&pool, 1), 1);
	for (unsigned w = 0; w < 3; w++) {
		int node = vxm_pool_bind_worker(&pool, w);
		assert_int_equal(node, (int)(w % 2));
		assert_int_equal(vxm_topo_node_cpus(t, (unsigned)node, cpus, 4), 2);
		assert_int_equal(cpus[0], 2u * (unsigned)node);
		assert_int_equal(cpus[1], 2u * (unsigned)node + 1);
	}
	vxm_pool_fini(&pool);
	vxm_topo_close(t);
}

static void one_node_synthetic_works_unchanged(void **state)
{
	struct vxm_topo *t;
	struct vxm_pool pool;
	(void)state;

	t = synthetic("numa:1 core:2 pu:1");
	assert_int_equal(vxm_topo_nodes(t), 1);
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.topo = t, .buf_size = 4096, .workers = 4, .bufs_per_worker = 2 }), 0);
	assert_int_equal(vxm_pool_free_count(&pool, 0), 8);
	for (unsigned w = 0; w < 4; w++)
		assert_int_equal(vxm_pool_bind_worker(&pool, w), 0);
	void *b = vxm_pool_get(&pool, 3); /* any node number folds onto node 0 */
	assert_non_null(b);
	assert_int_equal(vxm_pool_buf_node(&pool, b), 0);
	vxm_pool_put(&pool, b);
	vxm_pool_fini(&pool);
	vxm_topo_close(t);

	/* and with no topology at all */
	assert_int_equal(vxm_pool_init(&pool, NULL), 0);
	assert_int_equal(pool.nnodes, 1);
	assert_int_equal(pool.buf_size, 1 << 20);
	assert_int_equal(pool.nbufs, 8);
	vxm_pool_fini(&pool);
}

/* On this machine the kernel confirms it: pages live on the node the pool
 * says, and a bound thread runs on exactly its node's CPUs. */
static void on_this_machine_pages_and_threads_land_on_their_node(void **state)
{
	struct vxm_topo *t;
	struct vxm_pool pool;
	unsigned cpus[256];
	cpu_set_t set, saved;
	(void)state;

	assert_int_equal(vxm_topo_open(&t, NULL), 0);
	assert_true(vxm_topo_is_system(t));
	unsigned nodes = vxm_topo_nodes(t);
	assert_true(nodes >= 1);
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.topo = t, .buf_size = 65536, .workers = nodes, .bufs_per_worker = 4 }), 0);
	for (unsigned n = 0; n < nodes; n++) {
		void *b = vxm_pool_get(&pool, n);
		assert_non_null(b);
		assert_int_equal(vxm_pool_buf_node(&pool, b), (int)n);
		int where = vxm_topo_mem_node(t, b, pool.buf_size);
		if (where == -ENOSYS)
			print_message("  node %u: the kernel cannot say where pages live\n", n);
		else
			assert_int_equal(where, (int)n);
		vxm_pool_put(&pool, b);
	}

	/* shrink ourselves to one CPU, then bind: the node's whole set returns */
	assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
	int ncpu = vxm_topo_node_cpus(t, 0, cpus, 256);
	assert_true(ncpu >= 1);
	CPU_ZERO(&set);
	CPU_SET(cpus[0], &set);
	assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
	assert_int_equal(vxm_pool_bind_worker(&pool, 0), 0);
	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	assert_int_equal(CPU_COUNT(&set), ncpu);
	for (int i = 0; i < ncpu; i++)
		assert_true(CPU_ISSET(cpus[i], &set));
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
	vxm_pool_fini(&pool);
	vxm_topo_close(t);
}

/* psync binds its workers when given a topology; they still do I/O. */
static void psync_workers_bound_to_nodes_still_do_io(void **state)
{
	struct vxm_topo *t;
	struct vxm_io io;
	char path[] = "/tmp/vxm_topo_io.XXXXXX";
	uint8_t a[4096], b[4096];
	(void)state;

	assert_int_equal(vxm_topo_open(&t, NULL), 0);
	assert_int_equal(vxm_io_init(&io, &vxm_io_psync_ops, &(struct vxm_io_params){
		.topo = t, .workers = 3 }), 0);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int f = vxm_io_add_fd(&io, fd, path, VXM_O_RDWR);
	memset(a, 0x5A, sizeof(a));
	assert_int_equal(vxm_io_pwrite(&io, f, a, 4096, 0), 0);
	assert_int_equal(vxm_io_pread(&io, f, b, 4096, 0), 4096);
	assert_memory_equal(a, b, 4096);
	vxm_io_fini(&io);
	vxm_topo_close(t);
	unlink(path);
}

/* The slabs become io_uring fixed buffers; I/O from pool buffers works. */
static void pool_slabs_register_as_fixed_buffers(void **state)
{
	struct vxm_io io;
	struct vxm_pool pool;
	char path[] = "/tmp/vxm_topo_reg.XXXXXX";
	(void)state;

	if (vxm_io_init(&io, &vxm_io_uring_ops, NULL) < 0)
		skip();
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.buf_size = 65536, .workers = 2, .bufs_per_worker = 2, .io = &io }), 0);
	assert_true(pool.registered);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int f = vxm_io_add_fd(&io, fd, path, VXM_O_RDWR);
	uint8_t *w = vxm_pool_get(&pool, 0), *r = vxm_pool_get(&pool, 0);
	for (unsigned i = 0; i < 65536; i++)
		w[i] = (uint8_t)(i * 7);
	assert_int_equal(vxm_io_pwrite(&io, f, w, 65536, 0), 0);
	assert_int_equal(vxm_io_pread(&io, f, r, 65536, 0), 65536);
	assert_memory_equal(w, r, 65536);
	vxm_pool_put(&pool, w);
	vxm_pool_put(&pool, r);
	vxm_io_fini(&io); /* the io context goes first: it holds the registration */
	vxm_pool_fini(&pool);
	unlink(path);

	/* psync has no fixed buffers: the pool works, unregistered */
	assert_int_equal(vxm_io_init(&io, &vxm_io_psync_ops, NULL), 0);
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.buf_size = 4096, .io = &io }), 0);
	assert_false(pool.registered);
	vxm_pool_fini(&pool);
	vxm_io_fini(&io);
}

/* I4 of io/topo.c: areas from 2 MiB up are 2 MiB aligned (huge pages can
 * back them, and registered buffers then coalesce into large segments);
 * smaller ones are page aligned.  Both are zeroed. */
static void large_areas_are_aligned_for_huge_pages(void **state)
{
	struct vxm_topo *t;
	struct vxm_topo_mem big, small;
	(void)state;

	assert_int_equal(vxm_topo_open(&t, NULL), 0);
	assert_int_equal(vxm_topo_alloc(t, 0, 3 << 20, &big), 0);
	assert_int_equal((uintptr_t)big.p % (2 << 20), 0);
	assert_int_equal(big.len, 4 << 20);
	if (vxm_topo_mem_node(t, big.p, big.len) != -ENOSYS) { /* hwloc present */
		assert_true(big.bound);
		assert_int_equal(vxm_topo_mem_node(t, big.p, big.len), 0);
	}
	assert_int_equal(vxm_topo_alloc(NULL, 0, 5000, &small), 0);
	assert_int_equal((uintptr_t)small.p % 4096, 0);
	assert_int_equal(small.len, 8192);
	assert_false(small.bound);
	for (size_t i = 0; i < big.len; i += 4096)
		assert_int_equal(((uint8_t *)big.p)[i], 0);
	assert_int_equal(((uint8_t *)small.p)[8191], 0);
	vxm_topo_free(t, &big);
	vxm_topo_free(NULL, &small);
	assert_null(big.p);
	vxm_topo_close(t);
}

struct churn {
	struct vxm_pool *pool;
	unsigned node;
	int bad;
};

static void *churn(void *arg)
{
	struct churn *c = arg;
	void *mine[4];

	for (unsigned round = 0; round < 2000; round++) {
		unsigned n = 0;
		for (; n < 4; n++) {
			mine[n] = vxm_pool_get(c->pool, c->node);
			if (!mine[n])
				break;
			/* a buffer held by two threads at once would be caught here */
			memset(mine[n], (int)c->node + 1, 64);
		}
		for (unsigned i = 0; i < n; i++) {
			for (unsigned k = 0; k < 64; k++)
				if (((uint8_t *)mine[i])[k] != c->node + 1)
					c->bad++;
			vxm_pool_put(c->pool, mine[i]);
		}
	}
	return NULL;
}

static void get_and_put_from_many_threads_never_share_a_buffer(void **state)
{
	struct vxm_topo *t;
	struct vxm_pool pool;
	pthread_t th[4];
	struct churn c[4];
	(void)state;

	t = synthetic(TWO_NODES);
	assert_int_equal(vxm_pool_init(&pool, &(struct vxm_pool_params){
		.topo = t, .buf_size = 4096, .workers = 4, .bufs_per_worker = 3 }), 0);
	for (unsigned i = 0; i < 4; i++) {
		c[i] = (struct churn){ .pool = &pool, .node = i };
		assert_int_equal(pthread_create(&th[i], NULL, churn, &c[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(c[i].bad, 0);
	}
	assert_int_equal(vxm_pool_free_count(&pool, 0) + vxm_pool_free_count(&pool, 1), 12);
	vxm_pool_fini(&pool);
	vxm_topo_close(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(synthetic_two_packages_are_two_nodes_with_their_own_cpus),
		cmocka_unit_test(a_bad_synthetic_description_is_refused),
		cmocka_unit_test(pool_on_two_nodes_gives_each_worker_buffers_of_its_node),
		cmocka_unit_test(worker_binding_follows_each_nodes_cpuset),
		cmocka_unit_test(one_node_synthetic_works_unchanged),
		cmocka_unit_test(on_this_machine_pages_and_threads_land_on_their_node),
		cmocka_unit_test(psync_workers_bound_to_nodes_still_do_io),
		cmocka_unit_test(pool_slabs_register_as_fixed_buffers),
		cmocka_unit_test(large_areas_are_aligned_for_huge_pages),
		cmocka_unit_test(get_and_put_from_many_threads_never_share_a_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
