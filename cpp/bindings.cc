// The pybind11 module: numpy arrays in, Tensor views out, the GIL released around every kernel. No logic here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "array_cache.h"
#include "kernel_counts.h"
#include "malloc_policy.h"
#include "numpy_handler.h"
#include "ops/elementwise.h"
#include "ops/attention.h"
#include "ops/conv.h"
#include "ops/dwconv.h"
#include "ops/conv_band.h"
#include "ops/dither.h"
#include "ops/gemm.h"
#include "ops/grid_sample.h"
#include "ops/norm.h"
#include "ops/qc8w.h"
#include "ops/recurrent.h"
#include "ops/reduce.h"
#include "ops/resize.h"
#include "ops/rotary.h"
#include "parallel.h"
#include "stream/hash.h"
#include "stream/reader.h"
#include "tensor.h"

namespace py = pybind11;
using namespace pybind11::literals;
using namespace onnxstream;

namespace {

DType dtype_of(const py::array& a) {
  py::dtype d = a.dtype();
  char kind = d.kind();
  size_t size = d.itemsize();
  if (kind == 'f' && size == 4) return DType::f32;
  if (kind == 'f' && size == 2) return DType::f16;
  if (kind == 'f' && size == 8) return DType::f64;
  if (kind == 'i' && size == 1) return DType::i8;
  if (kind == 'u' && size == 1) return DType::u8;
  if (kind == 'i' && size == 2) return DType::i16;
  if (kind == 'u' && size == 2) return DType::u16;
  if (kind == 'i' && size == 4) return DType::i32;
  if (kind == 'u' && size == 4) return DType::u32;
  if (kind == 'i' && size == 8) return DType::i64;
  if (kind == 'u' && size == 8) return DType::u64;
  if (kind == 'b') return DType::boolean;
  throw Error("unsupported numpy dtype " + std::string(py::str(d)));
}

Tensor view(const py::array& a) {
  Tensor t;
  t.dtype = dtype_of(a);
  check(a.ndim() <= kMaxDims, "tensors may have at most 8 dimensions");
  t.ndim = (int)a.ndim();
  for (int i = 0; i < t.ndim; i++) {
    t.shape[i] = a.shape(i);
    t.strides[i] = a.strides(i);
  }
  t.data = const_cast<void*>(a.data());
  return t;
}

// a viewed at out's shape by numpy's broadcasting rules (dimensions aligned right; a size-1 axis gets stride 0), so
// that Python need not build np.broadcast_to views per call.
Tensor broadcast_view(const py::array& a, const Tensor& out) {
  Tensor v = view(a), t = out;
  t.dtype = v.dtype;
  t.data = v.data;
  check(v.ndim <= out.ndim, "operand has more dimensions than the output");
  const int lead = out.ndim - v.ndim;
  for (int i = 0; i < out.ndim; i++) {
    const int64_t n = i < lead ? 1 : v.shape[i - lead];
    check(n == out.shape[i] || n == 1, "operand shape does not broadcast to the output's");
    t.strides[i] = n == 1 ? 0 : v.strides[i - lead];
  }
  return t;
}

// Outputs must be writable; Python allocates them.
Tensor out_view(py::array& a) {
  check(a.writeable(), "internal: output array is read-only");
  return view(a);
}

// The numpy array owns the weight buffer: it is freed (and returned to the read budget) when the array dies.
py::array as_array(const std::shared_ptr<WeightBuffer>& buf) {
  auto* holder = new std::shared_ptr<WeightBuffer>(buf);
  py::capsule owner(holder, [](void* p) { delete static_cast<std::shared_ptr<WeightBuffer>*>(p); });
  return py::array_t<uint8_t>({(py::ssize_t)buf->nbytes}, {(py::ssize_t)1}, buf->data, owner);
}

// Optional inputs arrive as None.
struct MaybeTensor {
  Tensor t;
  bool present = false;
  explicit MaybeTensor(const py::object& o) {
    if (!o.is_none()) {
      t = view(o.cast<py::array>());
      present = true;
    }
  }
  const Tensor* get() const { return present ? &t : nullptr; }
};

Window window(const std::array<int64_t, 3>& kernel, const std::array<int64_t, 3>& strides,
              const std::array<int64_t, 3>& pads_begin, const std::array<int64_t, 3>& pads_end,
              const std::array<int64_t, 3>& dilations) {
  Window w;
  w.kernel = kernel;
  w.strides = strides;
  w.pads_begin = pads_begin;
  w.pads_end = pads_end;
  w.dilations = dilations;
  return w;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "onnxstream C++ core: kernels and the weight reader";
  py::register_exception<Error>(m, "CoreError", PyExc_ValueError);
  use_malloc_policy();

  // While a Session runs, numpy allocates through the array cache (array_cache.h).
  m.def("start_array_cache", []() -> py::object {
    PyObject* previous = swap_numpy_handler(nullptr);
    if (!previous) return py::none();
    array_cache_enable(true);
    return py::reinterpret_steal<py::object>(previous);
  }, "Use the array cache as numpy's allocator; returns the allocator to restore (None: not supported)");
  m.def("stop_array_cache", [](py::object previous) {
    array_cache_enable(false);
    if (!previous.is_none()) Py_XDECREF(swap_numpy_handler(previous.ptr()));
  });
  m.def("array_cache_bytes", &array_cache_bytes);
  m.def("set_num_threads", &set_num_threads, "Worker threads for kernels (<= 0: all cores)");
  m.def("num_threads", &num_threads);
  m.def("pool_stats", []() {  // counted only with ONNXSTREAM_POOL_STATS=1
    PoolStats s = pool_stats();
    py::list workers;
    for (const auto& w : s.workers)
      workers.append(py::dict("items"_a = w.items, "chunks"_a = w.chunks, "cpu_ns"_a = w.cpu_ns));
    return py::dict("threads"_a = s.threads, "jobs"_a = s.jobs, "job_wall_ns"_a = s.job_wall_ns,
                    "short_jobs"_a = s.short_jobs, "short_job_wall_ns"_a = s.short_job_wall_ns,
                    "inline_jobs"_a = s.inline_jobs, "workers"_a = workers);
  });
  m.def("reset_pool_stats", &reset_pool_stats);
  m.def("kernel_counts", []() {  // counted only with ONNXSTREAM_COUNT_KERNELS=1
    py::dict out;
    for (const auto& k : kernel_counts())
      out[py::str(k.family)] = py::dict("calls"_a = k.calls, "flop"_a = k.flop, "weight_bytes"_a = k.weight_bytes,
                                        "a_bytes"_a = k.a_bytes, "tile_rows"_a = k.tile_rows,
                                        "tile_cols"_a = k.tile_cols);
    return out;
  });
  m.def("reset_kernel_counts", &reset_kernel_counts);
  m.def("xxh64", [](py::buffer b) {
    py::buffer_info info = b.request();
    const void* p = info.ptr;
    size_t n = (size_t)info.size * info.itemsize;
    py::gil_scoped_release nogil;
    return xxh64(p, n);
  }, "XXH64 of a contiguous buffer (the weights file checksum)");

  // ---- weight streaming ----
  py::class_<WeightReader>(m, "WeightReader")
      .def(py::init([](const std::string& path, const std::vector<std::string>& names,
                       const std::vector<uint64_t>& offsets, const std::vector<uint64_t>& nbytes,
                       const std::vector<uint64_t>& hashes, uint64_t budget) {
             check(names.size() == offsets.size() && names.size() == nbytes.size() && names.size() == hashes.size(),
                   "weight table columns differ in length");
             std::vector<WeightEntry> entries(names.size());
             for (size_t i = 0; i < names.size(); i++) entries[i] = {names[i], offsets[i], nbytes[i], hashes[i]};
             return new WeightReader(path, std::move(entries), budget);
           }),
           py::arg("path"), py::arg("names"), py::arg("offsets"), py::arg("nbytes"), py::arg("hashes"),
           py::arg("budget"))
      .def("start", &WeightReader::start, py::call_guard<py::gil_scoped_release>())
      .def("stop", &WeightReader::stop, py::call_guard<py::gil_scoped_release>())
      .def("get", [](WeightReader& r, int id) {
        std::shared_ptr<WeightBuffer> buf;
        {
          py::gil_scoped_release nogil;
          buf = r.get(id);
        }
        return as_array(buf);
      })
      .def("read_rows", [](WeightReader& r, int id, uint64_t row_nbytes, uint64_t rows_per_block,
                           const std::vector<uint64_t>& block_hashes, const std::vector<int64_t>& rows) {
        std::shared_ptr<WeightBuffer> buf;
        {
          py::gil_scoped_release nogil;
          buf = r.read_rows(id, row_nbytes, rows_per_block, block_hashes, rows);
        }
        return as_array(buf);
      })
      .def_property_readonly("bytes_read", &WeightReader::bytes_read)
      .def_property_readonly("peak_held", &WeightReader::peak_held);

  // ---- elementwise ----
  m.def("unary_code", &unary_code, "The code of a unary op name, for unary()");
  m.def("unary", [](int op, py::array x, py::array y, float alpha, float beta) {
    Tensor tx = view(x), ty = out_view(y);
    py::gil_scoped_release nogil;
    unary((UnaryOp)op, tx, ty, alpha, beta);
  }, py::arg("op"), py::arg("x"), py::arg("y"), py::arg("alpha") = 0.0f, py::arg("beta") = 0.0f);
  m.def("binary_code", &binary_code, "The code of a binary op name, for binary()");
  // y = a op b at numpy's broadcast shape of a and b, written over `out` when it has that shape and dtype (an input
  // dying at the node), else a new array; bool results for comparisons. The shape work is here, not in Python:
  // for a small tensor it cost more than the kernel.
  m.def("binary", [](int op, py::array a, py::array b, py::object out, bool to_bool) {
    const int nd = (int)std::max(a.ndim(), b.ndim());
    check(nd <= kMaxDims, "tensors may have at most 8 dimensions");
    std::vector<py::ssize_t> shape((size_t)nd);
    for (int i = 0; i < nd; i++) {
      const int ia = i - (nd - (int)a.ndim()), ib = i - (nd - (int)b.ndim());
      const py::ssize_t da = ia < 0 ? 1 : a.shape(ia), db = ib < 0 ? 1 : b.shape(ib);
      check(da == db || da == 1 || db == 1, "binary op: input shapes do not broadcast (dimension " +
                                                std::to_string(i) + ": " + std::to_string(da) + " vs " +
                                                std::to_string(db) + ")");
      shape[(size_t)i] = da == 1 ? db : da;
    }
    const py::dtype dt = to_bool ? py::dtype::of<bool>() : a.dtype();
    bool fits = !out.is_none();  // (a default py::array is an empty array, not a null: so a flag)
    py::array o = fits ? out.cast<py::array>() : py::array();
    fits = fits && o.ndim() == nd && o.dtype().kind() == dt.kind() && o.dtype().itemsize() == dt.itemsize() &&
           (o.flags() & py::array::c_style) && o.writeable();
    for (int i = 0; fits && i < nd; i++) fits = o.shape(i) == shape[(size_t)i];
    py::array y = fits ? o : py::array(dt, shape);
    Tensor ty = out_view(y), ta = broadcast_view(a, ty), tb = broadcast_view(b, ty);
    {
      py::gil_scoped_release nogil;
      binary((BinaryOp)op, ta, tb, ty);
    }
    return y;
  });
  m.def("where", [](py::array c, py::array a, py::array b, py::array y) {
    Tensor tc = view(c), ta = view(a), tb = view(b), ty = out_view(y);
    py::gil_scoped_release nogil;
    where(tc, ta, tb, ty);
  });
  m.def("cast", [](py::array x, py::array y) {
    Tensor tx = view(x), ty = out_view(y);
    py::gil_scoped_release nogil;
    cast(tx, ty);
  });

  // ---- reductions (x: [outer, n, inner]) ----
  m.def("reduce", [](const std::string& op, py::array x, py::array y) {
    Tensor tx = view(x), ty = out_view(y);
    py::gil_scoped_release nogil;
    reduce(op, tx, ty);
  });
  m.def("arg_reduce", [](bool is_max, bool select_last, py::array x, py::array y) {
    Tensor tx = view(x), ty = out_view(y);
    py::gil_scoped_release nogil;
    arg_reduce(is_max, select_last, tx, ty);
  });
  m.def("softmax", [](const std::string& op, py::array x, py::array y) {
    Tensor tx = view(x), ty = out_view(y);
    py::gil_scoped_release nogil;
    softmax(op, tx, ty);
  });
  m.def("cumsum", [](py::array x, py::array y, bool exclusive, bool reverse) {
    Tensor tx = view(x), ty = out_view(y);
    py::gil_scoped_release nogil;
    cumsum(tx, ty, exclusive, reverse);
  });
  m.def("topk", [](py::array x, int64_t k, bool largest, py::array values, py::array indices) {
    Tensor tx = view(x), tv = out_view(values), ti = out_view(indices);
    py::gil_scoped_release nogil;
    topk(tx, k, largest, tv, ti);
  });

  // ---- normalization ----
  m.def("layer_norm", [](py::array x, py::object scale, py::object bias, float eps, py::array y, py::object mean,
                         py::object inv_std) {
    Tensor tx = view(x), ty = out_view(y);
    MaybeTensor s(scale), b(bias), mu(mean), is(inv_std);
    py::gil_scoped_release nogil;
    layer_norm(tx, s.get(), b.get(), eps, ty, mu.get(), is.get());
  });
  m.def("rms_norm", [](py::array x, py::array scale, float eps, py::array y) {
    Tensor tx = view(x), ts = view(scale), ty = out_view(y);
    py::gil_scoped_release nogil;
    rms_norm(tx, ts, eps, ty);
  });
  m.def("rotary_embedding", [](py::array x, py::array cos, py::array sin, int64_t rotary_dim, bool interleaved,
                               py::array y) {
    Tensor tx = view(x), tc = view(cos), ts = view(sin), ty = out_view(y);
    py::gil_scoped_release nogil;
    rotary_embedding(tx, tc, ts, rotary_dim, interleaved, ty);
  });
  m.def("grid_sample", [](py::array x, py::array grid, const std::string& mode, const std::string& padding,
                          bool align_corners, py::array y) {
    Tensor tx = view(x), tg = view(grid), ty = out_view(y);
    GridMode m = mode == "nearest" ? GridMode::nearest : mode == "linear" ? GridMode::linear : GridMode::cubic;
    check(mode == "nearest" || mode == "linear" || mode == "cubic", "GridSample: unknown mode " + mode);
    GridPadding p = padding == "zeros" ? GridPadding::zeros : padding == "border" ? GridPadding::border
                                                                                  : GridPadding::reflection;
    check(padding == "zeros" || padding == "border" || padding == "reflection",
          "GridSample: unknown padding_mode " + padding);
    py::gil_scoped_release nogil;
    grid_sample(tx, tg, m, p, align_corners, ty);
  });
  m.def("group_norm", [](py::array x, py::array scale, py::array bias, int64_t groups, float eps, py::array y) {
    Tensor tx = view(x), ts = view(scale), tb = view(bias), ty = out_view(y);
    py::gil_scoped_release nogil;
    group_norm(tx, ts, tb, groups, eps, ty);
  });
  m.def("batch_norm", [](py::array x, py::array scale, py::array bias, py::array mean, py::array var, float eps,
                         py::array y) {
    Tensor tx = view(x), ts = view(scale), tb = view(bias), tm = view(mean), tv = view(var), ty = out_view(y);
    py::gil_scoped_release nogil;
    batch_norm(tx, ts, tb, tm, tv, eps, ty);
  });

  // ---- matmul ([B, M, K] @ [B, K, N]) ----
  m.def("matmul", [](py::array a, py::array w, py::object bias, py::array y) {
    Tensor ta = view(a), tw = view(w), ty = out_view(y);
    MaybeTensor tb(bias);
    py::gil_scoped_release nogil;
    matmul(ta, tw, tb.get(), ty);
  });
  m.def("pack_gemm_b", [](py::array w, py::array panels) {
    Tensor tw = view(w), tp = out_view(panels);
    py::gil_scoped_release nogil;
    pack_gemm_b(tw, tp);
  });
  m.def("packed_gemm_b_elements", &packed_gemm_b_elements);
  m.def("pack_gemm_b_qc8w", [](py::array w, py::array blob) {
    Tensor tw = view(w), tb = out_view(blob);
    py::gil_scoped_release nogil;
    pack_gemm_b_qc8w(tw, tb);
  });
  m.def("qc8w_blob_bytes", &qc8w_blob_bytes);
  m.def("qc8w_scales_offset", &qc8w_scales_offset);
  m.def("matmul_packed", [](py::array a, py::array panels, int64_t K, int64_t N, py::object bias, py::array y) {
    Tensor ta = view(a), tp = view(panels), ty = out_view(y);
    MaybeTensor tb(bias);
    py::gil_scoped_release nogil;
    matmul_packed(ta, tp, K, N, tb.get(), ty);
  });
  m.def("matmul_int", [](py::array a, py::array w, py::array y) {
    Tensor ta = view(a), tw = view(w), ty = out_view(y);
    py::gil_scoped_release nogil;
    matmul_int(ta, tw, ty);
  });

  // ---- convolution and pooling (3 spatial axes) ----
  using A3 = std::array<int64_t, 3>;
  // activation (ops/activation.h): "", relu, clip, leaky_relu, hard_sigmoid, hard_swish, sigmoid, silu, prelu.
  m.def("conv", [](py::array x, py::array w, py::object bias, A3 kernel, A3 strides, A3 pads_begin, A3 pads_end,
                   A3 dilations, int64_t group, py::array y, const std::string& act, float alpha, float beta,
                   py::object slope) {
    Tensor tx = view(x), tw = view(w), ty = out_view(y);
    MaybeTensor tb(bias), ts(slope);
    Window win = window(kernel, strides, pads_begin, pads_end, dilations);
    Activation a = activation(act, alpha, beta, ts.get() ? ts.get()->ptr<float>() : nullptr);
    py::gil_scoped_release nogil;
    conv(tx, tw, tb.get(), win, group, ty, &a);
  }, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("kernel"), py::arg("strides"), py::arg("pads_begin"),
     py::arg("pads_end"), py::arg("dilations"), py::arg("group"), py::arg("y"), py::arg("activation") = "",
     py::arg("alpha") = 0.0f, py::arg("beta") = 0.0f, py::arg("slope") = py::none());
  m.def("conv_packed", [](py::array x, py::array panels, int64_t M, py::object bias, A3 kernel, A3 strides,
                          A3 pads_begin, A3 pads_end, A3 dilations, int64_t group, py::array y,
                          const std::string& act, float alpha, float beta, py::object slope) {
    Tensor tx = view(x), tp = view(panels), ty = out_view(y);
    MaybeTensor tb(bias), ts(slope);
    Window win = window(kernel, strides, pads_begin, pads_end, dilations);
    Activation a = activation(act, alpha, beta, ts.get() ? ts.get()->ptr<float>() : nullptr);
    py::gil_scoped_release nogil;
    conv_packed(tx, tp, M, tb.get(), win, group, ty, &a);
  }, py::arg("x"), py::arg("panels"), py::arg("M"), py::arg("bias"), py::arg("kernel"), py::arg("strides"),
     py::arg("pads_begin"), py::arg("pads_end"), py::arg("dilations"), py::arg("group"), py::arg("y"),
     py::arg("activation") = "", py::arg("alpha") = 0.0f, py::arg("beta") = 0.0f, py::arg("slope") = py::none());
  m.def("dwconv", [](py::array x, py::array w, py::object bias, A3 kernel, A3 strides, A3 pads_begin, A3 pads_end,
                     A3 dilations, py::array y, const std::string& act, float alpha, float beta, py::object slope) {
    Tensor tx = view(x), tw = view(w), ty = out_view(y);
    MaybeTensor tb(bias), ts(slope);
    Window win = window(kernel, strides, pads_begin, pads_end, dilations);
    Activation a = activation(act, alpha, beta, ts.get() ? ts.get()->ptr<float>() : nullptr);
    py::gil_scoped_release nogil;
    dwconv(tx, tw, tb.get(), win, a, ty);
  }, "Depthwise 2-D conv (ops/dwconv.h)", py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("kernel"),
     py::arg("strides"), py::arg("pads_begin"), py::arg("pads_end"), py::arg("dilations"), py::arg("y"),
     py::arg("activation") = "", py::arg("alpha") = 0.0f, py::arg("beta") = 0.0f, py::arg("slope") = py::none());
  m.def("conv_band_prologue", [](py::array x, int64_t row0, py::object scale_shift, bool silu, py::array y) {
    Tensor tx = view(x), ty = out_view(y);
    MaybeTensor ts(scale_shift);
    py::gil_scoped_release nogil;
    conv_band_prologue(tx, row0, ts.get(), silu, ty);
  });
  m.def("conv_band_epilogue", [](py::array z, py::object residual, int64_t s, int64_t y_row0, int64_t z_row0,
                                 std::vector<int64_t> off_h, std::vector<int64_t> off_w, py::array y) {
    Tensor tz = view(z), ty = out_view(y);
    MaybeTensor tr(residual);
    check((int64_t)off_h.size() >= s && (int64_t)off_w.size() >= s, "conv_band_epilogue: one offset per phase");
    py::gil_scoped_release nogil;
    conv_band_epilogue(tz, tr.get(), s, y_row0, z_row0, off_h.data(), off_w.data(), ty);
  });
  m.def("group_norm_stats", [](py::array x, int64_t groups, bool first, py::array shift, py::array sums) {
    Tensor tx = view(x), tsh = out_view(shift), tsu = out_view(sums);
    py::gil_scoped_release nogil;
    group_norm_stats(tx, groups, first, tsh, tsu);
  });
  m.def("group_norm_scale_shift", [](py::array sums, py::array shift, double count, py::array gamma, py::array beta,
                                     float eps, py::array out) {
    Tensor tsu = view(sums), tsh = view(shift), tg = view(gamma), tb = view(beta), to = out_view(out);
    py::gil_scoped_release nogil;
    group_norm_scale_shift(tsu, tsh, count, tg, tb, eps, to);
  });
  m.def("conv_transpose", [](py::array x, py::array w, py::object bias, A3 kernel, A3 strides, A3 pads_begin,
                             A3 dilations, int64_t group, py::array y) {
    Tensor tx = view(x), tw = view(w), ty = out_view(y);
    MaybeTensor tb(bias);
    Window win = window(kernel, strides, pads_begin, A3{0, 0, 0}, dilations);
    py::gil_scoped_release nogil;
    conv_transpose(tx, tw, tb.get(), win, group, ty);
  });
  m.def("pool", [](const std::string& op, py::array x, A3 kernel, A3 strides, A3 pads_begin, A3 pads_end,
                   A3 dilations, bool count_include_pad, float p, py::array y, py::object indices) {
    Tensor tx = view(x), ty = out_view(y);
    MaybeTensor ti(indices);
    Window win = window(kernel, strides, pads_begin, pads_end, dilations);
    py::gil_scoped_release nogil;
    pool(op, tx, win, count_include_pad, p, ty, ti.get());
  });

  // ---- LSTM / GRU / RNN: one direction ----
  // acts: (code, alpha, beta) for f, g, h (RnnAct codes; unused ones ignored).
  m.def("rnn_direction", [](int cell, bool reverse, bool linear_before_reset, bool input_forget, float clip,
                            std::vector<std::tuple<int, float, float>> acts, py::array xw, py::array r_panels,
                            py::object rb_h, py::object peephole, py::object h0, py::object c0, py::object lens,
                            py::object y, py::array yh, py::object yc) {
    check(cell >= 0 && cell <= 2 && acts.size() == 3, "rnn_direction: bad cell or activations");
    RnnParams p;
    p.cell = static_cast<RnnCell>(cell);
    p.reverse = reverse, p.linear_before_reset = linear_before_reset, p.input_forget = input_forget, p.clip = clip;
    RnnActivation* slots[3] = {&p.f, &p.g, &p.h};
    for (int i = 0; i < 3; i++) {
      check(std::get<0>(acts[i]) >= 0 && std::get<0>(acts[i]) <= (int)RnnAct::softplus, "rnn: bad activation");
      *slots[i] = {static_cast<RnnAct>(std::get<0>(acts[i])), std::get<1>(acts[i]), std::get<2>(acts[i])};
    }
    Tensor tx = view(xw), tr = view(r_panels), tyh = out_view(yh);
    MaybeTensor trb(rb_h), tp(peephole), th(h0), tc(c0), tl(lens), ty(y), tyc(yc);
    py::gil_scoped_release nogil;
    rnn_direction(p, tx, tr, trb.get(), tp.get(), th.get(), tc.get(), tl.get(), ty.get(), tyh, tyc.get());
  });

  // ---- fused attention ([B, H, M, D] queries) ----
  m.def("attention", [](py::array q, py::array kt, py::array v, py::object mask, py::array y, bool zero_empty_rows) {
    Tensor tq = view(q), tk = view(kt), tv = view(v), ty = out_view(y);
    MaybeTensor tm(mask);
    py::gil_scoped_release nogil;
    attention(tq, tk, tv, tm.get(), ty, zero_empty_rows);
  });

  // ---- resampling ----
  m.def("resample_axis", [](py::array x, int axis, py::array index, py::array weights, py::array y) {
    Tensor tx = view(x), ti = view(index), tw = view(weights), ty = out_view(y);
    py::gil_scoped_release nogil;
    resample_axis(tx, axis, ti, tw, ty);
  });

  // ---- e-ink panels: dithering to a palette (frame/dither.py) ----
  m.def("dither_floyd_steinberg", [](py::array image, py::array lut, bool oklab, py::array palette, py::array out) {
    Tensor ti = view(image), tl = view(lut), tp = view(palette), to = out_view(out);
    py::gil_scoped_release nogil;
    dither_floyd_steinberg(ti, tl, oklab, tp, to);
  });
  m.def("linear_rgb_to_oklab", [](py::array rgb, py::array lab) {
    Tensor tr = view(rgb), tl = out_view(lab);
    check(tr.dtype == DType::f32 && tl.dtype == DType::f32 && tr.contiguous() && tl.contiguous() &&
              tr.numel() == tl.numel() && tr.numel() % 3 == 0, "linear_rgb_to_oklab: [..., 3] float32 in and out");
    for (int64_t i = 0; i < tr.numel(); i += 3) linear_rgb_to_oklab(tr.ptr<float>() + i, tl.ptr<float>() + i);
  });
}
