"""The command processor: fetches the binary command stream (:mod:`hw.isa`) from its command memory,
checks every command exactly as :func:`hw.isa.check_command` and :func:`hw.isa.check_dynamic` do,
runs cache requests and barriers itself and hands PE commands, with every address resolved, to the
PEs' queues.

Ports:

* ``host``: the host's control port (:class:`HostControlSignature`): ``start`` with ``length``
  runs the commands in the command memory ``cmem`` (written by the host; the simulation runner
  uses the back door); ``status``, ``cycles`` and ``phase_cycles`` report.
* ``pe_cmd[p]`` (out): PE command streams (:func:`hw.pe.pe_command_layout`); ``pe_idle`` (in):
  one bit per PE.
* ``cache_req``/``cache_resp``: the expert-cache controller's streams (:mod:`hw.expert_cache`).

The processor mirrors the cache's slot assignment in a slot table (``slot_valid``, ``slot_pinned``,
``slot_layer_<s>``, ``slot_expert_<s>``) from the controller's responses: it resolves the key of
LOAD_SLOT/WRITE_SLOT to an HB address and reports SLOT_NOT_INSTALLED. A PE command is only
dispatched once it passed every check, and on an error the processor stops dispatching and waits
for the PEs to finish what they have: the memories are as after the command before the bad one.

Output fields, every case:

* ``host.status``: after reset ``busy``, ``done``, ``error``, ``progress``, ``phase`` are all 0.
  A ``start`` while idle sets ``busy`` 1 and ``done``, ``error``, ``phase`` 0 (and ``cycles``,
  ``phase_cycles``) from the next cycle; a ``start`` while ``busy`` is ignored. While running,
  ``progress`` is the index of the command being fetched, checked or executed. When the stream
  stops and every PE is idle, ``busy`` falls and ``done`` rises together, and every field then holds
  until the next ``start``: ``error`` the :class:`hw.isa.ErrorCode` (``NONE`` after END);
  ``progress`` END's index (the commands completed), the failing command's index on an error, or
  ``length`` with ``NO_END``; ``phase`` the last BARRIER's ``phase`` (0 if none ran).
* ``host.cycles``: the cycles ``busy`` was 1 in the last run (counting on while it runs);
  ``host.phase_cycles[k]``: those of them in phase ``k``, so they sum to ``cycles``.
* ``pe_cmd[p]``: ``valid`` only for a PE command addressed to PE ``p`` that passed every check;
  ``payload`` (:func:`hw.pe.pe_command_layout`): ``op`` (LOAD for LOAD_HB/LOAD_LPDDR/LOAD_SLOT,
  WRITE_HB for WRITE_SLOT, LOAD_ACT, MAC, COMBINE) and ``count``; LOAD_HB: ``ext`` = ``hb``,
  ``wmem``; LOAD_LPDDR: ``ext`` = ``lpddr``, ``wmem``, ``lpddr`` = 1; LOAD_SLOT / WRITE_SLOT:
  ``ext`` = ``slot * slot_words + offset``, ``wmem``; LOAD_ACT: ``amem``, ``imem``; MAC:
  ``mode``, ``reuse``, ``wmem``, ``amem``, ``omem``; MAC_DQ: as MAC and ``split``, ``first``,
  ``last``, ``acc``, ``scales``, ``tscale``; COMBINE: ``a``, ``b``, ``omem`` = ``dst``;
  every field an opcode does not list is 0.
* ``cache_req``: one request per CACHE command, ``op`` = ``cop``, ``layer``, ``expert``,
  ``vector`` = the command's ``vector`` shifted left by ``64 * chunk`` (cut to the controller's
  ``experts`` bits; the controller reads it for COUNT only), ``tag`` 0. ``cache_resp.ready`` is
  high while a CACHE command waits for its response beats; the last beat's status decides:
  ``BAD_OPCODE`` and above stop the stream with ``CACHE_ERROR``, anything else retires it.
"""

from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.component_args import ParamsComponent, expect_params
from hw.expert_cache import request_layout as cache_request_layout
from hw.expert_cache import response_layout as cache_response_layout
from hw.isa import (COMMAND_BITS, COUNT_CHUNK_BITS, ERROR_BITS, FIELDS, OPCODE_BITS, PHASES,
                    ErrorCode, Opcode, Slice)
from hw.params import CacheOp, CacheStatus, MacMode, TopParams, unsigned_width
from hw.pe import PeOp, pe_command_layout

__all__ = ["CommandProcessor", "HostControlSignature", "status_layout", "command_layout"]


def status_layout(params):
    """The ``status`` of :class:`HostControlSignature` for ``params`` (a TopParams)."""
    return data.StructLayout({
        "busy": unsigned(1),
        "done": unsigned(1),
        "error": unsigned(ERROR_BITS),
        "progress": unsigned(unsigned_width(params.command_words)),
        "phase": unsigned(unsigned_width(PHASES - 1)),
    })


class HostControlSignature(wiring.Signature):
    """The host's control port of the accelerator for ``params`` (a :class:`hw.params.TopParams`,
    :data:`hw.params.TOP_DEFAULT` when omitted), seen from the accelerator; a host holds it
    flipped. Components carry it as their member ``host`` (in Verilog the ports ``host__start``,
    ``host__length``, ``host__status``, ``host__cycles``, ``host__phase_cycles``). Members:

    * ``start`` (in): a one-cycle pulse while not ``status.busy`` runs the first ``length``
      commands of the command memory.
    * ``length`` (in): commands in the stream, at most ``params.command_words``.
    * ``status`` (out, :func:`status_layout`): ``busy``, ``done`` (held until the next start),
      ``error`` (:class:`hw.isa.ErrorCode`), ``progress`` (commands completed: on an error, the
      index of the illegal command), ``phase`` (BARRIER's last ``phase``).
    * ``cycles`` (out): cycles from start to done.
    * ``phase_cycles`` (out): ``phase_cycles[k]`` the cycles spent in phase ``k``.

    Signatures with the same members are equal.
    """

    def __init__(self, params=None):
        self.params = params = expect_params(params, TopParams)
        super().__init__({
            "start": In(1),
            "length": In(unsigned_width(params.command_words)),
            "status": Out(status_layout(params)),
            "cycles": Out(32),
            "phase_cycles": Out(data.ArrayLayout(32, PHASES)),
        })

    def __eq__(self, other):
        return type(other) is type(self) and self.members == other.members


def command_layout(op):
    """The ``lib.data`` layout of one opcode's command word, built from :data:`hw.isa.FIELDS`."""
    fields = {"opcode": unsigned(OPCODE_BITS)}
    fields.update({f.name: unsigned(f.width) for f in FIELDS[op]})
    used = sum(fields[name].width for name in fields)
    fields["reserved"] = unsigned(COMMAND_BITS - used)
    return data.StructLayout(fields)


class CommandProcessor(ParamsComponent):
    """The command processor for ``params`` (:data:`hw.params.TOP_DEFAULT` when omitted); see the
    module docstring."""

    PARAMS = TopParams

    def __init__(self, params=None):
        super().__init__(params)
        #: The command memory (the host's; tests and the runner write it through the back door).
        self.cmem = memory.Memory(shape=COMMAND_BITS, depth=self.params.command_words, init=[])

    def members(self, p):
        return {
            "host": Out(HostControlSignature(p)),
            "pe_cmd": Out(stream.Signature(pe_command_layout(p))).array(p.pes),
            "pe_idle": In(p.pes),
            "cache_req": Out(stream.Signature(cache_request_layout(p.cache))),
            "cache_resp": In(stream.Signature(cache_response_layout(p.cache))),
        }

    def elaborate(self, platform):
        p = self.params
        m = Module()
        m.submodules.cmem = cmem = self.cmem
        fetch = cmem.read_port()
        word = Signal(COMMAND_BITS)
        m.d.comb += word.eq(fetch.data)
        self._slot_table(m)
        check, op_is, pe_index, pe_payload, cache_payload = self._decode(m, word)

        host = self.host
        status = host.status
        pc = Signal(unsigned_width(p.command_words))
        m.d.comb += [fetch.addr.eq(pc), fetch.en.eq(0), status.progress.eq(pc)]
        all_idle = Signal()
        m.d.comb += all_idle.eq(self.pe_idle == (1 << p.pes) - 1)

        def stop(code):
            m.d.sync += status.error.eq(code)
            m.next = "Drain"

        def retire():
            m.d.sync += pc.eq(pc + 1)
            m.next = "Fetch"

        with m.FSM(name="cp_fsm"):
            with m.State("Idle"):
                with m.If(host.start):
                    m.d.sync += [pc.eq(0), status.error.eq(ErrorCode.NONE), status.busy.eq(1),
                                 status.done.eq(0), status.phase.eq(0), host.cycles.eq(0),
                                 host.phase_cycles.eq(0)]
                    m.next = "Fetch"
            with m.State("Fetch"):
                with m.If(pc >= host.length):
                    stop(ErrorCode.NO_END)
                with m.Else():
                    m.d.comb += fetch.en.eq(1)
                    m.next = "Decode"
            with m.State("Decode"):
                with m.If(check != ErrorCode.NONE):
                    stop(check)
                with m.Elif(op_is[Opcode.END]):
                    m.next = "Drain"
                with m.Elif(op_is[Opcode.BARRIER]):
                    m.next = "Barrier"
                with m.Elif(op_is[Opcode.CACHE]):
                    m.next = "Cache request"
                with m.Else():
                    for k in range(p.pes):
                        m.d.comb += [self.pe_cmd[k].valid.eq(pe_index == k),
                                     self.pe_cmd[k].payload.eq(pe_payload)]
                    with m.If(Cat(self.pe_cmd[k].ready & (pe_index == k)
                                  for k in range(p.pes)).any()):
                        retire()
            with m.State("Barrier"):
                with m.If(all_idle):
                    m.d.sync += status.phase.eq(command_layout(Opcode.BARRIER)(word).phase)
                    retire()
            with m.State("Cache request"):
                m.d.comb += [self.cache_req.valid.eq(1), self.cache_req.payload.eq(cache_payload)]
                with m.If(self.cache_req.ready):
                    m.next = "Cache response"
            with m.State("Cache response"):
                m.d.comb += self.cache_resp.ready.eq(1)
                resp = self.cache_resp.payload
                with m.If(self.cache_resp.valid & resp.last):
                    with m.If(resp.status >= CacheStatus.BAD_OPCODE):
                        stop(ErrorCode.CACHE_ERROR)
                    with m.Else():
                        retire()
            with m.State("Drain"):
                with m.If(all_idle):
                    m.d.sync += [status.busy.eq(0), status.done.eq(1)]
                    m.next = "Idle"
        with m.If(status.busy):
            m.d.sync += host.cycles.eq(host.cycles + 1)
            m.d.sync += host.phase_cycles[status.phase].eq(host.phase_cycles[status.phase] + 1)
        return m

    # -- the slot table: what the cache holds where, from its responses -----------------------------
    def _slot_table(self, m):
        c = self.params.cache
        self.slot_valid = Signal(c.slots)
        self.slot_pinned = Signal(c.slots)
        self.slot_layer = [Signal(c.layer_bits, name=f"slot_layer_{s}") for s in range(c.slots)]
        self.slot_expert = [Signal(c.expert_bits, name=f"slot_expert_{s}") for s in range(c.slots)]
        resp = self.cache_resp.payload
        ok = Signal()
        m.d.comb += ok.eq(self.cache_resp.valid & self.cache_resp.ready &
                          (resp.status == CacheStatus.OK))
        placed = ok & ((resp.op == CacheOp.INSTALL) | ((resp.op == CacheOp.SELECT) & ~resp.last))
        with m.If(ok & (resp.op == CacheOp.INVALIDATE_ALL)):
            m.d.sync += self.slot_valid.eq(self.slot_valid & self.slot_pinned)
        for s in range(c.slots):
            with m.If(resp.slot == s):
                with m.If(placed):
                    m.d.sync += [self.slot_valid[s].eq(1), self.slot_pinned[s].eq(0),
                                 self.slot_layer[s].eq(resp.layer),
                                 self.slot_expert[s].eq(resp.expert)]
                with m.If(ok & (resp.op == CacheOp.PIN)):
                    m.d.sync += self.slot_pinned[s].eq(1)
                with m.If(ok & (resp.op == CacheOp.UNPIN)):
                    m.d.sync += self.slot_pinned[s].eq(0)
                with m.If(ok & (resp.op == CacheOp.INVALIDATE)):
                    m.d.sync += self.slot_valid[s].eq(0)

    # -- decode and check ---------------------------------------------------------------------------
    def _decode(self, m, word):
        """The checks of :func:`hw.isa.check_command` and the slot lookup, as logic. Returns
        ``(error code, {opcode: is}, pe, PE command payload, cache request payload)``."""
        p = self.params
        views = {op: command_layout(op)(word) for op in Opcode}
        opcode = word[:OPCODE_BITS]
        op_is = {op: Signal(name=f"is_{op.name.lower()}") for op in Opcode}
        for op in Opcode:
            m.d.comb += op_is[op].eq(opcode == op)
        field_bad, addr_bad = Signal(), Signal()
        field_terms, addr_terms = [], []

        def addr_over(start, words, size):
            return (start + words) > size

        for op in Opcode:
            v = views[op]
            names = {f.name for f in FIELDS[op]}
            terms = [v.reserved != 0]
            if "pe" in names:
                terms.append(v.pe >= p.pes)
            if "slice" in names:
                terms.append(v.slice > max(Slice).value)
            if "split" in names:
                terms.append(v.split & (v.mode != MacMode.FULL))
            if "acc" in names:
                terms.append(v.acc >= p.accumulators)
            if "count" in names:
                terms.append(v.count == 0)
            if "layer" in names:
                terms += [v.layer >= p.cache.layers, v.expert >= p.cache.experts]
            if "cop" in names:
                terms.append(v.cop > max(CacheOp).value)
                bad_vector = Signal(name="bad_vector")
                with m.Switch(v.chunk):
                    for chunk in range(4):
                        keep = max(0, p.cache.experts - COUNT_CHUNK_BITS * chunk)
                        with m.Case(chunk):
                            m.d.comb += bad_vector.eq((v.vector >> keep) != 0 if keep < 64
                                                      else 0)
                terms.append(bad_vector)
            field_terms.append(op_is[op] & Cat(*terms).any())
            addr_terms.append(op_is[op] & Cat(*self._address_checks(op, v, addr_over)).any())
        m.d.comb += [field_bad.eq(Cat(*field_terms).any()), addr_bad.eq(Cat(*addr_terms).any())]

        # slot lookup (LOAD_SLOT and WRITE_SLOT share the key's bit positions)
        key = views[Opcode.LOAD_SLOT]
        hits = Cat(self.slot_valid[s] & (self.slot_layer[s] == key.layer) &
                   (self.slot_expert[s] == key.expert) for s in range(p.cache.slots))
        slot = Signal(range(p.cache.slots))
        for s in range(p.cache.slots):
            with m.If(hits[s]):
                m.d.comb += slot.eq(s)
        slot_op = op_is[Opcode.LOAD_SLOT] | op_is[Opcode.WRITE_SLOT]

        check = Signal(ERROR_BITS)
        known = Cat(op_is.values()).any()
        with m.If(~known):
            m.d.comb += check.eq(ErrorCode.BAD_OPCODE)
        with m.Elif(field_bad):
            m.d.comb += check.eq(ErrorCode.BAD_FIELD)
        with m.Elif(addr_bad):
            m.d.comb += check.eq(ErrorCode.BAD_ADDRESS)
        with m.Elif(slot_op & ~hits.any()):
            m.d.comb += check.eq(ErrorCode.SLOT_NOT_INSTALLED)

        pe_payload = self._pe_payload(m, views, op_is, slot)
        cache_payload = Signal(cache_request_layout(p.cache))
        cv = views[Opcode.CACHE]
        m.d.comb += [cache_payload.op.eq(cv.cop), cache_payload.layer.eq(cv.layer),
                     cache_payload.expert.eq(cv.expert)]
        with m.Switch(cv.chunk):
            for chunk in range(4):
                with m.Case(chunk):
                    m.d.comb += cache_payload.vector.eq(cv.vector << (COUNT_CHUNK_BITS * chunk))
        return check, op_is, word[OPCODE_BITS:OPCODE_BITS + 6], pe_payload, cache_payload

    def _address_checks(self, op, v, over):
        p = self.params
        B = p.mac.beats_per_group
        if op in (Opcode.LOAD_HB, Opcode.LOAD_LPDDR, Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
            yield over(v.wmem, v.count, p.weight_words)
        if op is Opcode.LOAD_HB:
            yield over(v.hb, v.count * p.hb_ratio, p.hb.words)
            yield v.hb < p.slot_region_words
        elif op is Opcode.LOAD_LPDDR:
            yield over(v.lpddr, v.count * p.lpddr_ratio, p.lpddr.words)
        elif op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
            yield over(v.offset, v.count * p.hb_ratio, p.slot_words)
        elif op is Opcode.LOAD_ACT:
            yield over(v.amem, v.count, p.act_words)
            yield over(v.imem, v.count, p.input_words)
        elif op is Opcode.MAC:
            yield over(v.wmem, v.count * B, p.weight_words)
            yield over(v.amem, Mux(v.reuse, 1, v.count) * B, p.act_words)
            yield over(v.omem, v.count, p.output_words)
        elif op is Opcode.COMBINE:
            for name in ("a", "b", "dst"):
                yield over(getattr(v, name), v.count, p.output_words)
        elif op is Opcode.MAC_DQ:
            W, shift = p.weight_words, p.scale_slots.bit_length() - 1
            yield over(v.wmem, v.count * B, W)
            yield v.split & over(v.wmem + W // 2, v.count * B, W)
            yield over(v.amem, Mux(v.reuse, 1, v.count) * B, p.act_words)
            yield over(v.omem, p.dq_words, p.output_words)
            yield ((v.scales + v.count - 1) >> shift) >= W
            yield v.tscale >= p.act_words

    def _pe_payload(self, m, views, op_is, slot):
        """The PE command of the current word, addresses resolved (only valid for PE opcodes)."""
        p = self.params
        out = Signal(pe_command_layout(p))
        with m.Switch(views[Opcode.END].opcode):
            for op, pe_op in ((Opcode.LOAD_HB, PeOp.LOAD), (Opcode.LOAD_LPDDR, PeOp.LOAD),
                              (Opcode.LOAD_SLOT, PeOp.LOAD), (Opcode.WRITE_SLOT, PeOp.WRITE_HB),
                              (Opcode.LOAD_ACT, PeOp.LOAD_ACT), (Opcode.MAC, PeOp.MAC),
                              (Opcode.COMBINE, PeOp.COMBINE), (Opcode.MAC_DQ, PeOp.MAC_DQ)):
                v = views[op]
                with m.Case(op):
                    m.d.comb += [out.op.eq(pe_op), out.count.eq(v.count)]
                    if op is Opcode.LOAD_HB:
                        m.d.comb += [out.ext.eq(v.hb), out.wmem.eq(v.wmem)]
                    elif op is Opcode.LOAD_LPDDR:
                        m.d.comb += [out.ext.eq(v.lpddr), out.wmem.eq(v.wmem), out.lpddr.eq(1)]
                    elif op in (Opcode.LOAD_SLOT, Opcode.WRITE_SLOT):
                        m.d.comb += [out.ext.eq(slot * p.slot_words + v.offset),
                                     out.wmem.eq(v.wmem)]
                    elif op is Opcode.LOAD_ACT:
                        m.d.comb += [out.amem.eq(v.amem), out.imem.eq(v.imem)]
                    elif op in (Opcode.MAC, Opcode.MAC_DQ):
                        m.d.comb += [out.mode.eq(v.mode), out.reuse.eq(v.reuse),
                                     out.wmem.eq(v.wmem), out.amem.eq(v.amem),
                                     out.omem.eq(v.omem)]
                        if op is Opcode.MAC_DQ:
                            m.d.comb += [out.split.eq(v.split), out.first.eq(v.first),
                                         out.last.eq(v.last), out.acc.eq(v.acc),
                                         out.scales.eq(v.scales),
                                         out.tscale.eq(v.tscale)]
                    else:
                        m.d.comb += [out.a.eq(v.a), out.b.eq(v.b), out.omem.eq(v.dst)]
        return out
