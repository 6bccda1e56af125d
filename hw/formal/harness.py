"""What every formal harness shares: free inputs, the reset guard, registered copies of the last
cycle, the stream rules, and named properties.

A harness is an ``Elaboratable`` that instantiates one block, drives every input from a free
value (``AnySeq``, which the solver chooses anew each cycle), assumes what the block's contract
promises about its inputs, and asserts what it promises about its outputs. Its ports are only the
clock and the reset; the reset stays a free input, so every property that looks one cycle back is
guarded by :attr:`FormalHarness.settled` ("the reset was low last cycle"). Amaranth 0.5 has no
``Past``: :meth:`FormalHarness.past` keeps a registered copy instead.

Properties are named: :meth:`FormalHarness.check` gives each assertion, assumption and cover a
source location ``property:<index>`` (what SymbiYosys prints when one fails or is reached) and
records its name under that index (:attr:`FormalHarness.properties`), so a report can say which
one it was.
"""

from amaranth import *
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover, Fragment, MemoryInstance

__all__ = ["FormalHarness", "internal_signals", "memory_words", "AnyConst", "AnySeq"]


def internal_signals(fragment):
    """``{name: signal}`` of the signals a block's own statements read or drive (not those of its
    submodules): the pipeline registers a harness states its invariants on. A name used by two
    different signals maps to None, so a harness cannot pick the wrong one silently."""
    found = {}
    for statements in fragment.statements.values():
        for stmt in statements:
            for sig in stmt._lhs_signals() | stmt._rhs_signals():
                other = found.get(sig.name, sig)
                found[sig.name] = sig if other is sig else None
    return found


def memory_words(fragment, path=()):
    """Replace every memory in ``fragment`` (an elaborated block, before it is converted) by
    registers with the same ports and return ``{path: [word signals]}`` (``path`` the names of
    the submodules down to the memory), so a harness can state invariants on a memory's contents.

    The registers behave as the memory does: a write port writes its enabled granules at the
    clock edge; a synchronous read port, when enabled, registers the addressed word, or (when it
    is transparent for a write port writing that address) the word as written; an asynchronous
    read port reads the addressed word. Yosys's ``memory_map`` turns a memory into the same
    registers; here they get names the harness can read. (The ports are read from the
    ``MemoryInstance``'s own fields: Amaranth 0.5 has no public accessor for them.)"""
    found = {}
    for index, (sub, name, src_loc) in enumerate(fragment.subfragments):
        if isinstance(sub, MemoryInstance):
            model, words = _memory_as_registers(sub, name)
            fragment.subfragments[index] = (model, name, src_loc)
            found[path + (name,)] = words
        else:
            found.update(memory_words(sub, path + (name,)))
    return found


def _memory_as_registers(memory, name):
    data = memory._data
    width = Shape.cast(data.shape).width
    words = []
    for i, init in enumerate(data.init):
        init = init if isinstance(init, int) else Const.cast(data.shape.const(init)).value
        words.append(Signal(width, init=init, name=f"{name}_word_{i}"))
    m = Module()

    def written(port, address, word):
        """``word`` as ``port`` leaves it when it writes ``address``."""
        size = port._granularity
        return Cat(Mux(port._en[g] & (port._addr == address), port._data[g * size:(g + 1) * size],
                       word[g * size:(g + 1) * size]) for g in range(len(port._en)))

    for i, word in enumerate(words):
        after = {}                    # per clock domain: the word after its write ports
        for port in memory._write_ports:
            after[port._domain] = written(port, i, after.get(port._domain, word))
        for domain, value in after.items():
            m.d[domain] += word.eq(value)
    for port in memory._read_ports:
        read = Array(words)[port._addr] if len(words) > 1 else words[0]
        if port._domain == "comb":
            m.d.comb += port._data.eq(read)
            continue
        for idx in port._transparent_for:
            read = written(memory._write_ports[idx], port._addr, read)
        with m.If(port._en):
            m.d[port._domain] += port._data.eq(read)
    return Fragment.get(m, None), words


class FormalHarness(Elaboratable):
    """Base of the harnesses: ``params`` the block's parameters (default the harness's
    :attr:`SMALL`). ``broken`` selects the harness's deliberately broken variant (each
    harness says what it breaks), which must fail with a counterexample."""

    #: The block's parameters when the harness is built without any (set by each harness).
    SMALL = None

    def __init__(self, params=None, broken=False):
        self.params = self.SMALL if params is None else params
        self.broken = bool(broken)
        #: ``{"property:<index>": (kind, name)}`` of every assertion, assumption and cover.
        self.properties = {}

    # -- helpers used while elaborating ----------------------------------------------------------
    def setup(self, m):
        """Call first in ``elaborate``: creates :attr:`settled` (the reset was low last cycle)."""
        self.settled = Signal()
        m.d.sync += self.settled.eq(1)

    def past(self, m, value, name=None):
        """A registered copy of ``value``: its value in the last cycle (meaningful when
        :attr:`settled`)."""
        copy = Signal.like(value, name=name, init=0) if isinstance(value, Signal) else \
            Signal(Value.cast(value).shape(), name=name)
        m.d.sync += copy.eq(value)
        return copy

    def history(self, m, value, cycles, name):
        """Registered copies of ``value`` 1, 2, ... ``cycles`` cycles ago."""
        copies = []
        for i in range(cycles):
            copies.append(self.past(m, copies[-1] if copies else value, f"{name}_{i + 1}"))
        return copies

    def free(self, shape, name=None):
        """A value the solver chooses anew every cycle."""
        sig = Signal(shape, name=name)
        self._free.append(sig)
        return sig

    def check(self, m, kind, test, name):
        """Add an assertion (``kind`` "assert"), assumption ("assume") or cover ("cover")."""
        stmt = {"assert": Assert, "assume": Assume, "cover": Cover}[kind](test, name)
        # the location SymbiYosys reports: unique per property, mapped back to its name
        stmt.src_loc = ("property", len(self.properties))
        self.properties[f"property:{len(self.properties)}"] = (kind, name)
        m.d.comb += stmt

    def drive_free(self, m):
        """Call last in ``elaborate``: drives every :meth:`free` signal from ``AnySeq``."""
        for sig in self._free:
            m.d.comb += sig.eq(AnySeq(len(sig)))

    def stream_in(self, m, stream, name, valid=None, payload=None):
        """Drive an input ``stream`` of the block from ``valid`` and ``payload`` (free values when
        None) and assume the stream rules for it: a valid beat stays valid, with the same payload,
        until it is taken."""
        valid = self.free(1, f"{name}_valid_in") if valid is None else valid
        if payload is None:
            payload = self.free(len(Value.cast(stream.payload)), f"{name}_payload_in")
        m.d.comb += [stream.valid.eq(valid), stream.payload.eq(payload)]
        self.stream_rules(m, "assume", name, stream.valid, stream.ready,
                          Value.cast(stream.payload))

    def stream_out(self, m, stream, name, ready=None, payload=None):
        """Drive an output ``stream``'s ready from ``ready`` (free when None) and assert the
        stream rules for it (on ``payload`` instead of the stream's, if given)."""
        ready = self.free(1, f"{name}_ready_in") if ready is None else ready
        m.d.comb += stream.ready.eq(ready)
        payload = Value.cast(stream.payload) if payload is None else payload
        self.stream_rules(m, "assert", name, stream.valid, stream.ready, payload)

    def stream_rules(self, m, kind, name, valid, ready, payload):
        """Assume or assert (``kind``) the rules of a stream: a beat offered and not taken is
        offered again in the next cycle, with the same payload; assertions come with a cover of a
        stalled beat that is then taken."""
        stalled = self.past(m, valid & ~ready, f"{name}_was_stalled")
        held = self.past(m, payload, f"{name}_past_payload")
        with m.If(self.settled & stalled):
            self.check(m, kind, valid, f"{name}: valid held until ready")
            self.check(m, kind, payload == held, f"{name}: payload stable while stalled")
        if kind == "assert":
            self.check(m, "cover", self.settled & stalled & valid & ready,
                       f"{name}: a stalled beat is taken")

    def elaborate(self, platform):
        self._free = []
        self.properties = {}
        m = Module()
        self.setup(m)
        self.build(m, platform)
        self.drive_free(m)
        return m

    def build(self, m, platform):
        """The harness itself (subclasses)."""
        raise NotImplementedError

    @staticmethod
    def instantiate(m, name, dut, platform):
        """Elaborate ``dut`` now as submodule ``name`` and return its internal signals (see
        :func:`internal_signals`)."""
        fragment = Fragment.get(dut, platform)
        m.submodules[name] = fragment
        return internal_signals(fragment)
