"""Expert-cache operation traces: requests packed with the hardware's layouts, responses unpacked,
and mixed traces for comparing the RTL with the golden model.

Shared by the Amaranth-simulator tests and the cocotb benches. Payloads are built with
``request_layout(params).const`` and read with ``response_layout(params).from_bits``; no bit offset is
written by hand.
"""

import random

import numpy as np
from amaranth.sim import Simulator

from hw.expert_cache import ExpertCache, request_layout, response_layout
from hw.params import CacheOp, CacheStatus, CACHE_OP_BITS
from sw_model.golden.expert_cache import ExpertCacheModel, Request, Response, apply_request
from sim.amaranth_streams import stream_recv, stream_send
from sw_model.model.routing_traces import generate_routing_trace

__all__ = ["encode_request", "decode_response", "FastCodec", "mixed_requests", "bad_requests", "lookup_sweep",
           "expected_responses", "expected_per_request", "compare_responses"]


def encode_request(params, req):
    """The request payload, a ``data.Const`` of ``request_layout(params)`` (``.as_bits()`` for
    cocotb)."""
    return request_layout(params).const(
        {"op": req.op, "tag": req.tag, "layer": req.layer, "expert": req.expert,
         "vector": req.vector})


def decode_response(params, raw):
    """A :class:`sw_model.golden.expert_cache.Response` from a response payload (int or
    ``data.Const``)."""
    view = response_layout(params).from_bits(raw) if isinstance(raw, int) else raw
    return _response(*(int(getattr(view, f)) for f in Response._fields))


def _response(*values):
    fields = dict(zip(Response._fields, values))
    if fields["status"] in _STATUSES:
        fields["status"] = CacheStatus(fields["status"])
    return Response(**fields)


_STATUSES = set(int(s) for s in CacheStatus)


class FastCodec:
    """Bulk packing for long cocotb runs (``layout.const`` costs ~0.1 ms a beat): the field offsets
    and widths are read from the hardware's layouts, and tests check the results equal
    :func:`encode_request` / :func:`decode_response` bit for bit."""

    def __init__(self, params):
        self.params = params
        self._req = [(name, field.offset, field.width)
                     for name, field in request_layout(params)]
        self._resp = [(response_layout(params)[name].offset, response_layout(params)[name].width)
                      for name in Response._fields]

    def encode(self, req):
        values = req._asdict()
        bits = 0
        for name, offset, width in self._req:
            value = int(values[name])
            if not 0 <= value < (1 << width):
                raise ValueError(f"request field {name}={value} does not fit {width} bits")
            bits |= value << offset
        return bits

    def decode(self, bits):
        return _response(*((bits >> offset) & ((1 << width) - 1) for offset, width in self._resp))


def expected_per_request(params, requests):
    """The golden model's response beats for each of ``requests`` from reset (a list per request)."""
    model = ExpertCacheModel(params)
    return [apply_request(model, req) for req in requests]


def expected_responses(params, requests):
    """The golden model's response beats for ``requests`` from reset, in one list."""
    return [beat for beats in expected_per_request(params, requests) for beat in beats]


def compare_responses(got, expected, requests=None):
    """Raise ``AssertionError`` naming the first differing beat (index, fields); returns the count."""
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            diff = {f: (getattr(g, f), getattr(e, f)) for f in Response._fields
                    if getattr(g, f) != getattr(e, f)}
            raise AssertionError(f"response beat {i} (tag {e.tag}, op {e.op}): "
                                 f"(RTL, golden) differ in {diff}; RTL {g}, golden {e}")
    assert len(got) == len(expected), f"{len(got)} response beats, the golden model has {len(expected)}"
    return len(got)


def lookup_sweep(params, tag=0):
    """A LOOKUP of every valid key: shows what is resident (and touches what hits)."""
    return [Request(CacheOp.LOOKUP, tag, l, e)
            for l in range(params.layers) for e in range(params.experts)]


def bad_requests(params, model, rng):
    """Requests the controller must reject, given the state of ``model`` (not applied to it)."""
    p, reqs = params, []
    max_layer, max_expert = (1 << p.layer_bits) - 1, (1 << p.expert_bits) - 1
    for op in (CacheOp.LOOKUP, CacheOp.INSTALL, CacheOp.PIN, CacheOp.UNPIN, CacheOp.INVALIDATE):
        reqs += [Request(op, 0, p.layers, 0), Request(op, 0, max_layer, max_expert),
                 Request(op, 0, 0, p.experts), Request(op, 0, p.layers - 1, max_expert)]
    reqs.append(Request(CacheOp.COUNT, 0, p.layers, 0, (1 << p.experts) - 1))
    reqs += [Request(code, 0, 0, 0) for code in range(len(CacheOp), 1 << CACHE_OP_BITS)]
    resident = model.resident()
    absent = [(l, e) for l in range(p.layers) for e in range(p.experts) if (l, e) not in resident]
    for key in [absent[i] for i in rng.permutation(len(absent))[:3]]:
        reqs += [Request(op, 0, *key) for op in (CacheOp.PIN, CacheOp.UNPIN, CacheOp.INVALIDATE)]
    reqs += [Request(CacheOp.INSTALL, 0, *key) for key in list(resident)[:3]]
    reqs += [Request(CacheOp.INVALIDATE, 0, *key) for key in model.pinned()]
    return reqs


def mixed_requests(params, count, seed, top_k=2, batch=None):
    """About ``count`` requests of every kind, in the patterns a decoder produces, plus noise.

    Routing comes from :func:`generate_routing_trace` (batch 1-16 cycling); per step and layer:
    COUNT of half the tokens' top-k, a LOOKUP of every needed expert and an INSTALL after each miss.
    Interleaved at random: PIN of resident keys (sometimes a whole set, so INSTALLs meet a fully
    pinned set), UNPIN, INVALIDATE, INVALIDATE_ALL, SELECT followed by RESET_COUNTS, the bad
    requests of :func:`bad_requests`, and uniformly random raw requests. A shadow golden model
    steers the choices; the result is a plain list of :class:`Request`.
    """
    p = params
    rng = np.random.default_rng(seed)
    shadow = ExpertCacheModel(p)
    reqs = []
    tag = 0

    def emit(op, layer=0, expert=0, vector=0):
        nonlocal tag
        req = Request(int(op), tag, int(layer), int(expert), int(vector))
        tag = (tag + 1) % (1 << p.tag_width)
        apply_request(shadow, req)
        reqs.append(req)
        return req

    top_k = min(top_k, p.experts)
    batches = [batch] if batch else [1, 2, 4, 8, 16]
    while len(reqs) < count:
        b = batches[len(reqs) % len(batches)]
        trace = generate_routing_trace(p.layers, p.experts, top_k, steps=8, batch=b,
                                       zipf=float(rng.uniform(0.6, 1.4)),
                                       reuse=float(rng.uniform(0.2, 0.8)),
                                       seed=int(rng.integers(1 << 31)))
        for step in range(trace.steps):
            for layer in range(p.layers):
                for seq in range(trace.batch):
                    if rng.random() < 0.5:     # keep lookups the larger share of the trace
                        continue
                    mask = sum(1 << int(e) for e in trace.experts[step, seq, layer])
                    emit(CacheOp.COUNT, layer, int(rng.integers(1 << p.expert_bits)), mask)
                for e in trace.needed(step, layer):
                    emit(CacheOp.LOOKUP, layer, e)
                    if (layer, e) not in shadow.resident() and rng.random() < 0.9:
                        emit(CacheOp.INSTALL, layer, e)
            _events(p, rng, shadow, emit)
    return reqs


def _events(p, rng, shadow, emit):
    """The occasional operations of :func:`mixed_requests`, each with its own probability."""
    resident = sorted(shadow.resident())
    if resident and rng.random() < 0.5:
        for i in rng.permutation(len(resident))[:int(rng.integers(1, 4))]:
            emit(CacheOp.PIN, *resident[i])
    if rng.random() < 0.15 and resident:
        # pin every resident way of one set, then try to install into it
        l, e = resident[int(rng.integers(len(resident)))]
        target = p.set_of(l, e)
        for key in resident:
            if p.set_of(*key) == target:
                emit(CacheOp.PIN, *key)
        others = [(l2, e2) for l2 in range(p.layers) for e2 in range(p.experts)
                  if p.set_of(l2, e2) == target and (l2, e2) not in shadow.resident()]
        if others:
            emit(CacheOp.INSTALL, *others[int(rng.integers(len(others)))])
    pinned = sorted(shadow.pinned())
    if pinned and rng.random() < 0.7:
        for i in rng.permutation(len(pinned))[:int(rng.integers(1, len(pinned) + 1))]:
            emit(CacheOp.UNPIN, *pinned[i])
    if resident and rng.random() < 0.3:
        emit(CacheOp.INVALIDATE, *resident[int(rng.integers(len(resident)))])
    if rng.random() < 0.05:
        emit(CacheOp.INVALIDATE_ALL)
    if rng.random() < 0.4:
        emit(CacheOp.SELECT, rng.integers(1 << p.layer_bits), rng.integers(1 << p.expert_bits))
        if rng.random() < 0.7:
            emit(CacheOp.RESET_COUNTS)
    if rng.random() < 0.3:
        bad = bad_requests(p, shadow, rng)
        for i in rng.permutation(len(bad))[:int(rng.integers(1, 6))]:
            emit(*bad[i][:1], *bad[i][2:])
    for _ in range(int(rng.integers(0, 4))):
        emit(int(rng.integers(1 << CACHE_OP_BITS)), rng.integers(1 << p.layer_bits),
             rng.integers(1 << p.expert_bits), _random_bits(rng, p.experts))


def _random_bits(rng, width):
    """A uniform ``width``-bit int (NumPy's integers stop at 64 bits)."""
    return int.from_bytes(rng.bytes((width + 7) // 8), "little") & ((1 << width) - 1)


def run_in_amaranth(params, requests, seed=1, idle=0.0, stall=0.0):
    """Run ``requests`` through the RTL in Amaranth's simulator (``idle``: probability of an idle
    cycle before each request beat, ``stall``: of withholding ``resp.ready``); return the decoded
    response beats (as many as the golden model produces), after checking no further beat comes
    out. The run ends when the last beat is checked; a design that produces too few beats fails
    at a deadline instead of hanging."""
    n_beats = len(expected_responses(params, requests))
    dut = ExpertCache(params)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    rng = random.Random(seed)
    got = []
    deadline = 10 * len(requests) + 4 * n_beats + 4 * params.keys + 100

    async def sender(ctx):
        await stream_send(ctx, dut.req, [encode_request(params, r) for r in requests], rng, idle)

    async def receiver(ctx):
        got.extend(await stream_recv(ctx, dut.resp, n_beats, rng, stall))
        ctx.set(dut.resp.ready, 1)
        for _ in range(2 * params.keys + 8):     # longer than any SELECT
            _, _, valid = await ctx.tick().sample(dut.resp.valid)
            assert not valid, "a response beat beyond the expected ones"

    async def watchdog(ctx):
        for _ in range(deadline):
            await ctx.tick()
        raise AssertionError(f"the {n_beats} response beats of the golden model did not all come "
                             f"out within {deadline} cycles")

    sim.add_process(sender)
    sim.add_testbench(receiver)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    assert len(got) == n_beats
    return [decode_response(params, r) for r in got]
