/* tests/hooks/io_hooks.c: the I/O layer's test hook, linked into test
 * programs only (see engine_hooks.c).  VXM_URING_DISABLED set in the
 * environment makes io_uring's setup fail with -EPERM, as a kernel with
 * io_uring disabled does, so that tests see the fallback on any machine;
 * read at every setup, so a test may set it between contexts. */
#include "io_priv.h"

#include <errno.h>
#include <stdlib.h>

static int uring_refused(void)
{
	return getenv("VXM_URING_DISABLED") ? -EPERM : 0;
}

__attribute__((constructor)) static void install(void)
{
	vxm_test_uring_hook = uring_refused;
}
