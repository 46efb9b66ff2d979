"""Which patient a FHIR reference names: the one rule for every service.

A reference is a patient of the configured EHR only when it is `Patient/{id}` (optionally
`Patient/{id}/_history/{version}`), or exactly `{EHR base URL}/Patient/{id}` (same optional
history) after normalising scheme and host case and default ports. Anything else — another
server, a scheme-relative or malformed URL, dot segments, a longer relative path, an id that
breaks FHIR's id rule — is not this EHR's patient, and is never charted as one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# FHIR's id rule; "." and ".." match it but are path segments, never ids
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_fhir_id(value: object) -> bool:
    """True for a valid FHIR resource id (`[A-Za-z0-9\\-.]{1,64}`, not `.` or `..`)."""
    return isinstance(value, str) and bool(_FHIR_ID.fullmatch(value)) and value not in {".", ".."}


def is_patient_reference(reference: object) -> bool:
    """True for exactly `Patient/{id}`: the form every cdsflow event and recommendation carries."""
    return isinstance(reference, str) and _patient_path(reference) == reference


def local_patient_reference(reference: object, ehr_base_url: str) -> str | None:
    """`Patient/{id}` when `reference` names a patient on the EHR at `ehr_base_url`, else None."""
    if not isinstance(reference, str) or reference.endswith("/"):
        return None
    if reference.startswith("Patient/"):
        return _patient_path(reference)
    base = normalised_base_url(ehr_base_url)
    absolute = normalised_base_url(reference)
    if base is None or absolute is None or not absolute.startswith(base + "/"):
        return None
    return _patient_path(absolute.removeprefix(base + "/"))


def normalised_base_url(url: str) -> str | None:
    """`scheme://host[:port]/path` with scheme and host in lower case, the default port and a
    trailing slash dropped; None unless an http(s) URL with a host and a plain path (no
    credentials, query, fragment, empty or dot segments)."""
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError:
        return None
    scheme = split.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not split.hostname:
        return None
    if split.username is not None or split.password is not None or split.query or split.fragment:
        return None
    if "?" in url or "#" in url:
        return None
    path = split.path.removesuffix("/") if split.path != "/" else ""
    if any(segment in {"", ".", ".."} for segment in path.split("/")[1:]):
        return None
    netloc = split.hostname.lower()
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return f"{scheme}://{netloc}{path}"


def _patient_path(path: str) -> str | None:
    """`Patient/{id}` from `Patient/{id}` or `Patient/{id}/_history/{version}`."""
    parts = path.split("/")
    versioned = len(parts) == 4 and parts[2] == "_history" and is_fhir_id(parts[3])
    if (len(parts) == 2 or versioned) and parts[0] == "Patient" and is_fhir_id(parts[1]):
        return f"Patient/{parts[1]}"
    return None
