"""The replicas behind each proxied prefix, and which one takes the next request.

A service may run as several replicas (KOMAR_<SERVICE>_URL lists their base URLs): requests
take them in turn; a replica that refuses the connection is skipped for a cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Sequence


class Upstream:
    """One proxied prefix and the replicas behind it, taken in turn.

    A replica that refused a connection sits out `cooldown_s`. `path` doubles as the route
    template in metrics and logs. Only the event loop touches it, so no lock is needed.
    """

    __slots__ = ("_down_until", "_turn", "bases", "cooldown_s", "name", "path")

    def __init__(self, name: str, bases: Sequence[str], path: str, cooldown_s: float) -> None:
        if not bases:
            raise ValueError(f"upstream {name} has no base URL")
        self.name = name
        self.bases = tuple(bases)
        self.path = path
        self.cooldown_s = cooldown_s
        self._turn = 0
        self._down_until = [0.0] * len(self.bases)

    def pick(self) -> int:
        """The replica for a new request: the next in turn that is not cooling down."""
        n = len(self.bases)
        if n == 1:
            return 0
        first = self._turn
        self._turn = first + 1 if first + 1 < n else 0
        down = self._down_until
        if not down[first]:
            return first
        now = time.monotonic()
        for k in range(n):
            i = (first + k) % n
            if down[i] <= now:
                down[i] = 0.0
                return i
        return first  # all cooling down: better try one than refuse

    def next_after(self, index: int, *, stay: bool = False) -> int:
        """The replica to try after `index`: the next one not cooling down; when every other
        one is, `index` itself if `stay`, else the next in turn."""
        n = len(self.bases)
        now = time.monotonic()
        for k in range(1, n):
            i = (index + k) % n
            if self._down_until[i] <= now:
                return i
        return index if stay else (index + 1) % n

    def failed(self, index: int) -> None:
        """Replica `index` refused a connection: no new requests for the cool-down."""
        if len(self.bases) > 1:
            self._down_until[index] = time.monotonic() + self.cooldown_s
