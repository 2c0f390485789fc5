"""`vocoder bench` writes the report other tools read: checked for shape, not speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vocoder import _engine, bench
from vocoder.bench import (
    HEADER,
    BenchRow,
    Variant,
    compute_limit,
    fastest,
    findings,
    multiply_adds,
    table_rows,
    weight_bytes,
)
from vocoder.cli import app
from vocoder.config import Config

# Multiply-adds one instruction of each ISA's probe does, per precision: the scalar loop
# one, AVX2 eight fp32 lanes or vpmaddubsw + vpmaddwd's 8 lanes x 4 products, AVX-512 16
# fp32 lanes, vdpbf16ps's 16 x 2 and vpdpbusd's 16 x 4.
PER_INSTRUCTION = {
    "scalar": {"fp32": 1, "bf16": 1, "int8": 1},
    "avx2": {"fp32": 8, "bf16": 8, "int8": 32},
    "avx512": {"fp32": 16, "bf16": 32, "int8": 64},
}
CHAINS = 12

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
        "--repeats",
        "2",
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
    assert set(report["machine"]["multiply_adds_per_second"]) == {"fp32", "bf16", "int8"}
    assert (
        res.output.count("at this machine's bandwidth limit it could be at most")
        + res.output.count("at this machine's compute limit it could be at most")
        == 4
    )  # one line per native row (fp32, int8 x 1, 2 threads)
    compute = {
        (r["engine"], r["precision"], r["threads"]): r["compute_limit_samples_per_second"] for r in rows
    }
    for engine, precision, _ in got:  # one probe per precision per run; two cores, twice the limit
        assert compute[engine, precision, 2] == pytest.approx(2 * compute[engine, precision, 1], rel=1e-12)
    for r in rows:
        bw, mac = r["bandwidth_limit_samples_per_second"], r["compute_limit_samples_per_second"]
        assert r["limit_samples_per_second"] == min(bw, mac) > 0
        assert r["bound"] == ("bandwidth" if bw <= mac else "compute")
        assert r["share_of_limit"] == pytest.approx(r["samples_per_second"] / min(bw, mac))
        assert r["hidden_size"] == 32 and r["mode"] == "sequential" and r["block"] == "dense"
        assert r["repeats"] == 2
        assert r["sparsity"] == 0.0 and r["samples_per_second"] > 0
        assert abs(r["times_realtime_24k"] - r["samples_per_second"] / 24000) < 1e-9


@pytest.mark.parametrize("isa", _engine.supported_isas())
def test_multiply_add_probe_does_every_multiply_add(isa: str) -> None:
    _engine.select_isa(isa)
    try:
        for precision, per in PER_INSTRUCTION[isa].items():
            for rounds in (1, 1000):
                count, wall = _engine.multiply_add_probe(precision, rounds)
                assert count == CHAINS * per * rounds and wall > 0, (precision, rounds)
    finally:
        _engine.select_isa("auto")
    with pytest.raises(ValueError, match="rounds"):
        _engine.multiply_add_probe("fp32", 0)
    with pytest.raises(ValueError, match="unknown precision"):
        _engine.multiply_add_probe("int4", 10)


def test_multiply_adds_per_sample_count_every_product() -> None:
    cfg = Config()
    cfg.model.hidden_size = 512
    dense = 3 * 512 * 512 + 2 * 256 * 256 + 2 * 256 * 256  # W_hh; O1, O3 (256 x 256); O2, O4 (256 x 256)
    assert multiply_adds(cfg, "int8") == {"int8": dense, "fp32": 0.0}
    layout = {"gru.weight_hh_l0": {"kind": "sparse", "density": 0.05}}
    got = multiply_adds(cfg, "int8", layout)
    assert got == {"int8": dense - 3 * 512 * 512, "fp32": 0.05 * 3 * 512 * 512}
    o2_bf16 = {"O2.weight": {"kind": "dense", "density": 1.0, "precision": "bf16"}}  # as an int8 file loads
    assert multiply_adds(cfg, "int8", o2_bf16) == {"int8": dense - 256 * 256, "bf16": 256 * 256, "fp32": 0.0}
    cfg.model.kind = "subscale"  # B=16, P=F=4 (window 9), D=64
    ctx = sum(64 * (s + 1) * 9 for s in range(16)) / 16  # sub-tensor s reads s + 1 windows
    assert multiply_adds(cfg, "fp32") == {"fp32": dense + ctx + 3 * 512 * 64}
    # one second per kind of work, in the slowest precision's time
    assert compute_limit({"int8": 2e9, "fp32": 1e9}, {"int8": 4e9, "fp32": 1e9}) == pytest.approx(1 / 1.5)


def test_fastest_keeps_the_shortest_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake clock (no sleeping, so a loaded machine cannot make it flaky): runs of 3,
    1 and 2 time units; the fastest is the 1."""
    ticks = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    calls = []

    def run() -> int:
        calls.append(1)
        return 7

    assert fastest(run, 3) == (1.0, 7) and len(calls) == 3


def test_limits_weights_and_shares_match_hand_computed_figures() -> None:
    """N=32 by hand: W_hh 3*32*32 = 3072 weights, O1 and O3 16*16 = 256 each, O2 and O4
    256*16 = 4096 each: 11776 weights per sample."""
    assert weight_bytes(32, "int8") == 11776
    assert weight_bytes(32, "fp32") == 4 * 11776
    # W_hh a quarter dense in blocks of 16 fp32 values with a 4-byte index each:
    # 768 * (4 + 4/16) = 3264 bytes, plus the 8704 dense int8 weights
    assert weight_bytes(32, "int8", {"gru.weight_hh_l0": {"kind": "sparse", "density": 0.25}}) == 3264 + 8704
    # O2 (4096 weights) held in bf16, as an int8 file keeps it: 2 bytes each
    assert weight_bytes(32, "int8", {"O2.weight": {"kind": "dense", "precision": "bf16"}}) == 11776 + 4096
    # 12,000 samples in 0.5 s = 24,000/s = 1x real time at 24 kHz; limits 100k (bandwidth)
    # and 50k (compute): compute-bound at 50k, 48 % of it; BLAS 60k: 40 % of it
    r = BenchRow.of("native", Variant(32), 1, "int8", (0.5, 12000, "avx2"), (100000.0, 50000.0), 60000.0)
    assert r.samples_per_second == 24000 and r.times_realtime_24k == 1.0
    assert (r.limit_samples_per_second, r.bound) == (50000.0, "compute")
    assert r.share_of_limit == pytest.approx(0.48) and r.share_of_blas == pytest.approx(0.4)
    r = BenchRow.of("native", Variant(32), 1, "int8", (0.5, 12000, "avx2"), (40000.0, 50000.0), 60000.0)
    assert (r.limit_samples_per_second, r.bound, r.share_of_limit) == (40000.0, "bandwidth", 0.6)


def test_table_ratios_compare_rows_of_the_same_run() -> None:
    """x torch against the best torch row of the N, x dense against the dense row of the
    same N, precision, threads and mode, x seq against the sequential row of the same
    weights; a row with no such partner gets '-'."""

    def row(
        engine: str, variant: Variant, sps: float, mode: str = "sequential", threads: int = 1
    ) -> BenchRow:
        return BenchRow.of(
            engine, variant, threads, "int8", (1.0, int(sps), "avx2"), (1e6, 1e6), 1e6, mode=mode
        )

    sparse = Variant(32, 0.9, "16x1", "gru")
    results = [
        row("torch", Variant(32), 1000),
        row("torch", Variant(32), 2000, threads=2),
        row("native", Variant(32), 30000),
        row("native", sparse, 60000),
        row("native", Variant(32), 90000, mode="fold"),
        row("native", Variant(64), 5000),
    ]
    cells = [dict(zip(HEADER, r, strict=True)) for r in table_rows(results)]
    assert [c["x torch"] for c in cells] == ["0.5", "1.0", "15.0", "30.0", "45.0", "-"]
    assert [c["x dense"] for c in cells] == ["-", "-", "-", "2.0", "-", "-"]
    assert [c["x seq"] for c in cells] == ["-", "-", "-", "-", "3.0", "-"]
    assert [c["weights"] for c in cells][2:4] == ["dense", "90% 16x1 gru"]
    lines = findings(results)
    assert lines == [
        "sequential N=32 int8 threads=1: x torch 15.0; "
        "at this machine's bandwidth limit it could be at most 500.0"
    ]


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
    res = CliRunner().invoke(app, [*args, "--sparsity", "0.9", "--subscale", "--profile", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert all(set(r) >= FIELDS for r in rows)
    got = {(r["engine"], r["mode"], r["sparsity"], r["threads"]) for r in rows}
    native = {("native", "sequential", s, t) for s in (0.0, 0.9) for t in (1, 2)}
    native |= {("native", "subscale", s, t) for s in (0.0, 0.9) for t in (1, 2)}
    torch = {("torch", "sequential", 0.0, t) for t in (1, 2)} | {("torch", "subscale", 0.0, 1)}
    assert got == native | torch
    assert "x seq" in res.output and "at this machine's multiply-add limit it could be at most" in res.output
    for r in rows:  # native: 0.05 s at 22050 Hz, torch: 2000 samples, in whole frames of 256
        assert r["samples_per_second"] > 0 and r["samples"] == (1280 if r["engine"] == "native" else 2048)
    for r in rows:  # --profile: every native row's stage shares (the torch sampler has no timers)
        if r["engine"] == "torch":
            assert r["profile"] == {}
            continue
        assert sum(r["profile"].values()) == pytest.approx(1.0) and r["profile"]["W_hh"] > 0
        assert (r["profile"]["context"] > 0) == (r["mode"] == "subscale")
    assert res.output.count("profile subscale N=32") == 4 and res.output.count("profile sequential N=32") == 4


def test_bench_stream_rows_time_the_first_chunk(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        "bench",
        "-n",
        "64",
        "-t",
        "1",
        "--precision",
        "int8",
        "--no-torch",
        "--seconds",
        "0.2",
        "--stream",
    ]
    res = CliRunner().invoke(app, [*args, "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = {r["mode"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"sequential", "stream"} and rows["sequential"]["first_audio_ms"] is None
    stream, seq = rows["stream"], rows["sequential"]
    assert stream["samples"] == seq["samples"] == 18 * 256  # 0.2 s at 22050 Hz, in whole frames
    # the first 1024 samples come out before the whole run ends
    assert 0 < stream["first_audio_ms"] < 1000 * stream["seconds"]
    assert "stream N=64 dense int8 threads=1: first audio after" in res.output
