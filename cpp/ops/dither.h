// Error-diffusion dithering of a picture to an e-ink panel's few colours (python/onnxstream/frame/dither.py).
#pragma once
#include "tensor.h"

namespace onnxstream {

// Floyd-Steinberg error diffusion in raster order (7/16 right, 3/16 down-left, 5/16 down, 1/16 down-right;
// error leaving the picture is dropped), one pixel at a time: the algorithm is sequential.
//   image:   [H, W, 3] uint8 (sRGB)
//   lut:     [3, 256] float32: channel value -> working value (the value itself, or linear light)
//   oklab:   the working space is OKLab: each pixel's lut values (linear RGB) are converted to OKLab first
//   palette: [K, 3] float32, the panel's colours in the working space, K <= 16
//   out:     [H, W] uint8 palette indices
// Per pixel: value = working colour + diffused error, clamped per channel to the palette's range (what lies
// beyond cannot be shown; diffusing it would smear it over the neighbours); the nearest palette colour
// (squared Euclidean distance, first of equals) is the output, value minus it the error to diffuse.
// Results are the same on every CPU (dither.cc is compiled without FMA contraction, cube root by Newton).
void dither_floyd_steinberg(const Tensor& image, const Tensor& lut, bool oklab, const Tensor& palette,
                            const Tensor& out);

// Linear RGB (0..1) -> OKLab (Ottosson 2020), as the kernel computes it.
void linear_rgb_to_oklab(const float rgb[3], float lab[3]);

}  // namespace onnxstream
