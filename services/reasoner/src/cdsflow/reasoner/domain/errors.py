"""Why an event cannot be processed. Messages name what is wrong, never patient data."""

from __future__ import annotations


class UnprocessableEvent(Exception):
    """The event itself is wrong: retrying will not help, it belongs on the dead-letter topic."""
