"""`cdsflow evaluate ADAPTER [--dataset DIR]`: replay a labelled FHIR dataset through the model
adapter and Triton (the `--triton-grpc-url` one, or the tritonserver binary started on the
model repository in its CPU configuration and stopped after), measure every declared version
(or `--version N`) against the adapter's evaluation gate, and write an HTML report with ROC
and calibration plots and a JSON summary.

Exit codes: 0 every evaluated version meets the gate, 1 a version does not (each failed
criterion is listed) or Triton failed, 2 bad usage, a bad adapter file or a bad dataset (the
message names the file and the line).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cdsflow.runtime.processes import ProcessFailed, split_host_port

if TYPE_CHECKING:
    from cdsflow.evaluation.evaluation_run import EvaluationRequest, EvaluationResult


def _host_port(text: str) -> str:
    try:
        split_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; give HOST:PORT, without a scheme") from exc
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number above 0")
    return int(text)


def add_evaluate_command(commands: Any) -> None:
    """The `evaluate` subcommand's arguments (`commands`: the parser's subparsers)."""
    evaluate_parser = commands.add_parser(
        "evaluate",
        help="measure a model adapter's versions on a labelled FHIR dataset against its gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate_parser.add_argument("adapter", type=Path, help="the model adapter file (YAML)")
    evaluate_parser.add_argument(
        "--dataset",
        type=Path,
        help="the dataset folder (default: the adapter's evaluation.dataset, from here)",
    )
    evaluate_parser.add_argument(
        "--triton-grpc-url",
        type=_host_port,
        metavar="HOST:PORT",
        help="a running Triton's gRPC endpoint (default: start the tritonserver binary here)",
    )
    evaluate_parser.add_argument(
        "--model-repository",
        type=Path,
        default=Path("models"),
        help="the model repository for the started Triton (default: models)",
    )
    evaluate_parser.add_argument(
        "--version", action="append", help="evaluate only this version (repeatable)"
    )
    evaluate_parser.add_argument(
        "--report", type=Path, help="the HTML report (default: ./<adapter id>-evaluation.html)"
    )
    evaluate_parser.add_argument(
        "--json", type=Path, help="the JSON summary (default: the report's name with .json)"
    )
    evaluate_parser.add_argument(
        "--limit", type=_positive, help="only the first N patients (a quick check)"
    )
    evaluate_parser.add_argument(
        "--seed", type=int, default=0, help="the AUROC bootstrap's seed (default 0)"
    )


def _fail(message: str, status: int) -> int:
    print(f"cdsflow evaluate: {message}", file=sys.stderr)
    return status


async def _evaluate_on(url: str, request: EvaluationRequest) -> EvaluationResult:
    from tritonclient.grpc.aio import InferenceServerClient

    from cdsflow.evaluation.evaluation_run import evaluate
    from cdsflow.evaluation.progress_bar import ProgressBar

    client = InferenceServerClient(url)
    try:
        with ProgressBar() as progress:
            return await evaluate(request, client, progress)
    finally:
        await client.close()


def run_evaluate(args: argparse.Namespace) -> int:
    # here, not at the top: the evaluation (scikit-learn, plots: seconds to import) is loaded
    # by `evaluate` only, not by every command of the CLI (`cdsflow hook` starts in a blink)
    from cdsflow.evaluation.evaluation_report import html_report, json_text, summary_lines
    from cdsflow.evaluation.evaluation_run import (
        EvaluationRequest,
        EvaluationUsageError,
        chosen_versions,
        evaluation_of,
    )
    from cdsflow.evaluation.labelled_dataset import DatasetError, read_labelled_dataset
    from cdsflow.evaluation.triton_scoring import TritonScoringError
    from cdsflow.models import AdapterFileError, load_adapter
    from cdsflow.runtime.parts import CPU_MODEL_CONFIG, start_triton

    try:
        adapter = load_adapter(args.adapter)
        declared = evaluation_of(adapter)
        versions = chosen_versions(adapter, args.version)
        dataset_dir = args.dataset or (Path(declared.dataset) if declared.dataset else None)
        if dataset_dir is None:
            raise EvaluationUsageError(f"give --dataset: {args.adapter} names no dataset")
        patients = read_labelled_dataset(dataset_dir, args.limit)
    except (AdapterFileError, EvaluationUsageError, DatasetError, OSError) as exc:
        return _fail(str(exc), 2)
    request = EvaluationRequest(
        adapter=adapter,
        dataset_dir=dataset_dir,
        patients=patients,
        versions=tuple(version for version, _ in versions),
        seed=args.seed,
    )
    report = args.report or Path(f"{adapter.id}-evaluation.html")
    summary = args.json or report.with_suffix(".json")
    triton = None
    try:
        url = args.triton_grpc_url
        if url is None:
            if not args.model_repository.is_dir():
                return _fail(f"no Triton model repository at {args.model_repository}", 2)
            log_dir = Path(tempfile.mkdtemp(prefix="cdsflow-evaluate-"))
            print(f"starting Triton (logs in {log_dir})", file=sys.stderr)
            triton = start_triton(
                args.model_repository.resolve(), log_dir, model_config_name=CPU_MODEL_CONFIG
            )
            url = triton.endpoints["triton_grpc"]
        result = asyncio.run(_evaluate_on(url, request))
    except (ProcessFailed, TritonScoringError) as exc:
        return _fail(str(exc), 1)
    except EvaluationUsageError as exc:
        return _fail(str(exc), 2)
    finally:
        if triton is not None:
            triton.stop()
    report.write_text(html_report(result), encoding="utf-8")
    summary.write_text(json_text(result), encoding="utf-8")
    print("\n".join(summary_lines(result)))
    print(f"report: {report}\nsummary: {summary}")
    return 0 if result.passed else 1
