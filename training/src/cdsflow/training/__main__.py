"""`python -m cdsflow.training [train|evaluate|export-fhir]`: retrain the reference model,
re-measure the shipped model on the shipped held-out set, or write that set again as FHIR
Bundles and outcomes (for `cdsflow evaluate`; `train` writes them too)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cdsflow.training.fhir_evaluation_set import write_fhir_evaluation_set
from cdsflow.training.training_run import (
    EVALUATION_FILE,
    MODEL_FILE,
    TrainingPlan,
    measure_files,
    run,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdsflow.training", description=__doc__)
    parser.add_argument(
        "action", choices=("train", "evaluate", "export-fhir"), nargs="?", default="train"
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models/deterioration_risk"))
    parser.add_argument("--dataset-dir", type=Path, default=Path("datasets/deterioration_risk"))
    parser.add_argument("--seed", type=int, default=TrainingPlan.seed)
    parser.add_argument("--training-patients", type=int, default=TrainingPlan.training_patients)
    parser.add_argument("--held-out-patients", type=int, default=TrainingPlan.held_out_patients)
    args = parser.parse_args(argv)
    if args.action == "export-fhir":
        write_fhir_evaluation_set(args.dataset_dir / EVALUATION_FILE, args.dataset_dir)
        return 0
    if args.action == "evaluate":
        metrics = measure_files(
            args.model_dir / MODEL_FILE, args.dataset_dir / EVALUATION_FILE, args.seed
        )
    else:
        plan = TrainingPlan(
            model_dir=args.model_dir,
            dataset_dir=args.dataset_dir,
            seed=args.seed,
            training_patients=args.training_patients,
            held_out_patients=args.held_out_patients,
        )
        metrics = run(plan)
    print(json.dumps(metrics.as_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
