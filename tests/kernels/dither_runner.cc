// Runs the dithering kernel on a job file and writes the indices to stdout, so tests/test_frame_dither.py can
// compare them, built for aarch64 and armv7 and run under QEMU, with the indices of the native build.
// Job file: int32 H, W, K, oklab; uint8 image [H, W, 3]; float32 lut [3, 256]; float32 palette [K, 3].
#include <cstdio>
#include <vector>

#include "ops/dither.h"

using namespace onnxstream;

static Tensor tensor(DType dtype, void* data, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.ndim = (int)shape.size();
  int64_t stride = (int64_t)dtype_size(dtype);
  for (int i = t.ndim - 1; i >= 0; i--) {
    t.shape[i] = shape[i];
    t.strides[i] = stride;
    stride *= shape[i];
  }
  t.data = data;
  return t;
}

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  FILE* f = std::fopen(argv[1], "rb");
  if (!f) return 2;
  int32_t head[4];
  if (std::fread(head, sizeof head, 1, f) != 1) return 2;
  const int64_t H = head[0], W = head[1], K = head[2];
  std::vector<uint8_t> image(H * W * 3), out(H * W);
  std::vector<float> lut(3 * 256), palette(K * 3);
  if (std::fread(image.data(), 1, image.size(), f) != image.size() ||
      std::fread(lut.data(), sizeof(float), lut.size(), f) != lut.size() ||
      std::fread(palette.data(), sizeof(float), palette.size(), f) != palette.size())
    return 2;
  std::fclose(f);
  dither_floyd_steinberg(tensor(DType::u8, image.data(), {H, W, 3}), tensor(DType::f32, lut.data(), {3, 256}),
                         head[3] != 0, tensor(DType::f32, palette.data(), {K, 3}),
                         tensor(DType::u8, out.data(), {H, W}));
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}
