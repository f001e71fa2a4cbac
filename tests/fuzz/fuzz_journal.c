/* tests/fuzz/fuzz_journal.c: libFuzzer target for the merge journal's
 * reader (engine/journal.c, vxm_journal_read): the input is the journal's
 * text itself, read through fmemopen (no file is written).
 *
 * Properties (FZ_ASSERT):
 *   - a refusal is -VXM_ECORRUPT with a message and leaves the journal
 *     zeroed (every allocation released: ASan's leak check sees the rest);
 *   - an accepted journal holds what a resume relies on: top and dest, at
 *     least one layer and at most VXM_JOURNAL_MAX of each list, every path
 *     present, non-empty and free of line breaks, a convert with its output
 *     and no destination layer, a merge the other way round, a phase with a
 *     name;
 *   - it writes (vxm_journal_write) to text that reads back to the same
 *     fields and writes the same text again.
 *
 * Seeds: regressions/journal/ (journals of a merge and of a convert saved
 * by vxm_journal_save).
 */
#define _GNU_SOURCE
#include "fuzz_common.h"
#include "engine/engine.h"

static bool path_ok(const char *p)
{
	return p && *p && !strchr(p, '\n');
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static bool same(const struct vxm_journal *a, const struct vxm_journal *b)
{
	bool s = a->convert == b->convert && a->phase == b->phase && a->seed == b->seed &&
		 same_str(a->top, b->top) && same_str(a->dest, b->dest) && same_str(a->out, b->out) &&
		 a->out_format == b->out_format && a->dest_index == b->dest_index &&
		 vxm_guid_eq(&a->dest_orig_dwg, &b->dest_orig_dwg) &&
		 vxm_guid_eq(&a->dest_new_dwg, &b->dest_new_dwg) &&
		 a->dest_orig_seq == b->dest_orig_seq && a->alloc_base == b->alloc_base &&
		 a->cursor == b->cursor && a->alloc_next == b->alloc_next &&
		 a->keep_merged == b->keep_merged && a->nlayers == b->nlayers &&
		 a->nchildren == b->nchildren;
	for (unsigned i = 0; s && i < a->nlayers; i++)
		s = vxm_guid_eq(&a->layer_dwg[i], &b->layer_dwg[i]) && a->layer_seq[i] == b->layer_seq[i] &&
		    same_str(a->layer_path[i], b->layer_path[i]);
	for (unsigned i = 0; s && i < a->nchildren; i++)
		s = vxm_guid_eq(&a->child_dwg[i], &b->child_dwg[i]) && a->child_seq[i] == b->child_seq[i] &&
		    same_str(a->child_path[i], b->child_path[i]);
	return s;
}

static int parse(struct vxm_journal *j, const void *text, size_t n, struct vxm_err *err)
{
	static char empty[1];
	FILE *f = fmemopen(n ? (void *)text : empty, n, "r");
	FZ_ASSERT(f);
	int ret = vxm_journal_read(j, f, "fuzz.vxmerge-journal", err);
	fclose(f);
	return ret;
}

static char *text_of(const struct vxm_journal *j, size_t *n)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, n);
	FZ_ASSERT(f);
	FZ_ASSERT(vxm_journal_write(j, f) == 0);
	FZ_ASSERT(fclose(f) == 0);
	return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
	static const struct vxm_journal zero;
	struct vxm_journal j, k;
	struct vxm_err err = { 0 };

	/* a copy: fmemopen wants a writable buffer even to read */
	uint8_t *in = malloc(n ? n : 1);
	FZ_ASSERT(in);
	memcpy(in, data, n);
	int ret = parse(&j, in, n, &err);
	free(in);
	if (ret) {
		FZ_ASSERT(ret == -VXM_ECORRUPT && err.code == ret && err.msg[0]);
		FZ_ASSERT(!memcmp(&j, &zero, sizeof(j)));
		return 0;
	}
	FZ_ASSERT(path_ok(j.top) && path_ok(j.dest));
	FZ_ASSERT(j.nlayers >= 1 && j.nlayers <= VXM_JOURNAL_MAX && j.nchildren <= VXM_JOURNAL_MAX);
	for (unsigned i = 0; i < j.nlayers; i++)
		FZ_ASSERT(path_ok(j.layer_path[i]));
	for (unsigned i = 0; i < j.nchildren; i++)
		FZ_ASSERT(path_ok(j.child_path[i]));
	FZ_ASSERT(j.convert ? path_ok(j.out) && j.dest_index == -1 : !j.out && j.dest_index >= 0);
	FZ_ASSERT(j.dest_index < VXM_CHAIN_MAX_DEPTH);
	FZ_ASSERT(j.out_format == VXM_OUT_VHDX || j.out_format == VXM_OUT_RAW);
	FZ_ASSERT(j.keep_merged == 0 || j.keep_merged == 1);
	FZ_ASSERT(strcmp(vxm_journal_phase_name(j.phase), "unknown"));

	size_t n1, n2;
	char *t1 = text_of(&j, &n1);
	FZ_ASSERT(parse(&k, t1, n1, NULL) == 0);
	FZ_ASSERT(same(&j, &k));
	char *t2 = text_of(&k, &n2);
	FZ_ASSERT(n1 == n2 && !memcmp(t1, t2, n1));
	free(t1);
	free(t2);
	vxm_journal_fini(&j);
	vxm_journal_fini(&k);
	return 0;
}
