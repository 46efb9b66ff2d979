"""The CDS Hooks `systemActions` a result implies, rendered from the adapter's
`system_actions` templates (CDS Hooks 2.0.1 "System Action": the Action shape, applied by
the EHR without a clinician's choice, when the EHR agrees to).

An action applies when the result's band is one of its `bands` and every column in
`requires_present` was observed. Whether it is shown at all is the caller's rule: only with
an active recommendation, never a shadow one.
"""

from __future__ import annotations

from typing import Any

from cdsflow.models.adapter_schema import ModelAdapter
from cdsflow.models.card_templates import CardRendering, card_field_values, rendered_resource
from cdsflow.models.outputs import ModelResult
from cdsflow.models.template_text import render_template
from cdsflow.models.tensors import ModelInputs


def render_system_actions(
    adapter: ModelAdapter, inputs: ModelInputs, result: ModelResult, rendering: CardRendering
) -> list[dict[str, Any]]:
    """Each applying system action as CDS Hooks JSON (`type`, `description`, `resource`), in
    the adapter's order."""
    applying = [
        action
        for action in adapter.system_actions
        if result.band is not None
        and result.band.name in action.bands
        and all(inputs.extracted.column(name).present for name in action.requires_present)
    ]
    if not applying:
        return []
    fields = card_field_values(adapter, inputs, result, rendering)
    return [
        {
            "type": action.type,
            "description": render_template(action.description, fields),
            "resource": rendered_resource(action.resource, fields),
        }
        for action in applying
    ]
