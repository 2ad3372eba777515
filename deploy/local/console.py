"""What `make run` prints of its processes' logs: readable lines on a terminal, JSON otherwise.

Every process writes one JSON object per line (libs/common/logging.py); the runner copies
each line, unchanged, to the process's file under var/log. On a terminal it shows the line
readable instead:

    10:14:03 funds      info  http.request  method=GET route=/v1/funds status=200 ms=2.3 …

the local time, the process, the level, the event, then the line's other fields as
key=value (request_id last). A line that is not a JSON object (uvicorn's own lines, a
traceback) is shown as it came. Colours only on a terminal, and never with NO_COLOR set.

KOMAR_LOG_FORMAT=console|json overrides the choice: `json` prints the lines as they are, each
after `<process> | `, as when the output is a pipe (`make run | grep …`).

Nothing here decides what is logged: a readable line shows what the file holds, which
libs.common.logging redacted before writing it. Control characters in a value are shown
escaped, so a logged value cannot move the cursor or recolour the terminal.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any, Protocol

ENV = "KOMAR_LOG_FORMAT"
FORMATS = ("console", "json")

# One process's line as the terminal shows it: (process name, raw line with its newline).
LineFormat = Callable[[str, bytes], bytes]

NAME_WIDTH = 10
LEVEL_WIDTH = 5
CLOCK_WIDTH = 8
# Fields shown elsewhere in the line (or not at all: `service` repeats the process name).
_PLACED = ("timestamp", "level", "event", "exception")
# Context fields that go last, after the event's own.
_LAST = ("request_id",)

# C0 and C1 controls, DEL, the line separators, and the bidirectional marks and overrides
# that reorder what follows them.
_CONTROLS = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_CONTROLS}]")
_UNSAFE_BUT_TAB = re.compile(f"[\x00-\x08\x0a-\x1f{_CONTROLS}]")
_BARE = re.compile(r"[^\s\"'=\\]+")

_RESET = "\x1b[0m"
_DIM = "2"
_BOLD = "1"
_LEVEL_COLORS = {
    "debug": "34",
    "info": "32",
    "warning": "33",
    "warn": "33",
    "error": "1;31",
    "exception": "1;31",
    "critical": "1;31",
    "fatal": "1;31",
}
# Process names get one of these by their component (red is left to errors).
_NAME_COLORS = ("36", "35", "34", "33", "32", "96", "95", "94", "93", "92")


def render(process_name: str, line: str, color: bool, *, tz: tzinfo | None = None) -> str:
    """One line of `process_name`'s output, readable: time, process, level, event, fields.

    `line` is what the process wrote (its newline may be left on); a line that is not a JSON
    object comes back as it is, after the process name. A logged exception follows on lines
    of its own. `tz` is where the time is shown (None: this machine's local time).
    """
    text = line.rstrip("\r\n")
    record = _record(text)
    name = _paint(f"{process_name:<{NAME_WIDTH}}", _name_color(process_name), color)
    if record is None:
        return f"{' ' * CLOCK_WIDTH} {name} {_escape(text, keep_tab=True)}"

    clock = _paint(_clock(record.get("timestamp"), tz), _DIM, color)
    level = str(record.get("level", ""))
    shown_level = _paint(f"{_escape(level):<{LEVEL_WIDTH}}", _level_color(level), color)
    event = _paint(_escape(str(record.get("event", ""))), _BOLD, color)
    head = f"{clock} {name} {shown_level} {event}"

    service = record.get("service")
    if isinstance(service, str) and (
        process_name == service or process_name.startswith(f"{service}-")
    ):
        record.pop("service")
    fields = [k for k in record if k not in _PLACED and k not in _LAST]
    fields += [k for k in _LAST if k in record]
    pairs = " ".join(
        f"{_paint(_escape(key) + '=', _DIM, color)}{_value(record[key])}" for key in fields
    )
    rendered = f"{head}  {pairs}" if pairs else head

    exception = record.get("exception")
    if exception:
        indent = " " * (CLOCK_WIDTH + 1 + NAME_WIDTH + 1)
        for frame in str(exception).splitlines():
            rendered += "\n" + indent + _paint(_escape(frame, keep_tab=True), "31", color)
    return rendered


def json_line(process_name: str, line: bytes) -> bytes:
    """The line as the process wrote it, after `<process> | ` (output that is not a terminal)."""
    return f"{process_name} | ".encode() + line


def console_lines(color: bool, encoding: str = "utf-8") -> LineFormat:
    """Lines rendered readable by `render`, encoded for the terminal."""

    def show(process_name: str, line: bytes) -> bytes:
        try:
            text = render(process_name, line.decode("utf-8", "replace"), color)
            return (text + "\n").encode(encoding, "backslashreplace")
        except Exception:  # never stop echoing: a stalled echo would block the process
            return json_line(process_name, line)

    return show


class Terminal(Protocol):
    """What the choice needs to know of the runner's standard output."""

    @property
    def encoding(self) -> str: ...

    def isatty(self) -> bool: ...


def terminal_format(environ: Mapping[str, str], stdout: Terminal) -> LineFormat:
    """How the runner shows its processes' lines on `stdout`: readable on a terminal, JSON
    when it is a pipe or a file, or as KOMAR_LOG_FORMAT says. Colours on a terminal only,
    never with NO_COLOR (any value but empty) or TERM=dumb."""
    chosen = environ.get(ENV, "").strip().lower()
    if chosen and chosen not in FORMATS:
        raise ValueError(f"{ENV} must be one of {', '.join(FORMATS)}, not {chosen!r}")
    tty = stdout.isatty()
    if chosen == "json" or (not chosen and not tty):
        return json_line
    color = tty and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"
    return console_lines(color, stdout.encoding or "utf-8")


def _record(text: str) -> dict[str, Any] | None:
    """The JSON object on the line, or None when the line is not one."""
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _clock(timestamp: object, tz: tzinfo | None) -> str:
    """HH:MM:SS of an ISO timestamp (UTC unless it says otherwise), in `tz`."""
    if not isinstance(timestamp, str):
        return " " * CLOCK_WIDTH
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return " " * CLOCK_WIDTH
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(tz).strftime("%H:%M:%S")


def _value(value: object) -> str:
    """A field's value: bare when it is one plain word, else quoted and escaped as JSON."""
    if isinstance(value, str):
        if _BARE.fullmatch(value) and not _UNSAFE.search(value):
            return value
        return _escape(json.dumps(value, ensure_ascii=False))
    return _escape(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _escape(text: str, *, keep_tab: bool = False) -> str:
    """`text` with every control character written as its escape (a backslash, `u`, and
    its code in four hexadecimal digits)."""
    pattern = _UNSAFE_BUT_TAB if keep_tab else _UNSAFE
    return pattern.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _paint(text: str, code: str | None, color: bool) -> str:
    """`text` in an ANSI colour (when colours are on and there is one)."""
    if not color or not code or not text.strip():
        return text
    return f"\x1b[{code}m{text}{_RESET}"


def _level_color(level: str) -> str | None:
    """The colour of a level's name."""
    return _LEVEL_COLORS.get(level.lower())


def _name_color(process_name: str) -> str:
    """A colour per component, the same for its replicas and its migrations, run after run."""
    component = process_name.split("-")[0]
    return _NAME_COLORS[zlib.crc32(component.encode()) % len(_NAME_COLORS)]
