"""Formal harness of the command processor (:mod:`hw.command_processor`) at a small machine.

:class:`ProcessorContract`: the host writes any command words into the command memory while the
processor is idle and starts it with any length; the PEs take commands and finish them whenever
they like, the cache controller answers any beats. The stream rules are asserted on ``pe_cmd`` and
``cache_req``; and the processor promises that an illegal command stops execution before any
memory changes:

* once it has reported an error, it hands no command to a PE and no request to the cache until the
  next start (so the illegal command and everything after it have no effect);
* every command it does hand to a PE has a known opcode, a PE index below ``pes``, a nonzero
  ``count`` and no bit set outside its fields (checked here from the ISA's field table, not from the
  processor's own checker).
"""

from dataclasses import replace

from amaranth import *

from hw.command_processor import CommandProcessor, command_layout
from hw.formal.harness import FormalHarness
from hw.isa import COMMAND_BITS, OPCODE_BITS, ErrorCode, Opcode
from hw.params import TOP_DEFAULT

__all__ = ["SMALL", "ProcessorContract"]

#: The default machine with one PE and a command memory of 4 words.
SMALL = replace(TOP_DEFAULT.with_pes(1), command_words=4)

#: The opcodes the processor hands to a PE.
PE_OPCODES = (Opcode.LOAD_HB, Opcode.LOAD_LPDDR, Opcode.LOAD_SLOT, Opcode.WRITE_SLOT,
              Opcode.LOAD_ACT, Opcode.MAC, Opcode.COMBINE, Opcode.MAC_DQ)


def _state_codes(state):
    """``{state name: code}`` of an Amaranth FSM's state signal (from its decoder)."""
    codes = {}
    for code in range(1 << len(state)):
        try:
            codes[state.decoder(code).rsplit("/", 1)[0]] = code
        except KeyError:            # a code no state has
            pass
    return codes


class ProcessorContract(FormalHarness):
    """The processor's contract; broken: the harness demands that a PE command's ``count`` be at
    least 2, which legal commands need not meet."""

    SMALL = SMALL

    def build(self, m, platform):
        p = self.params
        dut = CommandProcessor(p)
        write = dut.cmem.write_port()
        self.instantiated = self.instantiate(m, "dut", dut, platform)
        host, status = dut.host, dut.host.status
        m.d.comb += [write.addr.eq(self.free(len(write.addr), "cmem_addr")),
                     write.data.eq(self.free(COMMAND_BITS, "cmem_data")),
                     write.en.eq(self.free(1, "cmem_en") & ~status.busy),
                     host.start.eq(self.free(1, "start") & ~status.busy),
                     host.length.eq(self.free(len(host.length), "length")),
                     dut.pe_idle.eq(self.free(p.pes, "pe_idle"))]
        for k in range(p.pes):
            self.stream_out(m, dut.pe_cmd[k], f"pe_cmd[{k}]")
        self.stream_out(m, dut.cache_req, "cache_req")
        self.stream_in(m, dut.cache_resp, "cache_resp")

        # -- after an error, nothing more reaches a PE or the cache until the next start
        # (the error stays reported until the next start)
        dispatch = Cat(dut.pe_cmd[k].valid for k in range(p.pes)).any() | dut.cache_req.valid
        with m.If(status.error != ErrorCode.NONE):
            self.check(m, "assert", ~dispatch,
                       "after an illegal command nothing reaches a PE or the cache")
            state = self.instantiated["cp_fsm_state"]
            code = _state_codes(state)
            self.check(m, "assert", (state == code["Idle"]) | (state == code["Drain"]),
                       "invariant: an error is reported only while draining or idle")
        ran = Signal()                  # a command reached the PE since the last start
        with m.If(host.start):
            m.d.sync += ran.eq(0)
        with m.Elif(dut.pe_cmd[0].valid & dut.pe_cmd[0].ready):
            m.d.sync += ran.eq(1)
        self.check(m, "cover", status.done & (status.error == ErrorCode.BAD_FIELD) & ran,
                   "a command runs, then a later one is illegal")

        # -- what reaches a PE is legal by the ISA's field table
        word = self.instantiated["word"]
        opcode = word[:OPCODE_BITS]
        for k in range(p.pes):
            with m.If(dut.pe_cmd[k].valid):
                self.check(m, "assert", Cat(opcode == op for op in PE_OPCODES).any(),
                           "a PE command has a PE opcode")
                with m.Switch(opcode):
                    for op in PE_OPCODES:
                        with m.Case(op):
                            view = command_layout(op)(word)
                            self.check(m, "assert", (view.pe == k) & (view.reserved == 0),
                                       "a PE command goes to its PE and sets no bit outside "
                                       "its fields")
                            self.check(m, "assert", view.count >= (2 if self.broken else 1),
                                       "a PE command has a nonzero count")
