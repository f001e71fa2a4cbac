/* cli/cmd_info.c: `vhdxmerge info FILE [--json]`. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <string.h>

void help_info(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge info FILE [--json]\n"
		"\n"
		"Shows what a VHDX or AVHDX file is: type, sizes, GUIDs, the parent locator of a\n"
		"differencing file, the log state and how many BAT entries are in each state.\n"
		"A dirty log is replayed in memory (the file is not written) and the replayed\n"
		"state is shown.\n"
		"\n"
		"  --json   one JSON object: path, type, virtual_size, block_size,\n"
		"           logical_sector_size, physical_sector_size, leave_blocks_allocated,\n"
		"           virtual_disk_id, data_write_guid, file_write_guid, log {dirty, entries},\n"
		"           parent {...} (differencing files), bat {per-state counts}\n");
}

static void print_json(const struct vxm_info *in)
{
	struct json j;

	json_init(&j, stdout);
	json_obj_begin(&j, NULL);
	json_str(&j, "path", in->path);
	json_str(&j, "type", in->type);
	json_str(&j, "creator", in->creator);
	json_u64(&j, "file_size", in->file_size);
	json_u64(&j, "virtual_size", in->virtual_size);
	json_u64(&j, "block_size", in->block_size);
	json_u64(&j, "logical_sector_size", in->logical_sector_size);
	json_u64(&j, "physical_sector_size", in->physical_sector_size);
	json_bool(&j, "leave_blocks_allocated", in->leave_blocks_allocated);
	json_bool(&j, "has_parent", in->has_parent);
	json_guid(&j, "virtual_disk_id", &in->virtual_disk_id);
	json_guid(&j, "data_write_guid", &in->data_write_guid);
	json_guid(&j, "file_write_guid", &in->file_write_guid);
	json_u64(&j, "header_sequence", in->header_seq);
	json_u64(&j, "current_header", (uint64_t)in->current_header);
	json_obj_begin(&j, "log");
	json_bool(&j, "dirty", in->log.dirty);
	json_u64(&j, "entries", in->log.entries);
	json_bool(&j, "replayed_in_memory", in->log.replayed);
	json_guid(&j, "log_guid", &in->log_guid);
	json_obj_end(&j);
	if (in->has_parent) {
		char a[VXM_GUID_STRLEN + 1];
		json_obj_begin(&j, "parent");
		json_str(&j, "parent_linkage", vxm_guid_fmt(&in->parent.parent_linkage, a));
		if (in->parent.has_linkage2)
			json_str(&j, "parent_linkage2", vxm_guid_fmt(&in->parent.parent_linkage2, a));
		else
			json_null(&j, "parent_linkage2");
		json_str(&j, "relative_path", in->parent.relative_path);
		json_str(&j, "volume_path", in->parent.volume_path);
		json_str(&j, "absolute_win32_path", in->parent.absolute_win32_path);
		json_obj_end(&j);
	}
	json_u64(&j, "chunk_ratio", in->chunk_ratio);
	json_u64(&j, "bat_entries", in->bat_entries);
	json_obj_begin(&j, "bat");
	json_u64(&j, "not_present", in->bat.not_present);
	json_u64(&j, "undefined", in->bat.undefined);
	json_u64(&j, "zero", in->bat.zero);
	json_u64(&j, "unmapped", in->bat.unmapped);
	json_u64(&j, "fully_present", in->bat.fully_present);
	json_u64(&j, "partially_present", in->bat.partially_present);
	json_u64(&j, "sector_bitmaps_present", in->bat.sector_bitmaps_present);
	json_obj_end(&j);
	json_obj_end(&j);
	json_end(&j);
}

static void print_human(const struct vxm_info *in)
{
	char a[VXM_GUID_STRLEN + 1], h[32];

	printf("%s\n", in->path);
	printf("  type                 %s%s\n", in->type,
	       in->leave_blocks_allocated ? " (LeaveBlocksAllocated)" : "");
	if (in->creator && in->creator[0])
		printf("  creator              %s\n", in->creator);
	printf("  virtual size         %s (%" PRIu64 " bytes)\n",
	       cli_human(in->virtual_size, h, sizeof(h)), in->virtual_size);
	printf("  file size            %s (%" PRIu64 " bytes)\n",
	       cli_human(in->file_size, h, sizeof(h)), in->file_size);
	printf("  block size           %s\n", cli_human(in->block_size, h, sizeof(h)));
	printf("  sector size          %u logical, %u physical\n", in->logical_sector_size,
	       in->physical_sector_size);
	printf("  virtual disk id      %s\n", vxm_guid_fmt(&in->virtual_disk_id, a));
	printf("  data write guid      %s\n", vxm_guid_fmt(&in->data_write_guid, a));
	printf("  file write guid      %s\n", vxm_guid_fmt(&in->file_write_guid, a));
	if (in->log.dirty)
		printf("  log                  DIRTY: %u entries to replay (shown replayed; "
		       "'vhdxmerge check --repair' applies them)\n", in->log.entries);
	else
		printf("  log                  clean\n");
	if (in->has_parent) {
		printf("  parent linkage       {%s}\n", vxm_guid_fmt(&in->parent.parent_linkage, a));
		if (in->parent.has_linkage2)
			printf("  parent linkage 2     {%s}\n",
			       vxm_guid_fmt(&in->parent.parent_linkage2, a));
		if (in->parent.relative_path)
			printf("  relative path        %s\n", in->parent.relative_path);
		if (in->parent.absolute_win32_path)
			printf("  absolute path        %s\n", in->parent.absolute_win32_path);
		if (in->parent.volume_path)
			printf("  volume path          %s\n", in->parent.volume_path);
	}
	printf("  BAT                  %" PRIu64 " entries, chunk ratio %u\n", in->bat_entries,
	       in->chunk_ratio);
	printf("    fully present      %" PRIu64 "\n", in->bat.fully_present);
	if (in->has_parent || in->bat.partially_present)
		printf("    partially present  %" PRIu64 "\n", in->bat.partially_present);
	printf("    zero               %" PRIu64 "\n", in->bat.zero);
	if (in->bat.unmapped)
		printf("    unmapped           %" PRIu64 "\n", in->bat.unmapped);
	if (in->bat.undefined)
		printf("    undefined          %" PRIu64 "\n", in->bat.undefined);
	printf("    not present        %" PRIu64 "\n", in->bat.not_present);
	if (in->has_parent)
		printf("    sector bitmaps     %" PRIu64 "\n", in->bat.sector_bitmaps_present);
}

int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'h') {
			help_info(stdout);
			return 0;
		} else
			return cli_usage("info", "unknown option");
	}
	if (optind != argc - 1)
		return cli_usage("info", "expects exactly one FILE");

	struct vxm_err err = { 0 };
	struct vxm_image *img;
	struct vxm_info in;
	int ret = vxm_image_open(&img, NULL, argv[optind], 0, &err);
	if (ret)
		return cli_fail(&err, ret);
	ret = vxm_image_info(img, &in, &err);
	if (ret) {
		vxm_err_path(&err, argv[optind]);
		vxm_image_close(img);
		return cli_fail(&err, ret);
	}
	if (json)
		print_json(&in);
	else
		print_human(&in);
	vxm_image_close(img);
	return 0;
}
