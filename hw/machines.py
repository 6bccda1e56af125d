"""Machine descriptions: the built-in machines, machine files and ``--set`` overrides.

A *machine* is one :class:`hw.params.TopParams`: the PE count, every block's parameters (``mac``,
``cache``, ``hb``, ``hb_timing``, ``lpddr``, ``lpddr_timing``), the memories around the PEs, the PE
clock and the on-die links. The RTL, the golden executor, the scheduler and the performance model
all read their figures from it. No Amaranth here.

Built-in machines (:data:`MACHINES`):

* ``tiny``: :data:`hw.params.TOP_DEFAULT`, 2 PEs of a 2x32x4 MAC array with small memories: what
  the block checks, the block benches and the command-stream fuzzer simulate in seconds;
* ``demo``: what ``python build.py`` (the demo) simulates: 2 PEs of a 4x32x8 array whose weight
  beat is one 512-bit memory word; the demo and the scheduler fit the expert cache, the slots and
  the HB and LPDDR capacities to the model they run (:func:`sw_model.compiler.weight_layout.machine_for`);
* ``paper``: :data:`hw.params.TOP_PAPER`, the paper's 32 PEs with 8 GiB of HB and 64 GiB of LPDDR.

A machine file is TOML (``.toml``) or JSON (``.json``) holding the fields of
:meth:`TopParams.to_dict`: top-level fields, then one table per block. ``base = "<machine>"``
(default ``"tiny"``) names the built-in machine whose values the fields it omits take, so a file
may hold only what differs. :func:`machine_toml` writes every field, so written files round-trip
exactly.

``--set key=value`` overrides one field after the file or preset: ``pes=16`` (HB channels and LPDDR
clients follow), ``mac.tokens=8``, ``hb.words=65536`` (the address width grows with the words unless
``hb.address_width`` is set too), ``cache.policy=LRU``. Values are TOML values (``true``, ``0.5``)
or bare words. Every mistake is a :class:`MachineError` naming the input and the valid choices.
"""

from dataclasses import fields, replace
import json
from pathlib import Path
import tomllib

from hw.isa import COMMAND_BYTES
from hw.params import (MacArrayParams, MacMode, TOP_DEFAULT, TOP_PAPER, TopParams,
                       unsigned_width)

__all__ = ["MachineError", "MACHINES", "DEMO_MACHINE", "machine_names", "load_machine",
           "apply_sets", "resolve_machine", "machine_toml", "write_machine", "machine_figures",
           "machine_keys", "run_name", "read_table_file"]


class MachineError(ValueError):
    """A machine name, file, key or value that cannot be used; the message names it."""


#: The demo's MAC array: 4 tokens x 8 channels (16 in the 4-bit modes), 8 lanes: a step's MAC
#: operations are under half of what ``tiny``'s 2 x 4 array needs.
DEMO_MAC = MacArrayParams(tokens=4, group_size=32, out_channels=8, lanes=8)
#: The demo's machine: ``tiny``'s timings with :data:`DEMO_MAC`, a weight memory of two 64-word
#: halves, HB and LPDDR words as wide as a weight beat (512 bits: one memory word per weight word),
#: and memories large enough that a step runs in few parts.
DEMO_MACHINE = replace(
    TOP_DEFAULT, mac=DEMO_MAC, weight_words=128, act_words=256, input_words=4096,
    output_words=2048, command_words=8192,
    hb=replace(TOP_DEFAULT.hb, data_width=DEMO_MAC.weight_beat_bits),
    lpddr=replace(TOP_DEFAULT.lpddr, data_width=DEMO_MAC.weight_beat_bits))

#: The built-in machines by name.
MACHINES = {"tiny": TOP_DEFAULT, "demo": DEMO_MACHINE, "paper": TOP_PAPER}


def machine_names():
    return list(MACHINES)


def _choices():
    return f"choose from {', '.join(MACHINES)}, or a .toml or .json machine file"


def read_table_file(path, what, error=ValueError):
    """The table of a TOML file (a ``.json`` name: JSON), as a dict; ``error`` (a ValueError
    class) names ``what`` file it is and what is wrong with it: missing, a directory, unreadable,
    not valid, not a table."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path}: " + ("is a directory" if path.is_dir() else "no such file"))
    kind = "JSON" if path.suffix == ".json" else "TOML"
    try:
        text = path.read_text()
        values = json.loads(text) if kind == "JSON" else tomllib.loads(text)
    except OSError as exc:
        raise error(f"{what} {path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path}: not a text file") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise error(f"{what} {path}: not valid {kind} ({exc})") from None
    if not isinstance(values, dict):
        raise error(f"{what} {path}: expected a table of fields")
    return values


def _read_file(path):
    values = read_table_file(path, "machine file", MachineError)
    values = dict(values)
    base = values.pop("base", "tiny")
    if base not in MACHINES:
        raise MachineError(f"machine file {path}: unknown base {base!r}; choose from "
                           f"{', '.join(MACHINES)}")
    merged = MACHINES[base].to_dict()
    for key, value in values.items():
        if key not in merged:
            raise MachineError(f"machine file {path}: unknown field {key!r}; fields: "
                               f"{', '.join(merged)}")
        if isinstance(merged[key], dict):
            if not isinstance(value, dict):
                raise MachineError(f"machine file {path}: {key} must be a table of "
                                   f"{key} fields, not {value!r}")
            for name in value:
                if name not in merged[key]:
                    raise MachineError(f"machine file {path}: unknown field {key}.{name}; {key} "
                                       f"has {', '.join(merged[key])}")
            merged[key] = dict(merged[key], **value)
        else:
            merged[key] = value
    try:
        return TopParams.from_dict(merged)
    except (TypeError, ValueError) as exc:
        raise MachineError(f"machine file {path}: {exc}") from None


def load_machine(spec):
    """The machine ``spec`` names: a built-in name or a machine file's path."""
    if isinstance(spec, TopParams):
        return spec
    if spec in MACHINES:
        return MACHINES[spec]
    if isinstance(spec, (str, Path)) and Path(spec).suffix in (".toml", ".json"):
        return _read_file(spec)
    raise MachineError(f"unknown machine {str(spec)!r}; {_choices()}")


def machine_keys(params=TOP_DEFAULT):
    """Every key ``--set`` accepts, dotted."""
    keys = []
    for name, value in params.to_dict().items():
        if isinstance(value, dict):
            keys += [f"{name}.{sub}" for sub in value]
        else:
            keys.append(name)
    return keys


def _parse_value(text):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _typed(key, old, value, raw):
    """``value`` checked against the kind of the field's current value ``old``."""
    if isinstance(old, bool):
        if not isinstance(value, bool):
            raise MachineError(f"--set {key}={raw}: {key} takes true or false, not {raw!r}")
    elif isinstance(old, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise MachineError(f"--set {key}={raw}: {key} takes an integer, not {raw!r}")
    elif isinstance(old, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MachineError(f"--set {key}={raw}: {key} takes a number, not {raw!r}")
        value = float(value)
    elif isinstance(old, str) and not isinstance(value, str):
        raise MachineError(f"--set {key}={raw}: {key} takes a name, not {raw!r}")
    return value


def apply_sets(params, sets):
    """``params`` with every ``key=value`` of ``sets`` applied in order (module docstring)."""
    values = params.to_dict()
    explicit = set()
    pes = None
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MachineError(f"--set {item!r}: expected key=value, e.g. mac.tokens=8")
        value = _parse_value(raw.strip())
        head, _, sub = key.partition(".")
        if head not in values or bool(sub) != isinstance(values[head], dict):
            raise MachineError(f"--set {item}: unknown key {key!r}; keys: "
                               f"{', '.join(k for k in values if not isinstance(values[k], dict))}"
                               f", and {', '.join(k + '.*' for k in values if isinstance(values[k], dict))}")
        if sub:
            if sub not in values[head]:
                raise MachineError(f"--set {item}: unknown key {key!r}; {head} has "
                                   f"{', '.join(values[head])}")
            values[head] = dict(values[head])
            values[head][sub] = _typed(key, values[head][sub], value, raw)
        else:
            values[head] = _typed(key, values[head], value, raw)
            if head == "pes":
                pes = values[head]
        explicit.add(key)
    if pes is not None:
        for block, name in (("hb", "channels"), ("lpddr", "clients")):
            if f"{block}.{name}" not in explicit:
                values[block] = dict(values[block], **{name: pes})
    for block in ("hb", "lpddr"):
        words = values[block]["words"]
        if f"{block}.words" in explicit and f"{block}.address_width" not in explicit \
                and isinstance(words, int) and words > 0:
            values[block] = dict(values[block], address_width=max(
                values[block]["address_width"], unsigned_width(words - 1)))
    try:
        return TopParams.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise MachineError(f"--set {' '.join(sets)}: {exc}") from None


def resolve_machine(spec, sets=()):
    """``(params, name)``: the machine ``spec`` with ``sets`` applied, and its run name."""
    params = apply_sets(load_machine(spec), list(sets))
    return params, run_name(spec, sets)


def run_name(spec, sets=()):
    """A folder name for results on this machine: the machine's name (a file's stem) and the
    overrides, e.g. ``paper+pes=16``."""
    name = spec if spec in MACHINES else Path(str(spec)).stem
    safe = lambda text: "".join(c if c.isalnum() or c in "._=-" else "_" for c in text)
    return "+".join([safe(name)] + [safe(s.replace(" ", "")) for s in sets])


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def machine_toml(params, title=None):
    """``params`` as a complete TOML machine file (every field; reads back equal)."""
    values = params.to_dict()
    lines = [f"# {title}"] if title else []
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for k, v in values.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{name} = {_toml_value(x)}" for name, x in v.items()]
    return "\n".join(lines) + "\n"


def write_machine(params, path, title=None):
    """Write ``params`` to ``path`` (``.json`` or TOML)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(params.to_dict(), indent=1) + "\n")
    else:
        path.write_text(machine_toml(params, title))
    return path


def machine_figures(params):
    """Every figure derived from ``params``: compute per mode, bandwidth and capacity per tier,
    the PE memories in bytes (a dict)."""
    mac, hb, lp = params.mac, params.hb, params.lpddr
    gib = 1 << 30
    return {
        "pes": params.pes, "clock_mhz": params.clock_mhz,
        "macs_per_cycle_per_pe": {"W8A8": mac.macs_per_cycle_in(MacMode.FULL),
                                  "W4A8": mac.macs_per_cycle_in(MacMode.DRAFT)},
        "peak_tops": {"W8A8": params.peak_tops(MacMode.FULL),
                      "W4A8": params.peak_tops(MacMode.DRAFT)},
        "hb": {"channels": hb.channels, "gbps_per_channel": hb.peak_gbps,
               "gbps": params.hb_peak_gbps, "bytes_per_channel": hb.capacity_bytes,
               "gib": params.hb_capacity_bytes / gib, "pj_per_bit": params.hb_timing.pj_per_bit},
        "lpddr": {"clients": lp.clients, "gbps": lp.peak_gbps, "bytes": lp.capacity_bytes,
                  "gib": lp.capacity_bytes / gib, "pj_per_bit": params.lpddr_timing.pj_per_bit},
        "links": {"gather_gbps_per_pe": params.gather_gbps, "stream_gbps": params.stream_gbps},
        "pe_memories_bytes": {
            "weight": params.weight_words * mac.weight_beat_bits // 8,
            "activation": params.act_words * mac.act_beat_bits // 8,
            "output": params.output_words * params.result_bits // 8,
            "input (shared)": params.input_words * mac.act_beat_bits // 8,
            "commands (shared)": params.command_words * COMMAND_BYTES},
        "hb_ratio": params.hb_ratio, "lpddr_ratio": params.lpddr_ratio,
        "cache": {"slots": params.cache.slots, "slot_words": params.slot_words,
                  "slot_bytes": params.slot_words * hb.bytes_per_word,
                  "policy": params.cache.policy.name},
    }
