"""Keep `cdsflow up` running when a part exits.

- A service (listener, reasoner, writeback) that exits is started again, on the same port with
  the same environment, after a delay that doubles with each quick exit (0.5 s, 1 s, 2 s, ...
  up to 30 s) and starts over once the service has stayed up for a minute. Each restart is
  announced on one console line. An event is committed on Kafka only once it has been
  handled, so a restarted consumer takes up the events that the last one had not finished.
  (The writeback's card store is in memory: a restarted writeback serves cards for what it
  consumes from then on; what it wrote back into the EHR stays there.)
- A part that the others depend on (the broker, Triton, the embedded EHR) is not restarted:
  the embedded broker keeps its events in memory, so a new one would start empty and the
  services would carry on as if nothing had been lost. Its exit stops everything.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cdsflow.runtime.processes import ProcessFailed


class SupervisedPart(Protocol):
    """What the supervisor needs of a started part (`ManagedProcess` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def log_path(self) -> Path: ...

    @property
    def exit_code(self) -> int | None: ...

    def restart(self) -> None: ...


class EssentialPartExited(ProcessFailed):
    """The broker, Triton or the EHR exited: the pipeline cannot go on without it."""


@dataclass(frozen=True)
class RestartPolicy:
    """How long to wait before starting an exited service again."""

    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # a service that stayed up this long is healthy again: its next restart waits first_delay_s
    healthy_after_s: float = 60.0

    def delay_s(self, quick_exits: int) -> float:
        """The wait before restart number `quick_exits` (1, 2, ...) of a run of quick exits."""
        doublings = min(max(0, quick_exits - 1), 64)  # no float overflow after many exits
        return min(self.max_delay_s, self.first_delay_s * 2.0**doublings)


@dataclass
class _ServiceRecord:
    part: SupervisedPart
    started_at: float
    restarts: int = 0
    quick_exits: int = 0
    restart_due_at: float | None = None


def print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def exit_description(exit_code: int | None) -> str:
    """`exited with 1`, `exited with -9 (SIGKILL)`."""
    if exit_code is not None and exit_code < 0:
        with contextlib.suppress(ValueError):
            return f"exited with {exit_code} ({signal.Signals(-exit_code).name})"
    return f"exited with {exit_code}"


class Supervisor:
    """Call `check()` a few times a second: it restarts the services that exited, once their
    delay is over, and raises `EssentialPartExited` when an essential part has exited."""

    def __init__(
        self,
        policy: RestartPolicy | None = None,
        announce: Callable[[str], None] = print_to_stderr,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._announce = announce
        self._clock = clock
        self._essential: list[SupervisedPart] = []
        self._services: list[_ServiceRecord] = []

    def restart_when_exited(self, parts: Iterable[SupervisedPart]) -> None:
        now = self._clock()
        self._services.extend(_ServiceRecord(part, started_at=now) for part in parts)

    def stop_all_when_exited(self, parts: Iterable[SupervisedPart]) -> None:
        self._essential.extend(parts)

    def check(self) -> list[str]:
        """Restart what is due; returns the names of the services started again just now."""
        for part in self._essential:
            if part.exit_code is not None:
                raise EssentialPartExited(
                    f"the {part.name} {exit_description(part.exit_code)} (log: {part.log_path}); "
                    "stopping everything, since the services cannot work without it"
                )
        now = self._clock()
        restarted = []
        for record in self._services:
            if record.restart_due_at is None:
                if record.part.exit_code is not None:
                    self._schedule_restart(record, now)
            elif now >= record.restart_due_at:
                try:
                    record.part.restart()
                except OSError as exc:
                    raise ProcessFailed(
                        f"could not start the {record.part.name} again: {exc} "
                        f"(log: {record.part.log_path})"
                    ) from exc
                record.started_at = now
                record.restart_due_at = None
                restarted.append(record.part.name)
        return restarted

    def _schedule_restart(self, record: _ServiceRecord, now: float) -> None:
        if now - record.started_at >= self.policy.healthy_after_s:
            record.quick_exits = 0
        record.quick_exits += 1
        record.restarts += 1
        delay = self.policy.delay_s(record.quick_exits)
        record.restart_due_at = now + delay
        part = record.part
        self._announce(
            f"cdsflow: {part.name} {exit_description(part.exit_code)}; restarting in "
            f"{delay:g} s (restart {record.restarts}, log: {part.log_path})"
        )
