"""The read side's judgements: each system's freshness and the kinds of errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd.config import load_settings
from syncd.readside import error_groups, error_kind, health
from tests.e2e import write_config

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def row(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"last_poll": None, "last_success": None, "last_error": None,
                            "budget": None}
    return {**base, **kw}


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    return load_settings(write_config(tmp_path, interval="5m"))


def test_a_system_polled_within_its_interval_is_ok(settings: Any) -> None:
    at = (NOW - timedelta(minutes=4)).isoformat()
    got = health(settings, "crm", row(last_poll=at, last_success=at), [], NOW)
    assert got["state"] == "ok" and got["age_s"] == 240 and got["interval_s"] == 300


def test_one_not_polled_within_twice_its_interval_is_delayed(settings: Any) -> None:
    late = (NOW - timedelta(minutes=11)).isoformat()
    assert health(settings, "crm", row(last_poll=late, last_success=late), [], NOW)["state"] \
        == "delayed"
    nine = (NOW - timedelta(minutes=9)).isoformat()  # late, but within twice: not yet delayed
    assert health(settings, "crm", row(last_poll=nine, last_success=nine), [], NOW)["state"] == "ok"
    assert health(settings, "crm", row(), [], NOW)["state"] == "delayed"


def test_one_whose_last_poll_failed_is_failing(settings: Any) -> None:
    ok = (NOW - timedelta(minutes=30)).isoformat()
    got = health(settings, "crm", row(last_poll=NOW.isoformat(), last_success=ok,
                                      last_error="crm: HTTP 500 boom"), [], NOW)
    assert got["state"] == "failing" and got["resumes_at"] is None


def test_one_told_to_wait_is_throttled_until_its_window_ends(settings: Any) -> None:
    polled = NOW - timedelta(seconds=20)
    got = health(settings, "crm", row(last_poll=polled.isoformat(), last_success=None,
                                      last_error="crm: HTTP 429 too many requests"), [], NOW)
    assert got["state"] == "throttled"
    assert got["resumes_at"] == (polled + timedelta(seconds=60)).isoformat()


def test_the_resume_time_a_system_named_is_shown(settings: Any) -> None:
    at = NOW.isoformat()
    throttled = health(settings, "crm", row(last_poll=at, last_error=(
        "crm: GET /contacts (list): rate limited for 3600 s; the system resumes after "
        "2026-03-04T13:00:00Z")), [], NOW)
    assert throttled["state"] == "throttled"
    assert throttled["resumes_at"] == "2026-03-04T13:00:00+00:00"
    capped = health(settings, "crm", row(last_poll=at, last_error=(
        "zoho: update: the daily budget of 1000 requests is spent; writes resume after "
        "2026-03-05T00:00:00Z")), [], NOW)
    assert capped["state"] == "capped" and capped["resumes_at"] == "2026-03-05T00:00:00+00:00"


def test_one_past_its_daily_budget_is_capped_until_the_reset(settings: Any) -> None:
    until = (NOW + timedelta(hours=3)).isoformat()
    budget = {"used": 1000, "limit": 1000, "resets_at": until, "capped_until": until}
    at = NOW.isoformat()
    got = health(settings, "crm", row(last_poll=at, last_success=at, budget=budget), [], NOW)
    assert got["state"] == "capped" and got["resumes_at"] == until
    assert "1000 of 1000" in got["state_detail"]
    over = {**budget, "capped_until": (NOW - timedelta(minutes=1)).isoformat()}
    assert health(settings, "crm", row(last_poll=at, last_success=at, budget=over), [], NOW)[
        "state"] == "ok"


def test_requests_today_count_only_todays_runs(settings: Any) -> None:
    runs = [{"started_at": NOW - timedelta(hours=13), "summary": {"systems": {"crm": {"requests": 7}}}},
            {"started_at": NOW - timedelta(hours=2), "summary": {"systems": {"crm": {"requests": 5}}}},
            {"started_at": NOW - timedelta(hours=1), "summary": {"systems": {"billing": {}}}}]
    at = NOW.isoformat()
    assert health(settings, "crm", row(last_poll=at, last_success=at), runs, NOW)[
        "requests_today"] == 5


def test_errors_differing_only_in_ids_and_values_are_one_kind() -> None:
    a = error_kind("zoho: PUT /contacts/460000000026049 (update): HTTP 400 'x@y.io' is invalid")
    b = error_kind("zoho: PUT /contacts/460000000026050 (update): HTTP 400 'q@r.io' is invalid")
    c = error_kind("zoho: PUT /contacts/460000000026050 (update): HTTP 404 not found")
    assert a == b != c and "HTTP 400" in a and "460000000026049" not in a
    groups = error_groups([{"group": "g1", "kind": a, "id": 1}, {"group": "g2", "kind": c, "id": 2},
                           {"group": "g1", "kind": a, "id": 3}])
    assert [len(g["errors"]) for g in groups] == [2, 1]


def test_quarantine_rows_of_one_system_or_person_name_only_those(store: Any) -> None:
    from syncd.people import People
    from syncd.readside import quarantine_rows
    from syncd.store.repo import Failure

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    with store.write() as conn:
        for system, gid, quarantined in (("b", "g1", True), ("a", "g2", True),
                                         ("a", "g1", True), ("a", "g3", False)):
            store.record_failure(conn, Failure(system, gid, "update", "7", 5, "HTTP 422 bad",
                                               "h", quarantined, None, now))
    people = People(store.load_state())

    def listed(system: str | None = None, gid: str | None = None) -> list[tuple[str, str]]:
        return sorted((r["system"], r["person"])
                      for r in quarantine_rows(store, people, system, gid))

    assert listed() == [("a", "g1"), ("a", "g2"), ("b", "g1")]
    assert listed("a") == [("a", "g1"), ("a", "g2")]
    assert listed(gid="g1") == [("a", "g1"), ("b", "g1")]
    assert listed("b", "g2") == []
