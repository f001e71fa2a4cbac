/* engine/exitcode.c: one exit code per class of failure, so scripts and
 * monitoring can tell "your file is damaged" from "the disk is full". */
#include "engine.h"

#include <errno.h>

int vxm_exit_code(int err)
{
	switch (-err) {
	case 0:
		return VXM_EXIT_OK;
	case VXM_ECORRUPT:
	case VXM_ENOTVHDX:
	case VXM_EDIRTY:
		return VXM_EXIT_CORRUPT;
	case VXM_EUNSUPPORTED:
		return VXM_EXIT_UNSUPPORTED;
	case VXM_ECHAIN:
	case VXM_ENOTFILE:
		return VXM_EXIT_CHAIN;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return VXM_EXIT_NOSPACE;
	case EBUSY:
	case EWOULDBLOCK:
	case ETXTBSY:
		return VXM_EXIT_INUSE;
	case EINTR:
	case VXM_ECRASHED:
		return VXM_EXIT_INTERRUPTED;
	case EINVAL:
		return VXM_EXIT_USAGE;
	case ENOMEM:
		return VXM_EXIT_INTERNAL;
	default:
		return VXM_EXIT_IO;
	}
}
