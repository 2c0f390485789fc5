// Scalar reference kernels: plain loops and libm functions, the yardstick the SIMD
// versions are compared with. Compiled for baseline x86-64.
#include <cmath>
#include <cstring>

#include "wrnn.h"

namespace wrnn {
namespace {

float bf16f(uint32_t bits16) {
    uint32_t u = bits16 << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

void gemv(const Dense& d, const float* x, const uint32_t* xp, float* y, bool relu) {
    for (int rb = 0; rb < d.rows_padded / 16; ++rb) {
        float acc[16] = {};
        if (d.precision == Precision::FP32) {
            const float* w = d.w32.data() + size_t(rb) * d.cols * 16;
            for (int k = 0; k < d.cols; ++k)
                for (int r = 0; r < 16; ++r) acc[r] += w[size_t(k) * 16 + r] * x[k];
        } else {
            const uint16_t* w = d.w16.data() + size_t(rb) * d.col_pairs * 32;
            for (int kp = 0; kp < d.col_pairs; ++kp) {
                float x0 = bf16f(xp[kp] & 0xffff), x1 = bf16f(xp[kp] >> 16);
                for (int r = 0; r < 16; ++r)
                    acc[r] += bf16f(w[(size_t(kp) * 16 + r) * 2]) * x0 + bf16f(w[(size_t(kp) * 16 + r) * 2 + 1]) * x1;
            }
        }
        for (int r = 0; r < 16; ++r) {
            float v = acc[r] + d.bias[rb * 16 + r];
            y[rb * 16 + r] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void gru_rows(const float* gi, const float* gh, const float* col, float s, float* h, int n, int begin, int end) {
    for (int j = begin; j < end; ++j) {
        float r = sigmoid((gi[j] + col[j] * s) + gh[j]);
        float u = sigmoid((gi[n + j] + col[n + j] * s) + gh[n + j]);
        float e = std::tanh((gi[2 * n + j] + col[2 * n + j] * s) + r * gh[2 * n + j]);
        h[j] = u * h[j] + (1.0f - u) * e;
    }
}

void gate_inputs(const float* p0, const float* p1, float w, const float* b, const float* c0, float s0, const float* c1,
                 float s1, float* out, int n) {
    for (int j = 0; j < n; ++j) out[j] = ((1.0f - w) * p0[j] + w * p1[j] + b[j]) + c0[j] * s0 + c1[j] * s1;
}

int draw(const float* logits, double u, float* scratch) {
    float mx = logits[0];
    for (int i = 1; i < 256; ++i) mx = logits[i] > mx ? logits[i] : mx;
    float cum = 0.0f;
    for (int i = 0; i < 256; ++i) scratch[i] = cum += std::exp(logits[i] - mx);
    float thr = float(u) * scratch[255];
    for (int i = 0; i < 256; ++i)
        if (scratch[i] > thr) return i;
    return 255;
}

const Kernels kScalar = {"scalar", gemv, gru_rows, gate_inputs, draw};

}  // namespace

const Kernels& kernels_scalar() { return kScalar; }

}  // namespace wrnn
