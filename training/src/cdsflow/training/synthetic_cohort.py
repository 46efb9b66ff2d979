"""A seeded generator of synthetic inpatients: vital signs twice in 24 h, age, missingness,
and whether each deteriorated within the next 24 h, drawn from a documented latent risk.

Not real patients and not fitted to real data: a plausible, documented world in which the
reference model can be trained and measured honestly. Per patient:

1. age ~ Normal(64, 17) clipped to 18-99 years (unknown for 2 %); sex female/male 50:50,
   with no effect on anything below (it is there for subgroup reports).
2. latent acute severity at the earlier observation, `s_earlier` ~ Gamma(1.2, 0.25 ·
   exp(0.25 · (age - 65) / 15)); its change over the window, `course` ~ Normal(0, 0.25),
   plus Gamma(2, 0.45) for the 12 % whose course is worsening; `s_latest` = max(0,
   s_earlier + course).
3. which organ systems the illness shows in: weights over (respiratory, circulatory,
   infection, neurological) ~ Dirichlet(0.8, 0.8, 0.8, 0.8); each system's effect is
   severity * (0.4 + 2.4 * weight).
4. vital signs at each time from the patient's own baseline (stable between the two times),
   the systems' effects and measurement noise, rounded like charted values and clipped to
   physiology (`_vital_signs`); supplemental oxygen becomes likelier with respiratory
   effect and raises SpO2.
5. observation times: latest 0-2 h before the prediction; an earlier round 6-23.5 h before
   it for 75 % (the rest were just admitted: no trend). Each parameter of a round is
   missing with probability base * exp(-0.7 * severity): sicker patients are observed more
   completely, so missingness is informative and a model must learn it, not impute it.
6. outcome: deteriorated within 24 h ~ Bernoulli(sigmoid(-4.0 + 1.35 · s_latest +
   1.1 · max(course, 0) + 0.3 · (age - 65) / 15)), where unknown age still counts: the
   outcome depends on the latent state, which the vital signs only show through noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cdsflow.training.model_inputs import AGE_COLUMN, N_INPUTS, VITAL_SIGN_NAMES

Floats = npt.NDArray[np.float32]
Bools = npt.NDArray[np.bool_]

N_VITAL_SIGNS = len(VITAL_SIGN_NAMES)
OUTCOME_INTERCEPT = -4.0
OUTCOME_SEVERITY = 1.35
OUTCOME_WORSENING = 1.1
OUTCOME_AGE_PER_15_YEARS = 0.3
WORSENING_SHARE = 0.12
EARLIER_ROUND_SHARE = 0.75
AGE_UNKNOWN_SHARE = 0.02
# per parameter (vital-sign order): probability of not being charted in a round, at severity 0
BASE_MISSING = np.array([0.04, 0.05, 0.0, 0.05, 0.03, 0.12, 0.45])
# inhaled O2 concentration: rarely charted on room air, usually charted on oxygen
FIO2_MISSING_ON_AIR = 0.40
FIO2_MISSING_ON_OXYGEN = 0.05
OXYGEN_LEVELS = np.array([24.0, 28.0, 32.0, 36.0, 40.0, 50.0, 60.0])


@dataclass(frozen=True)
class SyntheticCohort:
    """One row per patient; vital-sign arrays are [patients, 7] in `VITAL_SIGN_NAMES` order.

    A value whose `*_present` is False was not observed; its slot holds NaN.
    """

    patient_ids: tuple[str, ...]
    age: Floats  # years, NaN when unknown
    sex: tuple[str, ...]
    earlier: Floats
    earlier_present: Bools
    earlier_hours_before: Floats
    latest: Floats
    latest_present: Bools
    latest_hours_before: Floats
    deteriorated: Bools
    latent_risk: npt.NDArray[np.float64]  # the generator's outcome probability (not an input)

    def __len__(self) -> int:
        return len(self.patient_ids)

    def model_inputs(self) -> tuple[Floats, Bools]:
        """`features` [patients, 15] and `present` [patients, 15]; absent values are 0."""
        return model_inputs(
            self.latest, self.latest_present, self.earlier, self.earlier_present, self.age
        )


def model_inputs(
    latest: Floats, latest_present: Bools, earlier: Floats, earlier_present: Bools, age: Floats
) -> tuple[Floats, Bools]:
    """The latest charted value of each parameter (the earlier round's where the latest
    round lacks it), its trend (latest - earlier, where both rounds have it) and age, with
    the presence mask."""
    trend_present = latest_present & earlier_present
    last_present = latest_present | earlier_present
    last = np.where(latest_present, latest, earlier)
    present = np.concatenate([last_present, trend_present, np.isfinite(age)[:, None]], axis=1)
    values = np.concatenate([last, latest - earlier, age[:, None]], axis=1)
    features = np.where(present, values, np.float32(0.0)).astype(np.float32)
    assert features.shape[1] == N_INPUTS
    assert AGE_COLUMN == N_INPUTS - 1
    return features, present


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return result


@dataclass(frozen=True)
class _Patients:
    """What stays the same for a patient between the two rounds of observations."""

    systems: npt.NDArray[np.float64]  # [n, 4] respiratory, circulatory, infection, neuro
    baseline: npt.NDArray[np.float64]  # [n, 5] RR, SpO2, SBP, HR, temperature
    fever_sign: npt.NDArray[np.float64]  # +1 fever, -1 hypothermia with infection


def _vital_signs(
    rng: np.random.Generator, severity: npt.NDArray[np.float64], patients: _Patients
) -> tuple[npt.NDArray[np.float64], Bools]:
    """One round of charted values [n, 7] at the given severity, and who is on oxygen."""
    n = len(severity)
    effect = severity[:, None] * (0.4 + 2.4 * patients.systems)
    resp, circ, infection, neuro = effect.T
    rr0, spo2_0, sbp0, hr0, temp0 = patients.baseline.T
    on_oxygen = rng.random(n) < _sigmoid(-3.0 + 2.0 * resp + 0.8 * circ)
    level = np.clip(np.rint(1.2 * resp + rng.normal(0, 1, n)), 0, len(OXYGEN_LEVELS) - 1)
    fio2 = np.where(on_oxygen, OXYGEN_LEVELS[level.astype(int)], 21.0)
    rr = rr0 + 3.5 * resp + 2.0 * infection + 1.0 * circ + rng.normal(0, 1.5, n)
    spo2 = spo2_0 - 3.0 * resp - 1.0 * circ + 2.5 * on_oxygen + rng.normal(0, 0.8, n)
    sbp = sbp0 - 13.0 * circ - 5.0 * infection + rng.normal(0, 7, n)
    hr = hr0 + 11.0 * circ + 8.0 * infection + 3.0 * resp + rng.normal(0, 5, n)
    temp = temp0 + patients.fever_sign * 0.9 * infection + rng.normal(0, 0.2, n)
    confusion = np.maximum(0.0, 1.8 * neuro + rng.normal(0, 0.6, n) - 0.8)
    gcs = 15.0 - np.floor(confusion)
    values = np.column_stack(
        [
            np.clip(np.rint(rr), 4, 60),
            np.clip(np.rint(spo2), 60, 100),
            fio2,
            np.clip(np.rint(sbp), 50, 250),
            np.clip(np.rint(hr), 25, 220),
            np.clip(np.round(temp, 1), 32.0, 42.5),
            np.clip(gcs, 3, 15),
        ]
    )
    return values, on_oxygen


def _charted(
    rng: np.random.Generator, severity: npt.NDArray[np.float64], on_oxygen: Bools
) -> Bools:
    """Which parameters of a round were charted: sicker patients are observed more fully."""
    base = np.broadcast_to(BASE_MISSING, (len(severity), N_VITAL_SIGNS)).copy()
    base[:, 2] = np.where(on_oxygen, FIO2_MISSING_ON_OXYGEN, FIO2_MISSING_ON_AIR)
    missing = base * np.exp(-0.7 * severity)[:, None]
    charted: Bools = rng.random(base.shape) >= missing
    return charted


def generate_cohort(
    n_patients: int, seed: int | np.random.SeedSequence, id_prefix: str = "synthetic"
) -> SyntheticCohort:
    """`n_patients` synthetic patients; the same seed gives the same cohort."""
    rng = np.random.default_rng(seed)
    n = n_patients
    age = np.clip(np.rint(rng.normal(64, 17, n)), 18, 99)
    age_z = (age - 65.0) / 15.0
    age_known = rng.random(n) >= AGE_UNKNOWN_SHARE
    female = rng.random(n) < 0.5
    s_earlier = rng.gamma(1.2, 0.25 * np.exp(0.25 * age_z))
    worsening = rng.random(n) < WORSENING_SHARE
    course = rng.normal(0, 0.25, n) + np.where(worsening, rng.gamma(2.0, 0.45, n), 0.0)
    s_latest = np.maximum(0.0, s_earlier + course)
    patients = _Patients(
        systems=rng.dirichlet([0.8] * 4, n),
        baseline=np.column_stack(
            [
                rng.normal(15, 1.5, n),
                np.where(rng.random(n) < 0.08, rng.normal(91, 1.5, n), rng.normal(97, 1.2, n)),
                rng.normal(128 + 4 * age_z, 15, n),
                rng.normal(74, 9, n),
                rng.normal(36.8, 0.3, n),
            ]
        ),
        fever_sign=np.where(rng.random(n) < 0.85, 1.0, -1.0),
    )
    earlier, earlier_oxygen = _vital_signs(rng, s_earlier, patients)
    latest, latest_oxygen = _vital_signs(rng, s_latest, patients)
    had_earlier_round = rng.random(n) < EARLIER_ROUND_SHARE
    earlier_present = _charted(rng, s_earlier, earlier_oxygen) & had_earlier_round[:, None]
    latest_present = _charted(rng, s_latest, latest_oxygen)
    earlier_hours = np.round(rng.uniform(6.0, 23.5, n), 1)
    latest_hours = np.round(rng.uniform(0.0, 2.0, n), 1)
    logit = (
        OUTCOME_INTERCEPT
        + OUTCOME_SEVERITY * s_latest
        + OUTCOME_WORSENING * np.maximum(course, 0.0)
        + OUTCOME_AGE_PER_15_YEARS * age_z
    )
    risk = _sigmoid(logit)
    deteriorated = rng.random(n) < risk
    width = len(str(n))
    return SyntheticCohort(
        patient_ids=tuple(f"{id_prefix}-{i:0{width}d}" for i in range(n)),
        age=np.where(age_known, age, np.nan).astype(np.float32),
        sex=tuple("female" if f else "male" for f in female),
        earlier=np.where(earlier_present, earlier, np.nan).astype(np.float32),
        earlier_present=earlier_present,
        earlier_hours_before=np.where(had_earlier_round, earlier_hours, np.nan).astype(np.float32),
        latest=np.where(latest_present, latest, np.nan).astype(np.float32),
        latest_present=latest_present,
        latest_hours_before=latest_hours.astype(np.float32),
        deteriorated=deteriorated,
        latent_risk=risk,
    )
