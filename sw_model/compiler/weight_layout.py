"""Where every weight lives: the expert tiling over PEs, HB slots, LPDDR regions and the byte plan.

Tiling (tensor parallel over the PEs, by output channels). An expert is three linear layers
``gate`` and ``up`` ``[hidden, ffn]`` and ``down`` ``[ffn, hidden]`` (reduction axis first). Each is
cut into *column blocks* of ``2 * out_channels`` output channels (what one 4-bit MAC operation
produces; padded with zero weights when the width is not a multiple), each of ``G = in / 32``
weight groups. The expert's blocks (gate, up, down) are cut into ``pes`` contiguous runs of about
equal weight groups, whole blocks only: PE ``p`` owns run ``p`` (its *shard*) in every expert,
draft and verification alike. A :class:`Unit` is one column block on its PE; the PE computes the
block's outputs for all tokens, every weight group accumulated in its dequantising unit, so one
binary32 value per token and channel leaves the PE (``MAC_DQ``, :mod:`sw_model.golden.dequant`).

Weight words (:mod:`hw.isa`: one MAC weight beat, in the MAC's wire format). Within a shard, a
*plane* holds unit after unit:

* MSB plane: the upper slices ``h`` (read in DRAFT and MSB mode: same wire format), ``G x B``
  words per unit (group-major, ``B = beats_per_group``);
* LSB plane: the lower slices ``l`` (LSB mode), the same shape;
* SCALE plane: the FP16 group scales, ``ceil(G / k)`` words per unit with ``k =
  P.scale_slots``: group ``g``'s ``2 * out_channels`` scales (zero for padded channels) in slot
  ``g % k`` of the unit's word ``g // k``, as ``MAC_DQ`` reads them.

Memories:

* **HB**, per PE channel ``p``: the cache controller's slot ``s`` occupies words ``[s *
  slot_words, (s + 1) * slot_words)``; the expert in slot ``s`` keeps PE ``p``'s MSB plane there,
  then its SCALE plane (``hb_ratio`` HB words per weight word). Above the slot region: PE ``p``'s
  share of the dense weights (attention, routers, shared and dense FFNs, LM head: INT8 codes plus
  FP16 scales), accounted in the plan.
* **LPDDR** (shared): expert ``(layer index, e)`` has one region, ``expert_words`` long, at
  ``(layer index * experts + e) * expert_words``: for PE 0, 1, ...: its MSB plane, its LSB plane
  and its SCALE plane. A cache hit reads the LSB plane (4 bits per weight; the scales come from
  HB), a miss all 8 bits and the scales (and, when the expert is installed now, writes the MSB and
  SCALE words into its slot), an install the MSB and SCALE planes.
  The LSB plane starts half a *bank sweep* (``banks x row_words`` LPDDR words of
  ``TopParams.lpddr_timing``: one row in every bank) after the MSB plane's start, modulo a sweep,
  and the SCALE plane half a sweep after the LSB plane's (the gap before each is padding, less
  than a sweep): a PE reads its planes in turn (MSB, LSB and SCALE words of the same groups), and
  planes a whole number of sweeps apart would put those words in different rows of the same bank,
  so the die would close and reopen a row between every two loads; half a sweep apart they lie
  ``banks / 2`` banks apart, and the die opens one's row while it streams the other's.

:class:`WeightLayout` computes the addresses; :meth:`WeightLayout.expert_planes` the word values
(for preloading memory images); :meth:`WeightLayout.plan` the capacity plan in bytes per tier.
"""

from dataclasses import dataclass
import math

import numpy as np

from hw.params import MacMode, QUANT_GROUP, TopParams
from sw_model.golden.dequant import check_scales
from sw_model.model.moe import linear_names

__all__ = ["WeightLayout", "Unit", "LINEARS", "PLANES", "dense_bytes", "expert_scale_bytes",
           "tile_shards", "machine_for"]

#: The three linear layers of an expert, in unit order, with the input each reads.
LINEARS = ("gate", "up", "down")
INPUT_OF = {"gate": "x", "up": "x", "down": "hidden"}
#: The planes of a shard (module docstring).
PLANES = ("MSB", "LSB", "SCALE")


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
    """One column block of one linear layer on PE ``pe``: ``linear`` index into :data:`LINEARS`,
    ``block``, its ``groups``, the ``offset`` (weight words) of its words in the PE's MSB and LSB
    planes and ``scale_offset`` in its SCALE plane."""
    pe: int
    linear: int
    block: int
    groups: int
    offset: int
    scale_offset: int = 0

    @property
    def name(self):
        return LINEARS[self.linear]

    @property
    def input(self):
        return INPUT_OF[LINEARS[self.linear]]


def tile_shards(config, mac, pes):
    """``(shapes, groups, blocks, shards)`` of ``config``'s experts on ``pes`` PEs with MAC array
    ``mac``: per linear its ``[in, out]`` shape, weight groups and column blocks, and per PE its
    list of :class:`Unit` (module docstring): block ``i`` goes to the PE whose share of the
    expert's weight groups holds the middle of the block."""
    B, width, k = mac.beats_per_group, mac.channels(MacMode.MSB), mac.scale_slots
    c = config
    shapes = {"gate": (c.hidden_size, c.expert_ffn), "up": (c.hidden_size, c.expert_ffn),
              "down": (c.expert_ffn, c.hidden_size)}
    groups = {n: shapes[n][0] // QUANT_GROUP for n in LINEARS}
    blocks = {n: math.ceil(shapes[n][1] / width) for n in LINEARS}
    total = sum(groups[n] * blocks[n] for n in LINEARS)
    shards, offsets, scale_offsets, start = [[] for _ in range(pes)], [0] * pes, [0] * pes, 0
    for li, n in enumerate(LINEARS):
        G = groups[n]
        for b in range(blocks[n]):
            p = (2 * start + G) * pes // (2 * total)
            shards[p].append(Unit(p, li, b, G, offsets[p], scale_offsets[p]))
            offsets[p] += G * B
            scale_offsets[p] += -(-G // k)
            start += G
    return shapes, groups, blocks, shards


def _round_up(n, unit):
    return max(unit, -(-n // unit) * unit)


def _lpddr_planes(plane_words, scale_words, params):
    """LPDDR words from the start of a PE's region of an expert to its MSB, LSB and SCALE planes,
    and the region's length (``plane_words`` and ``scale_words`` weight words; module docstring:
    each plane half a bank sweep after the previous one's start, modulo a sweep)."""
    lp, t = params.lpddr_ratio, params.lpddr_timing
    sweep = t.banks * t.row_words
    lengths = (plane_words * lp, plane_words * lp, scale_words * lp)
    starts = [0]
    for length in lengths[:-1]:
        starts.append(starts[-1] + length + (sweep // 2 - length) % sweep)
    return dict(zip(PLANES, starts)), starts[-1] + lengths[-1]


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
    B, k = base.mac.beats_per_group, base.mac.scale_slots
    hb_ratio = base.mac.weight_beat_bits // base.hb.data_width
    slot_words = max(1, max(sum(u.groups * B + -(-u.groups // k) for u in s)
                            for s in shards) * hb_ratio)
    L, E = len(config.moe_layers), config.num_experts
    hb_word = base.hb.bytes_per_word
    if capacity is None:
        if grow:
            capacity = max(config.top_k, E // 4)
        else:
            dense = -(-dense_bytes(config) // (pes * hb_word))
            capacity = min(E, (base.hb.words - dense) // (L * slot_words))
            if capacity < config.top_k:
                raise ValueError(f"HB ({base.hb.words} words per channel) holds {capacity} "
                                 f"experts per layer next to the dense weights, fewer than "
                                 f"top_k ({config.top_k})")
    cache = controller_params(config, capacity, "LRU" if mode == "cached" else "FREQUENCY")
    hb, lpddr = base.hb, base.lpddr
    if grow:
        # the slots (MSB and SCALE planes) and the dense weights (module docstring)
        dense = -(-dense_bytes(config) // (pes * hb_word))
        hb_words = _round_up(cache.slots * slot_words + dense, 1 << 10)
        expert = sum(_lpddr_planes(sum(u.groups * B for u in s),
                                   sum(-(-u.groups // k) for u in s), base)[1] for s in shards)
        lp_word = base.lpddr.bytes_per_word
        lp_words = _round_up(L * E * expert + -(-dense_bytes(config) // lp_word), 1 << 12)
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
    (a :class:`hw.params.TopParams`; see the module docstring). Raises ValueError naming what does
    not fit."""

    def __init__(self, config, params):
        if not isinstance(params, TopParams):
            raise TypeError(f"params must be a TopParams, not {params!r}")
        self.config, self.params = config, params
        mac = params.mac
        self.mac = mac
        self.B = mac.beats_per_group
        self.k = params.scale_slots
        self.block_width = mac.channels(MacMode.MSB)
        self.shapes, self.groups, self.blocks, self.shards = tile_shards(config, mac, params.pes)
        c = config
        self.plane_words = [sum(u.groups * self.B for u in s) for s in self.shards]
        self.scale_words = [sum(-(-u.groups // self.k) for u in s) for s in self.shards]
        self.slot_hb_words = max(w + s for w, s in zip(self.plane_words, self.scale_words)) \
            * params.hb_ratio
        if self.slot_hb_words > params.slot_words:
            raise ValueError(f"an expert's MSB and SCALE shard needs {self.slot_hb_words} HB words "
                             f"per slot, more than slot_words ({params.slot_words})")
        self.moe_layers = tuple(c.moe_layers)
        if len(self.moe_layers) > params.cache.layers or c.num_experts > params.cache.experts:
            raise ValueError(f"the cache covers {params.cache.layers} layers x "
                             f"{params.cache.experts} experts, the model has "
                             f"{len(self.moe_layers)} MoE layers x {c.num_experts} experts")
        regions = [_lpddr_planes(w, s, params)
                   for w, s in zip(self.plane_words, self.scale_words)]
        self._plane_starts = [starts for starts, _ in regions]
        n_experts = len(self.moe_layers) * c.num_experts
        self.expert_words = sum(length for _, length in regions)
        if n_experts * self.expert_words > params.lpddr.words:
            raise ValueError(f"the experts need {n_experts * self.expert_words} LPDDR words, more "
                             f"than the {params.lpddr.words} LPDDR holds")
        self._pe_base = np.cumsum([0] + [length for _, length in regions]).tolist()
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

    def plane_offset(self, pe, plane):
        """LPDDR words from the start of PE ``pe``'s MSB plane to its ``plane`` (module docstring:
        the planes lie half a bank sweep apart)."""
        if plane not in PLANES:
            raise ValueError(f"plane must be one of {', '.join(PLANES)}, not {plane!r}")
        return self._plane_starts[pe][plane]

    def slot_offset(self, pe, plane):
        """Weight words from the start of a slot to PE ``pe``'s ``plane`` ("MSB" or "SCALE")."""
        if plane not in ("MSB", "SCALE"):
            raise ValueError(f"a slot holds the MSB and SCALE planes, not {plane!r}")
        return 0 if plane == "MSB" else self.plane_words[pe]

    def lpddr_plane(self, layer, expert, pe, plane):
        """LPDDR word address of PE ``pe``'s ``plane`` ("MSB", "LSB", "SCALE") of an expert."""
        base = (self.layer_index(layer) * self.config.num_experts + expert) * self.expert_words
        return base + self._pe_base[pe] + self.plane_offset(pe, plane)

    # -- contents ------------------------------------------------------------------------------------
    def unit_codes(self, codes, unit):
        """INT8 codes ``[in, 2 * out_channels]`` of ``unit`` from the linear's codes (zero-padded)."""
        w = self.block_width
        block = np.asarray(codes)[:, unit.block * w:(unit.block + 1) * w]
        if block.shape[1] < w:
            block = np.pad(block, ((0, 0), (0, w - block.shape[1])))
        return block

    def unit_scales(self, scales, unit):
        """FP16 scales ``[groups, 2 * out_channels]`` of ``unit`` (zero for padded channels)."""
        w = self.block_width
        block = np.asarray(scales, dtype=np.float16)[:, unit.block * w:(unit.block + 1) * w]
        if block.shape[1] < w:
            block = np.pad(block, ((0, 0), (0, w - block.shape[1])))
        return block

    def expert_planes(self, quant):
        """Weight words of one expert: ``{plane: [per PE: list of words]}`` for "MSB", "LSB" and
        "SCALE"; ``quant[name]``: the :class:`sw_model.golden.quant.QuantWeights` (INT8 codes
        ``[in, out]``, FP16 scales ``[groups, out]``) of gate, up and down. A weight word is the
        MAC's wire format (:meth:`sw_model.golden.mac_array.SliceLevelMac.pack_weights`: byte
        ``(hi << 4) | lo`` per lane and channel) packed as
        :func:`sw_model.golden.top.pack_weight_beat` does, byte ``lane * out_channels + channel``
        at bits ``8 * index``; a scale word holds ``scale_slots`` groups of ``2 * out_channels``
        FP16 encodings, group after group, channel after channel, from bit 0. ValueError names a
        scale that is not a finite FP16 value."""
        C, L, k = self.mac.out_channels, self.mac.lanes, self.k
        R = 2 * C
        to_words = lambda b: [int.from_bytes(row.tobytes(), "little")
                              for row in np.ascontiguousarray(b, dtype=np.uint8).reshape(-1, L * C)]
        out = {plane: [] for plane in PLANES}
        for shard in self.shards:
            planes = {plane: [] for plane in PLANES}
            for u in shard:
                q = self.unit_codes(quant[u.name].codes, u).astype(np.int64)
                h, l = (q >> 4) & 0xF, q & 0xF
                planes["MSB"] += to_words((h[:, :C] << 4) | h[:, C:])
                planes["LSB"] += to_words((l[:, :C] << 4) | l[:, C:])
                sc = self.unit_scales(quant[u.name].scales, u)
                check_scales(sc, f"{u.name} block {u.block} scale")
                encodings = sc.view(np.uint16)
                for w0 in range(0, u.groups, k):
                    chunk = np.ascontiguousarray(encodings[w0:w0 + k], dtype="<u2")
                    planes["SCALE"].append(int.from_bytes(chunk.tobytes(), "little"))
            for plane in PLANES:
                out[plane].append(planes[plane])
        return out

    # -- the plan ------------------------------------------------------------------------------------
    def plan(self, capacity):
        """The capacity plan in bytes: ``{tier: {region: bytes}}`` plus ``fits`` per tier, for
        ``capacity`` resident experts per MoE layer."""
        p, c = self.params, self.config
        L, E, P = len(self.moe_layers), c.num_experts, p.pes
        msb = sum(self.plane_words) * self.weight_word_bytes
        scales = sum(self.scale_words) * self.weight_word_bytes
        hb_slots = p.cache.slots * p.slot_words * self.hb_word_bytes * P
        resident = capacity * L
        hb = {"slot region (all slots, all channels)": hb_slots,
              "resident MSB slices": resident * msb,
              "resident experts' scale words": resident * scales,
              "dense weights and scales": self.dense_bytes}
        hb_total = hb_slots + self.dense_bytes
        lpddr = {"MSB planes": L * E * msb, "LSB planes": L * E * msb,
                 "scale words": L * E * scales,
                 "padding between planes (bank stagger)":
                     L * E * (self.expert_words * self.lpddr_word_bytes - 2 * msb - scales),
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
                f"per expert (MSB, LSB and SCALE planes)")
