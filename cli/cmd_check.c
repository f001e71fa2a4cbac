/* cli/cmd_check.c: `vhdxmerge check FILE [--repair] [--json]`.
 *
 * Exit 0: clean.  Exit 1: problems found (a file that does not even open
 * counts as one problem, named with its offset).  Other codes: the check
 * could not run (missing file: I/O error), or --repair met a log it must
 * not replay (3 corrupt: a target outside the file's extent, a growth its
 * structures do not justify...).  Only --repair writes, and only to replay
 * a dirty log, after validating all of it.
 */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void help_check(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge check FILE [--repair] [--json]\n"
		"\n"
		"Checks every structural rule of a VHDX/AVHDX file: header and region table\n"
		"checksums, alignment, regions and BAT entries inside the file and not\n"
		"overlapping, sector bitmaps present for partial blocks, reserved bits and\n"
		"states, sizes in range, and the log.  Nothing is written, except with --repair.\n"
		"\n"
		"  --repair  replay a dirty log in place (the only change check ever makes)\n"
		"  --json    {\"path\", \"clean\", \"problems\", \"findings\": [{severity, offset, message}]}\n"
		"\n"
		"Exit status: 0 clean, 1 problems found, other codes as for every command\n"
		"(--repair on a log that cannot be replayed safely: 3, nothing written).\n");
}

static void report(const char *path, bool json, int problems, const struct vxm_finding *f,
		   unsigned nf, const struct vxm_err *open_err, bool repaired)
{
	char buf[1400];

	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "path", path);
		json_bool(&j, "clean", problems == 0);
		json_u64(&j, "problems", (uint64_t)problems);
		json_bool(&j, "repaired", repaired);
		json_arr_begin(&j, "findings");
		if (open_err) {
			json_obj_begin(&j, NULL);
			json_str(&j, "severity", "problem");
			if (open_err->off != VXM_OFF_NONE)
				json_u64(&j, "offset", open_err->off);
			else
				json_null(&j, "offset");
			json_str(&j, "message", open_err->msg[0] ? open_err->msg
								 : vxm_strerror(open_err->code));
			json_obj_end(&j);
		}
		for (unsigned i = 0; i < nf; i++) {
			json_obj_begin(&j, NULL);
			json_str(&j, "severity", f[i].severity ? "problem" : "note");
			if (f[i].off != VXM_OFF_NONE)
				json_u64(&j, "offset", f[i].off);
			else
				json_null(&j, "offset");
			json_str(&j, "message", f[i].msg);
			json_obj_end(&j);
		}
		json_arr_end(&j);
		json_obj_end(&j);
		json_end(&j);
		return;
	}
	if (open_err)
		printf("%s\n", vxm_err_format(open_err, buf, sizeof(buf)));
	for (unsigned i = 0; i < nf; i++) {
		if (f[i].off != VXM_OFF_NONE)
			printf("%s: %s: %s (at offset 0x%" PRIx64 ")\n", path,
			       f[i].severity ? "problem" : "note", f[i].msg, f[i].off);
		else
			printf("%s: %s: %s\n", path, f[i].severity ? "problem" : "note", f[i].msg);
	}
	if (repaired)
		printf("%s: log replayed in place; the file is clean now\n", path);
	if (problems)
		printf("%s: %d problem%s found\n", path, problems, problems == 1 ? "" : "s");
	else
		printf("%s: clean\n", path);
}

int cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "repair", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false, repair = false, repaired = false;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jrh", opts, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'r')
			repair = true;
		else if (c == 'h') {
			help_check(stdout);
			return 0;
		} else
			return cli_usage("check", "unknown option");
	}
	if (optind != argc - 1)
		return cli_usage("check", "expects exactly one FILE");
	const char *path = argv[optind];

	struct vxm_err err = { 0 };
	struct vxm_image *img;
	int ret;

	if (repair) {
		/* A log that must be replayed and cannot be is no finding of
		 * the check: the repair asked for failed, for the file's sake
		 * (exit 3 corrupt, 9 unsupported), and nothing was written. */
		ret = vxm_image_repair(path, &repaired, &err);
		if (ret && json) {
			report(path, json, 1, NULL, 0, &err, false);
			return vxm_exit_code(ret);
		}
		if (ret) {
			int code = cli_fail(&err, ret);
			fprintf(stderr, "%s: %s: --repair refused; nothing was written\n", cli_prog,
				path);
			return code;
		}
	}
	ret = vxm_image_open(&img, NULL, path, 0, &err);
	if (ret) {
		if (ret == -VXM_ECORRUPT || ret == -VXM_EUNSUPPORTED || ret == -VXM_ENOTVHDX) {
			report(path, json, 1, NULL, 0, &err, false);
			return VXM_EXIT_PROBLEMS;
		}
		return cli_fail(&err, ret);
	}
	int problems = vxm_image_check(img, &err);
	if (problems < 0) {
		vxm_err_path(&err, path);
		vxm_image_close(img);
		return cli_fail(&err, problems);
	}
	unsigned nf = vxm_image_findings(img, NULL, 0);
	struct vxm_finding *f = calloc(nf ? nf : 1, sizeof(*f));
	if (!f) {
		vxm_image_close(img);
		return VXM_EXIT_INTERNAL;
	}
	vxm_image_findings(img, f, nf);
	report(path, json, problems, f, nf, NULL, repaired);
	free(f);
	vxm_image_close(img);
	return problems ? VXM_EXIT_PROBLEMS : VXM_EXIT_OK;
}
