"""The files of the `deterioration_score` model, loaded by path (models/ is no package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "deterioration_score"
VERSION_DIR = MODEL_DIR / "1"


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_early_warning() -> ModuleType:
    return load_module("deterioration_score_early_warning", VERSION_DIR / "early_warning.py")
