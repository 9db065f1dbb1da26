"""Progress for long commands, on stderr and only on a terminal (logs and pipes get the results only)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def console() -> Console:
    return Console(stderr=True)


def count_bar(label: str, total: int) -> Progress:
    """A bar over `total` items (`progress.advance(task)` per item): for mint."""
    out = console()
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=out,
        transient=False,
        disable=not out.is_terminal or total < 2,
    )


@contextlib.contextmanager
def share_bar(label: str) -> Iterator[Callable[[str, float], None]]:
    """A bar over a computation that reports (description of its current step, share done 0..1)."""
    out = console()
    with Progress(
        TextColumn(label),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=out,
        transient=True,
        disable=not out.is_terminal,
    ) as progress:
        task = progress.add_task("", total=1.0)

        def update(description: str, share: float) -> None:
            progress.update(task, completed=share, description=description)

        yield update


@contextlib.contextmanager
def spinner(message: str) -> Iterator[Any]:
    """A spinner with `message` while the block runs (work whose size is unknown before it ends)."""
    out = console()
    if not out.is_terminal:
        yield None
        return
    with out.status(message, spinner="dots") as status:
        yield status
