"""Which failures to read the EHR make the listener ask the EHR to send again (503): an outage,
and the listener not being let in (no token, 401, 403) — a configuration to fix, after which
the retried notification is read. Acknowledging instead would lose what it named."""

from __future__ import annotations

from cdsflow.fhir import EhrAuthError, EhrError, is_ehr_outage

_NOT_LET_IN = frozenset({401, 403})


def worth_a_retry(exc: BaseException) -> bool:
    """True when the notification should come again later rather than be acknowledged."""
    if is_ehr_outage(exc) or isinstance(exc, EhrAuthError):
        return True
    return isinstance(exc, EhrError) and exc.status_code in _NOT_LET_IN
