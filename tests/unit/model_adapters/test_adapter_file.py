"""Adapter files: the shipped ones load; a wrong one is refused naming file, line and path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdsflow.models import AdapterFileError, load_adapter, parse_adapter

from .adapter_fixtures import DETERIORATION, MEDICATION_SAFETY


def test_the_shipped_adapters_load() -> None:
    deterioration = load_adapter(DETERIORATION)
    medication = load_adapter(MEDICATION_SAFETY)
    assert deterioration.model.triton_name == "deterioration_risk"
    assert [c.name for c in deterioration.columns()][-1] == "age"
    assert deterioration.mode_of("1") == "active"
    assert deterioration.mode_of("2") is None
    assert medication.model.triton_name == "medication_safety"
    assert {hook.hook for hook in medication.hooks} == {
        "order-select",
        "order-sign",
        "patient-view",
    }


def _refusal(path: Path, old: str, new: str) -> AdapterFileError:
    """Parse the shipped `path` with `old` replaced by `new`; return the error it raises."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    with pytest.raises(AdapterFileError) as raised:
        parse_adapter(text.replace(old, new, 1), path)
    return raised.value


def _line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [number for number, line in enumerate(lines, start=1) if needle in line]
    return found[occurrence - 1]


def _assert_problem(error: AdapterFileError, line: int, path: str, words: str) -> None:
    assert any(p.line == line and p.path == path and words in p.message for p in error.problems), (
        str(error)
    )
    assert f"{DETERIORATION.name}" in str(error) or f"{MEDICATION_SAFETY.name}" in str(error)
    assert f":{line}: {path}" in str(error)


def test_an_unknown_aggregation_names_its_line_and_column() -> None:
    old = "{name: heart_rate_trend, data: heart_rate, aggregation: trend}"
    error = _refusal(DETERIORATION, old, old.replace("trend}", "newest}"))
    _assert_problem(
        error,
        _line_of(DETERIORATION, "name: heart_rate_trend"),
        "inputs.tensors[0].columns[11].aggregation",
        "'latest'",
    )


def test_a_misspelt_member_is_refused_at_its_line() -> None:
    error = _refusal(
        DETERIORATION,
        "    window: 24h\n    plausible_range: {low: 0, high: 600}",
        "    windw: 24h\n    plausible_range: {low: 0, high: 600}",
    )
    _assert_problem(
        error,
        _line_of(DETERIORATION, "plausible_range: {low: 0, high: 600}") - 1,
        "data.heart_rate.windw",
        "not part of the adapter format",
    )


def test_a_missing_member_is_reported_at_the_mapping_that_should_hold_it() -> None:
    error = _refusal(DETERIORATION, "  triton_name: deterioration_risk\n", "")
    _assert_problem(error, _line_of(DETERIORATION, "model:"), "model.triton_name", "missing")


def test_invalid_yaml_names_the_line() -> None:
    error = _refusal(DETERIORATION, "    label: Heart rate\n", "    label: [Heart rate\n")
    assert error.problems[0].message.startswith("not valid YAML")
    assert abs(error.problems[0].line - _line_of(DETERIORATION, "label: Heart rate")) <= 1
    assert str(error).startswith(f"{DETERIORATION}:")


def test_a_key_given_twice_is_refused() -> None:
    error = _refusal(
        DETERIORATION, "    label: Heart rate\n", "    label: Heart rate\n    label: HR\n"
    )
    _assert_problem(
        error, _line_of(DETERIORATION, "label: Heart rate") + 1, "data.heart_rate.label", "twice"
    )


def test_a_unit_that_does_not_convert_is_refused() -> None:
    error = _refusal(DETERIORATION, 'accept_units: ["[degF]", K]', 'accept_units: ["[degF]", kPa]')
    _assert_problem(
        error,
        _line_of(DETERIORATION, 'accept_units: ["[degF]", K]'),
        "data.body_temperature.accept_units[1]",
        "does not convert to 'Cel'",
    )


def test_a_column_reading_undeclared_data_is_refused() -> None:
    old = "{name: age, data: age, aggregation: latest}"
    error = _refusal(DETERIORATION, old, old.replace("data: age", "data: weight"))
    _assert_problem(
        error,
        _line_of(DETERIORATION, old),
        "inputs.tensors[0].columns[14].data",
        "'weight' is not declared under data",
    )


def test_an_aggregation_that_does_not_fit_the_resource_is_refused() -> None:
    old = "{name: metformin_ordered, data: metformin, aggregation: exists}"
    error = _refusal(MEDICATION_SAFETY, old, old.replace("exists", "trend"))
    _assert_problem(
        error,
        _line_of(MEDICATION_SAFETY, old),
        "inputs.tensors[0].columns[1].aggregation",
        "does not apply to a MedicationRequest",
    )


def test_an_unknown_template_field_is_refused_when_loaded() -> None:
    old = 'summary: "{band_label} risk of clinical deterioration: {score:.0%} within 24 h"'
    error = _refusal(DETERIORATION, old, old.replace("{score:.0%}", "{probability:.0%}"))
    _assert_problem(error, _line_of(DETERIORATION, old), "cards[0].summary", "{probability}")


def test_a_card_for_an_undeclared_band_is_refused() -> None:
    error = _refusal(DETERIORATION, "  - bands: [high]\n", "  - bands: [severe]\n")
    _assert_problem(
        error,
        _line_of(DETERIORATION, "- bands: [high]"),
        "cards[1].bands[0]",
        "'severe' is not a declared risk band",
    )


def test_two_active_versions_are_refused() -> None:
    old = "    - version: 1\n      mode: active\n"
    error = _refusal(DETERIORATION, old, old + "    - version: 2\n      mode: active\n")
    _assert_problem(
        error,
        _line_of(DETERIORATION, "mode: active") + 2,
        "model.versions[1].mode",
        "at most one version may be active",
    )


def test_bands_must_rise() -> None:
    error = _refusal(DETERIORATION, "from: 0.3", "from: 0.05")
    _assert_problem(error, _line_of(DETERIORATION, "from: 0.3"), "risk_bands[2].from", "increase")


def test_a_prefetch_token_the_hook_does_not_have_is_refused() -> None:
    error = _refusal(
        DETERIORATION,
        "patient: Patient/{{context.patientId}}",
        "patient: Patient/{{context.orderId}}",
    )
    _assert_problem(
        error,
        _line_of(DETERIORATION, "patient: Patient/{{context.patientId}}"),
        "hooks[0].prefetch.patient",
        "{{context.orderId}} is not available in patient-view",
    )


VITALS_PREFETCH = "vital_signs: Observation?patient={{context.patientId}}&category=vital-signs"


def test_a_fhirpath_prefetch_token_is_accepted() -> None:
    text = DETERIORATION.read_text(encoding="utf-8").replace(
        VITALS_PREFETCH, VITALS_PREFETCH + "&date=ge{{today() - 1 days}}", 1
    )

    adapter = parse_adapter(text, DETERIORATION)

    assert "{{today() - 1 days}}" in adapter.hooks[0].prefetch["vital_signs"]


def test_a_fhirpath_token_reading_a_context_member_the_hook_lacks_is_refused() -> None:
    error = _refusal(
        DETERIORATION,
        "patient: Patient/{{context.patientId}}",
        "patient: Patient/{{context.draftOrders.entry.resource.subject.resolve().id}}",
    )
    _assert_problem(
        error,
        _line_of(DETERIORATION, "patient: Patient/{{context.patientId}}"),
        "hooks[0].prefetch.patient",
        "patient-view has no context.draftOrders",
    )


def test_a_fhirpath_token_reading_a_later_prefetch_key_is_refused() -> None:
    error = _refusal(
        DETERIORATION,
        "patient: Patient/{{context.patientId}}",
        "patient: Patient?_id={{%vital_signs.entry.resource.subject.resolve().id}}",
    )
    _assert_problem(
        error,
        _line_of(DETERIORATION, "patient: Patient/{{context.patientId}}"),
        "hooks[0].prefetch.patient",
        "%vital_signs is not a prefetch key declared before 'patient'",
    )


def test_a_hook_cds_hooks_does_not_define_is_refused() -> None:
    error = _refusal(DETERIORATION, "hook: patient-view", "hook: chart-open")
    _assert_problem(
        error, _line_of(DETERIORATION, "hook: patient-view"), "hooks[0].hook", "patient-view"
    )


def test_a_tensor_without_presence_mask_needs_required_columns() -> None:
    error = _refusal(MEDICATION_SAFETY, "      presence_tensor: present\n", "")
    _assert_problem(
        error,
        _line_of(MEDICATION_SAFETY, "- name: features"),
        "inputs.tensors[0]",
        "never sent as a value",
    )


def test_a_summary_template_over_140_characters_is_refused() -> None:
    old = 'summary: "Metformin with eGFR {value.egfr:.0f}: review'
    error = _refusal(MEDICATION_SAFETY, old, old + " " + "x" * 140)
    _assert_problem(error, _line_of(MEDICATION_SAFETY, old), "cards[1].summary", "under 140")


def test_subscribing_to_what_the_adapter_does_not_read_is_refused() -> None:
    error = _refusal(
        MEDICATION_SAFETY, "- MedicationRequest?status=active", "- Encounter?status=in-progress"
    )
    _assert_problem(
        error,
        _line_of(MEDICATION_SAFETY, "- MedicationRequest?status=active"),
        "subscriptions.criteria[1]",
        "reads no Encounter",
    )


def test_every_problem_is_reported_in_line_order() -> None:
    text = DETERIORATION.read_text(encoding="utf-8")
    text = text.replace("hook: patient-view", "hook: chart-open").replace(
        "triton_name: deterioration_risk", "triton_name: 'no spaces allowed'"
    )
    with pytest.raises(AdapterFileError) as raised:
        parse_adapter(text, DETERIORATION)
    lines = [problem.line for problem in raised.value.problems]
    assert len(lines) == 2
    assert lines == sorted(lines)


def test_a_file_that_is_no_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(AdapterFileError, match=r"list\.yaml:1: an adapter file is a YAML mapping"):
        load_adapter(path)


def test_a_plausible_range_upside_down_is_refused() -> None:
    error = _refusal(
        DETERIORATION,
        "plausible_range: {low: 0, high: 600}",
        "plausible_range: {low: 600, high: 0}",
    )
    _assert_problem(
        error,
        _line_of(DETERIORATION, "plausible_range: {low: 0, high: 600}"),
        "data.heart_rate.plausible_range",
        "low <= high",
    )


def test_a_window_that_is_no_duration_is_refused() -> None:
    error = _refusal(MEDICATION_SAFETY, "window: 90d", "window: 3 months")
    _assert_problem(error, _line_of(MEDICATION_SAFETY, "window: 90d"), "data.egfr.window", "24h")


def test_a_data_name_that_is_no_snake_case_name_is_refused() -> None:
    error = _refusal(MEDICATION_SAFETY, "  metformin:\n", "  Metformin-X:\n")
    _assert_problem(
        error, _line_of(MEDICATION_SAFETY, "  metformin:"), "data.Metformin-X", "should match"
    )


def test_a_delete_action_needs_data_that_a_column_reads() -> None:
    text = MEDICATION_SAFETY.read_text(encoding="utf-8")
    text = text.replace(
        "\ninputs:\n",
        "  insulin:\n    resource: MedicationRequest\n    label: Insulin\n"
        "    codes: [http://www.nlm.nih.gov/research/umls/rxnorm|5856]\n\ninputs:\n",
        1,
    ).replace("resource_ids_from: metformin", "resource_ids_from: insulin", 1)
    with pytest.raises(AdapterFileError) as raised:
        parse_adapter(text, MEDICATION_SAFETY)
    (problem,) = raised.value.problems
    assert problem.path == "cards[0].suggestions[0].actions[0].resource_ids_from"
    assert "no column reads 'insulin'" in problem.message
    assert text.splitlines()[problem.line - 1].strip() == "resource_ids_from: insulin"


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("title: Température\n".encode("latin-1"))
    with pytest.raises(AdapterFileError, match=r"latin1\.yaml:1: not UTF-8 text"):
        load_adapter(path)


def test_one_output_tensor_with_two_meanings_is_refused() -> None:
    error = _refusal(DETERIORATION, "      tensor: log_odds\n", "      tensor: contributions\n")
    _assert_problem(error, _line_of(DETERIORATION, "outputs:"), "outputs", "two meanings")


def test_a_resource_type_the_format_does_not_read_is_refused_at_its_line() -> None:
    error = _refusal(DETERIORATION, "    resource: Patient\n", "    resource: Encounter\n")
    _assert_problem(
        error,
        _line_of(DETERIORATION, "resource: Patient"),
        "data.age.resource",
        "Observation, MedicationRequest or Patient",
    )
