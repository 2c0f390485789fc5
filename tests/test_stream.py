"""Streaming synthesis: the API's stream and `synthesize --stdout` give the samples a
whole-utterance run gives, chunk by chunk, with a WAV header for a stream of unknown
length (or none with --raw), a mel read from standard input, and a quiet stop when the
reader goes away."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CORPUS, ROOT
from vocoder import load_vocoder
from vocoder.audio import load_audio, log_mel

MODEL = ROOT / "models" / "allison-16k" / "model-int8.wrnn"


@pytest.fixture(scope="module")
def mel() -> np.ndarray:
    a = load_vocoder(MODEL).config.audio
    return log_mel(load_audio(CORPUS / "wavs" / "AL-conf-errormenu.flac", a.sample_rate), a)[:, :50]


@pytest.mark.parametrize("threads", [1, 2])
def test_stream_yields_the_whole_run_s_samples_in_chunks(mel: np.ndarray, threads: int) -> None:
    v = load_vocoder(MODEL, threads=threads)
    whole = v.synthesize(mel, seed=7)
    chunks = list(v.stream(mel, seed=7, chunk_samples=3000))
    assert [len(c) for c in chunks] == [3000] * 3 + [len(whole) - 9000]
    assert np.array_equal(np.concatenate(chunks), whole)
    assert v._native.last_stream_samples == len(whole)
    stream = v.stream(mel, seed=7, chunk_samples=1000)
    first = next(stream)
    stream.close()  # a reader that leaves: the engine stops at its next chunk
    assert np.array_equal(first, whole[:1000])
    # at most: the chunk read, QUEUED_CHUNKS queued, one blocked on the queue, one step more
    assert 1000 <= v._native.last_stream_samples <= 4 * 1000 + 1 < len(whole)


def _vocoder(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "vocoder", "synthesize", str(MODEL), *args]
    return subprocess.run(command, input=stdin, capture_output=True, check=False, timeout=120)


def test_stdout_streams_a_wav_then_pcm_and_messages_go_to_stderr(mel: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "m.npy"
    np.save(path, mel)
    expected = load_vocoder(MODEL).synthesize(mel, seed=3)
    wav = _vocoder(str(path), "--stdout", "--seed", "3")
    assert wav.returncode == 0, wav.stderr
    header = wav.stdout[:44]
    assert header[:4] == b"RIFF" and struct.unpack("<I", header[4:8])[0] == 0xFFFFFFFF
    assert header[8:16] == b"WAVEfmt " and struct.unpack("<IHHIIHH", header[16:36]) == (
        16,
        1,
        1,
        16000,
        32000,
        2,
        16,
    )
    assert header[36:40] == b"data" and struct.unpack("<I", header[40:44])[0] == 0xFFFFFFFF
    assert np.array_equal(np.frombuffer(wav.stdout[44:], "<i2"), expected)
    assert b"streamed 10000 samples: first audio after" in wav.stderr
    raw = _vocoder("-", "--stdout", "--raw", "--seed", "3", stdin=path.read_bytes())
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == wav.stdout[44:]


def test_stdout_errors_and_a_reader_that_goes_away(mel: np.ndarray, tmp_path: Path) -> None:
    two = _vocoder("a.npy", "b.npy", "--stdout")
    assert (
        two.returncode == 1 and b"--stdout streams exactly one input, got 2" in two.stderr and not two.stdout
    )
    junk = _vocoder("-", "--stdout", stdin=b"not a npy")
    assert junk.returncode == 1 and b"<stdin>: cannot read a mel .npy" in junk.stderr and not junk.stdout
    assert b"Traceback" not in junk.stderr
    path = tmp_path / "m.npy"
    np.save(path, mel)
    pipe = subprocess.run(
        f"{sys.executable} -m vocoder synthesize {MODEL} {path} --stdout | head -c 100 | wc -c",
        shell=True,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert pipe.stdout.strip() == "100" and "terminate" not in pipe.stderr and "Traceback" not in pipe.stderr
