/* engine/killpoint.c: named kill points for crash tests (VXM_TEST_HOOKS).
 *
 * A kill point is a call vxm_killpoint("name") placed right after a named
 * durability point (the sync tags "data-sync", "log-commit", "log-apply",
 * "session-begin", ...) and before each payload/metadata write ("write").
 * In builds with VXM_TEST_HOOKS the environment variable
 *
 *     VXM_KILL_AT=name:N[,name:N...]
 *
 * makes the process _exit(137) (as if SIGKILLed: no atexit, no flush of
 * stdio, nothing more reaches the file) when point `name` is reached for the
 * N-th time (1-based).  The name "*" counts every point.  A test that wants
 * to cut at every point runs the workload with "*:1", "*:2", ... until the
 * run completes without dying.  vxm_killpoint_arm() sets the same
 * specification from code (forked test children), replacing the
 * environment's.
 *
 * The model is a process crash: every write issued before the cut is in the
 * page cache and survives.  Power loss (unflushed writes lost in any subset)
 * is the fault backend's job (io/fault.c).
 *
 * Without VXM_TEST_HOOKS both functions compile to nothing observable.
 *
 * I1: counting is per name and per process; arming resets every count.
 * I2: a kill point never fires unless armed, so production paths are
 *     unaffected even in test builds.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef VXM_TEST_HOOKS

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

void vxm_killpoint(const char *name)
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

#else

void vxm_killpoint_arm(const char *spec)
{
	(void)spec;
}

unsigned long vxm_killpoint_count(const char *name)
{
	(void)name;
	return 0;
}

void vxm_killpoint(const char *name)
{
	(void)name;
}

#endif
