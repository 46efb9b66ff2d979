"""The machine's CPU over a round (`bench.machine_cpu`): read from /proc/stat, a process the
bench does not measure shows up outside the measured ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.machine_cpu import MachineCpu, machine_cores, machine_cpu
from bench.reasoner import process_cpu_s


def _stat(tmp_path: Path, cpu_line: str) -> Path:
    stat = tmp_path / "stat"
    stat.write_text(f"{cpu_line}\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 123\n")
    return stat


def test_busy_counts_user_nice_system_irq_softirq_and_steal_apart(tmp_path: Path) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat = _stat(
        tmp_path, f"cpu  {hz} {2 * hz} {3 * hz} 999999 {50 * hz} {4 * hz} {5 * hz} {hz} 7 7"
    )
    reading = machine_cpu(stat)
    assert reading.busy_s == pytest.approx(15.0)  # idle and iowait are not busy
    assert reading.steal_s == pytest.approx(1.0)


def test_a_stat_file_without_a_cpu_line_is_refused(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("intr 123\n")
    with pytest.raises(ValueError, match="no 'cpu' line"):
        machine_cpu(stat)


def test_cores_over_a_window() -> None:
    before = MachineCpu(busy_s=100.0, steal_s=10.0, at=50.0)
    after = MachineCpu(busy_s=103.0, steal_s=10.5, at=52.0)
    assert machine_cores(before, after, measured_cpu_s=2.0) == {
        "busy_cores": 1.5,
        "steal_cores": 0.25,
        "outside_measured_cores": 0.5,
    }
    # the measured processes' ticks may read a little above the machine's: never below 0
    assert machine_cores(before, after, measured_cpu_s=3.1)["outside_measured_cores"] == 0.0
    with pytest.raises(ValueError, match="must come after"):
        machine_cores(after, before, measured_cpu_s=0.0)


def test_a_process_the_bench_does_not_measure_is_seen_outside_the_measured_ones() -> None:
    """A child spins for 0.3 s of CPU: the machine's busy time over the window holds it, and
    with only this (idle, waiting) test process measured, it is outside the measured ones."""
    before = machine_cpu()
    measured_before = process_cpu_s(os.getpid())
    spin = "import time\nwhile time.process_time() < 0.3: pass\n"
    subprocess.run([sys.executable, "-c", spin], check=True)
    measured = process_cpu_s(os.getpid()) - measured_before
    after = machine_cpu()
    cores = machine_cores(before, after, measured_cpu_s=measured)
    seconds = after.at - before.at
    # a tick (1/CLK_TCK s) per reading, and the figures' rounding to 0.001 cores
    slack = 2 / os.sysconf("SC_CLK_TCK") + 0.001 * seconds
    assert cores["busy_cores"] * seconds >= 0.3 + measured - slack
    assert cores["outside_measured_cores"] * seconds >= 0.3 - slack
