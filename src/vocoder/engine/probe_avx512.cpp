// The machine probes (probe.h) with AVX-512: 512-bit loads, and the dot-product
// instructions the AVX-512 kernels use. Compiled with kernels_avx512.cpp's ISA flags and,
// like it, used only when the CPU reports them.
#include <immintrin.h>

#include "chains.h"
#include "probe.h"

namespace wrnn {
namespace {

uint64_t stream(const uint8_t* bytes, size_t n) {
    __m512i a = _mm512_setzero_si512(), b = a;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a = _mm512_xor_si512(a, _mm512_loadu_si512(bytes + i));
        b = _mm512_xor_si512(b, _mm512_loadu_si512(bytes + i + 64));
    }
    if (i < n) a = _mm512_xor_si512(a, _mm512_loadu_si512(bytes + i));
    return uint64_t(_mm512_reduce_or_epi64(_mm512_xor_si512(a, b)));
}

// The instructions gemv and gemm use: vpdpbusd (4 byte products per lane), vdpbf16ps (2)
// and vfmadd (1).
uint64_t madd(Precision p, uint64_t rounds) {
    auto fp32_lanes = [](__m512 v) { return uint64_t(uint32_t(_mm512_reduce_add_epi32(_mm512_cvtps_epi32(v)))); };
    if (p == Precision::INT8)
        return run_chains(
            rounds, (__v16si)_mm512_setzero_si512(), _mm512_set1_epi8(1),
            [](__v16si v, __m512i one) { return (__v16si)_mm512_dpbusd_epi32((__m512i)v, one, one); },
            [](__v16si v) { return uint64_t(uint32_t(_mm512_reduce_add_epi32((__m512i)v))); });
    if (p == Precision::BF16)  // 0x3f80: bf16 1.0 in both halves of each lane
        return run_chains(
            rounds, _mm512_setzero_ps(), _mm512_set1_epi16(0x3f80),
            [](__m512 v, __m512i one) { return _mm512_dpbf16_ps(v, (__m512bh)one, (__m512bh)one); }, fp32_lanes);
    return run_chains(
        rounds, _mm512_setzero_ps(), _mm512_set1_ps(1.0f),
        [](__m512 v, __m512 one) { return _mm512_fmadd_ps(one, one, v); }, fp32_lanes);
}

const Probes kAvx512 = {stream, madd};

}  // namespace

const Probes* probes_avx512() { return &kAvx512; }

}  // namespace wrnn
