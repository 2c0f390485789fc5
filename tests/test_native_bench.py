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
