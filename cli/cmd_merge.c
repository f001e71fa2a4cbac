/* cli/cmd_merge.c: `vhdxmerge merge` and `vhdxmerge convert`.
 *
 * Both run vxm_merge_run(); SIGINT and SIGTERM set a flag the engine polls
 * between extents: it drains its I/O, records progress in the journal and
 * returns -EINTR, and the program exits 8 ("re-run to resume").
 */
#define _GNU_SOURCE
#include "cli.h"
#include "progress.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile int stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

struct ui {
	struct cli_progress p;
	char phase[32];
	bool json_progress;
};

static void ui_progress(void *ctx, const struct vxm_merge_progress *mp)
{
	struct ui *u = ctx;
	if (strcmp(u->phase, mp->phase)) {
		snprintf(u->phase, sizeof(u->phase), "%s", mp->phase);
		cli_progress_phase(&u->p, mp->phase);
		if (mp->total)
			cli_progress_set_total(&u->p, mp->total);
	}
	if (mp->total)
		cli_progress_update(&u->p, mp->done, mp->copied, mp->cloned, mp->zeroed);
}

static void ui_log(void *ctx, const char *line)
{
	struct ui *u = ctx;
	cli_progress_clear(&u->p);
	fprintf(stderr, "%s: %s\n", cli_prog, line);
}

static void summary(const struct vxm_merge_opts *o, const struct vxm_merge_result *r, bool json,
		    bool convert)
{
	uint64_t moved = r->copied + r->cloned + r->zeroed;
	double rate = r->seconds > 0 ? (double)(r->plan.copy_bytes) / r->seconds : 0;
	uint64_t written = r->plan.copy_bytes + r->plan.zero_bytes;
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "event", "summary");
		json_str(&j, "op", convert ? "convert" : "merge");
		json_str(&j, "top", o->top);
		json_str(&j, "destination", convert ? o->out : r->dest);
		json_bool(&j, "dry_run", r->dry_run);
		json_bool(&j, "resumed", r->resumed);
		json_u64(&j, "layers_merged", r->layers_merged);
		json_u64(&j, "copy_bytes", r->plan.copy_bytes);
		json_u64(&j, "zero_bytes", r->plan.zero_bytes);
		json_u64(&j, "extents", r->plan.extents);
		json_u64(&j, "bytes_copied", r->copied);
		json_u64(&j, "bytes_cloned", r->cloned);
		json_u64(&j, "bytes_zeroed", r->zeroed);
		json_u64(&j, "data_writes", r->data_writes);
		json_u64(&j, "buffered_bytes", r->buffered_bytes);
		json_u64(&j, "commits", r->commits);
		json_dbl(&j, "commit_seconds", r->commit_seconds);
		json_u64(&j, "naive_copy_bytes", r->plan.naive_copy_bytes);
		json_u64(&j, "dest_growth_bytes", r->plan.dest_growth_bytes);
		json_u64(&j, "free_bytes", r->free_bytes);
		json_u64(&j, "children_repointed", r->children_repointed);
		json_u64(&j, "files_removed", r->files_removed);
		json_arr_begin(&j, "kept");
		for (const char *k = r->kept; *k;) {
			size_t n = strcspn(k, "\n");
			char one[sizeof(r->kept)];
			snprintf(one, sizeof(one), "%.*s", (int)n, k);
			json_str(&j, NULL, one);
			k += n + (k[n] != 0);
		}
		json_arr_end(&j);
		json_dbl(&j, "seconds", r->seconds);
		json_dbl(&j, "bytes_per_second", rate);
		json_obj_end(&j);
		json_end(&j);
		return;
	}
	char a[32], b[32], c[32], d[32], e[32];
	if (r->dry_run) {
		printf("dry run: %s of data and %s of zeros would go into %s (it grows by %s; %s free)\n",
		       cli_human(r->plan.copy_bytes, a, sizeof(a)), cli_human(r->plan.zero_bytes, b, sizeof(b)),
		       convert ? o->out : r->dest, cli_human(r->plan.dest_growth_bytes, c, sizeof(c)),
		       cli_human(r->free_bytes, d, sizeof(d)));
		printf("nothing was written\n");
		return;
	}
	printf("%s %s%s into %s in %.1f s\n", convert ? "converted" : "merged",
	       convert ? "" : "", o->top, convert ? o->out : r->dest, r->seconds);
	printf("  copied %s, cloned %s, zeroed %s (%s moved), %s/s\n",
	       cli_human(r->copied, a, sizeof(a)), cli_human(r->cloned, b, sizeof(b)),
	       cli_human(r->zeroed, c, sizeof(c)), cli_human(moved, d, sizeof(d)),
	       cli_human((uint64_t)rate, e, sizeof(e)));
	if (written && !convert)
		printf("  level by level would have written %s (%.1fx what this merge wrote)\n",
		       cli_human(r->plan.naive_copy_bytes, a, sizeof(a)),
		       (double)r->plan.naive_copy_bytes / (double)written);
	if (r->children_repointed)
		printf("  %u child%s re-pointed at %s\n", r->children_repointed,
		       r->children_repointed == 1 ? "" : "ren", r->dest);
	if (r->files_removed)
		printf("  %u merged file%s removed\n", r->files_removed, r->files_removed == 1 ? "" : "s");
	if (r->resumed)
		printf("  (continued an interrupted run)\n");
}

static int status(const char *dest, bool json)
{
	struct vxm_merge_state st;
	struct vxm_err err = { 0 };
	int ret = vxm_merge_status(dest, &st, &err);
	if (ret)
		return cli_fail(&err, ret);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "destination", dest);
		json_bool(&j, "in_progress", st.in_progress);
		json_str(&j, "journal", st.in_progress ? st.journal : NULL);
		json_str(&j, "phase", st.in_progress ? st.phase : NULL);
		json_str(&j, "op", st.in_progress ? (st.convert ? "convert" : "merge") : NULL);
		json_str(&j, "top", st.in_progress ? st.top : NULL);
		json_u64(&j, "durable_bytes", st.cursor);
		json_obj_end(&j);
		json_end(&j);
	} else if (st.in_progress) {
		char h[32];
		printf("%s: an interrupted %s of %s, phase %s, %s durable; run the same command again to finish it (journal %s)\n",
		       dest, st.convert ? "convert" : "merge", st.top, st.phase,
		       cli_human(st.cursor, h, sizeof(h)), st.journal);
	} else {
		printf("%s: no merge in progress\n", dest);
	}
	return 0;
}

void help_merge(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge merge TOP [--into ANCESTOR] [--rebase CHILD]... [--search-dir DIR]...\n"
		"                       [--keep-merged] [--force] [--dry-run] [--progress auto|bar|json|none]\n"
		"                       [--json] [--seed N] [--queue-depth N] [--chunk-size S]\n"
		"                       [--io auto|uring|psync] [--no-clone]\n"
		"       vhdxmerge merge --status DEST [--json]\n"
		"\n"
		"Merges TOP and every layer between it and ANCESTOR (default: the base) into\n"
		"ANCESTOR, in place, in one pass: each sector is written once, with the newest\n"
		"layer's value. Before the first write it validates every file, locks them\n"
		"(exit 7 if another process holds one), refuses if another checkpoint of ANCESTOR\n"
		"or of a merged layer would be invalidated (exit 4, naming them; --force merges\n"
		"anyway), and checks the space against the plan (exit 5 with the numbers).\n"
		"Children of TOP (next to it, in --search-dir, or given with --rebase) are re-pointed\n"
		"at ANCESTOR. The merged files and their .mrt/.rct are removed at the end unless\n"
		"--keep-merged. A crash, kill or Ctrl-C (exit 8) is safe at any instant: run the\n"
		"same command again and it continues where it stopped, ending byte-identical to an\n"
		"uninterrupted run. --status DEST says whether a merge into DEST is unfinished.\n"
		"\n"
		"  --progress MODE  auto (a bar on a terminal), bar, json (one object per line on\n"
		"                   stdout), none\n"
		"  --json           the final summary as JSON\n"
		"  --dry-run        preflight only; nothing is written\n"
		"  --seed N         GUID seed (recorded in the journal; for reproducible runs)\n"
		"  --queue-depth N  data requests in flight (default 16)\n"
		"  --chunk-size S   bytes per data request (default 4M; a multiple of 4K, at most 64M)\n"
		"  --io BACKEND     uring, psync (a pool of pread/pwrite threads), or auto (uring\n"
		"                   where the kernel allows it); data moves with O_DIRECT where the\n"
		"                   filesystem takes it\n"
		"  --no-clone       copy data even where the filesystem could reflink it\n");
}

void help_convert(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge convert TOP OUT [--fixed] [--block-size B] [--format vhdx|raw]\n"
		"                         [--search-dir DIR]... [--progress MODE] [--json] [--dry-run]\n"
		"                         [--queue-depth N] [--chunk-size S] [--io BACKEND] [--no-clone]\n"
		"\n"
		"Writes what the chain ending in TOP shows into a new standalone file OUT; the\n"
		"chain is not touched. OUT appears only when complete (written as\n"
		"OUT.vxmerge-partial, flushed, renamed, directory flushed). An interrupted convert\n"
		"continues when run again. OUT must not exist.\n"
		"\n"
		"  --fixed          a fully allocated VHDX\n"
		"  --block-size B   block size of the new VHDX (default: TOP's)\n"
		"  --format raw     a sparse raw image instead of VHDX\n"
		"  --queue-depth N, --chunk-size S, --io BACKEND, --no-clone: as for merge\n");
}

static int run(int argc, char **argv, bool convert)
{
	static const struct option opts[] = {
		{ "into", required_argument, NULL, 'i' },
		{ "rebase", required_argument, NULL, 'r' },
		{ "search-dir", required_argument, NULL, 's' },
		{ "keep-merged", no_argument, NULL, 'k' },
		{ "force", no_argument, NULL, 'f' },
		{ "dry-run", no_argument, NULL, 'n' },
		{ "progress", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ "seed", required_argument, NULL, 'S' },
		{ "queue-depth", required_argument, NULL, 'q' },
		{ "chunk-size", required_argument, NULL, 'c' },
		{ "io", required_argument, NULL, 'I' },
		{ "no-clone", no_argument, NULL, 'C' },
		{ "status", required_argument, NULL, 'T' },
		{ "fixed", no_argument, NULL, 'F' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "format", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *cmd = convert ? "convert" : "merge";
	struct vxm_merge_opts o = { 0 };
	const char **rebase = NULL, **dirs = NULL;
	const char *mode = "auto", *status_of = NULL;
	bool json = false;
	uint64_t v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'i': o.into = optarg; break;
		case 'r':
			rebase = realloc(rebase, (o.nrebase + 1) * sizeof(*rebase));
			rebase[o.nrebase++] = optarg;
			break;
		case 's':
			dirs = realloc(dirs, (o.nsearch + 1) * sizeof(*dirs));
			dirs[o.nsearch++] = optarg;
			break;
		case 'k': o.keep_merged = true; break;
		case 'f': o.force = true; break;
		case 'n': o.dry_run = true; break;
		case 'p': mode = optarg; break;
		case 'j': json = true; break;
		case 'S': o.seed = strtoull(optarg, NULL, 0); break;
		case 'q':
			if (cli_parse_size(optarg, &v) || v < 1 || v > 4096)
				return cli_usage(cmd, "bad --queue-depth '%s' (1 to 4096)", optarg);
			o.queue_depth = (unsigned)v;
			break;
		case 'c':
			if (cli_parse_size(optarg, &v) || !v || v % 4096 || v > 64 * VXM_MiB)
				return cli_usage(cmd, "bad --chunk-size '%s' (a multiple of 4K, at most 64M)",
						 optarg);
			o.chunk_size = (uint32_t)v;
			break;
		case 'I': o.backend = optarg; break;
		case 'C': o.no_clone = true; break;
		case 'T': status_of = optarg; break;
		case 'F': o.out_fixed = true; break;
		case 'b':
			if (cli_parse_size(optarg, &v) || v > UINT32_MAX)
				return cli_usage(cmd, "bad --block-size '%s'", optarg);
			o.out_block_size = (uint32_t)v;
			break;
		case 'o':
			if (!strcmp(optarg, "raw"))
				o.out_format = VXM_OUT_RAW;
			else if (strcmp(optarg, "vhdx"))
				return cli_usage(cmd, "--format is vhdx or raw");
			break;
		case 'h':
			(convert ? help_convert : help_merge)(stdout);
			return 0;
		default:
			return cli_usage(cmd, "unknown option");
		}
	}
	if (status_of && !convert)
		return status(status_of, json);
	if (convert ? optind != argc - 2 : optind != argc - 1)
		return cli_usage(cmd, convert ? "expects TOP and OUT" : "expects exactly one TOP file");
	o.top = argv[optind];
	if (convert)
		o.out = argv[optind + 1];
	o.rebase = rebase;
	o.search_dirs = dirs;

	struct ui u = { 0 };
	if (cli_progress_init(&u.p, mode, cmd, 0) < 0)
		return cli_usage(cmd, "--progress is auto, bar, json or none");
	o.progress = ui_progress;
	o.progress_ctx = &u;
	o.log = ui_log;
	o.log_ctx = &u;
	o.stop = &stop_flag;
	install_signals();

	struct vxm_merge_result r;
	struct vxm_err err = { 0 };
	int ret = vxm_merge_run(&o, &r, &err);
	cli_progress_finish(&u.p, ret == 0);
	free(rebase);
	free(dirs);
	if (ret == -EINTR) {
		fprintf(stderr, "%s: interrupted; progress is recorded: run the same command again to continue\n",
			cli_prog);
		return VXM_EXIT_INTERRUPTED;
	}
	if (ret == -EEXIST) {
		cli_fail(&err, ret);
		return convert ? VXM_EXIT_USAGE : VXM_EXIT_CHAIN;
	}
	if (ret)
		return cli_fail(&err, ret);
	summary(&o, &r, json, convert);
	return 0;
}

int cmd_merge(int argc, char **argv)
{
	return run(argc, argv, false);
}

int cmd_convert(int argc, char **argv)
{
	return run(argc, argv, true);
}
