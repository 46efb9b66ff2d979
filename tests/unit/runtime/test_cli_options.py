"""`cdsflow up`'s arguments: an existing Kafka or Triton instead of the embedded ones, and bad
usage refused with exit code 2 before anything starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdsflow.models import load_adapter
from cdsflow.runtime.cli import command_parser, main, stack_options
from cdsflow.runtime.ehr_topics import VITAL_SIGNS_TOPIC_URL
from cdsflow.runtime.processes import split_host_port
from cdsflow.runtime.stack import StackOptions, adapters_of, service_environments
from tests.conftest import MODEL_REPOSITORY

ENDPOINTS = {
    "broker": "kafka-1.internal:9092",
    "triton_grpc": "gpu-1.internal:8001",
    "ehr": "https://ehr.example.org/fhir",
    "otlp": "http://127.0.0.1:4318",
    "writeback": "http://127.0.0.1:8083",
    "listener": "http://127.0.0.1:8081/fhir/notifications/rest-hook",
    "jwks": "http://127.0.0.1:4000/.well-known/jwks.json",
    "ehr_client_issuer": "http://127.0.0.1:4000",
}


@pytest.mark.parametrize(
    "arguments",
    [
        ["--kafka-bootstrap", "kafka-1.internal"],
        ["--kafka-bootstrap", "kafka-1.internal:9092,kafka-2.internal"],
        ["--kafka-bootstrap", "kafka://kafka-1.internal:9092"],
        ["--kafka-bootstrap", ":9092"],
        ["--triton-grpc-url", "grpc://gpu-1.internal:8001"],
        ["--triton-grpc-url", "gpu-1.internal:0"],
        ["--triton-grpc-url", "gpu-1.internal:8001,gpu-2.internal:8001"],
        ["--model-repository", "/nonexistent/models"],
    ],
)
def test_bad_usage_exits_2_with_a_message(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--with-ehr", *arguments])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "error:" in error
    assert "HOST:PORT" in error or "model repository" in error


def test_existing_kafka_and_triton_need_no_model_repository(tmp_path: Path) -> None:
    parser = command_parser()
    args = parser.parse_args(
        [
            "up",
            "--with-ehr",
            "--kafka-bootstrap",
            "kafka-1.internal:9092,[::1]:9093",
            "--triton-grpc-url",
            "gpu-1.internal:8001",
            "--model-repository",
            str(tmp_path / "absent"),
            "--work-dir",
            str(tmp_path),
        ]
    )
    options = stack_options(parser, args, with_ehr=True)
    assert options.kafka_bootstrap == "kafka-1.internal:9092,[::1]:9093"
    assert options.triton_grpc_url == "gpu-1.internal:8001"
    # the adapters do not follow the model repository: the shipped ones where up runs
    assert options.adapters == ()
    assert adapters_of(options) == (Path("adapters").resolve(),)
    again = parser.parse_args(["up", "--with-ehr", "--adapters", "a.yaml", "--adapters", "b"])
    assert stack_options(parser, again, with_ehr=True).adapters == (
        Path("a.yaml").resolve(),
        Path("b").resolve(),
    )


def test_services_use_idempotence_only_with_an_existing_kafka(tmp_path: Path) -> None:
    embedded = StackOptions(work_dir=tmp_path, model_repository=tmp_path, with_ehr=True)
    existing = StackOptions(
        work_dir=tmp_path,
        model_repository=tmp_path,
        with_ehr=True,
        kafka_bootstrap=ENDPOINTS["broker"],
        triton_grpc_url=ENDPOINTS["triton_grpc"],
    )
    for name, environment in service_environments(embedded, ENDPOINTS).items():
        assert environment["CDSFLOW_KAFKA_IDEMPOTENCE"] == "false", name
        # the embedded broker speaks plaintext, whatever Kafka security the shell holds
        assert environment["CDSFLOW_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT", name
        assert environment["CDSFLOW_KAFKA_SASL_MECHANISM"] == "", name
    for name, environment in service_environments(existing, ENDPOINTS).items():
        assert environment["CDSFLOW_KAFKA_IDEMPOTENCE"] == "true", name
        # an existing Kafka's security settings come from the shell, inherited
        assert "CDSFLOW_KAFKA_SECURITY_PROTOCOL" not in environment, name
        assert environment["CDSFLOW_KAFKA_BOOTSTRAP"] == "kafka-1.internal:9092"
    reasoner = service_environments(existing, ENDPOINTS)["reasoner"]
    assert reasoner["CDSFLOW_TRITON_GRPC_URL"] == "gpu-1.internal:8001"
    assert reasoner["CDSFLOW_ADAPTERS"] == str(Path("adapters").resolve())


def test_every_service_sends_its_spans_at_the_delay_the_stack_is_given(tmp_path: Path) -> None:
    demo = StackOptions(work_dir=tmp_path, model_repository=tmp_path, with_ehr=True)
    as_deployed = StackOptions(
        work_dir=tmp_path, model_repository=tmp_path, with_ehr=True, span_export_delay_ms=5000
    )

    for name, environment in service_environments(demo, ENDPOINTS).items():
        assert environment["OTEL_BSP_SCHEDULE_DELAY"] == "200", name
    for name, environment in service_environments(as_deployed, ENDPOINTS).items():
        assert environment["OTEL_BSP_SCHEDULE_DELAY"] == "5000", name


def test_the_reasoner_runs_the_shipped_adapters_or_those_given(tmp_path: Path) -> None:
    repository = Path(__file__).resolve().parents[3]
    options = StackOptions(work_dir=tmp_path, model_repository=tmp_path, with_ehr=True)
    [folder] = adapters_of(options)
    assert folder == Path("adapters").resolve()
    shipped = {load_adapter(p).model.triton_name for p in (repository / "adapters").glob("*.yaml")}
    # every shipped adapter's model is in the model repository
    assert shipped <= {p.name for p in (repository / "models").iterdir() if p.is_dir()}
    given = StackOptions(
        work_dir=tmp_path,
        model_repository=tmp_path,
        with_ehr=True,
        adapters=(repository / "adapters" / "deterioration-risk.yaml",),
    )
    assert adapters_of(given) == (repository / "adapters" / "deterioration-risk.yaml",)


@pytest.mark.parametrize(("setting", "expected"), [(None, "true"), ("false", "false")])
def test_an_existing_kafka_without_idempotence_can_be_declared(
    setting: str | None, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Kafka-compatible broker that refuses the idempotent producer (CDSFLOW_KAFKA_IDEMPOTENCE
    set where `up` runs)."""
    if setting is None:
        monkeypatch.delenv("CDSFLOW_KAFKA_IDEMPOTENCE", raising=False)
    else:
        monkeypatch.setenv("CDSFLOW_KAFKA_IDEMPOTENCE", setting)
    parser = command_parser()
    args = parser.parse_args(
        [
            "up",
            "--with-ehr",
            "--kafka-bootstrap",
            "kafka-1.internal:9092",
            "--triton-grpc-url",
            "gpu-1.internal:8001",
            "--work-dir",
            str(tmp_path),
        ]
    )
    options = stack_options(parser, args, with_ehr=True)
    listener = service_environments(options, ENDPOINTS)["listener"]
    assert listener["CDSFLOW_KAFKA_IDEMPOTENCE"] == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("kafka-1:9092", ("kafka-1", 9092)),
        ("127.0.0.1:8001", ("127.0.0.1", 8001)),
        ("[::1]:9092", ("::1", 9092)),
        (" kafka-1:9092 ", ("kafka-1", 9092)),
    ],
)
def test_host_port_splits(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


@pytest.mark.parametrize(
    "address", ["kafka-1", "kafka-1:", ":9092", "kafka-1:port", "kafka-1:70000", "http://h:1"]
)
def test_host_port_refuses(address: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|1-65535"):
        split_host_port(address)


@pytest.mark.parametrize(
    ("ehr", "allowed"),
    [
        ("http://127.0.0.1:8080/fhir", "true"),
        ("http://localhost:8080/fhir", "true"),
        ("http://[::1]:8080/fhir", "true"),
        ("https://ehr.example.org/fhir", "false"),
        ("http://ehr.example.org/fhir", "false"),
    ],
)
def test_the_writeback_takes_http_fhir_server_only_from_an_ehr_on_loopback(
    ehr: str, allowed: str, tmp_path: Path
) -> None:
    options = StackOptions(work_dir=tmp_path, model_repository=tmp_path, ehr_base_url=ehr)
    writeback = service_environments(options, {**ENDPOINTS, "ehr": ehr})["writeback"]
    assert writeback["CDSFLOW_ALLOW_LOOPBACK_HTTP_FHIR_SERVER"] == allowed


def test_a_real_ehr_can_be_trusted_beside_the_sandbox(tmp_path: Path) -> None:
    parser = command_parser()
    args = parser.parse_args(
        [
            "up",
            "--ehr-base-url",
            "https://ehr.example.org/fhir",
            "--model-repository",
            str(MODEL_REPOSITORY),
            "--trust-ehr-issuer",
            "https://ehr.example.org",
            "https://ehr.example.org/.well-known/jwks.json",
            "--cds-public-url",
            "https://cds.example.org/",
        ]
    )
    options = stack_options(parser, args, with_ehr=False)

    writeback = service_environments(options, ENDPOINTS)["writeback"]

    issuers = json.loads(writeback["CDSFLOW_TRUSTED_ISSUERS"])
    assert issuers == [
        {"iss": ENDPOINTS["ehr_client_issuer"], "jwks_url": ENDPOINTS["jwks"]},
        {
            "iss": "https://ehr.example.org",
            "jwks_url": "https://ehr.example.org/.well-known/jwks.json",
        },
    ]
    assert writeback["CDSFLOW_CDS_PUBLIC_BASE_URL"].split() == [
        ENDPOINTS["writeback"],
        "https://cds.example.org",
    ]


@pytest.mark.parametrize(
    "arguments",
    [
        ["--trust-ehr-issuer", "https://ehr.example.org", "http://ehr.example.org/jwks"],
        ["--trust-ehr-issuer", "https://ehr.example.org"],
        ["--cds-public-url", "cds.example.org"],
    ],
)
def test_bad_trust_arguments_exit_2(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["up", "--ehr-base-url", "https://ehr.example.org/fhir", *arguments])
    assert exited.value.code == 2
    assert capsys.readouterr().err


def test_the_listener_keeps_the_subscriptions_of_the_shipped_adapters_unless_told_not_to() -> None:
    parser = command_parser()
    kept = stack_options(parser, parser.parse_args(["up", "--with-ehr"]), with_ehr=True)
    environment = service_environments(kept, ENDPOINTS)["listener"]
    channels = {c["name"]: c for c in json.loads(environment["CDSFLOW_CHANNELS"])}
    # vital signs (deterioration), an eGFR and metformin orders (medication safety)
    assert len(channels) == 3
    assert "medicationrequest-active" in channels
    # the embedded EHR is given the vital-signs topic; an EHR of yours gets criteria
    assert channels["vital-signs"]["topic"] == VITAL_SIGNS_TOPIC_URL
    assert channels["vital-signs"]["recovery_search"] == "Observation?category=vital-signs"
    assert environment["CDSFLOW_NOTIFICATION_ENDPOINT"] == ENDPOINTS["listener"]
    yours = parser.parse_args(["up", "--ehr-base-url", "https://ehr.example/fhir"])
    theirs = service_environments(stack_options(parser, yours, False), ENDPOINTS)
    criteria = {c["criteria"] for c in json.loads(theirs["listener"]["CDSFLOW_CHANNELS"])}
    assert "Observation?category=vital-signs" in criteria
    assert len(criteria) == 3

    public = "https://cdsflow.example/fhir/notifications/rest-hook"
    args = parser.parse_args(["up", "--with-ehr", "--listener-public-url", public])
    listener = service_environments(stack_options(parser, args, with_ehr=True), ENDPOINTS)
    assert listener["listener"]["CDSFLOW_NOTIFICATION_ENDPOINT"] == public

    args = parser.parse_args(["up", "--with-ehr", "--no-subscription"])
    none = service_environments(stack_options(parser, args, with_ehr=True), ENDPOINTS)
    assert json.loads(none["listener"]["CDSFLOW_CHANNELS"]) == []
