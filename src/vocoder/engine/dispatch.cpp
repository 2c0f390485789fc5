// Run-time kernel choice: the best ISA the CPU supports, overridable with the
// WRNN_ISA environment variable or select_isa() (tests compare ISAs this way). Builds
// for any CPU: on one that is neither x86 nor AArch64 only the scalar kernels exist.
#include <cstdlib>
#include <cstring>

#include "wrnn.h"

namespace wrnn {
namespace {

#if defined(__x86_64__) || defined(__i386__)
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
bool has_avx512() {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16") &&
           __builtin_cpu_supports("avx512vnni");
}
#else
bool has_avx2() { return false; }
bool has_avx512() { return false; }
#endif
// Advanced SIMD (NEON) is part of every AArch64 CPU: no run-time check is needed.
bool has_neon() { return kernels_neon() != nullptr; }

const Kernels* by_name(const std::string& name) {
    if (name == "scalar") return &kernels_scalar();
    if (name == "avx2") return has_avx2() ? kernels_avx2() : nullptr;
    if (name == "avx512") return has_avx512() ? kernels_avx512() : nullptr;
    if (name == "neon") return kernels_neon();
    if (name == "auto") {
        if (has_avx512()) return kernels_avx512();
        if (has_avx2()) return kernels_avx2();
        if (has_neon()) return kernels_neon();
        return &kernels_scalar();
    }
    throw Error("unknown ISA '" + name + "' (use auto, scalar, avx2, avx512 or neon)");
}

const Kernels* initial() {
    const char* env = std::getenv("WRNN_ISA");
    if (!env || !*env) return by_name("auto");
    const Kernels* k = nullptr;
    try {
        k = by_name(env);
    } catch (const Error& e) {
        throw Error(std::string("WRNN_ISA=") + env + ": " + e.what());
    }
    if (!k) throw Error(std::string("WRNN_ISA=") + env + ": not supported by this CPU");
    return k;
}

const Kernels*& current() {
    static const Kernels* k = initial();
    return k;
}

}  // namespace

const Kernels& active_kernels() { return *current(); }

void select_isa(const std::string& name) {
    const Kernels* k = by_name(name);
    if (!k) throw Error("ISA '" + name + "' is not supported by this CPU");
    current() = k;
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> out{"scalar"};
    if (has_avx2()) out.push_back("avx2");
    if (has_avx512()) out.push_back("avx512");
    if (has_neon()) out.push_back("neon");
    return out;
}

// The SIMD kernel files are compiled only for their own architecture (CMakeLists.txt);
// on the others their tables are absent.
#if !(defined(__x86_64__) || defined(__i386__))
const Kernels* kernels_avx2() { return nullptr; }
const Kernels* kernels_avx512() { return nullptr; }
#endif
#if !defined(__aarch64__)
const Kernels* kernels_neon() { return nullptr; }
#endif

}  // namespace wrnn
