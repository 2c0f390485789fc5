// The sequential sampler: conditioning network, then one GRU step per sample with the
// coarse byte drawn before the fine one (the masked input matrix keeps the coarse half
// of every gate independent of c_t). Mirrors vocoder.sampler.generate.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "wrnn.h"

namespace wrnn {
namespace {

// xoshiro256** seeded through splitmix64: the engine's own uniform generator.
class Rng {
  public:
    explicit Rng(uint64_t seed) {
        for (auto& v : s_) {
            seed += 0x9e3779b97f4a7c15ULL;
            uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            v = z ^ (z >> 31);
        }
    }
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }

  private:
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
        s_[2] ^= s_[0], s_[3] ^= s_[1], s_[1] ^= s_[2], s_[0] ^= s_[3], s_[2] ^= t, s_[3] = rotl(s_[3], 45);
        return r;
    }
    uint64_t s_[4];
};

// Valid 1-D convolution of x (in, len) -> (out, len - kernel + 1), optional relu.
std::vector<float> conv_valid(const Conv1d& c, const std::vector<float>& x, int len, bool relu) {
    int olen = len - c.kernel + 1;
    std::vector<float> y(size_t(c.out) * olen);
    for (int o = 0; o < c.out; ++o) {
        float* yo = &y[size_t(o) * olen];
        for (int i = 0; i < olen; ++i) yo[i] = c.b[o];
        for (int ci = 0; ci < c.in; ++ci)
            for (int k = 0; k < c.kernel; ++k) {
                float w = c.w[(size_t(o) * c.in + ci) * c.kernel + k];
                const float* xi = &x[size_t(ci) * len + k];
                for (int i = 0; i < olen; ++i) yo[i] += w * xi[i];
            }
        if (relu)
            for (int i = 0; i < olen; ++i) yo[i] = yo[i] < 0.0f ? 0.0f : yo[i];
    }
    return y;
}

float scale_byte(int v) { return float(v) / 127.5f - 1.0f; }

}  // namespace

void pack_bf16_pairs(const float* x, int n, uint32_t* out) {
    auto bf = [](float f) -> uint32_t {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest even (inputs are finite)
    };
    for (int k = 0; k < n / 2; ++k) out[k] = bf(x[2 * k]) | (bf(x[2 * k + 1]) << 16);
    if (n % 2) out[n / 2] = bf(x[n - 1]);
}

Engine::Engine(std::shared_ptr<const Model> model, const Kernels& kernels) : model_(std::move(model)), kernels_(kernels) {
    const Model& m = *model_;
    int n = int(m.dims.hidden);
    h_.assign(n, 0.0f);
    gi_.assign(3 * n, 0.0f);
    gh_.assign(m.hh.rows_padded, 0.0f);
    tmp_.assign(std::max(m.o1.rows_padded, m.o3.rows_padded), 0.0f);
    logits_.assign(256, 0.0f);
    scratch_.assign(256, 0.0f);
    packed_.assign(n / 2 + 1, 0);
}

std::vector<float> Engine::project_frames(const float* mel, int frames) const {
    const Model& m = *model_;
    const int mels = int(m.dims.n_mels), c = int(m.dims.cond_channels), n3 = 3 * int(m.dims.hidden);
    const int radius = 2 + int(m.dims.cond_blocks);
    int len = frames + 2 * radius;
    std::vector<float> x(size_t(mels) * len, 0.0f);
    for (int b = 0; b < mels; ++b)
        for (int t = 0; t < frames; ++t)
            x[size_t(b) * len + radius + t] = (mel[size_t(b) * frames + t] - m.mel_mean[b]) / m.mel_std[b];
    std::vector<float> a = conv_valid(m.inp, x, len, true);
    len -= 4;
    for (size_t i = 0; i < m.conv1.size(); ++i) {
        std::vector<float> t = conv_valid(m.conv2[i], conv_valid(m.conv1[i], a, len, true), len - 2, false);
        for (int ch = 0; ch < c; ++ch)
            for (int j = 0; j < len - 2; ++j) t[size_t(ch) * (len - 2) + j] += a[size_t(ch) * len + j + 1];
        a.swap(t);
        len -= 2;
    }
    // a is (C, frames); edge frames repeated, then each frame projected by W_cond.
    std::vector<float> proj(size_t(frames + 2) * n3);
    std::vector<float> col(c);
    for (int f = 0; f < frames + 2; ++f) {
        int src = std::min(std::max(f - 1, 0), frames - 1);
        for (int ch = 0; ch < c; ++ch) col[ch] = a[size_t(ch) * frames + src];
        float* p = &proj[size_t(f) * n3];
        for (int r = 0; r < n3; ++r) {
            const float* w = &m.w_cond[size_t(r) * c];
            float acc = 0.0f;
            for (int ch = 0; ch < c; ++ch) acc += w[ch] * col[ch];
            p[r] = acc;
        }
    }
    return proj;
}

std::vector<int16_t> Engine::run(const float* mel, int frames, uint64_t seed, const double* draws, const int16_t* force,
                                 Trace* trace) {
    const Model& m = *model_;
    const Kernels& K = kernels_;
    const int n = int(m.dims.hidden), half = n / 2, hop = int(m.dims.hop_length);
    if (frames < 1) throw Error("the mel has no frames");
    const Precision prec = m.dims.precision;
    const size_t total = size_t(frames) * hop;
    std::vector<float> proj = project_frames(mel, frames);

    std::vector<float> wk(hop);
    std::vector<int> side(hop);  // -1: blend with the previous frame, +1: the next one
    for (int k = 0; k < hop; ++k) {
        float d = (float(k) + 0.5f) / float(hop) - 0.5f;
        wk[k] = std::fabs(d);
        side[k] = d < 0.0f ? -1 : 1;
    }
    if (trace) {
        trace->coarse_logits.assign(total * 256, 0.0f);
        trace->fine_logits.assign(total * 256, 0.0f);
        trace->states.assign(total * n, 0.0f);
    }
    Rng rng(seed);
    std::vector<int16_t> out(total);
    std::fill(h_.begin(), h_.end(), 0.0f);
    int c_prev = 128, f_prev = 0;
    float* h = h_.data();
    auto gemv = [&](const Dense& d, const float* x, int cols, float* y, bool relu) {
        Packed p{packed_.data(), 1.0f};
        if (prec == Precision::BF16) pack_bf16_pairs(x, cols, packed_.data());
        if (prec == Precision::INT8) p.scale = K.quantize(x, cols, packed_.data());
        K.gemv(d, x, p, y, relu);
    };
    for (size_t i = 0; i < total; ++i) {
        size_t t = i / hop;
        int k = int(i % hop);
        const float* p0 = &proj[(t + 1) * 3 * n];
        const float* p1 = &proj[(t + 1 + side[k]) * 3 * n];
        K.gate_inputs(p0, p1, wk[k], m.b_ih.data(), m.col_cprev.data(), scale_byte(c_prev), m.col_fprev.data(),
                      scale_byte(f_prev), gi_.data(), 3 * n);
        gemv(m.hh, h, n, gh_.data(), false);
        K.gru_rows(gi_.data(), gh_.data(), m.col_cur.data(), 0.0f, h, n, 0, half);
        gemv(m.o1, h, half, tmp_.data(), true);
        gemv(m.o2, tmp_.data(), half, logits_.data(), false);
        if (trace) std::memcpy(&trace->coarse_logits[i * 256], logits_.data(), 256 * 4);
        double u0 = draws ? draws[2 * i] : rng.uniform();
        double u1 = draws ? draws[2 * i + 1] : rng.uniform();
        int c = force ? (int(force[i]) + 32768) >> 8 : K.draw(logits_.data(), u0, scratch_.data());
        K.gru_rows(gi_.data(), gh_.data(), m.col_cur.data(), scale_byte(c), h, n, half, n);
        gemv(m.o3, h + half, half, tmp_.data(), true);
        gemv(m.o4, tmp_.data(), half, logits_.data(), false);
        if (trace) {
            std::memcpy(&trace->fine_logits[i * 256], logits_.data(), 256 * 4);
            std::memcpy(&trace->states[i * n], h, size_t(n) * 4);
        }
        int f = force ? (int(force[i]) + 32768) & 0xff : K.draw(logits_.data(), u1, scratch_.data());
        out[i] = int16_t(c * 256 + f - 32768);
        c_prev = c, f_prev = f;
    }
    return out;
}

}  // namespace wrnn
