/* tests/lib/fxsynth.h: synthesized stand-ins for the real fixtures.
 *
 * A test that damages or writes "a file like Hyper-V's fixed.vhdx" runs on
 * the stand-in always, and on the real file as well when $VHDX_FIXTURES is
 * present, so a fresh clone runs it and the fixtures only add coverage.
 *
 * Each stand-in is written with the codec's own encoders (identifier,
 * headers, region table, metadata table, parent locator, BAT entries, log
 * entries) into a sparse file laid out like the file it replaces (fmt §11):
 * header section, log at 1 MiB, metadata at 2 MiB with its items packed from
 * 64 KiB in Hyper-V's order and flags, BAT at 3 MiB, blocks and sector
 * bitmaps after that; the QEMU stand-in has the BAT at 2 MiB and metadata at
 * 3 MiB, neither marked required, as QEMU writes them.  Present blocks hold
 * distinct bytes in three 4 KiB pieces (start, middle and end of the block's
 * virtual bytes; a partially present block has exactly those sectors'
 * bits set), the rest is a hole.  Geometry, states, placement and the shape
 * of the logs follow the real files; sequence numbers, GUIDs, paths and the
 * creator are our own, so a test that hard-codes a value of the real file
 * fails on the stand-in.
 */
#ifndef VXM_FXSYNTH_H
#define VXM_FXSYNTH_H

enum fxs_kind {
	/* dissect fixed.vhdx: 10 MiB fixed, 2 MiB blocks, five blocks from
	 * 4 MiB, 14 MiB file */
	FXS_FIXED,
	/* dissect dynamic.vhdx: 10 MiB in one 32 MiB block at 4 MiB */
	FXS_DYNAMIC,
	/* dissect differencing.avhdx: 8 GiB child, 2 MiB blocks, partially
	 * present blocks in both chunks (chunk 1's bitmap at 4 MiB, chunk 0's at
	 * 7 MiB), a five-entry locator in Hyper-V's key order with a zero
	 * parent_linkage2 */
	FXS_DIFF,
	/* DiscUtils vhdx-log-replay.vhdx: 1 GiB, 32 MiB blocks, every block
	 * NOT_PRESENT on disk, a dirty log of five entries at log offsets 0,
	 * 0x1000, 0x3000, 0x5000, 0x7000 (tails 0, 0x1000 x3, 0x5000) whose BAT
	 * updates make block 0 (data at 4 MiB) present and three blocks ZERO */
	FXS_LOGREPLAY,
	/* QEMU iotest-dirtylog-10G-4M.vhdx: 10 GiB, 1 MiB blocks, 17 blocks
	 * present; seven log entries (each its own tail) of which only the last
	 * carries the headers' LogGuid and makes block 17 present; the six stale
	 * ones would each add a block to BAT sector 1 */
	FXS_DIRTYLOG,
	/* QEMU's iotest-dynamic-1G (Hyper-V 2012): 1 GiB, 32 MiB blocks, three
	 * present, 29 ZERO */
	FXS_ZEROBLOCKS,
	/* Disk2vhd test-disk2vhd.vhdx: both headers sequence 1 and identical,
	 * the metadata region listed first, 128 present 2 MiB blocks */
	FXS_TIED,
	FXS_COUNT
};

struct fxs_info {
	const char *folder, *file; /* the real fixture, for tl_fixture() */
	const char *what;          /* one line for test output */
};

const struct fxs_info *fxs_info(enum fxs_kind k);

/* Writes the stand-in of kind k at path (created or truncated; sparse).
 * Returns 0 or a negative errno. */
int fxs_build(enum fxs_kind k, const char *path);

#endif
