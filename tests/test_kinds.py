"""The model kinds: the torch-free facts (``vocoder.kinds``) and the model classes
(``checkpoint.MODEL_CLASSES``) name the same kinds, and each fact agrees with what the
kind's own sampler and model file do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vocoder.checkpoint import MODEL_CLASSES, build_model
from vocoder.config import load_config
from vocoder.kinds import KINDS, kind_of

SMALL = ["model.hidden_size=16", "model.cond_channels=8", "model.cond_blocks=1", "audio.n_mels=20"]
SUB = ["subscale.batch=4", "subscale.horizon=1", "subscale.past=2", "subscale.context=4"]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_builds_its_model_class(name: str) -> None:
    cfg = load_config(None, [*SMALL, *SUB, f"model.kind={name}"])
    assert set(KINDS) == set(MODEL_CLASSES)
    assert kind_of(cfg).name == name
    assert type(build_model(cfg)) is MODEL_CLASSES[name]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_samples_per_step_counts_the_samplers_steps(name: str) -> None:
    """The figure bench divides by is the sampler's own: T samples over the steps the
    model's ``sample`` takes, counted by the GRU cell's calls."""
    cfg = load_config(None, [*SMALL, *SUB, f"model.kind={name}", "audio.hop_length=40"])
    torch.manual_seed(0)
    model = build_model(cfg)
    frames = 3
    calls = []
    model.coarse_logits = lambda h, f=model.coarse_logits: calls.append(1) or f(h)
    audio = model.sample(np.zeros((20, frames), np.float32), seed=0)
    assert len(audio) == frames * 40
    assert kind_of(cfg).samples_per_step(cfg, len(audio)) == pytest.approx(len(audio) / len(calls))
