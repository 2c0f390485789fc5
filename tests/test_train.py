"""Training bookkeeping: exact resume, atomic checkpoints, metrics, refusal to clobber."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, run_cli
from vocoder import checkpoint as ckpt_mod
from vocoder.config import TrainConfig
from vocoder.errors import VocoderError
from vocoder.train import learning_rate


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt_mod.load(path)["model"]


def _two_steps(tmp_path: Path, features_dir: Path) -> Path:
    """A run trained for 2 steps (one checkpoint) for a test to resume."""
    run = tmp_path / "run"
    assert run_cli("train", features_dir, run, "--steps", "2", *TINY).exit_code == 0
    return run


def test_resume_continues_exactly(tmp_path: Path, features_dir: Path) -> None:
    straight = tmp_path / "straight"
    assert run_cli("train", features_dir, straight, "--steps", "4", *TINY).exit_code == 0
    split = tmp_path / "split"
    assert run_cli("train", features_dir, split, "--steps", "2", *TINY).exit_code == 0
    r = run_cli("train", features_dir, split, "--steps", "4", "--resume", *TINY)
    assert r.exit_code == 0, r.output
    a = _weights(straight / "checkpoint_00000004.pt")
    b = _weights(split / "checkpoint_00000004.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # one record per step in the metrics log, none duplicated by the resume
    steps = [json.loads(x)["step"] for x in (split / "metrics.jsonl").read_text().splitlines()]
    train_steps = [
        s
        for s, x in zip(steps, (split / "metrics.jsonl").read_text().splitlines(), strict=True)
        if "train_bits" in x
    ]
    assert train_steps == [1, 2, 3, 4]


def test_checkpoint_contents_and_housekeeping(tiny_ckpt: Path) -> None:
    found = ckpt_mod.list_checkpoints(tiny_ckpt)
    assert [p.name for p in found] == ["checkpoint_00000002.pt", "checkpoint_00000004.pt"]
    data = ckpt_mod.load(found[-1])
    assert data["step"] == 4
    assert {"model", "optimizer", "config", "rng"} <= data.keys()
    assert data["config"]["model"]["hidden_size"] == 32
    assert data["config"]["audio"]["sample_rate"] == 16000  # taken from the features
    assert not list(tiny_ckpt.glob(".*tmp"))  # no temp files left behind
    assert (tiny_ckpt / "config.yaml").read_text().startswith("audio:")
    records = [json.loads(x) for x in (tiny_ckpt / "metrics.jsonl").read_text().splitlines()]
    valid = [r["valid_bits"] for r in records if "valid_bits" in r]
    assert len(valid) == 3 and all(0 < v < 17 for v in valid)


def test_existing_run_is_not_overwritten(tmp_path: Path, features_dir: Path, tiny_ckpt: Path) -> None:
    r = run_cli("train", features_dir, tiny_ckpt, "--steps", "2", *TINY)
    assert r.exit_code == 1
    assert "already holds checkpoints; pass --resume" in r.output


def test_audio_settings_must_match_the_features(tmp_path: Path, features_dir: Path) -> None:
    r = run_cli("train", features_dir, tmp_path / "x", "--steps", "1", "-c", "ljspeech-22k", *TINY)
    assert r.exit_code == 1
    assert "features were made with audio.sample_rate=16000" in r.output
    assert not (tmp_path / "x").exists()


def test_divergence_stops_before_any_checkpoint_is_written_or_rotated(
    tmp_path: Path, features_dir: Path
) -> None:
    run = _two_steps(tmp_path, features_dir)
    good = (run / "checkpoint_00000002.pt").read_bytes()
    r = run_cli(
        "train", features_dir, run, "--steps", "8", "--resume", *TINY,
        "--set", "train.learning_rate=1e30", "--set", "train.keep_checkpoints=1",
    )  # fmt: skip
    assert r.exit_code == 1
    assert "training diverged at step" in r.output and "checkpoint_00000002.pt" in r.output
    assert [p.name for p in ckpt_mod.list_checkpoints(run)] == ["checkpoint_00000002.pt"]
    assert (run / "checkpoint_00000002.pt").read_bytes() == good


def test_a_checkpoint_with_a_flipped_byte_is_refused(tmp_path: Path, tiny_ckpt: Path) -> None:
    source = ckpt_mod.list_checkpoints(tiny_ckpt)[-1]
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:  # flip a byte inside the largest tensor's data
        entry = max(archive.infolist(), key=lambda i: i.compress_size)
        offset = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
    data[offset + entry.compress_size // 2] ^= 0x40
    damaged = tmp_path / "run" / source.name
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    with pytest.raises(VocoderError, match="damaged checkpoint"):
        ckpt_mod.load(damaged)
    r = run_cli("export", damaged, tmp_path / "m.wrnn")
    assert r.exit_code == 1 and "damaged checkpoint" in r.output
    assert not (tmp_path / "m.wrnn").exists()


@pytest.mark.parametrize("key", ["model", "optimizer"])
def test_non_finite_weights_are_refused_on_load(tmp_path: Path, tiny_ckpt: Path, key: str) -> None:
    data = ckpt_mod.load(ckpt_mod.list_checkpoints(tiny_ckpt)[-1])
    if key == "model":
        data["model"]["gru.weight_hh_l0"][3, 5] = float("nan")
    else:
        next(iter(data["optimizer"]["state"].values()))["exp_avg"].view(-1)[0] = float("inf")
    bad = tmp_path / "checkpoint_00000004.pt"
    ckpt_mod.save(bad, {k: v for k, v in data.items() if k not in ("kind", "version")})
    with pytest.raises(VocoderError, match=f"{key}.* holds NaN or infinite values"):
        ckpt_mod.load(bad)
    for args in (["export", bad, tmp_path / "m.wrnn"], ["info", bad]):
        r = run_cli(*args)
        assert r.exit_code == 1 and "NaN or infinite" in r.output, args
    assert not (tmp_path / "m.wrnn").exists()


def test_resume_survives_a_damaged_metrics_log_and_removes_stale_temps(
    tmp_path: Path, features_dir: Path
) -> None:
    run = _two_steps(tmp_path, features_dir)
    log = run / "metrics.jsonl"
    good = log.read_text().splitlines()
    log.write_text("\n".join([*good[:2], "garbage {", "7", *good[2:]]) + '\n{"step": 2, "train_bi')
    stale = [run / ".checkpoint_00000004.pt.x1y2.tmp", run / ".metrics.jsonl.abcd.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    r = run_cli("train", features_dir, run, "--steps", "4", "--resume", *TINY)
    assert r.exit_code == 0, r.output
    assert "dropped 3 unreadable line(s)" in r.output
    lines = log.read_text().splitlines()
    assert lines[: len(good)] == good
    assert [json.loads(x)["step"] for x in lines if "train_bits" in x] == [1, 2, 3, 4]
    assert not any(p.exists() for p in stale)


def test_a_metrics_log_that_is_a_directory_is_one_error_line(tmp_path: Path, features_dir: Path) -> None:
    run = _two_steps(tmp_path, features_dir)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()
    r = run_cli("train", features_dir, run, "--steps", "4", "--resume", *TINY)
    assert r.exit_code == 1
    assert "metrics.jsonl: cannot read the metrics log" in r.output
    assert [p.name for p in ckpt_mod.list_checkpoints(run)][-1] == "checkpoint_00000002.pt"


def test_sigterm_saves_the_step_reached_and_the_run_resumes(tmp_path: Path, features_dir: Path) -> None:
    """A scheduler's SIGTERM (and `kill`) saves a checkpoint like Ctrl-C does."""
    run = tmp_path / "run"
    args = [*TINY, "--set", "train.checkpoint_every=1000", "--set", "train.valid_every=1000"]
    cli = Path(sys.executable).parent / "vocoder"
    proc = subprocess.Popen(
        [str(cli), "train", str(features_dir), str(run), "--steps", "100000", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    log = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and log.read_text().count("train_bits") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    saved = ckpt_mod.list_checkpoints(run)
    assert len(saved) == 1, output
    step = ckpt_mod.load(saved[0])["step"]
    assert step >= 3 and f"interrupted: saved step {step}" in output
    r = run_cli("train", features_dir, run, "--steps", str(step + 2), "--resume", *args)
    assert r.exit_code == 0, r.output
    assert ckpt_mod.list_checkpoints(run)[-1].name == ckpt_mod.checkpoint_name(step + 2)


def test_the_learning_rate_glides_geometrically_over_the_last_steps() -> None:
    tc = TrainConfig(learning_rate=1e-2, steps=10, lr_decay_steps=4, lr_decay_to=0.01)
    # steps 1..6 at the full rate, then 1e-2 * 0.01 ** (k / 4) for k = 1..4, then held
    expected = [1e-2] * 6 + [1e-2 * 10 ** (-k / 2) for k in range(1, 5)] + [1e-4, 1e-4]
    assert [learning_rate(tc, s) for s in range(1, 13)] == pytest.approx(expected, rel=1e-12)
    assert {learning_rate(TrainConfig(learning_rate=3e-3, steps=10), s) for s in range(1, 20)} == {3e-3}
    warm = TrainConfig(learning_rate=1e-2, steps=10, lr_warmup_steps=4, lr_decay_steps=4, lr_decay_to=0.01)
    # steps 1..3 rise linearly to the rate reached at step 4, 5..6 hold it, then the glide
    expected = [1e-2 * k / 4 for k in range(1, 4)] + [1e-2] * 3 + expected[6:]
    assert [learning_rate(warm, s) for s in range(1, 13)] == pytest.approx(expected, rel=1e-12)


def test_a_training_run_applies_and_logs_the_schedule(tmp_path: Path, features_dir: Path) -> None:
    run = tmp_path / "run"
    r = run_cli(
        "train",
        features_dir,
        run,
        "--steps",
        "4",
        *TINY,
        "--set",
        "train.log_every=1",
        "--set",
        "train.learning_rate=1e-2",
        "--set",
        "train.lr_decay_steps=2",
        "--set",
        "train.lr_decay_to=0.25",
    )
    assert r.exit_code == 0, r.output
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [rec["lr"] for rec in logged if "lr" in rec]
    assert lrs == pytest.approx([1e-2, 1e-2, 5e-3, 2.5e-3], rel=1e-12)
    state = torch.load(run / "checkpoint_00000004.pt", weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.5e-3, rel=1e-12)


def test_a_run_without_a_terminal_logs_plain_lines(tmp_path: Path, features_dir: Path) -> None:
    """Under nohup or SLURM a progress bar prints nothing useful: one line per record."""
    r = run_cli("train", features_dir, tmp_path / "run", "--steps", "3", *TINY)
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("step ") and "/3 loss" in line]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"], r.output
    assert all(
        " bits/sample valid " in line and " steps/s " in line and "k samples/s" in line for line in lines
    )
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    valid2 = next(rec["valid_bits"] for rec in records if rec["step"] == 2 and "valid_bits" in rec)
    assert f" valid {valid2:.3f} " in lines[-1]  # the step-3 line shows step 2's validation


def test_the_weight_average_follows_its_definition_resumes_and_is_exported(
    tmp_path: Path, features_dir: Path
) -> None:
    """ema_1 = w_1, ema_t = d ema_{t-1} + (1 - d) w_t, checked against every step's weights;
    a resumed run carries the same average; export and the samplers load the average."""
    ema = [
        "--set",
        "train.ema=0.75",
        "--set",
        "train.checkpoint_every=1",
        "--set",
        "train.keep_checkpoints=9",
    ]
    run = tmp_path / "run"
    assert run_cli("train", features_dir, run, "--steps", "4", *TINY, *ema).exit_code == 0
    states = [torch.load(run / f"checkpoint_0000000{t}.pt", weights_only=True) for t in range(1, 5)]
    expected = {k: v.clone() for k, v in states[0]["model"].items()}
    for t in range(1, 4):
        for k in expected:
            expected[k] = 0.75 * expected[k] + 0.25 * states[t]["model"][k]
        for k in expected:
            torch.testing.assert_close(states[t]["ema"][k], expected[k], rtol=1e-6, atol=1e-7)
    assert not torch.equal(states[3]["ema"]["gru.weight_hh_l0"], states[3]["model"]["gru.weight_hh_l0"])
    split = tmp_path / "split"
    assert run_cli("train", features_dir, split, "--steps", "2", *TINY, *ema).exit_code == 0
    assert run_cli("train", features_dir, split, "--steps", "4", "--resume", *TINY, *ema).exit_code == 0
    resumed = torch.load(split / "checkpoint_00000004.pt", weights_only=True)
    for k in expected:
        assert torch.equal(resumed["ema"][k], states[3]["ema"][k]), k
    model, _, _ = ckpt_mod.load_model(run / "checkpoint_00000004.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[3]["ema"][k]), k
    r = run_cli("export", run, tmp_path / "m.wrnn")
    assert r.exit_code == 0 and "the weight average of train.ema 0.75" in r.output, r.output


def test_a_pruning_run_resumed_mid_ramp_equals_an_uninterrupted_one(
    tmp_path: Path, features_dir: Path
) -> None:
    """The masks are part of the state: without restoring them a resumed run re-derives
    them from the current weights and its weights drift from the straight run's."""
    prune = [
        *("--set", "prune.sparsity=0.5", "--set", "prune.block=4x4", "--set", "prune.start=0"),
        *("--set", "prune.ramp=6", "--set", "prune.interval=3"),
    ]
    straight = tmp_path / "straight"
    assert run_cli("train", features_dir, straight, "--steps", "6", *TINY, *prune).exit_code == 0
    split = tmp_path / "split"
    assert run_cli("train", features_dir, split, "--steps", "3", *TINY, *prune).exit_code == 0
    r = run_cli("train", features_dir, split, "--steps", "6", "--resume", *TINY, *prune)
    assert r.exit_code == 0, r.output
    a = torch.load(straight / "checkpoint_00000006.pt", weights_only=True)
    b = torch.load(split / "checkpoint_00000006.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["prune_masks"]:
        assert torch.equal(a["prune_masks"][k], b["prune_masks"][k]), k
    assert 0 < float(1 - a["prune_masks"]["R_u"].mean()) <= 0.5  # partway through the ramp


def test_the_time_budget_stops_and_checkpoints_and_rotation_keeps_the_newest(
    tmp_path: Path, features_dir: Path
) -> None:
    run = tmp_path / "run"
    budget = ["--set", "train.max_minutes=0.0001", "--set", "train.checkpoint_every=1000"]
    r = run_cli("train", features_dir, run, "--steps", "1000", *TINY, *budget)
    assert r.exit_code == 0 and "(stopped by time)" in r.output, r.output
    saved = ckpt_mod.list_checkpoints(run)
    assert len(saved) == 1 and 1 <= ckpt_mod.load(saved[0])["step"] < 1000  # the step it stopped at
    rotate = tmp_path / "rotate"
    keep = ["--set", "train.checkpoint_every=1", "--set", "train.keep_checkpoints=2"]
    assert run_cli("train", features_dir, rotate, "--steps", "5", *TINY, *keep).exit_code == 0
    assert [p.name for p in ckpt_mod.list_checkpoints(rotate)] == [
        "checkpoint_00000004.pt",
        "checkpoint_00000005.pt",
    ]


def test_a_resume_applies_explicit_train_keys_and_refuses_model_changes(
    tmp_path: Path, features_dir: Path
) -> None:
    run = _two_steps(tmp_path, features_dir)
    r = run_cli("train", features_dir, run, "--steps", "3", "--resume", *TINY, "--set", "train.grad_clip=0.5")
    assert r.exit_code == 0, r.output
    stored = ckpt_mod.load(run / "checkpoint_00000003.pt")["config"]
    assert stored["train"]["grad_clip"] == 0.5 and stored["model"]["hidden_size"] == 32
    assert "grad_clip: 0.5" in (run / "config.yaml").read_text()
    r = run_cli(
        "train", features_dir, run, "--steps", "4", "--resume", *TINY, "--set", "model.hidden_size=64"
    )
    assert r.exit_code == 1 and "a continued run cannot change model.hidden_size" in r.output
    r = run_cli("train", features_dir, tmp_path / "gpu", "--steps", "1", *TINY, "--device", "cuda")
    if torch.cuda.is_available():
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 1 and "no CUDA device is available" in r.output


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_settings_reach_torch(
    tmp_path: Path, features_dir: Path, tiny_ckpt: Path, threads: int
) -> None:
    """train.threads and synthesize --threads (torch engine) set torch's intra-op threads."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3 - threads)
        r = run_cli(
            "train",
            features_dir,
            tmp_path / "run",
            "--steps",
            "1",
            *TINY,
            "--set",
            f"train.threads={threads}",
        )
        assert r.exit_code == 0 and torch.get_num_threads() == threads, r.output
        torch.set_num_threads(3 - threads)
        mel = next((features_dir / "mels").glob("*.npy"))
        np.save(tmp_path / "short.npy", np.load(mel)[:, :8])
        r = run_cli(
            "synthesize", tiny_ckpt, tmp_path / "short.npy", "-o", tmp_path / "out", "-t", str(threads)
        )
        assert r.exit_code == 0 and torch.get_num_threads() == threads, r.output
        assert (tmp_path / "out" / "short.wav").exists()
    finally:
        torch.set_num_threads(before)


def test_grad_clip_is_applied(tmp_path: Path, features_dir: Path) -> None:
    """Clipping to a tiny norm rescales every step's gradient to that norm; Adam's update
    depends on how gradients compare across steps, so the weights after 3 steps must
    differ from the unclipped run's (identical if the clip were ignored), while the logged
    gradient norms (measured before clipping) are the same."""
    runs = {}
    for clip in ("1e-6", "1e9"):
        run = tmp_path / clip
        r = run_cli("train", features_dir, run, "--steps", "3", *TINY, "--set", f"train.grad_clip={clip}")
        assert r.exit_code == 0, r.output
        norms = [json.loads(x)["grad_norm"] for x in (run / "metrics.jsonl").read_text().splitlines()[1:2]]
        runs[clip] = (_weights(run / "checkpoint_00000003.pt"), norms)
    assert runs["1e-6"][1] == runs["1e9"][1] and runs["1e-6"][1][0] > 1e-3
    w_small, w_free = runs["1e-6"][0], runs["1e9"][0]
    assert not torch.equal(w_small["gru.weight_hh_l0"], w_free["gru.weight_hh_l0"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_in_it_keeps_fp32_state_and_resumes_exactly(
    tmp_path: Path, features_dir: Path, precision: str
) -> None:
    amp = ["--set", f"train.precision={precision}"]
    fp32 = tmp_path / "fp32"
    assert run_cli("train", features_dir, fp32, "--steps", "4", *TINY).exit_code == 0
    straight = tmp_path / "straight"
    r = run_cli("train", features_dir, straight, "--steps", "4", *TINY, *amp)
    assert r.exit_code == 0, r.output
    split = tmp_path / "split"
    assert run_cli("train", features_dir, split, "--steps", "2", *TINY, *amp).exit_code == 0
    assert run_cli("train", features_dir, split, "--steps", "4", "--resume", *TINY, *amp).exit_code == 0
    a, b = _weights(straight / "checkpoint_00000004.pt"), _weights(split / "checkpoint_00000004.pt")
    reference = _weights(fp32 / "checkpoint_00000004.pt")
    for k in a:
        assert a[k].dtype == reference[k].dtype, k  # the weights stay fp32
        assert torch.equal(a[k], b[k]), k  # the resume continues the same run (scaler included)
    # the step ran in the lower precision: the same run in fp32 ends elsewhere
    assert any(not torch.equal(a[k], reference[k]) for k in a if a[k].is_floating_point())
    state = ckpt_mod.load(straight / "checkpoint_00000004.pt")
    assert bool(state["scaler"]) == (precision == "fp16")
    if precision == "fp16":
        assert state["scaler"]["scale"] > 0
    records = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(x["valid_bits"]) for x in records if "valid_bits" in x)


def test_devices_are_checked_against_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from vocoder.config import load_config
    from vocoder.train import pick_device

    assert load_config(None, ["train.device=cuda:1"]).train.device == "cuda:1"
    for bad in ("gpu", "cuda:x", "cuda1", "cuda:-1"):
        with pytest.raises(VocoderError, match=r"train\.device must be cpu, cuda, cuda:K"):
            load_config(None, [f"train.device={bad}"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(VocoderError, match=r"train.device=cuda:1 but no CUDA device is available"):
        pick_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(VocoderError, match=r"cuda:2: this machine has 2 CUDA device\(s\), cuda:0..1"):
        pick_device("cuda:2")
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert pick_device("cpu") == torch.device("cpu")


def _train_cli(*args: object) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process: --nproc starts torchrun, which needs a real command line."""
    command = [sys.executable, "-m", "vocoder", "train", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)


def test_two_ranks_train_the_run_one_would_and_resume_at_any_world_size(
    tmp_path: Path, features_dir: Path
) -> None:
    """DDP over gloo: each rank trains on its half of the batch one process would draw, so
    a 2-rank run ends where a 1-rank run does (to rounding), and a checkpoint of either
    continues on the other."""
    common = [*TINY, "--set", "train.threads=1", "--set", "train.checkpoint_every=2"]
    one = tmp_path / "one"
    assert run_cli("train", features_dir, one, "--steps", "4", *common).exit_code == 0
    two = tmp_path / "two"
    proc = _train_cli(features_dir, two, "--steps", "4", "--nproc", "2", *common)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    mixed = tmp_path / "mixed"  # 2 steps on 2 ranks, then 1 rank; and the reverse
    assert _train_cli(features_dir, mixed, "--steps", "2", "--nproc", "2", *common).returncode == 0
    assert run_cli("train", features_dir, mixed, "--steps", "4", "--resume", *common).exit_code == 0
    reverse = tmp_path / "reverse"
    assert run_cli("train", features_dir, reverse, "--steps", "2", *common).exit_code == 0
    proc = _train_cli(features_dir, reverse, "--steps", "4", "--resume", "--nproc", "2", *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    reference = _weights(one / "checkpoint_00000004.pt")
    for run in (two, mixed, reverse):
        weights = _weights(run / "checkpoint_00000004.pt")
        for k in reference:
            torch.testing.assert_close(weights[k], reference[k], rtol=0, atol=1e-5, msg=f"{run.name} {k}")
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [x["step"] for x in records if "train_bits" in x] == [1, 2, 3, 4], (
            run.name
        )  # rank 0 alone logs


def test_a_global_batch_that_does_not_split_over_the_ranks_is_refused(
    tmp_path: Path, features_dir: Path
) -> None:
    proc = _train_cli(features_dir, tmp_path / "run", "--steps", "2", "--nproc", "3", *TINY)
    assert proc.returncode == 1
    assert (
        "train.batch_size=4 is the global batch: it must be a multiple of the 3 ranks"
        in proc.stdout + proc.stderr
    )
    assert "a training process failed" in proc.stdout + proc.stderr
    assert not ckpt_mod.list_checkpoints(tmp_path / "run")


def test_init_from_starts_a_fresh_run_from_another_run_s_weights(
    tmp_path: Path, features_dir: Path, tiny_ckpt: Path
) -> None:
    tuned = tmp_path / "tuned"
    r = run_cli("train", features_dir, tuned, "--steps", "2", "--init-from", tiny_ckpt, *TINY[2:])
    assert r.exit_code == 0, r.output
    state = ckpt_mod.load(tuned / "checkpoint_00000002.pt")
    source = ckpt_mod.load(ckpt_mod.list_checkpoints(tiny_ckpt)[-1])
    assert state["step"] == 2 and source["step"] == 4  # its own step count, from 0
    assert state["config"]["model"] == source["config"]["model"]  # hidden_size 32, though not given
    assert state["optimizer"]["state"][0]["step"] == 2  # a fresh optimiser
    # it started from those weights: its step-0 validation is the source's last one
    start = json.loads((tuned / "metrics.jsonl").read_text().splitlines()[0])
    last = [
        json.loads(x) for x in (tiny_ckpt / "metrics.jsonl").read_text().splitlines() if "valid_bits" in x
    ][-1]
    assert start["step"] == 0 and start["valid_bits"] == pytest.approx(last["valid_bits"], abs=1e-6)
    assert torch.equal(state["model"]["mel_mean"], source["model"]["mel_mean"])
    r = run_cli(
        "train", features_dir, tmp_path / "bad", "--init-from", tiny_ckpt, "--set", "model.hidden_size=64"
    )
    assert r.exit_code == 1 and "cannot change model.hidden_size" in r.output


def test_tensorboard_events_hold_the_metrics_and_a_generated_clip(tmp_path: Path, features_dir: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    r = run_cli("train", features_dir, run, "--steps", "2", *TINY, "--set", "train.sample_seconds=0.05")
    assert r.exit_code == 0, r.output
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"audio": 0, "images": 0}).Reload()
    tags = events.Tags()
    assert {"train_bits", "valid_bits", "grad_norm", "lr", "samples_per_s"} <= set(tags["scalars"])
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "valid_bits" in x]
    assert [e.value for e in events.Scalars("valid_bits")] == pytest.approx([x["valid_bits"] for x in logged])
    assert {"sample", "recording"} <= set(tags["audio"]) and "mel" in tags["images"]
    clips = events.Audio("sample")
    assert [c.step for c in clips] == [x["step"] for x in logged]  # one clip per validation
    assert clips[0].sample_rate == 16000 and clips[0].length_frames == 800  # 0.05 s: 4 frames of 200


def test_training_runs_without_tensorboard(tmp_path: Path, features_dir: Path) -> None:
    blocked = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorboard' or name.startswith('tensorboard.'):\n"
        "            raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from vocoder.cli import main\n"
        "sys.argv = ['vocoder', *sys.argv[1:]]\n"
        "main()\n"
    )
    run = tmp_path / "run"
    args = ["train", str(features_dir), str(run), "--steps", "2", *TINY, "--set", "train.sample_seconds=0.05"]
    proc = subprocess.run([sys.executable, "-c", blocked, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ckpt_mod.list_checkpoints(run) and not (run / "tensorboard").exists()


def test_bench_train_times_the_step_per_process_count(tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    args = ["bench", "--train", "-n", "32", "--precision", "fp32", "--processes", "1", "--processes", "2"]
    r = run_cli(*args, "--batch", "4", "--train-seconds", "0.2", "--json", out)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    rows = report["results"]
    assert [(x["engine"], x["processes"], x["precision"]) for x in rows] == [
        ("train", 1, "fp32"),
        ("train", 2, "fp32"),
    ]
    for x in rows:
        assert x["steps"] >= 1 and x["seconds"] >= 0.2
        assert x["steps_per_second"] == pytest.approx(x["steps"] / x["seconds"])
        assert x["samples_per_second"] == pytest.approx(x["steps_per_second"] * 4 * x["seq_frames"] * 256)
    assert report["machine"]["logical_cpus"] >= 1 and report["machine"]["torch"] == torch.__version__
    r = run_cli("bench", "--train", "-n", "32", "--processes", "3", "--batch", "4")
    assert r.exit_code == 1 and "--batch 4 must be a multiple of the 3 processes" in r.output
