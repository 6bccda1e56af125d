import pytest

from hw.params import MacArrayParams, MacMode, MAC_PAPER_PE, signed_width
from sw_model.golden.mac_array import parse_mode


@pytest.mark.parametrize("name", ["tokens", "group_size", "out_channels", "lanes", "tag_width"])
def test_zero_size_names_the_parameter(name):
    with pytest.raises(ValueError, match=name):
        MacArrayParams(**{name: 0})


@pytest.mark.parametrize("name", ["tokens", "lanes"])
def test_negative_size_names_the_parameter(name):
    with pytest.raises(ValueError, match=name):
        MacArrayParams(**{name: -4})


def test_non_integer_size_names_the_parameter():
    with pytest.raises(TypeError, match="out_channels"):
        MacArrayParams(out_channels=2.0)
    with pytest.raises(TypeError, match="augmented"):
        MacArrayParams(augmented="yes")


def test_group_the_lanes_cannot_tile():
    with pytest.raises(ValueError, match=r"group_size \(32\).*lanes \(12\)"):
        MacArrayParams(group_size=32, lanes=12)


def test_unknown_parameter_from_dict():
    with pytest.raises(ValueError, match="colour"):
        MacArrayParams.from_dict({"tokens": 2, "colour": "red"})


@pytest.mark.parametrize("bad", [4, -1, "HALF", None, 1.5, True])
def test_unknown_mode(bad):
    with pytest.raises(ValueError, match="mode must be one of FULL, DRAFT, MSB, LSB"):
        parse_mode(bad)


def test_modes_parse_from_names_and_values():
    assert parse_mode("draft") is MacMode.DRAFT
    assert parse_mode(3) is MacMode.LSB


def test_paper_preset_widths():
    p = MAC_PAPER_PE
    # the paper's "16x32x32 bit-sliced MAC array": 16 tokens x 32 lanes x 32 slice columns, i.e.
    # 16 slice-lane pairs (INT8 channels) per lane
    assert (p.tokens, p.group_size, p.out_channels, p.lanes) == (16, 32, 16, 32)
    assert p.tokens * p.lanes * 2 * p.out_channels == 16 * 32 * 32
    assert (p.macs_per_cycle_in(MacMode.FULL), p.macs_per_cycle_in(MacMode.DRAFT)) == (8192, 16384)
    assert p.beats_per_group == 1
    # |x * q| <= 128 * 128 over 32 weights is 2**19, which needs 21 signed bits.
    assert p.result_width == 21
    assert p.slice_acc_width == 18
    assert p.weights_per_beat(MacMode.DRAFT) == 2 * p.weights_per_beat(MacMode.FULL)


def test_signed_width_edges():
    assert signed_width(-1, 0) == 1
    assert signed_width(-128, 127) == 8
    assert signed_width(0, 128) == 9
    assert signed_width(-129, 0) == 9
    with pytest.raises(ValueError):
        signed_width(1, 0)


def test_top_params_round_trip_through_json():
    import json
    from hw.params import CACHE_PAPER, HbBankTiming, TOP_PAPER, TopParams
    assert TopParams.from_dict(json.loads(json.dumps(TOP_PAPER.to_dict()))) == TOP_PAPER
    assert TOP_PAPER.to_dict()["cache"]["policy"] == CACHE_PAPER.policy.name == "FREQUENCY"
    assert TopParams.from_dict({"hb_timing": HbBankTiming(t_rcd=30).to_dict()}) \
        == TopParams(hb_timing=HbBankTiming(t_rcd=30))


def test_top_params_name_what_is_wrong():
    from hw.params import HbBankTiming, HbInterfaceParams, TopParams
    with pytest.raises(ValueError, match="unknown TopParams parameter.*pcie"):
        TopParams.from_dict({"pcie": {}})
    with pytest.raises(ValueError, match="unknown ExpertCacheParams parameter.*colour"):
        TopParams.from_dict({"cache": {"colour": "red"}})
    with pytest.raises(TypeError, match="TopParams.lpddr must be a LpddrPortParams"):
        TopParams(lpddr=HbInterfaceParams())
    with pytest.raises(TypeError, match="from_dict takes a dict"):
        TopParams.from_dict([("mac", {})])
    # a weight word is a whole number of memory words: a width that does not divide it is refused
    from dataclasses import replace
    with pytest.raises(ValueError, match=r"TopParams.hb.data_width \(96\) must divide the "
                                         r"weight beat \(256 bits\)"):
        TopParams(hb=replace(TopParams().hb, data_width=96))
    with pytest.raises(ValueError, match=r"TopParams.lpddr.data_width \(24\) must divide"):
        TopParams(lpddr=replace(TopParams().lpddr, data_width=24))
    # the blocks must agree: a die row that the port's die bursts do not tile is refused
    with pytest.raises(ValueError, match="row_words"):
        TopParams(hb_timing=HbBankTiming(row_words=TopParams().hb.die_burst + 1))
