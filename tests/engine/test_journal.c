/* tests/engine/test_journal.c: the merge journal's text (engine/journal.c).
 *
 * A merge and a convert journal with every field set (full 64-bit values,
 * paths with spaces and UTF-8, the most layers a journal holds) are saved
 * and loaded back field by field, in every phase.  Then what a resume must
 * never act on is refused with -VXM_ECORRUPT, a message naming the file and
 * the line, err.off at that line's first byte, and the journal left zeroed:
 *
 *   values     each key's value out of its type or range (signs, spaces,
 *              hex, 2^64, GUIDs one digit short, empty paths, ...)
 *   structure  a missing, repeated or unknown key, text after "end", a
 *              wrong first line, CRLF line ends, a NUL byte, a line longer
 *              than the reader takes, one layer too many, a convert without
 *              its output and a merge with one
 *   cut short  every prefix of a valid journal
 *   garbage    random bytes, and every byte of a valid journal replaced by
 *              NUL, a newline, a space, 'x' and 0xff: refused, or a journal
 *              that writes back to text that reads the same
 *
 * and save refuses a path holding a line break before writing anything.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static char *dir;

static int setup(void **state)
{
	(void)state;
	dir = tl_mkdtemp("journal");
	return dir ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	if (dir)
		tl_sh("rm -rf '%s'", dir);
	free(dir);
	return 0;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	assert_non_null(p);
	return p;
}

static void guid_of(struct vxm_guid *g, unsigned tag)
{
	for (unsigned i = 0; i < 16; i++)
		g->b[i] = (uint8_t)(tag * 37 + i * 11 + 1);
}

/* A journal with every field away from its default. */
static void fill(struct vxm_journal *j, bool convert, unsigned nlayers)
{
	char p[128];

	memset(j, 0, sizeof(*j));
	j->convert = convert;
	j->phase = VXM_JPHASE_COPYING;
	j->seed = 0xfedcba9876543210ull;
	j->top = xstrdup("/vm/dir with spaces/snap 03 \xc3\xa9t\xc3\xa9.avhdx");
	j->dest = xstrdup(convert ? "/vm/out.raw.vxmerge-partial" : "/vm/base.vhdx");
	j->out = convert ? xstrdup("/vm/out.raw") : NULL;
	j->out_format = convert ? VXM_OUT_RAW : VXM_OUT_VHDX;
	j->dest_index = convert ? -1 : VXM_CHAIN_MAX_DEPTH - 1;
	guid_of(&j->dest_orig_dwg, 1);
	guid_of(&j->dest_new_dwg, 2);
	j->dest_orig_seq = UINT64_MAX;
	j->alloc_base = 3 * VXM_MiB;
	j->cursor = UINT64_MAX - 1;
	j->alloc_next = 0x123456789abcull;
	j->keep_merged = 1;
	j->nlayers = nlayers;
	for (unsigned i = 0; i < j->nlayers; i++) {
		guid_of(&j->layer_dwg[i], 100 + i);
		j->layer_seq[i] = (uint64_t)i << 40 | i;
		snprintf(p, sizeof(p), "/vm/layer %u.avhdx", i);
		j->layer_path[i] = xstrdup(p);
	}
	if (j->nlayers > 1) /* a symlinked layer: the file it points to */
		j->layer_target[1] = xstrdup("/elsewhere/layer 1.avhdx");
	j->nchildren = convert ? 0 : 2;
	for (unsigned i = 0; i < j->nchildren; i++) {
		guid_of(&j->child_dwg[i], 200 + i);
		j->child_seq[i] = 7 + i;
		snprintf(p, sizeof(p), "/other dir/child%u.avhdx", i);
		j->child_path[i] = xstrdup(p);
	}
}

static void assert_str_eq(const char *a, const char *b)
{
	if (!a || !b)
		assert_ptr_equal(a, b);
	else
		assert_string_equal(a, b);
}

static void assert_same(const struct vxm_journal *a, const struct vxm_journal *b)
{
	assert_int_equal(a->convert, b->convert);
	assert_int_equal(a->phase, b->phase);
	assert_int_equal(a->seed, b->seed);
	assert_str_eq(a->top, b->top);
	assert_str_eq(a->dest, b->dest);
	assert_str_eq(a->out, b->out);
	assert_int_equal(a->out_format, b->out_format);
	assert_int_equal(a->dest_index, b->dest_index);
	assert_true(vxm_guid_eq(&a->dest_orig_dwg, &b->dest_orig_dwg));
	assert_true(vxm_guid_eq(&a->dest_new_dwg, &b->dest_new_dwg));
	assert_int_equal(a->dest_orig_seq, b->dest_orig_seq);
	assert_int_equal(a->alloc_base, b->alloc_base);
	assert_int_equal(a->cursor, b->cursor);
	assert_int_equal(a->alloc_next, b->alloc_next);
	assert_int_equal(a->keep_merged, b->keep_merged);
	assert_int_equal(a->nlayers, b->nlayers);
	for (unsigned i = 0; i < a->nlayers; i++) {
		assert_true(vxm_guid_eq(&a->layer_dwg[i], &b->layer_dwg[i]));
		assert_int_equal(a->layer_seq[i], b->layer_seq[i]);
		assert_str_eq(a->layer_path[i], b->layer_path[i]);
		assert_str_eq(a->layer_target[i], b->layer_target[i]);
	}
	assert_int_equal(a->nchildren, b->nchildren);
	for (unsigned i = 0; i < a->nchildren; i++) {
		assert_true(vxm_guid_eq(&a->child_dwg[i], &b->child_dwg[i]));
		assert_int_equal(a->child_seq[i], b->child_seq[i]);
		assert_str_eq(a->child_path[i], b->child_path[i]);
	}
}

static bool zeroed(const struct vxm_journal *j)
{
	static const struct vxm_journal z;
	return !memcmp(j, &z, sizeof(z));
}

/* j's text (malloc'd) as vxm_journal_write makes it. */
static char *text_of(const struct vxm_journal *j, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	assert_non_null(f);
	assert_int_equal(vxm_journal_write(j, f), 0);
	assert_int_equal(fclose(f), 0);
	return buf;
}

/* Parses len bytes of text (no file); err may be NULL. */
static int parse(struct vxm_journal *j, const void *text, size_t len, struct vxm_err *err)
{
	static char empty[1];
	FILE *f = fmemopen(len ? (void *)text : empty, len, "r");
	assert_non_null(f);
	int ret = vxm_journal_read(j, f, "mem.journal", err);
	fclose(f);
	return ret;
}

/* Loads text through a file, as a resume does: 0, or the refusal checked
 * (code, message naming the file and `where`, off, j zeroed). */
static int load_text(const char *text, size_t len, const char *where, uint64_t off)
{
	char path[1200], m[1500];
	struct vxm_journal j;
	struct vxm_err err = { 0 };

	snprintf(path, sizeof(path), "%s/t.vxmerge-journal", dir);
	assert_int_equal(tl_write_file(path, text, len), 0);
	int ret = vxm_journal_load(&j, path, &err);
	if (!ret) {
		vxm_journal_fini(&j);
		return 0;
	}
	vxm_err_format(&err, m, sizeof(m));
	if (ret != -VXM_ECORRUPT || err.code != ret || !strstr(err.msg, path) ||
	    !strstr(err.msg, "the merge journal is damaged") || (where && !strstr(err.msg, where)) ||
	    (off != VXM_OFF_NONE && err.off != off) || !zeroed(&j)) {
		fprintf(stderr, "unexpected refusal (wanted %s at 0x%llx): %d %s\n", where ? where : "-",
			(unsigned long long)off, ret, m);
		fail();
	}
	return ret;
}

static void a_saved_journal_loads_with_every_field(void **state)
{
	char path[1200];
	struct stat st;
	unsigned saved = 0;
	(void)state;

	snprintf(path, sizeof(path), "%s/out.vxmerge-journal", dir);
	for (int convert = 0; convert <= 1; convert++) {
		struct vxm_journal j, back;
		fill(&j, convert, convert ? VXM_JOURNAL_MAX : 3);
		for (unsigned p = VXM_JPHASE_PLANNED; p <= VXM_JPHASE_CLEANUP; p++) {
			struct vxm_err err = { 0 };
			j.phase = (enum vxm_jphase)p;
			j.cursor += p; /* a new value over the old journal */
			assert_int_equal(vxm_journal_save(&j, path, &err), 0);
			assert_int_equal(stat(path, &st), 0);
			char lock[1300];
			snprintf(lock, sizeof(lock), "%s.lock", path);
			assert_int_not_equal(stat(lock, &st), 0); /* renamed over the journal */
			assert_int_equal(vxm_journal_load(&back, path, &err), 0);
			assert_same(&j, &back);
			assert_string_equal(vxm_journal_phase_name(back.phase), vxm_journal_phase_name(j.phase));
			vxm_journal_fini(&back);
			saved++;
		}
		/* the text holds what it should, once */
		size_t len;
		char *t = text_of(&j, &len);
		assert_non_null(strstr(t, "seed 18364758544493064720\n"));
		assert_non_null(strstr(t, "dest_orig_seq 18446744073709551615\n"));
		assert_non_null(strstr(t, convert ? "dest_index -1\n" : "dest_index 255\n"));
		assert_int_equal(strncmp(t + len - 4, "end\n", 4), 0);
		free(t);
		vxm_journal_fini(&j);
	}
	/* values the writer never makes but the reader takes as what they say */
	struct vxm_journal j, back;
	fill(&j, false, 3);
	size_t len;
	char *t = text_of(&j, &len), *s;
	assert_non_null(s = strstr(t, "cursor "));
	char *alt;
	assert_true(asprintf(&alt, "%.*scursor 000042%s", (int)(s - t), t, strchr(s, '\n')) > 0);
	assert_int_equal(parse(&back, alt, strlen(alt), NULL), 0);
	assert_int_equal(back.cursor, 42);
	vxm_journal_fini(&back);
	free(alt);
	assert_non_null(s = strstr(t, "dest_new_dwg "));
	char g[VXM_GUID_STRLEN + 1];
	vxm_guid_fmt(&j.dest_new_dwg, g);
	for (char *c = g; *c; c++)
		if (*c >= 'a' && *c <= 'f')
			*c = (char)(*c - 'a' + 'A');
	assert_true(asprintf(&alt, "%.*sdest_new_dwg {%s}%s", (int)(s - t), t, g, strchr(s, '\n')) > 0);
	assert_int_equal(parse(&back, alt, strlen(alt), NULL), 0);
	assert_true(vxm_guid_eq(&back.dest_new_dwg, &j.dest_new_dwg));
	vxm_journal_fini(&back);
	free(alt);
	free(t);
	vxm_journal_fini(&j);
	print_message("  %u journals saved and loaded back, every field equal\n", saved);
}

struct badval {
	const char *key;
	const char *const vals[12];
};

#define G "01234567-89ab-cdef-0123-456789abcdef"
static const struct badval badvals[] = {
	{ "op", { "", "Merge", "merge ", " merge", "copy" } },
	{ "phase", { "", "COPYING", "done", "copying x" } },
	{ "seed", { "", "x", "-1", "+1", " 1", "1 ", "1x", "0x10", "18446744073709551616",
		    "99999999999999999999999" } },
	{ "top", { "" } },
	{ "dest", { "" } },
	{ "out", { "" } },
	{ "out_format", { "", "2", "-1", "1x", "raw" } },
	{ "dest_index", { "", "-2", "256", "x", "- 1", "-01", "4294967295", "-1 " } },
	{ "dest_orig_dwg", { "", "xyz", "01234567-89ab-cdef-0123-456789abcde", G "0", G " " } },
	{ "dest_new_dwg", { "", "{" G, "01234567-89ab-cdef-0123-456789abcdeg" } },
	{ "dest_orig_seq", { "", "-5", "5.0", "18446744073709551616" } },
	{ "alloc_base", { "", "1e6", "+0" } },
	{ "cursor", { "", "0x0", "cursor" } },
	{ "alloc_next", { "", " ", "1 2" } },
	{ "keep_merged", { "", "2", "-1", "true", "01x" } },
	{ "layer", { "", G, G " 5", G " 5 ", "bad 5 /p", G " x /p", G " -1 /p", G "  /p",
		     G " 18446744073709551616 /p" } },
	{ "child", { "", G " 1", "zz 1 /p", G " 1x /p" } },
	{ "end", { "now", " " } },
};

static void every_value_out_of_its_type_or_range_is_refused(void **state)
{
	unsigned refused = 0;
	(void)state;

	for (int convert = 0; convert <= 1; convert++) {
		struct vxm_journal j;
		size_t len;
		fill(&j, convert, 3);
		char *t = text_of(&j, &len);
		vxm_journal_fini(&j);
		assert_int_equal(load_text(t, len, NULL, 0), 0);
		/* each line of each key: every bad value in its place */
		unsigned lineno = 1;
		for (char *line = t; *line; line = strchr(line, '\n') + 1, lineno++) {
			char *nl = strchr(line, '\n'), *sp = memchr(line, ' ', (size_t)(nl - line));
			size_t klen = (size_t)((sp ? sp : nl) - line);
			for (size_t b = 0; b < sizeof(badvals) / sizeof(badvals[0]); b++) {
				if (strlen(badvals[b].key) != klen || strncmp(line, badvals[b].key, klen))
					continue;
				for (unsigned v = 0; badvals[b].vals[v]; v++) {
					const char *val = badvals[b].vals[v];
					char *alt, where[32];
					int n = asprintf(&alt, "%.*s%s%s%s%s", (int)(line - t), t, badvals[b].key,
							 *val || strcmp(badvals[b].key, "end") ? " " : "", val, nl);
					assert_true(n > 0);
					snprintf(where, sizeof(where), "line %u:", lineno);
					if (load_text(alt, (size_t)n, where, (uint64_t)(line - t)) != -VXM_ECORRUPT) {
						fprintf(stderr, "accepted: %s \"%s\"\n", badvals[b].key, val);
						fail();
					}
					free(alt);
					refused++;
				}
			}
		}
		free(t);
	}
	print_message("  %u bad values refused, each at its line\n", refused);
}

static void refuse(const char *label, const char *text, size_t len, const char *where)
{
	struct vxm_journal j;
	struct vxm_err err = { 0 };

	if (parse(&j, text, len, &err) != -VXM_ECORRUPT || !zeroed(&j) || err.code != -VXM_ECORRUPT ||
	    (where && !strstr(err.msg, where))) {
		fprintf(stderr, "%s: not refused as wanted (%s): %s\n", label, where ? where : "-", err.msg);
		fail();
	}
	/* and through a file, as a resume reads it */
	assert_int_equal(load_text(text, len, where, VXM_OFF_NONE), -VXM_ECORRUPT);
}

/* t with line `key ...` replaced by repl (NULL: removed); malloc'd. */
static char *edit_line(const char *t, const char *key, const char *repl)
{
	size_t kl = strlen(key);
	const char *line = t;
	while (strncmp(line, key, kl) || (line[kl] != ' ' && line[kl] != '\n'))
		line = strchr(line, '\n') + 1;
	char *out;
	assert_true(asprintf(&out, "%.*s%s%s", (int)(line - t), t, repl ? repl : "",
			     strchr(line, '\n') + 1) > 0);
	return out;
}

static void a_damaged_structure_is_refused(void **state)
{
	struct vxm_journal j;
	size_t len;
	unsigned n = 0;
	char *t, *alt;
	(void)state;

	fill(&j, false, 3);
	t = text_of(&j, &len);
	refuse("empty", "", 0, "no \"end\" line");
	refuse("version 2", "vhdxmerge-journal 2\nend\n", 24, "line 1: not a vhdxmerge journal");
	refuse("upper case", "VHDXMERGE-JOURNAL 1\n", 20, "line 1:");
	refuse("no first line", strchr(t, '\n') + 1, len - (size_t)(strchr(t, '\n') + 1 - t), "line 1:");
	n += 4;
	static const char *const bad_targets[][2] = {
		{ "layer_target 3 /x\n", "not the index of a layer before it" },
		{ "layer_target 1 /x\n", "a layer given two targets" },
		{ "layer_target 1\n", "not \"LAYER PATH\"" },
	};
	for (unsigned i = 0; i < 3; i++) {
		char *e = edit_line(t, "end", NULL), *b;
		assert_true(asprintf(&b, "%s%send\n", e, bad_targets[i][0]) > 0);
		refuse("layer_target", b, strlen(b), bad_targets[i][1]);
		free(e);
		free(b);
		n++;
	}

	/* every line the writer writes, removed: each is needed (layers are
	 * counted by their lines, so one fewer is a smaller journal) */
	unsigned lineno = 0;
	for (const char *line = t; *line; line = strchr(line, '\n') + 1, lineno++) {
		if (lineno == 0 || !strncmp(line, "layer ", 6) || !strncmp(line, "child ", 6) ||
		    !strncmp(line, "layer_target ", 13)) /* optional */
			continue;
		const char *nl = strchr(line, '\n');
		assert_true(asprintf(&alt, "%.*s%s", (int)(line - t), t, nl + 1) > 0);
		refuse("a line removed", alt, strlen(alt), NULL);
		free(alt);
		n++;
	}
	alt = edit_line(t, "cursor", "cursor 5\ncursor 6\n");
	refuse("a key twice", alt, strlen(alt), "a key given twice");
	free(alt);
	alt = edit_line(t, "cursor", "cursor 5\nalloc_cap 7\n");
	refuse("an unknown key", alt, strlen(alt), "an unknown key");
	free(alt);
	alt = edit_line(t, "cursor", "cursor 5\n\n");
	refuse("an empty line", alt, strlen(alt), "an unknown key");
	free(alt);
	alt = edit_line(t, "end", "end\nend\n");
	refuse("end twice", alt, strlen(alt), "text after \"end\"");
	free(alt);
	alt = edit_line(t, "end", "end\n\n");
	refuse("a blank line after end", alt, strlen(alt), "text after \"end\"");
	free(alt);
	alt = edit_line(t, "end", "end");
	refuse("no newline after end", alt, strlen(alt), "cut short");
	free(alt);
	alt = edit_line(t, "dest", "out /vm/x.raw\ndest /vm/base.vhdx\n");
	refuse("a merge with an output", alt, strlen(alt), "op, out and dest_index disagree");
	free(alt);
	alt = edit_line(t, "dest_index", "dest_index -1\n");
	refuse("a merge into no layer", alt, strlen(alt), "op, out and dest_index disagree");
	free(alt);
	n += 8;

	/* CRLF line ends, a NUL byte, an overlong line */
	size_t cl = 0;
	char *crlf = malloc(2 * len);
	assert_non_null(crlf);
	for (size_t i = 0; i < len; i++) {
		if (t[i] == '\n')
			crlf[cl++] = '\r';
		crlf[cl++] = t[i];
	}
	refuse("CRLF", crlf, cl, "line 1:");
	free(crlf);
	char *nul = malloc(len);
	assert_non_null(nul);
	memcpy(nul, t, len);
	nul[strstr(t, "/vm/base") - t + 3] = 0;
	refuse("a NUL in a path", nul, len, "not text");
	free(nul);
	char *longp = malloc(9000);
	assert_non_null(longp);
	memset(longp, 'a', 8999);
	longp[0] = '/';
	longp[8999] = 0;
	char *repl;
	assert_true(asprintf(&repl, "top %s\n", longp) > 0);
	alt = edit_line(t, "top", repl);
	refuse("a path of 9,000 bytes", alt, strlen(alt), "a line too long");
	free(alt);
	free(repl);
	free(longp);
	n += 3;
	free(t);
	vxm_journal_fini(&j);

	/* one layer too many; a convert without its output */
	fill(&j, true, VXM_JOURNAL_MAX);
	t = text_of(&j, &len);
	char g[VXM_GUID_STRLEN + 1];
	assert_true(asprintf(&repl, "layer %s 1 /vm/one too many.avhdx\nend\n", vxm_guid_fmt(&j.layer_dwg[0], g)) > 0);
	alt = edit_line(t, "end", repl);
	refuse("VXM_JOURNAL_MAX + 1 layers", alt, strlen(alt), "too many of them");
	free(alt);
	free(repl);
	alt = edit_line(t, "out", NULL);
	refuse("a convert without its output", alt, strlen(alt), "op, out and dest_index disagree");
	free(alt);
	alt = edit_line(t, "dest_index", "dest_index 0\n");
	refuse("a convert into a layer", alt, strlen(alt), "op, out and dest_index disagree");
	free(alt);
	n += 3;
	free(t);
	vxm_journal_fini(&j);
	print_message("  %u damaged journals refused\n", n);
}

static void a_journal_cut_short_anywhere_is_refused(void **state)
{
	unsigned n = 0;
	(void)state;

	for (int convert = 0; convert <= 1; convert++) {
		struct vxm_journal j, back;
		size_t len;
		fill(&j, convert, 3);
		char *t = text_of(&j, &len);
		for (size_t k = 0; k < len; k++) {
			struct vxm_err err = { 0 };
			int ret = parse(&back, t, k, &err);
			if (ret != -VXM_ECORRUPT || !zeroed(&back)) {
				fprintf(stderr, "cut at %zu of %zu: %d %s\n", k, len, ret, err.msg);
				fail();
			}
			n++;
		}
		assert_int_equal(parse(&back, t, len, NULL), 0);
		assert_same(&j, &back);
		vxm_journal_fini(&back);
		/* and through files, at a few places */
		for (size_t k = 0; k < len; k += len / 7)
			assert_int_equal(load_text(t, k, NULL, VXM_OFF_NONE), -VXM_ECORRUPT);
		free(t);
		vxm_journal_fini(&j);
	}
	print_message("  %u prefixes refused\n", n);
}

static void garbage_is_refused_or_reads_back_the_same(void **state)
{
	uint64_t rs = 19;
	unsigned refused = 0, accepted = 0;
	uint8_t *buf = malloc(4096);
	(void)state;

	assert_non_null(buf);
	for (unsigned i = 0; i < 3000; i++) {
		size_t len = tl_rnd(&rs) % 4096;
		for (size_t k = 0; k < len; k++)
			buf[k] = (uint8_t)tl_rnd(&rs);
		if (i % 2) /* half of them start like a journal */
			memcpy(buf, "vhdxmerge-journal 1\n", len < 20 ? len : 20);
		struct vxm_journal j;
		assert_int_equal(parse(&j, buf, len, NULL), -VXM_ECORRUPT);
		assert_true(zeroed(&j));
		refused++;
	}
	free(buf);

	static const char subst[] = { 0, '\n', ' ', 'x', (char)0xff };
	for (int convert = 0; convert <= 1; convert++) {
		struct vxm_journal j;
		size_t len;
		fill(&j, convert, 3);
		char *t = text_of(&j, &len);
		vxm_journal_fini(&j);
		for (size_t k = 0; k < len; k++) {
			for (size_t s = 0; s < sizeof(subst); s++) {
				if (t[k] == subst[s])
					continue;
				char old = t[k];
				struct vxm_journal a, b;
				t[k] = subst[s];
				int ret = parse(&a, t, len, NULL);
				t[k] = old;
				if (ret) {
					assert_int_equal(ret, -VXM_ECORRUPT);
					assert_true(zeroed(&a));
					refused++;
					continue;
				}
				/* a changed path or GUID digit: still a journal, and one
				 * that writes back to what it read */
				size_t l2;
				char *t2 = text_of(&a, &l2);
				assert_int_equal(parse(&b, t2, l2, NULL), 0);
				assert_same(&a, &b);
				vxm_journal_fini(&a);
				vxm_journal_fini(&b);
				free(t2);
				accepted++;
			}
		}
		free(t);
	}
	print_message("  %u refused, %u accepted (each reading back the same)\n", refused, accepted);
}

static void save_refuses_a_path_with_a_line_break_and_writes_nothing(void **state)
{
	char path[1200], lock[1300];
	struct stat st;
	(void)state;

	snprintf(path, sizeof(path), "%s/nl.vxmerge-journal", dir);
	snprintf(lock, sizeof(lock), "%s.lock", path);
	for (int where = 0; where < 3; where++) {
		struct vxm_journal j;
		struct vxm_err err = { 0 };
		char **p;
		fill(&j, true, 5);
		p = where == 0 ? &j.top : where == 1 ? &j.out : &j.layer_path[3];
		free(*p);
		/* what would forge a cursor if it were written as it is */
		*p = xstrdup("/vm/a\ncursor 99999999");
		assert_int_equal(vxm_journal_save(&j, path, &err), -EINVAL);
		assert_non_null(strstr(err.msg, path));
		assert_int_not_equal(stat(path, &st), 0);
		assert_int_not_equal(stat(lock, &st), 0);
		vxm_journal_fini(&j);
	}
	struct vxm_journal j;
	assert_int_equal(vxm_journal_load(&j, path, NULL), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(a_saved_journal_loads_with_every_field),
		cmocka_unit_test(every_value_out_of_its_type_or_range_is_refused),
		cmocka_unit_test(a_damaged_structure_is_refused),
		cmocka_unit_test(a_journal_cut_short_anywhere_is_refused),
		cmocka_unit_test(garbage_is_refused_or_reads_back_the_same),
		cmocka_unit_test(save_refuses_a_path_with_a_line_break_and_writes_nothing),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
