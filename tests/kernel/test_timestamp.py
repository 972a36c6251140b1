"""Timestamps order writes everywhere: their forms must match Swift's and sort as strings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.timestamp import Timestamp, TimestampError

TICKS = st.integers(0, 9_999_999_999 * 100_000)


def test_normal_form_is_swifts_ten_dot_five():
    assert Timestamp(1700000000.12345).normal == "1700000000.12345"
    assert Timestamp(5).normal == "0000000005.00000"


def test_internal_form_appends_the_offset_in_hex():
    assert Timestamp(1700000000.5, offset=255).internal == "1700000000.50000_00000000000000ff"


@given(a=TICKS, b=TICKS, oa=st.integers(0, 1000), ob=st.integers(0, 1000))
def test_internal_forms_sort_like_the_timestamps(a, b, oa, ob):
    ta, tb = Timestamp(ticks=a, offset=oa), Timestamp(ticks=b, offset=ob)
    assert (ta < tb) == (ta.internal < tb.internal)
    assert Timestamp.parse(ta.internal) == ta


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.2.3", "12_zz"])
def test_bad_timestamps_are_refused(text):
    with pytest.raises(TimestampError):
        Timestamp.parse(text)


def test_bump_orders_after_the_same_instant():
    t = Timestamp(1700000000)
    assert t < t.bump() < t.bump(2)
