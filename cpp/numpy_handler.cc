// numpy's data allocator (NEP 49) pointed at the array cache (array_cache.h) while a Session runs.
// Declared here from the stable NEP 49 ABI rather than numpy's headers, which cross-builds would need per target.
#include "numpy_handler.h"

#include <cstdint>
#include <initializer_list>

#include "array_cache.h"

namespace onnxstream {
namespace {

struct Allocator {  // PyDataMemAllocator, version 1
  void* ctx;
  void* (*malloc)(void* ctx, size_t size);
  void* (*calloc)(void* ctx, size_t nelem, size_t elsize);
  void* (*realloc)(void* ctx, void* ptr, size_t new_size);
  void (*free)(void* ctx, void* ptr, size_t size);
};

struct Handler {  // PyDataMem_Handler
  char name[127];
  uint8_t version;
  Allocator allocator;
};

Handler handler = {"onnxstream_array_cache", 1,
                   {nullptr, [](void*, size_t n) { return array_cache_alloc(n); },
                    [](void*, size_t n, size_t e) { return array_cache_calloc(n, e); },
                    [](void*, void* p, size_t n) { return array_cache_realloc(p, n); },
                    [](void*, void* p, size_t n) { array_cache_free(p, n); }}};

constexpr int kSetHandler = 304, kGetHandler = 305;  // slots in numpy's C-API table (fixed since numpy 1.22)

void** find_numpy_api() {
  for (const char* module : {"numpy._core._multiarray_umath", "numpy.core._multiarray_umath"}) {
    PyObject* m = PyImport_ImportModule(module);
    if (!m) {
      PyErr_Clear();
      continue;
    }
    PyObject* cap = PyObject_GetAttrString(m, "_ARRAY_API");
    Py_DECREF(m);
    if (!cap) {
      PyErr_Clear();
      continue;
    }
    void* api = PyCapsule_IsValid(cap, nullptr) ? PyCapsule_GetPointer(cap, nullptr) : nullptr;
    Py_DECREF(cap);
    if (api) return static_cast<void**>(api);
  }
  return nullptr;
}

void** numpy_api() {
  static void** api = find_numpy_api();  // looked up once (under the GIL), not at every run
  return api;
}

}  // namespace

PyObject* swap_numpy_handler(PyObject* replacement) {
  void** api = numpy_api();
  if (!api) return nullptr;
  auto get = reinterpret_cast<PyObject* (*)()>(api[kGetHandler]);
  auto set = reinterpret_cast<PyObject* (*)(PyObject*)>(api[kSetHandler]);
  PyObject* current = get();  // also checks that the slots are what we think: a "mem_handler" capsule
  const bool ok = current && PyCapsule_IsValid(current, "mem_handler");
  Py_XDECREF(current);
  if (!ok) {
    PyErr_Clear();
    return nullptr;
  }
  PyObject* cap = replacement;
  if (!cap) cap = PyCapsule_New(&handler, "mem_handler", nullptr);
  else Py_INCREF(cap);
  if (!cap) return nullptr;
  PyObject* old = set(cap);
  Py_DECREF(cap);
  if (!old) PyErr_Clear();
  return old;
}

}  // namespace onnxstream
