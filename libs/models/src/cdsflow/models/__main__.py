"""`python -m cdsflow.models check PATH...`: check adapter files (or folders of them).

Prints one line per adapter that is right and every problem of every file that is not;
exits 0 when all are right, 1 when one is wrong, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cdsflow.models.adapter_catalogue import load_adapters
from cdsflow.models.adapter_file import AdapterFileError, load_adapter
from cdsflow.models.adapter_schema import ModelAdapter


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdsflow.models")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check adapter files or folders of them")
    check.add_argument("paths", nargs="+", type=Path)
    arguments = parser.parse_args(argv)
    wrong = False
    for path in arguments.paths:
        try:
            adapters = _load(path)
        except AdapterFileError as error:
            print(error, file=sys.stderr)
            wrong = True
            continue
        except OSError as error:
            print(f"{path}: {error.strerror or error}", file=sys.stderr)
            wrong = True
            continue
        for adapter in adapters:
            versions = ", ".join(f"v{v.version} {v.mode}" for v in adapter.model.versions)
            hooks = ", ".join(hook.id for hook in adapter.hooks)
            print(f"{adapter.id}: {adapter.model.triton_name} ({versions}); services: {hooks}")
    return 1 if wrong else 0


def _load(path: Path) -> list[ModelAdapter]:
    if path.is_dir():
        return list(load_adapters(path).values())
    return [load_adapter(path)]


if __name__ == "__main__":
    raise SystemExit(main())
