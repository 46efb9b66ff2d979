"""One `cdsflow evaluate` run: the labelled dataset's Bundles through the adapter
(`build_model_inputs`), every chosen version of its model on Triton (`score_inputs`), the
results read back through the adapter (alerts from `evaluation.alert_from_band`), measured
(`version_performance`) and held against the declared gate (`gate_failures`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.evaluation.labelled_dataset import LabelledPatient
from cdsflow.evaluation.patient_subgroups import subgroup_rows
from cdsflow.evaluation.triton_scoring import ScoringPlan, TritonScoringError, score_inputs
from cdsflow.evaluation.triton_scoring import version_ready as triton_version_ready
from cdsflow.evaluation.version_performance import VersionPerformance, version_performance
from cdsflow.models import (
    MissingRequiredInputs,
    ModelAdapter,
    ModelInputs,
    build_model_inputs,
    gate_failures,
)
from cdsflow.models.card_schema import Evaluation, EvaluationGate
from cdsflow.models.risk_bands import alert_threshold, is_at_or_above


class EvaluationUsageError(ValueError):
    """The adapter cannot be evaluated as asked (no gate, a version it does not declare)."""


@dataclass(frozen=True)
class EvaluationRequest:
    adapter: ModelAdapter
    dataset_dir: Path
    patients: Sequence[LabelledPatient]  # read_labelled_dataset(dataset_dir)
    versions: tuple[str, ...] | None = None  # None: every version the adapter declares
    seed: int = 0  # of the AUROC bootstrap
    scoring: ScoringPlan = field(default_factory=ScoringPlan)


@dataclass(frozen=True)
class VersionEvaluation:
    version: str
    mode: str
    scored: int
    # patients whose required inputs were not observed: the model is not called for them
    not_scored: int
    refused_values: dict[str, int]  # "data: reason" -> count
    performance: VersionPerformance
    gate_failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.gate_failures


@dataclass(frozen=True)
class EvaluationResult:
    adapter_id: str
    adapter_title: str
    model: str
    dataset: Path
    patients: int
    positives: int
    alert_from_band: str
    alert_threshold: float
    gate: EvaluationGate
    versions: tuple[VersionEvaluation, ...]

    @property
    def passed(self) -> bool:
        return all(version.passed for version in self.versions)


class Progress:
    """What a run reports as it goes (a progress bar, or nothing)."""

    def start(self, description: str, total: int) -> Callable[[int], None]:
        """A new task of `total` steps; the returned callable advances it."""
        return lambda _steps: None


def evaluation_of(adapter: ModelAdapter) -> Evaluation:
    if adapter.evaluation is None:
        raise EvaluationUsageError(f"adapter {adapter.id} declares no evaluation gate")
    if adapter.model.kind != "predictive" or adapter.outputs.score is None:
        raise EvaluationUsageError(f"adapter {adapter.id}: only a model with a score is measured")
    return adapter.evaluation


def chosen_versions(adapter: ModelAdapter, asked: Sequence[str] | None) -> list[tuple[str, str]]:
    """(version, mode) of each version to evaluate; one not declared is a usage error."""
    declared = {str(v.version): v.mode for v in adapter.model.versions}
    for version in asked or ():
        if version not in declared:
            raise EvaluationUsageError(
                f"adapter {adapter.id} declares no version {version} "
                f"(it declares {', '.join(declared)})"
            )
    return [(version, declared[version]) for version in (asked or declared)]


def _model_inputs(
    adapter: ModelAdapter, patients: Sequence[LabelledPatient], progress: Progress
) -> tuple[list[int], list[ModelInputs], Counter[str]]:
    """The rows that can be scored, their inputs, and the values refused across all."""
    advance = progress.start("model inputs", len(patients))
    rows, inputs, refused = [], [], Counter[str]()
    for row, patient in enumerate(patients):
        try:
            built = build_model_inputs(adapter, patient.resources, patient.as_of)
        except MissingRequiredInputs:
            advance(1)
            continue
        refused.update(f"{r.data}: {r.reason.value}" for r in built.extracted.refused)
        rows.append(row)
        inputs.append(built)
        advance(1)
    return rows, inputs, refused


async def evaluate(
    request: EvaluationRequest, client: InferenceServerClient, progress: Progress | None = None
) -> EvaluationResult:
    """Raises `EvaluationUsageError` or `TritonScoringError`."""
    progress = progress or Progress()
    adapter = request.adapter
    declared = evaluation_of(adapter)
    versions = chosen_versions(adapter, request.versions)
    for version, _ in versions:
        if not await triton_version_ready(client, adapter, version):
            raise TritonScoringError(
                f"Triton does not serve {adapter.model.triton_name} version {version} "
                "(not in its model repository, not loaded, or Triton is not reachable)"
            )
    patients = request.patients
    rows, inputs, refused = _model_inputs(adapter, patients, progress)
    if not rows:
        raise EvaluationUsageError("no patient of the dataset has the model's required inputs")
    scored = [patients[row] for row in rows]
    outcome = np.array([p.label for p in scored], dtype=bool)
    days = np.array([p.observation_days for p in scored], dtype=np.float64)
    subgroups = subgroup_rows(scored)
    evaluations = []
    for version, mode in versions:
        advance = progress.start(f"version {version}", len(inputs))
        results = await score_inputs(client, adapter, version, inputs, request.scoring, advance)
        risk = np.array([r.score for r in results], dtype=np.float64)
        alert = np.array(
            [
                r.band is not None
                and is_at_or_above(adapter.risk_bands, r.band, declared.alert_from_band)
                for r in results
            ],
            dtype=bool,
        )
        performance = version_performance(risk, alert, outcome, days, subgroups, request.seed)
        evaluations.append(
            VersionEvaluation(
                version=version,
                mode=mode,
                scored=len(rows),
                not_scored=len(patients) - len(rows),
                refused_values=dict(sorted(refused.items())),
                performance=performance,
                gate_failures=tuple(gate_failures(declared.gate, performance.measured())),
            )
        )
    return EvaluationResult(
        adapter_id=adapter.id,
        adapter_title=adapter.title,
        model=adapter.model.triton_name,
        dataset=request.dataset_dir,
        patients=len(patients),
        positives=int(sum(p.label for p in patients)),
        alert_from_band=declared.alert_from_band,
        alert_threshold=alert_threshold(adapter.risk_bands, declared.alert_from_band),
        gate=declared.gate,
        versions=tuple(evaluations),
    )
