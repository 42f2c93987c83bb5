"""Numerics profiles: names, resolution, validation and per-op overrides."""

import dataclasses

import pytest

from refquant import profiles
from refquant.errors import InvalidArgumentError, InvalidTypeError
from refquant.profiles import PROFILES, Profile, get_profile


def test_builtin_profiles_exist():
    for name in (
        "exact",
        "tflite_reference",
        "onnxruntime",
        "onnx_reference",
        "pytorch_fbgemm",
    ):
        assert get_profile(name).name == name
        assert PROFILES[name] is get_profile(name)


def test_get_profile_passes_profiles_through_and_defaults_to_exact():
    custom = get_profile("exact").replace(name="mine", overflow="wrap")
    assert get_profile(custom) is custom
    assert get_profile().name == "exact"


def test_get_profile_rejects_unknown_name_listing_allowed():
    with pytest.raises(InvalidArgumentError) as info:
        get_profile("tflite")
    message = str(info.value)
    assert "got profile='tflite'" in message
    for name in PROFILES:
        assert repr(name) in message


def test_get_profile_rejects_other_types():
    with pytest.raises(InvalidTypeError, match="profile must be a str"):
        get_profile(3)


def test_profiles_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("exact").overflow = "wrap"


@pytest.mark.parametrize("field", sorted(profiles._CHOICES))
def test_every_site_is_validated(field):
    with pytest.raises(InvalidArgumentError, match=f"{field} must be one of"):
        Profile(name="bad", description="", **{field: "no-such-rule"})


def test_profile_name_must_be_a_nonempty_string():
    with pytest.raises(InvalidArgumentError, match="name must be a non-empty str"):
        Profile(name="", description="")


def test_documented_choices_of_each_profile():
    # the measured behaviour each profile emulates (integer_semantics.md)
    t = get_profile("tflite_reference")
    assert (t.quantize_arithmetic, t.quantize_rounding) == (
        "float32_divide",
        "half_away",
    )
    assert t.requantize_method == "tflite_double"
    assert t.requantize_int64_method == "tflite_int64"
    assert t.average_pool_method == "tflite_raw_q_half_away"
    o = get_profile("onnxruntime")
    assert (o.multiplier_formation, o.requantize_method, o.overflow) == (
        "float32",
        "float32",
        "wrap",
    )
    r = get_profile("onnx_reference")
    assert r.requantize_zero_point == "before_rounding"
    assert r.dynamic_quantize_method == "onnx_reference"
    p = get_profile("pytorch_fbgemm")
    assert p.quantize_arithmetic == "float32_reciprocal"
    e = get_profile("exact")
    assert {e.quantize_arithmetic, e.requantize_method} == {"exact"}
    assert e.overflow == "error"


def test_for_op_applies_fully_connected_override_only():
    t = get_profile("tflite_reference")
    fc = t.for_op("fully_connected")
    assert (fc.requantize_method, fc.requantize_rounding) == ("float64", "half_away")
    assert t.for_op("conv2d") is t
    assert get_profile("exact").for_op("fully_connected") is get_profile("exact")
    with pytest.raises(InvalidTypeError, match="op must be a str"):
        t.for_op(None)
