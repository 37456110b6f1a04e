// (being written)
#include "ops/conv.h"
namespace onnxstream {
void conv(const Tensor&, const Tensor&, const Tensor*, const Window&, int64_t, const Tensor&) { throw Error("not built yet"); }
void conv_transpose(const Tensor&, const Tensor&, const Tensor*, const Window&, int64_t, const Tensor&) { throw Error("not built yet"); }
void pool(const std::string&, const Tensor&, const Window&, bool, float, const Tensor&, const Tensor*) { throw Error("not built yet"); }
}
