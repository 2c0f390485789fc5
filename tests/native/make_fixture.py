"""Write tiny model files (random weights) for the sanitizer and fuzz program: dense in
each precision, and block-sparse (16x1 fp32, 4x4 int8; GRU and O1/O3 pruned to 90 %,
sparse enough that the engine keeps them sparse), and a subscale model (B=4, int8).
N = 64, so the two-thread step gives each thread one 16-row block of each half. Also
N = 38 in each precision ("-odd"): sizes off every SIMD width, for compare_isas."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vocoder import checkpoint as ckpt_mod
from vocoder.config import PruneConfig, load_config
from vocoder.export import write_model_file
from vocoder.pruning import Pruner


def main(out: Path) -> None:
    cfg = load_config("allison-16k", ["model.hidden_size=64", "model.cond_channels=5", "model.cond_blocks=1"])
    torch.manual_seed(0)
    model = ckpt_mod.build_model(cfg)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_model_file(out, cfg, state, "fp32")
    write_model_file(out.with_name(out.stem + "-bf16.wrnn"), cfg, state, "bf16")
    write_model_file(out.with_name(out.stem + "-int8.wrnn"), cfg, state, "int8")
    for block, precision in (("16x1", "fp32"), ("4x4", "int8")):
        cfg.prune = PruneConfig(sparsity=0.9, block=block, start=0, ramp=1, interval=1, layers="gru+out")
        Pruner(model, cfg.prune).step(1)
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        name = f"-sparse{block}-{precision}.wrnn"
        write_model_file(out.with_name(out.stem + name), cfg, state, precision)
    odd = load_config("allison-16k", ["model.hidden_size=38", "model.cond_channels=5", "model.cond_blocks=1"])
    torch.manual_seed(1)
    state = {k: v.detach().numpy() for k, v in ckpt_mod.build_model(odd).state_dict().items()}
    for precision in ("fp32", "bf16", "int8"):
        write_model_file(out.with_name(f"{out.stem}-odd-{precision}.wrnn"), odd, state, precision)
    sizes = ["model.hidden_size=32", "model.cond_channels=5", "model.cond_blocks=1", "model.kind=subscale"]
    window = ["subscale.batch=4", "subscale.past=2", "subscale.horizon=1", "subscale.context=6"]
    cfg = load_config("allison-16k", [*sizes, *window])
    model = ckpt_mod.build_model(cfg)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_model_file(out.with_name(out.stem + "-subscale-int8.wrnn"), cfg, state, "int8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
