/* tests/lib/malformed.h: the harness of tests/engine/test_malformed.c.
 *
 * A case copies a source file into a scratch file, damages a few bytes and
 * states what must follow (mf_run: the library's error or finding, the
 * program's exit codes and output, and the file's bytes unchanged).  The
 * source is either a real fixture from $VHDX_FIXTURES or its synthesized
 * stand-in (fxsynth.h); which one comes from the case's cmocka state.
 *
 * Offsets the damage and the expectations need are not written down per
 * fixture: struct mf_layout reads them from the pristine source's bytes with
 * a few raw reads (fmt §1.3 headers, §1.4 region table, §3 metadata table
 * and items, §4 locator entries, §6.2 log entry headers), independently of
 * the codec under test, so the same case runs on any file of that shape.
 */
#ifndef VXM_MALFORMED_H
#define VXM_MALFORMED_H

#include <stdbool.h>
#include <stdint.h>

#include "fxsynth.h"
#include "testlib.h"

enum mf_source { MF_STANDIN, MF_FIXTURE };

#define MF_MAX_ITEMS 16
#define MF_MAX_KV 8
#define MF_MAX_LOG 16

struct mf_logent {
	uint64_t off;    /* file offset of the entry */
	uint32_t pos;    /* log-relative */
	uint32_t len, tail, ndesc;
	uint64_t seq;
	struct vxm_guid guid;
	uint64_t flushed, last;
};

struct mf_layout {
	uint64_t size;
	uint64_t seq[2];             /* header 1, header 2 */
	struct vxm_guid log_guid;    /* the current header's */
	uint64_t log, meta, bat;     /* file offsets */
	uint32_t log_len, meta_len, bat_len;
	unsigned rt_count, rt_bat, rt_meta;
	unsigned mt_count;
	struct {
		struct vxm_guid id;
		uint32_t off, len, flags;
	} mt[MF_MAX_ITEMS];
	int mt_params, mt_vsize, mt_lss, mt_diskid, mt_loc; /* -1: absent */
	uint32_t block_size, lss;
	uint64_t vsize;
	bool has_parent;
	uint64_t chunk_ratio, spb, blocks; /* payload blocks */
	uint64_t loc;                      /* file offset of the parent locator */
	unsigned loc_count;
	struct {
		char key[32];
		uint32_t key_off, val_off;
		uint16_t key_len, val_len;
	} kv[MF_MAX_KV];
	unsigned nlog;                     /* 'loge' headers in log order */
	struct mf_logent le[MF_MAX_LOG];
};

/* One case: the damaged scratch copy and its source's pristine layout. */
struct mc {
	char *path;
	int fd;
	enum mf_source src;
	const struct mf_layout *L;
};

/* Copies the source of kind k (fixture or stand-in, per *state) to a
 * scratch file named after tag and opens it for surgery. */
void mc_begin(struct mc *c, void **state, enum fxs_kind k, const char *tag);
/* Builds (once per process) the stand-in of kind k: its path. */
const char *mf_standin(enum fxs_kind k);
/* Removes the scratch directory (end of the run). */
void mf_cleanup(void);

/* Layout lookups: file offsets of table entries, items, locator pairs. */
#define RT_ENTRY(rt, i) ((uint64_t)(rt) + 16 + 32 * (uint64_t)(i))
#define MT_ENTRY(L, i) ((L)->meta + 32 + 32 * (uint64_t)(i))
#define BAT_ENTRY(L, i) ((L)->bat + 8 * (uint64_t)(i))
#define ITEM(L, idx) ((L)->meta + (L)->mt[idx].off)
#define LOC_ENTRY(L, i) ((L)->loc + 20 + 12 * (uint64_t)(i))
/* Index of the locator pair with this key; fails the case when absent. */
unsigned mf_kv(const struct mf_layout *L, const char *key);
/* The newest entry (largest sequence number) carrying the current LogGuid;
 * fails the case when there is none. */
const struct mf_logent *mf_log_head(const struct mf_layout *L);
/* The entry at log-relative pos, or NULL. */
const struct mf_logent *mf_log_at(const struct mf_layout *L, uint32_t pos);
/* The current-LogGuid entry with the next smaller sequence number than e's. */
const struct mf_logent *mf_log_before(const struct mf_layout *L, const struct mf_logent *e);
/* Current-LogGuid entries from e's tail to e (a sequence that does not
 * wrap). */
unsigned mf_log_span(const struct mf_layout *L, const struct mf_logent *e);
/* Payload blocks per state 0..7 of the BAT on disk with e's updates applied
 * (rebuilt from its descriptors and data sectors, fmt §6.2; MS-VHDX §2.3.1.2-2.3.1.4). */
void mf_bat_states_after(struct mc *c, const struct mf_logent *e, uint64_t counts[8]);
/* Payload blocks of the BAT as on disk (c's copy) in each state 0..7. */
void mf_bat_states(struct mc *c, uint64_t counts[8]);
/* First payload block in [from, to) in state st, or UINT64_MAX. */
uint64_t mf_find_block(struct mc *c, uint64_t from, uint64_t to, unsigned st);

/* ---- byte surgery on c's copy ------------------------------------------------ */

void wr(struct mc *c, uint64_t off, const void *buf, size_t n);
void rd(struct mc *c, uint64_t off, void *buf, size_t n);
void put16(struct mc *c, uint64_t off, uint16_t v);
void put32(struct mc *c, uint64_t off, uint32_t v);
void put64(struct mc *c, uint64_t off, uint64_t v);
uint64_t get64(struct mc *c, uint64_t off);
void poke(struct mc *c, uint64_t off, uint8_t v);
/* Flips the bits of one byte (the structure's CRC no longer matches). */
void flip(struct mc *c, uint64_t off);
/* Recomputes the CRC-32C at off + 4 of the len-byte structure at off. */
void fix_crc(struct mc *c, uint64_t off, size_t len);
void fix_hdr(struct mc *c, uint64_t slot);
void fix_rt(struct mc *c, uint64_t rt);
void cut(struct mc *c, uint64_t size);
void copy_range(struct mc *c, uint64_t from, uint64_t to, size_t n);
/* Same change in both region table copies, CRCs recomputed (rel is
 * relative to the table). */
void rt_put64_both(struct mc *c, uint64_t rel, uint64_t v);
void rt_put32_both(struct mc *c, uint64_t rel, uint32_t v);

/* ---- expectations ------------------------------------------------------------ */

struct want {
	int code;          /* vxm_image_open: 0 or a negative error */
	uint64_t off;      /* err.off, or the offset of the finding */
	const char *what;  /* in err.msg or the finding: names the structure */
	const char *what2; /* optional second name (overlaps name both objects) */
	int finding;       /* open succeeds: 1 a problem, 0 a note, -1 clean */
	bool dirty;        /* the log is legitimately dirty: --repair may write */
	bool log_refused;  /* the log is dirty and unreplayable: --repair fails */
	bool lookup;       /* a lookup of `sector` fails like the finding */
	uint64_t sector;
};

/* Runs (a)..(d) of test_malformed.c on c's file, then removes it. */
void mc_run(struct mc *c, const struct want *w);
void expect_error(struct mc *c, int code, uint64_t off, const char *what, const char *what2);
/* The open fails in a log that must be replayed: --repair refuses too. */
void expect_log_refusal(struct mc *c, int code, uint64_t off, const char *what, const char *what2);
void expect_problem(struct mc *c, uint64_t off, const char *what, const char *what2);
/* The problem is also what a lookup of `sector` runs into. */
void expect_problem_on_read(struct mc *c, uint64_t off, const char *what, uint64_t sector);

/* snprintf into a static ring of buffers: expected messages built from the
 * layout, valid for the rest of the case. */
const char *mf_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
