/* tests/hooks/engine_hooks.c: the engine's test hooks, linked into test
 * programs only (the cmocka suites and vhdxmerge-hooks, never libvhdxmerge
 * nor the vhdxmerge program).  A constructor installs them before main:
 *
 *   kill points   VXM_KILL_AT=name:N[,name:N...] makes the process
 *                 _exit(137) (as if SIGKILLed: no atexit, no flush of stdio,
 *                 nothing more reaches the file) when point `name`
 *                 (engine.h, vxm_killpoint) is reached for the N-th time
 *                 (1-based).  The name "*" counts every point.  A test that
 *                 wants to cut at every point runs the workload with "*:1",
 *                 "*:2", ... until the run completes without dying.
 *                 vxm_killpoint_arm() sets the same specification from code
 *                 (forked test children), replacing the environment's.
 *   commits       VXM_COMMIT_BYTES=N: a merge's copy commits after N bytes
 *                 instead of COMMIT_BYTES (merge.c), read at each run's start
 *                 so that a test may set it between runs.
 *
 * I1: counting is per name and per process; arming resets every count.
 * I2: a kill point never fires unless armed, so a test program that sets
 *     nothing runs exactly as the vhdxmerge program does.
 */
#define _GNU_SOURCE
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KP_MAX 8

static struct kp {
	char name[48];
	unsigned long at;    /* fire at this count */
	unsigned long count; /* times reached */
} kps[KP_MAX];
static unsigned nkp;
static int armed = -1; /* -1: environment not read yet */

static void parse(const char *spec)
{
	nkp = 0;
	armed = 0;
	if (!spec || !*spec)
		return;
	const char *p = spec;
	while (*p && nkp < KP_MAX) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *colon = memchr(p, ':', len);
		if (colon && (size_t)(colon - p) < sizeof(kps[0].name) && colon > p) {
			struct kp *k = &kps[nkp];
			memcpy(k->name, p, (size_t)(colon - p));
			k->name[colon - p] = 0;
			k->at = strtoul(colon + 1, NULL, 10);
			k->count = 0;
			if (k->at) {
				nkp++;
				armed = 1;
			}
		}
		if (!comma)
			break;
		p = comma + 1;
	}
}

void vxm_killpoint_arm(const char *spec)
{
	parse(spec);
}

unsigned long vxm_killpoint_count(const char *name)
{
	for (unsigned i = 0; i < nkp; i++)
		if (!strcmp(kps[i].name, name))
			return kps[i].count;
	return 0;
}

static void killpoint(const char *name)
{
	if (armed < 0)
		parse(getenv("VXM_KILL_AT"));
	if (!armed)
		return;
	for (unsigned i = 0; i < nkp; i++) {
		struct kp *k = &kps[i];
		if (strcmp(k->name, "*") && strcmp(k->name, name))
			continue;
		if (++k->count == k->at) {
			static const char msg[] = "vhdxmerge: kill point reached: ";
			/* write(2) only: the process dies as abruptly as a SIGKILL */
			if (write(2, msg, sizeof(msg) - 1) < 0 || write(2, name, strlen(name)) < 0 ||
			    write(2, "\n", 1) < 0) {
				/* nothing to do: we exit anyway */
			}
			_exit(137);
		}
	}
}

static uint64_t commit_bytes(void)
{
	const char *cb = getenv("VXM_COMMIT_BYTES");
	return cb ? strtoull(cb, NULL, 10) : 0;
}

__attribute__((constructor)) static void install(void)
{
	vxm_test_killpoint_hook = killpoint;
	vxm_test_commit_bytes_hook = commit_bytes;
}
