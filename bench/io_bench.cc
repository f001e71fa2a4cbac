// bench/io_bench.cc: throughput of the io/ backends.
//
// Sequential reads and writes with O_DIRECT against one preallocated file on
// the local disk, through the same queue/submit/reap pipeline the engine
// uses, buffers carved from one vxm_topo_alloc area (2 MiB aligned and
// huge-page advised from 2 MiB up) registered as fixed buffers on uring, as
// the merge executor's are.  The
// queue is kept full, across iterations too: after each reap, every finished
// request is requeued at the next offset.  Run time per shape comes from
// --benchmark_min_time.
//
//   BM_seq/<backend>/<op>/<bs>/<qd>   backend 0 psync, 1 uring; op 0 read, 1 write
//
// Environment:
//   VXM_BENCH_FILE  the file (default /var/tmp/vxm_io_bench.dat; kept between
//                   runs, refilled when its size differs)
//   VXM_BENCH_MIB   its size in MiB (default 512, at most 1024)
//
// psync runs min(qd, 16) worker threads so that queue depth means the same
// thing (requests in flight) for both backends.
#include <benchmark/benchmark.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io.h"

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kPerIter = 64 * kMiB; // bytes moved per benchmark iteration
constexpr uint64_t kMaxInflight = 128 * kMiB;

std::string g_path;
uint64_t g_size;

// Creates (or reuses) the data file: real blocks, not holes, so O_DIRECT
// reads touch the disk.
bool prepare_file()
{
	const char *p = getenv("VXM_BENCH_FILE");
	const char *m = getenv("VXM_BENCH_MIB");
	uint64_t mib = m ? strtoull(m, nullptr, 10) : 512;
	struct stat st;

	if (mib < 64)
		mib = 64;
	if (mib > 1024)
		mib = 1024;
	g_path = p ? p : "/var/tmp/vxm_io_bench.dat";
	g_size = mib * kMiB;
	if (stat(g_path.c_str(), &st) == 0 && (uint64_t)st.st_size == g_size)
		return true;
	int fd = open(g_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(g_path.c_str());
		return false;
	}
	std::vector<uint8_t> buf(8 * kMiB);
	for (size_t i = 0; i < buf.size(); i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 13);
	for (uint64_t off = 0; off < g_size; off += buf.size())
		if (pwrite(fd, buf.data(), buf.size(), (off_t)off) != (ssize_t)buf.size()) {
			perror("pwrite");
			close(fd);
			return false;
		}
	fsync(fd);
	close(fd);
	return true;
}

void BM_seq(benchmark::State &state)
{
	const bool uring = state.range(0) == 1;
	const bool write = state.range(1) == 1;
	const uint64_t bs = (uint64_t)state.range(2);
	const unsigned qd = (unsigned)state.range(3);
	struct vxm_io io;
	struct vxm_io_params p = {};
	struct vxm_topo_mem mem = {};

	p.queue_depth = qd;
	p.workers = qd < 16 ? qd : 16;
	int ret = vxm_io_init(&io, uring ? &vxm_io_uring_ops : &vxm_io_psync_ops, &p);
	if (ret < 0) {
		state.SkipWithError(uring ? "io_uring unavailable" : "psync init failed");
		return;
	}
	int f = vxm_io_open(&io, g_path.c_str(), (write ? VXM_O_RDWR : 0) | VXM_O_DIRECT);
	if (f < 0 || vxm_topo_alloc(nullptr, 0, bs * qd, &mem) < 0) {
		state.SkipWithError("cannot open the file or allocate buffers");
		vxm_io_fini(&io);
		return;
	}
	void *area = mem.p;
	size_t area_len = mem.len;
	const bool registered = vxm_io_register_bufs(&io, &area, &area_len, 1) == 0;
	std::vector<struct vxm_req> reqs(qd);
	std::vector<struct vxm_req *> done(qd), freel(qd);
	for (unsigned i = 0; i < qd; i++) {
		reqs[i] = {};
		reqs[i].op = write ? VXM_IO_WRITE : VXM_IO_READ;
		reqs[i].file = f;
		reqs[i].len = bs;
		reqs[i].buf = (uint8_t *)mem.p + i * bs;
		memset(reqs[i].buf, 0x5A, bs);
		freel[i] = &reqs[i];
	}
	uint64_t next = 0, total = 0, ops = 0;
	unsigned free_n = qd, inflight = 0;
	bool failed = false;

	// The queue stays full across iterations (as in fio); an iteration ends
	// once kPerIter more bytes have completed.
	for (auto _ : state) {
		uint64_t goal = total + kPerIter;
		while (total < goal && !failed) {
			while (free_n) {
				struct vxm_req *r = freel[--free_n];
				r->off = next;
				next += bs;
				if (next + bs > g_size)
					next = 0;
				if (vxm_io_queue(&io, r) < 0) {
					freel[free_n++] = r;
					break;
				}
				inflight++;
			}
			vxm_io_submit(&io);
			int n = vxm_io_reap(&io, 1, done.data(), qd);
			if (n <= 0) {
				failed = true;
				break;
			}
			for (int i = 0; i < n; i++) {
				if (done[i]->res != (int64_t)bs)
					failed = true;
				freel[free_n++] = done[i];
			}
			inflight -= (unsigned)n;
			total += (uint64_t)n * bs;
			ops += (uint64_t)n;
		}
	}
	while (inflight) { // not timed: the loop above is
		int n = vxm_io_reap(&io, 1, done.data(), qd);
		if (n <= 0)
			break;
		inflight -= (unsigned)n;
	}
	if (failed)
		state.SkipWithError("an I/O failed or came back short");
	state.SetBytesProcessed((int64_t)total);
	state.counters["IOPS"] = benchmark::Counter((double)ops, benchmark::Counter::kIsRate);
	state.counters["fixed_bufs"] = registered ? 1 : 0;
	state.counters["fixed_share"] = ops ? (double)io.stats.fixed_buf_ops / (double)ops : 0;
	state.counters["max_inflight"] = io.stats.max_inflight;
	vxm_io_fini(&io); // before the memory: the ring holds the registration
	vxm_topo_free(nullptr, &mem);
}

void shapes(benchmark::internal::Benchmark *b)
{
	for (int backend : { 0, 1 })
		for (int op : { 0, 1 })
			for (int64_t bs : { 4096, 65536, 1 << 20, 4 << 20 })
				for (int64_t qd : { 1, 8, 32, 128 })
					if ((uint64_t)(bs * qd) <= kMaxInflight)
						b->Args({ backend, op, bs, qd });
}

} // namespace

BENCHMARK(BM_seq)
	->Apply(shapes)
	->ArgNames({ "uring", "write", "bs", "qd" })
	->UseRealTime()
	->Unit(benchmark::kMillisecond); // --benchmark_min_time sets the duration

int main(int argc, char **argv)
{
	benchmark::Initialize(&argc, argv);
	if (benchmark::ReportUnrecognizedArguments(argc, argv))
		return 1;
	if (!prepare_file())
		return 1;
	benchmark::RunSpecifiedBenchmarks();
	benchmark::Shutdown();
	return 0;
}
