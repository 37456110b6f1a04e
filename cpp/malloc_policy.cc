#include "malloc_policy.h"

#include <cstdlib>  // defines __GLIBC__ on glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace onnxstream {

void use_malloc_policy() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);  // setting it also turns off glibc's dynamic threshold
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
#endif
}

}  // namespace onnxstream
