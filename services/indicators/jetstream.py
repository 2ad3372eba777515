"""The indicators' side of the JetStream streams: the durable consumers, how far each has
applied its stream, and reading a stream from its start (for a rebuild)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from libs.common.events import CloudEvent
from libs.common.logging import get_logger

log = get_logger(__name__)

# The durable consumers of the indicators service, one per producing stream.
CONSUMERS: dict[str, tuple[str, str]] = {
    "REGISTRY": ("indicators-registry", "registry.>"),
    "REFERRALS": ("indicators-referrals", "referrals.>"),
    "FUNDS": ("indicators-funds", "funds.>"),
    "CASEWORK": ("indicators-casework", "casework.>"),
}


async def stream_status(js: JetStreamContext, stream: str, durable: str) -> dict[str, Any]:
    """Last applied sequence (ack floor), the stream's last, lag, oldest unapplied age."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return {"stream": stream, "consumer": durable, "exists": False}
    last = int(info.state.last_seq)
    try:
        consumer = await js.consumer_info(stream, durable)
        applied = int(consumer.ack_floor.stream_seq) if consumer.ack_floor else 0
    except NotFoundError:
        applied = 0
    applied = max(applied, int(info.state.first_seq) - 1)
    lag = max(0, last - applied)
    oldest_age: float | None = None
    if lag:
        for seq in range(applied + 1, min(last, applied + 20) + 1):  # skip deleted messages
            try:
                msg = await js.get_msg(stream, seq=seq)
            except NotFoundError:
                continue
            stored_at = _stream_time(msg.time)
            if stored_at is not None:
                oldest_age = round((datetime.now(UTC) - stored_at).total_seconds(), 3)
            break
    return {
        "stream": stream,
        "consumer": durable,
        "last_applied_sequence": applied,
        "last_sequence": last,
        "lag": lag,
        "oldest_unapplied_age_seconds": oldest_age,
    }


def _stream_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        text_ = value.rstrip("Z")
        if "." in text_:  # nanoseconds: keep microseconds
            head, frac = text_.split(".", 1)
            text_ = f"{head}.{frac[:6]}"
        try:
            return datetime.fromisoformat(text_).replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


class StreamReader:
    """Reads one stream from its first message, in order (an ephemeral consumer)."""

    def __init__(self, js: JetStreamContext, stream: str, subject: str) -> None:
        self.js = js
        self.stream = stream
        self.subject = subject
        self.position = 0  # last stream sequence read
        self._sub: Any = None

    async def last_sequence(self) -> int:
        try:
            return int((await self.js.stream_info(self.stream)).state.last_seq)
        except NotFoundError:
            return 0

    async def read(self, upto: int, batch: int) -> list[CloudEvent]:
        """The next events, at most `batch`, none past sequence `upto`."""
        if self.position >= upto:
            return []
        if self._sub is None:
            self._sub = await self.js.pull_subscribe(
                self.subject,
                stream=self.stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=3600.0,  # outlives a long materialisation
                    max_ack_pending=-1,
                ),
            )
        out: list[CloudEvent] = []
        while len(out) < batch and self.position < upto:
            try:
                msgs = await self._sub.fetch(min(batch, upto - self.position), timeout=2.0)
            except nats.errors.TimeoutError:
                break
            for msg in msgs:
                self.position = int(msg.metadata.sequence.stream)
                try:
                    out.append(CloudEvent.model_validate(json.loads(msg.data)))
                except (ValueError, ValidationError):
                    log.warning("indicators.replay_unparseable", stream=self.stream)
        return out

    async def close(self) -> None:
        """Delete the ephemeral consumer (else the server drops it after an idle hour)."""
        if self._sub is not None:
            try:
                info = await self._sub.consumer_info()
                await self._sub.unsubscribe()
                await self.js.delete_consumer(self.stream, info.name)
            except Exception as exc:
                log.debug("indicators.replay_close", error=type(exc).__name__)
