"""`python -m cdsflow.training [train|evaluate|export-fhir|medication-safety]`: retrain the
reference model, re-measure the shipped model on the shipped held-out set, write that set
again as FHIR Bundles and outcomes (for `cdsflow evaluate`; `train` writes them too), or
rebuild the medication-safety rule model (its ONNX file and card, in `--model-dir`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from cdsflow.training.fhir_evaluation_set import write_fhir_evaluation_set
from cdsflow.training.medication_safety_build import MedicationSafetyPlan, build
from cdsflow.training.training_run import (
    EVALUATION_FILE,
    MODEL_FILE,
    TrainingPlan,
    measure_files,
    run,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdsflow.training", description=__doc__)
    actions = ("train", "evaluate", "export-fhir", "medication-safety")
    parser.add_argument("action", choices=actions, nargs="?", default="train")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--dataset-dir", type=Path, default=Path("datasets/deterioration_risk"))
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--training-patients", type=int, default=TrainingPlan.training_patients)
    parser.add_argument("--held-out-patients", type=int, default=TrainingPlan.held_out_patients)
    args = parser.parse_args(argv)
    if args.action == "export-fhir":
        write_fhir_evaluation_set(args.dataset_dir / EVALUATION_FILE, args.dataset_dir)
        return 0
    if args.action == "medication-safety":
        plan = MedicationSafetyPlan(args.model_dir or Path("models/medication_safety"))
        if args.seed is not None:
            plan = replace(plan, seed=args.seed)
        checked = build(plan)
        print(json.dumps({"model_dir": str(plan.model_dir), "rows_checked": checked}))
        return 0
    args.model_dir = args.model_dir or Path("models/deterioration_risk")
    args.seed = TrainingPlan.seed if args.seed is None else args.seed
    if args.action == "evaluate":
        metrics = measure_files(
            args.model_dir / MODEL_FILE, args.dataset_dir / EVALUATION_FILE, args.seed
        )
    else:
        training = TrainingPlan(
            model_dir=args.model_dir,
            dataset_dir=args.dataset_dir,
            seed=args.seed,
            training_patients=args.training_patients,
            held_out_patients=args.held_out_patients,
        )
        metrics = run(training)
    print(json.dumps(metrics.as_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
