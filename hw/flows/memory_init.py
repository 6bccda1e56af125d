"""Fast memory initialisation in Amaranth's RTLIL back end (the text it writes is unchanged).

Amaranth 0.5 writes a memory's initial contents (``$meminit_v2``) by making one netlist bit per
memory bit and formatting them one by one. The accelerator's memories hold millions of bits (the
demo top: about 8.7 million), so that loop is most of a conversion: the demo top converts in 20 s
with the writer below and 45 s without. :func:`install` replaces the one method that does it with one that formats the same constant
directly from the rows. It installs only after checking, on a small design with signed and unsigned
memories, non-zero and negative initial values, that both write byte-identical RTLIL; if they
differ (another Amaranth version), the original stays and a warning says so. Conversions are
otherwise untouched.
"""

import contextlib
import logging

from amaranth.back import rtlil

__all__ = ["install", "installed", "zero_init_left_out", "zero_init_omitted"]

log = logging.getLogger(__name__)

_ORIGINAL = rtlil.ModuleEmitter.emit_memory
_state = {"checked": False, "installed": False, "omit_zero": False}


def _emit_memory(self, cell_idx, cell):
    """``ModuleEmitter.emit_memory``, with the ``DATA`` constant (rows in order, each row least
    significant bit first; written most significant bit first) built from the rows at once; no
    constant at all for an all-zero memory inside :func:`zero_init_left_out`."""
    if not cell.depth or not cell.width:
        return _ORIGINAL(self, cell_idx, cell)
    if _state["omit_zero"] and not any(cell.init):
        return
    mask = (1 << cell.width) - 1
    bits = "".join(format(row & mask, f"0{cell.width}b") for row in reversed(cell.init))
    memory_info = self.memories[cell_idx]
    self.builder.cell("$meminit_v2", ports={
        "ADDR": self.sigspec(),
        "DATA": f"{len(bits)}'{bits}",
        "EN": self.sigspec(rtlil._nir.Value.ones(cell.width)),
    }, parameters={
        "MEMID": memory_info.memid,
        "ABITS": 0,
        "WIDTH": cell.width,
        "WORDS": cell.depth,
        "PRIORITY": 0,
    }, src_loc=cell.src_loc)


def _probe():
    """A small design whose memories exercise every case of the initial contents."""
    from amaranth import Module, Signal, signed, unsigned
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class Probe(wiring.Component):
        addr: In(3)
        a: Out(13)
        b: Out(signed(7))
        c: Out(1)

        def elaborate(self, platform):
            m = Module()
            memories = [
                Memory(shape=unsigned(13), depth=5, init=[0, 1, 0x1FFF, 0x1234, 7]),
                Memory(shape=signed(7), depth=8, init=[-64, 63, -1, 0, 5, -5]),
                Memory(shape=unsigned(1), depth=3, init=[1]),
            ]
            for name, memory, out in zip("abc", memories, (self.a, self.b, self.c)):
                m.submodules[f"mem_{name}"] = memory
                port = memory.read_port()
                m.d.comb += [port.addr.eq(self.addr), out.eq(port.data)]
            unused = Signal()
            m.d.sync += unused.eq(~unused)
            return m

    return Probe()


def install():
    """Use the fast initial-contents writer if it writes exactly what Amaranth's own does (checked
    once per process); returns whether it is in use."""
    if _state["checked"]:
        return _state["installed"]
    _state["checked"] = True
    expected = rtlil.convert(_probe(), name="probe", emit_src=False)
    rtlil.ModuleEmitter.emit_memory = _emit_memory
    try:
        same = rtlil.convert(_probe(), name="probe", emit_src=False) == expected
    except Exception:           # noqa: BLE001 -- any failure means: keep Amaranth's own
        same = False
    if not same:
        rtlil.ModuleEmitter.emit_memory = _ORIGINAL
        log.warning("this Amaranth (%s) writes memory contents differently; large conversions "
                    "keep its own (slower) writer", _amaranth_version())
    _state["installed"] = same
    return same


def installed():
    """Whether :func:`install` put the fast writer in place."""
    return _state["installed"]


def _amaranth_version():
    import amaranth
    return amaranth.__version__


def zero_init_omitted():
    """Whether conversions now leave all-zero initial contents out (inside
    :func:`zero_init_left_out`): the Verilog differs, so caches of it key on this too."""
    return _state["omit_zero"]


@contextlib.contextmanager
def zero_init_left_out():
    """Within this context (one thread), a memory whose initial contents are all zero gets no
    initial contents in the RTLIL, so its Verilog has no ``initial`` block: the array powers up as
    the target's memories do (zero in Verilator and in FPGA block RAM, undefined in an ASIC SRAM).
    Yosys spends time that grows faster than the bits on writing a zero constant row by row: the
    paper machine's 32 Mbit input memory alone takes minutes. Needs :func:`install`."""
    if not install():
        raise RuntimeError("zero_init_left_out needs the fast memory writer (memory_init.install)")
    previous, _state["omit_zero"] = _state["omit_zero"], True
    try:
        yield
    finally:
        _state["omit_zero"] = previous
