#include "parallel.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace onnxstream {
namespace {

thread_local bool t_inside = false;
thread_local int t_worker = 0;  // 0: the calling thread; pool workers 1..n-1

// Statistics (ONNXSTREAM_POOL_STATS=1, read once; otherwise one branch per chunk): per worker the items and
// chunks it ran and its thread CPU time inside them; per job (one parallel_for) its wall time and whether it
// had fewer chunks than threads (then some workers had nothing to do).
constexpr int kMaxStatWorkers = 64;
struct WorkerStats {
  std::atomic<uint64_t> items{0}, chunks{0}, cpu_ns{0};
};
WorkerStats g_worker_stats[kMaxStatWorkers];
std::atomic<uint64_t> g_jobs{0}, g_job_wall_ns{0}, g_short_jobs{0}, g_short_job_wall_ns{0}, g_inline_jobs{0};

bool pool_stats_on() {
  static const bool on = [] {
    const char* v = std::getenv("ONNXSTREAM_POOL_STATS");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  return on;
}

uint64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

// Workers sleep on a condition variable between jobs; a job is one parallel_for call.
struct Pool {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable wake, done;
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0, chunk = 0, next = 0;
  int active = 0;
  uint64_t generation = 0;
  bool quit = false;
  std::exception_ptr error;
  std::mutex call_mu;  // one parallel_for at a time (nested calls run inline)

  ~Pool() { resize(0); }

  void resize(int count) {
    {
      std::lock_guard<std::mutex> lock(mu);
      quit = true;
    }
    wake.notify_all();
    for (auto& t : workers) t.join();
    workers.clear();
    quit = false;
    for (int i = 0; i < count; i++) workers.emplace_back([this, i] {
      t_worker = i + 1;
      loop();
    });
  }

  // Take chunks until none are left. Called with `lock` held.
  void drain(std::unique_lock<std::mutex>& lock) {
    while (next < n) {
      int64_t b = next, e = std::min(n, b + chunk);
      next = e;
      active++;
      lock.unlock();
      const bool stats = pool_stats_on();
      const uint64_t cpu0 = stats ? thread_cpu_ns() : 0;
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> g(mu);
        if (!error) error = std::current_exception();
      }
      if (stats) {
        WorkerStats& w = g_worker_stats[std::min(t_worker, kMaxStatWorkers - 1)];
        w.items += uint64_t(e - b);
        w.chunks += 1;
        w.cpu_ns += thread_cpu_ns() - cpu0;
      }
      lock.lock();
      active--;
    }
  }

  void loop() {
    uint64_t seen = 0;
    t_inside = true;  // work done here that calls parallel_for again runs inline
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      wake.wait(lock, [&] { return quit || generation != seen; });
      if (quit) return;
      seen = generation;
      drain(lock);
      if (active == 0) done.notify_all();
    }
  }
};

Pool& pool() {
  static Pool p;
  return p;
}
int g_threads = 0;

}  // namespace

void set_num_threads(int n) {
  if (n <= 0) n = (int)std::max(1u, std::thread::hardware_concurrency());
  std::lock_guard<std::mutex> lock(pool().call_mu);
  g_threads = n;
  pool().resize(n - 1);  // the calling thread is the n-th worker
}

PoolStats pool_stats() {
  PoolStats s{num_threads(), g_jobs.load(), g_job_wall_ns.load(), g_short_jobs.load(), g_short_job_wall_ns.load(),
              g_inline_jobs.load(), {}};
  for (int i = 0; i < std::min(s.threads, kMaxStatWorkers); i++) {
    const WorkerStats& w = g_worker_stats[i];
    s.workers.push_back({w.items.load(), w.chunks.load(), w.cpu_ns.load()});
  }
  return s;
}

void reset_pool_stats() {
  for (WorkerStats& w : g_worker_stats) w.items = 0, w.chunks = 0, w.cpu_ns = 0;
  g_jobs = 0, g_job_wall_ns = 0, g_short_jobs = 0, g_short_job_wall_ns = 0, g_inline_jobs = 0;
}

int num_threads() {
  if (g_threads == 0) set_num_threads(0);
  return g_threads;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int threads = num_threads();
  grain = std::max<int64_t>(grain, 1);
  if (threads == 1 || n <= grain || t_inside) {
    if (pool_stats_on() && !t_inside) {  // a whole job on the calling thread
      const uint64_t cpu0 = thread_cpu_ns();
      fn(0, n);
      g_inline_jobs += 1;
      g_worker_stats[0].items += uint64_t(n);
      g_worker_stats[0].chunks += 1;
      g_worker_stats[0].cpu_ns += thread_cpu_ns() - cpu0;
      return;
    }
    fn(0, n);
    return;
  }
  Pool& p = pool();
  std::lock_guard<std::mutex> call(p.call_mu);
  // About 4 chunks per thread balances uneven chunks without much locking.
  int64_t chunk = std::max(grain, (n + 4 * threads - 1) / (4 * threads));
  std::unique_lock<std::mutex> lock(p.mu);
  p.fn = &fn;
  p.n = n;
  p.chunk = chunk;
  p.next = 0;
  p.error = nullptr;
  p.generation++;
  p.wake.notify_all();
  const auto wall0 = std::chrono::steady_clock::now();
  t_inside = true;
  p.drain(lock);
  t_inside = false;
  p.done.wait(lock, [&] { return p.active == 0 && p.next >= p.n; });
  p.fn = nullptr;
  if (pool_stats_on()) {
    const uint64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                                              wall0).count();
    g_jobs += 1;
    g_job_wall_ns += ns;
    if ((n + chunk - 1) / chunk < threads) {
      g_short_jobs += 1;
      g_short_job_wall_ns += ns;
    }
  }
  if (p.error) std::rethrow_exception(p.error);
}

}  // namespace onnxstream
