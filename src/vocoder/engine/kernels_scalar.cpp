// Scalar reference kernels: plain loops and libm functions, the yardstick the SIMD
// versions are compared with. Compiled for the baseline of the target (x86-64, AArch64).
#include <cmath>
#include <cstring>

#include "columns.h"
#include "wrnn.h"

namespace wrnn {
namespace {

float bf16f(uint32_t bits16) {
    uint32_t u = bits16 << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

void gemv(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb_begin, int rb_end) {
    const uint32_t* xp = packed.words;
    for (int rb = rb_begin; rb < rb_end; ++rb) {
        float acc[16] = {};
        if (d.precision == Precision::INT8) {
            const int8_t* w = d.w8.data() + size_t(rb) * d.col_quads * 64;
            int32_t iacc[16] = {};
            for (int q = 0; q < d.col_quads; ++q)
                for (int r = 0; r < 16; ++r)
                    for (int e = 0; e < 4; ++e)
                        iacc[r] += int32_t(w[(size_t(q) * 16 + r) * 4 + e]) * int32_t(int8_t(xp[q] >> (8 * e)));
            for (int r = 0; r < 16; ++r) acc[r] = float(iacc[r]) * (d.scale[rb * 16 + r] * packed.scale);
        } else if (d.precision == Precision::FP32) {
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

void spmv(const Matrix& d, const float* x, float* y, bool relu, int s_begin, int s_end) {
    const int br = d.block_rows, bc = d.block_cols;
    for (int s = s_begin; s < s_end; ++s) {
        float acc[16] = {};
        for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b) {
            const float* w = d.w32.data() + size_t(b) * 16;
            for (int j = 0; j < bc; ++j)
                for (int i = 0; i < br; ++i) acc[i] += w[j * br + i] * x[d.bcol[b] + j];
        }
        for (int i = 0; i < br; ++i) {
            float v = acc[i] + d.bias[s * br + i];
            y[s * br + i] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

void gru_rows(const float* gi, const float* gh, const float* col, float s, const float* h_in, float* h_out, int n,
              int begin, int end) {
    for (int j = begin; j < end; ++j) {
        float r = sigmoid((gi[j] + col[j] * s) + gh[j]);
        float u = sigmoid((gi[n + j] + col[n + j] * s) + gh[n + j]);
        float e = std::tanh((gi[2 * n + j] + col[2 * n + j] * s) + r * gh[2 * n + j]);
        h_out[j] = u * h_in[j] + (1.0f - u) * e;
    }
}

void gate_inputs(const float* p0, const float* p1, float w, const float* b, const float* c0, float s0, const float* c1,
                 float s1, float* out, int n) {
    for (int j = 0; j < n; ++j) out[j] = ((1.0f - w) * p0[j] + w * p1[j] + b[j]) + c0[j] * s0 + c1[j] * s1;
}

void exps(const float* logits, float* out) {
    float mx = logits[0];
    for (int i = 1; i < 256; ++i) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < 256; ++i) out[i] = std::exp(logits[i] - mx);
}

float quantize(const float* x, int n, uint32_t* out) {
    float mx = 0.0f;
    for (int k = 0; k < n; ++k) mx = std::fmax(mx, std::fabs(x[k]));
    float inv = mx > 0.0f ? 127.0f / mx : 0.0f;
    uint8_t* bytes = reinterpret_cast<uint8_t*>(out);
    for (int k = 0; k < (n + 3) / 4 * 4; ++k) {
        float v = k < n ? std::fmin(std::fmax(x[k] * inv, -127.0f), 127.0f) : 0.0f;
        bytes[k] = uint8_t(int8_t(std::lrint(v)));
    }
    return mx > 0.0f ? mx / 127.0f : 1.0f;
}

// The batched products are defined as B independent matrix-vector products (the SIMD
// versions load each weight once per group of columns instead).
const Kernels kScalar = {"scalar", gemv, spmv, gru_rows, gate_inputs, exps, gemm_by_columns<gemv>,
                         spmm_by_columns<spmv>, quantize};

}  // namespace

const Kernels& kernels_scalar() { return kScalar; }

}  // namespace wrnn
