"""Why a notification is refused, in words the EHR's operators can act on.

Diagnostics name elements and rules, never the values that were sent: a notification body
is patient data.
"""

from __future__ import annotations


class NotificationRejected(Exception):
    """A notification that cannot be accepted; becomes an OperationOutcome answer.

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
        super().__init__(diagnostics)
        self.status_code = status_code
        self.issue_code = issue_code
        self.reason = reason
        self.diagnostics = diagnostics
        self.expression = expression


def unauthorized() -> NotificationRejected:
    return NotificationRejected(
        status_code=401,
        issue_code="security",
        reason="unauthorized",
        diagnostics="missing or wrong channel secret (Authorization: Bearer ...)",
    )
