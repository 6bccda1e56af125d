"""What one phase of a decode step costs: the common back end of both model paths.

A :class:`PhaseWork` says what a phase moves and computes (bytes per memory tier, multiply-
accumulates per precision, bytes over the on-die links, dependent layers). The analytic path
(:mod:`sw_model.perf.methods`) builds it from model shapes and routing statistics; the
stream-driven path (:mod:`sw_model.perf.streams`) sums it from command records. :func:`evaluate`
turns it into time and energy on a :class:`~sw_model.perf.hardware.HardwareConfig`.

Overlap (assumed, from the paper's dataflow): inside a phase the near tier, the far tier, the MAC
array and the links all work at once (weights of the next layer are prefetched while this layer
computes), so a phase takes as long as its busiest resource, plus one dependent memory latency per
layer for each tier it reads (the router decides which experts come next) and the machine's fixed
per-layer overhead. Phases follow each other (a draft token needs the previous one; verification
needs every draft token).
"""

from dataclasses import dataclass, fields

__all__ = ["PhaseWork", "PhaseCost", "evaluate"]


@dataclass(frozen=True)
class PhaseWork:
    """Work of one phase. Bytes: ``near_read``, ``near_write``, ``far_read`` (external far-tier
    traffic), ``far_internal`` (weights read inside the far tier by its own compute, PIM-style);
    ``macs_w8`` / ``macs_w4`` multiply-accumulates with 8-bit / 4-bit weights on the PEs;
    ``far_macs`` done inside the far tier; ``gather`` bytes per PE over the gather link;
    ``stream`` bytes over the LPDDR stream link; ``sram`` bytes through PE SRAMs; ``layers``
    dependent layers; ``tokens`` tokens the phase processes (for the report)."""
    near_read: float = 0.0
    near_write: float = 0.0
    far_read: float = 0.0
    far_internal: float = 0.0
    macs_w8: float = 0.0
    macs_w4: float = 0.0
    far_macs: float = 0.0
    gather: float = 0.0
    stream: float = 0.0
    sram: float = 0.0
    layers: int = 0
    tokens: int = 0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"PhaseWork.{f.name} must be a number >= 0, not {value!r}")

    def __add__(self, other):
        return PhaseWork(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                            for f in fields(self)})

    def scaled(self, factor):
        """This work ``factor`` times (``layers`` and ``tokens`` too)."""
        return PhaseWork(**{f.name: getattr(self, f.name) * factor for f in fields(self)})

    def as_dict(self):
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class PhaseCost:
    """Seconds and joules of one phase, with the busy time of every resource and the energy by
    component (``bound`` names the resource that set the time)."""
    seconds: float
    joules: float
    busy: dict
    energy: dict
    bound: str


def evaluate(hw, work):
    """Time and energy of ``work`` (a :class:`PhaseWork`) on ``hw``."""
    if work.near_read + work.near_write and hw.near is None:
        raise ValueError(f"{hw.name} has no near tier, but the phase moves "
                         f"{work.near_read + work.near_write:.0f} bytes there")
    if work.far_internal and hw.far_compute is None:
        raise ValueError(f"{hw.name} has no far-tier compute, but the phase reads "
                         f"{work.far_internal:.0f} bytes inside the far tier")
    busy = {"far": work.far_read / hw.far.bytes_per_s}
    if hw.near is not None:
        busy["near"] = (work.near_read + work.near_write) / hw.near.bytes_per_s
    if hw.far_compute is not None:
        # The far tier's internal reads and its external traffic share its banks.
        busy["far"] += work.far_internal / (hw.far.bytes_per_s * hw.far_compute.bandwidth_ratio)
    busy["mac"] = (2 * work.macs_w8 / (hw.peak_tops_w8 * 1e12)
                   + 2 * work.macs_w4 / (hw.peak_tops_w4 * 1e12)) / hw.mac_utilization
    if hw.gather_gbps:
        busy["gather"] = work.gather / (hw.gather_gbps * 1e9)
    if hw.stream_gbps:
        busy["stream"] = work.stream / (hw.stream_gbps * 1e9)
    bound = max(busy, key=busy.get)
    latency = work.layers * (hw.layer_overhead_us * 1e-6
                             + (hw.far.latency_ns * 1e-9 if work.far_read + work.far_internal
                                else 0.0)
                             + (hw.near.latency_ns * 1e-9 if hw.near is not None
                                and work.near_read else 0.0))
    seconds = busy[bound] + latency
    energy = {
        "far": 8 * work.far_read * hw.far.read_pj_per_bit * 1e-12,
        "near": 8 * (work.near_read * (hw.near.read_pj_per_bit if hw.near else 0.0)
                     + work.near_write * (hw.near.write_pj_per_bit if hw.near else 0.0)) * 1e-12,
        "far_internal": 8 * work.far_internal * (hw.far_compute.pj_per_bit
                                                 if hw.far_compute else 0.0) * 1e-12,
        "mac": (work.macs_w8 * hw.mac_w8_pj + work.macs_w4 * hw.mac_w4_pj
                + work.far_macs * hw.mac_w8_pj) * 1e-12,
        "sram": 8 * work.sram * hw.sram_pj_per_bit * 1e-12,
        "links": 8 * (work.gather * hw.pes + work.stream) * hw.link_pj_per_bit * 1e-12,
        "static": (hw.static_w + hw.active_w) * seconds,
    }
    return PhaseCost(seconds=seconds, joules=sum(energy.values()), busy=busy, energy=energy,
                     bound=bound)
