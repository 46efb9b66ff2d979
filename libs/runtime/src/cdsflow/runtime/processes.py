"""Child processes on loopback: start, wait until ready, restart, stop the whole process group.

Each part writes its output to `<log dir>/<name>.log` and its current process id to
`<log dir>/<name>.pid` (rewritten on a restart, removed when it is stopped).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def split_host_port(address: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as (host, port); ValueError when either is missing."""
    host, colon, port_text = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or "/" in address or not port_text.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"{address!r}: the port must be 1-65535")
    return host, port


def http_ok(url: str) -> bool:
    """True when GET url answers 2xx."""
    try:
        return httpx.get(url, timeout=1.0).is_success
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Command:
    """How a part is started, kept so that the same part can be started again."""

    argv: tuple[str, ...]
    env: dict[str, str] | None = None
    cwd: Path | None = None

    def launch(self, log_path: Path, mode: str = "wb") -> subprocess.Popen[bytes]:
        """Start in a new session (so stop() reaches every child), output to `log_path`."""
        with log_path.open(mode) as log_file:
            return subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )


@dataclass
class ManagedProcess:
    """One started part: its name, its process, its log file, how to start it again."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    command: Command
    endpoints: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._write_pid()

    @property
    def pid_path(self) -> Path:
        return self.log_path.with_suffix(".pid")

    @property
    def exit_code(self) -> int | None:
        """The exit status once it exited (negative: the signal that ended it), else None."""
        return self.process.poll()

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

    def restart(self) -> None:
        """Start the same command again (same port, same environment); the log is appended to,
        so the output from before the restart is kept."""
        self._kill_group()  # whatever the exited leader left behind
        with self.log_path.open("ab") as log_file:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log_file.write(f"--- cdsflow: {self.name} restarted at {stamp} ---\n".encode())
        self.process = self.command.launch(self.log_path, mode="ab")
        self._write_pid()

    def _write_pid(self) -> None:
        staged = self.pid_path.with_suffix(".pid.tmp")
        staged.write_text(f"{self.process.pid}\n")
        staged.replace(self.pid_path)  # readers never see a half-written file

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `grace_s`."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        # the group may hold children (Triton's python stubs) even after the leader exited
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=grace_s)
        self.pid_path.unlink(missing_ok=True)


def spawn(
    name: str,
    argv: Sequence[str],
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` in its own session, output to `<log_dir>/<name>.log`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    command = Command(tuple(argv), dict(env) if env is not None else None, cwd)
    return ManagedProcess(name, command.launch(log_path), log_path, command)


def without_otel(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` without OTEL_* (for parts that must not export our telemetry)."""
    return {key: value for key, value in env.items() if not key.startswith("OTEL_")}
