"""Secrets are masked by value wherever text leaves syncd: logs, CLI output, the store.

The field case: a LogiSense login answered 400 quoting the request body, and
``password=...`` showed in stderr, ``once --json``, ``status --json`` and the
store.  Masking by key name could not catch it; these tests prove the value
itself, in every encoding a request carries it, never gets out.  Masking by
key (``syncd.logs.redact_secrets``: ``SecretStr`` values, ``token`` and
``Authorization``) is tested here too, with the logging set-up of ``syncd.logs``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs

from syncd.config import load_settings
from syncd.logs import configure_logging, redact_secrets
from syncd.redact import MASK, REDACTOR, Redactor, encoded_forms, redact, redact_value
from syncd.sandbox.logisense import LogisenseSim
from syncd.store import Store
from syncd.store.repo import Failure, Watermark
from tests.e2e import REPO

PASSWORD = "s3cr+t/p@ss w0rd"  # every encoding differs: '+', '/', '@', ' '
USER = "api"


def leaked_forms(secret: str = PASSWORD, user: str = USER) -> dict[str, str]:
    """What a leak looks like: the secret as is, URL-encoded both ways, base64, Basic."""
    return {
        "plain": secret,
        "quote": quote(secret),
        "quote_nosafe": quote(secret, safe=""),
        "quote_plus": quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "basic": base64.b64encode(f"{user}:{secret}".encode()).decode(),
    }


def assert_no_leak(text: str, where: str) -> None:
    for form, value in leaked_forms().items():
        assert value not in text, f"{form} form of the password in {where}"
        assert value.lower() not in text.lower() or form in ("base64", "basic"), (
            f"{form} form (other case) of the password in {where}"
        )


@pytest.fixture(autouse=True)
def _fresh_redactor() -> Iterator[None]:
    """The redactor is process-wide: leave it as empty as we found it."""
    REDACTOR.clear()
    yield
    REDACTOR.clear()


# -- the redactor ----------------------------------------------------------------------------

def test_redactor_masks_the_secret_in_every_encoded_form() -> None:
    r = Redactor()
    r.set_secrets([PASSWORD], partners={PASSWORD: [USER]})
    forms = leaked_forms()
    text = " | ".join(f"{name}={value}" for name, value in forms.items())
    text += f" | lower={quote_plus(PASSWORD).lower()} | json={json.dumps({'p': PASSWORD})}"
    text += f" | b64url={base64.urlsafe_b64encode(PASSWORD.encode()).decode().rstrip('=')}"
    masked = r(text)
    assert_no_leak(masked, "redacted text")
    assert quote_plus(PASSWORD).lower() not in masked
    assert masked.count(MASK) == len(forms) + 3
    assert masked.startswith(f"plain={MASK} | quote={MASK}")


def test_short_and_unset_secrets_mask_nothing() -> None:
    r = Redactor()
    r.set_secrets(["abc", "", "*****"])
    assert not r.active
    assert r("abc is not a secret worth the noise ***** either") == (
        "abc is not a secret worth the noise ***** either"
    )
    r.set_secrets(["abcd"])
    assert r("xabcdx") == f"x{MASK}x"


def test_a_secret_rebuilt_next_to_the_mask_is_masked_again() -> None:
    r = Redactor()
    r.set_secrets(["ab**", "wxyz"])
    assert "ab**" not in r("abwxyz")


def test_nested_values_are_masked_and_other_values_keep_their_type() -> None:
    r = Redactor()
    r.set_secrets([PASSWORD])
    when = datetime(2024, 1, 1, tzinfo=UTC)
    doc = {"errors": [f"HTTP 400 password={PASSWORD}"], PASSWORD: (1, PASSWORD),
           "n": 3, "at": when, "exc": ValueError(f"bad {PASSWORD}")}
    masked = r.value(doc)
    assert masked == {"errors": [f"HTTP 400 password={MASK}"], MASK: (1, MASK),
                      "n": 3, "at": when, "exc": f"bad {MASK}"}


def test_loading_settings_arms_the_process_redactor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "syncd.toml"
    config.write_text('[systems.ls]\nkind = "logisense"\nbase_url = "http://x"\n'
                      f'client_id = "syncd"\nusername = "{USER}"\n')
    monkeypatch.setenv("SYNCD_SYSTEMS__LS__PASSWORD", PASSWORD)
    load_settings(config)
    assert_no_leak(redact(" ".join(leaked_forms().values())), "redact()")
    assert redact_value({"e": [PASSWORD]}) == {"e": [MASK]}


# Printable text and the encoded forms of the secrets, mixed in any order.
_secret = st.text(min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(secrets=st.lists(_secret, min_size=1, max_size=3), data=st.data())
def test_a_redacted_string_never_contains_a_secret(secrets: list[str], data: Any) -> None:
    r = Redactor()
    r.set_secrets(secrets, partners={s: ["u"] for s in secrets})
    forms = sorted(set().union(*(encoded_forms(s, partners=["u"]) for s in secrets)))
    pieces = data.draw(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(forms)),
                                max_size=8))
    text = "".join(pieces)
    masked = r(text)
    for secret in secrets:
        if len(secret) < 4 or not secret.strip("*"):
            continue  # documented: too short, or made of the mask itself
        for form in encoded_forms(secret, partners=["u"]):
            assert form not in masked
    if not any(f in text for s in secrets if len(s) >= 4 and s.strip("*")
               for f in encoded_forms(s, partners=["u"])):
        assert masked == text  # nothing secret: nothing touched


# -- logs and store --------------------------------------------------------------------------

def test_log_events_are_masked_by_value_everywhere_in_the_event() -> None:
    REDACTOR.set_secrets([PASSWORD], partners={PASSWORD: [USER]})
    forms = leaked_forms()
    try:
        raise RuntimeError(f"echoed {forms['quote_plus']}")
    except RuntimeError:
        with capture_logs(processors=[structlog.processors.format_exc_info,
                                      redact_secrets]) as logs:
            structlog.get_logger().exception(
                f"login refused: password={PASSWORD}", error=forms["quote_plus"],
                detail={"basic": [forms["basic"]], forms["base64"]: 1}, user=USER,
            )
    (event,) = logs
    assert_no_leak(json.dumps(event, default=str), "log event")
    assert event["user"] == USER and event["event"] == f"login refused: password={MASK}"
    assert "RuntimeError: echoed " + MASK in event["exception"]


def test_secrets_are_redacted_from_every_log_event() -> None:
    with capture_logs(processors=[redact_secrets]) as logs:
        structlog.get_logger().error(
            "login", password=SecretStr("s3cret"), token="abc123", headers={"Authorization": "x"},
            nested=[SecretStr("deep")], user="ops",
        )
    (event,) = logs
    flat = json.dumps(event, default=str)
    assert "s3cret" not in flat and "abc123" not in flat and "deep" not in flat
    assert event["user"] == "ops" and event["headers"]["Authorization"] == "**********"


def test_configured_logging_redacts_before_rendering() -> None:
    configure_logging("info", json=True)
    processors = structlog.get_config()["processors"]
    assert redact_secrets in processors
    assert processors.index(redact_secrets) < len(processors) - 1
    configure_logging("error", json=True)


# -- libraries logging through the standard library (httpx, httpcore, apscheduler) ---------

@pytest.fixture
def stderr_lines(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], list[str]]]:
    """The lines written to stderr since the last call; quiet logging restored after."""
    yield lambda: capsys.readouterr().err.splitlines()
    configure_logging("error", json=True)


def test_a_library_log_record_is_masked_and_rendered_like_syncd_events(
    stderr_lines: Callable[[], list[str]],
) -> None:
    REDACTOR.set_secrets([PASSWORD], partners={PASSWORD: [USER]})
    configure_logging("info", json=True)
    url = f"https://books.example/api/contacts?authtoken={quote_plus(PASSWORD)}"
    logging.getLogger("httpx").warning('HTTP Request: GET %s "HTTP/1.1 401"', url)
    try:
        raise RuntimeError(f"echoed {leaked_forms()['basic']}")
    except RuntimeError:
        logging.getLogger("apscheduler.executors.default").exception(
            "Job raised, password=%s", PASSWORD)
    structlog.get_logger().warning("own_event")
    lines = stderr_lines()
    assert_no_leak("\n".join(lines), "stderr")
    request, job, own = (json.loads(line) for line in lines)  # one JSON document a line
    assert request["event"] == f'HTTP Request: GET {url.replace(quote_plus(PASSWORD), MASK)}' \
        ' "HTTP/1.1 401"'
    assert (request["level"], request["logger"]) == ("warning", "httpx")
    assert (job["level"], job["event"]) == ("error", f"Job raised, password={MASK}")
    assert f"RuntimeError: echoed {MASK}" in job["exception"]
    assert set(own) == {"event", "level", "timestamp"}
    assert set(request) == set(job) - {"exception"} == set(own) | {"logger"}


def test_the_sandbox_servers_errors_are_masked_too(
    stderr_lines: Callable[[], list[str]],
) -> None:
    """uvicorn's own logging set-up would give its loggers handlers of their own, past
    the masking: the sandbox leaves uvicorn's logging to ours."""
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from syncd.sandbox.common import serve

    async def echo(request: Request) -> Response:
        raise RuntimeError(f"cannot parse {request.headers['authorization']}")

    REDACTOR.set_secrets([PASSWORD], partners={PASSWORD: [USER]})
    configure_logging("warning", json=True)
    handle = serve(Starlette(routes=[Route("/", echo)]))
    try:
        answer = httpx.get(handle.url, auth=(USER, PASSWORD), timeout=5)
    finally:
        handle.stop()
    assert answer.status_code == 500
    lines = stderr_lines()
    assert_no_leak("\n".join(lines), "stderr")
    failure = [json.loads(line) for line in lines if "uvicorn" in line]
    assert [f["logger"] for f in failure] == ["uvicorn.error"]
    assert f"cannot parse Basic {MASK}" in failure[0]["exception"]


@pytest.mark.parametrize(("level", "library_info", "library_warning"), [
    ("debug", True, True), ("info", False, True), ("warning", False, True),
    ("error", False, False),
])
def test_libraries_say_info_only_when_syncd_debugs(
    stderr_lines: Callable[[], list[str]], level: str, library_info: bool,
    library_warning: bool,
) -> None:
    """One INFO line per HTTP request is noise: libraries log from WARNING unless at debug."""
    configure_logging(level, json=True)
    logging.getLogger("httpx").info("HTTP Request: GET https://x")
    logging.getLogger("httpcore.connection").debug("connect_tcp.started")
    logging.getLogger("httpx").warning("retrying")
    events = [json.loads(line)["event"] for line in stderr_lines()]
    expected = ["HTTP Request: GET https://x", "connect_tcp.started"] if library_info else []
    assert events == expected + (["retrying"] if library_warning else [])


def test_configuring_twice_keeps_one_handler_and_leaves_pytest_capture_alone(
    stderr_lines: Callable[[], list[str]], caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging("info", json=False)
    handlers = list(logging.getLogger().handlers)
    configure_logging("info", json=True)
    assert len(logging.getLogger().handlers) == len(handlers)
    logging.getLogger("httpx").warning("once")
    (line,) = stderr_lines()
    assert json.loads(line)["event"] == "once"
    assert [r.getMessage() for r in caplog.records] == ["once"]


def test_a_malformed_library_record_does_not_leak_its_arguments(
    stderr_lines: Callable[[], list[str]],
) -> None:
    """logging's own error report prints a bad record's arguments raw; ours masks them."""
    REDACTOR.set_secrets([PASSWORD])
    configure_logging("info", json=True)
    # Handed to syncd's handler alone: pytest's capture handler fails the test on a bad record.
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "token %d", (PASSWORD,),
                               None)
    (ours,) = (h for h in logging.getLogger().handlers if type(h).__module__ == "syncd.logs")
    ours.handle(record)
    (line,) = stderr_lines()
    assert_no_leak(line, "stderr")
    event = json.loads(line)
    assert (event["event"], event["logger"]) == ("library_log_failed", "httpx")
    assert event["arguments"] == f"('{MASK}',)"


def test_logging_writes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stream seen when logging was configured may be closed since (pytest's
    capture of an earlier test, a daemon's redirect): a log line must not raise."""
    import io

    from syncd.logs import get_logger

    then, now = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", then)
    configure_logging("error", json=True)
    then.close()
    monkeypatch.setattr(sys, "stderr", now)
    get_logger().error("guard_tripped", system="a")
    logging.getLogger("httpx").error("library says %s", "hello")
    lines = [json.loads(line) for line in now.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["guard_tripped", "library says hello"]


def test_the_store_masks_error_texts_on_the_way_in(sqlite_store: Store) -> None:
    REDACTOR.set_secrets([PASSWORD], partners={PASSWORD: [USER]})
    now = datetime.now(UTC)
    error = "login refused: " + " ".join(leaked_forms().values())
    with sqlite_store.write() as conn:
        sqlite_store.save_watermarks(conn, [Watermark("ls", last_poll_at=now, last_error=error)])
        sqlite_store.record_failure(conn, Failure("ls", "g1", "create", None, 1, error, "h",
                                                  False, None, now))
    sqlite_store.record_run("once", now, now, 4, {"errors": [error], "systems": {"ls": error}})
    path = sqlite_store.sqlite_path()
    assert path is not None
    assert_no_leak(dump_text(path), "the store")
    assert sqlite_store.watermarks()["ls"].last_error == f"login refused: {' '.join([MASK] * 6)}"


def test_a_cycle_report_leaves_the_engine_masked() -> None:
    from syncd.engine.report import CycleReport, SystemReport

    REDACTOR.set_secrets([PASSWORD])
    error = f"ls: login refused: password={quote_plus(PASSWORD)}"
    report = CycleReport(datetime.now(UTC), systems={"ls": SystemReport(error=error)},
                         errors=[error])
    doc = report.as_dict()
    assert_no_leak(json.dumps(doc), "CycleReport.as_dict")
    assert doc["errors"] == [f"ls: login refused: password={MASK}"]
    assert doc["systems"]["ls"]["read"] == 0


# -- end to end: a LogiSense login that echoes the request -----------------------------------

def dump_text(db: Path) -> str:
    """Every value of every table of an SQLite store, as one text."""
    conn = sqlite3.connect(db)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return "\n".join(
            f"{table}: {row!r}" for table in tables
            for row in conn.execute(f'SELECT * FROM "{table}"')
        )
    finally:
        conn.close()


def syncd(config: Path, level: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYNCD_SYSTEMS__LOGISENSE__PASSWORD": PASSWORD}
    return subprocess.run(
        [sys.executable, "-m", "syncd", "--log-level", level, "--config", str(config), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize("level", ["debug", "info"])
def test_a_login_echoing_the_request_leaks_the_password_nowhere(
    tmp_path: Path, served_sim: Callable[[LogisenseSim], str], level: str
) -> None:
    sim = LogisenseSim(username=USER, password=PASSWORD, echo_login=True)
    url = served_sim(sim)
    config = tmp_path / "syncd.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{tmp_path / 'syncd.db'}"

[systems.logisense]
kind = "logisense"
base_url = "{url}"
contact_type_id = 9
client_id = "syncd"
username = "{USER}"

[systems.mem]
kind = "memory"
path = "{tmp_path / 'mem.json'}"

[organizations.acme]
logisense = "16"
mem = "1"
""")
    once = syncd(config, level, "once", "--json")
    assert once.returncode == 4, once.stderr[-2000:]
    assert sim.logins and sim.logins[0]["password"] == PASSWORD  # the server did get it
    assert_no_leak(once.stdout, "once --json")
    assert_no_leak(once.stderr, f"stderr at {level}")
    report = json.loads(once.stdout)
    assert "login refused" in report["systems"]["logisense"]["error"]
    assert MASK in report["systems"]["logisense"]["error"]  # the echo is kept, masked
    assert "poll_failed" in once.stderr

    table = syncd(config, level, "once")
    assert table.returncode == 4
    assert_no_leak(table.stdout + table.stderr, "once (tables)")

    status = syncd(config, level, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    assert_no_leak(status.stdout + status.stderr, "status --json")
    assert MASK in json.loads(status.stdout)["systems"]["logisense"]["last_error"]

    assert_no_leak(dump_text(tmp_path / "syncd.db"), "the store")
