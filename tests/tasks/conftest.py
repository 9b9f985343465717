"""The tiny models here train fastest on one thread (no oversubscription on a shared CPU)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
