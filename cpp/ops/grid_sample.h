// GridSample (spatial transformer sampling, as torch.nn.functional.grid_sample): each output point reads the
// input at the normalized coordinates the grid gives it, by nearest, linear or cubic interpolation.
#pragma once
#include "tensor.h"

namespace onnxstream {

enum class GridMode { nearest, linear, cubic };
enum class GridPadding { zeros, border, reflection };

// x: [N, C, *in] contiguous float32 with 1 to 3 spatial axes; grid: [N, *out, k] contiguous float32, its last
// axis the coordinates in [-1, 1], innermost axis first (x, y, z); y: [N, C, *out] contiguous.
void grid_sample(const Tensor& x, const Tensor& grid, GridMode mode, GridPadding padding, bool align_corners,
                 const Tensor& y);

}  // namespace onnxstream
