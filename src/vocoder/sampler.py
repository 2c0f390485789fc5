"""Fold mode's reference sampler (torch): B sequences of the sequential model stepped as
one batch, each with ``model.generate``'s math (see ``vocoder.fold`` for the layout).

The ground truth the native engine's fold mode must match, written to be obviously right
rather than fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vocoder import fold
from vocoder.audio import join_16bit, split_16bit
from vocoder.model import WaveRNN, draw, gru_cell, scale_byte, step_inputs


@dataclass
class BatchTrace:
    """Per-step internals of a batched run: (B, S, 256), (B, S, 256) and (B, S, N)."""

    coarse_logits: np.ndarray
    fine_logits: np.ndarray
    states: np.ndarray


@torch.no_grad()
def generate_batch(
    model: WaveRNN,
    mel: np.ndarray,
    positions: np.ndarray,
    draws: np.ndarray,
    force: np.ndarray | None = None,
    record: bool = False,
) -> tuple[np.ndarray, BatchTrace | None]:
    """B sequences stepped together: sequence b is conditioned at step s on the
    utterance's per-sample conditioning at ``positions[b, s]`` and starts, like
    ``model.generate``, from a zero state and the previous sample 0; it draws with
    ``draws[b, s]``. Per sequence the math is ``model.generate``'s, with a batch dimension over
    sequences (fold mode runs an utterance's segments this way; see ``vocoder.fold``).

    ``force`` (int16, (B, S)) teacher-forces each sequence; ``record`` returns the
    per-step logits and states. Returns (B, S) int16 samples.
    """
    model, cond, (w_cprev, w_fprev, w_c, w_cond, b_ih, w_hh, b_hh) = step_inputs(model, mel)
    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.min() < 0 or positions.max() >= cond.shape[0]:
        raise ValueError(f"positions must be (B, S) indices into the {cond.shape[0]} samples")
    batch, steps = positions.shape
    if draws.shape != (batch, steps, 2):
        raise ValueError(f"draws must have shape ({batch}, {steps}, 2), got {draws.shape}")
    if force is not None:
        forced_c, forced_f = split_16bit(force)

    n = model.hidden_size

    proj = cond[torch.from_numpy(positions.astype(np.int64))] @ w_cond.T + b_ih  # (B, S, 3N)
    h = torch.zeros(batch, n)
    c_prev = torch.full((batch,), 128)
    f_prev = torch.zeros(batch, dtype=torch.int64)
    coarse = np.zeros((batch, steps), np.int64)
    fine = np.zeros((batch, steps), np.int64)
    trace = (
        BatchTrace(
            np.zeros((batch, steps, 256), np.float32),
            np.zeros((batch, steps, 256), np.float32),
            np.zeros((batch, steps, n), np.float32),
        )
        if record
        else None
    )

    for s in range(steps):
        gh = h @ w_hh.T + b_hh
        gi = (
            proj[:, s]
            + w_cprev[None] * scale_byte(c_prev)[:, None]
            + w_fprev[None] * scale_byte(f_prev)[:, None]
        )
        coarse_logits = model.coarse_logits(gru_cell(gi, gh, h))
        if force is None:
            c = draw(coarse_logits, torch.from_numpy(draws[:, s, 0]))
        else:
            c = torch.from_numpy(forced_c[:, s].astype(np.int64))
        h = gru_cell(gi + w_c[None] * scale_byte(c)[:, None], gh, h)
        fine_logits = model.fine_logits(h)
        if force is None:
            f = draw(fine_logits, torch.from_numpy(draws[:, s, 1]))
        else:
            f = torch.from_numpy(forced_f[:, s].astype(np.int64))
        coarse[:, s], fine[:, s] = c.numpy(), f.numpy()
        c_prev, f_prev = c, f
        if trace is not None:
            trace.coarse_logits[:, s] = coarse_logits.numpy()
            trace.fine_logits[:, s] = fine_logits.numpy()
            trace.states[:, s] = h.numpy()
    return join_16bit(coarse, fine), trace


@torch.no_grad()
def generate_fold(model: WaveRNN, mel: np.ndarray, seed: int, target: int, overlap: int) -> np.ndarray:
    """Fold mode (``vocoder.fold``): the utterance's segments as one batch, cross-faded."""
    length = mel.shape[1] * model.hop_length
    pos = fold.positions(length, target, overlap)
    segments, _ = generate_batch(model, mel, pos, fold.draws(*pos.shape, seed))
    return fold.unfold(segments, length, target, overlap)
