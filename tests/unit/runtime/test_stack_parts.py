"""How `cdsflow up` starts the broker, Triton and the EHR: at once, and a failed start leaves
nothing running that the stack would not stop. The starts here are stand-ins (and one real
`sleep` process); the real parts start in tests/e2e."""

from __future__ import annotations

import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import cast

import pytest

from cdsflow.runtime.parts import _ready_or_stopped
from cdsflow.runtime.processes import ManagedProcess, ProcessFailed, spawn
from cdsflow.runtime.stack import Stack, StackOptions
from tests.conftest import REPO_ROOT


class StartedPart:
    def __init__(self, name: str) -> None:
        self.name = name
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def stack() -> Stack:
    return Stack(
        StackOptions(
            work_dir=Path("unused"),
            model_repository=REPO_ROOT / "models",
            ehr_base_url="https://ehr.example.org/fhir",
            adapters=(REPO_ROOT / "adapters",),
        )
    )


def test_the_parts_start_at_once() -> None:
    # each start waits until all three are in progress: one after the other, none would get
    # past the barrier
    barrier = threading.Barrier(3, timeout=10)

    def start(name: str) -> ManagedProcess:
        barrier.wait()
        return cast(ManagedProcess, StartedPart(name))

    the_stack = stack()
    started = the_stack._start_parts({name: partial(start, name) for name in ("a", "b", "c")})

    assert list(started) == ["a", "b", "c"]
    assert [cast(StartedPart, part).name for part in the_stack.parts] == ["a", "b", "c"]


def test_a_failed_start_leaves_the_others_to_the_stack_and_goes_up() -> None:
    def failing() -> ManagedProcess:
        raise ProcessFailed("triton not ready after 120s")

    the_stack = stack()
    with pytest.raises(ProcessFailed, match="triton not ready"):
        the_stack._start_parts(
            {
                "broker": lambda: cast(ManagedProcess, StartedPart("broker")),
                "triton": failing,
                "ehr": lambda: cast(ManagedProcess, StartedPart("ehr")),
            }
        )

    # the stack stops what it holds, so the broker and the EHR are not left running
    assert [cast(StartedPart, part).name for part in the_stack.parts] == ["broker", "ehr"]
    the_stack.stop()
    assert the_stack.parts == []


def test_a_part_that_is_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    part = spawn("never-ready", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path)
    try:
        with pytest.raises(ProcessFailed, match="not ready after"):
            _ready_or_stopped(part, lambda: False, timeout_s=0.3)
        assert not part.alive()
    finally:
        part.stop()


def test_an_interrupted_start_still_leaves_every_started_part_to_the_stack() -> None:
    # Ctrl-C (SIGINT, handled in the main thread) while the parts start: the parts that become
    # ready after it must still be the stack's to stop
    def interrupted_while_starting(name: str) -> ManagedProcess:
        # once both starts are under way (a SIGINT raised the instant a start's thread began
        # could land while the main thread is still inside the executor's own bookkeeping)
        time.sleep(0.1)
        if name == "ehr":
            signal.raise_signal(signal.SIGINT)
        time.sleep(0.3)
        return cast(ManagedProcess, StartedPart(name))

    the_stack = stack()
    # Python's own SIGINT handler, as in `cdsflow up` run from a terminal: a runner started in
    # the background by a shell inherits SIGINT ignored, and Python then keeps it ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            the_stack._start_parts(
                {name: partial(interrupted_while_starting, name) for name in ("triton", "ehr")}
            )
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)

    assert sorted(cast(StartedPart, part).name for part in the_stack.parts) == ["ehr", "triton"]
