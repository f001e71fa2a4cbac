/* include/vhdxmerge.h: the public API of libvhdxmerge.
 *
 * The vocabulary every layer shares (error codes, struct vxm_err, GUIDs) and
 * the engine entry points the vhdxmerge program is built on.  Functions
 * return 0 or a negative error: -errno, or -VXM_E* for format and chain
 * problems; details land in a caller-owned struct vxm_err passed last (may
 * be NULL).
 */
#ifndef VHDXMERGE_H
#define VHDXMERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VXM_KiB 1024ull
#define VXM_MiB (1024ull * 1024ull)
#define VXM_GiB (1024ull * VXM_MiB)
#define VXM_TiB (1024ull * VXM_GiB)

/* ---- errors -------------------------------------------------------------- */

/* Codes outside the errno range, returned negated. */
enum vxm_errcode {
	VXM_ECORRUPT = 4096, /* a structure breaks a rule of the format */
	VXM_EUNSUPPORTED,    /* valid, but a feature this program does not handle */
	VXM_ECHAIN,          /* parent missing, linkage mismatch, cycle, mismatch */
	VXM_EDIRTY,          /* the log must be replayed and the caller said no */
	VXM_ECRASHED,        /* fault injection: the simulated machine lost power */
	VXM_ENOTVHDX,        /* no "vhdxfile" identifier: not a VHDX file at all */
	VXM_ECODE_END
};

#define VXM_OFF_NONE UINT64_MAX

struct vxm_err {
	int code;          /* the negative value that was returned */
	uint64_t off;      /* absolute file offset of the damage, or VXM_OFF_NONE */
	int line;          /* __LINE__ of the check that failed */
	const char *where; /* source file of that check */
	char path[512];    /* the file, filled by the layer that knows it */
	char msg[512];     /* "structure: what is wrong" */
};

/* Records the first error only (later calls keep the earlier detail, as the
 * first failure is the cause).  Returns code, so checks read
 * `return vxm_corrupt(err, off, "bat[%u]: ...", i);`. */
int vxm_err_set(struct vxm_err *err, int code, uint64_t off, const char *where,
		int line, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
/* Names the file in err->path unless a path is already there. */
void vxm_err_path(struct vxm_err *err, const char *path);
/* Clears err for reuse. */
void vxm_err_clear(struct vxm_err *err);
/* "PATH: MSG (offset 0x...)" into buf; returns buf. */
char *vxm_err_format(const struct vxm_err *err, char *buf, size_t len);
/* Text for -errno and -VXM_E* codes alike. */
const char *vxm_strerror(int code);

#define vxm_corrupt(err, off, ...) \
	vxm_err_set((err), -VXM_ECORRUPT, (off), __FILE__, __LINE__, __VA_ARGS__)
#define vxm_unsupported(err, off, ...) \
	vxm_err_set((err), -VXM_EUNSUPPORTED, (off), __FILE__, __LINE__, __VA_ARGS__)
#define vxm_fail(err, code, off, ...) \
	vxm_err_set((err), (code), (off), __FILE__, __LINE__, __VA_ARGS__)

/* ---- GUIDs --------------------------------------------------------------- */

struct vxm_guid {
	uint8_t b[16]; /* on-disk order: Data1 LE32, Data2 LE16, Data3 LE16, Data4 */
};

#define VXM_GUID_STRLEN 36 /* without braces and NUL */

bool vxm_guid_is_zero(const struct vxm_guid *g);
bool vxm_guid_eq(const struct vxm_guid *a, const struct vxm_guid *b);
/* Lower case, no braces; out holds VXM_GUID_STRLEN + 1 bytes. */
char *vxm_guid_fmt(const struct vxm_guid *g, char *out);
/* Accepts an optional pair of braces and either case; len excludes any NUL.
 * Returns 0 or -EINVAL. */
int vxm_guid_parse(const char *s, size_t len, struct vxm_guid *g);


#ifdef __cplusplus
}
#endif
#endif
