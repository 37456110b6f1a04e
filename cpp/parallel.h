// A fixed pool of worker threads; ops split their outer loops with parallel_for.
#pragma once
#include <cstdint>
#include <functional>

namespace onnxstream {

void set_num_threads(int n);  // n <= 0: all cores
int num_threads();

// Calls fn(begin, end) on disjoint chunks covering [0, n); returns when all are done.
// Chunks hold at least `grain` items so tiny loops stay on the calling thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace onnxstream
