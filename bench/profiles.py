"""Sampling profiles of a bench's processes with py-spy (not a project dependency: install it
with `python3 -m pip install --user py-spy`), as collapsed stacks that flame-graph tools read."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path


class SampledProfile:
    """py-spy recording one process from `start()` until `stop()`, written to `output`."""

    def __init__(self, pid: int, output: Path, rate_per_s: int = 100) -> None:
        executable = shutil.which("py-spy") or str(Path.home() / ".local" / "bin" / "py-spy")
        self._argv = [
            executable,
            "record",
            "--pid",
            str(pid),
            "--output",
            str(output),
            "--format",
            "raw",
            "--rate",
            str(rate_per_s),
            "--nonblocking",
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def stop(self) -> None:
        """py-spy writes its output when interrupted."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
