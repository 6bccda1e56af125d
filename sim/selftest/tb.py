"""cocotb bench of the FPGA self-test design (:class:`hw.selftest.SelfTest`), the logic of the
bitstream: run from reset until ``done``, Verilator running freely in steps of ``STEP`` cycles.

Test ``selftest``: it must finish with ``passed``, no mismatch, no error and full progress; then,
after a reset with ``corrupt`` held high, it must finish failed with exactly one mismatch (so the
check can fail). Environment: ``ELMOE_SELFTEST_OUT`` (JSON file the results go to),
``ELMOE_SELFTEST_PROGRESS`` (the progress the stream must end with).
"""

import json
import os

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.cocotb_streams import clock_and_reset, reset

#: Cycles Verilator runs between two looks at ``done``.
STEP = 256
#: Cycles after which a run counts as hung (the design's own timeout is far longer).
LIMIT = 200_000


def _unsigned(value):
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)


async def _run(dut, corrupt):
    dut.corrupt.value = corrupt
    await reset(dut)
    waited = 0
    while waited < LIMIT:
        await ClockCycles(dut.clk, STEP)
        waited += STEP
        await ReadOnly()
        if dut.done.value:
            break
        await RisingEdge(dut.clk)
    return {name: _unsigned(getattr(dut, name).value)
            for name in ("done", "passed", "mismatches", "timed_out", "error", "progress",
                         "cycles")} | {"corrupt": corrupt, "waited": waited}


@cocotb.test()
async def selftest(dut):
    dut.corrupt.value = 0
    await clock_and_reset(dut)
    runs = [await _run(dut, 0)]
    await RisingEdge(dut.clk)
    runs.append(await _run(dut, 1))
    out = os.environ.get("ELMOE_SELFTEST_OUT")
    if out:
        with open(out, "w") as handle:
            json.dump(runs, handle)
    good, bad = runs
    progress = int(os.environ["ELMOE_SELFTEST_PROGRESS"])
    assert good["done"] == 1, f"the self-test did not finish in {LIMIT} cycles: {good}"
    assert (good["passed"], good["mismatches"], good["timed_out"], good["error"],
            good["progress"]) == (1, 0, 0, 0, progress), good
    assert bad["done"] == 1 and bad["passed"] == 0 and bad["mismatches"] == 1, bad
