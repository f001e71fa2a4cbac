/* cli/cmd_chain.c: `vhdxmerge chain TOP [--json] [--search-dir DIR]...`. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void help_chain(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge chain TOP [--json] [--search-dir DIR]...\n"
		"\n"
		"Finds the chain that ends in TOP (the newest .avhdx) by its parent locators and\n"
		"checks every link by GUID: a parent is accepted only when its DataWriteGuid is\n"
		"the child's parent_linkage (or parent_linkage2). Parents are looked for by\n"
		"relative_path, then by the file names of volume_path and absolute_win32_path\n"
		"next to the child (case-insensitive, as copied from Windows), then in each\n"
		"--search-dir. Lists the layers base first.\n"
		"\n"
		"  --json            {\"virtual_size\", \"depth\", \"layers\": [{path, type, ...}, ...]}\n"
		"  --search-dir DIR  also look for parents in DIR (repeatable)\n"
		"\n"
		"Exit status: 0 the chain is whole; 4 a link is missing, mismatched or cyclic,\n"
		"or the sector sizes differ (the message names the file and what it wants).\n");
}

/* Shared by chain, plan and merge: parses --search-dir into opts. */
int cli_add_search_dir(struct vxm_chain_opts *o, const char *dir)
{
	const char **d = realloc((void *)o->search_dirs, (o->nsearch + 1) * sizeof(*d));
	if (!d)
		return -1;
	d[o->nsearch++] = dir;
	o->search_dirs = d;
	return 0;
}

int cli_open_chain(const char *cmd, const char *top, struct vxm_chain_opts *o,
		   struct vxm_chain **c)
{
	struct vxm_err err = { 0 };
	int ret = vxm_chain_open(c, top, o, &err);
	(void)cmd;
	if (ret)
		return cli_fail(&err, ret);
	return 0;
}

static void layer_json(struct json *j, struct vxm_chain *c, unsigned i)
{
	struct vxm_image *img = vxm_chain_image(c, i);
	struct vxm_info in;
	struct vxm_err err = { 0 };
	char g[VXM_GUID_STRLEN + 1];

	json_obj_begin(j, NULL);
	json_str(j, "path", vxm_image_path(img));
	if (vxm_image_info(img, &in, &err)) {
		json_str(j, "error", err.msg);
		json_obj_end(j);
		return;
	}
	json_str(j, "type", in.type);
	json_u64(j, "virtual_size", in.virtual_size);
	json_u64(j, "block_size", in.block_size);
	json_u64(j, "logical_sector_size", in.logical_sector_size);
	json_u64(j, "file_size", in.file_size);
	json_u64(j, "allocated_bytes", in.allocated_bytes);
	json_guid(j, "data_write_guid", &in.data_write_guid);
	json_guid(j, "file_write_guid", &in.file_write_guid);
	json_guid(j, "virtual_disk_id", &in.virtual_disk_id);
	if (in.has_parent) {
		json_str(j, "parent_linkage", vxm_guid_fmt(&in.parent.parent_linkage, g));
		if (in.parent.has_linkage2)
			json_str(j, "parent_linkage2", vxm_guid_fmt(&in.parent.parent_linkage2, g));
		else
			json_null(j, "parent_linkage2");
	}
	/* How this layer's child reached it. */
	int lb = vxm_chain_linked_by(c, i);
	json_str(j, "child_linkage", lb == 1 ? "parent_linkage" : lb == 2 ? "parent_linkage2" : NULL);
	json_str(j, "found_via", vxm_chain_via(c, i));
	json_bool(j, "log_dirty", in.log.dirty);
	json_obj_end(j);
}

int cmd_chain(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "search-dir", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vxm_chain_opts co = { 0 };
	bool json = false;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "js:h", opts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 's')
			cli_add_search_dir(&co, optarg);
		else if (c == 'h') {
			help_chain(stdout);
			return 0;
		} else
			return cli_usage("chain", "unknown option");
	}
	if (optind != argc - 1)
		return cli_usage("chain", "expects exactly one TOP file");
	struct vxm_chain *ch;
	ret = cli_open_chain("chain", argv[optind], &co, &ch);
	free((void *)co.search_dirs);
	if (ret)
		return ret;
	unsigned n = vxm_chain_depth(ch);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_u64(&j, "virtual_size", vxm_chain_virtual_size(ch));
		json_u64(&j, "logical_sector_size", vxm_chain_sector_size(ch));
		json_u64(&j, "depth", n);
		json_arr_begin(&j, "layers");
		for (unsigned i = 0; i < n; i++)
			layer_json(&j, ch, i);
		json_arr_end(&j);
		json_obj_end(&j);
		json_end(&j);
	} else {
		char h1[32], h2[32], g[VXM_GUID_STRLEN + 1];
		printf("%-3s %-12s %-9s %-10s %-36s %-15s %s\n", "#", "type", "block", "allocated",
		       "data write guid", "linked by", "path");
		for (unsigned i = 0; i < n; i++) {
			struct vxm_image *img = vxm_chain_image(ch, i);
			struct vxm_info in;
			struct vxm_err err = { 0 };
			if (vxm_image_info(img, &in, &err)) {
				vxm_chain_close(ch);
				return cli_fail(&err, err.code);
			}
			int lb = vxm_chain_linked_by(ch, i);
			printf("%-3u %-12s %-9s %-10s %-36s %-15s %s%s\n", i, in.type,
			       cli_human(in.block_size, h1, sizeof(h1)),
			       cli_human(in.allocated_bytes, h2, sizeof(h2)),
			       vxm_guid_fmt(&in.data_write_guid, g),
			       lb == 1 ? "parent_linkage" : lb == 2 ? "parent_linkage2" : "-",
			       vxm_image_path(img), in.log.dirty ? "  (dirty log, replayed in memory)" : "");
		}
		printf("%u layer%s, base first; virtual size %s; every link checked by GUID\n", n,
		       n == 1 ? "" : "s", cli_human(vxm_chain_virtual_size(ch), h1, sizeof(h1)));
	}
	vxm_chain_close(ch);
	return 0;
}
