"""The verification tooling itself: Verilator coverage data merged and attributed, the
functional bins, the mutants, and the whole-run codecs of the free-running benches (equal to the
hardware's layouts bit for bit)."""

import random

import numpy as np
import pytest

from hw.mac_array import result_layout
from hw.params import (CACHE_DEFAULT, HB_DEFAULT, LPDDR_DEFAULT, MAC_DEFAULT, MacArrayParams,
                       MacMode, MemOp)
from sim import coverage, funcov
from sim.mac_array.batch import MacCodec, random_batch
from sim.mac_array.jobs import decode_result, encode_job, job_for
from sim.mem_channel.traffic import MemCodec, covering, decode, encode, error_requests
from sim.mutate import BLOCKS, OPERATORS, mutants, select
from sw_model.golden.mem_channel import Request


def _entry(file, line, page, comment, hierarchy, count):
    key = "".join(f"\x01{k}\x02{v}" for k, v in
                  (("f", file), ("l", line), ("page", page), ("o", comment), ("h", hierarchy)))
    return f"C '{key}' {count}\n"


def test_coverage_merges_attributes_and_names_the_unreachable(tmp_path):
    src = tmp_path / "mac_array-0123" / "mac_array.v"
    src.parent.mkdir()
    src.write_text("module mac_array;\n  if (x) y = 1;\n"
                   "  if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n  z\n")
    die = tmp_path / "hb_system-4567" / "hb_system.v"
    die.parent.mkdir()
    die.write_text("module hb_system;\n  a\n")
    first = [_entry(src, 2, "v_line/mac_array", "if", "mac_array", 0),
             _entry(src, 3, "v_line/mac_array", "if", "mac_array", 0),
             _entry(src, 4, "v_toggle/mac_array", "z[0]:0->1", "mac_array", 0),
             _entry(die, 2, "v_line/hb_system.die0", "block", "hb_system.die0", 0),
             _entry(die, 2, "v_line/hb_system.hb", "block", "hb_system.hb", 3)]
    second = [_entry(src, 2, "v_line/mac_array", "if", "mac_array", 5),
              _entry(src, 4, "v_toggle/mac_array", "z[0]:0->1", "mac_array", 0)]
    (tmp_path / "a.dat").write_text("# SystemC::Coverage-3\n" + "".join(first))
    (tmp_path / "b.dat").write_text("# SystemC::Coverage-3\n" + "".join(second))
    points = coverage.merge([tmp_path / "a.dat", tmp_path / "b.dat"])
    assert {(p.line, p.kind): p.count for p in points if p.file == str(src)} == {
        (2, "line"): 5, (3, "line"): 0, (4, "toggle"): 0}
    blocks = coverage.summarise(points)
    mac, hb = blocks["mac_array"], blocks["hb_interface"]
    assert (mac.hit["line"], mac.total["line"], mac.unreachable["line"]) == (1, 2, 1)
    assert mac.percent("line") == 50.0 and mac.percent("line", reachable=True) == 100.0
    assert mac.percent("toggle") == 0.0
    assert (hb.hit["line"], hb.total["line"]) == (1, 1)      # the die model is left out
    missed = coverage.uncovered_lines(points)
    assert [(b, p.line, r is not None) for b, p, _, r in missed] == [("mac_array", 3, True)]
    (annotated,) = [p for p in coverage.annotate(points, tmp_path / "out") if "mac" in p.name]
    lines = annotated.read_text().splitlines()
    assert lines[1].startswith(" ") and "5" in lines[1]
    assert lines[2].startswith("%") and lines[3].startswith("%") and "0/1" in lines[3]


def test_functional_bins_are_legal_and_classified(monkeypatch, tmp_path):
    for name, (axes, bins) in funcov.GROUPS.items():
        assert len(set(bins)) == len(bins) and all(len(b) == len(axes) for b in bins), name
    assert ("LOOKUP", "PRESENT", "LRU") not in funcov.GROUPS["cache"][1]
    assert ("END", "BAD_ADDRESS") not in funcov.GROUPS["isa"][1]
    assert len(funcov.GROUPS["mac"][1]) == 4 * 2 * 2 * 3
    x, q = np.zeros((2, 4), int), np.full((4, 2), 3)
    assert funcov.mac_values(x, q) == "zero"
    assert funcov.mac_values(np.full((2, 4), -128), np.full((4, 2), 127)) == "extreme"
    assert funcov.mac_values(np.full((2, 4), 100), q) == "random"
    p = HB_DEFAULT
    assert [funcov.memory_error(p, r) for _, r in error_requests(p, random.Random(1))][:6] == [
        "zero length", "zero length", "beyond the device", "beyond the device", "past the end",
        "past the end"]
    monkeypatch.setenv("ELMOE_COVERAGE", str(tmp_path))
    funcov.sample("memory", "read", "none", "free")
    with pytest.raises(ValueError, match="memory samples 3 values"):
        funcov.sample("memory", "read")
    funcov.flush()
    report = funcov.report(funcov.collect(tmp_path))
    assert report["memory"]["hit"] == 1 and ["read", "none", "free"] not in \
        report["memory"]["missing"] and not report["memory"]["illegal"]


@pytest.mark.parametrize("block", BLOCKS)
def test_mutants_are_distinct_edits_of_logic(block):
    from hw.flows.verilog import REPO_ROOT
    found = mutants(block, REPO_ROOT)
    original = (REPO_ROOT / BLOCKS[block][0]).read_text()
    assert len(found) >= 40
    assert len({m.source for m in found}) == len(found)
    assert all(m.source != original and m.operator in OPERATORS for m in found)
    chosen = select(found, 20, 1)
    assert len(chosen) == 20 and len({m.operator for m in chosen}) >= 4
    assert select(found, 20, 1) == chosen
    compile(chosen[0].source, "mutant", "exec")


@pytest.mark.parametrize("params", [MAC_DEFAULT, MacArrayParams(tokens=3, group_size=32,
                                                                out_channels=2, lanes=32)],
                         ids=["default", "one-beat"])
def test_mac_codec_and_batch_golden_equal_the_layouts_and_the_model(params, rng):
    codec = MacCodec(params)
    for mode in MacMode:
        batch = random_batch(params, rng, 7, mode)
        ops, acts, ws, ref_acts, ref_ws = codec.op_beats(batch, range(7)), [], [], [], []
        for i in range(7):
            job = job_for(params, mode, i, batch.x[i], batch.q[i], bool(batch.load_act[i]))
            assert np.array_equal(job.expected, batch.expected[i])
            op, a, w = encode_job(params, job)
            assert ops[i] == op.as_bits()
            assert codec.job_beats(job) == (op.as_bits(), [b.as_bits() for b in a],
                                            [b.as_bits() for b in w])
            ref_acts += [b.as_bits() for b in a]
            ref_ws += [b.as_bits() for b in w]
        assert codec.act_beats(batch) == ref_acts and codec.weight_beats(batch) == ref_ws
        assert [int(x, 16) for x in codec.act_hex(batch).split()] == ref_acts
        assert [int(x, 16) for x in codec.weight_hex(batch).split()] == ref_ws
    width = result_layout(params).size
    words = [int(rng.integers(0, 1 << 62)) << (width - 62) | int(rng.integers(0, 1 << 62))
             for _ in range(20)] + [0, (1 << width) - 1]
    tags, modes, sums = codec.results(words)
    for word, tag, mode, s in zip(words, tags, modes, sums):
        ref_tag, ref_mode, ref_sums = decode_result(params, word)
        assert (tag, mode) == (ref_tag, int(ref_mode)) and np.array_equal(s, ref_sums)


@pytest.mark.parametrize("params", [HB_DEFAULT, LPDDR_DEFAULT], ids=["hb", "lpddr"])
def test_mem_codec_equals_the_layouts(params):
    codec, rng = MemCodec(params), random.Random(3)
    reqs = covering(params, MemOp.WRITE, 200, rng) + covering(params, MemOp.READ, 200, rng)
    reqs += [r for _, r in error_requests(params, rng)]
    for r in reqs:
        assert codec.encode(r) == encode(params, r)
        assert codec.encode(r, random.Random(7)) == encode(params, r, random.Random(7))
    for _ in range(100):
        bits = rng.getrandbits(params.data_width + params.tag_width + 2)
        assert codec.decode(bits) == decode(params, bits)
    with pytest.raises(ValueError, match="tag"):
        codec.encode(Request(MemOp.READ, 0, 1, 1 << params.tag_width))
