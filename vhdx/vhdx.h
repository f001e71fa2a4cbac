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
 *  - Every byte offset of the format lives here: each section opens with
 *    a map of its structures (offset, size, field; all integers
 *    little-endian), and the engine places and names bytes only through
 *    the constants and functions below.  The parsers and encoders
 *    of vhdx/ use these constants or assert that their own agree.
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

/* The file (fmt §1.1): a fixed 1 MiB header section, then every other object
 * at a 1 MiB multiple, in any order, none overlapping.
 *
 *   0      64K     128K    192K    256K    320K          1M
 *   | ident | hdr 1 | hdr 2 | rt 1  | rt 2  | reserved    | log, BAT, metadata,
 *                                                          payload and SB blocks
 */
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

/* The structure of the header section at off (< 1 MiB), for messages: "the
 * file identifier", "header 1", "header 2", "region table 1", "region
 * table 2" or "the reserved part of the header section". */
const char *vxm_header_section_part(uint64_t off);

/* ---- file identifier (fmt §1.2) ------------------------------------------ */

/* At 0, 64 KiB, written once at creation:
 *
 *   off   size  field
 *     0      8  Signature "vhdxfile" (u64 0x656C696678646876)
 *     8    512  Creator: UTF-16LE, NUL-terminated or not; for people only
 *   520  65016  reserved
 */
enum {
	VXM_IDENT_SIZE = 64 * 1024,
	VXM_IDENT_USED = 8 + 512, /* signature and creator: all a reader looks at */
};

/* Checks "vhdxfile" and decodes the creator to UTF-8 (NUL-terminated,
 * best effort: unpaired surrogates become U+FFFD).  creator may be NULL.
 * Returns 0, -VXM_ENOTVHDX. */
int vxm_ident_parse(const uint8_t *buf, size_t len, char *creator, size_t creator_len,
		    struct vxm_err *err);
/* Writes the 64 KiB identifier with a UTF-8 creator string (ASCII only). */
void vxm_ident_encode(uint8_t *buf /* 64 KiB */, const char *creator);

/* ---- headers (fmt §1.3) -------------------------------------------------- */

/* At VXM_HDR1_OFF and VXM_HDR2_OFF, the first 4 KiB of each 64 KiB slot (the
 * rest reserved).  The checksum is the CRC-32C of the 4096 bytes with its own
 * field read as zero.
 *
 *   off   size  field
 *     0      4  Signature "head" (0x64616568)
 *     4      4  Checksum
 *     8      8  SequenceNumber: the larger valid one is current
 *    16     16  FileWriteGuid
 *    32     16  DataWriteGuid (a child's parent_linkage)
 *    48     16  LogGuid: zero when there is nothing to replay
 *    64      2  LogVersion (0)
 *    66      2  Version (1)
 *    68      4  LogLength: a 1 MiB multiple
 *    72      8  LogOffset: a 1 MiB multiple, past the header section
 *    80   4016  reserved, zero
 */

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

/* At VXM_RT1_OFF and VXM_RT2_OFF, 64 KiB each, the checksum over all 64 KiB.
 *
 *   off   size  field
 *     0      4  Signature "regi" (0x69676572)
 *     4      4  Checksum
 *     8      4  EntryCount: at most 2047
 *    12      4  reserved, zero
 *    16   32 n  entries
 *
 *   entry i, at 16 + 32 i:
 *     0     16  Guid: BAT, metadata, or another (refused when Required)
 *    16      8  FileOffset: a 1 MiB multiple, past the header section
 *    24      4  Length: a non-zero 1 MiB multiple
 *    28      4  Required: 0 or 1
 */
enum {
	VXM_RT_ENTRIES = 16,
	VXM_RT_ENTRY_SIZE = 32,
	VXM_RT_E_FILE_OFFSET = 16, /* field offsets inside an entry */
	VXM_RT_E_LENGTH = 24,
	VXM_RT_E_REQUIRED = 28,
};

/* File offset of entry i of the region table at table_off. */
static inline uint64_t vxm_region_entry_off(uint64_t table_off, uint32_t i)
{
	return table_off + VXM_RT_ENTRIES + (uint64_t)VXM_RT_ENTRY_SIZE * i;
}

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

/* The region opens with a 64 KiB table; the items lie after it, unaligned
 * and in any order.
 *
 *   table   off   size  field
 *             0      8  Signature "metadata" (u64 0x617461646174656D)
 *             8      2  reserved, zero
 *            10      2  EntryCount: at most 2047
 *            12     20  reserved, zero
 *            32   32 n  entries
 *
 *   entry i, at 32 + 32 i:
 *             0     16  ItemId; (ItemId, IsUser) is unique
 *            16      4  Offset from the region start: at least 64 KiB
 *                       (0 with Length 0)
 *            20      4  Length: at most 1 MiB
 *            24      4  Flags: bit 0 IsUser, 1 IsVirtualDisk, 2 IsRequired
 *            28      4  reserved, zero
 *
 *   system items (none sets IsUser):
 *     File Parameters       8  0 u32 BlockSize; 4 u32 flags: bit 0
 *                              LeaveBlocksAllocated, bit 1 HasParent
 *     Virtual Disk Size     8  0 u64 bytes
 *     Virtual Disk ID      16  0 GUID
 *     Logical Sector Size   4  0 u32: 512 or 4096
 *     Physical Sector Size  4  0 u32: 512 or 4096
 *     Parent Locator     var.  see "parent locator" below
 */
enum {
	VXM_MT_ENTRIES = 32,
	VXM_MT_ENTRY_SIZE = 32,
	VXM_META_FILE_PARAMS_LEN = 8,
	VXM_META_VIRTUAL_SIZE_LEN = 8,
	VXM_META_DISK_ID_LEN = 16,
	VXM_META_SECTOR_SIZE_LEN = 4, /* logical and physical */
};

enum vxm_fp_flags {
	VXM_FP_LEAVE_BLOCKS_ALLOCATED = 1u << 0,
	VXM_FP_HAS_PARENT = 1u << 1,
};

/* File offset of entry i of the metadata table at table_off. */
static inline uint64_t vxm_meta_entry_off(uint64_t table_off, uint32_t i)
{
	return table_off + VXM_MT_ENTRIES + (uint64_t)VXM_MT_ENTRY_SIZE * i;
}
/* Bytes of the table up to the end of entry n - 1: what a change to entries
 * [0, n) rewrites. */
static inline uint32_t vxm_meta_table_bytes(uint32_t n)
{
	return VXM_MT_ENTRIES + VXM_MT_ENTRY_SIZE * n;
}

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

/* The fixed-size system items, as their bytes. */
struct vxm_meta_items {
	uint8_t file_params[VXM_META_FILE_PARAMS_LEN];
	uint8_t virtual_size[VXM_META_VIRTUAL_SIZE_LEN];
	uint8_t disk_id[VXM_META_DISK_ID_LEN];
	uint8_t logical_sector[VXM_META_SECTOR_SIZE_LEN];
	uint8_t physical_sector[VXM_META_SECTOR_SIZE_LEN];
};

/* Encodes the fixed-size items of m (block size, both flags, sizes, disk ID;
 * m->locator is not used), the reverse of vxm_meta_parse. */
void vxm_meta_items_encode(const struct vxm_meta *m, struct vxm_meta_items *out);

/* ---- parent locator (fmt §4) --------------------------------------------- */

/* The Parent Locator item; offsets count from its first byte.
 *
 *   off   size  field
 *     0     16  LocatorType: VXM_GUID_LOCATOR_VHDX, the only one defined
 *    16      2  reserved, zero
 *    18      2  KeyValueCount
 *    20   12 n  entries, then the strings (Hyper-V: packed in entry order)
 *
 *   entry i, at 20 + 12 i:
 *     0      4  KeyOffset
 *     4      4  ValueOffset
 *     8      2  KeyLength: bytes of UTF-16LE, non-zero, no NUL, no terminator
 *    10      2  ValueLength: likewise
 */

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

/* The BAT region is an array of u64 entries: payload entries with, after
 * every chunk_ratio of them, the entry of that chunk's sector-bitmap block
 * (vxm_geom_*_index below), in every file type.
 *
 *   entry:  63                          20 19           3 2       0
 *           | FileOffsetMB (offset >> 20)  | reserved, 0  | state   |
 *
 *   state:  payload entries: enum vxm_pb_state; SB entries: vxm_sb_state
 */
enum { VXM_BAT_ENTRY_SIZE = 8 };

/* File offset of entry idx of the BAT region at bat_off. */
static inline uint64_t vxm_bat_entry_off(uint64_t bat_off, uint64_t idx)
{
	return bat_off + idx * VXM_BAT_ENTRY_SIZE;
}
/* n entries in place: as the region holds them to host order, and back. */
void vxm_bat_decode(uint64_t *e, uint64_t n);
void vxm_bat_encode(uint64_t *e, uint64_t n);

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
/* Chunk of BAT index idx: the chunk its payload block lies in, or whose
 * sector bitmap it holds. */
static inline uint64_t vxm_geom_chunk_of_index(const struct vxm_geom *g, uint64_t idx)
{
	return idx / (g->chunk_ratio + 1ull);
}
/* Bytes of the virtual disk covered by block b (the last one may be short). */
static inline uint64_t vxm_geom_block_bytes(const struct vxm_geom *g, uint64_t b)
{
	uint64_t start = b * g->block_size;
	uint64_t left = g->virtual_size - start;
	return left < g->block_size ? left : g->block_size;
}
/* Bytes the BAT of g needs (the region may be larger), and that rounded up
 * to the 1 MiB a region length is a multiple of. */
static inline uint64_t vxm_geom_bat_bytes(const struct vxm_geom *g)
{
	return g->total_entries * VXM_BAT_ENTRY_SIZE;
}
static inline uint64_t vxm_geom_bat_region_len(const struct vxm_geom *g)
{
	return (vxm_geom_bat_bytes(g) + VXM_MiB - 1) / VXM_MiB * VXM_MiB;
}
/* Bytes every payload and sector-bitmap block of g takes once all are
 * allocated, whole blocks each (at most 2^26 blocks of at most 2^28 bytes:
 * no overflow). */
static inline uint64_t vxm_geom_blocks_bytes(const struct vxm_geom *g)
{
	return g->payload_blocks * g->block_size + g->sb_blocks * VXM_SB_BLOCK_SIZE;
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

/* One 1 MiB block per chunk, a bit per sector of the chunk (2^23 bits): bit s
 * is bit s % 8 of byte s / 8; 1 means this file holds the sector, 0 the
 * parent does.  Payload block b owns spb / 8 bytes of its chunk's block:
 *
 *   SB block of chunk c:  | block c*cr | block c*cr + 1 | ... | block c*cr + cr-1 |
 *                          <- spb / 8 -> (cr = chunk_ratio)
 */

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
/* Bytes of a block's slice: one bit per sector of the block. */
static inline uint32_t vxm_sb_slice_len(const struct vxm_geom *g)
{
	return g->spb / 8;
}

/* ---- log (fmt §6) -------------------------------------------------------- */

/* LogLength bytes at LogOffset, a ring of 4 KiB sectors.  An entry starts on
 * a sector and may wrap from the end of the log to its start: first its
 * descriptor sectors, then one data sector per data descriptor, in
 * descriptor order.  The checksum covers EntryLength bytes with its own
 * field read as zero.
 *
 *   sector 0:  header (64) | descriptors 0..125, 32 bytes each
 *   sector k:  descriptors, 128 each (descriptor i at entry byte 64 + 32 i)
 *   then:      data sectors
 *
 *   header  off  size  field
 *             0     4  Signature "loge" (0x65676F6C)
 *             4     4  Checksum
 *             8     4  EntryLength: 4096 * (descriptor + data sectors)
 *            12     4  Tail: log offset of the sequence's oldest entry
 *            16     8  SequenceNumber: > 0, +1 per entry of a sequence
 *            24     4  DescriptorCount
 *            28     4  reserved, zero
 *            32    16  LogGuid: the header's, or the entry is dead
 *            48     8  FlushedFileOffset: a 1 MiB multiple
 *            56     8  LastFileOffset: a 1 MiB multiple
 *
 *   descriptor  off  size  zero descriptor       data descriptor
 *                 0     4  "zero" (0x6F72657A)   "desc" (0x63736564)
 *                 4     4  reserved, zero        TrailingBytes: target 4092..4095
 *                 8     8  ZeroLength            LeadingBytes: target 0..7
 *                16     8  FileOffset            FileOffset
 *                24     8  SequenceNumber        SequenceNumber
 *   (ZeroLength and FileOffset are 4 KiB multiples)
 *
 *   data sector  off  size  field
 *                  0     4  Signature "data" (0x61746164)
 *                  4     4  SequenceHigh: the entry's, bits 63..32
 *                  8  4084  target bytes 8..4091
 *               4092     4  SequenceLow: bits 31..0
 */

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
