// Constants of the f32-vunary approximations shared by the vector ISAs.
// tanh and erf: odd/even rational functions x * P(x^2) / Q(x^2) on a clamped range (the float approximations
// Eigen uses in generic_fast_tanh_float / generic_fast_erf_float). Max error measured over 2e5 points of
// [-5, 5] in float32 evaluation: tanh 3.2e-7, erf 4.2e-7 (absolute and relative, about 3-4 ulp).
#pragma once

namespace onnxstream {

constexpr float kTanhClamp = 7.90531110763549805f;  // tanh rounds to +-1 beyond
constexpr float kTanhP[7] = {4.89352455891786e-03f, 6.37261928875436e-04f, 1.48572235717979e-05f,
                             5.12229709037114e-08f, -8.60467152213735e-11f, 2.00018790482477e-13f,
                             -2.76076847742355e-16f};  // x^1, x^3, ..., x^13
constexpr float kTanhQ[4] = {4.89352518554385e-03f, 2.26843463243900e-03f, 1.18534705686654e-04f,
                             1.19825839466702e-06f};  // x^0, x^2, x^4, x^6
constexpr float kErfClamp = 4.0f;  // erf rounds to +-1 beyond
constexpr float kErfP[7] = {-1.60960333262415e-02f, -2.95459980854025e-03f, -7.34990630326855e-04f,
                            -5.69250639462346e-05f, -2.10102402082508e-06f, 2.77068142495902e-08f,
                            -2.72614225801306e-10f};  // x^1, x^3, ..., x^13
constexpr float kErfQ[5] = {-1.42647390514189e-02f, -7.37332916720468e-03f, -1.68282697438203e-03f,
                            -2.13374055278905e-04f, -1.45660718464996e-05f};  // x^0, x^2, ..., x^8
// exp over the whole float range: the argument clamped to [kExpMin, kExpMax] (beyond, exp is 0 or inf), then the
// rr2-p5 scheme of f32-raddstoreexpminusmax-constants.h with 2^n applied as two factors (n reaches -150..128).
constexpr float kExpMin = -104.0f;
constexpr float kExpMax = 89.0f;
constexpr float kSqrtHalf = 0.70710678118654752f;

}  // namespace onnxstream
