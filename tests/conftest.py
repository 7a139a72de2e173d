import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def f64():
    """float64 default dtype: e3nn builds its constants (generators, CG) in the default dtype, and
    float64 makes it a ~1e-15 oracle."""
    from fastso3.testing import default_dtype

    with default_dtype(torch.float64):
        yield


def pytest_configure(config):
    # `make test` runs two pytest-xdist workers on this project's 2-core machines: one torch thread each, so
    # the workers do not oversubscribe the cores (tests that vary the thread count set it themselves).
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)
