"""The Khmer font, served from where the project installs it (Debian's fonts-khmeros).

A browser that has no Khmer font of its own downloads it once, and only for a page with
Khmer text on it (the font face covers the Khmer blocks alone). Without the package on the
server the face is left out of the style sheet, so no page asks for a file that is not there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

router = APIRouter(include_in_schema=False)

FAMILY = "Khmer OS Content"
# Debian's fonts-khmeros (apt), in the order tried: the body-text face first.
CANDIDATES = (
    Path("/usr/share/fonts/truetype/khmeros/KhmerOScontent.ttf"),
    Path("/usr/share/fonts/truetype/khmeros/KhmerOS.ttf"),
)
KHMER_RANGES = "U+1780-17FF, U+19E0-19FF, U+200B-200D, U+25CC"


@lru_cache(maxsize=1)
def khmer_font() -> Path | None:
    """The installed Khmer font file, or None."""
    return next((p for p in CANDIDATES if p.is_file()), None)


def font_face_css() -> str:
    if khmer_font() is None:
        return "/* no Khmer font installed on the server: apt-get install fonts-khmeros */\n"
    return (
        "@font-face {\n"
        f'  font-family: "Komar Khmer";\n'
        f'  src: local("{FAMILY}"), local("Khmer OS"),\n'
        '       url("/fonts/khmer.ttf") format("truetype");\n'
        f"  unicode-range: {KHMER_RANGES};\n"
        "  font-display: swap;\n"
        "}\n"
    )


@router.get("/fonts/fonts.css")
async def fonts_css() -> Response:
    return Response(
        font_face_css(),
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@router.get("/fonts/khmer.ttf")
async def khmer_ttf() -> Response:
    path = khmer_font()
    if path is None:
        return Response(status_code=404)
    return FileResponse(path, media_type="font/ttf")
