"""Fold mode: the segment layout and cross-fade against a slow reference, the properties
the joins must have (flat level, no gaps, untouched ends), the batched torch sampler
against the sequential one, and `synthesize --fold` on both sampling engines."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from native_util import random_model, save_checkpoint, small_config, speech, state_of
from vocoder import fold, sampler
from vocoder import model as model_mod
from vocoder.errors import VocoderError
from vocoder.export import write_model_file

LAYOUTS = [(1000, 50, 100), (5000, 400, 60), (5000, 400, 61), (777, 100, 0), (300, 1000, 20), (1, 5, 3)]


def reference_unfold(segments: np.ndarray, length: int, target: int, overlap: int) -> np.ndarray:
    """Sample by sample from the layout's definition: segment b step s is position
    b (T + O) + s; inside a shared stretch the incoming segment is silent for O // 2
    steps and then weighted sin, the outgoing one cos, of a quarter turn at bin centres."""
    count, steps = segments.shape
    silent, blend = overlap // 2, overlap - overlap // 2
    out = np.zeros(length)
    for b in range(count):
        for s in range(steps):
            p = b * (target + overlap) + s
            if p >= length:
                continue
            w = 1.0
            if b > 0 and s < overlap:
                w = 0.0 if s < silent else np.sin(np.pi / 2 * (s - silent + 0.5) / blend)
            j = s - (target + overlap)
            if b < count - 1 and j >= 0:
                w = 1.0 if j < silent else np.cos(np.pi / 2 * (j - silent + 0.5) / blend)
            out[p] += w * segments[b, s]
    return out


@pytest.mark.parametrize(("length", "target", "overlap"), LAYOUTS)
def test_layout_covers_the_utterance_with_the_fewest_segments(length: int, target: int, overlap: int) -> None:
    pos = fold.positions(length, target, overlap)
    count = pos.shape[0]
    fitted = fold.fit(length, target, overlap)
    # fitting to the input only ever shrinks a single-segment layout
    assert fitted == (target, overlap) or count == 1
    target, overlap = fitted
    assert pos.shape == (count, target + 2 * overlap)
    assert count * (target + overlap) + overlap >= length
    assert count == 1 or (count - 1) * (target + overlap) + overlap < length
    for b in range(count):
        expected = np.minimum(b * (target + overlap) + np.arange(target + 2 * overlap), length - 1)
        np.testing.assert_array_equal(pos[b], expected)


@pytest.mark.parametrize(("length", "target", "overlap"), LAYOUTS)
def test_unfold_matches_the_slow_reference(length: int, target: int, overlap: int) -> None:
    pos = fold.positions(length, target, overlap)
    segments = np.random.default_rng(0).normal(size=pos.shape)
    got = fold.unfold(segments, length, target, overlap)
    np.testing.assert_allclose(got, reference_unfold(segments, length, target, overlap), atol=1e-12)


def test_fold_then_unfold_gives_back_the_positions_outside_the_blends() -> None:
    """Nothing generated: each segment holds its positions; wherever a single segment is
    used (everything but the blends) unfolding returns every position exactly once."""
    length, target, overlap = 4321, 500, 80
    pos = fold.positions(length, target, overlap)
    out = fold.unfold(pos.astype(np.float64), length, target, overlap)
    fade_in, fade_out = fold.fades(overlap)
    gain = np.ones(length)
    for b in range(1, pos.shape[0]):
        start = b * (target + overlap)
        stretch = slice(start, min(start + overlap, length))
        gain[stretch] = (fade_in + fade_out)[: stretch.stop - start]
    np.testing.assert_allclose(out, np.arange(length) * gain, rtol=1e-12)
    assert np.count_nonzero(gain != 1.0) == (pos.shape[0] - 1) * (overlap - overlap // 2)


@pytest.mark.parametrize("overlap", [1, 2, 7, 550])
def test_fades_are_equal_power(overlap: int) -> None:
    fade_in, fade_out = fold.fades(overlap)
    np.testing.assert_allclose(fade_in**2 + fade_out**2, 1.0, atol=1e-12)
    blend = slice(overlap // 2, overlap)
    assert np.all(fade_in[blend] > 0) and np.all(fade_in[blend] < 1)
    assert np.all(np.diff(fade_in) >= 0) and np.all(np.diff(fade_out) <= 0)
    np.testing.assert_array_equal(fade_in[: overlap // 2], 0.0)


def test_level_stays_flat_across_joins_of_uncorrelated_segments() -> None:
    """Independent unit-variance noise per segment: the expected power is
    fade_in^2 + fade_out^2 = 1 through every blend (an equal-gain fade would fall to 0.5
    in the middle). Averaged over 400 joins, in bins of 8 samples."""
    target, overlap, count = 64, 64, 401
    length = count * (target + overlap) + overlap
    rng = np.random.default_rng(1)
    power = np.zeros(target + overlap)
    trials = 4
    for _ in range(trials):
        segments = rng.normal(size=(count, target + 2 * overlap))
        out = fold.unfold(segments, length, target, overlap)
        # Windows that start half a target before each join's shared stretch.
        for b in range(1, count):
            start = b * (target + overlap) - target // 2
            power += out[start : start + target + overlap] ** 2
    power /= trials * (count - 1)
    binned = power.reshape(-1, 8).mean(axis=1)
    assert np.all(np.abs(binned - 1.0) < 0.12), binned


def test_no_position_loses_its_level_at_a_join() -> None:
    """Every output sample has total weight between 1 and sqrt(2) (equal power on
    identical inputs), so a constant never dips or drops to zero at a join."""
    length, target, overlap = 10_000, 1000, 300
    segments = np.full(fold.positions(length, target, overlap).shape, 1000, np.int16)
    out = fold.unfold(segments, length, target, overlap)
    assert out.dtype == np.int16 and len(out) == length
    assert out.min() >= 1000 and out.max() <= round(1000 * np.sqrt(2))
    assert np.count_nonzero(out == 0) == 0


def test_first_and_last_segments_keep_their_outer_ends() -> None:
    length, target, overlap = 10_000, 1000, 300
    pos = fold.positions(length, target, overlap)
    segments = np.random.default_rng(2).integers(-30000, 30000, pos.shape).astype(np.int16)
    out = fold.unfold(segments, length, target, overlap)
    np.testing.assert_array_equal(out[: target + overlap], segments[0, : target + overlap])
    last = (pos.shape[0] - 1) * (target + overlap)
    np.testing.assert_array_equal(out[last + overlap :], segments[-1, overlap : length - last])


def test_int16_blend_rounds_and_clips() -> None:
    length, target, overlap = 300, 100, 40
    segments = np.full(fold.positions(length, target, overlap).shape, 32767, np.int16)
    out = fold.unfold(segments, length, target, overlap)
    assert out.max() == 32767  # 32767 * (fade_in + fade_out) clipped
    odd = np.full(segments.shape, 3, np.int16)
    ref = np.rint(reference_unfold(odd, length, target, overlap)).astype(np.int16)
    np.testing.assert_array_equal(fold.unfold(odd, length, target, overlap), ref)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(VocoderError, match="--target 0"):
        fold.positions(100, 0, 10)
    with pytest.raises(VocoderError, match="--overlap -1"):
        fold.positions(100, 10, -1)
    with pytest.raises(ValueError, match="segments must have shape"):
        fold.unfold(np.zeros((1, 5)), 100, 10, 2)


@pytest.fixture(scope="module")
def small():
    cfg = small_config()
    mel, _ = speech(cfg)
    mel = mel[:, 20:32]  # 12 frames: 2400 samples
    return cfg, mel, random_model(cfg, mel)


def test_batched_sampler_with_one_sequence_is_the_sequential_sampler(small) -> None:
    cfg, mel, model = small
    length = mel.shape[1] * cfg.audio.hop_length
    pos = fold.positions(length, length, 16)
    assert pos.shape[0] == 1
    draws = fold.draws(*pos.shape, seed=3)
    got, trace = sampler.generate_batch(model, mel, pos, draws, record=True)
    ref, ref_trace = model_mod.generate(model, mel, draws=draws[0, :length], record=True)
    np.testing.assert_array_equal(got[0, :length], ref)
    np.testing.assert_allclose(trace.coarse_logits[0, :length], ref_trace.coarse_logits, atol=1e-4)
    np.testing.assert_allclose(trace.states[0, :length], ref_trace.states, atol=1e-5)


def test_batching_segments_is_exact(small) -> None:
    cfg, mel, model = small
    length = mel.shape[1] * cfg.audio.hop_length
    pos = fold.positions(length, 500, 60)
    assert pos.shape[0] == 5
    draws = fold.draws(*pos.shape, seed=4)
    together, trace = sampler.generate_batch(model, mel, pos, draws, record=True)
    for b in range(pos.shape[0]):
        alone, alone_trace = sampler.generate_batch(model, mel, pos[b : b + 1], draws[b : b + 1], record=True)
        np.testing.assert_array_equal(together[b], alone[0])
        np.testing.assert_allclose(trace.fine_logits[b], alone_trace.fine_logits[0], atol=1e-4)
    assert len({bytes(s) for s in together}) == pos.shape[0]  # own draws: segments differ


def test_torch_fold_is_seeded_and_unfolded(small) -> None:
    cfg, mel, model = small
    length = mel.shape[1] * cfg.audio.hop_length
    a = sampler.generate_fold(model, mel, 5, 700, 50)
    pos = fold.positions(length, 700, 50)
    segments, _ = sampler.generate_batch(model, mel, pos, fold.draws(*pos.shape, 5))
    np.testing.assert_array_equal(a, fold.unfold(segments, length, 700, 50))
    assert a.dtype == np.int16 and len(a) == length


@pytest.fixture(scope="module")
def model_files(small, tmp_path_factory: pytest.TempPathFactory):
    cfg, mel, model = small
    d = tmp_path_factory.mktemp("fold-cli")
    wrnn = d / "m.wrnn"
    write_model_file(wrnn, cfg, state_of(model), "fp32")
    ckpt = save_checkpoint(d / "m.pt", model, cfg)
    np.save(d / "utt.npy", mel)
    return cfg, d, wrnn, ckpt


@pytest.mark.parametrize("engine", ["native", "torch"])
def test_cli_synthesize_fold(model_files, engine: str) -> None:
    cfg, d, wrnn, ckpt = model_files
    model = wrnn if engine == "native" else ckpt
    out = d / f"out-{engine}"
    r = run_cli("synthesize", model, d / "utt.npy", "-o", out, "--engine", engine, "--fold", "--target", 800,
                "--overlap", 100)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "fold mode" in r.output
    y, sr = sf.read(out / "utt.wav", dtype="int16")
    assert sr == cfg.audio.sample_rate and len(y) == 12 * cfg.audio.hop_length
    assert np.count_nonzero(y) > len(y) // 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "0"], "--target 0"),
        (["--overlap", "-5"], "--overlap -5"),
        (["--engine", "griffinlim"], "no fold mode"),
    ],
)
def test_cli_fold_errors_are_one_line(model_files, args: list[str], message: str) -> None:
    _, d, wrnn, _ = model_files
    r = run_cli("synthesize", wrnn, d / "utt.npy", "-o", d / "bad", "--fold", *args)
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.output
    assert not (d / "bad").exists()


def test_fold_positions_need_samples() -> None:
    with pytest.raises(VocoderError, match="no samples"):
        fold.positions(0, 10, 2)
