// Python module vocoder._engine: a thin pybind11 layer over wrnn::Engine. Arrays are
// checked here (dtype, shape) so the C++ core only ever sees well-formed buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>

#include "probe.h"
#include "wrnn.h"

namespace py = pybind11;

namespace {

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;
using I32 = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using I16 = py::array_t<int16_t, py::array::c_style | py::array::forcecast>;

class PyEngine {
  public:
    PyEngine(const std::string& path, int threads, const std::string& sparse)
        : model_(wrnn::load_model_file(path, sparse_use(sparse))), engine_(model_, wrnn::active_kernels(), threads) {}

    static wrnn::SparseUse sparse_use(const std::string& s) {
        if (s == "auto") return wrnn::SparseUse::Auto;
        if (s == "always") return wrnn::SparseUse::Always;
        if (s == "never") return wrnn::SparseUse::Never;
        throw wrnn::Error("sparse must be auto, always or never, not '" + s + "'");
    }

    // The name Python uses for a precision (vocoder.export.PRECISIONS).
    static const char* precision_name(wrnn::Precision p) {
        switch (p) {
            case wrnn::Precision::BF16: return "bf16";
            case wrnn::Precision::INT8: return "int8";
            default: return "fp32";
        }
    }

    // How each per-sample matrix is held: "dense", or "sparse RxC" with its density, and
    // its precision (the file's, or a wider one kept by export).
    py::dict layout() const {
        py::dict out;
        const wrnn::Model& m = *model_;
        for (const wrnn::PerSample& ps : wrnn::kPerSample) {
            const wrnn::Matrix* mat = &(m.*ps.member);
            py::dict d;
            d["kind"] = mat->sparse ? "sparse" : "dense";
            d["block"] = mat->sparse ? std::to_string(mat->block_rows) + "x" + std::to_string(mat->block_cols) : "";
            d["density"] = mat->density();
            d["precision"] = precision_name(mat->precision);
            out[ps.weight] = d;
        }
        return out;
    }

    // Stage timing of the following runs (vocoder.bench --profile): on clears and starts it.
    void set_profiling(bool on) {
        profile_ = wrnn::Profile{};
        engine_.set_profile(on ? &profile_ : nullptr);
    }
    // Seconds per stage (and "total") of the runs since profiling was switched on: each
    // stage's share of the ticks times the runs' wall time.
    py::dict profile() const {
        py::dict out;
        const double per_tick = profile_.total_ticks ? profile_.seconds / double(profile_.total_ticks) : 0.0;
        for (int s = 0; s < int(wrnn::Stage::Count); ++s)
            out[wrnn::stage_name(wrnn::Stage(s))] = double(profile_.ticks[s]) * per_tick;
        out["total"] = profile_.seconds;
        return out;
    }

    std::string header_json() const { return model_->header_json; }
    // The training set's per-bin log-mel mean and std, which the engine normalises by:
    // what a caller compares a user's mel with to catch another mel convention.
    py::tuple mel_stats() const {
        auto copy = [](const std::vector<float>& v) {
            py::array_t<float> out(py::ssize_t(v.size()));
            std::copy(v.begin(), v.end(), out.mutable_data());
            return out;
        };
        return py::make_tuple(copy(model_->mel_mean), copy(model_->mel_std));
    }
    std::string isa() const { return engine_.kernels().name; }
    int threads() const { return engine_.threads(); }
    std::string precision() const { return precision_name(model_->dims.precision); }
    py::dict dims() const {
        const wrnn::Dims& d = model_->dims;
        py::dict out;
        out["hidden_size"] = d.hidden;
        out["cond_channels"] = d.cond_channels;
        out["cond_blocks"] = d.cond_blocks;
        out["n_mels"] = d.n_mels;
        out["hop_length"] = d.hop_length;
        out["sample_rate"] = d.sample_rate;
        out["subscale_batch"] = d.subscale.batch;
        out["subscale_past"] = d.subscale.past;
        out["subscale_horizon"] = d.subscale.horizon;
        out["subscale_context"] = d.subscale.context;
        return out;
    }

    py::array_t<int16_t> generate(const F32& mel, uint64_t seed) { return run(mel, seed, nullptr, nullptr, nullptr); }

    // Calls `callback` with each `chunk` samples (an int16 array) as soon as they are made,
    // on this thread with the GIL; returns the number of samples made. A callback that
    // returns False (a reader gone) or raises stops the run within a step; what it raised
    // is raised here.
    size_t generate_stream(const F32& mel, uint64_t seed, size_t chunk, const py::function& callback) {
        size_t frames = check_mel(mel);
        std::exception_ptr failed;
        const wrnn::Engine::Sink sink = [&](const int16_t* samples, size_t count) {
            py::gil_scoped_acquire gil;
            try {
                py::array_t<int16_t> a(static_cast<py::ssize_t>(count));
                std::memcpy(a.mutable_data(), samples, count * sizeof(int16_t));
                const py::object more = callback(a);
                return !(py::isinstance<py::bool_>(more) && !more.cast<bool>());
            } catch (...) {
                failed = std::current_exception();
                return false;
            }
        };
        size_t made;
        {
            py::gil_scoped_release nogil;
            made = engine_.run(mel.data(), int(frames), seed, nullptr, nullptr, nullptr, &sink, chunk).size();
        }
        if (failed) std::rethrow_exception(failed);
        return made;
    }

    py::array_t<int16_t> generate_with_draws(const F32& mel, const py::array_t<double, py::array::c_style | py::array::forcecast>& draws) {
        size_t frames = check_mel(mel);
        size_t total = frames * model_->dims.hop_length;
        if (draws.ndim() != 2 || size_t(draws.shape(0)) != total || draws.shape(1) != 2)
            throw wrnn::Error("draws must have shape (" + std::to_string(total) + ", 2)");
        return run(mel, 0, draws.data(), nullptr, nullptr);
    }

    py::tuple teacher_forced(const F32& mel, const py::array_t<int16_t, py::array::c_style | py::array::forcecast>& samples) {
        size_t frames = check_mel(mel);
        size_t total = frames * model_->dims.hop_length;
        if (samples.ndim() != 1 || size_t(samples.shape(0)) != total)
            throw wrnn::Error("samples must have shape (" + std::to_string(total) + ",)");
        wrnn::Trace trace;
        run(mel, 0, nullptr, samples.data(), &trace);
        auto arr = [](std::vector<float>& v, size_t rows, size_t cols) {
            py::array_t<float> a({rows, cols});
            std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
            return a;
        };
        size_t n = model_->dims.hidden;
        return py::make_tuple(arr(trace.coarse_logits, total, 256), arr(trace.fine_logits, total, 256),
                              arr(trace.states, total, n));
    }

    // Fold mode's batch: positions (B, S) int32 sample indices into the utterance.
    py::array_t<int16_t> generate_batch(const F32& mel, const I32& positions, uint64_t seed) {
        return run_batch(mel, positions, seed, nullptr, nullptr, nullptr);
    }

    py::array_t<int16_t> generate_batch_with_draws(const F32& mel, const I32& positions, const F64& draws) {
        check_positions(positions);
        if (draws.ndim() != 3 || draws.shape(0) != positions.shape(0) || draws.shape(1) != positions.shape(1) ||
            draws.shape(2) != 2)
            throw wrnn::Error("draws must have shape (" + std::to_string(positions.shape(0)) + ", " +
                              std::to_string(positions.shape(1)) + ", 2)");
        return run_batch(mel, positions, 0, draws.data(), nullptr, nullptr);
    }

    py::tuple teacher_forced_batch(const F32& mel, const I32& positions, const I16& samples) {
        check_positions(positions);
        const size_t b = positions.shape(0), s = positions.shape(1);
        if (samples.ndim() != 2 || size_t(samples.shape(0)) != b || size_t(samples.shape(1)) != s)
            throw wrnn::Error("samples must have shape (" + std::to_string(b) + ", " + std::to_string(s) + ")");
        wrnn::Trace trace;
        run_batch(mel, positions, 0, nullptr, samples.data(), &trace);
        auto arr = [&](std::vector<float>& v, size_t cols) {
            py::array_t<float> a({b, s, cols});
            std::memcpy(a.mutable_data(), v.data(), v.size() * sizeof(float));
            return a;
        };
        return py::make_tuple(arr(trace.coarse_logits, 256), arr(trace.fine_logits, 256),
                              arr(trace.states, model_->dims.hidden));
    }

  private:
    void check_positions(const I32& positions) const {
        if (positions.ndim() != 2 || positions.shape(0) < 1 || positions.shape(1) < 1)
            throw wrnn::Error("positions must have shape (segments >= 1, steps >= 1)");
    }

    py::array_t<int16_t> run_batch(const F32& mel, const I32& positions, uint64_t seed, const double* draws,
                                   const int16_t* force, wrnn::Trace* trace) {
        size_t frames = check_mel(mel);
        check_positions(positions);
        const int b = int(positions.shape(0)), s = int(positions.shape(1));
        std::vector<int16_t> out;
        {
            py::gil_scoped_release nogil;
            out = engine_.run_batch(mel.data(), int(frames), positions.data(), b, s, seed, draws, force, trace);
        }
        py::array_t<int16_t> a({size_t(b), size_t(s)});
        std::memcpy(a.mutable_data(), out.data(), out.size() * sizeof(int16_t));
        return a;
    }

    size_t check_mel(const F32& mel) const {
        if (mel.ndim() != 2 || size_t(mel.shape(0)) != model_->dims.n_mels || mel.shape(1) < 1)
            throw wrnn::Error("mel must have shape (" + std::to_string(model_->dims.n_mels) + ", frames >= 1)");
        return size_t(mel.shape(1));
    }

    py::array_t<int16_t> run(const F32& mel, uint64_t seed, const double* draws, const int16_t* force, wrnn::Trace* trace) {
        size_t frames = check_mel(mel);
        std::vector<int16_t> out;
        {
            py::gil_scoped_release nogil;
            out = engine_.run(mel.data(), int(frames), seed, draws, force, trace);
        }
        py::array_t<int16_t> a(out.size());
        std::memcpy(a.mutable_data(), out.data(), out.size() * sizeof(int16_t));
        return a;
    }

    std::shared_ptr<const wrnn::Model> model_;
    wrnn::Engine engine_;
    wrnn::Profile profile_;
};

}  // namespace

PYBIND11_MODULE(_engine, m) {
    m.doc() = "WaveRNN native sampling engine (no torch).";
    py::register_exception<wrnn::Error>(m, "EngineError", PyExc_ValueError);
    m.def("select_isa", &wrnn::select_isa, py::arg("name"),
          "Kernels for engines created from now on: auto, scalar, avx2, avx512 (x86) or neon (AArch64).");
    m.def("active_isa", [] { return std::string(wrnn::active_kernels().name); });
    m.def("supported_isas", &wrnn::supported_isas);
    m.def(
        "read_bandwidth",
        [](size_t nbytes, int repeats) {
            // With the active ISA's widest loads.
            const wrnn::Probes& p = wrnn::probes_for(wrnn::active_kernels());
            py::gil_scoped_release nogil;
            return wrnn::read_bandwidth(p, nbytes, repeats);
        },
        py::arg("nbytes"), py::arg("repeats") = 5);
    m.def(
        "multiply_add_probe",
        [](const std::string& precision, uint64_t rounds) {
            // (multiply-adds counted by the active ISA's probe, seconds it took).
            if (rounds == 0 || rounds > (uint64_t(1) << 24))  // fp32 lanes count exactly up to 2^24
                throw wrnn::Error("multiply_add_probe: rounds must be in 1..2^24");
            const wrnn::Precision p = precision == "int8"   ? wrnn::Precision::INT8
                                      : precision == "bf16" ? wrnn::Precision::BF16
                                      : precision == "fp32" ? wrnn::Precision::FP32
                                                            : throw wrnn::Error("unknown precision " + precision);
            const wrnn::Probes& probes = wrnn::probes_for(wrnn::active_kernels());
            py::gil_scoped_release nogil;
            return wrnn::multiply_add_rate(probes, p, rounds);
        },
        py::arg("precision"), py::arg("rounds"));
    py::class_<PyEngine>(m, "Engine")
        .def(py::init<const std::string&, int, const std::string&>(), py::arg("path"), py::arg("threads") = 1,
             py::arg("sparse") = "auto")
        .def_property_readonly("layout", &PyEngine::layout)
        .def_property_readonly("threads", &PyEngine::threads)
        .def_property_readonly("header_json", &PyEngine::header_json)
        .def_property_readonly("mel_stats", &PyEngine::mel_stats)
        .def_property_readonly("isa", &PyEngine::isa)
        .def_property_readonly("precision", &PyEngine::precision)
        .def_property_readonly("dims", &PyEngine::dims)
        .def_property_readonly("profile", &PyEngine::profile)
        .def("set_profiling", &PyEngine::set_profiling, py::arg("on"))
        .def("generate", &PyEngine::generate, py::arg("mel"), py::arg("seed"))
        .def("generate_stream", &PyEngine::generate_stream, py::arg("mel"), py::arg("seed"), py::arg("chunk"),
             py::arg("callback"))
        .def("generate_with_draws", &PyEngine::generate_with_draws, py::arg("mel"), py::arg("draws"))
        .def("teacher_forced", &PyEngine::teacher_forced, py::arg("mel"), py::arg("samples"))
        .def("generate_batch", &PyEngine::generate_batch, py::arg("mel"), py::arg("positions"), py::arg("seed"))
        .def("generate_batch_with_draws", &PyEngine::generate_batch_with_draws, py::arg("mel"), py::arg("positions"),
             py::arg("draws"))
        .def("teacher_forced_batch", &PyEngine::teacher_forced_batch, py::arg("mel"), py::arg("positions"),
             py::arg("samples"));
}
