"""`python -m cdsflow.reasoner`: consume clinical events, publish recommendations; serve
health, readiness and metrics on CDSFLOW_HTTP_PORT."""

from __future__ import annotations

from cdsflow.reasoner.app import create_app
from cdsflow.reasoner.settings import Settings
from cdsflow.service import serve


def main() -> None:
    settings = Settings()  # read from CDSFLOW_* variables
    try:
        app = create_app(settings)
    except ValueError as exc:  # a wrong adapter file (file:line: member: why), or none
        raise SystemExit(f"cdsflow reasoner: cannot start: {exc}") from None
    serve(app, settings, error_media_type="application/json")


if __name__ == "__main__":
    main()
