"""Why a notification is refused, in words the EHR's operators can act on.

Diagnostics name elements and rules, never the values that were sent: a notification body
is patient data.
"""

from __future__ import annotations

from cdsflow.service import RequestRefused


class NotificationRejected(RequestRefused):
    """A notification that cannot be accepted; becomes an OperationOutcome answer, like every
    `RequestRefused` (the shared request checks raise those).

    `reason` is a short, fixed label for metrics and logs; `issue_code` is from the FHIR
    issue-type value set.
    """

    def __init__(
        self,
        *,
        status_code: int,
        issue_code: str,
        reason: str,
        diagnostics: str,
        expression: tuple[str, ...] = (),
    ) -> None:
        super().__init__(status_code, issue_code, reason, diagnostics, expression)


def bad_request(
    issue_code: str, reason: str, diagnostics: str, *expression: str
) -> NotificationRejected:
    """400: the notification is malformed; `diagnostics` names the rule, never a value."""
    return NotificationRejected(
        status_code=400,
        issue_code=issue_code,
        reason=reason,
        diagnostics=diagnostics,
        expression=expression,
    )


def unauthorized() -> NotificationRejected:
    return NotificationRejected(
        status_code=401,
        issue_code="security",
        reason="unauthorized",
        diagnostics="missing or wrong channel secret (Authorization: Bearer ...)",
    )
