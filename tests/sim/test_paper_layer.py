"""One MoE layer of Qwen3-30B-A3B's real shape (128 experts of 2048 x 768, top-8) on a top of the
paper's PE (16x32x32 array, 32 KB weight and 32 KB input/output memory, 256-bit HB channel, a
client of the 512-bit LPDDR port) on Verilator: a cached-decoding step and an Elastic-SD
verification phase, bit for bit against the golden executor; the MAC array busy during MAC
commands and the memories streaming near their peak during loads. Slow: a long Verilator build
and millions of cycles (``python build.py bench paper-layer`` prints the same figures)."""

import pytest

from sim.top.paper_layer import run_paper_layer

pytestmark = [pytest.mark.verilator, pytest.mark.slow]


def test_a_real_shape_layer_on_the_paper_pe_is_bit_exact_and_busy():
    f = run_paper_layer("qwen3-30b-a3b", pes=1, batch=1, seed=0)
    names = [s["name"] for s in f["streams"]]
    assert names == ["cached step", "Elastic-SD verification"]
    for s in f["streams"]:
        assert s["match"], (s["name"], s["differences"])
        assert s["error"] == "NONE" and s["mac_dq"] >= s["outputs"] > 0
    assert f["measure_done"]
    assert f["mac_utilisation"] >= 0.95, f
    assert f["hb_share"] >= 0.9 and f["lpddr_share"] >= 0.9, f
