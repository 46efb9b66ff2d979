"""What the reasoner asks the EHR, and only for a patient it does not hold yet: whether the
patient exists, and the patient's recent vital signs.

The existence check is remembered per patient (`KnownPatients`, about once an hour per
patient); the history search runs once per patient first seen (or forgotten, or moved here
from another replica without a changelog snapshot), never per event.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from cdsflow.fhir import EhrClient, EhrError
from cdsflow.reasoner.dependency_health import DependencyUnavailable
from cdsflow.reasoner.domain.errors import UnknownPatient
from cdsflow.reasoner.domain.events import confirms_patient
from cdsflow.reasoner.domain.patient_context import history_readings, history_search_params
from cdsflow.reasoner.domain.plausible_ranges import RefusedReading
from cdsflow.reasoner.domain.vital_signs import VitalSignReading
from cdsflow.reasoner.known_patients import KnownPatients
from cdsflow.reasoner.metrics import ReasonerMetrics


@dataclass
class EhrPatientHistory:
    ehr: EhrClient
    ehr_base_url: str
    known_patients: KnownPatients
    metrics: ReasonerMetrics
    lookback: timedelta

    async def readings(
        self, patient_reference: str, trigger_reference: str, as_of: datetime
    ) -> tuple[list[VitalSignReading], list[tuple[RefusedReading, datetime]]]:
        """The patient's plausible readings from the EHR (and those refused, with when they
        were observed), once the EHR has confirmed that the patient exists."""
        history = await self._known_patient_history(patient_reference, as_of)
        return history_readings(
            patient_reference, trigger_reference, history, ehr_base_url=self.ehr_base_url
        )

    async def confirm_patient(self, patient_reference: str) -> None:
        """Raises `UnknownPatient` when the EHR does not know the patient (asked only when its
        last confirmation is older than `KnownPatients`' time to live)."""
        if self.known_patients.is_known(patient_reference):
            self.metrics.patient_checks.labels(outcome="known").inc()
            return
        self._confirmed(patient_reference, await self._patient_exists(patient_reference))

    async def _known_patient_history(
        self, patient_reference: str, as_of: datetime
    ) -> list[dict[str, Any]]:
        """The patient's history; for a patient not confirmed lately, the EHR is asked whether
        it exists at the same time as the history is searched (no added latency)."""
        if self.known_patients.is_known(patient_reference):
            self.metrics.patient_checks.labels(outcome="known").inc()
            return await self._patient_history(patient_reference, as_of)
        exists: bool | BaseException
        history: list[dict[str, Any]] | BaseException
        exists, history = await asyncio.gather(
            self._patient_exists(patient_reference),
            self._patient_history(patient_reference, as_of),
            return_exceptions=True,
        )
        if isinstance(exists, BaseException):
            raise exists
        self._confirmed(patient_reference, exists)
        if isinstance(history, BaseException):
            raise history
        return history

    def _confirmed(self, patient_reference: str, exists: bool) -> None:
        if not exists:
            self.metrics.patient_checks.labels(outcome="unknown").inc()
            raise UnknownPatient("the configured EHR does not know the event's patient")
        self.metrics.patient_checks.labels(outcome="confirmed").inc()
        self.known_patients.remember(patient_reference)

    async def _patient_exists(self, patient_reference: str) -> bool:
        patient_id = patient_reference.removeprefix("Patient/")
        try:
            patient = await self.ehr.read("Patient", patient_id)
        except (EhrError, httpx.HTTPError) as exc:
            raise DependencyUnavailable("ehr", type(exc).__name__) from exc
        return confirms_patient(patient, patient_reference)

    async def _patient_history(
        self, patient_reference: str, as_of: datetime
    ) -> list[dict[str, Any]]:
        try:
            return await self.ehr.search(
                "Observation", history_search_params(patient_reference, as_of, self.lookback)
            )
        except (EhrError, httpx.HTTPError) as exc:
            raise DependencyUnavailable("ehr", type(exc).__name__) from exc
