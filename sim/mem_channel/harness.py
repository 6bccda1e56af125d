"""cocotb side of the memory benches: the system under test from the environment, and the loop that
runs :class:`sim.mem_channel.traffic.PortDriver` objects against the Verilated ports.

Environment (set by :func:`sim.mem_channel.run.run_mem_bench`): ``ELMOE_MEM_SYSTEM`` (``hb`` or
``lpddr``), ``ELMOE_MEM_PARAMS`` and ``ELMOE_MEM_TIMING`` (JSON of the params dataclasses),
``ELMOE_SEED``.
"""

import json
import os

from cocotb.triggers import RisingEdge, ReadOnly

from hw.params import (HbInterfaceParams, LpddrPortParams, HbBankTiming, Lpddr5Timing)
from sim.cocotb_streams import clock_and_reset

__all__ = ["SYSTEMS", "system_from_env", "start", "run_ports", "Backdoor"]

#: name -> (port params class, die timing class, number of ports of the system)
SYSTEMS = {
    "hb": (HbInterfaceParams, HbBankTiming, lambda p: p.channels),
    "lpddr": (LpddrPortParams, Lpddr5Timing, lambda p: p.clients),
}


def system_from_env():
    """``(name, params, timing, ports)`` of the system the simulator was built from."""
    name = os.environ["ELMOE_MEM_SYSTEM"]
    params_class, timing_class, ports = SYSTEMS[name]
    params = params_class.from_dict(json.loads(os.environ["ELMOE_MEM_PARAMS"]))
    timing = timing_class.from_dict(json.loads(os.environ["ELMOE_MEM_TIMING"]))
    return name, params, timing, ports(params)


async def start(dut, ports):
    """Clock and reset; returns at the start of cycle 0 (the first cycle out of reset)."""
    for i in range(ports):
        getattr(dut, f"req__{i}__valid").value = 0
        getattr(dut, f"resp__{i}__ready").value = 0
    await clock_and_reset(dut)


async def run_ports(dut, drivers, responses, max_cycles):
    """Drive every port from its driver, one cycle at a time, until driver ``i`` holds
    ``responses[i]`` responses; then check that nothing more comes out. Call right after
    :func:`start` so cycle numbers match Amaranth's simulator."""
    handles = [(getattr(dut, f"req__{i}__valid"), getattr(dut, f"req__{i}__payload"),
                getattr(dut, f"req__{i}__ready"), getattr(dut, f"resp__{i}__valid"),
                getattr(dut, f"resp__{i}__payload"), getattr(dut, f"resp__{i}__ready"))
               for i in range(len(drivers))]
    shown = [(None, None, None)] * len(drivers)
    for _ in range(max_cycles):
        if all(len(d.responses) >= n for d, n in zip(drivers, responses)):
            break
        for i, (driver, h) in enumerate(zip(drivers, handles)):
            valid, payload, ready = driver.drive()
            old_valid, old_payload, old_ready = shown[i]
            if valid != old_valid:
                h[0].value = int(valid)
            if payload is not None and payload != old_payload:
                h[1].value = payload
            else:
                payload = old_payload
            if ready != old_ready:
                h[5].value = int(ready)
            shown[i] = (valid, payload, ready)
        await ReadOnly()
        for driver, h in zip(drivers, handles):
            driver.observe(bool(h[2].value) if driver.offering else False,
                           bool(h[3].value) if driver.ready else False,
                           lambda h=h: h[4].value.to_unsigned())
        await RisingEdge(dut.clk)
    else:
        raise AssertionError(f"not done after {max_cycles} cycles: " + ", ".join(
            f"{len(d.responses)}/{n} responses" for d, n in zip(drivers, responses)))
    for h in handles:
        h[0].value = 0
        h[5].value = 1
    for _ in range(40):
        await ReadOnly()
        assert not any(int(h[3].value) for h in handles), "a response beyond the expected ones"
        await RisingEdge(dut.clk)


class Backdoor:
    """The dies' arrays through cocotb: ``read(channel, first, count)``, ``write(channel,
    first, words)``; no clock cycles pass."""

    def __init__(self, dut, dies):
        self.arrays = [getattr(dut, f"die{c}").storage.words for c in range(dies)]

    def read(self, channel, first, count):
        array = self.arrays[channel]
        return [array[i].value.to_unsigned() for i in range(first, first + count)]

    def write(self, channel, first, words):
        array = self.arrays[channel]
        for i, word in enumerate(words):
            array[first + i].value = word

    def check_against(self, name, golden, words):
        """Assert every channel's first ``words`` words equal the golden memories': on the HB
        interface channel ``c`` is ``golden[c]``; on the LPDDR port every client's golden memory
        is the one shared device (their words merged)."""
        merged = {}
        for memory in golden:
            merged.update(memory.words)
        for channel in range(len(self.arrays)):
            image = golden[channel].words if name == "hb" else merged
            stored = self.read(channel, 0, words)
            bad = [i for i in range(words) if stored[i] != image.get(i, 0)]
            assert not bad, (f"channel {channel}: {len(bad)} words differ in the array, "
                             f"first {bad[0]}")
