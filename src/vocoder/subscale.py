"""Subscale WaveRNN (Kalchbrenner et al. 2018, section 5): B samples per step.

Folding. A waveform u of length T is padded at the end with zeros to L * B samples,
L = ceil(T / B), and split into B sub-tensors: U[s, i] = u[B i + s]. ``from_subtensors``
inverts it exactly and drops the padding.

Factorisation. Sample (s, i) is conditioned on its own sub-tensor's past (U[s, k],
k < i) and on the earlier sub-tensors up to F steps into the future (U[z, k], z < s,
k <= i + F), nothing else. Generation staggers sub-tensor s by s (F + 1) steps, so at
step t every sub-tensor with 0 <= t - s (F + 1) < L produces one sample, and all the
context it may see already exists: T / B + (B - 1)(F + 1) steps instead of T.

Model. The sequential WaveRNN (model.py), run over i with the B sub-tensors as B
sequences of one batch, each with its own state. Its byte input is the waveform's
previous sample u[B i + s - 1] = U[s - 1, i] where the factorisation allows it (s >= 1),
and the sub-tensor's own previous sample U[0, i - 1] for s = 0 (zero before the start):
the nearest neighbour reaches the GRU directly, as in the sequential model, instead of
only through the context layer (the own previous sample, 16 samples back at B=16,
learned more slowly: README, Subscale WaveRNN). Then the current coarse byte for the
fine half (the dual softmax as before), the mel conditioning at the sample's own
position B i + s, and a context vector from a masked layer: for (s, i) it reads the
window U[z, i - P .. i + F] of all sub-tensors (samples in [-1, 1], zeros outside the
signal) through per-s weights whose disallowed entries (z > s; z == s with k >= i) are
masked to zero, then a ReLU: ctx = relu((W_s * M_s) X_{s,i} + b_s), D =
``subscale.context`` units. The mask makes
leakage impossible by construction, and a test checks it through the sampler.

Cost per step (all B sub-tensors): the GRU's recurrent and output products with B
columns (each weight read once per step for B samples), plus B * D * B (P + F + 1)
multiply-adds for the context layer (147k for B=16, P=F=4, D=64: ~9k per sample).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from vocoder.audio import join_16bit, split_16bit
from vocoder.config import Config, ModelConfig, SubscaleConfig
from vocoder.kinds import subscale_steps
from vocoder.model import Losses, WaveRNN, byte_losses, draw, gru_cell, make_draws, scale_byte


def to_subtensors(x: np.ndarray, b: int) -> np.ndarray:
    """(..., T) -> (..., B, L): U[..., s, i] = x[..., B i + s], zero-padded at the end."""
    t = x.shape[-1]
    length = -(-t // b)
    pad = np.zeros((*x.shape[:-1], length * b - t), x.dtype)
    return np.swapaxes(np.concatenate([x, pad], axis=-1).reshape(*x.shape[:-1], length, b), -1, -2)


def from_subtensors(u: np.ndarray, t: int) -> np.ndarray:
    """(..., B, L) -> (..., T): the inverse of ``to_subtensors`` (padding dropped)."""
    return np.swapaxes(u, -1, -2).reshape(*u.shape[:-2], -1)[..., :t]


def context_mask(b: int, past: int, horizon: int) -> torch.Tensor:
    """(B, B, P + F + 1): entry [s, z, d] is 1 when U[z, i + d] may condition U[s, i]."""
    s = torch.arange(b)[:, None, None]
    z = torch.arange(b)[None, :, None]
    d = torch.arange(-past, horizon + 1)[None, None, :]
    return ((z < s) | ((z == s) & (d < 0))).float()


def allowed(p: int, q: int, b: int, horizon: int) -> bool:
    """Whether sample q may condition sample p under the factorisation (any past window)."""
    i, s = divmod(p, b)
    k, z = divmod(q, b)
    return (z == s and k < i) or (z < s and k <= i + horizon)


class SubscaleWaveRNN(WaveRNN):
    """WaveRNN over B sub-tensors with a masked context layer (module docstring)."""

    def __init__(self, cfg: ModelConfig, sub: SubscaleConfig, n_mels: int, hop_length: int) -> None:
        super().__init__(cfg, n_mels, hop_length, extra_inputs=sub.context)
        self.b, self.past, self.horizon = sub.batch, sub.past, sub.horizon
        self.width = sub.past + sub.horizon + 1
        fan_in = sub.batch * self.width
        self.register_buffer(
            "context_mask", context_mask(sub.batch, sub.past, sub.horizon).reshape(sub.batch, 1, -1)
        )
        self.ctx_weight = nn.Parameter(
            torch.empty(sub.batch, sub.context, fan_in).uniform_(-1, 1) / fan_in**0.5
        )
        self.ctx_bias = nn.Parameter(torch.zeros(sub.batch, sub.context))

    @classmethod
    def from_config(cls, cfg: Config) -> SubscaleWaveRNN:
        return cls(cfg.model, cfg.subscale, cfg.audio.n_mels, cfg.audio.hop_length)

    def context_windows(self, u: torch.Tensor) -> torch.Tensor:
        """Folded samples (n, B, L) in [-1, 1] -> windows (n, L, B * (P + F + 1))."""
        x = F.pad(u, (self.past, self.horizon))
        win = x.unfold(-1, self.width, 1)  # (n, B_z, L, W)
        return win.permute(0, 2, 1, 3).reshape(u.shape[0], u.shape[2], -1)

    def masked_context_weight(self) -> torch.Tensor:
        """(B, D, K): sub-tensor s's context weights with its disallowed inputs zeroed."""
        return self.ctx_weight * self.context_mask

    def context(self, windows: torch.Tensor, subs: torch.Tensor) -> torch.Tensor:
        """Windows (n, K) of the sub-tensors ``subs`` (n,) -> context vectors (n, D)."""
        w = self.masked_context_weight()[subs]
        return F.relu(torch.einsum("nk,ndk->nd", windows, w) + self.ctx_bias[subs])

    def teacher_forced_subtensors(
        self, cond: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample conditioning (n, B*L, C) and int16 samples (n, B*L) -> coarse and
        fine logits (n, B, L, 256) and states (n, B, L, N), every position teacher-forced."""
        n, total = audio.shape
        b, length = self.b, total // self.b
        u = audio.reshape(n, length, b).transpose(1, 2)  # (n, B, L)
        cond_f = cond.reshape(n, length, b, -1).transpose(1, 2)  # (n, B, L, C)
        win = self.context_windows(u.float() / 32768.0)  # (n, L, K): the same window for every s
        ctx = torch.einsum("nlk,sdk->nsld", win, self.masked_context_weight())
        ctx = F.relu(ctx + self.ctx_bias[None, :, None, :])  # (n, B, L, D)
        cond_all = torch.cat([cond_f.reshape(n * b, length, -1), ctx.reshape(n * b, length, -1)], dim=-1)
        prev = previous_samples(u)
        c_prev, f_prev = (v.reshape(n * b, length) for v in split_16bit(prev))
        c_cur, _ = (v.reshape(n * b, length) for v in split_16bit(u))
        cl, fl, st = self.teacher_forced(cond_all, c_prev, f_prev, c_cur)
        return cl.reshape(n, b, length, -1), fl.reshape(n, b, length, -1), st.reshape(n, b, length, -1)

    def losses(
        self, cond: torch.Tensor, coarse: torch.Tensor, fine: torch.Tensor, *_: torch.Tensor
    ) -> Losses:
        """Training's losses on a batch of windows, as ``WaveRNN.losses``; the previous
        bytes the sub-tensors read come from the window itself (``previous_samples``), so
        the batch's sequential previous bytes (the last arguments) go unused."""
        return subtensor_losses(self, cond, join_16bit(coarse, fine))

    def sample(self, mel: np.ndarray, seed: int) -> np.ndarray:
        """The staggered subscale sampler (``generate``)."""
        return generate(self, mel, seed=seed)[0]


def previous_samples(u: torch.Tensor) -> torch.Tensor:
    """Folded samples (..., B, L) -> each position's byte-input sample: U[s - 1, i] (the
    waveform's previous sample) for s >= 1, U[0, i - 1] (zero at i = 0) for s = 0."""
    own = F.pad(u[..., :1, :], (1, 0))[..., :-1]
    return torch.cat([own, u[..., :-1, :]], dim=-2)


def subtensor_losses(model: SubscaleWaveRNN, cond: torch.Tensor, audio: torch.Tensor) -> Losses:
    """Mean coarse and fine cross-entropy (nats) over a batch of windows.

    Windows are cut to a multiple of B samples from their start; the split is relative
    to the window start, which is what inference does from the utterance start.
    """
    total = audio.shape[1] // model.b * model.b
    cond, audio = cond[:, :total], audio[:, :total]
    cl, fl, _ = model.teacher_forced_subtensors(cond, audio)
    u = audio.reshape(audio.shape[0], -1, model.b).transpose(1, 2)
    return byte_losses(cl, fl, *split_16bit(u))


@torch.no_grad()
def generate(
    model: SubscaleWaveRNN,
    mel: np.ndarray,
    seed: int = 0,
    draws: np.ndarray | None = None,
    force: np.ndarray | None = None,
    record: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    """The staggered subscale sampler: mel (n_mels, T/hop) -> T int16 samples.

    At step t, sub-tensor s (if 0 <= i = t - s (F + 1) < L) draws sample B i + s from its
    own state, with ``draws[B i + s]`` (two uniforms per sample, in waveform order, as
    the sequential sampler). ``force`` teacher-forces every sample through the sampler;
    ``record`` returns per-sample coarse and fine logits (T, 256) in waveform order.
    Padding positions (B i + s >= T) are fixed at zero and never drawn.
    """
    model = model.float().cpu().eval()
    b, hor = model.b, model.horizon
    cond = model.conditioning(torch.from_numpy(mel).float()[None])[0]  # (T, C)
    t_total = cond.shape[0]
    length = -(-t_total // b)
    cond = torch.cat([cond, cond[-1:].expand(length * b - t_total, -1)])
    cond_f = cond.reshape(length, b, -1).transpose(0, 1)  # (B, L, C)
    if draws is None:
        draws = make_draws(t_total, seed)
    # waveform-order tables padded to L * B: uniforms, and the forced samples if any
    u_table = torch.from_numpy(np.concatenate([draws, np.zeros((length * b - t_total, 2))]))
    forced = None if force is None else split_16bit(torch.from_numpy(to_subtensors(np.asarray(force), b)))
    # generated samples in [-1, 1] for the context layer, with its P / F zero margins
    u = torch.zeros(b, model.past + length + model.horizon)
    out = torch.zeros(b, length, dtype=torch.long)
    logits = {"coarse": np.zeros((t_total, 256), np.float32), "fine": np.zeros((t_total, 256), np.float32)}
    w_cprev, w_fprev, w_c, w_in = model.input_columns()
    h = torch.zeros(b, model.hidden_size)
    starts = torch.arange(b) * (hor + 1)
    for step in range(subscale_steps(t_total, b, hor)):
        active = (step - starts >= 0) & (step - starts < length)
        subs = torch.nonzero(active).flatten()  # the sub-tensors that produce a sample now
        pos = step - starts[subs]  # and the index i each produces
        p = pos * b + subs  # waveform positions
        real = p < t_total  # the rest is end padding, fixed at zero
        win = torch.stack([u[:, i : i + model.width].reshape(-1) for i in pos.tolist()])
        feats = torch.cat([cond_f[subs, pos], model.context(win, subs)], dim=1)
        # the byte input (previous_samples): U[s - 1, i] was drawn F + 1 steps ago
        own = torch.where(pos > 0, out[0, (pos - 1).clamp(min=0)], 0)
        prev = torch.where(subs > 0, out[(subs - 1).clamp(min=0), pos], own)
        c_prev, f_prev = split_16bit(prev)
        gi = feats @ w_in.T + model.gru.bias_ih_l0 + scale_byte(c_prev)[:, None] * w_cprev
        gi = gi + scale_byte(f_prev)[:, None] * w_fprev
        gh = h[subs] @ model.gru.weight_hh_l0.T + model.gru.bias_hh_l0
        coarse_logits = model.coarse_logits(gru_cell(gi, gh, h[subs]))
        c = forced[0][subs, pos] if forced is not None else draw(coarse_logits, u_table[p, 0])
        c = torch.where(real, c, 128)
        h[subs] = gru_cell(gi + scale_byte(c)[:, None] * w_c, gh, h[subs])
        fine_logits = model.fine_logits(h[subs])
        f = forced[1][subs, pos] if forced is not None else draw(fine_logits, u_table[p, 1])
        f = torch.where(real, f, 0)
        out[subs, pos] = join_16bit(c, f).long()
        u[subs, pos + model.past] = out[subs, pos].float() / 32768.0
        if record:
            keep = p[real].numpy()
            logits["coarse"][keep] = coarse_logits[real].numpy()
            logits["fine"][keep] = fine_logits[real].numpy()
    return from_subtensors(out.numpy(), t_total).astype(np.int16), logits if record else None
