"""The self-test core: the accelerator runs one preloaded command stream, then its output memories
are compared with the expected results held in a ROM. What the ULX3S bitstream runs, and what the
test suite runs in Verilator.

:class:`SelfTestChecker` is the sequencer and comparator, independent of how the accelerator is
assembled: holding the accelerator's host control port (``host``, a flipped
:class:`hw.command_processor.HostControlSignature`), it pulses ``start`` with the stream's length,
waits for ``status.done`` (or a timeout), then reads every expected output word through the PEs'
output-memory read ports (``out_addr``, ``out_en`` out; ``out_data[p]`` in) and compares it with
the ROM. :class:`SelfTest` puts it around the accelerator top (:class:`hw.host_top.HostTop`:
the top with preloaded command and input memories and read ports on its output memories) with a
block-RAM die (:class:`hw.bram_die.BramDie`) on every memory link, running the program of
:func:`sw_model.compiler.selftest_program.selftest_program`.

Ports of the checker: ``done`` (finished: checked, or timed out), ``passed`` (finished with every
word equal, the expected error code and progress, no timeout), ``mismatches`` (words that
differed), ``timed_out``, ``corrupt`` (in: when high, the first expected word is compared with one
bit flipped, so the test must fail: the board maps it to a button, the tests use it to show the
check can fail).
"""

from amaranth import *
from amaranth.lib import data, memory
from amaranth.lib.wiring import In, Out, connect

from hw.bram_die import BramDie
from hw.command_processor import HostControlSignature
from hw.component_args import CheckedComponent
from hw.host_top import HostTop, image_list
from hw.isa import ERROR_BITS

__all__ = ["SelfTestChecker", "SelfTest", "expected_layout"]


def expected_layout(pes, output_words, word_bits):
    return data.StructLayout({
        "pe": unsigned(max(1, (pes - 1).bit_length())),
        "address": unsigned(max(1, (output_words - 1).bit_length())),
        "word": unsigned(word_bits),
    })


class SelfTestChecker(CheckedComponent):
    """Sequencer and comparator of the self-test (see the module docstring).

    Parameters
    ----------
    host : HostControlSignature
        The accelerator's control port; the checker's ``host`` is its flip.
    pes, output_words, word_bits : the output memories (one per PE) the results are read from
    length : commands in the stream (driven on ``host.length`` with ``host.start``)
    expected : sequence of ``(pe, address, word)``
    expected_error, expected_progress : the status the stream must end with
    timeout : cycles the stream may take before the test fails
    """

    @classmethod
    def check_arguments(cls, host, pes, output_words, word_bits, length, expected,
                        expected_error=0, expected_progress=None, timeout=1 << 22):
        """The expected words as a list of ``(pe, address, word)`` tuples of ints."""
        if not isinstance(host, HostControlSignature):
            raise TypeError(f"host must be a HostControlSignature, not {host!r}")
        width = Shape.cast(host.members["length"].shape).width
        if not 0 < length < 1 << width:
            raise ValueError(f"a stream of {length} commands does not fit the host port's "
                             f"{width}-bit length")
        if not len(expected):
            raise ValueError("a self-test needs at least one expected output word")
        expected = [tuple(int(v) for v in e) for e in expected]
        for pe, address, word in expected:
            if not (0 <= pe < pes and 0 <= address < output_words and 0 <= word < 1 << word_bits):
                raise ValueError(f"expected word (pe {pe}, address {address}) is outside {pes} "
                                 f"PEs x {output_words} words of {word_bits} bits")
        return expected

    def __init__(self, host, pes, output_words, word_bits, length, expected,
                 expected_error=0, expected_progress=None, timeout=1 << 22):
        expected = self.check_arguments(host, pes, output_words, word_bits, length, expected,
                                        expected_error, expected_progress, timeout)
        self.layout = expected_layout(pes, output_words, word_bits)
        self.rom = memory.Memory(shape=self.layout, depth=len(expected), init=[
            {"pe": pe, "address": a, "word": w} for pe, a, w in expected])
        self.pes, self.stream_length = pes, length
        self.expected_error = expected_error
        self.expected_progress = length if expected_progress is None else expected_progress
        self.timeout = timeout
        super().__init__({
            "host": In(host),
            "out_addr": Out(self.layout["address"].shape),
            "out_en": Out(pes),
            "out_data": In(word_bits).array(pes),
            "corrupt": In(1),
            "done": Out(1),
            "passed": Out(1),
            "mismatches": Out(16),
            "timed_out": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = self.rom
        rom = self.rom.read_port(domain="comb")
        index = Signal(range(self.rom.depth + 1))
        entry = Signal(self.layout)
        wait = Signal(range(max(self.timeout, 17) + 1))
        first = Signal()
        host = self.host
        m.d.comb += [rom.addr.eq(index), host.length.eq(self.stream_length)]
        ok_status = ((host.status.error == self.expected_error)
                     & (host.status.progress == self.expected_progress))
        with m.FSM(name="selftest"):
            with m.State("settle after reset"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == 16):
                    m.d.sync += wait.eq(0)
                    m.next = "start the stream"
            with m.State("start the stream"):
                m.d.comb += host.start.eq(1)
                m.next = "run the stream"
            with m.State("run the stream"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(host.status.done):
                    m.next = "read an expected word"
                with m.Elif(wait == self.timeout):
                    m.d.sync += self.timed_out.eq(1)
                    m.next = "finished"
            with m.State("read an expected word"):
                m.d.sync += [entry.eq(rom.data), first.eq(index == 0)]
                m.d.comb += [self.out_addr.eq(rom.data.address),
                             self.out_en.eq(1 << rom.data.pe)]
                m.next = "compare it"
            with m.State("compare it"):
                got = Signal(self.layout["word"].shape)
                m.d.comb += got.eq(Array(self.out_data)[entry.pe])
                want = entry.word ^ (self.corrupt & first)
                with m.If(got != want):
                    m.d.sync += self.mismatches.eq(self.mismatches + (self.mismatches != 0xFFFF))
                m.d.sync += index.eq(index + 1)
                with m.If(index == self.rom.depth - 1):
                    m.next = "finished"
                with m.Else():
                    m.next = "read an expected word"
            with m.State("finished"):
                m.d.comb += [self.done.eq(1),
                             self.passed.eq(~self.timed_out & (self.mismatches == 0) & ok_status)]
        return m


class SelfTest(CheckedComponent):
    """The accelerator (:class:`hw.host_top.HostTop` for ``program.params``) running ``program``
    (a :class:`sw_model.compiler.selftest_program.SelfTestProgram`) from its preloaded memories,
    checked by a :class:`SelfTestChecker`.

    Ports: ``done``, ``passed``, ``mismatches``, ``timed_out``, ``corrupt`` as on the checker;
    ``error`` and ``progress`` from the top's status, ``cycles`` the top's cycle count.
    """

    @classmethod
    def check_arguments(cls, program, timeout=1 << 22):
        """``(host control signature, HB die images, LPDDR die image)``."""
        p = program.params
        HostTop.check_arguments(p, program.words, program.images.imem)
        hb = [image_list(program.images.hb[k], p.hb.words, f"HB channel {k}")
              for k in range(p.pes)]
        lpddr = image_list(program.images.lpddr, p.lpddr.words, "LPDDR")
        host = HostControlSignature(p)
        SelfTestChecker.check_arguments(host, p.pes, p.output_words, p.result_bits,
                                        len(program.words), program.expected,
                                        int(program.error), program.progress, timeout)
        return host, hb, lpddr

    def __init__(self, program, timeout=1 << 22):
        host, hb, lpddr = self.check_arguments(program, timeout)
        p = self.params = program.params
        self.program = program
        self.top = HostTop(p, program.words, program.images.imem)
        self.hb_dies = [BramDie(p.hb, image) for image in hb]
        self.lpddr_die = BramDie(p.lpddr, lpddr)
        self.checker = SelfTestChecker(
            host, p.pes, p.output_words, p.result_bits, len(program.words),
            program.expected, int(program.error), program.progress, timeout)
        super().__init__({
            "corrupt": In(1),
            "done": Out(1),
            "passed": Out(1),
            "mismatches": Out(16),
            "timed_out": Out(1),
            "error": Out(ERROR_BITS),
            "progress": Out(self.top.host.status.progress.shape()),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.top = top = self.top
        m.submodules.checker = checker = self.checker
        for k in range(p.pes):
            m.d.comb += [top.omem_addr[k].eq(checker.out_addr),
                         top.omem_en[k].eq(checker.out_en[k]),
                         checker.out_data[k].eq(top.omem_data[k])]
            m.submodules[f"hb_die{k}"] = self.hb_dies[k]
            connect(m, top.hb_die[k], self.hb_dies[k])
        m.submodules.lpddr_die = self.lpddr_die
        connect(m, top.lpddr_die, self.lpddr_die)
        connect(m, top.host, checker.host)
        m.d.comb += [
            checker.corrupt.eq(self.corrupt),
            self.done.eq(checker.done), self.passed.eq(checker.passed),
            self.mismatches.eq(checker.mismatches), self.timed_out.eq(checker.timed_out),
            self.error.eq(top.host.status.error), self.progress.eq(top.host.status.progress),
            self.cycles.eq(top.host.cycles),
        ]
        return m

