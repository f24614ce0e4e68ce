"""The hostile proxy (``tests.test_hostile``) in front of Lightening, Zoho Books and Valomnia.

Each case runs whole cycles through :class:`Syncer` with Harvest as the other
system, both over real HTTP to their simulators; the proxy rewrites some answers
the way a misbehaving gateway or server would.  The checks are the ones that
matter to an operator: the other system still synced, the cycle ended with its
summary and run row, the fault became our own error naming the system, and no
person was created twice or lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.config import (
    HarvestConfig,
    LighteningConfig,
    Settings,
    SyncConfig,
    ValomniaConfig,
    ZohoBooksConfig,
)
from syncd.connectors.base import Connector
from syncd.connectors.harvest import from_config as harvest_from_config
from syncd.connectors.lightening import from_config as lightening_from_config
from syncd.connectors.valomnia import from_config as valomnia_from_config
from syncd.connectors.zoho_books import from_config as zoho_from_config
from syncd.engine.cycle import CycleReport, Syncer
from syncd.sandbox.common import Simulator
from syncd.sandbox.harvest import SANDBOX_PASSWORD as HARVEST_PASSWORD
from syncd.sandbox.harvest import SANDBOX_USER as HARVEST_USER
from syncd.sandbox.harvest import HarvestSim
from syncd.sandbox.lightening import SANDBOX_TOKEN, LighteningSim
from syncd.sandbox.valomnia import SANDBOX_PASSWORD as VALOMNIA_PASSWORD
from syncd.sandbox.valomnia import SANDBOX_USER as VALOMNIA_USER
from syncd.sandbox.valomnia import ValomniaSim
from syncd.sandbox.zoho_books import (
    ACCOUNTS_PREFIX,
    API_PREFIX,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_ORGANIZATION_ID,
    SANDBOX_REFRESH_TOKEN,
    ZohoBooksSim,
)
from syncd.store import Store
from tests.test_hostile import ADA, GRACE, HARVEST_ORG, Proxy, Rewrite, body, html
from tests.test_hostile import info_logs as info_logs  # autouse: events at info level
from tests.world import SimTime


@dataclass(frozen=True)
class Kind:
    """How to stand up one of the three systems behind the proxy."""

    sim: Callable[[], Simulator]
    org: str
    build: Callable[[httpx.BaseTransport, str], Connector]
    """(transport, the host it plays) → a connector whose every request goes through it."""


def _transport(upstream: str, rewrite: Rewrite | None) -> httpx.MockTransport:
    return httpx.MockTransport(Proxy(upstream, rewrite))


def _lightening(transport: httpx.BaseTransport, host: str) -> Connector:
    cfg = LighteningConfig(kind="lightening", base_url=host, token=SANDBOX_TOKEN)
    return lightening_from_config("lightening", cfg, http_clock=SimTime(), transport=transport)


def zoho_config(host: str) -> ZohoBooksConfig:
    return ZohoBooksConfig(kind="zoho_books", base_url=host + API_PREFIX,
                           accounts_url=host + ACCOUNTS_PREFIX,
                           organization_id=SANDBOX_ORGANIZATION_ID, client_id=SANDBOX_CLIENT_ID,
                           client_secret=SANDBOX_CLIENT_SECRET,
                           refresh_token=SANDBOX_REFRESH_TOKEN, throttle_window="0s")


def _zoho(transport: httpx.BaseTransport, host: str) -> Connector:
    return zoho_from_config("zoho", zoho_config(host), http_clock=SimTime(), max_rps=None,
                            transport=transport)


def _valomnia(transport: httpx.BaseTransport, host: str) -> Connector:
    cfg = ValomniaConfig(kind="valomnia", base_url=host, username=VALOMNIA_USER,
                         password=VALOMNIA_PASSWORD)
    return valomnia_from_config("valomnia", cfg, http_clock=SimTime(), transport=transport)


KINDS: dict[str, Kind] = {
    "lightening": Kind(LighteningSim, "1", _lightening),
    "zoho": Kind(ZohoBooksSim, "460000000026049", _zoho),
    "valomnia": Kind(ValomniaSim, "3229", _valomnia),
}
CONFIGS: dict[str, Callable[[str], Any]] = {
    "lightening": lambda host: LighteningConfig(kind="lightening", base_url=host,
                                                token=SANDBOX_TOKEN),
    "zoho": zoho_config,
    "valomnia": lambda host: ValomniaConfig(kind="valomnia", base_url=host,
                                            username=VALOMNIA_USER, password=VALOMNIA_PASSWORD),
}


@dataclass
class Pair:
    """One of the three systems and Harvest, each served by its simulator."""

    kind: str
    sim: Simulator
    url: str
    harvest: HarvestSim
    harvest_url: str
    store: Store

    @property
    def org(self) -> str:
        return KINDS[self.kind].org

    def cycle(self, rewrite: Rewrite | None = None, harvest_rewrite: Rewrite | None = None,
              proxy: Proxy | None = None, **sync: Any) -> CycleReport:
        """One cycle by a fresh Syncer, every request of ours through ``proxy`` (or a Proxy)."""
        hcfg = HarvestConfig(kind="harvest", base_url="http://harvest.test",
                             username=HARVEST_USER, password=HARVEST_PASSWORD)
        connectors: dict[str, Connector] = {
            "harvest": harvest_from_config("harvest", hcfg, max_rps=500.0, http_clock=SimTime(),
                                           transport=_transport(self.harvest_url,
                                                                harvest_rewrite)),
            self.kind: KINDS[self.kind].build(
                httpx.MockTransport(proxy or Proxy(self.url, rewrite)), f"http://{self.kind}.test"),
        }
        cfg = Settings(
            systems={"harvest": hcfg, self.kind: CONFIGS[self.kind](f"http://{self.kind}.test")},
            organizations={"acme": {"harvest": HARVEST_ORG, self.kind: self.org}},
            sync=SyncConfig(max_delete_fraction=1.0, **sync),
        )
        try:
            return Syncer(cfg, self.store, connectors).run_once()
        finally:
            for c in connectors.values():
                c.close()


def kinds_and(*where: str) -> list[tuple[str, str]]:
    """(kind, where) for each system that has it: Lightening has no login (its token is static)."""
    return [(kind, w) for kind in sorted(KINDS) for w in where
            if not (w == "login" and kind == "lightening")]


@pytest.fixture(params=sorted(KINDS))
def pair(request: pytest.FixtureRequest, store: Store, served_sim: Any) -> Iterator[Pair]:
    kind = KINDS[request.param]
    sim = kind.sim()
    harvest = HarvestSim(clients=[int(HARVEST_ORG)])
    yield Pair(request.param, sim, served_sim(sim), harvest, served_sim(harvest), store)


def emails(sim: Simulator) -> list[str]:
    return sorted(str(r.get("email", "")) for r in sim.admin_dump())


def create_path(kind: str) -> tuple[str, str]:
    return {"lightening": ("POST", "/contact"), "zoho": ("POST", "/contacts/contactpersons"),
            "valomnia": ("POST", "/api/v1.0/contacts")}[kind]


def is_create(kind: str, request: httpx.Request) -> bool:
    method, path = create_path(kind)
    return request.method == method and request.url.path.endswith(path)


def status(code: int) -> Rewrite:
    return lambda request, response: httpx.Response(code, text="Gateway Timeout")


def only_creates(kind: str, rewrite: Rewrite) -> Rewrite:
    def only(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        return rewrite(request, response) if is_create(kind, request) else None

    return only


# -- creates whose answer is lost ---------------------------------------------------------------


def reset(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                    request=request)


def echo(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """A server that echoes the request body as its answer (no id)."""
    return httpx.Response(201 if "valomnia" in str(request.url.host) else 200,
                          content=request.content,
                          headers={"Content-Type": request.headers.get("Content-Type", "")})


LOST_CREATES: dict[str, Rewrite] = {
    "504": status(504),
    "502": status(502),
    "reset": reset,
    "echo": echo,
    "html": html,
    "empty": body(b""),
    "truncated": body(b'{"result": true, "id": "4'),
    "null": body(b"null"),
}


@pytest.mark.parametrize("fault", sorted(LOST_CREATES))
def test_a_create_whose_answer_is_lost_is_not_duplicated(pair: Pair, fault: str) -> None:
    """The create lands upstream and the answer is replaced: three cycles, one contact."""
    pair.harvest.admin_create(HARVEST_ORG, ADA)
    first = pair.cycle(only_creates(pair.kind, LOST_CREATES[fault]))
    assert first.exit_code in (0, 1), first.errors
    assert emails(pair.sim) == ["ada@acme.example"]  # it did land
    for _ in range(2):
        pair.cycle(only_creates(pair.kind, LOST_CREATES[fault]))
    assert emails(pair.sim) == ["ada@acme.example"]
    assert emails(pair.harvest) == ["ada@acme.example"]
    last = pair.cycle()
    assert last.exit_code == 0, last.errors
    assert emails(pair.sim) == ["ada@acme.example"]


# -- updates whose answer is lost -----------------------------------------------------------------


def update_path(kind: str, request: httpx.Request) -> bool:
    path = request.url.path
    return {
        "lightening": request.method == "POST" and path.startswith("/contact/"),
        "zoho": request.method == "PUT" and "/contacts/contactpersons/" in path,
        "valomnia": request.method == "PUT" and path.startswith("/api/v1.0/contacts/"),
    }[kind]


def only_updates(kind: str, rewrite: Rewrite) -> Rewrite:
    def only(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        return rewrite(request, response) if update_path(kind, request) else None

    return only


LOST_UPDATES: dict[str, Rewrite] = {"504": status(504), "500": status(500), "reset": reset,
                                    "html": html, "empty": body(b"")}


@pytest.mark.parametrize("fault", sorted(LOST_UPDATES))
def test_an_update_whose_answer_is_lost_converges_without_writes(pair: Pair, fault: str) -> None:
    hid = pair.harvest.admin_create(HARVEST_ORG, ADA)
    assert pair.cycle().exit_code == 0
    pair.harvest.admin_update(hid, {"phone": "+1 555 0100", "last_name": "Byron"})
    pair.cycle(only_updates(pair.kind, LOST_UPDATES[fault]))
    (row,) = pair.sim.admin_dump()
    assert row["last_name"] == "Byron"  # it landed
    for _ in range(2):
        pair.cycle()
    (row,) = pair.sim.admin_dump()
    assert row["last_name"] == "Byron" and "555" in row["phone"]
    (hrow,) = pair.harvest.admin_dump()
    assert hrow["last_name"] == "Byron"
    before = pair.sim.writes(), pair.harvest.writes()
    last = pair.cycle()
    assert last.exit_code == 0, last.errors
    assert (pair.sim.writes(), pair.harvest.writes()) == before


# -- listings, logins and token answers that are not what they should be ---------------------


def listing(kind: str, request: httpx.Request) -> bool:
    path = request.url.path
    return request.method == "GET" and {
        "lightening": path == "/contact",
        "zoho": path.endswith("/contactpersons"),
        "valomnia": path == "/api/v1.0/contacts",
    }[kind]


def login(kind: str, request: httpx.Request) -> bool:
    path = request.url.path
    return {
        "lightening": False,
        "zoho": path.startswith(ACCOUNTS_PREFIX),
        "valomnia": path == "/j_spring_security_check",
    }[kind]


BAD_BODIES: dict[str, Rewrite] = {
    "html": html,
    "empty": body(b""),
    "list": body(b"[]"),
    "object": body(b"{}"),
    "truncated": body(b'{"entities": [{"id": "4'),
    "null": body(b"null"),
    "html_401": lambda request, response: httpx.Response(401, text="<html>login</html>"),
}


def on(pick: Callable[[str, httpx.Request], bool], kind: str, rewrite: Rewrite) -> Rewrite:
    def only(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        return rewrite(request, response) if pick(kind, request) else None

    return only


@pytest.mark.parametrize(("pair", "where"), kinds_and("listing", "login"), indirect=["pair"])
@pytest.mark.parametrize("fault", sorted(BAD_BODIES))
def test_a_malformed_answer_fails_that_system_only(pair: Pair, fault: str, where: str) -> None:
    existing = pair.sim.admin_create(pair.org, ADA)
    assert existing
    pair.harvest.admin_create(HARVEST_ORG, GRACE)
    pick = listing if where == "listing" else login
    with capture_logs() as logs:
        report = pair.cycle(on(pick, pair.kind, BAD_BODIES[fault]))
    error = report.systems[pair.kind].error or ""
    assert report.exit_code == 4, report.errors
    assert error.startswith(f"{pair.kind}:") and "Traceback" not in error
    assert report.systems["harvest"].error is None
    assert "cycle_finished" in [e["event"] for e in logs]
    assert pair.store.last_runs(1)[0]["exit_code"] == 4
    assert emails(pair.sim) == ["ada@acme.example"]
    assert emails(pair.harvest) == ["grace@acme.example"]


# -- redirects to another host -----------------------------------------------------------------

ELSEWHERE = "elsewhere.test"


class Recording(Proxy):
    """The proxy, plus a host of its own: whatever reaches ``elsewhere.test`` is kept, not sent."""

    def __init__(self, upstream: str, rewrite: Rewrite | None) -> None:
        super().__init__(upstream, rewrite)
        self.elsewhere: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == ELSEWHERE:
            request.read()
            self.elsewhere.append(request)
            return httpx.Response(200, json={"success": True, "token": "theirs",
                                             "access_token": "theirs", "expires_in": 3600})
        return super().__call__(request)


def redirect(code: int) -> Rewrite:
    def away(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        target = f"http://{ELSEWHERE}{request.url.raw_path.decode()}"
        return httpx.Response(code, headers={"Location": target})

    return away


@pytest.mark.parametrize("code", [302, 307, 308])
@pytest.mark.parametrize(("pair", "where"), kinds_and("login", "listing", "create"),
                         indirect=["pair"])
def test_a_redirect_to_another_host_never_carries_our_credentials(
    pair: Pair, where: str, code: int
) -> None:
    pair.harvest.admin_create(HARVEST_ORG, ADA)
    pick = {"login": login, "listing": listing,
            "create": lambda kind, request: is_create(kind, request)}[where]
    recording = Recording(pair.url, on(pick, pair.kind, redirect(code)))
    with capture_logs() as logs:
        report = pair.cycle(proxy=recording)
    assert recording.elsewhere == [], [(r.method, str(r.url), r.content) for r in recording.elsewhere]
    assert report.systems["harvest"].error is None
    assert "cycle_finished" in [e["event"] for e in logs]
    if where != "create":
        assert report.exit_code == 4
        assert (report.systems[pair.kind].error or "").startswith(f"{pair.kind}:")


# -- listings that never end -------------------------------------------------------------------

PAGED = ("zoho", "valomnia")
CAP = 40
"""Past this many listing requests the proxy answers 500: a runaway scan ends in the test."""


def same_items_forever(kind: str) -> tuple[Rewrite, list[int]]:
    """Every page holds the first page's items, says more follow, and echoes the page asked."""
    asked: list[int] = []
    first: dict[str, Any] = {}

    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if not listing(kind, request):
            return None
        asked.append(1)
        if len(asked) > CAP:
            return httpx.Response(500, json={"code": 1000, "message": "stop"})
        answer = json.loads(response.content)
        key = "contact_persons" if kind == "zoho" else "data"
        first.setdefault(key, answer[key])
        answer[key] = first[key]
        params = request.url.params
        if kind == "zoho":
            answer["page_context"].update(page=int(params["page"]), has_more_page=True)
        else:
            offset = int(params["offset"])
            answer["paging"].update(total=10**6, offset=offset, next=f"?offset={offset + 100}")
        return httpx.Response(200, json=answer)

    return rewrite, asked


@pytest.mark.parametrize("pair", sorted(PAGED), indirect=True)  # the others have no paging
def test_a_listing_that_repeats_its_items_ends_as_an_error(pair: Pair) -> None:
    pair.sim.admin_create(pair.org, ADA)
    pair.harvest.admin_create(HARVEST_ORG, GRACE)
    rewrite, asked = same_items_forever(pair.kind)
    with capture_logs() as logs:
        report = pair.cycle(rewrite)
    assert len(asked) <= 3
    assert report.exit_code == 4, report.errors
    error = report.systems[pair.kind].error or ""
    assert error.startswith(f"{pair.kind}:") and "repeats" in error
    assert report.systems["harvest"].error is None
    assert "cycle_finished" in [e["event"] for e in logs]
    assert emails(pair.sim) == ["ada@acme.example"]  # nothing sent to a system half read
    # Ada's page was read well before the loop showed: she may go on; Grace stays out.
    assert "grace@acme.example" in emails(pair.harvest)


@pytest.mark.parametrize("pair", sorted(PAGED), indirect=True)
def test_the_same_contact_on_two_pages_is_one_person(pair: Pair) -> None:
    rid = pair.sim.admin_create(pair.org, ADA)
    key = "contact_persons" if pair.kind == "zoho" else "data"
    pages: dict[str, Any] = {}

    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if not listing(pair.kind, request):
            return None
        params = request.url.params
        number = int(params["page"]) if pair.kind == "zoho" else int(params["offset"]) + 1
        answer = json.loads(response.content)
        if number == 1:
            pages["first"] = answer[key]
            pair.sim.admin_update(rid, {"phone": "+1 555 0199"})  # edited while we page
            if pair.kind == "zoho":
                answer["page_context"]["has_more_page"] = True
            else:
                answer["paging"]["total"] = 2
            return httpx.Response(200, json=answer)
        if number == 2:  # the server re-sorted: the edited contact comes round again
            answer[key] = [dict(pages["first"][0], phone="+1 555 0199")]
            return httpx.Response(200, json=answer)
        return None

    with capture_logs() as logs:
        first = pair.cycle(rewrite)
    assert "cycle_finished" in [e["event"] for e in logs]
    assert first.exit_code in (0, 1), first.errors
    assert emails(pair.harvest) == ["ada@acme.example"]
    again = pair.cycle()
    assert again.exit_code == 0, again.errors
    assert emails(pair.harvest) == ["ada@acme.example"]
    assert emails(pair.sim) == ["ada@acme.example"]
    (row,) = pair.harvest.admin_dump()
    assert "555" in row["phone"]


# -- Zoho token answers ---------------------------------------------------------------------------

TOKEN_ANSWERS: dict[str, bytes] = {
    "error_200": b'{"error": "invalid_code"}',
    "token_number": b'{"access_token": 12345, "expires_in": 3600}',
    "token_list": b'{"access_token": ["a"], "expires_in": 3600}',
    "expires_inf": b'{"access_token": "t", "expires_in": 1e400}',
    "expires_huge": b'{"access_token": "t", "expires_in": "99999999999999999999"}',
    "expires_nan": b'{"access_token": "t", "expires_in": NaN}',
    "expires_dict": b'{"access_token": "t", "expires_in": {}}',
}


@pytest.mark.parametrize("answer", sorted(TOKEN_ANSWERS))
def test_a_strange_token_answer_is_our_error(store: Store, served_sim: Any, answer: str) -> None:
    sim, harvest = ZohoBooksSim(), HarvestSim(clients=[int(HARVEST_ORG)])
    pair = Pair("zoho", sim, served_sim(sim), harvest, served_sim(harvest), store)
    harvest.admin_create(HARVEST_ORG, GRACE)
    calls: list[str] = []

    def token(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if not login("zoho", request):
            return None
        calls.append(request.url.path)
        return httpx.Response(200, content=TOKEN_ANSWERS[answer])

    with capture_logs() as logs:
        report = pair.cycle(token)
    assert "cycle_finished" in [e["event"] for e in logs]
    assert report.systems["harvest"].error is None
    assert len(calls) <= 2
    error = report.systems["zoho"].error
    assert error is None or (error.startswith("zoho:") and "Traceback" not in error), error
    assert "unexpected error" not in (error or "")


@pytest.mark.parametrize("expires_in", [0, 0.001, 1, -5, -3600])
def test_a_token_that_expires_at_once_is_not_fetched_in_a_loop(
    store: Store, served_sim: Any, expires_in: float
) -> None:
    sim, harvest = ZohoBooksSim(), HarvestSim(clients=[int(HARVEST_ORG)])
    pair = Pair("zoho", sim, served_sim(sim), harvest, served_sim(harvest), store)
    for n in range(3):
        harvest.admin_create(HARVEST_ORG, {**GRACE, "email": f"g{n}@acme.example"})
    calls: list[str] = []

    def token(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if not login("zoho", request):
            return None
        calls.append(request.url.path)
        answer = json.loads(response.content)
        return httpx.Response(200, json={**answer, "expires_in": expires_in})

    report = pair.cycle(token)
    assert report.systems["harvest"].error is None
    assert len(calls) <= 3, report.systems["zoho"]
    assert report.exit_code == 0, report.errors


# -- secrets: a server that echoes our request back in its error -------------------------------


def echo_request(status_code: int) -> Rewrite:
    """An error answer that quotes the whole request: headers, query and body."""

    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        request.read()
        quoted = {"url": str(request.url), "headers": dict(request.headers),
                  "body": request.content.decode("utf-8", "replace")}
        return httpx.Response(status_code, json={"error": json.dumps(quoted), "code": 57,
                                                 "message": json.dumps(quoted), "result": False})

    return rewrite


class Sniffing(Proxy):
    """The proxy, noting every credential we send: configured ones and those a login hands out."""

    def __init__(self, upstream: str, rewrite: Rewrite | None) -> None:
        super().__init__(upstream, rewrite)
        self.sent: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        for header in ("Authorization", "Cookie"):
            value = request.headers.get(header, "")
            if value:
                self.sent.add(value)
                self.sent.add(value.split(" ", 1)[-1].split("=", 1)[-1])
        return super().__call__(request)


@pytest.mark.parametrize(("pair", "where"), kinds_and("login", "listing", "create"),
                         indirect=["pair"])
def test_a_server_echoing_our_request_leaks_no_credential(pair: Pair, where: str) -> None:
    from syncd.logs import redact_secrets
    from syncd.redact import REDACTOR, use_settings

    pair.harvest.admin_create(HARVEST_ORG, ADA)
    pick = {"login": login, "listing": listing,
            "create": lambda kind, request: is_create(kind, request)}[where]
    sniffing = Sniffing(pair.url, on(pick, pair.kind, echo_request(400)))
    cfg = CONFIGS[pair.kind](f"http://{pair.kind}.test")
    use_settings(Settings(systems={pair.kind: cfg}, organizations={}))  # what loading does
    try:
        with capture_logs(processors=[structlog.processors.format_exc_info,
                                      redact_secrets]) as logs:
            report = pair.cycle(proxy=sniffing)
        texts = {  # what leaves the process: logs, `once --json`, the store
            "logs": json.dumps(logs, default=str),
            "report": json.dumps(report.as_dict(), default=str),
            "runs": json.dumps(pair.store.last_runs(1), default=str),
            "watermarks": json.dumps({k: v.last_error for k, v in pair.store.watermarks().items()}),
        }
    finally:
        REDACTOR.clear()
    secrets = {s.get_secret_value() for s in vars(cfg).values() if isinstance(s, SecretStr)}
    secrets |= {s for s in sniffing.sent if len(s) >= 8}
    assert secrets
    assert report.systems[pair.kind].error or report.exit_code != 0  # the fault did bite
    for where_, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {where_}"


# -- ids as numbers in one answer and strings in another -------------------------------------


def retyped_ids(kind: str, as_type: Callable[[Any], Any]) -> Rewrite:
    """Every id of a listing and of a create's answer turned into ``as_type``."""
    id_key = "contact_person_id" if kind == "zoho" else "id"

    def fix(item: Any) -> Any:
        if isinstance(item, dict) and item.get(id_key) is not None:
            item[id_key] = as_type(item[id_key])
        return item

    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        if not (listing(kind, request) or is_create(kind, request)):
            return None
        try:
            answer = json.loads(response.content)
        except ValueError:
            return None
        for key in ("entities", "data", "contact_persons"):
            if isinstance(answer.get(key), list):
                answer[key] = [fix(i) for i in answer[key]]
        fix(answer)
        if isinstance(answer.get("contact_person"), dict):
            fix(answer["contact_person"])
        return httpx.Response(response.status_code, json=answer)

    return rewrite


@pytest.mark.parametrize("as_type", ["int", "str"])
def test_ids_typed_differently_keep_one_person(pair: Pair, as_type: str) -> None:
    pair.harvest.admin_create(HARVEST_ORG, ADA)
    convert: Callable[[Any], Any] = int if as_type == "int" else str
    assert pair.cycle().exit_code == 0  # created with the server's own id types
    assert emails(pair.sim) == ["ada@acme.example"]
    pair.harvest.admin_create(HARVEST_ORG, GRACE)
    for _ in range(3):  # and now the ids come the other way
        pair.cycle(retyped_ids(pair.kind, convert))
    # Zoho refuses a numeric id (a JSON number may have lost digits on the way): those
    # records are skipped, and a system with records it could not read gets no create.
    assert len(set(emails(pair.sim))) == len(emails(pair.sim))  # never two of one person
    pair.cycle()
    assert emails(pair.sim) == ["ada@acme.example", "grace@acme.example"]
    assert emails(pair.harvest) == ["ada@acme.example", "grace@acme.example"]
    last = pair.cycle()
    assert last.exit_code == 0, last.errors
    assert emails(pair.sim) == ["ada@acme.example", "grace@acme.example"]
    assert sum(s.created + s.updated + s.deleted for s in last.systems.values()) == 0


# -- deletes whose answer is lost ---------------------------------------------------------------


def delete_request(kind: str, request: httpx.Request) -> bool:
    path = request.url.path
    if kind == "lightening":
        return request.method == "GET" and path.endswith("/delete")
    return request.method == "DELETE"


@pytest.mark.parametrize("fault", ["504", "reset", "html"])
def test_a_delete_whose_answer_is_lost_converges(pair: Pair, fault: str) -> None:
    rewrite = {"504": status(504), "reset": reset, "html": html}[fault]
    hid = pair.harvest.admin_create(HARVEST_ORG, ADA)
    pair.harvest.admin_create(HARVEST_ORG, GRACE)
    assert pair.cycle().exit_code == 0
    pair.harvest.admin_delete(hid)
    scan = {"full_scan_interval": "0s"}  # Harvest's own delete shows only in a full scan
    pair.cycle(on(delete_request, pair.kind, rewrite), **scan)
    assert emails(pair.sim) == ["grace@acme.example"]  # it landed
    for _ in range(2):
        pair.cycle(**scan)
    last = pair.cycle(**scan)
    assert last.exit_code == 0, last.errors
    assert emails(pair.sim) == ["grace@acme.example"]
    assert emails(pair.harvest) == ["grace@acme.example"]  # not brought back
