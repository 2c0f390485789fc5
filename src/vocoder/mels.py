"""Mels from other pipelines, in the model's convention, and a check for the silent case.

The model reads an (n_mels, T) natural-log magnitude mel (HiFi-GAN's definition). Acoustic
models write the same mel in other layouts ((T, n_mels) in ParallelWaveGAN/ESPnet, a
leading batch axis in HiFi-GAN), other log scales and other containers. A mel of another
scale has the right shape, so nothing fails: it is vocoded into noise with exit status 0.
``read_mel`` converts what it is told to convert; ``convention_warning`` compares the
result with the training statistics stored in the model and names the likely cause when
they are far apart, so the silent case becomes a warning (or, with ``strict``, an error).
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vocoder.audio import check_mel, check_mel_shape
from vocoder.config import AudioConfig
from vocoder.errors import VocoderError

MEL_EXTS = (".npy", ".npz", ".pt")
LAYOUTS = ("auto", "nm-t", "t-nm")
SCALES = ("ln", "log10", "db", "linear")
LN10 = math.log(10.0)
# Statistics of fewer frames than this say too little about a convention to warn on.
MIN_CHECK_FRAMES = 20
# A mel fits the training statistics when the median over bins of |mean offset| / std
# plus |ln(std ratio)| stays under this: between what real natural-log mels and the same
# mels in other conventions score (docs/mels.md, scripts/mel_fit.py).
FIT_LIMIT = 1.3
# A square mel's per-bin mean profile correlates with the training mels' this well when it
# is read the right way round, and far less when transposed (docs/mels.md).
PROFILE_LIMIT = 0.5


@dataclass(frozen=True)
class MelInput:
    """How to read user mels: the axis order, the log scale, and whether a mel that does
    not look like the model's training mels is an error (``strict``) or a warning."""

    layout: str = "auto"
    scale: str = "ln"
    strict: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise VocoderError(f"--mel-layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.scale not in SCALES:
            raise VocoderError(f"--mel-scale must be one of {', '.join(SCALES)}, got {self.scale!r}")


# The model's own convention, nothing to convert: what a caller that is not told otherwise reads.
NATIVE = MelInput()


def frame_limit(audio: AudioConfig, seconds: float) -> int:
    """The most mel frames ``seconds`` of audio make: the bound a user's mel is checked
    against before it is read."""
    return int(seconds * audio.sample_rate / audio.hop_length)


def _read_npz(path: Path, max_elements: int) -> np.ndarray:
    """The one array of an ``.npz`` file; its header's shape is checked before it is read."""
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith(".npy")]
            if len(names) != 1:
                raise VocoderError(f"{path}: .npz must hold exactly one array, it holds {len(names)}")
            with z.open(names[0]) as f:
                version = np.lib.format.read_magic(f)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, _ = read_header(f)
            if math.prod(shape) > max_elements:
                raise VocoderError(f"{path}: array of shape {shape} is over the input length limit")
            with z.open(names[0]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise VocoderError(f"{path}: cannot read mel .npz ({e})") from None


def _read_pt(path: Path, max_elements: int) -> np.ndarray:
    """A tensor saved with ``torch.save``, loaded with ``weights_only=True`` (no pickled code)."""
    try:
        import torch
    except ImportError:
        raise VocoderError(
            f"{path}: reading .pt mels needs torch (pip install 'wavernn-vocoder[train]'); "
            "or save the mel with numpy.save"
        ) from None
    if path.stat().st_size > 8 * max_elements + (1 << 16):
        raise VocoderError(f"{path}: file is larger than the input length limit allows")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged or foreign file
        raise VocoderError(f"{path}: cannot read mel .pt ({type(e).__name__}: {e})") from None
    if not isinstance(obj, torch.Tensor):
        raise VocoderError(f"{path}: .pt must hold one tensor, it holds a {type(obj).__name__}")
    return obj.detach().float().numpy() if obj.dtype == torch.bfloat16 else obj.detach().numpy()


def read_array(path: Path, max_elements: int) -> np.ndarray:
    """The raw array of a mel file (``.npy`` memory-mapped, ``.npz``, ``.pt``)."""
    if path.suffix == ".npz":
        return _read_npz(path, max_elements)
    if path.suffix == ".pt":
        return _read_pt(path, max_elements)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise VocoderError(f"{path}: cannot read mel .npy ({e})") from None


def to_model_layout(arr: np.ndarray, n_mels: int, layout: str, origin: str) -> np.ndarray:
    """(n_mels, T) from an (n_mels, T) or (T, n_mels) array, a leading batch axis of 1
    squeezed. ``auto`` takes the axis equal to ``n_mels``; a square mel (T = n_mels, one
    second of real speech can be) is read as (n_mels, T), this toolkit's and HiFi-GAN's
    layout, and ``convention_warning`` says so when the other reading fits the model's
    training mels instead."""
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise VocoderError(
            f"{origin}: mel must be 2-D, (n_mels, T) or (T, n_mels), with at most a leading batch "
            f"axis of 1; got shape {arr.shape}"
        )
    if layout == "auto":
        first, second = arr.shape[0] == n_mels, arr.shape[1] == n_mels
        if not (first or second):
            raise VocoderError(f"{origin}: mel shape {arr.shape} has no axis of the model's n_mels={n_mels}")
        layout = "nm-t" if first else "t-nm"
    return arr.T if layout == "t-nm" else arr


def to_natural_log(mel: np.ndarray, scale: str, log_floor: float) -> np.ndarray:
    """A float64 mel of ``scale`` as the model's ln(max(mel, log_floor)). ``db`` is
    20 log10 of the magnitude mel (10 log10 of power); ``linear`` the magnitude itself."""
    if scale == "ln":
        return mel
    if scale == "log10":
        out = mel * LN10
    elif scale == "db":
        out = mel * (LN10 / 20.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.log(np.maximum(mel, log_floor))
    return np.maximum(out, math.log(log_floor))


def prepare(
    arr: np.ndarray,
    n_mels: int,
    log_floor: float,
    max_frames: int,
    how: MelInput,
    stats: tuple[np.ndarray, np.ndarray] | None,
    origin: str,
) -> tuple[np.ndarray, str | None]:
    """A user's mel array as the model's (n_mels, T) float32 natural-log mel, and the
    ``convention_warning`` against the model's training ``stats`` (mean, std) if given.

    The shape and length are checked before the data is read (``arr`` may be a memory
    map); a natural-log mel is passed through unchanged (cast to float32), others are
    converted in float64. With ``how.strict`` a warning is raised as the error instead.
    """
    arr = to_model_layout(arr, n_mels, how.layout, origin)
    if how.scale == "ln":
        mel = check_mel(arr, n_mels, origin, max_frames)
        raw = mel  # the values as given, read once (a memory map is not read again)
    else:
        check_mel_shape(arr, n_mels, origin, max_frames)
        raw = np.array(arr, dtype=np.float64)
        with np.errstate(over="ignore"):
            converted = to_natural_log(raw, how.scale, log_floor)
        mel = check_mel(converted, n_mels, origin, max_frames)
    warning = None
    if stats is not None:
        warning = convention_warning(raw, how.scale, *stats, log_floor, origin)
    if warning is not None and how.strict:
        raise VocoderError(f"{warning} (--strict)")
    return mel, warning


def read_mel(
    path: Path,
    n_mels: int,
    log_floor: float,
    max_frames: int,
    how: MelInput,
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, str | None]:
    """A user's mel file (``read_array``) through ``prepare``."""
    return prepare(
        read_array(path, max_frames * n_mels), n_mels, log_floor, max_frames, how, stats, str(path)
    )


def fit(mel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> tuple[float, float]:
    """(median over bins of |mean offset| in training stds, median over bins of the std
    ratio) of a mel against the model's per-bin training statistics."""
    with np.errstate(over="ignore", invalid="ignore"):
        offset = float(np.median(np.abs(mel.mean(axis=1) - mean) / std))
        ratio = float(np.median(mel.std(axis=1) / std))
    return offset, ratio


def profile_correlation(mel: np.ndarray, mean: np.ndarray) -> float:
    """Correlation over bins of a mel's per-bin mean with the training mels': the shape of
    the spectrum (loud low bins, quiet high ones), which a transposed mel does not have."""
    profile = mel.mean(axis=1)
    if float(profile.std()) == 0.0:
        return 0.0
    return float(np.corrcoef(profile, mean)[0, 1])


def misfit(mel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> float:
    """One number for how far a mel is from the training mels: offset + |ln(ratio)|."""
    offset, ratio = fit(mel, mean, std)
    spread = abs(math.log(ratio)) if ratio > 0 and math.isfinite(ratio) else math.inf
    return offset + spread if math.isfinite(offset) else math.inf


def convention_warning(
    raw: np.ndarray, declared: str, mean: np.ndarray, std: np.ndarray, log_floor: float, origin: str
) -> str | None:
    """None when ``raw`` (the file's (n_mels, T) values, read as ``declared``) looks like
    the model's training mels; else one line naming the file, how far off it is and the
    convention it looks like instead (another log scale, a mean-variance normalised mel,
    or none of them: another mel definition or sample rate)."""
    if raw.shape[1] < MIN_CHECK_FRAMES:
        return None
    raw64 = raw.astype(np.float64)
    scores = {s: misfit(to_natural_log(raw64, s, log_floor), mean, std) for s in SCALES}
    scores["normalised"] = misfit(raw64 * std[:, None] + mean[:, None], mean, std)
    if raw.shape[0] == raw.shape[1]:  # a square mel read as (n_mels, T): was it (T, n_mels)?
        along, across = profile_correlation(raw64, mean), profile_correlation(raw64.T, mean)
        if along < PROFILE_LIMIT <= across:
            return (
                f"{origin}: square mel whose per-bin means do not follow the model's training mels "
                f"(correlation {along:.2f}) while its transpose's do ({across:.2f}); it looks like "
                "(T, n_mels): pass --mel-layout t-nm"
            )
    if scores[declared] <= FIT_LIMIT:
        return None
    offset, ratio = fit(to_natural_log(raw64, declared, log_floor), mean, std)
    far = (
        f"{origin}: mel is far from the model's training mels (per-bin mean off by {offset:.1f} "
        f"std, spread x{ratio:.2f}, read as --mel-scale {declared})"
    )
    best = min(scores, key=lambda s: scores[s])
    if best == "normalised" and scores[best] <= FIT_LIMIT:
        return f"{far}; it looks mean-variance normalised: give the un-normalised natural-log mel"
    if best != declared and scores[best] <= FIT_LIMIT:
        return f"{far}; it looks like a {best} mel: pass --mel-scale {best}"
    return f"{far}; another mel definition or sample rate than the model's?"
