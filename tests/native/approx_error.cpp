// Measures the SIMD exp / sigmoid / tanh approximations against libm (in double) over
// a dense grid and fails if they exceed the bounds documented in docs/native-engine.md.
// It includes both kernel sources (renaming the AVX-512 copies of shared names) to reach
// their internal functions.
#include <cmath>
#include <cstdio>

#include "../../src/vocoder/engine/kernels_avx2.cpp"
#define tail tail512
#define gemv gemv512
#define gemv_int8 gemv_int8_512
#define spmv spmv512
#define gru_rows gru_rows512
#define gate_inputs gate_inputs512
#define exps exps512
#define quantize quantize512
#define gemm_group gemm_group512
#define spmm_group spmm_group512
#define Group Group512
#define by_groups by_groups512
#define kGemm kGemm512
#define kSpmm kSpmm512
#define gemm gemm512
#define spmm spmm512
#include "../../src/vocoder/engine/kernels_avx512.cpp"

int main() {
    if (!__builtin_cpu_supports("avx512f")) {
        std::printf("approx_error: no AVX-512 on this CPU, skipped\n");
        return 0;
    }
    double exp_rel = 0, sig_abs = 0, tanh_abs = 0, exp2_rel = 0, sig2_abs = 0, tanh2_abs = 0;
    alignas(64) float in[16], out[16];
    for (int i = 0; i < 2000000; i += 16) {
        for (int k = 0; k < 16; ++k) in[k] = -20.0f + 40.0f * float(i + k) / 2000000.0f;
        __m512 x = _mm512_load_ps(in);
        __m256 lo = _mm256_load_ps(in), hi = _mm256_load_ps(in + 8);
        auto check = [&](double& e512, double& e2, auto f512, auto f2, auto ref, bool rel) {
            _mm512_store_ps(out, f512(x));
            for (int k = 0; k < 16; ++k) {
                double r = ref(double(in[k])), d = std::fabs(out[k] - r) / (rel ? r : 1.0);
                e512 = std::max(e512, d);
            }
            _mm256_store_ps(out, f2(lo));
            _mm256_store_ps(out + 8, f2(hi));
            for (int k = 0; k < 16; ++k) {
                double r = ref(double(in[k])), d = std::fabs(out[k] - r) / (rel ? r : 1.0);
                e2 = std::max(e2, d);
            }
        };
        check(exp_rel, exp2_rel, [](__m512 v) { return wrnn::exp16(v); }, [](__m256 v) { return wrnn::exp8(v); },
              [](double v) { return std::exp(v); }, true);
        check(sig_abs, sig2_abs, [](__m512 v) { return wrnn::sigmoid16(v); },
              [](__m256 v) { return wrnn::sigmoid8(v); }, [](double v) { return 1.0 / (1.0 + std::exp(-v)); }, false);
        check(tanh_abs, tanh2_abs, [](__m512 v) { return wrnn::tanh16(v); }, [](__m256 v) { return wrnn::tanh8(v); },
              [](double v) { return std::tanh(v); }, false);
    }
    std::printf("over [-20, 20]: exp rel %.2e / %.2e, sigmoid abs %.2e / %.2e, tanh abs %.2e / %.2e (avx512 / avx2)\n",
                exp_rel, exp2_rel, sig_abs, sig2_abs, tanh_abs, tanh2_abs);
    bool ok = exp_rel < 5e-7 && exp2_rel < 5e-7 && sig_abs < 3e-7 && sig2_abs < 3e-7 && tanh_abs < 3e-7 && tanh2_abs < 3e-7;
    std::printf("approx_error: %s\n", ok ? "OK" : "FAIL");
    return ok ? 0 : 1;
}
