"""A real CardDAV server for the sandbox and the tests, with a simulator front.

There is no CardDAV simulator: syncd is tested against real servers.
:func:`start_server` runs **Radicale** (htpasswd auth) or **Xandikos** (no
auth: its Basic auth needs TLS) as a child process on a free 127.0.0.1 port
with a temporary storage folder, waits until it answers and creates the
address book.  :class:`CarddavSim` is a :class:`~syncd.sandbox.common.Simulator`
whose only route forwards every request to that server, so the shared
counters and fault injection apply, and which can play a hostile server:

* ``rewrite`` — every card PUT is re-serialised first (properties reversed,
  PRODID and REV added, lines folded at 40) and answered without an ETag, as
  servers that store something else than they were sent must;
* ``no_sync`` — no ``sync-collection`` report (nor its advertisement);
* ``expire_next`` — the next N token-carrying sync reports are refused with
  ``valid-sync-token``, as after a server's token history was pruned;
* ``before_write`` — called once with the path when the next conditional
  write (``If-Match``) arrives: another client edits the card between our
  read and our write.

The admin side talks to the server directly (never counted or faulted).
"""

from __future__ import annotations

import atexit
import base64
import http.client
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from syncd.connectors.vcard import apply, new_card, read_card
from syncd.connectors.webdav import href_path, multiget_body, multistatus, propfind_etags_body
from syncd.sandbox.common import Simulator, utc_now

__all__ = ["SANDBOX_PASSWORD", "SANDBOX_USER", "CarddavSim", "DavServer", "available",
           "start_server"]

SANDBOX_USER = "alice"
SANDBOX_PASSWORD = "sandbox-dav-secret"  # noqa: S105 - the sandbox's published login
KINDS = ("radicale", "xandikos")
_METHODS = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PROPFIND", "PROPPATCH", "REPORT",
            "MKCOL", "POST", "MOVE", "COPY"]
_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive",
        "accept-encoding"}
_XML_DEPTH1 = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}
_MKCOL = ('<?xml version="1.0" encoding="utf-8"?><D:mkcol xmlns:D="DAV:" '
          'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop><D:resourcetype>'
          "<D:collection/><C:addressbook/></D:resourcetype></D:prop></D:set></D:mkcol>")


def available(kind: str) -> bool:
    """Whether that server is installed (it is, with the dev extras)."""
    return importlib.util.find_spec(kind) is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DavServer:
    """A running server: its origin, the address book's path and the credentials."""

    kind: str
    port: int
    folder: Path
    collection: str
    process: subprocess.Popen[bytes]
    username: str = SANDBOX_USER
    password: str = SANDBOX_PASSWORD
    owns_folder: bool = False

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.collection

    def request(self, method: str, path: str, body: bytes = b"",
                headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request straight to the server (the admin side: never counted or faulted)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = dict(headers or {})
            if not any(k.lower() == "authorization" for k in sent):  # a proxied request has its own
                auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
                sent["Authorization"] = f"Basic {auth}"
            conn.request(method, quote(path, safe="/%:@?=&"), body=body or None, headers=sent)
            answer = conn.getresponse()
            return answer.status, {k: v for k, v in answer.getheaders()}, answer.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.owns_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def _command(kind: str, folder: Path, port: int, users: Path) -> tuple[list[str], str]:
    if kind == "radicale":
        return [
            sys.executable, "-m", "radicale", "--config", "",
            "--server-hosts", f"127.0.0.1:{port}",
            "--storage-filesystem-folder", str(folder / "store"),
            "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(users),
            "--auth-htpasswd-encryption", "plain", "--auth-delay", "0",
            "--server-delay-on-error", "0", "--logging-level", "warning",
        ], f"/{SANDBOX_USER}/contacts/"
    if kind == "xandikos":
        return [
            sys.executable, "-m", "xandikos", "serve", "--defaults", "--no-detect-systemd",
            "-d", str(folder / "store"), "-p", str(port), "-l", "127.0.0.1",
        ], "/user/contacts/addressbook/"
    raise ValueError(f"unknown CardDAV server {kind!r}: one of {', '.join(KINDS)}")


def start_server(kind: str = "radicale", folder: Path | None = None, *,
                 timeout: float = 30.0) -> DavServer:
    """Start ``kind`` on a free 127.0.0.1 port and wait until its address book answers."""
    owns = folder is None
    folder = Path(tempfile.mkdtemp(prefix=f"syncd-{kind}-")) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "users"
    users.write_text(f"{SANDBOX_USER}:{SANDBOX_PASSWORD}\n")
    port = _free_port()
    command, collection = _command(kind, folder, port, users)
    log = (folder / "server.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own fixed command
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    server = DavServer(kind, port, folder, collection, process, owns_folder=owns)
    atexit.register(server.stop)  # a child server never outlives us, whoever forgot it
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited at start: {(folder / 'server.log').read_text()}")
        try:
            status, _, _ = server.request("PROPFIND", collection, b"", {"Depth": "0"})
        except OSError:
            status = 0
        if status in (207, 404):
            break
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{kind} did not answer within {timeout:.0f} s")
        time.sleep(0.1)
    if status == 404:
        made, _, text = server.request("MKCOL", collection, _MKCOL.encode(),
                                       {"Content-Type": "application/xml"})
        if made not in (200, 201):
            server.stop()
            raise RuntimeError(f"{kind}: MKCOL {collection}: HTTP {made} {text[:200]!r}")
    return server


def _token_of(body: bytes) -> str:
    found = re.search(rb"sync-token>([^<]*)<", body)
    return found.group(1).decode().strip() if found else ""


def rewrite_card(text: str) -> str:
    """What a re-serialising server stores: same values, another shape."""
    lines = [line for line in text.replace("\r\n ", "").replace("\n ", "").splitlines()
             if line.strip()]
    inner = [line for line in lines if not line.upper().startswith(("BEGIN:", "END:",
                                                                   "VERSION:", "PRODID:"))]
    inner.reverse()
    inner += ["PRODID:-//Rewriting Server//EN", f"REV:{utc_now():%Y%m%dT%H%M%SZ}"]
    folded = []
    for line in ["BEGIN:VCARD", "VERSION:3.0", *inner, "END:VCARD"]:
        raw = line
        while len(raw) > 40:
            folded.append(raw[:40])
            raw = " " + raw[40:]
        folded.append(raw)
    return "\r\n".join(folded) + "\r\n"


@dataclass
class _Hostile:
    rewrite: bool = False
    no_sync: bool = False
    expire_next: int = 0
    before_write: Callable[[str], None] | None = None
    seen: list[str] = field(default_factory=list)


class CarddavSim(Simulator):
    """A counted, faultable front for a real server (see the module's docstring)."""

    kind = "carddav"

    def __init__(self, server: DavServer) -> None:
        self.server = server
        self.hostile = _Hostile()
        self.front = ""
        """Where this front is served (set by whoever serves it)."""
        self.clock = utc_now
        super().__init__()

    def close(self) -> None:
        """Stop the server behind (the sandbox's ``stop``)."""
        self.server.stop()

    # -- the proxy ----------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._proxy, methods=_METHODS)]

    def throttle_response(self) -> Response:
        return Response("slow down", status_code=429, headers={"Retry-After": "0"})

    async def _proxy(self, request: Request) -> Response:
        body = await request.body()
        method = request.method
        path = href_path(request.url.path) + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        hostile = self.hostile
        sync = method == "REPORT" and b"sync-collection" in body
        if sync and hostile.no_sync:
            return _dav_error(403, "supported-report")
        if sync and hostile.expire_next > 0 and _token_of(body):
            hostile.expire_next -= 1
            return _dav_error(403, "valid-sync-token")
        hook = hostile.before_write
        if hook is not None and method in ("PUT", "DELETE") and "if-match" in {
                k.lower() for k in headers}:
            hostile.before_write = None
            await run_in_threadpool(hook, path)
        if hostile.rewrite and method == "PUT":
            body = rewrite_card(body.decode()).encode()
        status, answer, content = await run_in_threadpool(
            self.server.request, method, path, body, headers)
        if hostile.no_sync and method == "PROPFIND":
            content = re.sub(rb"<([\w.-]+:)?sync-collection\s*/>", b"", content)
        out = {k: v for k, v in answer.items() if k.lower() not in _HOP}
        if hostile.rewrite and method == "PUT":
            out = {k: v for k, v in out.items() if k.lower() != "etag"}
        return Response(content, status_code=status, headers=out)

    # -- the admin side, in canonical fields -----------------------------------------------

    def cards(self) -> dict[str, tuple[str, str]]:
        """href → (ETag, vCard text) of every card, read straight from the server."""
        server = self.server
        status, _, body = server.request("PROPFIND", server.collection,
                                         propfind_etags_body().encode(), _XML_DEPTH1)
        if status != 207:
            raise RuntimeError(f"PROPFIND {server.collection}: HTTP {status}")
        hrefs = [m.href for m in multistatus(body, label="admin", system="carddav").members
                 if not m.collection and m.href.rstrip("/") != server.collection.rstrip("/")]
        if not hrefs:
            return {}
        status, _, body = server.request("REPORT", server.collection,
                                         multiget_body(hrefs).encode(), _XML_DEPTH1)
        members = multistatus(body, label="admin", system="carddav").members
        return {m.href: (m.etag or "", m.data or "") for m in members if m.status == 200}

    def put_raw(self, text: str, name: str | None = None) -> str:
        """Store a vCard as some other client wrote it; returns its href."""
        href = f"{self.server.collection}{name or uuid.uuid4()}.vcf"
        status, _, body = self.server.request("PUT", href, text.encode(),
                                              {"Content-Type": "text/vcard; charset=utf-8"})
        if status not in (200, 201, 204):
            raise RuntimeError(f"PUT {href}: HTTP {status} {body[:200]!r}")
        return href

    def put_behind(self, text: str, name: str) -> None:
        """Write a card file straight into Radicale's storage folder, as a tool sharing the
        folder would: past the server's own UID check (how duplicate UIDs come to be)."""
        if self.server.kind != "radicale":
            raise NotImplementedError("only Radicale keeps plain files")
        folder = self.server.folder / "store" / "collection-root"
        target = folder.joinpath(*[p for p in self.server.collection.split("/") if p])
        (target / f"{name}.vcf").write_text(text, encoding="utf-8")

    def _find(self, record_id: str) -> tuple[str, str]:
        for href, (_, text) in self.cards().items():
            if read_card(text).uid == record_id:
                return href, text
        raise KeyError(record_id)

    def admin_create(self, org: str, fields: Mapping[str, str]) -> str:
        uid = str(uuid.uuid4())
        self.put_raw(new_card(uid, org, fields), uid)
        return uid

    def admin_update(self, record_id: str, fields: Mapping[str, str]) -> None:
        href, text = self._find(record_id)
        card = read_card(text)
        self.put_raw(apply(text, card.org, {**card.fields, **fields}),
                     href.rsplit("/", 1)[-1].removesuffix(".vcf"))

    def admin_delete(self, record_id: str) -> None:
        href, _ = self._find(record_id)
        self.server.request("DELETE", href)

    def admin_dump(self) -> list[dict[str, Any]]:
        out = []
        for href, (_, text) in sorted(self.cards().items()):
            try:
                card = read_card(text)
            except Exception:  # noqa: S112 - a hostile test's broken card: not a person
                continue
            out.append({"id": card.uid, "org": card.org, "href": href, **card.fields})
        return out


def _dav_error(status: int, condition: str) -> Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><D:error xmlns:D="DAV:"><D:{condition}/>'
            "</D:error>")
    return Response(body, status_code=status, media_type="application/xml")
