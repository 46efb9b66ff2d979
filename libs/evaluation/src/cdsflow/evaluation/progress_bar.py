"""The run's progress as rich progress bars on stderr (plain lines when it is not a terminal)."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from cdsflow.evaluation.evaluation_run import Progress


class ProgressBar(Progress):
    """`with ProgressBar() as progress: await evaluate(..., progress=progress)`"""

    def __init__(self) -> None:
        self._bars = RichProgress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )

    def __enter__(self) -> ProgressBar:
        self._bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bars.stop()

    def start(self, description: str, total: int) -> Callable[[int], None]:
        task = self._bars.add_task(description, total=total)
        return lambda steps: self._bars.advance(task, steps)
