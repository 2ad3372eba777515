"""The figures of `python -m bench` as ratios and as the table it prints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bench import workflows

TARGETS = {
    "ceiling": "(a) ceiling: FastAPI + asyncpg",
    "registry": "(b) registry, direct",
    "gateway": "(c) registry via gateway",
}
# name -> (label, service under test, steps)
WORKFLOWS = {
    "referral": ("(d) referral: create, accept", "referrals", workflows.REFERRAL_STEPS),
    "grant": ("(e) grant: request, approve, disburse", "funds", workflows.GRANT_STEPS),
}
TARGET_RATIO, AIM_RATIO = 0.5, 0.7
BUSY_OTHER_CORES = 0.25  # outside load above which the table warns that req/s is distorted


def rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every measured row (target x operation)."""
    for data in results["targets"].values():
        for op in ("create", "read"):
            if isinstance(data.get(op), dict):
                yield data[op]


def workflow_rows(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every measured workflow."""
    for data in results.get("workflows", {}).values():
        if "steps" in data:
            yield data


def workflow_ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per workflow: its request rate (every step's requests) over the ceiling's create rate,
    and the inverse ratio of serving CPU per request. Also stored on each step."""
    base = results["targets"]["ceiling"].get("create")
    out: dict[str, dict[str, float | None]] = {}
    for name, (label, _, _) in WORKFLOWS.items():
        data = results["workflows"].get(name, {})
        key = f"{label[1]}/a steps"  # "(d) referral…" -> "d/a steps"
        if not isinstance(base, dict) or not base["rps"] or "steps" not in data:
            out[key] = {"throughput": None, "cpu_cost": None}
            continue
        for step in data["steps"].values():
            step["ratio_to_ceiling_create"] = round(step["rps"] / base["rps"], 3)
        cost = data["server_cpu_ms_per_request"]
        out[key] = {
            "throughput": round(data["step_rps"] / base["rps"], 3),
            "cpu_cost": round(base["server_cpu_ms_per_request"] / cost, 3) if cost else None,
        }
        data["step_ratio_to_ceiling_create"] = out[key]["throughput"]
        data["cpu_ratio_to_ceiling_create"] = out[key]["cpu_cost"]
    return out


def ratios(targets: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """b/a, c/a (and c/b) per operation: by throughput, and by server CPU per request."""
    pairs = [("b/a", "registry", "ceiling"), ("c/a", "gateway", "ceiling")]
    pairs.append(("c/b", "gateway", "registry"))
    out: dict[str, dict[str, float | None]] = {}
    for name, top, base in pairs:
        for op in ("create", "read"):
            num, den = targets[top].get(op), targets[base].get(op)
            if not (isinstance(num, dict) and isinstance(den, dict)) or not den["rps"]:
                out[f"{name} {op}"] = {"throughput": None, "cpu_cost": None}
                continue
            cost = num["server_cpu_ms_per_request"]
            out[f"{name} {op}"] = {
                "throughput": round(num["rps"] / den["rps"], 3),
                # The inverse ratio of serving CPU per request: what the throughput ratio
                # would be on a machine where the serving side had all the CPU.
                "cpu_cost": round(den["server_cpu_ms_per_request"] / cost, 3) if cost else None,
            }
    return out


def report(results: dict[str, Any]) -> str:
    """The human-readable table."""
    lines = []
    gen = results["generator_ceiling"]
    s = results["settings"]
    lines.append(
        f"{results['machine']['cpus']} CPUs, {s['connections']} keep-alive connections, "
        f"{s['warmup_s']:g} s warm-up + {s['duration_s']:g} s measured per row"
    )
    if gen:
        lines.append(
            f"load generator ceiling (GET on a trivial responder): {gen['rps']:,.0f} req/s, "
            f"p50 {gen['p50_ms']:.2f} ms, using {gen['cores']['loadgen']:.2f} core"
        )
    lines.append("")
    header = (
        f"{'target':<30} {'op':<6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'srv CPU':>8}   cores busy: gw / app / pg / nats / loadgen / other"
    )
    lines += [header, f"{'':<30} {'':<6} {'':>7} {'':>7} {'':>7} {'':>6} {'ms/req':>8}"]
    lines.append("-" * len(header))
    for target, label in TARGETS.items():
        data = results["targets"][target]
        for op in ("create", "read"):
            row = data.get(op)
            if row is None:
                reason = data.get("error", "not measured")
                lines.append(f"{label:<30} {op:<6} {'-':>7}   {reason[:80]}")
                continue
            used = _cores_busy(
                row["cores"], ("gateway", "app", "postgres", "nats", "loadgen", "other")
            )
            lines.append(
                f"{label:<30} {op:<6} {row['rps']:>7,.0f} {row['p50_ms']:>7.1f} "
                f"{row['p99_ms']:>7.1f} {row['errors']:>6} "
                f"{row['server_cpu_ms_per_request']:>8.2f}   {used}"
            )
    lines += workflow_report(results)
    lines += ["", f"{'ratio':<11} {'req/s':>6} {'by CPU/req':>11}"]
    for name, value in results["ratios"].items():
        tput, cost = value["throughput"], value["cpu_cost"]
        note = ""
        if name.startswith("c/a"):
            verdict = "n/a" if tput is None else ("ok" if tput >= TARGET_RATIO else "BELOW")
            note = f"   target >= {TARGET_RATIO} (aim {AIM_RATIO}): {verdict}"
        shown = [f"{v:.2f}" if v is not None else "n/a" for v in (tput, cost)]
        if name.endswith(" steps"):
            note = "   every step's request over the ceiling's create"
        lines.append(f"{name:<11} {shown[0]:>6} {shown[1]:>11}{note}")
    lines.append(
        "by CPU/req: the ceiling's serving CPU per request over the target's (what req/s would "
        "give if\nthe serving side had the machine to itself); 'other' is CPU used by processes "
        "outside the bench"
    )
    measured = [*rows(results), *workflow_rows(results)]
    busiest = max((row["cores"]["other"] for row in measured), default=0.0)
    if busiest > BUSY_OTHER_CORES:
        lines.append(
            f"warning: processes outside the bench used up to {busiest:.2f} of "
            f"{results['machine']['cpus']} cores during a row;\nreq/s (and its ratios) are "
            "understated and noisy there, the CPU/req figures much less so"
        )
    fastest = max((row["rps"] for row in rows(results)), default=0.0)
    fastest = max([fastest, *(row["step_rps"] for row in workflow_rows(results))])
    if gen and fastest > 0.5 * gen["rps"]:
        lines.append(
            f"note: the fastest row ({fastest:,.0f} req/s) is over half the generator's "
            "ceiling: the generator may be part of the limit there"
        )
    return "\n".join(lines)


def workflow_report(results: dict[str, Any]) -> list[str]:
    """The workflows' part of the table: one line per workflow, then one per step."""
    if not results.get("workflows"):
        return []
    lines = ["", "workflows through the gateway, each worker running one after the other"]
    header = (
        f"{'workflow':<38} {'row':<10} {'per s':>6} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}"
        f" {'srv CPU':>8} {'/ (a)':>6}   cores busy: gw / app / services / pg / nats / "
        "loadgen / other"
    )
    lines += [header, f"{'':<38} {'':<10} {'':>6} {'':>7} {'':>7} {'':>6} {'ms':>8} {'create':>6}"]
    lines.append("-" * len(header))
    for name, (label, _, _) in WORKFLOWS.items():
        data = results["workflows"].get(name, {})
        if "steps" not in data:
            reason = data.get("error", "not measured")
            lines.append(f"{label:<38} {'workflow':<10} {'-':>6}   {reason[:80]}")
            continue
        used = _cores_busy(
            data["cores"], ("gateway", "app", "services", "postgres", "nats", "loadgen", "other")
        )
        cpu = data["server_cpu_ms_per_workflow"]
        lines.append(
            f"{label:<38} {'workflow':<10} {data['workflows_per_s']:>6,.1f} "
            f"{data['p50_ms']:>7.1f} {data['p99_ms']:>7.1f} {data['errors']:>6} "
            f"{_num(cpu, 8)} {'':>6}   {used}"
        )
        for index, (step, row) in enumerate(data["steps"].items(), 1):
            lines.append(
                f"{'':<38} {f'{index} {step}':<10} {row['rps']:>6,.1f} {row['p50_ms']:>7.1f} "
                f"{row['p99_ms']:>7.1f} {row['errors']:>6} {'':>8} "
                f"{_num(row.get('ratio_to_ceiling_create'), 6)}"
            )
        lines.append(
            f"{'':<38} {'all steps':<10} {data['step_rps']:>6,.1f} {'':>7} {'':>7} {'':>6} "
            f"{_num(data['server_cpu_ms_per_request'], 8)} "
            f"{_num(data.get('step_ratio_to_ceiling_create'), 6)}"
        )
    lines.append(
        "srv CPU: per workflow on its line, per request on 'all steps'; / (a) create: req/s "
        "over the ceiling's\ncreate req/s; 'services': the other Komar services (their event "
        "consumers)"
    )
    return lines


def _cores_busy(cores: dict[str, float], groups: tuple[str, ...]) -> str:
    """The cores each process group kept busy, in the table's column order."""
    return " / ".join(f"{cores[k]:.2f}" if k in cores else "  - " for k in groups)


def _num(value: float | None, width: int) -> str:
    """A figure right-aligned in `width`, or n/a."""
    return f"{value:>{width}.2f}" if value is not None else f"{'n/a':>{width}}"
