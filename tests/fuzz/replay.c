/* tests/fuzz/replay.c: runs files through a libFuzzer harness without
 * libFuzzer, so that past crashes stay tested in the normal (gcc) build.
 *
 * Usage: fuzz_replay_<target> PATH...   (files, or directories of files)
 * Each file is read whole and passed once to LLVMFuzzerTestOneInput; a
 * finding aborts (FZ_ASSERT) or trips the sanitizers of an instrumented
 * build.  Exit 0 when every file ran, 1 when a path could not be read, 77
 * when there was nothing to run.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

static unsigned ran;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f) {
		perror(path);
		return 1;
	}
	do {
		if (n == cap) {
			cap = cap ? cap * 2 : 65536;
			uint8_t *nb = realloc(buf, cap);
			if (!nb)
				abort();
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r);
	fclose(f);
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	ran++;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
	struct stat st;

	if (stat(path, &st)) {
		perror(path);
		return 1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		return 1;
	}
	char **names = NULL;
	size_t nn = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		names = realloc(names, (nn + 1) * sizeof(*names));
		if (!names || asprintf(&names[nn], "%s/%s", path, de->d_name) < 0)
			abort();
		nn++;
	}
	closedir(d);
	qsort(names, nn, sizeof(*names), cmp);
	int ret = 0;
	for (size_t i = 0; i < nn; i++) {
		ret |= run_path(names[i]);
		free(names[i]);
	}
	free(names);
	return ret;
}

int main(int argc, char **argv)
{
	int ret = 0;

	for (int i = 1; i < argc; i++)
		ret |= run_path(argv[i]);
	fprintf(stderr, "replay: %u inputs\n", ran);
	return ret ? 1 : ran ? 0 : 77;
}
