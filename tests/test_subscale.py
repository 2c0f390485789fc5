"""Subscale WaveRNN: the split into sub-tensors, the staggered schedule, no leakage (through the real
sampler and model), training-path parity with the sampler, and the CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY, run_cli
from native_util import loud_fine_input, small_config, speech
from vocoder import checkpoint as ckpt_mod
from vocoder.config import Config
from vocoder.kinds import subscale_steps
from vocoder.subscale import (
    SubscaleWaveRNN,
    allowed,
    context_mask,
    from_subtensors,
    generate,
    to_subtensors,
)

B, HORIZON, PAST = 4, 2, 3
SUBSCALE = [
    "--set",
    "model.kind=subscale",
    "--set",
    f"subscale.batch={B}",
    "--set",
    f"subscale.horizon={HORIZON}",
    "--set",
    f"subscale.past={PAST}",
    "--set",
    "subscale.context=8",
]


@pytest.mark.parametrize(("t", "b"), [(1, 4), (15, 4), (16, 4), (17, 4), (100, 16), (333, 16)])
def test_to_and_from_subtensors_are_exact_inverses(t: int, b: int) -> None:
    x = np.arange(1, t + 1, dtype=np.int16)
    u = to_subtensors(x, b)
    assert u.shape == (b, -(-t // b))
    for s, i in itertools.product(range(b), range(u.shape[1])):
        assert u[s, i] == (x[b * i + s] if b * i + s < t else 0)
    np.testing.assert_array_equal(from_subtensors(u, t), x)


def test_the_staggered_schedule_only_reads_what_exists() -> None:
    """Simulated schedule: when (s, i) is generated, every sample the factorisation
    lets it see is done, and every step yields B samples once the ramp is over."""
    b, hor, length = 5, 2, 12
    done_at = {}
    for t in range(subscale_steps(b * length, b, hor)):
        active = [(s, t - s * (hor + 1)) for s in range(b) if 0 <= t - s * (hor + 1) < length]
        for s, i in active:
            for q in range(b * length):
                if allowed(i * b + s, q, b, hor):
                    assert q in done_at, f"({s}, {i}) at step {t} needs sample {q}"
        for s, i in active:
            done_at[i * b + s] = t
        if (b - 1) * (hor + 1) <= t < length:
            assert len(active) == b
    assert len(done_at) == b * length
    assert subscale_steps(b * length, b, hor) == length + (b - 1) * (hor + 1)


def test_context_mask_follows_the_factorisation() -> None:
    m = context_mask(B, PAST, HORIZON)
    for s, z, d in itertools.product(range(B), range(B), range(-PAST, HORIZON + 1)):
        i = 10
        assert bool(m[s, z, d + PAST]) == allowed(i * B + s, (i + d) * B + z, B, HORIZON)


def _subscale_config() -> Config:
    cfg = small_config(hidden=32, channels=8, blocks=1)
    cfg.model.kind = "subscale"
    cfg.subscale.batch, cfg.subscale.horizon, cfg.subscale.past, cfg.subscale.context = B, HORIZON, PAST, 8
    return cfg


@pytest.fixture(scope="module")
def model_and_speech() -> tuple[SubscaleWaveRNN, np.ndarray, np.ndarray]:
    cfg = _subscale_config()
    mel, samples = speech(cfg)
    mel = np.ascontiguousarray(mel[:, 20:23])  # 3 frames of speech: 600 samples
    samples = samples[20 * 200 : 23 * 200]
    torch.manual_seed(0)
    model = ckpt_mod.build_model(cfg)
    loud_fine_input(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    assert isinstance(model, SubscaleWaveRNN)
    return model.eval(), mel, samples


def _logits(model: SubscaleWaveRNN, mel: np.ndarray, samples: np.ndarray, path: str) -> dict[str, np.ndarray]:
    """Per-sample coarse and fine logits (T, 256) given every sample: through the
    sampler (teacher-forced) or the training forward pass (which sees the whole signal,
    so a mask that let the future in would show here even though the sampler cannot
    read samples it has not drawn yet)."""
    if path == "sampler":
        return generate(model, mel, force=samples, record=True)[1]
    with torch.no_grad():
        cond = model.conditioning(torch.from_numpy(mel)[None])
        cl, fl, _ = model.teacher_forced_subtensors(cond, torch.from_numpy(samples)[None])
    t = len(samples)
    return {
        "coarse": from_subtensors(cl[0].numpy().transpose(2, 0, 1), t).T,
        "fine": from_subtensors(fl[0].numpy().transpose(2, 0, 1), t).T,
    }


@pytest.mark.parametrize("path", ["sampler", "model"])
def test_no_leakage(model_and_speech, path: str) -> None:
    """Perturb one sample q; every position p that may not see q keeps its coarse and
    fine probabilities (and p = q keeps its coarse ones); some that may see it change."""
    model, mel, samples = model_and_speech
    base = _logits(model, mel, samples, path)
    t = len(samples)
    for q in (0, 3, 101, 254, 301, 598):
        bumped = samples.copy()
        bumped[q] = np.int16(int(bumped[q]) + 3000 if bumped[q] < 0 else int(bumped[q]) - 3000)
        got = _logits(model, mel, bumped, path)
        changed = 0
        for p in range(t):
            dc = np.abs(got["coarse"][p] - base["coarse"][p]).max()
            df = np.abs(got["fine"][p] - base["fine"][p]).max()
            if p == q:
                assert dc < 1e-5, f"coarse logits of {p} see its own sample"
            elif not allowed(p, q, B, HORIZON):
                assert dc < 1e-5 and df < 1e-5, f"position {p} sees sample {q}"
            elif dc > 1e-3:
                changed += 1
        assert changed > 0, f"no position reacts to sample {q}"
        assert q + B >= t or np.abs(got["coarse"][q + B] - base["coarse"][q + B]).max() > 1e-3


def test_training_path_matches_the_sampler(model_and_speech) -> None:
    model, mel, samples = model_and_speech
    rec = _logits(model, mel, samples, "sampler")
    fwd = _logits(model, mel, samples, "model")
    assert np.abs(fwd["coarse"] - rec["coarse"]).max() < 1e-4
    assert np.abs(fwd["fine"] - rec["fine"]).max() < 1e-4


def test_sampling_is_seeded_and_has_the_right_length(model_and_speech) -> None:
    model, mel, _ = model_and_speech
    a, _ = generate(model, mel[:, :2], seed=3)
    b, _ = generate(model, mel[:, :2], seed=3)
    assert a.dtype == np.int16 and len(a) == 400
    np.testing.assert_array_equal(a, b)


def test_train_synthesize_and_export_on_the_cli(tmp_path: Path, features_dir: Path) -> None:
    ckpt = tmp_path / "run"
    r = run_cli("train", features_dir, ckpt, "--steps", "3", *TINY, *SUBSCALE)
    assert r.exit_code == 0, r.output
    _, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(ckpt))
    assert cfg.model.kind == "subscale" and cfg.subscale.batch == B
    mel = sorted((features_dir / "mels").glob("*.npy"))[0]
    r = run_cli("synthesize", ckpt, mel, "--out-dir", tmp_path / "wavs")
    assert r.exit_code == 0, r.output
    y, sr = sf.read(tmp_path / "wavs" / f"{mel.stem}.wav", dtype="int16")
    assert sr == 16000 and len(y) == np.load(mel).shape[1] * 200
    r = run_cli("compare", ckpt, "--seconds", "0.05", "--json", tmp_path / "c.json")
    assert r.exit_code == 0, r.output
    (row,) = json.loads((tmp_path / "c.json").read_text())
    assert (row["kind"], row["engine"], row["step"]) == ("subscale", "native", 3) and row[
        "samples_per_second"
    ] > 0
    r = run_cli("export", ckpt, tmp_path / "m.wrnn")
    assert r.exit_code == 0, r.output
    r = run_cli("synthesize", tmp_path / "m.wrnn", mel, "--out-dir", tmp_path / "native")
    assert r.exit_code == 0, r.output
    y, _ = sf.read(tmp_path / "native" / f"{mel.stem}.wav", dtype="int16")
    assert len(y) == np.load(mel).shape[1] * 200
    for model in (ckpt, tmp_path / "m.wrnn"):
        r = run_cli("synthesize", model, mel, "--out-dir", tmp_path / "fold", "--fold")
        assert r.exit_code == 1 and "--fold runs sequential models; this one is subscale" in r.output
    r = run_cli(
        "train",
        features_dir,
        ckpt,
        "--steps",
        "4",
        "--resume",
        *TINY,
        *SUBSCALE[:-2],
        "--set",
        "subscale.context=9",
    )
    assert r.exit_code == 1 and "cannot change subscale.context" in r.output
