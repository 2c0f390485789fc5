// AArch64 NEON kernels for the per-sample products: dense gemv in fp32, bf16 and int8,
// block-sparse spmv (16x1 and 4x4), and their batched forms as one matvec per column.
// Advanced SIMD is baseline on AArch64, so this file needs no ISA flags and no run-time
// check. The element-wise kernels (GRU update, gate inputs, softmax exps, quantisation)
// are the scalar reference's: a step's cost is in the products, and sharing quantize
// keeps every ISA's int8 inputs bit for bit the same.
#include <arm_neon.h>

#include "columns.h"
#include "wrnn.h"

namespace wrnn {
namespace {

// y[0..16) = acc + bias, optionally relu.
inline void store16(const float32x4_t acc[4], const float* bias, float* y, bool relu) {
    for (int i = 0; i < 4; ++i) {
        float32x4_t v = vaddq_f32(acc[i], vld1q_f32(bias + 4 * i));
        if (relu) v = vmaxq_f32(v, vdupq_n_f32(0.0f));
        vst1q_f32(y + 4 * i, v);
    }
}

// fp32, block-major (rb, k, 16): each column's 16 weights scaled by x[k]; two columns in
// flight so consecutive multiply-adds do not wait on each other.
void gemv_fp32(const Matrix& d, const float* x, float* y, bool relu, int rb) {
    const float* w = d.w32.data() + size_t(rb) * d.cols * 16;
    float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    float32x4_t b[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    int k = 0;
    for (; k + 1 < d.cols; k += 2, w += 32)
        for (int i = 0; i < 4; ++i) {
            a[i] = vfmaq_n_f32(a[i], vld1q_f32(w + 4 * i), x[k]);
            b[i] = vfmaq_n_f32(b[i], vld1q_f32(w + 16 + 4 * i), x[k + 1]);
        }
    if (k < d.cols)
        for (int i = 0; i < 4; ++i) a[i] = vfmaq_n_f32(a[i], vld1q_f32(w + 4 * i), x[k]);
    for (int i = 0; i < 4; ++i) a[i] = vaddq_f32(a[i], b[i]);
    store16(a, d.bias.data() + rb * 16, y + rb * 16, relu);
}

// bf16 column pairs (rb, k/2, 16, 2): vld2q de-interleaves eight rows' pairs into the
// rows' first and second columns, which widen to fp32 by a 16-bit shift.
inline float32x4_t widen(uint16x4_t v) { return vreinterpretq_f32_u32(vshll_n_u16(v, 16)); }

void gemv_bf16(const Matrix& d, Packed packed, float* y, bool relu, int rb) {
    const uint16_t* w = d.w16.data() + size_t(rb) * d.col_pairs * 32;
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (int kp = 0; kp < d.col_pairs; ++kp, w += 32) {
        const float32x4_t xs = widen(vreinterpret_u16_u32(vdup_n_u32(packed.words[kp])));  // (x0, x1, x0, x1)
        const float x0 = vgetq_lane_f32(xs, 0), x1 = vgetq_lane_f32(xs, 1);
        for (int h = 0; h < 2; ++h) {  // rows 8h..8h+7
            const uint16x8x2_t v = vld2q_u16(w + 16 * h);
            acc[2 * h] = vfmaq_n_f32(vfmaq_n_f32(acc[2 * h], widen(vget_low_u16(v.val[0])), x0),
                                     widen(vget_low_u16(v.val[1])), x1);
            acc[2 * h + 1] = vfmaq_n_f32(vfmaq_n_f32(acc[2 * h + 1], widen(vget_high_u16(v.val[0])), x0),
                                         widen(vget_high_u16(v.val[1])), x1);
        }
    }
    store16(acc, d.bias.data() + rb * 16, y + rb * 16, relu);
}

// int8 column quads (rb, k/4, 16, 4): one input quad, repeated over 16 bytes, multiplies
// four rows' quads (vmull_s8: exact int16 products, |w x| <= 128 * 128), and vpadalq_s16
// adds their neighbours into int32; a last pairwise add gives each row's sum. Exact, so
// the int32 sums equal the scalar reference's.
void gemv_int8(const Matrix& d, Packed packed, float* y, bool relu, int rb) {
    const int8_t* w = d.w8.data() + size_t(rb) * d.col_quads * 64;
    int32x4_t acc[8];
    for (auto& v : acc) v = vdupq_n_s32(0);
    for (int q = 0; q < d.col_quads; ++q, w += 64) {
        const int8x16_t x = vreinterpretq_s8_u32(vdupq_n_u32(packed.words[q]));
        for (int i = 0; i < 4; ++i) {  // rows 4i..4i+3: 16 bytes
            const int8x16_t v = vld1q_s8(w + 16 * i);
            acc[2 * i] = vpadalq_s16(acc[2 * i], vmull_s8(vget_low_s8(v), vget_low_s8(x)));
            acc[2 * i + 1] = vpadalq_s16(acc[2 * i + 1], vmull_high_s8(v, x));
        }
    }
    const float* scale = d.scale.data() + rb * 16;
    float32x4_t out[4];
    for (int i = 0; i < 4; ++i) {
        const int32x4_t sums = vpaddq_s32(acc[2 * i], acc[2 * i + 1]);
        out[i] = vmulq_f32(vcvtq_f32_s32(sums), vmulq_n_f32(vld1q_f32(scale + 4 * i), packed.scale));
    }
    store16(out, d.bias.data() + rb * 16, y + rb * 16, relu);
}

void gemv(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb_begin, int rb_end) {
    for (int rb = rb_begin; rb < rb_end; ++rb) {
        if (d.precision == Precision::INT8) gemv_int8(d, packed, y, relu, rb);
        else if (d.precision == Precision::BF16) gemv_bf16(d, packed, y, relu, rb);
        else gemv_fp32(d, x, y, relu, rb);
    }
}

// Block-sparse: a 16x1 block is one column of a 16-row stripe (four multiply-adds by its
// x); a 4x4 block is four columns of a 4-row stripe.
void spmv(const Matrix& d, const float* x, float* y, bool relu, int s_begin, int s_end) {
    const float32x4_t zero = vdupq_n_f32(0.0f);
    for (int s = s_begin; s < s_end; ++s) {
        const float* w = d.w32.data() + size_t(d.stripe[s]) * 16;
        if (d.block_rows == 16) {
            float32x4_t acc[4] = {zero, zero, zero, zero};
            for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b, w += 16)
                for (int i = 0; i < 4; ++i) acc[i] = vfmaq_n_f32(acc[i], vld1q_f32(w + 4 * i), x[d.bcol[b]]);
            store16(acc, d.bias.data() + s * 16, y + s * 16, relu);
        } else {
            float32x4_t a = zero, c = zero;
            for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b, w += 16) {
                const float* xb = x + d.bcol[b];
                a = vfmaq_n_f32(a, vld1q_f32(w), xb[0]);
                c = vfmaq_n_f32(c, vld1q_f32(w + 4), xb[1]);
                a = vfmaq_n_f32(a, vld1q_f32(w + 8), xb[2]);
                c = vfmaq_n_f32(c, vld1q_f32(w + 12), xb[3]);
            }
            float32x4_t v = vaddq_f32(vaddq_f32(a, c), vld1q_f32(d.bias.data() + s * 4));
            if (relu) v = vmaxq_f32(v, zero);
            vst1q_f32(y + s * 4, v);
        }
    }
}

Kernels make_table() {
    Kernels k = kernels_scalar();
    k.name = "neon";
    k.gemv = gemv;
    k.spmv = spmv;
    k.gemm = gemm_by_columns<gemv>;
    k.spmm = spmm_by_columns<spmv>;
    return k;
}

}  // namespace

const Kernels* kernels_neon() {
    static const Kernels k = make_table();
    return &k;
}

}  // namespace wrnn
