"""synth: agentic training-data synthesis (Kimi K2 style) and MuonClip training."""

__version__ = "0.1.0"
