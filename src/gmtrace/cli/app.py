"""The `gmtrace` Typer app, its console and its one way to fail (the command
modules register their commands on it)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from gmtrace.train.config import BALANCES

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


def _known_balance(balance: str) -> str:
    if balance not in BALANCES:
        fail(f"unknown --balance {balance!r}; choose one of {', '.join(BALANCES)}")
    return balance


# `--balance` of `train` and `evaluate` (`TrainConfig.balance`), refused before any work
Balance = Annotated[
    str,
    typer.Option(
        help="how a training batch picks its generated images: gm (uniformly over the GMs) "
        "or tier (each tier of GMs equally, uniformly within it)",
        callback=_known_balance,
    ),
]
