// How the process allocator treats large blocks: freed activations must go back to the OS at once.
#pragma once

namespace onnxstream {

// glibc raises its mmap threshold after each big free (up to 32 MB), so later activations land on the heap and
// freed ones linger as RSS; a fixed threshold keeps every large block mmapped and unmapped on free.
void use_malloc_policy();

}  // namespace onnxstream
