/* vhdx/vhdx.h: the VHDX on-disk format as a pure codec.
 *
 * Bytes in, structs out, and the reverse for the writer.  Nothing in vhdx/
 * performs I/O or allocates memory: callers hand in buffers holding the bytes
 * of a structure together with the file offset those bytes came from, so
 * every error can name the structure and the absolute offset.  The reference
 * is docs/vhdx-format.md in this repository (cited as "fmt §n" and "fmt Pn"),
 * with the [MS-VHDX] v6.0 section behind each rule.
 *
 * Conventions
 *  - Functions return 0 or a negative error: -errno, or one of the -VXM_E*
 *    codes below for format damage.  Details go into a caller-owned
 *    struct vxm_err (last parameter, may be NULL), filled once where the
 *    problem is found.
 *  - "Sector" means a logical sector (512 or 4096 bytes).
 *  - GUIDs are kept as their 16 on-disk bytes (Microsoft layout) and
 *    compared as bytes.
 */
#ifndef VXM_VHDX_H
#define VXM_VHDX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vhdxmerge.h"

#ifdef __cplusplus
extern "C" {
#endif


extern const struct vxm_guid VXM_GUID_REGION_BAT;
extern const struct vxm_guid VXM_GUID_REGION_METADATA;
extern const struct vxm_guid VXM_GUID_META_FILE_PARAMS;
extern const struct vxm_guid VXM_GUID_META_VIRTUAL_SIZE;
extern const struct vxm_guid VXM_GUID_META_DISK_ID;
extern const struct vxm_guid VXM_GUID_META_LOGICAL_SECTOR;
extern const struct vxm_guid VXM_GUID_META_PHYSICAL_SECTOR;
extern const struct vxm_guid VXM_GUID_META_PARENT_LOCATOR;
extern const struct vxm_guid VXM_GUID_LOCATOR_VHDX;

/* ---- CRC-32C ------------------------------------------------------------- */

/* Continues a CRC-32C (Castagnoli) over buf; start with crc = 0.  Uses the
 * SSE4.2 instruction when the CPU has it, a slicing table otherwise. */
uint32_t vxm_crc32c(uint32_t crc, const void *buf, size_t len);
/* The portable path alone (tests compare both paths). */
uint32_t vxm_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* True when the hardware path is in use. */
bool vxm_crc32c_hw(void);
/* CRC of buf[0..len) with the 4-byte field at field_off read as zero. */
uint32_t vxm_crc32c_skip(const void *buf, size_t len, size_t field_off);

/* ---- layout constants ---------------------------------------------------- */

enum {
	VXM_IDENT_OFF = 0,
	VXM_HDR1_OFF = 64 * 1024,
	VXM_HDR2_OFF = 128 * 1024,
	VXM_RT1_OFF = 192 * 1024,
	VXM_RT2_OFF = 256 * 1024,
	VXM_HDR_SIZE = 4096,         /* the CRC covers 4 KiB of the 64 KiB slot */
	VXM_RT_SIZE = 64 * 1024,
	VXM_META_TABLE_SIZE = 64 * 1024,
	VXM_HEADER_SECTION = 1024 * 1024,
	VXM_LOG_SECTOR = 4096,
	VXM_SB_BLOCK_SIZE = 1024 * 1024,
	VXM_MAX_TABLE_ENTRIES = 2047, /* region and metadata tables */
	VXM_MAX_USER_ITEMS = 1024,
	VXM_MAX_ITEM_SIZE = 1024 * 1024,
	VXM_CREATOR_MAX = 256 + 1,    /* UTF-16 units in the creator field, + NUL */
};

#define VXM_MIN_BLOCK_SIZE (1u << 20)
#define VXM_MAX_BLOCK_SIZE (1u << 28)
#define VXM_MAX_VIRTUAL_SIZE (64ull * VXM_TiB)
#define VXM_SECTORS_PER_CHUNK (1ull << 23)

/* ---- file identifier ----------------------------------------------------- */

/* Checks "vhdxfile" and decodes the creator to UTF-8 (NUL-terminated,
 * best effort: unpaired surrogates become U+FFFD).  creator may be NULL.
 * Returns 0, -VXM_ENOTVHDX. */
int vxm_ident_parse(const uint8_t *buf, size_t len, char *creator, size_t creator_len,
		    struct vxm_err *err);
/* Writes the 64 KiB identifier with a UTF-8 creator string (ASCII only). */
void vxm_ident_encode(uint8_t *buf /* 64 KiB */, const char *creator);

/* ---- headers (fmt §1.3) -------------------------------------------------- */

struct vxm_hdr {
	uint32_t checksum;
	uint64_t seq;
	struct vxm_guid file_write;
	struct vxm_guid data_write;
	struct vxm_guid log_guid;
	uint16_t log_version;
	uint16_t version;
	uint32_t log_len;
	uint64_t log_off;
};

/* Parses one header slot (buf holds at least 4096 bytes read at file offset
 * off).  -VXM_ECORRUPT for signature, CRC, alignment or reserved-field
 * damage; -VXM_EUNSUPPORTED for a version other than 1 or a log version
 * other than 0. */
int vxm_hdr_parse(const uint8_t *buf, size_t len, uint64_t off, struct vxm_hdr *out,
		  struct vxm_err *err);
/* Encodes into 4096 bytes, computing the checksum (out->checksum is ignored). */
void vxm_hdr_encode(const struct vxm_hdr *h, uint8_t *buf /* 4096 */);

struct vxm_hdr_pair {
	struct vxm_hdr h[2];
	int status[2];  /* 0 valid, else the parse error of that copy */
	int current;    /* 0 or 1: index of the current header */
	bool tie;       /* equal sequence numbers and identical bytes (Disk2vhd) */
};

/* Chooses the current header (fmt §1.3): the only valid one, or the valid one
 * with the larger sequence number.  Equal sequence numbers are accepted only
 * when both headers are byte-identical over their 4 KiB (as QEMU does for
 * Disk2vhd files); then slot 1 (index 0) is current, deterministically.
 * Returns 0 or -VXM_ECORRUPT/-VXM_EUNSUPPORTED naming both failures. */
int vxm_hdr_select(const uint8_t *h1, const uint8_t *h2, struct vxm_hdr_pair *p,
		   struct vxm_err *err);

/* ---- region table (fmt §1.4) --------------------------------------------- */

struct vxm_region {
	struct vxm_guid guid;
	uint64_t off;
	uint32_t len;
	uint32_t required;
};

struct vxm_region_table {
	uint32_t checksum;
	uint32_t count;
	int bat;      /* index of the BAT entry */
	int metadata; /* index of the metadata entry */
	struct vxm_region e[VXM_MAX_TABLE_ENTRIES];
};

/* Parses a 64 KiB region table read at file offset off.  Checks signature,
 * CRC, count, reserved fields, alignment, duplicate GUIDs, overlaps between
 * regions, one BAT and one metadata region; an unknown region with Required
 * set is -VXM_EUNSUPPORTED. */
int vxm_region_parse(const uint8_t *buf, size_t len, uint64_t off,
		     struct vxm_region_table *rt, struct vxm_err *err);
void vxm_region_encode(const struct vxm_region_table *rt, uint8_t *buf /* 64 KiB */);

/* ---- metadata (fmt §3) --------------------------------------------------- */

enum vxm_meta_flags {
	VXM_META_IS_USER = 1u << 0,
	VXM_META_IS_VIRTUAL_DISK = 1u << 1,
	VXM_META_IS_REQUIRED = 1u << 2,
};

struct vxm_meta_entry {
	struct vxm_guid id;
	uint32_t off; /* from the start of the metadata region */
	uint32_t len;
	uint32_t flags;
};

struct vxm_meta_table {
	uint16_t count;
	struct vxm_meta_entry e[VXM_MAX_TABLE_ENTRIES];
};

/* Parses the 64 KiB table at the start of the metadata region (read at file
 * offset off); region_len bounds item placement.  Checks signature, reserved
 * fields, count, flags, (id, IsUser) uniqueness, item bounds and overlaps. */
int vxm_meta_table_parse(const uint8_t *buf, size_t len, uint64_t off, uint32_t region_len,
			 struct vxm_meta_table *t, struct vxm_err *err);
void vxm_meta_table_encode(const struct vxm_meta_table *t, uint8_t *buf /* 64 KiB */);
/* Offset of entry i from the start of the table (a 32-byte header, then
 * 32-byte entries). */
static inline uint32_t vxm_meta_entry_pos(unsigned i)
{
	return 32u + 32u * i;
}
/* Index of (id, is_user) in t, or -1. */
int vxm_meta_find(const struct vxm_meta_table *t, const struct vxm_guid *id, bool is_user);

struct vxm_meta {
	uint32_t block_size;
	bool leave_blocks_allocated;
	bool has_parent;
	uint64_t virtual_size;
	struct vxm_guid disk_id;
	uint32_t logical_sector_size;
	uint32_t physical_sector_size;
	int locator; /* table index of the parent locator item, or -1 */
};

/* Decodes the known system items from the whole metadata region (region,
 * region_len bytes, at file offset off).  Every required known item must be
 * present with its size and valid values; an unknown item flagged IsRequired
 * is -VXM_EUNSUPPORTED; the parent locator is present exactly when
 * HasParent is set. */
int vxm_meta_parse(const uint8_t *region, size_t region_len, uint64_t off,
		   const struct vxm_meta_table *t, struct vxm_meta *m, struct vxm_err *err);

/* ---- parent locator (fmt §4) --------------------------------------------- */

#define VXM_LOCATOR_MAX_PAIRS 256
#define VXM_LOCATOR_PATH_MAX 4096 /* UTF-8 bytes, including NUL */

struct vxm_locator_pair {
	uint32_t key_off, val_off; /* from the start of the item */
	uint16_t key_len, val_len; /* bytes of UTF-16LE */
};

struct vxm_locator {
	struct vxm_guid type;
	uint16_t count;
	struct vxm_locator_pair kv[VXM_LOCATOR_MAX_PAIRS];
	bool has_linkage, has_linkage2;
	bool linkage2_key;   /* the key is present, even with the zero GUID */
	struct vxm_guid parent_linkage;
	struct vxm_guid parent_linkage2; /* zero GUID means absent (fmt P11) */
	/* UTF-8, "" when the key is absent */
	char relative_path[VXM_LOCATOR_PATH_MAX];
	char volume_path[VXM_LOCATOR_PATH_MAX];
	char absolute_win32_path[VXM_LOCATOR_PATH_MAX];
};

/* Parses a parent locator item (item, len bytes at file offset off).  Checks
 * the type, reserved field, entry bounds, non-zero lengths, even lengths,
 * UTF-16 validity, no NUL, unique keys, parent_linkage present and a GUID,
 * at least one path key. */
int vxm_locator_parse(const uint8_t *item, size_t len, uint64_t off, struct vxm_locator *loc,
		      struct vxm_err *err);

struct vxm_kv {
	const char *key;   /* UTF-8 */
	const char *value; /* UTF-8 */
};

/* Encodes a VHDX-type locator from UTF-8 pairs, strings packed after the
 * entry table in pair order (as Hyper-V does).  Returns the item length, or
 * -ENOSPC when cap is too small, -EINVAL for an empty key or value. */
long vxm_locator_encode(const struct vxm_kv *kv, unsigned n, uint8_t *out, size_t cap);
/* Copies key i of a parsed locator as UTF-8 into out (NUL-terminated). */
int vxm_locator_key(const struct vxm_locator *loc, const uint8_t *item, unsigned i, char *out,
		    size_t cap);
int vxm_locator_value(const struct vxm_locator *loc, const uint8_t *item, unsigned i, char *out,
		      size_t cap);

/* UTF-16LE <-> UTF-8 helpers shared with the writer.  Return the output
 * length in bytes or -EINVAL (bad UTF-16/UTF-8, embedded NUL) / -ENOSPC. */
long vxm_utf16le_to_utf8(const uint8_t *in, size_t in_len, char *out, size_t cap);
long vxm_utf8_to_utf16le(const char *in, size_t in_len, uint8_t *out, size_t cap);

/* ---- BAT (fmt §5) -------------------------------------------------------- */

enum vxm_pb_state {
	VXM_PB_NOT_PRESENT = 0,
	VXM_PB_UNDEFINED = 1,
	VXM_PB_ZERO = 2,
	VXM_PB_UNMAPPED = 3,
	VXM_PB_FULLY_PRESENT = 6,
	VXM_PB_PARTIALLY_PRESENT = 7,
};

enum vxm_sb_state {
	VXM_SB_NOT_PRESENT = 0,
	VXM_SB_PRESENT = 6,
};

#define VXM_BAT_STATE_MASK 0x7ull
#define VXM_BAT_RESERVED_MASK 0xFFFF8ull /* bits 3..19 */
#define VXM_BAT_OFFSET_MASK 0xFFFFFFFFFFF00000ull

static inline unsigned vxm_bat_state(uint64_t e) { return (unsigned)(e & VXM_BAT_STATE_MASK); }
static inline uint64_t vxm_bat_offset(uint64_t e) { return e & VXM_BAT_OFFSET_MASK; }
static inline uint64_t vxm_bat_entry(unsigned state, uint64_t off)
{
	return (off & VXM_BAT_OFFSET_MASK) | (state & VXM_BAT_STATE_MASK);
}
const char *vxm_pb_state_name(unsigned state);

struct vxm_geom {
	uint64_t virtual_size;
	uint32_t block_size;
	uint32_t lss;
	bool has_parent;
	uint32_t spb;             /* sectors per block */
	uint32_t chunk_ratio;     /* payload blocks per sector-bitmap block */
	uint64_t payload_blocks;
	uint64_t sb_blocks;       /* chunks */
	uint64_t total_entries;   /* BAT entries the region must hold */
};

/* Validates the parameters (fmt §3 limits) and fills g.  -VXM_ECORRUPT for
 * values the format forbids. */
int vxm_geom_init(struct vxm_geom *g, uint64_t virtual_size, uint32_t block_size, uint32_t lss,
		  bool has_parent, struct vxm_err *err);

static inline uint64_t vxm_geom_pb_index(const struct vxm_geom *g, uint64_t block)
{
	return block + block / g->chunk_ratio;
}
static inline uint64_t vxm_geom_sb_index(const struct vxm_geom *g, uint64_t chunk)
{
	return chunk * (g->chunk_ratio + 1ull) + g->chunk_ratio;
}
static inline bool vxm_geom_is_sb_index(const struct vxm_geom *g, uint64_t idx)
{
	return idx % (g->chunk_ratio + 1ull) == g->chunk_ratio;
}
/* Payload block of BAT index idx (idx must not be an SB index). */
static inline uint64_t vxm_geom_block_of_index(const struct vxm_geom *g, uint64_t idx)
{
	return idx - idx / (g->chunk_ratio + 1ull);
}
/* Bytes of the virtual disk covered by block b (the last one may be short). */
static inline uint64_t vxm_geom_block_bytes(const struct vxm_geom *g, uint64_t b)
{
	uint64_t start = b * g->block_size;
	uint64_t left = g->virtual_size - start;
	return left < g->block_size ? left : g->block_size;
}

struct vxm_bat_counts {
	uint64_t pb[8]; /* payload entries per state value 0..7 */
	uint64_t sb[8]; /* sector-bitmap entries per state value */
};

/* Counts states over entries[0..g->total_entries). */
void vxm_bat_count(const struct vxm_geom *g, const uint64_t *entries, struct vxm_bat_counts *c);

/* Validates one BAT entry at index idx (entry file offset off) for a file of
 * file_size bytes: state legal for the file type, reserved bits zero, offset
 * zero where required, block past the header section and its virtual bytes
 * inside the file (so the trailing partial block may be stored short).
 * Overlaps between entries are the caller's to check.  Returns 0 or
 * -VXM_ECORRUPT. */
int vxm_bat_check_entry(const struct vxm_geom *g, uint64_t idx, uint64_t entry, uint64_t off,
			uint64_t file_size, struct vxm_err *err);

/* ---- sector bitmaps (fmt §5.5) ------------------------------------------- */

static inline bool vxm_bit_get(const uint8_t *bm, uint64_t bit)
{
	return (bm[bit >> 3] >> (bit & 7)) & 1;
}
static inline void vxm_bit_set(uint8_t *bm, uint64_t bit)
{
	bm[bit >> 3] = (uint8_t)(bm[bit >> 3] | (1u << (bit & 7)));
}
static inline void vxm_bit_clear(uint8_t *bm, uint64_t bit)
{
	bm[bit >> 3] = (uint8_t)(bm[bit >> 3] & ~(1u << (bit & 7)));
}
/* Length of the run of bits equal to bit `from`'s value, starting at from
 * and stopping at limit (exclusive). */
uint64_t vxm_bitmap_run(const uint8_t *bm, uint64_t from, uint64_t limit);
/* Sets or clears bits [from, from+n). */
void vxm_bitmap_fill(uint8_t *bm, uint64_t from, uint64_t n, bool value);
/* Number of set bits in [from, from+n). */
uint64_t vxm_bitmap_count(const uint8_t *bm, uint64_t from, uint64_t n);
/* File offset of the bitmap byte holding block b's first bit inside its
 * chunk's SB block at sb_off.  Block b's slice is spb/8 bytes long. */
static inline uint64_t vxm_sb_slice_off(const struct vxm_geom *g, uint64_t sb_off, uint64_t b)
{
	return sb_off + (b % g->chunk_ratio) * (uint64_t)(g->spb / 8);
}

/* ---- log (fmt §6) -------------------------------------------------------- */

enum {
	VXM_LOG_ENTRY_HDR = 64,
	VXM_LOG_DESC_SIZE = 32,
};

struct vxm_log_entry {
	uint32_t pos;          /* log-relative offset of the entry */
	uint32_t len;          /* EntryLength */
	uint32_t tail;
	uint64_t seq;
	uint32_t ndesc;
	uint32_t ndata;        /* data descriptors (each with a data sector) */
	struct vxm_guid guid;
	uint64_t flushed_file_offset;
	uint64_t last_file_offset;
};

/* Validates the entry at log-relative pos (log holds the whole log region
 * read at file offset log_off; entries may wrap at the end).  With want_guid
 * non-NULL, an entry of another LogGuid is invalid.  Returns 0,
 * -VXM_ECORRUPT (not a valid entry here: the scan moves on). */
int vxm_log_entry_parse(const uint8_t *log, uint32_t log_len, uint64_t log_off, uint32_t pos,
			const struct vxm_guid *want_guid, struct vxm_log_entry *e,
			struct vxm_err *err);

struct vxm_log_seq {
	bool found;
	uint32_t tail;         /* log-relative offset of the first active entry */
	uint32_t head;         /* log-relative offset of the newest entry */
	uint32_t count;        /* entries from tail to head */
	uint64_t tail_seq, head_seq;
	uint64_t flushed_file_offset; /* of the head entry */
	uint64_t last_file_offset;    /* of the head entry */
	uint32_t next;         /* log-relative offset just past the head entry */
};

/* Finds the active sequence for guid (fmt §6.3).  seq->found is false when
 * no valid sequence exists (the caller warns and treats the log as empty,
 * as QEMU does).  Returns 0 or a negative error for impossible arguments. */
int vxm_log_find_active(const uint8_t *log, uint32_t log_len, uint64_t log_off,
			const struct vxm_guid *guid, struct vxm_log_seq *seq,
			struct vxm_err *err);

/* What a file must be like for its log to be replayable (fmt §6.1, §6.4). */
struct vxm_log_limits {
	uint64_t file_size;  /* bytes in the file before replay */
	uint64_t max_size;   /* no entry's LastFileOffset or FlushedFileOffset
			      * may pass this (a sanity cap, far above any
			      * real file) */
};

/* The largest file size the replay of a sequence asks for, and who asks. */
struct vxm_log_need {
	uint64_t end;        /* max(head's LastFileOffset, end of every update) */
	uint64_t seq;        /* sequence number of the entry asking for it */
	uint64_t entry_off;  /* file offset of that entry */
	int desc;            /* its descriptor, or -1: its LastFileOffset */
	uint64_t field_off;  /* file offset of that descriptor / field */
};

/* Validates every entry of the active sequence, tail to head, before any of
 * it is applied: an entry that is valid on its own (CRC and all) may still
 * aim its updates where no log may write.  Every update [FileOffset,
 * +4096 or +ZeroLength) must not wrap past 2^64, must not touch the header
 * section except inside the region tables (headers are never logged), must
 * not touch the log itself, and must end within max(file size, the entry's
 * LastFileOffset); no entry's LastFileOffset or FlushedFileOffset may pass
 * lim->max_size.  need (may be NULL) receives what replay will grow the file
 * to.  Returns 0 or -VXM_ECORRUPT naming the entry's sequence number and
 * file offset, and the descriptor, its offset and its target; err->off is
 * the descriptor's (or the offending header field's) file offset.  Whether
 * the file's structures justify a growth past lim->file_size is the
 * caller's to judge. */
int vxm_log_validate(const uint8_t *log, uint32_t log_len, uint64_t log_off,
		     const struct vxm_log_seq *seq, const struct vxm_guid *guid,
		     const struct vxm_log_limits *lim, struct vxm_log_need *need,
		     struct vxm_err *err);

/* One in-place update produced by replay: data is a rebuilt 4 KiB sector, or
 * NULL for a zero fill of len bytes. */
typedef int (*vxm_log_apply_fn)(void *ctx, uint64_t file_off, const uint8_t *data,
				uint64_t len);

/* Calls apply for every descriptor of every entry from tail to head, in
 * order (later updates win).  data points into a scratch sector valid for
 * the duration of the call.  Stops at the first non-zero return.  Targets
 * are handed out as the log states them: vxm_log_validate them first. */
int vxm_log_replay(const uint8_t *log, uint32_t log_len, uint64_t log_off,
		   const struct vxm_log_seq *seq, const struct vxm_guid *guid,
		   vxm_log_apply_fn apply, void *ctx, struct vxm_err *err);

/* A pending 4 KiB update for the writer: the full new image of the sector at
 * file_off (4 KiB aligned), or a zero fill when data is NULL (len bytes,
 * 4 KiB multiple). */
struct vxm_log_update {
	uint64_t file_off;
	const uint8_t *data;
	uint64_t len;
};

/* Bytes an entry with these updates takes in the log. */
uint32_t vxm_log_entry_size(const struct vxm_log_update *u, unsigned n);
/* Encodes one entry into out (vxm_log_entry_size bytes; the caller places it
 * at log-relative e->pos, handling wrap).  e supplies tail, seq, guid,
 * flushed and last file offsets; len, ndesc and ndata are filled in. */
int vxm_log_entry_encode(struct vxm_log_entry *e, const struct vxm_log_update *u, unsigned n,
			 uint8_t *out, size_t cap, struct vxm_err *err);

#ifdef __cplusplus
}
#endif
#endif
