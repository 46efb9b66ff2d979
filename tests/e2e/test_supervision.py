"""`cdsflow up` keeps what it acknowledged when a service dies (issue 5, defect 5).

One `cdsflow up --with-ehr` for the module, on the real parts. Vital-sign Observations are
written into the EHR (SEKMET), whose topic-based Subscription notifies the listener. The
reasoner is SIGKILLed mid-stream: `up` must restart it, and every Observation that the
listener acknowledged must still end as a RiskAssessment in the EHR. Each Observation has a
patient of its own, so that each RiskAssessment proves its own event was processed. Then the
broker is killed: that stops everything, exit 1, with a message naming the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from cdsflow.fhir import EhrClient
from cdsflow.runtime.processes import port_accepts, split_host_port
from cdsflow.runtime.story import vital_sign_observation
from tests.conftest import MODEL_REPOSITORY, REPO_ROOT, KafkaEndpoint, TritonEndpoint
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "cdsflow.runtime.cli"]
# the embedded EHR notifies through the vital-signs topic (R4 backport Bundles)
PUBLISHED = (
    'cdsflow_listener_notifications_total{kind="topic-event-notification",outcome="published"}'
)


@dataclass
class RunningUp:
    """A `cdsflow up` process, its endpoints and where it writes."""

    process: subprocess.Popen[bytes]
    endpoints: dict[str, str]
    work_dir: Path
    stderr_path: Path

    def pid(self, part: str) -> int | None:
        """The part's current process id, from the pid file that `up` keeps."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int((self.work_dir / f"{part}.pid").read_text())
        return None

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def ports(self) -> list[int]:
        """The ports of everything `up` started (the EHR included: `--with-ehr`)."""
        return [port for _name, port in _named_ports(self.endpoints)]


def _named_ports(endpoints: dict[str, str]) -> list[tuple[str, int]]:
    named = []
    for name, value in endpoints.items():
        if port := urlsplit(value if "://" in value else f"tcp://{value}").port:
            named.append((name, port))
    return named


def _start_up(
    folder: Path, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`cdsflow up --with-ehr ARGUMENTS` in the background; output to `up.out` and `up.err`."""
    command = [
        *CLI,
        "up",
        "--with-ehr",
        "--endpoints-file",
        str(folder / "endpoints.json"),
        "--work-dir",
        str(folder / "work"),
        *arguments,
    ]
    with (folder / "up.out").open("wb") as stdout, (folder / "up.err").open("wb") as stderr:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )


async def _running(folder: Path, process: subprocess.Popen[bytes]) -> RunningUp:
    """Wait until `up` has written its endpoints file."""
    running = RunningUp(process, {}, folder / "work", folder / "up.err")

    async def endpoints_written() -> dict[str, str] | None:
        assert process.poll() is None, running.stderr()
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            endpoints: dict[str, str] = json.loads((folder / "endpoints.json").read_text())
            return endpoints
        return None

    running.endpoints = await eventually(
        endpoints_written, timeout_s=120, interval_s=0.2, what="cdsflow up to be up"
    )
    return running


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningUp]:
    folder = tmp_path_factory.mktemp("supervision")
    process = _start_up(folder, "--model-repository", str(MODEL_REPOSITORY))
    try:
        yield await _running(folder, process)
    finally:
        _stop(process)


async def _ready(http: httpx.AsyncClient, service_url: str) -> bool:
    try:
        return (await http.get(f"{service_url}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _published(http: httpx.AsyncClient, listener_url: str) -> int:
    """Notifications that the listener answered 2xx after the broker acked their event."""
    metrics = (await http.get(f"{listener_url}/metrics")).text
    for line in metrics.splitlines():
        if line.startswith(PUBLISHED):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


@dataclass
class WrittenObservation:
    patient_reference: str
    observation_reference: str


async def _write_observations(ehr: EhrClient, count: int) -> list[WrittenObservation]:
    """`count` heart-rate Observations, each for a new patient."""
    written = []
    for index in range(count):
        patient = await ehr.create({"resourceType": "Patient", "active": True})
        patient_reference = f"Patient/{patient['id']}"
        observation = vital_sign_observation(
            patient_reference,
            datetime.now(UTC),
            "8867-4",
            "Heart rate",
            value=70 + 5 * index,
            ucum="/min",
            unit="beats/minute",
        )
        created = await ehr.create(observation)
        written.append(WrittenObservation(patient_reference, f"Observation/{created['id']}"))
    return written


async def _assessed(ehr: EhrClient, written: WrittenObservation) -> bool:
    """True once a RiskAssessment written back for the patient has this Observation in its
    basis."""
    found = await ehr.search("RiskAssessment", [("subject", written.patient_reference)])
    for assessment in found:
        tags = {tag.get("system") for tag in assessment.get("meta", {}).get("tag", [])}
        basis = {ref.get("reference") for ref in assessment.get("basis", [])}
        if "urn:cdsflow:recommendation" in tags and written.observation_reference in basis:
            return True
    return False


async def _all_assessed(ehr: EhrClient, written: list[WrittenObservation]) -> bool:
    for observation in written:
        if not await _assessed(ehr, observation):
            return False
    return True


async def _wait_for_acknowledgements(
    http: httpx.AsyncClient, listener_url: str, expected: int
) -> None:
    async def acknowledged() -> bool:
        return await _published(http, listener_url) >= expected

    await eventually(
        acknowledged, timeout_s=30, interval_s=0.05, what=f"{expected} acknowledged notifications"
    )


@pytest.mark.timeout(180)
async def test_a_killed_reasoner_is_restarted_and_no_acknowledged_event_is_lost(
    up: RunningUp,
) -> None:
    endpoints = up.endpoints
    listener_url = endpoints["listener"].split("/fhir/")[0]
    reasoner_url = endpoints["reasoner"]
    async with httpx.AsyncClient(timeout=15) as http:
        ehr = EhrClient(endpoints["ehr"], http)
        acknowledged_before = await _published(http, listener_url)

        # before: the pipeline runs end to end
        warm = await _write_observations(ehr, 3)
        await eventually(
            lambda: _all_assessed(ehr, warm), timeout_s=60, what="the first RiskAssessments"
        )

        # mid-stream: SIGKILL as soon as the listener has acknowledged the next batch
        in_flight = await _write_observations(ehr, 4)
        await _wait_for_acknowledgements(http, listener_url, acknowledged_before + 7)
        old_pid = up.pid("reasoner")
        assert old_pid is not None
        os.kill(old_pid, signal.SIGKILL)

        # while it is down: notifications keep arriving and are acknowledged
        while_down = await _write_observations(ehr, 4)
        await _wait_for_acknowledgements(http, listener_url, acknowledged_before + 11)

        async def restart_announced() -> bool:
            return "cdsflow: reasoner exited with -9 (SIGKILL); restarting in" in up.stderr()

        await eventually(restart_announced, timeout_s=10, what="the restart line on stderr")

        async def back_with_a_new_pid() -> bool:
            pid = up.pid("reasoner")
            return pid not in (None, old_pid) and await _ready(http, reasoner_url)

        await eventually(back_with_a_new_pid, timeout_s=60, what="the reasoner to come back")
        assert up.process.poll() is None, "cdsflow up stopped: " + up.stderr()

        # after: the restarted reasoner takes new events too
        after = await _write_observations(ehr, 3)
        everything = [*warm, *in_flight, *while_down, *after]
        await _wait_for_acknowledgements(http, listener_url, acknowledged_before + len(everything))
        await eventually(
            lambda: _all_assessed(ehr, everything),
            timeout_s=90,
            interval_s=0.5,
            what="a RiskAssessment for every acknowledged Observation",
        )
    assert "restart 1," in up.stderr()
    assert "--- cdsflow: reasoner restarted at" in (up.work_dir / "reasoner.log").read_text()


@pytest.mark.timeout(120)
async def test_the_broker_exiting_stops_everything_with_exit_1(up: RunningUp) -> None:
    broker_pid = up.pid("broker")
    assert broker_pid is not None
    os.kill(broker_pid, signal.SIGKILL)

    async def exited() -> int | None:
        return up.process.poll()

    code = await eventually(exited, timeout_s=90, interval_s=0.2, what="cdsflow up to exit")
    assert code == 1
    stderr = up.stderr()
    assert "cdsflow: the broker exited with -9 (SIGKILL)" in stderr
    assert str(up.work_dir / "broker.log") in stderr
    assert "restarting" not in stderr.split("the broker exited")[1]
    still_open = [port for port in up.ports() if port_accepts(port)]
    assert not still_open, f"ports still open after exit: {still_open}"


@pytest.mark.timeout(180)
async def test_with_an_existing_kafka_and_triton_up_starts_and_stops_only_its_own_parts(
    tmp_path: Path, kafka: KafkaEndpoint, triton: TritonEndpoint, unique: str
) -> None:
    process = _start_up(
        tmp_path,
        "--kafka-bootstrap",
        kafka.bootstrap,
        "--triton-grpc-url",
        triton.grpc_url,
        "--model-repository",
        str(tmp_path / "no-model-repository-here"),
        env={
            "CDSFLOW_KAFKA_IDEMPOTENCE": "false",  # the test's Kafka is Tansu
            "CDSFLOW_CLINICAL_EVENTS_TOPIC": f"cdsflow.clinical-events.{unique}",
            "CDSFLOW_RECOMMENDATIONS_TOPIC": f"cdsflow.recommendations.{unique}",
        },
    )
    try:
        running = await _running(tmp_path, process)
        endpoints = running.endpoints
        assert endpoints["broker"] == kafka.bootstrap
        assert endpoints["triton_grpc"] == triton.grpc_url
        assert "triton_http" not in endpoints
        started = {path.stem for path in running.work_dir.glob("*.pid")}
        assert started == {"ehr", "listener", "reasoner", "writeback"}
        async with httpx.AsyncClient(timeout=15) as http:
            ehr = EhrClient(endpoints["ehr"], http)
            written = await _write_observations(ehr, 1)
            await eventually(
                lambda: _all_assessed(ehr, written),
                timeout_s=60,
                what="a RiskAssessment through the existing Kafka and Triton",
            )
    finally:
        code = _stop(process)
    assert code == 0, running.stderr()
    mine = [port for name, port in _named_ports(endpoints) if name not in ("broker", "triton_grpc")]
    assert not [port for port in mine if port_accepts(port)], "a part started by up is still up"
    assert port_accepts(split_host_port(kafka.bootstrap)[1]), "up stopped the existing Kafka"
    assert port_accepts(split_host_port(triton.grpc_url)[1]), "up stopped the existing Triton"
