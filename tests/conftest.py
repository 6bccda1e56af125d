import os

import numpy as np
import pytest


@pytest.fixture
def seed():
    """Seed of a randomised test: ``ELMOE_SEED`` from the environment, else 1; printed on failure."""
    value = int(os.environ.get("ELMOE_SEED", 1))
    print(f"ELMOE_SEED={value}")
    return value


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)
