"""The format describes a generative model too: a prompt from the context, generated text,
the card's rationale (a schema example: no generative model is shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cdsflow.models import (
    AdapterFileError,
    CardRendering,
    build_model_inputs,
    interpret_outputs,
    load_adapter,
    parse_adapter,
    render_cards,
)

from .adapter_fixtures import AS_OF, DETERIORATION, observation, patient

GENERATIVE = Path(__file__).parent / "files" / "generative-rationale.yaml"


def test_a_generative_adapter_loads() -> None:
    adapter = load_adapter(GENERATIVE)
    assert adapter.is_generative
    assert adapter.inputs.prompt is not None
    assert adapter.inputs.prompt.parameters == {"max_tokens": 200, "temperature": 0}
    assert adapter.outputs.generated_text is not None
    assert adapter.outputs.score is None
    assert adapter.risk_bands == []


def test_the_prompt_is_built_from_the_context_and_the_text_becomes_the_rationale() -> None:
    adapter = load_adapter(GENERATIVE)
    resources = [
        patient("1950-01-01"),
        observation("hr-1", "8867-4", 132, "/min", hours_before=6),
        observation("hr-2", "8867-4", 118, "/min", hours_before=1),
    ]
    inputs = build_model_inputs(adapter, resources, AS_OF)
    (prompt,) = inputs.tensors["text_input"].reshape(-1)
    text = prompt.decode("utf-8")
    assert "As of 2026-11-29 18:00 UTC" in text
    assert "- Heart rate: 118 /min (2026-11-29 17:00 UTC)" in text
    assert "- Age: 76 years" in text
    assert "Not charted in the last 24 h: Respiratory rate." in text
    assert "The highest heart rate was 132 /min." in text
    answer = "Heart rate is high but falling; no other charted sign is abnormal."
    outputs = {"text_output": np.array([[answer.encode("utf-8")]], dtype=np.object_)}
    result = interpret_outputs(adapter, inputs, outputs)
    assert result.generated_text == answer
    rendering = CardRendering(model_version="3", patient_reference="Patient/p-1", card_id_seed="r")
    (card,) = render_cards(adapter, inputs, result, rendering)
    assert card.summary == "AI rationale on recent vital signs (clinical_llm v3)"
    assert card.detail.startswith(answer)
    assert card.indicator == "info"


def _generative_text(old: str, new: str) -> str:
    text = GENERATIVE.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


def test_a_generative_adapter_without_a_prompt_is_refused() -> None:
    text = _generative_text(
        "  prompt:\n    tensor: text_input\n", "  prompt_:\n    tensor: text_input\n"
    )
    with pytest.raises(AdapterFileError, match=r"inputs\.prompt_: this member is not part"):
        parse_adapter(text, GENERATIVE)


def test_a_prompt_field_that_does_not_exist_is_refused_with_its_line() -> None:
    text = _generative_text("{missing}", "{diagnoses}")
    with pytest.raises(AdapterFileError) as raised:
        parse_adapter(text, GENERATIVE)
    (problem,) = raised.value.problems
    assert problem.path == "inputs.prompt.template"
    assert "unknown field {diagnoses}" in problem.message
    assert text.splitlines()[problem.line - 1].strip() == "template: |"


def test_generated_text_only_exists_in_a_generative_adapter() -> None:
    text = DETERIORATION.read_text(encoding="utf-8").replace(
        "Not observed in the 24 h before: {missing}.", "{generated_text}", 1
    )
    with pytest.raises(AdapterFileError, match=r"unknown field \{generated_text\}"):
        parse_adapter(text, DETERIORATION)


def test_a_generative_adapter_takes_no_numeric_tensors() -> None:
    text = _generative_text(
        "inputs:\n",
        "inputs:\n  tensors:\n    - name: x\n      presence_tensor: p\n"
        "      columns: [{name: hr, data: heart_rate}]\n",
    )
    with pytest.raises(AdapterFileError, match="takes its prompt, not tensors"):
        parse_adapter(text, GENERATIVE)
