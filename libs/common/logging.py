"""structlog set-up: JSON lines in production, request id bound per request.

No log line carries an exception's message: a database error quotes the statement, its
parameters and the offending values (a name, a phone number), and so do many others.
Exceptions are logged as their type, SQLSTATE when they have one, and where they were
raised (file, line, function): enough to find the fault, nothing about the person.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from types import TracebackType
from typing import Any

import structlog

# Field names that must never reach a log line (no personal data in logs).
_REDACTED_KEYS = frozenset(
    {
        "given_name",
        "family_name",
        "name",
        "phone",
        "caregiver",
        "password",
        "client_secret",
        "access_token",
        "refresh_token",
    }
)
_MAX_FRAMES = 12


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _REDACTED_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 5:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _sqlstate(exc: BaseException) -> str | None:
    for link in _chain(exc):
        for candidate in (link, getattr(link, "orig", None)):
            code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
            if isinstance(code, str):
                return code
    return None


def exception_facts(exc: BaseException) -> dict[str, Any]:
    """What may be logged of an exception: its type (and its causes'), SQLSTATE, and where
    it was raised; never its message."""
    facts: dict[str, Any] = {
        "error": " <- ".join(f"{type(e).__module__}.{type(e).__qualname__}" for e in _chain(exc))
    }
    state = _sqlstate(exc)
    if state is not None:
        facts["sqlstate"] = state
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        facts["error_at"] = f"{last.filename}:{last.lineno} in {last.name}"
    return facts


def safe_traceback(
    kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
) -> str:
    """A traceback without any exception message: types and frames only."""
    if exc is None:
        return kind.__name__ if kind is not None else ""
    lines: list[str] = []
    for link in reversed(_chain(exc)):
        lines.append("Traceback (most recent call last):")
        for frame in traceback.extract_tb(link.__traceback__)[-_MAX_FRAMES:]:
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
        lines.append(f"{type(link).__module__}.{type(link).__qualname__} (message withheld)")
    return "\n".join(lines)


def _safe_exc_info(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog: render `exc_info` without the exception's message."""
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    if isinstance(exc_info, BaseException):
        event["exception"] = safe_traceback(type(exc_info), exc_info, exc_info.__traceback__)
    else:
        info = sys.exc_info() if exc_info is True else exc_info
        event["exception"] = safe_traceback(*info)
    return event


class SafeFormatter(logging.Formatter):
    """The stdlib's formatter (uvicorn, SQLAlchemy, asyncpg…) without exception messages."""

    def formatException(self, ei: Any) -> str:
        return safe_traceback(*ei)

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # never a cached rendering with the message
        return super().format(record)


def configure_logging(service: str, *, json: bool = True, level: str = "info") -> None:
    """Configure structlog and the stdlib root logger for one process."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            _safe_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(SafeFormatter("%(message)s"))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; dotted event names and keyword fields, please."""
    return structlog.get_logger(name)
