"""The verdicts and the printed report of `make soak` (bench/soak.py)."""

from __future__ import annotations

from typing import Any

P99_GROWTH = 1.5  # the last minute's p99 over the first's
RSS_GROWTH = 0.20  # a process's resident memory, end over start
SERVERS = ("postgres", "nats")  # shown, not judged: their caches fill as the data grows


def verdicts(results: dict[str, Any]) -> dict[str, bool]:
    """Issue 12's soak targets, each true or false (false when not measured)."""
    checks = results.get("checks", {})
    minutes = results.get("per_minute", [])
    start, end = results.get("memory_start", {}), results.get("memory_end", {})
    # Komar's own processes; PostgreSQL's and NATS's caches fill as the data grows.
    growth = [
        end[name]["rss_mib"] / start[name]["rss_mib"] - 1
        for name in start
        if name in end and start[name]["rss_mib"] and name not in SERVERS
    ]
    return {
        "ran": "failure" not in results and bool(minutes),
        "no errors": bool(results.get("parts"))
        and all(p["errors"] == 0 for p in results["parts"].values()),
        "children == CP_CHILD_REG": checks.get("children", {}).get("ok", False),
        "ledger verified": checks.get("ledger", {}).get("ok", False),
        "no event lost or applied twice": checks.get("events", {}).get("ok", False),
        f"last p99 <= {P99_GROWTH} x first": len(minutes) > 0
        and minutes[-1]["p99_ms"] <= P99_GROWTH * minutes[0]["p99_ms"],
        f"Komar RSS growth < {RSS_GROWTH:.0%}": bool(growth) and max(growth) < RSS_GROWTH,
    }


def report(results: dict[str, Any]) -> str:
    s = results["settings"]
    lines = [
        f"soak: {s['seconds']:g} s of mixed load through the gateway at {s['load']:.0%} of the "
        f"mix's measured maximum, {s['children']:,} children seeded, "
        f"{results['machine']['cpus']} CPUs"
    ]
    if "failure" in results:
        lines.append(f"FAILED: {results['failure']}")
    seeding = results.get("seeding")
    if seeding:
        lines.append(
            f"seeding: {seeding['children']:,} children accepted in {seeding['accepted_s']} s, "
            f"counted by every consumer after {seeding['counted_s']} s"
        )
    if results.get("parts"):
        lines += ["", f"{'part':<18} {'max /s':>8} {'paced /s':>9} {'got /s':>8} {'errors':>6}"]
        for name, part in results["parts"].items():
            lines.append(
                f"{name:<18} {results['maximum_per_s'][name]:>8,.1f} "
                f"{results['rates_per_s'][name]:>9,.1f} {part['per_s']:>8,.1f} {part['errors']:>6}"
            )
            lines += [f"{'':<18} {sample[:110]}" for sample in part["error_samples"][:2]]
        lines.append("(per s: requests, or whole workflows for referral and grant)")
    if results.get("per_minute"):
        lines += ["", f"{'minute':>6} {'requests':>9} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}"]
        for row in results["per_minute"]:
            lines.append(
                f"{row['minute']:>6} {row['requests']:>9,} {row['errors']:>6} "
                f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f}"
            )
        lines.append(f"catch-up after the last answer: {results.get('catch_up_s')} s")
    start, end = results.get("memory_start", {}), results.get("memory_end", {})
    if start and end:
        lines += ["", f"{'RSS MiB':<12} {'start':>8} {'end':>8} {'growth':>7}"]
        for name in start:
            a, b = start[name]["rss_mib"], end.get(name, {}).get("rss_mib", 0.0)
            growth = f"{(b / a - 1):+.0%}" if a else "n/a"
            lines.append(f"{name:<12} {a:>8,.0f} {b:>8,.0f} {growth:>7}")
        lines.append(
            "(without shared memory; postgres summed over its processes; the verdict judges "
            "Komar's processes only)"
        )
    checks = results.get("checks")
    if checks:
        c = checks["children"]
        lines += [
            "",
            f"children: registry {c['registry']:,}, CP_CHILD_REG {c['CP_CHILD_REG']:,} "
            f"(exact, years {c['years']})",
            f"ledger: {checks['ledger']['verifier']}",
            "events per consumer (stream = inbox + dead letters):",
        ]
        for durable, e in checks["events"]["consumers"].items():
            lines.append(
                f"  {durable:<26} stream {e['stream']:>8,} inbox {e['inbox']:>8,} "
                f"dead {e['dead_letters']:>4}  {'ok' if e['ok'] else 'MISMATCH'}"
            )
    lines += ["", "verdicts:"]
    lines += [f"  {'ok  ' if ok else 'FAIL'} {name}" for name, ok in results["verdicts"].items()]
    return "\n".join(lines)
