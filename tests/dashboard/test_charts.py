"""The server-drawn SVG charts (dashboard/charts.py): well-formed, accessible, escaped, no
inline style, and a protected small count never drawn at a height that tells its value."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from dashboard import charts

SVG = "{http://www.w3.org/2000/svg}"
CHARTS = [charts.line_chart, charts.bar_chart]
Draw = Callable[..., str]


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


@pytest.mark.parametrize("draw", CHARTS)
def test_a_chart_is_well_formed_svg_with_a_role_and_a_title(draw: Draw) -> None:
    svg = draw([("Jan", 12, False), ("Feb", 30, False)], title="Registrations", desc="Two months")
    root = parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    assert root.get("viewBox")
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == "Registrations"
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert desc.text == "Two months"
    assert "12" in texts(root)
    assert "30" in texts(root)


@pytest.mark.parametrize("draw", CHARTS)
def test_no_element_carries_a_style_attribute(draw: Draw) -> None:
    root = parse(draw([("a", 1, False), ("b", None, True), ("c", None, False)], title="t"))
    for element in root.iter():
        assert "style" not in element.attrib, element.tag


@pytest.mark.parametrize("draw", CHARTS)
def test_every_text_is_escaped(draw: Draw) -> None:
    nasty = "<script>alert(\"x\")</script> & 'quoted'"
    root = parse(
        draw(
            [(nasty, 5, False), ("a<b>\nc&d", 7, True)],
            title=nasty,
            desc=nasty,
            marker="<10 & more",
            chart_id='x" onload="alert(1)',
        )
    )
    assert root.find(f"{SVG}title").text == nasty  # type: ignore[union-attr]
    assert not list(root.iter("script"))
    assert not list(root.iter(f"{SVG}script"))
    assert not any(k.startswith("on") for e in root.iter() for k in e.attrib)
    assert root.get("id") == 'x" onload="alert(1)'
    shown = texts(root)
    assert nasty in shown
    assert "<10 & more" in shown
    assert "a<b>c&d" in shown  # a two-line label: both lines, as text


@pytest.mark.parametrize("draw", CHARTS)
@pytest.mark.parametrize("hidden", [0, 5, None])
def test_a_protected_point_draws_the_same_whatever_its_value(
    draw: Draw, hidden: int | None
) -> None:
    """A protected 0, 5 or None gives the very same SVG: nothing of the value is drawn,
    neither its height nor its effect on the scale."""
    reference = draw([("Jan", 0, True), ("Feb", 20, False), ("Mar", 0, True)], title="t")
    svg = draw([("Jan", hidden, True), ("Feb", 20, False), ("Mar", hidden, True)], title="t")
    assert svg == reference


@pytest.mark.parametrize("draw", CHARTS)
def test_a_protected_point_is_the_marker_on_the_baseline(draw: Draw) -> None:
    root = parse(draw([("Jan", 5, True), ("Feb", 40, False)], title="t", marker="<10"))
    marks = [g for g in root.iter(f"{SVG}g") if g.get("class") == "chart-protected"]
    assert len(marks) == 1
    mark = marks[0]
    assert [t.text for t in mark.iter(f"{SVG}text")] == ["<10"]
    (box,) = mark.iter(f"{SVG}rect")
    assert box.get("fill") == "#fff"  # hollow
    baseline = next(e for e in root.iter(f"{SVG}line") if e.get("class") == "chart-baseline").get(
        "y1"
    )
    assert float(box.get("y", "0")) + float(box.get("height", "0")) == float(baseline or 0)
    assert "5" not in texts(root)  # the hidden value is written nowhere
    # the drawn value's point or bar is still there
    assert "40" in texts(root)


def test_only_unprotected_bars_have_a_bar_and_the_highlight_is_marked() -> None:
    root = parse(
        charts.bar_chart(
            [("Q1", 15, False), ("Q2", 5, True), ("Q3", 25, False)], title="t", highlight=2
        )
    )
    bars = [g for g in root.iter(f"{SVG}g") if (g.get("class") or "").startswith("chart-bar ")]
    bars += [g for g in root.iter(f"{SVG}g") if g.get("class") == "chart-bar"]
    assert len(bars) == 2
    assert [g.get("class") for g in bars].count("chart-bar chart-bar-current") == 1
    heights = sorted(float(next(g.iter(f"{SVG}rect")).get("height", "0")) for g in bars)
    assert heights[0] < heights[1]  # 15 below 25, on one scale


def test_the_line_breaks_at_a_protected_point() -> None:
    root = parse(
        charts.line_chart(
            [("a", 10, False), ("b", 20, False), ("c", 0, True), ("d", 30, False)], title="t"
        )
    )
    lines = list(root.iter(f"{SVG}polyline"))
    assert len(lines) == 1  # a–b; d stands alone: nothing is drawn through c
    assert len(lines[0].get("points", "").split()) == 2


def test_an_all_protected_chart_has_a_fixed_scale_and_no_value() -> None:
    root = parse(charts.line_chart([(m, 5, True) for m in ("a", "b", "c")], title="t"))
    shown = texts(root)
    assert shown.count("small") == 3
    assert set(shown) == {"0", "5", "10", "small", "a", "b", "c"}  # the axis, marks, labels
    assert not list(root.iter(f"{SVG}circle"))


def test_a_missing_value_is_a_dash_not_a_zero() -> None:
    root = parse(charts.bar_chart([("a", None, False), ("b", 10, False)], title="t"))
    assert "—" in texts(root)


@pytest.mark.parametrize(
    ("largest", "top"), [(0, 10), (3, 3), (10, 10), (37, 40), (95, 100), (1_250_000, 1_500_000)]
)
def test_the_scale_is_round_and_covers_the_data(largest: float, top: float) -> None:
    got, step = charts.nice_top(largest)
    assert got == top
    assert got >= largest
    assert step >= 1
    assert (got / step) == int(got / step)
