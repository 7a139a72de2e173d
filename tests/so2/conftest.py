import pytest
import torch


@pytest.fixture
def single_thread():
    """One intra-op thread: tiny ops (gradcheck) are much slower with thread contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
