"""Reading an adapter file: YAML, validated against `ModelAdapter` and `reference_problems`.

Every problem is reported with the file, the line and the path of the member in error
(`adapters/x.yaml:42: inputs.tensors[0].columns[3].aggregation: ...`), so that whoever
writes the file can fix it without reading code. A member that is missing is reported at
the line of the mapping that should hold it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cdsflow.models.adapter_references import Location, reference_problems
from cdsflow.models.adapter_schema import ModelAdapter


@dataclass(frozen=True)
class FileProblem:
    line: int
    path: str
    message: str


class AdapterFileError(ValueError):
    """An adapter file that cannot be used; `problems` says where and why, line by line."""

    def __init__(self, file: Path, problems: list[FileProblem]) -> None:
        self.file = file
        self.problems = sorted(problems, key=lambda problem: problem.line)
        lines = [
            f"{file}:{p.line}: {p.path + ': ' if p.path else ''}{p.message}" for p in self.problems
        ]
        super().__init__("\n".join(lines))


def load_adapter(path: Path) -> ModelAdapter:
    """The adapter in `path`; raises `AdapterFileError` naming each wrong line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise AdapterFileError(path, [FileProblem(1, "", "not UTF-8 text")]) from None
    return parse_adapter(text, path)


def parse_adapter(text: str, file: Path) -> ModelAdapter:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise AdapterFileError(file, [FileProblem(line, "", _yaml_message(error))]) from None
    except yaml.YAMLError as error:  # unmarked: e.g. a character YAML does not allow
        raise AdapterFileError(file, [FileProblem(1, "", f"not valid YAML: {error}")]) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise AdapterFileError(file, [FileProblem(1, "", "an adapter file is a YAML mapping")])
    duplicates = list(_duplicate_keys(root, ()))
    if duplicates:
        raise AdapterFileError(file, duplicates)
    document = yaml.safe_load(text)
    try:
        adapter = ModelAdapter.model_validate(document)
    except ValidationError as error:
        raise AdapterFileError(
            file,
            [
                _problem(root, _location(detail), _pydantic_message(detail))
                for detail in error.errors(include_url=False)
            ],
        ) from None
    problems = reference_problems(adapter)
    if problems:
        raise AdapterFileError(file, [_problem(root, loc, msg) for loc, msg in problems])
    return adapter


def _problem(root: yaml.Node, location: Location, message: str) -> FileProblem:
    line, path = _locate(root, location)
    return FileProblem(line, path, message)


def _locate(root: yaml.Node, location: Location) -> tuple[int, str]:
    """The line of the deepest member of `location` in the file, and the path as written.

    Path members that are not in the file (a discriminator tag such as `Observation`, a
    missing member's name) are skipped for the line but kept in the path when they name a
    missing member.
    """
    node = root
    line = root.start_mark.line + 1
    path = ""
    for member in location:
        child = _child(node, member)
        if child is None:
            # pydantic's "[key]" marks an error in the mapping key itself: the path has it
            if member == location[-1] and member != "[key]":
                path = _join(path, member)
            continue
        key_node, node = child
        line = (key_node or node).start_mark.line + 1
        path = _join(path, member)
    return line, path


def _child(node: yaml.Node, member: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(member):
                return key, value
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(member, int)
        and 0 <= member < len(node.value)
    ):
        return None, node.value[member]
    return None


def _join(path: str, member: str | int) -> str:
    if isinstance(member, int):
        return f"{path}[{member}]"
    return f"{path}.{member}" if path else member


def _duplicate_keys(node: yaml.Node, location: Location) -> Iterator[FileProblem]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                path = ".".join(str(m) for m in (*location, name))
                yield FileProblem(key.start_mark.line + 1, path, "this key is given twice")
            seen.add(name)
            yield from _duplicate_keys(value, (*location, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, member in enumerate(node.value):
            yield from _duplicate_keys(member, (*location, index))


def _location(detail: Any) -> Location:
    """Where pydantic's error is; a wrong `resource:` of a data entry is that member's."""
    location = tuple(detail["loc"])
    if detail["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*location, "resource")
    return location


def _pydantic_message(detail: Any) -> str:
    message = str(detail["msg"])
    if detail["type"] == "extra_forbidden":
        return "this member is not part of the adapter format (misspelt?)"
    if detail["type"] == "union_tag_invalid":
        return "resource must be Observation, MedicationRequest or Patient"
    if detail["type"] == "missing":
        return "a required member is missing"
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    return message


def _yaml_message(error: yaml.MarkedYAMLError) -> str:
    return f"not valid YAML: {error.problem or error.context or 'syntax error'}"
