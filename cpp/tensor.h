// The one tensor struct: a typed, strided view of memory owned by someone else (numpy or the weight reader).
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace onnxstream {

enum class DType : uint8_t { f32, f16, f64, i8, u8, i16, u16, i32, u32, i64, u64, boolean };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: case DType::u64: return 8;
    case DType::f32: case DType::i32: case DType::u32: return 4;
    case DType::f16: case DType::i16: case DType::u16: return 2;
    default: return 1;
  }
}

const char* dtype_name(DType t);

constexpr int kMaxDims = 8;

struct Tensor {
  DType dtype = DType::f32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};    // elements per axis
  int64_t strides[kMaxDims] = {};  // bytes per step along each axis (0 for a broadcast axis)
  void* data = nullptr;

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
  }
  bool contiguous() const {
    int64_t s = (int64_t)dtype_size(dtype);
    for (int i = ndim - 1; i >= 0; i--) {
      if (shape[i] != 1 && strides[i] != s) return false;
      s *= shape[i];
    }
    return true;
  }
  template <typename T> T* ptr() const { return static_cast<T*>(data); }
};

// Thrown for bad arguments; bindings turn it into ValueError.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline void check(bool ok, const std::string& what) {
  if (!ok) throw Error(what);
}

}  // namespace onnxstream
