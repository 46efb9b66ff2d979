"""The deterioration model's scoring, checked against the published NEWS2 bands."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from .model_files import load_early_warning

early_warning = load_early_warning()
COLUMN = {name: i for i, name in enumerate(early_warning.VITAL_SIGNS)}
NORMAL = {
    "respiratory_rate": 16.0,
    "oxygen_saturation": 98.0,
    "inhaled_oxygen_concentration": 21.0,
    "systolic_blood_pressure": 125.0,
    "heart_rate": 72.0,
    "body_temperature": 36.8,
    "glasgow_coma_score": 15.0,
}


def _row(**values: float) -> npt.NDArray[np.float32]:
    row = np.array([[NORMAL[name] for name in early_warning.VITAL_SIGNS]], dtype=np.float32)
    for name, value in values.items():
        row[0, COLUMN[name]] = value
    return row


def _points_of(name: str, value: float) -> float:
    points = early_warning.vital_sign_points(_row(**{name: value}), np.ones((1, 7), dtype=bool))
    return float(points[0, COLUMN[name]])


# (vital sign, value, NEWS2 points): every band edge of the published chart, SpO2 scale 1
NEWS2_REFERENCE = [
    ("respiratory_rate", 8, 3),
    ("respiratory_rate", 9, 1),
    ("respiratory_rate", 11, 1),
    ("respiratory_rate", 12, 0),
    ("respiratory_rate", 20, 0),
    ("respiratory_rate", 21, 2),
    ("respiratory_rate", 24, 2),
    ("respiratory_rate", 25, 3),
    ("oxygen_saturation", 91, 3),
    ("oxygen_saturation", 92, 2),
    ("oxygen_saturation", 93, 2),
    ("oxygen_saturation", 94, 1),
    ("oxygen_saturation", 95, 1),
    ("oxygen_saturation", 96, 0),
    ("inhaled_oxygen_concentration", 21, 0),
    ("inhaled_oxygen_concentration", 28, 2),
    ("systolic_blood_pressure", 90, 3),
    ("systolic_blood_pressure", 91, 2),
    ("systolic_blood_pressure", 100, 2),
    ("systolic_blood_pressure", 101, 1),
    ("systolic_blood_pressure", 110, 1),
    ("systolic_blood_pressure", 111, 0),
    ("systolic_blood_pressure", 219, 0),
    ("systolic_blood_pressure", 220, 3),
    ("heart_rate", 40, 3),
    ("heart_rate", 41, 1),
    ("heart_rate", 50, 1),
    ("heart_rate", 51, 0),
    ("heart_rate", 90, 0),
    ("heart_rate", 91, 1),
    ("heart_rate", 110, 1),
    ("heart_rate", 111, 2),
    ("heart_rate", 130, 2),
    ("heart_rate", 131, 3),
    ("body_temperature", 35.0, 3),
    ("body_temperature", 35.1, 1),
    ("body_temperature", 36.0, 1),
    ("body_temperature", 36.1, 0),
    ("body_temperature", 38.0, 0),
    ("body_temperature", 38.1, 1),
    ("body_temperature", 39.0, 1),
    ("body_temperature", 39.1, 2),
    ("glasgow_coma_score", 15, 0),
    ("glasgow_coma_score", 14, 3),
    ("glasgow_coma_score", 3, 3),
]


@pytest.mark.parametrize(("name", "value", "expected"), NEWS2_REFERENCE)
def test_points_follow_the_published_news2_bands(name: str, value: float, expected: int) -> None:
    assert _points_of(name, value) == expected


def test_the_input_layout_is_the_seven_documented_vital_signs() -> None:
    assert early_warning.VITAL_SIGNS == (
        "respiratory_rate",
        "oxygen_saturation",
        "inhaled_oxygen_concentration",
        "systolic_blood_pressure",
        "heart_rate",
        "body_temperature",
        "glasgow_coma_score",
    )
    assert set(early_warning.BANDS) == set(early_warning.VITAL_SIGNS)


def test_a_well_patient_scores_no_points() -> None:
    points = early_warning.vital_sign_points(_row(), np.ones((1, 7), dtype=bool))
    assert points.tolist() == [[0.0] * 7]


def test_missing_and_non_finite_values_score_no_points() -> None:
    alarming = _row(respiratory_rate=30, heart_rate=140, body_temperature=float("nan"))
    present = np.ones((1, 7), dtype=bool)
    present[0, COLUMN["respiratory_rate"]] = False
    points = early_warning.vital_sign_points(alarming, present)
    assert points[0, COLUMN["respiratory_rate"]] == 0
    assert points[0, COLUMN["body_temperature"]] == 0
    assert points[0, COLUMN["heart_rate"]] == 3


def test_aggregate_points_sum_each_row_separately() -> None:
    rows = np.concatenate(
        [
            _row(respiratory_rate=28, oxygen_saturation=90, systolic_blood_pressure=88),
            _row(),
            _row(heart_rate=115),
        ]
    )
    points = early_warning.vital_sign_points(rows, np.ones(rows.shape, dtype=bool))
    aggregate = early_warning.early_warning_points(points)
    assert aggregate.shape == (3, 1)
    assert aggregate[:, 0].tolist() == [9.0, 0.0, 2.0]


def test_score_is_the_logistic_of_the_points() -> None:
    points = np.array([[0.0], [4.0], [5.0], [6.0], [7.0], [20.0]], dtype=np.float32)
    score = early_warning.deterioration_score(points)[:, 0]
    for aggregate, value in zip(points[:, 0], score, strict=True):
        assert value == pytest.approx(1 / (1 + math.exp(-0.75 * (aggregate - 5))), abs=1e-6)
    assert score[2] == pytest.approx(0.5)
    # NEWS2's thresholds: urgent response from 5 points, emergency response from 7
    assert score[1] < 0.5 <= score[2] < score[3] < 0.8 <= score[4]
    assert np.all((score >= 0) & (score <= 1))
    assert score.dtype == np.float32
