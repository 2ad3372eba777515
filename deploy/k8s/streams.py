"""`python -m deploy.k8s.streams <streams.json>`: create or update the JetStream streams.

Run by the `nats-streams` Job (deploy/k8s/nats/) before any service starts, so the streams
exist with the replica count the cluster needs (3 in production). The services also create
their streams when missing, but with the server's default of one replica.

The file lists the streams:

    {"streams": [{"name": "REGISTRY", "subjects": ["registry.>"], "replicas": 3,
                  "storage": "file", "duplicate_window_s": 600}]}

A missing stream is created; an existing one whose subjects, replicas or duplicate window
differ is updated in place (JetStream moves the data when replicas change); anything else
about it is kept. Storage cannot change in place: that is reported as an error.
Exit status 0 when every stream matches the file, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

DEFAULT_NATS_URL = "nats://nats:4222"


@dataclass(frozen=True)
class StreamSpec:
    """What the file says one stream must be."""

    name: str
    subjects: list[str]
    replicas: int
    storage: StorageType
    duplicate_window_s: float

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StreamSpec:
        """Read one entry of the file, refusing anything it does not understand."""
        known = {"name", "subjects", "replicas", "storage", "duplicate_window_s"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"stream {raw.get('name')!r}: unknown keys {sorted(unknown)}")
        replicas = int(raw.get("replicas", 1))
        if not 1 <= replicas <= 5:
            raise ValueError(f"stream {raw['name']!r}: replicas must be 1 to 5")
        subjects = [str(s) for s in raw["subjects"]]
        if not subjects:
            raise ValueError(f"stream {raw['name']!r}: no subjects")
        return cls(
            name=str(raw["name"]),
            subjects=subjects,
            replicas=replicas,
            storage=StorageType(raw.get("storage", "file")),
            duplicate_window_s=float(raw.get("duplicate_window_s", 600)),
        )

    def config(self) -> StreamConfig:
        """The JetStream configuration of a new stream (kept indefinitely)."""
        return StreamConfig(
            name=self.name,
            subjects=self.subjects,
            num_replicas=self.replicas,
            storage=self.storage,
            duplicate_window=self.duplicate_window_s,
        )

    def differences(self, current: StreamConfig) -> list[str]:
        """What differs between the live stream and this spec (empty when it matches)."""
        found = []
        if sorted(current.subjects or []) != sorted(self.subjects):
            found.append(f"subjects {current.subjects} -> {self.subjects}")
        if (current.num_replicas or 1) != self.replicas:
            found.append(f"replicas {current.num_replicas} -> {self.replicas}")
        if abs((current.duplicate_window or 0) - self.duplicate_window_s) > 1e-3:
            window = f"{current.duplicate_window}s -> {self.duplicate_window_s}s"
            found.append(f"duplicate_window {window}")
        return found


def load_specs(path: Path) -> list[StreamSpec]:
    """Every stream of the file."""
    document = json.loads(path.read_text())
    return [StreamSpec.from_dict(entry) for entry in document["streams"]]


def say(event: str, **fields: Any) -> None:
    """One JSON log line, like the services write."""
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> bool:
    """Create or update one stream; True when it now matches the spec."""
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(spec.config())
        say("stream.created", stream=spec.name, replicas=spec.replicas)
        return True
    current = info.config
    # The client leaves the storage of a stream it read as a plain string.
    storage = StorageType(current.storage) if current.storage is not None else spec.storage
    if storage != spec.storage:
        say(
            "stream.storage_mismatch",
            stream=spec.name,
            current=storage.value,
            wanted=spec.storage.value,
            hint="storage cannot change in place: back up, delete and recreate the stream",
        )
        return False
    changes = spec.differences(current)
    if not changes:
        say("stream.unchanged", stream=spec.name, replicas=current.num_replicas)
        return True
    current.subjects = spec.subjects
    current.num_replicas = spec.replicas
    current.duplicate_window = spec.duplicate_window_s
    await js.update_stream(current)
    say("stream.updated", stream=spec.name, changes=changes)
    return True


async def connect(url: str, timeout_s: float) -> Client:
    """Connect, retrying until `timeout_s` has passed (NATS may still be starting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await nats.connect(servers=[url], name="komar-streams", connect_timeout=5)
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise
            say("nats.not_ready", error=str(exc) or type(exc).__name__)
            await asyncio.sleep(2)


async def run(url: str, specs: list[StreamSpec], timeout_s: float) -> int:
    """Ensure every stream; 0 if all match, 1 if any could not be made to."""
    nc = await connect(url, timeout_s)
    try:
        js = nc.jetstream(timeout=30)
        ok = True
        for spec in specs:
            try:
                ok = await ensure_stream(js, spec) and ok
            except Exception as exc:
                say("stream.failed", stream=spec.name, error=str(exc) or type(exc).__name__)
                ok = False
        return 0 if ok else 1
    finally:
        await nc.drain()


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m deploy.k8s.streams", description=__doc__)
    parser.add_argument("file", type=Path, help="the streams file (JSON)")
    parser.add_argument(
        "--nats-url",
        default=None,
        help=f"NATS server (default: $NATS_URL, else {DEFAULT_NATS_URL})",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for NATS to answer"
    )
    options = parser.parse_args(argv)
    url = options.nats_url or os.environ.get("NATS_URL") or DEFAULT_NATS_URL
    try:
        specs = load_specs(options.file)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        say("streams.bad_file", file=str(options.file), error=str(exc))
        return 2
    return asyncio.run(run(url, specs, options.timeout))


if __name__ == "__main__":
    sys.exit(main())
