"""The connector protocol, the REST base every HTTP connector builds on, and the registry.

A connector is mapping + endpoints.  It lists records (all of them, or those
changed since a moment) as pages of :class:`RemoteRecord` already mapped to
canonical fields, and performs create / update / delete with its API's own
semantics.  It never decides *what* to write: the engine does.

What a connector tells the engine about itself is :class:`Capabilities`:
whether it can list incrementally, whether it can delete, which canonical
fields it holds, and their limits (so an over-long value is rejected before
it is sent).  They are fixed once it is built; what it finds out about its
server afterwards (no delete route, no change listing) is a
:class:`Discovered` fact that ``open`` returns.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

import structlog

from syncd.config import SystemConfig
from syncd.connectors.paging import NoPaging, Paginator
from syncd.connectors.xmlcodec import parse_xml, unsendable, xml_document
from syncd.contact import Fields
from syncd.errors import (
    BadAnswer,
    ConfigError,
    ConnectorError,
    NotFound,
    OutcomeUnknown,
    RecordRejected,
)
from syncd.http import (
    SYSTEM_CLOCK,
    Answers,
    Auth,
    HttpClient,
    Pace,
    Response,
    RetryPolicy,
    default_rules,
    vendor_message,
)
from syncd.model import (
    Capabilities,
    Discovered,
    FieldLimit,
    Page,
    RemoteRecord,
    Skipped,
    WriteResult,
    check_limits,
)

_T = TypeVar("_T")

__all__ = [
    "KINDS",
    "Budgeted",
    "Capabilities",
    "Connector",
    "Discovered",
    "FieldLimit",
    "Listing",
    "Page",
    "RemoteRecord",
    "RestConnector",
    "Skipped",
    "SyncTokens",
    "Traffic",
    "TypedChildren",
    "WriteResult",
    "build_connector",
    "check_limits",
    "list_at",
    "parse_iso",
]

log = structlog.get_logger(__name__)


@runtime_checkable
class Traffic(Protocol):
    """A system's request bookkeeping and throttle state, as the engine reads them.

    :class:`~syncd.http.HttpClient` is one (the REST base exposes its client); a system
    living in this process has a plain one.
    """

    def request_count(self) -> int:
        """Requests sent so far (the cycle report's ``requests``, a daily budget's spend)."""
        ...

    def throttled_count(self) -> int:
        """How many times the system answered with its rate-limit signal so far."""
        ...

    def watch(self, stop: threading.Event) -> None:
        """Cut every wait short once ``stop`` is set (SIGTERM)."""
        ...

    def throttled_for(self) -> float:
        """Seconds until the system's own throttle signal lets us send again (0: not throttled)."""
        ...

    def leave_cycle(self) -> None:
        """Give up the throttle wait in hand: the others are done and will not wait for us."""
        ...


@runtime_checkable
class Connector(Protocol):
    """What a system is (its name, capabilities, how many writes it takes at once) and does
    (open, read, write, close); its request counts and throttle state are :attr:`traffic`."""

    name: str

    @property
    def capabilities(self) -> Capabilities:
        """What the connector can do, fixed once it is built."""
        ...

    @property
    def max_in_flight(self) -> int:
        """How many writes the push may have in flight here at once (at least 1)."""
        ...

    @property
    def traffic(self) -> Traffic:
        """Its request counts and throttle state."""
        ...

    def open(self) -> Discovered:
        """Log in and discover what the server offers: what it was found not to offer so far.

        Called before every cycle's reads (cheap once done).  ``capabilities`` stay as
        built: the poll carries this fact, and the planner's view of the system is
        ``capabilities`` narrowed by it (:meth:`Discovered.apply`).
        """
        ...

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        """Pages of records under the given organizations; ``since=None`` is a full scan.

        Incremental pages come in ascending ``updated_at`` order so that a
        failure mid-way still leaves a safe watermark.
        """
        ...

    def read_ids(self, remote_ids: Sequence[str]) -> Iterator[Page]:
        """These records, read one by one under whatever organization holds them now; those
        gone are left out.  Needed only by a system with ``Capabilities.scoped_listing``."""
        ...

    def create(self, org_id: str, fields: Fields) -> WriteResult: ...

    def update(
        self,
        remote_id: str,
        org_id: str,
        changed: Fields,
        desired: Fields,
        extra: Mapping[str, Any],
    ) -> WriteResult:
        """Apply ``changed`` (PATCH-style APIs) or ``desired`` (PUT-style APIs)."""
        ...

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Budgeted(Protocol):
    """A connector with a daily request budget, which must outlive its process.

    syncd may run one cycle per process (a CronJob): the engine hands each new
    connector what the stored runs say (:func:`syncd.engine.budget.resume_budgets`)
    and stores :meth:`capped_until` with every run.
    """

    def resume(self, runs: Sequence[tuple[datetime, int]], capped_until: datetime | None) -> None:
        """Earlier processes' runs of the last day, (start, requests) each, and the latest rest.

        Called once, before the first cycle.
        """
        ...

    def capped_until(self) -> datetime | None:
        """Until when the system told us to send nothing (its daily cap), if it did."""
        ...

    def budget_status(self) -> dict[str, Any]:
        """``used`` today, ``limit``, ``resets_at`` and ``capped_until`` (``syncd status``)."""
        ...


@runtime_checkable
class SyncTokens(Protocol):
    """A connector whose system hands out change tokens (CardDAV's RFC 6578 sync token).

    Before each read the poller hands it the stored token and its links (remote id →
    (parent id, ``extra``): where each record lives, its version); the read's last page
    carries the new token (``Page.token``), stored with the plan it feeds.
    """

    def resume_sync(self, token: str | None,
                    linked: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        ...


def list_at(body: Any, *keys: str) -> list[Any]:
    """The list under ``keys`` of an answer (no key: the answer itself); any other shape is an error."""
    for key in keys:
        body = body[key]
    if not isinstance(body, list):
        raise TypeError(f"expected a list under {'.'.join(keys) or 'the answer'}, "
                        f"got {type(body).__name__}")
    return body


def parse_iso(raw: Any) -> datetime | None:
    """An ISO-8601 stamp (``Z`` or an offset); UTC when it gives none; empty is no stamp."""
    if not raw:
        return None
    when = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Listing:
    """One request (and its pages) of a listing: where to ask, and how to page."""

    path: str
    org_id: str | None = None
    """The organization every item of this listing belongs to, when it is asked per org."""
    params: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    paginator: Paginator = field(default_factory=NoPaging)
    what: str = "list"
    ok: tuple[int, ...] = ()
    """Statuses that mean "nothing here" rather than an error (an answer with no body)."""
    wanted: set[str] | None = None
    """Ids still to be read: each page strikes off its items' (:meth:`RestConnector.item_id`) and
    paging stops once none is left; any left over are then read one by one from :attr:`by_id`
    (offset paging skips one when another is deleted mid-scan, and a skipped record must never
    read as deleted: only a 404 there says it is gone)."""
    by_id: str = ""
    """Where one record of :attr:`wanted` is read: a path with ``{}`` for its id."""
    orgs: frozenset[str] | None = None
    """Keep only records of these organizations (an API that lists every parent's at once)."""
    ascending: bool = False
    """Sort each page by ``updated_at``, so a failure part-way leaves a safe watermark."""


@dataclass(frozen=True, slots=True)
class TypedChildren:
    """Canonical fields held as typed child records: each field is a child with a type id and a value.

    LogiSense keeps a contact's email and phones so.  ``types`` gives each field's type id
    (None: the parent's type has no such child).  The child ids :meth:`read` returns belong in
    the link's ``extra``, so that a changed value is an *update* of the same child.
    """

    types: Mapping[str, int | None]
    type_key: str
    id_key: str = "identity"
    value_key: str = "value"

    def read(self, children: Iterable[Mapping[str, Any]]) -> tuple[Fields, dict[str, int]]:
        """Each field's value ("" when no child holds it) and child id; the oldest child wins."""
        names: dict[object, str] = {t: name for name, t in self.types.items() if t is not None}
        values: Fields = dict.fromkeys(self.types, "")
        ids: dict[str, int] = {}
        for child in sorted(children, key=lambda c: int(c[self.id_key])):
            name = names.get(child.get(self.type_key))
            if name is not None and name not in ids:
                ids[name] = int(child[self.id_key])
                values[name] = (child.get(self.value_key) or "").strip()
        return values, ids

    def edits(self, changed: Mapping[str, str],
              ids: Mapping[str, int]) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """``(op, field, child)`` for each changed field held here.

        A value for a known child is an ``update`` of it, a value without one a ``create``
        (its type id None when the parent's type has none), an emptied field a ``delete``.
        """
        for name, type_id in self.types.items():
            value, child_id = changed.get(name), ids.get(name)
            if value and child_id is not None:
                yield "update", name, {self.id_key: child_id, self.value_key: value}
            elif value:
                yield "create", name, {self.type_key: type_id, self.value_key: value}
            elif value is not None and child_id is not None:
                yield "delete", name, {self.id_key: child_id}

    def created(self, children: Iterable[Mapping[str, Any]], values: Mapping[str, str]) -> dict[str, int]:
        """Field → id of the new children, matched by type and value (when no answer says which)."""
        found: dict[str, int] = {}
        for child in children:
            for name, type_id in self.types.items():
                if (type_id is not None and child.get(self.type_key) == type_id
                        and child.get(self.value_key) == values.get(name)):
                    found[name] = int(child[self.id_key])
        return found


_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)
"""What reading an answer of the wrong shape raises in connector code."""
_RECORD_ERRORS = (*_SHAPE_ERRORS, RecordRejected)
"""What a malformed item raises in a mapping hook: that record is skipped, not the page."""


def _guarded(method: Callable[..., Any], error: type[ConnectorError]) -> Callable[..., Any]:
    """Turn a wrong-shaped answer met inside ``method`` into our own error, naming the system.

    A create that got this far was sent: its outcome is unknown, never a
    reason to send it again.
    """

    @functools.wraps(method)
    def guarded(self: RestConnector, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except _SHAPE_ERRORS as exc:
            raise error(f"{self.name}: {method.__name__}: unexpected answer "
                        f"({type(exc).__name__}: {exc})", system=self.name) from None

    return guarded


class RestConnector:
    """The REST base: a connector declares its API, the base owns the request loop.

    A subclass sets class attributes (``capabilities``, ``body_format``,
    ``answer_format``, ``default_headers``, ``default_max_rps``) and overrides
    a few hooks: :meth:`listings` (what to ask for, with which paginator),
    :meth:`items` (the records of one answer), :meth:`record` (one item →
    :class:`RemoteRecord`), :meth:`make_auth`, :meth:`validate_response` and
    :meth:`error_message`.  The base builds the client from the config
    (:meth:`from_config`), pages, decodes every answer through one guarded
    path (a bad answer is a :class:`~syncd.errors.BadAnswer` naming the
    request; a bad item skips that record only) and counts requests.
    """

    capabilities: Capabilities
    body_format: ClassVar[str] = "json"
    """How write bodies are sent: ``json``, ``form`` or ``xml`` (see :meth:`to_xml`)."""
    answer_format: ClassVar[str] = "json"
    """How answers are read: ``json`` or ``xml``."""
    default_headers: ClassVar[Mapping[str, str]] = {}
    default_max_rps: ClassVar[float | None] = None
    default_burst: ClassVar[float | None] = None
    in_flight_cap: ClassVar[int | None] = None
    """The most writes this API should have in flight at once, whatever the config says."""
    id_key: ClassVar[str] = "id"
    items_key: ClassVar[str | None] = None
    """Where an answer holds its list of records (``"data"``); None: the answer is the list."""
    """The key of an item's id, for :meth:`item_id`."""
    record_path: ClassVar[str] = ""
    """Where one record is read by id, ``{}`` for the id (``"/contact/{}"``): :meth:`read_ids`."""
    xml_root: ClassVar[str] = ""
    """The root element of an XML write body; its children come from :attr:`xml_tags`."""
    xml_tags: ClassVar[Mapping[str, str]] = {}
    """Body key → XML element (a key not listed is its own element)."""
    xml_attrs: ClassVar[Mapping[str, str]] = {}
    """Body key → the element's attributes (``'type="integer"'``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, error in (("open", BadAnswer), ("create", OutcomeUnknown),
                            ("update", BadAnswer), ("delete", BadAnswer)):
            if name in cls.__dict__:
                setattr(cls, name, _guarded(cls.__dict__[name], error))

    def __init__(self, name: str, http: HttpClient, cfg: Any = None, **options: Any) -> None:
        self.name = name
        self.http = http
        self.cfg = cfg
        self.clock: Callable[[], datetime] = options.get("clock", lambda: datetime.now(UTC))
        wanted = int(getattr(cfg, "max_in_flight", 1))
        self.max_in_flight: int = min(wanted, self.in_flight_cap or wanted)
        """How many writes the push may have in flight here (``engine.push.in_flight``)."""
        self.discovered = Discovered()
        """What the server was found not to offer so far (:meth:`stop_deleting` ...):
        what :meth:`open` returns."""

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, name: str, cfg: Any, **options: Any) -> Self:
        """Build the client from the system's config; ``options`` are test seams.

        ``transport``, ``http_clock`` (its :class:`~syncd.http.Clock`: monotonic time and
        sleep), ``max_rps``, ``burst``, ``max_retries`` go to the client; anything else
        (``clock``, the wall clock; ``page_size`` ...) to the connector.
        """
        http = HttpClient(
            name,
            cfg.base_url,
            timeout=cfg.timeout.total_seconds(),
            headers=cls.default_headers,
            pace=Pace(options.pop("max_rps", cfg.max_rps or cls.default_max_rps),
                      options.pop("burst", cls.default_burst)),
            retry=RetryPolicy(max_retries=options.pop("max_retries", 4),
                              max_wait=cfg.max_wait.total_seconds(),
                              throttle_window=cfg.throttle_window.total_seconds()),
            answers=Answers(cls.validate_response, cls.error_message, cfg.max_response_bytes),
            transport=options.pop("transport", None),
            clock=options.pop("http_clock", SYSTEM_CLOCK),
        )
        connector = cls(name, http, cfg, **options)
        http.auth = connector.make_auth()
        return connector

    def make_auth(self) -> Auth | None:
        return None

    error_message = staticmethod(vendor_message(lambda body: None))
    """How an error answer reads in our messages: the answer's text, or the vendor's own words."""

    @staticmethod
    def validate_response(response: Response, message: str) -> None:
        default_rules(response, message)

    # -- the Connector protocol's plumbing -------------------------------------------------

    def open(self) -> Discovered:
        return self.discovered

    @property
    def traffic(self) -> Traffic:
        """The client's: it counts the requests and holds the throttle state."""
        return self.http

    def close(self) -> None:
        self.http.close()

    def reject(self, what: str, message: str) -> RecordRejected:
        return RecordRejected(f"{self.name}: {what}: {message}", system=self.name)

    def unknown(self, what: str, detail: str) -> OutcomeUnknown:
        """A write that may have landed, though its answer does not say so: never sent again."""
        return OutcomeUnknown(f"{self.name}: {what}: {detail}; outcome unknown, not resent",
                              system=self.name)

    def check(self, what: str, values: Fields, *, creating: bool) -> None:
        """The capabilities' field limits, for a caller that bypasses the planner."""
        problem = check_limits(self.capabilities, values, creating=creating)
        if problem is not None:
            raise self.reject(what, f"{problem[0]}: {problem[1]}")

    def stop_deleting(self, event: str, **detail: Any) -> None:
        """The server offers no delete: say so once, send none from now on (:meth:`remove`),
        and tell the planner so (the fact :meth:`open` returns)."""
        if self._may_delete():
            log.warning(event, system=self.name, **detail)
            self.discovered = dataclasses.replace(self.discovered, can_delete=False)

    def _may_delete(self) -> bool:
        """The capabilities allow deletes and the server was not found to offer none."""
        return self.discovered.apply(self.capabilities).can_delete

    # -- reading ----------------------------------------------------------------------------

    def listings(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Listing]:
        raise NotImplementedError

    def items(self, body: Any, listing: Listing) -> Sequence[Any]:
        """The records of one answer: the list under :attr:`items_key`, or the answer."""
        return list_at(body, *([self.items_key] if self.items_key else []))

    def record(self, item: Any, listing: Listing) -> RemoteRecord:
        raise NotImplementedError

    def item_id(self, item: Any) -> str | None:
        """Best effort: the id of an item that could not be mapped, for the message."""
        value = item.get(self.id_key) if isinstance(item, Mapping) else None
        return str(value) if value not in (None, "") else None

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        """Every listing, page after page; a page that cannot be read ends the scan with an error."""
        listings = self.listings(org_ids, since)
        while True:
            try:
                listing = next(listings)
            except StopIteration:
                return
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                # listings() may read (LogiSense's accounts): a wrong shape there too.
                raise BadAnswer(f"{self.name}: unexpected answer while listing "
                                f"({type(exc).__name__}: {exc})", system=self.name) from None
            yield from self.read(listing)

    def read(self, listing: Listing) -> Iterator[Page]:
        """The pages of one listing, through the paginator and the guarded parse."""
        paginator = listing.paginator
        while not paginator.finished:
            params = listing.params
            if paginator.params():
                params = {**(params or {}), **paginator.params()}
            response = self.http.request(
                "GET", listing.path, params=params, ok=listing.ok, what=listing.what,
                headers={**listing.headers, **paginator.headers()},
            )
            if response.status_code in listing.ok:
                break
            body = self.decode(response, listing.what)
            raw = self._guard(response, listing.what, self.items, body, listing)
            if listing.wanted is not None:
                listing.wanted.difference_update(self.item_id(item) for item in raw)
            yield self._page(raw, listing)
            self._guard(response, listing.what, paginator.advance, response.content, body, raw)
            if listing.wanted is not None and not listing.wanted:
                break
        for rid in sorted(listing.wanted or (), key=lambda r: (len(r), r)):
            yield from self._read_one(listing.by_id.format(rid), f"{listing.what}: {rid}",
                                      listing.orgs)

    def read_ids(self, remote_ids: Sequence[str]) -> Iterator[Page]:
        if not self.record_path:
            raise NotImplementedError(f"{type(self).__name__} reads no record by id")
        for rid in remote_ids:
            yield from self._read_one(self.record_path.format(rid), f"record {rid}")

    def _read_one(self, path: str, what: str, orgs: frozenset[str] | None = None) -> Iterator[Page]:
        """One record at its own path; a 404 (or the API's own "not found") means it is gone."""
        try:
            yield from self.read(Listing(path, what=what, ok=(404,), orgs=orgs))
        except NotFound:
            return

    def _page(self, raw: Sequence[Any], listing: Listing) -> Page:
        records: list[RemoteRecord] = []
        skipped: list[Skipped] = []
        for item in raw:
            try:
                rec = self.record(item, listing)
            except _RECORD_ERRORS as exc:
                skipped.append(Skipped(self.item_id(item), f"{type(exc).__name__}: {exc}"))
                continue
            if not rec.remote_id.strip():
                skipped.append(Skipped(None, "the record has no usable id"))
                continue
            if listing.orgs is None or rec.org_id in listing.orgs:
                records.append(rec)
        if listing.ascending:
            epoch = datetime.min.replace(tzinfo=UTC)
            records.sort(key=lambda r: r.updated_at or epoch)
        return Page(records, skipped)

    def _guard(self, response: Response, what: str, hook: Callable[..., _T], *args: Any) -> _T:
        """Run a hook over an answer; a wrong shape becomes a BadAnswer naming the request."""
        try:
            return hook(*args)
        except BadAnswer as exc:
            raise BadAnswer(f"{self._label(response, what)}: {exc}", system=self.name) from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise BadAnswer(f"{self._label(response, what)}: unexpected answer "
                            f"({type(exc).__name__}: {exc})", system=self.name) from None

    def _label(self, response: Response, what: str) -> str:
        return f"{self.name}: {response.request.method} {response.request.url.path} ({what})"

    def fetch(self, path: str, what: str, *, ok: tuple[int, ...] = ()) -> Any:
        """One GET outside a listing: the decoded answer, or None when it is not a 200 (``ok``)."""
        response = self.http.request("GET", path, what=what, ok=ok)
        return self.decode(response, what) if response.status_code == 200 else None

    def decode(self, response: Response, what: str) -> Any:
        """The answer as data (JSON or a defusedxml tree), or a BadAnswer naming the request."""
        if self.answer_format == "xml":
            return parse_xml(response.content, label=self._label(response, what),
                             system=self.name)
        return self.http.json(response, what)

    # -- writing ----------------------------------------------------------------------------

    def to_xml(self, values: Mapping[str, Any]) -> str:
        """``<xml_root>`` with an element per value; a character XML cannot carry rejects the record."""
        for key, value in values.items():
            if (bad := unsendable(value)) is not None:
                raise self.reject(f"field {key}", f"character {bad} cannot be sent in XML")
        return xml_document(self.xml_root, ((self.xml_tags.get(k, k), self.xml_attrs.get(k, ""), v)
                                            for k, v in values.items()))

    def send(
        self,
        method: str,
        path: str,
        values: Mapping[str, Any] | None = None,
        *,
        what: str,
        idempotent: bool | None = None,
        ok: tuple[int, ...] = (),
        params: Any = None,
        read_answer: bool = True,
        pick: Callable[[Any], Any] | None = None,
    ) -> tuple[Response, Any]:
        """One write in the API's body format; returns the answer and its decoded body.

        ``pick`` takes the part wanted from that body; a wrong shape is an
        answer that cannot be read.  A create's answer that cannot be read
        leaves its outcome unknown: it may have landed, so it is
        :class:`OutcomeUnknown`, never resent.
        """
        body: dict[str, Any] = {}
        if values is not None:
            if self.body_format == "form":
                body["data"] = dict(values)
            elif self.body_format == "xml":
                body["content"] = self.to_xml(values)
            else:
                body["json"] = values
        response = self.http.request(method, path, params=params, ok=ok, what=what,
                                     idempotent=idempotent, **body)
        if not read_answer or not response.content.strip():
            return response, None
        try:
            body = self.decode(response, what)
            return response, body if pick is None else self._guard(response, what, pick, body)
        except BadAnswer as exc:
            if idempotent is False or (idempotent is None and method in ("POST", "PATCH")):
                raise OutcomeUnknown(f"{exc}; outcome unknown, not resent",
                                     system=self.name) from None
            raise

    def remove(self, method: str, path: str, values: Mapping[str, Any] | None = None, *,
               what: str, ok: tuple[int, ...] = ()) -> Response:
        """A delete, where a 404 means the record is already gone: the goal, reached.

        ``ok`` adds statuses the caller reads itself from the answer returned.  Once the server
        was found to offer no delete (:meth:`stop_deleting`), nothing is sent.
        """
        if not self._may_delete():
            raise self.reject(what, "the server offers no contact delete; deletes are off here")
        response, _ = self.send(method, path, values, what=what, ok=(404, *ok),
                                idempotent=True, read_answer=False)
        if response.status_code == 404:
            log.info("connector.delete_gone", system=self.name, what=what)
        return response


KINDS: dict[str, str] = {
    "memory": "syncd.connectors.memory",
    "lightening": "syncd.connectors.lightening",
    "harvest": "syncd.connectors.harvest",
    "zoho_books": "syncd.connectors.zoho_books",
    "logisense": "syncd.connectors.logisense",
    "valomnia": "syncd.connectors.valomnia",
    "carddav": "syncd.connectors.carddav",
}


def build_connector(name: str, cfg: SystemConfig, **options: Any) -> Connector:
    """Instantiate the connector for one configured system.

    A connector module exposes ``CONNECTOR`` (a :class:`RestConnector`
    subclass, built by its ``from_config``) or a ``from_config`` function.
    """
    module_name = KINDS[cfg.kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"systems.{name}: kind {cfg.kind!r} has no connector in this build yet"
            ) from None
        raise
    factory = getattr(module, "CONNECTOR", None)
    connector: Connector = (factory.from_config if factory is not None else module.from_config)(
        name, cfg, **options
    )
    return connector
