"""Teacher-forced training with periodic validation and exactly-resumable checkpoints.

The loss is the cross-entropy of the coarse byte plus that of the fine byte (given the
true coarse byte), reported in bits per 16-bit sample. A checkpoint holds the model,
the optimiser, the step, the config and every RNG state, so ``--resume`` continues the
same run: the resumed weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import queue
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vocoder import checkpoint as ckpt_mod
from vocoder import config as config_mod
from vocoder import distributed
from vocoder.config import Config, TrainConfig
from vocoder.data import (
    Batch,
    Utterance,
    WindowCutter,
    load_utterances,
    mel_statistics,
    read_features_config,
)
from vocoder.errors import VocoderError
from vocoder.fsutil import remove_stale_temps, write_text_atomic
from vocoder.model import WaveRNN
from vocoder.pruning import Pruner
from vocoder.runlog import RunLog

LN2 = math.log(2.0)


def bits_text(bits: float | None) -> str:
    """A validation NLL as the summaries print it ("-" before the first validation)."""
    return "-" if bits is None else f"{bits:.3f}"


@dataclass
class TrainResult:
    step: int
    first_valid_bits: float | None
    last_valid_bits: float | None
    seconds: float
    stopped_by: str

    def summary(self, ckpt_dir: Path) -> str:
        """The line `vocoder train` ends with."""
        return (
            f"trained to step {self.step} in {self.seconds:.0f} s (stopped by {self.stopped_by}); "
            f"validation NLL {bits_text(self.first_valid_bits)} -> {bits_text(self.last_valid_bits)} "
            f"bits/sample; checkpoints in {ckpt_dir}"
        )


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (device 0), ``cuda:K`` or ``auto``, checked against this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VocoderError(f"train.device={name} but no CUDA device is available")
        index = int(name.partition(":")[2] or 0)
        count = torch.cuda.device_count()
        if index >= count:
            raise VocoderError(
                f"train.device={name}: this machine has {count} CUDA device(s), cuda:0..{count - 1}"
            )
    return torch.device(name)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The training step's mixed-precision context: none for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[precision])


class Prefetch:
    """Training batches drawn one step ahead on a thread, so the next batch is cut (and,
    on CUDA, pinned) while the current step runs.

    The batches and their order are those of drawing them in the loop: one thread draws
    from ``rng`` in sequence. Each batch comes with the generator's state right after it
    was drawn, and ``rng_state`` is that of the last batch taken, not the generator's own
    (already a batch ahead), so a checkpoint resumes with the batch the run would have
    drawn next.
    """

    def __init__(self, draw: Callable[[], Batch], rng: np.random.Generator, pin: bool) -> None:
        self.rng_state = rng.bit_generator.state
        self._queue: queue.Queue[tuple[Batch, dict[str, Any]] | BaseException] = queue.Queue(maxsize=1)
        self._stop = threading.Event()

        def offer(item: tuple[Batch, dict[str, Any]] | BaseException) -> None:
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                while not self._stop.is_set():
                    batch = draw()
                    if pin:
                        batch = Batch(
                            **{
                                f.name: torch.from_numpy(getattr(batch, f.name)).pin_memory()
                                for f in dataclasses.fields(batch)
                            }
                        )
                    offer((batch, rng.bit_generator.state))
            except BaseException as e:  # handed to the training loop, which raises it
                offer(e)

        self._thread = threading.Thread(target=produce, name="prefetch", daemon=True)
        self._thread.start()

    def next(self) -> Batch:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        batch, self.rng_state = item
        return batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def learning_rate(tc: TrainConfig, step: int) -> float:
    """The rate of step ``step`` (1-based): a linear warmup over the first
    ``lr_warmup_steps``, ``learning_rate``, then over the last ``lr_decay_steps`` of
    ``steps`` a geometric glide to ``lr_decay_to`` times it.

    A function of the step alone, so a resumed run follows the same schedule, and a run
    continued past its planned ``steps`` stays at the final rate.
    """
    if step < tc.lr_warmup_steps:
        return tc.learning_rate * step / tc.lr_warmup_steps
    begin = tc.steps - tc.lr_decay_steps
    if tc.lr_decay_steps == 0 or step <= begin:
        return tc.learning_rate
    return tc.learning_rate * tc.lr_decay_to ** min(1.0, (step - begin) / tc.lr_decay_steps)


def log_line(
    step: int,
    steps: int,
    bits: float,
    lr: float,
    rate: float,
    samples_per_step: int,
    valid: float | None,
    wall: float,
) -> str:
    """The progress of a run whose output is not a terminal, one plain line per record."""
    valid_text = "-" if valid is None else f"{valid:.3f}"
    minutes, seconds = divmod(int(wall), 60)
    return (
        f"step {step}/{steps} loss {bits:.3f} bits/sample valid {valid_text} lr {lr:.3g} "
        f"{rate:.2f} steps/s {rate * samples_per_step / 1000:.1f}k samples/s {minutes}:{seconds:02d}"
    )


def batch_losses(model: WaveRNN, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy in nats of the coarse byte and of the fine byte (given coarse)."""

    def t(a: np.ndarray | torch.Tensor) -> torch.Tensor:
        tensor = a if isinstance(a, torch.Tensor) else torch.from_numpy(a)
        return tensor.to(device, non_blocking=True)

    cond = model.window_conditioning(t(batch.mel))
    return model.losses(cond, t(batch.coarse), t(batch.fine), t(batch.c_prev), t(batch.f_prev))


def batch_loss(model: WaveRNN, batch: Batch, device: torch.device) -> torch.Tensor:
    """The training loss: nats per 16-bit sample (coarse + fine)."""
    ce_c, ce_f = batch_losses(model, batch, device)
    return ce_c + ce_f


class Loss(torch.nn.Module):
    """The training loss as a module's forward: what DistributedDataParallel wraps to hook
    the gradient all-reduce into the backward pass."""

    def __init__(self, model: WaveRNN, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.device = device

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch_loss(self.model, batch, self.device)


def _rng_state(numpy_state: dict[str, Any]) -> dict[str, Any]:
    return {
        "numpy": numpy_state,
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }


def _restore_rng(rng: np.random.Generator, state: dict[str, Any]) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def _merge_config(user: Config, explicit: set[str], feats: Config, features_dir: Path) -> Config:
    """Audio and data settings belong to the features; model, train and prune to the user.

    An audio value the user gave explicitly must agree with the features.
    """
    for key, value in vars(user.audio).items():
        if f"audio.{key}" in explicit and getattr(feats.audio, key) != value:
            raise VocoderError(
                f"{features_dir}: features were made with audio.{key}="
                f"{getattr(feats.audio, key)}, the config asks for {value}"
            )
    return Config(
        audio=feats.audio,
        data=feats.data,
        model=user.model,
        train=user.train,
        prune=user.prune,
        subscale=user.subscale,
    )


def _refuse_shape_changes(stored: Config, user: Config, explicit: set[str], who: str) -> None:
    """The model and subscale keys fix the weights' shapes: a run built on stored weights
    refuses any the user gave explicitly with another value (``who`` starts the error)."""
    for section in ("model", "subscale"):
        for key, value in vars(getattr(user, section)).items():
            if f"{section}.{key}" in explicit and getattr(getattr(stored, section), key) != value:
                raise VocoderError(f"{who} cannot change {section}.{key}")


def _continued_config(stored: Config, user: Config, explicit: set[str], ckpt_dir: Path) -> Config:
    """A continued run keeps its stored config; explicit train.* and prune.* keys apply."""
    _refuse_shape_changes(stored, user, explicit, f"{ckpt_dir}: a continued run")
    for section in ("train", "prune"):
        for key in vars(getattr(stored, section)):
            if f"{section}.{key}" in explicit:
                setattr(getattr(stored, section), key, getattr(getattr(user, section), key))
    config_mod.from_dict(stored.to_dict(), "continued config")  # re-validate the mix
    return stored


def _fine_tune_config(
    start: Config, user: Config, explicit: set[str], feats: Config, features_dir: Path, source: Path
) -> Config:
    """A run started from another run's weights: its model (and subscale) settings, whose
    shapes the weights have, the user's train and prune settings, and features made with
    the audio settings the model was trained on."""
    _refuse_shape_changes(start, user, explicit, f"{source}: a run started from these weights")
    for key, value in vars(start.audio).items():
        if getattr(feats.audio, key) != value:
            raise VocoderError(
                f"{features_dir}: features were made with audio.{key}={getattr(feats.audio, key)}, "
                f"the model in {source} was trained with {value}"
            )
    cfg = _merge_config(user, explicit, feats, features_dir)
    cfg.model, cfg.subscale = start.model, start.subscale
    return cfg


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's stop, ``kill``) like Ctrl-C, so the run saves a
    checkpoint of the step it reached instead of losing the steps since the last one.
    Background jobs of a non-interactive shell ignore SIGINT, so SIGTERM is their only
    polite stop."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _append_metrics(path: Path | None, record: dict[str, Any]) -> None:
    """One record appended to the log; ``None`` (a rank that does not log) writes nothing."""
    if path is None:
        return
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> int:
    """On resume, drop records logged after the checkpoint we restart from.

    A kill can leave a partial last line, and a log may be damaged otherwise: unreadable
    lines are dropped too (the readable ones are kept) and their count is returned.
    """
    if not path.exists():
        return 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise VocoderError(f"{path}: cannot read the metrics log ({e.strerror or e})") from None
    keep, unreadable = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            logged = int(record["step"])
        except (ValueError, TypeError, KeyError):
            unreadable += 1
            continue
        if logged <= step:
            keep.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in keep))
    return unreadable


@torch.no_grad()
def validate(
    model: WaveRNN, cutter: WindowCutter, windows: list, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Teacher-forced NLL over fixed validation windows, in bits per 16-bit sample.

    Returns ``valid_bits`` (the total) and its parts ``valid_coarse_bits`` and
    ``valid_fine_bits``.
    """
    model.eval()
    coarse = fine = 0.0
    count = 0
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        batch = cutter.batch([cutter.cut(u, s) for u, s in chunk])
        ce_c, ce_f = batch_losses(model, batch, device)
        coarse += ce_c.item() * len(chunk)
        fine += ce_f.item() * len(chunk)
        count += len(chunk)
    model.train()
    c, f = coarse / count / LN2, fine / count / LN2
    return {"valid_bits": c + f, "valid_coarse_bits": c, "valid_fine_bits": f}


def _resolve_run(
    features_dir: Path,
    ckpt_dir: Path,
    user_cfg: Config,
    resume: bool,
    explicit: frozenset[str],
    init_from: tuple[Path, dict[str, Any]] | None,
    init_weights: Path | None,
) -> tuple[Config, dict[str, Any] | None, dict[str, torch.Tensor] | None]:
    """The run's config, the checkpoint it continues (if any) and the weights it starts
    from (``init_weights``, if given and the run is new)."""
    existing = ckpt_mod.list_checkpoints(ckpt_dir)
    if existing and not resume:
        raise VocoderError(
            f"{ckpt_dir}: already holds checkpoints; pass --resume to continue or use a new dir"
        )
    if resume and existing:
        source, state = existing[-1], ckpt_mod.load(existing[-1])
    else:
        source, state = init_from if init_from is not None else (None, None)
    feats_cfg = read_features_config(features_dir)
    if source is not None and state is not None:
        stored = config_mod.from_dict(state["config"], f"{source} (stored config)")
        return _continued_config(stored, user_cfg, set(explicit), ckpt_dir), state, None
    if init_weights is not None:
        path = ckpt_mod.resolve(init_weights)
        start_model, start_cfg, _ = ckpt_mod.load_model(path)  # the average when it has one
        cfg = _fine_tune_config(start_cfg, user_cfg, set(explicit), feats_cfg, features_dir, path)
        return cfg, None, start_model.state_dict()
    return _merge_config(user_cfg, set(explicit), feats_cfg, features_dir), None, None


def _usable(features_dir: Path, cfg: Config, split: str, what: str) -> list[Utterance]:
    """A split's utterances long enough for a window plus a frame each side (interpolation)."""
    min_frames = cfg.train.seq_frames + 2
    utts = load_utterances(features_dir, split, cfg.audio.hop_length, cfg.audio.n_mels)
    utts = [u for u in utts if u.mel.shape[1] >= min_frames]
    if not utts:
        raise VocoderError(f"{features_dir}: no {what} utterance of {min_frames}+ frames")
    return utts


@dataclass
class Trainer:
    """The model and everything a step changes: optimiser, gradient scaler (fp16), pruner,
    weight average, window generator and step count; a checkpoint is exactly this."""

    cfg: Config
    features_dir: Path
    ckpt_dir: Path
    device: torch.device
    world: distributed.World
    model: WaveRNN
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    pruner: Pruner | None
    ema: AveragedModel | None
    rng: np.random.Generator
    step: int
    step_loss: torch.nn.Module  # the loss as a module: under DDP with more than one rank

    @classmethod
    def build(
        cls,
        cfg: Config,
        features_dir: Path,
        ckpt_dir: Path,
        device: torch.device,
        world: distributed.World,
        state: dict[str, Any] | None,
        start: dict[str, torch.Tensor] | None,
        train_utts: list[Utterance],
    ) -> Trainer:
        """A new run (mel statistics from ``train_utts``), one from ``start`` weights, or
        the continued run a checkpoint ``state`` holds, restored exactly."""
        tc = cfg.train
        torch.manual_seed(tc.seed)
        random.seed(tc.seed)
        model = ckpt_mod.build_model(cfg)
        rng = np.random.default_rng(tc.seed)
        if state is not None:
            model.load_state_dict(state["model"])
        elif start is not None:
            model.load_state_dict(start)
        else:
            mean, std = mel_statistics(train_utts)
            model.mel_mean.copy_(torch.from_numpy(mean))
            model.mel_std.copy_(torch.from_numpy(std))
        model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=tc.learning_rate)
        scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")
        pruner = Pruner(model, cfg.prune) if cfg.prune.sparsity > 0 else None
        ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.ema), use_buffers=True)
            if tc.ema
            else None
        )
        step = 0
        if state is not None:
            if ema is not None and state.get("ema"):  # else the average starts from these weights
                ema.module.load_state_dict(state["ema"])
                ema.n_averaged.fill_(1)
            opt.load_state_dict(state["optimizer"])  # its rate is set from the schedule every step
            if scaler.is_enabled() and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _restore_rng(rng, state["rng"])
            step = int(state["step"])
            if pruner is not None and state.get("prune_masks"):
                pruner.load_state_dict(state["prune_masks"])
        step_loss: torch.nn.Module = Loss(model, device)
        if world.size > 1:  # weights start equal (same seed, or the same checkpoint) and stay so
            step_loss = distributed.wrap(step_loss, device, world)
        return cls(
            cfg, features_dir, ckpt_dir, device, world, model, opt, scaler, pruner, ema, rng, step, step_loss
        )

    @property
    def sampling_model(self) -> WaveRNN:
        """What export and the samplers use: the weight average when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def diverged(self, at: int, what: str) -> VocoderError:
        saved = ckpt_mod.list_checkpoints(self.ckpt_dir)
        kept = f"the latest checkpoint is {saved[-1].name}" if saved else "no checkpoint was written"
        return VocoderError(
            f"{self.ckpt_dir}: training diverged at step {at} ({what}); nothing was saved from it and "
            f"{kept}; resume with a lower train.learning_rate"
        )

    def train_step(self, batch: Batch) -> tuple[float, float]:
        """One optimiser step (mixed precision, clipping, the scheduled rate, pruning and the
        weight average); returns (loss in bits per sample, gradient norm)."""
        tc = self.cfg.train
        with autocast(self.device, tc.precision):
            loss = self.step_loss(batch)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip))
        loss_nats = loss.item()
        # with fp16 an overflowing gradient is the scaler's to handle (it skips the step)
        if not (math.isfinite(loss_nats) and (math.isfinite(grad_norm) or self.scaler.is_enabled())):
            raise self.diverged(self.step + 1, f"loss {loss_nats:.4g}, gradient norm {grad_norm:.4g}")
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(tc, self.step + 1)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.step += 1
        if self.pruner is not None:
            self.pruner.step(self.step)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
            if self.pruner is not None:  # the average keeps the pruned weights at zero too
                self.pruner.apply(self.ema.module)
        return loss_nats / LN2, grad_norm

    def validate(self, cutter: WindowCutter, windows: list) -> dict[str, float]:
        """The validation record: the NLL of the trained weights and, with an average, its."""
        tc = self.cfg.train
        record = validate(self.model, cutter, windows, tc.batch_size, self.device)
        if self.ema is not None:
            averaged = validate(self.ema.module, cutter, windows, tc.batch_size, self.device)
            record |= {f"ema_{k}": v for k, v in averaged.items()}
        return record

    def save(self, rng_state: dict[str, Any]) -> None:
        """Write the checkpoint of this step (rank 0; every rank checks the weights) and
        rotate old ones. ``rng_state``: the window generator's state after the last batch
        used (``Prefetch.rng_state``)."""
        if ckpt_mod.non_finite(self.model.state_dict()) is not None:
            raise self.diverged(self.step, "non-finite weights")
        if self.ema is not None and ckpt_mod.non_finite(self.ema.module.state_dict()) is not None:
            raise self.diverged(self.step, "non-finite averaged weights")
        if not self.world.main:
            return
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "config": self.cfg.to_dict(),
            "rng": _rng_state(rng_state),
            "features_dir": str(self.features_dir.resolve()),
            "prune_masks": self.pruner.state_dict() if self.pruner is not None else {},
            "ema": self.ema.module.state_dict() if self.ema is not None else {},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
        }
        ckpt_mod.save(self.ckpt_dir / ckpt_mod.checkpoint_name(self.step), payload)
        for old in ckpt_mod.list_checkpoints(self.ckpt_dir)[: -self.cfg.train.keep_checkpoints]:
            old.unlink(missing_ok=True)


def _prepare_dir(ckpt_dir: Path, cfg: Config, step: int, console: Console) -> Path:
    """Rank 0's housekeeping before a run: the directory, stale temps, config.yaml, and
    the metrics log cut back to the step the run continues from; returns the log's path."""
    metrics = ckpt_dir / "metrics.jsonl"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint_*.pt", "config.yaml", "metrics.jsonl"):
        remove_stale_temps(ckpt_dir, name)
    write_text_atomic(ckpt_dir / "config.yaml", cfg.to_yaml())
    unreadable = _truncate_metrics(metrics, step)
    if unreadable:
        console.print(f"{metrics}: dropped {unreadable} unreadable line(s), kept the others")
    return metrics


def train(
    features_dir: Path,
    ckpt_dir: Path,
    user_cfg: Config,
    resume: bool,
    console: Console,
    explicit: frozenset[str] = frozenset(),
    init_from: tuple[Path, dict[str, Any]] | None = None,
    init_weights: Path | None = None,
) -> TrainResult:
    """Train (or resume) a WaveRNN on a features directory, checkpointing into ckpt_dir.

    ``init_from`` (a checkpoint's path and its loaded contents) starts a new run from
    another run's checkpoint (weights, optimiser, step and RNG states), as `prune` does
    to sparsify a dense model. ``init_weights`` (a checkpoint file or directory) starts a
    new run from another run's weights only (its average when it has one; its model
    config and mel normalisation come along): a fresh optimiser at step 0, for
    fine-tuning on another speaker or on an acoustic model's mels. A run that already has
    checkpoints resumes from them instead.
    """
    cfg, state, start_weights = _resolve_run(
        features_dir, ckpt_dir, user_cfg, resume, explicit, init_from, init_weights
    )
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = pick_device(tc.device)
    world = distributed.join(device.type == "cuda")
    if world.size > 1:
        if tc.batch_size % world.size:
            raise VocoderError(
                f"train.batch_size={tc.batch_size} is the global batch: it must be a multiple of "
                f"the {world.size} ranks"
            )
        if device.type == "cuda":
            device = torch.device("cuda", world.local_rank)
        if not world.main:
            console = Console(quiet=True)
    train_utts = _usable(features_dir, cfg, "train", "training")
    valid_utts = _usable(features_dir, cfg, "valid", "validation")
    run = Trainer.build(cfg, features_dir, ckpt_dir, device, world, state, start_weights, train_utts)
    model = run.model
    cutter = WindowCutter(
        tc.seq_frames,
        cfg.audio.hop_length,
        model.radius,
        model.mel_mean.cpu().numpy(),
        model.mel_std.cpu().numpy(),
    )
    windows = cutter.fixed_windows(valid_utts, tc.valid_max_windows)
    metrics = _prepare_dir(ckpt_dir, cfg, run.step, console) if world.main else None
    world.barrier()  # rank 0 alone writes; the others wait for it at each barrier

    first_bits = last_bits = None
    runlog = RunLog(ckpt_dir, run.step, enabled=world.main)

    def validation() -> float:
        record = {"step": run.step, **run.validate(cutter, windows)}
        bits = record["ema_valid_bits" if run.ema is not None else "valid_bits"]
        if not math.isfinite(bits):
            raise run.diverged(run.step, f"validation NLL {bits}")
        _append_metrics(metrics, record)
        runlog.scalars(record)
        runlog.sample(run.step, run.sampling_model, cfg, valid_utts[0], tc.sample_seconds)
        return bits

    if run.step == 0 and world.main:
        first_bits = last_bits = validation()
        console.print(f"step 0: validation NLL {first_bits:.3f} bits/sample")
    world.barrier()

    samples_per_step = tc.batch_size * tc.seq_frames * cfg.audio.hop_length
    start = time.monotonic()
    stopped_by = "steps"
    model.train()
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f} bits/sample"),
        TextColumn("valid {task.fields[valid]}"),
        TextColumn("{task.fields[rate]:.2f} steps/s"),
        TextColumn("sparsity {task.fields[sparsity]:.1%}"),
        TimeElapsedColumn(),
    )
    prefetch = Prefetch(
        lambda: cutter.random_batch(train_utts, tc.batch_size, run.rng, (world.rank, world.size)),
        run.rng,
        pin=device.type == "cuda",
    )
    with (
        contextlib.closing(runlog),
        contextlib.closing(prefetch),
        _sigterm_as_interrupt(),
        Progress(*columns, console=console, transient=False) as progress,
    ):
        task = progress.add_task(
            "train",
            total=tc.steps,
            completed=run.step,
            loss=float("nan"),
            valid="-" if last_bits is None else f"{last_bits:.3f}",
            rate=0.0,
            sparsity=run.pruner.sparsity() if run.pruner is not None else 0.0,
        )
        window_start, window_steps, window_bits = time.monotonic(), 0, 0.0
        try:
            while run.step < tc.steps:
                bits, grad_norm = run.train_step(prefetch.next())
                step = run.step
                window_steps += 1
                window_bits += bits
                if step % tc.log_every == 0 or step == tc.steps:
                    rate = window_steps / max(time.monotonic() - window_start, 1e-9)
                    mean_bits = world.mean(window_bits / window_steps)
                    sparsity = run.pruner.sparsity() if run.pruner is not None else 0.0
                    logged = {
                        "step": step,
                        "sparsity": sparsity,
                        "train_bits": mean_bits,
                        "grad_norm": grad_norm,
                        "lr": learning_rate(tc, step),
                        "steps_per_s": rate,
                        "samples_per_s": rate * samples_per_step,
                    }
                    _append_metrics(metrics, logged)
                    runlog.scalars(logged)
                    progress.update(task, loss=mean_bits, rate=rate, sparsity=sparsity)
                    if not console.is_terminal:  # nohup, SLURM: a log line, not a bar
                        wall = time.monotonic() - start
                        line = log_line(
                            step, tc.steps, mean_bits, logged["lr"], rate, samples_per_step, last_bits, wall
                        )
                        console.print(line, highlight=False, soft_wrap=True)
                    window_start, window_steps, window_bits = time.monotonic(), 0, 0.0
                out_of_time = world.any(tc.max_minutes > 0 and time.monotonic() - start > tc.max_minutes * 60)
                if (step % tc.valid_every == 0 or step == tc.steps or out_of_time) and world.main:
                    last_bits = validation()
                    progress.update(task, valid=f"{last_bits:.3f}")
                if step % tc.checkpoint_every == 0 or step == tc.steps or out_of_time:
                    run.save(prefetch.rng_state)
                    world.barrier()
                progress.update(task, completed=step)
                if out_of_time:
                    stopped_by = "time"
                    break
        except KeyboardInterrupt:
            run.save(prefetch.rng_state)
            console.print(f"interrupted: saved step {run.step}; continue with --resume")
            raise
    return TrainResult(run.step, first_bits, last_bits, time.monotonic() - start, stopped_by)
