"""Records kept as compressed pages: a large poll's records at a fraction of their size.

A record as Python objects costs about a kilobyte; pickled and compressed a
page at a time, well under a tenth of that.  Iterating unpacks one page at a
time, so a pass over half a million records never holds them all.
"""

from __future__ import annotations

import pickle  # our own objects, in our own memory: never bytes from outside
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from syncd.model import RemoteRecord

__all__ = ["PAGE", "Spool"]

PAGE = 2000
"""Records per compressed page."""


class Spool(Sequence[RemoteRecord]):
    """Records in compressed pages: appended in order, read back in order."""

    def __init__(self, records: Iterable[RemoteRecord] = (), page: int = PAGE) -> None:
        self._pages: list[tuple[int, bytes]] = []
        self._tail: list[RemoteRecord] = []
        self._page = page
        self._len = 0
        self.extend(records)

    def append(self, record: RemoteRecord) -> None:
        self._tail.append(record)
        self._len += 1
        if len(self._tail) >= self._page:
            self.seal()

    def extend(self, records: Iterable[RemoteRecord]) -> None:
        for record in records:
            self.append(record)

    def seal(self) -> None:
        """Compress what is not compressed yet (a page shorter than the others)."""
        if self._tail:
            # As plain tuples: unpickling a slotted dataclass costs several times more.
            rows = [(r.remote_id, r.org_id, r.fields, r.updated_at, r.deleted, dict(r.extra))
                    for r in self._tail]
            self._pages.append((len(rows), zlib.compress(pickle.dumps(rows, protocol=5), 1)))
            self._tail = []

    def drain(self) -> Iterator[RemoteRecord]:
        """Every record once, each page let go as soon as it is read: the spool is
        empty afterwards."""
        while self._pages:
            _, packed = self._pages.pop(0)
            self._len -= len(records := _unpack(packed))
            yield from records
        tail, self._tail = self._tail, []
        self._len = 0
        yield from tail

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[RemoteRecord]:
        for _, packed in self._pages:
            yield from _unpack(packed)
        yield from list(self._tail)

    @overload
    def __getitem__(self, index: int) -> RemoteRecord: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RemoteRecord]: ...
    def __getitem__(self, index: int | slice) -> RemoteRecord | Sequence[RemoteRecord]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        for count, packed in self._pages:
            if index < count:
                return _unpack(packed)[index]
            index -= count
        return self._tail[index]


def _unpack(packed: bytes) -> list[RemoteRecord]:
    rows: list[tuple[Any, ...]] = pickle.loads(zlib.decompress(packed))  # noqa: S301 - ours
    return [RemoteRecord(rid, org, fields, stamp, deleted, extra)
            for rid, org, fields, stamp, deleted, extra in rows]
