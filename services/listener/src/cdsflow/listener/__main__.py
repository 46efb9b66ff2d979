"""`python -m cdsflow.listener`: serve R4 rest-hook notifications on CDSFLOW_HTTP_PORT."""

from __future__ import annotations

import uvicorn

from cdsflow.listener.app import create_app
from cdsflow.listener.settings import Settings


def main() -> None:
    settings = Settings()
    # log_config=None keeps the JSON logging that create_app sets up
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None
    )


if __name__ == "__main__":
    main()
