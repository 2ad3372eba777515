"""CloudEvents over NATS JetStream: envelope, catalogue, outbox, relay, durable consumer."""

from libs.common.events.envelope import CloudEvent, new_event
from libs.common.events.outbox import outbox_table, write_events

__all__ = ["CloudEvent", "new_event", "outbox_table", "write_events"]
