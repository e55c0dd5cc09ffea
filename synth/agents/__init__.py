"""Agents: a system prompt varied in role, tone, policies and constraints, with a toolset from the registry."""
