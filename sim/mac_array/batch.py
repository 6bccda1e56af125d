"""Stimulus and checks of the MAC array's free-running runs (:mod:`sim.mac_array.tb_batch`), whole
runs at a time: operations as arrays, the golden sums from
:meth:`sw_model.golden.mac_array.SliceLevelMac.operate_packed_many`, and payloads packed and
unpacked at the bit offsets the hardware's layouts give (:class:`MacCodec`, checked against the
layouts in the tests)."""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

from hw.mac_array import act_layout, op_layout, result_layout, weight_layout
from hw.params import MacMode
from sw_model.golden.mac_array import SliceLevelMac

__all__ = ["MacBatch", "random_batch", "MacCodec"]


@dataclass
class MacBatch:
    """``N`` operations of one mode: ``load_act [N]``, codes ``x [N, tokens, group_size]`` (an
    operation that reuses has its predecessor's), ``wbytes [N, group_size, out_channels]`` (the
    wire format) and the golden ``expected [N, tokens, result_channels]``."""
    mode: MacMode
    load_act: np.ndarray
    x: np.ndarray
    q: np.ndarray
    wbytes: np.ndarray
    expected: np.ndarray


def random_batch(params, rng, ops, mode, reuse=0.3):
    """``ops`` operations in ``mode`` with random codes; each after the first reuses the
    previous activations with probability ``reuse``."""
    p, model = params, SliceLevelMac(params)
    load_act = rng.random(ops) >= reuse
    load_act[0] = True
    fresh = rng.integers(-128, 128, size=(ops, p.tokens, p.group_size))
    source = np.maximum.accumulate(np.where(load_act, np.arange(ops), 0))
    x = fresh[source]
    q = rng.integers(-128, 128, size=(ops, p.group_size, p.channels(mode)))
    wbytes = np.stack([model.pack_weights(mode, qi) for qi in q]).astype(np.int64)
    return MacBatch(MacMode(mode), load_act, x, q, wbytes,
                    model.operate_packed_many(mode, x, wbytes))


def _array_offsets(layout, offset=0):
    """Bit offsets and element shape of every leaf of nested ``ArrayLayout`` s, in index order."""
    if isinstance(layout, data.ArrayLayout):
        step = Shape.cast(layout.elem_shape).width
        out = []
        for i in range(layout.length):
            out += _array_offsets(layout.elem_shape, offset + i * step)
        return out
    return [(offset, layout)]


class MacCodec:
    """Whole-run packing for the MAC array's streams. The op beat's fields and the byte-wide
    leaves of the activation and weight beats are placed where :func:`hw.mac_array.op_layout`,
    :func:`act_layout` and :func:`weight_layout` put them; results are read where
    :func:`result_layout` puts them."""

    def __init__(self, params):
        self.params = p = params
        self.op = {name: op_layout(p)[name].offset for name in ("mode", "load_act", "tag")}
        self.act = [off for off, _ in _array_offsets(act_layout(p))]             # [t][k]
        self.weights = [off for off, _ in _array_offsets(weight_layout(p))]      # [k][n] bytes
        res = result_layout(p)
        self.res_tag, self.res_mode = res["tag"], res["mode"]
        self.sums = [off + res["sums"].offset for off, _ in _array_offsets(res["sums"].shape)]
        self._model = SliceLevelMac(p)

    def op_beats(self, batch, tags):
        return [int(batch.mode) << self.op["mode"] | int(load) << self.op["load_act"]
                | int(tag) << self.op["tag"] for load, tag in zip(batch.load_act, tags)]

    @staticmethod
    def _pack(values, offsets, bits):
        mask = (1 << bits) - 1
        word = 0
        for value, offset in zip(values, offsets):
            word |= (int(value) & mask) << offset
        return word

    def _bytes_in_order(self, offsets):
        return offsets == [8 * i for i in range(len(offsets))]

    def act_hex(self, batch):
        """The activation beats as ``$readmemh`` text (one beat a line)."""
        p = self.params
        x = batch.x[batch.load_act]
        if not self._bytes_in_order(self.act):
            return "".join(f"{w:x}\n" for w in self.act_beats(batch))
        tiles = x.reshape(len(x), p.tokens, p.beats_per_group, p.lanes).transpose(0, 2, 1, 3)
        return _hex_rows(tiles.reshape(-1, p.tokens * p.lanes))

    def weight_hex(self, batch):
        """The weight beats as ``$readmemh`` text (one beat a line)."""
        p = self.params
        if not self._bytes_in_order(self.weights):
            return "".join(f"{w:x}\n" for w in self.weight_beats(batch))
        return _hex_rows(batch.wbytes.reshape(-1, p.lanes * p.out_channels))

    def act_beats(self, batch):
        p = self.params
        beats = []
        for x in batch.x[batch.load_act]:
            for b in range(p.beats_per_group):
                tile = x[:, b * p.lanes:(b + 1) * p.lanes].reshape(-1)
                beats.append(self._pack(tile, self.act, 8))
        return beats

    def weight_beats(self, batch):
        p = self.params
        return [self._pack(w[b * p.lanes:(b + 1) * p.lanes].reshape(-1), self.weights, 8)
                for w in batch.wbytes for b in range(p.beats_per_group)]

    def job_beats(self, job):
        """One :class:`sim.mac_array.jobs.MacJob` as ``(op, [act beats] or [], [weight beats])``
        integers: the same payloads as :func:`sim.mac_array.jobs.encode_job` builds with the
        layouts, packed here directly (a cocotb bench encodes thousands of jobs)."""
        p, model = self.params, self._model
        op = (int(job.mode) << self.op["mode"] | int(job.load_act) << self.op["load_act"]
              | int(job.tag) << self.op["tag"])
        acts = ([self._pack(xb.reshape(-1), self.act, 8) for xb in model.act_beats(job.x)]
                if job.load_act else [])
        wbytes = model.pack_weights(job.mode, job.q)
        weights = [self._pack(wb.reshape(-1), self.weights, 8) for wb in model.weight_beats(wbytes)]
        return op, acts, weights

    def results(self, words):
        """``(tags [N], modes [N], sums [N, tokens, result_channels])`` of result words."""
        p = self.params
        width = p.result_width
        mask, sign = (1 << width) - 1, 1 << (width - 1)
        tags = [(w >> self.res_tag.offset) & ((1 << self.res_tag.width) - 1) for w in words]
        modes = [(w >> self.res_mode.offset) & ((1 << self.res_mode.width) - 1) for w in words]
        sums = np.array([[(((w >> off) & mask) ^ sign) - sign for off in self.sums]
                         for w in words], dtype=np.int64)
        return tags, modes, sums.reshape(len(words), p.tokens, p.result_channels)


def _hex_rows(rows):
    """Each row of bytes (``[beats, bytes]``, byte 0 the least significant) as a hex line."""
    rows = np.ascontiguousarray(rows.astype(np.uint8)[:, ::-1])
    text = rows.tobytes().hex()
    width = 2 * rows.shape[1]
    return "".join(text[i:i + width] + "\n" for i in range(0, len(text), width))
