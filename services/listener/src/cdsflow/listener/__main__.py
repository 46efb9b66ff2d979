"""`python -m cdsflow.listener`: serve R4 rest-hook notifications on CDSFLOW_HTTP_PORT."""

from __future__ import annotations

from cdsflow.fhir import FHIR_JSON
from cdsflow.listener.app import create_app
from cdsflow.listener.settings import Settings
from cdsflow.service import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings, error_media_type=FHIR_JSON)


if __name__ == "__main__":
    main()
