"""End to end on real speech, and bad inputs: one readable line, non-zero exit, no debris."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import CORPUS, IDS, PREPROCESS_16K, ROOT, make_dataset, run_cli


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_help_documents_every_command() -> None:
    r = run_cli("--help")
    commands = ("preprocess", "train", "prune", "synthesize", "export", "bench", "info", "config")
    for command in (*commands, "evaluate", "plot"):
        assert command in r.output
    for command, option in [
        ("preprocess", "--jobs"),
        ("train", "--resume"),
        ("prune", "--sparsity"),
        ("synthesize", "--out-dir"),
        ("synthesize", "--shard"),
        ("synthesize", "--input-list"),
        ("synthesize", "--overwrite"),
        ("evaluate", "--csv"),
        ("plot", "--out-dir"),
        ("export", "--precision"),
        ("bench", "--hidden-size"),
    ]:
        assert option in run_cli(command, "--help").output


def test_version_and_usage_lines_read_as_plain_text() -> None:
    from importlib.metadata import version

    r = run_cli("--version")
    assert r.exit_code == 0 and r.output == f"wavernn-vocoder {version('wavernn-vocoder')}\n"
    assert re.search(r" train \[OPTIONS\] FEATURES_DIR CKPT_DIR *\n", run_cli("train", "--help").output)
    assert re.search(
        r" synthesize \[OPTIONS\] MODEL \[INPUTS\.\.\.\] *\n", run_cli("synthesize", "--help").output
    )
    for command in ("preprocess", "train", "prune", "synthesize", "evaluate", "export", "bench", "config"):
        text = run_cli(command, "--help").output
        options = [line for line in text.splitlines() if "│ --" in line]  # an option's first line
        assert "{" not in text and not any("<list[" in line for line in options), command
    assert any(
        "--set" in line and "KEY=VALUE" in line for line in run_cli("train", "--help").output.splitlines()
    )


def test_preprocess_outputs_and_rerun(features_dir: Path) -> None:
    ids = sorted(p.stem for p in (features_dir / "mels").glob("*.npy"))
    assert len(ids) == 5
    splits = {s: (features_dir / f"{s}.txt").read_text().split() for s in ("train", "valid", "test")}
    assert sorted(i for ids_ in splits.values() for i in ids_) == ids
    assert len(splits["valid"]) == 1 and len(splits["test"]) == 1
    for uid in ids:
        mel = np.load(features_dir / "mels" / f"{uid}.npy")
        audio = np.load(features_dir / "audio" / f"{uid}.npy")
        assert mel.dtype == np.float32 and audio.dtype == np.int16
        assert mel.shape[0] == 80 and len(audio) == mel.shape[1] * 200
    assert "sample_rate: 16000" in (features_dir / "config.yaml").read_text()


def test_preprocess_skips_bad_files_and_resumes(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", ["AL-activated", "AL-call-waiting", "AL-agent-loggedoff"])
    meta = data / "metadata.csv"
    meta.write_text(meta.read_text() + "corrupt|x|x\nsilent|x|x\nshort|x|x\nmissing|x|x\n")
    (data / "wavs" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    sf.write(data / "wavs" / "silent.wav", np.zeros(32000, np.int16), 16000)
    sf.write(
        data / "wavs" / "short.wav",
        (np.random.default_rng(0).normal(size=800) * 3000).astype(np.int16),
        16000,
    )
    feats = tmp_path / "feats"
    r = run_cli("preprocess", data, feats, *PREPROCESS_16K, "--jobs", "2")
    assert r.exit_code == 0, r.output
    assert "skipped 4" in r.output
    for bad, why in [
        ("corrupt", "cannot read audio"),
        ("silent", "silent"),
        ("short", "too short"),
        ("missing", "file not found"),
    ]:
        assert any(bad in line and why in line for line in r.output.splitlines()), bad
        assert not (feats / "mels" / f"{bad}.npy").exists()
    assert len(list((feats / "mels").glob("*.npy"))) == 3
    again = run_cli("preprocess", data, feats, *PREPROCESS_16K)
    assert "preprocessed 0 new, reused 3" in again.output
    other = run_cli("preprocess", data, feats, "-c", "ljspeech-22k")
    assert other.exit_code == 1 and "other audio settings" in other.output


def test_preprocess_errors(tmp_path: Path) -> None:
    r = run_cli("preprocess", tmp_path, tmp_path / "f")
    assert r.exit_code == 1 and _error_lines(r.output) == [
        f"error: {tmp_path}/metadata.csv: missing (expected LJSpeech layout: metadata.csv + wavs/)"
    ]
    (tmp_path / "wavs").mkdir()
    (tmp_path / "metadata.csv").write_text("a|x|x\n")
    (tmp_path / "wavs" / "a.wav").write_bytes(b"not audio")
    r = run_cli("preprocess", tmp_path, tmp_path / "f")
    assert r.exit_code == 1 and "no usable utterance" in r.output
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("audio: {sample_rate: [\n")
    r = run_cli("preprocess", tmp_path, tmp_path / "g", "-c", bad_yaml)
    assert r.exit_code == 1 and len(_error_lines(r.output)) == 1 and "invalid YAML" in r.output
    r = run_cli("preprocess", tmp_path, tmp_path / "g", "--set", "model.hiden=3")
    assert r.exit_code == 1 and "unknown key model.hiden" in r.output
    assert not (tmp_path / "g").exists()


def test_end_to_end_synthesis(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    test_id = (features_dir / "test.txt").read_text().split()[0]
    mel_in = features_dir / "mels" / f"{test_id}.npy"
    wav_in = CORPUS / "wavs" / "AL-call-waiting.flac"
    out = tmp_path / "out"
    r = run_cli("synthesize", tiny_ckpt, mel_in, wav_in, "--out-dir", out, "--seed", "3")
    assert r.exit_code == 0, r.output
    assert "synthesized 2 of 2 inputs" in r.output and "samples/s" in r.output and "RTF" in r.output
    y, sr = sf.read(out / f"{test_id}.wav", dtype="int16")
    info = sf.info(out / f"{test_id}.wav")
    assert sr == 16000 and info.subtype == "PCM_16"
    assert len(y) == np.load(mel_in).shape[1] * 200
    # same seed, same audio; parallel jobs give the same result as one job
    out2 = tmp_path / "out2"
    r = run_cli(
        "synthesize",
        tiny_ckpt / "checkpoint_00000004.pt",
        mel_in,
        wav_in,
        "-o",
        out2,
        "--seed",
        "3",
        "--jobs",
        "2",
    )
    assert r.exit_code == 0, r.output
    assert np.array_equal(sf.read(out2 / f"{test_id}.wav", dtype="int16")[0], y)


def test_synthesize_reports_bad_inputs_and_finishes_the_rest(
    tmp_path: Path, features_dir: Path, tiny_ckpt: Path
) -> None:
    good = next((features_dir / "mels").glob("*.npy"))
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "batch.npy", np.zeros((2, 80, 10), np.float32))  # a batch of two mels
    np.save(bad / "nan.npy", np.full((80, 4), np.nan, np.float32))
    np.save(bad / "wrongbins.npy", np.zeros((40, 10), np.float32))
    (bad / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    (bad / "broken.wav").write_bytes(b"RIFF....WAVEfmt ")
    out = tmp_path / "out"
    r = run_cli("synthesize", tiny_ckpt, good, bad, "-o", out)
    assert r.exit_code == 1
    assert "synthesized 1 of 6 inputs" in r.output
    failed = [line for line in r.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 5
    for name, why in [
        ("batch", "at most a leading batch axis of 1"),
        ("nan", "NaN"),
        ("wrongbins", "no axis of the model's n_mels=80"),
        ("corrupt.npy", "cannot read mel"),
        ("broken.wav", "cannot read audio"),
    ]:
        assert any(name in line and why in line for line in failed), name
    assert sorted(p.name for p in out.iterdir()) == [f"{good.stem}.wav"]


@pytest.mark.parametrize("kind", ["text", "foreign", "truncated", "missing"])
def test_bad_checkpoints_give_one_line(
    tmp_path: Path, tiny_ckpt: Path, features_dir: Path, kind: str
) -> None:
    path = tmp_path / "model.pt"
    if kind == "text":
        path.write_text("hello")
    elif kind == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif kind == "truncated":
        data = (tiny_ckpt / "checkpoint_00000004.pt").read_bytes()
        path.write_bytes(data[: len(data) // 2])
    mel = next((features_dir / "mels").glob("*.npy"))
    r = run_cli("synthesize", path, mel, "-o", tmp_path / "out")
    assert r.exit_code == 1
    lines = _error_lines(r.output)
    assert len(lines) == 1 and str(path) in lines[0], r.output
    assert not (tmp_path / "out").exists()


def test_info_and_config_commands(tiny_ckpt: Path) -> None:
    r = run_cli("info", tiny_ckpt)
    assert r.exit_code == 0 and "step 4" in r.output and "N=32" in r.output
    r = run_cli("config", "-c", "allison-16k", "--set", "model.hidden_size=896")
    assert r.exit_code == 0 and "hidden_size: 896" in r.output and "sample_rate: 16000" in r.output


def test_console_script_exit_status(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "vocoder"
    if not exe.exists():
        exe = Path(shutil.which("vocoder") or "vocoder")
    r = subprocess.run(
        [str(exe), "train", str(tmp_path), str(tmp_path / "c")], capture_output=True, text=True, check=False
    )
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path}: not a features directory (no config.yaml)"]


def test_the_split_is_stable_when_items_are_added_and_follows_its_seed() -> None:
    """The hash split: adding utterances moves at most one existing id per held-out split
    (the one a new id displaces), and another data.split_seed gives another split."""
    from vocoder.config import DataConfig
    from vocoder.preprocess import split_ids

    ids = [f"utt-{i:03d}" for i in range(200)]
    cfg = DataConfig(valid_count=8, test_count=16)
    before = split_ids(ids, cfg)
    assert sorted(i for split in before.values() for i in split) == ids
    assert (len(before["test"]), len(before["valid"])) == (16, 8)
    after = split_ids([*ids, "new-a"], cfg)
    for name in ("test", "valid"):
        assert len(set(before[name]) - set(after[name])) <= 1, name
    assert split_ids(list(reversed(ids)), cfg) == before  # order of metadata does not matter
    other = split_ids(ids, DataConfig(valid_count=8, test_count=16, split_seed=99))
    assert other["test"] != before["test"]


def test_bench_times_a_real_model_file(tmp_path: Path) -> None:
    """`bench MODEL` on the shipped reference model: one native row of its size."""
    model = ROOT / "models" / "allison-16k" / "model-int8.wrnn"
    out = tmp_path / "bench.json"
    r = run_cli("bench", model, "--seconds", "0.05", "--repeats", "1", "--json", out)
    assert r.exit_code == 0, r.output
    rows = [row for row in json.loads(out.read_text())["results"] if row["engine"] == "native"]
    assert rows and all(row["hidden_size"] == 128 and row["precision"] == "int8" for row in rows)
    assert all(row["samples_per_second"] > 0 for row in rows)


def test_preprocess_takes_gta_mels_and_names_a_length_mismatch(tmp_path: Path, features_dir: Path) -> None:
    """--mels-from: each utterance's mel comes from DIR/<id>.npy; its audio target is the
    same as without it; a mel of the wrong length or a missing one skips that utterance
    by name and the rest go on."""
    data = make_dataset(tmp_path / "data")
    gta = tmp_path / "gta"
    gta.mkdir()
    own = {i: np.load(features_dir / "mels" / f"{i}.npy") for i in IDS}
    for i in IDS[:3]:
        np.save(gta / f"{i}.npy", own[i] + np.float32(0.25))  # a prediction, not the recording's mel
    np.save(gta / f"{IDS[3]}.npy", own[IDS[3]][:, :-2])  # two frames short
    feats = tmp_path / "features"
    r = run_cli("preprocess", data, feats, "--mels-from", gta, *PREPROCESS_16K)
    assert r.exit_code == 0, r.output
    for i in IDS[:3]:
        assert np.array_equal(np.load(feats / "mels" / f"{i}.npy"), own[i] + np.float32(0.25)), i
        assert np.array_equal(
            np.load(feats / "audio" / f"{i}.npy"), np.load(features_dir / "audio" / f"{i}.npy")
        )
    skipped = (feats / "skipped.tsv").read_text()
    frames = own[IDS[3]].shape[1]
    assert f"{gta / IDS[3]}.npy: {frames - 2} frames" in skipped and f"= {frames} frames" in skipped, skipped
    assert f"{gta / IDS[4]}.npy: no GTA mel for this utterance" in skipped, skipped
    assert "preprocessed 3 new" in r.output and "skipped 2" in r.output
    r = run_cli("preprocess", data, tmp_path / "f2", "--mels-from", gta / "missing", *PREPROCESS_16K)
    assert r.exit_code == 1 and "--mels-from must be a directory" in r.output
