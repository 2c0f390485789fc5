// AVX2 + FMA kernels, compiled with per-file ISA flags and used only when the CPU
// reports them. Same exp approximation as the AVX-512 file (Cephes, rel. error ~2e-7);
// bf16 weights are widened to fp32 with shifts (no AVX2 bf16 dot product exists).
#include <immintrin.h>

#include <cmath>

#include "wrnn.h"

namespace wrnn {
namespace {

inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

inline __m256 tanh8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_add_ps(x, x));
    return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}

// Lanes [0, left) set, for masked loads and stores of a tail.
inline __m256i tail(int left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float bf16f(uint32_t bits16) { return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(bits16 << 16)))); }

// An int8 input quad broadcast to every 32-bit lane, and its bytes' magnitudes.
struct Quad {
    __m256i x, mag;
    explicit Quad(uint32_t word) : x(_mm256_set1_epi32(int(word))), mag(_mm256_abs_epi8(x)) {}
};

// Eight rows' dot products with one input quad, as int32 lanes in row order (32 weight
// bytes: 8 rows x 4 columns). vpsignb moves the input's signs onto the weights, so
// vpmaddubsw can multiply the input's magnitudes (unsigned) by them and add byte pairs
// into int16 exactly (|x|, |w| <= 127: a pair is at most 32258), and vpmaddwd by ones
// adds the pairs into each row's quad. No widening: 4 instructions per 32 weight bytes.
inline __m256i dot_quads(__m256i w, const Quad& q) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q.mag, _mm256_sign_epi8(w, q.x)), _mm256_set1_epi16(1));
}

inline __m256i load256(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// int8 rows [16 rb, 16 (rb + R)): R row blocks per pass, so each input quad is prepared
// once for R blocks, with two chains (even and odd quads) per 8 rows; the sums are exact
// integers, so R does not change a row's result.
template <int R>
void gemv_int8(const Matrix& d, Packed packed, float* y, bool relu, int rb) {
    const uint32_t* xp = packed.words;
    const size_t stride = size_t(d.col_quads) * 64;
    const int8_t* w = d.w8.data() + size_t(rb) * stride;
    __m256i a[R][2][2];  // [block][rows 0-7, 8-15][even, odd quad]
    for (int r = 0; r < R; ++r)
        for (int h = 0; h < 2; ++h) a[r][h][0] = a[r][h][1] = _mm256_setzero_si256();
    int q = 0;
    for (; q + 2 <= d.col_quads; q += 2) {
        const Quad x0(xp[q]), x1(xp[q + 1]);
        for (int r = 0; r < R; ++r)
            for (int h = 0; h < 2; ++h) {
                const int8_t* wq = w + r * stride + size_t(q) * 64 + 32 * h;
                a[r][h][0] = _mm256_add_epi32(a[r][h][0], dot_quads(load256(wq), x0));
                a[r][h][1] = _mm256_add_epi32(a[r][h][1], dot_quads(load256(wq + 64), x1));
            }
    }
    if (q < d.col_quads) {
        const Quad x0(xp[q]);
        for (int r = 0; r < R; ++r)
            for (int h = 0; h < 2; ++h)
                a[r][h][0] = _mm256_add_epi32(a[r][h][0], dot_quads(load256(w + r * stride + size_t(q) * 64 + 32 * h), x0));
    }
    const __m256 xs = _mm256_set1_ps(packed.scale);
    for (int r = 0; r < R; ++r)
        for (int h = 0; h < 2; ++h) {
            const int o = (rb + r) * 16 + 8 * h;
            __m256i sum = _mm256_add_epi32(a[r][h][0], a[r][h][1]);
            __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(_mm256_loadu_ps(d.scale.data() + o), xs));
            v = _mm256_add_ps(v, _mm256_loadu_ps(d.bias.data() + o));
            if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
            _mm256_storeu_ps(y + o, v);
        }
}

void gemv(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb_begin, int rb_end) {
    if (d.precision == Precision::INT8) {
        int rb = rb_begin;
        for (; rb + 2 <= rb_end; rb += 2) gemv_int8<2>(d, packed, y, relu, rb);
        for (; rb < rb_end; ++rb) gemv_int8<1>(d, packed, y, relu, rb);
        return;
    }
    const uint32_t* xp = packed.words;
    for (int rb = rb_begin; rb < rb_end; ++rb) {
        __m256 lo0 = _mm256_setzero_ps(), hi0 = lo0, lo1 = lo0, hi1 = lo0;
        if (d.precision == Precision::FP32) {
            const float* w = d.w32.data() + size_t(rb) * d.cols * 16;
            int k = 0;
            for (; k + 2 <= d.cols; k += 2) {
                __m256 x0 = _mm256_set1_ps(x[k]), x1 = _mm256_set1_ps(x[k + 1]);
                lo0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k * 16), x0, lo0);
                hi0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k * 16 + 8), x0, hi0);
                lo1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k * 16 + 16), x1, lo1);
                hi1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k * 16 + 24), x1, hi1);
            }
            for (; k < d.cols; ++k) {
                __m256 x0 = _mm256_set1_ps(x[k]);
                lo0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k * 16), x0, lo0);
                hi0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k * 16 + 8), x0, hi0);
            }
        } else {
            const uint16_t* w = d.w16.data() + size_t(rb) * d.col_pairs * 32;
            const __m256i himask = _mm256_set1_epi32(int(0xffff0000u));
            for (int kp = 0; kp < d.col_pairs; ++kp) {
                __m256 x0 = _mm256_set1_ps(bf16f(xp[kp] & 0xffff)), x1 = _mm256_set1_ps(bf16f(xp[kp] >> 16));
                __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32));
                __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32 + 16));
                lo0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(va, 16)), x0, lo0);
                lo1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(va, himask)), x1, lo1);
                hi0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(vb, 16)), x0, hi0);
                hi1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(vb, himask)), x1, hi1);
            }
        }
        __m256 lo = _mm256_add_ps(_mm256_add_ps(lo0, lo1), _mm256_loadu_ps(d.bias.data() + rb * 16));
        __m256 hi = _mm256_add_ps(_mm256_add_ps(hi0, hi1), _mm256_loadu_ps(d.bias.data() + rb * 16 + 8));
        if (relu) {
            lo = _mm256_max_ps(lo, _mm256_setzero_ps());
            hi = _mm256_max_ps(hi, _mm256_setzero_ps());
        }
        _mm256_storeu_ps(y + rb * 16, lo);
        _mm256_storeu_ps(y + rb * 16 + 8, hi);
    }
}

void spmv(const Matrix& d, const float* x, float* y, bool relu, int s_begin, int s_end) {
    const float* w = d.w32.data();
    const int32_t* col = d.bcol.data();
    if (d.block_rows == 16) {  // 16x1: one broadcast of x[col] feeds the block's 16 rows
        for (int s = s_begin; s < s_end; ++s) {
            __m256 lo = _mm256_setzero_ps(), hi = lo;
            for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b) {
                __m256 xb = _mm256_set1_ps(x[col[b]]);
                lo = _mm256_fmadd_ps(_mm256_loadu_ps(w + size_t(b) * 16), xb, lo);
                hi = _mm256_fmadd_ps(_mm256_loadu_ps(w + size_t(b) * 16 + 8), xb, hi);
            }
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(d.bias.data() + s * 16));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(d.bias.data() + s * 16 + 8));
            if (relu) {
                lo = _mm256_max_ps(lo, _mm256_setzero_ps());
                hi = _mm256_max_ps(hi, _mm256_setzero_ps());
            }
            _mm256_storeu_ps(y + s * 16, lo);
            _mm256_storeu_ps(y + s * 16 + 8, hi);
        }
        return;
    }
    // 4x4: columns (0, 1) and (2, 3) of the block against x[col..col+3] spread to one
    // column value per 128-bit lane; the lanes are summed into the stripe's 4 rows.
    const __m256i spread01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const __m256i spread23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    for (int s = s_begin; s < s_end; ++s) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b) {
            __m256 x4 = _mm256_castps128_ps256(_mm_loadu_ps(x + col[b]));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + size_t(b) * 16), _mm256_permutevar8x32_ps(x4, spread01), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + size_t(b) * 16 + 8), _mm256_permutevar8x32_ps(x4, spread23), a1);
        }
        __m256 a = _mm256_add_ps(a0, a1);
        __m128 v = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)),
                              _mm_loadu_ps(d.bias.data() + s * 4));
        if (relu) v = _mm_max_ps(v, _mm_setzero_ps());
        _mm_storeu_ps(y + s * 4, v);
    }
}

// Batched products: G columns per pass over a row block, so each weight vector is
// loaded (and, for bf16, widened) once and used G times. 16 ymm registers hold two
// accumulators per column for 4 columns.
template <int G>
void gemm_group(const Matrix& d, const Columns& x, int b0, float* y, int y_stride, bool relu, int u0, int u1) {
    const float* xc[G];
    const uint32_t* wc[G];
    for (int j = 0; j < G; ++j) {
        xc[j] = x.x + size_t(b0 + j) * x.x_stride;
        wc[j] = x.words ? x.words + size_t(b0 + j) * x.w_stride : nullptr;
    }
    for (int rb = u0; rb < u1; ++rb) {
        __m256 lo[G], hi[G];
        if (d.precision == Precision::INT8) {
            const int8_t* w = d.w8.data() + size_t(rb) * d.col_quads * 64;
            __m256i a0[G], a1[G];  // rows 0-7 and 8-15
            for (int j = 0; j < G; ++j) a0[j] = a1[j] = _mm256_setzero_si256();
            for (int q = 0; q < d.col_quads; ++q) {
                const __m256i w0 = load256(w + size_t(q) * 64), w1 = load256(w + size_t(q) * 64 + 32);
                for (int j = 0; j < G; ++j) {
                    const Quad xq(wc[j][q]);
                    a0[j] = _mm256_add_epi32(a0[j], dot_quads(w0, xq));
                    a1[j] = _mm256_add_epi32(a1[j], dot_quads(w1, xq));
                }
            }
            __m256 sc0 = _mm256_loadu_ps(d.scale.data() + rb * 16), sc1 = _mm256_loadu_ps(d.scale.data() + rb * 16 + 8);
            for (int j = 0; j < G; ++j) {
                __m256 xs = _mm256_set1_ps(x.scales[b0 + j]);
                lo[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(a0[j]), _mm256_mul_ps(sc0, xs));
                hi[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(a1[j]), _mm256_mul_ps(sc1, xs));
            }
        } else if (d.precision == Precision::FP32) {
            const float* w = d.w32.data() + size_t(rb) * d.cols * 16;
            for (int j = 0; j < G; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
            for (int k = 0; k < d.cols; ++k) {
                __m256 w0 = _mm256_loadu_ps(w + k * 16), w1 = _mm256_loadu_ps(w + k * 16 + 8);
                for (int j = 0; j < G; ++j) {
                    __m256 xk = _mm256_set1_ps(xc[j][k]);
                    lo[j] = _mm256_fmadd_ps(w0, xk, lo[j]);
                    hi[j] = _mm256_fmadd_ps(w1, xk, hi[j]);
                }
            }
        } else {
            const uint16_t* w = d.w16.data() + size_t(rb) * d.col_pairs * 32;
            const __m256i himask = _mm256_set1_epi32(int(0xffff0000u));
            for (int j = 0; j < G; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
            for (int kp = 0; kp < d.col_pairs; ++kp) {
                __m256i va = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32));
                __m256i vb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kp * 32 + 16));
                __m256 lo_e = _mm256_castsi256_ps(_mm256_slli_epi32(va, 16));
                __m256 lo_o = _mm256_castsi256_ps(_mm256_and_si256(va, himask));
                __m256 hi_e = _mm256_castsi256_ps(_mm256_slli_epi32(vb, 16));
                __m256 hi_o = _mm256_castsi256_ps(_mm256_and_si256(vb, himask));
                for (int j = 0; j < G; ++j) {
                    __m256 x0 = _mm256_set1_ps(bf16f(wc[j][kp] & 0xffff)), x1 = _mm256_set1_ps(bf16f(wc[j][kp] >> 16));
                    lo[j] = _mm256_fmadd_ps(lo_o, x1, _mm256_fmadd_ps(lo_e, x0, lo[j]));
                    hi[j] = _mm256_fmadd_ps(hi_o, x1, _mm256_fmadd_ps(hi_e, x0, hi[j]));
                }
            }
        }
        __m256 b0v = _mm256_loadu_ps(d.bias.data() + rb * 16), b1v = _mm256_loadu_ps(d.bias.data() + rb * 16 + 8);
        for (int j = 0; j < G; ++j) {
            __m256 l = _mm256_add_ps(lo[j], b0v), h = _mm256_add_ps(hi[j], b1v);
            if (relu) {
                l = _mm256_max_ps(l, _mm256_setzero_ps());
                h = _mm256_max_ps(h, _mm256_setzero_ps());
            }
            float* yo = y + size_t(b0 + j) * y_stride + rb * 16;
            _mm256_storeu_ps(yo, l);
            _mm256_storeu_ps(yo + 8, h);
        }
    }
}

template <int G>
void spmm_group(const Matrix& d, const Columns& x, int b0, float* y, int y_stride, bool relu, int u0, int u1) {
    const float* w = d.w32.data();
    const int32_t* col = d.bcol.data();
    const float* xc[G];
    for (int j = 0; j < G; ++j) xc[j] = x.x + size_t(b0 + j) * x.x_stride;
    if (d.block_rows == 16) {
        for (int s = u0; s < u1; ++s) {
            __m256 lo[G], hi[G];
            for (int j = 0; j < G; ++j) lo[j] = hi[j] = _mm256_setzero_ps();
            for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b) {
                __m256 w0 = _mm256_loadu_ps(w + size_t(b) * 16), w1 = _mm256_loadu_ps(w + size_t(b) * 16 + 8);
                for (int j = 0; j < G; ++j) {
                    __m256 xb = _mm256_set1_ps(xc[j][col[b]]);
                    lo[j] = _mm256_fmadd_ps(w0, xb, lo[j]);
                    hi[j] = _mm256_fmadd_ps(w1, xb, hi[j]);
                }
            }
            __m256 b0v = _mm256_loadu_ps(d.bias.data() + s * 16), b1v = _mm256_loadu_ps(d.bias.data() + s * 16 + 8);
            for (int j = 0; j < G; ++j) {
                __m256 l = _mm256_add_ps(lo[j], b0v), h = _mm256_add_ps(hi[j], b1v);
                if (relu) {
                    l = _mm256_max_ps(l, _mm256_setzero_ps());
                    h = _mm256_max_ps(h, _mm256_setzero_ps());
                }
                _mm256_storeu_ps(y + size_t(b0 + j) * y_stride + s * 16, l);
                _mm256_storeu_ps(y + size_t(b0 + j) * y_stride + s * 16 + 8, h);
            }
        }
        return;
    }
    const __m256i spread01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    const __m256i spread23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
    for (int s = u0; s < u1; ++s) {
        __m256 a0[G], a1[G];
        for (int j = 0; j < G; ++j) a0[j] = a1[j] = _mm256_setzero_ps();
        for (int b = d.stripe[s]; b < d.stripe[s + 1]; ++b) {
            __m256 w0 = _mm256_loadu_ps(w + size_t(b) * 16), w1 = _mm256_loadu_ps(w + size_t(b) * 16 + 8);
            for (int j = 0; j < G; ++j) {
                __m256 x4 = _mm256_castps128_ps256(_mm_loadu_ps(xc[j] + col[b]));
                a0[j] = _mm256_fmadd_ps(w0, _mm256_permutevar8x32_ps(x4, spread01), a0[j]);
                a1[j] = _mm256_fmadd_ps(w1, _mm256_permutevar8x32_ps(x4, spread23), a1[j]);
            }
        }
        __m128 bias = _mm_loadu_ps(d.bias.data() + s * 4);
        for (int j = 0; j < G; ++j) {
            __m256 a = _mm256_add_ps(a0[j], a1[j]);
            __m128 v = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)), bias);
            if (relu) v = _mm_max_ps(v, _mm_setzero_ps());
            _mm_storeu_ps(y + size_t(b0 + j) * y_stride + s * 4, v);
        }
    }
}

using Group = void (*)(const Matrix&, const Columns&, int, float*, int, bool, int, int);

// Row blocks (dense) or stripes (sparse) in chunks of `chunk`; each chunk runs every
// group of `max` columns, then one group of the rest, so a chunk's weights come from
// memory once per step and from cache for the other groups, whatever the batch size.
void by_groups(const Group* groups, int max, int units, int chunk, const Matrix& d, const Columns& x, float* y,
               int y_stride, bool relu) {
    for (int u0 = 0; u0 < units; u0 += chunk) {
        const int u1 = u0 + chunk < units ? u0 + chunk : units;
        int b0 = 0;
        for (; b0 + max <= x.n; b0 += max) groups[max - 1](d, x, b0, y, y_stride, relu, u0, u1);
        if (b0 < x.n) groups[x.n - b0 - 1](d, x, b0, y, y_stride, relu, u0, u1);
    }
}

const Group kGemm[4] = {gemm_group<1>, gemm_group<2>, gemm_group<3>, gemm_group<4>};
const Group kSpmm[4] = {spmm_group<1>, spmm_group<2>, spmm_group<3>, spmm_group<4>};

void gemm(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu) {
    by_groups(kGemm, 4, d.rows_padded / 16, 1, d, x, y, y_stride, relu);
}
void spmm(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu) {
    by_groups(kSpmm, 4, d.rows / d.block_rows, 64 / d.block_rows, d, x, y, y_stride, relu);
}

void gru_rows(const float* gi, const float* gh, const float* col, float s, const float* h_in, float* h_out, int n,
              int begin, int end) {
    __m256 vs = _mm256_set1_ps(s), one = _mm256_set1_ps(1.0f);
    for (int j = begin; j < end; j += 8) {
        __m256i m = tail(end - j);
        auto ld = [&](const float* p) { return _mm256_maskload_ps(p, m); };
        auto in = [&](int g) { return _mm256_fmadd_ps(ld(col + g * n + j), vs, ld(gi + g * n + j)); };
        __m256 r = sigmoid8(_mm256_add_ps(in(0), ld(gh + j)));
        __m256 u = sigmoid8(_mm256_add_ps(in(1), ld(gh + n + j)));
        __m256 e = tanh8(_mm256_fmadd_ps(r, ld(gh + 2 * n + j), in(2)));
        _mm256_maskstore_ps(h_out + j, m, _mm256_fmadd_ps(u, ld(h_in + j), _mm256_mul_ps(_mm256_sub_ps(one, u), e)));
    }
}

void gate_inputs(const float* p0, const float* p1, float w, const float* b, const float* c0, float s0, const float* c1,
                 float s1, float* out, int n) {
    __m256 vw = _mm256_set1_ps(w), vw1 = _mm256_set1_ps(1.0f - w), v0 = _mm256_set1_ps(s0), v1 = _mm256_set1_ps(s1);
    for (int j = 0; j < n; j += 8) {
        __m256i m = tail(n - j);
        __m256 a = _mm256_mul_ps(vw1, _mm256_maskload_ps(p0 + j, m));
        a = _mm256_fmadd_ps(vw, _mm256_maskload_ps(p1 + j, m), a);
        a = _mm256_add_ps(a, _mm256_maskload_ps(b + j, m));
        a = _mm256_fmadd_ps(_mm256_maskload_ps(c0 + j, m), v0, a);
        a = _mm256_fmadd_ps(_mm256_maskload_ps(c1 + j, m), v1, a);
        _mm256_maskstore_ps(out + j, m, a);
    }
}

void exps(const float* logits, float* out) {
    __m256 mx = _mm256_loadu_ps(logits);
    for (int i = 8; i < 256; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(logits + i));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    __m256 vmax = _mm256_set1_ps(_mm_cvtss_f32(m4));
    for (int i = 0; i < 256; i += 8) _mm256_storeu_ps(out + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(logits + i), vmax)));
}

float quantize(const float* x, int n, uint32_t* out) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_setzero_ps();
    for (int j = 0; j < n; j += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_maskload_ps(x + j, tail(n - j)), absmask));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
    __m256 inv = _mm256_set1_ps(m > 0.0f ? 127.0f / m : 0.0f), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    out[(n + 3) / 4 - 1] = 0;  // the padding bytes of the last word
    int8_t* bytes = reinterpret_cast<int8_t*>(out);
    alignas(32) int32_t q[8];
    for (int j = 0; j < n; j += 8) {
        __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_maskload_ps(x + j, tail(n - j)), inv), lo), hi);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_cvtps_epi32(v));
        for (int e = 0; e < 8 && j + e < n; ++e) bytes[j + e] = int8_t(q[e]);
    }
    return m > 0.0f ? m / 127.0f : 1.0f;
}

const Kernels kAvx2 = {"avx2", gemv, spmv, gru_rows, gate_inputs, exps, gemm, spmm, quantize};

}  // namespace

const Kernels* kernels_avx2() { return &kAvx2; }

}  // namespace wrnn
