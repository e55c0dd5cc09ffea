"""Tool specs: the OpenAI function form every stage passes around, plus where each tool came from."""

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

Source = Literal["mcp", "synthetic", "builtin"]


class FunctionSpec(BaseModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$", description="Tool name, unique within a toolset.")
    description: str = Field(min_length=1, description="What the tool does, when to use it, what it returns.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments object.",
    )

    @field_validator("parameters")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type", "object") != "object":
            raise ValueError(f"parameters must be a JSON Schema of type 'object', got type {value.get('type')!r}")
        return value


class ToolProvenance(BaseModel):
    """Where a tool spec came from: a real server (registry, package, version) or a synthetic lineage."""

    source: Source
    registry: Literal["pypi", "npm"] | None = None
    package: str | None = None
    version: str | None = None
    server: str | None = Field(default=None, description="Server id from tools_registry/mcp_servers.yaml.")
    harvested_at: str | None = None
    domain_path: list[str] = Field(default_factory=list, description="Category/domain/subdomain for synthetic tools.")
    generation: int | None = Field(default=None, description="Evolution generation of a synthetic tool.")


class ToolSpec(BaseModel):
    """One tool as the pipeline keeps it: OpenAI function form plus provenance and simulation hints."""

    id: str
    function: FunctionSpec
    provenance: ToolProvenance
    errors: list[str] = Field(default_factory=list, description="Errors the tool can return, for the simulator.")
    real_exec: bool = Field(default=False, description="A sandboxed real implementation exists for this tool.")

    def openai(self) -> dict[str, Any]:
        """The tool in the form OpenAI's ``tools=`` and TRL's ``tools`` column take."""
        return {"type": "function", "function": self.function.model_dump()}
