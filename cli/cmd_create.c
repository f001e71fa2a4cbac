/* cli/cmd_create.c: `vhdxmerge create FILE --size SIZE [...]`: a new empty
 * fixed, dynamic or differencing VHDX (engine/create.c). */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void help_create(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge create FILE --size SIZE [--fixed] [--block-size B]\n"
		"                        [--logical-sector 512|4096] [--physical-sector 512|4096]\n"
		"       vhdxmerge create FILE --parent P [--block-size B] [--physical-sector 512|4096]\n"
		"\n"
		"Creates a new VHDX laid out as Hyper-V does (log at 1 MiB, metadata at 2 MiB,\n"
		"BAT at 3 MiB, data after).  The headers are written last, so an interrupted\n"
		"create leaves a file no reader accepts; FILE must not exist.\n"
		"\n"
		"  --size SIZE            virtual size (a multiple of the logical sector);\n"
		"                         with --parent it may be given only as the parent's\n"
		"  --fixed                allocate every block (LeaveBlocksAllocated)\n"
		"  --block-size B         1 MiB to 256 MiB, a power of two (default 32 MiB\n"
		"                         dynamic, 2 MiB fixed and differencing)\n"
		"  --logical-sector N     512 (default) or 4096; a child takes its parent's\n"
		"  --physical-sector N    512 or 4096 (default 4096, or the parent's)\n"
		"  --parent P             a differencing child of P: parent_linkage is P's\n"
		"                         DataWriteGuid; relative_path is relative to FILE's\n"
		"                         directory, absolute_win32_path is P's absolute path\n"
		"                         with '\\' separators\n"
		"  --lazy-bitmaps         (differencing) sector bitmaps on demand as Hyper-V\n"
		"                         does, instead of one per chunk (libvhdi needs them)\n"
		"  --no-absolute-path     (differencing) write relative_path only\n"
		"  --json                 print {\"path\", \"type\", \"virtual_size\", \"block_size\"}\n"
		"\n"
		"GUIDs are random; VXM_GUID_SEED=N makes them reproducible.\n");
}

static int parse_sector(const char *s, uint32_t *out)
{
	if (!strcmp(s, "512"))
		*out = 512;
	else if (!strcmp(s, "4096") || !strcasecmp(s, "4K") || !strcasecmp(s, "4KiB"))
		*out = 4096;
	else
		return -1;
	return 0;
}

int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "size", required_argument, NULL, 's' },
		{ "fixed", no_argument, NULL, 'f' },
		{ "block-size", required_argument, NULL, 'b' },
		{ "logical-sector", required_argument, NULL, 'l' },
		{ "physical-sector", required_argument, NULL, 'p' },
		{ "parent", required_argument, NULL, 'P' },
		{ "lazy-bitmaps", no_argument, NULL, 'L' },
		{ "no-absolute-path", no_argument, NULL, 'A' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct vxm_create_params p = { 0 };
	bool json = false;
	uint64_t v;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "s:fb:l:p:P:LAjh", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (cli_parse_size(optarg, &p.virtual_size) || !p.virtual_size)
				return cli_usage("create", "bad --size '%s'", optarg);
			break;
		case 'f':
			p.fixed = true;
			break;
		case 'b':
			if (cli_parse_size(optarg, &v) || v > UINT32_MAX)
				return cli_usage("create", "bad --block-size '%s'", optarg);
			p.block_size = (uint32_t)v;
			break;
		case 'l':
			if (parse_sector(optarg, &p.logical_sector_size))
				return cli_usage("create", "--logical-sector must be 512 or 4096");
			break;
		case 'p':
			if (parse_sector(optarg, &p.physical_sector_size))
				return cli_usage("create", "--physical-sector must be 512 or 4096");
			break;
		case 'P':
			p.parent = optarg;
			break;
		case 'L':
			p.flags |= VXM_CREATE_LAZY_BITMAPS;
			break;
		case 'A':
			p.flags |= VXM_CREATE_NO_ABSOLUTE_PATH;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			help_create(stdout);
			return 0;
		default:
			return cli_usage("create", "unknown option");
		}
	}
	if (optind != argc - 1)
		return cli_usage("create", "expects exactly one FILE");
	if (!p.parent && !p.virtual_size)
		return cli_usage("create", "--size is required (or --parent)");
	if (p.parent && p.fixed)
		return cli_usage("create", "--fixed and --parent exclude each other");

	const char *path = argv[optind];
	struct vxm_err err = { 0 };
	int ret = vxm_image_create(path, &p, &err);
	if (ret)
		return cli_fail(&err, ret);

	/* Report what was written, read back through the reader. */
	struct vxm_image *img;
	struct vxm_info in;
	ret = vxm_image_open(&img, NULL, path, 0, &err);
	if (!ret) {
		ret = vxm_image_info(img, &in, &err);
		if (ret)
			vxm_image_close(img);
	}
	if (ret)
		return cli_fail(&err, ret);
	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "path", path);
		json_str(&j, "type", in.type);
		json_u64(&j, "virtual_size", in.virtual_size);
		json_u64(&j, "block_size", in.block_size);
		json_u64(&j, "logical_sector_size", in.logical_sector_size);
		json_u64(&j, "physical_sector_size", in.physical_sector_size);
		json_u64(&j, "file_size", in.file_size);
		json_guid(&j, "data_write_guid", &in.data_write_guid);
		json_obj_end(&j);
		json_end(&j);
	} else {
		char h1[32], h2[32];
		printf("created %s: %s, %s virtual, %s blocks, %u/%u-byte sectors%s%s\n", path,
		       in.type, cli_human(in.virtual_size, h1, sizeof(h1)),
		       cli_human(in.block_size, h2, sizeof(h2)), in.logical_sector_size,
		       in.physical_sector_size, p.parent ? ", parent " : "",
		       p.parent ? p.parent : "");
	}
	vxm_image_close(img);
	return 0;
}
