"""Fold mode: one utterance generated as a batch of overlapping segments, cross-faded.

A sequential WaveRNN step is memory-bound (every per-sample weight is read once per
step), so stepping B sequences at once costs little more than one. Fold mode (as in
fatchord's WaveRNN, ``fold_with_overlap`` / ``xfade_and_unfold``) cuts the utterance's
per-sample conditioning into B segments and runs them as one batch, each with its own
hidden state (starting from zero), previous sample and random draws; the price is a
join every ``target`` samples where independently started segments are blended.

Layout, for an utterance of L samples, target T and overlap O::

    segment i covers positions [i (T + O), i (T + O) + T + 2 O)
    B = the fewest segments with B (T + O) + O >= L  (at least 1)

so neighbours share O positions (``fit`` first shrinks T and O to the input, so a
setting larger than a short input costs nothing). Positions at or past L (only in the
last segment) are padding: they repeat the conditioning of position L - 1, and their samples are dropped
(generation is causal, so padding never affects a kept sample).

Unfolding blends each shared stretch of O positions. The incoming segment's first
``O // 2`` samples are its warm-up (its state has only just left zero) and are not used;
over the remaining ``O - O // 2`` the outgoing segment fades out and the incoming one
fades in with equal-power (sine/cosine) fades, ``fade_in**2 + fade_out**2 == 1``: the
segments are independent draws, so their powers add and the level stays flat across
the join (an equal-gain fade would dip by 3 dB in the middle). The start of the first
segment and the end of the last one are not faded. Blending happens on the float
waveform; the result is rounded and clipped back to int16.
"""

from __future__ import annotations

import numpy as np

from vocoder.errors import VocoderError

# Fold mode is for speed, with segments of about a second; a setting in the millions is
# a typo, and would size the batch's buffers by it.
MAX_FOLD_SAMPLES = 1_000_000


def check_fold(target: int, overlap: int) -> None:
    """One-line errors for fold settings no layout can use."""
    if not 1 <= target <= MAX_FOLD_SAMPLES:
        raise VocoderError(f"--target {target}: the segment length must be 1 to {MAX_FOLD_SAMPLES} samples")
    if not 0 <= overlap <= MAX_FOLD_SAMPLES:
        raise VocoderError(f"--overlap {overlap}: the overlap must be 0 to {MAX_FOLD_SAMPLES} samples")


def fit(length: int, target: int, overlap: int) -> tuple[int, int]:
    """(target, overlap) shrunk so one segment is never longer than the input plus the
    overlap. Only a single-segment layout changes, and generation is causal, so the kept
    samples are the same as with the settings given; only the wasted padding goes."""
    overlap = min(overlap, length)
    return min(target, max(1, length - overlap)), overlap


def layout(length: int, target: int, overlap: int) -> tuple[int, int, int]:
    """(B, target, overlap) of an input of ``length`` samples: the settings checked and
    fitted to the input, and the fewest segments that cover it."""
    check_fold(target, overlap)
    target, overlap = fit(length, target, overlap)
    return max(1, -(-(length - overlap) // (target + overlap))), target, overlap


def num_segments(length: int, target: int, overlap: int) -> int:
    """B: the fewest segments whose layout covers ``length`` samples."""
    return layout(length, target, overlap)[0]


def segment_length(target: int, overlap: int) -> int:
    """Samples generated per segment: the target plus the overlap on each side."""
    return target + 2 * overlap


def positions(length: int, target: int, overlap: int) -> np.ndarray:
    """(B, T + 2 O) int32: the utterance position each segment step is conditioned on
    (padding past the end repeats position ``length - 1``)."""
    if length < 1:
        raise VocoderError("the utterance has no samples")
    b, target, overlap = layout(length, target, overlap)
    starts = np.arange(b, dtype=np.int64)[:, None] * (target + overlap)
    pos = starts + np.arange(segment_length(target, overlap), dtype=np.int64)[None]
    return np.minimum(pos, length - 1).astype(np.int32)


def fades(overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade_in, fade_out), each of ``overlap`` float64 values, applied over a shared
    stretch: the incoming segment's warm-up half is zero in fade_in (1 in fade_out), then
    sin / cos of a quarter turn sampled at bin centres, so neither fade reaches 0 or 1
    inside the blend and ``fade_in**2 + fade_out**2 == 1`` everywhere."""
    silent = overlap // 2
    blend = overlap - silent
    phase = (np.arange(blend) + 0.5) / blend * (np.pi / 2) if blend else np.zeros(0)
    fade_in = np.concatenate([np.zeros(silent), np.sin(phase)])
    fade_out = np.concatenate([np.ones(silent), np.cos(phase)])
    return fade_in, fade_out


def unfold(segments: np.ndarray, length: int, target: int, overlap: int) -> np.ndarray:
    """(B, T + 2 O) generated segments -> the ``length`` samples of the utterance.

    Float segments give a float result; int16 segments are blended as floats and rounded
    and clipped back to int16.
    """
    segments = np.asarray(segments)
    b, target, overlap = layout(length, target, overlap)
    seg = segment_length(target, overlap)
    if segments.shape != (b, seg):
        raise ValueError(f"segments must have shape ({b}, {seg}), got {segments.shape}")
    y = segments.astype(np.float64)
    fade_in, fade_out = fades(overlap)
    if overlap:
        y[1:, :overlap] *= fade_in
        y[:-1, -overlap:] *= fade_out
    out = np.zeros(b * (target + overlap) + overlap)
    for i in range(b):
        start = i * (target + overlap)
        out[start : start + seg] += y[i]
    out = out[:length]
    if segments.dtype == np.int16:
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)
    return out


def draws(segments: int, steps: int, seed: int) -> np.ndarray:
    """(B, T + 2 O, 2) uniforms, (coarse, fine) per step of each segment, from a seeded
    generator: the torch fold sampler's draws (the native engine uses its own RNG)."""
    return np.random.default_rng(seed).random((segments, steps, 2))
