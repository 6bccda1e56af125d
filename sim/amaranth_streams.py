"""``lib.stream`` helpers for Amaranth's own simulator (the cocotb ones are in ``cocotb_streams``).

Both sides take an optional ``random.Random``-like ``rng`` and a probability: the source inserts
idle cycles, the sink withholds ``ready``, so every stream test can run with and without them.
"""

__all__ = ["stream_send", "stream_recv", "PRESSURE"]

#: The two conditions every stream test runs under: ``(idle, stall)`` probabilities of an idle
#: cycle at the source and of a withheld ``ready`` at the sink.
PRESSURE = {"free": (0.0, 0.0), "pressure": (0.3, 0.4)}


async def stream_send(ctx, port, payloads, rng=None, idle=0.0):
    """Drive ``payloads`` into ``port`` in order, holding each until it is accepted."""
    for payload in payloads:
        while rng is not None and rng.random() < idle:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.payload, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_recv(ctx, port, count, rng=None, stall=0.0):
    """Collect ``count`` payloads from ``port``; returns them as ``data.Const`` or int values."""
    received = []
    while len(received) < count:
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            received.append(payload)
    ctx.set(port.ready, 0)
    return received
