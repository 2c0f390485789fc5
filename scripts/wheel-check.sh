#!/usr/bin/env bash
# The torch-free install: build this package's wheel, install it into a fresh venv with
# no extras (so no torch), then synthesize and inspect the shipped model with it and check
# that a command needing torch says so in one line. Run by `make test`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$ROOT/.venv/bin/python" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$ROOT"
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet "$WORK"/dist/*.whl
if "$WORK/venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "wheel-check: installing the wheel without extras brought torch in" >&2
    exit 1
fi
VOCODER="$WORK/venv/bin/vocoder"
MODEL="$ROOT/models/allison-16k/model-int8.wrnn"
"$VOCODER" synthesize "$MODEL" "$ROOT/data/allison-mini/wavs/AL-conf-errormenu.flac" -o "$WORK/out"
test -s "$WORK/out/AL-conf-errormenu.wav"
"$VOCODER" info "$MODEL" > /dev/null
if out=$("$VOCODER" train "$WORK/features" "$WORK/run" 2>&1); then
    echo "wheel-check: train ran without torch" >&2
    exit 1
fi
grep -q "needs torch" <<< "$out" || { echo "wheel-check: train without torch said: $out" >&2; exit 1; }
[ "$(wc -l <<< "$out")" -eq 1 ] || { echo "wheel-check: more than one line: $out" >&2; exit 1; }
echo "wheel-check: OK (wheel installed without torch; synthesize and info ran; train asks for [train])"
