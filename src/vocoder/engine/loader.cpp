// Model file (.wrnn) parser. The file is untrusted: every size, offset, dtype and
// shape is checked before use, and any problem is one Error naming the file.
// Layout: docs/model-format.md.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "wrnn.h"

namespace wrnn {
namespace {

constexpr uint8_t kMagic[8] = {0x89, 'W', 'R', 'N', 'N', '\r', '\n', 0x1a};
// 2 added block-sparse matrices (i32 index tensors), 3 subscale models (header bytes 76..91),
// 4 per-sample matrices stored wider than the file's precision
constexpr uint32_t kMinVersion = 1, kVersion = 4;
constexpr size_t kHeaderSize = 96;
constexpr size_t kEntrySize = 96;
constexpr size_t kNameSize = 64;
constexpr size_t kAlign = 64;
constexpr size_t kChecksumSize = 4;
constexpr uint32_t kMaxTensors = 4096;
enum DType : uint32_t { kF32 = 1, kBF16 = 2, kI8 = 3, kI32 = 4 };

size_t dtype_size(uint32_t d) { return d == kBF16 ? 2 : d == kI8 ? 1 : 4; }

// The file is little-endian and read by memcpy: the hosts this builds for (x86-64,
// AArch64 Linux) are too, and a big-endian one is refused at compile time.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the model file reader needs a little-endian host");

uint32_t rd32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}
uint64_t rd64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

float bf16_to_f32(uint16_t v) {
    uint32_t u = uint32_t(v) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// The magic and the declared file size, from the first ``have`` bytes of a file of
// ``size`` bytes: enough to refuse a foreign, truncated or padded file before the rest
// of it is read.
void check_prefix(const uint8_t* d, size_t have, uint64_t size, const std::string& name) {
    if (have < 8 || std::memcmp(d, kMagic, 8) != 0) throw Error(name + ": not a WaveRNN model file (bad magic)");
    if (have < 24 || size < kHeaderSize + kChecksumSize)
        throw Error(name + ": file truncated (" + std::to_string(size) + " bytes)");
    uint64_t declared = rd64(d + 16);
    if (declared > size)
        throw Error(name + ": file truncated (" + std::to_string(size) + " of " + std::to_string(declared) + " bytes)");
    if (declared < size)
        throw Error(name + ": trailing bytes after the model (" + std::to_string(size) + " bytes, header says " +
                    std::to_string(declared) + ")");
}

struct Tensor {
    std::string name;
    uint32_t dtype = 0;
    std::vector<uint64_t> shape;
    const uint8_t* data = nullptr;
    uint64_t count = 0;
};

class Parser {
  public:
    Parser(const uint8_t* data, size_t size, std::string name, SparseUse use)
        : d_(data), n_(size), name_(std::move(name)), use_(use) {}

    [[noreturn]] void fail(const std::string& msg) const { throw Error(name_ + ": " + msg); }

    std::unique_ptr<Model> parse() {
        check_prefix(d_, n_, n_, name_);
        const uint32_t version = version_ = rd32(d_ + 8);
        if (version < kMinVersion || version > kVersion)
            fail("model format version " + std::to_string(version) + " is not supported (this engine reads versions " +
                 std::to_string(kMinVersion) + " to " + std::to_string(kVersion) + ")");
        if (rd32(d_ + 12) != kHeaderSize) fail("bad header size " + std::to_string(rd32(d_ + 12)));
        uint32_t stored = rd32(d_ + n_ - kChecksumSize);
        if (crc32(d_, n_ - kChecksumSize) != stored) fail("checksum mismatch (file corrupted)");

        uint64_t json_len = rd32(d_ + 24);
        uint32_t n_tensors = rd32(d_ + 28);
        uint64_t table_off = rd64(d_ + 32), data_off = rd64(d_ + 40);
        uint64_t end = n_ - kChecksumSize;
        if (kHeaderSize + json_len > end) fail("JSON header length out of range");
        if (n_tensors == 0 || n_tensors > kMaxTensors) fail("bad tensor count " + std::to_string(n_tensors));
        if (table_off < kHeaderSize + json_len || table_off > end || table_off % 8 != 0)
            fail("tensor table offset out of range");
        if (uint64_t(n_tensors) * kEntrySize > end - table_off) fail("tensor table extends past the end of the file");
        if (data_off < table_off + uint64_t(n_tensors) * kEntrySize || data_off > end || data_off % kAlign != 0)
            fail("tensor data offset out of range");
        const size_t reserved = version >= 3 ? 92 : 76;
        for (size_t i = reserved; i < kHeaderSize; ++i)
            if (d_[i] != 0) fail("reserved header bytes are not zero");

        auto m = std::make_unique<Model>();
        m->path = name_;
        m->header_json.assign(reinterpret_cast<const char*>(d_ + kHeaderSize), json_len);
        Dims& dm = m->dims;
        dm.hidden = rd32(d_ + 48);
        dm.cond_channels = rd32(d_ + 52);
        dm.cond_blocks = rd32(d_ + 56);
        dm.n_mels = rd32(d_ + 60);
        dm.hop_length = rd32(d_ + 64);
        dm.sample_rate = rd32(d_ + 68);
        uint32_t prec = rd32(d_ + 72);
        if (dm.hidden < 4 || dm.hidden % 2 || dm.hidden > 8192) fail("bad hidden size " + std::to_string(dm.hidden));
        if (dm.cond_channels < 1 || dm.cond_channels > 4096) fail("bad cond_channels " + std::to_string(dm.cond_channels));
        if (dm.cond_blocks > 64) fail("bad cond_blocks " + std::to_string(dm.cond_blocks));
        if (dm.n_mels < 1 || dm.n_mels > 1024) fail("bad n_mels " + std::to_string(dm.n_mels));
        if (dm.hop_length < 1 || dm.hop_length > 65536) fail("bad hop_length " + std::to_string(dm.hop_length));
        if (dm.sample_rate < 1000 || dm.sample_rate > 1000000) fail("bad sample_rate " + std::to_string(dm.sample_rate));
        if (prec != uint32_t(Precision::FP32) && prec != uint32_t(Precision::BF16) && prec != uint32_t(Precision::INT8))
            fail("unknown precision code " + std::to_string(prec));
        dm.precision = Precision(prec);
        Subscale& sub = dm.subscale;
        sub.batch = rd32(d_ + 76), sub.past = rd32(d_ + 80), sub.horizon = rd32(d_ + 84), sub.context = rd32(d_ + 88);
        if (sub.batch == 0 && (sub.past || sub.horizon || sub.context))
            fail("subscale fields set for a sequential model (batch 0)");
        if (sub.batch != 0) {
            if (sub.batch < 2 || sub.batch > 64) fail("bad subscale batch " + std::to_string(sub.batch));
            if (sub.past > 64 || sub.horizon > 64) fail("bad subscale window (past " + std::to_string(sub.past) +
                                                        ", horizon " + std::to_string(sub.horizon) + ")");
            if (sub.context < 1 || sub.context > 1024) fail("bad subscale context " + std::to_string(sub.context));
        }

        read_table(table_off, n_tensors, data_off, end);
        build(*m);
        return m;
    }

  private:
    void read_table(uint64_t table_off, uint32_t count, uint64_t data_off, uint64_t end) {
        for (uint32_t i = 0; i < count; ++i) {
            const uint8_t* e = d_ + table_off + uint64_t(i) * kEntrySize;
            size_t len = 0;
            while (len < kNameSize && e[len] != 0) ++len;
            if (len == 0 || len == kNameSize) fail("tensor " + std::to_string(i) + ": bad name");
            for (size_t j = len; j < kNameSize; ++j)
                if (e[j] != 0) fail("tensor " + std::to_string(i) + ": bad name padding");
            Tensor t;
            t.name.assign(reinterpret_cast<const char*>(e), len);
            for (char c : t.name)
                if (c < 0x21 || c > 0x7e) fail("tensor " + std::to_string(i) + ": name is not printable ASCII");
            t.dtype = rd32(e + 64);
            uint32_t ndim = rd32(e + 68);
            if (t.dtype != kF32 && t.dtype != kBF16 && t.dtype != kI8 && t.dtype != kI32)
                fail("tensor " + t.name + ": unknown dtype code " + std::to_string(t.dtype));
            if (ndim < 1 || ndim > 4) fail("tensor " + t.name + ": bad rank " + std::to_string(ndim));
            uint64_t count_el = 1;
            for (uint32_t k = 0; k < 4; ++k) {
                uint32_t s = rd32(e + 72 + 4 * k);
                if (k < ndim) {
                    if (s == 0 || s > (1u << 24)) fail("tensor " + t.name + ": bad dimension " + std::to_string(s));
                    t.shape.push_back(s);
                    count_el *= s;
                    if (count_el > (uint64_t(1) << 32)) fail("tensor " + t.name + ": too large");
                } else if (s != 0) {
                    fail("tensor " + t.name + ": unused dimensions must be zero");
                }
            }
            uint64_t off = rd64(e + 88);
            uint64_t nbytes = count_el * dtype_size(t.dtype);
            if (off % kAlign != 0 || off < data_off || off > end || nbytes > end - off)
                fail("tensor " + t.name + ": data offset " + std::to_string(off) + " out of range");
            t.data = d_ + off;
            t.count = count_el;
            if (tensors_.count(t.name)) fail("tensor " + t.name + " appears twice");
            tensors_[t.name] = t;
        }
    }

    static const char* dtype_name(uint32_t d) {
        return d == kF32 ? "f32" : d == kBF16 ? "bf16" : d == kI8 ? "i8" : "i32";
    }

    static std::string shape_str(const std::vector<uint64_t>& s) {
        std::ostringstream o;
        o << "(";
        for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
        o << (s.size() == 1 ? ",)" : ")");
        return o.str();
    }

    const Tensor& take(const std::string& name, std::vector<uint64_t> shape, uint32_t dtype) {
        auto it = tensors_.find(name);
        if (it == tensors_.end()) fail("missing tensor " + name);
        const Tensor& t = it->second;
        if (t.shape != shape)
            fail("tensor " + name + " has shape " + shape_str(t.shape) + ", the config needs " + shape_str(shape));
        if (t.dtype != dtype)
            fail("tensor " + name + " has dtype " + dtype_name(t.dtype) + ", expected " + dtype_name(dtype));
        used_.push_back(name);
        return t;
    }

    std::vector<float> floats(const std::string& name, std::vector<uint64_t> shape) {
        const Tensor& t = take(name, std::move(shape), kF32);
        std::vector<float> v(t.count);
        std::memcpy(v.data(), t.data, t.count * 4);
        for (float x : v)
            if (!std::isfinite(x)) fail("tensor " + name + " holds a non-finite value");
        return v;
    }

    // torch's (out, in, k) weights reordered to Conv1d's (out, k * in) columns.
    Conv1d conv(const std::string& prefix, int out, int in, int k) {
        const std::vector<float> w = floats(prefix + ".weight", {uint64_t(out), uint64_t(in), uint64_t(k)});
        const std::vector<float> b = floats(prefix + ".bias", {uint64_t(out)});
        RowMajor taps = zeros(Precision::FP32, size_t(out) * in * k);
        for (int o = 0; o < out; ++o)
            for (int c = 0; c < in; ++c)
                for (int t = 0; t < k; ++t)
                    taps.f32[(size_t(o) * k + t) * in + c] = w[(size_t(o) * in + c) * k + t];
        Conv1d conv;
        conv.in = in, conv.kernel = k;
        conv.w = dense_matrix(out, k * in, taps, b.data(), Precision::FP32);
        return conv;
    }

    // A row-major (rows, cols) matrix in the file's precision: exactly one of f32, bf16
    // or (i8 with one scale per row) is filled.
    struct RowMajor {
        std::vector<float> f32, scale;
        std::vector<uint16_t> bf16;
        std::vector<int8_t> i8;
    };

    static uint32_t dtype_of(Precision p) { return p == Precision::FP32 ? kF32 : p == Precision::BF16 ? kBF16 : kI8; }

    // The precision a per-sample matrix is stored in (dense or as .blocks): the file's,
    // or from version 4 a wider one (int8 < bf16 < fp32), which export uses for a layer
    // whose int8 rows cost too much accuracy. A missing tensor is reported by take().
    Precision stored_precision(const std::string& wname, Precision file) const {
        auto it = tensors_.find(wname);
        if (it == tensors_.end()) it = tensors_.find(wname + ".blocks");
        if (it == tensors_.end()) return file;
        const uint32_t d = it->second.dtype;
        const Precision p = d == kF32 ? Precision::FP32 : d == kBF16 ? Precision::BF16 : Precision::INT8;
        // Precision codes grow with width: FP32 1, BF16 2, INT8 3.
        if (d == kI32 || (p != file && (version_ < 4 || uint32_t(p) > uint32_t(file))))
            fail("tensor " + it->first + " has dtype " + dtype_name(d) + ", expected " + dtype_name(dtype_of(file)) +
                 (version_ >= 4 ? " or wider" : ""));
        return p;
    }

    std::vector<float> row_scales(const std::string& wname, int rows) {
        std::vector<float> s = floats(wname + ".scale", {uint64_t(rows)});
        for (float v : s)
            if (!(v > 0.0f)) fail("tensor " + wname + ".scale must be positive");
        return s;
    }

    // Checks and returns one weight value as stored (finite, int8 not -128).
    float check_value(const std::string& wname, Precision p, const uint8_t* data, size_t i) {
        float v;
        if (p == Precision::FP32) {
            std::memcpy(&v, data + i * 4, 4);
        } else if (p == Precision::BF16) {
            uint16_t h;
            std::memcpy(&h, data + i * 2, 2);
            v = bf16_to_f32(h);
        } else {
            int8_t q = int8_t(data[i]);
            if (q == -128) fail("tensor " + wname + " holds -128 (int8 weights must be in -127..127)");
            v = float(q);
        }
        if (!std::isfinite(v)) fail("tensor " + wname + " holds a non-finite value");
        return v;
    }

    // Stores value i of a tensor (already checked) at position `at` of a RowMajor.
    static void put(RowMajor& m, Precision p, const uint8_t* data, size_t i, size_t at) {
        if (p == Precision::FP32)
            std::memcpy(&m.f32[at], data + i * 4, 4);
        else if (p == Precision::BF16)
            std::memcpy(&m.bf16[at], data + i * 2, 2);
        else
            m.i8[at] = int8_t(data[i]);
    }

    static RowMajor zeros(Precision p, size_t count) {
        RowMajor m;
        if (p == Precision::FP32) m.f32.assign(count, 0.0f);
        if (p == Precision::BF16) m.bf16.assign(count, 0);
        if (p == Precision::INT8) m.i8.assign(count, 0);
        return m;
    }

    // Lays a row-major matrix out for the dense kernels.
    static void layout_dense(Matrix& d, const RowMajor& m) {
        const int rows = d.rows, cols = d.cols;
        if (d.precision == Precision::FP32) {
            d.w32.assign(size_t(d.rows_padded) * cols, 0.0f);
            for (int r = 0; r < rows; ++r)
                for (int k = 0; k < cols; ++k) d.w32[(size_t(r / 16) * cols + k) * 16 + r % 16] = m.f32[size_t(r) * cols + k];
        } else if (d.precision == Precision::INT8) {
            d.scale.assign(d.rows_padded, 0.0f);
            std::copy(m.scale.begin(), m.scale.end(), d.scale.begin());
            d.rowsum.assign(d.rows_padded, 0);
            d.w8.assign(size_t(d.rows_padded) * d.col_quads * 4, 0);
            for (int r = 0; r < rows; ++r)
                for (int k = 0; k < cols; ++k) {
                    int8_t v = m.i8[size_t(r) * cols + k];
                    d.w8[((size_t(r / 16) * d.col_quads + k / 4) * 16 + r % 16) * 4 + k % 4] = v;
                    d.rowsum[r] += v;
                }
        } else {
            d.w16.assign(size_t(d.rows_padded) * d.col_pairs * 2, 0);
            for (int r = 0; r < rows; ++r)
                for (int k = 0; k < cols; ++k)
                    d.w16[((size_t(r / 16) * d.col_pairs + k / 2) * 16 + r % 16) * 2 + k % 2] = m.bf16[size_t(r) * cols + k];
        }
    }

    // Reads a per-sample matrix, stored dense as `wname` or block-sparse as `wname.blocks`
    // + `wname.index`, and lays it out for the kernels (dense or sparse: see SparseUse).
    Matrix matrix(const std::string& wname, const std::string& bname, int rows, int cols, Precision p) {
        Matrix d;
        d.rows = rows, d.cols = cols, d.precision = p;
        d.rows_padded = (rows + 15) / 16 * 16;
        d.col_pairs = (cols + 1) / 2;
        d.col_quads = (cols + 3) / 4;
        std::vector<float> b = floats(bname, {uint64_t(rows)});
        d.bias.assign(d.rows_padded, 0.0f);
        std::copy(b.begin(), b.end(), d.bias.begin());
        std::vector<float> scale;
        if (p == Precision::INT8) scale = row_scales(wname, rows);
        if (!tensors_.count(wname + ".blocks")) {
            RowMajor m = zeros(p, size_t(rows) * cols);
            m.scale = std::move(scale);
            const Tensor& t = take(wname, {uint64_t(rows), uint64_t(cols)}, dtype_of(p));
            for (size_t i = 0; i < t.count; ++i) {
                check_value(wname, p, t.data, i);
                put(m, p, t.data, i, i);
            }
            layout_dense(d, m);
            return d;
        }
        const std::string vname = wname + ".blocks", iname = wname + ".index";
        const Tensor& vt = tensors_.at(vname);
        if (vt.shape.size() != 3) fail("tensor " + vname + " must have rank 3 (blocks, block columns, block rows)");
        const int br = int(vt.shape[2]), bc = int(vt.shape[1]);
        const uint64_t nblocks = vt.shape[0];
        if (!((br == 16 && bc == 1) || (br == 4 && bc == 4)))
            fail("tensor " + vname + ": blocks must be 16x1 or 4x4, not " + std::to_string(br) + "x" + std::to_string(bc));
        if (rows % br || cols % bc)
            fail("tensor " + vname + ": " + std::to_string(br) + "x" + std::to_string(bc) + " blocks do not tile a " +
                 std::to_string(rows) + "x" + std::to_string(cols) + " matrix");
        const int stripes = rows / br;
        if (nblocks > uint64_t(stripes) * (cols / bc)) fail("tensor " + vname + " holds more blocks than the matrix");
        take(vname, vt.shape, dtype_of(p));
        const Tensor& it = take(iname, {uint64_t(stripes) + nblocks}, kI32);
        std::vector<int32_t> idx(it.count);
        std::memcpy(idx.data(), it.data, it.count * 4);
        d.stripe.assign(stripes + 1, 0);
        d.bcol.assign(nblocks, 0);
        size_t pos = 0, nb = 0;
        for (int s = 0; s < stripes; ++s) {
            int32_t count = idx[pos++];
            if (count < 0 || count > cols / bc || uint64_t(count) > nblocks - nb)
                fail("tensor " + iname + ": stripe " + std::to_string(s) + " has a bad block count " + std::to_string(count));
            d.stripe[s] = int32_t(nb);
            int32_t prev = -1;
            for (int32_t k = 0; k < count; ++k) {
                int32_t c = idx[pos++];
                if (c < 0 || c % bc || c >= cols || c <= prev)
                    fail("tensor " + iname + ": stripe " + std::to_string(s) + " has a bad block column " +
                         std::to_string(c));
                d.bcol[nb++] = prev = c;
            }
        }
        d.stripe[stripes] = int32_t(nb);
        if (nb != nblocks)
            fail("tensor " + iname + " lists " + std::to_string(nb) + " blocks, " + vname + " holds " +
                 std::to_string(nblocks));
        // Sparse kept: the blocks widened to fp32; otherwise expanded into a dense matrix.
        const double density = double(nblocks) * 16 / (double(rows) * double(cols));
        const bool keep = use_ == SparseUse::Always || (use_ == SparseUse::Auto && density <= sparse_max_density(p));
        std::vector<float> widened(keep ? nblocks * 16 : 0);
        RowMajor m = zeros(p, keep ? 0 : size_t(rows) * cols);
        for (int s = 0; s < stripes; ++s)
            for (int32_t blk = d.stripe[s]; blk < d.stripe[s + 1]; ++blk)
                for (int j = 0; j < bc; ++j)
                    for (int i = 0; i < br; ++i) {
                        size_t v = size_t(blk) * 16 + size_t(j) * br + i;
                        size_t r = size_t(s) * br + i;
                        float w = check_value(vname, p, vt.data, v);
                        if (keep)
                            widened[v] = p == Precision::INT8 ? w * scale[r] : w;
                        else
                            put(m, p, vt.data, v, r * cols + size_t(d.bcol[blk]) + j);
                    }
        if (!keep) {
            d.stripe.clear(), d.bcol.clear();
            m.scale = std::move(scale);
            layout_dense(d, m);
            return d;
        }
        d.sparse = true;
        d.block_rows = br, d.block_cols = bc;
        d.w32 = std::move(widened);
        return d;
    }

    // The subscale context layer. Its weights must already be masked (export multiplies
    // by vocoder.subscale.context_mask): a file whose sub-tensor s reads a later
    // sub-tensor, or its own present or future, would sample from a leaking model, so it
    // is rejected rather than silently masked.
    void subscale_context(Model& m, const RowMajor& wctx) {
        const Subscale& sub = m.dims.subscale;
        const uint64_t b = sub.batch, d = sub.context, w = sub.width();
        std::vector<float> cw = floats("ctx_weight", {b, d, b * w});
        std::vector<float> cb = floats("ctx_bias", {b, d});
        for (uint64_t s = 0; s < b; ++s) {
            RowMajor rows = zeros(Precision::FP32, d * (s + 1) * w);
            for (uint64_t u = 0; u < d; ++u)
                for (uint64_t z = 0; z < b; ++z)
                    for (uint64_t k = 0; k < w; ++k) {
                        const float v = cw[((s * d + u) * b + z) * w + k];
                        const bool allowed = z < s || (z == s && k < sub.past);
                        if (!allowed && v != 0.0f)
                            fail("ctx_weight is not masked: sub-tensor " + std::to_string(s) + " reads sub-tensor " +
                                 std::to_string(z) + " at window offset " + std::to_string(int(k) - int(sub.past)));
                        if (z <= s) rows.f32[(u * (s + 1) + z) * w + k] = v;
                    }
            m.ctx.push_back(dense_matrix(int(d), int((s + 1) * w), rows, &cb[s * d], Precision::FP32));
        }
        // The context columns of W_ih are applied to B columns per step, like W_hh, and
        // cost as much as a fifth of an int8 step in fp32: they take the file's precision
        // (quantised here as export quantises the per-sample matrices). Their bias is
        // b_ih, so the product is the whole bias term of the step's gate inputs.
        m.w_ctx = dense_matrix(3 * int(m.dims.hidden), int(d), wctx, m.b_ih.data(), m.dims.precision);
    }

    // A row-major fp32 matrix in precision p (bf16: round to nearest even; int8: per-row
    // symmetric scales, as export.to_int8_rows), laid out for the dense kernels; bias
    // null means zero.
    static Matrix dense_matrix(int rows, int cols, const RowMajor& values, const float* bias, Precision p) {
        Matrix x;
        x.rows = rows, x.cols = cols, x.precision = p;
        x.rows_padded = (rows + 15) / 16 * 16;
        x.col_pairs = (cols + 1) / 2, x.col_quads = (cols + 3) / 4;
        x.bias.assign(x.rows_padded, 0.0f);
        if (bias) std::copy(bias, bias + rows, x.bias.begin());
        if (p == Precision::FP32) {
            layout_dense(x, values);
            return x;
        }
        RowMajor q = zeros(p, size_t(rows) * cols);
        if (p == Precision::BF16) {
            std::vector<uint32_t> pairs((size_t(rows) * cols + 1) / 2);
            pack_bf16_pairs(values.f32.data(), rows * cols, pairs.data());
            for (size_t i = 0; i < q.bf16.size(); ++i) q.bf16[i] = uint16_t(pairs[i / 2] >> (16 * (i % 2)));
        } else {
            q.scale.assign(rows, 1.0f);
            for (int r = 0; r < rows; ++r) {
                const float* row = &values.f32[size_t(r) * cols];
                float peak = 0.0f;
                for (int k = 0; k < cols; ++k) peak = std::max(peak, std::fabs(row[k]));
                if (peak > 0.0f) q.scale[r] = peak / 127.0f;
                for (int k = 0; k < cols; ++k)
                    q.i8[size_t(r) * cols + k] =
                        int8_t(std::min(127.0f, std::max(-127.0f, std::nearbyint(row[k] / q.scale[r]))));
            }
        }
        layout_dense(x, q);
        return x;
    }

    void build(Model& m) {
        const Dims& dm = m.dims;
        const int n = int(dm.hidden), h = n / 2, c = int(dm.cond_channels), mels = int(dm.n_mels);
        m.mel_mean = floats("mel_mean", {uint64_t(mels)});
        m.mel_std = floats("mel_std", {uint64_t(mels)});
        for (float s : m.mel_std)
            if (!(s > 0.0f)) fail("tensor mel_std must be positive");
        m.inp = conv("cond.inp", c, mels, 5);
        for (uint32_t i = 0; i < dm.cond_blocks; ++i) {
            std::string p = "cond.blocks." + std::to_string(i);
            m.conv1.push_back(conv(p + ".conv1", c, c, 3));
            m.conv2.push_back(conv(p + ".conv2", c, c, 1));
        }
        const int ctx = int(dm.subscale.context), in = 3 + c + ctx;
        std::vector<float> wih = floats("gru.weight_ih_l0", {uint64_t(3 * n), uint64_t(in)});
        m.b_ih = floats("gru.bias_ih_l0", {uint64_t(3 * n)});
        RowMajor wcond = zeros(Precision::FP32, size_t(3 * n) * c);
        m.col_cprev.resize(3 * n), m.col_fprev.resize(3 * n), m.col_cur.resize(3 * n);
        RowMajor wctx = zeros(Precision::FP32, size_t(3 * n) * ctx);
        for (int r = 0; r < 3 * n; ++r) {
            const float* row = &wih[size_t(r) * in];
            m.col_cprev[r] = row[0], m.col_fprev[r] = row[1], m.col_cur[r] = row[2];
            if (r % n < h && row[2] != 0.0f)
                fail("gru.weight_ih_l0 is not masked: column 2 (c_t) must be zero in the coarse rows");
            std::copy(row + 3, row + 3 + c, &wcond.f32[size_t(r) * c]);
            if (ctx) std::copy(row + 3 + c, row + in, &wctx.f32[size_t(r) * ctx]);
        }
        m.w_cond = dense_matrix(3 * n, c, wcond, nullptr, Precision::FP32);
        if (ctx) subscale_context(m, wctx);
        for (const PerSample& ps : kPerSample) {
            const int rows = ps.rows_halves * h + ps.classes, cols = ps.cols_halves * h;
            m.*ps.member = matrix(ps.weight, ps.bias, rows, cols, stored_precision(ps.weight, dm.precision));
        }
        if (used_.size() != tensors_.size()) {
            for (const auto& kv : tensors_)
                if (std::find(used_.begin(), used_.end(), kv.first) == used_.end()) fail("unexpected tensor " + kv.first);
        }
    }

    const uint8_t* d_;
    size_t n_;
    std::string name_;
    std::map<std::string, Tensor> tensors_;
    std::vector<std::string> used_;
    SparseUse use_;
    uint32_t version_ = 0;
};

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size) {
    static const auto table = [] {
        std::vector<uint32_t> t(256);
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

double Matrix::density() const {
    if (!sparse) return 1.0;
    return double(bcol.size()) * block_rows * block_cols / (double(rows) * double(cols));
}

// Break-even densities of the sparse kernels against the dense ones, measured by
// `vocoder bench --sparse-kernels always` against `never` (docs/native-engine.md,
// "Block-sparse matrices", has the command and figures): lower for bf16 and int8, whose
// dense weights are half and a quarter the bytes of the sparse kernels' fp32 blocks.
double sparse_max_density(Precision p) {
    switch (p) {
        case Precision::BF16: return 0.45;
        case Precision::INT8: return 0.3;
        default: return 0.6;
    }
}

std::unique_ptr<Model> load_model_bytes(const uint8_t* data, size_t size, const std::string& name, SparseUse use) {
    return Parser(data, size, name, use).parse();
}

std::unique_ptr<Model> load_model_file(const std::string& path, SparseUse use) {
    // A FIFO or device would block or never end: only a regular file is opened.
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw Error(path + ": no such file");
    if (!std::filesystem::is_regular_file(status)) throw Error(path + ": not a regular file");
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) throw Error(path + ": cannot open model file");
    std::streamoff size = f.tellg();
    if (size < 0) throw Error(path + ": cannot read model file");
    if (size > (std::streamoff(1) << 34)) throw Error(path + ": file too large for a model");
    std::vector<uint8_t> buf(std::min<size_t>(static_cast<size_t>(size), kHeaderSize));
    f.seekg(0);
    if (!buf.empty() && !f.read(reinterpret_cast<char*>(buf.data()), std::streamsize(buf.size())))
        throw Error(path + ": cannot read model file");
    check_prefix(buf.data(), buf.size(), uint64_t(size), path);
    buf.resize(static_cast<size_t>(size));
    const std::streamsize rest = std::streamsize(size) - std::streamsize(kHeaderSize);
    if (!f.read(reinterpret_cast<char*>(buf.data()) + kHeaderSize, rest)) throw Error(path + ": cannot read model file");
    return load_model_bytes(buf.data(), buf.size(), path, use);
}

}  // namespace wrnn
