"""The few WebDAV / CardDAV XML bodies syncd sends, and the one answer shape it reads.

Every answer of interest is a ``207 Multi-Status``: one ``<response>`` per
resource with its ``href``, a status (top-level for a removed member of a
sync report, inside ``<propstat>`` otherwise) and the properties asked for.
:func:`multistatus` reads it through defusedxml (:mod:`syncd.connectors.xmlcodec`):
no DTD or entity is ever expanded.  Hrefs are compared unquoted, because
servers differ in how they percent-encode the same path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from syncd.connectors.xmlcodec import parse_xml

__all__ = [
    "CARDDAV",
    "DAV",
    "Member",
    "Multistatus",
    "error_conditions",
    "href_path",
    "multiget_body",
    "multistatus",
    "probe_body",
    "propfind_etags_body",
    "sync_body",
]

DAV = "DAV:"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
_D = "{DAV:}"
_C = "{urn:ietf:params:xml:ns:carddav}"
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


def sync_body(token: str | None) -> str:
    """An RFC 6578 ``sync-collection`` asking the members' ETags (no token: everything)."""
    inner = (token or "").translate(_ESCAPES)
    return (f'{_HEAD}<D:sync-collection xmlns:D="DAV:"><D:sync-token>{inner}</D:sync-token>'
            "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>")


def probe_body() -> str:
    """What ``open`` asks of the collection: is it an address book, which reports it offers."""
    return (f'{_HEAD}<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/>'
            "<D:supported-report-set/></D:prop></D:propfind>")


def propfind_etags_body() -> str:
    """A depth-1 listing of the members' ETags: the fallback of a server without sync reports."""
    return (f'{_HEAD}<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/>'
            "</D:prop></D:propfind>")


def multiget_body(hrefs: Iterable[str]) -> str:
    """An ``addressbook-multiget`` of these members: their ETags and vCards in one answer."""
    refs = "".join(f"<D:href>{h.translate(_ESCAPES)}</D:href>" for h in hrefs)
    return (f'{_HEAD}<C:addressbook-multiget xmlns:D="DAV:" xmlns:C="{CARDDAV}">'
            f"<D:prop><D:getetag/><C:address-data/></D:prop>{refs}</C:addressbook-multiget>")


def href_path(href: str) -> str:
    """The unquoted path of an href (some servers answer with an absolute URL)."""
    return unquote(urlsplit(href.strip()).path)


@dataclass(frozen=True, slots=True)
class Member:
    """One ``<response>``: a resource and what the server said of it."""

    href: str
    """Unquoted path."""
    status: int
    etag: str | None = None
    data: str | None = None
    """The vCard (``address-data``), when asked for."""
    collection: bool = False
    reports: frozenset[str] = frozenset()
    """Local names of the reports offered (``supported-report-set``)."""
    addressbook: bool = False


@dataclass(frozen=True, slots=True)
class Multistatus:
    members: tuple[Member, ...]
    token: str | None
    """The new ``sync-token`` of a sync report."""


def _status(element: Any) -> int:
    text = (element.text or "").split() if element is not None else []
    return int(text[1]) if len(text) >= 2 and text[1].isdigit() else 0


def multistatus(content: bytes, *, label: str, system: str) -> Multistatus:
    """A 207 answer as members; a wrong shape raises ``ValueError`` (the caller's guard)."""
    root = parse_xml(content, label=label, system=system)
    if root.tag != f"{_D}multistatus":
        raise ValueError(f"expected a DAV multistatus, got <{root.tag}>")
    members: list[Member] = []
    for resp in root.findall(f"{_D}response"):
        href_el = resp.find(f"{_D}href")
        if href_el is None or not (href_el.text or "").strip():
            raise ValueError("a response without an href")
        status = _status(resp.find(f"{_D}status"))
        etag = data = None
        collection = addressbook = False
        reports: set[str] = set()
        for propstat in resp.findall(f"{_D}propstat"):
            code = _status(propstat.find(f"{_D}status"))
            if code != 200:
                continue
            status = status or 200
            prop = propstat.find(f"{_D}prop")
            if prop is None:
                continue
            if (el := prop.find(f"{_D}getetag")) is not None and (el.text or "").strip():
                etag = el.text.strip()
            if (el := prop.find(f"{_C}address-data")) is not None:
                data = el.text or ""
            if (el := prop.find(f"{_D}resourcetype")) is not None:
                collection = el.find(f"{_D}collection") is not None
                addressbook = el.find(f"{_C}addressbook") is not None
            if (el := prop.find(f"{_D}supported-report-set")) is not None:
                for report in el.iter(f"{_D}report"):
                    reports.update(child.tag.split("}")[-1] for child in report)
        members.append(Member(href_path(href_el.text or ""), status, etag, data, collection,
                              frozenset(reports), addressbook))
    token_el = root.find(f"{_D}sync-token")
    token = (token_el.text or "").strip() if token_el is not None else None
    return Multistatus(tuple(members), token or None)


def error_conditions(content: bytes, *, system: str) -> frozenset[str]:
    """The precondition names of a DAV ``<error>`` answer (``valid-sync-token``); none if not one."""
    if not content.strip().startswith(b"<"):
        return frozenset()
    try:
        root = parse_xml(content, label=system, system=system)
    except Exception:  # an error page we cannot read names no precondition
        return frozenset()
    if root.tag != f"{_D}error":
        return frozenset()
    return frozenset(child.tag.split("}")[-1] for child in root)
