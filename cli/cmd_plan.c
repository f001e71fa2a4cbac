/* cli/cmd_plan.c: `vhdxmerge plan TOP [--into ANCESTOR | --new-file OUT] [--json]`:
 * the merge's dry run.  Opens everything read-only and writes nothing. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void help_plan(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge plan TOP [--into ANCESTOR | --new-file OUT [--block-size B] [--fixed]]\n"
		"                      [--json] [--extents] [--search-dir DIR]...\n"
		"\n"
		"Dry run of a merge: reads the BATs and sector bitmaps of the chain ending in TOP\n"
		"and says, sector by sector (newest layer wins), what merging TOP and every layer\n"
		"above ANCESTOR into ANCESTOR (default: the base) would write, how much the\n"
		"destination grows, whether that fits in the free space, and what merging one\n"
		"level at a time would have written instead. Nothing is written.\n"
		"\n"
		"  --into ANCESTOR   destination: a file of the chain (default the base)\n"
		"  --new-file OUT    plan a standalone copy (as `convert`) instead\n"
		"  --block-size B    block size of the new file (default: TOP's)\n"
		"  --fixed           the new file is fully allocated\n"
		"  --extents         also list every extent (destination offset, length, source)\n"
		"  --json            copy_bytes, zero_bytes, extents, dest_new_blocks,\n"
		"                    dest_growth_bytes, naive_copy_bytes, free_bytes, fits, ...\n"
		"\n"
		"Exit status: 0 the plan fits; 5 it does not fit in the free space; 4 chain error.\n");
}

struct list_ctx {
	struct json *j;
	struct vxm_chain *c;
};

static int list_extent(void *vctx, const struct vxm_extent *e)
{
	struct list_ctx *x = vctx;
	if (x->j) {
		json_obj_begin(x->j, NULL);
		json_u64(x->j, "offset", e->voff);
		json_u64(x->j, "length", e->len);
		if (e->kind == VXM_EXT_ZERO) {
			json_str(x->j, "source", "zero");
		} else {
			json_str(x->j, "source", vxm_image_path(vxm_chain_image(x->c, (unsigned)e->layer)));
			json_u64(x->j, "source_offset", e->src_off);
		}
		json_obj_end(x->j);
	} else if (e->kind == VXM_EXT_ZERO) {
		printf("  %#14" PRIx64 " +%-12" PRIu64 " zeros\n", e->voff, e->len);
	} else {
		printf("  %#14" PRIx64 " +%-12" PRIu64 " layer %d @ %#" PRIx64 "\n", e->voff, e->len,
		       e->layer, e->src_off);
	}
	return 0;
}

int cmd_plan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "into", required_argument, NULL, 'i' },
		{ "new-file", required_argument, NULL, 'n' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "fixed", no_argument, NULL, 'f' },
		{ "extents", no_argument, NULL, 'e' },
		{ "search-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vxm_chain_opts co = { 0 };
	struct vxm_plan_opts po = { .dest = 0, .top = -1 };
	const char *into = NULL, *newfile = NULL;
	bool json = false, extents = false;
	uint64_t bs = 0;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "ji:n:b:fes:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'i': into = optarg; break;
		case 'n': newfile = optarg; break;
		case 'b':
			if (cli_parse_size(optarg, &bs) || bs > UINT32_MAX)
				return cli_usage("plan", "bad --block-size '%s'", optarg);
			break;
		case 'f': po.new_fixed = true; break;
		case 'e': extents = true; break;
		case 's': cli_add_search_dir(&co, optarg); break;
		case 'h': help_plan(stdout); return 0;
		default: return cli_usage("plan", "unknown option");
		}
	}
	if (optind != argc - 1)
		return cli_usage("plan", "expects exactly one TOP file");
	if (into && newfile)
		return cli_usage("plan", "--into and --new-file exclude each other");
	struct vxm_chain *ch;
	ret = cli_open_chain("plan", argv[optind], &co, &ch);
	free((void *)co.search_dirs);
	if (ret)
		return ret;
	unsigned n = vxm_chain_depth(ch);
	const char *dest_path;
	if (newfile) {
		po.dest = VXM_PLAN_NEW_FILE;
		po.new_block_size = (uint32_t)bs;
		dest_path = newfile;
	} else {
		if (into) {
			int idx = vxm_chain_index_of(ch, into);
			if (idx < 0) {
				fprintf(stderr, "%s plan: %s is not a layer of the chain of %s\n", cli_prog,
					into, argv[optind]);
				vxm_chain_close(ch);
				return VXM_EXIT_CHAIN;
			}
			po.dest = idx;
		}
		if (po.dest >= (int)n - 1) {
			fprintf(stderr, "%s plan: nothing to merge: %s is the top of its chain\n",
				cli_prog, into ? into : argv[optind]);
			vxm_chain_close(ch);
			return VXM_EXIT_USAGE;
		}
		dest_path = vxm_image_path(vxm_chain_image(ch, (unsigned)po.dest));
	}

	struct vxm_err err = { 0 };
	struct vxm_plan_stats st;
	struct json j;
	struct list_ctx lc = { .j = NULL, .c = ch };
	if (json) {
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		if (extents) {
			lc.j = &j;
			json_arr_begin(&j, "extent_list");
		}
	} else if (extents) {
		printf("extents (destination offset, length, source):\n");
	}
	ret = vxm_plan_preflight(ch, po.dest, &err);
	if (!ret)
		ret = vxm_plan(ch, &po, extents ? list_extent : NULL, &lc, &st, &err);
	if (ret) {
		if (json && extents)
			json_arr_end(&j);
		vxm_chain_close(ch);
		return cli_fail(&err, ret);
	}
	uint64_t free_bytes = 0;
	ret = vxm_space_free(dest_path, &free_bytes, &err);
	if (ret) {
		vxm_chain_close(ch);
		return cli_fail(&err, ret);
	}
	bool fits = free_bytes >= st.dest_growth_bytes;
	unsigned merged = po.dest == VXM_PLAN_NEW_FILE ? n : n - 1 - (unsigned)po.dest;

	if (json) {
		if (extents)
			json_arr_end(&j);
		json_str(&j, "top", argv[optind]);
		json_str(&j, "destination", dest_path);
		json_bool(&j, "new_file", po.dest == VXM_PLAN_NEW_FILE);
		json_u64(&j, "layers_merged", merged);
		json_u64(&j, "virtual_size", st.dest_virtual_size);
		json_u64(&j, "copy_bytes", st.copy_bytes);
		json_u64(&j, "zero_bytes", st.zero_bytes);
		json_u64(&j, "extents", st.extents);
		json_u64(&j, "dest_new_blocks", st.dest_new_blocks);
		json_u64(&j, "dest_zero_blocks", st.dest_zero_blocks);
		json_u64(&j, "dest_new_bitmaps", st.dest_new_bitmaps);
		json_u64(&j, "dest_growth_bytes", st.dest_growth_bytes);
		json_u64(&j, "naive_copy_bytes", st.naive_copy_bytes);
		json_dbl(&j, "naive_ratio", st.copy_bytes + st.zero_bytes
						    ? (double)st.naive_copy_bytes / (double)(st.copy_bytes + st.zero_bytes)
						    : 0.0);
		json_u64(&j, "free_bytes", free_bytes);
		json_bool(&j, "fits", fits);
		json_arr_begin(&j, "copy_bytes_by_layer");
		for (unsigned i = 0; i < n; i++) {
			json_obj_begin(&j, NULL);
			json_str(&j, "path", vxm_image_path(vxm_chain_image(ch, i)));
			json_u64(&j, "copy_bytes", st.layer_copy_bytes[i]);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
		json_end(&j);
	} else {
		char a[32], b[32], c2[32], d[32], e[32];
		printf("plan: %s %u layer%s of %s into %s\n",
		       po.dest == VXM_PLAN_NEW_FILE ? "copy" : "merge", merged, merged == 1 ? "" : "s",
		       argv[optind], dest_path);
		printf("  data to copy        %s (%" PRIu64 " bytes) in %" PRIu64 " extents\n",
		       cli_human(st.copy_bytes, a, sizeof(a)), st.copy_bytes, st.extents);
		printf("  zeros to write      %s\n", cli_human(st.zero_bytes, b, sizeof(b)));
		printf("  destination grows   %s (%" PRIu64 " new blocks, %" PRIu64 " new bitmaps, %" PRIu64 " blocks become ZERO)\n",
		       cli_human(st.dest_growth_bytes, c2, sizeof(c2)), st.dest_new_blocks,
		       st.dest_new_bitmaps, st.dest_zero_blocks);
		printf("  free space          %s: %s\n", cli_human(free_bytes, d, sizeof(d)),
		       fits ? "fits" : "DOES NOT FIT");
		printf("  level by level      %s would be written merging one level at a time",
		       cli_human(st.naive_copy_bytes, e, sizeof(e)));
		if (st.copy_bytes + st.zero_bytes)
			printf(" (%.1fx)", (double)st.naive_copy_bytes / (double)(st.copy_bytes + st.zero_bytes));
		printf("\n");
		for (unsigned i = 0; i < n; i++)
			if (st.layer_copy_bytes[i])
				printf("  from layer %-3u      %s  %s\n", i,
				       cli_human(st.layer_copy_bytes[i], a, sizeof(a)),
				       vxm_image_path(vxm_chain_image(ch, i)));
	}
	vxm_chain_close(ch);
	return fits ? VXM_EXIT_OK : VXM_EXIT_NOSPACE;
}
