"""The figures of `python -m bench` as ratios to the ceiling and as the table it prints."""

from __future__ import annotations

from typing import Any

from bench import workflows

# name -> (label, service under test, steps)
WORKFLOWS = {
    "referral": ("referral: create, accept", "referrals", workflows.REFERRAL_STEPS),
    "grant": ("grant: request, approve, disburse", "funds", workflows.GRANT_STEPS),
    "visit": ("casework: a visit", "casework", workflows.VISIT_STEPS),
}
# Issue 12's targets, printed beside each ratio.
TARGETS = {
    "spread sustained / ceiling create": 0.5,
    "crowded sustained / spread sustained": 0.9,
    "workflow step / ceiling create": 0.4,
}
BUSY_OTHER_CORES = 0.25  # outside load above which the table warns that req/s is distorted


def _div(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top and bottom else None


def ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Every ratio of the run, each of two figures measured in this same run."""
    ceiling = results.get("ceiling", {})
    create = ceiling.get("create", {}).get("rps")
    read = ceiling.get("read", {}).get("rps")
    spread = results.get("spread", {})
    crowded = results.get("crowded", {})
    out = {
        "spread accepted / ceiling create": _div(spread.get("create", {}).get("rps"), create),
        "spread sustained / ceiling create": _div(
            spread.get("create", {}).get("sustained_rps"), create
        ),
        "spread read / ceiling read": _div(spread.get("read", {}).get("rps"), read),
        "crowded sustained / ceiling create": _div(crowded.get("sustained_rps"), create),
        "crowded sustained / spread sustained": _div(
            crowded.get("sustained_rps"), spread.get("create", {}).get("sustained_rps")
        ),
        "bulk counted / ceiling create": _div(results.get("bulk", {}).get("counted_per_s"), create),
    }
    for name, data in results.get("workflows", {}).items():
        for step, row in data.get("steps", {}).items():
            row["ratio_to_ceiling_create"] = _div(row["rps"], create)
            out[f"{name} {step} / ceiling create"] = row["ratio_to_ceiling_create"]
        if "steps" in data:
            out[f"{name} sustained steps / ceiling create"] = _div(
                data.get("sustained_step_rps"), create
            )
    return out


def _n(value: Any, width: int, digits: int = 1) -> str:
    if value is None:
        return f"{'n/a':>{width}}"
    if isinstance(value, str):
        return f"{value:>{width}}"
    return f"{value:>{width},.{digits}f}"


def report(results: dict[str, Any]) -> str:
    """The human-readable table."""
    s = results["settings"]
    lines = [
        f"{results['machine']['cpus']} CPUs, {s['connections']} keep-alive connections, "
        f"{s['warmup_s']:g} s warm-up + {s['duration_s']:g} s measured per row"
        + (" (BENCH_SMALL: a try, not a measurement)" if s.get("small") else "")
    ]
    gen = results.get("generator_ceiling")
    if gen:
        lines.append(
            f"load generator ceiling (GET on a trivial responder): {gen['rps']:,.0f} req/s"
        )
    head = (
        f"{'scenario':<40} {'req/s':>8} {'sustained':>9} {'catch-up':>8} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'errors':>6}"
    )
    lines += ["", head, f"{'':<40} {'accepted':>8} {'/s':>9} {'s':>8}", "-" * len(head)]

    def row(label: str, data: dict[str, Any] | None, sustained: str = "sustained_rps") -> None:
        if not data or "rps" not in data:
            lines.append(f"{label:<40} {'-':>8}   {(data or {}).get('error', 'not measured')}")
            return
        lines.append(
            f"{label:<40} {_n(data['rps'], 8, 0)} {_n(data.get(sustained), 9)} "
            f"{_n(data.get('catch_up_s'), 8)} {_n(data['p50_ms'], 7)} {_n(data['p99_ms'], 7)} "
            f"{data['errors']:>6}"
        )

    ceiling = results.get("ceiling", {})
    row("ceiling (FastAPI + asyncpg) create", ceiling.get("create"))
    row("ceiling (FastAPI + asyncpg) read", ceiling.get("read"))
    row("spread: registrations via gateway", results.get("spread", {}).get("create"))
    row("spread: reads by id via gateway", results.get("spread", {}).get("read"))
    row("spread: name searches via gateway", results.get("spread", {}).get("search"))
    crowded = results.get("crowded")
    row(f"crowded: {results['settings']['crowded_children']:,} already in a commune", crowded)
    for name, (label, _, _) in WORKFLOWS.items():
        data = results.get("workflows", {}).get(name, {})
        if "steps" not in data:
            lines.append(f"{label:<40} {'-':>8}   {data.get('error', 'not measured')}")
            continue
        lines.append(
            f"{label:<40} {_n(data['step_rps'], 8, 0)} {_n(data.get('sustained_step_rps'), 9)} "
            f"{_n(data.get('catch_up_s'), 8)} {_n(data['p50_ms'], 7)} {_n(data['p99_ms'], 7)} "
            f"{data['errors']:>6}   ({data['workflows_per_s']:,.1f} workflows/s)"
        )
        for step, figures in data["steps"].items():
            row(f"  {step}", figures)
    row("indicator pulls (province level)", results.get("indicator_pulls"))
    lines += _lag(results.get("lag")) + _webhooks(results.get("webhooks"))
    lines += _bulk(results.get("bulk"))
    lines += _cpu(results)
    lines += _memory(results.get("memory"))
    lines += _storage(results.get("storage"))
    lines += ["", "ratios (both figures from this run)"]
    for name, value in results.get("ratios", {}).items():
        target = TARGETS.get(name) or (
            TARGETS["workflow step / ceiling create"]
            if name.count(" / ceiling create")
            and name.split()[0] in WORKFLOWS
            and "sustained" not in name
            else None
        )
        verdict = ""
        if target is not None:
            verdict = f"   target >= {target}: " + (
                "n/a" if value is None else ("ok" if value >= target else "BELOW")
            )
        lines.append(f"  {name:<42} {_n(value, 6, 2)}{verdict}")
    lines.append(
        "accepted: answered by the gateway in the window; sustained: children (or requests) over\n"
        "the time until every consumer had applied the last event; catch-up: after the last answer"
    )
    busiest = max(
        (r["cores"].get("other", 0.0) for r in _rows(results) if "cores" in r), default=0.0
    )
    if busiest > BUSY_OTHER_CORES:
        lines.append(
            f"warning: processes outside the bench used up to {busiest:.2f} cores during a row: "
            "req/s and ratios are understated and noisy"
        )
    for failure in results.get("failures", []):
        lines.append(f"FAILED {failure}")
    return "\n".join(lines)


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = [r for r in results.get("ceiling", {}).values() if isinstance(r, dict)]
    out += [r for r in results.get("spread", {}).values() if isinstance(r, dict)]
    out += [results["indicator_pulls"]] if isinstance(results.get("indicator_pulls"), dict) else []
    out += [results["crowded"]] if isinstance(results.get("crowded"), dict) else []
    return out + [w for w in results.get("workflows", {}).values() if "steps" in w]


def _lag(lag: dict[str, Any] | None) -> list[str]:
    if not lag:
        return ["", "event lag: not measured"]
    load = lag["load"]
    lines = [
        "",
        f"event lag, commit to applied, registrations paced at {lag['target_rps']:,.0f}/s "
        f"(got {load['rps']:,.0f}/s, p99 {load['p99_ms']:.0f} ms, catch-up {load['catch_up_s']} s)",
    ]
    if lag["consumers"] is None:
        return [*lines, "  n/a: the services publish no komar_events_lag_seconds histogram"]
    for consumer, q in lag["consumers"].items():
        if not q["events"]:
            lines.append(f"  {consumer:<40} no events in the window")
            continue
        lines.append(
            f"  {consumer:<40} p50 {_n(q['p50_s'], 6, 3)} s  p99 {_n(q['p99_s'], 6, 3)} s"
            f"  ({q['events']:,} events; bucket upper bounds)"
        )
    return lines


def _webhooks(hooks: dict[str, Any] | None) -> list[str]:
    if not hooks:
        return ["", "webhooks: not measured"]
    return [
        "",
        f"webhooks to a local receiver: registrations paced at {hooks['target_rps']:,.0f}/s "
        f"(got {hooks['paced_rps']:,.0f}/s), commit to delivered p50 "
        f"{_n(hooks['lag_p50_ms'], 1, 0).strip()} ms, "
        f"p99 {_n(hooks['lag_p99_ms'], 1, 0).strip()} ms "
        f"({hooks['deliveries']:,} deliveries); a burst of {hooks['burst']:,} children via "
        f"children:batch delivered at {_n(hooks['burst_delivered_per_s'], 1, 0).strip()}/s, the "
        f"last {hooks['burst_last_after_s']} s after the import's last answer; "
        f"{hooks['repeats']} repeated webhook-ids",
    ]


def _bulk(bulk: dict[str, Any] | None) -> list[str]:
    if not bulk:
        return ["", "bulk import: not measured"]
    return [
        "",
        f"bulk import, {bulk['children']:,} children via children:batch from one client: "
        f"accepted {bulk['accepted_per_s']:,.0f}/s ({bulk['accepted_s']} s), counted by every "
        f"consumer {bulk['counted_per_s']:,.0f}/s ({bulk['catch_up_after_last_s']} s after the "
        "last answer)",
    ]


CPU_GROUPS = [
    "gateway",
    "registry",
    "referrals",
    "funds",
    "indicators",
    "webhooks",
    "casework",
    "postgres",
    "nats",
]
# The loadgen's groups during a workflow window: the service under test is "app".
WORKFLOW_GROUPS = ["gateway", "app", "services", "postgres", "nats"]


def _cpu(results: dict[str, Any]) -> list[str]:
    """CPU ms per registration by process, from the first request until every consumer had
    applied the last event (what a capacity plan multiplies); CPU ms per workflow step by
    group during the window (the consumers' catch-up after it not included)."""
    rows = {
        "spread": results.get("spread", {}).get("create", {}),
        "crowded": results.get("crowded") or {},
        "lag (paced)": results.get("lag") or {},
        "bulk": results.get("bulk") or {},
    }
    head = f"{'per child':<14}" + "".join(f"{g:>11}" for g in [*CPU_GROUPS, "total"])
    lines = ["", "CPU ms per registration, by process, until every consumer caught up", head]
    for label, data in rows.items():
        cpu = data.get("cpu_ms_per_child")
        if cpu:
            lines.append(
                f"{label:<14}" + "".join(_n(cpu.get(g), 11, 2) for g in [*CPU_GROUPS, "total"])
            )
    head = f"{'per step':<14}" + "".join(f"{g:>11}" for g in [*WORKFLOW_GROUPS, "total"])
    lines += ["CPU ms per workflow step, by group, in the window ('app' = the service)", head]
    for name, data in results.get("workflows", {}).items():
        cores, rps = data.get("cores"), data.get("step_rps")
        if not cores or not rps:
            continue
        ms = {g: cores.get(g, 0.0) / rps * 1000 for g in WORKFLOW_GROUPS}
        ms["total"] = sum(ms.values())
        lines.append(f"{name:<14}" + "".join(_n(ms[g], 11, 2) for g in [*WORKFLOW_GROUPS, "total"]))
    return lines


def _memory(memory: dict[str, Any] | None) -> list[str]:
    if not memory:
        return []
    parts = [f"{name} {m['peak_mib']:,.0f}" for name, m in memory.items()]
    return ["", "peak RSS, MiB (postgres: summed over its processes): " + ", ".join(parts)]


def _storage(storage: dict[str, Any] | None) -> list[str]:
    if not storage or not storage.get("children"):
        return []
    n = storage["children"]
    mib = 1024 * 1024
    schemas = ", ".join(f"{k} {v / mib:,.0f}" for k, v in storage["schemas"].items())
    streams = ", ".join(f"{k} {v / mib:,.0f}" for k, v in storage["streams"].items())
    total = sum(storage["schemas"].values())
    return [
        f"storage at {n:,} children: PostgreSQL {total / mib:,.0f} MiB ({total / n:,.0f} bytes "
        f"per child, every schema), by schema MiB: {schemas}; JetStream MiB: {streams}"
    ]
