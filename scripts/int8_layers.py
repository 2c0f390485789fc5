"""Which per-sample matrix costs int8 its accuracy: each one quantized alone to per-row int8
(export's quantizer, then dequantized) with the rest left fp32, exported fp32 and scored
by the native engine's teacher-forced NLL on a split of a features directory; then all of
them together. The figures behind ``export.KEPT_WIDER`` (docs/native-engine.md).

    python scripts/int8_layers.py CHECKPOINT FEATURES_DIR [valid]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from vocoder import checkpoint as ckpt_mod
from vocoder.export import PER_SAMPLE, model_state, to_int8_rows, write_model_file
from vocoder.native import NativeVocoder
from vocoder.nll import score_model_file


def main(checkpoint: Path, features: Path, split: str) -> None:
    model, cfg, _ = ckpt_mod.load_model(ckpt_mod.resolve(checkpoint))
    base = model_state(model)
    print(f"{checkpoint} on {features} ({split}): teacher-forced NLL, bits per sample")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.wrnn"
        for quantized in [(), *((name,) for name in PER_SAMPLE), PER_SAMPLE]:
            state = dict(base)
            for name in quantized:
                q, scale = to_int8_rows(state[name])
                state[name] = (q.astype(np.float32) * scale[:, None]).astype(np.float32)
            path.unlink(missing_ok=True)
            write_model_file(path, cfg, state, "fp32")
            report = score_model_file(NativeVocoder.load(path), features, split)
            label = "none (fp32)" if not quantized else "all" if len(quantized) > 1 else quantized[0]
            print(f"int8: {label:18s} coarse {report.coarse:.3f}  fine {report.fine:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "valid")
