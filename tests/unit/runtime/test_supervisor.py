"""The supervision rules of `cdsflow up`: which exit restarts a service, which stops everything,
and how long a restart waits. Parts and clock are fakes; the real processes are in
tests/e2e/test_supervision.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdsflow.runtime.supervisor import (
    EssentialPartExited,
    RestartPolicy,
    Supervisor,
    exit_description,
)


@dataclass
class FakePart:
    name: str
    exit_code: int | None = None
    starts: int = 1
    log_path: Path = field(default_factory=lambda: Path("/var/log/cdsflow/part.log"))

    def restart(self) -> None:
        self.exit_code = None
        self.starts += 1


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Console:
    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def _supervisor(
    policy: RestartPolicy | None = None,
) -> tuple[Supervisor, FakeClock, Console]:
    clock, console = FakeClock(), Console()
    return Supervisor(policy, announce=console, clock=clock), clock, console


def test_delays_double_from_half_a_second_up_to_the_cap() -> None:
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=30.0)
    delays = [policy.delay_s(n) for n in range(1, 10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_an_exited_service_is_restarted_after_its_delay_with_one_console_line() -> None:
    supervisor, clock, console = _supervisor()
    reasoner = FakePart("reasoner", log_path=Path("/work/reasoner.log"))
    supervisor.restart_when_exited([reasoner])

    reasoner.exit_code = -9
    assert supervisor.check() == []
    assert console.lines == [
        "cdsflow: reasoner exited with -9 (SIGKILL); restarting in 0.5 s "
        "(restart 1, log: /work/reasoner.log)"
    ]
    clock.now += 0.4
    assert supervisor.check() == []
    assert reasoner.starts == 1
    clock.now += 0.1
    assert supervisor.check() == ["reasoner"]
    assert reasoner.starts == 2
    assert len(console.lines) == 1


def test_quick_exits_back_off_and_a_service_that_stayed_up_starts_over() -> None:
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=30.0, healthy_after_s=60.0)
    supervisor, clock, console = _supervisor(policy)
    writeback = FakePart("writeback")
    supervisor.restart_when_exited([writeback])

    waits = []
    for _ in range(4):  # dies right after each start
        clock.now += 1
        writeback.exit_code = 1
        supervisor.check()
        due = [line for line in console.lines if "restarting in" in line][-1]
        waits.append(due.split("restarting in ")[1].split(" s")[0])
        clock.now += 30
        assert supervisor.check() == ["writeback"]
    assert waits == ["0.5", "1", "2", "4"]

    clock.now += 60  # stayed up long enough: healthy again
    writeback.exit_code = 1
    supervisor.check()
    assert "restarting in 0.5 s (restart 5," in console.lines[-1]


def test_each_service_has_its_own_backoff() -> None:
    supervisor, clock, _console = _supervisor()
    listener, reasoner = FakePart("listener"), FakePart("reasoner")
    supervisor.restart_when_exited([listener, reasoner])
    reasoner.exit_code = 1
    supervisor.check()
    clock.now += 0.5
    assert supervisor.check() == ["reasoner"]
    reasoner.exit_code = 1
    listener.exit_code = 1
    supervisor.check()
    clock.now += 0.5
    assert supervisor.check() == ["listener"]  # the reasoner now waits 1 s
    clock.now += 0.5
    assert supervisor.check() == ["reasoner"]


@pytest.mark.parametrize("essential", ["broker", "triton", "ehr"])
def test_an_essential_part_that_exits_stops_everything_and_is_named(essential: str) -> None:
    supervisor, _clock, console = _supervisor()
    part = FakePart(essential, log_path=Path(f"/work/{essential}.log"))
    supervisor.stop_all_when_exited([part])
    supervisor.restart_when_exited([FakePart("reasoner")])
    assert supervisor.check() == []

    part.exit_code = -9
    with pytest.raises(EssentialPartExited) as raised:
        supervisor.check()
    message = str(raised.value)
    assert message.startswith(f"the {essential} exited with -9 (SIGKILL)")
    assert f"/work/{essential}.log" in message
    assert part.starts == 1  # not restarted
    assert console.lines == []


def test_an_essential_exit_wins_over_a_service_restart() -> None:
    supervisor, _clock, console = _supervisor()
    broker, listener = FakePart("broker"), FakePart("listener")
    supervisor.stop_all_when_exited([broker])
    supervisor.restart_when_exited([listener])
    broker.exit_code = 0
    listener.exit_code = 1
    with pytest.raises(EssentialPartExited, match="the broker exited with 0"):
        supervisor.check()
    assert listener.starts == 1
    assert console.lines == []


def test_exit_descriptions_name_the_signal() -> None:
    assert exit_description(-15) == "exited with -15 (SIGTERM)"
    assert exit_description(3) == "exited with 3"
    assert exit_description(-999) == "exited with -999"
