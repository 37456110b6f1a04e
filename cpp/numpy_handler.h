// Installing the array cache as numpy's allocator (Python C API: part of the _core module, not the core library).
#pragma once
#include <Python.h>

namespace onnxstream {

// Makes `replacement` (a "mem_handler" capsule; null: the array cache's) numpy's allocator in this context and
// returns the previous one (a new reference), or null when this numpy has no NEP 49 allocator API.
PyObject* swap_numpy_handler(PyObject* replacement);

}  // namespace onnxstream
