"""`python -m cdsflow.reasoner`: consume clinical events, publish recommendations; serve
health, readiness and metrics on CDSFLOW_HTTP_PORT."""

from __future__ import annotations

import gc

from cdsflow.reasoner.app import create_app
from cdsflow.reasoner.settings import Settings
from cdsflow.service import serve


def tune_garbage_collection(settings: Settings) -> None:
    """The young generation's threshold from `gc_young_threshold`; the older generations keep
    theirs. Process-wide, so set by the service's own process, not by the app."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, older, oldest)


def main() -> None:
    settings = Settings()  # read from CDSFLOW_* variables
    try:
        app = create_app(settings)
    except ValueError as exc:  # a wrong adapter file (file:line: member: why), or none
        raise SystemExit(f"cdsflow reasoner: cannot start: {exc}") from None
    tune_garbage_collection(settings)
    serve(app, settings, error_media_type="application/json")


if __name__ == "__main__":
    main()
