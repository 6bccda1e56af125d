"""The self-test program of the FPGA bitstream: one command stream over every PE that touches every
data path of the accelerator (a cache install and a slot load of MSB slices from HB, LSB slices
from LPDDR, whole codes from HB, activations from the input memory, the MAC array in all four
modes, with and without activation reuse, COMBINE of MSB and LSB partials, a barrier), random
weights and activations from a seed, and the results the golden executor computes for it.

The hardware checks its output memories against :attr:`SelfTestProgram.expected`; the images here
are what the block-RAM dies and the command and input memories are preloaded with.
"""

from dataclasses import dataclass

import numpy as np

from hw.isa import ErrorCode, as_words, assemble
from hw.params import TopParams
from sw_model.golden.top import execute, Images, validate

__all__ = ["SelfTestProgram", "selftest_program", "OUTPUT_WORDS"]

#: OMEM words every PE writes: MSB, LSB, their COMBINE, two FULL groups, one DRAFT.
OUTPUT_WORDS = 6


@dataclass
class SelfTestProgram:
    params: TopParams
    stream: list          # hw.isa commands
    words: list           # the stream as 128-bit command words
    images: Images        # initial memories (HB per PE, LPDDR, IMEM)
    expected: list        # (pe, OMEM address, word) the hardware must hold at the end
    error: ErrorCode      # the status it must end with
    progress: int

    def text(self):
        return "\n".join(c.text() for c in self.stream)


def _stream_text(p):
    """The program, PE by PE; addresses from ``p`` (a :class:`TopParams`)."""
    B = p.mac.beats_per_group
    raw_hb = p.slot_region_words                    # first HB word outside the slot region
    lines = []
    for pe in range(p.pes):
        lines += [
            f"CACHE cop=INSTALL layer=0 expert={pe}",
            f"LOAD_SLOT pe={pe} slice=MSB wmem=0 count={B} layer=0 expert={pe} offset=0",
            f"LOAD_LPDDR pe={pe} slice=LSB wmem={B} count={B} lpddr={pe * 4 * B}",
            f"LOAD_HB pe={pe} slice=WHOLE wmem={2 * B} count={2 * B} hb={raw_hb}",
            f"LOAD_ACT pe={pe} amem=0 count={2 * B} imem={pe * 2 * B}",
            f"MAC pe={pe} mode=MSB reuse=0 wmem=0 amem=0 omem=0 count=1",
            f"MAC pe={pe} mode=LSB reuse=0 wmem={B} amem=0 omem=1 count=1",
            f"COMBINE pe={pe} a=0 b=1 dst=2 count=1",
            f"MAC pe={pe} mode=FULL reuse=0 wmem={2 * B} amem=0 omem=3 count=2",
            f"MAC pe={pe} mode=DRAFT reuse=1 wmem=0 amem={B} omem=5 count=1",
        ]
    lines += ["BARRIER phase=1", "END"]
    return "\n".join(lines)


def selftest_program(params, seed=1):
    """The self-test program for ``params`` (a :class:`TopParams`), random data from ``seed``."""
    if not isinstance(params, TopParams):
        raise TypeError(f"params must be a TopParams, not {params!r}")
    p = params
    stream = assemble(_stream_text(p))
    validate(stream, p)
    rng = np.random.default_rng(seed)
    B = p.mac.beats_per_group
    images = Images.empty(p)

    def words(count, bits):
        return [int.from_bytes(rng.bytes(bits // 8), "little") for _ in range(count)]

    for pe in range(p.pes):
        # every slot holds data: whichever slot INSTALL picks, its MSB slices are random
        for address, word in enumerate(words(p.slot_region_words, p.hb.data_width)):
            images.hb[pe][address] = word
        for i, word in enumerate(words(2 * B, p.hb.data_width)):
            images.hb[pe][p.slot_region_words + i] = word
    for address, word in enumerate(words(4 * B * p.pes, p.lpddr.data_width)):
        images.lpddr[address] = word
    for address, word in enumerate(words(2 * B * p.pes, p.mac.act_beat_bits)):
        images.imem[address] = word
    result = execute(stream, p, images)
    if result.error != ErrorCode.NONE:
        raise AssertionError(f"the self-test program fails on the golden executor: "
                             f"{result.error.name} at command {result.error_index}")
    expected = [(pe, address, result.images.omem[pe].get(address, 0))
                for pe in range(p.pes) for address in range(OUTPUT_WORDS)]
    return SelfTestProgram(p, stream, as_words(stream), images, expected, result.error,
                           result.progress)
