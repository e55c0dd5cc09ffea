"""Tool registry: real MCP tools harvested from real servers, synthetic tools grown by domain evolution."""
