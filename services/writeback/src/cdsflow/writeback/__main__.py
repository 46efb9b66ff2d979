"""`python -m cdsflow.writeback`: serve CDS Hooks and write recommendations back."""

from __future__ import annotations

import uvicorn

from cdsflow.writeback.app import create_app
from cdsflow.writeback.settings import Settings


def main() -> None:
    settings = Settings()  # required values come from the environment
    uvicorn.run(
        create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None
    )


if __name__ == "__main__":
    main()
