// WaveRNN sampling engine: model file loader, kernels, and the Engine that runs a
// model's steps (one sequence, fold mode's batched sequences, subscale's sub-tensors).
// Torch-free; the Python binding (bindings.cpp) and the sanitizer/fuzz programs use
// only what is declared here and, for `bench`, the machine probes in probe.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace wrnn {

// Every problem with a model file or a call argument: one readable line.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class Precision : uint32_t { FP32 = 1, BF16 = 2, INT8 = 3 };

// Subscale WaveRNN (vocoder.subscale): B sub-tensors, P past and F future steps of
// context window, D context units. batch == 0 for a sequential model.
struct Subscale {
    uint32_t batch = 0, past = 0, horizon = 0, context = 0;
    uint32_t width() const { return past + horizon + 1; }  // window steps per sub-tensor
};

// Sizes every tensor shape is checked against (stored in the binary file header).
struct Dims {
    uint32_t hidden = 0, cond_channels = 0, cond_blocks = 0, n_mels = 0, hop_length = 0, sample_rate = 0;
    Precision precision = Precision::FP32;
    Subscale subscale;
};

// y = W x + b (optionally relu) for a matrix applied once per sample, laid out for the
// kernels at load time, dense or block-sparse.
//
// Dense: rows are grouped in blocks of 16; fp32 stores block-major (rb, k, 16), bf16
// stores column pairs (rb, k/2, 16, 2) so one 32-bit broadcast of (x[k], x[k+1]) feeds 16
// rows, int8 column quads (rb, k/4, 16, 4) with a per-row scale (w = scale * q).
//
// Block-sparse (sparse == true): rows are cut into stripes of block_rows; stripe s owns
// the blocks [stripe[s], stripe[s + 1]), block b starting at column bcol[b] (increasing
// within a stripe). Block b's block_rows x block_cols values sit at w32[b * 16 ...],
// column by column, widened to fp32 at load whatever the file's precision: at the
// densities where sparse wins the values fit in L2 and the cost is the number of
// multiply-adds, not bytes. Blocks are 16x1 or 4x4 (16 values either way).
struct Matrix {
    int rows = 0, cols = 0, rows_padded = 0, col_pairs = 0, col_quads = 0;
    Precision precision = Precision::FP32;
    bool sparse = false;
    int block_rows = 0, block_cols = 0;
    std::vector<int32_t> stripe, bcol;
    std::vector<float> w32;
    std::vector<uint16_t> w16;
    std::vector<int8_t> w8;
    std::vector<float> scale;     // int8: rows_padded
    std::vector<int32_t> rowsum;  // int8: sum of each row's q (for unsigned-input dot products)
    std::vector<float> bias;      // rows_padded, zero beyond rows

    double density() const;  // stored weights / (rows * cols)
};

// A matvec input in the layer's precision: bf16 pairs, or int8 quads with a scale
// (x ~= scale * q); fp32 layers read the float vector directly.
struct Packed {
    const uint32_t* words = nullptr;
    float scale = 1.0f;
};

// B matvec inputs at once, for fold mode's batched steps: column b is the fp32 vector
// x + b * x_stride; dense bf16/int8 layers read its packed form words + b * w_stride with
// scale scales[b] instead (Packed's words and scale, per column).
struct Columns {
    int n = 0;
    const float* x = nullptr;
    int x_stride = 0;
    const uint32_t* words = nullptr;
    int w_stride = 0;
    const float* scales = nullptr;
};

// A convolution of the conditioning network as a dense fp32 matrix (out, kernel * in)
// with its bias: column k * in + c holds tap k of input channel c. With the activations
// stored position-major (T, in), output position i reads the kernel * in contiguous
// values from position i, so a layer is one gemm with a column per position.
struct Conv1d {
    int in = 0, kernel = 0;
    Matrix w;
};

struct Model {
    std::string path;
    std::string header_json;
    Dims dims;
    std::vector<float> mel_mean, mel_std;
    Conv1d inp;
    std::vector<Conv1d> conv1, conv2;  // residual blocks
    Matrix w_cond;                      // (3N, C) fp32: the conditioning columns of the masked W_ih
    std::vector<float> col_cprev, col_fprev, col_cur, b_ih;  // (3N) each
    Matrix hh, o1, o2, o3, o4;
    // Subscale only: sub-tensor s's context layer as an fp32 (D, (s + 1) * width) matrix
    // over the windows of sub-tensors 0..s (the masked weights of later ones are dropped),
    // and the context columns of W_ih as a (3N, D) matrix in the file's precision, with
    // b_ih as its bias.
    std::vector<Matrix> ctx;
    Matrix w_ctx;
};

// The matrices applied once per sample, by their tensor names in the model file (the
// Python side's export.PER_SAMPLE, in the same order): W_hh, then O1..O4. Shapes in
// halves of the state, N/2: rows = rows_halves * N/2 + classes, columns = cols_halves *
// N/2 (the heads read half the state, and O2 and O4 give the 256 classes).
struct PerSample {
    const char* weight;
    const char* bias;
    Matrix Model::*member;
    int rows_halves, classes, cols_halves;
};
inline constexpr PerSample kPerSample[] = {
    {"gru.weight_hh_l0", "gru.bias_hh_l0", &Model::hh, 6, 0, 2},
    {"O1.weight", "O1.bias", &Model::o1, 1, 0, 1},
    {"O2.weight", "O2.bias", &Model::o2, 0, 256, 1},
    {"O3.weight", "O3.bias", &Model::o3, 1, 0, 1},
    {"O4.weight", "O4.bias", &Model::o4, 0, 256, 1},
};

// What the loader does with a block-sparse matrix in the file: Auto keeps it sparse when
// its density is at most sparse_max_density(precision) (the measured break-even against
// the dense kernels) and expands it to dense otherwise; Always and Never force a choice
// (tests and `bench` compare the two on one file).
enum class SparseUse { Auto, Always, Never };
double sparse_max_density(Precision p);

// Parse and validate a model file; throws Error("<name>: <problem>").
std::unique_ptr<Model> load_model_file(const std::string& path, SparseUse use = SparseUse::Auto);
std::unique_ptr<Model> load_model_bytes(const uint8_t* data, size_t size, const std::string& name,
                                        SparseUse use = SparseUse::Auto);

// CRC-32 (zlib / IEEE 802.3 polynomial), the model file's checksum.
uint32_t crc32(const uint8_t* data, size_t size);

// Kernel table: one scalar reference; AVX2 and AVX-512 versions on x86, NEON on AArch64.
struct Kernels {
    const char* name;
    // y = W x + b for the row blocks [rb_begin, rb_end) (16 rows each) of a dense matrix.
    void (*gemv)(const Matrix& d, const float* x, Packed packed, float* y, bool relu, int rb_begin, int rb_end);
    // y = W x + b for the stripes [s_begin, s_end) (block_rows rows each) of a
    // block-sparse matrix (16x1 or 4x4 blocks; x in fp32).
    void (*spmv)(const Matrix& d, const float* x, float* y, bool relu, int s_begin, int s_end);
    // h_out[j] for j in [begin, end): PyTorch GRU update of h_in from gate pre-activations,
    // with gi[g*N + j] + col[g*N + j] * s as the input part of gate g (h_in may be h_out).
    void (*gru_rows)(const float* gi, const float* gh, const float* col, float s, const float* h_in, float* h_out,
                     int n, int begin, int end);
    // out = (1 - w) * p0 + w * p1 + b + c0 * s0 + c1 * s1
    void (*gate_inputs)(const float* p0, const float* p1, float w, const float* b, const float* c0, float s0,
                        const float* c1, float s1, float* out, int n);
    // out[i] = exp(logits[i] - max(logits)) for 256 logits: the unnormalised softmax that
    // draw_columns turns into an inverse-CDF draw.
    void (*exps)(const float* logits, float* out);
    // Y = W X + b (optionally relu) for the B columns of x (column b of Y at
    // y + b * y_stride), every row of a dense matrix. Each weight block is loaded once for
    // a group of columns: a step is memory-bound, so B columns cost little more than one.
    void (*gemm)(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu);
    // The same for a block-sparse matrix (every stripe; x in fp32).
    void (*spmm)(const Matrix& d, const Columns& x, float* y, int y_stride, bool relu);
    // Symmetric int8 quantisation of x[0..n) (scale = max|x| / 127, q = round-to-nearest-
    // even of x * 127 / max|x|), four per word, zero-padded; returns the scale. Every ISA
    // computes the same q bit for bit.
    float (*quantize)(const float* x, int n, uint32_t* out);
};

const Kernels& kernels_scalar();
const Kernels* kernels_avx2();    // nullptr if not compiled in (not x86)
const Kernels* kernels_avx512();  // nullptr if not compiled in (not x86)
const Kernels* kernels_neon();    // nullptr if not compiled in (not AArch64)
// The kernels used by new engines: best supported ISA, or WRNN_ISA / select_isa.
const Kernels& active_kernels();
void select_isa(const std::string& name);  // "auto", "scalar", "avx2", "avx512", "neon"; throws Error
std::vector<std::string> supported_isas();

// Inverse-CDF draws for n columns of 256 logits (column b at logits + b * stride, uniform
// u[b * u_stride]): out[b] = the first i with cumsum(exps)[i] > u * total (255 if none).
// scratch holds 256 * n floats.
void draw_columns(const Kernels& k, const float* logits, size_t stride, int n, const double* u, int u_stride,
                  int* out, float* scratch);

// bf16 round-to-nearest-even of x[0..n) packed as (x[2k] | x[2k+1] << 16).
void pack_bf16_pairs(const float* x, int n, uint32_t* out);


// Where a run's time goes (`vocoder bench --profile`): time-stamp-counter ticks per stage
// of the step, counted on the calling thread only, so with two threads its waits for the
// other show as Stage::Wait. Each product's stage includes packing its input. While an
// engine has one set, every run adds to it; the ticks always sum to total_ticks.
enum class Stage : int { Conditioning, GateInputs, Context, Recurrent, Gru, O1, O2, O3, O4, Draws, Wait, Other, Count };
const char* stage_name(Stage s);
struct Profile {
    uint64_t ticks[int(Stage::Count)] = {};
    uint64_t total_ticks = 0;
    double seconds = 0.0;  // wall time of the profiled runs, which total_ticks spans
};

// Per-step internals for parity tests.
struct Trace {
    std::vector<float> coarse_logits, fine_logits, states;  // (L, 256), (L, 256), (L, N)
};

class Engine {
  public:
    // threads: 1, or 2 to split each step's matrices by rows between two threads (needs
    // N/2 % 16 == 0; other sizes fall back to 1). Results are identical either way.
    Engine(std::shared_ptr<const Model> model, const Kernels& kernels, int threads = 1);
    // Streaming: called on the calling thread with each run of `chunk` finished samples in
    // order (the last run may be shorter) while the rest is generated. It returns false
    // when nobody wants more (a reader gone): the run stops after at most one more step,
    // the one a second thread may already have begun, and returns the samples made. It
    // must not throw: a step half done on two threads cannot be abandoned.
    using Sink = std::function<bool(const int16_t* samples, size_t count)>;
    // mel: (n_mels, frames) row-major. draws: (L, 2) or null (seeded RNG). force: int16
    // samples (L) for teacher forcing or null. trace: filled when non-null. sink: null, or
    // given every `chunk` samples (sequential models only). A subscale model runs
    // run_subscale. Returns the L samples, fewer when the sink stopped the run.
    std::vector<int16_t> run(const float* mel, int frames, uint64_t seed, const double* draws,
                             const int16_t* force, Trace* trace, const Sink* sink = nullptr, size_t chunk = 0);
    // Fold mode (vocoder.fold): nb sequences of `steps` steps run as one batch, each with
    // its own state (from zero), previous sample and draws; sequence b is conditioned at
    // step s on the utterance's sample position positions[b * steps + s]. draws:
    // (nb, steps, 2) or null (the seeded RNG gives (u0, u1) for b = 0..nb-1 per step);
    // force: (nb, steps) or null; trace rows are b * steps + s. Returns (nb, steps) samples.
    // Two threads split each step's sequences (same samples as one thread).
    std::vector<int16_t> run_batch(const float* mel, int frames, const int32_t* positions, int nb, int steps,
                                   uint64_t seed, const double* draws, const int16_t* force, Trace* trace);
    // Subscale models (Model::dims.subscale.batch > 0): the staggered schedule of
    // vocoder.subscale.generate, B sub-tensors per step as one batched product; the byte
    // input of sub-tensor s >= 1 is the waveform's previous sample U[s - 1, i]. Two
    // threads split each step's sub-tensors (same samples as one thread). draws:
    // (L, 2) in waveform order or null (the seeded RNG fills that table in the same
    // order); force: (L) or null; trace rows are waveform positions.
    std::vector<int16_t> run_subscale(const float* mel, int frames, uint64_t seed, const double* draws,
                                      const int16_t* force, Trace* trace);
    // Conditioning projected to gate space per padded frame: (frames + 2, 3N).
    std::vector<float> project_frames(const float* mel, int frames) const;
    // Profile every following run into *p (null: stop); p must outlive those runs.
    void set_profile(Profile* p) { profile_ = p; }
    const Model& model() const { return *model_; }
    const Kernels& kernels() const { return kernels_; }
    int threads() const { return threads_; }

  private:
    std::shared_ptr<const Model> model_;
    const Kernels& kernels_;
    int threads_ = 1;
    Profile* profile_ = nullptr;
};

}  // namespace wrnn
