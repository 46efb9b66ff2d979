"""Child processes on loopback: start, wait until ready, stop the whole process group."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class ProcessFailed(RuntimeError):
    """A part exited, or did not become ready in time; the message names its log file."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connection to host:port succeeds."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def http_ok(url: str) -> bool:
    """True when GET url answers 2xx."""
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False


@dataclass
class ManagedProcess:
    """One started part: its name, its process, its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    endpoints: dict[str, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, is_ready: Callable[[], bool], timeout_s: float) -> None:
        """Poll `is_ready` until it holds; fail early if the process dies."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} exited with {self.process.returncode} before it was ready "
                    f"(log: {self.log_path})\n{self.log_tail()}"
                )
            if is_ready():
                return
            time.sleep(0.1)
        raise ProcessFailed(
            f"{self.name} not ready after {timeout_s:.0f}s (log: {self.log_path})\n"
            f"{self.log_tail()}"
        )

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        # the group may hold children (Triton's python stubs) even after the leader exited
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` in its own session (so stop() reaches every child), output to a log file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return ManagedProcess(name=name, process=process, log_path=log_path)


def without_otel(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` without OTEL_* (for parts that must not export our telemetry)."""
    return {key: value for key, value in env.items() if not key.startswith("OTEL_")}
