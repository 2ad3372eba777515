"""deploy/local/console.py: what `make run` prints of its processes' JSON log lines.

Readable on a terminal, JSON through a pipe; the log files always get the line as the
process wrote it, and nothing redacted before the file comes back on the terminal.
"""

from __future__ import annotations

import io
import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest

from deploy.local.console import console_lines, json_line, render, terminal_format
from deploy.local.supervisor import Supervisor, _echo

ACCESS = {
    "method": "POST",
    "route": "/v1/registry/children",
    "status": 201,
    "ms": 4.1,
    "event": "http.request",
    "service": "registry",
    "request_id": "0b7c9d",
    "level": "info",
    "timestamp": "2026-12-03T10:14:03.552915Z",
}
ESC = "\x1b"
SGR = re.compile(r"\x1b\[[0-9;]*m")  # a colour (Select Graphic Rendition)


def line(**record: object) -> str:
    """A log line as libs.common.logging writes it, with its newline."""
    return json.dumps(record) + "\n"


# ------------------------------------------------------------------------------ render


def test_a_request_line_reads_time_process_level_event_then_its_fields() -> None:
    assert render("registry", line(**ACCESS), False, tz=UTC) == (
        "10:14:03 registry   info  http.request  "
        "method=POST route=/v1/registry/children status=201 ms=4.1 request_id=0b7c9d"
    )


def test_the_time_is_shown_where_the_reader_is() -> None:
    phnom_penh = timezone(timedelta(hours=7))
    assert render("registry", line(**ACCESS), False, tz=phnom_penh).startswith("17:14:03 ")


def test_the_service_is_left_out_when_the_process_name_says_it() -> None:
    for name in ("registry", "registry-2", "registry-migrate"):
        assert "service=" not in render(name, line(**ACCESS), False, tz=UTC)
    assert "service=registry" in render("tiny", line(**ACCESS), False, tz=UTC)


def test_the_request_id_comes_after_the_events_own_fields() -> None:
    record = {"request_id": "r1", "event": "grant.approved", "level": "info", "amount": 5}
    assert render("funds", line(**record), False).endswith("grant.approved  amount=5 request_id=r1")


def test_values_are_bare_words_or_quoted_json() -> None:
    rendered = render(
        "gateway",
        line(
            event="e",
            level="warning",
            word="plain-word_1.2/x",
            spaced="two words",
            quoted='say "hi"',
            empty="",
            none=None,
            yes=True,
            count=3,
            ratio=0.5,
            items=[1, "a"],
            nested={"k": "v"},
        ),
        False,
    )
    assert rendered == (
        '         gateway    warning e  word=plain-word_1.2/x spaced="two words" '
        'quoted="say \\"hi\\"" empty="" none=null yes=true count=3 ratio=0.5 '
        'items=[1,"a"] nested={"k":"v"}'
    )


def test_a_logged_exception_follows_on_lines_of_its_own() -> None:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 3, in f\nbuiltins.KeyError'
    rendered = render(
        "casework",
        line(event="job.failed", level="error", exception=trace, job="overdue"),
        False,
        tz=UTC,
    )
    first, *frames = rendered.split("\n")
    assert first.endswith("error job.failed  job=overdue")
    assert "exception" not in first
    indent = " " * 20
    assert frames == [
        indent + "Traceback (most recent call last):",
        indent + '  File "x.py", line 3, in f',
        indent + "builtins.KeyError",
    ]


@pytest.mark.parametrize(
    "raw",
    [
        "INFO:     Started server process [4242]",
        '  File "/app/libs/common/db.py", line 12, in transaction',
        '{"event": "cut short',
        "[1, 2, 3]",
        '"a string"',
        "",
    ],
)
def test_a_line_that_is_not_a_json_object_is_shown_as_it_came(raw: str) -> None:
    assert render("webhooks", raw + "\n", False) == f"{' ' * 8} webhooks   {raw}"
    assert render("webhooks", raw + "\n", True).endswith(f" {raw}")


def test_colours_only_when_asked() -> None:
    plain = render("registry", line(**ACCESS), False)
    coloured = render("registry", line(**ACCESS), True)
    assert ESC not in plain
    assert f"{ESC}[32minfo " in coloured  # the level
    assert f"{ESC}[1mhttp.request{ESC}[0m" in coloured  # the event
    # Same text once the colours are taken out.
    assert SGR.sub("", coloured) == plain
    # Errors stand out.
    assert f"{ESC}[1;31merror" in render("registry", line(event="x", level="error"), True)


def test_a_component_keeps_its_colour_across_replicas_and_runs() -> None:
    def name_colour(name: str) -> str:
        found = re.search(rf"\x1b\[([0-9;]+)m{name} *\x1b", render(name, line(**ACCESS), True))
        assert found, name
        return found.group(1)

    assert name_colour("registry") == name_colour("registry-2") == name_colour("registry-migrate")


@pytest.mark.parametrize("color", [False, True])
def test_control_characters_in_a_value_never_reach_the_terminal(color: bool) -> None:
    hostile = {
        "event": "http.request",
        "level": "info",
        "path": f"/v1/{ESC}[2J{ESC}]0;owned\x07",
        "agent": "a\x9b31mb",  # a C1 control sequence introducer
        "name_rtl": "abc\u202edcba",  # right-to-left override
        "multi": "one\ntwo\rthree",
        f"key{ESC}[1m": 1,
    }
    rendered = render("gateway", line(**hostile), color)
    # The only escapes left are our own colours.
    assert ESC not in SGR.sub("", rendered)
    rendered = SGR.sub("", rendered)
    for char in ("\x07", "\x9b", "\u202e", "\n", "\r"):
        assert char not in rendered
    assert "\\u001b[2J" in rendered
    assert "\\u001b]0;owned\\u0007" in rendered
    assert "key\\u001b[1m=" in rendered
    assert "\\u009b31mb" in rendered
    assert "\\u202e" in rendered
    assert 'multi="one\\ntwo\\rthree"' in rendered
    # A line that is not JSON too.
    raw = render("gateway", f"plain {ESC}[2J text\n", color)
    assert "plain \\u001b[2J text" in raw
    assert ESC not in SGR.sub("", raw)


def test_khmer_text_is_shown_as_it_is() -> None:
    assert "place=ភ្នំពេញ" in render(
        "indicators", line(event="e", level="info", place="ភ្នំពេញ"), False
    )


# ------------------------------------------------------------------------------ the choice


@dataclass
class FakeStdout:
    """The runner's standard output, a terminal or not."""

    tty: bool
    encoding: str = "utf-8"

    def isatty(self) -> bool:
        return self.tty


def shown(environ: dict[str, str], tty: bool) -> bytes:
    """What the runner would print for ACCESS from `registry`."""
    show = terminal_format(environ, FakeStdout(tty))
    return show("registry", line(**ACCESS).encode())


def test_a_terminal_gets_readable_coloured_lines() -> None:
    out = shown({}, tty=True)
    assert out.endswith(b"\n")
    assert b"http.request" in out
    assert b"\x1b[" in out
    assert b'"event"' not in out


def test_no_color_or_a_dumb_terminal_gets_them_without_colour() -> None:
    for environ in ({"NO_COLOR": "1"}, {"TERM": "dumb"}):
        out = shown(environ, tty=True)
        assert b"http.request  method=POST" in out
        assert b"\x1b" not in out
    assert b"\x1b[" in shown({"NO_COLOR": ""}, tty=True)  # empty: not set (no-color.org)


def test_a_pipe_gets_the_json_lines_as_they_are() -> None:
    assert shown({}, tty=False) == b"registry | " + line(**ACCESS).encode()
    assert terminal_format({}, FakeStdout(False)) is json_line


def test_komar_log_format_overrides_the_choice() -> None:
    assert shown({"KOMAR_LOG_FORMAT": "json"}, tty=True) == shown({}, tty=False)
    forced = shown({"KOMAR_LOG_FORMAT": "Console"}, tty=False)
    assert b"http.request  method=POST" in forced
    assert b"\x1b" not in forced  # no colours into a file
    with pytest.raises(ValueError, match="KOMAR_LOG_FORMAT must be one of console, json"):
        terminal_format({"KOMAR_LOG_FORMAT": "pretty"}, FakeStdout(True))


def test_a_terminal_that_cannot_show_a_character_gets_an_escape() -> None:
    show = terminal_format({}, FakeStdout(True, encoding="ascii"))
    out = show("indicators", line(event="e", level="info", place="ភ្នំ").encode())
    assert b"\\u1797\\u17d2\\u1793\\u17c6\n" in out


def test_a_line_that_cannot_be_rendered_is_echoed_as_it_is() -> None:
    # The echo thread must never stop: the process would block on a full pipe.
    show = console_lines(False, encoding="no-such-codec")
    assert show("registry", b'{"event": "e"}\n') == b'registry | {"event": "e"}\n'


# ------------------------------------------------------------------------------ the echo


def test_the_file_keeps_the_json_and_the_terminal_gets_the_readable_line(tmp_path: Path) -> None:
    written = line(**ACCESS).encode() + b"Started server process [7]\n"
    log_path = tmp_path / "registry.log"
    out = io.BytesIO()
    _echo("registry", io.BytesIO(written), open(log_path, "ab"), out, console_lines(False))
    assert log_path.read_bytes() == written
    assert out.getvalue().decode().splitlines() == [
        render("registry", line(**ACCESS), False),
        f"{' ' * 8} registry   Started server process [7]",
    ]


def test_a_real_components_log_through_the_supervisor_stays_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", terminal)
    supervisor = Supervisor(tmp_path / "log", echo=True, show=console_lines(False))
    supervisor.run("tiny", "tests.deploy.tiny_app", "log", timeout=60)
    monkeypatch.undo()
    assert isinstance(terminal.buffer, io.BytesIO)
    printed = terminal.buffer.getvalue().decode()
    logged = (tmp_path / "log" / "tiny.log").read_text()

    # The file: the JSON lines, as the process wrote them.
    records = [json.loads(x) for x in logged.splitlines() if x.startswith("{")]
    assert [r["event"] for r in records] == ["http.request", "child.registered", "request.failed"]
    # The terminal: the same lines, readable.
    lines = printed.splitlines()
    assert (
        "tiny       info  http.request  method=POST route=/v1/tiny status=201 ms=4.1" in (lines[0])
    )
    assert "child.registered  given_name=[redacted] family_name=[redacted]" in printed
    assert "builtins.ValueError (message withheld)" in printed
    assert lines[-1] == f"{' ' * 8} tiny       Started server process [1]"
    # Neither shows what libs.common.logging withheld.
    for text in (printed, logged):
        assert "Sokha" not in text
        assert "Chan" not in text
        assert "2015-04-12" not in text
