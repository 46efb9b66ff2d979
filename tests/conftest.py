"""Session fixtures: the real parts (Tansu, Triton, SEKMET) on free loopback ports.

Each starts once per test session, on first use, and stops at the end; unit tests start
nothing. Set CDSFLOW_TEST_KEEP_LOGS=1 to keep the parts' logs (their folder is printed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.runtime.parts import start_broker, start_ehr, start_triton
from tests.support.risk_model import risk_model_repository

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = REPO_ROOT / "models"
CONFORMANCE = Path(
    os.environ.get("CDSFLOW_CONFORMANCE_DIR", REPO_ROOT.parent / "shared" / "conformance")
)
TEST_PSEUDONYM_KEY = "test-pseudonym-key-not-secret-0123456789"


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap: str


@dataclass(frozen=True)
class TritonEndpoint:
    grpc_url: str
    http_url: str


@dataclass(frozen=True)
class EhrEndpoint:
    base_url: str


@pytest.fixture(scope="session")
def parts_log_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cdsflow-test-parts-"))
    yield path
    if os.environ.get("CDSFLOW_TEST_KEEP_LOGS"):
        print(f"\nlogs of the started parts: {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka(parts_log_dir: Path) -> Iterator[KafkaEndpoint]:
    part = start_broker(parts_log_dir)
    try:
        yield KafkaEndpoint(bootstrap=part.endpoints["broker"])
    finally:
        part.stop()


@pytest.fixture(scope="session")
def triton(parts_log_dir: Path) -> Iterator[TritonEndpoint]:
    part = start_triton(MODEL_REPOSITORY, parts_log_dir)
    try:
        yield TritonEndpoint(
            grpc_url=part.endpoints["triton_grpc"], http_url=part.endpoints["triton_http"]
        )
    finally:
        part.stop()


@pytest.fixture
async def triton_client(triton: TritonEndpoint) -> AsyncIterator[InferenceServerClient]:
    """An asyncio gRPC client of the session's Triton, closed after the test."""
    client = InferenceServerClient(triton.grpc_url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="session")
def two_version_triton(parts_log_dir: Path) -> Iterator[TritonEndpoint]:
    """A second Triton, serving `deterioration_risk` as versions 1 and 2 (the same model file).

    `triton` serves version 1 only, as shipped (tests rely on version 2 being missing there).
    Tests that count inferences here count their own: read the statistics before and after.
    """
    folder = parts_log_dir / "two-versions"
    folder.mkdir()
    part = start_triton(risk_model_repository(folder, ("1", "2")), folder)
    try:
        yield TritonEndpoint(
            grpc_url=part.endpoints["triton_grpc"], http_url=part.endpoints["triton_http"]
        )
    finally:
        part.stop()


@pytest.fixture(scope="session")
def ehr(parts_log_dir: Path) -> Iterator[EhrEndpoint]:
    part = start_ehr(parts_log_dir)
    try:
        yield EhrEndpoint(base_url=part.endpoints["ehr"])
    finally:
        part.stop()


@pytest.fixture
def unique() -> str:
    """A short unique string for this test's topic names and consumer groups."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def pseudonym_key() -> str:
    return TEST_PSEUDONYM_KEY


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The read-only conformance pack (../shared/conformance, or CDSFLOW_CONFORMANCE_DIR).

    Absent, its tests are skipped with one reason; with CDSFLOW_REQUIRE_CONFORMANCE=1 (CI)
    they fail instead.
    """
    if not CONFORMANCE.is_dir():
        reason = f"conformance pack not found at {CONFORMANCE} (set CDSFLOW_CONFORMANCE_DIR)"
        if os.environ.get("CDSFLOW_REQUIRE_CONFORMANCE") == "1":
            pytest.fail(f"{reason}; CDSFLOW_REQUIRE_CONFORMANCE=1 requires it")
        pytest.skip(reason)
    return CONFORMANCE
