/* io/topo.c: NUMA topology through hwloc, behind opaque types.
 *
 * At open we copy what the rest of io/ needs out of hwloc into plain arrays:
 * per node (hwloc's logical order) the OS index and the OS indexes of its
 * CPUs.  The hwloc topology is kept only for binding, placement and the
 * memory-location query.  No hwloc type appears in io.h.
 *
 *   vxm_topo ── nodes[0..n) ── { os_index, cpus[] }     (+ hwloc cpuset/nodeset)
 *
 * A synthetic topology (hwloc_topology_set_synthetic) is not this machine:
 * hwloc would silently fake binding and placement, so we do not call it;
 * binding returns 0, memory is not bound, and the memory query returns
 * -ENOSYS.
 *
 * Memory comes from mmap, then hwloc_set_area_membind() to the node before
 * the first touch.  Areas of 2 MiB or more are 2 MiB aligned and advised
 * MADV_HUGEPAGE: an io_uring registered buffer backed by huge pages is
 * coalesced into large segments, so a 1 MiB O_DIRECT request is a handful
 * of segments instead of 256 pages (measured: several times the throughput
 * on virtio-blk, whose queue takes 254 segments).  Without hwloc (no VXM_HAVE_HWLOC) the machine is one
 * node holding the CPUs this process may use.
 *
 * I1: nnodes >= 1 and every node has at least one CPU, or binding it binds
 *     to every CPU of the machine (memory-only nodes).
 * I2: memory from vxm_topo_alloc is 4 KiB aligned, zeroed and touched, so
 *     its pages exist (on the chosen node when bound) before first use.
 * I3: every area is one private anonymous mapping of m->len bytes.
 * I4: areas of 2 MiB or more start and end on 2 MiB boundaries.
 */
#define _GNU_SOURCE
#include "io_priv.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <string.h>
#include <unistd.h>

#ifdef VXM_HAVE_HWLOC
#include <hwloc.h>
#endif

enum { ALIGN = 4096 };
#define HUGE ((size_t)2 << 20)

struct tnode {
	unsigned os_index;
	unsigned *cpus;
	unsigned ncpus;
#ifdef VXM_HAVE_HWLOC
	hwloc_const_cpuset_t cpuset;
	hwloc_const_nodeset_t nodeset;
#endif
};

struct vxm_topo {
	bool system;
	unsigned nnodes;
	struct tnode *nodes;
#ifdef VXM_HAVE_HWLOC
	hwloc_topology_t t;
#endif
};

static size_t round_up(size_t n)
{
	return (n + ALIGN - 1) / ALIGN * ALIGN;
}

void vxm_topo_close(struct vxm_topo *topo)
{
	if (!topo)
		return;
	for (unsigned i = 0; i < topo->nnodes; i++)
		free(topo->nodes[i].cpus);
	free(topo->nodes);
#ifdef VXM_HAVE_HWLOC
	if (topo->t)
		hwloc_topology_destroy(topo->t);
#endif
	free(topo);
}

#ifdef VXM_HAVE_HWLOC
static int load(struct vxm_topo *topo, const char *synthetic)
{
	int n;

	if (hwloc_topology_init(&topo->t) < 0)
		return -ENOMEM;
	if (synthetic && hwloc_topology_set_synthetic(topo->t, synthetic) < 0)
		return -EINVAL;
	if (hwloc_topology_load(topo->t) < 0)
		return errno ? -errno : -EIO;
	topo->system = hwloc_topology_is_thissystem(topo->t);
	n = hwloc_get_nbobjs_by_type(topo->t, HWLOC_OBJ_NUMANODE);
	if (n < 1)
		n = 1;
	topo->nodes = calloc((size_t)n, sizeof(*topo->nodes));
	if (!topo->nodes)
		return -ENOMEM;
	topo->nnodes = (unsigned)n;
	for (int i = 0; i < n; i++) {
		hwloc_obj_t o = hwloc_get_obj_by_type(topo->t, HWLOC_OBJ_NUMANODE, (unsigned)i);
		hwloc_obj_t root = hwloc_get_root_obj(topo->t);
		struct tnode *nd = &topo->nodes[i];
		hwloc_const_cpuset_t cs = o ? o->cpuset : root->cpuset;
		unsigned cpu;

		if (hwloc_bitmap_iszero(cs))
			cs = root->cpuset; /* I1: memory-only node */
		nd->os_index = o ? o->os_index : 0;
		nd->cpuset = cs;
		nd->nodeset = o ? o->nodeset : root->nodeset;
		int w = hwloc_bitmap_weight(cs);
		nd->cpus = calloc(w > 0 ? (size_t)w : 1, sizeof(*nd->cpus));
		if (!nd->cpus)
			return -ENOMEM;
		hwloc_bitmap_foreach_begin(cpu, cs)
			nd->cpus[nd->ncpus++] = cpu;
		hwloc_bitmap_foreach_end();
	}
	return 0;
}
#else
static int load(struct vxm_topo *topo, const char *synthetic)
{
	cpu_set_t set;

	if (synthetic)
		return -ENOSYS;
	topo->system = true;
	topo->nodes = calloc(1, sizeof(*topo->nodes));
	if (!topo->nodes)
		return -ENOMEM;
	topo->nnodes = 1;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	topo->nodes[0].cpus = calloc((size_t)CPU_COUNT(&set), sizeof(unsigned));
	if (!topo->nodes[0].cpus)
		return -ENOMEM;
	for (unsigned c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			topo->nodes[0].cpus[topo->nodes[0].ncpus++] = c;
	return 0;
}
#endif

int vxm_topo_open(struct vxm_topo **out, const char *synthetic)
{
	struct vxm_topo *topo = calloc(1, sizeof(*topo));
	int ret;

	*out = NULL;
	if (!topo)
		return -ENOMEM;
	ret = load(topo, synthetic);
	if (ret < 0) {
		vxm_topo_close(topo);
		return ret;
	}
	*out = topo;
	return 0;
}

unsigned vxm_topo_nodes(const struct vxm_topo *topo)
{
	return topo ? topo->nnodes : 1;
}

bool vxm_topo_is_system(const struct vxm_topo *topo)
{
	return topo && topo->system;
}

int vxm_topo_node_cpus(const struct vxm_topo *topo, unsigned node, unsigned *cpus, unsigned max)
{
	if (!topo || node >= topo->nnodes)
		return -EINVAL;
	const struct tnode *nd = &topo->nodes[node];
	for (unsigned i = 0; i < nd->ncpus && i < max; i++)
		cpus[i] = nd->cpus[i];
	return (int)nd->ncpus;
}

int vxm_topo_cpu_node(const struct vxm_topo *topo, unsigned cpu)
{
	for (unsigned n = 0; topo && n < topo->nnodes; n++)
		for (unsigned i = 0; i < topo->nodes[n].ncpus; i++)
			if (topo->nodes[n].cpus[i] == cpu)
				return (int)n;
	return -ENOENT;
}

int vxm_topo_bind_thread(const struct vxm_topo *topo, unsigned node)
{
	if (!topo || node >= topo->nnodes)
		return -EINVAL;
	if (!topo->system)
		return 0; /* imaginary machine: nothing to bind to */
#ifdef VXM_HAVE_HWLOC
	if (hwloc_set_cpubind(topo->t, topo->nodes[node].cpuset, HWLOC_CPUBIND_THREAD) < 0)
		return errno ? -errno : -EINVAL;
	return 0;
#else
	cpu_set_t set;
	CPU_ZERO(&set);
	for (unsigned i = 0; i < topo->nodes[node].ncpus; i++)
		CPU_SET(topo->nodes[node].cpus[i], &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
#endif
}

int vxm_topo_alloc(const struct vxm_topo *topo, unsigned node, size_t len,
		   struct vxm_topo_mem *out)
{
	size_t n = round_up(len ? len : 1);
	uint8_t *p;

	*out = (struct vxm_topo_mem){ .node = node };
	if (topo && node >= topo->nnodes)
		return -EINVAL;
	if (n >= HUGE) { /* I4: 2 MiB aligned so THP can back it */
		n = (n + HUGE - 1) / HUGE * HUGE;
		p = mmap(NULL, n + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		size_t head = (HUGE - (uintptr_t)p % HUGE) % HUGE;
		if (head)
			munmap(p, head);
		munmap(p + head + n, HUGE - head);
		p += head;
		(void)madvise(p, n, MADV_HUGEPAGE); /* a hint: fine if refused */
	} else {
		p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
	}
	out->p = p;
	out->len = n;
#ifdef VXM_HAVE_HWLOC
	if (topo && topo->system)
		out->bound = hwloc_set_area_membind(topo->t, p, n, topo->nodes[node].nodeset,
						    HWLOC_MEMBIND_BIND,
						    HWLOC_MEMBIND_BYNODESET) == 0;
#endif
	memset(p, 0, n); /* I2: fault the pages in where they were bound */
	return 0;
}

void vxm_topo_free(const struct vxm_topo *topo, struct vxm_topo_mem *m)
{
	(void)topo;
	if (m->p)
		munmap(m->p, m->len); /* I3 */
	m->p = NULL;
}

int vxm_topo_mem_node(const struct vxm_topo *topo, const void *p, size_t len)
{
	if (!topo || !topo->system)
		return -ENOSYS;
#ifdef VXM_HAVE_HWLOC
	hwloc_nodeset_t ns = hwloc_bitmap_alloc();
	int ret;

	if (!ns)
		return -ENOMEM;
	if (hwloc_get_area_memlocation(topo->t, p, len, ns, HWLOC_MEMBIND_BYNODESET) < 0) {
		ret = errno ? -errno : -ENOSYS;
	} else if (hwloc_bitmap_weight(ns) > 1) {
		ret = -EXDEV;
	} else {
		int os = hwloc_bitmap_first(ns);
		ret = -ENOENT;
		for (unsigned i = 0; os >= 0 && i < topo->nnodes; i++)
			if (topo->nodes[i].os_index == (unsigned)os)
				ret = (int)i;
	}
	hwloc_bitmap_free(ns);
	return ret;
#else
	(void)p;
	(void)len;
	return -ENOSYS;
#endif
}
