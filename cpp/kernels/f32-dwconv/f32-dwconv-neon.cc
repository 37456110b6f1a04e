// f32-dwconv neon (f32-dwconv-neon.h).
#include "kernels/f32-dwconv/f32-dwconv-neon.h"
#include "kernels/microkernels.h"

namespace onnxstream {

ONNXSTREAM_NEON_DWCONV_KERNELS(neon)

}  // namespace onnxstream
