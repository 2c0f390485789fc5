// Machine probes for `vocoder bench`: how fast one core reads memory and does
// multiply-adds, with the loads and dot-product instructions the kernels use. They are
// not kernels: each ISA's probes sit in their own table, chosen with that ISA's kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "wrnn.h"

namespace wrnn {

struct Probes {
    // Reads bytes[0..n) (n a multiple of 64) with the widest loads; the XOR of all words
    // is returned so the reads cannot be optimised away.
    uint64_t (*stream)(const uint8_t* bytes, size_t n);
    // `rounds` rounds of kProbeChains independent accumulator chains, each fed the
    // precision's dot-product instruction (the one gemv and gemm use) on ones, so every
    // lane ends holding the multiply-adds it did. Returns their sum: the work done, which
    // the caller checks against the instruction count.
    uint64_t (*madd)(Precision p, uint64_t rounds);
};

// Enough chains to cover every ISA's multiply-add latency at full issue rate.
constexpr int kProbeChains = 12;

const Probes& probes_scalar();
const Probes* probes_avx2();    // nullptr if not compiled in (not x86)
const Probes* probes_avx512();  // nullptr if not compiled in (not x86)
// The probes of the ISA whose kernel table k is (NEON's are the scalar ones: its
// kernels and the scalar reference share everything but the products).
const Probes& probes_for(const Kernels& k);

// Best-of-repeats GB/s for reading an nbytes buffer (rounded up to whole 64 bytes) with
// p.stream: the ceiling for a step that streams that many weight bytes.
double read_bandwidth(const Probes& p, size_t nbytes, int repeats);
// (multiply-adds p.madd did, seconds it took) for `rounds` rounds; rounds at most 2^24,
// as fp32 lanes count exactly only that far.
std::pair<uint64_t, double> multiply_add_rate(const Probes& p, Precision precision, uint64_t rounds);

}  // namespace wrnn
