"""`cdsflow` — the operator command: `up` runs the pipeline on loopback, `demo` plays a story,
`hook` calls a CDS service of a running `up` as its sandbox EHR would, `evaluate` measures a
model adapter's versions on a labelled dataset against its gate (exit codes: its --help).

`up` keeps the services running: one that exits is restarted (with backoff, one line on
stderr each time); when the broker, Triton or the EHR that it started exits, it stops
everything and says which. Exit codes: 0 success (stopped by Ctrl-C or SIGTERM), 1 a part
failed (the message names its log), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Coroutine, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from cdsflow.runtime.evaluate_command import add_evaluate_command, run_evaluate
from cdsflow.runtime.hook_command import add_hook_command, run_hook
from cdsflow.runtime.processes import ProcessFailed, split_host_port
from cdsflow.runtime.stack import Stack, StackOptions

# how often `up` looks at its parts
SUPERVISION_INTERVAL_S = 0.25


def _host_ports(text: str) -> str:
    """An argparse type: `host:port`, or several comma-separated (a Kafka bootstrap list)."""
    try:
        for address in text.split(","):
            split_host_port(address)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give HOST:PORT, without a scheme") from exc
    return text


def _host_port(text: str) -> str:
    if "," in text:
        raise argparse.ArgumentTypeError(f"{text!r}: give one HOST:PORT")
    return _host_ports(text)


def command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdsflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start broker, Triton, the services (and an EHR)")
    ehr = up.add_mutually_exclusive_group(required=True)
    ehr.add_argument("--with-ehr", action="store_true", help="start SEKMET as the EHR")
    ehr.add_argument("--ehr-base-url", help="an existing FHIR R4 server to listen to")
    for command in (up, commands.add_parser("demo", help="up --with-ehr, then a clinical story")):
        command.add_argument("--endpoints-file", type=Path, help="write the endpoints as JSON")
        command.add_argument(
            "--model-repository",
            type=Path,
            default=Path("models"),
            help="the Triton model repository (default: models; unused with --triton-grpc-url)",
        )
        command.add_argument(
            "--adapters",
            type=Path,
            action="append",
            help="a model adapter file, or a folder of them, that the reasoner runs, the "
            "writeback offers as CDS services and the listener subscribes for (repeat for "
            "more; default: adapters/)",
        )
        command.add_argument("--work-dir", type=Path, help="logs and data (default: a temp dir)")
        command.add_argument(
            "--otlp-endpoint", help="send traces here instead of the built-in collector"
        )
    up.add_argument(
        "--listener-public-url",
        help="the listener's rest-hook URL as the EHR reaches it (default: the loopback one)",
    )
    up.add_argument(
        "--no-subscription",
        action="store_true",
        help="the listener keeps no Subscription on the EHR (make your own, with its secret)",
    )
    up.add_argument(
        "--kafka-bootstrap",
        type=_host_ports,
        metavar="HOST:PORT[,HOST:PORT]",
        help="use this Kafka (durable) instead of starting the embedded broker, which keeps "
        "events in memory only; the services use the idempotent producer there unless "
        "CDSFLOW_KAFKA_IDEMPOTENCE=false, and TLS or SASL as CDSFLOW_KAFKA_SECURITY_PROTOCOL "
        "and its companions in this environment say",
    )
    up.add_argument(
        "--triton-grpc-url",
        type=_host_port,
        metavar="HOST:PORT",
        help="use this Triton's gRPC endpoint (e.g. on a GPU machine) instead of starting the "
        "tritonserver binary",
    )
    up.add_argument(
        "--trust-ehr-issuer",
        nargs=2,
        action="append",
        type=_http_url_or_issuer,
        metavar=("ISSUER", "JWKS_URL"),
        default=[],
        help="let this EHR call the CDS Hooks endpoint: its JWT `iss` and the URL of its JWK "
        "Set (https); repeatable. The sandbox EHR client is always trusted",
    )
    up.add_argument(
        "--cds-public-url",
        type=_http_url,
        metavar="URL",
        help="the writeback's base URL as the EHR calls it (e.g. https://cds.example.org); "
        "a hook token's `aud` must be it + /cds-services/{id}",
    )
    add_hook_command(commands)
    add_evaluate_command(commands)
    return parser


def _http_url(text: str) -> str:
    """An argparse type: an absolute http(s) URL."""
    if not text.startswith(("https://", "http://")) or len(text.split("/")) < 3:
        raise argparse.ArgumentTypeError(f"{text!r}: give an absolute http(s) URL")
    return text.rstrip("/")


def _http_url_or_issuer(text: str) -> str:
    """An argparse type for `--trust-ehr-issuer`: a non-empty issuer or JWKS URL."""
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError("an issuer and a JWKS URL must be non-empty")
    return text


def _holds_a_model(model_repository: Path) -> bool:
    """A Triton model repository: a folder with a model folder holding its `config.pbtxt`."""
    return model_repository.is_dir() and any(
        (model / "config.pbtxt").is_file() for model in model_repository.iterdir()
    )


def stack_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, with_ehr: bool
) -> StackOptions:
    """What to start, from the parsed arguments; bad usage exits 2 through `parser.error`."""
    model_repository = args.model_repository.resolve()
    triton_grpc_url = getattr(args, "triton_grpc_url", None)
    if triton_grpc_url is None and not _holds_a_model(model_repository):
        parser.error(f"no Triton model repository at {model_repository}")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cdsflow-"))
    return StackOptions(
        work_dir=work_dir.resolve(),
        model_repository=model_repository,
        adapters=tuple(path.resolve() for path in args.adapters or ()),
        with_ehr=with_ehr,
        ehr_base_url=getattr(args, "ehr_base_url", None),
        otlp_endpoint=args.otlp_endpoint,
        kafka_bootstrap=getattr(args, "kafka_bootstrap", None),
        kafka_idempotence=os.environ.get("CDSFLOW_KAFKA_IDEMPOTENCE", "true").lower()
        not in ("false", "0", "no", "off"),
        triton_grpc_url=triton_grpc_url,
        trusted_ehr_issuers=tuple(
            (issuer, _checked_jwks_url(parser, jwks_url))
            for issuer, jwks_url in getattr(args, "trust_ehr_issuer", [])
        ),
        cds_public_url=getattr(args, "cds_public_url", None),
        channels=() if getattr(args, "no_subscription", False) else None,
        listener_public_url=getattr(args, "listener_public_url", None),
    )


def _checked_jwks_url(parser: argparse.ArgumentParser, url: str) -> str:
    if not url.startswith("https://"):
        parser.error(f"--trust-ehr-issuer: the JWKS URL {url!r} must be https")
    return url


def _print_endpoints(endpoints: dict[str, str], work_dir: Path) -> None:
    width = max(len(name) for name in endpoints)
    print("cdsflow is up:")
    for name, url in endpoints.items():
        print(f"  {name.ljust(width)}  {url}")
    print(f"  {'logs'.ljust(width)}  {work_dir}")


def _write_endpoints(path: Path | None, endpoints: dict[str, str]) -> None:
    if path is not None:
        path.write_text(json.dumps(endpoints, indent=2) + "\n")


def _up(stack: Stack, args: argparse.Namespace) -> int:
    from cdsflow.runtime.ehr_setup import delete_subscription

    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        endpoints = stack.start()
        _write_endpoints(args.endpoints_file, endpoints)
        _print_endpoints(endpoints, stack.options.work_dir)
        print("A service that exits is restarted. Ctrl-C stops everything.", flush=True)
        while not stop.wait(SUPERVISION_INTERVAL_S):
            stack.supervise()
        return 0
    except ProcessFailed as exc:
        print(f"cdsflow: {exc}", file=sys.stderr)
        return 1
    finally:
        # an EHR of yours keeps no Subscription that notifies a stopped listener
        stack.stop()
        if not stack.options.with_ehr:
            for subscription in stack.subscription_urls:
                asyncio.run(delete_subscription(subscription))


async def _while_supervised(stack: Stack, work: Coroutine[Any, Any, int]) -> int:
    """Run `work` while the stack is supervised; an essential part's exit cancels it."""
    task = asyncio.create_task(work)
    while not task.done():
        stack.supervise()
        await asyncio.wait({task}, timeout=SUPERVISION_INTERVAL_S)
    return task.result()


def _demo(stack: Stack, args: argparse.Namespace) -> int:
    from cdsflow.runtime.demo import run_demo

    try:
        endpoints = stack.start()
        _write_endpoints(args.endpoints_file, endpoints)
        _print_endpoints(endpoints, stack.options.work_dir)
        return asyncio.run(_while_supervised(stack, run_demo(stack)))
    except (ProcessFailed, TimeoutError) as exc:
        print(f"cdsflow demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = command_parser()
    args = parser.parse_args(argv)
    if args.command == "hook":
        return run_hook(parser, args)
    if args.command == "evaluate":
        return run_evaluate(args)
    if args.command == "up":
        return _up(Stack(stack_options(parser, args, with_ehr=args.with_ehr)), args)
    return _demo(Stack(stack_options(parser, args, with_ehr=True)), args)


if __name__ == "__main__":
    raise SystemExit(main())
