/* tests/lib/memvhdx.h: VHDX images built in memory from a per-block spec,
 * with the codec's own encoders, for the planner's property tests and the
 * chain tests.  Layout: header section, log at 1 MiB (empty), metadata at
 * 2 MiB, BAT at 3 MiB, one sector-bitmap block per chunk (differencing),
 * then payload.  With shared_payload every present block points at the same
 * payload block, so a 30-layer chain of a 64 MiB disk stays a few MiB each
 * (fine for resolution tests, which check offsets, not bytes; `check`
 * would report the overlap). */
#ifndef VXM_MEMVHDX_H
#define VXM_MEMVHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhdx/vhdx.h"

struct mv_spec {
	uint64_t vsize;
	uint32_t block_size;
	uint32_t lss;
	bool has_parent;
	bool fixed;                 /* LeaveBlocksAllocated */
	const uint8_t *states;      /* payload state per block */
	const uint8_t *bits;        /* one bit per sector of the disk (partial blocks) */
	bool shared_payload;
	uint8_t fill;               /* payload byte pattern seed (distinct payload) */
	struct vxm_guid data_write;
	struct vxm_guid parent_linkage;
	struct vxm_guid parent_linkage2; /* zero: key written as the zero GUID */
	const char *relative_path;  /* differencing: locator paths */
	const char *absolute_win32_path;
	const char *volume_path;
};

/* Builds the image; returns malloc'd bytes (length in *len) or NULL. */
uint8_t *mv_build(const struct mv_spec *sp, size_t *len);
/* File offset of block b's payload in an image built from sp. */
uint64_t mv_payload_off(const struct mv_spec *sp, uint64_t b);
/* The payload byte mv_build stores at sector s, byte i (distinct payload). */
uint8_t mv_byte(const struct mv_spec *sp, uint64_t s, unsigned i);

#endif
