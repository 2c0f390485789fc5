"""Checkpoints: everything needed to rebuild the model or resume training, in one file.

A checkpoint is a dict saved with ``torch.save`` and read back with
``weights_only=True`` (no pickled code runs on load). It carries a ``kind`` tag and a
format version so a wrong file is rejected with a clear message instead of a traceback.
``torch.load`` does not verify the CRCs of the zip entries it reads, so a flipped byte in
the tensor data would load as a wrong number: ``load`` checks the CRCs first, then that
every tensor is finite, since resuming from NaN weights trains on NaN and rotation would
then delete the good checkpoints.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from vocoder import config as config_mod
from vocoder.config import Config
from vocoder.errors import VocoderError
from vocoder.fsutil import atomic_path
from vocoder.model import WaveRNN
from vocoder.subscale import SubscaleWaveRNN

KIND = "wavernn-vocoder/checkpoint"
VERSION = 1
_NAME = re.compile(r"^checkpoint_(\d{8})\.pt$")


def checkpoint_name(step: int) -> str:
    return f"checkpoint_{step:08d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints in a directory, oldest step first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def resolve(model: Path) -> Path:
    """A checkpoint file, or a checkpoint directory meaning its latest checkpoint."""
    if model.is_dir():
        found = list_checkpoints(model)
        if not found:
            raise VocoderError(f"{model}: directory holds no checkpoint_*.pt files")
        return found[-1]
    if not model.exists():
        raise VocoderError(f"{model}: no such checkpoint file or directory")
    return model


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically, tagged with kind and version."""
    with atomic_path(path) as tmp:
        torch.save({"kind": KIND, "version": VERSION, **payload}, tmp)


def non_finite(tree: Any, name: str = "") -> str | None:
    """The dotted name of the first tensor in a nested dict/list holding NaN or inf."""
    if isinstance(tree, torch.Tensor):
        return name if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else None
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list | tuple):
        items = enumerate(tree)
    else:
        return None
    for key, value in items:
        found = non_finite(value, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def _check_crcs(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return  # not a zip (or unreadable): torch.load gives the precise message
    except Exception as e:  # zlib.error and friends from a damaged entry
        raise VocoderError(f"{path}: damaged checkpoint ({type(e).__name__})") from None
    if bad is not None:
        raise VocoderError(f"{path}: damaged checkpoint (checksum mismatch in {bad})")


def load(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint; any problem is one readable line naming the file."""
    if path.exists() and not path.is_file():  # a FIFO or device would block the reader forever
        raise VocoderError(f"{path}: not a regular file")
    if path.is_file():
        _check_crcs(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VocoderError(f"{path}: no such checkpoint") from None
    except Exception as e:  # torch raises many types for corrupt/truncated/foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VocoderError(f"{path}: not a readable checkpoint ({first[:120]})") from None
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise VocoderError(f"{path}: not a wavernn-vocoder checkpoint")
    if data.get("version") != VERSION:
        raise VocoderError(
            f"{path}: checkpoint format version {data.get('version')} is not supported "
            f"(this toolkit reads version {VERSION})"
        )
    for key in ("model", "config", "step"):
        if key not in data:
            raise VocoderError(f"{path}: checkpoint lacks {key!r}")
    for key in ("model", "optimizer", "ema"):
        bad = non_finite(data.get(key, {}), key)
        if bad is not None:
            raise VocoderError(f"{path}: {bad} holds NaN or infinite values (a diverged or damaged run)")
    return data


# The class of each model kind (``kinds.KINDS`` names the same ones, torch-free); a
# SubscaleWaveRNN is a WaveRNN.
MODEL_CLASSES: dict[str, type[WaveRNN]] = {"sequential": WaveRNN, "subscale": SubscaleWaveRNN}


def build_model(cfg: Config) -> WaveRNN:
    """The model ``cfg.model.kind`` names, freshly initialised."""
    return MODEL_CLASSES[cfg.model.kind].from_config(cfg)


def uses_average(data: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint holds a weight average (``train.ema``), which is then
    the model that export and sampling use."""
    return bool(data.get("ema"))


def load_model(path: Path) -> tuple[WaveRNN, Config, dict[str, Any]]:
    """Rebuild the model a checkpoint describes, in eval mode, on the CPU: its weight
    average when it holds one, else its trained weights."""
    data = load(path)
    cfg = config_mod.from_dict(data["config"], f"{path} (stored config)")
    model = build_model(cfg)
    try:
        model.load_state_dict(data["ema"] if uses_average(data) else data["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0]
        raise VocoderError(f"{path}: weights do not match the stored config ({first[:120]})") from None
    model.eval()
    return model, cfg, data


def describe(model: Path) -> tuple[list[str], Config]:
    """What `vocoder info` says of a checkpoint (file, or directory: its latest): step,
    parameters, size, and whether the weights are an average; and its config."""
    path = resolve(model)
    net, cfg, data = load_model(path)
    params = sum(p.numel() for p in net.parameters())
    weights = f", weight average (train.ema {cfg.train.ema})" if uses_average(data) else ""
    line = (
        f"{path}: step {data['step']}, {params:,} parameters, "
        f"N={cfg.model.hidden_size}, {cfg.audio.sample_rate} Hz{weights}"
    )
    return [line], cfg
