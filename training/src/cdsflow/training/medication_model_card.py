"""MODEL_CARD.md for `medication_safety`, written by each build from the rule's constants."""

from __future__ import annotations

from cdsflow.training.medication_rule import BAND_RISK, COLUMN_UNITS, COLUMNS, EGFR_THRESHOLDS


def render_medication_model_card(command: str, seed: int, checked_rows: int) -> str:
    low, high = EGFR_THRESHOLDS
    stop, review, none = BAND_RISK
    columns = "\n".join(
        f"| {column} | `{name}` | `{unit}` |"
        for column, (name, unit) in enumerate(zip(COLUMNS, COLUMN_UNITS, strict=True))
    )
    return f"""# Model card: `medication_safety` (a declared rule, served as a model)

> **Not clinically validated.** This rule shows how a health system's own rule or model for
> medication safety is served, versioned, run in shadow and evaluated by cdsflow through an
> adapter file (`adapters/medication-safety.yaml`). Check it against your own formulary,
> laboratory and pharmacy policy before any clinical use; it ships in `shadow` mode.

This file is written by `{command}` (`python -m cdsflow.training medication-safety`). Do not
edit it by hand: change `cdsflow.training.medication_rule` and rebuild.

## Intended use

Within cdsflow: the second shipped adapter, proving that a model other than the reference
deterioration model plugs in by declaration — it reads laboratory Observations and
MedicationRequests instead of vital signs and answers `order-select`, `order-sign` and
`patient-view` with a card that suggests stopping metformin. For a health system: a template
for serving a declared rule beside its learned models. Out of scope: any decision about a
real patient; dosing advice beyond "review" or "consider stopping".

## The rule

Metformin is contraindicated below an eGFR of {low:g} mL/min/1.73 m²; starting it between
{low:g} and {high:g} is not recommended, and for a patient already on it the benefit and a
lower dose should be weighed (FDA drug safety communication, 2016; KDIGO 2022 guideline on
diabetes in CKD). Per row:

| metformin (active or draft) | latest eGFR (90 days) | `medication_risk` | adapter band |
|---|---|---|---|
| yes | observed, < {low:g} | {stop:g} | `contraindicated` (critical: consider stopping) |
| yes | observed, {low:g} to < {high:g} | {review:g} | `review` (warning: review the dose) |
| yes | observed, ≥ {high:g} | {none:g} | `no_concern` (no card) |
| yes | not observed | 0 | `no_concern` (no card) |
| no | any | 0 | `no_concern` (no card) |

A missing eGFR is never imputed: no eGFR, no alert (the adapter's cards also require the
eGFR to be present). Which Observations count as an eGFR (LOINC codes, units, the 90-day
window, final/amended/corrected results, the plausible range 0-250) and which
MedicationRequests count as metformin (RxNorm codes, active or draft) is declared in the
adapter, not in the model.

### Inputs (`features` FP32 [2] and `present` BOOL [2], per row)

| column | input | unit |
|---|---|---|
{columns}

`present` is false where an input was not observed (its value is then ignored); a NaN eGFR
counts as not observed. Metformin counts as ordered when its value is above 0.5 and present.

### Output (per row)

`medication_risk` FP32 [1]: {stop:g}, {review:g} or {none:g}, as in the table.

## How it is made

No training: the rule's thresholds and band values are constants in
`cdsflow.training.medication_rule`, exported as a 16-node ONNX graph (opset 17, IR 8; a
gather, comparisons and a where), the one file that both Triton configurations serve. Before
this card was written, the ONNX file as written was run by onnxruntime on {checked_rows:,} rows
(random eGFR values, masks and NaNs drawn with seed {seed}, plus each threshold and its
float32 neighbours) and agreed with the rule in numpy on every row.

## Evaluation

Its adapter declares the gate (sensitivity ≥ 0.95, PPV ≥ 0.9, at most 5 alerts per 100
patient-days, alerts from the `review` band); `cdsflow evaluate` measures it against a
labelled dataset. A rule agrees with its own labels by construction, so such figures check
the plumbing (FHIR extraction, units, windows), not clinical value.

## Limits

- Not clinically validated; the thresholds follow the label and guideline text, not local
  policy.
- Only eGFR and metformin: no creatinine trend, acute kidney injury, contrast imaging,
  dialysis, or other drugs; an eGFR older than 90 days is not seen (no card).
- The eGFR is taken as reported (creatinine-based, per 1.73 m²); no correction for body
  size, race or a cystatin C estimate.
- Values outside the adapter's plausible range are refused before they reach the model; the
  model itself only treats NaN (and `present` = false) as not observed.
"""
