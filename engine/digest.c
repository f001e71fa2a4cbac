/* engine/digest.c: SHA-256 through OpenSSL's EVP interface. */
#include "engine.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>

int vxm_sha256_init(struct vxm_sha256 *s)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	s->ctx = c;
	if (!c)
		return -ENOMEM;
	if (EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(c);
		s->ctx = NULL;
		return -EINVAL;
	}
	return 0;
}

void vxm_sha256_update(struct vxm_sha256 *s, const void *buf, size_t len)
{
	EVP_DigestUpdate(s->ctx, buf, len);
}

void vxm_sha256_final(struct vxm_sha256 *s, char hex[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	EVP_DigestFinal_ex(s->ctx, md, &n);
	EVP_MD_CTX_free(s->ctx);
	s->ctx = NULL;
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}
