"""One MoE layer of Qwen3-30B-A3B's real shape (128 experts of 2048 x 768, top-8) on a top of the
paper's PE (16x32x32 array, 32 KB weight and 32 KB input/output memory, 256-bit HB channel, a
client of the 512-bit LPDDR port) on Verilator: a cached-decoding step and an Elastic-SD
verification phase, bit for bit against the golden executor; the MAC array busy during MAC
commands and the memories near their peak during loads. Slow: a Verilator build of 14 to 35 min
(the latter with its two cores shared) and about 7 million cycles at about 3,800 a second (``python
build.py bench paper-layer`` prints the same figures)."""

import pytest

from sim.top.paper_layer import run_paper_layer

pytestmark = [pytest.mark.verilator, pytest.mark.slow]


@pytest.fixture(scope="module")
def figures():
    return run_paper_layer("qwen3-30b-a3b", pes=1, batch=1, seed=0)


def test_a_real_shape_layer_on_the_paper_pe_is_bit_exact(figures):
    f = figures
    assert [s["name"] for s in f["streams"]] == ["cached step", "Elastic-SD verification"]
    for s in f["streams"]:
        assert s["match"], (s["name"], s["differences"])
        assert s["error"] == "NONE" and s["mac_dq"] > 1000 and s["outputs"] > 0
    assert f["measure_done"]


def test_the_mac_array_is_busy_during_mac_commands(figures):
    assert figures["mac_utilisation"] >= 0.95, figures


def test_the_memories_stream_near_their_peak_during_loads(figures):
    assert figures["hb_share"] >= 0.9 and figures["lpddr_share"] >= 0.9, figures
