"""Group commit: concurrent submissions share writes, and a bad item fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from libs.common.batching import GroupCommit


class Recorder:
    """A write that records its groups, doubling numbers and refusing negative ones."""

    def __init__(self, delay: float = 0.01) -> None:
        self.groups: list[list[int]] = []
        self.delay = delay

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.groups.append(list(items))
        await asyncio.sleep(self.delay)  # as a statement would
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return [2 * i for i in items]


async def test_concurrent_items_are_written_together_and_answered_each() -> None:
    write = Recorder()
    group = GroupCommit("numbers", write, max_group=16)
    results = await asyncio.gather(*(group.submit(i) for i in range(40)))
    assert results == [2 * i for i in range(40)]
    assert sorted(i for g in write.groups for i in g) == list(range(40))
    assert len(write.groups) < 40  # grouped …
    assert max(map(len, write.groups)) <= 16  # … within the limit


async def test_a_lone_item_is_written_at_once() -> None:
    write = Recorder()
    group = GroupCommit("numbers", write)
    assert await group.submit(7) == 14
    assert await group.submit(8) == 16
    assert write.groups == [[7], [8]]


async def test_a_bad_item_fails_alone() -> None:
    write = Recorder()
    group = GroupCommit("numbers", write)
    results = await asyncio.gather(*(group.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert results[0] == 2
    assert results[2] == 6
    assert isinstance(results[1], ValueError)
    assert write.groups[0] == [1, -2, 3]  # tried together, then each alone
    assert sorted(write.groups[1:]) == [[-2], [1], [3]]


async def test_a_write_answering_the_wrong_count_fails_its_group() -> None:
    async def short(items: Sequence[int]) -> list[int]:
        return list(items)[:-1]

    group = GroupCommit("short", short)
    results = await asyncio.gather(*(group.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_waiting_callers_are_answered_when_the_writer_is_cancelled() -> None:
    write = Recorder(delay=10)
    group = GroupCommit("slow", write)
    waiting = [asyncio.create_task(group.submit(i)) for i in range(3)]
    await asyncio.sleep(0.05)
    assert group._writer is not None
    group._writer.cancel()
    for task in waiting:
        with pytest.raises(RuntimeError, match="stopped"):
            await task


async def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    write = Recorder(delay=0.05)
    group = GroupCommit("numbers", write)
    first = asyncio.create_task(group.submit(1))
    second = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == 4
    assert write.groups == [[1, 2]]  # the cancelled caller's item was written all the same
