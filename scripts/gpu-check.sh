#!/usr/bin/env bash
# One prepared run for a lent GPU machine: install this package beside the torch already
# there (never replacing it), train a WaveRNN N=512 in bf16 for a fixed wall budget on the
# bundled corpus (or --data), export int8, vocode the test split with the native engine
# and with Griffin-Lim, and score both, everything under one output folder.
#
#   scripts/gpu-check.sh [--device cuda:0] [--minutes 8] [--out exp/gpu-check] [--no-install]
#                        [--wheels DIR] [--data DIR] [--data-set KEY=VALUE ...]
#                        [-- --set KEY=VALUE ...]     (extra train settings)
#
# A machine without a network installs from --wheels alone (what scripts/gpu-prep.sh put
# there; no index, no build isolation, so the package builds with the machine's own
# scikit-build-core and pybind11). --data-set goes to preprocess: the full 502-utterance
# corpus takes the reference model's split, --data-set data.min_seconds=0.5
# --data-set data.valid_count=8 --data-set data.test_count=32.
#
# `make test` runs it on the CPU (--device cpu --minutes 1 --no-install) so the path is
# known to work before a GPU is ever lent. A rerun continues the training (--resume) and
# redoes the stages after it.
set -euo pipefail

DEVICE=cuda
MINUTES=8
OUT=exp/gpu-check
INSTALL=1
WHEELS=
DATA=
DATA_SET=()
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE=$2; shift 2 ;;
        --minutes) MINUTES=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        --wheels) WHEELS=$(cd "$2" && pwd); shift 2 ;;
        --data) DATA=$(cd "$2" && pwd); shift 2 ;;
        --data-set) DATA_SET+=(--set "$2"); shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "gpu-check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu-check.log"
exec > >(tee -a "$LOG") 2>&1
stage() { echo "== $(date -u +%H:%M:%S) $*"; }

if [ "$INSTALL" = 1 ]; then
    stage "install (keeping the installed torch)"
    "$PY" -c "import torch" || { echo "gpu-check: torch must already be installed for $PY" >&2; exit 1; }
    "$PY" -c "import torch; print(f'torch=={torch.__version__}')" > "$OUT/torch-constraint.txt"
    OFFLINE=()
    [ -n "$WHEELS" ] && OFFLINE=(--no-index --find-links "$WHEELS" --no-build-isolation)
    "$PY" -m pip install --quiet ${OFFLINE[@]+"${OFFLINE[@]}"} -c "$OUT/torch-constraint.txt" -e "$ROOT[tensorboard]"
fi

stage "machine"
"$PY" - "$DEVICE" <<'EOF' | tee "$OUT/machine.txt"
import platform, sys, torch
device = sys.argv[1]
print(f"python {platform.python_version()}, torch {torch.__version__}, device {device}")
if device.startswith("cuda") and torch.cuda.is_available():
    index = int(device.partition(":")[2] or 0)
    p = torch.cuda.get_device_properties(index)
    print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, bf16 {torch.cuda.is_bf16_supported()}")
EOF

VOCODER=("$PY" -c "from vocoder.cli import main; main()")
DATA=${DATA:-$ROOT/data/allison-mini}
FEATS="$OUT/features"
CKPT="$OUT/checkpoints"
JOBS=$(nproc 2>/dev/null || echo 2)

stage "preprocess $DATA"
"${VOCODER[@]}" preprocess "$DATA" "$FEATS" --config allison-16k --jobs "$JOBS" \
    ${DATA_SET[@]+"${DATA_SET[@]}"}

stage "train N=512 bf16 on $DEVICE for $MINUTES min"
"${VOCODER[@]}" train "$FEATS" "$CKPT" --config allison-16k --resume --device "$DEVICE" \
    --set model.hidden_size=512 --set train.precision=bf16 --set train.learning_rate=1e-3 \
    --set train.ema=0.999 --set train.steps=1000000 --set train.max_minutes="$MINUTES" \
    --set train.valid_every=1000 --set train.checkpoint_every=1000 --set train.threads=0 \
    ${EXTRA[@]+"${EXTRA[@]}"}

stage "export int8"
"${VOCODER[@]}" export "$CKPT" "$OUT/model-int8.wrnn" --precision int8

MELS=()
while read -r id; do MELS+=("$FEATS/mels/$id.npy"); done < "$FEATS/test.txt"
stage "synthesize ${#MELS[@]} test utterances (native engine, and Griffin-Lim)"
"${VOCODER[@]}" synthesize "$OUT/model-int8.wrnn" "${MELS[@]}" --out-dir "$OUT/wavernn" --jobs "$JOBS" --overwrite
"${VOCODER[@]}" synthesize "$OUT/model-int8.wrnn" "${MELS[@]}" --out-dir "$OUT/griffinlim" \
    --engine griffinlim --jobs "$JOBS" --overwrite

stage "evaluate"
"${VOCODER[@]}" evaluate "$OUT/wavernn" "$DATA/wavs" --json "$OUT/eval-wavernn.json"
"${VOCODER[@]}" evaluate "$OUT/griffinlim" "$DATA/wavs" --json "$OUT/eval-griffinlim.json"
stage "done: $OUT (gpu-check.log, machine.txt, checkpoints/, model-int8.wrnn, eval-*.json)"
