"""Statistics the sampling tests share: Pearson's chi-square test and its tail probability."""

import math

import numpy as np

__all__ = ["ALPHA", "chi2_sf", "chi_square_p"]

#: Significance of the sampling tests (each runs with fixed seeds).
ALPHA = 1e-3


def chi2_sf(x, df):
    """Upper tail of the chi-square distribution: the regularised upper incomplete gamma function
    Q(df/2, x/2), by its power series below a+1 and Lentz's continued fraction above."""
    a, x = df / 2.0, x / 2.0
    if x <= 0:
        return 1.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > 1e-17 * abs(total):
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - math.exp(log_front) * total)
    tiny = 1e-300
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 10000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return math.exp(log_front) * h


def chi_square_p(counts, probs, min_expected=5.0):
    """Pearson's test of observed ``counts`` against ``probs``; cells expecting fewer than
    ``min_expected`` are pooled into one cell. Returns ``(statistic, df, p_value)``."""
    counts, probs = np.asarray(counts, float).ravel(), np.asarray(probs, float).ravel()
    n = counts.sum()
    expected = n * probs / probs.sum()
    small = expected < min_expected
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = len(obs) - 1
    return stat, df, chi2_sf(stat, df)
