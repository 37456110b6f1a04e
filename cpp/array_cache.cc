#include "array_cache.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace onnxstream {
namespace {

constexpr size_t kMinCached = size_t(128) << 10;  // malloc maps blocks from 128 KB on (malloc_policy.cc)
// Between runs, freed blocks (a run's outputs, dropped by the caller) are kept up to this many bytes for the next
// run: a fresh output buffer costs a page fault per 4 KB, which for a small model is most of a run.
constexpr size_t kCarryBytes = size_t(32) << 20;
constexpr size_t kPage = 4096;

struct Cache {
  std::mutex mu;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // page-rounded size -> blocks
  size_t bytes = 0;
  bool enabled = false;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: arrays freed at interpreter exit still reach it
  return *c;
}

size_t rounded(size_t size) { return (size + kPage - 1) / kPage * kPage; }

// No array of a run is larger than the machine's memory: a model (an untrusted file) asking for one gets numpy's
// MemoryError, which names the node, rather than an OOM kill or swapping once the pages are touched.
size_t max_array_bytes() {
  static const size_t limit = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
  return limit;
}

void release_locked(Cache& c) {
  for (auto& entry : c.free_blocks)
    for (void* p : entry.second) std::free(p);
  c.free_blocks.clear();
  c.bytes = 0;
}

}  // namespace

void* array_cache_alloc(size_t size) {
  if (size < kMinCached) return std::malloc(size ? size : 1);
  if (size > max_array_bytes()) return nullptr;
  const size_t key = rounded(size);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.free_blocks.find(key);
  if (it != c.free_blocks.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    c.bytes -= key;
    return p;
  }
  release_locked(c);  // a miss: give the cached memory back before taking new memory
  return std::malloc(key);
}

void* array_cache_calloc(size_t nelem, size_t elsize) {
  if (elsize && nelem > (size_t)-1 / elsize) return nullptr;
  const size_t size = nelem * elsize;
  if (size < kMinCached) return std::calloc(nelem ? nelem : 1, elsize ? elsize : 1);
  void* p = array_cache_alloc(size);
  if (p) std::memset(p, 0, size);
  return p;
}

void* array_cache_realloc(void* ptr, size_t new_size) {
  if (new_size > max_array_bytes()) return nullptr;
  // Large blocks are plain malloc blocks of their rounded size, so realloc works on any of them.
  return std::realloc(ptr, new_size < kMinCached ? (new_size ? new_size : 1) : rounded(new_size));
}

void array_cache_free(void* ptr, size_t size) {
  if (!ptr) return;
  if (size < kMinCached) return std::free(ptr);  // small blocks never take the lock
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.enabled && c.bytes + rounded(size) > kCarryBytes) return std::free(ptr);
  c.free_blocks[rounded(size)].push_back(ptr);
  c.bytes += rounded(size);
}

void array_cache_enable(bool on) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.enabled = on;
  if (!on) release_locked(c);
}

size_t array_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.bytes;
}

}  // namespace onnxstream
