"""A part held off the CPU for a round (`bench.priority.held_off_cpu`): stopped inside, going on
after, even when the round fails."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.priority import held_off_cpu
from bench.reasoner import process_cpu_s


def _state(pid: int) -> str:
    # /proc/PID/stat: "pid (comm) state ..."; comm may hold spaces, the state follows ")"
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _until_state(pid: int, states: str, timeout_s: float = 10) -> str:
    deadline = time.monotonic() + timeout_s
    while (state := _state(pid)) not in states:
        assert time.monotonic() < deadline, f"process state {state}, waiting for {states}"
        time.sleep(0.01)
    return state


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    """A process that spins on the CPU until stopped."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_the_process_is_stopped_inside_and_runs_again_after(
    busy: subprocess.Popen[bytes],
) -> None:
    with held_off_cpu(busy.pid):
        assert _until_state(busy.pid, "T") == "T"
        stopped_at = process_cpu_s(busy.pid)
        time.sleep(0.3)  # the time it is held off the CPU, not a wait for something
        assert process_cpu_s(busy.pid) == stopped_at

    assert _until_state(busy.pid, "R") == "R"
    deadline = time.monotonic() + 10
    while process_cpu_s(busy.pid) == stopped_at:
        assert time.monotonic() < deadline, "no CPU spent after it was continued"
        time.sleep(0.01)


def test_the_process_goes_on_when_the_round_fails(busy: subprocess.Popen[bytes]) -> None:
    def failed_round() -> None:
        with held_off_cpu(busy.pid):
            _until_state(busy.pid, "T")
            raise RuntimeError("the round failed")

    with pytest.raises(RuntimeError):
        failed_round()

    assert _until_state(busy.pid, "R") == "R"
