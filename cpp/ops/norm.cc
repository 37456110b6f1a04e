// Normalizations over contiguous rows. Two passes per row (mean, then centred variance) in double: the one-pass
// E[x^2] - E[x]^2 form loses digits when |mean| >> std, which SD's GroupNorm inputs do have.
#include "ops/norm.h"

#include <cmath>

#include "parallel.h"

namespace onnxstream {
namespace {

void check_f32(const Tensor& t, const char* op, const char* name) {
  check(t.dtype == DType::f32, std::string(op) + ": " + name + " must be float32, got " + dtype_name(t.dtype));
  check(t.contiguous(), std::string(op) + ": internal: " + name + " must be contiguous");
}

struct Stats {
  double mean, inv_std;
};

Stats row_stats(const float* x, int64_t n, float eps) {
  double sum = 0;
  for (int64_t j = 0; j < n; j++) sum += x[j];
  double mean = n ? sum / (double)n : 0.0;
  double sq = 0;
  for (int64_t j = 0; j < n; j++) {
    double c = x[j] - mean;
    sq += c * c;
  }
  double var = n ? sq / (double)n : 0.0;
  return {mean, 1.0 / std::sqrt(var + (double)eps)};
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor* scale, const Tensor* bias, float eps, const Tensor& y,
                const Tensor* mean, const Tensor* inv_std) {
  const char* op = "LayerNormalization";
  check_f32(x, op, "X");
  check_f32(y, op, "Y");
  check(x.ndim == 2 && y.numel() == x.numel(), "LayerNormalization: internal: x must be [rows, n] and y alike");
  int64_t rows = x.shape[0], n = x.shape[1];
  for (const Tensor* t : {scale, bias})
    if (t) check_f32(*t, op, "scale/bias"), check(t->numel() == n, "LayerNormalization: scale/bias must have n elements");
  for (const Tensor* t : {mean, inv_std})
    if (t) check_f32(*t, op, "Mean/InvStdDev"), check(t->numel() == rows, "LayerNormalization: internal: stats size");
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const float* sp = scale ? scale->ptr<float>() : nullptr;
  const float* bp = bias ? bias->ptr<float>() : nullptr;
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* in = xp + r * n;
      float* out = yp + r * n;
      Stats st = row_stats(in, n, eps);
      if (mean) mean->ptr<float>()[r] = (float)st.mean;
      if (inv_std) inv_std->ptr<float>()[r] = (float)st.inv_std;
      float m = (float)st.mean, is = (float)st.inv_std;
      for (int64_t j = 0; j < n; j++) {
        float v = (in[j] - m) * is;
        if (sp) v *= sp[j];
        if (bp) v += bp[j];
        out[j] = v;
      }
    }
  });
}

void rms_norm(const Tensor& x, const Tensor& scale, float eps, const Tensor& y) {
  const char* op = "RMSNormalization";
  check_f32(x, op, "X");
  check_f32(y, op, "Y");
  check_f32(scale, op, "scale");
  check(x.ndim == 2 && y.numel() == x.numel(), "RMSNormalization: internal: x must be [rows, n] and y alike");
  const int64_t rows = x.shape[0], n = x.shape[1];
  check(scale.numel() == n, "RMSNormalization: scale must have n elements");
  const float* xp = x.ptr<float>();
  const float* sp = scale.ptr<float>();
  float* yp = y.ptr<float>();
  parallel_for(rows, std::max<int64_t>(1, 8192 / std::max<int64_t>(n, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const float* in = xp + r * n;
      float* out = yp + r * n;
      double sq = 0;
      for (int64_t j = 0; j < n; j++) sq += (double)in[j] * in[j];
      const float inv = (float)(1.0 / std::sqrt((n ? sq / (double)n : 0.0) + (double)eps));
      for (int64_t j = 0; j < n; j++) out[j] = in[j] * inv * sp[j];
    }
  });
}

void group_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, int64_t groups, float eps, const Tensor& y) {
  const char* op = "GroupNormalization";
  check_f32(x, op, "X");
  check_f32(y, op, "Y");
  check_f32(scale, op, "scale");
  check_f32(bias, op, "bias");
  check(x.ndim == 3 && y.numel() == x.numel(), "GroupNormalization: internal: x must be [N, C, S] and y alike");
  int64_t N = x.shape[0], C = x.shape[1], S = x.shape[2];
  check(groups > 0 && C % groups == 0,
        "GroupNormalization: " + std::to_string(C) + " channels do not split into " + std::to_string(groups) + " groups");
  check(scale.numel() == C && bias.numel() == C, "GroupNormalization: scale and bias must have one value per channel");
  int64_t per = C / groups, len = per * S;
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const float* sp = scale.ptr<float>();
  const float* bp = bias.ptr<float>();
  parallel_for(N * groups, std::max<int64_t>(1, 8192 / std::max<int64_t>(len, 1)), [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; g++) {
      const float* in = xp + g * len;
      float* out = yp + g * len;
      Stats st = row_stats(in, len, eps);
      int64_t c0 = (g % groups) * per;
      for (int64_t c = 0; c < per; c++) {
        // Fold normalisation and the affine into one multiply-add per element.
        float a = (float)(st.inv_std * sp[c0 + c]);
        float b = (float)(bp[c0 + c] - st.mean * st.inv_std * sp[c0 + c]);
        const float* ic = in + c * S;
        float* oc = out + c * S;
        for (int64_t s = 0; s < S; s++) oc[s] = ic[s] * a + b;
      }
    }
  });
}

void batch_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, const Tensor& mean, const Tensor& var,
                float eps, const Tensor& y) {
  const char* op = "BatchNormalization";
  for (const Tensor* t : {&x, &y, &scale, &bias, &mean, &var}) check_f32(*t, op, "inputs and outputs");
  check(x.ndim == 3 && y.numel() == x.numel(), "BatchNormalization: internal: x must be [N, C, S] and y alike");
  int64_t N = x.shape[0], C = x.shape[1], S = x.shape[2];
  for (const Tensor* t : {&scale, &bias, &mean, &var})
    check(t->numel() == C, "BatchNormalization: scale, B, input_mean and input_var must have one value per channel");
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  parallel_for(N * C, std::max<int64_t>(1, 8192 / std::max<int64_t>(S, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      int64_t c = r % C;
      double inv = 1.0 / std::sqrt((double)var.ptr<float>()[c] + (double)eps);
      float a = (float)(inv * scale.ptr<float>()[c]);
      float b = (float)(bias.ptr<float>()[c] - mean.ptr<float>()[c] * inv * scale.ptr<float>()[c]);
      const float* in = xp + r * S;
      float* out = yp + r * S;
      for (int64_t s = 0; s < S; s++) out[s] = in[s] * a + b;
    }
  });
}

}  // namespace onnxstream
