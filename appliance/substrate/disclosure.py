"""Disclosure control on small counts: the one rule that keeps a figure from pointing at a person.

A count from 1 to threshold - 1 is withheld; when one breakdown has exactly one such cell (or withheld cells that add
up to less than the threshold) the next smallest is withheld too, so that no withheld cell can be worked out from the
total and the rest; a total under the threshold is withheld. The threshold is the ministry's, `[disclosure]` in
policies/indicators.toml.

The national room applies it to each facility's breakdown before anything leaves the facility (national/indicators.py,
which reads the rest of that file). It lives here, on the floor, because a facility's own pages apply it too (the TB
register's HIV-positive cohort row, to those who may not read the ART register), and a layer may not import the
national room.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TypeVar

Cell = TypeVar("Cell", bound=Hashable)


def threshold_of(policy: Mapping) -> int:
    """The threshold of a parsed policies/indicators.toml; ValueError (or KeyError) where it is missing or under 2
    (a threshold of 1 would withhold nothing)."""
    threshold = int(policy["disclosure"]["threshold"])
    if threshold < 2:
        raise ValueError(f"the disclosure threshold must be at least 2, not {threshold}")
    return threshold


@functools.cache
def read_threshold(path: Path) -> int:
    """The threshold of the indicators file at `path`, read once per process (the file ships with the bundle)."""
    return threshold_of(tomllib.loads(Path(path).read_text(encoding="utf-8")))


def withhold(values: Mapping[Cell, int], threshold: int) -> tuple[int | None, dict[Cell, int | None]]:
    """The rule on one breakdown: its total, and each cell, None where withheld (zeros are shown: they point at
    no one). Cells sort (a tie between two smallest counts goes to the lesser cell), so the same counts always
    withhold the same cells."""
    total = sum(values.values())
    hidden = {cell for cell, n in values.items() if 0 < n < threshold}
    # Withheld cells must not be recoverable from the total and the rest: one withheld cell is exactly
    # the difference, and several that add up to under the threshold are themselves a small count.
    while hidden and (len(hidden) == 1 or sum(values[c] for c in hidden) < threshold):
        shown = sorted((n, cell) for cell, n in values.items() if n > 0 and cell not in hidden)
        if not shown:
            break
        hidden.add(shown[0][1])
    return (None if 0 < total < threshold else total,
            {cell: None if cell in hidden else n for cell, n in values.items()})
