"""CardDAV: one address-book collection as a system (CONTRACT §8).

Why it looks the way it does:

* **reading** — an RFC 6578 ``sync-collection`` report with the stored sync
  token lists what changed (hrefs + ETags) and what was removed; only those
  cards are fetched, by ``addressbook-multiget`` in batches.  The new token
  rides on the read's last page (``Page.token``) and is stored with the plan
  it feeds.  A server without the report, or one that calls the token no
  longer valid (403/409/412 ``valid-sync-token``), is listed whole: hrefs +
  ETags (a tokenless sync report, else ``PROPFIND`` depth 1), and only cards
  whose ETag this process has not seen are fetched.  Such a listing is
  complete, so a linked card missing from it is reported deleted; a partial
  answer never is.  A server without sync reports is a full-scan system;
* **identity** — the remote id is the card's ``UID``; the href and ETag ride
  beside it in the link's ``extra``.  A card without UID, or two cards with
  one UID, are skipped and reported (never merged), which also holds this
  system's creates for the cycle;
* **writing** — create is ``PUT`` + ``If-None-Match: *`` of a vCard 3.0 at a
  fresh ``<uuid>.vcf``, sent once (an unknown outcome is found by the next
  read).  Update and delete carry ``If-Match: <etag>``; an update changes the
  server's own card (:func:`syncd.connectors.vcard.apply`), so PHOTO, ADR,
  NOTE, X-… survive.  A 412 is :class:`~syncd.errors.Stale`: someone changed
  the card meanwhile; nothing is written and the next cycle plans again;
* **servers rewrite** cards (order, folding, PRODID, REV): what is compared is
  the mapped fields, so a rewritten card with the same values is no change.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

import structlog

from syncd.config import CarddavConfig
from syncd.connectors.base import (
    Capabilities,
    Discovered,
    FieldLimit,
    Page,
    RemoteRecord,
    RestConnector,
    Skipped,
    WriteResult,
)
from syncd.connectors.vcard import FIELDS, apply, new_card, read_card
from syncd.connectors.webdav import (
    Member,
    Multistatus,
    error_conditions,
    href_path,
    multiget_body,
    multistatus,
    probe_body,
    propfind_etags_body,
    sync_body,
)
from syncd.contact import Fields
from syncd.errors import BadAnswer, NotFound, Stale, SystemUnavailable
from syncd.http import Auth, BasicAuth, Response

__all__ = ["CAPABILITIES", "CONNECTOR", "CarddavConnector", "from_config"]

log = structlog.get_logger(__name__)

XML = "application/xml; charset=utf-8"
VCARD = "text/vcard; charset=utf-8"
MAX_LENGTH = 1000
"""ASSUMPTION: no server documents a property limit; a longer value is surely a mistake."""
MAX_ROUNDS = 1000
"""Truncated sync reports (507) followed at most this many times in one read."""
UNSUPPORTED = (400, 403, 405, 415, 501)
"""What a server without ``sync-collection`` answers the report with."""

CAPABILITIES = Capabilities(
    fields=frozenset(FIELDS),
    incremental=True,
    can_delete=True,
    can_move=True,
    limits={f: FieldLimit(MAX_LENGTH) for f in FIELDS},
)


@dataclass(frozen=True, slots=True)
class _Card:
    etag: str | None
    text: str
    record: RemoteRecord | None
    """None: the card could not be used (see ``problem``)."""
    problem: str = ""


class _TokenInvalid(Exception):
    """The server no longer knows the token: list everything."""


class _Unsupported(Exception):
    """The server offers no sync report."""


class CarddavConnector(RestConnector):
    capabilities = CAPABILITIES
    answer_format: ClassVar[str] = "xml"

    def __init__(self, name: str, http: Any, cfg: Any = None, **options: Any) -> None:
        super().__init__(name, http, cfg, **options)
        url = cfg.url if cfg is not None else options["url"]
        self.collection = href_path(url).rstrip("/") + "/"
        batch: Any = options.get("multiget_batch") or getattr(cfg, "multiget_batch", 100)
        self.batch = int(batch)
        self._lock = threading.Lock()
        self._cards: dict[str, _Card] = {}
        """href → the card as last read or written by this process."""
        self._uids: dict[str, str] = {}
        """href → UID, from reads, writes and the links (``resume_sync``)."""
        self._linked: dict[str, str] = {}
        """UID → parent id of every linked card: a complete listing's tombstones."""
        self._token: str | None = None
        self._sync: bool | None = None
        """Whether the server offers ``sync-collection`` (None: not asked yet)."""

    def make_auth(self) -> Auth | None:
        cfg = self.cfg
        if cfg is None or not cfg.username:
            return None
        return BasicAuth(cfg.username, cfg.password.get_secret_value())

    # -- discovery --------------------------------------------------------------------------

    def open(self) -> Discovered:
        """Is the URL an address book, and does it offer sync reports? Asked once."""
        if self._sync is not None:
            return self.discovered
        response = self._dav("PROPFIND", self.collection, probe_body(), depth="0",
                             what="address book", ok=(404,))
        if response.status_code == 404:
            raise SystemUnavailable(f"{self.name}: {self.collection}: no such collection "
                                    "(check url)", system=self.name)
        members = self._members(response, "address book")
        me = next((m for m in members if m.href.rstrip("/") == self.collection.rstrip("/")),
                  members[0] if members else None)
        if me is None or not me.addressbook:
            raise SystemUnavailable(f"{self.name}: {self.collection} is not a CardDAV address "
                                    "book collection (check url)", system=self.name)
        self._set_sync("sync-collection" in me.reports)
        return self.discovered

    def _set_sync(self, supported: bool) -> None:
        """Whether the server offers sync reports: without, it is a full-scan system (the
        fact :meth:`open` returns)."""
        if not supported and self._sync is not False:
            log.info("carddav.no_sync_collection", system=self.name,
                     detail="listed in full every cycle")
        self._sync = supported
        self.discovered = replace(self.discovered, incremental=supported)

    def resume_sync(self, token: str | None,
                    linked: Mapping[str, tuple[str, Mapping[str, Any]]]) -> None:
        """The stored sync token, and where each linked card lives (href → UID)."""
        with self._lock:
            self._token = token
            self._linked = {uid: org for uid, (org, _) in linked.items()}
            for uid, (_, extra) in linked.items():
                href = extra.get("href")
                if isinstance(href, str) and href:
                    self._uids.setdefault(href_path(href), uid)

    # -- reading ----------------------------------------------------------------------------

    def list_records(self, org_ids: Sequence[str], since: datetime | None) -> Iterator[Page]:
        if self._sync is None:
            self.open()
        if since is not None and self._token and self._sync:
            try:
                changed, removed, token = self._report(self._token)
            except _TokenInvalid:
                log.info("carddav.sync_token_invalid", system=self.name,
                         detail="listing the address book in full")
            else:
                yield from self._changes(changed, removed, token)
                return
        yield from self._everything(tombstones=since is not None)

    def read_ids(self, remote_ids: Sequence[str]) -> Iterator[Page]:
        raise NotImplementedError("CardDAV lists every card of the collection")

    def _everything(self, *, tombstones: bool) -> Iterator[Page]:
        """A complete listing; with ``tombstones``, linked cards missing from it come as deleted
        (the poller takes an incremental read's absences for nothing)."""
        token: str | None = None
        etags: dict[str, str | None] | None = None
        if self._sync:
            try:
                etags, _, token = self._report(None)
            except (_TokenInvalid, _Unsupported):
                self._set_sync(False)
        if etags is None:
            etags = self._propfind()
        cards = self._fetch(etags)
        records, skipped = self._records(cards)
        with self._lock:
            for href in set(self._cards) - set(etags):
                self._cards.pop(href, None)
                self._uids.pop(href, None)
            linked = dict(self._linked)
        if tombstones and not skipped:
            listed = {r.remote_id for r in records}
            records.extend(RemoteRecord(uid, linked[uid], {}, deleted=True)
                           for uid in sorted(set(linked) - listed))
        yield from self._pages(records, skipped, token)

    def _changes(self, changed: dict[str, str | None], removed: list[str],
                 token: str | None) -> Iterator[Page]:
        """What a sync report named: changed cards fetched, removed ones as tombstones."""
        cards = self._fetch(changed)
        gone = [h for h in removed if h not in changed] + [h for h in changed if h not in cards]
        tombs: list[RemoteRecord] = []
        with self._lock:
            for href in gone:
                old = self._cards.pop(href, None)
                uid = self._uids.pop(href, None)
                if uid is not None:
                    org = (old.record.org_id if old is not None and old.record
                           else self._linked.get(uid, ""))
                    tombs.append(RemoteRecord(uid, org, {}, deleted=True))
            # A UID held at another href is a duplicate whatever this report says.
            others = {h: u for h, u in self._uids.items() if h not in cards}
        records, skipped = self._records(cards, others)
        yield from self._pages([*records, *tombs], skipped, token)

    def _pages(self, records: list[RemoteRecord], skipped: list[Skipped],
               token: str | None) -> Iterator[Page]:
        size = max(self.batch, 1)
        chunks = [records[i:i + size] for i in range(0, len(records), size)] or [[]]
        for number, chunk in enumerate(chunks):
            last = number == len(chunks) - 1
            yield Page(chunk, skipped if last else (), token=token if last else None)

    def _records(self, cards: Mapping[str, _Card],
                 others: Mapping[str, str] | None = None) -> tuple[list[RemoteRecord], list[Skipped]]:
        """The usable cards as records; unreadable ones and duplicate UIDs skipped, by name."""
        skipped: list[Skipped] = []
        holders: dict[str, list[str]] = {}
        for href, card in sorted(cards.items()):
            if card.record is None:
                skipped.append(Skipped(None, f"card {href}: {card.problem}"))
            else:
                holders.setdefault(card.record.remote_id, []).append(href)
        for href, uid in (others or {}).items():
            if uid in holders:
                holders[uid].append(href)
        records: list[RemoteRecord] = []
        for uid, hrefs in holders.items():
            if len(hrefs) > 1:
                skipped.append(Skipped(uid, f"UID {uid} is held by {len(hrefs)} cards "
                                            f"({', '.join(sorted(hrefs))}): rejected, not merged"))
                continue
            held = cards.get(hrefs[0])
            if held is not None and held.record is not None:
                records.append(held.record)
        return records, skipped

    def _fetch(self, etags: Mapping[str, str | None]) -> dict[str, _Card]:
        """Each listed card, from memory when its ETag is the one seen, else by multiget."""
        out: dict[str, _Card] = {}
        wanted: list[str] = []
        with self._lock:
            for href, etag in etags.items():
                known = self._cards.get(href)
                if known is not None and etag is not None and known.etag == etag:
                    out[href] = known
                else:
                    wanted.append(href)
        for start in range(0, len(wanted), self.batch):
            chunk = wanted[start:start + self.batch]
            response = self._dav("REPORT", self.collection, multiget_body(chunk), depth="1",
                                 what=f"addressbook-multiget of {len(chunk)} cards")
            for member in self._members(response, "addressbook-multiget"):
                if member.status != 200 or member.href not in etags:
                    continue  # gone since the listing (or not asked): absent
                out[member.href] = self._remember(member.href, member.etag, member.data)
        return out

    def _remember(self, href: str, etag: str | None, text: str | None) -> _Card:
        if text is None or not text.strip():
            card = _Card(etag, "", None, "the server sent no vCard data")
        else:
            try:
                parsed = read_card(text)
            except Exception as exc:  # vobject raises its own errors on a broken card
                card = _Card(etag, text, None, f"not a readable vCard ({type(exc).__name__}: "
                                              f"{str(exc)[:200]})")
            else:
                if not parsed.uid:
                    card = _Card(etag, text, None, "the card has no UID")
                else:
                    record = RemoteRecord(parsed.uid, parsed.org, parsed.fields,
                                          extra={"href": href, "etag": etag})
                    card = _Card(etag, text, record)
        with self._lock:
            self._cards[href] = card
            if card.record is not None:
                self._uids[href] = card.record.remote_id
        return card

    def _report(self, token: str | None) -> tuple[dict[str, str | None], list[str], str | None]:
        """A sync report, followed through truncation: changed hrefs → ETag, removed hrefs."""
        changed: dict[str, str | None] = {}
        removed: list[str] = []
        for _ in range(MAX_ROUNDS):
            response = self._dav("REPORT", self.collection, sync_body(token), depth="0",
                                 what="sync-collection", ok=(*UNSUPPORTED, 409, 412))
            if response.status_code != 207:
                conditions = error_conditions(response.content, system=self.name)
                if "valid-sync-token" in conditions:
                    raise _TokenInvalid
                if response.status_code in UNSUPPORTED:
                    raise _Unsupported
                raise BadAnswer(f"{self.name}: sync-collection answered HTTP "
                                f"{response.status_code}", system=self.name)
            result = self._parse(response, "sync-collection")
            truncated = False
            for member in result.members:
                if member.href.rstrip("/") == self.collection.rstrip("/"):
                    truncated = truncated or member.status == 507
                elif member.collection:
                    continue
                elif member.status == 404:
                    removed.append(member.href)
                    changed.pop(member.href, None)
                elif member.status == 200:
                    changed[member.href] = member.etag
            if result.token is None:
                raise BadAnswer(f"{self.name}: sync-collection answer carries no sync-token",
                                system=self.name)
            token = result.token
            if not truncated:
                return changed, removed, token
        raise BadAnswer(f"{self.name}: sync-collection still truncated after {MAX_ROUNDS} "
                        "rounds", system=self.name)

    def _propfind(self) -> dict[str, str | None]:
        response = self._dav("PROPFIND", self.collection, propfind_etags_body(), depth="1",
                             what="listing")
        return {m.href: m.etag for m in self._members(response, "listing")
                if m.status == 200 and not m.collection
                and m.href.rstrip("/") != self.collection.rstrip("/")}

    def _dav(self, method: str, path: str, body: str, *, depth: str, what: str,
             ok: tuple[int, ...] = ()) -> Response:
        """A read in XML (PROPFIND, REPORT): safe to repeat, so retried like a GET."""
        return self.http.request(method, path, content=body.encode(), ok=ok, what=what,
                                 idempotent=True,
                                 headers={"Depth": depth, "Content-Type": XML})

    def _members(self, response: Response, what: str) -> tuple[Member, ...]:
        if response.status_code != 207:
            raise BadAnswer(f"{self._label(response, what)}: expected 207 Multi-Status, got "
                            f"HTTP {response.status_code}", system=self.name)
        return self._parse(response, what).members

    def _parse(self, response: Response, what: str) -> Multistatus:
        label = self._label(response, what)
        return self._guard(response, what, lambda: multistatus(response.content, label=label,
                                                               system=self.name))

    # -- writing ----------------------------------------------------------------------------

    def _href(self, remote_id: str, extra: Mapping[str, Any]) -> str:
        href = extra.get("href")
        if isinstance(href, str) and href:
            return href_path(href)
        with self._lock:
            found = next((h for h, u in self._uids.items() if u == remote_id), None)
        if found is None:
            raise self.reject(f"card {remote_id}", "where it lives (its href) is not known; "
                              "it is read again next cycle")
        return found

    def create(self, org_id: str, fields: Fields) -> WriteResult:
        uid = str(uuid.uuid4())
        href = f"{self.collection}{uid}.vcf"
        text = new_card(uid, org_id, fields)
        response = self.http.request(
            "PUT", href, content=text.encode(), ok=(412,), idempotent=False,
            headers={"If-None-Match": "*", "Content-Type": VCARD}, what=f"create card {uid}",
        )
        if response.status_code == 412:
            raise self.reject(f"create card {uid}", f"{href} exists already")
        etag = response.headers.get("ETag")
        self._remember(href, etag, text)
        return WriteResult(uid, extra={"href": href, "etag": etag})

    def update(self, remote_id: str, org_id: str, changed: Fields, desired: Fields,
               extra: Mapping[str, Any]) -> WriteResult:
        href = self._href(remote_id, extra)
        expected = extra.get("etag") if isinstance(extra.get("etag"), str) else None
        what = f"update card {remote_id}"
        with self._lock:
            held = self._cards.get(href)
        if held is not None and held.etag is not None and held.etag == expected and held.text:
            text = held.text
        else:
            got = self.http.request("GET", href, ok=(404,), what=what)
            if got.status_code == 404:
                raise NotFound(f"{self.name}: {what}: {href} is gone", system=self.name)
            etag = got.headers.get("ETag")
            if expected and etag and etag != expected:
                raise Stale(f"{self.name}: {what}: changed since it was read", system=self.name)
            expected = expected or etag
            text = got.text
        body = apply(text, org_id, desired)
        headers = {"Content-Type": VCARD}
        if expected:
            headers["If-Match"] = expected
        response = self.http.request("PUT", href, content=body.encode(), ok=(404, 412),
                                     headers=headers, what=what)
        if response.status_code == 412:
            raise Stale(f"{self.name}: {what}: changed since it was read (412)",
                        system=self.name)
        if response.status_code == 404:
            raise NotFound(f"{self.name}: {what}: {href} is gone", system=self.name)
        etag = response.headers.get("ETag")
        self._remember(href, etag, body)
        return WriteResult(remote_id, extra={"href": href, "etag": etag})

    def delete(self, remote_id: str, org_id: str, extra: Mapping[str, Any]) -> None:
        href = self._href(remote_id, extra)
        headers = {"If-Match": extra["etag"]} if isinstance(extra.get("etag"), str) else {}
        what = f"delete card {remote_id}"
        response = self.http.request("DELETE", href, ok=(404, 412), headers=headers, what=what)
        if response.status_code == 412:
            raise Stale(f"{self.name}: {what}: changed since it was read (412)",
                        system=self.name)
        with self._lock:
            self._cards.pop(href, None)
            self._uids.pop(href, None)


CONNECTOR = CarddavConnector


def from_config(name: str, cfg: CarddavConfig, **options: Any) -> CarddavConnector:
    return CarddavConnector.from_config(name, cfg, **options)
