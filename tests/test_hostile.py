"""A hostile proxy between syncd and the sandboxes: one bad answer never stops the cycle.

``Proxy`` forwards every request to a real simulator over HTTP and lets a
test rewrite the answer (HTML instead of JSON, a timestamp of "yesterday",
an empty body ...), as a misbehaving gateway would.  Each case runs a whole
cycle through :class:`Syncer` on SQLite and Postgres and checks that the
other system was synced, that the cycle ended with its summary event and
its run row, and that the bad answer became our own error naming the system.

A Hypothesis test then feeds random bytes, JSON and XML to every
connector's answer parsing and sees only our own error types.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from syncd.config import HarvestConfig, LogisenseConfig, Settings, SyncConfig
from syncd.connectors.base import Connector
from syncd.connectors.harvest import from_config as harvest_from_config
from syncd.connectors.logisense import from_config as logisense_from_config
from syncd.engine.cycle import Syncer
from syncd.errors import SyncdError
from syncd.http import SYSTEM_CLOCK
from syncd.logs import configure_logging
from syncd.sandbox.harvest import SANDBOX_PASSWORD, SANDBOX_USER, HarvestSim
from syncd.sandbox.logisense import LogisenseSim
from syncd.store import Store
from tests.world import SimTime

HARVEST_ORG, LOGISENSE_ORG = "11072", "16"
ADA = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.example"}
GRACE = {"first_name": "Grace", "last_name": "Hopper", "email": "grace@acme.example"}

Rewrite = Callable[[httpx.Request, httpx.Response], httpx.Response | None]


class Proxy:
    """Forwards to a real server; ``rewrite`` may replace an answer (None keeps it)."""

    def __init__(self, upstream: str, rewrite: Rewrite | None = None) -> None:
        self.client = httpx.Client(base_url=upstream, timeout=10)
        self.rewrite = rewrite or (lambda request, response: None)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        answer = self.client.request(request.method, request.url.raw_path.decode(),
                                     headers=request.headers, content=request.content)
        answer.read()
        replaced = self.rewrite(request, answer)
        hop = {"content-length", "content-encoding", "transfer-encoding", "connection"}
        headers = {k: v for k, v in answer.headers.items() if k.lower() not in hop}
        return replaced if replaced is not None else httpx.Response(
            answer.status_code, headers=headers, content=answer.content)


def html(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    return httpx.Response(200, text="<html><body>502 Bad Gateway</body></html>")


def body(content: bytes) -> Rewrite:
    return lambda request, response: httpx.Response(200, content=content)


def when(method: str, path_part: str, rewrite: Rewrite) -> Rewrite:
    def only(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if request.method == method and path_part in request.url.path:
            return rewrite(request, response)
        return None

    return only


def yesterday(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
    """Harvest lists one contact with ``updated-at`` = "yesterday"."""
    text = response.text
    start = text.find("<updated-at")
    if request.method != "GET" or start < 0:
        return None
    end = text.find("</updated-at>", start)
    broken = text[:start] + '<updated-at type="datetime">yesterday' + text[end:]
    return httpx.Response(200, text=broken)


@pytest.fixture(autouse=True)
def info_logs() -> Iterator[None]:
    """Events at info level, so the cycle's summary can be captured."""
    configure_logging("info", json=True)
    yield
    configure_logging("error", json=True)


@pytest.fixture
def sims(served_sim: Any) -> Iterator[tuple[HarvestSim, str, LogisenseSim, str]]:
    harvest, logisense = HarvestSim(clients=[int(HARVEST_ORG)]), LogisenseSim()
    yield harvest, served_sim(harvest), logisense, served_sim(logisense)


def syncer(store: Store, harvest_url: str, logisense_url: str,
           harvest_rewrite: Rewrite | None = None,
           logisense_rewrite: Rewrite | None = None, real_waits: bool = False) -> Syncer:
    hcfg = HarvestConfig(kind="harvest", base_url="http://harvest.test",
                         username=SANDBOX_USER, password=SANDBOX_PASSWORD)
    lcfg = LogisenseConfig(kind="logisense", base_url="http://logisense.test", client_id="syncd",
                           username="api", password="secret", contact_type_id=9)
    connectors: dict[str, Connector] = {
        "harvest": harvest_from_config("harvest", hcfg, max_rps=500.0,
                                       http_clock=SYSTEM_CLOCK if real_waits else SimTime(),
                                       transport=httpx.MockTransport(
                                           Proxy(harvest_url, harvest_rewrite))),
        "logisense": logisense_from_config("logisense", lcfg, http_clock=SimTime(),
                                           transport=httpx.MockTransport(
                                               Proxy(logisense_url, logisense_rewrite))),
    }
    cfg = Settings(
        systems={"harvest": hcfg, "logisense": lcfg},
        organizations={"acme": {"harvest": HARVEST_ORG, "logisense": LOGISENSE_ORG}},
        sync=SyncConfig(max_delete_fraction=1.0),
    )
    return Syncer(cfg, store, connectors)


def emails(sim: HarvestSim | LogisenseSim) -> list[str]:
    return sorted(r.get("email", "") for r in sim.admin_dump())


LOGISENSE_FAULTS = {
    "contact_page_html": when("GET", "Contact/Paged", html),
    "contact_page_empty": when("GET", "Contact/Paged", body(b"")),
    "contact_page_list": when("GET", "Contact/Paged", body(b"[1, 2, 3]")),
    "account_detail_empty_object": when("GET", "Account/16/Detail", body(b"{}")),
    "login_html": when("POST", "Access/Login", html),
    "point_types_list": when("GET", "ContactPointType", body(b"[1, 2, 3]")),
    "point_types_html": when("GET", "ContactPointType", html),
}


@pytest.mark.parametrize("fault", sorted(LOGISENSE_FAULTS))
def test_a_malformed_logisense_answer_fails_that_system_only(
    fault: str, store: Store, sims: tuple[HarvestSim, str, LogisenseSim, str]
) -> None:
    harvest, harvest_url, logisense, logisense_url = sims
    logisense.admin_create(LOGISENSE_ORG, ADA)
    harvest.admin_create(HARVEST_ORG, GRACE)
    with capture_logs() as logs:
        report = syncer(store, harvest_url, logisense_url,
                        logisense_rewrite=LOGISENSE_FAULTS[fault]).run_once()
    assert report.exit_code == 4
    error = report.systems["logisense"].error or ""
    assert error.startswith("logisense:") and "Traceback" not in error
    assert report.systems["harvest"].error is None
    assert "cycle_finished" in [e["event"] for e in logs]
    assert store.last_runs(1)[0]["exit_code"] == 4
    assert emails(logisense) == ["ada@acme.example"]  # nothing pushed to a system we misread
    assert emails(harvest) == ["grace@acme.example"]  # and no person conjured from it


def test_a_timestamp_of_yesterday_rejects_that_record_only(
    store: Store, sims: tuple[HarvestSim, str, LogisenseSim, str]
) -> None:
    harvest, harvest_url, logisense, logisense_url = sims
    harvest.admin_create(HARVEST_ORG, GRACE)  # listed first: its updated-at is broken
    harvest.admin_create(HARVEST_ORG, ADA)
    with capture_logs() as logs:
        report = syncer(store, harvest_url, logisense_url, harvest_rewrite=yesterday).run_once()
    assert report.exit_code == 1
    assert any("skipped" in e and "yesterday" in e for e in report.errors)
    assert emails(logisense) == ["ada@acme.example"]  # the good record went through
    assert "record_skipped" in [e["event"] for e in logs]
    assert store.last_runs(1)[0]["exit_code"] == 1


def test_a_patch_answering_html_after_the_contact_was_created_is_not_created_twice(
    store: Store, sims: tuple[HarvestSim, str, LogisenseSim, str]
) -> None:
    harvest, harvest_url, logisense, logisense_url = sims
    harvest.admin_create(HARVEST_ORG, ADA)
    first = syncer(store, harvest_url, logisense_url,
                   logisense_rewrite=when("PATCH", "Account/16", html)).run_once()
    assert first.exit_code == 1 and first.systems["logisense"].failed == 1
    assert emails(logisense) == ["ada@acme.example"]  # it did land
    second = syncer(store, harvest_url, logisense_url).run_once()
    assert second.exit_code == 0
    assert emails(logisense) == ["ada@acme.example"]  # matched, not created again
    assert second.systems["logisense"].created == 0


def test_a_create_answered_504_after_it_landed_is_not_duplicated(
    store: Store, sims: tuple[HarvestSim, str, LogisenseSim, str]
) -> None:
    """The proxy forwards the POST and answers 504: three cycles, one contact."""
    harvest, harvest_url, logisense, logisense_url = sims
    logisense.admin_create(LOGISENSE_ORG, ADA)
    gateway = when("POST", "/contacts", lambda request, response: httpx.Response(504))
    for _ in range(3):
        syncer(store, harvest_url, logisense_url, harvest_rewrite=gateway).run_once()
    assert emails(harvest) == ["ada@acme.example"]
    assert emails(logisense) == ["ada@acme.example"]


def test_a_throttled_system_is_left_out_and_does_not_hold_the_others(
    store: Store, sims: tuple[HarvestSim, str, LogisenseSim, str]
) -> None:
    harvest, harvest_url, logisense, logisense_url = sims
    harvest.fault_retry_after = 30  # under max_wait: it would be sat out in full
    harvest.faults.throttle_next = 1
    logisense.admin_create(LOGISENSE_ORG, ADA)
    started = time.monotonic()
    report = syncer(store, harvest_url, logisense_url, real_waits=True).run_once()
    assert time.monotonic() - started < 10
    assert "left out of this cycle" in (report.systems["harvest"].error or "")
    assert report.systems["logisense"].error is None
    mark = store.watermarks()["harvest"]
    assert mark.cursor is None and mark.last_full_scan_at is None  # nothing vouched for


# -- every parser, fed anything ----------------------------------------------------------------

answers = st.one_of(
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.sampled_from(
                     ["items", "pagedResults", "instance", "details", "contacts", "identity",
                      "totalCount", "results", "access_token", "expires_in", "value"]),
                     inner, max_size=5), max_leaves=20).map(lambda v: json.dumps(v).encode()),
    st.lists(st.sampled_from(["<contacts>", "<contact>", "<id>1</id>", "<client-id>11072",
                              "</client-id>", "<updated-at>", "x", "</contact>", "</contacts>",
                              "<errors><error>bad</error></errors>"]),
             max_size=12).map(lambda parts: "".join(parts).encode()),
)


def fuzzed(build: Callable[..., Connector], cfg: Any, content: bytes, status: int) -> Connector:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("Access/Login"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 1800})
        return httpx.Response(status, content=content, headers={"Location": "/contacts/7"})

    return build(cfg.kind, cfg, transport=httpx.MockTransport(handler), http_clock=SimTime(),
                 max_retries=0)


CONNECTORS: dict[str, tuple[Callable[..., Connector], Any, str]] = {
    "harvest": (harvest_from_config, HarvestConfig(kind="harvest", base_url="http://h.test",
                                                   username="u", password="p"), HARVEST_ORG),
    "logisense": (logisense_from_config, LogisenseConfig(
        kind="logisense", base_url="http://l.test", client_id="c", username="u", password="p",
        contact_type_id=9), LOGISENSE_ORG),
}


@pytest.mark.parametrize("kind", sorted(CONNECTORS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=answers, status=st.sampled_from([200, 201]))
def test_any_answer_is_read_or_refused_with_our_own_error(
    kind: str, content: bytes, status: int
) -> None:
    build, cfg, org = CONNECTORS[kind]
    connector = fuzzed(build, cfg, content, status)
    person = {f: ADA.get(f, "") for f in connector.capabilities.fields}
    calls: list[Callable[[], Any]] = [
        lambda: list(connector.list_records([org], None)),
        lambda: connector.create(org, person),
        lambda: connector.update("7", org, {"email": "x@y.z"}, person,
                                 {"contactTypeId": 9, "points": {"email": 3}}),
        lambda: connector.delete("7", org, {}),
    ]
    for call in calls:
        with contextlib.suppress(SyncdError):  # our own tree: the engine knows what each means
            call()
    connector.close()
