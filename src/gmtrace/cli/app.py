"""The `gmtrace` Typer app, its console and its one way to fail (the command
modules register their commands on it)."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reverse-engineer generative models from the images they make.",
)
console = Console()


def fail(message: str) -> None:
    """Print a one-line error and exit with status 2."""
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)
