"""Hardware configurations of the performance model: ELMoE-3D and every baseline.

Every constant is a named field or module constant with its source: **paper** (the ELMoE-3D paper),
**RTL** (a measured bench figure on this project's RTL, see :data:`RTL_CALIBRATION`), **CSV**
(the measured H100 baseline, ``xpu_moe_decode_h100.csv``) or **assumed** (a stated assumption, to
be replaced when a better source exists). Two calibration profiles: ``paper`` (the paper's own
efficiencies: HB 3% below peak, LPDDR within 1%) and ``rtl`` (this project's bench figures).

ELMoE-3D and the xPU-class baselines are built from one machine description (a
:class:`hw.params.TopParams`, :mod:`hw.machines`): the PE count, the peak TOPS (the MAC array's
multiply-accumulates per cycle, the PEs and their clock), the HB and LPDDR bandwidth, capacity and
access energy, and the on-die links all come from its parameters; nothing here retypes them.

A machine has a *near* tier (HB, or GPU HBM) and a *far* tier (LPDDR, or host memory over PCIe),
an array of PEs, on-die links and, for the PIM-style baselines, compute inside the far tier.
What the near tier may hold is a property of the machine:

* ``"msb"``: the upper nibble (plus scales) of each resident INT8 expert (ELMoE-3D's bit nesting:
  a hit still streams the lower nibble from the far tier);
* ``"whole"``: whole experts (HB-xPU, the GPU);
* ``None``: no near tier (LPDDR-only xPU and the PIM-style baselines).
"""

from dataclasses import dataclass, replace

from hw.params import MAC_PAPER_PE, MacMode, ParamsRecord, TOP_PAPER, TopParams
from sw_model.perf.calibrate import (H100_PEAK_GBPS, PAPER_CALIBRATION, RTL_CALIBRATION,
                                     fit_gpu_anchor)

__all__ = ["MemoryTier", "FarCompute", "HardwareConfig", "RTL_CALIBRATION", "PAPER_CALIBRATION",
           "machine_label", "elmoe3d", "xpu", "hb_xpu", "xpu_pim", "xpu_logicpim", "xpu_nmp", "gpu_offload",
           "baselines", "CACHE_POLICIES", "PriorAssumptions", "PRIORS"]

GIB = 1 << 30

# -- assumed energy and power figures (7 nm logic die at 0.7 V; paper gives only the DRAM ones) --
#: pJ per 8-bit MAC (W8A8). Assumed: Horowitz 45 nm 8-bit mult+add ~0.23 pJ scaled ~4x to 7 nm.
MAC_W8_PJ = 0.06
#: pJ per 4-bit-weight MAC (draft / split partial): half the slice work. Assumed.
MAC_W4_PJ = 0.03
#: pJ per bit written and read once through a PE's weight or I/O SRAM (32 KB). Assumed, 7 nm.
SRAM_PJ_PER_BIT = 0.05
#: pJ per bit on an on-die link (gather or stream). Assumed, a few mm of global wire at 0.7 V.
LINK_PJ_PER_BIT = 0.15
#: Static and background power of the logic die plus DRAM refresh, W. Assumed.
STATIC_W = 2.0
#: Bytes per token, layer and hidden element crossing the gather link: the INT8 activation
#: broadcast plus FP16 partial sums at two projection boundaries (attention out, MoE out) in an
#: all-reduce (2 x 2 bytes). Assumed from the paper's dataflow (partial sums meet at boundaries).
GATHER_BYTES_PER_HIDDEN = 1 + 2 * 2 * 2


#: Expert-cache policies of cached decoding: ``lru`` (every miss installed, least recently used
#: evicted: the paper's cache model), ``static`` (a placement pinned from an offline routing
#: profile), ``best`` (the better of the two per point), ``none`` (no expert is cached; the near
#: tier holds dense weights and KV only).
CACHE_POLICIES = ("lru", "static", "best", "none")


@dataclass(frozen=True)
class MemoryTier(ParamsRecord):
    """A memory tier: ``capacity_gb`` GiB, ``peak_gbps`` GB/s at ``efficiency`` sustained,
    ``read_pj_per_bit`` / ``write_pj_per_bit`` access energy, ``latency_ns`` per dependent access
    (charged once per layer of a pass that reads the tier: the router decides what comes next)."""
    name: str
    capacity_gb: float
    peak_gbps: float
    efficiency: float
    read_pj_per_bit: float
    write_pj_per_bit: float
    latency_ns: float

    def __post_init__(self):
        for name in ("capacity_gb", "peak_gbps", "read_pj_per_bit", "write_pj_per_bit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"MemoryTier {self.name}: {name} must be a positive number, "
                                 f"not {value!r}")
        if not 0 < self.efficiency <= 1:
            raise ValueError(f"MemoryTier {self.name}: efficiency must be in (0, 1], not "
                             f"{self.efficiency!r}")
        if not self.latency_ns >= 0:
            raise ValueError(f"MemoryTier {self.name}: latency_ns must be >= 0, not "
                             f"{self.latency_ns!r}")

    @property
    def capacity_bytes(self):
        return self.capacity_gb * GIB

    @property
    def bytes_per_s(self):
        return self.peak_gbps * 1e9 * self.efficiency


@dataclass(frozen=True)
class FarCompute(ParamsRecord):
    """Compute inside or beside the far memory (the PIM-style baselines). Weights are read there
    at ``bandwidth_ratio`` x the far tier's external bandwidth and ``pj_per_bit``; one internal
    read serves at most ``tokens_per_read`` tokens (1: GEMV units, each token re-reads the
    weights; 0: unlimited, as batched as the xPU)."""
    name: str
    bandwidth_ratio: float
    tokens_per_read: int
    pj_per_bit: float

    def __post_init__(self):
        if not self.bandwidth_ratio > 0 or not self.pj_per_bit > 0:
            raise ValueError(f"FarCompute {self.name}: bandwidth_ratio and pj_per_bit must be "
                             "positive")
        if isinstance(self.tokens_per_read, bool) or not isinstance(self.tokens_per_read, int) \
                or self.tokens_per_read < 0:
            raise ValueError(f"FarCompute {self.name}: tokens_per_read must be an int >= 0, not "
                             f"{self.tokens_per_read!r}")


@dataclass(frozen=True)
class HardwareConfig(ParamsRecord):
    """One machine. ``peak_tops_w8`` / ``peak_tops_w4``: INT8 / 4-bit-weight tera-ops per second
    (2 ops per MAC) at ``mac_utilization``; ``near_holds`` what the near tier keeps of a resident
    expert (module docstring); ``gather_gbps`` per PE and ``stream_gbps`` aggregate on-die links
    (0: no such link); ``weight_bytes_scale`` multiplies INT8 weight bytes (2.0 / 1.0625 for BF16
    on the GPU); ``mac_tokens`` tokens one MAC operation serves (an expert runs its rows in tiles of
    that many; paper PE: 16); ``static_w`` background power; ``active_w`` power drawn while busy in place of
    per-operation energy (the GPU, 0 elsewhere); ``cache_policy`` the machine's own expert-cache
    policy for cached decoding (None: ``Settings.cache_policy``; :data:`CACHE_POLICIES`)."""
    name: str
    far: MemoryTier
    pes: int
    peak_tops_w8: float
    peak_tops_w4: float
    mac_utilization: float
    near: MemoryTier = None
    near_holds: str = None
    gather_gbps: float = 0.0
    stream_gbps: float = 0.0
    far_compute: FarCompute = None
    weight_bytes_scale: float = 1.0
    static_w: float = STATIC_W
    active_w: float = 0.0
    layer_overhead_us: float = 0.0
    mac_w8_pj: float = MAC_W8_PJ
    mac_w4_pj: float = MAC_W4_PJ
    sram_pj_per_bit: float = SRAM_PJ_PER_BIT
    link_pj_per_bit: float = LINK_PJ_PER_BIT
    kv_near: bool = True
    mac_tokens: int = MAC_PAPER_PE.tokens
    cache_policy: str = None

    def __post_init__(self):
        if self.cache_policy not in CACHE_POLICIES + (None,):
            raise ValueError(f"HardwareConfig {self.name}: cache_policy must be None or one of "
                             f"{', '.join(CACHE_POLICIES)}, not {self.cache_policy!r}")
        if self.near_holds not in (None, "msb", "whole"):
            raise ValueError(f"HardwareConfig {self.name}: near_holds must be None, 'msb' or "
                             f"'whole', not {self.near_holds!r}")
        if (self.near is None) != (self.near_holds is None):
            raise ValueError(f"HardwareConfig {self.name}: near_holds is set exactly when there "
                             "is a near tier")
        if not 0 < self.mac_utilization <= 1:
            raise ValueError(f"HardwareConfig {self.name}: mac_utilization must be in (0, 1], "
                             f"not {self.mac_utilization!r}")
        if isinstance(self.pes, bool) or not isinstance(self.pes, int) or self.pes < 1:
            raise ValueError(f"HardwareConfig {self.name}: pes must be a positive int, not "
                             f"{self.pes!r}")
        if not self.peak_tops_w8 > 0 or not self.peak_tops_w4 > 0:
            raise ValueError(f"HardwareConfig {self.name}: peak TOPS must be positive")

    @property
    def near_capacity_bytes(self):
        return self.near.capacity_bytes if self.near else 0.0

    def with_near_capacity(self, gb):
        """The same machine with ``gb`` GiB in the near tier (for sweeps)."""
        if self.near is None:
            raise ValueError(f"{self.name} has no near tier to resize")
        return replace(self, near=replace(self.near, capacity_gb=gb))


# -- ELMoE-3D and the xPUs from a machine description ------------------------------------------

def machine_label(machine):
    """A short name of an ELMoE-3D machine for tables: HB GiB and PEs, e.g. ``8 GB / 32 PE``."""
    return f"{machine.hb_capacity_bytes / GIB:g} GB / {machine.pes} PE"


def _lpddr(machine, cal):
    lp, timing = machine.lpddr, machine.lpddr_timing
    return MemoryTier("LPDDR5", lp.capacity_bytes / GIB, lp.peak_gbps,
                      cal["lpddr_seq_read_efficiency"], timing.pj_per_bit, timing.pj_per_bit,
                      cal["lpddr_latency_cycles_median"] / (lp.clock_mhz / 1000))


def _hb(machine, cal):
    timing = machine.hb_timing
    return MemoryTier("HB", machine.hb_capacity_bytes / GIB, machine.hb_peak_gbps,
                      cal["hb_seq_read_efficiency"], timing.pj_per_bit, timing.pj_per_bit,
                      cal["hb_latency_cycles_median"] / (machine.hb.clock_mhz / 1000))


def _calibration(profile):
    if isinstance(profile, dict):
        missing = sorted(set(RTL_CALIBRATION) - set(profile))
        if missing:
            raise ValueError(f"calibration lacks {', '.join(missing)}")
        return profile
    try:
        return {"paper": PAPER_CALIBRATION, "rtl": RTL_CALIBRATION}[profile]
    except KeyError:
        raise ValueError(f"calibration profile must be 'paper' or 'rtl', not {profile!r}") from None


def _compute(machine, cal):
    """The PEs of ``machine``: peak compute from the MAC array, the PE count and the clock."""
    return dict(pes=machine.pes, peak_tops_w8=machine.peak_tops(MacMode.FULL),
                peak_tops_w4=machine.peak_tops(MacMode.DRAFT),
                mac_utilization=cal["utilization_full"], gather_gbps=machine.gather_gbps,
                stream_gbps=machine.stream_gbps, mac_tokens=machine.mac.tokens)


def _machine(machine):
    if not isinstance(machine, TopParams):
        raise TypeError(f"expected a machine (hw.params.TopParams), not {machine!r}")
    return machine


def elmoe3d(machine=TOP_PAPER, calibration="paper"):
    """ELMoE-3D on ``machine`` (a :class:`hw.params.TopParams`, default the paper's 32 PEs with
    8 GiB of HB): PEs, peak TOPS, HB and LPDDR bandwidth, capacity and energy all come from it."""
    machine, cal = _machine(machine), _calibration(calibration)
    return HardwareConfig(name=f"ELMoE-3D {machine.hb_capacity_bytes / GIB:g}GB",
                          far=_lpddr(machine, cal), near=_hb(machine, cal), near_holds="msb",
                          **_compute(machine, cal))


def xpu(machine=TOP_PAPER, calibration="paper"):
    """The LPDDR-only xPU: ``machine``'s PEs, links and LPDDR; no HB (dense weights and KV in
    LPDDR)."""
    machine, cal = _machine(machine), _calibration(calibration)
    return HardwareConfig(name="xPU", far=_lpddr(machine, cal), kv_near=False,
                          **_compute(machine, cal))


def hb_xpu(machine=TOP_PAPER, calibration="paper", cache_policy="lru"):
    """HB-xPU: the xPU with the same HB stack (capacity, banks, bandwidth, energy) used as a plain
    memory tier, no bit nesting, no speculative decoding. What a reader of the paper would build
    (chosen default, ``cache_policy="lru"``): HB holds the dense weights and the KV cache, and the
    rest of it is an LRU cache of whole INT8 experts (the paper models its caches with an LRU
    approximation), so half as many experts fit as ELMoE-3D's upper nibbles; a hit reads the
    expert from HB only, a miss reads it from LPDDR and installs it (the fill rides on the read).
    Alternatives (``perf --hb-xpu-cache``): ``best`` / ``static`` (a profiled pinned placement,
    stronger than the paper's cache model on skewed routing), ``none`` (HB holds dense + KV
    only)."""
    base = elmoe3d(machine, calibration)
    return replace(base, name="HB-xPU", near_holds="whole", cache_policy=cache_policy)


#: Assumed PIM-style baselines. The paper names them (xPU-PIM, xPU-LogicPIM, xPU-NMP) but gives
#: no figures, so each is a typical published class on the same LPDDR5 (64 GB, 102.4 GB/s) and
#: the xPU's PEs; every weight product of a step runs in the far tier, attention on the PEs with
#: the KV read externally (no HB). The internal-bandwidth ratios are the figures the headline is
#: most sensitive to (``perf --pim-bandwidth``). Reasoning per class:
#: bank-level LPDDR-PIM (AiM / LPDDR5-PIM class): a MAC unit per bank group reads rows at 4x the
#: external bandwidth; GEMV units (one token per weight read: batching does not amortise the
#: weights, the reason such systems keep batched FC layers on the xPU); an internal access costs
#: ~40% of an external one (no I/O, no PHY).
PIM = FarCompute("LPDDR-PIM", bandwidth_ratio=4.0, tokens_per_read=1, pj_per_bit=1.55)
#: Logic-die PIM under an LPDDR stack (the Logic-PIM class, e.g. Duplex's compute on the DRAM
#: stack's base die): the base die sees the banks through TSVs at 2x the external bandwidth and
#: has room for wider MAC units, which serve 4 tokens per weight read (a low-op/B engine for MoE
#: experts and attention); an access skips the PHY but not the TSVs: ~60% of the external energy.
LOGIC_PIM = FarCompute("Logic-PIM", bandwidth_ratio=2.0, tokens_per_read=4, pj_per_bit=2.33)
#: Near-memory processing in the buffer chip of the memory package or module (NMP class): ranks
#: are read in parallel behind the buffer, 2x the external bandwidth; the buffer's compute is a
#: full GEMM engine, so batching amortises weights as on the xPU; the DRAM access and most of
#: the I/O remain: ~80% of the external energy.
NMP = FarCompute("NMP", bandwidth_ratio=2.0, tokens_per_read=0, pj_per_bit=3.10)


def _pim_like(name, compute, machine, calibration):
    base = xpu(machine, calibration)
    return replace(base, name=name, far_compute=compute)


def xpu_pim(machine=TOP_PAPER, calibration="paper", compute=PIM):
    return _pim_like("xPU-PIM", compute, machine, calibration)


def xpu_logicpim(machine=TOP_PAPER, calibration="paper", compute=LOGIC_PIM):
    return _pim_like("xPU-LogicPIM", compute, machine, calibration)


def xpu_nmp(machine=TOP_PAPER, calibration="paper", compute=NMP):
    return _pim_like("xPU-NMP", compute, machine, calibration)


#: H100 SXM dense INT8 and BF16 tensor throughput (data sheet), TOPS.
GPU_TOPS_INT8 = 1979.0
GPU_TOPS_BF16 = 989.0
#: PCIe Gen5 x16: 64 GB/s per direction peak, ~80% achieved by pinned-memory copies (assumed).
PCIE_GBPS = 64.0
PCIE_EFFICIENCY = 0.80
#: GPU memory set aside for weights (dense, KV, expert cache) in SpecMoE's offloading setting:
#: the model does not fit, experts live in host DDR5. Assumed 16 GiB.
GPU_WEIGHT_BUDGET_GB = 16
#: GPU board power while decoding (assumed ~60% of the 700 W TDP), host DDR5 + PCIe energy per
#: bit (assumed: DDR5 access ~5 pJ/bit plus PCIe ~5 pJ/bit).
GPU_ACTIVE_W = 420.0
HOST_PJ_PER_BIT = 10.0
#: HBM3 access energy, pJ/bit (assumed, typical published figure ~3.9).
HBM_PJ_PER_BIT = 3.9
#: One dependent host-to-GPU transfer (DMA set-up and round trip), ns. Assumed.
PCIE_LATENCY_NS = 2000.0
#: Fraction of the GPU's tensor peak a decode step reaches (assumed; memory binds anyway).
GPU_MAC_UTILIZATION = 0.5


def gpu_offload():
    """An H100 serving BF16 weights with experts offloaded to host memory over PCIe (SpecMoE's
    setting): dense weights, KV and a whole-expert cache in a 16 GiB HBM budget. Calibrated by
    the measured H100 table (:func:`sw_model.perf.calibrate.fit_gpu_anchor`: effective HBM
    bandwidth and fixed cost per layer), not by the accelerator profiles."""
    anchor = fit_gpu_anchor()
    near = MemoryTier("HBM3", GPU_WEIGHT_BUDGET_GB, H100_PEAK_GBPS, anchor["hbm_efficiency"],
                      HBM_PJ_PER_BIT, HBM_PJ_PER_BIT, 0.0)
    far = MemoryTier("host/PCIe", 512, PCIE_GBPS, PCIE_EFFICIENCY, HOST_PJ_PER_BIT,
                     HOST_PJ_PER_BIT, PCIE_LATENCY_NS)
    return HardwareConfig(name="GPU+PCIe", far=far, near=near, near_holds="whole", pes=132,
                          peak_tops_w8=GPU_TOPS_BF16, peak_tops_w4=GPU_TOPS_BF16,
                          mac_utilization=GPU_MAC_UTILIZATION, weight_bytes_scale=2.0 / (1 + 2 / 32),
                          static_w=0.0, active_w=GPU_ACTIVE_W,
                          layer_overhead_us=anchor["layer_overhead_us"],
                          mac_w8_pj=0.0, mac_w4_pj=0.0, sram_pj_per_bit=0.0, link_pj_per_bit=0.0)


@dataclass(frozen=True)
class PriorAssumptions:
    """The assumptions the four prior accelerators rest on (:func:`hb_xpu`, :data:`PIM`,
    :data:`LOGIC_PIM`, :data:`NMP`); the defaults are the chosen ones, the fields let ``perf``
    report the figures under alternatives (``--hb-xpu-cache``, ``--pim-bandwidth``)."""
    hb_xpu_cache: str = "lru"
    pim: FarCompute = PIM
    logic_pim: FarCompute = LOGIC_PIM
    nmp: FarCompute = NMP

    def __post_init__(self):
        if self.hb_xpu_cache not in CACHE_POLICIES:
            raise ValueError(f"PriorAssumptions.hb_xpu_cache must be one of "
                             f"{', '.join(CACHE_POLICIES)}, not {self.hb_xpu_cache!r}")
        for name in ("pim", "logic_pim", "nmp"):
            if not isinstance(getattr(self, name), FarCompute):
                raise TypeError(f"PriorAssumptions.{name} must be a FarCompute, not "
                                f"{getattr(self, name)!r}")

    def with_bandwidth(self, pim, logic_pim, nmp):
        """The same assumptions with other internal-bandwidth ratios (x the external LPDDR)."""
        return replace(self, pim=replace(self.pim, bandwidth_ratio=pim),
                       logic_pim=replace(self.logic_pim, bandwidth_ratio=logic_pim),
                       nmp=replace(self.nmp, bandwidth_ratio=nmp))


#: The chosen prior assumptions.
PRIORS = PriorAssumptions()


def baselines(machine=TOP_PAPER, calibration="paper", priors=PRIORS):
    """Every baseline machine with the compute and memories of ``machine`` (by name)."""
    return {m.name: m for m in (xpu(machine, calibration),
                                hb_xpu(machine, calibration, priors.hb_xpu_cache),
                                xpu_pim(machine, calibration, priors.pim),
                                xpu_logicpim(machine, calibration, priors.logic_pim),
                                xpu_nmp(machine, calibration, priors.nmp), gpu_offload())}
