"""The seeded generator of synthetic inpatients: reproducible, physiologically plausible,
informative missingness, and an outcome that follows the documented latent risk."""

from __future__ import annotations

import numpy as np
import pytest

from cdsflow.training.model_inputs import AGE_COLUMN, N_INPUTS, VITAL_SIGN_NAMES
from cdsflow.training.news2 import news2_points
from cdsflow.training.synthetic_cohort import SyntheticCohort, generate_cohort

# (low, high) charted values may take, per vital sign (the reasoner's plausible ranges are wider)
PHYSIOLOGY = {
    "respiratory_rate": (4, 60),
    "oxygen_saturation": (60, 100),
    "inhaled_oxygen_concentration": (21, 100),
    "systolic_blood_pressure": (50, 250),
    "heart_rate": (25, 220),
    "body_temperature": (32.0, 42.5),
    "glasgow_coma_score": (3, 15),
}


@pytest.fixture(scope="module")
def cohort() -> SyntheticCohort:
    return generate_cohort(20_000, seed=11)


def test_the_same_seed_gives_the_same_cohort_and_another_seed_another() -> None:
    first, again, other = (generate_cohort(500, seed) for seed in (3, 3, 4))
    np.testing.assert_array_equal(first.latest, again.latest)
    np.testing.assert_array_equal(first.deteriorated, again.deteriorated)
    assert first.patient_ids == again.patient_ids
    assert not np.array_equal(first.latest_present, other.latest_present)


def test_charted_values_stay_within_physiology(cohort: SyntheticCohort) -> None:
    for rows, charted in (
        (cohort.latest, cohort.latest_present),
        (cohort.earlier, cohort.earlier_present),
    ):
        for column, name in enumerate(VITAL_SIGN_NAMES):
            low, high = PHYSIOLOGY[name]
            values = rows[charted[:, column], column]
            assert values.min() >= low, name
            assert values.max() <= high, name
    gcs = cohort.latest[cohort.latest_present[:, 6], 6]
    np.testing.assert_array_equal(gcs, np.round(gcs))
    ages = cohort.age[np.isfinite(cohort.age)]
    assert ages.min() >= 18
    assert ages.max() <= 99


def test_what_was_not_charted_holds_no_value(cohort: SyntheticCohort) -> None:
    assert np.isnan(cohort.latest[~cohort.latest_present]).all()
    assert np.isfinite(cohort.latest[cohort.latest_present]).all()
    assert np.isnan(cohort.earlier[~cohort.earlier_present]).all()
    # every parameter is missing for some patients, and age too
    assert (~cohort.latest_present).any(axis=0).all()
    assert np.isnan(cohort.age).any()


def test_model_inputs_are_latest_values_trends_and_age_with_their_mask(
    cohort: SyntheticCohort,
) -> None:
    features, present = cohort.model_inputs()
    assert features.shape == present.shape == (len(cohort), N_INPUTS)
    np.testing.assert_array_equal(present[:, :7], cohort.latest_present | cohort.earlier_present)
    only_earlier = ~cohort.latest_present & cohort.earlier_present
    np.testing.assert_array_equal(features[:, :7][only_earlier], cohort.earlier[only_earlier])
    np.testing.assert_array_equal(
        features[:, :7][cohort.latest_present], cohort.latest[cohort.latest_present]
    )
    both = cohort.latest_present & cohort.earlier_present
    np.testing.assert_array_equal(present[:, 7:14], both)
    np.testing.assert_array_equal(features[:, 7:14][both], (cohort.latest - cohort.earlier)[both])
    np.testing.assert_array_equal(present[:, AGE_COLUMN], np.isfinite(cohort.age))
    assert (features[~present] == 0).all()


def test_sicker_patients_are_charted_more_completely(cohort: SyntheticCohort) -> None:
    high = cohort.latent_risk >= np.quantile(cohort.latent_risk, 0.9)
    low = cohort.latent_risk <= np.quantile(cohort.latent_risk, 0.1)
    assert cohort.latest_present[high].mean() > cohort.latest_present[low].mean() + 0.02


def test_the_outcome_follows_the_latent_risk(cohort: SyntheticCohort) -> None:
    order = np.argsort(cohort.latent_risk)
    deciles = [cohort.deteriorated[part].mean() for part in np.array_split(order, 10)]
    assert deciles[-1] > 4 * deciles[0]
    # the observed rate matches the generator's probability (a binomial check, ~5 sd)
    expected = cohort.latent_risk.mean()
    sd = np.sqrt(expected * (1 - expected) / len(cohort))
    assert abs(cohort.deteriorated.mean() - expected) < 5 * sd
    assert 0.02 < expected < 0.15


def test_news2_rises_with_the_outcome(cohort: SyntheticCohort) -> None:
    points = news2_points(cohort.latest, cohort.latest_present)
    assert cohort.deteriorated[points >= 7].mean() > 2 * cohort.deteriorated[points == 0].mean()
