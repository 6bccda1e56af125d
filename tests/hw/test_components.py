"""The components' constructors: with no arguments every one builds its default configuration (the
blocks convert to Verilog); a wrong argument is a TypeError naming it; a rejected call leaves no
half-built elaboratable for Amaranth to report as unused, while an unused component still is
reported, where it was made. The host control port is one signature everywhere."""

import gc
import functools
import re
import warnings

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, UnusedElaboratable
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.bram_die import BramDie
from hw.command_processor import CommandProcessor, HostControlSignature, status_layout
from hw.expert_cache import ExpertCache
from hw.flows.fpga import IoHarness
from hw.hb_interface import HbInterface
from hw.host_top import HostTop
from hw.input_memory import InputMemory
from hw.lpddr_port import LpddrPort
from hw.mac_array import MacArray
from hw.mem_channel import MemoryChannel
from hw.params import (CACHE_DEFAULT, HB_DEFAULT, LPDDR_DEFAULT, MAC_DEFAULT, TOP_DEFAULT,
                       HbBankTiming, HbInterfaceParams, Lpddr5Timing, TopParams)
from hw.pe import ProcessingElement
from hw.selftest import SelfTest, SelfTestChecker
from hw.top import Top
from sim.dram_model import DramDie, HbSystem, LpddrSystem
from sim.top.system import TopSystem
from sw_model.compiler.selftest_program import selftest_program

BLOCKS = [(MacArray, MAC_DEFAULT), (ExpertCache, CACHE_DEFAULT), (HbInterface, HB_DEFAULT),
          (LpddrPort, LPDDR_DEFAULT), (Top, TOP_DEFAULT)]


@functools.lru_cache(maxsize=None)
def _default_verilog(component):
    """``(component(), its Verilog)``, converted once per class (the top takes seconds)."""
    block = component()
    return block, verilog.convert(block, name=component.__name__.lower())


@pytest.mark.xdist_group("default_verilog")      # one worker, one conversion of each block
@pytest.mark.parametrize("component, default", BLOCKS, ids=[c.__name__ for c, _ in BLOCKS])
def test_a_block_without_arguments_is_its_default_and_converts(component, default):
    block, text = _default_verilog(component)
    assert block.params == default
    assert f"module {component.__name__.lower()}(" in text


DEFAULTS = [
    (CommandProcessor, "params", TOP_DEFAULT), (ProcessingElement, "params", TOP_DEFAULT),
    (InputMemory, "params", TOP_DEFAULT), (HostTop, "params", TOP_DEFAULT),
    (TopSystem, "params", TOP_DEFAULT), (MemoryChannel, "params", HB_DEFAULT),
    (BramDie, "port", HB_DEFAULT), (DramDie, "port", HB_DEFAULT),
    (DramDie, "timing", HbBankTiming()), (lambda: DramDie(LPDDR_DEFAULT), "timing", Lpddr5Timing()),
    (HbSystem, "params", HB_DEFAULT), (HbSystem, "timing", HbBankTiming()),
    (LpddrSystem, "params", LPDDR_DEFAULT), (LpddrSystem, "timing", Lpddr5Timing()),
]
DEFAULT_IDS = [f"{'DramDie(LPDDR)' if make.__name__ == '<lambda>' else make.__name__}.{attribute}"
               for make, attribute, _ in DEFAULTS]


@pytest.mark.parametrize("make, attribute, default", DEFAULTS, ids=DEFAULT_IDS)
def test_every_component_elaborates_its_default_without_arguments(make, attribute, default):
    component = make()
    Fragment.get(component, None)
    assert getattr(component, attribute) == default


@pytest.mark.parametrize("make, message", [
    (lambda: MacArray(CACHE_DEFAULT), "params must be a MacArrayParams, not ExpertCacheParams"),
    (lambda: ExpertCache({"slots": 8}), "params must be a ExpertCacheParams, not {'slots'"),
    (lambda: HbInterface(LPDDR_DEFAULT), "params must be a HbInterfaceParams, not LpddrPort"),
    (lambda: LpddrPort(HB_DEFAULT), "params must be a LpddrPortParams, not HbInterfaceParams"),
    (lambda: Top("default"), "params must be a TopParams, not 'default'"),
    (lambda: CommandProcessor(MAC_DEFAULT), "params must be a TopParams, not MacArrayParams"),
    (lambda: ProcessingElement(HB_DEFAULT), "params must be a TopParams"),
    (lambda: InputMemory(1), "params must be a TopParams, not 1"),
    (lambda: HostTop(MAC_DEFAULT), "params must be a TopParams"),
    (lambda: MemoryChannel(TOP_DEFAULT), "params must be a MemPortParams, not TopParams"),
    (lambda: BramDie(MAC_DEFAULT), "port must be a MemPortParams"),
    (lambda: DramDie(HB_DEFAULT, HB_DEFAULT), "timing must be a DramTiming, not HbInterface"),
    (lambda: HbSystem(LPDDR_DEFAULT), "params must be a HbInterfaceParams"),
    (lambda: LpddrSystem(HB_DEFAULT), "params must be a LpddrPortParams"),
    (lambda: TopSystem(MAC_DEFAULT), "params must be a TopParams"),
    (lambda: HostControlSignature(MAC_DEFAULT), "params must be a TopParams"),
    (lambda: SelfTestChecker(status_layout(TOP_DEFAULT), 2, 8, 12, 9, [(0, 0, 1)]),
     "host must be a HostControlSignature"),
    (lambda: IoHarness(MacArray), "IoHarness wraps a wiring.Component"),
])
def test_a_wrong_argument_is_a_type_error_naming_it(make, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        make()


def test_a_top_of_module_instances_refuses_parts_of_another_machine():
    """``Top(params, instances=...)`` takes the signatures of a PE and an HB channel of ``params``
    (written once as their own modules); parts of another machine are named before anything is
    built."""
    from dataclasses import replace
    from hw.mem_channel import channel_signature
    pe, other_pe = ProcessingElement(TOP_DEFAULT), ProcessingElement(TopParams(weight_words=128))
    for part in (pe, other_pe):
        Fragment.get(part, None)
    channel = channel_signature(TOP_DEFAULT.hb)
    narrow = channel_signature(replace(TOP_DEFAULT.hb, data_width=128))
    Fragment.get(Top(TOP_DEFAULT, instances={"pe": pe.signature, "hb_channel": channel}), None)
    with pytest.raises(ValueError, match="instances must be a dict with the keys pe, hb_channel"):
        Top(TOP_DEFAULT, instances={"pe": pe.signature})
    with pytest.raises(ValueError, match=r"instances\['pe'\] must be the signature of a "
                                         r"ProcessingElement of these params"):
        Top(TOP_DEFAULT, instances={"pe": other_pe.signature, "hb_channel": channel})
    with pytest.raises(ValueError, match=r"instances\['hb_channel'\] must be the signature of a "
                                         r"MemoryChannel of params.hb"):
        Top(TOP_DEFAULT, instances={"pe": pe.signature, "hb_channel": narrow})
    with pytest.raises(ValueError, match="channel_module must be"):
        HbInterface(TOP_DEFAULT.hb, ("top_hb_channel", narrow))


# -- unused elaboratables --------------------------------------------------------------------------

class _CheckedInInit(wiring.Component):
    """Rejects its argument in ``__init__``, after the elaboratable exists: what the components
    must not do (the control case of the tests below)."""

    def __init__(self, width):
        if not isinstance(width, int):
            raise TypeError(f"width must be an int, not {width!r}")
        super().__init__({"o": Out(width)})

    def elaborate(self, platform):
        raise AssertionError("never elaborated")


def _unused_warnings(make):
    """The UnusedElaboratable warnings that a call of ``make`` raising TypeError or ValueError
    leaves, once its garbage is collected."""
    Fragment.get(MacArray(), None)      # Amaranth is silent about unused ones until one elaborated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            make()
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError("the call was accepted")
        gc.collect()
    return [w for w in caught if issubclass(w.category, UnusedElaboratable)]


def test_a_rejection_after_the_object_exists_is_reported_as_unused():
    """The control: the helper does see the warning that checking in ``__init__`` causes."""
    assert len(_unused_warnings(lambda: _CheckedInInit("8"))) == 1


def _long_program():
    program = selftest_program(TOP_DEFAULT)
    program.words = program.words * 20
    return program


@pytest.mark.parametrize("make", [
    lambda: MacArray({"tokens": 2}),
    lambda: Top(MAC_DEFAULT),
    lambda: HostTop(TOP_DEFAULT, commands=[0] * 257),
    lambda: HostTop(TOP_DEFAULT, inputs={64: 1}),
    lambda: TopSystem(MAC_DEFAULT),
    lambda: BramDie(HB_DEFAULT, [0] * (HB_DEFAULT.words + 1)),
    lambda: DramDie(HbInterfaceParams(die_burst=128, read_buffer=128), HbBankTiming()),
    lambda: HbSystem(HB_DEFAULT, dies=[]),
    lambda: SelfTestChecker(HostControlSignature(), 2, 8, 12, 9, []),
    lambda: SelfTest(_long_program()),
    lambda: IoHarness("mac_array"),
], ids=["MacArray", "Top", "HostTop commands", "HostTop inputs", "TopSystem", "BramDie",
        "DramDie", "HbSystem", "SelfTestChecker", "SelfTest", "IoHarness"])
def test_a_rejected_call_leaves_no_unused_elaboratable(make):
    assert _unused_warnings(make) == []


def test_an_unused_component_is_still_reported_where_it_was_made():
    Fragment.get(MacArray(), None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MacArray()
        gc.collect()
    (warning,) = [w for w in caught if issubclass(w.category, UnusedElaboratable)]
    assert warning.filename == __file__


# -- the host control port -------------------------------------------------------------------------

def test_the_host_control_port_is_one_signature():
    host = HostControlSignature(TOP_DEFAULT)
    assert list(host.members) == ["start", "length", "status", "cycles", "phase_cycles"]
    assert host == HostControlSignature() and host != HostControlSignature(
        TopParams(command_words=1024))
    for make in (CommandProcessor, Top, HostTop, TopSystem):
        component = make()
        Fragment.get(component, None)
        member = component.signature.members["host"]
        assert (member.flow, member.signature) == (Out, host)
    checker = SelfTestChecker(host, 2, 8, 12, 9, [(0, 0, 1)])
    Fragment.get(checker, None)
    member = checker.signature.members["host"]
    assert (member.flow, member.signature) == (In, host.flip())


@pytest.mark.xdist_group("default_verilog")
def test_the_top_s_verilog_ports_are_the_host_port_and_the_die_links():
    text = _default_verilog(Top)[1]
    header = text[text.index("module top("):]
    header = header[:header.index(");")]
    ports = set(re.findall(r"\w+", header)) - {"module", "top"}
    host = {f"host__{name}" for name in HostControlSignature().members}
    assert host <= ports
    assert not {"start", "length", "status", "cycles", "phase_cycles"} & ports
