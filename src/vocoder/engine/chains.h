// The multiply-add peak probe's loop (Probes::madd), shared by the probe files: each
// instantiates it with its own vector type and dot-product instruction.
#pragma once

#include <cstdint>

#include "probe.h"

namespace wrnn {
namespace {

// Pin a value to a register with no instruction: the chains below can then be neither
// folded into one closed-form add nor kept in memory.
// The register class is the ISA's: x (SSE) and v (AVX) on x86, w (SIMD) on AArch64;
// elsewhere the value goes through memory, which only the probes' figures would notice.
inline void keep(int32_t& a) { __asm__ volatile("" : "+r"(a)); }
#if defined(__x86_64__) || defined(__i386__)
inline void keep(float& a) { __asm__ volatile("" : "+x"(a)); }
template <class V>
inline void keep(V& a) {
    __asm__ volatile("" : "+v"(a));
}
#elif defined(__aarch64__)
template <class V>
inline void keep(V& a) {
    __asm__ volatile("" : "+w"(a));
}
#else
template <class V>
inline void keep(V& a) {
    __asm__ volatile("" : "+m"(a));
}
#endif

// kProbeChains accumulators from init, each advanced by op(accumulator, one) once per
// round; returns the sum of total(accumulator). `one` goes through keep() first, so the
// compiler cannot simplify the instruction (an FMA by a known 1.0 would become an add);
// op and total capture nothing (captures made ASan builds of the SIMD files emit
// exception tables). Named variables, not an array: GCC keeps an array of vectors
// on the stack, and the chains would then measure store-to-load forwarding instead of
// the instruction.
template <class V, class K, class Op, class Total>
uint64_t run_chains(uint64_t rounds, V init, K one, Op op, Total total) {
    keep(one);
    static_assert(kProbeChains == 12, "one variable per chain");
    V a0 = init, a1 = init, a2 = init, a3 = init, a4 = init, a5 = init;
    V a6 = init, a7 = init, a8 = init, a9 = init, a10 = init, a11 = init;
    for (uint64_t r = 0; r < rounds; ++r) {
        a0 = op(a0, one), a1 = op(a1, one), a2 = op(a2, one), a3 = op(a3, one), a4 = op(a4, one), a5 = op(a5, one);
        a6 = op(a6, one), a7 = op(a7, one), a8 = op(a8, one), a9 = op(a9, one), a10 = op(a10, one), a11 = op(a11, one);
        keep(a0), keep(a1), keep(a2), keep(a3), keep(a4), keep(a5);
        keep(a6), keep(a7), keep(a8), keep(a9), keep(a10), keep(a11);
    }
    return total(a0) + total(a1) + total(a2) + total(a3) + total(a4) + total(a5) + total(a6) + total(a7) +
           total(a8) + total(a9) + total(a10) + total(a11);
}

}  // namespace
}  // namespace wrnn
