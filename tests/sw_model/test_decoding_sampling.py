"""Rejection sampling preserves the target distribution: chi-square tests at significance 0.001 with
fixed seeds, on the acceptance rule alone and end to end through Elastic-SD on a 16-token model."""

import dataclasses

import numpy as np
import pytest

from sw_model.decode.decoding import SDConfig, accept_rejection, elastic_sd
from sw_model.decode.draft_policies import make_policy
from sw_model.model.moe import TINY_CONFIG, MoEModel, random_weights, softmax

from tests.support.stats import ALPHA, chi2_sf, chi_square_p

VOCAB = 16


@pytest.mark.parametrize("x, df, p", [
    (3.841458820694124, 1, 0.05), (23.209251158954356, 10, 0.01), (135.80672317102676, 100, 0.01),
    (1.0, 4, 0.9097959895689501), (0.0, 3, 1.0), (59.70306453, 30, 0.001),
])
def test_chi2_tail_against_tables(x, df, p):
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-7, abs=1e-12)


def test_acceptance_rule_emits_the_target_distribution():
    rng = np.random.default_rng(7)
    p = np.array([0.30, 0.05, 0.25, 0.10, 0.22, 0.08])
    q = np.array([0.10, 0.30, 0.20, 0.25, 0.05, 0.10])
    n = 20000
    counts = np.zeros(6)
    wrong = np.zeros(6)
    accepted = 0
    for _ in range(n):
        d = int(rng.choice(6, p=q))
        k, nxt = accept_rejection([d], [q], [p, p], rng)
        counts[d if k == 1 else nxt] += 1
        wrong[d] += 1                      # a sampler that skipped verification
        accepted += k
    assert 0.3 < accepted / n < 0.9
    assert chi_square_p(counts, p)[2] > ALPHA
    assert chi_square_p(wrong, p)[2] < ALPHA   # the test has the power to see a wrong sampler


@pytest.fixture(scope="module")
def small_vocab():
    config = dataclasses.replace(TINY_CONFIG, vocab_size=VOCAB, name="tiny-16")
    return MoEModel(config, random_weights(config, seed=4, logit_scale=1.5))


def _target_tables(model, prompt):
    """Exact target probabilities: p1[a], p2[a, b] = P(b | a), p3[a, b, c] = P(c | a, b)."""
    f = lambda seqs: np.array([model.forward(model.new_cache(1, 8), [s], last_only=True)
                               .logits[0][-1] for s in seqs])
    p1 = softmax(f([prompt]))[0]
    p2 = softmax(f([np.append(prompt, a) for a in range(VOCAB)]))
    p3 = softmax(f([np.append(prompt, [a, b]) for a in range(VOCAB) for b in range(VOCAB)]))
    return p1, p2, p3.reshape(VOCAB, VOCAB, VOCAB)


def test_elastic_sd_sampling_preserves_the_target_distribution(small_vocab):
    """6000 samples of three tokens from one prompt (gamma 2, temperature 1): the joint law of the
    first two tokens and the law of the third match the target's exact probabilities."""
    prompt = np.array([3, 7, 1])
    n = 6000
    sd = SDConfig(gamma=2, capacity=2, temperature=1.0, draft_bits="truncation")
    result = elastic_sd(small_vocab, [prompt] * n, 3, make_policy("resident"), sd,
                        rng=np.random.default_rng(99))
    summary = result.summary()
    assert 0.2 < summary["acceptance_rate"] < 0.95          # drafts do get rejected
    tokens = np.array(result.tokens)
    p1, p2, p3 = _target_tables(small_vocab, prompt)
    joint12 = p1[:, None] * p2
    counts12 = np.zeros((VOCAB, VOCAB))
    np.add.at(counts12, (tokens[:, 0], tokens[:, 1]), 1)
    stat, df, p_value = chi_square_p(counts12, joint12)
    assert df >= 20 and p_value > ALPHA, (stat, df, p_value)
    marginal3 = (joint12[:, :, None] * p3).sum(axis=(0, 1))
    stat, df, p_value = chi_square_p(np.bincount(tokens[:, 2], minlength=VOCAB), marginal3)
    assert df >= 5 and p_value > ALPHA, (stat, df, p_value)
