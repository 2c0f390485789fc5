"""The reference sequential sampler (torch): one GRU step per sample, coarse then fine.

This is the ground truth that faster engines must match, so it is written to be
obviously right rather than fast: the GRU cell is evaluated once before c_t is known
(the masked input matrix makes the coarse half independent of c_t) and once after,
and each byte is drawn by inverting the CDF at a uniform number. The uniforms come
from a seeded generator, or from the caller (``draws``), so another engine given the
same numbers must produce the same samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vocoder import fold
from vocoder.audio import join_16bit, split_16bit
from vocoder.model import WaveRNN, draw, gru_cell, make_draws, scale_byte

CHUNK = 4096  # samples whose conditioning projection is computed at once


@dataclass
class Trace:
    """Per-step internals, recorded on request for parity tests: (L, 256) and (L, N)."""

    coarse_logits: np.ndarray
    fine_logits: np.ndarray
    states: np.ndarray


def step_inputs(model: WaveRNN, mel: np.ndarray) -> tuple[WaveRNN, torch.Tensor, tuple[torch.Tensor, ...]]:
    """The model in fp32 on the CPU, the per-sample conditioning of ``mel`` (L, C), and
    what every step reads: the byte and conditioning columns of the masked W_ih, b_ih,
    W_hh and b_hh."""
    model = model.float().cpu().eval()
    cond = model.conditioning(torch.from_numpy(mel).float()[None])[0]
    gru = model.gru
    return model, cond, (*model.input_columns(), gru.bias_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0)


@torch.no_grad()
def generate(
    model: WaveRNN,
    mel: np.ndarray,
    seed: int = 0,
    draws: np.ndarray | None = None,
    force: np.ndarray | None = None,
    record: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, Trace | None]:
    """Vocode one mel (n_mels, T) into T * hop int16 samples.

    ``force`` (int16, T * hop) replaces each drawn sample by the given one (teacher
    forcing through the sampler, for tests); ``record`` returns the per-step logits and
    states; ``progress`` is called with the number of samples done now and then.
    """
    model, cond, (w_cprev, w_fprev, w_c, w_cond, b_ih, w_hh, b_hh) = step_inputs(model, mel)
    length = cond.shape[0]
    if draws is None:
        draws = make_draws(length, seed)
    if draws.shape != (length, 2):
        raise ValueError(f"draws must have shape ({length}, 2), got {draws.shape}")
    if force is not None:
        forced_c, forced_f = split_16bit(force)

    n = model.hidden_size

    h = torch.zeros(n)
    c_prev, f_prev = 128, 0  # the sample value 0 in offset binary
    coarse = np.zeros(length, np.int64)
    fine = np.zeros(length, np.int64)
    trace = (
        Trace(
            np.zeros((length, 256), np.float32),
            np.zeros((length, 256), np.float32),
            np.zeros((length, n), np.float32),
        )
        if record
        else None
    )

    for start in range(0, length, CHUNK):
        proj = cond[start : start + CHUNK] @ w_cond.T + b_ih  # (chunk, 3N)
        for i in range(proj.shape[0]):
            t = start + i
            gh = w_hh @ h + b_hh
            gi = (
                proj[i]
                + w_cprev * scale_byte(torch.tensor(c_prev))
                + w_fprev * scale_byte(torch.tensor(f_prev))
            )
            coarse_logits = model.coarse_logits(gru_cell(gi, gh, h))
            c = draw(coarse_logits, float(draws[t, 0])) if force is None else int(forced_c[t])
            h = gru_cell(gi + w_c * scale_byte(torch.tensor(c)), gh, h)
            fine_logits = model.fine_logits(h)
            f = draw(fine_logits, float(draws[t, 1])) if force is None else int(forced_f[t])
            coarse[t], fine[t] = c, f
            c_prev, f_prev = c, f
            if trace is not None:
                trace.coarse_logits[t] = coarse_logits.numpy()
                trace.fine_logits[t] = fine_logits.numpy()
                trace.states[t] = h.numpy()
        if progress is not None:
            progress(min(start + CHUNK, length))
    return join_16bit(coarse, fine), trace


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
    ``generate``, from a zero state and the previous sample 0; it draws with
    ``draws[b, s]``. Per sequence the math is ``generate``'s, with a batch dimension over
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
            c = torch.tensor([draw(coarse_logits[b], float(draws[b, s, 0])) for b in range(batch)])
        else:
            c = torch.from_numpy(forced_c[:, s].astype(np.int64))
        h = gru_cell(gi + w_c[None] * scale_byte(c)[:, None], gh, h)
        fine_logits = model.fine_logits(h)
        if force is None:
            f = torch.tensor([draw(fine_logits[b], float(draws[b, s, 1])) for b in range(batch)])
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
