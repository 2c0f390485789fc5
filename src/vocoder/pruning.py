"""Gradual block-magnitude pruning (Kalchbrenner et al. 2018, section 4.1; Zhu & Gupta 2017).

The target sparsity rises as z(t) = Z * (1 - (1 - (t - t0) / S)^3) from step t0 to t0 + S
and stays at Z afterwards. Every ``interval`` steps in that window each pruned matrix gets
a new mask: its weights are cut into r x c blocks, each block is scored by its mean
absolute weight, and the lowest-scoring blocks are zeroed, so a matrix always holds whole
blocks only and its sparsity equals the target to within one block. The recurrent gate
matrices R_u, R_r and R_e are pruned separately (each is N x N); optionally so are the
output layers O1 and O3. Masks are reapplied after every optimiser step, so a pruned
weight is exactly zero at every saved step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vocoder.config import PruneConfig
from vocoder.errors import VocoderError
from vocoder.model import WaveRNN

GATES = ("R_r", "R_u", "R_e")  # row blocks of weight_hh_l0 in PyTorch's gate order (r, z, n)


def parse_block(text: str) -> tuple[int, int]:
    """'16x1' -> (16, 1): block rows by block columns (the config checked the form)."""
    rows, cols = text.split("x")
    return int(rows), int(cols)


def target_sparsity(step: int, final: float, start: int, ramp: int) -> float:
    """z(t) = Z (1 - (1 - (t - t0) / S)^3) on [t0, t0 + S]; 0 before, Z after."""
    if step <= start:
        return 0.0
    if step >= start + ramp:
        return final
    return final * (1.0 - (1.0 - (step - start) / ramp) ** 3)


def block_mask(weight: torch.Tensor, sparsity: float, block: tuple[int, int]) -> torch.Tensor:
    """A 0/1 mask of ``weight``'s shape zeroing the round(sparsity * blocks) weakest blocks.

    Blocks are scored by mean absolute weight; ties are broken by position, so the mask is
    deterministic.
    """
    r, c = block
    rows, cols = weight.shape
    if rows % r or cols % c:
        raise VocoderError(f"prune.block {r}x{c} does not tile a {rows}x{cols} matrix")
    scores = weight.detach().abs().reshape(rows // r, r, cols // c, c).mean(dim=(1, 3))
    n_blocks = scores.numel()
    n_zero = round(sparsity * n_blocks)
    keep = torch.ones(n_blocks, dtype=weight.dtype, device=weight.device)
    if n_zero > 0:
        order = torch.argsort(scores.flatten(), stable=True)
        keep[order[:n_zero]] = 0.0
    blocks = keep.reshape(rows // r, cols // c)
    return blocks.repeat_interleave(r, dim=0).repeat_interleave(c, dim=1)


@dataclass
class Target:
    """One pruned matrix: a view into a model parameter."""

    name: str
    param: torch.Tensor
    rows: slice

    def weight(self) -> torch.Tensor:
        return self.param.data[self.rows]


def pruned_matrices(model: WaveRNN, layers: str) -> list[Target]:
    """R_r, R_u, R_e (slices of the recurrent matrix), and O1, O3 when layers is 'gru+out'."""
    n = model.hidden_size
    w = model.gru.weight_hh_l0
    out = [Target(g, w, slice(i * n, (i + 1) * n)) for i, g in enumerate(GATES)]
    if layers == "gru+out":
        out += [Target("O1", model.O1.weight, slice(None)), Target("O3", model.O3.weight, slice(None))]
    return out


class Pruner:
    """Owns the masks; ``step`` updates them on schedule and zeroes the pruned weights."""

    def __init__(self, model: WaveRNN, cfg: PruneConfig) -> None:
        self.cfg = cfg
        self.block = parse_block(cfg.block)
        self.targets = pruned_matrices(model, cfg.layers)
        self.masks = {t.name: torch.ones_like(t.weight()) for t in self.targets}
        for t in self.targets:  # fail at start, not at the first mask update
            block_mask(t.weight(), 0.0, self.block)

    def sparsity(self) -> float:
        """Fraction of zeros over all pruned matrices' masks."""
        total = sum(m.numel() for m in self.masks.values())
        return 1.0 - sum(float(m.sum()) for m in self.masks.values()) / total

    @torch.no_grad()
    def step(self, step: int) -> None:
        """Call after each optimiser step: new masks every ``interval`` steps, then apply."""
        c = self.cfg
        end = c.start + c.ramp
        if c.start < step <= end and ((step - c.start) % c.interval == 0 or step == end):
            z = target_sparsity(step, c.sparsity, c.start, c.ramp)
            for t in self.targets:
                self.masks[t.name] = block_mask(t.weight() * self.masks[t.name], z, self.block)
        for t in self.targets:
            t.weight().mul_(self.masks[t.name])

    def apply(self, model: WaveRNN) -> None:
        """Zero the pruned weights of another copy of the model (a weight average)."""
        for t in pruned_matrices(model, self.cfg.layers):
            t.weight().mul_(self.masks[t.name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: m.clone() for name, m in self.masks.items()}

    def load_state_dict(self, masks: dict[str, torch.Tensor]) -> None:
        if set(masks) != set(self.masks):
            raise VocoderError(f"checkpoint holds masks for {sorted(masks)}, expected {sorted(self.masks)}")
        for name, m in masks.items():
            if m.shape != self.masks[name].shape:
                raise VocoderError(f"checkpoint mask {name} has shape {tuple(m.shape)}")
            self.masks[name] = m.to(self.masks[name].device, self.masks[name].dtype)
