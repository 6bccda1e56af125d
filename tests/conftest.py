"""Fixtures shared by the whole suite: the seed of randomised tests, the small random models and
prompt batches the golden-model tests decode, and the check that a bench can fail.

A module that decodes declares what it decodes as constants, and the module-scoped fixtures
``tiny``, ``prompts`` and ``reference`` read them: ``TINY_SEED`` (the tiny model's weights),
``PROMPTS``, ``PROMPT_SEED`` and ``PROMPT_TOKENS`` (how many prompts, their seed, the longest
prompt) and ``NEW`` (tokens the reference decodes)."""

import functools
import os

import numpy as np
import pytest

from sw_model.decode.decoding import target_greedy
from sw_model.model.moe import TINY_CONFIG, MoEModel, random_weights


@pytest.fixture
def seed():
    """Seed of a randomised test: ``ELMOE_SEED`` from the environment, else 1; printed on failure."""
    value = int(os.environ.get("ELMOE_SEED", 1))
    print(f"ELMOE_SEED={value}")
    return value


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def tiny_model():
    """``tiny_model(seed)``: the :data:`TINY_CONFIG` model with random weights of ``seed`` (made
    once per session and seed; decoding does not change a model)."""
    return functools.lru_cache(lambda seed: MoEModel(TINY_CONFIG, random_weights(TINY_CONFIG,
                                                                                 seed=seed)))


@pytest.fixture(scope="session")
def prompt_batch():
    """``prompt_batch(count, seed, longest)``: ``count`` prompts of 1 to ``longest`` tokens of the
    tiny vocabulary (a ragged batch), drawn from ``numpy.random.default_rng(seed)``."""
    def make(count, seed, longest):
        rng = np.random.default_rng(seed)
        return [rng.integers(0, TINY_CONFIG.vocab_size, rng.integers(1, longest + 1))
                for _ in range(count)]
    return make


@pytest.fixture(scope="module")
def tiny(request, tiny_model):
    """The tiny model of the module's ``TINY_SEED``."""
    return tiny_model(request.module.TINY_SEED)


@pytest.fixture(scope="module")
def prompts(request, prompt_batch):
    """The module's prompts: ``PROMPTS`` of them, from ``PROMPT_SEED``, up to ``PROMPT_TOKENS``."""
    m = request.module
    return prompt_batch(m.PROMPTS, m.PROMPT_SEED, m.PROMPT_TOKENS)


@pytest.fixture(scope="module")
def reference(request, tiny, prompts):
    """Target-only greedy decoding of the module's prompts, ``NEW`` tokens each."""
    return target_greedy(tiny, prompts, request.module.NEW)


@pytest.fixture
def bench_must_fail(seed):
    """``bench_must_fail(run, params, golden, testcase, env)``: run a block's cocotb bench on
    ``params`` with a golden model of other ``golden`` params and require the bench to fail: the
    proof that it compares something."""
    from sim.runner import CocotbFailure

    def check(run, params, golden, testcase, env):
        with pytest.raises(CocotbFailure, match="failed"):
            run(params, testcase=testcase, golden=golden, seed=seed, env=env)
    return check
