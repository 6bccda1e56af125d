"""The self-test checker against a stand-in accelerator: it passes when every expected word is
there, fails on a wrong word, a wrong PE, the corrupt input, an error code or a timeout; bad
expectations are named."""


import pytest
from amaranth import *
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out, connect
from amaranth.sim import Simulator

from hw.command_processor import HostControlSignature, status_layout
from hw.selftest import SelfTestChecker
from hw.params import TOP_DEFAULT


HOST = HostControlSignature(TOP_DEFAULT)


class _FakeAccelerator(wiring.Component):
    """On the host control port, raises ``done`` ``latency`` cycles after ``start`` with ``error``
    and ``progress = length``; two output memories with fixed contents."""

    def __init__(self, contents, latency, error=0):
        self.contents, self.latency, self.error = contents, latency, error
        super().__init__({"host": Out(HOST), "out_addr": In(3), "out_en": In(2),
                          "out_data": Out(12).array(2)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self.latency + 2))
        running = Signal()
        status = self.host.status
        with m.If(self.host.start):
            m.d.sync += [running.eq(1), count.eq(0), status.done.eq(0),
                         status.progress.eq(self.host.length)]
        with m.Elif(running):
            m.d.sync += count.eq(count + 1)
            with m.If(count == self.latency):
                m.d.sync += [running.eq(0), status.done.eq(1), status.error.eq(self.error)]
        for pe, words in enumerate(self.contents):
            m.submodules[f"omem{pe}"] = mem = memory.Memory(shape=12, depth=8, init=words)
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.out_addr), port.en.eq(self.out_en[pe]),
                         self.out_data[pe].eq(port.data)]
        return m


def _run_checker(expected, latency=30, error=0, corrupt=0, timeout=1000):
    contents = [[(7 * a + 1) for a in range(8)], [(100 + 5 * a) for a in range(8)]]
    fake = _FakeAccelerator(contents, latency, error)
    checker = SelfTestChecker(HOST, 2, 8, 12, length=9, expected=expected, timeout=timeout)

    class Pair(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.fake, m.submodules.checker = fake, checker
            connect(m, fake.host, checker.host)
            m.d.comb += [fake.out_addr.eq(checker.out_addr), fake.out_en.eq(checker.out_en),
                         checker.corrupt.eq(corrupt)]
            m.d.comb += [checker.out_data[pe].eq(fake.out_data[pe]) for pe in range(2)]
            return m

    sim = Simulator(Pair())
    sim.add_clock(1e-6)
    outcome = {}

    async def bench(ctx):
        for cycle in range(3000):
            if ctx.get(checker.done):
                break
            assert not ctx.get(checker.passed), "passed before done"
            await ctx.tick()
        outcome.update(done=ctx.get(checker.done), passed=ctx.get(checker.passed),
                       mismatches=ctx.get(checker.mismatches),
                       timed_out=ctx.get(checker.timed_out), cycles=cycle)

    sim.add_testbench(bench)
    sim.run()
    return outcome


GOOD = [(0, 0, 1), (0, 7, 50), (1, 3, 115), (1, 0, 100)]


@pytest.mark.parametrize("case, expected, kwargs, passed, mismatches", [
    ("all equal", GOOD, {}, 1, 0),
    ("one word wrong", GOOD[:2] + [(1, 3, 116)] + GOOD[3:], {}, 0, 1),
    ("wrong PE", [(1, 0, 1)], {}, 0, 1),
    ("corrupt input flips the first word", GOOD, {"corrupt": 1}, 0, 1),
    ("error code", GOOD, {"error": 3}, 0, 0),
    ("timeout", GOOD, {"latency": 200, "timeout": 100}, 0, 0),
])
def test_selftest_checker(case, expected, kwargs, passed, mismatches):
    outcome = _run_checker(expected, **kwargs)
    assert outcome["done"] == 1
    assert (outcome["passed"], outcome["mismatches"]) == (passed, mismatches)
    assert outcome["timed_out"] == (case == "timeout")


def test_selftest_checker_rejects_bad_expectations():
    with pytest.raises(ValueError, match="at least one expected output word"):
        SelfTestChecker(HOST, 2, 8, 12, length=9, expected=[])
    with pytest.raises(ValueError, match=r"\(pe 2, address 0\) is outside 2 PEs x 8 words"):
        SelfTestChecker(HOST, 2, 8, 12, length=9, expected=[(2, 0, 1)])
    with pytest.raises(ValueError, match="512 commands does not fit the host port's 9-bit"):
        SelfTestChecker(HOST, 2, 8, 12, length=512, expected=[(0, 0, 1)])
    with pytest.raises(TypeError, match="host must be a HostControlSignature"):
        SelfTestChecker(status_layout(TOP_DEFAULT), 2, 8, 12, length=9, expected=[(0, 0, 1)])
