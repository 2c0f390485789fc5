"""Hostile inputs through the CLI: each bad item fails by name, the good ones still finish.

The README promises one ``error:``/``failed:`` line naming the file, exit status 1, no
traceback (the in-process runner re-raises any uncaught exception, which fails the test),
nothing written for the bad item and every good item written. Each row of a table below
is one hostile input planted among good ones.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import IDS, PREPROCESS_16K, TINY, make_dataset, run_cli
from vocoder import fold
from vocoder.audio import features
from vocoder.config import load_config


def _good_mels(features_dir: Path, dest: Path, frames: int = 20) -> list[Path]:
    dest.mkdir(parents=True)
    paths = []
    for src in sorted((features_dir / "mels").glob("*.npy"))[:2]:
        np.save(dest / src.name, np.load(src)[:, :frames])
        paths.append(dest / src.name)
    return paths


def _huge_header(path: Path) -> list[str]:
    """4 KB whose .npy header claims (80, 10^8) float32: 30 GiB if allocated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (80, 10**8)}
    )
    path.write_bytes(header.getvalue() + bytes(4000))
    return []


def _long_mel(path: Path) -> list[str]:
    """A real, readable mel of 200 s: over a --max-seconds of 60."""
    np.save(path, np.full((80, 16000), -5.0, dtype=np.float32))
    return ["--max-seconds", "60"]


def _float64_overflow(path: Path) -> list[str]:
    """Finite as float64, infinite once cast to the engine's float32."""
    np.save(path, np.full((80, 20), 1e300))
    return []


def _long_wav(path: Path) -> list[str]:
    """Copy synthesis of 3 s of audio, over a --max-seconds of 2 (refused from the header)."""
    sf.write(path, np.zeros(3 * 16000), 16000, subtype="PCM_16")
    return ["--max-seconds", "2"]


def _huge_finite_mel(path: Path) -> list[str]:
    """Finite float32 values whose exponent overflows inside Griffin-Lim."""
    np.save(path, np.full((80, 20), 3e38, dtype=np.float32))
    return []


def _fifo(path: Path) -> list[str]:
    """A named pipe with a mel's name: opening it would wait for a writer forever."""
    os.mkfifo(path)
    return []


HOSTILE_SYNTHESIS: dict[str, tuple[str, Callable[[Path], list[str]], str]] = {
    "header claims 30 GiB": ("huge.npy", _huge_header, "cannot read mel"),
    "mel over --max-seconds": ("long.npy", _long_mel, "over the limit of 4800"),
    "float64 overflows float32": ("big64.npy", _float64_overflow, "NaN or infinite values (as float32)"),
    "wav over --max-seconds": ("long.wav", _long_wav, "over the limit of 2 s"),
    "finite mel that overflows": ("overflow.npy", _huge_finite_mel, "overflow exp()"),
    "a FIFO named .npy": ("pipe.npy", _fifo, "not a regular file"),
}


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("case", HOSTILE_SYNTHESIS)
def test_a_hostile_input_fails_alone(
    tmp_path: Path, features_dir: Path, tiny_ckpt: Path, case: str, jobs: int
) -> None:
    name, make, expected = HOSTILE_SYNTHESIS[case]
    good = _good_mels(features_dir, tmp_path / "in")
    bad = tmp_path / "in" / name
    flags = make(bad)
    out = tmp_path / "out"
    r = run_cli("synthesize", tiny_ckpt, *good, bad, "-o", out, "--engine", "griffinlim", "-j", jobs, *flags)
    assert r.exit_code == 1, r.output
    failed = [line for line in r.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and str(bad) in failed[0] and expected in failed[0], r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{g.stem}.wav" for g in good)


def test_an_out_dir_that_cannot_be_made_is_refused_before_any_work(
    tmp_path: Path, features_dir: Path, tiny_ckpt: Path
) -> None:
    good = _good_mels(features_dir, tmp_path / "in")
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    for out in (blocker, blocker / "sub"):
        r = run_cli("synthesize", tiny_ckpt, *good, "-o", out, "--engine", "griffinlim")
        assert r.exit_code == 1 and f"error: {out}: cannot write outputs there" in r.output, r.output
    assert blocker.read_text() == "in the way"


def test_the_same_input_twice_is_vocoded_once(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    good = _good_mels(features_dir, tmp_path / "in")
    again = tmp_path / "in" / ".." / "in" / good[0].name
    r = run_cli(
        "synthesize",
        tiny_ckpt,
        good[0],
        again,
        tmp_path / "in",
        "-o",
        tmp_path / "out",
        "--engine",
        "griffinlim",
    )
    assert r.exit_code == 0, r.output
    assert "synthesized 2 of 2 inputs" in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{g.stem}.wav" for g in good)


@pytest.mark.parametrize("flag", ["--target", "--overlap"])
def test_fold_settings_are_bounded(tmp_path: Path, features_dir: Path, tiny_ckpt: Path, flag: str) -> None:
    good = _good_mels(features_dir, tmp_path / "in")
    r = run_cli("synthesize", tiny_ckpt, *good, "-o", tmp_path / "out", "--fold", flag, "2000000000")
    assert r.exit_code == 1 and f"error: {flag} 2000000000: the" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_a_fold_segment_is_never_longer_than_the_input_plus_the_overlap() -> None:
    for length, target, overlap in [
        (16000, 1_000_000, 550),
        (100, 11000, 550),
        (1, 10, 3),
        (5000, 1000, 100),
    ]:
        pos = fold.positions(length, target, overlap)
        assert pos.shape[1] <= length + overlap + max(0, 2 * overlap - length), (length, target, overlap)
        segments = np.arange(pos.size, dtype=np.float64).reshape(pos.shape)
        assert fold.unfold(segments, length, target, overlap).shape == (length,)
    # a 1 s input with a 1M-sample target is one segment of the input plus the overlap
    assert fold.positions(16000, 1_000_000, 550).shape == (1, 16550)
    # a layout that already has several segments is unchanged
    assert fold.positions(5000, 1000, 100).shape == (5, 1200)


def test_export_onto_a_directory_or_under_a_missing_one_is_one_line(tmp_path: Path, tiny_ckpt: Path) -> None:
    before = sorted(p.name for p in tiny_ckpt.iterdir())
    r = run_cli("export", tiny_ckpt, tiny_ckpt)
    assert r.exit_code == 1 and f"error: {tiny_ckpt}: is a directory" in r.output, r.output
    assert sorted(p.name for p in tiny_ckpt.iterdir()) == before
    deep = tmp_path / "a" / "b" / "m.wrnn"
    r = run_cli("export", tiny_ckpt, deep)
    assert r.exit_code == 1 and f"error: {deep}: {tmp_path / 'a'} does not exist" in r.output, r.output
    assert not (tmp_path / "a").exists()


def test_metadata_lines_are_read_tolerantly_and_bad_ones_skipped(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    meta = data / "metadata.csv"
    lines = meta.read_bytes().splitlines()
    bad = [b"../escape|text", lines[1], b"AL-\xff\xfe|bad bytes in the id"]
    # a BOM before the first id and a latin-1 byte in an unused text column
    meta.write_bytes(b"\xef\xbb\xbf" + lines[0] + b" caf\xe9\n" + b"\n".join(lines[1:] + bad) + b"\n")
    feats = tmp_path / "features"
    r = run_cli("preprocess", data, feats, *PREPROCESS_16K)
    assert r.exit_code == 0, r.output
    ids = {p.stem for p in (feats / "mels").glob("*.npy")}
    assert ids == set(IDS)  # the BOM did not change the first id
    skipped = (feats / "skipped.tsv").read_text().splitlines()
    assert len(skipped) == 3, skipped
    assert any("invalid utterance id '../escape'" in s for s in skipped)
    assert any(f"duplicate utterance id '{IDS[1]}'" in s for s in skipped)
    assert any("line 8: invalid utterance id" in s for s in skipped)


def _float_wav(path: Path, peak: float, seconds: int = 1) -> np.ndarray:
    t = np.arange(seconds * 16000) / 16000
    y = (peak * np.sin(2 * np.pi * 220 * t) * np.hanning(len(t))).astype(np.float32)
    sf.write(path, y, 16000, subtype="FLOAT")
    return y


def test_audio_above_full_scale_is_scaled_for_mel_and_target_alike(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", IDS[:3])
    y = _float_wav(data / "wavs" / "loud.wav", 2.5)
    with (data / "metadata.csv").open("a") as f:
        f.write("loud|a sine at 2.5 times full scale\n")
    feats = tmp_path / "features"
    r = run_cli("preprocess", data, feats, *PREPROCESS_16K)
    assert r.exit_code == 0, r.output
    assert any(line.startswith("note loud:") and "peak 2.5" in line for line in r.output.splitlines()), (
        r.output
    )
    cfg = load_config("allison-16k")
    target = np.load(feats / "audio" / "loud.npy")
    scaled = y * (32767 / 32768 / float(np.max(np.abs(y))))
    mel, expected = features(scaled, cfg.audio)
    np.testing.assert_array_equal(target, expected)
    np.testing.assert_allclose(np.load(feats / "mels" / "loud.npy"), mel, atol=1e-5)
    # the sine's peak reaches full scale once, where clipping would leave a plateau
    assert np.count_nonzero(np.abs(target.astype(np.int32)) >= 32767) <= 2


def test_a_truncated_wav_is_skipped_by_name(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", IDS[:3])
    _float_wav(data / "wavs" / "cut.wav", 0.5, seconds=3)  # 2 s remain: long enough to train on
    raw = (data / "wavs" / "cut.wav").read_bytes()
    (data / "wavs" / "cut.wav").write_bytes(raw[: len(raw) * 2 // 3])
    with (data / "metadata.csv").open("a") as f:
        f.write("cut|a wav cut short by a failed copy\n")
    r = run_cli("preprocess", data, tmp_path / "features", *PREPROCESS_16K)
    assert r.exit_code == 0, r.output
    skipped = [line for line in r.output.splitlines() if line.startswith("skipped cut:")]
    assert len(skipped) == 1 and "cut.wav: truncated" in skipped[0], r.output
    assert not (tmp_path / "features" / "mels" / "cut.npy").exists()


def test_damaged_features_are_redone_on_rerun_and_named_by_train(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data")
    feats = tmp_path / "features"
    assert run_cli("preprocess", data, feats, *PREPROCESS_16K).exit_code == 0
    whole = {p.name: p.read_bytes() for p in (feats / "audio").iterdir()}
    audio = feats / "audio" / f"{IDS[0]}.npy"
    audio.write_bytes(audio.read_bytes()[:200])  # cut by a kill or a full disk
    (feats / "mels" / f"{IDS[1]}.npy").write_bytes(b"")
    train_split = (feats / "train.txt").read_text().split()
    damaged = feats / "mels" / f"{train_split[0]}.npy"
    r = run_cli("preprocess", data, feats, *PREPROCESS_16K)
    assert r.exit_code == 0 and "preprocessed 2 new, reused 3" in r.output, r.output
    assert {p.name: p.read_bytes() for p in (feats / "audio").iterdir()} == whole
    damaged.write_bytes(b"")
    r = run_cli("train", feats, tmp_path / "run", "--steps", "1", *TINY)
    assert r.exit_code == 1 and f"error: {damaged}: cannot read features" in r.output, r.output
