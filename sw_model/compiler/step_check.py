"""The host's side of running a scheduled step: memory images in, expert-layer outputs out.

* :func:`step_images`: the machine's memories before the step, from the golden model's weights and
  a detailed :class:`sw_model.decode.step_record.StepRecord`: HB slots hold the resident experts'
  MSB and SCALE shards (where the controller's slot map puts them), LPDDR the plane words the
  stream reads, IMEM the quantised INT8 inputs of every job (``x`` for gate/up, ``hidden`` for
  down) and their tokens' binary32 scales, token tile by token tile, as
  :class:`sw_model.compiler.scheduler.Schedule` placed them.
* :func:`job_outputs`: a job's dequantised outputs ``{linear: float32 [rows, channels]}`` read
  back from the output memories.
* :func:`check_floats`: those outputs against the reference (int64 products of the recorded
  inputs and the codes, through the same binary32 dequantisation: :func:`reference_outputs`),
  then the rest of the float part on the host (SwiGLU, re-quantisation, routing weights, shared
  expert) from them, compared bit for bit with the golden model's recorded expert inputs, expert
  outputs and MoE block outputs.
"""

import math

import numpy as np

from hw.isa import Opcode
from hw.params import MacMode
from sw_model.golden.mac_array import effective_weights, draft_weights
from sw_model.golden import dequant
from sw_model.golden.top import Images
from sw_model.golden.quant import quantize_activations
from sw_model.compiler.scheduler import cache_commands

__all__ = ["step_images", "place_slot", "place_lpddr", "lpddr_read", "job_outputs", "check_floats", "expert_codes", "expert_quant",
           "prologue", "reference_outputs"]


def expert_quant(model, layer, expert):
    """``{"gate"|"up"|"down": QuantWeights}`` (INT8 codes ``[in, out]``, FP16 scales) of one routed
    expert of the golden model."""
    ffn = model.layers[layer]["experts"][expert]
    return {name: getattr(ffn, name).quant for name in ("gate", "up", "down")}


def expert_codes(model, layer, expert):
    """``{"gate"|"up"|"down": INT8 codes [in, out]}`` of one routed expert of the golden model."""
    return {name: q.codes for name, q in expert_quant(model, layer, expert).items()}


def _split(word, ratio, width):
    return [(word >> (j * width)) & ((1 << width) - 1) for j in range(ratio)]


def prologue(record, layout, schedule=None, part=0):
    """CACHE commands that bring a reset cache controller to the state the step (or its part
    ``part`` of ``schedule``) starts from."""
    before = schedule.cache_commands_before(part) if schedule is not None and part else []
    return cache_commands(record.prior_requests, layout.config.num_experts) + before


def _expert_call(record, job):
    call = record.passes[job.pass_index].calls.get(job.layer)
    if call is None:
        raise ValueError(f"step {record.index} was recorded without detail (StepRecorder("
                         f"detail=True)): no inputs for pass {job.pass_index}, layer {job.layer}")
    for ec in call.experts:
        if ec.expert == job.expert:
            return call, ec
    raise ValueError(f"pass {job.pass_index} layer {job.layer} did not run expert {job.expert}")


def place_slot(images, layout, slot, planes):
    """Put an expert's MSB and SCALE planes (:meth:`WeightLayout.expert_planes`) into HB ``slot``
    of every PE's channel of ``images``."""
    p = layout.params
    for plane in ("MSB", "SCALE"):
        for pe, plane_words in enumerate(planes[plane]):
            start = slot * p.slot_words + layout.slot_offset(pe, plane) * p.hb_ratio
            for i, word in enumerate(plane_words):
                for j, piece in enumerate(_split(word, p.hb_ratio, p.hb.data_width)):
                    images.hb[pe][start + i * p.hb_ratio + j] = piece


def lpddr_read(commands, params):
    """The LPDDR word addresses ``commands`` read."""
    read = set()
    for c in commands:
        if c.op is Opcode.LOAD_LPDDR:
            read.update(range(c.lpddr, c.lpddr + c.count * params.lpddr_ratio))
    return read


def place_lpddr(images, layout, layer, expert, planes, read):
    """Put the words of an expert's planes that are in ``read`` (LPDDR addresses) into LPDDR."""
    p = layout.params
    for plane in ("MSB", "LSB", "SCALE"):
        for pe, plane_words in enumerate(planes[plane]):
            base = layout.lpddr_plane(layer, expert, pe, plane)
            for i, word in enumerate(plane_words):
                addr = base + i * p.lpddr_ratio
                if addr not in read:
                    continue
                for j, piece in enumerate(_split(word, p.lpddr_ratio, p.lpddr.data_width)):
                    if piece:
                        images.lpddr[addr + j] = piece


def step_images(model, record, schedule, part=None, hb=None):
    """The :class:`sw_model.golden.top.Images` the step's stream (or its part ``part``) starts from
    (module docstring). ``hb``: the HB channels to start from (a part continues where the previous
    part left HB), default: the resident experts' slices where the slot map before the step puts
    them."""
    lay = schedule.layout
    p, mac = lay.params, lay.params.mac
    images = Images.empty(p)
    words = {}
    commands = schedule.commands if part is None else schedule.part_commands(part)
    in_part = lambda index: part is None or schedule.job_part[index] == part

    def planes(layer, expert):
        if (layer, expert) not in words:
            words[(layer, expert)] = lay.expert_planes(expert_quant(model, layer, expert))
        return words[(layer, expert)]

    if hb is not None:
        images.hb = [dict(channel) for channel in hb]
    for slot, key in enumerate(record.slots_before or () if hb is None else ()):
        if key is not None:
            layer = lay.moe_layers[key[0]]
            place_slot(images, lay, slot, planes(layer, key[1]))
    # LPDDR: only the words the stream reads (a step touches a fraction of the planes)
    read = lpddr_read(commands, p)
    for index, job in enumerate(schedule.jobs):
        if job.kind != "draft" and in_part(index):
            place_lpddr(images, lay, job.layer, job.expert, planes(job.layer, job.expert), read)
    T, L, B = mac.tokens, mac.lanes, lay.B
    for (index, name), base in schedule.inputs.items():
        if not in_part(index):
            continue
        job = schedule.jobs[index]
        _, ec = _expert_call(record, job)
        codes = (ec.x if name == "x" else ec.hidden).codes.astype(np.int8)
        tiles = math.ceil(len(codes) / T)
        padded = np.zeros((tiles * T, codes.shape[1]), dtype=np.int8)
        padded[:len(codes)] = codes
        groups = codes.shape[1] // mac.group_size
        # beat (t, g, b) = rows of tile t, columns of beat b of group g: [tokens, lanes] bytes,
        # packed as sw_model.golden.top.pack_act_beat does (element i at bits 8 * i)
        beats = padded.reshape(tiles, T, groups, B, L).transpose(0, 2, 3, 1, 4)
        for i, row in enumerate(np.ascontiguousarray(beats).reshape(-1, T * L)):
            word = int.from_bytes(row.view(np.uint8).tobytes(), "little")
            if word:
                images.imem[base + i] = word
        # then one word per tile: its tokens' binary32 scales (token t at bits 32 t; padding 0)
        scales = np.zeros(tiles * T, dtype="<f4")
        scales[:len(codes)] = (ec.x if name == "x" else ec.hidden).scales
        for t in range(tiles):
            word = int.from_bytes(scales[t * T:(t + 1) * T].tobytes(), "little")
            if word:
                images.imem[base + tiles * groups * B + t] = word
    return images


def job_outputs(schedule, omem, index):
    """Outputs of job ``index`` as ``{linear: float32 [rows, channels]}`` from ``omem``: per part
    of the step, per PE ``{address: word}`` (each part's final output memories)."""
    lay = schedule.layout
    p = lay.params
    job = schedule.jobs[index]
    T, R, W, D = p.mac.tokens, p.mac.result_channels, lay.block_width, p.dq_words
    rows = len(job.rows)
    out = {name: np.zeros((rows, lay.blocks[name] * W), dtype=np.float32)
           for name in ("gate", "up", "down")}
    seen = {name: np.zeros(lay.blocks[name], dtype=np.int64) for name in out}
    for r in schedule.results:
        if r.job != index:
            continue
        words = omem[r.part][r.pe]
        flat = sum(words.get(r.omem + j, 0) << (j * p.result_bits) for j in range(D))
        values = np.frombuffer(flat.to_bytes(D * p.result_bits // 8 + 8, "little")[:4 * T * R],
                               dtype="<f4").reshape(T, R)
        n = min(T, rows - r.tile * T)
        out[r.linear][r.tile * T:r.tile * T + n, r.block * W:(r.block + 1) * W] = values[:n]
        seen[r.linear][r.block] += 1
    tiles = math.ceil(rows / T)
    for name, count in seen.items():
        if not (count == tiles).all():
            raise ValueError(f"job {index} ({job.kind}, layer {job.layer}, expert {job.expert}): "
                             f"{name} results missing or overwritten in the output memory")
    return {name: out[name][:, :lay.shapes[name][1]] for name in out}


def reference_outputs(model, job, ec, draft_method="augmented"):
    """The reference outputs of a job, ``{linear: float32 [rows, channels]}``: the group sums as
    int64 products of the recorded inputs and the codes, dequantised by
    :func:`sw_model.golden.dequant.dequantize` with the layer's scales."""
    ffn = model.layers[job.layer]["experts"][job.expert]
    outs = {}
    for name, x in (("gate", ec.x), ("up", ec.x), ("down", ec.hidden)):
        lin = getattr(ffn, name)
        q = lin.quant.codes
        w = (draft_weights(q, draft_method) if job.kind.startswith("draft")
             else effective_weights(q, MacMode.FULL)).astype(np.int64)
        xc = x.codes.astype(np.int64).reshape(len(x.codes), lin.groups, -1)
        sums = np.einsum("rgk,gkn->grn", xc, w.reshape(lin.groups, -1, lin.n))
        outs[name] = dequant.dequantize(sums, lin.quant.scales, x.scales)
    return outs


def check_floats(model, record, schedule, omem):
    """Read every job's outputs from the hardware's output memories (``omem``: per part, per PE),
    check them against the reference and finish the float part on the host, compared with the
    golden model's record; returns ``{"jobs": n, "layers": n}`` checked, or raises AssertionError
    naming the first difference."""
    by_call = {}
    for index, job in enumerate(schedule.jobs):
        if job.kind == "install":
            continue
        call, ec = _expert_call(record, job)
        outs = job_outputs(schedule, omem, index)
        where = f"job {index} ({job.kind}, pass {job.pass_index}, layer {job.layer}, expert " \
                f"{job.expert})"
        for name, ref in reference_outputs(model, job, ec).items():
            if not np.array_equal(dequant.bits(outs[name]), dequant.bits(ref)):
                raise AssertionError(f"{where}: {name} outputs differ from the reference "
                                     f"(int64 products of the recorded inputs and the codes, "
                                     f"dequantised)")
        ffn = model.layers[job.layer]["experts"][job.expert]
        host = lambda lin, y: (y.astype(np.float64) if lin.bias is None
                               else y.astype(np.float64) + lin.bias)
        hidden = quantize_activations(ffn.activate(host(ffn.gate, outs["gate"]),
                                                   host(ffn.up, outs["up"])))
        if not (np.array_equal(hidden.codes, ec.hidden.codes)
                and np.array_equal(hidden.scales, ec.hidden.scales)):
            raise AssertionError(f"{where}: the down projection's input differs from the golden "
                                 "model's")
        out = host(ffn.down, outs["down"])
        if not np.array_equal(out, ec.out):
            raise AssertionError(f"{where}: expert output differs from the golden model's")
        by_call.setdefault((job.pass_index, job.layer), {})[job.expert] = out
    for (pass_index, layer), outs in by_call.items():
        call = record.passes[pass_index].calls[layer]
        y = np.zeros_like(call.y)
        for ec in call.experts:
            y[ec.rows] = y[ec.rows] + ec.weights[:, None] * outs[ec.expert]
        if call.shared is not None:
            y = y + call.shared
        if not np.array_equal(y, call.y):
            raise AssertionError(f"pass {pass_index} layer {layer}: MoE block output differs from "
                                 "the golden model's")
    return {"jobs": sum(len(v) for v in by_call.values()), "layers": len(by_call)}
