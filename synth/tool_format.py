"""How a tool call looks in a model's own text: Hermes-style ``<tool_call>{json}</tool_call>`` blocks.

The training template writes calls this way and vLLM's ``hermes`` parser reads them back, so the agent's turn
code, the evaluation and the trainer all need these markers without depending on one another.
"""

TOOL_CALL_PARSER = "hermes"
"""The vLLM tool-call parser that reads what the training template teaches the model to write."""
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
"""How the template (Hermes style) writes a call in the model's text."""
