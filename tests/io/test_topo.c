/* tests/io/test_topo.c: NUMA topology and placed memory (io/topo.c).
 *
 * Synthetic topologies describe machines we do not have ("pack:2 numa:1
 * core:2 pu:1": two packages, each one NUMA node with two cores); there
 * binding is computed, not applied.  On the machine itself (one node here)
 * the kernel is asked: the pages' node via hwloc_get_area_memlocation and
 * the thread's CPUs via sched_getaffinity.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
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

static void one_node_synthetic_works_unchanged(void **state)
{
	struct vxm_topo *t;
	struct vxm_topo_mem m;
	unsigned cpus[4];
	(void)state;

	t = synthetic("numa:1 core:2 pu:1");
	assert_int_equal(vxm_topo_nodes(t), 1);
	assert_int_equal(vxm_topo_node_cpus(t, 0, cpus, 4), 2);
	assert_int_equal(vxm_topo_cpu_node(t, 1), 0);
	assert_int_equal(vxm_topo_bind_thread(t, 0), 0);
	assert_int_equal(vxm_topo_bind_thread(t, 1), -EINVAL);
	/* memory of an imaginary node is ordinary memory, not bound */
	assert_int_equal(vxm_topo_alloc(t, 1, 4096, &m), -EINVAL);
	assert_int_equal(vxm_topo_alloc(t, 0, 4096, &m), 0);
	assert_false(m.bound);
	assert_int_equal(vxm_topo_mem_node(t, m.p, m.len), -ENOSYS);
	memset(m.p, 0x5A, m.len);
	vxm_topo_free(t, &m);
	vxm_topo_close(t);
}

/* On this machine the kernel confirms it: memory placed on a node (as the
 * merge executor places its buffers) lives there, and a bound thread runs on
 * exactly its node's CPUs. */
static void on_this_machine_pages_and_threads_land_on_their_node(void **state)
{
	struct vxm_topo *t;
	unsigned cpus[256];
	cpu_set_t set, saved;
	(void)state;

	assert_int_equal(vxm_topo_open(&t, NULL), 0);
	assert_true(vxm_topo_is_system(t));
	unsigned nodes = vxm_topo_nodes(t);
	assert_true(nodes >= 1);
	for (unsigned n = 0; n < nodes; n++) {
		struct vxm_topo_mem m;
		assert_int_equal(vxm_topo_alloc(t, n, 65536, &m), 0);
		assert_int_equal(m.node, n);
		int where = vxm_topo_mem_node(t, m.p, m.len);
		if (where == -ENOSYS)
			print_message("  node %u: the kernel cannot say where pages live\n", n);
		else
			assert_int_equal(where, (int)n);
		vxm_topo_free(t, &m);
	}

	/* shrink ourselves to one CPU, then bind: the node's whole set returns */
	assert_int_equal(sched_getaffinity(0, sizeof(saved), &saved), 0);
	int ncpu = vxm_topo_node_cpus(t, 0, cpus, 256);
	assert_true(ncpu >= 1);
	CPU_ZERO(&set);
	CPU_SET(cpus[0], &set);
	assert_int_equal(sched_setaffinity(0, sizeof(set), &set), 0);
	assert_int_equal(vxm_topo_bind_thread(t, 0), 0);
	assert_int_equal(sched_getaffinity(0, sizeof(set), &set), 0);
	assert_int_equal(CPU_COUNT(&set), ncpu);
	for (int i = 0; i < ncpu; i++)
		assert_true(CPU_ISSET(cpus[i], &set));
	assert_int_equal(sched_setaffinity(0, sizeof(saved), &saved), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(synthetic_two_packages_are_two_nodes_with_their_own_cpus),
		cmocka_unit_test(a_bad_synthetic_description_is_refused),
		cmocka_unit_test(one_node_synthetic_works_unchanged),
		cmocka_unit_test(on_this_machine_pages_and_threads_land_on_their_node),
		cmocka_unit_test(psync_workers_bound_to_nodes_still_do_io),
		cmocka_unit_test(large_areas_are_aligned_for_huge_pages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
