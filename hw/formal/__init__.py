"""Formal proofs of the block contracts: small harnesses around the blocks, one module per block.

Each harness (:class:`hw.formal.harness.FormalHarness`) instantiates one block at a small
configuration, assumes what its contract promises about the inputs, asserts what it promises about
the outputs and covers each property's interesting case. :data:`PROOFS` lists every proof with its
method and depth; :func:`hw.flows.formal.run_proof` runs one with SymbiYosys, and ``python
build.py formal`` runs them all. docs/formal.md states every property.
"""

from dataclasses import dataclass
from functools import partial

from hw.formal import command_processor, expert_cache, mac_array, mem_channel

__all__ = ["Proof", "PROOFS", "BLOCKS", "proofs_of"]


@dataclass(frozen=True)
class Proof:
    """One SymbiYosys run: ``harness(broken=False)`` builds the harness (``broken=True`` its
    deliberately broken variant, described by ``breaks``); ``method`` is "k-induction" (unbounded)
    or "bmc" (bounded to ``depth`` cycles, and ``why`` says why that depth covers the block's
    latency); ``cover_depth`` bounds the search for the covers; ``slow`` proofs stay out of the
    default test run. ``known_failure`` names a known bug of the block that makes the proof fail
    today (the property stays as the contract states it). ``broken_depth`` (when nonzero) is the
    depth the broken variant runs to: a k-induction that closes at a depth too shallow for the
    base case to reach the broken property's counterexample needs a deeper base case there."""
    block: str
    name: str
    harness: object
    method: str
    depth: int
    cover_depth: int
    states: str
    breaks: str
    slow: bool = False
    why: str = ""
    known_failure: str = ""
    broken_depth: int = 0


PROOFS = (
    Proof("mac_array", "streams", partial(mac_array.MacStreams, mac_array.SMALL),
          "k-induction", 7, 8,
          "stream rules on op/act/weights/results; operations in = results out + in flight "
          "(at most 3); 3 ready cycles drain the pipeline",
          "the result payload changes while stalled"),
    Proof("mac_array", "lanes", partial(mac_array.MacLanes, mac_array.SMALL),
          "k-induction", 1, 1,
          "for every weight beat and mode: the array's lane fields are the contract's, and "
          "FULL 8*H5 + L5 = q, DRAFT 8*H5 = 16h + 8, MSB 8*H5 = 16h, LSB H5 = l (both lanes)",
          "the harness expects a DRAFT weight of 16h + 7"),
    Proof("mac_array", "lane-products",
          partial(mac_array.MacLanes, mac_array.SMALL, products=True), "bmc", 1, 1,
          "as lanes, and for every activation x: 8*(x*H5) + x*L5 = x*q (FULL), 8*(x*F) = "
          "x*w_eff (DRAFT, MSB), x*F = x*l (LSB)",
          "the harness expects a DRAFT weight of 16h + 7", slow=True,
          why="the harness has no state: each cycle's properties read that cycle's free inputs "
              "only, so the one cycle checked stands for every cycle"),
    Proof("mac_array", "sums", partial(mac_array.MacSums, mac_array.SMALL),
          "k-induction", 2, 10,
          "every result slot equals its operation's lane sums combined per mode (FULL 8*SH + "
          "SL and 0, DRAFT/MSB 8*SH and 8*SL, LSB SH and SL; SH = sum x*H5 over the group with "
          "the contract's fields, activations reused after load_act = 0), with its mode and tag",
          "the harness leaves out the augmentation bit (DRAFT as 16h)", broken_depth=3),
    Proof("mac_array", "sums-wide", partial(mac_array.MacSums, mac_array.WIDE),
          "k-induction", 2, 10,
          "as sums, at 2 tokens x 2 channels x 4 lanes (a group of 8 in 2 beats)",
          "the harness leaves out the augmentation bit (DRAFT as 16h)", slow=True,
          broken_depth=3),
)

PROOFS += (
    Proof("expert_cache", "contract", partial(expert_cache.CacheContract, expert_cache.SMALL),
          "k-induction", 6, 12,
          "stream rules on req/resp; one answer per request in order with its tag (SELECT: last "
          "on its final beat only); no key resident twice; a pinned entry is never the victim; "
          "counters never decrease but by RESET_COUNTS and saturate (2 slots, 1x3 keys)",
          "the harness expects a counter at its maximum to wrap when counted"),
)

_MEM_BMC = ("14 cycles from reset hold every request kind end to end: a malformed 4-beat write "
            "(header, 3 dropped beats, its ERROR beat), 2 requests in flight, a 4-word read cut "
            "into 2 die bursts through a 2-word read buffer")

PROOFS += (
    Proof("mem_channel", "die-commands",
          partial(mem_channel.MemChannelContract, mem_channel.SMALL, False), "bmc", 14, 16,
          "stream rules on req/resp/die; every die command belongs to the well-formed request "
          "being issued (op, address, at most its words); answers in request order with their "
          "tags, one ERROR beat per malformed request",
          "a request past the device's end taken for well-formed", why=_MEM_BMC),
    Proof("mem_channel", "answers",
          partial(mem_channel.MemChannelContract, mem_channel.SMALL, True), "bmc", 14, 16,
          "as die-commands, and a malformed request's ERROR beat carries the tag of its first "
          "beat (also for a write of several beats)",
          "a request past the device's end taken for well-formed", why=_MEM_BMC),
    Proof("mem_channel", "die-commands-unbounded",
          partial(mem_channel.MemChannelContract, mem_channel.SMALL, False, answers=False,
                  inductive=True), "k-induction", 4, 16,
          "stream rules on req/resp/die; every die command belongs to the well-formed request "
          "being issued (so a malformed request issues none); the read buffer takes every word "
          "the die sends",
          "a request of max_length words taken for malformed"),
)

PROOFS += (
    Proof("command_processor", "illegal-stops",
          partial(command_processor.ProcessorContract, command_processor.SMALL),
          "k-induction", 4, 12,
          "stream rules on pe_cmd/cache_req/cache_resp; after an illegal command nothing reaches a "
          "PE or the cache until the next start; what reaches a PE has a PE opcode, its PE index, "
          "no bit outside its fields and a nonzero count (1 PE, 4 commands)",
          "the harness demands a count of at least 2"),
)

#: The blocks with proofs, in the order they run.
BLOCKS = tuple(dict.fromkeys(p.block for p in PROOFS))


def proofs_of(block=None, slow=True):
    """The proofs of ``block`` (all when None); without the slow ones unless ``slow``."""
    return [p for p in PROOFS if (block is None or p.block == block) and (slow or not p.slow)]
