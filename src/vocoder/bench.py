"""`bench`: samples/s of the native engine and the torch reference, in one process.

Each configuration vocodes a fixed random mel with the engine's own RNG (sequential
mode: one utterance, one step per sample). With ``fold`` each native configuration also
gets fold-mode rows (``vocoder.fold``: the utterance's segments as one batch, per thread
count) on a longer input, since the batch size is the number of segments. Torch is
timed on a shorter input because it is slow; all are reported in samples/s. Sparse rows
use the same random model pruned once to the requested sparsity in whole blocks (the GRU's
three gate matrices, and O1/O3 with ``gru+out``), exported block-sparse, so they sit
next to the dense row of the same N. The machine's practical limit for the same
per-sample work is measured too:

* bandwidth: a step must read every per-sample weight (W_hh and the output layers, as the
  engine holds them: dense in the file's precision, sparse blocks in fp32 plus their
  column index) once, so steps/s <= read bandwidth / weight bytes. The bandwidth is
  probed by streaming a buffer of that size with the widest SIMD loads.
* compute: every sample needs its multiply-adds (the per-sample matrices' rows x
  columns, the kept blocks' values for sparse ones, a subscale model's context layer),
  so samples/s <= the multiply-add rate / those multiply-adds. The rate is probed per
  precision with independent chains of the instruction the kernels use (vpdpbusd,
  vdpbf16ps, vfmadd on AVX-512; sparse blocks are fp32). A batched step (fold,
  subscale) multiplies every weight it reads by many columns, so this is the limit that
  binds there; a sequential step reads each weight for one multiply-add, so bandwidth
  binds.
* BLAS: the same matrix-vector products with numpy's fp32 BLAS on one thread, the speed
  of a generic library.

A row's limit is the lower of the bandwidth and compute limits (its ``bound``), both
times the row's thread count (the probes run on one core; each thread reads and
multiplies its own share of the weights); "% of limit" is its share of that. For fold
rows the bandwidth and BLAS limits are per step, times the kept samples per step (L / S
for an utterance of L samples in segments of S steps): the speed if a batched step cost
no more than a sequential one; the compute limit counts the overlaps fold mode
generates and drops.

With ``subscale`` each native configuration also gets a subscale row: a random subscale
model of the same N (``SubscaleConfig`` defaults: B=16, F=4, P=4, D=64), pruned the same
way for sparse rows, per thread count (two threads split each step's sub-tensors). Its
bandwidth and BLAS limits are per step as well, times T divided by the schedule's
T/B + (B-1)(F+1) steps. The compute limit also bounds its ratio to the sequential engine
("x seq"): subscale cannot beat sequential by more than its compute limit over the
sequential row's samples/s.

With ``profile`` each native row also records where its time goes: one more run with
the engine's stage timers on (``NativeVocoder.profile``), as each stage's share.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from vocoder.config import PRUNE_LAYERS, Config, load_config
from vocoder.errors import VocoderError
from vocoder.export import KERNEL_BLOCKS, model_state, per_sample_shapes
from vocoder.kinds import kind_of
from vocoder.native import MODEL_EXT, NativeVocoder

TORCH_SAMPLES = 2000
STREAM_CHUNK = 1024  # samples per chunk of stream rows: synthesize --stdout's
REALTIME_RATE = 24000  # the conventional "x real time at 24 kHz" yardstick


@dataclass
class BenchRow:
    """One measured configuration, as written to the JSON report."""

    engine: str
    mode: str
    hidden_size: int
    sparsity: float
    block: str
    pruned_layers: str
    sparse_kernels: str
    threads: int
    precision: str
    samples_per_second: float
    times_realtime_24k: float
    samples: int
    seconds: float
    isa: str
    bandwidth_limit_samples_per_second: float
    compute_limit_samples_per_second: float
    limit_samples_per_second: float  # the lower of the two
    bound: str  # "bandwidth" or "compute": which limit is lower
    share_of_limit: float
    blas_samples_per_second: float
    share_of_blas: float
    repeats: int  # timed runs; samples_per_second is the fastest
    profile: dict[str, float] = field(default_factory=dict)  # stage -> share of a run (--profile)
    first_audio_ms: float | None = None  # stream rows: mel in (model loaded) -> first chunk out

    @classmethod
    def of(
        cls,
        engine: str,
        variant: Variant,
        threads: int,
        precision: str,
        timing: tuple[float, int, str],
        limits: tuple[float, float],
        blas: float,
        mode: str = "sequential",
        repeats: int = 1,
        profile: dict[str, float] | None = None,
    ) -> BenchRow:
        wall, count, isa = timing
        sps = count / wall
        bandwidth, compute = limits
        limit = min(bandwidth, compute)
        return cls(
            engine,
            mode,
            variant.hidden,
            variant.sparsity,
            variant.block,
            variant.layers,
            variant.kernels,
            threads,
            precision,
            sps,
            sps / REALTIME_RATE,
            count,
            wall,
            isa,
            bandwidth,
            compute,
            limit,
            "bandwidth" if bandwidth <= compute else "compute",
            sps / limit,
            blas,
            sps / blas,
            repeats,
            profile or {},
        )


@dataclass(frozen=True)
class Variant:
    """One model shape to time: N, and for sparse rows the sparsity, block shape, pruned
    layers and which kernels the engine is told to use (auto/always/never)."""

    hidden: int
    sparsity: float = 0.0
    block: str = "dense"
    layers: str = ""
    kernels: str = "auto"


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


def stored_weights(
    hidden: int, precision: str, layout: dict[str, dict[str, object]] | None
) -> list[tuple[float, bool, str]]:
    """(weights the engine holds, whether it holds them as sparse blocks, the precision it
    computes them in) per per-sample matrix: rows x columns when dense, times the density
    of the kept blocks when sparse (blocks are fp32). A dense matrix takes the precision the
    loaded ``layout`` reports (an int8 file keeps O2 in bf16), else the file's."""
    out = []
    for name, (rows, cols) in per_sample_shapes(hidden).items():
        lay = (layout or {}).get(name, {"kind": "dense"})
        sparse = lay["kind"] == "sparse"
        held = "fp32" if sparse else str(lay.get("precision", precision))
        out.append((rows * cols * (float(lay["density"]) if sparse else 1.0), sparse, held))
    return out


def matvec_limit(hidden: int, repeats: int = 200) -> float:
    """Steps/s if a step were only its fp32 matrix-vector products (numpy BLAS) with the
    per-sample matrices."""
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal(s, dtype=np.float32) for s in per_sample_shapes(hidden).values()]
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


def weight_bytes(hidden: int, precision: str, layout: dict[str, dict[str, object]] | None = None) -> int:
    """Bytes of per-sample weights one step reads: W_hh (3N x N) and O1..O4, each dense
    in its precision (``stored_weights``) or, where the engine holds it sparse, fp32
    blocks of 16 values plus one 4-byte column index per block."""
    total = 0.0
    for count, sparse, held in stored_weights(hidden, precision, layout):
        total += count * ((4 + 4 / 16) if sparse else BYTES[held])
    return int(total)


def multiply_adds(
    cfg: Config, precision: str, layout: dict[str, dict[str, object]] | None = None
) -> dict[str, float]:
    """Multiply-adds per generated sample, keyed by the precision that does them: the
    per-sample matrices of ``weight_bytes`` (each in the precision ``stored_weights``
    gives it), and for a subscale model its context layer (sub-tensor s reads (s + 1) W
    window values, fp32, so B (B + 1) / 2 W per B samples) and the context columns of
    W_ih (3N x D, in the file's precision)."""
    n = cfg.model.hidden_size
    out = {precision: 0.0, "fp32": 0.0}
    for count, _, held in stored_weights(n, precision, layout):
        out[held] = out.get(held, 0.0) + count
    fp32, in_precision = kind_of(cfg).context_multiply_adds(cfg)
    out["fp32"] += fp32
    out[precision] += in_precision
    return out


def multiply_add_rate(precision: str, rounds: int = 1 << 20, repeats: int = 5) -> float:
    """Best-of-repeats multiply-adds/s of the active kernels' dot-product instruction for
    ``precision`` on one core: the engine's probe (independent chains, no memory)."""
    from vocoder import _engine

    best = 0.0
    for _ in range(repeats):
        count, wall = _engine.multiply_add_probe(precision, rounds)
        best = max(best, count / wall)
    return best


def compute_limit(macs: dict[str, float], rates: dict[str, float]) -> float:
    """Samples/s if a sample cost only its multiply-adds at the probed rates."""
    return 1.0 / sum(count / rates[p] for p, count in macs.items() if count)


def bandwidth_limit(nbytes: int) -> float:
    """Steps/s if a step cost only reading ``nbytes`` of weights at the probed bandwidth."""
    from vocoder import _engine

    return _engine.read_bandwidth(nbytes) * 1e9 / nbytes


def fastest(run: Callable[[], int], repeats: int) -> tuple[float, int]:
    """(the shortest wall time of ``repeats`` calls of ``run``, the samples it returned):
    on a shared machine the fastest run is the one least disturbed by other work."""
    best, count = float("inf"), 0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    return best, count


@dataclass
class Timed:
    """The fastest of a few native runs, and what the model file costs per sample."""

    wall: float
    samples: int
    isa: str
    precision: str
    step_bytes: int  # weight bytes one step reads
    macs: dict[str, float]  # multiply-adds per sample, by the precision they run in
    per_step: float = 1.0  # samples one step yields (fold mode: kept samples per batched step)
    shares: dict[str, float] = field(default_factory=dict)  # stage shares, when profiled
    first_audio: float | None = None  # streamed runs: seconds to the first chunk

    @property
    def timing(self) -> tuple[float, int, str]:
        return self.wall, self.samples, self.isa


def time_native(
    path: Path,
    cfg: Config,
    samples: int,
    threads: int,
    kernels: str = "auto",
    repeats: int = 1,
    profile: bool = False,
) -> Timed:
    """The fastest of ``repeats`` native runs; with ``profile`` one more run is timed
    stage by stage."""
    voc = NativeVocoder.load(path, threads, kernels)
    if voc.threads != threads:
        raise VocoderError(f"the native engine cannot use {threads} threads at N={cfg.model.hidden_size}")
    mel = bench_mel(cfg, samples)
    voc.generate(mel[:, :2], 0)  # warm-up: page in the weights
    wall, count = fastest(lambda: len(voc.generate(mel, 0)), repeats)
    nbytes = weight_bytes(cfg.model.hidden_size, voc.precision, voc.layout)
    shares = voc.profile(lambda: voc.generate(mel, 0)) if profile else {}
    return Timed(
        wall,
        count,
        voc.isa,
        voc.precision,
        nbytes,
        multiply_adds(cfg, voc.precision, voc.layout),
        shares=shares,
    )


def time_stream(path: Path, cfg: Config, samples: int, threads: int, repeats: int = 1) -> Timed:
    """The fastest time to the first chunk and the fastest whole run of ``repeats``
    streamed runs in chunks of ``STREAM_CHUNK`` (the engine's ``stream``)."""
    voc = NativeVocoder.load(path, threads)
    mel = bench_mel(cfg, samples)
    voc.generate(mel[:, :2], 0)  # warm-up: page in the weights
    first = whole = float("inf")
    count = 0
    for _ in range(repeats):
        start = time.perf_counter()
        chunks = voc.stream(mel, 0, STREAM_CHUNK)
        count = len(next(chunks))
        first = min(first, time.perf_counter() - start)
        count += sum(len(c) for c in chunks)
        whole = min(whole, time.perf_counter() - start)
    nbytes = weight_bytes(cfg.model.hidden_size, voc.precision, voc.layout)
    macs = multiply_adds(cfg, voc.precision, voc.layout)
    return Timed(whole, count, voc.isa, voc.precision, nbytes, macs, first_audio=first)


def time_native_fold(
    path: Path,
    cfg: Config,
    samples: int,
    target: int,
    overlap: int,
    threads: int,
    kernels: str = "auto",
    repeats: int = 1,
    profile: bool = False,
) -> Timed:
    """The fastest of ``repeats`` fold-mode runs; multiply-adds are per kept sample."""
    from vocoder import fold

    voc = NativeVocoder.load(path, threads, kernels)
    mel = bench_mel(cfg, samples)
    voc.generate_fold(mel[:, :2], 0, target, overlap)  # warm-up: page in the weights
    wall, count = fastest(lambda: len(voc.generate_fold(mel, 0, target, overlap)), repeats)
    shares = voc.profile(lambda: voc.generate_fold(mel, 0, target, overlap)) if profile else {}
    segments, fitted_target, fitted_overlap = fold.layout(count, target, overlap)
    steps = fold.segment_length(fitted_target, fitted_overlap)
    nbytes = weight_bytes(cfg.model.hidden_size, voc.precision, voc.layout)
    generated = segments * steps
    macs = {p: m * generated / count for p, m in multiply_adds(cfg, voc.precision, voc.layout).items()}
    return Timed(wall, count, voc.isa, voc.precision, nbytes, macs, count / steps, shares)


def time_torch(
    model: object, cfg: Config, samples: int, threads: int, repeats: int = 1
) -> tuple[float, int, str]:
    """The torch reference sampler of the model's kind (sequential or subscale): the
    fastest of ``repeats`` runs."""
    import torch

    from vocoder.torch_engine import TorchVocoder

    torch.set_num_threads(threads)
    voc = TorchVocoder(model, cfg)
    mel = bench_mel(cfg, samples)
    voc.generate(mel[:, :1], 0)
    wall, count = fastest(lambda: len(voc.generate(mel, 0)), repeats)
    return wall, count, "torch"


def subscale_model(cfg: Config) -> tuple[Config, object]:
    """A random subscale model of the same size as ``cfg``'s (subscale defaults)."""
    import copy

    import torch

    from vocoder import checkpoint as ckpt_mod

    cfg = copy.deepcopy(cfg)
    cfg.model.kind = "subscale"
    torch.manual_seed(0)
    return cfg, ckpt_mod.build_model(cfg).eval()


def models_for(
    model_path: Path | None, hidden: int
) -> tuple[Config, object | None, dict[str, np.ndarray] | None]:
    """(config, torch model, float32 state) for a checkpoint or a random model of size N.

    A ``.wrnn`` file gives only its config: it is benchmarked as is, without torch."""
    if model_path is not None and model_path.suffix == MODEL_EXT:
        return NativeVocoder.load(model_path).cfg, None, None
    import torch

    from vocoder import checkpoint as ckpt_mod

    if model_path is not None:
        model, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(model_path))
    else:
        cfg = load_config("ljspeech-22k", [f"model.hidden_size={hidden}"])
        torch.manual_seed(0)
        model = ckpt_mod.build_model(cfg).eval()
    return cfg, model, model_state(model)


def pruned_state(model: object, cfg: Config, v: Variant) -> tuple[Config, dict[str, np.ndarray]]:
    """The random model pruned once to the variant's sparsity in whole blocks, and a
    config whose prune section makes export write those matrices block-sparse."""
    import copy

    from vocoder.config import PruneConfig
    from vocoder.pruning import Pruner

    cfg = copy.deepcopy(cfg)
    cfg.prune = PruneConfig(sparsity=v.sparsity, block=v.block, start=0, ramp=1, interval=1, layers=v.layers)
    pruned = copy.deepcopy(model)
    Pruner(pruned, cfg.prune).step(1)
    return cfg, model_state(pruned)


@dataclass
class Plan:
    """What one `vocoder bench` run times. Each of ``sparsities`` x ``blocks`` is a pruned
    variant (of the ``prune_layers`` matrices) timed next to the dense model of each N,
    with the ``kernels`` choice;
    ``fold`` (target, overlap, seconds) adds fold-mode rows per native (variant,
    precision, threads); ``subscale`` subscale rows (per thread count) and a torch
    subscale row per N; ``stream`` a stream row, with its time to first audio, per
    sequential native (variant, precision, threads). Each row is the fastest of
    ``repeats`` timed runs; with ``profile`` each native row also gets its stage shares
    from one more run."""

    model_path: Path | None = None
    hidden_sizes: list[int] = field(default_factory=lambda: [384, 512, 896])
    threads: list[int] = field(default_factory=lambda: [1, 2])
    precisions: list[str] = field(default_factory=lambda: ["fp32", "bf16", "int8"])
    seconds: float = 1.0
    with_torch: bool = True
    sparsities: list[float] = field(default_factory=list)
    blocks: list[str] = field(default_factory=lambda: ["16x1"])
    prune_layers: str = "gru"
    kernels: str = "auto"
    fold: tuple[int, int, float] | None = None
    subscale: bool = False
    repeats: int = 1
    profile: bool = False
    stream: bool = False

    def __post_init__(self) -> None:
        """The choices the engine has kernels and modes for, checked before any timing."""
        from vocoder.fold import check_fold

        for block in self.blocks:
            if block not in KERNEL_BLOCKS:
                raise VocoderError(f"--block {block}: the engine has sparse kernels for 16x1 and 4x4")
        if self.prune_layers not in PRUNE_LAYERS:
            raise VocoderError(f"--prune-layers {self.prune_layers}: use gru or gru+out")
        if self.kernels not in ("auto", "always", "never"):
            raise VocoderError(f"--sparse-kernels {self.kernels}: use auto, always or never")
        if self.fold is not None:
            check_fold(*self.fold[:2])


class Recorder:
    """The rows of one run as they are timed, and the probed multiply-add rates they share."""

    def __init__(self, plan: Plan, on_result: Callable[[BenchRow], None] | None) -> None:
        self.plan = plan
        self.on_result = on_result
        self.rows: list[BenchRow] = []
        self.rates: dict[str, float] = {}

    def limits(self, bandwidth: float, macs: dict[str, float], threads: int) -> tuple[float, float]:
        """Both limits for ``threads`` cores: each probe ran on one core, and a thread
        reads and multiplies its own share of the weights."""
        for p in macs:
            if p not in self.rates:
                self.rates[p] = multiply_add_rate(p)
        return bandwidth * threads, compute_limit(macs, self.rates) * threads

    def record(self, r: BenchRow) -> None:
        self.rows.append(r)
        if self.on_result is not None:
            self.on_result(r)

    def native(self, path: Path, cfg: Config, v: Variant, threads: int, blas: float) -> None:
        """One native row: sequential, or subscale for a subscale model (limits per step
        times the samples a step yields)."""
        plan = self.plan
        samples = int(plan.seconds * cfg.audio.sample_rate)
        t = time_native(path, cfg, samples, threads, v.kernels, plan.repeats, plan.profile)
        per_step = kind_of(cfg).samples_per_step(cfg, t.samples)
        lim = self.limits(bandwidth_limit(t.step_bytes) * per_step, t.macs, threads)
        mode = cfg.model.kind
        self.record(
            BenchRow.of(
                "native",
                v,
                threads,
                t.precision,
                t.timing,
                lim,
                blas * per_step,
                mode,
                plan.repeats,
                t.shares,
            )
        )

    def model_file(self, path: Path, cfg: Config, v: Variant, blas: float) -> None:
        """Every row of one model file: one per thread count, then fold-mode and stream
        rows when the plan asks and the kind makes samples in time order."""
        for t in self.plan.threads:
            self.native(path, cfg, v, t, blas)
        if kind_of(cfg).in_time_order:
            if self.plan.fold is not None:
                self.fold(path, cfg, v, blas)
            if self.plan.stream:
                self.stream(path, cfg, v, blas)

    def fold(self, path: Path, cfg: Config, v: Variant, blas: float) -> None:
        plan = self.plan
        assert plan.fold is not None
        target, overlap, fold_seconds = plan.fold
        fold_samples = int(fold_seconds * cfg.audio.sample_rate)
        for n in plan.threads:
            t = time_native_fold(
                path, cfg, fold_samples, target, overlap, n, v.kernels, plan.repeats, plan.profile
            )
            lim = self.limits(bandwidth_limit(t.step_bytes) * t.per_step, t.macs, n)
            self.record(
                BenchRow.of(
                    "native",
                    v,
                    n,
                    t.precision,
                    t.timing,
                    lim,
                    blas * t.per_step,
                    "fold",
                    plan.repeats,
                    t.shares,
                )
            )

    def stream(self, path: Path, cfg: Config, v: Variant, blas: float) -> None:
        plan = self.plan
        samples = int(plan.seconds * cfg.audio.sample_rate)
        for n in plan.threads:
            t = time_stream(path, cfg, samples, n, plan.repeats)
            lim = self.limits(bandwidth_limit(t.step_bytes), t.macs, n)
            r = BenchRow.of(
                "native", v, n, t.precision, t.timing, lim, blas, mode="stream", repeats=plan.repeats
            )
            self.record(replace(r, first_audio_ms=1000 * (t.first_audio or 0.0)))

    def torch(self, model: object, cfg: Config, threads: int, blas: float) -> None:
        timing = time_torch(model, cfg, TORCH_SAMPLES, threads, self.plan.repeats)
        per_step = kind_of(cfg).samples_per_step(cfg, TORCH_SAMPLES)
        lim = self.limits(
            bandwidth_limit(weight_bytes(cfg.model.hidden_size, "fp32")) * per_step,
            multiply_adds(cfg, "fp32"),
            threads,
        )
        v = Variant(cfg.model.hidden_size)
        row = BenchRow.of(
            "torch", v, threads, "fp32", timing, lim, blas * per_step, cfg.model.kind, self.plan.repeats
        )
        self.record(row)


def run_bench(plan: Plan, on_result: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:
    """Time every (N, dense or sparse variant, precision, threads) natively and (N,
    threads) with torch, as ``plan`` says; a given model file or checkpoint is timed as
    it is. ``on_result`` sees each row as it is timed."""
    from vocoder.export import write_model_file

    rec = Recorder(plan, on_result)
    sizes = [0] if plan.model_path is not None else plan.hidden_sizes
    with tempfile.TemporaryDirectory() as tmp:
        for hidden in sizes:
            cfg, model, state = models_for(plan.model_path, hidden)
            n = cfg.model.hidden_size
            blas = matvec_limit(n)
            if state is None:
                assert plan.model_path is not None
                p = cfg.prune
                v = Variant(n, p.sparsity, p.block, p.layers, plan.kernels) if p.sparsity > 0 else Variant(n)
                rec.model_file(plan.model_path, cfg, v, blas)
                continue
            variants = [(Variant(n), cfg, state)]
            for sparsity, block in ((s, b) for s in plan.sparsities for b in plan.blocks):
                v = Variant(n, sparsity, block, plan.prune_layers, plan.kernels)
                variants.append((v, *pruned_state(model, cfg, v)))
            sub_cfg, sub_model = (cfg, None)
            if plan.subscale and kind_of(cfg).in_time_order:
                sub_cfg, sub_model = subscale_model(cfg)
            for v, v_cfg, v_state in variants:
                sub = None
                if sub_model is not None:
                    sub = (sub_cfg, model_state(sub_model))
                    if v.sparsity > 0:
                        sub = pruned_state(sub_model, sub_cfg, v)
                for precision in plan.precisions:
                    path = Path(tmp) / f"n{n}-{precision}{MODEL_EXT}"
                    write_model_file(path, v_cfg, v_state, precision)
                    rec.model_file(path, v_cfg, v, blas)
                    if sub is not None:
                        write_model_file(path, sub[0], sub[1], precision)
                        for t in plan.threads:
                            rec.native(path, sub[0], v, t, blas)
            if plan.with_torch and model is not None:
                for t in plan.threads:
                    rec.torch(model, cfg, t, blas)
                if sub_model is not None:
                    rec.torch(sub_model, sub_cfg, 1, blas)
    return rec.rows


def machine_info() -> dict[str, object]:
    from vocoder import _engine

    info: dict[str, object] = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "isa_used": _engine.active_isa(),
        "isas_supported": _engine.supported_isas(),
        "multiply_adds_per_second": {p: multiply_add_rate(p) for p in ("fp32", "bf16", "int8")},
        "python": platform.python_version(),
        "numpy": np.__version__,
        "limit_method": "the lower of: read bandwidth (widest SIMD loads, buffer the size of one step's "
        "weights in the row's precision) / those bytes, and the probed multiply-add rate of the kernels' "
        "dot-product instruction per precision / the multiply-adds per sample; blas: fp32 numpy BLAS "
        "(1 thread) on the same matvecs",
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def report(results: list[BenchRow]) -> dict[str, object]:
    return {"machine": machine_info(), "results": [asdict(r) for r in results]}


# The printed table: a row per measurement, with its ratios against rows of the same run.
TITLE = "WaveRNN sampling (sequential; fold: segments as one batch; subscale: B per step)"
HEADER = (
    "engine",
    "mode",
    "N",
    "weights",
    "prec",
    "thr",
    "ISA",
    "samples/s",
    "xRT 24k",
    "x torch",
    "x dense",
    "x seq",
    "% of limit",
    "vs BLAS",
)
LEFT = {"engine", "mode", "weights", "prec", "ISA"}  # left-aligned columns
NOTE = (
    "% of limit: of the lower of two probed limits: bw, read bandwidth / per-step weight bytes "
    "(each step reads every weight once; the probe reads a buffer of that size), or mac, the "
    "multiply-add rate of the kernels' dot-product instruction / multiply-adds per sample; both "
    "probed on one core, times the row's threads. "
    "vs BLAS: over the same matvecs in numpy's fp32 BLAS, 1 thread. "
    "Fold and subscale rows: bw and BLAS per step, times the samples a step yields."
)


def sparsity_label(r: BenchRow) -> str:
    """'dense', or e.g. '95% 16x1 gru+out' (sparse kernels forced: '... [always]')."""
    if r.sparsity == 0:
        return "dense"
    forced = f" [{r.sparse_kernels}]" if r.sparse_kernels != "auto" else ""
    return f"{100 * r.sparsity:g}% {r.block} {r.pruned_layers}{forced}"


def progress(r: BenchRow) -> str:
    """The line printed as each measurement finishes."""
    return (
        f"  {r.engine} {r.mode} N={r.hidden_size} {sparsity_label(r)} {r.precision} "
        f"threads={r.threads}: {r.samples_per_second:,.0f} samples/s"
    )


def _weights(r: BenchRow) -> tuple[object, ...]:
    """What makes two rows the same model and setting, whatever their mode."""
    return (r.engine, r.hidden_size, r.sparsity, r.block, r.pruned_layers, r.precision, r.threads)


@dataclass
class Baselines:
    """The rows a row is compared with, from the same run: the best torch row per N (its
    threads vary a lot on a busy machine), the dense native row of the same N, precision,
    threads and mode, and the sequential row of the same weights."""

    torch: dict[int, float]
    dense: dict[tuple[object, ...], float]
    sequential: dict[tuple[object, ...], float]

    @classmethod
    def of(cls, results: list[BenchRow]) -> Baselines:
        torch_sps: dict[int, float] = {}
        for r in results:
            if r.engine == "torch" and r.mode == "sequential":
                torch_sps[r.hidden_size] = max(torch_sps.get(r.hidden_size, 0.0), r.samples_per_second)
        dense = {
            (r.hidden_size, r.precision, r.threads, r.mode): r.samples_per_second
            for r in results
            if r.engine == "native" and r.sparsity == 0
        }
        seq = {_weights(r): r.samples_per_second for r in results if r.mode == "sequential"}
        return cls(torch_sps, dense, seq)

    def x_torch(self, r: BenchRow) -> float | None:
        ref = self.torch.get(r.hidden_size)
        return r.samples_per_second / ref if ref else None

    def x_dense(self, r: BenchRow) -> float | None:
        dense = self.dense.get((r.hidden_size, r.precision, r.threads, r.mode)) if r.sparsity > 0 else None
        return r.samples_per_second / dense if dense else None

    def x_seq(self, r: BenchRow) -> float | None:
        seq = self.sequential.get(_weights(r)) if r.mode != "sequential" else None
        return r.samples_per_second / seq if seq else None


def _ratio(x: float | None) -> str:
    return f"{x:.1f}" if x is not None else "-"


def table_rows(results: list[BenchRow]) -> list[tuple[str, ...]]:
    """The cells of HEADER for each result."""
    base = Baselines.of(results)
    return [
        (
            r.engine,
            r.mode,
            str(r.hidden_size),
            sparsity_label(r),
            r.precision,
            str(r.threads),
            r.isa,
            f"{r.samples_per_second:,.0f}",
            f"{r.times_realtime_24k:.2f}",
            _ratio(base.x_torch(r)),
            _ratio(base.x_dense(r)),
            _ratio(base.x_seq(r)),
            f"{100 * r.share_of_limit:.0f}% {'bw' if r.bound == 'bandwidth' else 'mac'}",
            f"{r.share_of_blas:.2f}x",
        )
        for r in results
    ]


def findings(results: list[BenchRow]) -> list[str]:
    """The lines under the table: each dense sequential row against torch and what its
    limit would allow, each subscale row against sequential, time to first audio, and
    where the profiled runs' time went."""
    base = Baselines.of(results)
    lines = []
    for r in results:
        ref = base.torch.get(r.hidden_size)
        if r.mode == "sequential" and r.engine == "native" and r.sparsity == 0 and ref:
            lines.append(
                f"sequential N={r.hidden_size} {r.precision} threads={r.threads}: x torch "
                f"{r.samples_per_second / ref:.1f}; at this machine's {r.bound} limit it could be at most "
                f"{r.limit_samples_per_second / ref:.1f}"
            )
    for r in results:
        seq = base.sequential.get(_weights(r))
        if r.mode == "subscale" and r.engine == "native" and seq:
            lines.append(
                f"subscale N={r.hidden_size} {sparsity_label(r)} {r.precision} threads={r.threads}: "
                f"x seq {r.samples_per_second / seq:.1f}; at this machine's multiply-add limit it could be "
                f"at most {r.compute_limit_samples_per_second / seq:.1f}"
            )
    for r in results:
        if r.first_audio_ms is not None:
            lines.append(
                f"stream N={r.hidden_size} {sparsity_label(r)} {r.precision} threads={r.threads}: "
                f"first audio after {r.first_audio_ms:.1f} ms "
                f"(mel in, model loaded, first {STREAM_CHUNK} samples out)"
            )
    for r in results:
        if r.profile:
            stages = sorted(r.profile.items(), key=lambda kv: -kv[1])
            lines.append(
                f"profile {r.mode} N={r.hidden_size} {sparsity_label(r)} {r.precision} threads={r.threads}: "
                + ", ".join(f"{name} {100 * share:.0f}%" for name, share in stages if share >= 0.005)
            )
    return lines
