// The machine probes (probe.h) with AVX2 + FMA: 256-bit loads, and the instructions the
// AVX2 kernels multiply with. Compiled with kernels_avx2.cpp's ISA flags and, like it,
// used only when the CPU reports them.
#include <immintrin.h>

#include "chains.h"
#include "probe.h"

namespace wrnn {
namespace {

uint64_t stream(const uint8_t* bytes, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a;
    for (size_t i = 0; i < n; i += 64) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes + i + 32)));
    }
    a = _mm256_xor_si256(a, b);
    return uint64_t(_mm256_extract_epi64(a, 0) ^ _mm256_extract_epi64(a, 1) ^ _mm256_extract_epi64(a, 2) ^
                    _mm256_extract_epi64(a, 3));
}

uint64_t lane_sum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return uint64_t(uint32_t(_mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)))));
}

// int8: dot_quads plus its add, as in gemv and gemm (four multiply-adds per lane); its
// product does not depend on the accumulator, so `one` is pinned at every use, or the
// compiler would compute it once for the whole loop. fp32 and bf16 (widened to fp32 by
// gemv): one FMA per lane.
uint64_t madd(Precision p, uint64_t rounds) {
    if (p == Precision::INT8)
        return run_chains(
            rounds, _mm256_setzero_si256(), _mm256_set1_epi8(1),
            [](__m256i v, __m256i one) {
                keep(one);
                return _mm256_add_epi32(
                    v, _mm256_madd_epi16(_mm256_maddubs_epi16(one, _mm256_sign_epi8(one, one)), _mm256_set1_epi16(1)));
            },
            lane_sum);
    return run_chains(
        rounds, _mm256_setzero_ps(), _mm256_set1_ps(1.0f),
        [](__m256 v, __m256 one) { return _mm256_fmadd_ps(one, one, v); },
        [](__m256 v) { return lane_sum(_mm256_cvtps_epi32(v)); });
}

const Probes kAvx2 = {stream, madd};

}  // namespace

const Probes* probes_avx2() { return &kAvx2; }

}  // namespace wrnn
