"""Shared helpers for the native-engine tests: small models with non-trivial weights,
real speech features, and byte-level access to model files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from vocoder import _engine
from vocoder import checkpoint as ckpt_mod
from vocoder.audio import features, load_audio
from vocoder.config import Config, load_config
from vocoder.errors import VocoderError
from vocoder.model import COARSE_INPUT_INIT, WaveRNN
from vocoder.native import NativeVocoder

ROOT = Path(__file__).resolve().parents[1]
WAV = ROOT / "data" / "allison-mini" / "wavs" / "AL-activated.flac"
# Bounds a little over the errors of these fixtures, the same on every ISA (measured in
# docs/native-engine.md, Accuracy), so that a plausible bug does not fit under them:
# fp32 differs from torch only by summation order and the SIMD exp approximation; bf16
# rounds weights and matvec inputs to 8 mantissa bits (truncating instead of rounding
# gives 0.069 on logits); int8 has per-row weight scales and inputs quantised per step
# (rounding toward zero gives 0.16 on logits, per-tensor scales 0.033 on states).
FP32_LOGIT_ATOL, FP32_STATE_ATOL = 6e-5, 3.5e-5
LOSSY_ATOL = {"bf16": (0.05, 0.017), "int8": (0.125, 0.03)}
NEAR_TIE = 1e-5  # |cdf - u * total| / total under which rounding may pick the neighbouring class


def small_config(hidden: int = 64, channels: int = 16, blocks: int = 2) -> Config:
    return load_config(
        "allison-16k",
        [f"model.hidden_size={hidden}", f"model.cond_channels={channels}", f"model.cond_blocks={blocks}"],
    )


def speech(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel (n_mels, T) and aligned int16 samples (T * hop) of one real utterance."""
    return features(load_audio(WAV, cfg.audio.sample_rate), cfg.audio)


def loud_fine_input(model: WaveRNN) -> None:
    """Scale the f_{t-1} input column up to the coarse columns' size. Training starts it
    small (model.py), but a parity or leakage test wants every input path to move the
    logits by far more than its tolerance."""
    with torch.no_grad():
        model.gru.weight_ih_l0[:, 1] *= model.hidden_size**0.5 * COARSE_INPUT_INIT


def random_model(cfg: Config, mel: np.ndarray, seed: int = 0) -> WaveRNN:
    """A model with peaked output distributions and the utterance's own mel statistics,
    so logits, states and draws exercise the whole range a trained model would."""
    torch.manual_seed(seed)
    model = ckpt_mod.build_model(cfg)
    loud_fine_input(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
        model.mel_mean.copy_(torch.from_numpy(mel.mean(axis=1)))
        model.mel_std.copy_(torch.from_numpy(mel.std(axis=1) + 0.1))
    return model.eval()


def state_of(model: WaveRNN) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def save_checkpoint(path: Path, model: WaveRNN, cfg: Config) -> Path:
    ckpt_mod.save(path, {"model": model.state_dict(), "config": cfg.to_dict(), "step": 0})
    return path


def torch_teacher_forced(model: WaveRNN, mel: np.ndarray, samples: np.ndarray):
    """Ground truth: the model's own batched teacher-forced pass over the whole utterance."""
    u = samples.astype(np.int64) + 32768
    c, f = torch.from_numpy(u >> 8), torch.from_numpy(u & 0xFF)
    c_prev = torch.cat([torch.tensor([128]), c[:-1]])
    f_prev = torch.cat([torch.tensor([0]), f[:-1]])
    with torch.no_grad():
        cond = model.conditioning(torch.from_numpy(mel)[None])
        out = model.teacher_forced(cond, c_prev[None], f_prev[None], c[None])
    return tuple(t[0].numpy() for t in out)


def margins(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per step, how far u * total is from the nearest cdf step (relative): a small
    margin is a near-tie that rounding differences may resolve either way."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True)).astype(np.float64)
    cdf = np.cumsum(p, axis=1)
    return np.abs(cdf - u[:, None] * cdf[:, -1:]).min(axis=1) / cdf[:, -1]


def patch(data: bytes, offset: int, fmt: str, *values: object, fix_crc: bool = True) -> bytes:
    """``data`` with ``struct.pack(fmt, *values)`` written at ``offset``; the trailing
    CRC-32 is recomputed so the loader's structural checks (not the checksum) are hit."""
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return with_crc(bytes(buf)) if fix_crc else bytes(buf)


def with_crc(data: bytes) -> bytes:
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def tensor_entry(data: bytes, name: str) -> int:
    """Byte offset of a tensor's table entry."""
    (table_off,) = struct.unpack_from("<Q", data, 32)
    (count,) = struct.unpack_from("<I", data, 28)
    for i in range(count):
        off = table_off + 96 * i
        if data[off : off + 64].rstrip(b"\0").decode() == name:
            return off
    raise KeyError(name)


def load_with_isa(path: Path, isa: str, sparse: str = "auto") -> NativeVocoder:
    """A model file loaded with the kernels of one ISA (the default is restored after)."""
    _engine.select_isa(isa)
    try:
        return NativeVocoder.load(path, sparse=sparse)
    finally:
        _engine.select_isa("auto")


def rejects(tmp_path: Path, data: bytes, *needles: str) -> str:
    """Loading ``data`` as a model file fails with one line naming the file and holding
    every needle; returns the message."""
    path = tmp_path / "model.wrnn"
    path.write_bytes(data)
    with pytest.raises(VocoderError) as info:
        NativeVocoder.load(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg
