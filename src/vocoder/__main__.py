"""``python -m vocoder``: the CLI (what torchrun starts on every rank)."""

from vocoder.cli import main

main()
