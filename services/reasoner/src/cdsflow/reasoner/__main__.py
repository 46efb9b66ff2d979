"""`python -m cdsflow.reasoner`: consume clinical events, publish recommendations; serve
health, readiness and metrics on CDSFLOW_HTTP_PORT."""

from __future__ import annotations

from cdsflow.reasoner.app import create_app
from cdsflow.reasoner.settings import Settings
from cdsflow.service import serve


def main() -> None:
    settings = Settings()  # read from CDSFLOW_* variables
    serve(create_app(settings), settings, error_media_type="application/json")


if __name__ == "__main__":
    main()
