// bench/plan_bench.cc: throughput and memory of the BAT-diff planner.
//
// Synthetic chains built in memory with the test builder (tests/lib/memvhdx,
// shared payload: every present block points at one payload block, so a
// layer holds little more than its BAT), opened with vxm_image_open_mem and
// chained with vxm_chain_from_images.  2 MiB blocks; 4096-byte logical
// sectors for the size series (memvhdx sets sector bitmaps with a loop over
// every sector of the disk: with 512-byte sectors a 16 TiB child would take
// minutes to build), 512-byte sectors at 256 GiB.
//
//   BM_plan_merge/GiB:<n>/layers:<n>/lss:<n>    merge every child into the base
//   BM_plan_convert/GiB:<n>/layers:<n>/lss:<n>  plan a new standalone file
//
// Layer contents (splitmix64, seeded per layer, so every run is the same):
//   base      70 % FULLY_PRESENT, 30 % NOT_PRESENT, in runs of 1..512 blocks
//   children  ~95 % NOT_PRESENT; writes come in clusters of 1..256 blocks:
//             70 % FULLY_PRESENT, 25 % PARTIALLY_PRESENT (runs of 1 to
//             sectors-per-block/8 sectors, each set or not by a coin), 5 % ZERO
//
// Counters (per plan unless marked /s):
//   bat_entries/s   payload BAT entries of the layers the plan covers
//                   (blocks x layers walked), per second
//   extents/s       extents emitted (after coalescing) per second
//   extents, runs   from struct vxm_plan_stats
//   peak_rss_MiB    getrusage ru_maxrss after the timed loop; the peak is
//                   reset (/proc/self/clear_refs 5) after the images are
//                   opened, so this is the process peak while planning, the
//                   in-memory bytes of all 30 layers of this size included
//   layers_MiB      RSS held by those layer bytes (resident pages of the 30
//                   buffers: BATs at 8 bytes a block, touched bitmap pages)
//   open_KiB        RSS added by opening the n images (structs, a copy of
//                   each metadata region, 1 MiB here)
//   plan_KiB        peak_rss - RSS after opening: what planning adds (BAT
//                   windows, bitmap slices, the chain walk); the figure that
//                   must not grow with the disk size (engine.h I2)
//
// Layers are built once per size and reused for every layer count (the first
// n layers of the 30); build time is not measured.  --benchmark_filter picks
// sizes, e.g. --benchmark_filter='GiB:2048/'.
#include <benchmark/benchmark.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <malloc.h>
#include <sys/resource.h>

#include "vhdxmerge.h"
#include "engine/engine.h"
extern "C" {
#include "memvhdx.h"
}

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint32_t kBlock = 2 * kMiB;
constexpr unsigned kMaxLayers = 30;

uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

struct Layer {
	uint8_t *bytes = nullptr;
	size_t len = 0;
};

// The 30 layers of one disk size, built on first use.
struct World {
	uint64_t gib = 0;
	uint32_t lss = 0;
	uint64_t blocks = 0;
	std::vector<Layer> layers;

	void clear()
	{
		for (auto &l : layers)
			free(l.bytes);
		layers.clear();
		gib = blocks = 0;
		lss = 0;
	}

	bool build(uint64_t size_gib, uint32_t sector, std::string *why)
	{
		clear();
		uint64_t vsize = size_gib * kGiB;
		blocks = (vsize + kBlock - 1) / kBlock;
		uint64_t sectors = vsize / sector;
		uint64_t spb = kBlock / sector;
		std::vector<uint8_t> states(blocks);
		for (unsigned i = 0; i < kMaxLayers; i++) {
			uint64_t rng = 0x5eedull * (i + 1) + size_gib;
			// one bit per sector of the disk; pages stay untouched (and
			// unallocated) except where partial blocks set bits
			uint8_t *bits = static_cast<uint8_t *>(calloc(1, sectors / 8 + 8));
			if (!bits) {
				*why = "out of memory for a bitmap";
				return false;
			}
			for (uint64_t b = 0; b < blocks;) {
				uint64_t run;
				if (i == 0) {
					run = 1 + splitmix(&rng) % 512;
					uint8_t st = splitmix(&rng) % 10 < 7 ? VXM_PB_FULLY_PRESENT
									       : VXM_PB_NOT_PRESENT;
					for (uint64_t k = b; k < b + run && k < blocks; k++)
						states[k] = st;
				} else {
					// a gap of untouched blocks, then a written cluster;
					// mean gap 2432, mean cluster 128: ~5 % written
					uint64_t gap = splitmix(&rng) % 4864;
					for (uint64_t k = b; k < b + gap && k < blocks; k++)
						states[k] = VXM_PB_NOT_PRESENT;
					b += gap;
					run = 1 + splitmix(&rng) % 256;
					for (uint64_t k = b; k < b + run && k < blocks; k++) {
						unsigned r = splitmix(&rng) % 100;
						states[k] = r < 70 ? VXM_PB_FULLY_PRESENT
							    : r < 95 ? VXM_PB_PARTIALLY_PRESENT
								     : VXM_PB_ZERO;
						if (states[k] != VXM_PB_PARTIALLY_PRESENT)
							continue;
						for (uint64_t s = k * spb; s < (k + 1) * spb;) {
							uint64_t n = 1 + splitmix(&rng) % (spb / 8);
							if (splitmix(&rng) & 1)
								vxm_bitmap_fill(bits, s,
										s + n > (k + 1) * spb
											? (k + 1) * spb - s
											: n,
										true);
							s += n;
						}
					}
				}
				b += run;
			}
			mv_spec sp;
			memset(&sp, 0, sizeof(sp));
			sp.vsize = vsize;
			sp.block_size = kBlock;
			sp.lss = sector;
			sp.has_parent = i > 0;
			sp.states = states.data();
			sp.bits = bits;
			sp.shared_payload = true;
			sp.fill = static_cast<uint8_t>(i + 1);
			sp.data_write.b[0] = static_cast<uint8_t>(i + 1);
			sp.parent_linkage.b[0] = static_cast<uint8_t>(i);
			sp.relative_path = "parent.vhdx";
			Layer l;
			l.bytes = mv_build(&sp, &l.len);
			free(bits);
			if (!l.bytes) {
				*why = "mv_build failed";
				return false;
			}
			layers.push_back(l);
		}
		gib = size_gib;
		lss = sector;
		return true;
	}
};

World g_world;
uint64_t g_base_kib; // RSS before any layer was built

uint64_t status_kib(const char *key)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	uint64_t v = 0;
	size_t n = strlen(key);
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':')
			v = strtoull(line + n + 1, nullptr, 10);
	fclose(f);
	return v;
}

// Resets the peak RSS (VmHWM, and with it ru_maxrss) to the current RSS.
bool reset_peak()
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	if (!f)
		return false;
	bool ok = fputs("5", f) >= 0;
	return fclose(f) == 0 && ok;
}

struct Sink {
	uint64_t bytes = 0;
};

int on_extent(void *ctx, const vxm_extent *e)
{
	static_cast<Sink *>(ctx)->bytes += e->len;
	return 0;
}

void run_plan(benchmark::State &state, bool convert)
{
	uint64_t gib = static_cast<uint64_t>(state.range(0));
	unsigned n = static_cast<unsigned>(state.range(1));
	uint32_t lss = static_cast<uint32_t>(state.range(2));
	if (g_world.gib != gib || g_world.lss != lss) {
		std::string why;
		if (!g_world.build(gib, lss, &why)) {
			state.SkipWithError(why.c_str());
			return;
		}
	}
	// Opened here, not with the layers, so that the BAT windows and bitmap
	// slices the images allocate on first use fall inside the measurement.
	malloc_trim(0); // what earlier benchmarks freed is not counted
	uint64_t before_kib = status_kib("VmRSS");
	std::vector<vxm_image *> imgs;
	for (unsigned i = 0; i < n; i++) {
		vxm_image *img;
		vxm_err err;
		memset(&err, 0, sizeof(err));
		if (vxm_image_open_mem(&img, g_world.layers[i].bytes, g_world.layers[i].len, 0,
				       &err)) {
			state.SkipWithError(err.msg);
			for (auto *m : imgs)
				vxm_image_close(m);
			return;
		}
		imgs.push_back(img);
	}
	vxm_chain *c = nullptr;
	if (vxm_chain_from_images(&c, imgs.data(), n, nullptr)) {
		state.SkipWithError("vxm_chain_from_images failed");
		for (auto *m : imgs)
			vxm_image_close(m);
		return;
	}
	vxm_plan_opts o;
	memset(&o, 0, sizeof(o));
	o.dest = convert ? VXM_PLAN_NEW_FILE : 0;
	o.top = -1;
	vxm_plan_stats st;
	memset(&st, 0, sizeof(st));
	Sink sink;
	uint64_t opened_kib = status_kib("VmRSS");
	bool reset = reset_peak();
	for (auto _ : state) {
		vxm_err err;
		memset(&err, 0, sizeof(err));
		int ret = vxm_plan(c, &o, on_extent, &sink, &st, &err);
		if (ret) {
			state.SkipWithError(err.msg);
			break;
		}
		benchmark::DoNotOptimize(sink.bytes);
	}
	rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	uint64_t peak_kib = static_cast<uint64_t>(ru.ru_maxrss);
	vxm_chain_release(c);
	for (auto *m : imgs)
		vxm_image_close(m);

	unsigned walked = convert ? n : n - 1; // layers above the destination
	double entries = static_cast<double>(g_world.blocks) * walked;
	state.counters["bat_entries/s"] =
		benchmark::Counter(entries, benchmark::Counter::kIsIterationInvariantRate);
	state.counters["extents/s"] = benchmark::Counter(static_cast<double>(st.extents),
							 benchmark::Counter::kIsIterationInvariantRate);
	state.counters["extents"] = static_cast<double>(st.extents);
	state.counters["runs"] = static_cast<double>(st.runs);
	state.counters["blocks"] = static_cast<double>(g_world.blocks);
	state.counters["copy_GiB"] = static_cast<double>(st.copy_bytes) / kGiB;
	state.counters["peak_rss_MiB"] = static_cast<double>(peak_kib) / 1024;
	state.counters["layers_MiB"] =
		static_cast<double>(before_kib > g_base_kib ? before_kib - g_base_kib : 0) / 1024;
	state.counters["open_KiB"] =
		static_cast<double>(opened_kib > before_kib ? opened_kib - before_kib : 0);
	state.counters["plan_KiB"] =
		reset && peak_kib > opened_kib ? static_cast<double>(peak_kib - opened_kib) : 0;
	if (!reset)
		state.SetLabel("peak not reset (no /proc/self/clear_refs): plan_KiB unknown");
}

void BM_plan_merge(benchmark::State &state)
{
	run_plan(state, false);
}

void BM_plan_convert(benchmark::State &state)
{
	run_plan(state, true);
}

// Registered by (sector size, disk size), so that each world is built once.
// CPU time is reported (and rates use it): a shared 2-vCPU machine makes
// wall time noisy, and the planner is single-threaded and never waits (the
// layers are in memory).
void add(const char *name, void (*fn)(benchmark::State &), int64_t gib, int64_t n, int64_t lss)
{
	benchmark::RegisterBenchmark(name, fn)
		->Args({ gib, n, lss })
		->ArgNames({ "GiB", "layers", "lss" })
		->Unit(benchmark::kMillisecond);
}

void register_all()
{
	for (int64_t gib : { 256, 2048, 16384 }) {
		for (int64_t n : { 3, 30 })
			add("BM_plan_merge", BM_plan_merge, gib, n, 4096);
		for (int64_t n : { 1, 3, 30 })
			add("BM_plan_convert", BM_plan_convert, gib, n, 4096);
	}
	// 512-byte sectors (Hyper-V's default) at the one size memvhdx builds
	// quickly enough: a chunk's sector-bitmap BAT entry then shares the
	// BAT window with the chunk's payload entries (chunk ratio 2048 <
	// VXM_BAT_WINDOW); with 4096-byte sectors (ratio 16384) it never does.
	for (int64_t n : { 3, 30 })
		add("BM_plan_merge", BM_plan_merge, 256, n, 512);
	add("BM_plan_convert", BM_plan_convert, 256, 30, 512);
}

} // namespace

int main(int argc, char **argv)
{
	// A fixed mmap threshold: every layer buffer is its own mapping whose
	// untouched pages are never resident (glibc would otherwise raise the
	// threshold after the first free and serve, and zero, large callocs
	// from the heap), so layers_MiB is what the layers really occupy.
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	g_base_kib = status_kib("VmRSS");
	register_all();
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	g_world.clear();
	return 0;
}
