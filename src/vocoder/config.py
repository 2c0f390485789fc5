"""One typed configuration: the single source of truth for features, model and training.

A config is built from the defaults, then a YAML file, then repeatable ``--set
section.key=value`` overrides, and is validated as a whole before anything runs, so a
typo or an impossible value stops a job at second zero rather than an hour in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from vocoder.errors import VocoderError


@dataclass
class AudioConfig:
    """Waveform and log-mel settings (HiFi-GAN / Tacotron 2 convention by default)."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5


@dataclass
class DataConfig:
    """How `preprocess` filters utterances and splits them."""

    min_seconds: float = 0.5
    silence_peak: float = 1e-3
    valid_count: int = 8
    test_count: int = 4
    split_seed: int = 1234


@dataclass
class ModelConfig:
    """WaveRNN sizes. ``hidden_size`` is N, the GRU width (split in coarse/fine halves).

    ``kind``: ``sequential`` (one sample per step) or ``subscale`` (the waveform folded
    into ``subscale.batch`` sub-tensors generated in one staggered batch).
    """

    hidden_size: int = 512
    cond_channels: int = 128
    cond_blocks: int = 3
    kind: str = "sequential"


@dataclass
class SubscaleConfig:
    """Subscale WaveRNN (used when ``model.kind`` is ``subscale``): B sub-tensors, the
    future horizon F, and the context network's past steps and width."""

    batch: int = 16
    horizon: int = 4
    past: int = 4
    context: int = 64


@dataclass
class TrainConfig:
    """Optimisation, budgets and bookkeeping for `train`."""

    batch_size: int = 32
    seq_frames: int = 4
    learning_rate: float = 1e-3
    # The last lr_decay_steps of `steps` lower the rate geometrically to lr_decay_to times
    # learning_rate: a high rate keeps shaking the weights that hold the pitch, which costs
    # generation far more than NLL (docs/training.md has the runs).
    lr_decay_steps: int = 0
    lr_decay_to: float = 0.1
    # The first lr_warmup_steps raise the rate linearly from learning_rate / lr_warmup_steps
    # (0: none): large batches and wide models on a GPU are less stable at full rate from
    # the first step.
    lr_warmup_steps: int = 0
    grad_clip: float = 4.0
    # Decay of an exponential moving average of the weights (0 = none; 0.999 averages
    # about the last thousand steps). export and the torch sampler use the average when a
    # checkpoint holds one: it smooths out the step-to-step noise of Adam at a high rate.
    ema: float = 0.0
    steps: int = 100000
    max_minutes: float = 0.0
    valid_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    valid_max_windows: int = 64
    log_every: int = 10
    # Seconds of the first validation utterance generated at each validation for
    # TensorBoard (with the tensorboard package; 0 = none): hearing the run beats its NLL.
    sample_seconds: float = 0.5
    seed: int = 1
    threads: int = 0
    device: str = "cpu"
    # The training step's arithmetic: fp32, or bf16 / fp16 under autocast (fp16 with a
    # gradient scaler). Losses, validation, weights and checkpoints stay fp32.
    precision: str = "fp32"


# The matrices pruning can cover: the GRU's recurrent gates, or those and O1, O3.
PRUNE_LAYERS = ("gru", "gru+out")


@dataclass
class PruneConfig:
    """Gradual block pruning during training (off while ``sparsity`` is 0)."""

    sparsity: float = 0.0
    block: str = "16x1"
    start: int = 0
    ramp: int = 10000
    interval: int = 500
    layers: str = "gru"


@dataclass
class Config:
    """The whole configuration; every section is a typed dataclass."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    subscale: SubscaleConfig = field(default_factory=SubscaleConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict, as written to YAML and stored in checkpoints."""
        return dataclasses.asdict(self)

    def to_yaml(self, sections: tuple[str, ...] | None = None) -> str:
        """YAML of every section, or of ``sections`` only (what a model file stores)."""
        data = self.to_dict()
        if sections is not None:
            data = {key: data[key] for key in sections}
        return yaml.safe_dump(data, sort_keys=False)


# The sections a .wrnn model file stores: what synthesis needs. A run's data split and
# training schedule stay with its checkpoints.
MODEL_FILE_SECTIONS = ("audio", "model", "prune", "subscale")


SHIPPED = ("ljspeech-22k", "allison-16k")


def _coerce(section: str, key: str, typ: type, value: Any, origin: str) -> Any:
    """Convert a YAML or command-line value to the field's type, or explain why not."""
    where = f"{origin}: {section}.{key}"
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise VocoderError(f"{where} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise VocoderError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
            with contextlib.suppress(ValueError):
                value = float(value)  # 1e5: YAML 1.1 reads it as a string
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise VocoderError(f"{where} must be an integer, got {value!r}")
    if typ is float:
        if isinstance(value, bool):
            raise VocoderError(f"{where} must be a number, got {value!r}")
        number: float | None = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is None or not math.isfinite(number):
            raise VocoderError(f"{where} must be a finite number, got {value!r}")
        return number
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise VocoderError(f"{where} must be a string, got {value!r}")
    raise VocoderError(f"{where} has an unsupported type {typ}")


def _nearest(name: Any, known: Iterable[str], prefix: str = "") -> str:
    """ ", did you mean X?" for the closest known name, or nothing when none is close."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f", did you mean {prefix}{close[0]}?" if close else ""


def _merge(cfg: Config, data: Any, origin: str) -> None:
    """Apply a nested mapping of overrides onto ``cfg`` in place, checking every key."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise VocoderError(f"{origin}: expected a mapping of sections, got {type(data).__name__}")
    sections = {f.name for f in dataclasses.fields(cfg)}
    for section, values in data.items():
        if section not in sections:
            raise VocoderError(
                f"{origin}: unknown section {section!r}{_nearest(section, sections)} "
                f"(known: {', '.join(sorted(sections))})"
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise VocoderError(f"{origin}: section {section!r} must be a mapping")
        obj = getattr(cfg, section)
        hints = get_type_hints(type(obj))
        for key, value in values.items():
            if key not in hints:
                known = ", ".join(sorted(hints))
                raise VocoderError(
                    f"{origin}: unknown key {section}.{key}{_nearest(key, hints, section + '.')} "
                    f"(known: {known})"
                )
            setattr(obj, key, _coerce(section, key, hints[key], value, origin))


def _check(cfg: Config, origin: str) -> None:
    """Reject impossible combinations with one line naming the key."""
    a, d, m, t = cfg.audio, cfg.data, cfg.model, cfg.train

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise VocoderError(f"{origin}: {msg}")

    need(1000 <= a.sample_rate <= 384000, f"audio.sample_rate must be in 1000..384000, got {a.sample_rate}")
    need(16 <= a.n_fft <= 65536, f"audio.n_fft must be in 16..65536, got {a.n_fft}")
    need(0 < a.hop_length <= a.win_length, "audio.hop_length must be in 1..audio.win_length")
    need(a.win_length <= a.n_fft, "audio.win_length must be <= audio.n_fft")
    need(1 <= a.n_mels <= 1024, "audio.n_mels must be in 1..1024")
    need(0 <= a.fmin < a.fmax, "audio.fmin must be >= 0 and below audio.fmax")
    need(a.fmax <= a.sample_rate / 2, f"audio.fmax must be <= sample_rate/2 = {a.sample_rate / 2}")
    need(a.log_floor > 0, "audio.log_floor must be > 0")
    need(d.min_seconds >= 0, "data.min_seconds must be >= 0")
    need(0 <= d.silence_peak < 1, "data.silence_peak must be in [0, 1)")
    need(d.valid_count >= 1, "data.valid_count must be >= 1")
    need(d.test_count >= 0, "data.test_count must be >= 0")
    need(4 <= m.hidden_size <= 8192 and m.hidden_size % 2 == 0, "model.hidden_size must be even, 4..8192")
    need(1 <= m.cond_channels <= 4096, "model.cond_channels must be in 1..4096")
    need(0 <= m.cond_blocks <= 64, "model.cond_blocks must be in 0..64")
    need(m.kind in ("sequential", "subscale"), "model.kind must be sequential or subscale")
    sub = cfg.subscale
    need(2 <= sub.batch <= 64, "subscale.batch must be in 2..64")
    need(0 <= sub.horizon <= 64, "subscale.horizon must be in 0..64")
    need(0 <= sub.past <= 64, "subscale.past must be in 0..64")
    need(1 <= sub.context <= 1024, "subscale.context must be in 1..1024")
    need(1 <= t.batch_size <= 65536, "train.batch_size must be in 1..65536")
    need(1 <= t.seq_frames <= 10000, "train.seq_frames must be in 1..10000")
    need(t.learning_rate > 0, "train.learning_rate must be > 0")
    need(t.lr_decay_steps >= 0, "train.lr_decay_steps must be >= 0")
    need(0 < t.lr_decay_to <= 1, "train.lr_decay_to must be in (0, 1]")
    need(t.lr_warmup_steps >= 0, "train.lr_warmup_steps must be >= 0 (0 = no warmup)")
    need(
        t.lr_warmup_steps + t.lr_decay_steps <= t.steps,
        "train.lr_warmup_steps and train.lr_decay_steps together must be <= train.steps",
    )
    need(t.grad_clip > 0, "train.grad_clip must be > 0")
    need(0 <= t.ema < 1, "train.ema must be in [0, 1) (0 = no weight average)")
    need(t.steps >= 1, "train.steps must be >= 1")
    need(t.max_minutes >= 0, "train.max_minutes must be >= 0 (0 = no time limit)")
    need(t.valid_every >= 1, "train.valid_every must be >= 1")
    need(t.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
    need(t.keep_checkpoints >= 1, "train.keep_checkpoints must be >= 1")
    need(t.valid_max_windows >= 1, "train.valid_max_windows must be >= 1")
    need(t.log_every >= 1, "train.log_every must be >= 1")
    need(0 <= t.sample_seconds <= 30, "train.sample_seconds must be in [0, 30]")
    need(t.threads >= 0, "train.threads must be >= 0 (0 = torch default)")
    need(
        re.fullmatch(r"cpu|auto|cuda(:\d+)?", t.device) is not None,
        "train.device must be cpu, cuda, cuda:K (K = 0, 1, ...) or auto",
    )
    need(t.precision in ("fp32", "bf16", "fp16"), "train.precision must be fp32, bf16 or fp16")
    p = cfg.prune
    need(0 <= p.sparsity < 1, "prune.sparsity must be in [0, 1)")
    need(re.fullmatch(r"[1-9]\d*x[1-9]\d*", p.block) is not None, "prune.block must look like 16x1 or 4x4")
    need(p.start >= 0, "prune.start must be >= 0")
    need(p.ramp >= 1, "prune.ramp must be >= 1")
    need(p.interval >= 1, "prune.interval must be >= 1")
    need(p.layers in PRUNE_LAYERS, "prune.layers must be gru or gru+out")


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """Turn ``["model.hidden_size=896", ...]`` into a nested override mapping.

    Values are parsed as YAML scalars so ``1e-3`` and ``true`` mean what they look like.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise VocoderError(f"--set {item!r}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise VocoderError(f"--set {item!r}: expected section.key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.setdefault(parts[0], {})[parts[1]] = value
    return out


def resolve_config_path(name: str) -> Path:
    """A path to a YAML file, or the name of a shipped config (e.g. ``allison-16k``)."""
    path = Path(name)
    if path.exists():
        return path
    if name in SHIPPED:
        return Path(str(resources.files("vocoder") / "configs" / f"{name}.yaml"))
    raise VocoderError(f"{name}: no such config file (shipped configs: {', '.join(SHIPPED)})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error
    (PyYAML keeps the last silently, so a stale line above an edit would win unseen)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise VocoderError(f"{path}: cannot read config ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise VocoderError(f"{path}: config is not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None)
        raise VocoderError(f"{path}: invalid YAML{where}{f' ({problem})' if problem else ''}") from None


def from_dict(data: Any, origin: str) -> Config:
    """Rebuild a config from a stored mapping (checkpoint, features dir), validating it."""
    cfg = Config()
    _merge(cfg, data, origin)
    _check(cfg, origin)
    return cfg


def explicit_keys(path: str | None = None, overrides: list[str] | None = None) -> set[str]:
    """The ``section.key`` names a YAML file and ``--set`` give explicitly.

    Lets a command tell "the user asked for this value" from "this is the default", e.g.
    `train` refuses audio settings that contradict its features only when asked for.
    """
    keys: set[str] = set()
    sources = [read_yaml(resolve_config_path(path))] if path else []
    sources.append(parse_set(overrides or []))
    for data in sources:
        if isinstance(data, dict):
            for section, values in data.items():
                if isinstance(values, dict):
                    keys.update(f"{section}.{key}" for key in values)
    return keys


def load_config(path: str | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file, then ``--set`` overrides; validated."""
    cfg = Config()
    origin = "config"
    if path:
        p = resolve_config_path(path)
        _merge(cfg, read_yaml(p), str(p))
        origin = str(p)
    if overrides:
        _merge(cfg, parse_set(overrides), "--set")
        origin = f"{origin} + --set"
    _check(cfg, origin)
    return cfg
