"""Paginators: how a listing asks for its next page, and when it has read them all.

Each is a small object with the page's request parts (:meth:`Paginator.params`,
:meth:`Paginator.headers`) and one :meth:`Paginator.advance` called with each
answer.  The base class owns **loop detection**: a page whose items repeat an
earlier page's (a server that ignores the paging parameter, even one that
echoes the page asked for) or a token that comes back (a cursor that cycles)
is a :class:`~syncd.errors.BadAnswer`, so a scan never runs forever and never
reports itself complete when it was not.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from syncd.errors import BadAnswer

__all__ = ["HeaderPage", "NoPaging", "OffsetPaging", "PageNumber", "Paginator"]

MAX_PAGES = 100_000
"""Far beyond any real listing; a guard against a server that never says "last page"."""


def _items_or(content: bytes, items: Sequence[Any]) -> bytes:
    """What makes a page itself: its items, not the bytes around them.

    A server that ignores the paging request may still echo the page asked
    for (``page_context.page``, ``paging.offset``): the bytes differ, the
    items repeat.  Items that are not JSON data (an XML tree) fall back to the bytes.
    """
    try:
        return json.dumps(list(items), sort_keys=True).encode()
    except (TypeError, ValueError):
        return content


class Paginator:
    """One page at a time; ``finished`` once the last one has been read."""

    def __init__(self) -> None:
        self.finished = False
        self.pages = 0
        self._seen_content: set[bytes] = set()
        self._seen_tokens: set[Any] = set()

    def params(self) -> Mapping[str, Any]:
        return {}

    def headers(self) -> Mapping[str, str]:
        return {}

    def token(self) -> Any:
        """What identifies the current page (a number, an offset, a cursor)."""
        return self.pages

    def advance(self, content: bytes, body: Any, items: Sequence[Any]) -> None:
        """Move to the next page after one answer, or finish; refuses to loop."""
        self.pages += 1
        digest = hashlib.blake2b(_items_or(content, items), digest_size=16).digest()
        if items and digest in self._seen_content:
            raise BadAnswer(f"page {self.token()!r} repeats an earlier page: the server "
                            "ignores the paging request; the scan is not complete")
        self._seen_content.add(digest)
        self._seen_tokens.add(self.token())
        if self.pages >= MAX_PAGES:
            raise BadAnswer(f"more than {MAX_PAGES} pages: the scan is not complete")
        if not self.has_more(body, items):
            self.finished = True
            return
        self.next(body, items)
        if self.token() in self._seen_tokens:
            raise BadAnswer(f"the next page {self.token()!r} was read already: paging loops")

    def has_more(self, body: Any, items: Sequence[Any]) -> bool:
        raise NotImplementedError

    def next(self, body: Any, items: Sequence[Any]) -> None:
        raise NotImplementedError


class NoPaging(Paginator):
    """One request answers the whole listing (Harvest, Lightening)."""

    def has_more(self, body: Any, items: Sequence[Any]) -> bool:
        return False


class PageNumber(Paginator):
    """``page``/``per_page`` parameters, and the answer says whether more follow (Zoho)."""

    def __init__(self, has_more: Callable[[Any], bool], *, size: int, page: str = "page",
                 per_page: str = "per_page") -> None:
        super().__init__()
        self.number = 1
        self.size = size
        self._has_more = has_more
        self._names = (page, per_page)

    def token(self) -> Any:
        return self.number

    def params(self) -> Mapping[str, Any]:
        return {self._names[0]: self.number, self._names[1]: self.size}

    def has_more(self, body: Any, items: Sequence[Any]) -> bool:
        return bool(items) and self._has_more(body)

    def next(self, body: Any, items: Sequence[Any]) -> None:
        self.number += 1


class OffsetPaging(Paginator):
    """``offset``/``max`` parameters; done at a short page or the stated total (Valomnia)."""

    def __init__(self, *, size: int, total: Callable[[Any], int | None] = lambda body: None,
                 offset: str = "offset", limit: str = "max") -> None:
        super().__init__()
        self.offset = 0
        self.size = size
        self._total = total
        self._names = (offset, limit)

    def token(self) -> Any:
        return self.offset

    def params(self) -> Mapping[str, Any]:
        return {self._names[1]: self.size, self._names[0]: self.offset}

    def has_more(self, body: Any, items: Sequence[Any]) -> bool:
        total = self._total(body)
        if not items:
            return False
        if total is not None:
            return self.offset + len(items) < total
        return len(items) >= self.size

    def next(self, body: Any, items: Sequence[Any]) -> None:
        self.offset += len(items)


class HeaderPage(Paginator):
    """The page asked for in a JSON *request header*, the total in the answer (LogiSense)."""

    def __init__(self, total: Callable[[Any], int], *, size: int,
                 header: str = "Pagination") -> None:
        super().__init__()
        self.number = 1
        self.size = size
        self._total = total
        self._header = header

    def token(self) -> Any:
        return self.number

    def headers(self) -> Mapping[str, str]:
        return {self._header: json.dumps({"pageNumber": self.number, "pageSize": self.size})}

    def has_more(self, body: Any, items: Sequence[Any]) -> bool:
        return bool(items) and self.number * self.size < self._total(body)

    def next(self, body: Any, items: Sequence[Any]) -> None:
        self.number += 1
