/* cli/cmd_scan.c: `vhdxmerge scan DIR [--json] [--older-than DAYS]`.
 *
 * Every .vhdx/.avhdx under DIR, grouped into trees by GUID linkage (a child
 * belongs under the file whose DataWriteGuid is its parent_linkage, never by
 * name or time), plus what needs attention: checkpoints older than the
 * threshold, broken links, ancestors with several children (merging one
 * branch invalidates the others), orphans (below a broken link), unreadable
 * files and .mrt/.rct sidecars whose disk is gone.  Exit 0 when nothing
 * needs attention, 1 otherwise: a monitoring system can run it daily.
 * Read-only throughout.
 */
#define _GNU_SOURCE
#include "cli.h"

#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

void help_scan(FILE *out)
{
	fprintf(out,
		"Usage: vhdxmerge scan DIR [--json] [--older-than DAYS]\n"
		"\n"
		"Finds every VHDX/AVHDX under DIR and groups them into chains and trees by their\n"
		"GUIDs, including chains Hyper-V no longer shows. Reports what needs attention:\n"
		"  leftover   differencing files not modified for DAYS days (default 7; 0: off)\n"
		"  broken     a child whose parent is missing or has another DataWriteGuid\n"
		"  branching  a file with more than one child: merging into it would\n"
		"             invalidate the other children\n"
		"  orphans    files below a broken link: their chain does not reach a base\n"
		"  unreadable files that fail to open (corrupt, unsupported)\n"
		"  sidecars   .mrt/.rct change-tracking files whose disk no longer exists\n"
		"Nothing is written.\n"
		"\n"
		"Exit status: 0 nothing needs attention, 1 something does, 2 usage, 6 I/O error.\n");
}

struct sfile {
	char *path;
	bool ok;
	char err[600];
	bool has_parent;
	struct vxm_guid dwg, pl, pl2;
	bool has_pl2;
	const char *type;
	uint64_t vsize, alloc;
	time_t mtime;
	int parent;          /* index, -1 none/unknown */
	char *external;      /* parent found outside DIR */
	bool broken;
	char why[700];
	unsigned children;
	bool orphan;
};

static struct sfile *files;
static size_t nfiles, capfiles;
static char **sidecars;
static size_t nside, capside;

static bool ends_with_ci(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcasecmp(s + a - b, suffix);
}

static int visit(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	if (ends_with_ci(path, ".vhdx") || ends_with_ci(path, ".avhdx")) {
		if (nfiles == capfiles) {
			capfiles = capfiles ? capfiles * 2 : 64;
			files = realloc(files, capfiles * sizeof(*files));
		}
		struct sfile *f = &files[nfiles++];
		memset(f, 0, sizeof(*f));
		f->path = strdup(path);
		f->mtime = st->st_mtime;
		f->parent = -1;
	} else if (ends_with_ci(path, ".mrt") || ends_with_ci(path, ".rct")) {
		if (nside == capside) {
			capside = capside ? capside * 2 : 16;
			sidecars = realloc(sidecars, capside * sizeof(*sidecars));
		}
		sidecars[nside++] = strdup(path);
	}
	return 0;
}

static int cmp_path(const void *a, const void *b)
{
	return strcmp(((const struct sfile *)a)->path, ((const struct sfile *)b)->path);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A sidecar "X.mrt" belongs to X itself or to X.vhdx / X.avhdx. */
static bool sidecar_owned(const char *sc)
{
	size_t n = strlen(sc) - 4;
	char base[PATH_MAX];
	if (n >= sizeof(base) - 8)
		return true;
	memcpy(base, sc, n);
	base[n] = 0;
	for (size_t i = 0; i < nfiles; i++) {
		const char *p = files[i].path;
		if (!strcasecmp(p, base))
			return true;
		size_t pl = strlen(p);
		if (pl > n && !strncasecmp(p, base, n) &&
		    (!strcasecmp(p + n, ".vhdx") || !strcasecmp(p + n, ".avhdx")))
			return true;
	}
	return false;
}

static void print_tree(size_t i, int depth)
{
	char h[32];
	printf("%*s%s%s  (%s, %s allocated)%s%s\n", depth * 2, "", depth ? "+- " : "",
	       files[i].path, files[i].type, cli_human(files[i].alloc, h, sizeof(h)),
	       files[i].children > 1 ? "  <- several children" : "",
	       files[i].broken ? "  <- BROKEN LINK" : "");
	for (size_t k = 0; k < nfiles; k++)
		if (files[k].parent == (int)i)
			print_tree(k, depth + 1);
}

static void tree_json(struct json *j, size_t i)
{
	char g[VXM_GUID_STRLEN + 1];
	json_obj_begin(j, NULL);
	json_str(j, "path", files[i].path);
	json_str(j, "type", files[i].type);
	json_u64(j, "virtual_size", files[i].vsize);
	json_u64(j, "allocated_bytes", files[i].alloc);
	json_str(j, "data_write_guid", vxm_guid_fmt(&files[i].dwg, g));
	json_i64(j, "mtime", (int64_t)files[i].mtime);
	if (files[i].external)
		json_str(j, "external_parent", files[i].external);
	json_arr_begin(j, "children");
	for (size_t k = 0; k < nfiles; k++)
		if (files[k].parent == (int)i)
			tree_json(j, k);
	json_arr_end(j);
	json_obj_end(j);
}

static void mark_orphans(size_t i)
{
	for (size_t k = 0; k < nfiles; k++)
		if (files[k].parent == (int)i) {
			files[k].orphan = true;
			mark_orphans(k);
		}
}

int cmd_scan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "older-than", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	double days = 7;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jo:h", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'o') {
			char *end;
			days = strtod(optarg, &end);
			if (*end || days < 0)
				return cli_usage("scan", "bad --older-than '%s' (days)", optarg);
		} else if (c == 'h') {
			help_scan(stdout);
			return 0;
		} else {
			return cli_usage("scan", "unknown option");
		}
	}
	if (optind != argc - 1)
		return cli_usage("scan", "expects exactly one DIR");
	const char *dir = argv[optind];
	struct stat dst;
	if (stat(dir, &dst) < 0 || !S_ISDIR(dst.st_mode)) {
		fprintf(stderr, "%s scan: %s: not a directory\n", cli_prog, dir);
		return VXM_EXIT_IO;
	}
	if (nftw(dir, visit, 32, FTW_PHYS) < 0) {
		fprintf(stderr, "%s scan: %s: cannot walk the directory\n", cli_prog, dir);
		return VXM_EXIT_IO;
	}
	qsort(files, nfiles, sizeof(*files), cmp_path);
	if (nside)
		qsort(sidecars, nside, sizeof(*sidecars), cmp_str);

	for (size_t i = 0; i < nfiles; i++) {
		struct sfile *f = &files[i];
		struct vxm_image *img;
		struct vxm_err err = { 0 };
		struct vxm_info in;
		if (vxm_image_open(&img, NULL, f->path, 0, &err) || vxm_image_info(img, &in, &err)) {
			vxm_err_format(&err, f->err, sizeof(f->err));
			if (!err.code)
				snprintf(f->err, sizeof(f->err), "%s: cannot read", f->path);
			f->type = "unreadable";
			continue;
		}
		f->ok = true;
		f->type = in.type;
		f->has_parent = in.has_parent;
		f->dwg = in.data_write_guid;
		f->pl = in.parent.parent_linkage;
		f->pl2 = in.parent.parent_linkage2;
		f->has_pl2 = in.parent.has_linkage2 && !vxm_guid_is_zero(&in.parent.parent_linkage2);
		f->vsize = in.virtual_size;
		f->alloc = in.allocated_bytes;
		vxm_image_close(img);
	}
	/* Link by GUID inside DIR; otherwise ask the chain resolver (the parent
	 * may live elsewhere, found through the locator). */
	for (size_t i = 0; i < nfiles; i++) {
		struct sfile *f = &files[i];
		if (!f->ok || !f->has_parent)
			continue;
		for (size_t k = 0; k < nfiles && f->parent < 0; k++)
			if (k != i && files[k].ok &&
			    (vxm_guid_eq(&files[k].dwg, &f->pl) ||
			     (f->has_pl2 && vxm_guid_eq(&files[k].dwg, &f->pl2))))
				f->parent = (int)k;
		if (f->parent >= 0)
			continue;
		struct vxm_chain *ch;
		struct vxm_err err = { 0 };
		if (vxm_chain_open(&ch, f->path, NULL, &err) == 0) {
			if (vxm_chain_depth(ch) >= 2)
				f->external = strdup(vxm_image_path(vxm_chain_image(ch, vxm_chain_depth(ch) - 2)));
			vxm_chain_close(ch);
		} else {
			f->broken = true;
			vxm_err_format(&err, f->why, sizeof(f->why));
		}
	}
	for (size_t i = 0; i < nfiles; i++)
		if (files[i].parent >= 0)
			files[files[i].parent].children++;
	for (size_t i = 0; i < nfiles; i++)
		if (files[i].broken)
			mark_orphans(i);

	time_t now = time(NULL);
	unsigned n_left = 0, n_broken = 0, n_branch = 0, n_orphan = 0, n_bad = 0, n_side = 0;
	for (size_t i = 0; i < nfiles; i++) {
		const struct sfile *f = &files[i];
		if (!f->ok)
			n_bad++;
		if (f->broken)
			n_broken++;
		if (f->children > 1)
			n_branch++;
		if (f->orphan)
			n_orphan++;
		if (f->ok && f->has_parent && days > 0 && difftime(now, f->mtime) > days * 86400)
			n_left++;
	}
	bool *stale = calloc(nside ? nside : 1, sizeof(bool));
	for (size_t i = 0; i < nside; i++)
		if (!sidecar_owned(sidecars[i])) {
			stale[i] = true;
			n_side++;
		}
	bool attention = n_left || n_broken || n_branch || n_orphan || n_bad || n_side;

	if (json) {
		struct json j;
		json_init(&j, stdout);
		json_obj_begin(&j, NULL);
		json_str(&j, "directory", dir);
		json_u64(&j, "files", nfiles);
		json_bool(&j, "attention", attention);
		json_arr_begin(&j, "trees");
		for (size_t i = 0; i < nfiles; i++)
			if (files[i].ok && files[i].parent < 0 && !files[i].broken)
				tree_json(&j, i);
		json_arr_end(&j);
		json_arr_begin(&j, "leftover");
		for (size_t i = 0; i < nfiles; i++)
			if (files[i].ok && files[i].has_parent && days > 0 &&
			    difftime(now, files[i].mtime) > days * 86400) {
				json_obj_begin(&j, NULL);
				json_str(&j, "path", files[i].path);
				json_dbl(&j, "age_days", difftime(now, files[i].mtime) / 86400.0);
				json_obj_end(&j);
			}
		json_arr_end(&j);
		json_arr_begin(&j, "broken");
		for (size_t i = 0; i < nfiles; i++)
			if (files[i].broken) {
				json_obj_begin(&j, NULL);
				json_str(&j, "path", files[i].path);
				json_str(&j, "reason", files[i].why);
				json_obj_end(&j);
			}
		json_arr_end(&j);
		json_arr_begin(&j, "branching");
		for (size_t i = 0; i < nfiles; i++)
			if (files[i].children > 1) {
				json_obj_begin(&j, NULL);
				json_str(&j, "path", files[i].path);
				json_arr_begin(&j, "children");
				for (size_t k = 0; k < nfiles; k++)
					if (files[k].parent == (int)i)
						json_str(&j, NULL, files[k].path);
				json_arr_end(&j);
				json_obj_end(&j);
			}
		json_arr_end(&j);
		json_arr_begin(&j, "orphans");
		for (size_t i = 0; i < nfiles; i++)
			if (files[i].orphan)
				json_str(&j, NULL, files[i].path);
		json_arr_end(&j);
		json_arr_begin(&j, "unreadable");
		for (size_t i = 0; i < nfiles; i++)
			if (!files[i].ok) {
				json_obj_begin(&j, NULL);
				json_str(&j, "path", files[i].path);
				json_str(&j, "error", files[i].err);
				json_obj_end(&j);
			}
		json_arr_end(&j);
		json_arr_begin(&j, "stale_sidecars");
		for (size_t i = 0; i < nside; i++)
			if (stale[i])
				json_str(&j, NULL, sidecars[i]);
		json_arr_end(&j);
		json_obj_end(&j);
		json_end(&j);
	} else {
		printf("%zu disk file%s under %s\n", nfiles, nfiles == 1 ? "" : "s", dir);
		for (size_t i = 0; i < nfiles; i++)
			if (files[i].ok && files[i].parent < 0 && !files[i].broken) {
				if (files[i].external)
					printf("(parent outside %s: %s)\n", dir, files[i].external);
				print_tree(i, 0);
			}
		for (size_t i = 0; i < nfiles; i++) {
			const struct sfile *f = &files[i];
			if (f->broken) {
				printf("BROKEN    %s\n          %s\n", f->path, f->why);
				print_tree(i, 1);
			}
			if (f->children > 1)
				printf("BRANCHING %s has %u children: merging into it would invalidate all but one\n",
				       f->path, f->children);
			if (!f->ok)
				printf("UNREADABLE %s\n", f->err);
			if (f->ok && f->has_parent && days > 0 && difftime(now, f->mtime) > days * 86400)
				printf("LEFTOVER  %s: checkpoint not modified for %.0f days\n", f->path,
				       difftime(now, f->mtime) / 86400.0);
		}
		for (size_t i = 0; i < nside; i++)
			if (stale[i])
				printf("SIDECAR   %s: its disk no longer exists\n", sidecars[i]);
		printf("%s\n", attention ? "attention needed" : "clean");
	}
	for (size_t i = 0; i < nfiles; i++) {
		free(files[i].path);
		free(files[i].external);
	}
	for (size_t i = 0; i < nside; i++)
		free(sidecars[i]);
	free(stale);
	free(files);
	free(sidecars);
	return attention ? VXM_EXIT_PROBLEMS : VXM_EXIT_OK;
}
