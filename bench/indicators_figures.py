"""What the indicators bench asks for, and how it reads the answers: the queries, the shape
and sanity of each answer, the seed's phases, the ratios and the printed table."""

from __future__ import annotations

import calendar
import json
from datetime import datetime
from typing import Any

from services.indicators import dates

TARGET_RATIO = 2.0  # the large platform's median pull within 2x of the small one's
SEED_MONTHS = 24  # seed.py's default spread of event times
SAMPLE_S = 5.0  # how often the seeding's progress is sampled (for its phases)
DETAIL, READ = "detail", "read"
# name -> (label, path template, client)
QUERIES = {
    "dvs_detail": (
        "dataValueSets KH+children, detail",
        "/v1/indicators/dataValueSets?dataSet=CP_MONTHLY&period={period}&orgUnit=KH&children=true",
        DETAIL,
    ),
    "dvs_suppressed": (
        "dataValueSets KH+children, rounded",
        "/v1/indicators/dataValueSets?dataSet=CP_MONTHLY&period={period}&orgUnit=KH&children=true",
        READ,
    ),
    "values_commune": (
        "values CP_CASE_OPEN, KH communes",
        "/v1/indicators/values?indicator=CP_CASE_OPEN&period={period}&area=KH&level=commune",
        DETAIL,
    ),
}


def answer_shape(name: str, body: bytes) -> dict[str, Any]:
    """Rows, org units, non-zero and suppressed values of an answer."""
    doc = json.loads(body)
    if name.startswith("dvs"):
        rows = doc["dataValues"]
        return {
            "rows": len(rows),
            "org_units": len({r["orgUnit"] for r in rows}),
            "nonzero": sum(1 for r in rows if r.get("value") not in (None, "0")),
            "suppressed": sum(1 for r in rows if "value" not in r),
        }
    items = doc["items"]
    return {
        "rows": len(items),
        "org_units": len({r["area"] for r in items}),
        "nonzero": sum(1 for r in items if r["value"]),
        "suppressed": sum(1 for r in items if r["suppressed"]),
    }


def check_data(period: str, children: int, bodies: dict[str, bytes]) -> dict[str, Any]:
    """The seeded population shows in the month pulled, and the answers agree.

    Registrations are spread evenly over the last SEED_MONTHS x 30 days, so the month should
    hold about children x its days / (SEED_MONTHS x 30) of them.
    """
    detail = json.loads(bodies["dvs_detail"])["dataValues"]

    def country(indicator: str) -> int:
        return sum(
            int(r["value"])
            for r in detail
            if r["dataElement"] == indicator and r["orgUnit"] == "KH" and "value" in r
        )

    registered, open_cases = country("CP_CHILD_REG"), country("CP_CASE_OPEN")
    year, month = int(period[:4]), int(period[4:])
    expected = children * calendar.monthrange(year, month)[1] / (SEED_MONTHS * 30)
    communes = json.loads(bodies["values_commune"])["items"]
    commune_sum = sum(r["value"] or 0 for r in communes)
    problems = []
    if not 0.5 * expected <= registered <= 1.5 * expected:
        problems.append(f"CP_CHILD_REG {registered} is far from the ~{expected:.0f} expected")
    if not 0 < open_cases <= children:
        problems.append(f"CP_CASE_OPEN {open_cases} is not within 1..{children}")
    if commune_sum != open_cases:
        problems.append(f"communes' CP_CASE_OPEN add up to {commune_sum}, KH says {open_cases}")
    if problems:
        raise RuntimeError(f"the seeded data does not show in {period}: {'; '.join(problems)}")
    return {
        "CP_CHILD_REG_KH": registered,
        "CP_CHILD_REG_expected": round(expected),
        "CP_CASE_OPEN_KH": open_cases,
        "CP_CASE_OPEN_communes_sum": commune_sum,
        "summary": (
            f"{period}: CP_CHILD_REG KH {registered:,} (~{expected:,.0f} expected), "
            f"CP_CASE_OPEN KH {open_cases:,} = sum over the communes"
        ),
    }


def describe_progress(sample: dict[str, Any], timeline: list[dict[str, Any]]) -> str:
    """One progress line: what is on the streams, what the rebuild has replayed."""
    parts = [f"{sample['t']:.0f} s"]
    if sample.get("stream_messages") is not None:
        parts.append(f"{sample['stream_messages']:,} events on the streams")
        if len(timeline) > 1 and timeline[-2].get("stream_messages") is not None:
            rate = (sample["stream_messages"] - timeline[-2]["stream_messages"]) / (
                sample["t"] - timeline[-2]["t"]
            )
            if rate > 0:
                parts[-1] += f" (+{rate:,.0f}/s)"
    gen = sample.get("generation")
    if gen:
        stocks = gen["stock_through"]
        stock = f", stocks through {dates.month_code(stocks)}" if stocks is not None else ""
        parts.append(
            f"generation {gen['generation']} {gen['state']}: "
            f"{gen['events_replayed']:,} replayed{stock}"
        )
    if sample.get("error"):
        parts.append(f"({sample['error']})")
    return ", ".join(parts)


def rebuild_phases(log_text: str) -> dict[str, Any]:
    """From the seed's log: when the rebuild started, rolled its stocks, and switched."""
    marks: dict[str, str] = {}
    for line in log_text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        event = entry.get("event")
        if event in (
            "indicators.rebuild_started",
            "indicators.stocks_rolled",
            "indicators.rebuilt",
        ):
            marks.setdefault(event, entry.get("timestamp", ""))
    return {"rebuild_log": marks} if marks else {}


def replay_split(seed: dict[str, Any]) -> dict[str, Any]:
    """Split the rebuild into its replay and its stock months (+ switch), to SAMPLE_S.

    The replay ends at the first sample whose generation has replayed every event on the
    streams; the stock months end when the seed logs indicators.stocks_rolled.
    """
    marks = seed.get("rebuild_log", {})
    try:
        begun = datetime.fromisoformat(marks["indicators.rebuild_started"]).timestamp()
        rolled = datetime.fromisoformat(marks["indicators.stocks_rolled"]).timestamp()
    except (KeyError, ValueError):
        return {}
    for sample in seed["timeline"]:
        gen, total = sample.get("generation"), sample.get("stream_messages")
        if gen and total and gen["state"] == "building" and gen["events_replayed"] >= total:
            replayed_by = min(sample["at"], rolled)
            return {
                "replay_s_approx": round(replayed_by - begun, 1),
                "stocks_s_approx": round(rolled - replayed_by, 1),
            }
    return {}


def ratio_rows(small: dict[str, Any], large: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Large over small, per query: of the medians (the target), and of the minima."""
    out: dict[str, dict[str, float]] = {}
    for name in QUERIES:
        a = small.get("queries", {}).get(name)
        b = large.get("queries", {}).get(name)
        if a and b and a["median_s"] and a["min_s"]:
            out[name] = {
                "median": round(b["median_s"] / a["median_s"], 3),
                "min": round(b["min_s"] / a["min_s"], 3),
            }
    return out


def report(results: dict[str, Any]) -> str:
    """The human-readable table."""
    s = results["settings"]
    sizes = results["sizes"]
    lines = [
        f"{results['machine']['cpus']} CPUs; period {s['period']} (last month); through the "
        f"gateway, {s['warmup']} warm-up + {s['repeats']} timed pulls each, one after the other",
        "",
    ]
    for key in ("small", "large"):
        seed = sizes.get(key, {}).get("seed")
        if not seed:
            continue
        added = "+" if key == "large" else " "
        rebuilt = seed.get("rebuild_s")
        lines.append(
            f"seed {added}{seed.get('children', 0):>9,} children: "
            f"{seed.get('events', 0):>9,} events published in {seed.get('publish_s', 0):.0f} s, "
            f"replayed into the aggregates in {rebuilt or 0:.0f} s (wall {seed['wall_s']:.0f} s), "
            f"then VACUUM ANALYZE {seed.get('settle_s', 0):.0f} s"
        )
        if "replay_s_approx" in seed:
            lines.append(
                f"{'':>26}rebuild: replay of every event so far ~{seed['replay_s_approx']:.0f} s, "
                f"monthly stock cells ~{seed['stocks_s_approx']:.0f} s (to {SAMPLE_S:g} s)"
            )
    lines.append("")
    header = (
        f"{'query':<38} {'children':>10} {'min s':>7} {'median s':>8} {'max s':>7} "
        f"{'MB':>6} {'rows':>8} {'non-zero':>8} {'suppr.':>7}   CPU s/pull: svc / gw / pg / other"
    )
    lines += [header, "-" * len(header)]
    for name, (label, _, _) in QUERIES.items():
        for key in ("small", "large"):
            size = sizes.get(key)
            if not size:
                continue
            row = size.get("queries", {}).get(name)
            children = f"{size['children']:,}"
            if row is None:
                lines.append(f"{label:<38} {children:>10}   {size.get('error', 'not measured')}")
                label = ""
                continue
            cpu = row["cpu_s"]
            lines.append(
                f"{label:<38} {children:>10} {row['min_s']:>7.3f} {row['median_s']:>8.3f} "
                f"{row['max_s']:>7.3f} {row['bytes'] / 1e6:>6.1f} {row['rows']:>8,} "
                f"{row['nonzero']:>8,} {row['suppressed']:>7,}   "
                f"{cpu['indicators']:.2f} / {cpu['gateway']:.2f} / {cpu['postgres']:.2f} / "
                f"{cpu['other']:.2f}"
            )
            label = ""
        ratio = results.get("ratios", {}).get(name)
        if ratio is not None:
            verdict = "ok" if ratio["median"] <= TARGET_RATIO else "ABOVE"
            lines.append(
                f"{'':<38} {'ratio':>10} {ratio['min']:>6.2f}x {ratio['median']:>7.2f}x   "
                f"target: median <= {TARGET_RATIO:g}x: {verdict}"
            )
    for key in ("small", "large"):
        checks = sizes.get(key, {}).get("checks")
        if checks:
            lines.append(f"data at {sizes[key]['children']:,}: {checks['summary']}")
    lines.append(
        "CPU s/pull: median CPU seconds of the indicators service, the gateway and PostgreSQL "
        "per pull;\n'other': CPU used meanwhile by processes outside this bench (noise)"
    )
    return "\n".join(lines)
