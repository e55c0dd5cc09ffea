"""The LLM layer: load-balanced async OpenAI-compatible endpoints, structured replies, usage per role."""

from synth.llm.client import ChatResult, EndpointUnavailable, LLMPool, ReplyInvalid, ReplyMalformed, RequestTimedOut

__all__ = ["ChatResult", "EndpointUnavailable", "LLMPool", "ReplyInvalid", "ReplyMalformed", "RequestTimedOut"]
