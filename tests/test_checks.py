"""The one rule for numeric arguments: TypeError for the wrong kind, ValueError out of range."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiocompute._core.checks import count, number, seconds


@pytest.mark.parametrize("value", [True, False, "1", None, [1], b"1"])
def test_the_wrong_kind_is_a_type_error_naming_the_argument(value: object) -> None:
    with pytest.raises(TypeError, match=r"^timeout must be a number of seconds"):
        seconds(value, "timeout")
    with pytest.raises(TypeError, match=r"^limit must be an int"):
        count(value, "limit")


@pytest.mark.parametrize("value", [0, -1, -0.5, math.inf, -math.inf, math.nan])
def test_out_of_range_seconds_are_a_value_error(value: float) -> None:
    with pytest.raises(ValueError, match=r"^Timeouts\.read must be"):
        seconds(value, "Timeouts.read")


def test_bounds() -> None:
    assert number(0, "x", minimum=0) == 0
    assert number(1, "x", maximum=1) == 1
    with pytest.raises(ValueError, match=r"x must be <= 1, got 1.5"):
        number(1.5, "x", maximum=1)
    with pytest.raises(ValueError, match=r"x must be > 0, got 0"):
        number(0, "x", above=0)
    assert number(math.inf, "x", finite=False) == math.inf
    with pytest.raises(ValueError, match="must be a number"):
        number(math.nan, "x", finite=False)
    assert count(3, "n", minimum=1) == 3
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        count(0, "n", minimum=1)
    with pytest.raises(TypeError, match=r"n must be an int, got 1\.0"):
        count(1.0, "n")


@given(st.floats(min_value=1e-9, max_value=1e9) | st.integers(min_value=1, max_value=10**9))
def test_any_positive_finite_number_is_a_valid_number_of_seconds(value: float) -> None:
    assert seconds(value, "t") == value
