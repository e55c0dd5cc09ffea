"""What the model is held to when it drafts a tool: every tool says how it fails, in a message of bounded length."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from synth.llm.client import closed_schema
from synth.tools.evolve import ToolDraft, ToolDraftList

DRAFT = {"name": "get_order", "description": "Look up an order.",
         "parameters": [{"name": "order_id", "type": "string", "description": "The order.", "required": True}]}


@pytest.mark.parametrize("errors", [[], [""], ["1" * 121]])
def test_a_draft_without_a_real_error_case_is_refused(errors: list[str]) -> None:
    with pytest.raises(ValidationError):
        ToolDraft.model_validate({**DRAFT, "errors": errors})
    assert ToolDraft.model_validate({**DRAFT, "errors": ["order not found"]}).errors == ["order not found"]


def test_guided_decoding_is_told_the_bounds() -> None:
    errors = closed_schema(ToolDraftList.model_json_schema())["$defs"]["ToolDraft"]["properties"]["errors"]
    assert errors["minItems"] == 1 and errors["items"] == {"type": "string", "minLength": 3, "maxLength": 120}
