"""The NATS connection: reconnect forever, streams ensured, never blocks start-up."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from libs.common.logging import get_logger

log = get_logger(__name__)

DUPLICATE_WINDOW_S = 600.0
DEADLETTER_STREAM = "DEADLETTER"


class EventBus:
    """One process's NATS client; `ready` is set once connected and streams exist."""

    def __init__(self, url: str, name: str, streams: dict[str, list[str]]) -> None:
        self.url = url
        self.name = name
        self.streams = {**streams, DEADLETTER_STREAM: ["deadletter.>"]}
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._js_of: Client | None = None
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection (made once: it is only options)."""
        if self.nc is None:
            raise RuntimeError("not connected to NATS yet")
        if self._js is None or self._js_of is not self.nc:
            self._js, self._js_of = self.nc.jetstream(timeout=5.0), self.nc
        return self._js

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    def start(self) -> None:
        """Connect in the background: the API answers even while NATS is away."""
        self._task = asyncio.create_task(self._connect(), name=f"nats-connect-{self.name}")

    async def _connect(self) -> None:
        async def on_error(exc: Exception) -> None:
            log.warning("nats.error", error=type(exc).__name__)

        async def on_disconnect() -> None:
            log.warning("nats.disconnected")

        async def on_reconnect() -> None:
            log.info("nats.reconnected")

        async def on_closed() -> None:
            log.error("nats.closed")

        self.nc = await nats.connect(
            servers=[self.url],
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            closed_cb=on_closed,
        )
        while True:
            try:
                for stream, subjects in self.streams.items():
                    await self.ensure_stream(stream, subjects)
                break
            except Exception as exc:
                log.warning("nats.streams_not_ready", error=str(exc))
                await asyncio.sleep(1.0)
        self.ready.set()
        log.info("nats.ready", streams=sorted(self.streams))

    async def ensure_stream(self, name: str, subjects: list[str]) -> None:
        """Create a missing stream (file storage, kept indefinitely); leave an existing one be.

        In production the streams are made beforehand with 3 replicas (deploy/k8s/nats); a
        service must never rewrite that, so it only adds subjects a stream lacks.
        """
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            config = StreamConfig(
                name=name,
                subjects=subjects,
                storage=StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
            )
            try:
                await self.js.add_stream(config)
            except BadRequestError:  # another process created it meanwhile
                pass
            return
        missing = [s for s in subjects if s not in (info.config.subjects or [])]
        if missing:
            info.config.subjects = [*(info.config.subjects or []), *missing]
            await self.js.update_stream(info.config)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until connected with streams in place."""
        await asyncio.wait_for(self.ready.wait(), timeout)

    async def publish(self, subject: str, payload: bytes, msg_id: str, timeout: float = 5.0) -> Any:
        """Publish to JetStream with a message id; raises when the outcome is unknown."""
        return await self.js.publish(
            subject, payload, timeout=timeout, headers={"Nats-Msg-Id": msg_id}
        )

    async def close(self) -> None:
        """Drain and close."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
