"""The only module that imports httpx: the client, auth strategies and response rules.

``HttpClient`` gives every connector the same plumbing:

* a per-system :class:`RateLimiter`, so the vendor's throttle signal is the
  exception, not the rule; a ``Retry-After`` longer than the cycle allows
  gives the system up for this cycle (:class:`Throttled`) instead of being
  cut short and retried into a longer lockout;
* **response rules** as a hook: :func:`default_rules` sorts 2xx / 401-403 /
  404 / 429 and 5xx / other 4xx onto the exception tree; a connector whose API
  puts the verdict in the body passes its own ``validate``;
* **retries** decided by one :class:`RetryPolicy`: a request that is not
  idempotent (a create) and got an answer that may mean "applied" (5xx,
  timeout, cut connection) raises :class:`OutcomeUnknown` and is never resent;
  idempotent ones, throttle answers and a vendor's "not done" are resent;
* one fresh login on 401/403 through an :class:`Auth` strategy, never a loop;
* answers are read up to ``max_response_bytes``; every wait watches ``stop``.

Auth strategies: :class:`BasicAuth`, :class:`HeaderToken`,
:class:`OAuth2Grant` (password or refresh-token grant, expiry margin,
refresh budget) and :class:`FormLoginCookie`.  They are ours rather than
authlib's because a token request must go through the same limiter, counters,
size cap and error mapping as every other call, and Zoho's "10 refreshes per
10 minutes" needs a budget that an auto-refreshing client does not keep.
Tests inject ``httpx.MockTransport`` through ``transport=`` and a simulated
:class:`Clock` through ``clock=``: every wait then passes in simulated time.
"""

from __future__ import annotations

import base64
import json as jsonlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from syncd.errors import (
    AuthError,
    BadAnswer,
    ConfigError,
    NotApplied,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    RecordRejected,
    RetriableError,
    SystemUnavailable,
    Throttled,
)
from syncd.redact import REDACTOR

__all__ = [
    "MAX_RETRY_AFTER",
    "SYSTEM_CLOCK",
    "Answers",
    "Auth",
    "BasicAuth",
    "Clock",
    "FormLoginCookie",
    "HeaderToken",
    "HttpClient",
    "HttpStats",
    "Login",
    "MockTransport",
    "OAuth2Grant",
    "Pace",
    "RateLimiter",
    "Request",
    "Response",
    "RetryPolicy",
    "SystemClock",
    "default_rules",
    "id_from_location",
    "json_body",
    "parse_retry_after",
    "vendor_message",
]

Response = httpx.Response
Request = httpx.Request
MockTransport = httpx.MockTransport
Transport = httpx.BaseTransport
Validate = Callable[[Response, str], None]
"""A response rule: return when the answer is a success, raise our error otherwise."""

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
SERVER_TROUBLE = frozenset({408, 425, 500, 502, 503, 504})


class Auth(Protocol):
    """How a connector authenticates: headers to add, and a way to log in again."""

    refreshable: bool
    """False when a fresh login cannot help (static credentials): a 401 is final at once."""

    def headers(self, client: HttpClient) -> Mapping[str, str]: ...

    def refresh(self, client: HttpClient, used: Mapping[str, str]) -> None:
        """A request sent with ``used`` was refused: make sure the next headers are fresh."""
        ...


MAX_RETRY_AFTER = 86_400.0
"""The longest rest a ``Retry-After`` holds a system for: a day (a daily cap's reset is
within one; a larger value, or one past what a date holds, is a server's mistake)."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), from 0
    to :data:`MAX_RETRY_AFTER`; None when absent or unreadable (NaN included)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _loads(content: bytes) -> Any:
    """``json.loads``, with an answer nested past the parser's depth refused as not JSON (the
    parser raises RecursionError for it, which no ``except ValueError`` would catch)."""
    try:
        return jsonlib.loads(content)
    except RecursionError:
        raise ValueError("nested too deep") from None


def json_body(response: Response) -> Any:
    """The answer's JSON, or None when it is not JSON (for error messages and response rules)."""
    try:
        return _loads(response.content)
    except ValueError:
        return None


def id_from_location(value: str | None) -> str | None:
    """The new id from a ``Location`` header (relative or absolute): its last path segment, digits."""
    if not value:
        return None
    segments = [s for s in urlsplit(value.strip()).path.split("/") if s]
    return segments[-1] if segments and segments[-1].isdigit() else None


MAX_REDIRECTS = 5


def _same_host(origin: httpx.URL, target: httpx.URL) -> bool:
    """A redirect we may follow: the same host and port, or the same host moved to https."""
    if target.host != origin.host:
        return False
    return (target.scheme, target.port) == (origin.scheme, origin.port) or (
        target.scheme == "https" and target.port in (None, 443))


def _body_text(response: Response, limit: int = 500) -> str:
    text = response.text.strip()
    return text[:limit] if text else response.reason_phrase


def vendor_message(words: Callable[[dict[str, Any]], str | None]) -> Callable[[Response], str]:
    """An ``error_message`` hook: the ``words`` a JSON object answer holds, else the answer's text."""

    def message(response: Response) -> str:
        body = json_body(response)
        return (words(body) if isinstance(body, dict) else None) or _body_text(response)

    return message


def default_rules(response: Response, message: str) -> None:
    """2xx passes; 401/403 auth; 404 gone; 429 throttle; 5xx retry; other 4xx reject."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = f"HTTP {status} {message}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (401, 403):
        raise AuthError(text)
    if status == 429 or (status == 503 and retry_after is not None):
        raise RateLimited(text, retry_after=retry_after)
    if status in SERVER_TROUBLE or status >= 500:
        raise RetriableError(text, retry_after=retry_after)
    if status == 404:
        raise NotFound(text)
    if 400 <= status < 500:
        raise RecordRejected(text)
    raise SystemUnavailable(f"unexpected {text}")


class Clock(Protocol):
    """The only time the limiter and the client's waits know: monotonic seconds, and a sleep.

    One object for both, so that a test's simulated clock (whose ``sleep`` moves
    ``now`` on) makes a 60 s throttle window pass at once: with the real clock
    read while ``sleep`` was replaced, the limiter spun a CPU for the whole
    window.  ``sleep`` must move ``now`` on by more than nothing, or a wait of
    a few nanoseconds never ends.
    """

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()

WAKE_EVERY = 0.1
"""The longest slice a wait sleeps before it looks at ``stop`` and "leave this cycle" again."""


class RateLimiter:
    """A token bucket: at most ``rate`` requests a second, bursts up to ``burst``.

    ``block_until`` stops every caller until a vendor's ``Retry-After`` has
    passed (Harvest restarts its window on each call made while throttled).
    """

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate or 1.0)
        self._tokens = self.burst
        self.clock = clock
        self._last = clock.now()
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self.waited = 0.0

    def block_until(self, seconds_from_now: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, self.clock.now() + seconds_from_now)

    def blocked_for(self) -> float:
        """Seconds until a throttle block ends (0 when none)."""
        return max(0.0, self._blocked_until - self.clock.now())

    def acquire(self, sleep: Callable[[float], None] | None = None) -> None:
        """Take a token, waiting for one; ``sleep`` (the client's interruptible wait on the same
        clock) defaults to the clock's own."""
        sleep = sleep or self.clock.sleep
        while True:
            with self._lock:
                now = self.clock.now()
                wait = self._blocked_until - now
                if wait <= 0 and self.rate is None:
                    return
                if wait <= 0 and self.rate is not None:
                    self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                    self._last = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    wait = (1 - self._tokens) / self.rate
                self.waited += wait
            sleep(wait)


@dataclass
class HttpStats:
    """Request counters, bumped under a lock: a push sends from several threads at once."""

    requests: int = 0
    writes: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def sent(self, method: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1
            if method not in ("GET", "HEAD"):
                self.writes += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1

    def throttled(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "writes": self.writes,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
            }


# -- auth strategies ---------------------------------------------------------------------------


class BasicAuth:
    """HTTP Basic: nothing to refresh, so a 401 is final."""

    refreshable = False

    def __init__(self, username: str, password: str) -> None:
        raw = f"{username}:{password}".encode()
        self._value = "Basic " + base64.b64encode(raw).decode()

    def headers(self, client: HttpClient) -> Mapping[str, str]:
        return {"Authorization": self._value}

    def refresh(self, client: HttpClient, used: Mapping[str, str]) -> None:
        return None


class HeaderToken(BasicAuth):
    """A static token sent verbatim in one header (Lightening's ``Authorization``)."""

    def __init__(self, value: str, header: str = "Authorization") -> None:
        self.header = header
        self._value = value

    def headers(self, client: HttpClient) -> Mapping[str, str]:
        return {self.header: self._value}


class Login:
    """Base of the strategies whose credential a login request hands out.

    * **One expiry costs one login.**  A request answered 401 logs in again only if
      the credential it sent is still the current one; the requests that sent the
      same credential meanwhile wait on the lock while that login runs, then resend
      with the new credential instead of logging in for themselves.
    * **A login is resent like a read.**  It changes nothing a sync could duplicate:
      a 5xx, a timeout, a cut connection or a ``Retry-After`` is retried with the
      client's backoff and ``max_retries``; only then is the system given up for
      the cycle (:class:`SystemUnavailable`, exit 4).  A refusal (400-403) is final.

    A subclass says how to log in (:meth:`_login`, through :meth:`_send_login`),
    whether the credential it holds is still good (:meth:`_valid`) and which
    headers carry it (:meth:`_current`).
    """

    refreshable = True

    def __init__(self) -> None:
        self.token: str | None = None
        self.logins = 0
        """Login requests sent (every attempt), for tests and status."""
        self._lock = threading.Lock()

    def _valid(self) -> bool:
        return self.token is not None

    def _current(self) -> Mapping[str, str]:
        raise NotImplementedError

    def _login(self, client: HttpClient) -> None:
        raise NotImplementedError

    def headers(self, client: HttpClient) -> Mapping[str, str]:
        with self._lock:
            if not self._valid():
                self._login(client)
            return self._current()

    def refresh(self, client: HttpClient, used: Mapping[str, str]) -> None:
        with self._lock:
            if self._valid() and dict(self._current()) != dict(used):
                return  # another request logged in since this one was sent
            self._login(client)

    def _send_login(self, client: HttpClient, method: str, url: str, *, what: str,
                    before_each: Callable[[], None] | None = None, **options: Any) -> Response:
        """The login request itself: unauthenticated, resent as a read is."""

        def attempt() -> None:
            if before_each is not None:
                before_each()  # may refuse to send (a spent budget): the old token stays
            self.token = None
            self.logins += 1

        try:
            return client.request(method, url, authenticate=False, idempotent=True, what=what,
                                  validate=_token_rules, before_send=attempt, **options)
        except RetriableError as exc:
            raise SystemUnavailable(f"{exc}; {what} given up after {client.retry.max_retries + 1} "
                                    "attempts", system=client.system) from None


MIN_TOKEN_TTL = timedelta(seconds=1)
MAX_TOKEN_TTL = timedelta(days=1)


def token_ttl(expires_in: Any, default: timedelta) -> timedelta:
    """How long to keep a token: the answer's ``expires_in``, kept within reason.

    Missing, unreadable, zero or negative: ``default`` — taken as it stands, a
    token already expired would make every request fetch one of its own until
    the refresh budget runs out.  Under a second: a second.  Over a day (or past
    what a timedelta holds): a day; a 401 still fetches a fresh one at once.
    """
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError, OverflowError):
        return default
    if not seconds > 0:  # NaN, zero, negative
        return default
    return min(max(timedelta(seconds=min(seconds, MAX_TOKEN_TTL.total_seconds())),
                   MIN_TOKEN_TTL), MAX_TOKEN_TTL)


class OAuth2Grant(Login):
    """An OAuth2 token grant (password or refresh token) with an expiry margin.

    The token lives until shortly before it expires; it is fetched again then,
    or once after a 401.  ``max_refreshes`` per ``refresh_window`` is the
    vendor's budget (Zoho: 10 per 10 minutes): past it we refuse to ask
    rather than get the account blocked.
    """

    def __init__(
        self,
        url: str,
        form: Callable[[], Mapping[str, str]],
        *,
        scheme: str = "Bearer",
        margin: timedelta = timedelta(seconds=60),
        default_ttl: timedelta = timedelta(minutes=30),
        max_refreshes: int | None = None,
        refresh_window: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self.url = url
        self.form = form
        self.scheme = scheme
        self.margin = margin
        self.default_ttl = default_ttl
        self.max_refreshes = max_refreshes
        self.refresh_window = refresh_window
        self.clock = clock
        self.renew_at = datetime.min.replace(tzinfo=UTC)
        self.fetched: deque[datetime] = deque()

    def ready(self) -> bool:
        """A token that the next request may use without fetching another first."""
        return self._valid()

    def _valid(self) -> bool:
        return self.token is not None and self.clock() < self.renew_at

    def _current(self) -> Mapping[str, str]:
        return {"Authorization": f"{self.scheme} {self.token}"}

    def _spend(self, client: HttpClient) -> None:
        """Count one token request against the budget, or refuse to send it."""
        now = self.clock()
        while self.fetched and now - self.fetched[0] >= self.refresh_window:
            self.fetched.popleft()
        if self.max_refreshes is not None and len(self.fetched) >= self.max_refreshes:
            resume = self.fetched[0] + self.refresh_window
            raise AuthError(
                f"{client.system}: {len(self.fetched)} token requests in the last "
                f"{self.refresh_window}: not asking again before {resume:%H:%M:%SZ}",
                system=client.system,
            )
        self.fetched.append(now)

    def _login(self, client: HttpClient) -> None:
        now = self.clock()
        resp = self._send_login(client, "POST", self.url, what="token",
                                before_each=lambda: self._spend(client),
                                data=dict(self.form()), headers={"Accept": "application/json"})
        body = client.json(resp, "token")
        token = body.get("access_token") if isinstance(body, dict) else None
        if resp.status_code != 200 or not isinstance(token, str) or not token:
            raise AuthError(f"{client.system}: login refused: {client.answers.error_message(resp)}",
                            system=client.system)
        REDACTOR.remember(token)
        self.token = token
        ttl = token_ttl(body.get("expires_in"), self.default_ttl)
        self.renew_at = now + max(ttl - self.margin, ttl / 2)


def _token_rules(response: Response, message: str) -> None:
    """A token answer: 404 is a wrong URL (configuration); 400-403 are read as refusals."""
    if response.status_code == 404:
        raise ConfigError(f"login route {response.request.url} not found: check base_url")
    if response.status_code in (400, 401, 403):
        return
    default_rules(response, message)


class FormLoginCookie(Login):
    """A form login whose answer yields a session token, sent back as a cookie.

    ``token_from`` reads the token from the login answer (a ``Set-Cookie``, a
    body, or the page a redirect leads to); a 401 logs in again once.
    """

    def __init__(
        self,
        path: str,
        form: Callable[[], Mapping[str, str]],
        token_from: Callable[[Response], str | None],
        *,
        cookie: str = "JSESSIONID",
    ) -> None:
        super().__init__()
        self.path = path
        self.form = form
        self.token_from = token_from
        self.cookie = cookie

    def _current(self) -> Mapping[str, str]:
        return {"Cookie": f"{self.cookie}={self.token}"}

    def _login(self, client: HttpClient) -> None:
        resp = self._send_login(client, "POST", self.path, what="login",
                                data=dict(self.form()), follow_redirects=True)
        token = self.token_from(resp) if resp.status_code == 200 else None
        if not token:
            raise AuthError(f"{client.system}: login refused: HTTP {resp.status_code} "
                            f"{client.answers.error_message(resp)}", system=client.system)
        REDACTOR.remember(token)
        self.token = token


# -- the retry policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What to do after one failed attempt: resend (after ``wait``) or give up with ``error``.

    ``block`` holds the whole system for that many seconds first (a ``Retry-After``).
    """

    error: RetriableError
    give_up: bool
    wait: float = 0.0
    block: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """Decides, for one failed attempt, whether a request is sent again, after how long.

    * A throttle answer (:class:`RateLimited`) means "not applied": the system is
      held for its ``Retry-After`` (else ``throttle_window``) and the request resent.
    * A vendor's "not done, try later" (:class:`NotApplied`) is resent with backoff,
      whatever the method: nothing happened, so nothing can be duplicated.
    * A 5xx, a timeout or a connection cut after the request went out may mean
      "applied": an idempotent request is resent with backoff; any other raises
      :class:`OutcomeUnknown` and is never resent.  A connection that never opened
      sent nothing, so even a create is resent.
    * After ``max_retries`` resends the last error is raised.
    """

    max_retries: int = 4
    backoff: float = 0.5
    max_wait: float = 120.0
    throttle_window: float = 60.0

    def decide(self, exc: Exception, attempt: int, *, idempotent: bool, label: str,
               system: str) -> Step:
        last = attempt >= self.max_retries
        if isinstance(exc, RateLimited):
            wait = exc.retry_after if exc.retry_after is not None else self.throttle_window
            error: RetriableError = RateLimited(f"{label}: {exc}", system=system, retry_after=wait)
            return Step(error, give_up=last, block=wait)
        if isinstance(exc, NotApplied):
            error = NotApplied(f"{label}: {exc}", system=system, retry_after=exc.retry_after)
            return Step(error, give_up=last, wait=self._backoff(attempt))
        if isinstance(exc, httpx.TimeoutException):
            error = RetriableError(f"{label}: timed out ({type(exc).__name__})", system=system)
            landed = True
        elif isinstance(exc, httpx.TransportError):
            error = RetriableError(f"{label}: network error ({type(exc).__name__}: {exc})",
                                   system=system)
            landed = not isinstance(exc, httpx.ConnectError)
        else:
            assert isinstance(exc, RetriableError)
            error = RetriableError(f"{label}: {exc}", system=system, retry_after=exc.retry_after)
            landed = True
        if landed and not idempotent:
            return Step(OutcomeUnknown(f"{error}; outcome unknown, not resent", system=system),
                        give_up=True)
        block = exc.retry_after if isinstance(exc, RetriableError) else None
        return Step(error, give_up=last, wait=self._backoff(attempt), block=block)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.max_wait, self.backoff * (2 ** attempt)))


# -- the client ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """How fast a system may be asked: at most ``max_rps`` requests a second (None: no
    limit), in bursts of up to ``burst``."""

    max_rps: float | None = None
    burst: float | None = None


@dataclass(frozen=True)
class Answers:
    """How a system's answers are judged: its response rules, how an error answer reads in
    our messages, and the largest answer read."""

    validate: Validate = default_rules
    error_message: Callable[[Response], str] = _body_text
    max_bytes: int = 32 * 1024 * 1024


class HttpClient:
    """One system's HTTP session: base URL, auth, pacing, retries, response rules."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        auth: Auth | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        pace: Pace = Pace(),
        retry: RetryPolicy = RetryPolicy(),
        answers: Answers = Answers(),
        transport: Transport | None = None,
        clock: Clock = SYSTEM_CLOCK,
        stop: threading.Event | None = None,
    ) -> None:
        self.system = system
        self.auth = auth
        self.limiter = RateLimiter(pace.max_rps, pace.burst, clock=clock)
        self.retry = retry
        self.answers = answers
        self.timeout = timeout
        """Seconds for each wait on the server (connect, each read) and for a whole answer."""
        self.stats = HttpStats()
        self.stop = stop or threading.Event()
        """Set it to cut every wait short: a SIGTERM must not sit out a Retry-After."""
        self._leave = threading.Event()
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            headers={"User-Agent": "syncd/0.1 (contact sync)", **(headers or {})},
            transport=transport,
            follow_redirects=False,
        )

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def close(self) -> None:
        self._client.close()

    def _wait(self, seconds: float) -> None:
        """Sleep on the limiter's clock, unless told to stop (SIGTERM) or to leave this cycle
        (the others are done): both are looked at every :data:`WAKE_EVERY` seconds."""
        clock = self.limiter.clock
        deadline = clock.now() + seconds
        left = seconds  # not deadline - now: a wait too short to move the clock still sleeps
        while left > 0:
            if self.stop.is_set():
                raise RetriableError(f"{self.system}: stopped while waiting", system=self.system)
            if self._leave.is_set():
                self._leave.clear()
                raise RetriableError(f"{self.system}: still rate limited when the other "
                                     "systems were done; left out of this cycle",
                                     system=self.system)
            clock.sleep(min(left, WAKE_EVERY))
            left = deadline - clock.now()

    # -- its traffic, as the engine reads it (``syncd.connectors.base.Traffic``) ------------

    def request_count(self) -> int:
        """Requests sent so far (each resend counts)."""
        return self.stats.requests

    def throttled_count(self) -> int:
        """How many times the system answered with its rate-limit signal so far."""
        return self.stats.rate_limited

    def watch(self, stop: threading.Event) -> None:
        """Cut every wait short once ``stop`` is set (SIGTERM)."""
        self.stop = stop

    def throttled_for(self) -> float:
        """Seconds until this system's throttle block ends (0 when it is not throttled)."""
        return self.limiter.blocked_for()

    def leave_cycle(self) -> None:
        """Make the wait in hand (or the next one) give up: the cycle goes on without us."""
        self._leave.set()

    def _throttle(self, label: str, wait: float) -> None:
        """Block the system for ``wait``; give it up for this cycle if that is too long."""
        self.limiter.block_until(wait)
        if wait > self.retry.max_wait:
            resume = datetime.now(UTC) + timedelta(seconds=wait)
            raise Throttled(f"{label}: rate limited for {wait:.0f} s; the system resumes "
                            f"after {resume:%Y-%m-%dT%H:%M:%SZ}", system=self.system)

    def _send(self, request: httpx.Request, follow_redirects: bool, label: str) -> Response:
        """Send and read the answer, refusing one larger than ``max_response_bytes``.

        Redirects are followed (when asked) only on the same host: httpx would
        follow one anywhere, and a 307/308 re-sends the body — a login form's
        password — to wherever the ``Location`` points.
        """
        response = self._client.send(request, stream=True, follow_redirects=False)
        hops = 0
        while follow_redirects and response.next_request is not None:
            target = response.next_request
            response.close()
            if not _same_host(request.url, target.url):
                raise SystemUnavailable(f"{label}: redirected to another host "
                                        f"({target.url.scheme}://{target.url.netloc.decode()}): "
                                        "not followed", system=self.system)
            hops += 1
            if hops > MAX_REDIRECTS:
                raise BadAnswer(f"{label}: more than {MAX_REDIRECTS} redirects",
                                system=self.system)
            response = self._client.send(target, stream=True, follow_redirects=False)
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.answers.max_bytes:
                raise BadAnswer(f"{label}: answer of {int(declared)} bytes is over the "
                                f"{self.answers.max_bytes}-byte cap", system=self.system)
            chunks: list[bytes] = []
            size = 0
            # httpx times each read; a server dripping its answer a byte at a time never
            # misses one, so the whole answer gets the same time (a real clock: the server's).
            deadline = time.monotonic() + self.timeout
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"answer not complete within {self.timeout:g} s",
                                            request=request)
                size += len(chunk)
                if size > self.answers.max_bytes:
                    raise BadAnswer(f"{label}: answer over the {self.answers.max_bytes}-byte "
                                    "cap", system=self.system)
                chunks.append(chunk)
            response._content = b"".join(chunks)  # what Response.read() itself stores
        finally:
            response.close()
        return response

    def request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (),
        params: Any = None,
        json: Any = None,
        data: Any = None,
        content: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        follow_redirects: bool = False,
        idempotent: bool | None = None,
        validate: Validate | None = None,
        what: str = "",
        before_send: Callable[[], None] | None = None,
    ) -> Response:
        """Send one request and return its answer once the response rules accept it.

        ``ok``: statuses returned as they are, before the rules (a probe that
        expects a 404).  ``idempotent`` defaults to the method's own nature: a
        POST or PATCH whose outcome is unknown raises :class:`OutcomeUnknown`
        and is not resent.  ``what`` names the record for messages.
        ``before_send`` runs before every attempt (a login budget counts each).
        """
        label = f"{self.system}: {method} {url}" + (f" ({what})" if what else "")
        idempotent = method in IDEMPOTENT if idempotent is None else idempotent
        self._leave.clear()  # the poller sets it again while we are still waiting
        relogged = False
        attempt = 0
        while True:
            self._pace(label)
            used = self.auth.headers(self) if authenticate and self.auth is not None else {}
            if before_send is not None:
                before_send()
            self.stats.sent(method)
            request = self._client.build_request(method, url, params=params, json=json,
                                                 data=data, content=content,
                                                 headers={**(headers or {}), **used})
            failure: Exception
            try:  # our own errors from _send (size cap, redirects) are raised, never resent
                response = self._send(request, follow_redirects, label)
            except httpx.TransportError as exc:
                failure = exc
            else:
                if response.status_code in ok:
                    return response
                try:
                    return self._judge(response, validate or self.answers.validate, label)
                except AuthError as exc:
                    if (relogged or not authenticate or self.auth is None
                            or not self.auth.refreshable):
                        raise AuthError(f"{label}: {exc}", system=self.system) from None
                    relogged = True
                    self.auth.refresh(self, used)  # the one fresh login; not an attempt
                    continue
                except RetriableError as exc:
                    failure = exc
            self._follow(self.retry.decide(failure, attempt, idempotent=idempotent, label=label,
                                           system=self.system), label)
            attempt += 1

    def _pace(self, label: str) -> None:
        """Wait for the limiter; give the system up for this cycle if it is held too long."""
        blocked = self.limiter.blocked_for()
        if blocked > self.retry.max_wait:
            self._throttle(label, blocked)
        self.limiter.acquire(self._wait)

    def _judge(self, response: Response, rules: Validate, label: str) -> Response:
        """The answer if the rules accept it; a rejection or outage named after the request.

        An :class:`AuthError` (a re-login may help) and a :class:`RetriableError` (for the
        retry policy) are raised as the rules raised them.
        """
        try:
            rules(response, self.answers.error_message(response))
        except (AuthError, RetriableError):
            raise
        except (RecordRejected, SystemUnavailable) as exc:
            raise type(exc)(f"{label}: {exc}", system=self.system) from None
        return response

    def _follow(self, step: Step, label: str) -> None:
        """Do what the retry policy decided: hold the system, give up, or wait to resend."""
        if isinstance(step.error, RateLimited):
            self.stats.throttled()
        if step.block is not None:
            self._throttle(label, step.block)
        if step.give_up:
            raise step.error from None
        self.stats.retried()
        if step.wait:
            self._wait(step.wait)

    # -- guarded parsing: a bad answer is our error, never a traceback ------------------------

    def json(self, response: Response, what: str) -> Any:
        """The answer's JSON, or :class:`BadAnswer` naming the request."""
        try:
            return _loads(response.content)
        except ValueError as exc:  # UnicodeDecodeError is one
            raise BadAnswer(f"{self.system}: {response.request.method} {response.request.url} "
                            f"({what}): answer is not JSON ({exc}): {_body_text(response, 120)!r}",
                            system=self.system) from None
