"""The decoding policy: one record of the decoding settings, with one set of defaults.

``sd``, ``schedule``, the demo, ``perf``, ``sweep`` and ``ablate`` all read their decoding settings
from a :class:`DecodingPolicy` (``build.py ... --decoding FILE --set decoding.gamma=6``; a
command's own flags such as ``--gamma`` override the record for one run). Fields:

* ``gamma``: draft tokens per Elastic-SD step (the paper does not publish it; 4);
* ``threshold``: the batch at and above which the accelerator runs Elastic-SD instead of cached
  decoding (unpublished; 4);
* ``draft_policy``: which experts the draft routes to (:data:`DRAFT_POLICIES`: ``resident``, the
  paper's: the router's ranking restricted to the HB-resident set; ``specmoe``; ``elastic-k``);
* ``resident_set``: how the resident set is chosen (:data:`RESIDENT_SETS`: ``frequency``, the
  paper's routing counts; ``static``; ``random``);
* ``tree``: the draft's shape: ``chain`` (``gamma`` drafts in a row, the default), or a token tree
  (:func:`sw_model.decode.tree.parse_tree`: ``static:4,2,1``, children per node at each depth;
  ``dynamic:nodes=16,depth=6,k=4,width=8``, a budgeted tree that grows where the draft is
  confident); with a tree, ``gamma`` is not used;
* ``temperature``: the acceptance rule: 0 greedy (a draft token is kept when it is the target's
  greedy token), above 0 rejection sampling at that temperature (keeps the target's distribution);
* ``acceptance``: how the performance model maps a resident share to acceptance
  (:data:`ACCEPTANCE_MAPPINGS`: ``resident``, the ablations' measured curves; ``coverage``);
* ``locality``: the routing locality of generated traces (``measured``: the trained model's on
  the held-out text; ``assumed``; or ``zipf=X,reuse=R`` / ``top_share=S,reuse=R``).

A policy file is TOML (or ``.json``) holding any of these fields; the others keep their defaults.
"""

from dataclasses import dataclass, fields, replace
import json
import tomllib

from hw.machines import read_table_file
from hw.params import ParamsRecord

__all__ = ["DecodingPolicy", "DEFAULT_POLICY", "PolicyError", "DRAFT_POLICIES", "RESIDENT_SETS",
           "ACCEPTANCE_MAPPINGS", "load_policy", "apply_policy_sets", "policy_toml"]

DRAFT_POLICIES = ("resident", "specmoe", "elastic-k")
RESIDENT_SETS = ("frequency", "static", "random")
ACCEPTANCE_MAPPINGS = ("resident", "coverage")


class PolicyError(ValueError):
    """A policy file, key or value that cannot be used; the message names it."""


def _locality_text(text):
    """Whether ``text`` has the form of a locality (its values are checked where it is used,
    :meth:`sw_model.perf.workload.Locality.parse`)."""
    text = text.strip()
    if text in ("measured", "assumed"):
        return True
    for part in text.split(","):
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in ("zipf", "reuse", "top_share", "seed"):
            return False
    return True


@dataclass(frozen=True)
class DecodingPolicy(ParamsRecord):
    """The decoding settings (module docstring)."""
    gamma: int = 4
    threshold: int = 4
    draft_policy: str = "resident"
    resident_set: str = "frequency"
    temperature: float = 0.0
    acceptance: str = "resident"
    locality: str = "measured"
    tree: str = "chain"

    def __post_init__(self):
        for name in ("gamma", "threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PolicyError(f"decoding.{name} must be a positive integer, not {value!r}")
        for name, choices in (("draft_policy", DRAFT_POLICIES), ("resident_set", RESIDENT_SETS),
                              ("acceptance", ACCEPTANCE_MAPPINGS)):
            if getattr(self, name) not in choices:
                raise PolicyError(f"decoding.{name} must be one of {', '.join(choices)}, not "
                                  f"{getattr(self, name)!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < float("inf"):
            raise PolicyError(f"decoding.temperature must be a number >= 0, not {t!r}")
        from sw_model.decode.tree import parse_tree
        try:
            parse_tree(self.tree)
        except ValueError as exc:
            raise PolicyError(f"decoding.{exc}" if str(exc).startswith("tree.") else
                              f"decoding.tree: {exc}") from None
        if not isinstance(self.locality, str) or not _locality_text(self.locality):
            raise PolicyError(f"decoding.locality must be 'measured', 'assumed' or "
                              f"comma-separated zipf=, top_share=, reuse=, seed= values, not "
                              f"{self.locality!r}")

    def describe(self):
        rule = "greedy" if self.temperature == 0 else f"sampling at T={self.temperature:g}"
        draft = f"tree {self.tree}" if self.tree != "chain" else f"gamma {self.gamma}"
        return (f"{draft}, threshold {self.threshold}, {self.draft_policy} draft, "
                f"{self.resident_set} resident set, {rule} acceptance, {self.acceptance} "
                f"acceptance mapping, {self.locality} locality")


DEFAULT_POLICY = DecodingPolicy()


def _typed(key, old, value, where):
    if isinstance(old, int) and not isinstance(old, bool):
        ok = isinstance(value, int) and not isinstance(value, bool)
        kind = "an integer"
    elif isinstance(old, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        kind = "a number"
    else:
        ok, kind = isinstance(value, str), "a name"
    if not ok:
        raise PolicyError(f"{where}: decoding.{key} takes {kind}, not {value!r}")
    return value


def _from_values(values, where, base=DEFAULT_POLICY):
    names = [f.name for f in fields(DecodingPolicy)]
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise PolicyError(f"{where}: unknown decoding key {key!r}; keys: {', '.join(names)}")
        changes[key] = _typed(key, getattr(base, key), value, where)
    try:
        return replace(base, **changes)
    except PolicyError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def load_policy(path):
    """The policy of a file (TOML, or JSON by its ``.json`` name)."""
    values = read_table_file(path, "decoding policy file", PolicyError)
    return _from_values(values, f"decoding policy file {path}")


def apply_policy_sets(policy, sets):
    """``policy`` with ``decoding.key=value`` items applied (``key=value`` without the prefix)."""
    values = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PolicyError(f"--set decoding.{item!r}: expected decoding.key=value")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        values[key.strip()] = value
        policy = _from_values({key.strip(): value}, f"--set decoding.{item}", policy)
    return policy


def policy_toml(policy, title=None):
    """``policy`` as a complete TOML file."""
    lines = [f"# {title}"] if title else []
    for key, value in policy.to_dict().items():
        lines.append(f"{key} = {json.dumps(value) if isinstance(value, str) else repr(value)}")
    return "\n".join(lines) + "\n"
