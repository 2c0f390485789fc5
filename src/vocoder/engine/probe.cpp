// The scalar probes, the choice of an ISA's probes, and the timing loops around them.
// Compiled for the baseline of the target; the SIMD probes are in probe_avx2.cpp and
// probe_avx512.cpp, with their files' ISA flags.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include "chains.h"
#include "probe.h"

namespace wrnn {
namespace {

uint64_t stream(const uint8_t* bytes, size_t n) {
    uint64_t acc[8] = {};
    for (size_t i = 0; i < n; i += 64)
        for (int k = 0; k < 8; ++k) {
            uint64_t v;
            std::memcpy(&v, bytes + i + 8 * k, 8);
            acc[k] ^= v;
        }
    return acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
}

// Scalar chains: int32 multiply-adds for int8 (as gemv's inner loop), fp32 for the rest.
// v * one + one: a multiply and an add per step that cannot be hoisted (run_chains hides
// `one` from the compiler), each counting one.
uint64_t madd(Precision p, uint64_t rounds) {
    if (p == Precision::INT8)
        return run_chains(
            rounds, int32_t(0), int32_t(1), [](int32_t v, int32_t one) { return v * one + one; },
            [](int32_t v) { return uint64_t(v); });
    return run_chains(
        rounds, 0.0f, 1.0f, [](float v, float one) { return v * one + one; }, [](float v) { return uint64_t(v); });
}

const Probes kScalar = {stream, madd};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

const Probes& probes_scalar() { return kScalar; }

const Probes& probes_for(const Kernels& k) {
    if (&k == kernels_avx512()) return *probes_avx512();
    if (&k == kernels_avx2()) return *probes_avx2();
    return probes_scalar();
}

// The SIMD probe files are compiled only on x86 (CMakeLists.txt).
#if !(defined(__x86_64__) || defined(__i386__))
const Probes* probes_avx2() { return nullptr; }
const Probes* probes_avx512() { return nullptr; }
#endif

// One untimed pass first, so the timed ones read a buffer already paged in and cached
// as far as it fits.
double read_bandwidth(const Probes& p, size_t nbytes, int repeats) {
    nbytes = (std::max<size_t>(nbytes, 64) + 63) / 64 * 64;
    std::vector<uint8_t> buf(nbytes, 1);
    volatile uint64_t sink = p.stream(buf.data(), nbytes);
    double best = 0.0;
    for (int r = 0; r < std::max(repeats, 1); ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 20; ++i) sink = sink + p.stream(buf.data(), nbytes);
        best = std::max(best, 20.0 * double(nbytes) / seconds_since(t0) / 1e9);
    }
    return best;
}

std::pair<uint64_t, double> multiply_add_rate(const Probes& p, Precision precision, uint64_t rounds) {
    const auto t0 = std::chrono::steady_clock::now();
    const uint64_t count = p.madd(precision, rounds);
    return {count, seconds_since(t0)};
}

}  // namespace wrnn
