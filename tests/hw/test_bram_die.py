"""The block-RAM die (the FPGA stand-in for a DRAM die) behind a memory channel, in Amaranth's
simulator with and without pressure: it serves the channel contract; bad arguments are named."""

import random

import pytest

from hw.bram_die import BramDie
from hw.params import HbInterfaceParams, MemOp, MacArrayParams
from sim.mem_channel.traffic import (PortDriver, covering, error_requests, expected_count,
                                     random_bursts, run_in_amaranth)
from sw_model.golden.mem_channel import GoldenMemory, Request
from sim.amaranth_streams import PRESSURE
from sim.dram_model import HbSystem


SMALL = HbInterfaceParams(channels=2, data_width=32, words=256, address_width=9, max_length=16,
                          die_burst=4, outstanding=4, read_buffer=16, write_buffer=8, tag_width=4)


@pytest.mark.parametrize("pressure", PRESSURE)
def test_bram_die_serves_the_channel_contract(pressure, seed):
    """Preloaded words read back; random writes and reads, bursts and bad requests match the
    golden memory, and the final arrays equal it."""
    rng = random.Random(seed)
    p = SMALL
    images = [[rng.getrandbits(p.data_width) for _ in range(40)] for _ in range(p.channels)]
    traffic = []
    for c in range(p.channels):
        reqs = [Request(MemOp.READ, 0, 16, 1), Request(MemOp.READ, 24, 16, 2)]
        reqs += covering(p, MemOp.WRITE, 64, rng, first=64)
        reqs += random_bursts(p, MemOp.READ, 12, 5, rng, p.words)
        reqs += [request for _name, request in error_requests(p, rng)]
        reqs += random_bursts(p, MemOp.WRITE, 12, 6, rng, p.words)
        reqs += covering(p, MemOp.READ, p.words, rng)
        traffic.append(reqs)
    system = HbSystem(p, dies=[BramDie(p, image) for image in images])
    drivers = [PortDriver(p, reqs, seed=seed + c, idle=PRESSURE[pressure][0],
                          stall=PRESSURE[pressure][1])
               for c, reqs in enumerate(traffic)]
    counts = [expected_count(p, reqs) for reqs in traffic]

    async def backdoor(ctx, when):
        if when == "after":
            return [[ctx.get(die.storage.data[a]) for a in range(p.words)]
                    for die in system.dies]

    arrays = run_in_amaranth(system, drivers, counts, max_cycles=20 * sum(counts) + 4000,
                             backdoor=backdoor)
    for driver, array, image in zip(drivers, arrays, images):
        golden = GoldenMemory(p, dict(enumerate(image)))
        assert driver.check(golden) >= p.words
        assert array == [golden.words.get(a, 0) for a in range(p.words)]


def test_bram_die_rejects_bad_arguments():
    with pytest.raises(ValueError, match="init holds 257 words, more than the die's 256"):
        BramDie(SMALL, [0] * 257)
    with pytest.raises(TypeError, match="port must be a MemPortParams"):
        BramDie(MacArrayParams())
