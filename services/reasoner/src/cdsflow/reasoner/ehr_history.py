"""What the reasoner asks the EHR, and only for a patient it does not hold yet: whether the
patient exists (the same read gives its birth date), and the patient's recent data that the
adapters read (`cdsflow.models.context_searches`: one search per resource type).

The existence check is remembered per patient (`KnownPatients`, about once an hour per
patient); the history searches run once per patient first seen (or forgotten, or moved here
from another replica without a changelog snapshot), never per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx

from cdsflow.fhir import EhrClient, EhrError, local_patient_reference
from cdsflow.models import ResourceReader
from cdsflow.models.context_searches import ContextSearch, context_searches
from cdsflow.models.fhir_elements import parse_fhir_date
from cdsflow.reasoner.dependency_health import DependencyUnavailable
from cdsflow.reasoner.domain.errors import UnknownPatient
from cdsflow.reasoner.domain.events import confirms_patient
from cdsflow.reasoner.domain.references import subject_reference
from cdsflow.reasoner.known_patients import KnownPatients
from cdsflow.reasoner.metrics import ReasonerMetrics


@dataclass(frozen=True)
class PatientHistory:
    """What the EHR holds of a patient first seen: its birth date and the resources that the
    adapters read (the patient's own, by `cdsflow.fhir.local_patient_reference`)."""

    birth_date: date | None
    resources: list[dict[str, Any]]


@dataclass
class EhrPatientHistory:
    ehr: EhrClient
    ehr_base_url: str
    known_patients: KnownPatients
    metrics: ReasonerMetrics
    readers: Sequence[ResourceReader]

    async def history(self, patient_reference: str, as_of: datetime) -> PatientHistory:
        """The patient's data on the EHR as of `as_of`; raises `UnknownPatient` when the EHR
        does not know the patient. The read and the searches run at the same time."""
        searches = _searches(self.readers, patient_reference, as_of)
        patient, *found = await asyncio.gather(
            self._read_patient(patient_reference),
            *(self._search(search) for search in searches),
            return_exceptions=True,
        )
        if isinstance(patient, BaseException):
            raise patient
        self._confirmed(patient_reference, confirms_patient(patient, patient_reference))
        resources: list[dict[str, Any]] = []
        for result in found:
            if isinstance(result, BaseException):
                raise result
            resources += [
                r
                for r in result
                if local_patient_reference(subject_reference(r), self.ehr_base_url)
                == patient_reference
            ]
        birth = patient.get("birthDate") if patient is not None else None
        birth_date = parse_fhir_date(birth) if isinstance(birth, str) else None
        return PatientHistory(birth_date, resources)

    async def confirm_patient(self, patient_reference: str) -> None:
        """Raises `UnknownPatient` when the EHR does not know the patient (asked only when its
        last confirmation is older than `KnownPatients`' time to live)."""
        if self.known_patients.is_known(patient_reference):
            self.metrics.labelled(self.metrics.patient_checks, "known").inc()
            return
        patient = await self._read_patient(patient_reference)
        self._confirmed(patient_reference, confirms_patient(patient, patient_reference))

    def _confirmed(self, patient_reference: str, exists: bool) -> None:
        if not exists:
            self.metrics.patient_checks.labels(outcome="unknown").inc()
            raise UnknownPatient("the configured EHR does not know the event's patient")
        self.metrics.patient_checks.labels(outcome="confirmed").inc()
        self.known_patients.remember(patient_reference)

    async def _read_patient(self, patient_reference: str) -> dict[str, Any] | None:
        patient_id = patient_reference.removeprefix("Patient/")
        try:
            return await self.ehr.read("Patient", patient_id)
        except (EhrError, httpx.HTTPError) as exc:
            raise DependencyUnavailable("ehr", type(exc).__name__) from exc

    async def _search(self, search: ContextSearch) -> list[dict[str, Any]]:
        try:
            return await self.ehr.search(search.resource_type, search.params)
        except (EhrError, httpx.HTTPError) as exc:
            raise DependencyUnavailable("ehr", type(exc).__name__) from exc


def _searches(
    readers: Sequence[ResourceReader], patient_reference: str, as_of: datetime
) -> list[ContextSearch]:
    """Every adapter's searches, each once; the Patient itself is read, not searched."""
    searches = [
        search
        for reader in readers
        for search in context_searches(reader.adapter, patient_reference, as_of)
        if search.resource_type != "Patient"
    ]
    return list(dict.fromkeys(searches))
