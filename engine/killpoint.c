/* engine/killpoint.c: named kill points for crash tests.
 *
 * A kill point is a call vxm_killpoint("name") placed right after a named
 * durability point (the sync tags "data-sync", "log-commit", "log-apply",
 * "session-begin", ...) and before each payload/metadata write ("write").
 * Test programs link tests/hooks/engine_hooks.c, which sets the hook below
 * so that VXM_KILL_AT=name:N makes the process _exit(137) (as if SIGKILLed)
 * the N-th time point `name` is reached; see there.
 *
 * The library and the vhdxmerge program never set it: a kill point there is
 * one test of a NULL pointer, and nothing in them reads VXM_KILL_AT.
 *
 * The model is a process crash: every write issued before the cut is in the
 * page cache and survives.  Power loss (unflushed writes lost in any subset)
 * is the fault backend's job (io/fault.c).
 *
 * merge.c's commit-interval hook is defined here too, so that the engine's
 * test hooks other than journal.c's directory-sync hook have one home.
 */
#include "engine.h"

void (*vxm_test_killpoint_hook)(const char *name);
uint64_t (*vxm_test_commit_bytes_hook)(void);

void vxm_killpoint(const char *name)
{
	if (vxm_test_killpoint_hook)
		vxm_test_killpoint_hook(name);
}
