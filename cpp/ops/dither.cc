// Floyd-Steinberg dithering to a panel palette. Sequential by nature (each pixel's choice depends on the error of
// the pixels before it), so a plain loop: two rows of error, a nearest-colour search over at most 16 colours.
// In OKLab the 3x3 matrices and cube roots per pixel cost more than the search: ~30 ms for 800x480 on x86.
// CMakeLists.txt compiles this file with -ffp-contract=off and the cube root is three Newton steps, so every
// CPU (x86, aarch64, armv7, armv6) computes the same indices as the Python reference in tests/test_frame_dither.py.
#include "ops/dither.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace onnxstream {
namespace {

constexpr int kMaxColours = 16;

// Cube root of x >= 0: Kahan's bit-level first guess (within ~5%), then three Newton steps (float precision).
float cube_root(float x) {
  if (!(x > 1e-30f)) return 0.0f;
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits = bits / 3 + 709921077u;
  float y;
  std::memcpy(&y, &bits, sizeof y);
  for (int i = 0; i < 3; i++) y = (2.0f * y + x / (y * y)) * (1.0f / 3.0f);
  return y;
}

}  // namespace

void linear_rgb_to_oklab(const float rgb[3], float lab[3]) {
  const float r = rgb[0], g = rgb[1], b = rgb[2];
  // linear sRGB -> LMS cone response, cube root, -> L a b (Ottosson's M1 and M2)
  float l = cube_root(0.4122214708f * r + 0.5363325363f * g + 0.0514459929f * b);
  float m = cube_root(0.2119034982f * r + 0.6806995451f * g + 0.1073969566f * b);
  float s = cube_root(0.0883024619f * r + 0.2817188376f * g + 0.6299787005f * b);
  lab[0] = 0.2104542553f * l + 0.7936177850f * m + -0.0040720468f * s;
  lab[1] = 1.9779984951f * l + -2.4285922050f * m + 0.4505937099f * s;
  lab[2] = 0.0259040371f * l + 0.7827717662f * m + -0.8086757660f * s;
}

void dither_floyd_steinberg(const Tensor& image, const Tensor& lut, bool oklab, const Tensor& palette,
                            const Tensor& out) {
  check(image.dtype == DType::u8 && image.ndim == 3 && image.shape[2] == 3 && image.contiguous(),
        "dither: the image must be a contiguous [H, W, 3] uint8 array");
  const int64_t H = image.shape[0], W = image.shape[1];
  check(lut.dtype == DType::f32 && lut.ndim == 2 && lut.shape[0] == 3 && lut.shape[1] == 256 && lut.contiguous(),
        "dither: the lut must be a contiguous [3, 256] float32 array");
  check(palette.dtype == DType::f32 && palette.ndim == 2 && palette.shape[1] == 3 && palette.contiguous() &&
            palette.shape[0] >= 1 && palette.shape[0] <= kMaxColours,
        "dither: the palette must be a contiguous [K, 3] float32 array with 1 <= K <= 16");
  check(out.dtype == DType::u8 && out.ndim == 2 && out.shape[0] == H && out.shape[1] == W && out.contiguous(),
        "dither: out must be a contiguous [H, W] uint8 array");
  const int K = (int)palette.shape[0];
  float pal[kMaxColours][3], lo[3], hi[3];
  for (int k = 0; k < K; k++)
    for (int c = 0; c < 3; c++) pal[k][c] = palette.ptr<float>()[k * 3 + c];
  for (int c = 0; c < 3; c++) {  // values beyond the palette's range cannot be shown: clamp, do not diffuse
    lo[c] = hi[c] = pal[0][c];
    for (int k = 1; k < K; k++) {
      lo[c] = std::min(lo[c], pal[k][c]);
      hi[c] = std::max(hi[c], pal[k][c]);
    }
  }
  const uint8_t* src = image.ptr<uint8_t>();
  const float* table = lut.ptr<float>();
  uint8_t* dst = out.ptr<uint8_t>();

  // Error of this row and the next, [W + 2, 3] each; slot 0 and W + 1 catch what leaves the picture.
  std::vector<float> rows(2 * (size_t)(W + 2) * 3, 0.0f);
  float* cur = rows.data() + 3;
  float* next = cur + (W + 2) * 3;
  for (int64_t y = 0; y < H; y++) {
    for (int64_t x = 0; x < W; x++) {
      const uint8_t* px = src + (y * W + x) * 3;
      float w[3] = {table[px[0]], table[256 + px[1]], table[512 + px[2]]}, v[3];
      if (oklab) linear_rgb_to_oklab(w, w);
      for (int c = 0; c < 3; c++) v[c] = std::min(std::max(w[c] + cur[x * 3 + c], lo[c]), hi[c]);
      int best = 0;
      float best_dist = std::numeric_limits<float>::infinity();
      for (int k = 0; k < K; k++) {
        float e0 = v[0] - pal[k][0], e1 = v[1] - pal[k][1], e2 = v[2] - pal[k][2];
        float dist = e0 * e0 + e1 * e1 + e2 * e2;
        if (dist < best_dist) best_dist = dist, best = k;
      }
      dst[y * W + x] = (uint8_t)best;
      for (int c = 0; c < 3; c++) {
        float e = v[c] - pal[best][c];
        cur[(x + 1) * 3 + c] += e * 0.4375f;   // 7/16
        next[(x - 1) * 3 + c] += e * 0.1875f;  // 3/16
        next[x * 3 + c] += e * 0.3125f;        // 5/16
        next[(x + 1) * 3 + c] += e * 0.0625f;  // 1/16
      }
    }
    std::swap(cur, next);
    std::fill(next - 3, next + (W + 1) * 3, 0.0f);
  }
}

}  // namespace onnxstream
