#include "parallel.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace onnxstream {
namespace {

thread_local bool t_inside = false;

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
    for (int i = 0; i < count; i++) workers.emplace_back([this] { loop(); });
  }

  // Take chunks until none are left. Called with `lock` held.
  void drain(std::unique_lock<std::mutex>& lock) {
    while (next < n) {
      int64_t b = next, e = std::min(n, b + chunk);
      next = e;
      active++;
      lock.unlock();
      try {
        (*fn)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> g(mu);
        if (!error) error = std::current_exception();
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

int num_threads() {
  if (g_threads == 0) set_num_threads(0);
  return g_threads;
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int threads = num_threads();
  grain = std::max<int64_t>(grain, 1);
  if (threads == 1 || n <= grain || t_inside) {
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
  t_inside = true;
  p.drain(lock);
  t_inside = false;
  p.done.wait(lock, [&] { return p.active == 0 && p.next >= p.n; });
  p.fn = nullptr;
  if (p.error) std::rethrow_exception(p.error);
}

}  // namespace onnxstream
