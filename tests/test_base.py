"""The connector base: a new paged JSON API needs only mapping and endpoints.

``PeopleConnector`` below is a whole connector (about forty lines) for a
small Starlette API with OAuth2 tokens and page-number paging: no loop, no
auth code, no factory of its own.  The other tests pin down the base's
rules once, for every connector: paginators and their loop detection,
auth strategies, response rules, throttling, unknown outcomes, the size cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
from freezegun import freeze_time
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncd.config import _SystemBase
from syncd.connectors.base import (
    Capabilities,
    Listing,
    RemoteRecord,
    RestConnector,
    TypedChildren,
    WriteResult,
)
from syncd.connectors.paging import HeaderPage, OffsetPaging, PageNumber
from syncd.contact import Fields
from syncd.engine.poll import Poller
from syncd.errors import (
    AuthError,
    BadAnswer,
    NotFound,
    OutcomeUnknown,
    RecordRejected,
    RetriableError,
    Throttled,
)
from syncd.http import (
    Answers,
    BasicAuth,
    FormLoginCookie,
    HeaderToken,
    HttpClient,
    OAuth2Grant,
    Pace,
    RetryPolicy,
)
from syncd.model import Discovered, Watermark
from tests.world import SimTime


class PeopleConfig(_SystemBase):
    kind: Literal["people"] = "people"
    base_url: str


# -- a whole connector ----------------------------------------------------------------------


class PeopleConnector(RestConnector):
    capabilities = Capabilities(fields=frozenset({"first_name", "last_name", "email"}))

    def make_auth(self) -> OAuth2Grant:
        return OAuth2Grant("/token", lambda: {"grant_type": "client_credentials"})

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        for org in org_ids:
            more = PageNumber(lambda body: bool(body["more"]), size=2)
            yield Listing(f"/orgs/{org}/people", org_id=org, paginator=more)

    def items(self, body: Any, listing: Listing) -> Sequence[Any]:
        return list(body["people"])

    def record(self, item: Any, listing: Listing) -> RemoteRecord:
        fields = {"first_name": item["first"], "last_name": item["last"], "email": item["email"]}
        return RemoteRecord(str(item["id"]), str(listing.org_id), fields)

    def _body(self, fields: Fields) -> dict[str, str]:
        return {"first": fields["first_name"], "last": fields["last_name"],
                "email": fields["email"]}

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        _, body = self.send("POST", f"/orgs/{org_id}/people", self._body(fields), what="create")
        return WriteResult(str(body["id"]))

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        self.send("PUT", f"/orgs/{org_id}/people/{remote_id}", self._body(desired),
                  what=f"update {remote_id}")
        return WriteResult(remote_id)

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        self.remove("DELETE", f"/orgs/{org_id}/people/{remote_id}", what=f"delete {remote_id}")


# -- the API it talks to ----------------------------------------------------------------------


class PeopleApi:
    def __init__(self, people: int = 5, *, ignore_paging: bool = False) -> None:
        self.people = {str(i): {"id": i, "first": f"P{i}", "last": "Doe", "email": f"p{i}@x.io"}
                       for i in range(1, people + 1)}
        self.tokens = 0
        self.requests: list[str] = []
        self.ignore_paging = ignore_paging
        self.unlisted: set[str] = set()
        """People the listing skips (as offset paging does when another is deleted mid-scan)."""
        self.app = Starlette(routes=[
            Route("/token", self.token, methods=["POST"]),
            Route("/orgs/{org}/people", self.listing, methods=["GET", "POST"]),
            Route("/orgs/{org}/people/{pid}", self.one, methods=["GET", "PUT", "DELETE"]),
        ])

    async def token(self, request: Request) -> Response:
        self.tokens += 1
        return JSONResponse({"access_token": f"t{self.tokens}", "expires_in": 3600})

    def _authorised(self, request: Request) -> bool:
        self.requests.append(f"{request.method} {request.url.path}?{request.url.query}")
        return request.headers.get("authorization", "").startswith("Bearer t")

    async def listing(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "no token"}, status_code=401)
        if request.method == "POST":
            new = {"id": len(self.people) + 1, **(await request.json())}
            self.people[str(new["id"])] = new
            return JSONResponse(new, status_code=201)
        page = 1 if self.ignore_paging else int(request.query_params["page"])
        size = int(request.query_params["per_page"])
        rows = [p for pid, p in self.people.items() if pid not in self.unlisted]
        chunk = rows[(page - 1) * size: page * size]
        return JSONResponse({"people": chunk, "more": page * size < len(rows)})

    async def one(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "no token"}, status_code=401)
        pid = request.path_params["pid"]
        if pid not in self.people:
            return JSONResponse({"error": "not found"}, status_code=404)
        if request.method == "DELETE":
            del self.people[pid]
            return Response(status_code=204)
        if request.method == "GET":
            return JSONResponse({"people": [self.people[pid]]})
        self.people[pid].update(await request.json())
        return JSONResponse(self.people[pid])


def people(api: PeopleApi, served_sim: Any) -> PeopleConnector:
    url = served_sim(api)
    return PeopleConnector.from_config("people", PeopleConfig(base_url=url))


def test_a_paged_json_connector_needs_no_loop_no_auth_code_no_factory(served_sim: Any) -> None:
    api = PeopleApi(5)
    connector = people(api, served_sim)
    pages = list(connector.list_records(["7"], None))
    assert [len(p.records) for p in pages] == [2, 2, 1]
    assert {r.remote_id for p in pages for r in p.records} == set(api.people)
    assert api.tokens == 1  # one token for the whole scan, not one per request
    new = connector.create("7", {"first_name": "Ada", "last_name": "L", "email": "a@x.io"})
    connector.update(new.remote_id, "7", {}, {"first_name": "Ada", "last_name": "Lovelace",
                                                "email": "a@x.io"}, {})
    assert api.people[new.remote_id]["last"] == "Lovelace"
    connector.delete(new.remote_id, "7", {})
    connector.delete(new.remote_id, "7", {})  # already gone: the goal is reached
    assert new.remote_id not in api.people


def test_a_server_ignoring_the_page_is_a_loop_and_the_scan_is_not_complete(
    served_sim: Any,
) -> None:
    api = PeopleApi(5, ignore_paging=True)
    connector = people(api, served_sim)
    with pytest.raises(BadAnswer, match="repeats an earlier page"):
        list(connector.list_records(["7"], None))
    assert len(api.requests) == 2  # found on the second page, not after thousands
    poller = Poller({"people": connector}, lambda name: {"7": "acme"},
                    skew=timedelta(0), full_scan_interval=timedelta(hours=1),
                    stop=threading.Event())
    result = poller.poll_one("people", Watermark("people"), datetime.now(UTC), True, None)
    assert result.error is not None
    assert result.observation is not None and not result.observation.complete


class NoDeleteRoute(PeopleConnector):
    """A server whose opening shows no delete route (as a LogiSense's Metadata may)."""

    fail_open = False

    def open(self) -> Discovered:
        if self.fail_open:
            raise RetriableError("people: down", system=self.name)
        self.stop_deleting("people.no_delete")
        return self.discovered


def test_what_opening_finds_rides_on_the_poll_and_the_capabilities_stay_as_built(
    served_sim: Any,
) -> None:
    api = PeopleApi(2)
    connector = NoDeleteRoute.from_config("people", PeopleConfig(base_url=served_sim(api)))
    poller = Poller({"people": connector}, lambda name: {"7": "acme"},
                    skew=timedelta(0), full_scan_interval=timedelta(hours=1),
                    stop=threading.Event())
    (result,) = poller.poll({}, datetime.now(UTC))
    assert result.error is None and result.discovered == Discovered(can_delete=False)
    assert poller.discovered == {"people": Discovered(can_delete=False)}
    assert connector.capabilities == NoDeleteRoute.capabilities  # fixed once built
    assert not result.discovered.apply(connector.capabilities).can_delete
    with pytest.raises(RecordRejected, match="no contact delete"):
        connector.delete("1", "7", {})
    assert not [r for r in api.requests if r.startswith("DELETE")] and "1" in api.people
    connector.fail_open = True  # an opening that fails keeps what an earlier one found
    (result,) = poller.poll({}, datetime.now(UTC))
    assert result.error is not None and result.discovered == Discovered(can_delete=False)


def test_a_discovered_fact_only_takes_away() -> None:
    caps = Capabilities(fields=frozenset({"email"}), incremental=True)
    assert Discovered().apply(caps) is caps
    assert Discovered(can_delete=True, incremental=True).apply(caps) is caps
    assert Discovered(incremental=False).apply(caps) == Capabilities(fields=frozenset({"email"}))
    none = Capabilities(fields=frozenset({"email"}), can_delete=False)
    assert not Discovered(can_delete=True).apply(none).can_delete


def test_a_bad_item_skips_that_record_only_and_an_item_without_id_is_never_a_record(
    served_sim: Any,
) -> None:
    api = PeopleApi(4)
    api.people["2"] = {"id": 2, "first": "No", "last": "Email"}  # no "email" key
    api.people["3"]["id"] = ""
    connector = people(api, served_sim)
    pages = list(connector.list_records(["7"], None))
    assert sorted(r.remote_id for p in pages for r in p.records) == ["1", "4"]
    skipped = [s for p in pages for s in p.skipped]
    assert [(s.remote_id, "KeyError" in s.reason) for s in skipped] == [("2", True), (None, False)]
    assert "no usable id" in skipped[1].reason


class KnownMembers(PeopleConnector):
    """A listing that must see given ids: the members another endpoint named."""

    members = frozenset({"1", "2", "3", "9"})

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        for org in org_ids:
            yield Listing(f"/orgs/{org}/people", org_id=org, wanted=set(self.members),
                          by_id=f"/orgs/{org}/people/{{}}",
                          paginator=PageNumber(lambda body: bool(body["more"]), size=2))


def test_a_wanted_record_the_pages_skipped_is_read_by_id_and_only_a_404_says_gone(
    served_sim: Any,
) -> None:
    api = PeopleApi(5)
    api.unlisted = {"3"}
    connector = KnownMembers.from_config("people", PeopleConfig(base_url=served_sim(api)))
    pages = list(connector.list_records(["7"], None))
    assert sorted(r.remote_id for p in pages for r in p.records) == ["1", "2", "3", "4", "5"]
    assert api.requests == ["GET /orgs/7/people?page=1&per_page=2",  # 1, 2
                            "GET /orgs/7/people?page=2&per_page=2",  # 4, 5: the last page
                            "GET /orgs/7/people/3?", "GET /orgs/7/people/9?"]  # 9: a 404, gone
    api.requests.clear()
    connector.members = frozenset({"1", "2"})
    assert [len(p.records) for p in connector.list_records(["7"], None)] == [2]
    assert api.requests == ["GET /orgs/7/people?page=1&per_page=2"]  # every one seen: no more pages


def test_fields_held_as_typed_children_read_diff_and_match_by_type_and_value() -> None:
    points = TypedChildren({"email": 40, "phone": 41, "fax": None}, type_key="typeId")
    children = [{"identity": 9, "typeId": 40, "value": "late@x.io"},
                {"identity": 3, "typeId": 40, "value": " a@x.io "},
                {"identity": 5, "typeId": 77, "value": "unmapped"},
                {"identity": 6, "value": "no type"}]
    values, ids = points.read(children)
    assert values == {"email": "a@x.io", "phone": "", "fax": ""}  # the oldest child of a type wins
    assert ids == {"email": 3}
    edits = list(points.edits({"email": "", "phone": "555", "fax": "556", "first_name": "A"},
                              {"email": 3}))
    assert edits == [("delete", "email", {"identity": 3}),
                     ("create", "phone", {"typeId": 41, "value": "555"}),
                     ("create", "fax", {"typeId": None, "value": "556"})]  # the caller refuses it
    assert list(points.edits({"email": "b@x.io"}, {"email": 3})) == [
        ("update", "email", {"identity": 3, "value": "b@x.io"})]
    answer = [{"identity": 12, "typeId": 41, "value": "555"},
              {"identity": 13, "typeId": 40, "value": "other@x.io"}]
    assert points.created(answer, {"phone": "555", "email": "b@x.io"}) == {"phone": 12}


# -- paginators --------------------------------------------------------------------------------


def test_offset_paging_reads_to_the_stated_total_and_header_paging_asks_in_a_header() -> None:
    offset = OffsetPaging(size=2, total=lambda body: body["total"])
    asked = []
    while not offset.finished:
        asked.append(dict(offset.params()))
        start = offset.offset  # each page its own items: a page of the same items is a loop
        offset.advance(f"{start}".encode(), {"total": 5}, [start + 1, start + 2][: 5 - start])
    assert asked == [{"max": 2, "offset": 0}, {"max": 2, "offset": 2}, {"max": 2, "offset": 4}]
    header = HeaderPage(lambda body: body["totalCount"], size=500)
    assert header.headers() == {"Pagination": '{"pageNumber": 1, "pageSize": 500}'}
    header.advance(b"page 1", {"totalCount": 501}, ["x"])
    assert '"pageNumber": 2' in header.headers()["Pagination"] and not header.finished
    header.advance(b"page 2", {"totalCount": 501}, ["y"])
    assert header.finished


def test_a_page_number_that_comes_back_is_a_loop() -> None:
    class Stuck(PageNumber):
        def next(self, body: Any, items: Sequence[Any]) -> None:
            return None  # a cursor that never moves

    stuck = Stuck(lambda body: True, size=2)
    with pytest.raises(BadAnswer, match="read already"):
        stuck.advance(b"a", {}, ["x"])


# -- auth strategies ---------------------------------------------------------------------------


def client(handler: Any, *, max_rps: float | None = None, burst: float | None = None,
           answers: Answers | None = None, **kw: Any) -> HttpClient:
    """A client over ``handler``; ``kw`` other than the client's own are its retry policy's."""
    kw.setdefault("clock", SimTime())
    own = {k: kw.pop(k) for k in ("auth", "clock", "stop", "headers", "timeout") if k in kw}
    return HttpClient("api", "https://api.test", transport=httpx.MockTransport(handler),
                      pace=Pace(max_rps, burst), retry=RetryPolicy(**kw),
                      answers=answers or Answers(), **own)


def test_basic_auth_is_sent_and_a_401_is_final_at_once() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401, text="bad password")

    with pytest.raises(AuthError, match="401 bad password"):
        client(handler, auth=BasicAuth("ops", "pw")).request("GET", "/x")
    assert [r.headers["authorization"] for r in seen] == ["Basic b3BzOnB3"]


def test_a_static_token_is_sent_verbatim() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json=[])

    client(handler, auth=HeaderToken("abc123")).request("GET", "/x")
    assert seen == ["abc123"]


def test_oauth2_token_lives_until_its_margin_then_is_fetched_again() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            tokens.append(request.content.decode())
            return httpx.Response(200, json={"access_token": f"t{len(tokens)}", "expires_in": 3600})
        return httpx.Response(200, json={"auth": request.headers["authorization"]})

    with freeze_time("2026-12-01 10:00:00") as frozen:
        grant = OAuth2Grant("/token", lambda: {"grant_type": "refresh_token"},
                            scheme="Zoho-oauthtoken")
        api = client(handler, auth=grant)
        assert api.request("GET", "/x").json()["auth"] == "Zoho-oauthtoken t1"
        frozen.tick(timedelta(minutes=58))
        assert api.request("GET", "/x").json()["auth"] == "Zoho-oauthtoken t1"
        frozen.tick(timedelta(minutes=1, seconds=1))  # inside the 60 s margin
        assert api.request("GET", "/x").json()["auth"] == "Zoho-oauthtoken t2"
    assert tokens == ["grant_type=refresh_token"] * 2


def test_oauth2_refreshes_once_on_401_and_never_past_its_budget() -> None:
    token_calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal token_calls
        if request.url.path == "/token":
            token_calls += 1
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        return httpx.Response(401, json={"code": 57})

    grant = OAuth2Grant("/token", lambda: {}, max_refreshes=10)
    api = client(handler, auth=grant)
    with pytest.raises(AuthError):
        api.request("GET", "/x")
    assert token_calls == 2  # the first token, and one refresh after the 401
    for _ in range(20):
        with pytest.raises(AuthError):
            api.request("GET", "/x")
    assert token_calls == 10  # Zoho blocks an 11th refresh in 10 minutes: never ask for it


def test_a_form_login_follows_its_redirect_and_sends_the_session_cookie() -> None:
    logins = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal logins
        if request.url.path == "/login":
            logins += 1
            return httpx.Response(302, headers={"Location": "/login/ok"})
        if request.url.path == "/login/ok":
            return httpx.Response(200, json={"token": f"s{logins}"})
        if request.headers.get("cookie") == "JSESSIONID=s1":
            return httpx.Response(401)  # the first session expired
        return httpx.Response(200, json={"cookie": request.headers.get("cookie")})

    auth = FormLoginCookie("/login", lambda: {"j_username": "u"},
                           lambda response: response.json().get("token"))
    assert client(handler, auth=auth).request("GET", "/x").json() == {"cookie": "JSESSIONID=s2"}
    assert logins == 2


# -- response rules, throttling, unknown outcomes ----------------------------------------------


def test_an_api_that_puts_its_verdict_in_the_body_overrides_the_response_rules() -> None:
    def verdict(response: httpx.Response, message: str) -> None:
        body = response.json()
        if body.get("result") is False:
            raise RecordRejected(body["error"])

    api = client(lambda r: httpx.Response(200, json={"result": False, "error": "email: taken"}),
                 answers=Answers(validate=verdict))
    with pytest.raises(RecordRejected, match="email: taken"):
        api.request("POST", "/contact")


def test_a_404_is_not_found_and_other_4xx_reject_the_record() -> None:
    with pytest.raises(NotFound):
        client(lambda r: httpx.Response(404)).request("PUT", "/x/1")
    with pytest.raises(RecordRejected, match="422"):
        client(lambda r: httpx.Response(422, text="bad")).request("PUT", "/x/1")


def test_a_429_without_retry_after_blocks_the_system_for_its_window() -> None:
    answers = iter([httpx.Response(429), httpx.Response(200, json=[])])
    clock = SimTime(1000.0)
    api = client(lambda r: next(answers), throttle_window=45.0, clock=clock)
    api.request("GET", "/x")
    assert clock.now() - 1000.0 == pytest.approx(45.0, abs=0.01)
    assert api.stats.rate_limited == 1


def test_pacing_throttle_and_backoff_all_wait_on_the_one_injected_clock() -> None:
    answers = iter([httpx.Response(429), httpx.Response(502), *[httpx.Response(200, json=[])] * 4])
    clock = SimTime(1000.0)
    api = client(lambda r: next(answers), clock=clock, max_rps=2.0, burst=1.0,
                 throttle_window=60.0, backoff=0.5)
    assert api.limiter.clock is clock
    started = time.monotonic()
    for _ in range(4):
        api.request("GET", "/x")
    # the 429's 60 s window, one 1 s backoff (second retry), three more sends paced at 2/s
    assert clock.slept == pytest.approx(60.0 + 1.0 + 1.5, abs=0.01)
    assert api.stats.requests == 6 and api.stats.rate_limited == 1
    assert time.monotonic() - started < 5  # simulated time: nothing slept, nothing spun


def test_a_wait_on_a_simulated_clock_also_ends_when_stop_is_set() -> None:
    clock = SimTime()
    api = client(lambda r: httpx.Response(429), clock=clock, throttle_window=60.0)
    api.stop.set()
    with pytest.raises(RetriableError, match="stopped while waiting"):
        api.request("GET", "/contacts")
    assert clock.slept == 0 and api.stats.requests == 1


def test_a_retry_after_longer_than_the_cycle_allows_gives_the_system_up_until_then() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503, headers={"Retry-After": "600"})

    api = client(handler, max_wait=120.0)
    with pytest.raises(Throttled, match="resumes after"):
        api.request("GET", "/contacts")
    with pytest.raises(Throttled):
        api.request("GET", "/contacts")  # still blocked: not even sent
    assert calls == 1


def test_a_create_answered_5xx_is_never_resent_but_an_idempotent_put_is() -> None:
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        return httpx.Response(502) if len(sent) == 1 or request.method == "POST" else (
            httpx.Response(200, json={}))

    with pytest.raises(OutcomeUnknown, match="not resent"):
        client(handler).request("POST", "/contacts")
    assert sent == ["POST"]
    sent.clear()
    client(handler).request("PUT", "/contacts/1")
    assert sent == ["PUT", "PUT"]


def test_a_create_whose_answer_cannot_be_read_has_an_unknown_outcome(served_sim: Any) -> None:
    connector = PeopleConnector.from_config(
        "people", PeopleConfig(base_url="https://people.test"),
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, json={"access_token": "t"}) if r.url.path == "/token"
            else httpx.Response(201, text="<html>Bad gateway</html>")),
    )
    with pytest.raises(OutcomeUnknown, match="not JSON"):
        connector.create("7", {"first_name": "A", "last_name": "B", "email": "c@d.e"})


def test_an_answer_over_the_size_cap_is_refused_unread() -> None:
    huge = b"[" + b'"x",' * 300_000 + b'"x"]'
    api = client(lambda r: httpx.Response(200, content=huge), answers=Answers(max_bytes=1_000_000))
    with pytest.raises(BadAnswer, match="cap"):
        api.request("GET", "/contacts")
    assert isinstance(BadAnswer("x"), RetriableError)


def test_a_wait_ends_within_moments_when_stop_is_set() -> None:
    api = HttpClient("api", "https://api.test", retry=RetryPolicy(max_wait=120.0),
                     transport=httpx.MockTransport(
        lambda r: httpx.Response(503, headers={"Retry-After": "30"})))
    threading.Timer(0.2, api.stop.set).start()
    started = time.monotonic()
    with pytest.raises(RetriableError, match="stopped"):
        api.request("GET", "/contacts")
    assert time.monotonic() - started < 5
