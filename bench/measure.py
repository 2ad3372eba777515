"""Runs of the load generator (bench/loadgen.py, in its own process) and the figures drawn
from them: request rate, latency quantiles, and serving CPU per request or workflow.

Environment: BENCH_SECONDS (measured window, default 10), BENCH_WARMUP (default 2),
BENCH_CONNECTIONS (default 32; also the workers of a workflow); BENCH_SMALL=1 shrinks them
(4 s, 1 s, 8 connections).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from deploy.local.supervisor import REPO_ROOT

# BENCH_SMALL=1: a try at small sizes (every scenario shrinks; see bench/scenarios.py).
SMALL = os.environ.get("BENCH_SMALL", "") not in ("", "0")
SECONDS = float(os.environ.get("BENCH_SECONDS", "4" if SMALL else "10"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "1" if SMALL else "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8" if SMALL else "32"))


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of sorted values."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _latencies(ordered: list[float]) -> dict[str, float]:
    """The median and the 99th percentile of sorted latencies, in ms."""
    return {
        "p50_ms": round(quantile(ordered, 0.50), 2),
        "p99_ms": round(quantile(ordered, 0.99), 2),
    }


def latencies(ordered: list[float]) -> dict[str, float]:
    """The median and the 99th percentile of sorted latencies, in ms."""
    return _latencies(ordered)


def _outcomes(raw: dict[str, Any]) -> dict[str, Any]:
    """How the requests of a job (or of one workflow step) were answered."""
    return {key: raw[key] for key in ("requests", "errors", "statuses", "error_samples")}


class LoadGenerator:
    """Runs the generator process on one job at a time; its job and result files go in `jobs`."""

    def __init__(self, jobs: Path) -> None:
        self.jobs = jobs
        self.process: subprocess.Popen[bytes] | None = None

    def run(self, label: str, job: dict[str, Any], watch: dict[str, list[int]]) -> dict[str, Any]:
        """Run the generator process on `job`; its raw figures."""
        job = {
            "connections": CONNECTIONS,
            "warmup_s": WARMUP,
            "duration_s": SECONDS,
            "watch": watch,
            **job,
        }
        job_path, result_path = self.jobs / f"{label}.job.json", self.jobs / f"{label}.result.json"
        job_path.write_text(json.dumps(job))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", "run", str(job_path), str(result_path)],
            cwd=REPO_ROOT,
        )
        code = self.process.wait(timeout=job["warmup_s"] + job["duration_s"] + 300)
        self.process = None
        if code != 0:
            raise RuntimeError(f"load generator failed on {label} (exit code {code})")
        raw: dict[str, Any] = json.loads(result_path.read_text())
        return raw

    def kill(self) -> None:
        """Stop a run that is still going (the bench is stopping)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def request_figures(raw: dict[str, Any], watch: dict[str, list[int]]) -> dict[str, Any]:
    """A single-request job's figures and who used the CPU."""
    ordered = sorted(raw["latencies_ms"])
    rps = raw["requests"] / raw["duration_s"]
    cores: dict[str, float] = raw["cores"]
    server = sum(cores[name] for name in watch)
    return {
        "rps": round(rps, 1),
        **_latencies(ordered),
        **_outcomes(raw),
        # Cores busy on average over the measured window, per process group.
        "cores": cores,
        # CPU time the serving side (gateway, app, PostgreSQL, NATS) spent per request:
        # unlike req/s, barely moved by whatever else runs on the machine.
        "server_cpu_ms_per_request": round(server / rps * 1000, 3) if rps else None,
        "ids": raw["ids"],
        **_times(raw),
    }


def workflow_figures(raw: dict[str, Any], watch: dict[str, list[int]]) -> dict[str, Any]:
    """A workflow job's figures, per workflow and per step."""
    duration = raw["duration_s"]
    flow = raw["workflows"]
    ordered = sorted(flow["latencies_ms"])
    wps = flow["completed"] / duration
    step_rps = raw["requests"] / duration
    cores: dict[str, float] = raw["cores"]
    server = sum(cores[name] for name in watch)
    steps = {}
    samples = []
    for step in raw["steps"]:
        latencies = sorted(step["latencies_ms"])
        steps[step["name"]] = {
            "rps": round(step["requests"] / duration, 1),
            **_latencies(latencies),
            **_outcomes(step),
        }
        samples += [f"{step['name']}: {sample}" for sample in step["error_samples"]]
    return {
        "workflows_per_s": round(wps, 1),
        **_latencies(ordered),
        "completed": flow["completed"],
        "failed": flow["failed"],
        "failed_at": flow["failed_at"],
        # Every step's request, answered inside the window.
        "step_rps": round(step_rps, 1),
        "requests": raw["requests"],
        "errors": raw["errors"],
        "error_samples": samples,
        "steps": steps,
        "cores": cores,
        # Serving CPU (gateway, the service, the other services' consumers, PostgreSQL,
        # NATS) per whole workflow, and per request of it.
        "server_cpu_ms_per_workflow": round(server / wps * 1000, 3) if wps else None,
        "server_cpu_ms_per_request": round(server / step_rps * 1000, 3) if step_rps else None,
        **_times(raw),
    }


def _times(raw: dict[str, Any]) -> dict[str, float]:
    """When the generator sent its first request and received its last answer (epoch s)."""
    return {"began_at": raw["began_at"], "ended_at": raw["ended_at"]}
