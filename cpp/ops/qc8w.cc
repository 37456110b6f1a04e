// Convert-time quantization of GEMM weights into qc8w blobs (layout: qc8w.h).
#include "ops/qc8w.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/microkernels.h"
#include "parallel.h"

namespace onnxstream {

int64_t qc8w_scales_offset(int64_t K, int64_t N) {
  return (N + (int64_t)kPanelWidth - 1) / (int64_t)kPanelWidth * (int64_t)kPanelWidth * K;
}

int64_t qc8w_blob_bytes(int64_t K, int64_t N) {
  return qc8w_scales_offset(K, N) + (N + (int64_t)kPanelWidth - 1) / (int64_t)kPanelWidth * (int64_t)kPanelWidth * 4;
}

void pack_gemm_b_qc8w(const Tensor& w, const Tensor& blob) {
  check(w.ndim == 2 && w.dtype == DType::f32, "pack_gemm_b_qc8w expects a [K, N] float32 weight");
  const int64_t K = w.shape[0], N = w.shape[1];
  check(blob.dtype == DType::i8 && blob.contiguous() && blob.numel() == qc8w_blob_bytes(K, N),
        "pack_gemm_b_qc8w: the blob must be contiguous int8 of qc8w_blob_bytes(K, N)");
  int8_t* panels = blob.ptr<int8_t>();
  float* scales = reinterpret_cast<float*>(panels + qc8w_scales_offset(K, N));  // offset is a multiple of 16
  const char* src = static_cast<const char*>(w.data);
  auto at = [&](int64_t k, int64_t n) {
    return *reinterpret_cast<const float*>(src + k * w.strides[0] + n * w.strides[1]);
  };
  const int64_t n_panels = (N + (int64_t)kPanelWidth - 1) / (int64_t)kPanelWidth;
  std::memset(scales, 0, (size_t)(n_panels * kPanelWidth) * 4);
  std::atomic<bool> finite{true};
  parallel_for(n_panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      const int64_t n0 = p * (int64_t)kPanelWidth, cols = std::min<int64_t>((int64_t)kPanelWidth, N - n0);
      float amax[kPanelWidth] = {}, scale[kPanelWidth] = {};
      bool ok = true;
      for (int64_t k = 0; k < K; k++)  // k outer: a panel's row segment is one cache line of a row-major weight
        for (int64_t j = 0; j < cols; j++) {
          const float v = std::fabs(at(k, n0 + j));
          ok = ok && v <= std::numeric_limits<float>::max();  // false for inf and NaN
          amax[j] = v > amax[j] ? v : amax[j];
        }
      if (!ok) finite = false;
      for (int64_t j = 0; j < cols; j++) {
        const float s = amax[j] / 127.0f;
        scales[n0 + j] = s > 0.0f ? s : 1.0f;  // all-zero column (or too small for a float scale)
        scale[j] = scales[n0 + j];
      }
      int8_t* panel = panels + p * K * (int64_t)kPanelWidth;  // [K][16], columns >= cols zero
      for (int64_t k = 0; k < K; k++) {
        int8_t* row = panel + k * (int64_t)kPanelWidth;
        for (int64_t j = 0; j < cols; j++) {
          const float q = std::nearbyint(at(k, n0 + j) / scale[j]);  // default rounding mode: half to even
          row[j] = (int8_t)std::fmin(127.0f, std::fmax(-127.0f, q));
        }
        for (int64_t j = cols; j < (int64_t)kPanelWidth; j++) row[j] = 0;
      }
    }
  });
  check(finite, "pack_gemm_b_qc8w: the weight holds inf or NaN, which int8 cannot represent");
}

}  // namespace onnxstream
