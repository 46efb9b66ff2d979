"""`cdsflow` — the operator command: `up` runs the pipeline on loopback, `demo` plays a story.

Exit codes: 0 success, 1 a part failed (the message names its log), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from cdsflow.runtime.processes import ProcessFailed
from cdsflow.runtime.stack import Stack, StackOptions


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdsflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start broker, Triton, the services (and an EHR)")
    ehr = up.add_mutually_exclusive_group(required=True)
    ehr.add_argument("--with-ehr", action="store_true", help="start SEKMET as the EHR")
    ehr.add_argument("--ehr-base-url", help="an existing FHIR R4 server to listen to")
    for command in (up, commands.add_parser("demo", help="up --with-ehr, then a clinical story")):
        command.add_argument("--endpoints-file", type=Path, help="write the endpoints as JSON")
        command.add_argument(
            "--model-repository", type=Path, default=Path("models"), help="Triton models"
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
        "--no-subscription", action="store_true", help="do not create a Subscription on the EHR"
    )
    return parser


def _options(args: argparse.Namespace, with_ehr: bool) -> StackOptions:
    model_repository = args.model_repository.resolve()
    if not (model_repository / "deterioration_score").is_dir():
        raise SystemExit(f"cdsflow: no Triton model repository at {model_repository}")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="cdsflow-"))
    return StackOptions(
        work_dir=work_dir.resolve(),
        model_repository=model_repository,
        with_ehr=with_ehr,
        ehr_base_url=getattr(args, "ehr_base_url", None),
        otlp_endpoint=args.otlp_endpoint,
    )


def _print_endpoints(endpoints: dict[str, str], work_dir: Path) -> None:
    width = max(len(name) for name in endpoints)
    print("cdsflow is up:")
    for name, url in endpoints.items():
        print(f"  {name.ljust(width)}  {url}")
    print(f"  {'logs'.ljust(width)}  {work_dir}")


def _write_endpoints(path: Path | None, endpoints: dict[str, str]) -> None:
    if path is not None:
        path.write_text(json.dumps(endpoints, indent=2) + "\n")


def _up(args: argparse.Namespace) -> int:
    from cdsflow.runtime.ehr_setup import create_listener_subscription, delete_subscription

    stack = Stack(_options(args, with_ehr=args.with_ehr))
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    subscription_id = None
    try:
        endpoints = stack.start()
        if not args.no_subscription:
            endpoint = args.listener_public_url or endpoints["listener"]
            subscription_id = asyncio.run(
                create_listener_subscription(endpoints["ehr"], endpoint, stack.options)
            )
            endpoints["subscription"] = f"{endpoints['ehr']}/Subscription/{subscription_id}"
        _write_endpoints(args.endpoints_file, endpoints)
        _print_endpoints(endpoints, stack.options.work_dir)
        print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(0.5):
            dead = stack.dead_parts()
            if dead:
                names = ", ".join(f"{part.name} (log: {part.log_path})" for part in dead)
                print(f"cdsflow: stopped, because a part exited: {names}", file=sys.stderr)
                return 1
        return 0
    except ProcessFailed as exc:
        print(f"cdsflow: {exc}", file=sys.stderr)
        return 1
    finally:
        if subscription_id is not None:
            asyncio.run(delete_subscription(stack.endpoints["ehr"], subscription_id))
        stack.stop()


def _demo(args: argparse.Namespace) -> int:
    from cdsflow.runtime.demo import run_demo

    stack = Stack(_options(args, with_ehr=True))
    try:
        endpoints = stack.start()
        _write_endpoints(args.endpoints_file, endpoints)
        _print_endpoints(endpoints, stack.options.work_dir)
        return asyncio.run(run_demo(stack))
    except (ProcessFailed, TimeoutError) as exc:
        print(f"cdsflow demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    return _demo(args)


if __name__ == "__main__":
    raise SystemExit(main())
