// Standalone engine check, built with -fsanitize=address,undefined by `make sanitize`:
// loads a valid model file and runs every ISA for a few hundred steps, then feeds the
// loader hand-made corruptions and a deterministic random-mutation fuzz loop (half of
// the mutants get a fixed-up CRC so they reach the structural checks). Any crash,
// sanitizer report, or a corruption that is accepted fails the run.
//
// usage: check_engine MODEL.wrnn [FUZZ_ITERATIONS]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "../../src/vocoder/engine/wrnn.h"

namespace {

using Bytes = std::vector<uint8_t>;

struct Rand {  // xorshift64*: fixed seed, so a failure reproduces exactly
    uint64_t s = 0x9e3779b97f4a7c15ULL;
    uint64_t next() {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        return s * 0x2545f4914f6cdd1dULL;
    }
    size_t below(size_t n) { return n ? size_t(next() % n) : 0; }
};

void fix_crc(Bytes& b) {
    if (b.size() < 4) return;
    uint32_t c = wrnn::crc32(b.data(), b.size() - 4);
    std::memcpy(b.data() + b.size() - 4, &c, 4);
}

template <typename T>
void put(Bytes& b, size_t off, T v) {
    if (off + sizeof(T) <= b.size()) std::memcpy(b.data() + off, &v, sizeof(T));
}

std::vector<const wrnn::Kernels*> all_kernels() {
    std::vector<const wrnn::Kernels*> out;
    for (const auto& name : wrnn::supported_isas()) {
        wrnn::select_isa(name);
        out.push_back(&wrnn::active_kernels());
    }
    return out;
}

// A run's stage ticks must add up to its total (every tick goes to one stage).
void check_profile(const wrnn::Profile& p) {
    uint64_t sum = 0;
    for (uint64_t t : p.ticks) sum += t;
    if (sum != p.total_ticks || p.total_ticks == 0 || !(p.seconds > 0.0)) {
        std::fprintf(stderr, "FAIL: profile stages sum to %llu of %llu ticks\n", (unsigned long long)sum,
                     (unsigned long long)p.total_ticks);
        std::exit(1);
    }
}

// Runs `frames` mel frames through every ISA on 1..max_threads threads (the second run of
// each profiled); returns the samples of the last run.
std::vector<int16_t> run_all(const std::shared_ptr<const wrnn::Model>& m, int frames, int max_threads,
                             int batch_steps) {
    std::vector<float> mel(size_t(m->dims.n_mels) * frames);
    for (size_t i = 0; i < mel.size(); ++i) mel[i] = float(int(i % 17) - 8) * 0.7f;
    std::vector<int16_t> out;
    for (const wrnn::Kernels* k : all_kernels())
        for (int threads = 1; threads <= max_threads; ++threads) {
            wrnn::Engine e(m, *k, threads);
            out = e.run(mel.data(), frames, 1, nullptr, nullptr, nullptr);
            if (!m->dims.subscale.batch) {  // streaming: the same samples, in order, in chunks of 37
                std::vector<int16_t> streamed;
                const wrnn::Engine::Sink sink = [&](const int16_t* s, size_t n) {
                    if (n > 37 || (n < 37 && streamed.size() + n != out.size())) {
                        std::fprintf(stderr, "FAIL: stream chunk of %zu samples\n", n);
                        std::exit(1);
                    }
                    streamed.insert(streamed.end(), s, s + n);
                    return true;
                };
                e.run(mel.data(), frames, 1, nullptr, nullptr, nullptr, &sink, 37);
                if (streamed != out) {
                    std::fprintf(stderr, "FAIL: streamed samples differ from a plain run (%s, %d threads)\n",
                                 k->name, threads);
                    std::exit(1);
                }
                // a reader that leaves after the second chunk: the run stops within a step,
                // its samples still the plain run's
                int calls = 0;
                const wrnn::Engine::Sink leave = [&](const int16_t*, size_t) { return ++calls < 2; };
                const std::vector<int16_t> cut = e.run(mel.data(), frames, 1, nullptr, nullptr, nullptr, &leave, 37);
                const size_t expect = std::min(out.size(), size_t(74 + (e.threads() == 2)));
                if (calls != std::min(2, int((out.size() + 36) / 37)) || cut.size() != expect ||
                    !std::equal(cut.begin(), cut.end(), out.begin())) {
                    std::fprintf(stderr, "FAIL: a stopped stream made %zu samples in %d chunks (%s, %d threads)\n",
                                 cut.size(), calls, k->name, threads);
                    std::exit(1);
                }
            }
            wrnn::Trace tr;
            wrnn::Profile prof;
            e.set_profile(&prof);
            e.run(mel.data(), frames, 0, nullptr, out.data(), &tr);
            e.set_profile(nullptr);
            check_profile(prof);
        }
    const int total = frames * int(m->dims.hop_length), nb = 11, steps = std::min(total, batch_steps);
    std::vector<int32_t> pos(size_t(nb) * steps);
    for (int b = 0; b < nb; ++b)
        for (int s = 0; s < steps; ++s) pos[size_t(b) * steps + s] = (b * 7 + s) % total;
    if (m->dims.subscale.batch) {  // run above took the subscale schedule; fold mode must refuse
        wrnn::Engine e(m, wrnn::kernels_scalar(), 1);
        try {
            e.run_batch(mel.data(), frames, pos.data(), nb, steps, 1, nullptr, nullptr, nullptr);
            std::fprintf(stderr, "FAIL: fold mode accepted a subscale model\n");
            std::exit(1);
        } catch (const wrnn::Error&) {
        }
        return out;
    }
    // Fold mode's batched path on 1..max_threads threads: 11 sequences (a full column
    // group of 8 or 4 plus a remainder on every ISA) of batch_steps steps (at most the
    // utterance), seeded and teacher-forced with a trace, and a position outside the
    // utterance, which must be refused.
    for (const wrnn::Kernels* k : all_kernels())
        for (int threads = 1; threads <= max_threads; ++threads) {
            wrnn::Engine e(m, *k, threads);
            std::vector<int16_t> batch =
                e.run_batch(mel.data(), frames, pos.data(), nb, steps, 1, nullptr, nullptr, nullptr);
            wrnn::Trace tr;
            wrnn::Profile prof;
            e.set_profile(&prof);
            e.run_batch(mel.data(), frames, pos.data(), nb, steps, 0, nullptr, batch.data(), &tr);
            e.set_profile(nullptr);
            check_profile(prof);
            pos[5] = total;
            try {
                e.run_batch(mel.data(), frames, pos.data(), nb, steps, 1, nullptr, nullptr, nullptr);
                std::fprintf(stderr, "FAIL: a batch position past the utterance was accepted\n");
                std::exit(1);
            } catch (const wrnn::Error&) {
            }
            pos[5] = 5;
        }
    return out;
}

bool rejected(const Bytes& b, const char* what) {
    try {
        wrnn::load_model_bytes(b.data(), b.size(), "mutant");
    } catch (const wrnn::Error& e) {
        return true;
    }
    std::fprintf(stderr, "FAIL: corruption accepted: %s\n", what);
    return false;
}

}  // namespace

// draw_columns over many columns (interleaved running sums, in groups of 16 and a rest)
// must give each column the index it gives that column alone, on every ISA; and the
// index must be the first whose running sum exceeds u * total (a slow double-free check).
bool draws_agree() {
    const int n = 21;
    const size_t stride = 300;
    Rand rnd;
    std::vector<float> logits(stride * n), scratch(256 * n), one(256);
    std::vector<double> u(2 * n);
    for (float& v : logits) v = float(int(rnd.below(2001)) - 1000) / 100.0f;
    for (double& v : u) v = double(rnd.below(1000001)) / 1000000.0;
    bool ok = true;
    for (const wrnn::Kernels* k : all_kernels()) {
        std::vector<int> got(n);
        wrnn::draw_columns(*k, logits.data(), stride, n, u.data(), 2, got.data(), scratch.data());
        for (int b = 0; b < n; ++b) {
            int alone = -1;
            wrnn::draw_columns(*k, logits.data() + b * stride, stride, 1, &u[2 * size_t(b)], 2, &alone, one.data());
            k->exps(logits.data() + b * stride, one.data());
            float cum = 0.0f, total = 0.0f;
            for (float e : one) total += e;
            int first = 255;
            for (int i = 0; i < 256; ++i)
                if ((cum += one[i]) > float(u[2 * size_t(b)]) * total) {
                    first = i;
                    break;
                }
            if (got[b] != alone || got[b] != first) {
                std::fprintf(stderr, "FAIL: %s column %d draws %d batched, %d alone, %d by the rule\n", k->name, b,
                             got[b], alone, first);
                ok = false;
            }
        }
    }
    return ok;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.wrnn [FUZZ_ITERATIONS]\n", argv[0]);
        return 2;
    }
    long iterations = argc > 2 ? std::atol(argv[2]) : 2000;
    std::ifstream f(argv[1], std::ios::binary);
    Bytes good((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::shared_ptr<const wrnn::Model> model = wrnn::load_model_file(argv[1]);
    std::vector<int16_t> y = run_all(model, 2, 2, 1 << 30);
    std::printf("valid model: N=%u, %zu samples on %zu ISAs x 1 and 2 threads, %s\n", model->dims.hidden, y.size(),
                all_kernels().size(), model->dims.subscale.batch ? "subscale schedule (fold mode refused)" : "and batched");

    bool ok = draws_agree();
    for (size_t cut : {size_t(0), size_t(7), size_t(95), good.size() / 3, good.size() - 1}) {
        Bytes b(good.begin(), good.begin() + long(cut));
        ok &= rejected(b, "truncated");
    }
    struct Field {
        size_t off;
        uint64_t value;
        int width;
    };
    for (Field fd : {Field{8, 5, 4}, Field{8, 0, 4}, Field{12, 0, 4}, Field{16, 1, 8}, Field{24, 0xffffffff, 4}, Field{28, 0, 4},
                     Field{28, 0xffffffff, 4}, Field{32, ~0ULL, 8}, Field{40, ~0ULL - 63, 8}, Field{48, 6, 4},
                     Field{64, 0, 4}, Field{72, 9, 4}, Field{76, 1, 4}, Field{80, 65, 4}, Field{88, 2000, 4},
                     Field{92, 1, 4}}) {
        Bytes b = good;
        if (fd.width == 4) put<uint32_t>(b, fd.off, uint32_t(fd.value));
        else put<uint64_t>(b, fd.off, fd.value);
        fix_crc(b);
        ok &= rejected(b, "header field");
    }

    Rand rnd;
    long accepted = 0;
    const uint64_t interesting[] = {0, 1, 3, 63, 64, 255, 0x7fffffff, 0xffffffff, 1ULL << 32, ~0ULL, good.size(),
                                    good.size() - 4};
    for (long it = 0; it < iterations; ++it) {
        Bytes b = good;
        int n = 1 + int(rnd.below(4));
        for (int k = 0; k < n; ++k) {
            switch (rnd.below(5)) {
                case 0:  // random byte anywhere
                    if (!b.empty()) b[rnd.below(b.size())] = uint8_t(rnd.next());
                    break;
                case 1:  // interesting value in the header or the tensor table
                    put<uint64_t>(b, rnd.below(std::min<size_t>(b.size(), 4096)), interesting[rnd.below(12)]);
                    break;
                case 2:
                    put<uint32_t>(b, rnd.below(std::min<size_t>(b.size(), 4096)), uint32_t(interesting[rnd.below(12)]));
                    break;
                case 3:  // truncate or extend
                    b.resize(rnd.below(b.size() + 64));
                    break;
                default:  // bit flip
                    if (!b.empty()) b[rnd.below(b.size())] ^= uint8_t(1u << rnd.below(8));
            }
        }
        if (rnd.below(2)) fix_crc(b);
        try {
            std::shared_ptr<const wrnn::Model> m = wrnn::load_model_bytes(b.data(), b.size(), "mutant");
            run_all(m, 1, 1, 16);  // a mutant that passes every check must still run safely
            ++accepted;
        } catch (const wrnn::Error&) {
        }
    }
    std::printf("fuzz: %ld mutants, %ld accepted and run (changes no check can see, e.g. weight values), the rest rejected\n", iterations,
                accepted);
    if (!ok) return 1;
    std::printf("check_engine: OK\n");
    return 0;
}
