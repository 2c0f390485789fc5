"""What every `vocoder` command module shares: the usage line, the two consoles, the
one-line messages, and the option types more than one command takes."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperArgument, TyperCommand

from vocoder.fsutil import write_text_atomic


class Command(TyperCommand):
    """A command whose usage line reads as in a man page, ``vocoder train [OPTIONS]
    FEATURES_DIR CKPT_DIR``, rather than Typer's ``{features_dir} {ckpt_dir}``, whose braces
    a first-time user takes for literal characters."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument) and param.name:
                name = param.name.upper() + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


console = Console(stderr=True)
out = Console()


ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", "-c", help="YAML config file, or a shipped name: ljspeech-22k, allison-16k."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override one config key, e.g. --set model.hidden_size=896 (repeatable).",
    ),
]


class Engine(str, Enum):
    """Sampling engines."""

    native = "native"
    torch = "torch"
    griffinlim = "griffinlim"


class MelLayout(str, Enum):
    """Axis order of a mel file: auto (the axis equal to the model's n_mels), (n_mels, T) or (T, n_mels)."""

    auto = "auto"
    nm_t = "nm-t"
    t_nm = "t-nm"


class MelScale(str, Enum):
    """Log scale of a mel file's values, converted to the model's natural log."""

    ln = "ln"
    log10 = "log10"
    db = "db"
    linear = "linear"


class Precision(str, Enum):
    """Weight precision of the per-sample matrices in an exported model file."""

    fp32 = "fp32"
    bf16 = "bf16"
    int8 = "int8"


def say(message: str, label: str = "", style: str = "", to: Console = out) -> None:
    """One unwrapped line, never parsed as markup (paths may contain brackets)."""
    text = Text.assemble((f"{label} ", style), message) if label else Text(message)
    to.print(text, highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    say(message, "error:", "red", console)
    raise typer.Exit(1)


def show_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int = 0,
    left: Collection[str] = (),
    bold: Collection[int] = (),
) -> None:
    """A table of finished cells on standard output: ``left`` columns left-justified, the
    rest right-justified (numbers), ``bold`` rows by index. Printed at least ``width``
    wide, so a pipe or log (80 columns by default) never truncates a figure."""
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="left" if col in left else "right", no_wrap=True)
    for i, row in enumerate(rows):
        table.add_row(*row, style="bold" if i in bold else None)
    (out if out.width >= width else Console(width=width)).print(table)


def write_json(path: Path, data: object) -> None:
    """A command's figures as JSON, written atomically, and where they went."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    say(f"-> {path}")
