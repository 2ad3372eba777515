"""Charts drawn on the server: pure functions that return SVG markup.

No script, no `style` attribute (the pages' CSP forbids inline style): the drawing uses SVG
presentation attributes, and CSS classes a style sheet may refine. Every text is escaped.
Each chart is `role="img"` with a `<title>` (its accessible name) and a `<desc>`.

Small-cell protection: a point or bar marked protected (a rounded small count, which stands
for a true 0 to 9) is never drawn at a height: it is a hollow marker on the baseline
labelled with the protected marker ("small"), and its value plays no part in the drawing at
all (not in the scale either), so the SVG of a protected 0 and a protected 5 is the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from dashboard.i18n import format_number

# (label, value or None, protected). A label may hold "\n": a second line under the first.
Point = tuple[str, float | int | None, bool]
Format = Callable[[float | int], str]

INK = "#1d2733"
MUTED = "#5b6776"
GRID = "#d9dee5"
BRAND = "#1f5f8b"
PALE = "#8fb3cc"
PROTECTED_INK = "#5b6776"

WIDTH = 640
HEIGHT = 240
RIGHT, TOP, BOTTOM = 16, 22, 44
FONT = 11
CHAR_WIDTH = 6.5  # about, for the 11px sans-serif digits of the y axis


def _left(top: float, step: float, fmt: Format) -> float:
    """Room on the left for the widest label of the y axis."""
    ticks = round(top / step)
    widest = max(len(fmt(step * i)) for i in range(ticks + 1))
    return max(32.0, widest * CHAR_WIDTH + 14)


def _e(text: object) -> str:
    """Text or attribute value, escaped for XML (quotes too)."""
    return escape(str(text), quote=True)


def _n(x: float) -> str:
    """A coordinate: at most one decimal, no trailing zeros."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def nice_top(largest: float) -> tuple[float, float]:
    """The top of the y axis and its step (four or five steps of 1, 2, 2.5 or 5 × 10ⁿ,
    whole numbers for counts) for data whose largest value is `largest`."""
    if largest <= 0 or not math.isfinite(largest):
        return 10.0, 5.0
    raw = largest / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if step < 1:
        step = 1.0
    top = step * math.ceil(largest / step)
    return float(top), float(step)


def _shown(points: Sequence[Point]) -> list[float]:
    """The values that may be drawn: neither protected nor missing."""
    return [float(v) for _, v, protected in points if not protected and v is not None]


def _open(title: str, desc: str, width: int, height: int, kind: str, chart_id: str | None) -> str:
    ident = f' id="{_e(chart_id)}"' if chart_id else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg"{ident} class="chart chart-{kind}" '
        f'role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'font-size="{FONT}" font-family="sans-serif">'
        f"<title>{_e(title)}</title>" + (f"<desc>{_e(desc)}</desc>" if desc else "")
    )


def _axes(
    top: float, step: float, width: int, height: int, fmt: Format, left: float
) -> tuple[list[str], Callable[[float], float]]:
    """The y grid with its labels, and the function from a value to its y."""
    plot_h = height - TOP - BOTTOM
    base = height - BOTTOM

    def y_of(value: float) -> float:
        return base - plot_h * (value / top)

    out = ['<g class="chart-grid">']
    ticks = round(top / step)
    for i in range(ticks + 1):
        value = step * i
        y = y_of(value)
        out.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{width - RIGHT}" y2="{_n(y)}" '
            f'stroke="{GRID}" stroke-width="1"/>'
            f'<text x="{_n(left - 6)}" y="{_n(y + 4)}" text-anchor="end" fill="{MUTED}">'
            f"{_e(fmt(value))}</text>"
        )
    out.append("</g>")
    out.append(
        f'<line class="chart-baseline" x1="{_n(left)}" y1="{base}" x2="{width - RIGHT}" '
        f'y2="{base}" stroke="{MUTED}" stroke-width="1"/>'
    )
    return out, y_of


def _x_labels(points: Sequence[Point], centre: Callable[[int], float], height: int) -> list[str]:
    out = ['<g class="chart-x-labels">']
    for i, (label, _, _) in enumerate(points):
        lines = str(label).split("\n")[:2]
        x = _n(centre(i))
        y = height - BOTTOM + 16
        spans = "".join(
            f'<tspan x="{x}" dy="{0 if j == 0 else FONT + 2}">{_e(line)}</tspan>'
            for j, line in enumerate(lines)
        )
        out.append(f'<text x="{x}" y="{y}" text-anchor="middle" fill="{INK}">{spans}</text>')
    out.append("</g>")
    return out


def _protected_mark(x: float, base: float, marker: str) -> str:
    """A hollow mark on the baseline and the marker text: the same whatever the value."""
    return (
        f'<g class="chart-protected">'
        f'<rect x="{_n(x - 5)}" y="{_n(base - 10)}" width="10" height="10" fill="#fff" '
        f'stroke="{PROTECTED_INK}" stroke-width="1.5" stroke-dasharray="2 2"/>'
        f'<text x="{_n(x)}" y="{_n(base - 14)}" text-anchor="middle" fill="{PROTECTED_INK}" '
        f'font-style="italic">{_e(marker)}</text></g>'
    )


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    desc: str = "",
    marker: str = "small",
    missing: str = "—",
    width: int = WIDTH,
    height: int = HEIGHT,
    fmt: Format = format_number,
    chart_id: str | None = None,
) -> str:
    """A line over time: one point per label, each value written above its point. The
    line joins neighbouring drawn points only; a protected point breaks it and shows as
    the protected mark, a missing one (None, not protected) as `missing`."""
    top, step = nice_top(max(_shown(points), default=0.0))
    out = [_open(title, desc, width, height, "line", chart_id)]
    left = _left(top, step, fmt)
    grid, y_of = _axes(top, step, width, height, fmt, left)
    out += grid
    n = max(len(points), 1)
    band = (width - left - RIGHT) / n

    def centre(i: int) -> float:
        return left + band * (i + 0.5)

    base = height - BOTTOM
    segment: list[str] = []
    segments: list[list[str]] = []
    for i, (_, value, protected) in enumerate(points):
        if protected or value is None:
            if segment:
                segments.append(segment)
            segment = []
            continue
        segment.append(f"{_n(centre(i))},{_n(y_of(float(value)))}")
    if segment:
        segments.append(segment)
    for seg in segments:
        if len(seg) > 1:
            out.append(
                f'<polyline class="chart-line-path" points="{" ".join(seg)}" fill="none" '
                f'stroke="{BRAND}" stroke-width="2"/>'
            )
    out.append('<g class="chart-points">')
    for i, (_, value, protected) in enumerate(points):
        x = centre(i)
        if protected:
            out.append(_protected_mark(x, base, marker))
        elif value is None:
            out.append(
                f'<text class="chart-missing" x="{_n(x)}" y="{_n(base - 6)}" '
                f'text-anchor="middle" fill="{MUTED}">{_e(missing)}</text>'
            )
        else:
            y = y_of(float(value))
            out.append(
                f'<g class="chart-point"><circle cx="{_n(x)}" cy="{_n(y)}" r="3.5" '
                f'fill="{BRAND}"/><text x="{_n(x)}" y="{_n(y - 8)}" text-anchor="middle" '
                f'fill="{INK}">{_e(fmt(value))}</text></g>'
            )
    out.append("</g>")
    out += _x_labels(points, centre, height)
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    bars: Sequence[Point],
    *,
    title: str,
    desc: str = "",
    marker: str = "small",
    missing: str = "—",
    width: int = WIDTH,
    height: int = HEIGHT,
    fmt: Format = format_number,
    highlight: int | None = None,
    chart_id: str | None = None,
) -> str:
    """Vertical bars, each value written above its bar; bar `highlight` (an index) drawn
    darker than the rest. A protected bar is the protected mark on the baseline."""
    top, step = nice_top(max(_shown(bars), default=0.0))
    out = [_open(title, desc, width, height, "bar", chart_id)]
    left = _left(top, step, fmt)
    grid, y_of = _axes(top, step, width, height, fmt, left)
    out += grid
    n = max(len(bars), 1)
    band = (width - left - RIGHT) / n
    bar_w = min(band * 0.6, 64.0)
    base = height - BOTTOM

    def centre(i: int) -> float:
        return left + band * (i + 0.5)

    out.append('<g class="chart-bars">')
    for i, (_, value, protected) in enumerate(bars):
        x = centre(i)
        if protected:
            out.append(_protected_mark(x, base, marker))
        elif value is None:
            out.append(
                f'<text class="chart-missing" x="{_n(x)}" y="{_n(base - 6)}" '
                f'text-anchor="middle" fill="{MUTED}">{_e(missing)}</text>'
            )
        else:
            y = y_of(float(value))
            current = highlight is None or i == highlight
            css = "chart-bar chart-bar-current" if highlight == i else "chart-bar"
            out.append(
                f'<g class="{css}"><rect x="{_n(x - bar_w / 2)}" y="{_n(y)}" '
                f'width="{_n(bar_w)}" height="{_n(base - y)}" '
                f'fill="{BRAND if current else PALE}"/>'
                f'<text x="{_n(x)}" y="{_n(y - 5)}" text-anchor="middle" fill="{INK}">'
                f"{_e(fmt(value))}</text></g>"
            )
    out.append("</g>")
    out += _x_labels(bars, centre, height)
    out.append("</svg>")
    return "".join(out)
