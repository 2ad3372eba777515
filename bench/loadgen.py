"""The load generator, run as its own process so it never shares an event loop with a target.

`python -m bench.loadgen run JOB.json RESULT.json`: keep `connections` keep-alive connections
busy (one worker each, closed loop) for a warm-up and then a measured window; write the
latencies, statuses, created ids and the CPU use of the generator, of the watched processes
and of the whole machine over the window to RESULT.json.

Two modes. Single request (the job has `method` and `paths`): every worker sends the same
kind of request back to back. Workflow (the job has `workflow`, a list of steps): every
worker runs the steps in order, again and again; a step is
`{name, method, path, body?, auth?, expect?}` where `path`, `body` and `auth` are templates.
A template's `{name}` is filled from the iteration's context: the fields of the `items`
entry drawn for the iteration, `uuid` (fresh for each iteration), `id` (the id the first
step created) and `<step>.<field>` (a field of an earlier step's JSON answer). A `{name}`
that is a whole JSON string keeps the value's JSON type. `auth` names an entry of `tokens`,
sent as `Authorization: Bearer`. A step answered outside `expect` ends the iteration as a
failed workflow. With `partition_items`, worker `w` draws only `items[w::connections]`, so
no two workers ever act on the same item at once.

`python -m bench.loadgen serve-trivial` (port from $BENCH_PORT): a raw asyncio responder that
answers every request with a fixed 200, used once to measure the generator's own ceiling.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp


@dataclass
class Job:
    """One measurement: which requests to send, how hard and how long."""

    base_url: str
    method: str = "GET"
    paths: list[str] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    expect: list[int] = field(default_factory=lambda: [200])
    connections: int = 32
    warmup_s: float = 2.0
    duration_s: float = 10.0
    collect_ids: bool = False
    # Process groups whose CPU use to report: name -> root pids (descendants included).
    watch: dict[str, list[int]] = field(default_factory=dict)
    # Workflow mode (see the module docstring); `method`, `paths` and `bodies` are unused.
    workflow: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    partition_items: bool = False
    tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class Tally:
    """What the workers saw inside the measured window (and ids from the whole run)."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores; /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by processes and all their descendants (/proc/<pid>/stat)."""
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(name)] = int(fields[1])
        # utime + stime, plus cutime + cstime: what its ended (reaped) children used.
        used[int(name)] = sum(int(f) for f in fields[11:15]) / tick
    tree, frontier = set(roots), list(roots)
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return sum(used.get(pid, 0.0) for pid in tree)


def cpu_snapshot(watch: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each watched group, this process and the whole machine."""
    snapshot = {name: tree_cpu_seconds(pids) for name, pids in watch.items()}
    snapshot["loadgen"] = time.process_time()
    snapshot["machine"] = machine_busy_seconds()
    return snapshot


def _created_id(location: str | None, payload: bytes) -> str | None:
    """The id of a created record: the last segment of Location, else the body's `id`."""
    if location:
        return location.rstrip("/").rsplit("/", 1)[-1]
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


async def _worker(
    session: aiohttp.ClientSession,
    job: Job,
    requests: itertools.cycle[tuple[str, bytes | None]],
    clock: dict[str, float],
    tally: Tally,
) -> None:
    """Send requests back to back until the window closes; record those answered inside it."""
    expect = set(job.expect)
    while True:
        path, body = next(requests)
        started = time.perf_counter()
        if started >= clock["end"]:
            return
        try:
            async with session.request(job.method, job.base_url + path, data=body) as response:
                payload = await response.read()
                status = response.status
                location = response.headers.get("Location")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            status, payload, location = 0, type(exc).__name__.encode(), None
        done = time.perf_counter()
        ok = status in expect
        if ok and job.collect_ids:
            created = _created_id(location, payload)
            if created:
                tally.ids.append(created)
        if not clock["start"] <= done <= clock["end"]:
            continue  # answered during the warm-up, or after the window closed
        tally.latencies_ms.append((done - started) * 1000.0)
        tally.statuses[str(status)] += 1
        if not ok:
            tally.errors += 1
            if len(tally.error_samples) < 5:
                tally.error_samples.append(f"{status}: {payload[:200].decode(errors='replace')}")


def _request_stream(job: Job) -> itertools.cycle[tuple[str, bytes | None]]:
    """Requests to send, pre-encoded: bodies cycle in order, paths are drawn at random."""
    rng = random.Random(1)
    if job.bodies:
        encoded = [json.dumps(b, separators=(",", ":")).encode() for b in job.bodies]
        return itertools.cycle([(rng.choice(job.paths), b) for b in encoded])
    return itertools.cycle(
        [(rng.choice(job.paths), None) for _ in range(max(4096, len(job.paths)))]
    )


# ------------------------------------------------------------------ workflow mode

_TEMPLATE_NAME = re.compile(r"\{([A-Za-z_][\w.]*)\}")


class TemplateError(Exception):
    """A template's `{name}` names nothing in the iteration's context."""


def _lookup(context: dict[str, Any], name: str) -> Any:
    value: Any = context
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            raise TemplateError(f"{{{name}}}: no such value")
        value = value[part]
    return value


def render(template: Any, context: dict[str, Any]) -> Any:
    """Fill a template (a string, or JSON data holding strings) from `context`."""
    if isinstance(template, str):
        whole = _TEMPLATE_NAME.fullmatch(template)
        if whole:
            return _lookup(context, whole.group(1))
        return _TEMPLATE_NAME.sub(lambda m: str(_lookup(context, m.group(1))), template)
    if isinstance(template, dict):
        return {k: render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context) for v in template]
    return template


@dataclass
class StepTally:
    """What one step of a workflow saw inside the measured window."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


@dataclass
class WorkflowTally:
    """Whole workflows finished (or failed) inside the measured window, and their steps."""

    steps: list[StepTally]
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    failed_at: Counter[str] = field(default_factory=Counter)


def _item_streams(job: Job) -> list[Iterator[dict[str, Any]]]:
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
    session: aiohttp.ClientSession, job: Job, step: dict[str, Any], context: dict[str, Any]
) -> tuple[int, bytes, str | None]:
    """Send one step; (status, body, Location). Status 0: no answer, or a bad template."""
    try:
        path = render(step["path"], context)
        headers: dict[str, str] = {}
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
    try:
        async with session.request(
            step["method"], job.base_url + path, data=data, headers=headers
        ) as response:
            return response.status, await response.read(), response.headers.get("Location")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return 0, type(exc).__name__.encode(), None


async def _workflow_worker(
    session: aiohttp.ClientSession,
    job: Job,
    items: Iterator[dict[str, Any]],
    clock: dict[str, float],
    tally: WorkflowTally,
) -> None:
    """Run the workflow back to back until the window closes; record what ends inside it.

    An iteration the window closes on is abandoned (its remaining steps are not sent)."""
    while True:
        began = time.perf_counter()
        if began >= clock["end"]:
            return
        inside = False
        context: dict[str, Any] = {**next(items), "uuid": uuid.uuid4().hex}
        for index, (step, steps) in enumerate(zip(job.workflow, tally.steps, strict=True)):
            started = time.perf_counter()
            if started >= clock["end"]:
                return
            status, payload, location = await _call(session, job, step, context)
            done = time.perf_counter()
            ok = status in step.get("expect", [200])
            inside = clock["start"] <= done <= clock["end"]
            if inside:
                steps.latencies_ms.append((done - started) * 1000.0)
                steps.statuses[str(status)] += 1
            if not ok:
                if inside:
                    steps.errors += 1
                    tally.failed += 1
                    tally.failed_at[steps.name] += 1
                    if len(steps.error_samples) < 5:
                        text = payload[:200].decode(errors="replace")
                        steps.error_samples.append(f"{status}: {text}")
                break
            try:
                answer = json.loads(payload) if payload else None
            except ValueError:
                answer = None
            context[steps.name] = answer if isinstance(answer, dict) else {}
            if index == 0:
                created = _created_id(location, payload)
                if created:
                    context["id"] = created
        else:
            if inside:
                tally.latencies_ms.append((time.perf_counter() - began) * 1000.0)


# ------------------------------------------------------------------ running a job


async def run_job(job: Job) -> dict[str, Any]:
    """Run one measurement and return its raw figures."""
    headers = {"Accept": "application/json", **job.headers}
    if job.bodies:
        headers["Content-Type"] = "application/json"
    connector = aiohttp.TCPConnector(limit=job.connections, force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=30)
    tally = Tally()
    flow = WorkflowTally([StepTally(step["name"]) for step in job.workflow])
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout, skip_auto_headers=["User-Agent"]
    ) as session:
        now = time.perf_counter()
        clock = {"start": now + job.warmup_s, "end": now + job.warmup_s + job.duration_s}
        snapshots: dict[str, tuple[float, dict[str, float]]] = {}

        async def snapshot_at(moment: str) -> None:
            await asyncio.sleep(max(0.0, clock[moment] - time.perf_counter()))
            snapshots[moment] = (time.perf_counter(), cpu_snapshot(job.watch))

        markers = [asyncio.create_task(snapshot_at(m)) for m in ("start", "end")]
        if job.workflow:
            await asyncio.gather(
                *(
                    _workflow_worker(session, job, items, clock, flow)
                    for items in _item_streams(job)
                )
            )
        else:
            requests = _request_stream(job)
            await asyncio.gather(
                *(_worker(session, job, requests, clock, tally) for _ in range(job.connections))
            )
        await asyncio.gather(*markers)
    (t0, at_start), (t1, at_end) = snapshots["start"], snapshots["end"]
    cores = {name: round((at_end[name] - at_start[name]) / (t1 - t0), 3) for name in at_end}
    cores["other"] = round(
        max(0.0, cores["machine"] - sum(v for k, v in cores.items() if k != "machine")), 3
    )
    if job.workflow:
        return _workflow_result(job, flow, cores)
    return {
        "requests": len(tally.latencies_ms),
        "duration_s": job.duration_s,
        "latencies_ms": [round(v, 3) for v in tally.latencies_ms],
        "statuses": dict(tally.statuses),
        "errors": tally.errors,
        "error_samples": tally.error_samples,
        "ids": tally.ids,
        "cores": cores,
    }


def _workflow_result(job: Job, flow: WorkflowTally, cores: dict[str, float]) -> dict[str, Any]:
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
        },
        "steps": [
            {
                "name": s.name,
                "requests": len(s.latencies_ms),
                "latencies_ms": [round(v, 3) for v in s.latencies_ms],
                "statuses": dict(s.statuses),
                "errors": s.errors,
                "error_samples": s.error_samples,
            }
            for s in flow.steps
        ],
        "errors": flow.failed,
        "cores": cores,
    }


def _event_loop_policy() -> None:
    """Use uvloop when it is installed (as uvicorn does), so the generator is no slower."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\n{}"
)


class _TrivialHttp(asyncio.Protocol):
    """Answers each bodiless request with the same 200; enough for GET /anything."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        answered = self.buffer.count(b"\r\n\r\n")
        if answered:
            self.buffer = self.buffer.rsplit(b"\r\n\r\n", 1)[1]
            self.transport.write(RESPONSE * answered)


async def serve_trivial(port: int) -> None:
    """Serve the trivial responder forever on 127.0.0.1:`port`."""
    server = await asyncio.get_running_loop().create_server(_TrivialHttp, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    """`run JOB RESULT` or `serve-trivial`."""
    _event_loop_policy()
    if argv[:1] == ["serve-trivial"]:
        asyncio.run(serve_trivial(int(os.environ["BENCH_PORT"])))
        return 0
    if argv[:1] == ["run"] and len(argv) == 3:
        with open(argv[1]) as fh:
            job = Job(**json.load(fh))
        result = asyncio.run(run_job(job))
        with open(argv[2], "w") as fh:
            json.dump(result, fh)
        return 0
    print(
        "usage: python -m bench.loadgen run JOB.json RESULT.json | serve-trivial", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
