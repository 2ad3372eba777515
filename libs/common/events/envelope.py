"""The CloudEvents 1.0 envelope (structured JSON mode) and how a domain event becomes one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from libs.common.events.catalog import model_for


class CloudEvent(BaseModel):
    """One event as it travels: the subject on NATS is its `type`."""

    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    requestid: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def service(self) -> str:
        return self.type.split(".", 1)[0]


def new_event(
    service: str, type_: str, subject: str, data: BaseModel, request_id: str | None
) -> CloudEvent:
    """Envelope a catalogued event; the data must be the catalogue's model for the type."""
    expected = model_for(type_)
    if not isinstance(data, expected):
        raise TypeError(f"{type_} carries {expected.__name__}, not {type(data).__name__}")
    return CloudEvent(
        id=str(uuid.uuid4()),
        source=f"/services/{service}",
        type=type_,
        subject=subject,
        time=datetime.now(UTC),
        requestid=request_id,
        data=data.model_dump(mode="json"),
    )
