// A fixed pool of worker threads; ops split their outer loops with parallel_for.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace onnxstream {

void set_num_threads(int n);  // n <= 0: all cores
int num_threads();

// Calls fn(begin, end) on disjoint chunks covering [0, n); returns when all are done.
// Chunks hold at least `grain` items so tiny loops stay on the calling thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// Thread pool statistics, counted only with ONNXSTREAM_POOL_STATS=1 (bench/unet_work.py). Per worker (0 is the
// calling thread): items and chunks it ran and the thread CPU time spent in them. Jobs: parallel_for calls that
// used the pool, their wall time, and those split into fewer chunks than threads (some workers idle).
struct PoolWorkerStats {
  uint64_t items, chunks, cpu_ns;
};
struct PoolStats {
  int threads;
  uint64_t jobs, job_wall_ns, short_jobs, short_job_wall_ns, inline_jobs;
  std::vector<PoolWorkerStats> workers;
};
PoolStats pool_stats();
void reset_pool_stats();

}  // namespace onnxstream
