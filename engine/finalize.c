/* engine/finalize.c: what a merge does after the data: final headers of a
 * file it edited (M3), the locator edits (C1's parent_linkage2, each child
 * of TOP re-pointed at D: fmt §8.4 step 7), and the removal of the merged
 * files (fmt §8.4 step 8).
 *
 * I1: every edit is idempotent, so a resumed run redoes it safely: a file
 *     already in its final state is left as it is (engine/merge.c M3).
 */
#define _GNU_SOURCE
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FINAL_SEQ_STEP (1ull << 20) /* M3: final header sequence = original + this */

/* ---- finalizing a file (M3) -------------------------------------------------- */

/* Zeroes the (dead) log and writes both headers with fwg, LogGuid 0 and the
 * sequence numbers orig_seq + FINAL_SEQ_STEP (+1), keeping a valid current
 * header at every step.  Idempotent. */
int mg_finalize_file(struct vxm_io *io, const char *path, uint64_t orig_seq,
		     const struct vxm_guid *fwg, struct vxm_err *err)
{
	struct vxm_image *img;
	int ret = vxm_image_open(&img, io, path, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	uint8_t *buf = calloc(1, VXM_MiB);
	uint8_t *zero = calloc(1, VXM_MiB);
	if (!buf || !zero) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint64_t o = 0; o < img->hdr.log_len && !ret; o += VXM_MiB) {
		uint64_t n = img->hdr.log_len - o < VXM_MiB ? img->hdr.log_len - o : VXM_MiB;
		ret = vxm_image_pread(img, buf, n, img->hdr.log_off + o, err);
		if (!ret && memcmp(buf, zero, n))
			ret = vxm_io_pwrite(img->io, img->slot, zero, n, img->hdr.log_off + o);
	}
	if (!ret)
		ret = vxm_io_sync(img->io, img->slot, "finalize-log", false);
	if (ret)
		goto fail;
	uint64_t S = orig_seq + FINAL_SEQ_STEP;
	uint8_t want[2][VXM_HDR_SIZE];
	struct vxm_hdr h = img->hdr;
	h.file_write = *fwg;
	memset(h.log_guid.b, 0, 16);
	h.seq = S;
	vxm_hdr_encode(&h, want[0]);
	h.seq = S + 1;
	vxm_hdr_encode(&h, want[1]);
	/* Write the non-current slot first, so a valid current one exists at
	 * every instant; both targets exceed any sequence used before. */
	for (int round = 0; round < 2; round++) {
		int slot = round == 0 ? 1 - img->hp.current : img->hp.current;
		if (!memcmp(img->hdr_raw[slot], want[slot], VXM_HDR_SIZE))
			continue;
		uint64_t off = slot ? VXM_HDR2_OFF : VXM_HDR1_OFF;
		vxm_killpoint("write");
		ret = vxm_io_pwrite(img->io, img->slot, want[slot], VXM_HDR_SIZE, off);
		if (!ret)
			ret = vxm_io_sync(img->io, img->slot, "finalize-header", false);
		if (ret)
			goto fail;
		vxm_killpoint("finalize-header");
	}
	goto out;
fail:
	vxm_fail(err, ret, VXM_OFF_NONE, "%s: finalizing failed: %s", path, vxm_strerror(ret));
out:
	free(buf);
	free(zero);
	vxm_image_close(img);
	return ret;
}

/* ---- locator edits --------------------------------------------------------------- */

/* The locator of img as UTF-8 pairs, with `set` replacing or adding keys;
 * keys whose new value is NULL are dropped.  Caller frees kv[i].value. */
static int locator_with(const struct vxm_image *img, const struct vxm_kv *set, unsigned nset,
			struct vxm_kv *kv, char keys[][64], unsigned *n)
{
	unsigned k = 0;
	for (unsigned i = 0; i < img->loc->count; i++) {
		char *val = malloc(VXM_LOCATOR_PATH_MAX);
		if (!val || vxm_locator_key(img->loc, img->loc_item, i, keys[k], 64) ||
		    vxm_locator_value(img->loc, img->loc_item, i, val, VXM_LOCATOR_PATH_MAX)) {
			free(val);
			continue; /* an unreadable or overlong pair is dropped */
		}
		bool replaced = false;
		for (unsigned s = 0; s < nset; s++)
			replaced |= !strcmp(keys[k], set[s].key);
		if (replaced) {
			free(val);
			continue;
		}
		kv[k].key = keys[k];
		kv[k].value = val;
		k++;
	}
	for (unsigned s = 0; s < nset; s++) {
		if (!set[s].value)
			continue;
		snprintf(keys[k], 64, "%s", set[s].key);
		kv[k].key = keys[k];
		kv[k].value = strdup(set[s].value);
		k++;
	}
	*n = k;
	return 0;
}

int mg_set_locator(struct vxm_io *io, const char *path, const struct vxm_kv *set,
		   unsigned nset, struct vxm_err *err)
{
	struct vxm_image *img;
	struct vxm_writer *w = NULL;
	struct vxm_kv kv[VXM_LOCATOR_MAX_PAIRS + 8];
	static char keys[VXM_LOCATOR_MAX_PAIRS + 8][64];
	unsigned n = 0;
	int ret = vxm_image_open(&img, io, path, VXM_IMAGE_RDWR, err);
	if (ret)
		return ret;
	if (!img->loc) {
		vxm_image_close(img);
		return vxm_fail(err, -VXM_ECHAIN, VXM_OFF_NONE, "%s has no parent locator", path);
	}
	locator_with(img, set, nset, kv, keys, &n);
	ret = vxm_writer_begin(&w, img, err);
	if (!ret)
		ret = vxm_writer_set_locator(w, kv, n, err);
	if (w) {
		int r2 = vxm_writer_end(w, ret ? NULL : err);
		if (!ret)
			ret = r2;
	}
	for (unsigned i = 0; i < n; i++)
		free((void *)kv[i].value);
	vxm_image_close(img);
	return ret;
}

/* "{guid}" */
void mg_braced(const struct vxm_guid *g, char out[40])
{
	char s[VXM_GUID_STRLEN + 1];
	snprintf(out, 40, "{%s}", vxm_guid_fmt(g, s));
}

/* A relative Windows path (".\x.vhdx", "..\dir\x.vhdx") from the directory
 * of `from` to the file `to`, by path components of their absolute paths. */
static char *mg_win_relative(const char *from, const char *to)
{
	char *a = mg_abspath(from), *b = mg_abspath(to), *out = NULL;
	char *ca[256], *cb[256];
	unsigned na = 0, nb = 0;

	if (!a || !b)
		goto done;
	for (char *sv = NULL, *t = strtok_r(a, "/", &sv); t && na < 256; t = strtok_r(NULL, "/", &sv))
		ca[na++] = t;
	for (char *sv = NULL, *t = strtok_r(b, "/", &sv); t && nb < 256; t = strtok_r(NULL, "/", &sv))
		cb[nb++] = t;
	if (!na || !nb)
		goto done;
	na--; /* the directory of `from` */
	unsigned common = 0;
	while (common < na && common + 1 < nb && !strcmp(ca[common], cb[common]))
		common++;
	size_t cap = 3 * (na - common) + strlen(to) + 4 + 256;
	for (unsigned i = common; i < nb; i++)
		cap += strlen(cb[i]) + 1;
	out = malloc(cap);
	if (!out)
		goto done;
	size_t o = 0;
	if (na == common)
		o += (size_t)sprintf(out + o, ".\\");
	for (unsigned i = common; i < na; i++)
		o += (size_t)sprintf(out + o, "..\\");
	for (unsigned i = common; i < nb; i++)
		o += (size_t)sprintf(out + o, "%s%s", cb[i], i + 1 < nb ? "\\" : "");
done:
	free(a);
	free(b);
	return out;
}

void mg_relink_free(struct relink *k)
{
	free(k->rel);
	free(k->nabs);
	free(k->nvol);
}

static char *swap_name(const char *winpath, const char *name)
{
	const char *slash = strrchr(winpath, '\\');
	char *out;
	if (!slash || asprintf(&out, "%.*s\\%s", (int)(slash - winpath), winpath, name) < 0)
		return NULL;
	return out;
}

int mg_relink_child(struct relink *k, const char *child, const char *top, const char *dest,
		    const struct vxm_guid *g, const char *oldabs, const char *oldvol)
{
	static const struct vxm_guid z;
	memset(k, 0, sizeof(*k));
	mg_braced(g, k->guid);
	mg_braced(&z, k->zero);
	k->rel = mg_win_relative(child, dest);
	char *tdir = strdup(top), *ddir = strdup(dest), *dbase = strdup(dest);
	bool same_dir = tdir && ddir && !strcmp(dirname(tdir), dirname(ddir));
	if (same_dir && dbase && oldabs[0])
		k->nabs = swap_name(oldabs, basename(dbase));
	if (same_dir && dbase && oldvol[0])
		k->nvol = swap_name(oldvol, basename(dbase));
	free(tdir);
	free(ddir);
	free(dbase);
	k->set[0] = (struct vxm_kv){ "parent_linkage", k->guid };
	k->set[1] = (struct vxm_kv){ "parent_linkage2", k->zero };
	k->set[2] = (struct vxm_kv){ "relative_path", k->rel };
	k->set[3] = (struct vxm_kv){ "absolute_win32_path", k->nabs };
	k->set[4] = (struct vxm_kv){ "volume_path", k->nvol };
	return k->rel ? 0 : -ENOMEM;
}

/* Would img's metadata region hold its locator with `set` applied?  The
 * writer places the new item beside the old one, so a packed region fails
 * only after D is merged: checked before the first write instead. */
int mg_locator_room(struct vxm_image *img, const struct vxm_kv *set, unsigned nset,
		    struct vxm_err *err)
{
	struct vxm_kv kv[VXM_LOCATOR_MAX_PAIRS + 8];
	static char keys[VXM_LOCATOR_MAX_PAIRS + 8][64];
	unsigned n = 0;
	uint8_t *buf = malloc(64 * 1024);
	int ret = buf ? 0 : -ENOMEM;
	if (!ret && img->loc) {
		locator_with(img, set, nset, kv, keys, &n);
		long len = vxm_locator_encode(kv, n, buf, 64 * 1024);
		ret = len < 0 ? (int)len : vxm_image_meta_room(img, (uint32_t)len);
		if (ret == -ENOSPC)
			ret = vxm_fail(err, -VXM_EUNSUPPORTED, img->meta_region.off,
				       "%s: its metadata region (%u bytes at 0x%llx) has no room for the %ld-byte parent locator the merge writes; nothing was changed",
				       img->path, img->meta_region.len,
				       (unsigned long long)img->meta_region.off, len);
		for (unsigned i = 0; i < n; i++)
			free((void *)kv[i].value);
	}
	free(buf);
	return ret;
}

static int remove_file(const char *path, unsigned *count)
{
	static const char *const side[] = { ".mrt", ".rct" };
	int ret = 0;
	if (unlink(path) == 0)
		(*count)++;
	else if (errno != ENOENT)
		ret = -errno;
	/* Resilient change tracking sidecars: "<file>.mrt" and "<name>.mrt" */
	for (int k = 0; k < 2; k++) {
		char *s1;
		if (asprintf(&s1, "%s%s", path, side[k]) >= 0) {
			unlink(s1);
			free(s1);
		}
		char *base = strdup(path), *dot = base ? strrchr(base, '.') : NULL;
		if (dot && !strchr(dot, '/')) {
			*dot = 0;
			if (asprintf(&s1, "%s%s", base, side[k]) >= 0) {
				unlink(s1);
				free(s1);
			}
		}
		free(base);
	}
	return ret;
}

static bool same_dir(const char *a, const char *b)
{
	char *x = strdup(a), *y = strdup(b);
	bool eq = x && y && !strcmp(dirname(x), dirname(y));
	free(x);
	free(y);
	return eq;
}

/* A symlinked layer lost its link; the file it pointed to stays where it is
 * (it may be outside every directory the chain was found in, where nothing
 * is deleted unnamed) and is named. */
static void kept_target(const struct vxm_merge_opts *o, const struct vxm_journal *j, unsigned i,
			struct vxm_merge_result *r)
{
	const char *t = j->layer_target[i];
	struct stat st;
	if (!t || stat(t, &st) < 0)
		return;
	bool inside = same_dir(t, j->top) || same_dir(t, j->dest);
	for (unsigned k = 0; k < j->nlayers && !inside; k++)
		inside = same_dir(t, j->layer_path[k]);
	for (unsigned k = 0; k < j->nchildren && !inside; k++)
		inside = same_dir(t, j->child_path[k]);
	mg_say(o, "kept %s: the target of the symlink %s%s; it is no longer a valid checkpoint", t,
	       j->layer_path[i], inside ? "" : ", outside the chain's directories");
	size_t n = strlen(r->kept);
	snprintf(r->kept + n, sizeof(r->kept) - n, "%s%s", n ? "\n" : "", t);
}

int mg_phase_cleanup(const struct vxm_merge_opts *o, struct vxm_journal *j, const char *jpath,
		     struct vxm_merge_result *r, struct vxm_err *err)
{
	int ret;
	if (j->phase < VXM_JPHASE_CLEANUP) {
		mg_phase_enter(j, VXM_JPHASE_CLEANUP);
		ret = vxm_journal_save(j, jpath, err);
		if (ret)
			return ret;
	}
	mg_progress(o, "cleanup", 0, 0, 0, 0, 0);
	if (!j->keep_merged) {
		/* the top last: while it exists the journal is found from it */
		for (unsigned i = 0; i < j->nlayers; i++) {
			vxm_killpoint("delete");
			ret = remove_file(j->layer_path[i], &r->files_removed);
			if (ret)
				return vxm_fail(err, ret, VXM_OFF_NONE, "%s: cannot remove: %s",
						j->layer_path[i], strerror(-ret));
			/* the journal goes only once the removals are durable */
			ret = vxm_fsync_dir(j->layer_path[i]);
			if (ret)
				return vxm_fail(err, ret, VXM_OFF_NONE, "%s: flushing its directory failed: %s",
						j->layer_path[i], strerror(-ret));
			kept_target(o, j, i, r);
		}
	}
	return vxm_journal_remove(jpath, err);
}

int mg_phase_repoint(const struct vxm_merge_opts *o, struct vxm_io *io, struct vxm_journal *j,
		     const char *jpath, struct vxm_merge_result *r, struct vxm_err *err)
{
	int ret;
	mg_progress(o, "repoint", 0, 0, 0, 0, 0);
	for (unsigned i = 0; i < j->nchildren; i++) {
		const char *path = j->child_path[i];
		struct vxm_image *img;
		ret = vxm_image_open(&img, io, path, VXM_IMAGE_RDWR, err);
		if (ret)
			return ret;
		bool done = img->loc && vxm_guid_eq(&img->loc->parent_linkage, &j->dest_new_dwg);
		char oldabs[VXM_LOCATOR_PATH_MAX], oldvol[VXM_LOCATOR_PATH_MAX];
		snprintf(oldabs, sizeof(oldabs), "%s", img->loc ? img->loc->absolute_win32_path : "");
		snprintf(oldvol, sizeof(oldvol), "%s", img->loc ? img->loc->volume_path : "");
		vxm_image_close(img);
		if (!done) {
			/* M4: D is final and flushed (phase COPIED) before this. */
			struct relink k;
			ret = mg_relink_child(&k, path, j->top, j->dest, &j->dest_new_dwg, oldabs, oldvol);
			if (!ret)
				ret = mg_set_locator(io, path, k.set, 5, err);
			mg_relink_free(&k);
			if (ret)
				return ret;
		}
		struct vxm_guid fwg;
		vxm_guid_derive(j->seed, "child-fwg", i, &fwg);
		ret = mg_finalize_file(io, path, j->child_seq[i], &fwg, err);
		if (ret)
			return ret;
		vxm_killpoint("reparent");
		r->children_repointed++;
	}
	mg_phase_enter(j, VXM_JPHASE_REPOINTED);
	return vxm_journal_save(j, jpath, err);
}
