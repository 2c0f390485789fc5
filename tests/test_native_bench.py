"""`vocoder bench` writes the report other tools read: checked for shape, not speed."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from vocoder.cli import app

FIELDS = {
    "engine",
    "mode",
    "hidden_size",
    "sparsity",
    "block",
    "threads",
    "precision",
    "samples_per_second",
    "times_realtime_24k",
}


def test_bench_report_has_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "-n",
        "32",
        "-t",
        "1",
        "-t",
        "2",
        "--precision",
        "fp32",
        "--precision",
        "int8",
        "--seconds",
        "0.05",
        "--json",
        str(out),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert {"cpu", "isa_used", "isas_supported"} <= set(report["machine"])
    rows = report["results"]
    assert all(set(r) >= FIELDS for r in rows)
    got = {(r["engine"], r["precision"], r["threads"]) for r in rows}
    assert got == {("native", p, t) for p in ("fp32", "int8") for t in (1, 2)} | {
        ("torch", "fp32", 1),
        ("torch", "fp32", 2),
    }
    for r in rows:
        assert r["hidden_size"] == 32 and r["mode"] == "sequential" and r["block"] == "dense"
        assert r["sparsity"] == 0.0 and r["samples_per_second"] > 0
        assert abs(r["times_realtime_24k"] - r["samples_per_second"] / 24000) < 1e-9


def test_bench_times_sparse_rows_next_to_the_dense_one(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "-n", "64", "-t", "1", "--precision", "fp32", "--no-torch", "--seconds", "0.05"]
    args += ["--sparsity", "0.9", "--block", "16x1", "--block", "4x4", "--prune-layers", "gru+out"]
    res = CliRunner().invoke(app, [*args, "--sparse-kernels", "always", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    got = {(r["sparsity"], r["block"], r["pruned_layers"]) for r in rows}
    assert got == {(0.0, "dense", ""), (0.9, "16x1", "gru+out"), (0.9, "4x4", "gru+out")}
    assert "x dense" in res.output and "90% 4x4 gru+out [always]" in res.output
    bad = CliRunner().invoke(app, [*args[:10], "--sparsity", "0.9", "--block", "8x8"])
    assert bad.exit_code == 1 and "sparse kernels for 16x1 and 4x4" in bad.output


def test_bench_fold_rows_sit_next_to_sequential_ones(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "-n", "64", "-t", "1", "--precision", "int8", "--no-torch", "--seconds", "0.05"]
    args += ["--sparsity", "0.9", "--fold", "--target", "400", "--overlap", "50", "--fold-seconds", "0.2"]
    res = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert all(set(r) >= FIELDS for r in rows)
    got = {(r["mode"], r["sparsity"], r["threads"]) for r in rows}
    assert got == {(m, s, 1) for m in ("sequential", "fold") for s in (0.0, 0.9)}
    for r in rows:
        if r["mode"] == "fold":
            assert r["samples"] == 18 * 256 and r["samples_per_second"] > 0  # 0.2 s at 22050 Hz, whole frames
    bad = CliRunner().invoke(app, [*args, "--overlap", "-1"])
    assert bad.exit_code == 1 and "--overlap -1" in bad.output


def test_bench_subscale_rows_sit_next_to_sequential_ones(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "-n", "32", "-t", "1", "-t", "2", "--precision", "int8", "--seconds", "0.05"]
    res = CliRunner().invoke(app, [*args, "--sparsity", "0.9", "--subscale", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert all(set(r) >= FIELDS for r in rows)
    got = {(r["engine"], r["mode"], r["sparsity"], r["threads"]) for r in rows}
    native = {("native", "sequential", s, t) for s in (0.0, 0.9) for t in (1, 2)}
    native |= {("native", "subscale", s, t) for s in (0.0, 0.9) for t in (1, 2)}
    torch = {("torch", "sequential", 0.0, t) for t in (1, 2)} | {("torch", "subscale", 0.0, 1)}
    assert got == native | torch
    assert "x seq" in res.output
    for r in rows:  # native: 0.05 s at 22050 Hz, torch: 2000 samples, in whole frames of 256
        assert r["samples_per_second"] > 0 and r["samples"] == (1280 if r["engine"] == "native" else 2048)
