"""Progress bars of the ``etl`` command's long work (rich's, as every command shows them), on standard error so
that standard output keeps only the report; nothing is drawn when standard error is not a terminal."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


def progress_bar() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


class SeedBar:
    """Shows ``etl seed``: generating the demo set, then one step per file written (``SeedProgress``)."""

    def __init__(self, progress: Progress, events: int) -> None:
        self.progress = progress
        self.task: TaskID = progress.add_task(f"generating {events:,} events", total=None)

    def generated(self, files: int, records: int) -> None:
        self.progress.update(self.task, description=f"writing {records:,} records", total=files, completed=0)

    def written(self, name: str, records: int) -> None:
        self.progress.update(self.task, description=f"wrote {name} ({records:,} records)", advance=1)
