"""HTML to PDF with headless Chromium's print to PDF, which never fetches from the network.

Chromium, not WeasyPrint: Khmer is a script whose vowels are drawn before the consonant they
follow, and only Chromium's PDF keeps the text as it was written (WeasyPrint's gives
`រាជធានភ ី ្នំ` back for `រាជធានីភ្នំ` to whoever copies or searches it, pdftotext
included); it also shapes Khmer inside the SVG charts.

The page is written to a private temporary folder with its style sheets inlined (read by
`resource`, which knows the dashboard's /static files, the font face style sheet and the
Khmer font, and refuses every other URL) and printed by a Chromium of its own (a fresh
profile, no network: every host name resolves to nothing), one at a time per slot.
Chromium is found on PATH (Debian's `chromium`) or at KOMAR_DASHBOARD_CHROMIUM; without it a
PDF answers "not available".
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import re
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dashboard import fonts
from libs.common.logging import get_logger

log = get_logger(__name__)

STATIC = (Path(__file__).parent / "static").resolve()
STYLESHEET = re.compile(r'<link rel="stylesheet" href="([^"]+)">')
TIMEOUT_S = 60.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--no-pdf-header-footer",
)


class PdfUnavailable(Exception):
    """No Chromium here, or it could not print."""


class Refused(ValueError):
    """A URL the PDF may not load."""


def resource(url: str) -> tuple[bytes, str]:
    """The bytes and media type of a path of the dashboard the PDF may load, else Refused."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        raise Refused(f"not a dashboard resource: {url[:200]}")
    path = unquote(parts.path)
    if path == "/fonts/fonts.css":
        return font_face_css().encode(), "text/css"
    if path.startswith("/static/"):
        file = (STATIC / path.removeprefix("/static/")).resolve()
        if file.is_relative_to(STATIC) and file.is_file():
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            return file.read_bytes(), kind
    raise Refused(f"not a dashboard resource: {path[:200]}")


def font_face_css() -> str:
    """The font face, its file read from where it is installed."""
    font = fonts.khmer_font()
    css = fonts.font_face_css()
    return (
        css if font is None else css.replace('url("/fonts/khmer.ttf")', f'url("{font.as_uri()}")')
    )


def self_contained(html: str) -> str:
    """The page with each of its style sheets inlined."""

    def inline(match: re.Match[str]) -> str:
        body, kind = resource(match.group(1))
        if kind != "text/css":
            raise Refused(f"not a style sheet: {match.group(1)[:200]}")
        return f"<style>\n{body.decode()}\n</style>"

    return STYLESHEET.sub(inline, html)


def chromium() -> str | None:
    configured = os.environ.get("KOMAR_DASHBOARD_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def render_pdf(html: str) -> bytes:
    """The PDF of a page."""
    binary = chromium()
    if binary is None:
        raise PdfUnavailable("no chromium on this machine")
    page = self_contained(html)
    with tempfile.TemporaryDirectory(prefix="komar-pdf-") as folder:
        work = Path(folder)
        (work / "page.html").write_text(page, encoding="utf-8")
        out = work / "page.pdf"
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={work / 'profile'}",
            f"--print-to-pdf={out}",
            (work / "page.html").as_uri(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "HOME": folder},
        )
        try:
            code = await asyncio.wait_for(process.wait(), TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise PdfUnavailable("chromium took too long") from None
        if code != 0 or not out.is_file() or out.stat().st_size == 0:
            log.error("pdf_failed", exit_code=code)
            raise PdfUnavailable(f"chromium exited with {code}")
        return out.read_bytes()
