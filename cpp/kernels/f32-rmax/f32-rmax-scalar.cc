// f32-rmax scalar: the largest of x[0..n), -inf for n = 0. Four chains so the compares do not wait on each other.
#include <cmath>

#include "kernels/microkernels.h"

namespace onnxstream {

float f32_rmax_ukernel__scalar(size_t n, const float* x) {
  float m0 = -INFINITY, m1 = -INFINITY, m2 = -INFINITY, m3 = -INFINITY;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    m0 = x[i] > m0 ? x[i] : m0;
    m1 = x[i + 1] > m1 ? x[i + 1] : m1;
    m2 = x[i + 2] > m2 ? x[i + 2] : m2;
    m3 = x[i + 3] > m3 ? x[i + 3] : m3;
  }
  for (; i < n; i++) m0 = x[i] > m0 ? x[i] : m0;
  m0 = m1 > m0 ? m1 : m0;
  m2 = m3 > m2 ? m3 : m2;
  return m2 > m0 ? m2 : m0;
}

}  // namespace onnxstream
