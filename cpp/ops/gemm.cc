// (being written)
#include "ops/gemm.h"
namespace onnxstream {
void matmul(const Tensor&, const Tensor&, const Tensor*, const Tensor&) { throw Error("not built yet"); }
void matmul_int(const Tensor&, const Tensor&, const Tensor&) { throw Error("not built yet"); }
}
