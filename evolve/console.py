"""Shared terminal output: one rich console, tables, and the user-error exit path."""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Iterable, NoReturn, Sequence

import typer
from rich.console import Console
from rich.table import Table

#: Width for output that is no terminal (a log file, a pipe): rich would wrap lines and
#: truncate table headers at 80 columns there. $COLUMNS still wins.
LOG_WIDTH = 1000

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
for _console in (console, err_console):
    if not _console.is_terminal and "COLUMNS" not in os.environ:
        _console.width = LOG_WIDTH


#: Every command that loads a benchmark takes this (repeatable); benchmarks.parse_options reads it.
BenchmarkOptionOpt = typer.Option(
    None, "--benchmark-option", metavar="KEY=VALUE",
    help="An adapter option, repeatable: e.g. -b synthetic --benchmark-option "
         "shape=longmemeval --benchmark-option questions=100 (an unknown key lists the valid "
         "ones).")

#: The embedding backend of `eval` and `bench scale`; embedder_spec checks it.
EmbedderOpt = typer.Option(
    None, "--embedder", help="Embedding backend of dense retrieval: onnx (default: the bundled "
    "MiniLM in int8 onnxruntime, ~2x torch's speed on a CPU) or sentence-transformers (torch, "
    "the backend of results stored before the switch); each has its own cache.")


def embedder_spec(backend: str | None) -> Any:
    """The EmbedderSpec of an --embedder value (None: the default backend)."""
    from benchmarks.errors import MemevolveError
    from evolve.embeddings import backend_names
    from evolve.memory.system import EmbedderSpec

    if backend is None:
        return EmbedderSpec()
    if backend not in backend_names():
        raise MemevolveError(f"--embedder {backend}: no such backend. Fix: use one of "
                             f"{', '.join(backend_names())}.")
    return EmbedderSpec(backend=backend)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a user error as one paragraph (no traceback) and exit non-zero."""
    from rich.text import Text

    # As Text, not markup: a message quoting user input ('nomod:X:', '[1, 2]') prints as is.
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    sys.exit(code)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every error a user can cause into a one-paragraph message and exit code 2."""
    from benchmarks.errors import MemevolveError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MemevolveError as exc:
            fail(str(exc))

    return wrapper


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    # A title wraps at the table's width; as wide as the title, it stays on one line.
    out = Table(title=title, title_justify="left", min_width=len(title))
    for i, name in enumerate(columns):
        out.add_column(name, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in rows:
        out.add_row(*(fmt(v) for v in row))
    return out


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
