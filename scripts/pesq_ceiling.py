"""What PESQ a 16-bit dual-softmax vocoder can reach at best, given how sharply it predicts
each byte: the recordings themselves, re-quantized to 16 bits in some representation, with
the fine byte replaced by uniform noise (a model whose fine softmax is flat but whose coarse
byte is always right) or the coarse byte jittered by one step (a coarse softmax that is
slightly unsure), scored against the untouched recordings. The figures behind the PESQ
ceiling in docs/training.md.

A representation is the plain sample, or LPCNet-style pre-emphasis: the bytes code
e_t = gain * (x_t - a * x_{t-1}) and the output is de-emphasised, so byte errors come out
low-passed (under the speech's own spectral tilt) and divided by the gain.

    python scripts/pesq_ceiling.py WAV_DIR IDS_FILE [--count 16] [--emphasis 0.85:3 ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from vocoder.audio import float_to_int16, join_16bit, split_16bit
from vocoder.evaluate import pesq_wb

Damage = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def fine_uniform(c: np.ndarray, f: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return c, rng.integers(0, 256, len(f))


def coarse_jitter(c: np.ndarray, f: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One step up or down, each with probability 0.1."""
    return np.clip(c + rng.choice([-1, 0, 1], len(c), p=[0.1, 0.8, 0.1]), 0, 255), f


def both(c: np.ndarray, f: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return coarse_jitter(*fine_uniform(c, f, rng), rng)


DAMAGES: dict[str, Damage] = {"fine uniform": fine_uniform, "coarse ±1": coarse_jitter, "both": both}


def damaged(x: np.ndarray, a: float, gain: float, damage: Damage, rng: np.random.Generator) -> np.ndarray:
    """``x`` (float) coded as 16-bit bytes of its (pre-emphasised) form, damaged, decoded."""
    e = float_to_int16(gain * lfilter([1.0, -a], [1.0], x))
    c, f = damage(*split_16bit(e), rng)
    return lfilter([1.0 / gain], [1.0, -a], join_16bit(c, f).astype(np.float64) / 32768.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wav_dir", type=Path)
    parser.add_argument("ids", type=Path, help="utterance ids, one per line")
    parser.add_argument("--count", type=int, default=16, help="the first COUNT ids")
    parser.add_argument("--emphasis", nargs="*", default=["0.85:3"], help="a:gain pairs")
    args = parser.parse_args()
    ids = args.ids.read_text().split()[: args.count]
    forms = [(0.0, 1.0)] + [tuple(float(v) for v in s.split(":")) for s in args.emphasis]
    print(f"{len(ids)} utterances of {args.wav_dir}; mean PESQ (wideband) against the recordings")
    print(f"{'representation':24s}" + "".join(f"{name:>14s}" for name in DAMAGES))
    for a, gain in forms:
        rng = np.random.default_rng(0)
        scores = {name: [] for name in DAMAGES}
        for uid in ids:
            x, rate = sf.read(args.wav_dir / f"{uid}.wav", dtype="float64")
            for name, damage in DAMAGES.items():
                scores[name].append(pesq_wb(x, damaged(x, a, gain, damage, rng), rate))
        label = "plain" if a == 0.0 and gain == 1.0 else f"pre-emphasis {a:g}, gain {gain:g}"
        print(f"{label:24s}" + "".join(f"{np.mean(v):14.3f}" for v in scores.values()))


if __name__ == "__main__":
    main()
