// AVX-512 kernels (F, BW, VL, BF16), compiled with per-file ISA flags and used only
// when the CPU reports them. exp uses the Cephes polynomial (relative error about
// 2e-7); sigmoid and tanh are built from it with an exact division.
#include <immintrin.h>

#include <cmath>

#include "wrnn.h"

namespace wrnn {
namespace {

inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

inline __m512 sigmoid16(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

inline __m512 tanh16(__m512 x) {
    __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp16(_mm512_add_ps(x, x));
    return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}

inline __mmask16 tail(int left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1); }

// int8 rows [16 rb, 16 (rb + R)): R row blocks per pass, each with two chains (even and
// odd quads), so one broadcast input word feeds R multiply-adds. vpdpbusd multiplies
// unsigned by signed bytes: the broadcast word is offset by 128 (xor 0x80), once per pass,
// and 128 * rowsum is taken off afterwards; the sums are exact integers, so neither R nor
// the chains change a row's result. The accumulators are typed as vpdpbusd's own __v16si:
// GCC 12 copies __m512i ones to and from fresh registers around every vpdpbusd.
template <int R>
void gemv_int8(const Matrix& d, Packed packed, float* y, bool relu, int rb) {
    const uint32_t* xp = packed.words;
    const size_t stride = size_t(d.col_quads) * 64;
    const int8_t* w = d.w8.data() + size_t(rb) * stride;
    const __m512i flip = _mm512_set1_epi32(int(0x80808080u));
    __v16si a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = (__v16si)_mm512_setzero_si512();
    auto dp = [&](__v16si acc, __m512i xq, int r, int q) {
        return (__v16si)_mm512_dpbusd_epi32((__m512i)acc, xq, _mm512_loadu_si512(w + r * stride + size_t(q) * 64));
    };
    int q = 0;
    for (; q + 2 <= d.col_quads; q += 2) {
        const __m512i x0 = _mm512_xor_si512(_mm512_set1_epi32(int(xp[q])), flip);
        const __m512i x1 = _mm512_xor_si512(_mm512_set1_epi32(int(xp[q + 1])), flip);
        for (int r = 0; r < R; ++r) a0[r] = dp(a0[r], x0, r, q), a1[r] = dp(a1[r], x1, r, q + 1);
    }
    if (q < d.col_quads) {
        const __m512i x0 = _mm512_xor_si512(_mm512_set1_epi32(int(xp[q])), flip);
        for (int r = 0; r < R; ++r) a0[r] = dp(a0[r], x0, r, q);
    }
    const __m512 xs = _mm512_set1_ps(packed.scale);
    for (int r = 0; r < R; ++r) {
        const int o = (rb + r) * 16;
        __m512i sum = _mm512_add_epi32((__m512i)a0[r], (__m512i)a1[r]);
        sum = _mm512_sub_epi32(sum, _mm512_slli_epi32(_mm512_loadu_si512(d.rowsum.data() + o), 7));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(_mm512_loadu_ps(d.scale.data() + o), xs));
        v = _mm512_add_ps(v, _mm512_loadu_ps(d.bias.data() + o));
        if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
        _mm512_storeu_ps(y + o, v);
    }
}

void spmv(const Matrix& d, const float* x, float* y, bool relu, int s_begin, int s_end) {
    const float* w = d.w32.data();
    const int32_t* col = d.bcol.data();
    if (d.block_rows == 16) {  // 16x1: one broadcast of x[col] feeds the block's 16 rows
        for (int s = s_begin; s < s_end; ++s) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0;
            int b = d.stripe[s];
            const int e = d.stripe[s + 1];
            for (; b + 2 <= e; b += 2) {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + size_t(b) * 16), _mm512_set1_ps(x[col[b]]), a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + size_t(b) * 16 + 16), _mm512_set1_ps(x[col[b + 1]]), a1);
            }
            if (b < e) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + size_t(b) * 16), _mm512_set1_ps(x[col[b]]), a0);
            __m512 v = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_loadu_ps(d.bias.data() + s * 16));
            if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
            _mm512_storeu_ps(y + s * 16, v);
        }
        return;
    }
    // 4x4: the block's 4 columns of 4 rows against x[col..col+3] spread to one column
    // value per 128-bit lane; the lanes are summed into the stripe's 4 rows at the end.
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    auto xv = [&](int b) { return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(x + col[b]))); };
    for (int s = s_begin; s < s_end; ++s) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        int b = d.stripe[s];
        const int e = d.stripe[s + 1];
        for (; b + 2 <= e; b += 2) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + size_t(b) * 16), xv(b), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + size_t(b) * 16 + 16), xv(b + 1), a1);
        }
        if (b < e) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + size_t(b) * 16), xv(b), a0);
        __m512 a = _mm512_add_ps(a0, a1);
        __m256 h = _mm256_add_ps(_mm512_castps512_ps256(a),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
        __m128 v = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)),
                              _mm_loadu_ps(d.bias.data() + s * 4));
        if (relu) v = _mm_max_ps(v, _mm_setzero_ps());
        _mm_storeu_ps(y + s * 4, v);
    }
}

// Batched products: G columns times R row blocks per pass (one accumulator each), so
// each weight vector is loaded once and used G times and each input broadcast R times.
// G and R are template constants so the accumulators stay in registers; gemm runs
// groups of 8, then one group of the rest. A column's sums are one chain in k order
// whatever G and R are, so its result does not depend on the group it falls in.
template <int G, int R>
void gemm_blocks(const Matrix& d, const Columns& x, const int32_t* sums, int b0, float* y, int y_stride, bool relu,
                 int rb) {
    __m512 acc[R][G];
    if (d.precision == Precision::INT8) {
        // The other way round from gemv: the weights are offset to unsigned (xor 0x80 is
        // w + 128), once per weight vector for the whole group, so the signed inputs are
        // broadcast straight from memory; 128 times the column's sum is taken off
        // afterwards. The sums are the same integers. The accumulators are typed as
        // vpdpbusd's own __v16si: GCC 12 copies __m512i ones to and from fresh registers
        // around every vpdpbusd.
        const size_t stride = size_t(d.col_quads) * 64;
        const int8_t* w = d.w8.data() + size_t(rb) * stride;
        const __m512i flip = _mm512_set1_epi32(int(0x80808080u));
        __v16si iacc[R][G];
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < G; ++j) iacc[r][j] = (__v16si)_mm512_setzero_si512();
        for (int q = 0; q < d.col_quads; ++q) {
            __m512i wq[R];
            for (int r = 0; r < R; ++r) wq[r] = _mm512_xor_si512(_mm512_loadu_si512(w + r * stride + size_t(q) * 64), flip);
            for (int j = 0; j < G; ++j) {
                __m512i xq = _mm512_set1_epi32(int(x.words[size_t(b0 + j) * x.w_stride + q]));
                for (int r = 0; r < R; ++r) iacc[r][j] = (__v16si)_mm512_dpbusd_epi32((__m512i)iacc[r][j], wq[r], xq);
            }
        }
        for (int r = 0; r < R; ++r) {
            __m512 sc = _mm512_loadu_ps(d.scale.data() + (rb + r) * 16);
            for (int j = 0; j < G; ++j) {
                __m512i sum = _mm512_sub_epi32((__m512i)iacc[r][j], _mm512_set1_epi32(sums[b0 + j] * 128));
                acc[r][j] = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(sc, _mm512_set1_ps(x.scales[b0 + j])));
            }
        }
    } else if (d.precision == Precision::FP32) {
        const size_t stride = size_t(d.cols) * 16;
        const float* w = d.w32.data() + size_t(rb) * stride;
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < G; ++j) acc[r][j] = _mm512_setzero_ps();
        for (int k = 0; k < d.cols; ++k) {
            __m512 wk[R];
            for (int r = 0; r < R; ++r) wk[r] = _mm512_loadu_ps(w + r * stride + k * 16);
            for (int j = 0; j < G; ++j) {
                __m512 xk = _mm512_set1_ps(x.x[size_t(b0 + j) * x.x_stride + k]);
                for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(wk[r], xk, acc[r][j]);
            }
        }
    } else {
        const size_t stride = size_t(d.col_pairs) * 32;
        const uint16_t* w = d.w16.data() + size_t(rb) * stride;
        for (int r = 0; r < R; ++r)
            for (int j = 0; j < G; ++j) acc[r][j] = _mm512_setzero_ps();
        for (int kp = 0; kp < d.col_pairs; ++kp) {
            __m512bh wk[R];
            for (int r = 0; r < R; ++r) wk[r] = (__m512bh)_mm512_loadu_si512(w + r * stride + kp * 32);
            for (int j = 0; j < G; ++j) {
                __m512bh xk = (__m512bh)_mm512_set1_epi32(int(x.words[size_t(b0 + j) * x.w_stride + kp]));
                for (int r = 0; r < R; ++r) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], wk[r], xk);
            }
        }
    }
    for (int r = 0; r < R; ++r) {
        __m512 bias = _mm512_loadu_ps(d.bias.data() + (rb + r) * 16);
        for (int j = 0; j < G; ++j) {
            __m512 v = _mm512_add_ps(acc[r][j], bias);
            if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
            _mm512_storeu_ps(y + size_t(b0 + j) * y_stride + (rb + r) * 16, v);
        }
    }
}

// R row blocks at a time, then one at a time for the rest.
template <int G, int R>
void gemm_group(const Matrix& d, const Columns& x, const int32_t* sums, int b0, float* y, int y_stride, bool relu,
                int u0, int u1) {
    int rb = u0;
    for (; rb + R <= u1; rb += R) gemm_blocks<G, R>(d, x, sums, b0, y, y_stride, relu, rb);
    for (; rb < u1; ++rb) gemm_blocks<G, 1>(d, x, sums, b0, y, y_stride, relu, rb);
}

// bf16 takes the batched path with one column: four row blocks per pass (four chains),
// each input broadcast once per pass; every row's result is one chain in k order, so it
// does not depend on the range [rb_begin, rb_end) a thread is given. fp32 keeps one row
// block at a time with four chains over k: it reads at the probed bandwidth already, and
// four blocks per pass did not pay (docs/native-engine.md, Speed).
void gemv(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb_begin, int rb_end) {
    if (d.precision == Precision::BF16) {
        const Columns one{1, x, 0, packed.words, 0, &packed.scale};
        return gemm_group<1, 4>(d, one, nullptr, 0, y, 0, relu, rb_begin, rb_end);
    }
    if (d.precision == Precision::FP32) {
        for (int rb = rb_begin; rb < rb_end; ++rb) {
            const float* w = d.w32.data() + size_t(rb) * d.cols * 16;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int k = 0;
            for (; k + 4 <= d.cols; k += 4) {
                a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k * 16), _mm512_set1_ps(x[k]), a0);
                a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k * 16 + 16), _mm512_set1_ps(x[k + 1]), a1);
                a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k * 16 + 32), _mm512_set1_ps(x[k + 2]), a2);
                a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k * 16 + 48), _mm512_set1_ps(x[k + 3]), a3);
            }
            for (; k < d.cols; ++k) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k * 16), _mm512_set1_ps(x[k]), a0);
            __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                     _mm512_loadu_ps(d.bias.data() + rb * 16));
            if (relu) s = _mm512_max_ps(s, _mm512_setzero_ps());
            _mm512_storeu_ps(y + rb * 16, s);
        }
        return;
    }
    int rb = rb_begin;
    for (; rb + 4 <= rb_end; rb += 4) gemv_int8<4>(d, packed, y, relu, rb);
    for (; rb < rb_end; ++rb) gemv_int8<1>(d, packed, y, relu, rb);
}

// 16x1: two accumulators per column, for even and odd blocks as in spmv, so that even
// one column has two chains in flight.
template <int G>
void spmm_group(const Matrix& d, const Columns& x, const int32_t*, int b0, float* y, int y_stride, bool relu, int u0,
                int u1) {
    const float* w = d.w32.data();
    const int32_t* col = d.bcol.data();
    const float* xc[G];
    for (int j = 0; j < G; ++j) xc[j] = x.x + size_t(b0 + j) * x.x_stride;
    if (d.block_rows == 16) {
        for (int s = u0; s < u1; ++s) {
            __m512 a0[G], a1[G];
            for (int j = 0; j < G; ++j) a0[j] = a1[j] = _mm512_setzero_ps();
            int b = d.stripe[s];
            const int e = d.stripe[s + 1];
            for (; b + 2 <= e; b += 2) {
                __m512 w0 = _mm512_loadu_ps(w + size_t(b) * 16), w1 = _mm512_loadu_ps(w + size_t(b) * 16 + 16);
                for (int j = 0; j < G; ++j) {
                    a0[j] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xc[j][col[b]]), a0[j]);
                    a1[j] = _mm512_fmadd_ps(w1, _mm512_set1_ps(xc[j][col[b + 1]]), a1[j]);
                }
            }
            if (b < e) {
                __m512 w0 = _mm512_loadu_ps(w + size_t(b) * 16);
                for (int j = 0; j < G; ++j) a0[j] = _mm512_fmadd_ps(w0, _mm512_set1_ps(xc[j][col[b]]), a0[j]);
            }
            __m512 bias = _mm512_loadu_ps(d.bias.data() + s * 16);
            for (int j = 0; j < G; ++j) {
                __m512 v = _mm512_add_ps(_mm512_add_ps(a0[j], a1[j]), bias);
                if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
                _mm512_storeu_ps(y + size_t(b0 + j) * y_stride + s * 16, v);
            }
        }
        return;
    }
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int s = u0; s < u1; ++s) {
        __m512 acc[G];
        for (int j = 0; j < G; ++j) acc[j] = _mm512_setzero_ps();
        for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b) {
            __m512 wb = _mm512_loadu_ps(w + size_t(b) * 16);
            for (int j = 0; j < G; ++j)
                acc[j] = _mm512_fmadd_ps(
                    wb, _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(xc[j] + col[b]))), acc[j]);
        }
        __m128 bias = _mm_loadu_ps(d.bias.data() + s * 4);
        for (int j = 0; j < G; ++j) {
            __m256 h = _mm256_add_ps(_mm512_castps512_ps256(acc[j]),
                                     _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[j]), 1)));
            __m128 v = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)), bias);
            if (relu) v = _mm_max_ps(v, _mm_setzero_ps());
            _mm_storeu_ps(y + size_t(b0 + j) * y_stride + s * 4, v);
        }
    }
}

using Group = void (*)(const Matrix&, const Columns&, const int32_t*, int, float*, int, bool, int, int);

// Row blocks (dense) or stripes (sparse) in chunks of `chunk`; each chunk runs every
// group of 8 columns, then one group of the rest, so a chunk's weights come from memory
// once per step and from cache for the other groups, whatever the batch size. sums: the
// int8 column sums (gemm_group), else null.
void by_groups(const Group (&groups)[8], int units, int chunk, const Matrix& d, const Columns& x, const int32_t* sums,
               float* y, int y_stride, bool relu) {
    for (int u0 = 0; u0 < units; u0 += chunk) {
        const int u1 = u0 + chunk < units ? u0 + chunk : units;
        int b0 = 0;
        for (; b0 + 8 <= x.n; b0 += 8) groups[7](d, x, sums, b0, y, y_stride, relu, u0, u1);
        if (b0 < x.n) groups[x.n - b0 - 1](d, x, sums, b0, y, y_stride, relu, u0, u1);
    }
}

// Enough independent chains to cover the multiply-add latency: four row blocks per pass
// for groups of up to three columns, two for the rest (which also halves the broadcasts).
const Group kGemm[8] = {gemm_group<1, 4>, gemm_group<2, 4>, gemm_group<3, 4>, gemm_group<4, 2>,
                        gemm_group<5, 2>, gemm_group<6, 2>, gemm_group<7, 2>, gemm_group<8, 2>};
const Group kSpmm[8] = {spmm_group<1>, spmm_group<2>, spmm_group<3>, spmm_group<4>,
                        spmm_group<5>, spmm_group<6>, spmm_group<7>, spmm_group<8>};

// Sum of the n int8 quads at p (the padding bytes are zero).
int32_t quad_sum(const uint32_t* p, int n) {
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i s = _mm512_setzero_si512();
    for (int i = 0; i < n; i += 16) s = _mm512_dpbusd_epi32(s, ones, _mm512_maskz_loadu_epi32(tail(n - i), p + i));
    return _mm512_reduce_add_epi32(s);
}

void gemm(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu) {
    const int units = d.rows_padded / 16, chunk = 4;  // row blocks: the most a group takes per pass
    if (d.precision != Precision::INT8) return by_groups(kGemm, units, chunk, d, x, nullptr, y, y_stride, relu);
    // int8 column sums on the stack, kSumCols columns at a time (more would add nothing:
    // each weight byte already feeds that many multiply-adds per read).
    constexpr int kSumCols = 64;
    for (int c0 = 0; c0 < x.n; c0 += kSumCols) {
        const Columns part{x.n - c0 < kSumCols ? x.n - c0 : kSumCols, x.x + size_t(c0) * x.x_stride, x.x_stride,
                         x.words + size_t(c0) * x.w_stride, x.w_stride, x.scales + c0};
        int32_t sums[kSumCols];
        for (int b = 0; b < part.n; ++b) sums[b] = quad_sum(part.words + size_t(b) * x.w_stride, d.col_quads);
        by_groups(kGemm, units, chunk, d, part, sums, y + size_t(c0) * y_stride, y_stride, relu);
    }
}
void spmm(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu) {
    by_groups(kSpmm, d.rows / d.block_rows, 64 / d.block_rows, d, x, nullptr, y, y_stride, relu);
}

void gru_rows(const float* gi, const float* gh, const float* col, float s, const float* h_in, float* h_out, int n,
              int begin, int end) {
    __m512 vs = _mm512_set1_ps(s), one = _mm512_set1_ps(1.0f);
    for (int j = begin; j < end; j += 16) {
        __mmask16 m = tail(end - j);
        auto in = [&](int g) {
            return _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, col + g * n + j), vs, _mm512_maskz_loadu_ps(m, gi + g * n + j));
        };
        __m512 r = sigmoid16(_mm512_add_ps(in(0), _mm512_maskz_loadu_ps(m, gh + j)));
        __m512 u = sigmoid16(_mm512_add_ps(in(1), _mm512_maskz_loadu_ps(m, gh + n + j)));
        __m512 e = tanh16(_mm512_fmadd_ps(r, _mm512_maskz_loadu_ps(m, gh + 2 * n + j), in(2)));
        __m512 hv = _mm512_maskz_loadu_ps(m, h_in + j);
        _mm512_mask_storeu_ps(h_out + j, m, _mm512_fmadd_ps(u, hv, _mm512_mul_ps(_mm512_sub_ps(one, u), e)));
    }
}

void gate_inputs(const float* p0, const float* p1, float w, const float* b, const float* c0, float s0, const float* c1,
                 float s1, float* out, int n) {
    __m512 vw = _mm512_set1_ps(w), vw1 = _mm512_set1_ps(1.0f - w), v0 = _mm512_set1_ps(s0), v1 = _mm512_set1_ps(s1);
    for (int j = 0; j < n; j += 16) {
        __mmask16 m = tail(n - j);
        __m512 a = _mm512_mul_ps(vw1, _mm512_maskz_loadu_ps(m, p0 + j));
        a = _mm512_fmadd_ps(vw, _mm512_maskz_loadu_ps(m, p1 + j), a);
        a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, b + j));
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c0 + j), v0, a);
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, c1 + j), v1, a);
        _mm512_mask_storeu_ps(out + j, m, a);
    }
}

void exps(const float* logits, float* out) {
    __m512 mx = _mm512_loadu_ps(logits);
    for (int i = 16; i < 256; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(logits + i));
    __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int i = 0; i < 256; i += 16) _mm512_storeu_ps(out + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(logits + i), vmax)));
}

float quantize(const float* x, int n, uint32_t* out) {
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    __m512 mx = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) mx = _mm512_max_ps(mx, _mm512_and_ps(_mm512_maskz_loadu_ps(tail(n - j), x + j), absmask));
    float m = _mm512_reduce_max_ps(mx);
    __m512 inv = _mm512_set1_ps(m > 0.0f ? 127.0f / m : 0.0f), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    out[(n + 3) / 4 - 1] = 0;  // the padding bytes of the last word
    int8_t* bytes = reinterpret_cast<int8_t*>(out);
    for (int j = 0; j < n; j += 16) {
        __mmask16 t = tail(n - j);
        __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(t, x + j), inv), lo), hi);
        _mm_mask_storeu_epi8(bytes + j, t, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    return m > 0.0f ? m / 127.0f : 1.0f;
}

const Kernels kAvx512 = {"avx512", gemv, spmv, gru_rows, gate_inputs, exps, gemm, spmm, quantize};

}  // namespace

const Kernels* kernels_avx512() { return &kAvx512; }

}  // namespace wrnn
