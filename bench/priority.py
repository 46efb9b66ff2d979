"""A measured part's CPU priority: the benches run the EHR (SEKMET) below everything else in
their main rounds, standing for the EHR's own machine in production, and at the same priority
in rounds reported beside them; and a part held off the CPU for a round (`held_off_cpu`),
standing for a part on machines of its own."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


def renice(pid: int, value: int) -> None:
    """The process to niceness `value`: each of its threads (niceness is per thread on Linux)
    and, where the kernel groups processes by session (autogroup; each part runs in a session
    of its own), its session's group, which is what the scheduler weighs then."""
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), value)
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/autogroup").write_text(str(value))


@contextlib.contextmanager
def held_off_cpu(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP) while inside, and continued after: what it would have
    done meanwhile waits, and it does it once continued."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
