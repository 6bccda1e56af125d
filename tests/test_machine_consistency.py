"""One machine file changes every layer consistently: the Verilog, the golden executor, the
scheduler's stream and the performance model all follow ``pes``, ``mac.tokens`` and the HB
capacity written in it."""

import re

import pytest

from hw.blocks import BLOCKS
from hw.flows.verilog import cached_verilog, generate_verilog
from hw.isa import Command, ErrorCode, Opcode
from hw.machines import load_machine, machine_figures
from hw.params import MacMode, TOP_DEFAULT
from sw_model.compiler.scheduler import schedule_step
from sw_model.compiler.weight_layout import WeightLayout, machine_for
from sw_model.golden.top import execute
from sw_model.model.moe import TINY_CONFIG
from sw_model.perf import hardware as hwmod
from sim.top.e2e import record_steps

TINY_SEED = 3

#: What the file changes against its base, ``tiny`` (2 PEs, 2 tokens, 2048 HB words per PE).
FILE = """# a researcher's machine: tiny with more PEs, tokens and HB
base = "tiny"
pes = 3

[mac]
tokens = 4

[hb]
channels = 3
words = 4096
address_width = 13

[lpddr]
clients = 3
"""


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    path = tmp_path_factory.mktemp("machine") / "mine.toml"
    path.write_text(FILE)
    return TOP_DEFAULT, load_machine(str(path))


def _verilog(block, machine):
    b = BLOCKS[block]
    params = b.of_machine(machine)
    return cached_verilog(block, params, lambda: generate_verilog(b.build(params), block))


def test_the_file_reads_as_written(machines):
    base, mine = machines
    assert (mine.pes, mine.mac.tokens, mine.hb.words, mine.hb.channels) == (3, 4, 4096, 3)
    assert (base.pes, base.mac.tokens, base.hb.words) == (2, 2, 2048)
    # every field the file does not name is the base's
    assert mine.mac.lanes == base.mac.lanes and mine.cache == base.cache
    assert mine.lpddr_timing == base.lpddr_timing and mine.weight_words == base.weight_words


def test_the_verilog_follows(machines):
    for machine, tokens, channels in zip(machines, (2, 4), (2, 3)):
        mac = _verilog("mac_array", machine)
        act_bits = tokens * machine.mac.lanes * 8
        assert re.search(rf"input \[{act_bits - 1}:0\] act__payload", mac)
        hb = _verilog("hb_interface", machine)
        modules = set(re.findall(r"^module \\(\S+)", hb, re.M))
        assert {f"hb_interface.channel{c}" for c in range(channels)} <= modules
        assert f"hb_interface.channel{channels}" not in modules


def test_the_executor_follows(machines):
    base, mine = machines
    # PE 2 and HB words 2048..4095 exist only on the file's machine
    stream = [Command(Opcode.LOAD_HB, pe=2, hb=4000, wmem=0, count=1), Command(Opcode.END)]
    assert execute(stream, mine).error is ErrorCode.NONE
    assert execute(stream, base).error in (ErrorCode.BAD_FIELD, ErrorCode.BAD_ADDRESS)
    stream = [Command(Opcode.LOAD_HB, pe=1, hb=4000, wmem=0, count=1), Command(Opcode.END)]
    assert execute(stream, base).error is ErrorCode.BAD_ADDRESS
    result = execute([Command(Opcode.END)], mine)
    assert result.outputs(2).shape == (mine.output_words, 4, 2 * mine.mac.out_channels)


def test_the_scheduler_follows(machines, tiny):
    records, _ = record_steps(tiny, "elastic_sd", 4, 1, 2, seed=2)
    seen = {}
    for machine in machines:
        params = machine_for(TINY_CONFIG, "elastic_sd", machine, capacity=2, pes=machine.pes,
                             grow=True)
        sched = schedule_step(records[0], WeightLayout(TINY_CONFIG, params))
        pes = {c.pe for c in sched.commands if c.op is Opcode.MAC_DQ}
        assert pes == set(range(machine.pes))
        seen[machine.pes] = sched.commands
    # more tokens per MAC operation: fewer token tiles, so fewer MAC commands per PE
    mac_per_pe = {p: sum(c.op is Opcode.MAC_DQ for c in s) / p for p, s in seen.items()}
    assert mac_per_pe[3] < mac_per_pe[2]


def test_the_performance_model_follows(machines):
    for machine in machines:
        hw = hwmod.elmoe3d(machine)
        figures = machine_figures(machine)
        assert hw.pes == machine.pes
        macs = machine.pes * machine.mac.tokens * machine.mac.lanes * machine.mac.out_channels
        assert hw.peak_tops_w8 == pytest.approx(2 * macs * machine.clock_mhz * 1e6 / 1e12)
        assert hw.peak_tops_w4 == pytest.approx(2 * hw.peak_tops_w8)
        assert hw.peak_tops_w8 == figures["peak_tops"]["W8A8"]
        assert hw.near.capacity_bytes == machine.hb.channels * machine.hb.words * 32
        assert hw.near.peak_gbps == pytest.approx(machine.hb.channels * 51.2)
        assert hw.mac_tokens == machine.mac.tokens
    base, mine = (hwmod.elmoe3d(m) for m in machines)
    assert mine.peak_tops_w8 == pytest.approx(3 * base.peak_tops_w8)   # 1.5x PEs, 2x tokens
    assert mine.near.capacity_bytes == 3 * base.near.capacity_bytes      # 1.5x PEs, 2x words


def test_the_paper_machine_figures():
    """The paper's two configurations from the parameters alone."""
    paper = load_machine("paper")
    for machine, tops, hb_gbps, gib in ((paper, (524, 1049), 1638.4, 8),
                                        (paper.with_pes(16), (262, 524), 819.2, 4)):
        f = machine_figures(machine)
        assert (round(f["peak_tops"]["W8A8"]), round(f["peak_tops"]["W4A8"])) == tops
        assert f["hb"]["gbps_per_channel"] == pytest.approx(51.2)
        assert f["hb"]["gbps"] == pytest.approx(hb_gbps) and f["hb"]["gib"] == gib
        assert f["lpddr"]["gbps"] == pytest.approx(102.4) and f["lpddr"]["gib"] == 64
        assert machine.peak_tops(MacMode.FULL) == hwmod.elmoe3d(machine).peak_tops_w8
