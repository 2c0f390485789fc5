// The samplers: the conditioning network, then one WaveRNN step per sample, the coarse
// byte drawn before the fine one (the masked input matrix keeps the coarse half of every
// gate independent of c_t). The step (Step) is written once for every path: Engine::run
// steps one sequence (a sequential model's samples in order, its rows split between
// threads); Engine::run_batch steps many sequences at once for fold mode, and
// Engine::run_subscale the B sub-tensors of a subscale model, their columns split
// between threads.
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
    // Two threads split every matrix by rows in whole 16-row kernel blocks, which needs
    // the coarse/fine halves to fall on block boundaries; other sizes run on one thread.
    const int n = int(model_->dims.hidden);
    threads_ = threads >= 2 && (n / 2) % 16 == 0 ? 2 : 1;
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

namespace {

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

// What one thread does between two stages of a step: the finished stage's profile lap
// and, when the two threads of Engine::run split the step's rows, a meeting after
// each stage whose output the next stage reads whole (the other thread's rows too).
// Without a meeting place (one thread, or threads that split columns) meet only laps.
class Sync {
  public:
    struct alignas(64) Arrivals {
        std::atomic<int64_t> v{0};
    };
    // arrived: the two threads' arrival counts, or null; k: this thread's.
    explicit Sync(Laps& laps, Arrivals* arrived = nullptr, int k = 0) : laps_(laps), arrived_(arrived), k_(k) {}
    void done(Stage s) { laps_.lap(s); }
    void meet(Stage s) {
        laps_.lap(s);
        if (!arrived_) return;
        arrived_[k_].v.store(++met_, std::memory_order_release);
        wait_for(arrived_[1 - k_].v, met_);
        laps_.lap(Stage::Wait);
    }

  private:
    Laps& laps_;
    Arrivals* arrived_;
    int k_;
    int64_t met_ = 0;
};

// Per-sample conditioning: the blend of the projected frames around sample `pos`.
struct Blend {
    struct At {
        const float *p0, *p1;  // the sample's frame and its neighbour on the sample's side
        float w;               // p1's weight
    };
    const float* proj;
    size_t n3;
    int hop;
    std::vector<float> wk;
    std::vector<int> side;

    Blend(const std::vector<float>& p, int n, int hop_length) : proj(p.data()), n3(3 * size_t(n)), hop(hop_length) {
        blend_weights(hop, wk, side);
    }
    At at(size_t pos) const {
        const size_t t = pos / hop;
        const int k = int(pos % hop);
        return {proj + (t + 1) * n3, proj + (t + 1 + side[k]) * n3, wk[k]};
    }
};

constexpr size_t kNoRow = SIZE_MAX;

// One thread's share of a step: the columns [b0, b1) and, of each, the state elements
// [lo, hi) of both halves (their gate inputs and GRU rows, and the three gates' W_hh
// rows for them: the row-block spans hh when the rows are split) and share `share` of
// `shares` of each output layer's 16-row blocks. The batched paths' threads split the
// columns and take every row; Engine::run's one column is split by rows.
struct Part {
    int b0 = 0, b1 = 1;
    int lo = 0, hi = 0;
    int share = 0, shares = 1;
    std::vector<std::pair<int, int>> hh;
};

// A step's values per column, and scratch, for the columns one thread steps. In: the
// previous bytes, the uniforms (u[2b] for c, u[2b + 1] for f), a forced sample (offset,
// 0..65535; -1: draw) and the trace row (kNoRow: none). Out: the bytes and the sample.
// The batched paths' two threads share one Lane (on disjoint columns); Engine::run's
// threads have one each for its one column, whose bytes both draw alike.
struct Lane {
    Lane(int cols, int words_per_column)
        : c_prev(cols, 128), f_prev(cols, 0), forced(cols, -1), c(cols, 0), f(cols, 0), u(2 * size_t(cols), 0.0),
          row(cols, 0), out(cols, 0), ws(words_per_column), words(size_t(cols) * ws, 0), scales(cols, 1.0f),
          scratch(size_t(cols) * 256, 0.0f) {}
    std::vector<int> c_prev, f_prev, forced, c, f;
    std::vector<double> u;
    std::vector<size_t> row;
    std::vector<int16_t> out;
    int ws;                       // words per column
    std::vector<uint32_t> words;  // each column's input in a layer's precision
    std::vector<float> scales, scratch;
};

// How a step's threads divide it. Rows: Engine::run's one column, each product a
// matrix-vector product over the thread's row blocks; the state is double-buffered by
// step parity, so a thread's update for step i + 1 cannot overwrite what the other
// still reads for step i. Columns: fold mode's segments or subscale's sub-tensors, each
// product one batched product over the thread's columns (each weight read once per step
// for all of them); each state is updated in place.
enum class Split { Rows, Columns };

enum class Half { Coarse, Fine };

// One WaveRNN step for `cols` columns, each with its own state, previous bytes and
// conditioning. Column b of every buffer starts at b times its stride.
class Step {
  public:
    Step(const Model& m, const Kernels& K, int cols, Split split)
        : m_(m), K_(K), split_(split), n_(int(m.dims.hidden)), half_(n_ / 2), n3_(3 * size_t(n_)),
          gs_(m.hh.rows_padded), ts_(std::max(m.o1.rows_padded, m.o3.rows_padded)),
          ls_(std::max(m.o2.rows_padded, m.o4.rows_padded)), ws_(std::max(half_, int(m.dims.subscale.context)) + 1) {
        h_[0].assign(size_t(cols) * n_, 0.0f);
        if (split == Split::Rows) h_[1] = h_[0];
        gi_.assign(cols * n3_, 0.0f);
        gh_.assign(size_t(cols) * gs_, 0.0f);
        tmp_.assign(size_t(cols) * ts_, 0.0f);
        logits_.assign(size_t(cols) * ls_, 0.0f);
    }

    int words_per_column() const { return ws_; }

    // Thread k's part of an Engine::run step on `threads` threads. Two threads take state
    // elements [0, split) and [split, N/2) of each half (split a 16-row block boundary
    // near the middle), so each one's GRU update reads only its own products, and half
    // the row blocks of each output layer. W_hh's rows come in spans: with two threads
    // the three gates' rows of the thread's state elements; alone, every row (its gates
    // need not start on a 16-row block), in chunks. With dense int8 weights odd steps
    // take the spans in reverse order: when a step's weights slightly exceed the L2,
    // reading them in the same order every step has a least-recently-used cache evict
    // each line just before it is read again; reversed, a step starts with what the
    // previous one read last. It paid for int8 only (docs/native-engine.md, Speed), so
    // fp32 and bf16 keep one order. A row's result does not depend on the order.
    Part rows_part(int k, int threads) const {
        Part p;
        const int split = threads == 2 ? 16 * (half_ / 32) : half_;
        p.lo = k ? split : 0, p.hi = k ? half_ : split;
        p.share = k, p.shares = threads;
        if (threads == 2) {
            for (int g = 0; g < 3; ++g)
                for (int from : {p.lo, half_ + p.lo})
                    p.hh.emplace_back((g * n_ + from) / 16, (g * n_ + from + p.hi - p.lo) / 16);
        } else {
            const int blocks = m_.hh.rows_padded / 16, chunk = 24;
            for (int b = 0; b < blocks; b += chunk) p.hh.emplace_back(b, std::min(b + chunk, blocks));
        }
        return p;
    }

    // A batched step's part: columns [b0, b1), every row.
    Part columns_part(int b0, int b1) const {
        Part p;
        p.b0 = b0, p.b1 = b1, p.hi = half_;
        return p;
    }

    // Gate inputs of column b (the part's rows of its 3N) before `run`: the conditioning,
    // `bias` (b_ih, or subscale's context product, whose bias is b_ih) and the previous
    // bytes.
    void gate_inputs(const Part& p, const Lane& lane, int b, const Blend::At& at, const float* bias) {
        const float s0 = scale_byte(lane.c_prev[b]), s1 = scale_byte(lane.f_prev[b]);
        float* gi = &gi_[b * n3_];
        auto rows = [&](int o, int len) {
            K_.gate_inputs(at.p0 + o, at.p1 + o, at.w, bias + o, m_.col_cprev.data() + o, s0, m_.col_fprev.data() + o, s1,
                           gi + o, len);
        };
        if (p.hi - p.lo == half_) return rows(0, int(n3_));
        for (int g = 0; g < 3; ++g) {
            rows(g * n_ + p.lo, p.hi - p.lo);
            rows(g * n_ + half_ + p.lo, p.hi - p.lo);
        }
    }

    // The step itself, state i to state i + 1 and both bytes of each of the part's
    // columns, stage by stage as xiph/LPCNet's run_sample_network reads; `sync` laps each
    // stage and meets the other thread where the next stage reads its rows.
    void run(const Part& p, Lane& lane, size_t i, Trace* trace, Sync& sync) {
        const float* h_in = state(i);
        float* h = state(i + 1);

        // Coarse half: the gates of the coarse state elements, which c_t does not reach.
        recurrent(p, lane, h_in, i);
        sync.done(Stage::Recurrent);
        gru(p, lane, Half::Coarse, h_in, h);
        sync.meet(Stage::Gru);

        // Coarse output and draw: c_t from O2 relu(O1 h_c).
        product(p, lane, m_.o1, h, n_, half_, tmp_.data(), ts_, true);
        sync.meet(Stage::O1);
        product(p, lane, m_.o2, tmp_.data(), ts_, half_, logits_.data(), ls_, false);
        sync.meet(Stage::O2);
        draw(p, lane, Half::Coarse, trace);
        sync.done(Stage::Draws);

        // Fine half: the gates of the fine state elements, given c_t.
        gru(p, lane, Half::Fine, h_in, h);
        sync.meet(Stage::Gru);

        // Fine output and draw: f_t from O4 relu(O3 h_f), then the sample.
        product(p, lane, m_.o3, h + half_, n_, half_, tmp_.data(), ts_, true);
        sync.meet(Stage::O3);
        product(p, lane, m_.o4, tmp_.data(), ts_, half_, logits_.data(), ls_, false);
        sync.meet(Stage::O4);
        draw(p, lane, Half::Fine, trace);
        finish(p, lane, h, trace);
        sync.done(Stage::Draws);
    }

    // Y = W X + b for the part: with split rows its share of d's row blocks for its one
    // column, else every row for its columns. Each column's input is packed first.
    void product(const Part& p, Lane& lane, const Matrix& d, const float* x, int x_stride, int cols, float* y,
                 int y_stride, bool relu) {
        if (split_ == Split::Rows) {
            const int blocks = d.rows_padded / 16;
            matvec(d, x, pack(lane, 0, d, x, cols), y, relu, blocks * p.share / p.shares,
                   blocks * (p.share + 1) / p.shares);
            return;
        }
        for (int b = p.b0; b < p.b1; ++b) lane.scales[b] = pack(lane, b, d, x + size_t(b) * x_stride, cols).scale;
        const Columns in{p.b1 - p.b0, x + size_t(p.b0) * x_stride, x_stride, &lane.words[size_t(p.b0) * lane.ws],
                         lane.ws, &lane.scales[p.b0]};
        (d.sparse ? K_.spmm : K_.gemm)(d, in, y + size_t(p.b0) * y_stride, y_stride, relu);
    }

  private:
    float* state(size_t i) { return h_[split_ == Split::Rows ? i & 1 : 0].data(); }

    // Whether column b of the part has a trace row to fill: with split rows both threads
    // hold the column's values, and share 0 writes them.
    static bool traced(const Part& p, const Lane& lane, int b, const Trace* trace) {
        return trace && p.share == 0 && lane.row[b] != kNoRow;
    }

    // Column b's input x to d in d's precision, in the lane's words for b: bf16 pairs, or
    // int8 quads with their scale. Sparse and fp32 layers read x itself.
    Packed pack(Lane& lane, int b, const Matrix& d, const float* x, int cols) {
        uint32_t* words = &lane.words[size_t(b) * lane.ws];
        Packed packed{words, 1.0f};
        if (d.sparse) return packed;
        if (d.precision == Precision::BF16) pack_bf16_pairs(x, cols, words);
        if (d.precision == Precision::INT8) packed.scale = K_.quantize(x, cols, words);
        return packed;
    }

    // Rows [rb0, rb1) (16-row blocks) of y = W x + b for one column.
    void matvec(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb0, int rb1) {
        if (d.sparse) {
            const int per = 16 / d.block_rows, stripes = d.rows / d.block_rows;
            K_.spmv(d, x, y, relu, std::min(rb0 * per, stripes), std::min(rb1 * per, stripes));
            return;
        }
        K_.gemv(d, x, packed, y, relu, rb0, rb1);
    }

    // gh = W_hh h for the part's rows (in its spans' order, see rows_part).
    void recurrent(const Part& p, Lane& lane, const float* h, size_t i) {
        if (split_ == Split::Columns) return product(p, lane, m_.hh, h, n_, n_, gh_.data(), gs_, false);
        const Packed packed = pack(lane, 0, m_.hh, h, n_);
        const bool reverse = (i & 1) && m_.hh.precision == Precision::INT8 && !m_.hh.sparse;
        for (size_t j = 0; j < p.hh.size(); ++j) {
            const auto [rb0, rb1] = p.hh[reverse ? p.hh.size() - 1 - j : j];
            matvec(m_.hh, h, packed, gh_.data(), false, rb0, rb1);
        }
    }

    // The GRU update of the part's state elements in one half, h_in to h_out: c_t's input
    // column weighs 0 in the coarse half (the masked W_ih keeps c_t out of it) and the
    // drawn c's value in the fine one.
    void gru(const Part& p, const Lane& lane, Half half, const float* h_in, float* h_out) {
        const int off = half == Half::Fine ? half_ : 0;
        for (int b = p.b0; b < p.b1; ++b) {
            const float s = half == Half::Fine ? scale_byte(lane.c[b]) : 0.0f;
            const size_t hb = size_t(b) * n_;
            K_.gru_rows(&gi_[b * n3_], &gh_[size_t(b) * gs_], m_.col_cur.data(), s, h_in + hb, h_out + hb, n_,
                        off + p.lo, off + p.hi);
        }
    }

    // The part's bytes of one half, drawn from the logits at their uniforms (a forced
    // sample's byte replaces a drawn one), and the logits to each column's trace row.
    void draw(const Part& p, Lane& lane, Half half, Trace* trace) {
        const bool fine = half == Half::Fine;
        std::vector<int>& bytes = fine ? lane.f : lane.c;
        draw_columns(K_, &logits_[size_t(p.b0) * ls_], ls_, p.b1 - p.b0, &lane.u[2 * size_t(p.b0) + fine], 2,
                     &bytes[p.b0], &lane.scratch[size_t(p.b0) * 256]);
        for (int b = p.b0; b < p.b1; ++b) {
            if (lane.forced[b] >= 0) bytes[b] = fine ? lane.forced[b] & 0xff : lane.forced[b] >> 8;
            if (traced(p, lane, b, trace))
                std::memcpy(&(fine ? trace->fine_logits : trace->coarse_logits)[lane.row[b] * 256],
                            &logits_[size_t(b) * ls_], 256 * 4);
        }
    }

    // The end of the step: each column's sample, its bytes as the next step's previous
    // ones, and its state h to its trace row.
    void finish(const Part& p, Lane& lane, const float* h, Trace* trace) {
        for (int b = p.b0; b < p.b1; ++b) {
            lane.out[b] = int16_t(lane.c[b] * 256 + lane.f[b] - 32768);
            lane.c_prev[b] = lane.c[b], lane.f_prev[b] = lane.f[b];
            if (traced(p, lane, b, trace))
                std::memcpy(&trace->states[lane.row[b] * n_], h + size_t(b) * n_, size_t(n_) * 4);
        }
    }

    const Model& m_;
    const Kernels& K_;
    const Split split_;
    const int n_, half_;
    const size_t n3_;
    const int gs_, ts_, ls_, ws_;
    std::vector<float> h_[2], gi_, gh_, tmp_, logits_;
};

// The batched paths' step loop: for t = 0..steps-1, prepare(t) on this thread, then
// run(t, a, b, sync) over the step's columns range(t) = [lo, hi]. With two threads a
// worker runs the upper half of each step's columns (this thread the lower half, rounded
// up) and the two meet once per step, so run must only touch its own columns and read
// what earlier steps wrote. Only this thread's sync laps the profile.
template <class Range, class Prepare, class Run>
void batched_steps(int threads, size_t steps, Range range, Prepare prepare, Run run, Laps& laps) {
    auto half = [&](size_t t, bool upper) {
        const auto [lo, hi] = range(t);
        const int mid = threads == 2 ? lo + (hi - lo + 2) / 2 : hi + 1;
        return upper ? std::pair<int, int>(mid, hi) : std::pair<int, int>(lo, mid - 1);
    };
    Sync sync(laps);
    if (threads == 1) {
        for (size_t t = 0; t < steps; ++t) {
            prepare(t);
            sync.done(Stage::Other);
            const auto [a, b] = half(t, false);
            run(t, a, b, sync);
        }
        return;
    }
    std::atomic<int64_t> go{-1}, done{-1};
    std::thread worker([&] {
        Laps idle(nullptr);
        Sync quiet(idle);
        for (size_t t = 0; t < steps; ++t) {
            wait_for(go, int64_t(t));
            const auto [a, b] = half(t, true);
            if (a <= b) run(t, a, b, quiet);
            done.store(int64_t(t), std::memory_order_release);
        }
    });
    for (size_t t = 0; t < steps; ++t) {
        prepare(t);
        go.store(int64_t(t), std::memory_order_release);
        sync.done(Stage::Other);
        const auto [a, b] = half(t, false);
        run(t, a, b, sync);
        wait_for(done, int64_t(t));
        sync.done(Stage::Wait);
    }
    worker.join();
}

}  // namespace

std::vector<int16_t> Engine::run(const float* mel, int frames, uint64_t seed, const double* draws, const int16_t* force,
                                 Trace* trace, const Sink* sink, size_t chunk) {
    const Model& m = *model_;
    if (m.dims.subscale.batch) {
        if (sink) throw Error("a subscale model makes its samples staggered, not in time order: it cannot stream");
        return run_subscale(mel, frames, seed, draws, force, trace);
    }
    if (sink && chunk < 1) throw Error("streaming needs a chunk of at least one sample");
    const int n = int(m.dims.hidden), hop = int(m.dims.hop_length);
    if (frames < 1) throw Error("the mel has no frames");
    const size_t total = size_t(frames) * hop;
    Laps laps(profile_);
    std::vector<float> proj = project_frames(mel, frames);
    laps.lap(Stage::Conditioning);
    const Blend blend(proj, n, hop);
    trace_rows(trace, total, n);
    std::vector<int16_t> out(total);
    // One column, whose rows one or two threads compute (Step::rows_part). Two threads
    // meet after each stage whose whole output the next one reads (six times a step);
    // both draw c and f from the same logits and uniforms (one RNG each, same seed), so
    // neither waits for the other's draw. Every row is computed the same way whatever
    // the split, so the samples do not depend on the thread count.
    Step st(m, kernels_, 1, Split::Rows);
    Sync::Arrivals arrived[2];
    // The last step both threads take: thread 0 lowers it when the sink stops the run,
    // before it begins step i + 1, which the other thread may have begun already. The
    // other thread sees the new value by step i + 2: the step's meetings order them.
    std::atomic<size_t> last{total - 1};
    auto thread = [&](int k) {
        Laps idle(nullptr);
        Sync sync(k == 0 ? laps : idle, threads_ == 2 ? arrived : nullptr, k);
        const Part p = st.rows_part(k, threads_);
        Lane lane(1, st.words_per_column());
        Rng own(seed);
        bool stopped = false;  // thread 0: the sink said stop
        for (size_t i = 0; i <= last.load(std::memory_order_acquire); ++i) {
            lane.u[0] = draws ? draws[2 * i] : own.uniform();
            lane.u[1] = draws ? draws[2 * i + 1] : own.uniform();
            lane.forced[0] = force ? int(force[i]) + 32768 : -1;
            lane.row[0] = i;
            st.gate_inputs(p, lane, 0, blend.at(i), m.b_ih.data());
            sync.done(Stage::GateInputs);
            st.run(p, lane, i, trace, sync);
            if (k != 0) continue;
            out[i] = lane.out[0];
            if (sink && !stopped && ((i + 1) % chunk == 0 || i + 1 == total)) {
                const size_t begin = i / chunk * chunk;
                stopped = !(*sink)(&out[begin], i + 1 - begin);
                if (stopped) last.store(std::min(total - 1, threads_ == 2 ? i + 1 : i), std::memory_order_release);
            }
        }
    };
    if (threads_ == 1) {
        thread(0);
    } else {
        std::thread worker(thread, 1);
        thread(0);
        worker.join();
    }
    out.resize(std::min(total, last.load() + 1));
    return out;
}

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
    const Blend blend(proj, n, hop);
    trace_rows(trace, count, n);
    Step st(m, kernels_, nb, Split::Columns);
    Lane lane(nb, st.words_per_column());
    std::vector<int16_t> out(count);
    Rng rng(seed);
    // The uniforms are drawn on this thread, in column order, whatever the threads.
    auto prepare = [&](size_t s) {
        for (int b = 0; b < nb; ++b) {
            const size_t i = size_t(b) * steps + s;
            lane.u[2 * b] = draws ? draws[2 * i] : rng.uniform();
            lane.u[2 * b + 1] = draws ? draws[2 * i + 1] : rng.uniform();
            lane.forced[b] = force ? int(force[i]) + 32768 : -1;
            lane.row[b] = i;
        }
    };
    auto run_columns = [&](size_t s, int a, int b, Sync& sync) {
        const Part p = st.columns_part(a, b + 1);
        for (int c = a; c <= b; ++c)
            st.gate_inputs(p, lane, c, blend.at(size_t(positions[size_t(c) * steps + s])), m.b_ih.data());
        sync.done(Stage::GateInputs);
        st.run(p, lane, s, trace, sync);
        for (int c = a; c <= b; ++c) out[size_t(c) * steps + s] = lane.out[c];
        sync.done(Stage::Other);
    };
    batched_steps(threads_, size_t(steps), [&](size_t) { return std::pair<int, int>(0, nb - 1); }, prepare,
                  run_columns, laps);
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
    const Blend blend(proj, n, hop);
    trace_rows(trace, total, n);
    // Uniforms in waveform order, so a seed means the same draws per position as
    // Engine::run's and a draws table matches vocoder.subscale.generate.
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
    Step st(m, kernels_, nb, Split::Columns);
    Lane lane(nb, st.words_per_column());
    std::vector<int16_t> out(total);
    const size_t steps = len + size_t(nb - 1) * stagger;
    // Step t for the active sub-tensors [a, b]: everything a sub-tensor reads was written
    // in earlier steps, so two threads can run disjoint ranges of one step.
    auto run_columns = [&](size_t t, int a, int b, Sync& sync) {
        const Part p = st.columns_part(a, b + 1);
        for (int s = a; s <= b; ++s) {
            const size_t i = t - size_t(s) * stagger, pos = i * nb + s;
            const bool real = pos < total;  // the rest is end padding: fixed at zero
            lane.u[2 * s] = real ? draws[2 * pos] : 0.0;
            lane.u[2 * s + 1] = real ? draws[2 * pos + 1] : 0.0;
            lane.forced[s] = !real ? 32768 : force ? int(force[pos]) + 32768 : -1;
            lane.row[s] = real ? pos : kNoRow;
            if (s > 0) {  // the byte input is the waveform's previous sample U[s - 1, i]
                // (exact: ubuf holds int16 / 32768)
                const int v = int(ubuf[size_t(s - 1) * span + sub.past + i] * 32768.0f) + 32768;
                lane.c_prev[s] = v >> 8, lane.f_prev[s] = v & 0xff;
            }  // (sub-tensor 0 keeps its own previous sample, which the step left there)
            // The context vector relu(W_s x + b_s), x the windows of sub-tensors 0..s.
            float* x = &win[size_t(s) * wins];
            for (int z = 0; z <= s; ++z) std::memcpy(&x[size_t(z) * w], &ubuf[size_t(z) * span + i], size_t(w) * 4);
            kernels_.gemv(m.ctx[s], x, Packed{}, &ctx[size_t(s) * ds], true, 0, ds / 16);
        }
        st.product(p, lane, m.w_ctx, ctx.data(), ds, d, gctx.data(), m.w_ctx.rows_padded, false);
        sync.done(Stage::Context);
        for (int s = a; s <= b; ++s) {
            const size_t pos = (t - size_t(s) * stagger) * nb + s;
            st.gate_inputs(p, lane, s, blend.at(std::min(pos, total - 1)), &gctx[size_t(s) * m.w_ctx.rows_padded]);
        }
        sync.done(Stage::GateInputs);
        st.run(p, lane, t, trace, sync);
        for (int s = a; s <= b; ++s) {
            const size_t i = t - size_t(s) * stagger, pos = i * nb + s;
            if (pos < total) out[pos] = lane.out[s];
            ubuf[size_t(s) * span + sub.past + i] = float(lane.out[s]) / 32768.0f;
        }
        sync.done(Stage::Other);
    };
    // Active sub-tensors: 0 <= i = t - s (F + 1) < L, a contiguous range of s.
    auto active = [&](size_t t) {
        return std::pair<int, int>(t < len ? 0 : int((t - len) / stagger + 1), std::min(nb - 1, int(t / stagger)));
    };
    batched_steps(threads_, steps, active, [](size_t) {}, run_columns, laps);
    return out;
}

}  // namespace wrnn
