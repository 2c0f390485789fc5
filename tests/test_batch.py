"""Batch synthesis for long jobs: shards, resume after a kill, input lists, bad inputs.

The batch logic does not depend on the engine, so these tests use the quick Griffin-Lim
one on short mels cut from real speech.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from vocoder.errors import VocoderError
from vocoder.synthesize import parse_shard, read_input_list, select_shard


def _short_mels(features_dir: Path, dest: Path, frames: int = 20) -> list[Path]:
    dest.mkdir(parents=True)
    paths = []
    for src in sorted((features_dir / "mels").glob("*.npy")):
        np.save(dest / src.name, np.load(src)[:, :frames])
        paths.append(dest / src.name)
    return paths


def _synthesize(model: Path, *args: object):
    return run_cli("synthesize", model, *args, "--engine", "griffinlim")


def test_shards_cover_every_input_exactly_once() -> None:
    files = [Path(f"in/{name}.npy") for name in "qwertyuiopasd"]
    for n in (1, 2, 3, 5, 13, 20):
        shards = [select_shard(files, (k, n)) for k in range(1, n + 1)]
        union = [f for shard in shards for f in shard]
        assert sorted(union) == sorted(files) and len(union) == len(set(union)), n
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    # deterministic: the order inputs were given in does not matter
    assert select_shard(files, (2, 3)) == select_shard(files[::-1], (2, 3))


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "2", "1/0", "-1/2", "1/2/3"])
def test_bad_shard_is_rejected(text: str) -> None:
    with pytest.raises(VocoderError, match=f"--shard {text}: expected K/N"):
        parse_shard(text)


def test_shards_through_the_cli(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    mels = _short_mels(features_dir, tmp_path / "mels")
    out = tmp_path / "out"
    for k in (1, 2):
        r = _synthesize(tiny_ckpt, tmp_path / "mels", "-o", out, "--shard", f"{k}/2")
        assert r.exit_code == 0, r.output
        assert f"synthesized {3 if k == 1 else 2} of {3 if k == 1 else 2} inputs (shard {k}/2)" in r.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{m.stem}.wav" for m in mels)
    r = _synthesize(tiny_ckpt, tmp_path / "mels", "-o", out, "--shard", "3/2")
    assert r.exit_code == 1 and "error: --shard 3/2: expected K/N" in r.output


def test_rerun_after_a_kill_resumes(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    mels = _short_mels(features_dir, tmp_path / "mels")
    out = tmp_path / "out"
    out.mkdir()
    finished = out / f"{mels[0].stem}.wav"
    finished.write_bytes(b"finished before the kill")
    leftover = out / f".{mels[1].stem}.wav.k1ll3d.tmp"  # what atomic_path leaves when killed
    leftover.write_bytes(b"half a wav")
    r = _synthesize(tiny_ckpt, tmp_path / "mels", "-o", out)
    assert r.exit_code == 0, r.output
    assert (
        "synthesized 4 of 5 inputs, 1 already done (their wav exists; --overwrite redoes them), 0 failed,"
        in r.output
    )
    assert finished.read_bytes() == b"finished before the kill"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{m.stem}.wav" for m in mels)
    r = _synthesize(tiny_ckpt, tmp_path / "mels", "-o", out)
    assert (
        "synthesized 0 of 5 inputs, 5 already done (their wav exists; --overwrite redoes them), 0 failed,"
        in r.output
    )
    assert "no new audio" in r.output and r.exit_code == 0
    r = _synthesize(tiny_ckpt, tmp_path / "mels", "-o", out, "--overwrite")
    assert "synthesized 5 of 5 inputs, 0 failed," in r.output
    assert finished.read_bytes()[:4] == b"RIFF"


def test_input_list_with_a_corrupt_input(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    mels = _short_mels(features_dir, tmp_path / "data" / "mels")
    corrupt = tmp_path / "data" / "mels" / "corrupt.npy"
    corrupt.write_bytes(b"\x93NUMPY garbage")
    listing = tmp_path / "data" / "list.txt"
    listing.write_text(
        "# test split\n"
        f"mels/{mels[0].name}\n"
        "\n"
        f"mels/{mels[1].name}   # relative to this file's directory\n"
        f"{mels[2]}\n"
        "mels/corrupt.npy\n"
    )
    assert read_input_list(listing) == [mels[0], mels[1], mels[2], corrupt]
    out = tmp_path / "out"
    r = _synthesize(tiny_ckpt, "--input-list", listing, "-o", out, "--jobs", "2")
    assert r.exit_code == 1
    assert "synthesized 3 of 4 inputs, 1 failed," in r.output
    failed = [line for line in r.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "corrupt.npy" in failed[0] and "cannot read mel" in failed[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{m.stem}.wav" for m in mels[:3])


def test_input_list_errors_are_one_line(tmp_path: Path, tiny_ckpt: Path) -> None:
    r = _synthesize(tiny_ckpt, "--input-list", tmp_path / "missing.txt", "-o", tmp_path / "out")
    assert r.exit_code == 1 and f"error: {tmp_path / 'missing.txt'}: cannot read input list" in r.output
    r = _synthesize(tiny_ckpt, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "error: no inputs" in r.output


@pytest.mark.parametrize("how", ["directory", "file"])
def test_an_output_that_is_an_input_is_refused_before_any_work(
    tmp_path: Path, tiny_ckpt: Path, how: str
) -> None:
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    sr = 16000
    for name in ("a", "b"):
        t = np.arange(sr // 2) / sr
        sf.write(wavs / f"{name}.wav", 0.3 * np.sin(2 * np.pi * 220 * t), sr, subtype="PCM_16")
    before = {p.name: p.read_bytes() for p in wavs.iterdir()}
    given = wavs if how == "directory" else wavs / "b.wav"
    r = _synthesize(
        tiny_ckpt, given, tmp_path / "other.npy", "--out-dir", wavs, "--overwrite", "--shard", "1/2"
    )
    assert r.exit_code == 1
    assert "is an input" in r.output and "choose another --out-dir" in r.output
    assert {p.name: p.read_bytes() for p in wavs.iterdir()} == before
