// The samplers: the conditioning network, then one GRU step per sample with the coarse
// byte drawn before the fine one (the masked input matrix keeps the coarse half of every
// gate independent of c_t). Engine::run is the sequential sampler (vocoder.sampler.
// generate); Engine::run_batch steps many sequences at once for fold mode
// (sampler.generate_batch), and Engine::run_subscale the B sub-tensors of a subscale
// model (subscale.generate), both through BatchStep.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <x86intrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

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

// The profile's tick counter: the time-stamp counter on x86, the virtual counter on
// AArch64 (both constant-rate), else the steady clock in nanoseconds.
uint64_t ticks() {
#if defined(__x86_64__) || defined(__i386__)
    return __rdtsc();
#elif defined(__aarch64__)
    uint64_t v;
    __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
    return v;
#else
    return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                        std::chrono::steady_clock::now().time_since_epoch())
                        .count());
#endif
}

// A spin-wait hint: lets the sibling hyperthread run and saves power while we spin.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

// A Profile's clock on one thread: lap(s) gives stage s the ticks since the last lap; the
// destructor gives the rest to Stage::Other and adds the run's ticks and wall time. An
// empty one (no profile, or not the calling thread) does nothing: one predictable branch.
class Laps {
  public:
    explicit Laps(Profile* p) : p_(p) {
        if (p_) start_ = last_ = ticks(), wall_ = std::chrono::steady_clock::now();
    }
    ~Laps() {
        if (!p_) return;
        lap(Stage::Other);
        p_->total_ticks += last_ - start_;
        p_->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_).count();
    }
    Laps(const Laps&) = delete;
    Laps& operator=(const Laps&) = delete;
    void lap(Stage s) {
        if (!p_) return;
        const uint64_t now = ticks();
        p_->ticks[int(s)] += now - last_;
        last_ = now;
    }

  private:
    Profile* p_;
    uint64_t start_ = 0, last_ = 0;
    std::chrono::steady_clock::time_point wall_;
};

// Valid 1-D convolution of x (len, in), position-major, into (len - kernel + 1, out):
// one gemm column per output position, whose window is contiguous in x.
std::vector<float> conv_valid(const Kernels& K, const Conv1d& c, const std::vector<float>& x, int len, bool relu) {
    const int olen = len - c.kernel + 1, out = c.w.rows, rp = c.w.rows_padded;
    std::vector<float> y(size_t(olen) * rp);
    K.gemm(c.w, Columns{olen, x.data(), c.in, nullptr, 0, nullptr}, y.data(), rp, relu);
    if (rp != out) {  // drop the padding rows: the next layer's windows must be contiguous
        for (int i = 1; i < olen; ++i) std::copy_n(&y[size_t(i) * rp], out, &y[size_t(i) * out]);
        y.resize(size_t(olen) * out);
    }
    return y;
}

float scale_byte(int v) { return float(v) / 127.5f - 1.0f; }

// Per offset k in a hop: the weight of the neighbouring frame and which one it is (-1:
// the previous, +1: the next); the per-sample conditioning is the linear blend.
void blend_weights(int hop, std::vector<float>& wk, std::vector<int>& side) {
    wk.resize(hop);
    side.resize(hop);
    for (int k = 0; k < hop; ++k) {
        float d = (float(k) + 0.5f) / float(hop) - 0.5f;
        wk[k] = std::fabs(d);
        side[k] = d < 0.0f ? -1 : 1;
    }
}

// Sizes a trace for `rows` steps (logits and states zeroed); nothing without one.
void trace_rows(Trace* trace, size_t rows, int n) {
    if (!trace) return;
    trace->coarse_logits.assign(rows * 256, 0.0f);
    trace->fine_logits.assign(rows * 256, 0.0f);
    trace->states.assign(rows * n, 0.0f);
}

}  // namespace

namespace {

// Running sums of G columns of 256 (256 apart) in place. G is a template constant so each
// column's sum stays in a register: the chains are independent, so G of them run
// interleaved to overlap their latencies, and each is its column's float additions in
// the same order as on its own.
template <int G>
void running_sums(float* col) {
    float cum[G] = {};
    for (int i = 0; i < 256; ++i)
        for (int j = 0; j < G; ++j) col[j * 256 + i] = cum[j] += col[j * 256 + i];
}

template <int... G>
constexpr std::array<void (*)(float*), sizeof...(G)> running_sums_table(std::integer_sequence<int, G...>) {
    return {running_sums<G + 1>...};
}

constexpr int kSumGroup = 16;
constexpr auto kRunningSums = running_sums_table(std::make_integer_sequence<int, kSumGroup>{});

}  // namespace

// The sums are non-decreasing (every exp is >= 0), so the first one above the threshold
// is found by binary search, the same index as a linear scan.
void draw_columns(const Kernels& k, const float* logits, size_t stride, int n, const double* u, int u_stride,
                  int* out, float* scratch) {
    for (int b = 0; b < n; ++b) k.exps(logits + size_t(b) * stride, scratch + size_t(b) * 256);
    for (int b0 = 0; b0 < n; b0 += kSumGroup) kRunningSums[std::min(kSumGroup, n - b0) - 1](scratch + size_t(b0) * 256);
    for (int b = 0; b < n; ++b) {
        const float* c = scratch + size_t(b) * 256;
        const float thr = float(u[size_t(b) * u_stride]) * c[255];
        out[b] = int(std::upper_bound(c, c + 255, thr) - c);
    }
}

const char* stage_name(Stage s) {
    static const char* const names[] = {"conditioning", "gate inputs", "context", "W_hh", "GRU", "O1",
                                        "O2",           "O3",          "O4",      "draws", "wait", "other"};
    static_assert(sizeof(names) / sizeof(names[0]) == size_t(Stage::Count), "one name per stage");
    return names[int(s)];
}

void pack_bf16_pairs(const float* x, int n, uint32_t* out) {
    auto bf = [](float f) -> uint32_t {
        uint32_t u;
        std::memcpy(&u, &f, 4);
        return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // round to nearest even (inputs are finite)
    };
    for (int k = 0; k < n / 2; ++k) out[k] = bf(x[2 * k]) | (bf(x[2 * k + 1]) << 16);
    if (n % 2) out[n / 2] = bf(x[n - 1]);
}

Engine::Engine(std::shared_ptr<const Model> model, const Kernels& kernels, int threads)
    : model_(std::move(model)), kernels_(kernels) {
    const Model& m = *model_;
    int n = int(m.dims.hidden);
    // Two threads split every matrix by rows in whole 16-row kernel blocks, which needs
    // the coarse/fine halves to fall on block boundaries; other sizes run on one thread.
    threads_ = threads >= 2 && (n / 2) % 16 == 0 ? 2 : 1;
    for (auto& hb : hbuf_) hb.assign(n, 0.0f);
    gi_.assign(3 * n, 0.0f);
    gh_.assign(m.hh.rows_padded, 0.0f);
    for (auto& lane : lanes_) {
        lane.tmp.assign(std::max(m.o1.rows_padded, m.o3.rows_padded), 0.0f);
        lane.logits.assign(256, 0.0f);
        lane.scratch.assign(256, 0.0f);
        lane.packed.assign(n / 2 + 1, 0);
    }
}

std::vector<float> Engine::project_frames(const float* mel, int frames) const {
    const Model& m = *model_;
    const int mels = int(m.dims.n_mels), c = int(m.dims.cond_channels), n3 = 3 * int(m.dims.hidden);
    const int radius = 2 + int(m.dims.cond_blocks);
    int len = frames + 2 * radius;
    std::vector<float> x(size_t(len) * mels, 0.0f);  // normalised frames, zero-padded, position-major
    for (int b = 0; b < mels; ++b)
        for (int t = 0; t < frames; ++t)
            x[size_t(radius + t) * mels + b] = (mel[size_t(b) * frames + t] - m.mel_mean[b]) / m.mel_std[b];
    std::vector<float> a = conv_valid(kernels_, m.inp, x, len, true);
    len -= 4;
    for (size_t i = 0; i < m.conv1.size(); ++i) {
        std::vector<float> t =
            conv_valid(kernels_, m.conv2[i], conv_valid(kernels_, m.conv1[i], a, len, true), len - 2, false);
        for (int j = 0; j < len - 2; ++j)
            for (int ch = 0; ch < c; ++ch) t[size_t(j) * c + ch] += a[size_t(j + 1) * c + ch];
        a.swap(t);
        len -= 2;
    }
    // a is (frames, C): each frame projected by W_cond, then the edge frames repeated.
    const int rp = m.w_cond.rows_padded;
    std::vector<float> p(size_t(frames) * rp);
    kernels_.gemm(m.w_cond, Columns{frames, a.data(), c, nullptr, 0, nullptr}, p.data(), rp, false);
    std::vector<float> proj(size_t(frames + 2) * n3);
    for (int f = 0; f < frames + 2; ++f)
        std::copy_n(&p[size_t(std::min(std::max(f - 1, 0), frames - 1)) * rp], n3, &proj[size_t(f) * n3]);
    return proj;
}

// Everything one utterance's steps share: inputs, precomputed conditioning, outputs.
struct Engine::Ctx {
    const Model& m;
    const Kernels& K;
    int n, hop;
    const float* proj;
    const float* wk;
    const int* side;
};

namespace {

int draw_one(const Kernels& k, const float* logits, double u, float* scratch) {
    int i;
    draw_columns(k, logits, 256, 1, &u, 1, &i, scratch);
    return i;
}

// Spin briefly (the other thread is usually microseconds away), then yield so a busy
// machine does not starve the thread being waited for.
void wait_for(const std::atomic<int64_t>& a, int64_t v) {
    for (int spins = 0; a.load(std::memory_order_acquire) < v; ++spins) {
        if (spins < 4096)
            cpu_relax();
        else
            std::this_thread::yield();
    }
}

}  // namespace

Packed Engine::pack(Lane& lane, const Matrix& d, const float* x, int cols) {
    Packed p{lane.packed.data(), 1.0f};
    if (d.sparse) return p;  // the sparse kernels read x in fp32
    if (d.precision == Precision::BF16) pack_bf16_pairs(x, cols, lane.packed.data());
    if (d.precision == Precision::INT8) p.scale = kernels_.quantize(x, cols, lane.packed.data());
    return p;
}

void Engine::rows(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb0, int rb1) {
    if (d.sparse) {
        const int per = 16 / d.block_rows, stripes = d.rows / d.block_rows;
        kernels_.spmv(d, x, y, relu, std::min(rb0 * per, stripes), std::min(rb1 * per, stripes));
        return;
    }
    kernels_.gemv(d, x, packed, y, relu, rb0, rb1);
}

void Engine::gemv(Lane& lane, const Matrix& d, const float* x, int cols, float* y, bool relu, int rb0, int rb1) {
    rows(d, x, pack(lane, d, x, cols), y, relu, rb0, rb1);
}

// Gate inputs of step i for rows [off, off + len) of each gate.
void Engine::gate_rows(const Ctx& cx, size_t i, int c_prev, int f_prev, int off, int len) {
    size_t t = i / cx.hop;
    int k = int(i % cx.hop);
    const size_t n3 = 3 * size_t(cx.n);
    const float* p0 = cx.proj + (t + 1) * n3;
    const float* p1 = cx.proj + (t + 1 + cx.side[k]) * n3;
    const Model& m = cx.m;
    for (int g = 0; g < 3; ++g) {
        int o = g * cx.n + off;
        cx.K.gate_inputs(p0 + o, p1 + o, cx.wk[k], m.b_ih.data() + o, m.col_cprev.data() + o, scale_byte(c_prev),
                         m.col_fprev.data() + o, scale_byte(f_prev), gi_.data() + o, len);
    }
}

std::vector<int16_t> Engine::run(const float* mel, int frames, uint64_t seed, const double* draws, const int16_t* force,
                                 Trace* trace, const Sink* sink, size_t chunk) {
    const Model& m = *model_;
    if (m.dims.subscale.batch) {
        if (sink) throw Error("a subscale model makes its samples staggered, not in time order: it cannot stream");
        return run_subscale(mel, frames, seed, draws, force, trace);
    }
    if (sink && chunk < 1) throw Error("streaming needs a chunk of at least one sample");
    const int n = int(m.dims.hidden), half = n / 2, hop = int(m.dims.hop_length);
    if (frames < 1) throw Error("the mel has no frames");
    const size_t total = size_t(frames) * hop;
    Laps laps(profile_);
    std::vector<float> proj = project_frames(mel, frames);
    laps.lap(Stage::Conditioning);
    std::vector<float> wk;
    std::vector<int> side;
    blend_weights(hop, wk, side);
    trace_rows(trace, total, n);
    std::vector<int16_t> out(total);
    Ctx cx{m, kernels_, n, hop, proj.data(), wk.data(), side.data()};
    for (auto& hb : hbuf_) std::fill(hb.begin(), hb.end(), 0.0f);
    // One thread computes every row of a step. Two threads split every matrix by rows:
    // thread k owns state elements [lo, hi) of the coarse half and the same offsets of the
    // fine half, with the three gates' W_hh rows for them, so its GRU update reads only its
    // own products; and half the row blocks of each output layer. They meet after each
    // layer whose whole output the next one reads (six times a step); both draw c and f
    // from the same logits and uniforms (one RNG each, same seed), so neither waits for
    // the other's draw. The state is double-buffered by step parity: a thread's update
    // for step i + 1 cannot overwrite what the other still reads for step i, which it
    // finished before their last meeting. Every row is computed the same way whatever
    // the split, so the samples do not depend on the thread count.
    struct alignas(64) Arrivals {
        std::atomic<int64_t> v{0};
    };
    Arrivals arrived[2];
    const bool two = threads_ == 2;
    const int split = two ? 16 * (half / 32) : half;  // a 16-row block boundary near the middle of each half
    float* tmp = lanes_[0].tmp.data();   // the output layers' results, shared by both threads
    float* logits = lanes_[0].logits.data();
    auto thread = [&](int k) {
        Lane& lane = lanes_[k];
        Laps idle(nullptr);
        Laps& lp = k == 0 ? laps : idle;
        Rng own(seed);
        int64_t met = 0;
        auto meet = [&] {  // (each meet follows a stage's lap, so its lap is the wait)
            if (!two) return;
            arrived[k].v.store(++met, std::memory_order_release);
            wait_for(arrived[1 - k].v, met);
            lp.lap(Stage::Wait);
        };
        const int lo = k ? split : 0, hi = k ? half : split;
        auto half_of = [&](const Matrix& d) {  // this thread's row blocks of an output layer
            const int blocks = d.rows_padded / 16, mid = two ? blocks / 2 : blocks;
            return std::pair<int, int>(k ? mid : 0, k ? blocks : mid);
        };
        auto layer = [&](const Matrix& d, const float* x, float* y, bool relu, Stage stage) {
            const auto [rb0, rb1] = half_of(d);
            gemv(lane, d, x, half, y, relu, rb0, rb1);
            lp.lap(stage);
        };
        // This thread's W_hh row blocks: with two, the three gates' rows of its state
        // elements; alone, every row (its gates need not start on a 16-row block), in
        // chunks. With dense int8 weights odd steps take the spans in reverse order: when
        // a step's weights slightly exceed the L2, reading them in the same order every
        // step has a least-recently-used cache evict each line just before it is read
        // again; reversed, a step starts with what the previous one read last. It paid
        // for int8 only (docs/native-engine.md, Speed, has the figures), so fp32 and bf16
        // keep one order. A row's result does not depend on the order.
        std::vector<std::pair<int, int>> spans;
        if (two) {
            for (int g = 0; g < 3; ++g)
                for (int part : {lo, half + lo}) spans.emplace_back((g * n + part) / 16, (g * n + part + hi - lo) / 16);
        } else {
            const int blocks = m.hh.rows_padded / 16, chunk = 24;
            for (int b = 0; b < blocks; b += chunk) spans.emplace_back(b, std::min(b + chunk, blocks));
        }
        const bool reverse = m.hh.precision == Precision::INT8 && !m.hh.sparse;
        int c_prev = 128, f_prev = 0;
        for (size_t i = 0; i < total; ++i) {
            const double u0 = draws ? draws[2 * i] : own.uniform();
            const double u1 = draws ? draws[2 * i + 1] : own.uniform();
            const float* h_in = hbuf_[i & 1].data();
            float* h_out = hbuf_[(i + 1) & 1].data();
            gate_rows(cx, i, c_prev, f_prev, lo, hi - lo);
            gate_rows(cx, i, c_prev, f_prev, half + lo, hi - lo);
            lp.lap(Stage::GateInputs);
            const Packed packed = pack(lane, m.hh, h_in, n);
            for (size_t j = 0; j < spans.size(); ++j) {
                const auto [rb0, rb1] = spans[reverse && (i & 1) ? spans.size() - 1 - j : j];
                rows(m.hh, h_in, packed, gh_.data(), false, rb0, rb1);
            }
            lp.lap(Stage::Recurrent);
            kernels_.gru_rows(gi_.data(), gh_.data(), m.col_cur.data(), 0.0f, h_in, h_out, n, lo, hi);
            lp.lap(Stage::Gru);
            meet();
            layer(m.o1, h_out, tmp, true, Stage::O1);
            meet();
            layer(m.o2, tmp, logits, false, Stage::O2);
            meet();
            if (k == 0 && trace) std::memcpy(&trace->coarse_logits[i * 256], logits, 256 * 4);
            const int c = force ? (int(force[i]) + 32768) >> 8 : draw_one(kernels_, logits, u0, lane.scratch.data());
            lp.lap(Stage::Draws);
            kernels_.gru_rows(gi_.data(), gh_.data(), m.col_cur.data(), scale_byte(c), h_in, h_out, n, half + lo,
                              half + hi);
            lp.lap(Stage::Gru);
            meet();
            if (k == 0 && trace) std::memcpy(&trace->states[i * n], h_out, size_t(n) * 4);
            layer(m.o3, h_out + half, tmp, true, Stage::O3);
            meet();
            layer(m.o4, tmp, logits, false, Stage::O4);
            meet();
            if (k == 0 && trace) std::memcpy(&trace->fine_logits[i * 256], logits, 256 * 4);
            const int f = force ? (int(force[i]) + 32768) & 0xff : draw_one(kernels_, logits, u1, lane.scratch.data());
            lp.lap(Stage::Draws);
            if (k == 0) {
                out[i] = int16_t(c * 256 + f - 32768);
                if (sink && ((i + 1) % chunk == 0 || i + 1 == total)) {
                    const size_t begin = i / chunk * chunk;
                    (*sink)(&out[begin], i + 1 - begin);
                }
            }
            c_prev = c, f_prev = f;
        }
    };
    if (!two) {
        thread(0);
        return out;
    }
    std::thread worker(thread, 1);
    thread(0);
    worker.join();
    return out;
}

namespace {

// One GRU step with both draws for a set of columns, each with its own state, previous
// bytes and conditioning: fold mode's segments and subscale's sub-tensors. Column b of
// every buffer (scratch included) starts at b times its stride; a step runs the
// contiguous columns [b0, b0 + nb), so each weight matrix is read once per step for all
// of them, and two threads may run disjoint column ranges of one BatchStep at once.
class BatchStep {
  public:
    BatchStep(const Model& m, const Kernels& K, int cols)
        : m_(m), K_(K), n_(int(m.dims.hidden)), half_(n_ / 2), n3_(3 * size_t(n_)), gs_(m.hh.rows_padded),
          ts_(std::max(m.o1.rows_padded, m.o3.rows_padded)), ls_(std::max(m.o2.rows_padded, m.o4.rows_padded)),
          ws_(std::max(n_ / 2, int(m.dims.subscale.context)) + 1) {
        h.assign(size_t(cols) * n_, 0.0f);
        gi.assign(cols * n3_, 0.0f);
        gh_.assign(size_t(cols) * gs_, 0.0f);
        tmp_.assign(size_t(cols) * ts_, 0.0f);
        logits_.assign(size_t(cols) * ls_, 0.0f);
        scratch_.assign(size_t(cols) * 256, 0.0f);
        scales_.assign(cols, 1.0f);
        words_.assign(size_t(cols) * ws_, 0);
        c_prev.assign(cols, 128), f_prev.assign(cols, 0), c_.assign(cols, 0), f_.assign(cols, 0);
        u.assign(2 * size_t(cols), 0.0);
        forced.assign(cols, -1);
        row.assign(cols, 0);
    }

    // Gate inputs of column b before `run` (3N each): conditioning, `bias` (b_ih, or
    // for subscale the context's product, whose bias is b_ih) and the previous bytes.
    void gate_inputs(int b, const float* p0, const float* p1, float w, const float* bias) {
        K_.gate_inputs(p0, p1, w, bias, m_.col_cprev.data(), scale_byte(c_prev[b]), m_.col_fprev.data(),
                       scale_byte(f_prev[b]), &gi[b * n3_], int(n3_));
    }

    // Y = W X + b for columns [b0, b0 + nb): packs each column in the layer's precision,
    // then one batched kernel call (sparse layers read fp32 directly).
    void product(const Matrix& d, const float* x, int x_stride, int cols, int b0, int nb, float* y, int y_stride,
                 bool relu) {
        x += size_t(b0) * x_stride, y += size_t(b0) * y_stride;
        uint32_t* words = words_.data() + size_t(b0) * ws_;
        float* scales = scales_.data() + b0;
        Columns in{nb, x, x_stride, words, ws_, scales};
        if (!d.sparse)
            for (int b = 0; b < nb; ++b) {
                const float* xb = x + size_t(b) * x_stride;
                uint32_t* wb = words + size_t(b) * ws_;
                scales[b] = 1.0f;
                if (d.precision == Precision::BF16) pack_bf16_pairs(xb, cols, wb);
                if (d.precision == Precision::INT8) scales[b] = K_.quantize(xb, cols, wb);
            }
        (d.sparse ? K_.spmm : K_.gemm)(d, in, y, y_stride, relu);
    }

    // The step: coarse bytes (drawn at u[2b] unless forced[b] >= 0, an offset sample
    // 0..65535), then fine bytes (u[2b + 1]); sample b goes to out[b] and its logits and
    // state to trace row row[b] (none for kNoRow). Updates h, c_prev and f_prev.
    void run(int b0, int nb, Trace* trace, int16_t* out, Laps& laps) {
        const int n = n_, half = half_;
        product(m_.hh, h.data(), n, n, b0, nb, gh_.data(), gs_, false);
        laps.lap(Stage::Recurrent);
        for (int b = b0; b < b0 + nb; ++b) {
            float* hb = &h[size_t(b) * n];
            K_.gru_rows(&gi[b * n3_], &gh_[size_t(b) * gs_], m_.col_cur.data(), 0.0f, hb, hb, n, 0, half);
        }
        laps.lap(Stage::Gru);
        product(m_.o1, h.data(), n, half, b0, nb, tmp_.data(), ts_, true);
        laps.lap(Stage::O1);
        product(m_.o2, tmp_.data(), ts_, half, b0, nb, logits_.data(), ls_, false);
        laps.lap(Stage::O2);
        draw_columns(K_, &logits_[size_t(b0) * ls_], ls_, nb, &u[2 * size_t(b0)], 2, &c_[b0],
                     &scratch_[size_t(b0) * 256]);
        laps.lap(Stage::Draws);
        for (int b = b0; b < b0 + nb; ++b) {
            const float* lb = &logits_[size_t(b) * ls_];
            if (trace && row[b] != kNoRow) std::memcpy(&trace->coarse_logits[row[b] * 256], lb, 256 * 4);
            if (forced[b] >= 0) c_[b] = forced[b] >> 8;
            float* hb = &h[size_t(b) * n];
            K_.gru_rows(&gi[b * n3_], &gh_[size_t(b) * gs_], m_.col_cur.data(), scale_byte(c_[b]), hb, hb, n, half, n);
        }
        laps.lap(Stage::Gru);
        product(m_.o3, h.data() + half, n, half, b0, nb, tmp_.data(), ts_, true);
        laps.lap(Stage::O3);
        product(m_.o4, tmp_.data(), ts_, half, b0, nb, logits_.data(), ls_, false);
        laps.lap(Stage::O4);
        draw_columns(K_, &logits_[size_t(b0) * ls_], ls_, nb, &u[2 * size_t(b0) + 1], 2, &f_[b0],
                     &scratch_[size_t(b0) * 256]);
        laps.lap(Stage::Draws);
        for (int b = b0; b < b0 + nb; ++b) {
            const float* lb = &logits_[size_t(b) * ls_];
            if (trace && row[b] != kNoRow) {
                std::memcpy(&trace->fine_logits[row[b] * 256], lb, 256 * 4);
                std::memcpy(&trace->states[row[b] * n], &h[size_t(b) * n], size_t(n) * 4);
            }
            const int f = forced[b] >= 0 ? forced[b] & 0xff : f_[b];
            out[b] = int16_t(c_[b] * 256 + f - 32768);
            c_prev[b] = c_[b];
            f_prev[b] = f;
        }
    }

    static constexpr size_t kNoRow = SIZE_MAX;
    std::vector<float> h, gi;
    std::vector<int> c_prev, f_prev, forced;
    std::vector<double> u;
    std::vector<size_t> row;

  private:
    const Model& m_;
    const Kernels& K_;
    const int n_, half_;
    const size_t n3_;
    const int gs_, ts_, ls_, ws_;
    std::vector<float> gh_, tmp_, logits_, scratch_, scales_;
    std::vector<uint32_t> words_;
    std::vector<int> c_, f_;  // this step's drawn bytes
};

// Per-sample conditioning: the blend of the projected frames around sample `pos`.
struct Blend {
    const float* proj;
    size_t n3;
    int hop;
    std::vector<float> wk;
    std::vector<int> side;

    Blend(const std::vector<float>& p, int n, int hop_length) : proj(p.data()), n3(3 * size_t(n)), hop(hop_length) {
        blend_weights(hop, wk, side);
    }
    void apply(BatchStep& st, int b, size_t pos, const float* bias) const {
        const size_t t = pos / hop;
        const int k = int(pos % hop);
        st.gate_inputs(b, proj + (t + 1) * n3, proj + (t + 1 + side[k]) * n3, wk[k], bias);
    }
};

// The batched paths' step loop: for t = 0..steps-1, prepare(t) on this thread, then
// part(t, a, b, laps) over the step's columns range(t) = [lo, hi]. With two threads a
// worker runs the upper half of each step's columns (this thread the lower half, rounded
// up) and the two meet once per step, so part must only touch its own columns and read
// what earlier steps wrote. Only this thread's part gets `laps` (the worker's are empty).
template <class Range, class Prepare, class Part>
void batched_steps(int threads, size_t steps, Range range, Prepare prepare, Part part, Laps& laps) {
    auto half = [&](size_t t, bool upper) {
        const auto [lo, hi] = range(t);
        const int mid = threads == 2 ? lo + (hi - lo + 2) / 2 : hi + 1;
        return upper ? std::pair<int, int>(mid, hi) : std::pair<int, int>(lo, mid - 1);
    };
    if (threads == 1) {
        for (size_t t = 0; t < steps; ++t) {
            prepare(t);
            laps.lap(Stage::Other);
            const auto [a, b] = half(t, false);
            part(t, a, b, laps);
        }
        return;
    }
    std::atomic<int64_t> go{-1}, done{-1};
    std::thread worker([&] {
        Laps idle(nullptr);
        for (size_t t = 0; t < steps; ++t) {
            wait_for(go, int64_t(t));
            const auto [a, b] = half(t, true);
            if (a <= b) part(t, a, b, idle);
            done.store(int64_t(t), std::memory_order_release);
        }
    });
    for (size_t t = 0; t < steps; ++t) {
        prepare(t);
        go.store(int64_t(t), std::memory_order_release);
        laps.lap(Stage::Other);
        const auto [a, b] = half(t, false);
        part(t, a, b, laps);
        wait_for(done, int64_t(t));
        laps.lap(Stage::Wait);
    }
    worker.join();
}

}  // namespace

std::vector<int16_t> Engine::run_batch(const float* mel, int frames, const int32_t* positions, int nb, int steps,
                                       uint64_t seed, const double* draws, const int16_t* force, Trace* trace) {
    const Model& m = *model_;
    if (m.dims.subscale.batch) throw Error("fold mode runs sequential models; this one is subscale");
    const int n = int(m.dims.hidden), hop = int(m.dims.hop_length);
    if (frames < 1) throw Error("the mel has no frames");
    if (nb < 1 || steps < 1) throw Error("a batch needs at least one sequence of at least one step");
    const size_t total = size_t(frames) * hop, count = size_t(nb) * steps;
    for (size_t i = 0; i < count; ++i)
        if (positions[i] < 0 || size_t(positions[i]) >= total)
            throw Error("position " + std::to_string(positions[i]) + " is outside the utterance's " +
                        std::to_string(total) + " samples");
    Laps laps(profile_);
    std::vector<float> proj = project_frames(mel, frames);
    laps.lap(Stage::Conditioning);
    Blend blend(proj, n, hop);
    trace_rows(trace, count, n);
    BatchStep st(m, kernels_, nb);
    std::vector<int16_t> out(count), step_out(nb);
    Rng rng(seed);
    // The uniforms are drawn on this thread, in column order, whatever the threads.
    auto prepare = [&](size_t s) {
        for (int b = 0; b < nb; ++b) {
            const size_t i = size_t(b) * steps + s;
            st.u[2 * b] = draws ? draws[2 * i] : rng.uniform();
            st.u[2 * b + 1] = draws ? draws[2 * i + 1] : rng.uniform();
            st.forced[b] = force ? int(force[i]) + 32768 : -1;
            st.row[b] = i;
        }
    };
    auto part = [&](size_t s, int a, int b, Laps& lp) {
        for (int c = a; c <= b; ++c) blend.apply(st, c, size_t(positions[size_t(c) * steps + s]), m.b_ih.data());
        lp.lap(Stage::GateInputs);
        st.run(a, b - a + 1, trace, step_out.data(), lp);
        for (int c = a; c <= b; ++c) out[size_t(c) * steps + s] = step_out[c];
        lp.lap(Stage::Other);
    };
    batched_steps(threads_, size_t(steps), [&](size_t) { return std::pair<int, int>(0, nb - 1); }, prepare, part,
                  laps);
    return out;
}

std::vector<int16_t> Engine::run_subscale(const float* mel, int frames, uint64_t seed, const double* draws,
                                          const int16_t* force, Trace* trace) {
    const Model& m = *model_;
    const Subscale& sub = m.dims.subscale;
    if (!sub.batch) throw Error("not a subscale model");
    const int n = int(m.dims.hidden), hop = int(m.dims.hop_length), nb = int(sub.batch);
    const int d = int(sub.context), w = int(sub.width()), stagger = int(sub.horizon) + 1;
    if (frames < 1) throw Error("the mel has no frames");
    const size_t total = size_t(frames) * hop, len = (total + nb - 1) / nb;
    Laps laps(profile_);
    std::vector<float> proj = project_frames(mel, frames);
    laps.lap(Stage::Conditioning);
    Blend blend(proj, n, hop);
    trace_rows(trace, total, n);
    // Uniforms in waveform order, so a seed means the same draws per position as the
    // sequential sampler's and a draws table matches vocoder.subscale.generate.
    std::vector<double> table;
    if (!draws) {
        Rng rng(seed);
        table.resize(2 * total);
        for (double& v : table) v = rng.uniform();
        draws = table.data();
    }
    // Generated samples in [-1, 1] per sub-tensor, with P zeros before and F after, read
    // by the context windows (not yet generated samples are zero and masked anyway).
    const size_t span = sub.past + len + sub.horizon;
    const int ds = (d + 15) / 16 * 16;  // context vectors are written in whole 16-row blocks
    const size_t wins = size_t(nb) * w;  // one window buffer per column
    std::vector<float> ubuf(size_t(nb) * span, 0.0f), win(size_t(nb) * wins), ctx(size_t(nb) * ds), gctx;
    gctx.assign(size_t(nb) * m.w_ctx.rows_padded, 0.0f);
    BatchStep st(m, kernels_, nb);
    std::vector<int16_t> out(total), step_out(nb);
    const size_t steps = len + size_t(nb - 1) * stagger;
    // Step t for the active sub-tensors [a, b]: everything a sub-tensor reads was written
    // in earlier steps, so two threads can run disjoint ranges of one step.
    auto part = [&](size_t t, int a, int b, Laps& lp) {
        for (int s = a; s <= b; ++s) {
            const size_t i = t - size_t(s) * stagger, p = i * nb + s;
            const bool real = p < total;  // the rest is end padding: fixed at zero
            st.u[2 * s] = real ? draws[2 * p] : 0.0;
            st.u[2 * s + 1] = real ? draws[2 * p + 1] : 0.0;
            st.forced[s] = !real ? 32768 : force ? int(force[p]) + 32768 : -1;
            st.row[s] = real ? p : BatchStep::kNoRow;
            if (s > 0) {  // the byte input is the waveform's previous sample U[s - 1, i]
                // (exact: ubuf holds int16 / 32768)
                const int v = int(ubuf[size_t(s - 1) * span + sub.past + i] * 32768.0f) + 32768;
                st.c_prev[s] = v >> 8, st.f_prev[s] = v & 0xff;
            }  // (sub-tensor 0 keeps its own previous sample, which the step left there)
            // The context vector relu(W_s x + b_s), x the windows of sub-tensors 0..s.
            float* x = &win[size_t(s) * wins];
            for (int z = 0; z <= s; ++z) std::memcpy(&x[size_t(z) * w], &ubuf[size_t(z) * span + i], size_t(w) * 4);
            kernels_.gemv(m.ctx[s], x, Packed{}, &ctx[size_t(s) * ds], true, 0, ds / 16);
        }
        st.product(m.w_ctx, ctx.data(), ds, d, a, b - a + 1, gctx.data(), m.w_ctx.rows_padded, false);
        lp.lap(Stage::Context);
        for (int s = a; s <= b; ++s) {
            const size_t p = (t - size_t(s) * stagger) * nb + s;
            blend.apply(st, s, std::min(p, total - 1), &gctx[size_t(s) * m.w_ctx.rows_padded]);
        }
        lp.lap(Stage::GateInputs);
        st.run(a, b - a + 1, trace, step_out.data(), lp);
        for (int s = a; s <= b; ++s) {
            const size_t i = t - size_t(s) * stagger, p = i * nb + s;
            if (p < total) out[p] = step_out[s];
            ubuf[size_t(s) * span + sub.past + i] = float(step_out[s]) / 32768.0f;
        }
        lp.lap(Stage::Other);
    };
    // Active sub-tensors: 0 <= i = t - s (F + 1) < L, a contiguous range of s.
    auto active = [&](size_t t) {
        return std::pair<int, int>(t < len ? 0 : int((t - len) / stagger + 1), std::min(nb - 1, int(t / stagger)));
    };
    batched_steps(threads_, steps, active, [](size_t) {}, part, laps);
    return out;
}

}  // namespace wrnn
