"""The watermark rule (DESIGN.md invariant 3) as properties of a pure function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncd.engine.poll import advance_cursor, read_since
from syncd.model import Watermark

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
moments = st.datetimes(
    min_value=datetime(2026, 11, 1), max_value=datetime(2026, 12, 2), timezones=st.just(UTC)
)
skews = st.timedeltas(min_value=timedelta(0), max_value=timedelta(minutes=10))


@given(cursor=st.none() | moments, max_seen=st.none() | moments, skew=skews,
       complete=st.booleans())
def test_cursor_never_passes_what_was_seen_nor_now_minus_skew(
    cursor: datetime | None, max_seen: datetime | None, skew: timedelta, complete: bool
) -> None:
    new = advance_cursor(cursor, now=NOW, skew=skew, complete=complete, max_seen=max_seen)
    if new == cursor:
        return  # standing still is always safe
    assert new is not None
    assert new <= NOW - skew
    if not complete:
        # An incremental read, or one that failed part-way, vouches only for what arrived.
        assert max_seen is not None and new <= max_seen


@given(cursor=st.none() | moments, max_seen=st.none() | moments, skew=skews,
       complete=st.booleans())
def test_cursor_never_moves_backwards(
    cursor: datetime | None, max_seen: datetime | None, skew: timedelta, complete: bool
) -> None:
    new = advance_cursor(cursor, now=NOW, skew=skew, complete=complete, max_seen=max_seen)
    if cursor is not None:
        assert new is not None and new >= cursor


@given(cursor=st.none() | moments, skew=skews)
def test_a_read_that_failed_before_any_page_keeps_the_cursor(
    cursor: datetime | None, skew: timedelta
) -> None:
    assert advance_cursor(cursor, now=NOW, skew=skew, complete=False, max_seen=None) == cursor


def test_a_complete_scan_vouches_for_everything_before_it_began() -> None:
    skew = timedelta(minutes=1)
    old = NOW - timedelta(days=3)
    assert advance_cursor(old, now=NOW, skew=skew, complete=True, max_seen=None) == NOW - skew


def test_reads_start_at_the_cursor_less_the_overlap_until_a_sweep_is_due() -> None:
    cursor = NOW - timedelta(minutes=5)
    mark = Watermark("h", cursor=cursor, last_full_scan_at=NOW - timedelta(hours=1))
    kw = {"incremental": True, "overlap": timedelta(minutes=1), "now": NOW,
          "full_scan_interval": timedelta(hours=6), "full": False, "since": None}
    assert read_since(mark, **kw) == cursor - timedelta(minutes=1)  # type: ignore[arg-type]
    swept_long_ago = Watermark("h", cursor=cursor, last_full_scan_at=NOW - timedelta(hours=7))
    assert read_since(swept_long_ago, **kw) is None  # type: ignore[arg-type]
    assert read_since(mark, **{**kw, "full": True}) is None  # type: ignore[arg-type]
    assert read_since(mark, **{**kw, "incremental": False}) is None  # type: ignore[arg-type]
