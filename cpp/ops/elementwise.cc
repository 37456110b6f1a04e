#include "ops/elementwise.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "dispatch.h"
#include "half.h"
#include "ops/strided.h"

namespace onnxstream {
namespace {

// Calls f(T{}) with T the C++ type of dtype t.
template <typename F>
void with_type(DType t, F f) {
  switch (t) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::i8: return f(int8_t{});
    case DType::u8: return f(uint8_t{});
    case DType::i16: return f(int16_t{});
    case DType::u16: return f(uint16_t{});
    case DType::i32: return f(int32_t{});
    case DType::u32: return f(uint32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u64: return f(uint64_t{});
    case DType::boolean: return f(bool{});
    default: throw Error(std::string("elementwise ops do not support dtype ") + dtype_name(t));
  }
}

// out[i] = f(in[i]) along one row.
template <typename I, typename O, typename F>
void map1(const Tensor& x, const Tensor& y, F f) {
  std::array<const Tensor*, 2> ts = {&y, &x};
  RowWalk<2>(ts).run(ts, [&](std::array<char*, 2> p, std::array<int64_t, 2> s, int64_t n) {
    O* o = reinterpret_cast<O*>(p[0]);
    const char* a = p[1];
    if (s[0] == (int64_t)sizeof(O) && s[1] == (int64_t)sizeof(I)) {
      const I* ai = reinterpret_cast<const I*>(a);
      for (int64_t i = 0; i < n; i++) o[i] = f(ai[i]);
    } else {
      for (int64_t i = 0; i < n; i++)
        *reinterpret_cast<O*>(p[0] + i * s[0]) = f(*reinterpret_cast<const I*>(a + i * s[1]));
    }
  });
}

// out[i] = f(a[i], b[i]) along one row, with fast paths for contiguous rows and a broadcast scalar b.
template <typename I, typename O, typename F>
void map2(const Tensor& a, const Tensor& b, const Tensor& y, F f) {
  std::array<const Tensor*, 3> ts = {&y, &a, &b};
  RowWalk<3>(ts).run(ts, [&](std::array<char*, 3> p, std::array<int64_t, 3> s, int64_t n) {
    O* o = reinterpret_cast<O*>(p[0]);
    const I* ai = reinterpret_cast<const I*>(p[1]);
    const I* bi = reinterpret_cast<const I*>(p[2]);
    const int64_t e = sizeof(I);
    if (s[0] == (int64_t)sizeof(O) && s[1] == e && s[2] == e) {
      for (int64_t i = 0; i < n; i++) o[i] = f(ai[i], bi[i]);
    } else if (s[0] == (int64_t)sizeof(O) && s[1] == e && s[2] == 0) {
      const I bv = *bi;
      for (int64_t i = 0; i < n; i++) o[i] = f(ai[i], bv);
    } else {
      for (int64_t i = 0; i < n; i++)
        *reinterpret_cast<O*>(p[0] + i * s[0]) =
            f(*reinterpret_cast<const I*>(p[1] + i * s[1]), *reinterpret_cast<const I*>(p[2] + i * s[2]));
    }
  });
}

// Calls f(g) with g the float function of op (alpha, beta: the op's attributes); false for non-float ops.
template <typename F>
bool with_float_op(UnaryOp op, float alpha, float beta, F f) {
  switch (op) {
    case UnaryOp::relu: f([](float x) { return x > 0 ? x : 0.0f; }); return true;
    case UnaryOp::sigmoid: f([](float x) { return 1.0f / (1.0f + std::exp(-x)); }); return true;
    case UnaryOp::tanh: f([](float x) { return std::tanh(x); }); return true;
    case UnaryOp::exp: f([](float x) { return std::exp(x); }); return true;
    case UnaryOp::log: f([](float x) { return std::log(x); }); return true;
    case UnaryOp::sqrt: f([](float x) { return std::sqrt(x); }); return true;
    case UnaryOp::sin: f([](float x) { return std::sin(x); }); return true;
    case UnaryOp::cos: f([](float x) { return std::cos(x); }); return true;
    case UnaryOp::tan: f([](float x) { return std::tan(x); }); return true;
    case UnaryOp::asin: f([](float x) { return std::asin(x); }); return true;
    case UnaryOp::acos: f([](float x) { return std::acos(x); }); return true;
    case UnaryOp::atan: f([](float x) { return std::atan(x); }); return true;
    case UnaryOp::sinh: f([](float x) { return std::sinh(x); }); return true;
    case UnaryOp::cosh: f([](float x) { return std::cosh(x); }); return true;
    case UnaryOp::asinh: f([](float x) { return std::asinh(x); }); return true;
    case UnaryOp::acosh: f([](float x) { return std::acosh(x); }); return true;
    case UnaryOp::atanh: f([](float x) { return std::atanh(x); }); return true;
    case UnaryOp::erf: f([](float x) { return std::erf(x); }); return true;
    case UnaryOp::neg: f([](float x) { return -x; }); return true;
    case UnaryOp::abs: f([](float x) { return std::fabs(x); }); return true;
    case UnaryOp::reciprocal: f([](float x) { return 1.0f / x; }); return true;
    case UnaryOp::floor: f([](float x) { return std::floor(x); }); return true;
    case UnaryOp::ceil: f([](float x) { return std::ceil(x); }); return true;
    case UnaryOp::round: f([](float x) { return std::nearbyint(x); }); return true;  // half to even
    case UnaryOp::sign: f([](float x) { return x > 0 ? 1.0f : (x < 0 ? -1.0f : (x == 0 ? 0.0f : x)); }); return true;
    case UnaryOp::softplus: f([](float x) { return x > 20 ? x : std::log1p(std::exp(x)); }); return true;
    case UnaryOp::softsign: f([](float x) { return x / (1.0f + std::fabs(x)); }); return true;
    case UnaryOp::leaky_relu: f([alpha](float x) { return x >= 0 ? x : alpha * x; }); return true;
    case UnaryOp::elu: f([alpha](float x) { return x >= 0 ? x : alpha * (std::exp(x) - 1.0f); }); return true;
    case UnaryOp::celu:
      f([alpha](float x) { return std::max(0.0f, x) + std::min(0.0f, alpha * (std::exp(x / alpha) - 1.0f)); });
      return true;
    case UnaryOp::selu:  // alpha, gamma = beta
      f([alpha, beta](float x) { return x > 0 ? beta * x : beta * (alpha * std::exp(x) - alpha); });
      return true;
    case UnaryOp::hard_sigmoid:
      f([alpha, beta](float x) { return std::max(0.0f, std::min(1.0f, alpha * x + beta)); });
      return true;
    case UnaryOp::hard_swish: f([](float x) { return x * std::max(0.0f, std::min(1.0f, x / 6.0f + 0.5f)); }); return true;
    case UnaryOp::thresholded_relu: f([alpha](float x) { return x > alpha ? x : 0.0f; }); return true;
    case UnaryOp::mish: f([](float x) { return x * std::tanh(x > 20 ? x : std::log1p(std::exp(x))); }); return true;
    case UnaryOp::silu: f([](float x) { return x / (1.0f + std::exp(-x)); }); return true;
    case UnaryOp::gelu: f([](float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }); return true;
    case UnaryOp::gelu_tanh:
      f([](float x) { return 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x))); });
      return true;
    case UnaryOp::clip: f([alpha, beta](float x) { return x != x ? x : std::min(beta, std::max(alpha, x)); }); return true;
    default: return false;
  }
}

// The f32-vunary kernel computing op, with its parameters; false when there is none.
bool vector_op(UnaryOp op, float alpha, float beta, VUnaryOp* vop, VUnaryParams* p) {
  *p = {alpha, beta};
  switch (op) {
    case UnaryOp::relu: *vop = kVClamp, *p = {0.0f, INFINITY}; return true;
    case UnaryOp::clip: *vop = kVClamp; return true;
    case UnaryOp::leaky_relu: *vop = kVLeakyRelu; return true;
    case UnaryOp::hard_sigmoid: *vop = kVHardSigmoid; return true;
    case UnaryOp::hard_swish: *vop = kVHardSwish; return true;
    case UnaryOp::sigmoid: *vop = kVSigmoid; return true;
    case UnaryOp::silu: *vop = kVSilu; return true;
    case UnaryOp::tanh: *vop = kVTanh; return true;
    case UnaryOp::exp: *vop = kVExp; return true;
    case UnaryOp::erf: *vop = kVErf; return true;
    case UnaryOp::gelu: *vop = kVGelu; return true;
    case UnaryOp::sqrt: *vop = kVSqrt; return true;
    case UnaryOp::abs: *vop = kVAbs; return true;
    case UnaryOp::neg: *vop = kVNeg; return true;
    default: return false;
  }
}

const char* const kUnaryNames[] = {
    "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh",
    "asinh", "acosh", "atanh", "erf", "neg", "abs", "reciprocal", "floor", "ceil", "round", "sign", "softplus",
    "softsign", "leaky_relu", "elu", "celu", "selu", "hard_sigmoid", "hard_swish", "thresholded_relu", "mish", "silu",
    "gelu", "gelu_tanh", "clip", "not", "bitwise_not", "isnan", "isinf", "isposinf", "isneginf"};
static_assert(sizeof(kUnaryNames) / sizeof(kUnaryNames[0]) == (size_t)UnaryOp::count, "a name per unary op");

template <typename T>
void int_unary(UnaryOp op, const Tensor& x, const Tensor& y, float alpha, float beta) {
  if (op == UnaryOp::neg) return map1<T, T>(x, y, [](T v) { return (T)-v; });
  if (op == UnaryOp::abs) return map1<T, T>(x, y, [](T v) { return v < 0 ? (T)-v : v; });
  if (op == UnaryOp::sign) return map1<T, T>(x, y, [](T v) { return (T)(v > 0 ? 1 : (v < 0 ? -1 : 0)); });
  if (op == UnaryOp::relu) return map1<T, T>(x, y, [](T v) { return v > 0 ? v : (T)0; });
  if (op == UnaryOp::bitwise_not) return map1<T, T>(x, y, [](T v) { return (T)~v; });
  if (op == UnaryOp::clip) {
    // Integer bounds arrive as floats; they are exact for the int32/int8 ranges the ONNX tests use.
    T lo = alpha <= (float)std::numeric_limits<T>::lowest() ? std::numeric_limits<T>::lowest() : (T)alpha;
    T hi = beta >= (float)std::numeric_limits<T>::max() ? std::numeric_limits<T>::max() : (T)beta;
    return map1<T, T>(x, y, [lo, hi](T v) { return v < lo ? lo : (v > hi ? hi : v); });
  }
  throw Error(std::string("unary op '") + kUnaryNames[(int)op] + "' is not defined for integer tensors");
}

template <typename T>
T pow_int(T base, T exp) {
  if (exp < 0) return base == 1 ? 1 : 0;
  T r = 1;
  while (exp) {
    if (exp & 1) r *= base;
    base *= base;
    exp >>= 1;
  }
  return r;
}

const char* const kBinaryNames[] = {"add", "sub", "mul", "div", "max", "min", "equal", "less", "greater",
                                    "less_equal", "greater_equal", "prelu", "pow", "fmod", "mod", "and", "or", "xor",
                                    "bitwise_and", "bitwise_or", "bitwise_xor", "shift_left", "shift_right"};
static_assert(sizeof(kBinaryNames) / sizeof(kBinaryNames[0]) == (size_t)BinaryOp::count, "a name per binary op");

// float32 add/sub/mul/div/max/min: the f32-vbinary kernel on every run whose operands are contiguous or one
// broadcast value; other strides go element by element through the same kernel.
bool vector_binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) {
  if ((int)op >= kVBinaryOps || a.dtype != DType::f32 || y.dtype != DType::f32) return false;
  const int code = (int)op;  // BinaryOp starts with the VBinaryOp order
  const VBinaryUkernel ukernel = vbinary_config().ukernel[code];
  std::array<const Tensor*, 3> ts = {&y, &a, &b};
  RowWalk<3>(ts).run(ts, [&](std::array<char*, 3> p, std::array<int64_t, 3> s, int64_t n) {
    const float* pa = reinterpret_cast<const float*>(p[1]);
    const float* pb = reinterpret_cast<const float*>(p[2]);
    float* py = reinterpret_cast<float*>(p[0]);
    if (s[0] == 4 && (s[1] == 4 || s[1] == 0) && (s[2] == 4 || s[2] == 0)) {
      if (s[1] == 0 && s[2] == 0) {  // both broadcast along this row: one value
        ukernel(1, pa, 1, pb, 1, py);
        std::fill(py + 1, py + n, py[0]);
        return;
      }
      return ukernel((size_t)n, pa, s[1] == 0, pb, s[2] == 0, py);
    }
    for (int64_t i = 0; i < n; i++)
      ukernel(1, reinterpret_cast<const float*>(p[1] + i * s[1]), 0, reinterpret_cast<const float*>(p[2] + i * s[2]), 0,
              reinterpret_cast<float*>(p[0] + i * s[0]));
  });
  return true;
}

template <typename T>
void typed_binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) {
  constexpr bool is_float = std::is_floating_point<T>::value;
  if (vector_binary(op, a, b, y)) return;
  if (op == BinaryOp::add) return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u + v); });
  if (op == BinaryOp::sub) return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u - v); });
  if (op == BinaryOp::mul) return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u * v); });
  if (op == BinaryOp::div) {
    if constexpr (!is_float) {
      check(y.dtype != DType::boolean, "Div is not defined for bool");
      return map2<T, T>(a, b, y, [](T u, T v) { return v == 0 ? (T)0 : (T)(u / v); });
    } else {
      return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u / v); });
    }
  }
  if (op == BinaryOp::max) return map2<T, T>(a, b, y, [](T u, T v) { return (u != u || u > v) ? u : v; });
  if (op == BinaryOp::min) return map2<T, T>(a, b, y, [](T u, T v) { return (u != u || u < v) ? u : v; });
  if (op == BinaryOp::equal) return map2<T, bool>(a, b, y, [](T u, T v) { return u == v; });
  if (op == BinaryOp::less) return map2<T, bool>(a, b, y, [](T u, T v) { return u < v; });
  if (op == BinaryOp::greater) return map2<T, bool>(a, b, y, [](T u, T v) { return u > v; });
  if (op == BinaryOp::less_equal) return map2<T, bool>(a, b, y, [](T u, T v) { return u <= v; });
  if (op == BinaryOp::greater_equal) return map2<T, bool>(a, b, y, [](T u, T v) { return u >= v; });
  if (op == BinaryOp::prelu) return map2<T, T>(a, b, y, [](T u, T v) { return u < 0 ? (T)(u * v) : u; });
  if (op == BinaryOp::pow) {
    if constexpr (is_float) return map2<T, T>(a, b, y, [](T u, T v) { return (T)std::pow(u, v); });
    else return map2<T, T>(a, b, y, [](T u, T v) { return pow_int<T>(u, v); });
  }
  if (op == BinaryOp::fmod) {  // sign of the dividend, like C fmod
    if constexpr (is_float) return map2<T, T>(a, b, y, [](T u, T v) { return (T)std::fmod(u, v); });
    else return map2<T, T>(a, b, y, [](T u, T v) { return v == 0 ? (T)0 : (T)(u % v); });
  }
  if (op == BinaryOp::mod) {  // sign of the divisor, like Python %
    if constexpr (is_float) {
      return map2<T, T>(a, b, y, [](T u, T v) {
        T r = std::fmod(u, v);
        return (r != 0 && ((r < 0) != (v < 0))) ? (T)(r + v) : r;
      });
    } else {
      return map2<T, T>(a, b, y, [](T u, T v) {
        if (v == 0) return (T)0;
        T r = (T)(u % v);
        return (r != 0 && ((r < 0) != (v < 0))) ? (T)(r + v) : r;
      });
    }
  }
  if constexpr (!is_float) {
    if (op == BinaryOp::and_) return map2<T, bool>(a, b, y, [](T u, T v) { return u && v; });
    if (op == BinaryOp::or_) return map2<T, bool>(a, b, y, [](T u, T v) { return u || v; });
    if (op == BinaryOp::xor_) return map2<T, bool>(a, b, y, [](T u, T v) { return (bool)u != (bool)v; });
    if (op == BinaryOp::bitwise_and) return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u & v); });
    if (op == BinaryOp::bitwise_or) return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u | v); });
    if (op == BinaryOp::bitwise_xor) return map2<T, T>(a, b, y, [](T u, T v) { return (T)(u ^ v); });
    if constexpr (!std::is_same<T, bool>::value) {
      // Shifts by a negative amount or by the bit width or more give the full-width result: 0, or -1 when an
      // arithmetic right shift of a negative value fills every bit (what the ONNX reference computes).
      using U = typename std::make_unsigned<T>::type;
      constexpr int64_t width = 8 * sizeof(T);
      if (op == BinaryOp::shift_left)
        return map2<T, T>(a, b, y, [](T u, T v) { return (T)(((int64_t)v < 0 || (int64_t)v >= width) ? 0 : (T)((U)u << v)); });
      if (op == BinaryOp::shift_right)
        return map2<T, T>(a, b, y, [](T u, T v) {
          return (T)(((int64_t)v < 0 || (int64_t)v >= width) ? (u < 0 ? (T)-1 : (T)0) : (T)(u >> v));
        });
    }
  }
  throw Error(std::string("binary op '") + kBinaryNames[(int)op] + "' is not defined for dtype " + dtype_name(a.dtype));
}

template <typename I, typename O>
O convert(I v) {
  if constexpr (std::is_same<O, bool>::value) return v != I(0);
  else if constexpr (std::is_floating_point<I>::value && !std::is_floating_point<O>::value) {
    // Out-of-range and NaN float->int conversions are undefined in C++; saturate like numpy does in practice.
    if (!(v == v)) return std::numeric_limits<O>::min();
    if (v >= (I)std::numeric_limits<O>::max()) return std::numeric_limits<O>::max();
    if (v <= (I)std::numeric_limits<O>::lowest()) return std::numeric_limits<O>::lowest();
    return (O)v;
  } else return (O)v;
}

}  // namespace

const char* dtype_name(DType t) {
  static const char* names[] = {"float32", "float16", "float64", "int8", "uint8", "int16",
                                "uint16",  "int32",   "uint32",  "int64", "uint64", "bool"};
  return names[(int)t];
}

int unary_code(const std::string& name) {
  for (int i = 0; i < (int)UnaryOp::count; i++)
    if (name == kUnaryNames[i]) return i;
  throw Error("unknown unary op '" + name + "'");
}

void unary(UnaryOp op, const Tensor& x, const Tensor& y, float alpha, float beta) {
  check((int)op >= 0 && op < UnaryOp::count, "unary: bad op code");
  const std::string name = kUnaryNames[(int)op];
  if (op == UnaryOp::isnan || op == UnaryOp::isinf || op == UnaryOp::isposinf || op == UnaryOp::isneginf) {
    check(x.dtype == DType::f32, name + " expects float32");
    if (op == UnaryOp::isnan) return map1<float, bool>(x, y, [](float v) { return v != v; });
    if (op == UnaryOp::isinf) return map1<float, bool>(x, y, [](float v) { return std::isinf(v); });
    if (op == UnaryOp::isposinf) return map1<float, bool>(x, y, [](float v) { return std::isinf(v) && v > 0; });
    return map1<float, bool>(x, y, [](float v) { return std::isinf(v) && v < 0; });
  }
  check(x.dtype == y.dtype, "unary op '" + name + "': input and output dtypes differ");
  if (op == UnaryOp::not_) {
    check(x.dtype == DType::boolean, "Not expects bool");
    return map1<bool, bool>(x, y, [](bool v) { return !v; });
  }
  if (x.dtype == DType::f32) {
    VUnaryOp vop;
    VUnaryParams params;
    if (vector_op(op, alpha, beta, &vop, &params)) {  // the vector kernel on contiguous runs, split across threads
      const VUnaryUkernel ukernel = vunary_config().ukernel[vop];
      std::array<const Tensor*, 2> ts = {&y, &x};
      return RowWalk<2>(ts).run(ts, [&](std::array<char*, 2> p, std::array<int64_t, 2> s, int64_t n) {
        if (s[0] == 4 && s[1] == 4) return ukernel((size_t)n, reinterpret_cast<const float*>(p[1]),
                                                   reinterpret_cast<float*>(p[0]), &params);
        for (int64_t i = 0; i < n; i++)
          ukernel(1, reinterpret_cast<const float*>(p[1] + i * s[1]), reinterpret_cast<float*>(p[0] + i * s[0]), &params);
      });
    }
    if (with_float_op(op, alpha, beta, [&](auto f) { map1<float, float>(x, y, f); })) return;
  }
  if (x.dtype == DType::f64 && with_float_op(op, alpha, beta, [&](auto f) {
        map1<double, double>(x, y, [&f](double v) { return (double)f((float)v); });
      }))
    return;
  with_type(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same<T, bool>::value || std::is_floating_point<T>::value) {
      throw Error("unary op '" + name + "' is not defined for dtype " + dtype_name(x.dtype));
    } else {
      int_unary<T>(op, x, y, alpha, beta);
    }
  });
}

int binary_code(const std::string& name) {
  for (int i = 0; i < (int)BinaryOp::count; i++)
    if (name == kBinaryNames[i]) return i;
  throw Error("unknown binary op '" + name + "'");
}

void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& y) {
  check((int)op >= 0 && op < BinaryOp::count, "binary: bad op code");
  check(a.dtype == b.dtype, std::string("binary op '") + kBinaryNames[(int)op] + "': input dtypes differ (" +
                                dtype_name(a.dtype) + " vs " + dtype_name(b.dtype) + ")");
  with_type(a.dtype, [&](auto tag) { typed_binary<decltype(tag)>(op, a, b, y); });
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& y) {
  check(cond.dtype == DType::boolean, "Where: condition must be bool");
  check(a.dtype == b.dtype && a.dtype == y.dtype, "Where: branches must share a dtype");
  std::array<const Tensor*, 4> ts = {&y, &cond, &a, &b};
  size_t es = dtype_size(y.dtype);
  RowWalk<4>(ts).run(ts, [&](std::array<char*, 4> p, std::array<int64_t, 4> s, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
      const char* src = *reinterpret_cast<const bool*>(p[1] + i * s[1]) ? p[2] + i * s[2] : p[3] + i * s[3];
      std::memcpy(p[0] + i * s[0], src, es);
    }
  });
}

void cast(const Tensor& x, const Tensor& y) {
  if (x.dtype == DType::f16) {
    return with_type(y.dtype, [&](auto tag) {
      using O = decltype(tag);
      map1<uint16_t, O>(x, y, [](uint16_t h) { return convert<float, O>(half_to_float(h)); });
    });
  }
  if (y.dtype == DType::f16) {
    return with_type(x.dtype, [&](auto tag) {
      using I = decltype(tag);
      map1<I, uint16_t>(x, y, [](I v) { return float_to_half(convert<I, float>(v)); });
    });
  }
  with_type(x.dtype, [&](auto itag) {
    using I = decltype(itag);
    with_type(y.dtype, [&](auto otag) {
      using O = decltype(otag);
      map1<I, O>(x, y, [](I v) { return convert<I, O>(v); });
    });
  });
}

}  // namespace onnxstream
