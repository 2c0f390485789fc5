// The batched products (Kernels::gemm, Kernels::spmm) as one matrix-vector product per
// column: the scalar reference's definition, and NEON's implementation (its matvecs are
// fast enough that loading each weight once per column group has not been written yet).
// The AVX files do not include this: their batched kernels share weight loads.
#pragma once

#include "wrnn.h"

namespace wrnn {
namespace {

template <void (*Gemv)(const Matrix&, const float*, Packed, float*, bool, int, int)>
void gemm_by_columns(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu) {
    for (int b = 0; b < x.n; ++b) {
        Packed p{x.words ? x.words + size_t(b) * x.w_stride : nullptr, x.scales ? x.scales[b] : 1.0f};
        Gemv(d, x.x + size_t(b) * x.x_stride, p, y + size_t(b) * y_stride, relu, 0, d.rows_padded / 16);
    }
}

template <void (*Spmv)(const Matrix&, const float*, float*, bool, int, int)>
void spmm_by_columns(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu) {
    for (int b = 0; b < x.n; ++b)
        Spmv(d, x.x + size_t(b) * x.x_stride, y + size_t(b) * y_stride, relu, 0, d.rows / d.block_rows);
}

}  // namespace
}  // namespace wrnn
