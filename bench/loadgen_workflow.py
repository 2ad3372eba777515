"""The generator's workflow mode (bench/loadgen.py): every worker runs a job's steps in order,
again and again, and each step's outcomes and each whole workflow are recorded."""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from bench.templates import TemplateError, render

if TYPE_CHECKING:
    from bench.loadgen import Job, Outcomes

Send = Callable[..., Awaitable[tuple[int, bytes, str | None]]]


@dataclass
class WorkflowTally:
    """Whole workflows finished (or failed) inside the measured window, and each step's
    outcomes (in the order of the job's steps)."""

    steps: list[Outcomes]
    latencies_ms: list[float] = field(default_factory=list)
    at_s: list[float] = field(default_factory=list)
    failed: int = 0
    failed_at: Counter[str] = field(default_factory=Counter)


def item_streams(job: Job) -> list[Iterator[dict[str, Any]]]:
    """What each worker draws its iterations' items from."""
    items = list(job.items) or [{}]
    rng = random.Random(1)
    if not job.partition_items:
        rng.shuffle(items)
        shared = itertools.cycle(items)
        return [shared] * job.connections
    if len(items) < job.connections:
        raise SystemExit(
            f"partition_items needs at least one item per connection "
            f"({len(items)} items, {job.connections} connections)"
        )
    return [itertools.cycle(items[w :: job.connections]) for w in range(job.connections)]


async def _call(
    session: aiohttp.ClientSession,
    job: Job,
    step: dict[str, Any],
    context: dict[str, Any],
    send: Send,
) -> tuple[int, bytes, str | None]:
    """Send one step; (status, body, Location). Status 0: no answer, or a bad template."""
    try:
        path = render(step["path"], context)
        headers: dict[str, str] = dict(job.headers)
        if step.get("auth"):
            name = render(step["auth"], context)
            if name not in job.tokens:
                raise TemplateError(f"no token named {name!r}")
            headers["Authorization"] = f"Bearer {job.tokens[name]}"
        data = None
        if step.get("body") is not None:
            data = json.dumps(render(step["body"], context), separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
    except TemplateError as exc:
        return 0, f"template: {exc}".encode(), None
    return await send(session, step["method"], job.base_url + path, data, headers)


async def workflow_worker(
    session: aiohttp.ClientSession,
    job: Job,
    items: Iterator[dict[str, Any]],
    clock: dict[str, float],
    tally: WorkflowTally,
    send: Send,
    pace: Callable[[], Awaitable[None]],
    created_id: Callable[[str | None, bytes], str | None],
) -> None:
    """Run the workflow back to back (or at the job's pace) until the window closes; record
    what ends inside it. An iteration the window closes on is abandoned."""
    while True:
        await pace()
        began = time.perf_counter()
        if began >= clock["end"]:
            return
        inside = False
        context: dict[str, Any] = {**next(items), "uuid": uuid.uuid4().hex}
        for index, (step, outcomes) in enumerate(zip(job.workflow, tally.steps, strict=True)):
            started = time.perf_counter()
            if started >= clock["end"]:
                return
            status, payload, location = await _call(session, job, step, context, send)
            done = time.perf_counter()
            ok = status in step.get("expect", [200])
            inside = clock["start"] <= done <= clock["end"]
            if inside:
                outcomes.record(status, ok, payload, done - started, done - clock["start"])
            if not ok:
                if inside:
                    tally.failed += 1
                    tally.failed_at[step["name"]] += 1
                break
            try:
                answer = json.loads(payload) if payload else None
            except ValueError:
                answer = None
            context[step["name"]] = answer if isinstance(answer, dict) else {}
            if index == 0:
                created = created_id(location, payload)
                if created:
                    context["id"] = created
        else:
            if inside:
                now = time.perf_counter()
                tally.latencies_ms.append((now - began) * 1000.0)
                tally.at_s.append(round(now - clock["start"], 3))


def workflow_result(job: Job, flow: WorkflowTally) -> dict[str, Any]:
    """The raw figures of a workflow run: whole workflows, then each step."""
    return {
        "mode": "workflow",
        "requests": sum(len(s.latencies_ms) for s in flow.steps),
        "duration_s": job.duration_s,
        "workflows": {
            "completed": len(flow.latencies_ms),
            "failed": flow.failed,
            "failed_at": dict(flow.failed_at),
            "latencies_ms": [round(v, 3) for v in flow.latencies_ms],
            "at_s": flow.at_s,
        },
        "steps": [
            {"name": step["name"], **outcomes.figures()}
            for step, outcomes in zip(job.workflow, flow.steps, strict=True)
        ],
        "errors": flow.failed,
    }
