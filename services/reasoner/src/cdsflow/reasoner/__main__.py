"""`python -m cdsflow.reasoner`: consume clinical events, publish recommendations; serve
health, readiness and metrics on CDSFLOW_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from cdsflow.reasoner.app import create_app
from cdsflow.reasoner.settings import Settings


def main() -> None:
    settings = Settings()  # read from CDSFLOW_* variables
    # log_config=None keeps the JSON logging that create_app sets up
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None
    )


if __name__ == "__main__":
    main()
