/* vhdx/err.c: error detail and error text.
 *
 * I1: the first error recorded in a struct vxm_err wins; callers further up
 *     return the same code without overwriting the cause.
 */
#include "vhdx.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int vxm_err_set(struct vxm_err *err, int code, uint64_t off, const char *where, int line,
		const char *fmt, ...)
{
	va_list ap;

	if (!err || err->code)
		return code;
	err->code = code;
	err->off = off;
	err->where = where;
	err->line = line;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void vxm_err_path(struct vxm_err *err, const char *path)
{
	if (err && !err->path[0] && path)
		snprintf(err->path, sizeof(err->path), "%s", path);
}

void vxm_err_clear(struct vxm_err *err)
{
	if (err)
		memset(err, 0, sizeof(*err));
}

char *vxm_err_format(const struct vxm_err *err, char *buf, size_t len)
{
	const char *msg = err->msg[0] ? err->msg : vxm_strerror(err->code);
	int n;

	if (err->path[0])
		n = snprintf(buf, len, "%s: %s", err->path, msg);
	else
		n = snprintf(buf, len, "%s", msg);
	if (n >= 0 && (size_t)n < len && err->off != VXM_OFF_NONE && err->code)
		snprintf(buf + n, len - (size_t)n, " (at offset %" PRIu64 " = 0x%" PRIx64 ")",
			 err->off, err->off);
	return buf;
}

const char *vxm_strerror(int code)
{
	switch (-code) {
	case 0:
		return "success";
	case VXM_ECORRUPT:
		return "corrupt VHDX structure";
	case VXM_EUNSUPPORTED:
		return "unsupported VHDX feature";
	case VXM_ECHAIN:
		return "broken differencing chain";
	case VXM_EDIRTY:
		return "the log must be replayed first";
	case VXM_ECRASHED:
		return "simulated crash";
	case VXM_ENOTVHDX:
		return "not a VHDX file";
	case VXM_ENOTFILE:
		return "not a regular file (a FIFO, socket, device or directory)";
	default:
		return strerror(-code);
	}
}
