"""Memory traffic for the HB and LPDDR benches: request beats, request generators, and a cycle
driver that behaves identically in Amaranth's simulator and in cocotb.

A :class:`sw_model.golden.mem_channel.Request` is what a user puts on ``req``; :func:`encode` turns
it into the request beats (packed with the hardware's own layout), and
:class:`sw_model.golden.mem_channel.GoldenMemory` says what every response must be.
:class:`PortDriver` decides, cycle by cycle, what a port's ``req`` and ``resp`` sides do: whether the
next beat is offered (seeded idle cycles) and whether ``resp`` is ready (seeded back-pressure). It
makes exactly the same decisions from the same seed whichever simulator calls it, so the cycle of
every response can be compared between the two.
"""

import random

from hw.mem_channel import request_layout, response_layout
from hw.params import MemOp, MemStatus
from sw_model.golden.mem_channel import GoldenMemory, Request, Response

__all__ = ["encode", "decode", "MemCodec", "PortDriver", "sequential",
           "random_bursts", "error_requests", "run_in_amaranth", "covering", "requests_to_json",
           "requests_from_json", "expected_count"]


def encode(params, request, scramble=None):
    """The request's beats as ints, packed with :func:`hw.mem_channel.request_layout`.

    A write's beats after the first repeat its header unless ``scramble`` (a ``random.Random``)
    is given: then they carry random ``op``, ``address``, ``length`` and ``tag``, which the channel
    must ignore (a write's fields come from its first beat)."""
    layout = request_layout(params)
    header = {"op": request.op, "address": request.address, "length": request.length,
              "tag": request.tag}
    if request.op == MemOp.READ:
        return [layout.const({**header, "data": 0}).as_bits()]
    beats = max(request.length, 1)
    if len(request.data) != beats:
        raise ValueError(f"write request carries {len(request.data)} words for {beats} beats")
    later = [header] * (beats - 1)
    if scramble is not None:
        later = [{"op": scramble.choice(list(MemOp)),
                  "address": scramble.getrandbits(params.address_width),
                  "length": scramble.getrandbits(params.length_width),
                  "tag": scramble.getrandbits(layout["tag"].shape.width)} for _ in later]
    return [layout.const({**fields, "data": word}).as_bits()
            for fields, word in zip([header] + later, request.data)]


class MemCodec:
    """Whole-run packing (``layout.const`` costs ~0.1 ms a beat): the field offsets and widths are
    read from :func:`hw.mem_channel.request_layout` and :func:`response_layout`, and the tests
    check the results equal :func:`encode` / :func:`decode` bit for bit."""

    def __init__(self, params):
        self.params = params
        req, resp = request_layout(params), response_layout(params)
        self.req = {name: (req[name].offset, req[name].width) for name in
                    ("op", "address", "length", "tag", "data")}
        self.resp = {name: (resp[name].offset, resp[name].width) for name in
                     ("tag", "status", "last", "data")}

    def _word(self, fields):
        word = 0
        for name, value in fields.items():
            offset, width = self.req[name]
            if not 0 <= value < (1 << width):
                raise ValueError(f"request field {name}={value} does not fit {width} bits")
            word |= value << offset
        return word

    def encode(self, request, scramble=None):
        """As :func:`encode`."""
        header = {"op": int(request.op), "address": request.address, "length": request.length,
                  "tag": request.tag}
        if request.op == MemOp.READ:
            return [self._word({**header, "data": 0})]
        beats = max(request.length, 1)
        if len(request.data) != beats:
            raise ValueError(f"write request carries {len(request.data)} words for {beats} beats")
        later = [header] * (beats - 1)
        if scramble is not None:
            widths = {name: self.req[name][1] for name in ("address", "length", "tag")}
            later = [{"op": int(scramble.choice(list(MemOp))),
                      "address": scramble.getrandbits(widths["address"]),
                      "length": scramble.getrandbits(widths["length"]),
                      "tag": scramble.getrandbits(widths["tag"])} for _ in later]
        return [self._word({**fields, "data": word})
                for fields, word in zip([header] + later, request.data)]

    def decode(self, bits):
        """As :func:`decode`."""
        v = {name: (bits >> off) & ((1 << width) - 1) for name, (off, width) in self.resp.items()}
        return Response(v["tag"], MemStatus(v["status"]), bool(v["last"]), v["data"])


def decode(params, bits):
    view = response_layout(params).from_bits(bits)
    return Response(int(view.tag), MemStatus(int(view.status)), bool(view.last), int(view.data))


class PortDriver:
    """One request/response port pair, driven one cycle at a time.

    Each cycle the simulator adapter calls :meth:`drive` (what to put on the port now) and, after
    the values have settled, :meth:`observe` (what happened at the clock edge). With ``idle`` the
    source waits a random cycle before offering a beat, with ``stall`` the sink withholds ready;
    both from ``random.Random(seed)``, called in the same order in every simulator. A write's
    beats after the first carry random header fields (from their own generator seeded by
    ``seed``) unless ``repeat_header``.
    """

    def __init__(self, params, requests, seed=0, idle=0.0, stall=0.0, serial=False,
                 repeat_header=False):
        self.params = params
        self.requests = list(requests)
        scramble = None if repeat_header else random.Random(f"header {seed}")
        self.beats = [(r_index, beat) for r_index, r in enumerate(self.requests)
                      for beat in encode(params, r, scramble)]
        self.first_beat = {}
        for index, (r_index, _) in enumerate(self.beats):
            self.first_beat.setdefault(r_index, index)
        self.rng = random.Random(seed)
        self.idle, self.stall = idle, stall
        # with ``serial`` a request is offered only once every earlier one is fully answered
        self.serial = serial
        golden = GoldenMemory(params)
        answers = [1 if not golden.valid(r) or r.op == MemOp.WRITE else r.length
                   for r in self.requests]
        self.answered_before = [sum(answers[:i]) for i in range(len(answers))]
        self.next_beat = 0
        self.offering = False
        self.ready = False
        self.cycle = 0
        self.accepted_cycles = []      # cycle of every request beat accepted
        self.responses = []            # (cycle, Response)

    @property
    def done_sending(self):
        return self.next_beat == len(self.beats)

    def drive(self):
        """Returns ``(req_valid, req_payload or None, resp_ready)`` for this cycle."""
        if not self.offering and not self.done_sending:
            r_index = self.beats[self.next_beat][0]
            waiting = (self.serial and self.first_beat[r_index] == self.next_beat
                       and len(self.responses) < self.answered_before[r_index])
            self.offering = not waiting and not (self.idle and self.rng.random() < self.idle)
        self.ready = not (self.stall and self.rng.random() < self.stall)
        payload = self.beats[self.next_beat][1] if self.offering else None
        return self.offering, payload, self.ready

    def observe(self, req_ready, resp_valid, resp_payload):
        """Record this cycle's handshakes; ``resp_payload`` is read only if it was taken."""
        if self.offering and req_ready:
            self.accepted_cycles.append(self.cycle)
            self.next_beat += 1
            self.offering = False
        if self.ready and resp_valid:
            self.responses.append((self.cycle, decode(self.params, resp_payload())))
        self.cycle += 1

    def request_cycle(self, r_index):
        """The cycle request ``r_index``'s first beat was accepted."""
        return self.accepted_cycles[self.first_beat[r_index]]

    def check(self, golden):
        """Assert the responses are exactly what ``golden`` (a GoldenMemory) expects."""
        expected = [resp for r in self.requests for resp in golden.apply(r)]
        got = [resp for _, resp in self.responses]
        assert len(got) == len(expected), f"{len(got)} responses, expected {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert g == e, f"response {i}: got {g}, expected {e}"
        return len(expected)


def requests_to_json(requests):
    return [[int(r.op), r.address, r.length, r.tag, list(r.data)] for r in requests]


def requests_from_json(items):
    return [Request(MemOp(op), address, length, tag, tuple(words))
            for op, address, length, tag, words in items]


def covering(params, op, words, rng, tag=0, first=0):
    """Requests of random lengths (1 to ``max_length``) covering ``[first, first + words)``
    exactly once, in random order."""
    out, address = [], first
    while address < first + words:
        n = min(rng.randint(1, params.max_length), first + words - address)
        data = _words(rng, n, params.data_width) if op == MemOp.WRITE else ()
        out.append(Request(op, address, n, 0, data))
        address += n
    rng.shuffle(out)
    return [Request(r.op, r.address, r.length, (tag + i) % (1 << params.tag_width), r.data)
            for i, r in enumerate(out)]


def _words(rng, n, width):
    return tuple(rng.getrandbits(width) for _ in range(n))


def sequential(params, op, start, words, length, rng, tag=0):
    """Requests of ``length`` words covering ``[start, start + words)`` in order."""
    out = []
    for i, address in enumerate(range(start, start + words, length)):
        n = min(length, start + words - address)
        data = _words(rng, n, params.data_width) if op == MemOp.WRITE else ()
        out.append(Request(op, address, n, (tag + i) % (1 << params.tag_width), data))
    return out


def random_bursts(params, op, count, length, rng, span=None):
    """``count`` requests of ``length`` words at random ``length``-aligned addresses."""
    span = span or params.words
    out = []
    for i in range(count):
        address = rng.randrange(span // length) * length
        data = _words(rng, length, params.data_width) if op == MemOp.WRITE else ()
        out.append(Request(op, address, length, i % (1 << params.tag_width), data))
    return out


def error_requests(params, rng):
    """One malformed request of every kind, as ``(name, request)``, writes with their beats."""
    p = params
    w = lambda n: _words(rng, max(n, 1), p.data_width)
    top = (1 << p.address_width) - 1
    cases = [
        ("zero-length read", Request(MemOp.READ, 5, 0, 1)),
        ("zero-length write", Request(MemOp.WRITE, 5, 0, 2, w(0))),
        ("read beyond the device", Request(MemOp.READ, p.words, 1, 3)),
        ("write beyond the device", Request(MemOp.WRITE, top, 2, 4, w(2))),
        ("read burst past the end", Request(MemOp.READ, p.words - 2, 3, 5)),
        ("write burst past the end", Request(MemOp.WRITE, p.words - 3, 4, 6, w(4))),
    ]
    if p.max_length < (1 << p.length_width) - 1:
        over = p.max_length + 1
        cases += [("read longer than max_length", Request(MemOp.READ, 0, over, 7)),
                  ("write longer than max_length", Request(MemOp.WRITE, 0, over, 8, w(over)))]
    mask = (1 << p.tag_width) - 1
    return [(name, Request(r.op, r.address, r.length, r.tag & mask, r.data))
            for name, r in cases]


def expected_count(params, requests):
    """How many response beats ``requests`` get."""
    golden = GoldenMemory(params)
    return sum(1 if not golden.valid(r) or r.op == MemOp.WRITE else r.length for r in requests)


def run_in_amaranth(system, drivers, responses, max_cycles, backdoor=None):
    """Run ``drivers`` (one per port of ``system.req`` / ``system.resp``) in Amaranth's simulator
    until every driver has ``responses[i]`` responses; fails after ``max_cycles``.

    ``backdoor(ctx, when)``, an async function, is called with ``when="before"`` ahead of the first
    cycle (to preload die storage with ``ctx.set(die.storage.data[i], v)``) and ``"after"`` at the
    end (to inspect it); what the second call returns is returned.
    """
    from amaranth.sim import Simulator
    sim = Simulator(system)
    sim.add_clock(1e-9)
    ports = list(zip(system.req, system.resp))
    outcome = {}

    async def bench(ctx):
        if backdoor is not None:
            await backdoor(ctx, "before")
        signals = [s for req, resp in ports
                   for s in (req.ready, resp.valid, resp.payload.as_value())]
        for _ in range(max_cycles):
            if all(len(d.responses) >= n for d, n in zip(drivers, responses)):
                break
            for (req, resp), driver in zip(ports, drivers):
                valid, payload, ready = driver.drive()
                ctx.set(req.valid, valid)
                if payload is not None:
                    ctx.set(req.payload.as_value(), payload)
                ctx.set(resp.ready, ready)
            sampled = (await ctx.tick().sample(*signals))[-len(signals):]
            for i, driver in enumerate(drivers):
                req_ready, resp_valid, resp_payload = sampled[3 * i:3 * i + 3]
                driver.observe(req_ready, resp_valid, lambda v=resp_payload: v)
        else:
            raise AssertionError(f"not done after {max_cycles} cycles: " + ", ".join(
                f"{len(d.responses)}/{n} responses" for d, n in zip(drivers, responses)))
        for req, resp in ports:
            ctx.set(req.valid, 0)
            ctx.set(resp.ready, 1)
        for _ in range(40):     # nothing more may come out
            sampled = (await ctx.tick().sample(*[resp.valid for _, resp in ports]))
            assert not any(sampled[-len(ports):]), "a response beyond the expected ones"
        if backdoor is not None:
            outcome["backdoor"] = await backdoor(ctx, "after")

    sim.add_testbench(bench)
    sim.run()
    return outcome.get("backdoor")


def integrity_traffic(params, name, ports, words, rng):
    """The integrity run's requests per port: every word of the port's span written, a shuffled
    mix of reads of all of it and writes of an eighth, then all of it read back (on the LPDDR port
    every client gets its own slice of the one channel: ``name`` "lpddr")."""
    span = words if name == "hb" else words // ports
    traffic = []
    for port in range(ports):
        first = 0 if name == "hb" else port * span
        writes = covering(params, MemOp.WRITE, span, rng, first=first)
        mixed = covering(params, MemOp.READ, span, rng, first=first)
        mixed += covering(params, MemOp.WRITE, span // 8, rng, first=first)
        rng.shuffle(mixed)
        traffic.append(writes + mixed + covering(params, MemOp.READ, span, rng, first=first))
    return traffic
