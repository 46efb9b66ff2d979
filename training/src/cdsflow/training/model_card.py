"""MODEL_CARD.md for the reference model, written by each training run from what it measured."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cdsflow.evaluation.classifier_metrics import AlertFigures
from cdsflow.training.additive_model import N_EDGES, AdditiveRiskModel
from cdsflow.training.held_out_metrics import HeldOutMetrics, SubgroupFigures
from cdsflow.training.model_inputs import INPUT_NAMES, INPUT_UNITS

if TYPE_CHECKING:
    from cdsflow.training.training_run import TrainingPlan


def _alert_rows(figures: tuple[AlertFigures, ...], label: str) -> str:
    return "\n".join(
        f"| {label} ≥ {f.threshold:g} | {f.alert_share:.1%} | {f.sensitivity:.1%} | {f.ppv:.1%} |"
        for f in figures
    )


def _subgroup_rows(figures: tuple[SubgroupFigures, ...]) -> str:
    return "\n".join(
        f"| {f.subgroup} | {f.patients} | {f.deteriorated} | {_optional(f.auroc)} "
        f"| {f.mean_predicted:.3f} | {f.observed_rate:.3f} |"
        for f in figures
    )


def _optional(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_model_card(
    plan: TrainingPlan, model: AdditiveRiskModel, metrics: HeldOutMetrics, evaluation_file: Path
) -> str:
    low, high = metrics.auroc_95ci
    deciles = "\n".join(
        f"| {i + 1} | {b.patients} | {b.mean_predicted:.3f} | {b.observed_rate:.3f} |"
        for i, b in enumerate(metrics.calibration_deciles)
    )
    inputs = "\n".join(
        f"| {column} | `{name}` | `{unit}` |"
        for column, (name, unit) in enumerate(zip(INPUT_NAMES, INPUT_UNITS, strict=True))
    )
    ceiling = _optional(metrics.generator_risk_auroc)
    calibration = f"{metrics.calibration_intercept:.3f} / {metrics.calibration_slope:.3f}"
    # a Markdown document, not a query (ruff's S608 reads "from" in it as SQL)
    return f"""# Model card: `deterioration_risk` (reference model, synthetic data)

> **Not clinically validated. Trained only on synthetic patients.** This model shows how a
> health system's own model is served, explained and evaluated by cdsflow. Replace it with
> your own model, trained and validated on your own patients, before any clinical use.

This file is written by the training run (`{plan.command}`); every figure below was measured
by that run on the held-out set. Do not edit it by hand.

## Intended use

Within cdsflow: the reference model behind the deterioration CDS Hooks card, so that the
pipeline, the cards' basis, shadow mode and `cdsflow evaluate` can be exercised end to end.
For a health system: a template for the model card of its own model. Out of scope: any
decision about a real patient.

## Model

An additive logistic model. Each input falls into one slot: one of up to {N_EDGES + 1} value
bins (edges at the 1, 3, 7, 15, 30, 50, 70, 85, 93, 97 and 99th percentiles of its observed
training values) or its own "not observed" slot; a logistic regression (L2 penalty, C =
{model.l2_inverse_strength:g}, chosen by log-loss on the last fifth of the training cohort)
gives each slot a log-odds weight. Chosen because:

- each input's contribution is exact, not an approximation: the log-odds is the intercept
  plus the sum of the 15 contributions (each centred on the training cohort: a contribution
  says how much that input raises or lowers this patient's log-odds compared with that
  input's average term over the training cohort);
- missingness is learned, not imputed: an input that was not observed has its own weight,
  from the data, never the weight of a normal value;
- non-linear per input (both a low and a high heart rate can raise the risk) and small: a
  14-node ONNX graph (opset 17) that the onnxruntime backend serves on a GPU and the python
  backend serves here, unchanged.

What it cannot do: interactions between inputs (a high heart rate counts the same whatever
the blood pressure), and value bins are steps, not smooth curves.

Intercept (the log-odds when every contribution is 0, i.e. each input at its mean term
over the training cohort): {model.intercept:.4f}.

### Inputs (`features` FP32 [15] and `present` BOOL [15], per row)

| column | input | unit (UCUM) |
|---|---|---|
{inputs}

Columns 0-6 are each NEWS2 parameter's latest value; 7-13 its trend, the latest minus the
earliest value within the 24 h before the prediction (present only with two or more values);
14 the age in years. `present` is false where an input was not observed: its value is then
ignored.

### Outputs (per row)

`deterioration_risk` FP32 [1]: probability of deterioration within 24 h;
`log_odds` FP32 [1]: its log-odds; `contributions` FP32 [15]: each input's log-odds term, in
input order (`log_odds` = intercept + their sum).

## Data

Synthetic only: `cdsflow.training.synthetic_cohort` (its docstring documents the generator:
age, latent severity and its course over 24 h, organ-system patterns, charted values with
noise and rounding, informative missingness, and the outcome drawn from a latent risk of
severity, worsening and age). Seed {plan.seed}; {plan.training_patients:,} training patients
and {plan.held_out_patients:,} held-out patients from two independent child seeds. The
held-out set is shipped as `{evaluation_file.as_posix()}` (JSON lines; format in
`cdsflow.training.evaluation_set`); the training cohort is not shipped (the seed makes it).

## Held-out metrics

{metrics.patients:,} patients, {metrics.deteriorated} deteriorated within 24 h
({metrics.observed_rate:.1%}). Measured with `{plan.command}` (training run) and again, from
the shipped files, with `python -m cdsflow.training evaluate`.

| metric | value |
|---|---|
| AUROC | {metrics.auroc:.3f} (95 % bootstrap interval {low:.3f}-{high:.3f}) |
| AUROC of NEWS2 on the same patients | {metrics.news2_auroc:.3f} |
| AUROC of the generator's own outcome probability (the ceiling) | {ceiling} |
| Brier score | {metrics.brier_score:.4f} |
| calibration intercept / slope | {calibration} |
| mean predicted risk / observed rate | {metrics.mean_predicted:.3f} / {metrics.observed_rate:.3f} |

| alert rule | patients alerted | sensitivity | PPV |
|---|---|---|---|
{_alert_rows(metrics.at_risk_thresholds, "risk")}
{_alert_rows(metrics.news2_at_thresholds, "NEWS2")}

By subgroup (small subgroups give wide intervals; sex has no effect in the generator):

| subgroup | patients | deteriorated | AUROC | mean predicted | observed rate |
|---|---|---|---|---|---|
{_subgroup_rows(metrics.subgroups)}

Calibration by decile of predicted risk:

| decile | patients | mean predicted | observed rate |
|---|---|---|---|
{deciles}

## Limits

- Not clinically validated; synthetic data only. The figures above say how well the model
  learned the generator's world, not how it would do on real patients.
- The generator's physiology, missingness and outcome model are simplifications chosen by
  its authors; a model trained on them inherits them.
- Sex is generated without any effect, so subgroup figures by sex can only show chance.
- The reasoner must refuse impossible values before they reach the model; the model only
  treats NaN (and `present` = false) as not observed.
"""  # noqa: S608
