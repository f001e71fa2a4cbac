/* engine/guidgen.c: where new GUIDs come from.
 *
 * Random by default (libuuid).  Seeded, a splitmix64 stream: the merge
 * journal records the seed so a resumed run draws the same GUIDs and ends
 * byte-identical to an uninterrupted one.  Version-4 and variant bits are
 * set either way, so seeded GUIDs look like any other.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

static uint64_t seed_state;
static int seeded = -1; /* -1: environment not read yet */

void vxm_guid_seed(uint64_t seed)
{
	seed_state = seed;
	seeded = seed != 0;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

void vxm_guid_new(struct vxm_guid *g)
{
	if (seeded < 0) {
		const char *env = getenv("VXM_GUID_SEED");
		vxm_guid_seed(env ? strtoull(env, NULL, 0) : 0);
	}
	if (seeded) {
		uint64_t a = splitmix64(&seed_state), b = splitmix64(&seed_state);
		memcpy(g->b, &a, 8);
		memcpy(g->b + 8, &b, 8);
	} else {
		uuid_t u;
		uuid_generate_random(u);
		memcpy(g->b, u, 16);
	}
	/* Version 4 lives in the high nibble of Data3 (a little-endian u16). */
	g->b[7] = (uint8_t)((g->b[7] & 0x0F) | 0x40);
	g->b[8] = (uint8_t)((g->b[8] & 0x3F) | 0x80);
}

void vxm_guid_derive(uint64_t seed, const char *label, unsigned n, struct vxm_guid *g)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a over the label */
	for (const char *p = label; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	uint64_t s = seed ^ h ^ ((uint64_t)n << 32);
	uint64_t a = splitmix64(&s), b = splitmix64(&s);
	memcpy(g->b, &a, 8);
	memcpy(g->b + 8, &b, 8);
	g->b[7] = (uint8_t)((g->b[7] & 0x0F) | 0x40);
	g->b[8] = (uint8_t)((g->b[8] & 0x3F) | 0x80);
}
