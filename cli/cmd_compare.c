/* cli/cmd_compare.c: `vhdxmerge compare A B [--json] [--progress MODE]`: do
 * two disks read the same?  The engine part is vxm_compare_with()
 * (engine/compare.c), which reads both sides through the sector reader and
 * never through the planner, so it can check what a merge produced. */
#include "cli.h"
#include "progress.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void help_compare(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge compare A B [--json] [--progress " CLI_PROGRESS_MODES "]\n"
		"                         [--chunk SIZE] [--search-dir DIR]...\n"
		"\n"
		"Compares what two disks read, sector by sector, from the first byte to the last.\n"
		"A and B may each be a VHDX file (a base, or the newest .avhdx of a chain: the\n"
		"chain is found and checked as `chain` does and read as the top layer shows it)\n"
		"or a raw image (any file without the \"vhdxfile\" identifier, compared as stored).\n"
		"Typical uses: a merged or converted file against the chain it came from, or a\n"
		"chain against a raw export. Nothing is written.\n"
		"\n"
		"Disks of different sizes differ; the common part is still compared, and the\n"
		"report gives its first differing byte, or the offset where the shorter ends.\n"
		"\n"
		"  --json              {\"same\", \"first_difference\" (byte offset or null),\n"
		"                      \"first_difference_sector\", \"sector_size\", \"size_a\",\n"
		"                      \"size_b\", \"size_differs\", \"bytes_compared\", \"a\", \"b\"}\n"
		"  --progress MODE     auto (a bar when stderr is a terminal), bar, json (JSON\n"
		"                      lines on stdout; the result then is the last line, as\n"
		"                      --json with \"event\": \"result\"), none.  Default auto\n"
		"  --chunk SIZE        bytes read per side at a time (default 4M)\n"
		"  --search-dir DIR    also look for parents of either side in DIR (repeatable)\n"
		"\n"
		"Exit status: 0 the disks read the same; 1 they differ (size or content);\n"
		"3 corrupt VHDX, 4 chain error, 6 I/O error (the message names the file).\n");
}

static int on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct cli_progress *p = ctx;

	if (p->total != total)
		cli_progress_set_total(p, total);
	cli_progress_update(p, done, 0, 0, 0);
	return 0;
}

static void side_json(struct json *j, const char *key, const char *path,
		      const struct vxm_compare_side *s)
{
	json_obj_begin(j, key);
	json_str(j, "path", path);
	json_str(j, "kind", s->raw ? "raw" : "vhdx");
	json_u64(j, "size", s->size);
	if (!s->raw) {
		json_u64(j, "layers", s->depth);
		json_u64(j, "logical_sector_size", s->sector_size);
	}
	json_obj_end(j);
}

static const char *side_text(const struct vxm_compare_side *s, char *buf, size_t len)
{
	if (s->raw)
		snprintf(buf, len, "raw image");
	else if (s->depth == 1)
		snprintf(buf, len, "VHDX, %u-byte sectors", s->sector_size);
	else
		snprintf(buf, len, "VHDX chain of %u layers, %u-byte sectors", s->depth,
			 s->sector_size);
	return buf;
}

static void print_result(const char *a, const char *b, const struct vxm_compare_result *r,
			 bool json, bool json_lines)
{
	char h1[32], h2[32], t1[64], t2[64];

	if (json) {
		struct json j;
		json_init(&j, stdout);
		j.pretty = !json_lines;
		json_obj_begin(&j, NULL);
		if (json_lines)
			json_str(&j, "event", "result");
		json_bool(&j, "same", r->same);
		if (r->first_difference == VXM_OFF_NONE) {
			json_null(&j, "first_difference");
			json_null(&j, "first_difference_sector");
		} else {
			json_u64(&j, "first_difference", r->first_difference);
			json_u64(&j, "first_difference_sector", r->first_difference / r->sector_size);
		}
		json_bool(&j, "differ_in_common", r->differ_in_common);
		json_u64(&j, "sector_size", r->sector_size);
		json_u64(&j, "size_a", r->size_a);
		json_u64(&j, "size_b", r->size_b);
		json_bool(&j, "size_differs", r->size_differs);
		json_u64(&j, "bytes_compared", r->bytes_compared);
		side_json(&j, "a", a, &r->a);
		side_json(&j, "b", b, &r->b);
		json_obj_end(&j);
		json_end(&j);
		return;
	}
	printf("A: %s (%s, %s)\n", a, side_text(&r->a, t1, sizeof(t1)),
	       cli_human(r->size_a, h1, sizeof(h1)));
	printf("B: %s (%s, %s)\n", b, side_text(&r->b, t2, sizeof(t2)),
	       cli_human(r->size_b, h2, sizeof(h2)));
	if (r->same) {
		printf("same: A and B read the same (%" PRIu64 " bytes compared)\n",
		       r->bytes_compared);
		return;
	}
	if (r->size_differs)
		printf("differ: sizes differ: A is %" PRIu64 " bytes, B is %" PRIu64 " bytes\n",
		       r->size_a, r->size_b);
	if (r->differ_in_common)
		printf("differ: first difference at byte %" PRIu64 " (0x%" PRIx64 "), sector %" PRIu64
		       " of %u bytes\n",
		       r->first_difference, r->first_difference, r->first_difference / r->sector_size,
		       r->sector_size);
	else
		printf("        the common %" PRIu64 " bytes are the same; %s ends there\n",
		       r->first_difference, r->size_a < r->size_b ? "A" : "B");
}

int cmd_compare(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "progress", required_argument, NULL, 'p' },
		{ "chunk", required_argument, NULL, 'c' },
		{ "search-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vxm_compare_opts co = { .chunk = 0 };
	const char *pmode = "auto";
	bool json = false;
	uint64_t chunk = 0;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jp:c:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'p': pmode = optarg; break;
		case 'c':
			if (cli_parse_size(optarg, &chunk) || !chunk || chunk % 4096 ||
			    chunk > 1024 * VXM_MiB)
				return cli_usage("compare",
						 "bad --chunk '%s' (a multiple of 4K, at most 1G)",
						 optarg);
			break;
		case 's': cli_add_search_dir(&co.chain, optarg); break;
		case 'h': help_compare(stdout); return 0;
		default: return cli_usage("compare", "unknown option");
		}
	}
	if (optind != argc - 2) {
		free((void *)co.chain.search_dirs);
		return cli_usage("compare", "expects two files, A and B");
	}
	const char *a = argv[optind], *b = argv[optind + 1];

	struct cli_progress prog;
	if (cli_progress_init(&prog, pmode, "compare", 0) < 0) {
		free((void *)co.chain.search_dirs);
		return cli_usage("compare", "bad --progress '%s' (%s)", pmode, CLI_PROGRESS_MODES);
	}
	co.chunk = (uint32_t)chunk;
	co.progress = on_progress;
	co.progress_ctx = &prog;
	cli_progress_phase(&prog, "compare");
	cli_progress_update(&prog, 0, 0, 0, 0);

	/* The total (the common size) is known once both sides are open; the
	 * callbacks bring it. */
	struct vxm_compare_result r;
	struct vxm_err err = { 0 };
	ret = vxm_compare_with(a, b, &co, &r, &err);
	free((void *)co.chain.search_dirs);
	if (ret) {
		cli_progress_finish(&prog, false);
		return cli_fail(&err, ret);
	}
	cli_progress_set_total(&prog, r.size_a < r.size_b ? r.size_a : r.size_b);
	cli_progress_update(&prog, r.bytes_compared, 0, 0, 0);
	cli_progress_finish(&prog, true);
	/* JSON progress lines make stdout a JSON-lines stream: the result is
	 * one more line. */
	bool lines = prog.mode == CLI_PROGRESS_JSON;
	print_result(a, b, &r, json || lines, lines);
	return r.same ? VXM_EXIT_OK : VXM_EXIT_PROBLEMS;
}
