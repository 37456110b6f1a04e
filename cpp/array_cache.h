// A cache of freed activation buffers for the numpy allocator (numpy_handler.cc installs it during Session.run).
//
// Fresh large blocks cost a page fault and zeroing per 4 KB when first written: on the SD1.5 UNet that is ~2 s of
// a 13 s step. Freed blocks of 128 KB or more (those malloc would map afresh) are therefore kept and handed out again to a request of the same
// (page-rounded) size. Any request the cache cannot serve first releases every cached block, so resident memory
// never exceeds what it would be without the cache (between two such misses it can only go down).
#pragma once
#include <cstddef>

namespace onnxstream {

void* array_cache_alloc(size_t size);
void* array_cache_calloc(size_t nelem, size_t elsize);
void* array_cache_realloc(void* ptr, size_t new_size);
void array_cache_free(void* ptr, size_t size);
void array_cache_enable(bool on);  // off: every cached block is freed; later frees are kept up to 32 MB (the
                                   // outputs of the run, for the next run), the rest released at once
size_t array_cache_bytes();        // bytes held in cached (free) blocks

}  // namespace onnxstream
