"""structlog setup: JSON lines when stderr is not a TTY, a readable console when it is.

Every event passes :func:`redact_secrets` just before it is rendered, so no
secret reaches a log line, whoever logged it: a ``SecretStr`` or a value under
a key that names a secret is masked whole, and every configured secret is
masked by value (``syncd.redact``) in every string of the event — the message,
nested dicts and lists, and the formatted traceback.

Libraries log through the standard library instead (httpx writes one line per
request, its URL and query string included; httpcore, apscheduler).  Their
records reach one root handler whose ``structlog.stdlib.ProcessorFormatter``
runs the same chain: same masking, same JSON line or console format, on
stderr.  Libraries speak from WARNING up, or from DEBUG when syncd does: at
info, a line per HTTP request would drown syncd's own events.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog
from pydantic import SecretStr
from structlog.typing import Processor

from syncd.redact import MASK, redact_value

__all__ = ["configure_logging", "get_logger", "redact_secrets"]

_SECRET_KEY = re.compile(r"pass(word)?|secret|token|authorization|cookie|api[_-]?key", re.I)
REDACTED = MASK


def _redact(key: str, value: Any) -> Any:
    """By key name first (a secret not in the settings, say a fresh token), then by value."""
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.search(key) and isinstance(value, str | bytes) and value:
        return REDACTED
    if isinstance(value, dict):
        return {redact_value(k): _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(key, v) for v in value]
    return redact_value(value)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        value = event_dict[key]
        # The message itself is never masked by key ("token_renewed"), only by value.
        event_dict[key] = redact_value(value) if key == "event" else _redact(key, value)
    return event_dict


class _StderrHandler(logging.StreamHandler[TextIO]):
    """syncd's root handler: writes to the current ``sys.stderr`` (pytest swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # handle() holds the handler's lock
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """A record that cannot be formatted becomes a syncd event, masked and rendered.

        logging's own report would print the record's arguments as they are,
        and a secret is what a URL or header argument may hold.
        """
        if not logging.raiseExceptions:
            return
        with contextlib.suppress(Exception):  # nowhere left to report to
            get_logger().error("library_log_failed", logger=record.name,
                               error=repr(sys.exc_info()[1]), message=repr(record.msg),
                               arguments=repr(record.args))


class _CurrentStderr:
    """``sys.stderr`` as it is when a line is written, not when logging was configured:
    a stream swapped out since (pytest's capture, a daemon's redirect) may be closed."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _library_level(level: int) -> int:
    """The level of stdlib loggers: WARNING at least, unless syncd itself logs at DEBUG."""
    return level if level <= logging.DEBUG else max(level, logging.WARNING)


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger; calling it again replaces both."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    stamp: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # After format_exc_info, so an exception's text is masked as well.
    render: list[Processor] = [structlog.processors.format_exc_info, redact_secrets, renderer]
    structlog.configure(
        processors=[*stamp, *render],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )

    handler = _StderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*stamp, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
    ))
    root = logging.getLogger()
    # Replace our own handler only: pytest's capture handlers stay where they are.
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(_library_level(numeric))


def get_logger(name: str = "syncd") -> Any:
    return structlog.get_logger(name)
