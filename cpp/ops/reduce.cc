// Reductions, arg-reductions, softmax, cumsum and top-k along the middle axis of a contiguous [outer, n, inner] x.
// Work is split into (outer row, block of inner columns) tasks so both "reduce the last axis" (inner == 1) and
// "reduce a leading axis" (outer == 1) use every thread; each task keeps one accumulator per inner column.
#include "ops/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "parallel.h"

namespace onnxstream {
namespace {

constexpr int64_t kBlock = 256;  // inner columns per task

struct Dims {
  int64_t outer, n, inner;
};

Dims middle_dims(const Tensor& x, const char* what) {
  check(x.ndim == 3, std::string(what) + ": internal: x must be viewed as [outer, n, inner]");
  check(x.numel() == 0 || x.contiguous(), std::string(what) + ": internal: x must be contiguous");
  return {x.shape[0], x.shape[1], x.shape[2]};
}

void check_out(const Tensor& y, DType dtype, int64_t numel, const char* what) {
  check(numel == 0 || y.contiguous(), std::string(what) + ": internal: output must be contiguous");
  check(y.dtype == dtype, std::string(what) + ": internal: output dtype " + dtype_name(y.dtype) + ", expected " +
                              dtype_name(dtype));
  check(y.numel() == numel, std::string(what) + ": internal: output has the wrong number of elements");
}

// Calls fn(o, i0, i1) for every (outer row, inner block) in parallel. `cost` ~ work per column (for the grain).
template <typename F>
void for_blocks(const Dims& d, F fn) {
  int64_t blocks = (d.inner + kBlock - 1) / kBlock;
  int64_t per_task = std::min(d.inner, kBlock) * std::max<int64_t>(d.n, 1);
  int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(per_task, 1));
  parallel_for(d.outer * blocks, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      int64_t o = t / blocks, b = t % blocks;
      fn(o, b * kBlock, std::min(d.inner, (b + 1) * kBlock));
    }
  });
}

// Accumulator type: double for floating point, int64 for integers (ONNX integer reductions wrap like the type).
template <typename T>
using Acc = typename std::conditional<std::is_floating_point<T>::value, double, int64_t>::type;

template <typename T>
void reduce_typed(const std::string& op, const Tensor& x, const Tensor& y) {
  Dims d = middle_dims(x, "reduce");
  const T* xp = x.ptr<T>();
  T* yp = y.ptr<T>();
  using A = Acc<T>;
  const bool is_max = op == "max", is_min = op == "min";
  if (is_max || is_min) {
    // Empty: the identity (-inf/inf for floats, the type's extremes for integers).
    T init = is_max ? (std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                            : std::numeric_limits<T>::lowest())
                    : (std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity()
                                                            : std::numeric_limits<T>::max());
    for_blocks(d, [&](int64_t o, int64_t i0, int64_t i1) {
      T* out = yp + o * d.inner;
      for (int64_t i = i0; i < i1; i++) out[i] = init;
      for (int64_t j = 0; j < d.n; j++) {
        const T* row = xp + (o * d.n + j) * d.inner;
        for (int64_t i = i0; i < i1; i++) {
          T v = row[i], a = out[i];
          // NaN propagates: once out is NaN neither comparison replaces it; a NaN v replaces via v != v.
          bool take = is_max ? (v > a) : (v < a);
          if (take || v != v) out[i] = v;
        }
      }
    });
    return;
  }
  if (op == "log_sum_exp") {
    for_blocks(d, [&](int64_t o, int64_t i0, int64_t i1) {
      double mx[kBlock], acc[kBlock];
      for (int64_t i = i0; i < i1; i++) mx[i - i0] = -std::numeric_limits<double>::infinity(), acc[i - i0] = 0;
      for (int64_t j = 0; j < d.n; j++) {
        const T* row = xp + (o * d.n + j) * d.inner;
        for (int64_t i = i0; i < i1; i++) mx[i - i0] = std::max(mx[i - i0], (double)row[i]);
      }
      for (int64_t j = 0; j < d.n; j++) {
        const T* row = xp + (o * d.n + j) * d.inner;
        for (int64_t i = i0; i < i1; i++) {
          double m = (double)mx[i - i0];
          acc[i - i0] += std::isinf(m) ? ((double)row[i] == m ? 1.0 : 0.0) : std::exp((double)row[i] - m);
        }
      }
      T* out = yp + o * d.inner;
      for (int64_t i = i0; i < i1; i++) {
        double m = (double)mx[i - i0];
        out[i] = (T)(d.n == 0 ? -std::numeric_limits<double>::infinity() : m + std::log((double)acc[i - i0]));
      }
    });
    return;
  }
  int kind;  // 0 sum, 1 prod, 2 sum_square, 3 abs
  if (op == "sum" || op == "mean" || op == "log_sum") kind = 0;
  else if (op == "prod") kind = 1;
  else if (op == "sum_square" || op == "l2") kind = 2;
  else if (op == "l1") kind = 3;
  else throw Error("reduce: unknown op '" + op + "'");
  const int finish = op == "mean" ? 1 : op == "l2" ? 2 : op == "log_sum" ? 3 : 0;  // applied to the accumulator
  auto finish_one = [&](A a) -> T {
    if (finish == 1) return std::is_floating_point<T>::value ? (T)((double)a / (double)d.n) : (T)(d.n ? a / (A)d.n : 0);
    if (finish == 2) return (T)std::sqrt((double)a);
    if (finish == 3) return (T)std::log((double)a);
    return (T)a;
  };
  if (d.inner == 1) {  // reducing the last axis: one contiguous row per output, split across threads
    parallel_for(d.outer, std::max<int64_t>(1, 16384 / std::max<int64_t>(d.n, 1)), [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; o++) {
        const T* r = xp + o * d.n;
        A a = kind == 1 ? 1 : 0;
        switch (kind) {
          case 0: for (int64_t j = 0; j < d.n; j++) a += (A)r[j]; break;
          case 1: for (int64_t j = 0; j < d.n; j++) a *= (A)r[j]; break;
          case 2: for (int64_t j = 0; j < d.n; j++) a += (A)r[j] * (A)r[j]; break;
          default: for (int64_t j = 0; j < d.n; j++) a += r[j] < 0 ? -(A)r[j] : (A)r[j]; break;
        }
        yp[o] = finish_one(a);
      }
    });
    return;
  }
  for_blocks(d, [&](int64_t o, int64_t i0, int64_t i1) {
    A acc[kBlock];
    for (int64_t i = i0; i < i1; i++) acc[i - i0] = kind == 1 ? 1 : 0;
    for (int64_t j = 0; j < d.n; j++) {
      const T* row = xp + (o * d.n + j) * d.inner;
      const T* r = row + i0;
      int64_t m = i1 - i0;
      switch (kind) {
        case 0: for (int64_t i = 0; i < m; i++) acc[i] += (A)r[i]; break;
        case 1: for (int64_t i = 0; i < m; i++) acc[i] *= (A)r[i]; break;
        case 2: for (int64_t i = 0; i < m; i++) acc[i] += (A)r[i] * (A)r[i]; break;
        default: for (int64_t i = 0; i < m; i++) acc[i] += r[i] < 0 ? -(A)r[i] : (A)r[i]; break;
      }
    }
    T* out = yp + o * d.inner;
    for (int64_t i = i0; i < i1; i++) out[i] = finish_one(acc[i - i0]);
  });
}

template <typename F>
void with_reduce_type(DType t, const char* what, F f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::i8: return f(int8_t{});
    case DType::boolean: return f(bool{});  // ReduceMax/ReduceMin only (the Python side allows no other op)
    default: throw Error(std::string(what) + ": unsupported dtype " + dtype_name(t));
  }
}

}  // namespace

void reduce(const std::string& op, const Tensor& x, const Tensor& y) {
  Dims d = middle_dims(x, "reduce");
  check_out(y, x.dtype, d.outer * d.inner, "reduce");
  check(x.dtype != DType::boolean || op == "max" || op == "min", "reduce: '" + op + "' does not take bool tensors");
  with_reduce_type(x.dtype, "reduce", [&](auto t) { reduce_typed<decltype(t)>(op, x, y); });
}

void arg_reduce(bool is_max, bool select_last, const Tensor& x, const Tensor& y) {
  Dims d = middle_dims(x, "arg_reduce");
  check(d.n > 0, "ArgMax/ArgMin: the reduced axis is empty");
  check_out(y, DType::i64, d.outer * d.inner, "arg_reduce");
  with_reduce_type(x.dtype, "arg_reduce", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    int64_t* yp = y.ptr<int64_t>();
    for_blocks(d, [&](int64_t o, int64_t i0, int64_t i1) {
      T best[kBlock];
      int64_t* out = yp + o * d.inner;
      const T* first = xp + o * d.n * d.inner;
      for (int64_t i = i0; i < i1; i++) best[i - i0] = first[i], out[i] = 0;
      for (int64_t j = 1; j < d.n; j++) {
        const T* row = xp + (o * d.n + j) * d.inner;
        for (int64_t i = i0; i < i1; i++) {
          T v = row[i], b = best[i - i0];
          bool take = is_max ? (select_last ? v >= b : v > b) : (select_last ? v <= b : v < b);
          if (take) best[i - i0] = v, out[i] = j;
        }
      }
    });
  });
}

namespace {

template <typename T>
void softmax_typed(int kind, const Dims& d, const Tensor& x, const Tensor& y) {
  const T* xp = x.ptr<T>();
  T* yp = y.ptr<T>();
  int64_t grain = std::max<int64_t>(1, 16384 / d.n);
  parallel_for(d.outer * d.inner, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      int64_t o = r / d.inner, i = r % d.inner, s = d.inner;
      const T* in = xp + o * d.n * s + i;
      T* out = yp + o * d.n * s + i;
      T mx = in[0];
      int64_t arg = 0;
      for (int64_t j = 1; j < d.n; j++)
        if (in[j * s] > mx) mx = in[j * s], arg = j;
      if (kind == 2) {
        for (int64_t j = 0; j < d.n; j++) out[j * s] = j == arg ? T(1) : T(0);
        continue;
      }
      double sum = 0;
      if (kind == 0) {
        for (int64_t j = 0; j < d.n; j++) {
          T e = std::exp(in[j * s] - mx);
          out[j * s] = e;
          sum += e;
        }
        T inv = (T)(1.0 / sum);
        for (int64_t j = 0; j < d.n; j++) out[j * s] *= inv;
      } else {
        for (int64_t j = 0; j < d.n; j++) sum += std::exp((double)in[j * s] - mx);
        T shift = mx + (T)std::log(sum);
        for (int64_t j = 0; j < d.n; j++) out[j * s] = in[j * s] - shift;
      }
    }
  });
}

}  // namespace

void softmax(const std::string& op, const Tensor& x, const Tensor& y) {
  Dims d = middle_dims(x, "softmax");
  check(x.dtype == DType::f32 || x.dtype == DType::f64,
        std::string("softmax: dtype ") + dtype_name(x.dtype) + " is not supported (float32/float64 only)");
  check_out(y, x.dtype, x.numel(), "softmax");
  int kind = op == "softmax" ? 0 : op == "log_softmax" ? 1 : op == "hardmax" ? 2 : -1;
  check(kind >= 0, "softmax: unknown op '" + op + "'");
  if (d.n == 0) return;
  if (x.dtype == DType::f32) softmax_typed<float>(kind, d, x, y);
  else softmax_typed<double>(kind, d, x, y);
}

void cumsum(const Tensor& x, const Tensor& y, bool exclusive, bool reverse) {
  Dims d = middle_dims(x, "cumsum");
  check_out(y, x.dtype, x.numel(), "cumsum");
  with_reduce_type(x.dtype, "cumsum", [&](auto tag) {
    using T = decltype(tag);
    using A = Acc<T>;
    const T* xp = x.ptr<T>();
    T* yp = y.ptr<T>();
    for_blocks(d, [&](int64_t o, int64_t i0, int64_t i1) {
      A acc[kBlock] = {};
      for (int64_t step = 0; step < d.n; step++) {
        int64_t j = reverse ? d.n - 1 - step : step;
        const T* row = xp + (o * d.n + j) * d.inner;
        T* out = yp + (o * d.n + j) * d.inner;
        for (int64_t i = i0; i < i1; i++) {
          A v = (A)row[i];
          if (exclusive) out[i] = (T)acc[i - i0], acc[i - i0] += v;
          else acc[i - i0] += v, out[i] = (T)acc[i - i0];
        }
      }
    });
  });
}

void topk(const Tensor& x, int64_t k, bool largest, const Tensor& values, const Tensor& indices) {
  Dims d = middle_dims(x, "topk");
  check(k >= 0 && k <= d.n, "TopK: k = " + std::to_string(k) + " is outside [0, " + std::to_string(d.n) + "]");
  check_out(values, x.dtype, d.outer * k * d.inner, "topk");
  check_out(indices, DType::i64, d.outer * k * d.inner, "topk");
  with_reduce_type(x.dtype, "topk", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    T* vp = values.ptr<T>();
    int64_t* ip = indices.ptr<int64_t>();
    int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(d.n, 1));
    parallel_for(d.outer * d.inner, grain, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> order(d.n);
      for (int64_t r = r0; r < r1; r++) {
        int64_t o = r / d.inner, i = r % d.inner, s = d.inner;
        const T* in = xp + o * d.n * s + i;
        std::iota(order.begin(), order.end(), 0);
        // Ties: the lower index first (as the ONNX spec and reference do).
        auto before = [&](int64_t a, int64_t b) {
          T va = in[a * s], vb = in[b * s];
          if (va != vb) return largest ? va > vb : va < vb;
          return a < b;
        };
        std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
        for (int64_t j = 0; j < k; j++) {
          int64_t at = (o * k + j) * s + i;
          vp[at] = in[order[j] * s];
          ip[at] = order[j];
        }
      }
    });
  });
}

}  // namespace onnxstream
