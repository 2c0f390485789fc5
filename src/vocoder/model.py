"""WaveRNN with a dual softmax (Kalchbrenner et al., 2018, section 3).

Each 16-bit sample is split into a coarse byte c_t and a fine byte f_t. One GRU of N
units reads x_t = [c_{t-1}, f_{t-1}, c_t] (each byte scaled to [-1, 1]) plus a
conditioning vector from the mel. Its state is split in halves: the coarse half y_c
predicts c_t, the fine half y_f predicts f_t given c_t. The input matrix is masked so
c_t reaches only the fine half of every gate; that is what lets one recurrent step
produce c_t first and f_t second.

Gate equations (PyTorch's GRU, which is the paper's: the reset gate multiplies R_e h):
    u = sigmoid(R_u h + I_u x + b_u)        (PyTorch "z")
    r = sigmoid(R_r h + I_r x + b_r)
    e = tanh(r * (R_e h + b_Re) + I_e x + b_Ie)   (PyTorch "n")
    h' = u * h + (1 - u) * e
    P(c_t) = softmax(O2 relu(O1 y_c)),  P(f_t) = softmax(O4 relu(O3 y_f))

Conditioning: the mel is normalised per bin (statistics of the training set, stored as
buffers), passed through a small stack of *valid* 1-D convolutions (so the receptive
field is explicit and a training window can reproduce inference exactly), and upsampled
to the sample rate by linear interpolation between neighbouring frame centres.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F  # noqa: N812

from vocoder.audio import join_16bit, split_16bit
from vocoder.config import Config, ModelConfig

N_CLASSES = 256
Losses = tuple[torch.Tensor, torch.Tensor]  # mean coarse and fine cross-entropy, nats
# Initial scale of the input weights of the two coarse-byte inputs, c_{t-1} and c_t.
# Adjacent 8-bit levels differ by 1/127.5 after scaling and speech mostly sits near zero,
# so the default U(+-1/sqrt(N)) weights make the previous sample nearly invisible to the
# gates, and Adam would take tens of thousands of steps to grow them. The fine byte
# f_{t-1} keeps the default: it is close to uniform over [-1, 1], so at this scale it
# would kick every gate, the update gate included, by up to +-10 at random each step and
# wipe the state's memory of the last pitch period. docs/training.md has the runs.
COARSE_INPUT_INIT = 10.0


def scale_byte(v: torch.Tensor) -> torch.Tensor:
    """An 8-bit class index (0..255) as a network input in [-1, 1]."""
    return v.float() / 127.5 - 1.0


class ResBlock(nn.Module):
    """x + conv1x1(relu(conv3(x))), valid convolutions: trims one frame at each end."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 1:-1] + self.conv2(F.relu(self.conv1(x)))


class CondNet(nn.Module):
    """Normalised mel (B, n_mels, F + 2 * radius) -> conditioning (B, C, F)."""

    def __init__(self, n_mels: int, channels: int, blocks: int) -> None:
        super().__init__()
        self.inp = nn.Conv1d(n_mels, channels, 5)
        self.blocks = nn.ModuleList(ResBlock(channels) for _ in range(blocks))
        self.radius = 2 + blocks

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.inp(mel))
        for block in self.blocks:
            x = block(x)
        return x


def upsample(cond: torch.Tensor, hop: int) -> torch.Tensor:
    """Frame-rate (B, C, F) -> sample-rate (B, (F - 2) * hop, C) for frames 1..F-2.

    Frame t is centred on sample t * hop + hop / 2. Sample t * hop + k sits at offset
    d_k = (k + 0.5) / hop - 0.5 frames from that centre and blends frame t with its
    neighbour on the same side: (1 - |d_k|) * c[t] + |d_k| * c[t + sign(d_k)]. The first
    and last frames are only neighbours; callers pad or crop so every wanted frame has both.
    """
    k = torch.arange(hop, device=cond.device, dtype=torch.float32)
    d = (k + 0.5) / hop - 0.5
    w = d.abs()
    mid = cond[:, :, 1:-1]
    prev = cond[:, :, :-2]
    nxt = cond[:, :, 2:]
    side = torch.where(d < 0, 1.0, 0.0)
    # (B, C, F', hop): neighbour chosen per k, then blended.
    neighbour = prev.unsqueeze(-1) * side + nxt.unsqueeze(-1) * (1.0 - side)
    out = mid.unsqueeze(-1) * (1.0 - w) + neighbour * w
    b, c, f, _ = out.shape
    return out.reshape(b, c, f * hop).transpose(1, 2)


class WaveRNN(nn.Module):
    """The dual-softmax WaveRNN; ``teacher_forced`` is the training-time forward pass."""

    def __init__(self, cfg: ModelConfig, n_mels: int, hop_length: int, extra_inputs: int = 0) -> None:
        """``extra_inputs``: conditioning features appended after the mel's (the
        subscale model's context vector); the GRU input grows by that many columns."""
        super().__init__()
        n = cfg.hidden_size
        self.hidden_size = n
        self.half = n // 2
        self.hop_length = hop_length
        self.register_buffer("mel_mean", torch.zeros(n_mels))
        self.register_buffer("mel_std", torch.ones(n_mels))
        self.cond = CondNet(n_mels, cfg.cond_channels, cfg.cond_blocks)
        inputs = 3 + cfg.cond_channels + extra_inputs
        self.gru = nn.GRU(inputs, n, batch_first=True)
        with torch.no_grad():
            # all three drawn at once, then f_{t-1} (column 1) scaled to the default bound
            self.gru.weight_ih_l0[:, :3].uniform_(-COARSE_INPUT_INIT, COARSE_INPUT_INIT)
            self.gru.weight_ih_l0[:, 1] *= 1.0 / (n**0.5 * COARSE_INPUT_INIT)
        mask = torch.ones(3 * n, inputs)
        for gate in range(3):  # c_t (input column 2) is cut from the coarse half of each gate
            mask[gate * n : gate * n + self.half, 2] = 0.0
        self.register_buffer("input_mask", mask)
        self.O1 = nn.Linear(self.half, self.half)
        self.O2 = nn.Linear(self.half, N_CLASSES)
        self.O3 = nn.Linear(self.half, self.half)
        self.O4 = nn.Linear(self.half, N_CLASSES)

    @classmethod
    def from_config(cls, cfg: Config) -> WaveRNN:
        """The model a full config describes (the kind's own constructor arguments)."""
        return cls(cfg.model, cfg.audio.n_mels, cfg.audio.hop_length)

    @property
    def radius(self) -> int:
        """Mel frames of context the conditioning stack needs on each side."""
        return self.cond.radius

    def masked_input_weight(self) -> torch.Tensor:
        return self.gru.weight_ih_l0 * self.input_mask

    def input_columns(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The masked input matrix split as the samplers apply it: the c_{t-1}, f_{t-1} and
        c_t columns (3N each) and the conditioning columns (3N, C [+ extra])."""
        w = self.masked_input_weight()
        return w[:, 0], w[:, 1], w[:, 2], w[:, 3:]

    def normalise(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def conditioning(self, mel: torch.Tensor) -> torch.Tensor:
        """Whole-utterance mel (B, n_mels, T) -> per-sample vectors (B, T * hop, C).

        Zero padding (in normalised units) feeds the convolutions at the edges and the
        edge frames are repeated for the interpolation.
        """
        x = F.pad(self.normalise(mel), (self.radius, self.radius))
        c = self.cond(x)
        c = torch.cat([c[:, :, :1], c, c[:, :, -1:]], dim=2)
        return upsample(c, self.hop_length)

    def window_conditioning(self, mel_window: torch.Tensor) -> torch.Tensor:
        """Normalised, context-padded window (B, n_mels, W + 2 + 2 * radius) -> (B, W * hop, C).

        The window holds mel frames s-1-radius .. s+W+radius (zeros outside the
        utterance); the result equals ``conditioning`` of the whole utterance on the
        samples of frames s .. s+W-1.
        """
        return upsample(self.cond(mel_window), self.hop_length)

    def gru_inputs(
        self, cond: torch.Tensor, c_prev: torch.Tensor, f_prev: torch.Tensor, c_cur: torch.Tensor
    ) -> torch.Tensor:
        x = torch.stack([scale_byte(c_prev), scale_byte(f_prev), scale_byte(c_cur)], dim=-1)
        return torch.cat([x, cond], dim=-1)

    def coarse_logits(self, h: torch.Tensor) -> torch.Tensor:
        """O2 relu(O1 y_c) from the coarse half of hidden states (..., N) -> (..., 256)."""
        return self.O2(F.relu(self.O1(h[..., : self.half])))

    def fine_logits(self, h: torch.Tensor) -> torch.Tensor:
        """O4 relu(O3 y_f) from the fine half of hidden states (..., N) -> (..., 256)."""
        return self.O4(F.relu(self.O3(h[..., self.half :])))

    def teacher_forced(
        self,
        cond: torch.Tensor,
        c_prev: torch.Tensor,
        f_prev: torch.Tensor,
        c_cur: torch.Tensor,
        h0: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits for every step given the true bytes: cond (B, L, C), bytes (B, L).

        Returns (coarse logits (B, L, 256), fine logits (B, L, 256), states (B, L, N)).
        """
        x = self.gru_inputs(cond, c_prev, f_prev, c_cur)
        states, _ = functional_call(self.gru, {"weight_ih_l0": self.masked_input_weight()}, (x, h0))
        return self.coarse_logits(states), self.fine_logits(states), states

    def losses(
        self,
        cond: torch.Tensor,
        coarse: torch.Tensor,
        fine: torch.Tensor,
        c_prev: torch.Tensor,
        f_prev: torch.Tensor,
    ) -> Losses:
        """Training's losses on a batch of windows (cond (B, L, C), bytes (B, L)): mean
        cross-entropy in nats of the coarse byte and of the fine byte given the coarse."""
        coarse_logits, fine_logits, _ = self.teacher_forced(cond, c_prev, f_prev, coarse)
        return byte_losses(coarse_logits, fine_logits, coarse, fine)

    def sample(self, mel: np.ndarray, seed: int) -> np.ndarray:
        """The kind's reference sampler: mel (n_mels, T) -> T * hop int16 samples."""
        return generate(self, mel, seed=seed)[0]


def byte_losses(
    coarse_logits: torch.Tensor, fine_logits: torch.Tensor, coarse: torch.Tensor, fine: torch.Tensor
) -> Losses:
    """Mean cross-entropy (nats) of the coarse and of the fine bytes under their logits
    (..., 256), whatever the leading dimensions: every kind's losses end here."""
    ce_c = F.cross_entropy(coarse_logits.reshape(-1, N_CLASSES), coarse.reshape(-1))
    ce_f = F.cross_entropy(fine_logits.reshape(-1, N_CLASSES), fine.reshape(-1))
    return ce_c, ce_f


# Sampling primitives shared by the torch samplers (sequential, fold mode, subscale): the
# GRU step outside nn.GRU, and inverse-CDF draws at given or seeded uniforms.


def draw(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling, one class per row of (n, 256) logits at the row's own uniform
    u (n,): the first class whose cumulative probability exceeds u."""
    cdf = torch.cumsum(torch.softmax(logits, dim=-1), dim=-1)
    idx = torch.searchsorted(cdf, (u.float() * cdf[:, -1])[:, None], right=True)[:, 0]
    return idx.clamp(max=N_CLASSES - 1)


def make_draws(n: int, seed: int) -> np.ndarray:
    """Uniform numbers in [0, 1), two per sample (coarse, fine), from a seeded generator."""
    return np.random.default_rng(seed).random((n, 2))


def gru_cell(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """PyTorch GRU cell from precomputed input (gi) and recurrent (gh) gate vectors
    (..., 3N); leading dimensions are independent sequences."""
    n = h.shape[-1]
    r = torch.sigmoid(gi[..., :n] + gh[..., :n])
    u = torch.sigmoid(gi[..., n : 2 * n] + gh[..., n : 2 * n])
    e = torch.tanh(gi[..., 2 * n :] + r * gh[..., 2 * n :])
    return u * h + (1.0 - u) * e


# The sequential kind's reference sampler: the ground truth that faster engines must match,
# written to be obviously right rather than fast. The GRU cell is evaluated once before c_t
# is known (the masked input matrix makes the coarse half independent of c_t) and once
# after, and each byte is drawn by inverting the CDF at a uniform number. The uniforms come
# from a seeded generator, or from the caller (``draws``), so another engine given the same
# numbers must produce the same samples.

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


def draw_one(logits: torch.Tensor, u: float) -> int:
    """``draw`` for one step's (256,) logits."""
    return int(draw(logits[None], torch.tensor([u], dtype=torch.float64))[0])


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
            c = draw_one(coarse_logits, float(draws[t, 0])) if force is None else int(forced_c[t])
            h = gru_cell(gi + w_c * scale_byte(torch.tensor(c)), gh, h)
            fine_logits = model.fine_logits(h)
            f = draw_one(fine_logits, float(draws[t, 1])) if force is None else int(forced_f[t])
            coarse[t], fine[t] = c, f
            c_prev, f_prev = c, f
            if trace is not None:
                trace.coarse_logits[t] = coarse_logits.numpy()
                trace.fine_logits[t] = fine_logits.numpy()
                trace.states[t] = h.numpy()
        if progress is not None:
            progress(min(start + CHUNK, length))
    return join_16bit(coarse, fine), trace
