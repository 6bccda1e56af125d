"""Command streams of decode steps: step records from the golden model, and each record scheduled
into parts that fit the machine's memories and validated from its step's cache state.

:func:`golden_records` is the golden-model source of records (a model-zoo shape without weights
takes :func:`sw_model.compiler.trace_steps.trace_records` instead); :func:`schedule_records` turns
either into streams.
"""

import numpy as np

from sw_model.compiler.scheduler import schedule_step, stream_bytes
from sw_model.compiler.step_check import prologue
from sw_model.golden.expert_cache import ExpertCacheModel, replay
from sw_model.golden.top import validate

__all__ = ["golden_records", "schedule_records"]


def golden_records(model, batch, steps, mode, capacity, gamma, seed, detail=False, tree="chain"):
    """Decode random prompts (seeded) on the golden ``model`` in ``mode`` ("cached" or
    "elastic_sd", drafting a chain of ``gamma`` or the token tree ``tree``) and keep the first
    ``steps`` step records."""
    from sw_model.decode.decoding import SDConfig, cached_decode, elastic_sd
    from sw_model.decode.draft_policies import make_policy
    from sw_model.decode.step_record import StepRecorder
    c = model.config
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, c.vocab_size, rng.integers(8, 25)) for _ in range(batch)]
    recorder = StepRecorder(detail=detail)
    if mode == "cached":
        cached_decode(model, prompts, steps + 1, capacity=capacity, recorder=recorder)
    else:
        sd = SDConfig(gamma=gamma, capacity=capacity, tree=tree)
        longest = sd.shape.depth if sd.shape is not None else gamma
        elastic_sd(model, prompts, steps * (longest + 1) + 1, make_policy("resident"), sd,
                   recorder=recorder)
    return recorder.steps[:steps]


def schedule_records(records, layout, check=True):
    """``[(record, schedule, bytes per phase)]``, each step in parts that fit the machine's
    memories; with ``check`` every stream is validated from its step's cache state (replaying the
    requests recorded before it)."""
    out = []
    for record in records:
        step_cache = 4 * sum(map(len, record.cache_requests.values()))
        room = layout.params.command_words - len(prologue(record, layout)) - step_cache - 1
        sched = schedule_step(record, layout, split=True, part_commands=room)
        if check:
            cache = ExpertCacheModel(layout.params.cache)
            replay(cache, record.prior_requests)
            validate(sched.commands, layout.params, cache)
        out.append((record, sched, stream_bytes(sched.commands, layout.params)))
    return out
