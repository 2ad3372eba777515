"""Group commit: concurrent calls that each write one thing, written together.

Under load many requests wait on the database at once, each for its own statement and its
own commit. `GroupCommit` gives their items to one `write` call (one statement, one
commit) as they arrive: while a group is being written the next one gathers, so a lone
request waits for nobody and a busy service writes dozens per round trip. An item is
written (or fails) exactly as it would alone: when a group's write fails, each of its items
is written alone, so one bad item fails only its own request.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from libs.common.logging import get_logger
from libs.common.metrics import GROUP_COMMIT_SIZE

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Waiting(Generic[T, R]):
    item: T
    answer: asyncio.Future[R]


class GroupCommit(Generic[T, R]):
    """Writes submitted items in groups of up to `max_group` through `write`, which must
    return one result per item, in order, and be atomic for the whole group."""

    def __init__(
        self, name: str, write: Callable[[Sequence[T]], Awaitable[list[R]]], max_group: int = 64
    ) -> None:
        if max_group < 1:
            raise ValueError("max_group must be at least 1")
        self.name = name
        self._write = write
        self._max_group = max_group
        self._waiting: list[_Waiting[T, R]] = []
        self._writer: asyncio.Task[None] | None = None
        self._sizes = GROUP_COMMIT_SIZE.labels(name)

    async def submit(self, item: T) -> R:
        """Write one item (with whatever else is waiting); its result once committed."""
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(item, answer))
        if self._writer is None:
            # The writer outlives this request: it must not carry its context (request id).
            self._writer = asyncio.create_task(
                self._write_all(), name=f"group-commit-{self.name}", context=contextvars.Context()
            )
        return await answer

    async def _write_all(self) -> None:
        group: list[_Waiting[T, R]] = []
        try:
            while self._waiting:
                group = self._waiting[: self._max_group]
                del self._waiting[: self._max_group]
                await self._write_group(group)
                group = []
        except BaseException:  # cancelled (the process stops): nobody may wait forever
            stopped = RuntimeError(f"{self.name}: stopped before the write completed")
            for waiting in [*group, *self._waiting]:
                _settle(waiting.answer, stopped)
            self._waiting.clear()
            raise
        finally:
            self._writer = None

    async def _write_group(self, group: list[_Waiting[T, R]]) -> None:
        self._sizes.observe(len(group))
        try:
            results = await self._write([w.item for w in group])
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0].answer, exc)
                return
            log.warning(
                "group_commit.split", group=self.name, size=len(group), error=type(exc).__name__
            )
            for waiting in group:  # alone, so that only the item at fault fails
                await self._write_group([waiting])
            return
        if len(results) != len(group):
            error = RuntimeError(f"{self.name}: {len(results)} results for {len(group)} items")
            for waiting in group:
                _settle(waiting.answer, error)
            return
        for waiting, result in zip(group, results, strict=True):
            if not waiting.answer.done():  # the caller may have gone (its request cancelled)
                waiting.answer.set_result(result)


def _settle(answer: asyncio.Future[R], exc: BaseException) -> None:
    if not answer.done():
        answer.set_exception(exc)
