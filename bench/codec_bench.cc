// bench/codec_bench.cc: the codec's hot loops (vhdx/), no I/O.
//
//   BM_crc32c/hw:<0|1>/bytes:<n>   vxm_crc32c (SSE4.2 when the CPU has it) and
//                                  vxm_crc32c_sw (slicing table) over n bytes:
//                                  4 KiB (a header, a log sector), 64 KiB (a
//                                  region table), 1 MiB (a log entry); hw:1
//                                  is skipped when the CPU has no SSE4.2
//   BM_bat_decode/entries:<n>      little-endian load + vxm_bat_check_entry +
//                                  state count over a window of n BAT entries
//                                  (8192: the window engine/image.c reads),
//                                  differencing geometry, 512-byte sectors,
//                                  2 MiB blocks (chunk ratio 2048), states
//                                  drawn like a checkpoint: ~90 % NOT_PRESENT,
//                                  FULLY/PARTIALLY_PRESENT, ZERO, SB entries
//   BM_bat_count/entries:<n>       vxm_bat_count over decoded entries
//   BM_bitmap_runs/kind:<k>/spb:<n>  vxm_bitmap_run over one block's sector
//                                  bitmap (spb bits: 4096 = 2 MiB / 512,
//                                  65536 = 32 MiB / 512), every run in turn;
//                                  kind 0 all set (one run), 1 runs of 1..64
//                                  sectors, 2 runs of 1..4096 sectors,
//                                  3 alternating bits (worst case)
//
// Counters: bytes_per_second (CRC), items_per_second (entries or bits),
// runs (bitmap runs per block).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <vector>

extern "C" {
#include "vhdx.h"
#include "endian.h"
}

namespace {

uint64_t mix(uint64_t &s)
{
	uint64_t z = (s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

void BM_crc32c(benchmark::State &st)
{
	bool hw = st.range(0) != 0;
	size_t n = (size_t)st.range(1);
	if (hw && !vxm_crc32c_hw()) {
		st.SkipWithError("no SSE4.2 CRC-32C on this CPU");
		return;
	}
	std::vector<uint8_t> buf(n);
	uint64_t s = 1;
	for (auto &b : buf)
		b = (uint8_t)mix(s);
	uint32_t crc = 0;
	for (auto _ : st) {
		crc = hw ? vxm_crc32c(crc, buf.data(), n) : vxm_crc32c_sw(crc, buf.data(), n);
		benchmark::DoNotOptimize(crc);
	}
	st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)n);
}
BENCHMARK(BM_crc32c)->ArgNames({ "hw", "bytes" })->ArgsProduct({ { 0, 1 }, { 4096, 65536, 1 << 20 } });

struct bat_fixture {
	vxm_geom g;
	std::vector<uint8_t> raw; // on-disk little-endian entries
	uint64_t file_size;

	explicit bat_fixture(uint64_t entries)
	{
		vxm_err err{};
		// enough virtual size for `entries` entries with chunk ratio 2048
		uint64_t blocks = entries - entries / 2049;
		vxm_geom_init(&g, blocks * (2ull << 20), 2u << 20, 512, true, &err);
		file_size = 1ull << 40;
		raw.resize(entries * 8);
		uint64_t s = 7, next = 8ull << 20;
		for (uint64_t i = 0; i < entries; i++) {
			uint64_t e = 0, r = mix(s) % 100;
			if (vxm_geom_is_sb_index(&g, i)) {
				e = r < 50 ? vxm_bat_entry(VXM_SB_PRESENT, (next += VXM_MiB)) : 0;
			} else if (r < 6) {
				e = vxm_bat_entry(VXM_PB_FULLY_PRESENT, (next += 2 * VXM_MiB));
			} else if (r < 9) {
				e = vxm_bat_entry(VXM_PB_PARTIALLY_PRESENT, (next += 2 * VXM_MiB));
			} else if (r < 10) {
				e = vxm_bat_entry(VXM_PB_ZERO, 0);
			}
			vxm_put_le64(&raw[i * 8], e);
		}
	}
};

void BM_bat_decode(benchmark::State &st)
{
	uint64_t n = (uint64_t)st.range(0);
	bat_fixture f(n);
	vxm_err err{};
	for (auto _ : st) {
		uint64_t present = 0, bad = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t e = vxm_le64(&f.raw[i * 8]);
			bad += vxm_bat_check_entry(&f.g, i, e, VXM_MiB + i * 8, f.file_size, &err) != 0;
			unsigned s = vxm_bat_state(e);
			present += s == VXM_PB_FULLY_PRESENT || s == VXM_PB_PARTIALLY_PRESENT;
		}
		benchmark::DoNotOptimize(present);
		if (bad) {
			st.SkipWithError("fixture entry rejected");
			break;
		}
	}
	st.SetItemsProcessed((int64_t)st.iterations() * (int64_t)n);
}
BENCHMARK(BM_bat_decode)->ArgName("entries")->Arg(8192)->Arg(1 << 20);

void BM_bat_count(benchmark::State &st)
{
	uint64_t n = (uint64_t)st.range(0);
	bat_fixture f(n);
	std::vector<uint64_t> e(n);
	for (uint64_t i = 0; i < n; i++)
		e[i] = vxm_le64(&f.raw[i * 8]);
	vxm_geom g = f.g;
	g.total_entries = n;
	vxm_bat_counts c;
	for (auto _ : st) {
		vxm_bat_count(&g, e.data(), &c);
		benchmark::DoNotOptimize(c);
	}
	st.SetItemsProcessed((int64_t)st.iterations() * (int64_t)n);
}
BENCHMARK(BM_bat_count)->ArgName("entries")->Arg(8192)->Arg(1 << 20);

void BM_bitmap_runs(benchmark::State &st)
{
	int kind = (int)st.range(0);
	uint64_t spb = (uint64_t)st.range(1);
	std::vector<uint8_t> bm(spb / 8 + 8, 0);
	uint64_t s = 11;
	if (kind == 0) {
		vxm_bitmap_fill(bm.data(), 0, spb, true);
	} else if (kind == 3) {
		for (uint64_t i = 0; i < spb; i += 2)
			vxm_bit_set(bm.data(), i);
	} else {
		uint64_t max = kind == 1 ? 64 : 4096;
		bool v = true;
		for (uint64_t i = 0; i < spb;) {
			uint64_t n = 1 + mix(s) % max;
			if (n > spb - i)
				n = spb - i;
			vxm_bitmap_fill(bm.data(), i, n, v);
			v = !v;
			i += n;
		}
	}
	uint64_t runs = 0;
	for (auto _ : st) {
		runs = 0;
		for (uint64_t i = 0; i < spb; runs++)
			i += vxm_bitmap_run(bm.data(), i, spb);
		benchmark::DoNotOptimize(runs);
	}
	st.SetItemsProcessed((int64_t)st.iterations() * (int64_t)spb);
	st.counters["runs"] = (double)runs;
}
BENCHMARK(BM_bitmap_runs)
	->ArgNames({ "kind", "spb" })
	->ArgsProduct({ { 0, 1, 2, 3 }, { 4096, 65536 } });

} // namespace

BENCHMARK_MAIN();
