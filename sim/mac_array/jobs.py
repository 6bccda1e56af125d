"""MAC array test jobs: stimulus, expected results, and payloads packed with the hardware's layouts.

Shared by the Amaranth-simulator unit tests and the cocotb benches, so both drive the same data the
same way. Payloads are built with ``layout.const`` of :mod:`hw.mac_array`'s layouts and read back
with ``layout.from_bits``: no bit offset is written by hand.
"""

from dataclasses import dataclass

import numpy as np

from hw.mac_array import op_layout, act_layout, weight_layout, result_layout
from hw.params import MacMode
from sw_model.golden.mac_array import SliceLevelMac

__all__ = ["MacJob", "EDGE_VALUES", "job_for", "random_jobs", "edge_jobs", "encode_job", "decode_result",
           "check_results"]

#: Activation and weight code extremes: -128, 127, 0, all ones (-1), one, and the 4-bit boundaries.
EDGE_VALUES = (-128, 127, 0, -1, 1, -8, 7, 8, 15, -16, 16)


@dataclass
class MacJob:
    """One operation: its inputs, and the sums the slice-level model says it must produce."""
    mode: MacMode
    tag: int
    load_act: bool
    x: np.ndarray          # [tokens, group_size] activation codes
    q: np.ndarray          # [group_size, channels(mode)] weight codes
    expected: np.ndarray   # [tokens, result_channels]

    @property
    def dot_products(self):
        """Group dot products this job checks (tokens x channels of its mode)."""
        return self.x.shape[0] * self.q.shape[1]


def _finish(model, mode, tag, load_act, x, q):
    return MacJob(MacMode(mode), tag, load_act, x, q, model.operate(mode, x, q))


def job_for(params, mode, tag, x, q, load_act=True):
    """One job on given codes, its expected sums from the slice-level model."""
    return _finish(SliceLevelMac(params), mode, tag, load_act, np.asarray(x), np.asarray(q))


def random_jobs(params, rng, count, modes=tuple(MacMode), reuse=0.3):
    """``count`` jobs with random codes in [-128, 127]; each job's mode drawn from ``modes``;
    with probability ``reuse`` a job keeps the previous activations (``load_act = 0``)."""
    model = SliceLevelMac(params)
    jobs, x = [], None
    for i in range(count):
        mode = MacMode(modes[rng.integers(len(modes))])
        load_act = x is None or rng.random() >= reuse
        if load_act:
            x = rng.integers(-128, 128, size=(params.tokens, params.group_size))
        q = rng.integers(-128, 128, size=(params.group_size, params.channels(mode)))
        jobs.append(_finish(model, mode, i % (1 << params.tag_width), load_act, x, q))
    return jobs


def edge_jobs(params, rng, modes=tuple(MacMode)):
    """Jobs built from extremes: every pair of edge values as constant tiles, alternating signs,
    and random picks among the edge values, in every mode; the tiles of activations 0, -128 and
    127 and the mixed ones are followed by a job reusing them (``load_act = 0``) with random edge
    weights."""
    model = SliceLevelMac(params)
    t, g = params.tokens, params.group_size
    tiles = []
    for xv in EDGE_VALUES:
        for wv in EDGE_VALUES:
            tiles.append((np.full((t, g), xv), wv))
    alt = np.where(np.arange(g) % 2 == 0, 127, -128)
    tiles.append((np.tile(alt, (t, 1)), "alternating"))
    tiles.append((np.tile(-alt - 1, (t, 1)), "alternating"))
    edges = np.array(EDGE_VALUES)
    for _ in range(8):
        tiles.append((edges[rng.integers(len(edges), size=(t, g))], "random-edge"))
    jobs = []
    for mode in modes:
        c = params.channels(mode)
        for i, (x, w) in enumerate(tiles):
            if w == "alternating":
                q = np.where((np.arange(g)[:, None] + np.arange(c)[None, :]) % 2 == 0, -128, 127)
            elif w == "random-edge":
                q = edges[rng.integers(len(edges), size=(g, c))]
            else:
                q = np.full((g, c), w)
            jobs.append(_finish(model, mode, len(jobs) % (1 << params.tag_width), True, x, q))
            if x.flat[0] in (0, -128, 127) or i >= len(EDGE_VALUES) ** 2:
                # the same extreme activations again, reused (load_act = 0), with other weights
                q2 = edges[rng.integers(len(edges), size=(g, c))]
                jobs.append(_finish(model, mode, len(jobs) % (1 << params.tag_width), False, x,
                                    q2))
    return jobs


def encode_job(params, job):
    """Payloads of one job: ``(op, [act beats] or [], [weight beats])`` as ``data.Const`` values."""
    model = SliceLevelMac(params)
    op = op_layout(params).const({"mode": int(job.mode), "load_act": int(job.load_act),
                                  "tag": job.tag})
    alay, wlay = act_layout(params), weight_layout(params)
    acts = [alay.const(xb.tolist()) for xb in model.act_beats(job.x)] if job.load_act else []
    wbytes = model.pack_weights(job.mode, job.q)
    weights = [wlay.const([[{"lo": int(b) & 0xF, "hi": int(b) >> 4} for b in row]
                           for row in wb])
               for wb in model.weight_beats(wbytes)]
    return op, acts, weights


def decode_result(params, raw):
    """``(tag, mode, sums[tokens, result_channels])`` from a result payload (int or data.Const)."""
    layout = result_layout(params)
    view = layout.from_bits(raw) if isinstance(raw, int) else raw
    sums = np.array([[int(view.sums[t][s]) for s in range(params.result_channels)]
                     for t in range(params.tokens)], dtype=np.int64)
    return int(view.tag), MacMode(int(view.mode)), sums


def check_results(params, jobs, results):
    """Compare decoded results with jobs in order; raise ``AssertionError`` naming the first
    mismatch (job index, mode, token, slot, got, expected)."""
    assert len(results) == len(jobs), f"{len(results)} results for {len(jobs)} jobs"
    for i, (job, (tag, mode, sums)) in enumerate(zip(jobs, results)):
        assert tag == job.tag, f"job {i}: tag {tag}, expected {job.tag}"
        assert mode == job.mode, f"job {i}: mode {mode.name}, expected {job.mode.name}"
        if not np.array_equal(sums, job.expected):
            t, s = (int(v) for v in np.argwhere(sums != job.expected)[0])
            raise AssertionError(
                f"job {i} ({job.mode.name}, tag {job.tag}): token {t} slot {s} is {sums[t, s]}, "
                f"the golden model says {job.expected[t, s]}")
    return sum(job.dot_products for job in jobs)
