"""Formal proofs of the block contracts: small harnesses around the blocks, one module per block.

Each harness (:class:`hw.formal.harness.FormalHarness`) instantiates one block at a small
configuration, assumes what its contract promises about the inputs, asserts what it promises about
the outputs and covers each property's interesting case. :data:`PROOFS` lists every proof with its
method and depth; :func:`hw.flows.formal.run_proof` runs one with SymbiYosys, and ``python
build.py formal`` runs them all. docs/formal.md states every property.
"""

from dataclasses import dataclass
from functools import partial

from hw.formal import (command_processor, expert_cache, lpddr_port, mac_array, mem_channel,
                       pe)

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
          "(at most 2 at 2 beats an operation); 3 ready cycles drain the pipeline",
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

PROOFS += (
    Proof("mem_channel", "die-commands",
          partial(mem_channel.MemChannelContract, mem_channel.SMALL, answers=False,
                  inductive=True), "k-induction", 4, 16,
          "stream rules on req/resp/die; every die command belongs to the well-formed request "
          "being issued (so a malformed request issues none); the read buffer takes every word "
          "the die sends",
          "a request of max_length words taken for malformed"),
    Proof("mem_channel", "answers",
          partial(mem_channel.MemChannelContract, mem_channel.SMALL, inductive=True),
          "k-induction", 4, 16,
          "as die-commands, and answers in request order with their tags: a read with length "
          "OK beats, last on the final one, a write with one OK beat, a malformed request with "
          "one ERROR beat carrying the tag of its first beat (also for a write of several beats)",
          "the harness expects a read's last on its second-to-last beat", broken_depth=8),
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

PROOFS += (
    Proof("lpddr_port", "contract", partial(lpddr_port.PortContract, lpddr_port.SMALL),
          "k-induction", 4, 14,
          "stream rules on every client's req/resp, the channel's req and the die; a beat "
          "reaches the channel exactly when one client's is taken, with that client's payload "
          "and index; a write's beats are not interleaved; a waiting client waits through at "
          "most one other request; every response beat reaches the client its tag names; every "
          "client's answers come back in its order with its tags (2 clients); the channel's own "
          "contract inside",
          "the harness expects a client's tag without its index"),
)

_PE_BMC = ("16 cycles from reset hold every command kind's requests and a request's whole round "
           "trip: a command reaches its first request 4 cycles after it is taken (queue output "
           "register, command register), a LOAD offers its requests back to back from then on, "
           "and a WRITE_HB of 2 words sends both beats, takes its answer and offers its next "
           "request by cycle 10, with cycles to spare for stalls; the request logic reads no PE "
           "register but the running command's and its counters, which take the same steps at "
           "any count")

PROOFS += (
    Proof("pe", "streams", partial(pe.PeStreams, pe.SMALL), "bmc", 16, 16,
          "stream rules on hb_req and lpddr_req, for any commands on cmd and answers (only "
          "those owed) on hb_resp and lpddr_resp (1 PE, 2-lane array, requests of up to 2 words)",
          "the harness checks hb_req with its address advanced every other cycle", slow=True,
          why=_PE_BMC),
)

#: The blocks with proofs, in the order they run.
BLOCKS = tuple(dict.fromkeys(p.block for p in PROOFS))


def proofs_of(block=None, slow=True):
    """The proofs of ``block`` (all when None); without the slow ones unless ``slow``."""
    return [p for p in PROOFS if (block is None or p.block == block) and (slow or not p.slow)]
