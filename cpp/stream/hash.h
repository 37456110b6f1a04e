// XXH64 checksum of each weight tensor: written by the converter, checked on every read.
#pragma once
#include <cstddef>
#include <cstdint>

namespace onnxstream {
uint64_t xxh64(const void* data, size_t len, uint64_t seed = 0);
}
