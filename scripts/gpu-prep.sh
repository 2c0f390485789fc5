#!/usr/bin/env bash
# Run here, where PyPI answers, before a GPU machine is lent: everything scripts/gpu-check.sh
# needs there that such a machine lacks and cannot fetch (it reaches no network).
#
#   scripts/gpu-prep.sh [--python-version 3.12] [--wheels .whl] [--corpus DIR --to exp/corpus]
#
# --wheels: the audio packages this project needs beyond a CUDA image's usual scientific
#   stack (torch, numpy, scipy, numba, typer, ... are taken as there), as wheels for the
#   machine's Python, each at the version this checkout's .venv runs, and pesq as its
#   source (it publishes no wheels; the machine builds it with its own Cython). Hand the
#   folder to gpu-check.sh --wheels; it installs from it alone.
# --corpus/--to: a copy of a corpus folder inside this checkout (an ignored path), since
#   only the working tree travels; give it to gpu-check.sh --data.
set -euo pipefail

PYVER=3.12
WHEELS=.whl
CORPUS=
TO=exp/corpus
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PYVER=$2; shift 2 ;;
        --wheels) WHEELS=$2; shift 2 ;;
        --corpus) CORPUS=$2; shift 2 ;;
        --to) TO=$2; shift 2 ;;
        *) echo "gpu-prep: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
# What librosa, soundfile and the scores need that a CUDA image's stack does not bring.
WHEEL_PACKAGES=(librosa soundfile soxr audioread pooch decorator cffi pycparser platformdirs pystoi)
version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }

mkdir -p "$WHEELS"
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done
for name in "${WHEEL_PACKAGES[@]}"; do
    spec="$name==$(version "$name")"
    echo "gpu-prep: $spec"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp "${PLATFORMS[@]}" -d "$WHEELS" "$spec"
done
echo "gpu-prep: pesq==$(version pesq) (source)"
"$PY" -m pip download --quiet --no-deps --no-binary=pesq -d "$WHEELS" "pesq==$(version pesq)"

if [ -n "$CORPUS" ]; then
    mkdir -p "$TO"
    cp -r "$CORPUS"/. "$TO"/
    echo "gpu-prep: $CORPUS -> $TO"
fi
du -sh "$WHEELS" ${CORPUS:+"$TO"}
