"""`export`: a checkpoint -> a ``.wrnn`` model file for the native engine.

The file is self-describing (config and feature spec as JSON, named and typed tensors)
and protected by a checksum, so the C++ loader can treat it as untrusted input and a
wrong or damaged file is rejected with one readable line. The layout is documented in
docs/model-format.md; this writer and src/vocoder/engine/loader.cpp must agree on it.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vocoder.config import MODEL_FILE_SECTIONS, Config
from vocoder.errors import VocoderError
from vocoder.fsutil import atomic_path, check_output_file
from vocoder.kinds import kind_of

if TYPE_CHECKING:  # torch is not needed to write a file from arrays
    from vocoder.model import WaveRNN

MAGIC = b"\x89WRNN\r\n\x1a"
# Sampling temperatures above 2 flatten the softmax toward noise; none is useful.
MAX_TEMPERATURE = 2.0
# 2: block-sparse matrices (an i32 index + packed blocks); 3: subscale models; 4: per-sample
# matrices stored wider than the file's precision (KEPT_WIDER)
FORMAT_VERSION = 4
HEADER_SIZE = 96
ENTRY_SIZE = 96
NAME_SIZE = 64
ALIGN = 64
CHECKSUM_SIZE = 4  # CRC-32 (zlib polynomial) of every byte before it
DTYPES = {"f32": 1, "bf16": 2, "i8": 3, "i32": 4}
PRECISIONS = {"fp32": 1, "bf16": 2, "int8": 3}
# The matrices applied once per sample: these take the export precision.
PER_SAMPLE = ("gru.weight_hh_l0", "O1.weight", "O2.weight", "O3.weight", "O4.weight")
# Per-sample matrices an export precision keeps wider. Per-row int8 costs the coarse output
# layer O2 most of int8's accuracy loss: its logits set how sharply the coarse byte, where
# pitch lives, is drawn, and its rows are the most peaked (docs/native-engine.md has the
# NLL of each matrix quantized alone). In bf16 it loses almost nothing, and it is 1/16 of
# the per-sample weights at N=512.
KEPT_WIDER = {"int8": {"O2.weight": "bf16"}}


def per_sample_shapes(hidden: int) -> dict[str, tuple[int, int]]:
    """(rows, columns) of each ``PER_SAMPLE`` matrix for N = ``hidden``: W_hh, then O1..O4
    (the heads read and write half the state; O2 and O4 give the 256 classes)."""
    half = hidden // 2
    shapes = ((3 * hidden, hidden), (half, half), (256, half), (half, half), (256, half))
    return dict(zip(PER_SAMPLE, shapes, strict=True))


# Masked weights (stored multiplied by their mask buffer, which is not stored).
MASKS = {"gru.weight_ih_l0": "input_mask", "ctx_weight": "context_mask"}
# Block shapes the engine has sparse kernels for; other pruning blocks export dense.
KERNEL_BLOCKS = {"16x1": (16, 1), "4x4": (4, 4)}


def to_bf16(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns (uint16), rounding to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def to_int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: w ~= scale[:, None] * q, q in -127..127 (an all-zero
    row gets scale 1)."""
    peak = np.abs(w).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def block_sparse(
    w: np.ndarray, block: tuple[int, int], stored: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A float matrix in the sparse kernels' order: (index, blocks).

    The rows are cut into stripes of r rows; ``index`` holds, per stripe, its number of
    kept blocks followed by each kept block's first column (increasing); ``blocks`` is
    (kept, c, r): each block's values column by column, stripe after stripe, taken from
    ``stored`` (the same matrix in its export encoding) when given. A block is kept when
    any float in it is non-zero (so -0.0, which pruning leaves and whose bf16 bits are
    not zero, counts as zero), and the product is exactly the dense one.
    """
    r, c = block
    rows, cols = w.shape

    def tiled(a: np.ndarray) -> np.ndarray:
        return a.reshape(rows // r, r, cols // c, c).transpose(0, 2, 3, 1)  # (stripe, block col, c, r)

    keep = np.any(tiled(w) != 0, axis=(2, 3))
    tiles = tiled(w if stored is None else stored)
    index: list[int] = []
    for stripe in keep:
        starts = np.flatnonzero(stripe) * c
        index += [len(starts), *starts.tolist()]
    return np.asarray(index, dtype=np.int32), np.ascontiguousarray(tiles[keep])


def sparse_matrices(cfg: Config) -> dict[str, tuple[int, int]]:
    """The matrices pruning left block-sparse in a kernel block shape, by tensor name."""
    p = cfg.prune
    if p.sparsity <= 0 or p.block not in KERNEL_BLOCKS:
        return {}
    names = ["gru.weight_hh_l0"] + (["O1.weight", "O3.weight"] if p.layers == "gru+out" else [])
    return dict.fromkeys(names, KERNEL_BLOCKS[p.block])


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def model_tensors(
    state: dict[str, np.ndarray], precision: str, sparse: dict[str, tuple[int, int]] | None = None
) -> list[tuple[str, str, np.ndarray]]:
    """(name, dtype, array) for every tensor the engine reads, in file order.

    The input matrix (and a subscale model's context layer) is stored already masked and
    the mask itself is dropped: the engine relies on, and checks, the zeros (the coarse
    rows of column 2; every context input the factorisation forbids). A matrix named in ``sparse``
    is stored as ``<name>.blocks`` + ``<name>.index`` (see ``block_sparse``) with its values
    in the export precision, or the wider one ``KEPT_WIDER`` names for it.
    """
    sparse = sparse or {}
    out = []
    for name, value in state.items():
        if name in MASKS.values():
            continue
        arr = np.ascontiguousarray(value, dtype=np.float32)
        if name in MASKS:
            arr = arr * state[MASKS[name]]
        if name not in PER_SAMPLE:
            out.append((name, "f32", arr))
            continue
        scale = None
        kept = KEPT_WIDER.get(precision, {}).get(name, precision)
        if kept == "bf16":
            dtype, stored = "bf16", to_bf16(arr)
        elif kept == "int8":
            (stored, scale), dtype = to_int8_rows(arr), "i8"
        else:
            dtype, stored = "f32", arr
        index, blocks = block_sparse(arr, sparse[name], stored) if name in sparse else (None, None)
        if blocks is not None and len(blocks):
            out.append((f"{name}.blocks", dtype, blocks))
            out.append((f"{name}.index", "i32", index))
        else:
            out.append((name, dtype, stored))
        if scale is not None:
            out.append((f"{name}.scale", "f32", scale))
    return out


def check_temperature(coarse: float, fine: float) -> None:
    """One-line errors for sampling temperatures outside (0, MAX_TEMPERATURE]."""
    for name, t in (("--temperature", coarse), ("--fine-temperature", fine)):
        if not (0 < t <= MAX_TEMPERATURE):
            raise VocoderError(f"{name} {t}: a sampling temperature must be in (0, {MAX_TEMPERATURE:g}]")


def with_temperature(state: dict[str, np.ndarray], coarse: float, fine: float) -> dict[str, np.ndarray]:
    """The state with each softmax's last layer divided by its temperature: softmax(l / T)
    is softmax of the layer (W / T) x + b / T, so every engine and precision samples at
    T with no change to the sampler (int8 rows keep their levels; only the scales move)."""
    out = dict(state)
    for layer, t in (("O2", coarse), ("O4", fine)):
        for part in ("weight", "bias"):
            out[f"{layer}.{part}"] = (state[f"{layer}.{part}"] / np.float32(t)).astype(np.float32)
    return out


def write_model_file(
    path: Path,
    cfg: Config,
    state: dict[str, np.ndarray],
    precision: str = "fp32",
    origin: str = "",
    temperature: tuple[float, float] = (1.0, 1.0),
) -> None:
    """Write a model file from a config and a float32 state dict (names as in WaveRNN).

    Matrices pruned in a kernel block shape (``cfg.prune``) are written block-sparse.
    ``temperature`` (coarse, fine) is baked into the output layers (``with_temperature``)
    and recorded in the header.
    """
    if precision not in PRECISIONS:
        raise VocoderError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    check_temperature(*temperature)
    if temperature != (1.0, 1.0):
        state = with_temperature(state, *temperature)
    tensors = model_tensors(state, precision, sparse_matrices(cfg))
    header = {
        "format": "wavernn-vocoder/model",
        "precision": precision,
        "source": origin,
        "temperature": {"coarse": temperature[0], "fine": temperature[1]},
        "config": {key: cfg.to_dict()[key] for key in MODEL_FILE_SECTIONS},
    }
    js = json.dumps(header, sort_keys=True).encode("utf-8")
    table_off = _align(HEADER_SIZE + len(js), 8)
    data_off = _align(table_off + ENTRY_SIZE * len(tensors), ALIGN)
    entries, blobs, off = [], [], data_off
    for name, dtype, arr in tensors:
        raw = arr.tobytes()
        shape = [*arr.shape, 0, 0, 0, 0][:4]
        raw_name = name.encode("ascii")
        if len(raw_name) >= NAME_SIZE:
            raise VocoderError(f"tensor name {name!r} is longer than {NAME_SIZE - 1} bytes")
        entries.append(struct.pack(f"<{NAME_SIZE}sII4IQ", raw_name, DTYPES[dtype], arr.ndim, *shape, off))
        blobs.append((off, raw))
        off = _align(off + len(raw), ALIGN)
    size = off + CHECKSUM_SIZE
    a, m = cfg.audio, cfg.model
    subscale = kind_of(cfg).subscale_dims(cfg)
    buf = bytearray(size - CHECKSUM_SIZE)
    struct.pack_into(
        "<8sIIQIIQQ11I",
        buf,
        0,
        MAGIC,
        FORMAT_VERSION,
        HEADER_SIZE,
        size,
        len(js),
        len(tensors),
        table_off,
        data_off,
        m.hidden_size,
        m.cond_channels,
        m.cond_blocks,
        a.n_mels,
        a.hop_length,
        a.sample_rate,
        PRECISIONS[precision],
        *subscale,
    )
    buf[HEADER_SIZE : HEADER_SIZE + len(js)] = js
    for i, e in enumerate(entries):
        buf[table_off + i * ENTRY_SIZE : table_off + (i + 1) * ENTRY_SIZE] = e
    for o, raw in blobs:
        buf[o : o + len(raw)] = raw
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(buf) + struct.pack("<I", zlib.crc32(buf)))


def export_model(
    model: WaveRNN,
    cfg: Config,
    out_path: Path,
    precision: str,
    origin: Path,
    temperature: tuple[float, float] = (1.0, 1.0),
) -> None:
    """A loaded model (from checkpoint file ``origin``) -> model file."""
    state = model_state(model)
    write_model_file(out_path, cfg, state, precision, origin=origin.name, temperature=temperature)


def model_state(model: WaveRNN) -> dict[str, np.ndarray]:
    """A model's state dict as float32 numpy arrays on the CPU: what ``write_model_file`` takes."""
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}


def summary(
    cfg: Config, averaged: bool, precision: str, temperature: tuple[float, float], out_file: Path
) -> str:
    """The line `vocoder export` ends with: what was exported, and the file's size."""
    weights = f", the weight average of train.ema {cfg.train.ema}" if averaged else ""
    if temperature != (1.0, 1.0):
        weights += f", sampling temperature {temperature[0]:g} (coarse) {temperature[1]:g} (fine)"
    return (
        f"exported N={cfg.model.hidden_size} ({precision}{weights}) -> {out_file} "
        f"({out_file.stat().st_size / 1e6:.1f} MB)"
    )


def export_checkpoint(
    ckpt_path: Path, out_path: Path, precision: str = "fp32", temperature: tuple[float, float] = (1.0, 1.0)
) -> tuple[Config, bool]:
    """Checkpoint file (or directory: its latest) -> model file; returns the config and
    whether the weights exported were the checkpoint's weight average (``train.ema``)."""
    from vocoder import checkpoint as ckpt_mod

    check_output_file(out_path)
    check_temperature(*temperature)
    path = ckpt_mod.resolve(ckpt_path)
    model, cfg, data = ckpt_mod.load_model(path)
    export_model(model, cfg, out_path, precision, path, temperature)
    return cfg, ckpt_mod.uses_average(data)
