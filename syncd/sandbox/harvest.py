"""A simulated Harvest v1 (classic, XML) client-contacts API.

Faithful to seed 001, ``systems/harvest.md`` and the readings fixed in
``systems/DECISIONS.md``, so that the connector's tests mean something:

* HTTP Basic auth (401 otherwise), XML in and out with ``type`` attributes;
  incoming XML is parsed with defusedxml (DTDs, entities and external
  references are refused with 400, as an XXE-hardened server would);
* ``GET /contacts[?updated_since=YYYY-MM-DD+HH:MM]`` and
  ``GET /clients/{id}/contacts``: UTC, minute grain, inclusive of the minute,
  no paging; anything else in ``updated_since`` is a 400 with a ``Hint``;
* ``POST /contacts`` → 201 with ``Location: /contacts/{id}`` and no body;
  ``PUT /contacts/{id}`` partial (an empty element clears);
  ``DELETE /contacts/{id}`` (404 when unknown);
* 422 ``<errors><error>…</error></errors>`` for validation (client-id,
  first-name, last-name required; strings at most 255 characters);
* the account throttle: more than ``limit`` requests in ``window`` seconds
  → 503 with ``Retry-After`` (whole seconds).  A call made while blocked
  restarts the block, as the vendor warns — only a client that honours
  ``Retry-After`` gets through.

Ids and ``created-at``/``updated-at`` are the server's; ``updated-at`` moves
on every change (seconds shown, like the real API, while ``updated_since``
only takes minutes — the trap the connector must survive).
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from syncd.sandbox.common import Simulator, utc_now

__all__ = [
    "ELEMENTS",
    "MAX_LENGTH",
    "SANDBOX_PASSWORD",
    "SANDBOX_USER",
    "HarvestContact",
    "HarvestSim",
    "seeded",
]

XML = "application/xml; charset=utf-8"
MAX_LENGTH = 255
"""DECISIONS.md: strings are limited to 255 characters (undocumented by the vendor)."""

ELEMENTS: dict[str, str] = {
    "first-name": "first_name",
    "last-name": "last_name",
    "email": "email",
    "phone-office": "phone",
    "phone-mobile": "mobile",
    "fax": "fax",
    "title": "job_title",
}
"""Harvest element → canonical field (CONTRACT §4)."""

_REQUIRED = {"first-name": "First name", "last-name": "Last name"}
_LABELS = {**_REQUIRED, "email": "Email", "phone-office": "Phone office",
           "phone-mobile": "Phone mobile", "fax": "Fax", "title": "Title"}

SANDBOX_USER = "ops@example.com"
SANDBOX_PASSWORD = "sandbox-only"  # noqa: S105 - a local simulator's well-known login

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class HarvestContact:
    """One contact in Harvest's own shape (element names, integer client id)."""

    id: int
    client_id: int
    values: dict[str, str]
    created_at: datetime
    updated_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def _esc(value: str) -> str:
    return value.translate(_ESCAPES)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _xml_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    doc = '<?xml version="1.0" encoding="UTF-8"?>\n' + body
    return Response(doc, status_code=status, media_type=XML, headers=dict(headers or {}))


def _errors(messages: Iterable[str], status: int = 422) -> Response:
    inner = "".join(f"<error>{_esc(m)}</error>" for m in messages)
    return _xml_response(f"<errors>{inner}</errors>", status)


class _BadRequest(Exception):
    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


class HarvestSim(Simulator):
    """Harvest v1 client contacts, with the account throttle and Basic auth."""

    kind = "harvest"

    def __init__(
        self,
        *,
        username: str = SANDBOX_USER,
        password: str = SANDBOX_PASSWORD,
        clients: Iterable[int | str] | None = None,
        limit: int = 100,
        window: float = 15.0,
        fault_retry_after: int = 1,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.username = username
        self.password = password
        self.clients: set[int] | None = None if clients is None else {int(c) for c in clients}
        self.limit = limit
        self.window = window
        self.fault_retry_after = fault_retry_after
        self.clock = clock
        self.monotonic = monotonic
        self.contacts: dict[int, HarvestContact] = {}
        self._next_id = 1000
        self._recent: deque[float] = deque()
        self._blocked_until = 0.0
        super().__init__()

    # -- time and ids -----------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # -- the throttle -------------------------------------------------------------------

    def _admit(self) -> int | None:
        """None when the request may go on, else the Retry-After seconds of a 503."""
        now = self.monotonic()
        with self.lock:
            recent = self._recent
            while recent and recent[0] <= now - self.window:
                recent.popleft()
            if now < self._blocked_until:
                # Harvest: a call made while throttled restarts the window.
                self._blocked_until = now + self.window
                self.counters["throttled"] += 1
                return max(1, math.ceil(self._blocked_until - now))
            if len(recent) >= self.limit:
                self._blocked_until = recent[0] + self.window
                self.counters["throttled"] += 1
                return max(1, math.ceil(self._blocked_until - now))
            recent.append(now)
            return None

    def _throttled(self, seconds: int) -> Response:
        return Response(
            "Rate limit exceeded. Retry after the number of seconds in Retry-After.",
            status_code=503,
            headers={"Retry-After": str(seconds)},
            media_type="text/plain",
        )

    def throttle_response(self) -> Response:
        with self.lock:
            self.counters["throttled"] += 1
        return self._throttled(self.fault_retry_after)

    # -- routing ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/contacts", self._guard(self._list), methods=["GET"]),
            Route("/contacts", self._guard(self._create), methods=["POST"]),
            Route("/contacts/{cid}", self._guard(self._show), methods=["GET"]),
            Route("/contacts/{cid}", self._guard(self._update), methods=["PUT"]),
            Route("/contacts/{cid}", self._guard(self._delete), methods=["DELETE"]),
            Route("/clients/{client}/contacts", self._guard(self._list), methods=["GET"]),
            Route("/account/rate_limit_status", self._guard(self._rate_status), methods=["GET"]),
        ]

    def _guard(self, handler: Handler) -> Handler:
        """Throttle first (it counts every call), then Basic auth, then 400s."""

        async def guarded(request: Request) -> Response:
            wait = self._admit()
            if wait is not None:
                return self._throttled(wait)
            if not self._authorised(request):
                return Response(
                    "HTTP Basic: Access denied.",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="Harvest"'},
                    media_type="text/plain",
                )
            try:
                return await handler(request)
            except _BadRequest as exc:
                return Response("Bad Request", status_code=400, headers={"Hint": exc.hint})

        return guarded

    def _authorised(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, pwd = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.username and pwd == self.password

    # -- rendering and parsing ------------------------------------------------------------

    def _render(self, c: HarvestContact) -> str:
        parts = [
            f'<id type="integer">{c.id}</id>',
            f'<client-id type="integer">{c.client_id}</client-id>',
        ]
        for element in ELEMENTS:
            value = c.values.get(element, "")
            parts.append(f"<{element}>{_esc(value)}</{element}>" if value
                         else f'<{element} nil="true"/>')
        parts.append(f'<created-at type="datetime">{_stamp(c.created_at)}</created-at>')
        parts.append(f'<updated-at type="datetime">{_stamp(c.updated_at)}</updated-at>')
        return "<contact>" + "".join(parts) + "</contact>"

    async def _parse(self, request: Request) -> dict[str, str | None]:
        """Elements of an incoming ``<contact>``; a missing element maps to absent."""
        body = await request.body()
        try:
            root = SafeET.fromstring(body, forbid_dtd=True)
        except DefusedXmlException as exc:
            raise _BadRequest(f"XML refused: {type(exc).__name__}") from None
        except SafeET.ParseError:
            raise _BadRequest("The request body is not well-formed XML") from None
        if root.tag != "contact":
            raise _BadRequest("Expected a <contact> root element")
        out: dict[str, str | None] = {}
        for child in root:
            if child.get("nil") == "true":
                out[str(child.tag)] = ""
            else:
                out[str(child.tag)] = (child.text or "").strip()
        return out

    def _validate(self, values: Mapping[str, str], client_id: int | None) -> list[str]:
        problems = []
        if client_id is None:
            problems.append("Client can't be blank")
        elif self.clients is not None and client_id not in self.clients:
            problems.append("Client must exist")
        for element, label in _REQUIRED.items():
            if not values.get(element, "").strip():
                problems.append(f"{label} can't be blank")
        for element, value in values.items():
            if len(value) > MAX_LENGTH:
                label = _LABELS.get(element, element)
                problems.append(f"{label} is too long (maximum is {MAX_LENGTH} characters)")
        return problems

    @staticmethod
    def _client_id(raw: str | None) -> int | None:
        if raw is None or not raw.strip():
            return None
        try:
            return int(raw.strip())
        except ValueError:
            return None

    @staticmethod
    def _since(request: Request) -> datetime | None:
        raw = request.query_params.get("updated_since")
        if raw is None:
            return None
        try:
            return datetime.strptime(raw, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        except ValueError:
            raise _BadRequest(
                "updated_since must be a UTC date time as YYYY-MM-DD HH:MM"
            ) from None

    # -- vendor endpoints -----------------------------------------------------------------

    async def _list(self, request: Request) -> Response:
        since = self._since(request)
        client = request.path_params.get("client")
        with self.lock:
            if client is not None:
                cid = self._client_id(client)
                if cid is None or (self.clients is not None and cid not in self.clients):
                    return Response("Not Found", status_code=404)
            rows = [
                self._render(c)
                for c in sorted(self.contacts.values(), key=lambda c: c.id)
                if (client is None or c.client_id == cid)
                and (since is None or c.updated_at >= since)
            ]
        return _xml_response('<contacts type="array">' + "".join(rows) + "</contacts>")

    def _get(self, request: Request) -> HarvestContact | None:
        try:
            return self.contacts.get(int(request.path_params["cid"]))
        except ValueError:
            return None

    async def _show(self, request: Request) -> Response:
        with self.lock:
            contact = self._get(request)
            if contact is None:
                return Response("Not Found", status_code=404)
            return _xml_response(self._render(contact))

    async def _create(self, request: Request) -> Response:
        parsed = await self._parse(request)
        client_id = self._client_id(parsed.pop("client-id", None))
        values = {k: v or "" for k, v in parsed.items() if k in ELEMENTS}
        problems = self._validate(values, client_id)
        if problems:
            return _errors(problems)
        assert client_id is not None
        with self.lock:
            now = self._now()
            contact = HarvestContact(self._new_id(), client_id, values, now, now)
            self.contacts[contact.id] = contact
        return Response(
            status_code=201, headers={"Location": f"/contacts/{contact.id}"}, media_type=XML
        )

    async def _update(self, request: Request) -> Response:
        parsed = await self._parse(request)
        with self.lock:
            contact = self._get(request)
            if contact is None:
                return Response("Not Found", status_code=404)
            values = dict(contact.values)
            values.update({k: v or "" for k, v in parsed.items() if k in ELEMENTS})
            client_id: int | None = contact.client_id
            if "client-id" in parsed:
                client_id = self._client_id(parsed["client-id"])
            problems = self._validate(values, client_id)
            if problems:
                return _errors(problems)
            assert client_id is not None
            contact.values = values
            contact.client_id = client_id
            contact.updated_at = self._now()
        return Response(headers={"Location": f"/contacts/{contact.id}"}, media_type=XML)

    async def _delete(self, request: Request) -> Response:
        with self.lock:
            contact = self._get(request)
            if contact is None:
                return Response("Not Found", status_code=404)
            del self.contacts[contact.id]
        return Response(media_type=XML)

    async def _rate_status(self, request: Request) -> Response:
        with self.lock:
            count = len(self._recent)
            lockout = max(0, math.ceil(self._blocked_until - self.monotonic()))
        return _xml_response(
            "<hash>"
            f'<timeframe-limit type="integer">{int(self.window)}</timeframe-limit>'
            f'<request-count type="integer">{count}</request-count>'
            f'<max-calls type="integer">{self.limit}</max-calls>'
            f'<lockout-seconds type="integer">{lockout}</lockout-seconds>'
            "</hash>"
        )

    # -- admin side channel (canonical fields) -------------------------------------------

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        with self.lock:
            client_id = int(org)
            if self.clients is not None:
                self.clients.add(client_id)  # as if the user created the client first
            values = {el: (fields.get(canon) or "").strip() for el, canon in ELEMENTS.items()}
            now = self._now()
            contact = HarvestContact(self._new_id(), client_id, values, now, now)
            self.contacts[contact.id] = contact
            return str(contact.id)

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        with self.lock:
            contact = self.contacts[int(record_id)]
            for element, canon in ELEMENTS.items():
                if canon in fields:
                    contact.values[element] = (fields[canon] or "").strip()
            if "org" in fields:
                contact.client_id = int(fields["org"])
            contact.updated_at = self._now()

    def admin_delete(self, record_id: str) -> None:
        with self.lock:
            self.contacts.pop(int(record_id), None)

    def admin_dump(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": str(c.id),
                    "org": str(c.client_id),
                    **{canon: c.values.get(el, "") for el, canon in ELEMENTS.items()},
                }
                for c in sorted(self.contacts.values(), key=lambda c: c.id)
            ]


def seeded(
    contacts: int = 20,
    clients: Iterable[int | str] = (11072, 11073),
    **options: Any,
) -> HarvestSim:
    """A simulator with ``contacts`` plausible people spread over ``clients``."""
    client_ids = [str(c) for c in clients]
    sim = HarvestSim(clients=client_ids, **options)
    for i in range(contacts):
        sim.admin_create(
            client_ids[i % len(client_ids)],
            {
                "first_name": f"Person{i}",
                "last_name": f"Harvest{i}",
                "email": f"person{i}@harvest.example.com",
                "phone": f"555.555.{i:04d}",
                "job_title": "Buyer" if i % 3 else "",
            },
        )
    return sim
