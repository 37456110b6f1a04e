// Microkernel signatures, declarations (expanded from each folder's .inc list) and the ISA filter for the lists.
#pragma once
#include <cstddef>
#include <cstdint>

namespace onnxstream {

// GEMM microkernel: for i < mr <= MR, j < nc <= NR,
//   c[i][j] = (accumulate ? c[i][j] : bias ? bias[j] : 0) + sum_{k < kc} a[i][k] * w[k][j]
// a: mr rows of kc floats, a_stride bytes apart. c: mr rows, c_stride bytes apart.
// w: NR/16 packed panels, each [kc][16] (float32 for f32-gemm, fp16 bits for f32-f16w-gemm), panel p at
//    w + p * kc * 16 elements; only the panels holding columns < nc are read. Columns >= nc of a panel are zero.
using GemmUkernel = void (*)(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                             float* c, size_t c_stride, const float* bias, int accumulate);

// GEMM microkernel over int8 weights with per-column scales (qc8w): for i < mr <= MR, j < nc <= NR,
//   c[i][j] = (accumulate ? c[i][j] : bias ? bias[j] : 0) + scale[j] * sum_{k < kc} a[i][k] * float(w[k][j])
// w: NR/16 panels [kc][16] of int8 as for GemmUkernel; scale: the nc columns' scales (scale[j] read for j < nc).
// The scale multiplies each kc block's partial sum, so K blocking (accumulate = 1 after the first block) gives
// sum over blocks of scale * partial = scale * full sum.
using GemmQc8wUkernel = void (*)(size_t mr, size_t nc, size_t kc, const float* a, size_t a_stride, const void* w,
                                 const float* scale, float* c, size_t c_stride, const float* bias, int accumulate);

// Weight packer: w[k][n] for k < kc, n < nc (element (k, n) at w + k * k_stride + n * n_stride bytes) into
// ceil(nc / 16) panels [kc][16] of the same element type, zero-filling columns >= nc of the last panel.
using PackwUkernel = void (*)(size_t kc, size_t nc, const void* w, ptrdiff_t k_stride, ptrdiff_t n_stride,
                              void* packed);

// Softmax pieces: rmax returns max(x[0..n)) (-inf for n = 0); raddstoreexpminusmax stores y[i] = exp(x[i] - max)
// for i < n (y may be x) and returns their sum. max must be finite; x[i] = -inf gives 0.
using RmaxUkernel = float (*)(size_t n, const float* x);
using RaddstoreexpminusmaxUkernel = float (*)(size_t n, const float* x, float max, float* y);

// Row kernels of banded fused convs (ops/conv_band.cc); x, r, y are float32, or fp16 bits when their *_f16 flag is set.
// vscaleshift: y[i] = a * x[i] + b, then SiLU when act. vaddstore: y[i] = z[i] + (r ? r[i] : 0).
// rsumsq: sums[0] += sum(x[i] - shift), sums[1] += sum((x[i] - shift)^2) over i < n.
using VScaleShiftUkernel = void (*)(size_t n, const void* x, int x_f16, float a, float b, int act, float* y);
using VAddStoreUkernel = void (*)(size_t n, const float* z, const void* r, int r_f16, void* y, int y_f16);
using RSumSqUkernel = void (*)(size_t n, const void* x, int x_f16, float shift, float* sums);

// Unary elementwise kernels (f32-vunary): y[i] = op(x[i]) for i < n; y may be x. params holds the op's constants:
// clamp [alpha, beta], leaky_relu slope alpha, hard_sigmoid alpha * x + beta; the others ignore it.
struct VUnaryParams {
  float alpha, beta;
};
using VUnaryUkernel = void (*)(size_t n, const float* x, float* y, const VUnaryParams* params);
enum VUnaryOp { kVClamp, kVLeakyRelu, kVHardSigmoid, kVHardSwish, kVSigmoid, kVSilu, kVTanh, kVExp, kVErf, kVGelu,
                kVSqrt, kVAbs, kVNeg, kVUnaryOps };

// Binary elementwise kernels (f32-vbinary): y[i] = a[i] op b[i] for i < n, with a (or b) one broadcast value when
// a_scalar (b_scalar) is set; y may be a or b. max/min propagate NaN like ONNX.
using VBinaryUkernel = void (*)(size_t n, const float* a, int a_scalar, const float* b, int b_scalar, float* y);
enum VBinaryOp { kVAdd, kVSub, kVMul, kVDiv, kVMax, kVMin, kVBinaryOps };

// Depthwise convolution, one output row of one channel (f32-dwconv):
//   y[i] = min(hi, max(lo, bias + sum_{t < taps} w[t] * rows[t][i])) for i < n.
// rows[t]: the input values tap t reads for outputs 0..n-1, contiguous (the caller resolves padding, stride and
// dilation into padded, phase-split input rows), readable up to n rounded up to 16 (kernels may load whole
// vectors past n; they write y below n only). 9p / 25p kernels need taps == 9 / 25; up kernels take any count.
using DwconvUkernel = void (*)(size_t n, size_t taps, const float** rows, const float* w, float bias, float* y,
                               float lo, float hi);

constexpr size_t kPanelWidth = 16;  // columns per packed panel, for every ISA

#define GEMM_UKERNEL(isa, fn, mr, nr) \
  void fn(size_t, size_t, size_t, const float*, size_t, const void*, float*, size_t, const float*, int);
#define PACKW_UKERNEL(isa, fn, nr) void fn(size_t, size_t, const void*, ptrdiff_t, ptrdiff_t, void*);
#include "kernels/f32-gemm/f32-gemm.inc"
#include "kernels/f32-f16w-gemm/f32-f16w-gemm.inc"
#include "kernels/x32-packw/x32-packw.inc"
#include "kernels/x16-packw/x16-packw.inc"
#undef GEMM_UKERNEL
#undef PACKW_UKERNEL
#define QC8W_GEMM_UKERNEL(isa, fn, mr, nr) \
  void fn(size_t, size_t, size_t, const float*, size_t, const void*, const float*, float*, size_t, const float*, int);
#include "kernels/f32-qc8w-gemm/f32-qc8w-gemm.inc"
#undef QC8W_GEMM_UKERNEL

#define RMAX_UKERNEL(isa, fn) float fn(size_t, const float*);
#define RADDSTOREEXPMINUSMAX_UKERNEL(isa, fn) float fn(size_t, const float*, float, float*);
#include "kernels/f32-rmax/f32-rmax.inc"
#include "kernels/f32-raddstoreexpminusmax/f32-raddstoreexpminusmax.inc"
#undef RMAX_UKERNEL
#undef RADDSTOREEXPMINUSMAX_UKERNEL

#define VUNARY_UKERNEL(isa, op, fn) void fn(size_t, const float*, float*, const VUnaryParams*);
#include "kernels/f32-vunary/f32-vunary.inc"
#undef VUNARY_UKERNEL
#define VBINARY_UKERNEL(isa, op, fn) void fn(size_t, const float*, int, const float*, int, float*);
#include "kernels/f32-vbinary/f32-vbinary.inc"
#undef VBINARY_UKERNEL
#define DWCONV_UKERNEL(isa, fn, taps) void fn(size_t, size_t, const float**, const float*, float, float*, float, float);
#include "kernels/f32-dwconv/f32-dwconv.inc"
#undef DWCONV_UKERNEL

#define CONVBAND_UKERNELS(isa, scaleshift, addstore, rsumsq)               \
  void scaleshift(size_t, const void*, int, float, float, int, float*); \
  void addstore(size_t, const float*, const void*, int, void*, int);    \
  void rsumsq(size_t, const void*, int, float, float*);
#include "kernels/f32-convband/f32-convband.inc"
#undef CONVBAND_UKERNELS

}  // namespace onnxstream

// ONNXSTREAM_IF_<isa>(x) keeps x only when CMake compiled that ISA's kernel list for this target
// (cmake/kernels.cmake defines ONNXSTREAM_KERNELS_<ISA>); tests and dispatch expand the .inc lists through it.
#define ONNXSTREAM_IF_scalar(...) __VA_ARGS__
#if defined(ONNXSTREAM_KERNELS_NEON)
#define ONNXSTREAM_IF_neon(...) __VA_ARGS__
#else
#define ONNXSTREAM_IF_neon(...)
#endif
#if defined(ONNXSTREAM_KERNELS_AARCH64_NEONFMA)
#define ONNXSTREAM_IF_aarch64_neonfma(...) __VA_ARGS__
#else
#define ONNXSTREAM_IF_aarch64_neonfma(...)
#endif
#if defined(ONNXSTREAM_KERNELS_AVX2_FMA)
#define ONNXSTREAM_IF_avx2_fma(...) __VA_ARGS__
#else
#define ONNXSTREAM_IF_avx2_fma(...)
#endif
#if defined(ONNXSTREAM_KERNELS_AVX512F)
#define ONNXSTREAM_IF_avx512f(...) __VA_ARGS__
#else
#define ONNXSTREAM_IF_avx512f(...)
#endif

// Isa bit (cpu.h) of each ISA token.
#define ONNXSTREAM_ISA_scalar kIsaScalar
#define ONNXSTREAM_ISA_neon kIsaNeon
#define ONNXSTREAM_ISA_aarch64_neonfma kIsaAarch64Neonfma
#define ONNXSTREAM_ISA_avx2_fma kIsaAvx2Fma
#define ONNXSTREAM_ISA_avx512f kIsaAvx512f
