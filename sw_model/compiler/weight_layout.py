"""Where every weight lives: the expert tiling over PEs, HB slots, LPDDR regions and the byte plan.

Tiling (tensor parallel over the PEs). An expert is three linear layers ``gate`` and ``up``
``[hidden, ffn]`` and ``down`` ``[ffn, hidden]`` (reduction axis first). Each is cut into *column
blocks* of ``2 * out_channels`` output channels (what one 4-bit MAC operation produces; padded
with zero weights when the width is not a multiple) and, along the reduction, into ``G = in / 32``
weight groups. The expert's groups, block after block (gate, up, down), are cut into ``pes``
contiguous runs of equal length (within one group), and PE ``p`` owns run ``p`` (its *shard*) in
every expert, draft and verification alike. A :class:`Unit` is the part of one column block a PE
holds (a block may be shared by two PEs); each PE computes the group partial sums of its groups
of its blocks, for all tokens.

Weight words (:mod:`hw.isa`: one MAC weight beat, in the MAC's wire format). Within a shard, a
*plane* holds unit after unit, each ``groups x B`` words (group-major, ``B = beats_per_group``):

* MSB plane: the upper slices ``h`` (read in DRAFT and MSB mode: same wire format);
* LSB plane: the lower slices ``l`` (LSB mode);
* WHOLE plane (optional): the INT8 codes for FULL mode, two ``out_channels`` halves per unit,
  each ``groups x B`` words.

Memories:

* **HB**, per PE channel ``p``: the cache controller's slot ``s`` occupies words ``[s *
  slot_words, (s + 1) * slot_words)``; the expert in slot ``s`` keeps PE ``p``'s MSB plane there
  (``hb_ratio`` HB words per weight word). Above the slot region: PE ``p``'s share of the dense
  weights (attention, routers, shared and dense FFNs, LM head: INT8 codes plus FP16 scales), then
  its share of the resident experts' FP16 scales (the vector unit's; the RTL's results are the
  integer sums, so the stream never loads scales: they are accounted in the plan).
* **LPDDR** (shared): expert ``(layer index, e)`` has one region, ``expert_words`` long, at
  ``(layer index * experts + e) * expert_words``: for PE 0, 1, ...: its MSB plane, its LSB plane
  and, with the whole copy, its WHOLE plane. A cache hit reads the LSB plane (4 bits per weight),
  a miss all 8 bits (the WHOLE plane, or both nibble planes when the MSB plane also has to go to
  HB: then the same words feed the MAC and the HB write), an install the MSB plane. The whole copy
  doubles the experts' LPDDR footprint, so it is kept only when it fits (``whole_copy=None``).

:class:`WeightLayout` computes the addresses; :meth:`WeightLayout.expert_planes` the word values
(for preloading memory images); :meth:`WeightLayout.plan` the capacity plan in bytes per tier.
"""

from dataclasses import dataclass
import math

import numpy as np

from hw.params import MacMode, QUANT_GROUP, TopParams
from sw_model.model.moe import linear_names

__all__ = ["WeightLayout", "Unit", "LINEARS", "dense_bytes", "expert_scale_bytes", "tile_shards",
           "machine_for"]

#: The three linear layers of an expert, in unit order, with the input each reads.
LINEARS = ("gate", "up", "down")
INPUT_OF = {"gate": "x", "up": "x", "down": "hidden"}


def dense_bytes(config):
    """INT8 codes plus FP16 scales of everything but the routed experts (attention, routers,
    shared and dense FFNs, LM head) of ``config``; equals
    :attr:`sw_model.model.moe.MoEModel.dense_bytes` without building the model."""
    c = config
    lin = lambda k, n: k * n + 2 * (k // QUANT_GROUP) * n
    total = lin(c.hidden_size, c.vocab_size)
    for i in range(c.num_layers):
        total += sum(lin(*shape) for name, shape in linear_names(c, i).items()
                     if len(shape) == 2 and not name.startswith("experts."))
    return total


def expert_scale_bytes(config):
    """FP16 scale bytes of one routed expert."""
    c = config
    return 2 * (2 * (c.hidden_size // QUANT_GROUP) * c.expert_ffn
                + (c.expert_ffn // QUANT_GROUP) * c.hidden_size)


@dataclass(frozen=True)
class Unit:
    """Weight groups ``g0 .. g0 + groups - 1`` of one column block of one linear layer as PE
    ``pe`` holds them: ``linear`` index into :data:`LINEARS`, ``block``, and the ``offset`` (weight
    words) in the PE's MSB and LSB planes (the WHOLE plane: ``2 * offset``)."""
    pe: int
    linear: int
    block: int
    groups: int
    offset: int
    g0: int = 0

    @property
    def name(self):
        return LINEARS[self.linear]

    @property
    def input(self):
        return INPUT_OF[LINEARS[self.linear]]


def tile_shards(config, mac, pes):
    """``(shapes, groups, blocks, shards)`` of ``config``'s experts on ``pes`` PEs with MAC array
    ``mac``: per linear its ``[in, out]`` shape, weight groups and column blocks, and per PE its
    list of :class:`Unit` (module docstring)."""
    B, width = mac.beats_per_group, mac.channels(MacMode.MSB)
    c = config
    shapes = {"gate": (c.hidden_size, c.expert_ffn), "up": (c.hidden_size, c.expert_ffn),
              "down": (c.expert_ffn, c.hidden_size)}
    groups = {n: shapes[n][0] // QUANT_GROUP for n in LINEARS}
    blocks = {n: math.ceil(shapes[n][1] / width) for n in LINEARS}
    # the expert's weight groups, block after block, cut into ``pes`` runs of equal length
    # (a block may be shared by two PEs, each computing the sums of its own groups)
    total = sum(groups[n] * blocks[n] for n in LINEARS)
    shards, offsets, start = [[] for _ in range(pes)], [0] * pes, 0
    for li, n in enumerate(LINEARS):
        for b in range(blocks[n]):
            g0 = 0
            while g0 < groups[n]:
                p = (start + g0) * pes // total
                end = min(groups[n], -(-(p + 1) * total // pes) - start)
                shards[p].append(Unit(p, li, b, end - g0, offsets[p], g0))
                offsets[p] += (end - g0) * B
                g0 = end
            start += groups[n]
    return shapes, groups, blocks, shards


def _round_up(n, unit):
    return max(unit, -(-n // unit) * unit)


def machine_for(config, mode, base, capacity=None, pes=None, grow=False, **sizes):
    """A :class:`TopParams` for ``config``: ``base``'s MAC array, memories and timings with
    ``pes`` PEs (default: base's), the cache controller of ``capacity`` experts per MoE layer
    (:func:`sw_model.decode.cache_bridge.controller_params`, LRU for ``mode`` "cached", else
    FREQUENCY) and slots exactly one expert shard long. ``capacity`` None: as many as HB holds next
    to the dense weights and scales (at most every expert), or with ``grow`` a quarter of the
    experts (at least top-k). ``grow``: size HB and LPDDR to what the model needs instead of
    ``base``'s (simulation). ``sizes``: other TopParams fields (weight_words, output_words, ...).
    ValueError names what does not fit."""
    import dataclasses
    from sw_model.decode.cache_bridge import controller_params
    pes = base.pes if pes is None else pes
    _, _, _, shards = tile_shards(config, base.mac, pes)
    B = base.mac.beats_per_group
    hb_ratio = base.mac.weight_beat_bits // base.hb.data_width
    lp_ratio = base.mac.weight_beat_bits // base.lpddr.data_width
    slot_words = max(1, max(sum(u.groups * B for u in s) for s in shards) * hb_ratio)
    L, E = len(config.moe_layers), config.num_experts
    hb_word = base.hb.bytes_per_word
    if capacity is None:
        if grow:
            capacity = max(config.top_k, E // 4)
        else:
            dense = -(-dense_bytes(config) // (pes * hb_word))
            scales = -(-expert_scale_bytes(config) // (pes * hb_word))
            capacity = min(E, (base.hb.words - dense) // (L * (slot_words + scales)))
            if capacity < config.top_k:
                raise ValueError(f"HB ({base.hb.words} words per channel) holds {capacity} "
                                 f"experts per layer next to the dense weights, fewer than "
                                 f"top_k ({config.top_k})")
    cache = controller_params(config, capacity, "LRU" if mode == "cached" else "FREQUENCY")
    hb, lpddr = base.hb, base.lpddr
    if grow:
        # the slots, the dense weights and the resident experts' scales (module docstring)
        dense = -(-dense_bytes(config) // (pes * hb_word))
        scales = -(-expert_scale_bytes(config) // (pes * hb_word))
        hb_words = _round_up(cache.slots * (slot_words + scales) + dense, 1 << 10)
        plane = sum(sum(u.groups * B for u in s) for s in shards)
        lp_word = base.lpddr.bytes_per_word
        lp_words = _round_up(L * E * 4 * plane * lp_ratio + -(-(
            L * E * expert_scale_bytes(config) + dense_bytes(config)) // lp_word), 1 << 12)
        hb = dataclasses.replace(hb, words=hb_words,
                                 address_width=max(hb.address_width, (hb_words - 1).bit_length()))
        lpddr = dataclasses.replace(lpddr, words=lp_words, address_width=max(
            lpddr.address_width, (lp_words - 1).bit_length()))
    hb = dataclasses.replace(hb, channels=pes)
    lpddr = dataclasses.replace(lpddr, clients=pes)
    return dataclasses.replace(base, pes=pes, cache=cache, hb=hb, lpddr=lpddr,
                               slot_words=slot_words, **sizes)


class WeightLayout:
    """Addresses of every expert weight word of ``config`` on the machine ``params``
    (a :class:`hw.params.TopParams`; see the module docstring). ``whole_copy``: keep the WHOLE
    plane in LPDDR (None: when it fits). Raises ValueError naming what does not fit."""

    def __init__(self, config, params, whole_copy=None):
        if not isinstance(params, TopParams):
            raise TypeError(f"params must be a TopParams, not {params!r}")
        self.config, self.params = config, params
        mac = params.mac
        self.mac = mac
        self.B = mac.beats_per_group
        self.block_width = mac.channels(MacMode.MSB)
        self.shapes, self.groups, self.blocks, self.shards = tile_shards(config, mac, params.pes)
        c = config
        self.plane_words = [sum(u.groups * self.B for u in s) for s in self.shards]
        self.slot_hb_words = max(self.plane_words) * params.hb_ratio
        if self.slot_hb_words > params.slot_words:
            raise ValueError(f"an expert's MSB shard needs {self.slot_hb_words} HB words per slot, "
                             f"more than slot_words ({params.slot_words})")
        self.moe_layers = tuple(c.moe_layers)
        if len(self.moe_layers) > params.cache.layers or c.num_experts > params.cache.experts:
            raise ValueError(f"the cache covers {params.cache.layers} layers x "
                             f"{params.cache.experts} experts, the model has "
                             f"{len(self.moe_layers)} MoE layers x {c.num_experts} experts")
        planes_words = lambda whole: sum((4 if whole else 2) * w for w in self.plane_words)
        lp = params.lpddr_ratio
        n_experts = len(self.moe_layers) * c.num_experts
        if whole_copy is None:
            whole_copy = n_experts * planes_words(True) * lp <= params.lpddr.words
        self.whole_copy = bool(whole_copy)
        self.expert_words = planes_words(self.whole_copy) * lp
        if n_experts * self.expert_words > params.lpddr.words:
            raise ValueError(f"the experts need {n_experts * self.expert_words} LPDDR words, more "
                             f"than the {params.lpddr.words} LPDDR holds")
        self._pe_base = np.cumsum([0] + [(4 if self.whole_copy else 2) * w * lp
                                         for w in self.plane_words]).tolist()
        self.dense_bytes = dense_bytes(c)
        self.scale_bytes = expert_scale_bytes(c)
        self.hb_word_bytes = params.hb.bytes_per_word
        self.lpddr_word_bytes = params.lpddr.bytes_per_word
        self.weight_word_bytes = mac.weight_beat_bits // 8

    # -- addresses -----------------------------------------------------------------------------------
    def layer_index(self, layer):
        """The cache controller's layer index of model layer ``layer``."""
        try:
            return self.moe_layers.index(layer)
        except ValueError:
            raise ValueError(f"layer {layer} is not an MoE layer (MoE layers: "
                             f"{list(self.moe_layers)})") from None

    def lpddr_plane(self, layer, expert, pe, plane):
        """LPDDR word address of PE ``pe``'s ``plane`` ("MSB", "LSB", "WHOLE") of an expert."""
        if plane == "WHOLE" and not self.whole_copy:
            raise ValueError("this layout keeps no WHOLE plane in LPDDR")
        base = (self.layer_index(layer) * self.config.num_experts + expert) * self.expert_words
        step = self.plane_words[pe] * self.params.lpddr_ratio
        return base + self._pe_base[pe] + {"MSB": 0, "LSB": step, "WHOLE": 2 * step}[plane]

    # -- contents ------------------------------------------------------------------------------------
    def unit_codes(self, codes, unit):
        """INT8 codes ``[in, 2 * out_channels]`` of ``unit`` from the linear's codes (zero-padded)."""
        w = self.block_width
        block = np.asarray(codes)[:, unit.block * w:(unit.block + 1) * w]
        if block.shape[1] < w:
            block = np.pad(block, ((0, 0), (0, w - block.shape[1])))
        return block

    def expert_planes(self, codes):
        """Weight words of one expert: ``{plane: [per PE: list of words]}`` for "MSB", "LSB" and
        "WHOLE"; ``codes[name]``: the INT8 codes ``[in, out]`` of gate, up and down. A word is
        the MAC's wire format (:meth:`sw_model.golden.mac_array.SliceLevelMac.pack_weights`: byte
        ``(hi << 4) | lo`` per lane and channel) packed as
        :func:`sw_model.golden.top.pack_weight_beat` does, byte ``lane * out_channels + channel``
        at bits ``8 * index``."""
        C, L, G = self.mac.out_channels, self.mac.lanes, QUANT_GROUP
        to_words = lambda b: [int.from_bytes(row.tobytes(), "little")
                              for row in np.ascontiguousarray(b, dtype=np.uint8).reshape(-1, L * C)]
        out = {"MSB": [], "LSB": [], "WHOLE": []}
        for shard in self.shards:
            planes = {k: [] for k in out}
            for u in shard:
                q = self.unit_codes(codes[u.name], u).astype(np.int64)
                q = q[u.g0 * G:(u.g0 + u.groups) * G]
                h, l = (q >> 4) & 0xF, q & 0xF
                planes["MSB"] += to_words((h[:, :C] << 4) | h[:, C:])
                planes["LSB"] += to_words((l[:, :C] << 4) | l[:, C:])
                planes["WHOLE"] += to_words(q[:, :C] & 0xFF) + to_words(q[:, C:] & 0xFF)
            for k in out:
                out[k].append(planes[k])
        return out

    # -- the plan ------------------------------------------------------------------------------------
    def plan(self, capacity):
        """The capacity plan in bytes: ``{tier: {region: bytes}}`` plus ``fits`` per tier, for
        ``capacity`` resident experts per MoE layer."""
        p, c = self.params, self.config
        L, E, P = len(self.moe_layers), c.num_experts, p.pes
        msb = sum(self.plane_words) * self.weight_word_bytes
        hb_slots = p.cache.slots * p.slot_words * self.hb_word_bytes * P
        resident = capacity * L
        hb = {"slot region (all slots, all channels)": hb_slots,
              "resident MSB slices": resident * msb,
              "resident experts' scales": resident * self.scale_bytes,
              "dense weights and scales": self.dense_bytes}
        hb_total = hb_slots + hb["resident experts' scales"] + self.dense_bytes
        lpddr = {"MSB planes": L * E * msb, "LSB planes": L * E * msb,
                 "WHOLE planes": L * E * 2 * msb if self.whole_copy else 0,
                 "expert scales": L * E * self.scale_bytes,
                 "dense weights (backing copy)": self.dense_bytes}
        return {"HB": hb, "LPDDR": lpddr,
                "HB capacity": p.hb.capacity_bytes * P, "HB used": hb_total,
                "LPDDR capacity": p.lpddr.capacity_bytes, "LPDDR used": sum(lpddr.values()),
                "fits": {"HB": hb_total <= p.hb.capacity_bytes * P,
                         "LPDDR": sum(lpddr.values()) <= p.lpddr.capacity_bytes}}

    def describe(self):
        units = [len(s) for s in self.shards]
        return (f"{sum(units)} column blocks of {self.block_width} channels per expert over "
                f"{self.params.pes} PEs ({min(units)}-{max(units)} per PE), "
                f"{self.slot_hb_words} HB words per slot shard, {self.expert_words} LPDDR words "
                f"per expert ({'MSB+LSB+WHOLE' if self.whole_copy else 'MSB+LSB'} planes)")
