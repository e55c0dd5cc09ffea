"""Tools that synth implements itself: ``run_python`` runs model-written code in the sandbox (coding tasks)."""

from synth.schemas.ids import stable_id
from synth.schemas.tools import FunctionSpec, ToolProvenance, ToolSpec

RUN_PYTHON = ToolSpec(
    id=stable_id("tool", "builtin", "run_python"),
    function=FunctionSpec(
        name="run_python",
        description=(
            "Run a Python 3 program in a sandbox with no network and limited CPU, memory and time. "
            "Returns its stdout, stderr and exit code. Print what you want to see."
        ),
        parameters={
            "type": "object",
            # minLength: a weak model otherwise "runs" the empty program and reports on nothing.
            "properties": {
                "code": {"type": "string", "minLength": 1, "description": "The complete program to run."}
            },
            "required": ["code"],
        },
    ),
    provenance=ToolProvenance(source="builtin", domain_path=["coding", "python"]),
    real_exec=True,
)

BUILTIN_TOOLS: dict[str, ToolSpec] = {RUN_PYTHON.function.name: RUN_PYTHON}
