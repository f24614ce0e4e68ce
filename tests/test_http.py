"""HttpClient and its auth strategies: logins under faults, one login per expiry.

Wire-level rules use ``httpx.MockTransport``; the same rules are then checked
against the Valomnia, LogiSense and Zoho Books simulators over real HTTP.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from syncd.config import LogisenseConfig, ValomniaConfig, ZohoBooksConfig
from syncd.connectors import logisense, valomnia, zoho_books
from syncd.errors import (
    AuthError,
    BadAnswer,
    NotApplied,
    OutcomeUnknown,
    RateLimited,
    RecordRejected,
    RetriableError,
    SystemUnavailable,
    Throttled,
)
from syncd.http import (
    Answers,
    FormLoginCookie,
    HttpClient,
    MockTransport,
    OAuth2Grant,
    Request,
    Response,
    RetryPolicy,
    parse_retry_after,
    vendor_message,
)
from syncd.sandbox.logisense import LogisenseSim
from syncd.sandbox.valomnia import SANDBOX_PASSWORD, SANDBOX_USER, ValomniaSim
from syncd.sandbox.zoho_books import ZohoBooksSim
from syncd.sandbox.zoho_books import config_for as zoho_config
from tests.contract import PERSON, by_id, listed
from tests.world import SimTime

Serve = Callable[[Any], str]
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


# -- a server of our own: logins and sessions as plain Python ------------------------------


class Server:
    """A login route handing out numbered sessions, and data routes that need the current one.

    ``fail_logins``: the next N logins answer 500.  ``revoke()`` ends every session.
    ``barrier``: data requests wait for each other, so several are in flight at once.
    """

    def __init__(self, *, fail_logins: int = 0, barrier: threading.Barrier | None = None) -> None:
        self.fail_logins = fail_logins
        self.barrier = barrier
        self.logins = 0
        self.current: str | None = None
        self.lock = threading.Lock()
        self.data_requests = 0

    def revoke(self) -> None:
        with self.lock:
            self.current = None

    def __call__(self, request: Request) -> Response:
        if request.url.path in ("/login", "/token"):
            with self.lock:
                self.logins += 1
                if self.fail_logins > 0:
                    self.fail_logins -= 1
                    return Response(500, json={"error": "server_error"})
                self.current = f"s{self.logins}"
            if request.url.path == "/token":
                return Response(200, json={"access_token": self.current, "expires_in": 3600})
            return Response(200, json={"token": self.current})
        with self.lock:
            self.data_requests += 1
            session = self.current
        sent = request.headers.get("cookie", "").removeprefix("S=") or request.headers.get(
            "authorization", "").removeprefix("Bearer ")
        if self.barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(timeout=5)
        if session is None or sent != session:
            return Response(401, json={"error": "unauthorized"})
        return Response(200, json={"ok": True})


def form_login() -> FormLoginCookie:
    return FormLoginCookie("/login", lambda: {"u": "ops", "p": "pw"},
                           lambda r: r.json().get("token"), cookie="S")


def grant(**options: Any) -> OAuth2Grant:
    return OAuth2Grant("/token", lambda: {"grant_type": "password"}, clock=lambda: T0, **options)


def client(server: Server, auth: Any, **retry: Any) -> HttpClient:
    return HttpClient("acme", "https://api.test", auth=auth, transport=MockTransport(server),
                      clock=SimTime(), retry=RetryPolicy(**retry))


@pytest.fixture(params=["form login", "oauth2 grant"])
def auth(request: pytest.FixtureRequest) -> Any:
    return form_login() if request.param == "form login" else grant()


# -- 1. a login answered 5xx is resent like a read ----------------------------------------


def test_a_login_answered_500_is_resent_like_a_read(auth: Any) -> None:
    server = Server(fail_logins=2)
    http = client(server, auth)
    assert http.request("GET", "/contacts").json() == {"ok": True}
    assert server.logins == 3 and auth.logins == 3
    assert http.stats.retries == 2


def test_a_login_that_timed_out_or_was_cut_is_resent(auth: Any) -> None:
    server = Server()
    cuts = [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("cut")]

    def flaky(request: Request) -> Response:
        if request.url.path in ("/login", "/token") and cuts:
            raise cuts.pop(0)
        return server(request)

    http = HttpClient("acme", "https://api.test", auth=auth, transport=MockTransport(flaky),
                      clock=SimTime())
    assert http.request("GET", "/contacts").json() == {"ok": True}
    assert auth.logins == 3 and server.logins == 1


def test_a_login_that_keeps_failing_gives_the_system_up_after_max_retries(auth: Any) -> None:
    server = Server(fail_logins=100)
    http = client(server, auth, max_retries=3)
    with pytest.raises(SystemUnavailable) as err:
        http.request("GET", "/contacts")
    assert not isinstance(err.value, OutcomeUnknown)
    assert server.logins == 4 and server.data_requests == 0
    assert "4 attempts" in str(err.value) and "outcome unknown" not in str(err.value)


def test_a_refused_login_is_final_at_once() -> None:
    def refuse(request: Request) -> Response:
        return Response(401, json={"error": "bad credentials"})

    auth = form_login()
    http = HttpClient("acme", "https://api.test", auth=auth, transport=MockTransport(refuse),
                      clock=SimTime())
    with pytest.raises(AuthError):
        http.request("GET", "/contacts")
    assert auth.logins == 1


def test_every_resent_token_request_counts_against_the_refresh_budget() -> None:
    server = Server(fail_logins=100)
    auth = grant(max_refreshes=3, refresh_window=timedelta(minutes=10))
    http = client(server, auth, max_retries=10)
    with pytest.raises(AuthError, match="3 token requests"):
        http.request("GET", "/contacts")
    assert server.logins == 3 and len(auth.fetched) == 3


# -- 2. one expiry, one login, however many writes are in flight ---------------------------


def test_writes_in_flight_that_meet_one_expiry_cost_one_login(auth: Any) -> None:
    n = 6
    server = Server()
    http = client(server, auth)
    http.request("GET", "/contacts")  # logged in: session s1
    assert server.logins == 1
    server.revoke()
    server.barrier = threading.Barrier(n)  # all n send the dead session together
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(lambda i: http.request("PUT", f"/contacts/{i}", json={}),
                                range(n)))
    assert all(a.json() == {"ok": True} for a in answers)
    assert server.logins == 2  # the first login, then one for the one expiry


def test_a_request_answered_401_after_another_logged_in_resends_without_a_login(
    auth: Any,
) -> None:
    server = Server()
    http = client(server, auth)
    http.request("GET", "/contacts")
    stale = dict(auth.headers(http))
    auth.refresh(http, stale)  # one request saw the expiry and logged in
    assert server.logins == 2
    auth.refresh(http, stale)  # a second one that sent the same old session: no login
    assert server.logins == 2
    assert http.request("GET", "/contacts").json() == {"ok": True}


# -- the same against the simulators, over real HTTP ---------------------------------------


def _valomnia(url: str) -> Any:
    cfg = ValomniaConfig(kind="valomnia", base_url=url, username=SANDBOX_USER,
                         password=SANDBOX_PASSWORD)
    return valomnia.from_config("valomnia", cfg, http_clock=SimTime())


def _logisense(url: str) -> Any:
    cfg = LogisenseConfig.model_validate({
        "kind": "logisense", "base_url": url, "contact_type_id": 9,
        "client_id": "syncd", "username": "api", "password": "secret"})
    return logisense.from_config("logisense", cfg, http_clock=SimTime())


def _zoho(url: str) -> Any:
    cfg = ZohoBooksConfig.model_validate({**zoho_config(url), "throttle_window": "0s"})
    return zoho_books.from_config("zoho", cfg, http_clock=SimTime(), max_rps=None)


SIMS: dict[str, tuple[Callable[[], Any], Callable[[str], Any], str, Callable[[Any], None]]] = {
    "valomnia": (ValomniaSim, _valomnia, "3229", lambda sim: sim.expire_sessions()),
    "logisense": (LogisenseSim, _logisense, "16", lambda sim: sim.expire_tokens()),
    "zoho": (ZohoBooksSim, _zoho, "460000000026049", lambda sim: sim.expire_tokens()),
}


@pytest.fixture(params=sorted(SIMS))
def served(request: pytest.FixtureRequest, served_sim: Serve) -> Iterator[tuple[Any, Any, str, Any]]:
    make_sim, make, org, expire = SIMS[request.param]
    sim = make_sim()
    connector = make(served_sim(sim))
    yield sim, connector, org, expire
    connector.close()


def test_a_simulator_login_answered_500_is_resent_and_the_read_goes_on(
    served: tuple[Any, Any, str, Any],
) -> None:
    sim, connector, org, _ = served
    rid = sim.admin_create(org, PERSON)
    sim.faults.error_next = 1  # the first request of the connector is its login
    assert rid in by_id(connector, org)
    assert sim.counters["login"] == 1


def test_twenty_updates_in_flight_across_a_revoked_session_cost_one_login(
    served: tuple[Any, Any, str, Any],
) -> None:
    sim, connector, org, expire = served
    ids = [sim.admin_create(org, {**PERSON, "email": f"p{i}@example.com"}) for i in range(20)]
    current = by_id(connector, org)
    logins = sim.counters["login"]
    sim.faults.latency = 0.02  # several writes really are in flight together
    done = threading.Semaphore(0)

    def update(rid: str) -> None:
        fields = {**current[rid].fields, "first_name": "Renamed"}
        connector.update(rid, org, {"first_name": "Renamed"}, fields, dict(current[rid].extra))
        done.release()

    def revoke_after_five() -> None:
        for _ in range(5):
            done.acquire(timeout=10)
        expire(sim)

    revoker = threading.Thread(target=revoke_after_five)
    revoker.start()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(update, ids))
    revoker.join()
    assert sim.counters["unauthorized"] >= 1  # the revocation was met ...
    assert sim.counters["login"] - logins == 1  # ... and cost one login
    assert all(r.fields["first_name"] == "Renamed" for r in listed(connector, org))


# -- the retry policy, decision by decision ------------------------------------------------


@pytest.mark.parametrize(("exc", "idempotent", "expect"), [
    (RateLimited("429", retry_after=7.0), False, ("RateLimited", False, 0.0, 7.0)),
    (RateLimited("429"), True, ("RateLimited", False, 0.0, 60.0)),
    (NotApplied("try again later"), False, ("NotApplied", False, 1.0, None)),
    (RetriableError("HTTP 502"), True, ("RetriableError", False, 1.0, None)),
    (RetriableError("HTTP 503", retry_after=3.0), True, ("RetriableError", False, 1.0, 3.0)),
    (RetriableError("HTTP 500"), False, ("OutcomeUnknown", True, 0.0, None)),
    (httpx.ReadTimeout("slow"), False, ("OutcomeUnknown", True, 0.0, None)),
    (httpx.ReadTimeout("slow"), True, ("RetriableError", False, 1.0, None)),
    (httpx.RemoteProtocolError("cut"), False, ("OutcomeUnknown", True, 0.0, None)),
    (httpx.ConnectError("refused"), False, ("RetriableError", False, 1.0, None)),
])
def test_the_retry_policy_resends_what_cannot_duplicate_and_nothing_else(
    exc: Exception, idempotent: bool, expect: tuple[str, bool, float, float | None],
) -> None:
    step = RetryPolicy(max_retries=4, backoff=0.5).decide(exc, 1, idempotent=idempotent,
                                                          label="acme: POST /x", system="acme")
    assert (type(step.error).__name__, step.give_up, step.wait, step.block) == expect
    assert str(step.error).startswith("acme: POST /x")
    last = RetryPolicy(max_retries=1).decide(exc, 1, idempotent=True, label="l", system="s")
    assert last.give_up


@pytest.mark.parametrize(("answer", "error", "words"), [
    (httpx.Response(200, content=b"x" * 2_000), BadAnswer, "over the 1000-byte cap"),
    (httpx.Response(200, headers={"Content-Length": "5000"}, content=b"x" * 5_000), BadAnswer,
     "5000 bytes is over"),
    (httpx.Response(307, headers={"Location": "https://elsewhere.test/login"}),
     SystemUnavailable, "redirected to another host"),
], ids=["streamed-over-cap", "declared-over-cap", "cross-host-redirect"])
def test_an_answer_our_own_checks_refuse_is_sent_once_and_never_resent(
    answer: httpx.Response, error: type[Exception], words: str,
) -> None:
    """Not the system's verdict but ours: resending would get the same answer (a huge
    listing read four more times, a password posted again towards another host)."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.host)
        return answer

    api = HttpClient("api", "https://api.test", answers=Answers(max_bytes=1_000),
                     transport=httpx.MockTransport(handler))
    with pytest.raises(error, match=words):
        api.request("GET", "/contacts", follow_redirects=True)
    assert sent == ["api.test"]
    assert api.request_count() == 1


@pytest.mark.parametrize("header", ["inf", "1e12", "99999999999999999999",
                                    "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_retry_after_beyond_a_day_holds_the_system_one_day_not_a_traceback(
    header: str,
) -> None:
    """A server asking for a rest longer than a day (or than a date can hold) is held a day:
    the resume time stays printable and one wrong header cannot silence a system for years."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        return httpx.Response(429, headers={"Retry-After": header})

    api = HttpClient("api", "https://api.test", transport=httpx.MockTransport(handler))
    with pytest.raises(Throttled, match=r"rate limited for 86400 s; the system resumes after"):
        api.request("GET", "/contacts")
    assert sent == ["/contacts"]
    assert 86_000 < api.throttled_for() <= 86_400


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), ("-5", 0.0), ("nan", None), ("soon", None), ("", None), ("inf", 86_400.0),
    ("Wed, 02 Dec 2026 12:00:10 GMT", 10.0), ("Wed, 02 Dec 2026 11:00:00 GMT", 0.0),
])
def test_retry_after_reads_seconds_or_a_date_within_a_day(
    header: str, seconds: float | None,
) -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


@contextlib.contextmanager
def dripping(seconds_per_byte: float, size: int) -> Iterator[str]:
    """A server on 127.0.0.1 that answers 200 at once, then one byte of its body at a time:
    each byte comes well within a read timeout, the whole answer never does."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from syncd.sandbox.common import serve

    async def drip() -> Any:
        for _ in range(size):
            await asyncio.sleep(seconds_per_byte)
            yield b" "

    async def endpoint(request: Any) -> StreamingResponse:
        return StreamingResponse(drip(), media_type="application/json")

    handle = serve(Starlette(routes=[Route("/contacts", endpoint, methods=["GET", "POST"])]))
    try:
        yield handle.url
    finally:
        handle.stop()


@pytest.mark.parametrize(("method", "error", "sent"), [
    ("GET", RetriableError, 2),  # a read is resent once (max_retries=1), then given up
    ("POST", OutcomeUnknown, 1),  # a create may have landed: never resent
])
def test_an_answer_dripped_byte_by_byte_is_given_up_at_the_timeout(
    method: str, error: type[Exception], sent: int,
) -> None:
    """A slow-loris server (or proxy) must not hold a cycle, and with it the daemon's
    every system, for as long as it likes: ``timeout`` bounds the whole answer too."""
    with dripping(0.05, 400) as url:  # 20 s for the whole body, 0.05 s a byte
        api = HttpClient("api", url, timeout=0.5, retry=RetryPolicy(max_retries=1, backoff=0.01))
        started = time.monotonic()
        with pytest.raises(error, match="timed out"):
            api.request(method, "/contacts")
        took = time.monotonic() - started
    assert api.request_count() == sent
    assert took < sent * 0.5 + 1.5, took


def test_an_answer_nested_past_the_parsers_depth_is_a_bad_answer_not_a_recursion_error() -> None:
    """``[[[[…]]]]`` 200 000 deep makes ``json.loads`` raise RecursionError, which no
    ``except ValueError`` catches: the read must fail as our error, naming the request."""
    from syncd.http import json_body

    deep = b"[" * 200_000 + b"]" * 200_000
    api = HttpClient("api", "https://api.test",
                     transport=httpx.MockTransport(lambda r: httpx.Response(200, content=deep)))
    response = api.request("GET", "/contacts")
    with pytest.raises(BadAnswer, match=r"api: GET https://api.test/contacts \(list\): answer is "
                                        r"not JSON \(nested too deep\)"):
        api.json(response, "list")
    assert json_body(response) is None  # what the response rules read for an error message
    rejecting = HttpClient("api", "https://api.test", answers=Answers(
        error_message=vendor_message(lambda body: str(body.get("message")))),
        transport=httpx.MockTransport(lambda r: httpx.Response(422, content=deep)))
    with pytest.raises(RecordRejected, match="HTTP 422"):
        rejecting.request("POST", "/contacts", json={"name": "Ada"})
