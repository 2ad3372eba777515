"""The attacker's audit: what can be learnt of a small count from everything published?

An attacker without `indicators:read:detail` sees a set of published numbers. Each is a
linear function of unknown base cells (indicator x month x commune x category option
combo, non-negative). For a protected cell (a count of 1 to 4 at commune level, for any
period) the attacker's best knowledge is the range of its value over every set of base
cells consistent with what was published: two linear programmes (scipy, HiGHS), its min
and its max. The cell is safe when that range includes 0 or a value of 5 or more.

Two readings of the published numbers are audited, both must hold:
- exact: every published number is the exact sum of the base cells it covers;
- interval: every published number is a sum of n base cells each rounded by less than 5,
  so the true sum lies in [P - 4n, P + 4n] (n = 1, a base cell: [r - 4, r + 4]), and >= 0.

Base cells of different indicators or combos never share a published number, so each
(indicator, combo) is a block of its own, solved separately (and, where the numbers
spanning several districts are sums of published district numbers, each district).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

Base = tuple[str, str, str, str]  # (indicator, month code, commune or a rest, combo)
MODELS = ("exact", "interval")


@dataclass(frozen=True)
class Number:
    """One published number: the base cells it sums, and its value.

    `width`: how far the true sum may lie from it in the interval reading, 4 per base cell
    unless given (an unknown standing for many base cells has theirs).
    """

    cells: frozenset[Base]
    value: int
    width: float | None = None

    @property
    def spread(self) -> float:
        return 4.0 * len(self.cells) if self.width is None else self.width


@dataclass(frozen=True)
class Finding:
    """A protected cell's range under one model."""

    model: str
    cells: frozenset[Base]
    true_value: int
    low: float
    high: float

    @property
    def recoverable(self) -> bool:
        """The range lies within 1..4: the attacker learns a small count (a 0.5 slack
        for the solver's tolerance)."""
        return self.low > 0.5 and self.high < 4.5


def _block(cells: Iterable[Base]) -> tuple[str, str]:
    first = next(iter(cells))
    return first[0], first[3]


def by_district(cell: Base) -> str:
    """Split a block by district (a commune's first four digits)."""
    return cell[2][:4]


def _split(numbers: Sequence[Number], part: Callable[[Base], str]) -> dict[str, list[Number]]:
    """The numbers of one block, by part; a number spanning several parts is dropped after
    checking it is implied: in each part, a published number sums exactly its cells there,
    and their values add up to its own. Its constraint is then the sum of theirs in both
    models (sum of values; sum of the widths 4n), so dropping it loses nothing."""
    parts: dict[str, list[Number]] = defaultdict(list)
    spanning: list[Number] = []
    for n in numbers:
        owners = {part(c) for c in n.cells}
        if len(owners) == 1:
            parts[owners.pop()].append(n)
        else:
            spanning.append(n)
    index = {(part(next(iter(n.cells))), n.cells): n.value for ns in parts.values() for n in ns}
    assert all(n.width is None for n in numbers), "a split needs numbers of base cells only"
    for n in spanning:
        pieces: dict[str, set[Base]] = defaultdict(set)
        for c in n.cells:
            pieces[part(c)].add(c)
        values = [index.get((owner, frozenset(cells))) for owner, cells in pieces.items()]
        assert None not in values, "a spanning number that is not a sum of published parts"
        assert sum(v for v in values if v is not None) == n.value, (n, values)
    return parts


def audit(
    published: Sequence[Number],
    protected: Sequence[tuple[frozenset[Base], int]],
    part: Callable[[Base], str] | None = None,
    models: Sequence[str] = MODELS,
) -> list[Finding]:
    """Each protected cell's range under each model (see the module's docstring).

    With `part`, each block is further split into parts (by_district) that share no
    published number but implied ones (checked): smaller programmes, the same ranges.
    """
    numbers: dict[tuple[str, str, str], list[Number]] = defaultdict(list)
    blocks: dict[tuple[str, str], list[Number]] = defaultdict(list)
    for n in published:
        if n.cells:
            blocks[_block(n.cells)].append(n)
    for block, ns in blocks.items():
        if part is None:
            numbers[(*block, "")] = ns
        else:
            for owner, owned in _split(ns, part).items():
                numbers[(*block, owner)] = owned
    targets: dict[tuple[str, str, str], set[tuple[frozenset[Base], int]]] = defaultdict(set)
    for cells, true_value in protected:
        owner = "" if part is None else part(next(iter(cells)))
        targets[(*_block(cells), owner)].add((cells, true_value))
    out: list[Finding] = []
    for block, wanted in targets.items():
        rows = numbers[block]
        variables = sorted({c for n in rows for c in n.cells} | {c for t, _ in wanted for c in t})
        index = {c: i for i, c in enumerate(variables)}
        a = np.zeros((len(rows), len(variables)))
        for r, n in enumerate(rows):
            for c in n.cells:
                a[r, index[c]] = 1.0
        p = np.array([n.value for n in rows], dtype=float)
        width = np.array([n.spread for n in rows], dtype=float)
        for model in models:
            if model == "exact":
                constraints = {"A_eq": a, "b_eq": p}
            else:
                low = np.maximum(p - width, 0.0)
                constraints = {
                    "A_ub": np.vstack([a, -a]),
                    "b_ub": np.concatenate([p + width, -low]),
                }
            for cells, true_value in sorted(wanted, key=lambda w: sorted(w[0])):
                c = np.zeros(len(variables))
                for cell in cells:
                    c[index[cell]] = 1.0
                lo = linprog(c, bounds=(0, None), method="highs", **constraints)
                hi = linprog(-c, bounds=(0, None), method="highs", **constraints)
                assert lo.status == 0, (model, block, lo.message)
                # unbounded above is a range including 5 and more
                assert hi.status in (0, 3), (model, block, hi.message)
                high = float("inf") if hi.status == 3 else -float(hi.fun)
                out.append(Finding(model, cells, true_value, float(lo.fun), high))
    return out
