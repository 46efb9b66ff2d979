"""`python -m cdsflow.writeback`: serve CDS Hooks and write recommendations back."""

from __future__ import annotations

from cdsflow.service import serve
from cdsflow.writeback.app import create_app
from cdsflow.writeback.settings import Settings


def main() -> None:
    settings = Settings()  # required values come from the environment
    serve(create_app(settings), settings, error_media_type="application/json")


if __name__ == "__main__":
    main()
