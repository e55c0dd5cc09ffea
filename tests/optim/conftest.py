import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Registered here too so the optim suite runs cleanly even before pyproject lists the markers.
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run on the lent GPU machine)")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
