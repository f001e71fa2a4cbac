/* cli/main.c: the vhdxmerge program: a table of subcommands. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

#ifndef VXM_VERSION
#define VXM_VERSION "dev"
#endif

static const struct cli_cmd cmds[] = {
	{ "info", "FILE [--json]", "show what a VHDX/AVHDX file is", cmd_info, help_info },
	{ "check", "FILE [--repair] [--json]", "check every structural rule; replay a dirty log",
	  cmd_check, help_check },
	{ "chain", "TOP [--json] [--search-dir DIR]", "list and verify the chain that ends in TOP",
	  cmd_chain, help_chain },
	{ "plan", "TOP [--into ANCESTOR] [--json]", "dry run: what a merge would write, and if it fits",
	  cmd_plan, help_plan },
	{ "merge", "TOP [--into ANCESTOR] [--progress MODE] ...", "merge the chain into an ancestor, in place, resumable",
	  cmd_merge, help_merge },
	{ "convert", "TOP OUT [--fixed] [--format vhdx|raw]", "write the chain's view to a new standalone file",
	  cmd_convert, help_convert },
	{ "scan", "DIR [--json] [--older-than DAYS]", "find every chain; flag leftovers and broken links",
	  cmd_scan, help_scan },
	{ "create", "FILE --size SIZE [--fixed] [--parent P] ...", "create an empty fixed, dynamic or differencing VHDX", cmd_create, help_create },
	{ "synth", "DIR --seed S [--layers N] [--json] ...", "write a deterministic test chain and its expected SHA-256", cmd_synth, help_synth },
	{ "compare", "A B [--json] [--progress MODE]", "do two disks (VHDX chains or raw images) read the same?", cmd_compare, help_compare },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *out)
{
	fprintf(out, "Usage: vhdxmerge COMMAND [ARGS]\n\n"
		     "Merge Hyper-V differencing-disk chains (.avhdx on .vhdx) fast and crash-safely.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(out, "  %-8s %-36s %s\n", cmds[i].name, cmds[i].args, cmds[i].summary);
	fprintf(out,
		"\n'vhdxmerge COMMAND --help' describes one command.\n\n"
		"Sizes accept bytes or binary suffixes: K/KiB, M/MiB, G/GiB, T/TiB.\n\n"
		"Exit status:\n"
		"  0  success\n"
		"  1  problems found (check), a difference (compare), attention needed (scan)\n"
		"  2  usage error\n"
		"  3  corrupt input: a file breaks the VHDX format (the message names the\n"
		"     file, the structure and the offset); nothing was written\n"
		"  4  chain error: missing parent, linkage mismatch, cycle, sector size mismatch\n"
		"  5  not enough space\n"
		"  6  I/O error\n"
		"  7  a file is locked / in use by another process\n"
		"  8  interrupted; run the same command again to resume\n"
		"  9  unsupported: valid VHDX using a feature this program does not handle\n"
		"  10 internal error\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return VXM_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2)
			for (size_t i = 0; i < NCMDS; i++)
				if (!strcmp(argv[2], cmds[i].name)) {
					cmds[i].help(stdout);
					return 0;
				}
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("vhdxmerge %s\n", VXM_VERSION);
		return 0;
	}
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].run(argc - 1, argv + 1);
	fprintf(stderr, "vhdxmerge: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return VXM_EXIT_USAGE;
}
