"""`bench`: samples/s of the native engine and the torch reference, in one process.

Each configuration vocodes a fixed random mel with the engine's own RNG (sequential
mode: one utterance, one step per sample). Torch is timed on a shorter input because
it is slow; both are reported in samples/s, so lengths do not matter. The machine's
practical limit for the same per-sample work is measured too, two ways:

* bandwidth: a step must read every per-sample weight (W_hh and the output layers) once,
  so steps/s <= read bandwidth / weight bytes. The bandwidth is probed by streaming a
  buffer of that size with the widest SIMD loads (from L2 if it fits, else from L3).
* BLAS: the same matrix-vector products with numpy's fp32 BLAS on one thread, the speed
  of a generic library.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from vocoder.config import Config, load_config
from vocoder.errors import VocoderError

TORCH_SAMPLES = 2000
REALTIME_RATE = 24000  # the conventional "x real time at 24 kHz" yardstick


@dataclass
class Result:
    """One measured configuration, as written to the JSON report."""

    engine: str
    mode: str
    hidden_size: int
    sparsity: float
    block: str
    threads: int
    precision: str
    samples_per_second: float
    times_realtime_24k: float
    samples: int
    seconds: float
    isa: str
    limit_samples_per_second: float
    share_of_limit: float
    blas_samples_per_second: float
    share_of_blas: float

    @classmethod
    def of(
        cls,
        engine: str,
        hidden: int,
        threads: int,
        precision: str,
        wall: float,
        count: int,
        isa: str,
        limit: float,
        blas: float,
    ) -> Result:
        sps = count / wall
        return cls(
            engine,
            "sequential",
            hidden,
            0.0,
            "dense",
            threads,
            precision,
            sps,
            sps / REALTIME_RATE,
            count,
            wall,
            isa,
            limit,
            sps / limit,
            blas,
            sps / blas,
        )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_mel(cfg: Config, samples: int, seed: int = 0) -> np.ndarray:
    """A log-mel-like random input of at least ``samples`` samples."""
    frames = max(1, -(-samples // cfg.audio.hop_length))
    return np.random.default_rng(seed).normal(-5.0, 2.0, (cfg.audio.n_mels, frames)).astype(np.float32)


def matvec_limit(hidden: int, repeats: int = 200) -> float:
    """Steps/s if a step were only its fp32 matrix-vector products (numpy BLAS):
    W_hh (3N x N) and the four output layers (N/2 x N/2 twice, 256 x N/2 twice)."""
    rng = np.random.default_rng(0)
    half = hidden // 2
    mats = [
        rng.standard_normal(s, dtype=np.float32)
        for s in [(3 * hidden, hidden), (half, half), (256, half), (half, half), (256, half)]
    ]
    vecs = [rng.standard_normal(m.shape[1], dtype=np.float32) for m in mats]
    best = float("inf")
    with threadpool_limits(limits=1):  # one core, like the engine's single-thread rows
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                for m, v in zip(mats, vecs, strict=True):
                    m @ v
            best = min(best, (time.perf_counter() - start) / repeats)
    return 1.0 / best


BYTES = {"fp32": 4, "bf16": 2, "int8": 1}


def weight_bytes(hidden: int, precision: str) -> int:
    """Bytes of per-sample weights one step reads: W_hh (3N x N) and O1..O4."""
    half = hidden // 2
    return (3 * hidden * hidden + 2 * half * half + 2 * 256 * half) * BYTES[precision]


def bandwidth_limit(hidden: int, precision: str) -> float:
    """Steps/s if a step cost only reading its weights at the probed bandwidth."""
    from vocoder import _engine

    nbytes = weight_bytes(hidden, precision)
    return _engine.read_bandwidth(nbytes) * 1e9 / nbytes


def time_native(path: Path, cfg: Config, samples: int, threads: int) -> tuple[float, int, str, str]:
    from vocoder.native import NativeVocoder

    voc = NativeVocoder.load(path, threads)
    if voc.threads != threads:
        raise VocoderError(f"the native engine cannot use {threads} threads at N={cfg.model.hidden_size}")
    mel = bench_mel(cfg, samples)
    voc.generate(mel[:, :2], 0)  # warm-up: page in the weights
    start = time.perf_counter()
    out = voc.generate(mel, 0)
    return time.perf_counter() - start, len(out), voc.isa, voc.precision


def time_torch(model: object, cfg: Config, samples: int, threads: int) -> tuple[float, int]:
    import torch

    from vocoder import sampler

    torch.set_num_threads(threads)
    mel = bench_mel(cfg, samples)
    sampler.generate(model, mel[:, :1], 0)
    start = time.perf_counter()
    out, _ = sampler.generate(model, mel, 0)
    return time.perf_counter() - start, len(out)


def models_for(
    model_path: Path | None, hidden: int
) -> tuple[Config, object | None, dict[str, np.ndarray] | None]:
    """(config, torch model, float32 state) for a checkpoint or a random model of size N.

    A ``.wrnn`` file gives only its config: it is benchmarked as is, without torch."""
    if model_path is not None and model_path.suffix == ".wrnn":
        from vocoder.native import NativeVocoder

        return NativeVocoder.load(model_path).cfg, None, None
    import torch

    from vocoder import checkpoint as ckpt_mod

    if model_path is not None:
        model, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(model_path))
    else:
        cfg = load_config("ljspeech-22k", [f"model.hidden_size={hidden}"])
        torch.manual_seed(0)
        model = ckpt_mod.build_model(cfg).eval()
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    return cfg, model, state


def run_bench(
    model_path: Path | None,
    hidden_sizes: list[int],
    threads: list[int],
    precisions: list[str],
    seconds: float,
    with_torch: bool,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Measure every (N, precision, threads) natively and (N, threads) with torch."""
    from vocoder.export import write_model_file

    results: list[Result] = []

    def record(r: Result) -> None:
        results.append(r)
        if on_result is not None:
            on_result(r)

    sizes = [0] if model_path is not None else hidden_sizes
    with tempfile.TemporaryDirectory() as tmp:
        for hidden in sizes:
            cfg, model, state = models_for(model_path, hidden)
            n = cfg.model.hidden_size
            blas = matvec_limit(n)
            samples = int(seconds * cfg.audio.sample_rate)

            if state is None:
                assert model_path is not None
                for t in threads:
                    wall, count, isa, precision = time_native(model_path, cfg, samples, t)
                    limit = bandwidth_limit(n, precision)
                    record(Result.of("native", n, t, precision, wall, count, isa, limit, blas))
                continue
            for precision in precisions:
                path = Path(tmp) / f"n{n}-{precision}.wrnn"
                write_model_file(path, cfg, state, precision)
                for t in threads:
                    wall, count, isa, _ = time_native(path, cfg, samples, t)
                    limit = bandwidth_limit(n, precision)
                    record(Result.of("native", n, t, precision, wall, count, isa, limit, blas))
            if with_torch and model is not None:
                for t in threads:
                    wall, count = time_torch(model, cfg, TORCH_SAMPLES, t)
                    limit = bandwidth_limit(n, "fp32")
                    record(Result.of("torch", n, t, "fp32", wall, count, "torch", limit, blas))
    return results


def machine_info() -> dict[str, object]:
    from vocoder import _engine

    info: dict[str, object] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "isa_used": _engine.active_isa(),
        "isas_supported": _engine.supported_isas(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "limit_method": "read bandwidth (widest SIMD loads, buffer the size of one step's weights in the "
        "row's precision) / those bytes; blas: fp32 numpy BLAS (1 thread) on the same matvecs",
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def report(results: list[Result]) -> dict[str, object]:
    return {"machine": machine_info(), "results": [asdict(r) for r in results]}
