"""The stream-driven path: what the scheduler's commands move, and agreement with the analytic
path on the same step records (within 2%)."""

import pytest

from hw.isa import Command, Opcode, Slice
from hw.params import MacMode, TOP_DEFAULT
from sw_model.model.moe import DEFAULT_CONFIG
from sw_model.perf.streams import compare_record_paths, stream_params, stream_work

AGREEMENT = 0.02


def test_stream_work_counts_bytes_and_macs_per_phase():
    p = stream_params(DEFAULT_CONFIG, 8, TOP_DEFAULT)
    hb = p.hb_ratio * p.hb.bytes_per_word
    lp = p.lpddr_ratio * p.lpddr.bytes_per_word
    mac = p.mac
    commands = [
        Command(Opcode.BARRIER, phase=1),
        Command(Opcode.LOAD_SLOT, pe=0, slice=Slice.MSB, count=3, layer=0, expert=1),
        Command(Opcode.MAC, pe=0, mode=MacMode.DRAFT, count=2),
        Command(Opcode.BARRIER, phase=2),
        Command(Opcode.LOAD_LPDDR, pe=1, slice=Slice.WHOLE, count=5),
        Command(Opcode.WRITE_SLOT, pe=1, slice=Slice.MSB, count=2, layer=0, expert=1),
        Command(Opcode.MAC, pe=1, mode=MacMode.FULL, count=4),
        Command(Opcode.LOAD_ACT, pe=1, count=7),
        Command(Opcode.END),
    ]
    work = stream_work(commands, p)
    assert set(work) == {"draft", "verify"}
    assert work["draft"].near_read == 3 * hb and work["draft"].far_read == 0
    assert work["draft"].macs_w4 == 2 * mac.tokens * mac.group_size * 2 * mac.out_channels
    assert work["verify"].far_read == 5 * lp and work["verify"].near_write == 2 * hb
    assert work["verify"].macs_w8 == 4 * mac.tokens * mac.group_size * mac.out_channels


def test_streams_in_every_form_and_bad_streams_are_named():
    from hw.isa import encode, encode_word
    p = stream_params(DEFAULT_CONFIG, 8, TOP_DEFAULT)
    commands = [Command(Opcode.BARRIER, phase=2),
                Command(Opcode.LOAD_LPDDR, pe=0, slice=Slice.LSB, count=4), Command(Opcode.END)]
    expected = stream_work(commands, p)
    assert stream_work(encode(commands), p) == expected
    assert stream_work([encode_word(c) for c in commands], p) == expected
    with pytest.raises(TypeError, match="command 1"):
        stream_work([commands[0], "LOAD_LPDDR"], p)
    with pytest.raises(ValueError, match="BAD_OPCODE"):
        stream_work([31], p)
    with pytest.raises(TypeError, match="TopParams"):
        stream_work(commands, "paper")


@pytest.mark.parametrize("mode, batch", [("cached", 1), ("cached", 4), ("elastic_sd", 1),
                                         ("elastic_sd", 4)])
def test_stream_and_analytic_paths_agree_on_the_default_model(mode, batch):
    rows = list(compare_record_paths("default", mode, batch, 8, "default", steps=2))
    assert rows and {r[0] for r in rows} == ({"decode"} if mode == "cached"
                                             else {"draft", "verify"})
    for phase, t_stream, t_analytic, dt, de, commands in rows:
        assert commands > 100 and t_stream > 0
        assert abs(dt) <= AGREEMENT and abs(de) <= AGREEMENT, (phase, dt, de)


@pytest.mark.slow
@pytest.mark.parametrize("mode, batch", [("cached", 1), ("elastic_sd", 1), ("elastic_sd", 2)])
def test_stream_and_analytic_paths_agree_on_a_zoo_model_on_the_paper_pe(mode, batch):
    for phase, t_stream, t_analytic, dt, de, commands in compare_record_paths(
            "olmoe-1b-7b", mode, batch, 16, "paper", steps=2):
        assert abs(dt) <= AGREEMENT and abs(de) <= AGREEMENT, (phase, dt, de)


def test_the_comparison_catches_a_missing_byte_rule(monkeypatch):
    """Leave the scale words out of what the stream path reads: the paths then disagree beyond
    2%."""
    from sw_model.perf import streams
    real = streams.stream_work
    monkeypatch.setattr(streams, "stream_work", lambda commands, params: real(
        [c for c in commands if getattr(c, "slice", None) != Slice.SCALES], params))
    diffs = [max(abs(dt), abs(de)) for _, _, _, dt, de, _ in
             compare_record_paths("default", "elastic_sd", 4, 8, "default", steps=1)]
    assert max(diffs) > AGREEMENT


@pytest.mark.slow
@pytest.mark.parametrize("locality", ["measured", "assumed"])
@pytest.mark.parametrize("mode, batch", [("cached", 1), ("cached", 4), ("elastic_sd", 1),
                                         ("elastic_sd", 4)])
def test_fast_path_statistics_agree_with_the_scheduled_stream(mode, batch, locality):
    """The fast path's trace statistics (not the records' counts) against 40 scheduled steps of
    the same trace: the sweep's numbers are the streams' numbers, on the measured and on the
    earlier assumed routing locality."""
    from sw_model.perf.streams import compare_fast_path
    from sw_model.perf.workload import Locality
    loc = Locality.parse(locality)
    _, _, dt, de = compare_fast_path(DEFAULT_CONFIG, mode, batch, 8, "default", steps=40,
                                     zipf=loc.exponent(DEFAULT_CONFIG.num_experts),
                                     reuse=loc.reuse)
    assert abs(dt) <= AGREEMENT and abs(de) <= AGREEMENT, (dt, de)
