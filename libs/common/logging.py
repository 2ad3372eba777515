"""structlog set-up: JSON lines in production, request id bound per request."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Field names that must never reach a log line (SPEC §4: no personal data in logs).
_REDACTED_KEYS = frozenset(
    {"given_name", "family_name", "name", "phone", "caregiver", "password", "client_secret"}
)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in _REDACTED_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def configure_logging(service: str, *, json: bool = True, level: str = "info") -> None:
    """Configure structlog and the stdlib root logger for one process."""
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
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


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; dotted event names and keyword fields, please."""
    return structlog.get_logger(name)
