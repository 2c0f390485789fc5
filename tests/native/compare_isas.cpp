// Every SIMD kernel table (AVX2 and AVX-512 on x86, NEON on AArch64) against the scalar
// reference, without Python, so it runs where only the engine builds: under qemu for a
// cross-compiled AArch64 build (`make aarch64-check`) as well as natively.
//
// For each model file: every matrix the loader laid out (dense in the file's precision,
// or block-sparse) through gemv/spmv and the batched gemm/spmm on random inputs, bounded
// by the size of the terms summed (the same matrix with |w| applied to |x|); the
// element-wise kernels on random inputs; int8 quantisation bit for bit; then a
// teacher-forced run of the whole engine, whose logits and states must stay within the
// bounds tests/test_native.py uses for the same comparison.
//
// usage: compare_isas MODEL.wrnn...
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../src/vocoder/engine/wrnn.h"

namespace {

using wrnn::Kernels;
using wrnn::Matrix;
using wrnn::Precision;

struct Rand {  // xorshift64*: fixed seed, so a failure reproduces exactly
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    float uniform(float lo, float hi) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        return lo + (hi - lo) * float((s * 0x2545f4914f6cdd1dULL) >> 40) * 0x1.0p-24f;
    }
};

int failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        std::fprintf(stderr, "FAIL: %s\n", what.c_str());
        ++failures;
    }
}

// The same matrix with every weight, scale and bias replaced by its magnitude: applied
// to |x| it gives sum |w x| + |b| per row, the scale of a sum's rounding error.
Matrix magnitudes(const Matrix& m) {
    Matrix a = m;
    for (float& v : a.w32) v = std::fabs(v);
    for (uint16_t& v : a.w16) v &= 0x7fff;
    for (int8_t& v : a.w8) v = int8_t(std::min(127, std::abs(int(v))));
    for (float& v : a.scale) v = std::fabs(v);
    for (float& v : a.bias) v = std::fabs(v);
    return a;
}

// x in the layer's precision, as the engine packs it (Engine::pack) with the scalar table.
wrnn::Packed pack(const Matrix& m, const float* x, uint32_t* words) {
    wrnn::Packed p{words, 1.0f};
    if (m.sparse) return p;
    if (m.precision == Precision::BF16) wrnn::pack_bf16_pairs(x, m.cols, words);
    if (m.precision == Precision::INT8) p.scale = wrnn::kernels_scalar().quantize(x, m.cols, words);
    return p;
}

// y = W x + b over every row, by one table's matvec.
std::vector<float> matvec(const Kernels& k, const Matrix& m, const float* x, bool relu) {
    std::vector<uint32_t> words(size_t(m.cols) + 8);
    std::vector<float> y(size_t(m.rows_padded) + 16);
    if (m.sparse) k.spmv(m, x, y.data(), relu, 0, m.rows / m.block_rows);
    else k.gemv(m, x, pack(m, x, words.data()), y.data(), relu, 0, m.rows_padded / 16);
    y.resize(size_t(m.rows));
    return y;
}

void compare_matrix(const Kernels& k, const Matrix& m, const std::string& name, Rand& rnd) {
    const Kernels& ref = wrnn::kernels_scalar();
    const int cols = m.cols, nb = 5;
    std::vector<float> xs(size_t(nb) * cols), ax(cols);
    for (float& v : xs) v = rnd.uniform(-1.0f, 1.0f);
    // Per column, the size of each row's terms: the magnitudes applied to |x|.
    const Matrix mag = magnitudes(m);
    std::vector<std::vector<float>> sizes;
    for (int b = 0; b < nb; ++b) {
        for (int c = 0; c < cols; ++c) ax[c] = std::fabs(xs[size_t(b) * cols + c]);
        sizes.push_back(matvec(ref, mag, ax.data(), false));
    }
    // Batched inputs as the engine lays them out: column b at x + b * cols, packed words
    // at words + b * stride.
    const int stride = cols + 8;
    std::vector<uint32_t> words(size_t(nb) * stride);
    std::vector<float> scales(nb);
    for (int b = 0; b < nb; ++b) scales[b] = pack(m, &xs[size_t(b) * cols], words.data() + size_t(b) * stride).scale;
    const int out_stride = m.rows_padded + 16;
    std::vector<float> batched(size_t(nb) * out_stride);
    const wrnn::Columns batch{nb, xs.data(), cols, m.sparse ? nullptr : words.data(), stride, scales.data()};
    for (bool relu : {false, true}) {
        if (m.sparse) k.spmm(m, batch, batched.data(), out_stride, relu);
        else k.gemm(m, batch, batched.data(), out_stride, relu);
        for (int b = 0; b < nb; ++b) {
            const float* x = &xs[size_t(b) * cols];
            const std::vector<float> want = matvec(ref, m, x, relu), got = matvec(k, m, x, relu);
            for (int r = 0; r < m.rows; ++r) {
                const float tol = 1e-5f * sizes[size_t(b)][r] + 1e-30f;
                const float g2 = batched[size_t(b) * out_stride + r];
                if (std::fabs(got[r] - want[r]) > tol || std::fabs(g2 - want[r]) > tol) {
                    check(false, std::string(k.name) + " " + name + (relu ? " relu" : "") + " row " +
                                     std::to_string(r) + ": " + std::to_string(got[r]) + " / batched " +
                                     std::to_string(g2) + " vs scalar " + std::to_string(want[r]));
                    return;
                }
            }
        }
    }
}

void compare_elementwise(const Kernels& k, Rand& rnd) {
    const Kernels& ref = wrnn::kernels_scalar();
    for (int n : {1, 7, 16, 38, 64, 100}) {
        std::vector<float> gi(3 * n), gh(3 * n), col(3 * n), h(n), want(n), got(n);
        for (float& v : gi) v = rnd.uniform(-6.0f, 6.0f);
        for (float& v : gh) v = rnd.uniform(-6.0f, 6.0f);
        for (float& v : col) v = rnd.uniform(-2.0f, 2.0f);
        for (float& v : h) v = rnd.uniform(-1.0f, 1.0f);
        ref.gru_rows(gi.data(), gh.data(), col.data(), 0.3f, h.data(), want.data(), n, 0, n);
        k.gru_rows(gi.data(), gh.data(), col.data(), 0.3f, h.data(), got.data(), n, 0, n);
        for (int j = 0; j < n; ++j) check(std::fabs(got[j] - want[j]) <= 2e-6f, std::string(k.name) + " gru_rows");
        std::vector<float> p0(n), p1(n), b(n), out_ref(n), out(n);
        for (int j = 0; j < n; ++j) p0[j] = rnd.uniform(-3, 3), p1[j] = rnd.uniform(-3, 3), b[j] = rnd.uniform(-1, 1);
        ref.gate_inputs(p0.data(), p1.data(), 0.25f, b.data(), gi.data(), 0.5f, gh.data(), -0.5f, out_ref.data(), n);
        k.gate_inputs(p0.data(), p1.data(), 0.25f, b.data(), gi.data(), 0.5f, gh.data(), -0.5f, out.data(), n);
        for (int j = 0; j < n; ++j)
            check(std::fabs(out[j] - out_ref[j]) <= 1e-5f, std::string(k.name) + " gate_inputs");
        std::vector<uint32_t> q_ref(n + 4), q(n + 4);
        const float s_ref = ref.quantize(gi.data(), n, q_ref.data()), s = k.quantize(gi.data(), n, q.data());
        check(s == s_ref && std::memcmp(q.data(), q_ref.data(), size_t((n + 3) / 4) * 4) == 0,
              std::string(k.name) + " quantize is not bit for bit the scalar one");
    }
    std::vector<float> logits(256), e_ref(256), e(256);
    for (float& v : logits) v = rnd.uniform(-20.0f, 20.0f);
    ref.exps(logits.data(), e_ref.data());
    k.exps(logits.data(), e.data());
    for (int i = 0; i < 256; ++i) check(std::fabs(e[i] - e_ref[i]) <= 1e-6f * e_ref[i] + 1e-37f, std::string(k.name) + " exps");
}

// The matrices a model holds, named.
std::vector<std::pair<std::string, const Matrix*>> matrices(const wrnn::Model& m) {
    std::vector<std::pair<std::string, const Matrix*>> out = {
        {"inp", &m.inp.w}, {"w_cond", &m.w_cond}, {"hh", &m.hh}, {"o1", &m.o1},
        {"o2", &m.o2},     {"o3", &m.o3},         {"o4", &m.o4}};
    for (size_t i = 0; i < m.conv1.size(); ++i) {
        out.emplace_back("conv1." + std::to_string(i), &m.conv1[i].w);
        out.emplace_back("conv2." + std::to_string(i), &m.conv2[i].w);
    }
    for (size_t s = 0; s < m.ctx.size(); ++s) out.emplace_back("ctx." + std::to_string(s), &m.ctx[s]);
    if (m.dims.subscale.batch) out.emplace_back("w_ctx", &m.w_ctx);
    return out;
}

// A teacher-forced run on every table against the scalar one: logits and states within
// test_native.py's bounds (int8: an input can cross a rounding boundary).
void compare_engine(const std::shared_ptr<const wrnn::Model>& m, const Kernels& k, const char* path) {
    const int frames = 3;
    std::vector<float> mel(size_t(m->dims.n_mels) * frames);
    Rand rnd;
    for (float& v : mel) v = rnd.uniform(-9.0f, 1.0f);
    wrnn::Engine ref(m, wrnn::kernels_scalar(), 1), eng(m, k, 1);
    const std::vector<int16_t> forced = ref.run(mel.data(), frames, 7, nullptr, nullptr, nullptr);
    wrnn::Trace want, got;
    ref.run(mel.data(), frames, 0, nullptr, forced.data(), &want);
    eng.run(mel.data(), frames, 0, nullptr, forced.data(), &got);
    const float tol = m->dims.precision == Precision::INT8 ? 0.15f : m->dims.precision == Precision::BF16 ? 2e-2f : 1e-3f;
    const std::vector<float>* pairs[3][2] = {{&want.coarse_logits, &got.coarse_logits},
                                             {&want.fine_logits, &got.fine_logits},
                                             {&want.states, &got.states}};
    float worst = 0.0f;
    for (auto& p : pairs) {
        check(p[0]->size() == p[1]->size() && !p[0]->empty(), std::string(k.name) + " trace sizes");
        for (size_t i = 0; i < std::min(p[0]->size(), p[1]->size()); ++i)
            worst = std::max(worst, std::fabs((*p[0])[i] - (*p[1])[i]));
    }
    check(worst < tol, std::string(k.name) + " teacher-forced run of " + path + " differs from scalar by " +
                           std::to_string(worst));
    std::printf("  %s: %zu teacher-forced samples, largest logit/state difference from scalar %.2g\n", k.name,
                forced.size(), worst);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.wrnn...\n", argv[0]);
        return 2;
    }
    std::vector<const Kernels*> simd;
    for (const std::string& name : wrnn::supported_isas()) {
        wrnn::select_isa(name);
        if (name != "scalar") simd.push_back(&wrnn::active_kernels());
    }
    if (simd.empty()) {
        std::fprintf(stderr, "FAIL: this build has no SIMD kernels to compare\n");
        return 1;
    }
    Rand rnd;
    for (const Kernels* k : simd) compare_elementwise(*k, rnd);
    for (int i = 1; i < argc; ++i) {
        std::shared_ptr<const wrnn::Model> m = wrnn::load_model_file(argv[i]);
        std::printf("%s: N=%u\n", argv[i], m->dims.hidden);
        for (const Kernels* k : simd) {
            for (const auto& [name, mat] : matrices(*m))
                if (mat->rows > 0) compare_matrix(*k, *mat, name + (mat->sparse ? " (sparse)" : ""), rnd);
            compare_engine(m, *k, argv[i]);
        }
    }
    if (failures) {
        std::fprintf(stderr, "compare_isas: %d failures\n", failures);
        return 1;
    }
    std::printf("compare_isas: OK (");
    for (const Kernels* k : simd) std::printf(" %s", k->name);
    std::printf(" against scalar)\n");
    return 0;
}
