/* tests/cli/shared_view.c: a user of the shared library, as a packager's
 * would be: it includes only <vhdxmerge.h> and links only libvhdxmerge.so
 * (tests/CMakeLists.txt), so it links only if the library exports what the
 * header promises.  tests/cli/library_exports.sh runs it.
 *
 * Usage: vxm_shared_view TOP [MISSING]
 *   prints the SHA-256 of the disk the chain ending in TOP shows, read
 *   through vxm_chain_read, and its virtual size; with MISSING (a path that
 *   does not exist), also the error vxm_chain_open gives for it and the exit
 *   code class of that error.  Exit 0, or 1 on any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vhdxmerge.h>

#define CHUNK (4u << 20)

int main(int argc, char **argv)
{
	struct vxm_err err = { 0 };
	struct vxm_chain *c;
	struct vxm_sha256 sh;
	char msg[1200], hex[65];
	int ret;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s TOP [MISSING]\n", argv[0]);
		return 1;
	}
	ret = vxm_chain_open(&c, argv[1], NULL, &err);
	if (ret) {
		fprintf(stderr, "%s\n", vxm_err_format(&err, msg, sizeof(msg)));
		return 1;
	}
	uint64_t size = vxm_chain_virtual_size(c);
	uint8_t *buf = malloc(CHUNK);
	if (!buf || vxm_sha256_init(&sh)) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}
	for (uint64_t off = 0; off < size && !ret; off += CHUNK) {
		uint64_t n = size - off < CHUNK ? size - off : CHUNK;
		ret = vxm_chain_read(c, buf, n, off, &err);
		if (!ret)
			vxm_sha256_update(&sh, buf, (size_t)n);
	}
	vxm_sha256_final(&sh, hex);
	free(buf);
	printf("layers %u size %llu sha256 %s\n", vxm_chain_depth(c), (unsigned long long)size, hex);
	vxm_chain_close(c);
	if (ret) {
		fprintf(stderr, "%s\n", vxm_err_format(&err, msg, sizeof(msg)));
		return 1;
	}
	if (argc == 3) {
		vxm_err_clear(&err);
		ret = vxm_chain_open(&c, argv[2], NULL, &err);
		if (!ret) {
			fprintf(stderr, "%s opened\n", argv[2]);
			vxm_chain_close(c);
			return 1;
		}
		printf("missing: %s (%s, exit class %d)\n", vxm_err_format(&err, msg, sizeof(msg)),
		       vxm_strerror(ret), vxm_exit_code(ret));
	}
	return 0;
}
