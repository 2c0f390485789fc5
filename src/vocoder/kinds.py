"""The model kinds, sequential and subscale: what differs between them, for code that holds
a config but no torch model.

The torch side of a kind lives with its model class: ``model.WaveRNN`` (sequential) and
``subscale.SubscaleWaveRNN`` each carry their own ``losses`` and ``sample``. What the
torch-free code needs (the export's header, the native loader's cross-check, per-sub-tensor
NLL, bench's arithmetic, which modes apply) is here, so the native path never imports
torch to learn it, and every question about a kind is answered by the kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: config imports nothing from here
    from vocoder.config import Config


def subscale_steps(t: int, b: int, horizon: int) -> int:
    """Generation steps of the staggered schedule for T samples: ceil(T / B) + (B - 1)(F + 1)."""
    return -(-t // b) + (b - 1) * (horizon + 1)


class Sequential:
    """One sample per step, in time order: fold mode and streaming apply."""

    name = "sequential"
    in_time_order = True

    def subscale_dims(self, cfg: Config) -> tuple[int, int, int, int]:
        """(B, F, P, D) as a model file's header stores them: zeros, no sub-tensors."""
        return (0, 0, 0, 0)

    def subtensors(self, cfg: Config) -> int:
        """Interleaved sub-tensors the waveform is split into (per-sub-tensor NLL)."""
        return 1

    def samples_per_step(self, cfg: Config, samples: int) -> float:
        """Samples one step yields on average, for ``samples`` samples."""
        return 1.0

    def context_multiply_adds(self, cfg: Config) -> tuple[float, float]:
        """Multiply-adds per sample beyond the GRU and heads: (fp32 ones, ones in the
        weights' precision)."""
        return (0.0, 0.0)


class Subscale(Sequential):
    """B sub-tensors generated in one staggered batch: samples come out of time order.
    (It extends ``Sequential`` as ``SubscaleWaveRNN`` extends ``WaveRNN``.)"""

    name = "subscale"
    in_time_order = False

    def subscale_dims(self, cfg: Config) -> tuple[int, int, int, int]:
        sub = cfg.subscale
        return (sub.batch, sub.past, sub.horizon, sub.context)

    def subtensors(self, cfg: Config) -> int:
        return cfg.subscale.batch

    def samples_per_step(self, cfg: Config, samples: int) -> float:
        """T over the schedule's steps, T rounded up to whole frames as synthesis does."""
        hop = cfg.audio.hop_length
        t = max(1, -(-samples // hop)) * hop
        return t / subscale_steps(t, cfg.subscale.batch, cfg.subscale.horizon)

    def context_multiply_adds(self, cfg: Config) -> tuple[float, float]:
        """The context layer (sub-tensor s reads (s + 1) W window values, fp32, so
        B (B + 1) / 2 W per B samples) and W_ih's D context columns (3N x D)."""
        sub = cfg.subscale
        width = sub.past + sub.horizon + 1
        return (sub.context * width * (sub.batch + 1) / 2, 3.0 * cfg.model.hidden_size * sub.context)


KINDS: dict[str, Sequential] = {k.name: k for k in (Sequential(), Subscale())}


def kind_of(cfg: Config) -> Sequential:
    """The kind ``cfg.model.kind`` names (validated by the config loader)."""
    return KINDS[cfg.model.kind]
