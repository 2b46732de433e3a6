"""The command center's KPI registry (substrate): where a layer says how one of the facility's key
performance indicators is computed, so the command center can show it without importing that layer.

The definitions — id, name, formula in words, source standard, unit, which way is better — are data in
`policies/kpis.toml` (read by `load_definitions`); a facility's targets are in its tenant file. The
computations live in the layers that own the facts: operations registers occupancy, length of stay,
the emergency department and lab turnaround figures; the financial layer registers same-day charge
capture. A KPI defined in the policy with no computation registered is shown as not available, with
the reason the policy gives (`unavailable`), never as zero.

A computation is a pair of functions over the caller's tenant transaction (role and search_path
already pinned, so SQL names the tenant's own tables):

- `compute(conn, windows) -> list[Figure]`: the figure over each window, in order. The command
  center asks for the value now and a 14-day trend in one call, so a computation answers every window
  with one SQL statement rather than one per window.
- `entries(conn, window, limit) -> list[dict]`: the entries behind the figure of one window, each
  `{"entry_id", "kind", "patient_id", "occurred_at", "measure", "label"}` — `measure` is the entry's
  contribution (minutes, days, 1/0), `label` says it in words without naming the patient. The caller
  audits the read (these are patient data).

Computations read live tables: no cache, no warehouse, so an admission shows in the next request.
"""

from __future__ import annotations

import datetime as dt
import tomllib
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Window:
    """A half-open period [start, end) and the facility's time zone (noon, "the same day" are local)."""

    start: dt.datetime
    end: dt.datetime
    tz: zoneinfo.ZoneInfo = field(default_factory=lambda: zoneinfo.ZoneInfo("UTC"))

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("KPI windows need time-zone-aware bounds")
        if self.end <= self.start:
            raise ValueError("a KPI window must end after it starts")

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


@dataclass(frozen=True)
class Figure:
    """One KPI over one window. `value` is None when there is nothing to measure (no discharges, no
    ED visits): an empty window has no average, and showing 0 would be a lie."""

    value: float | None
    numerator: float | None = None
    denominator: float | None = None
    # A second reading of the same KPI where its standard defines two (occupancy: census and bed-days).
    secondary: float | None = None


Compute = Callable[[Connection, Sequence[Window]], list[Figure]]
Entries = Callable[[Connection, Window, int], list[dict[str, Any]]]


@dataclass(frozen=True)
class KpiComputation:
    kpi_id: str
    layer: str
    compute: Compute
    entries: Entries


_computations: dict[str, KpiComputation] = {}


def register_kpi(kpi_id: str, *, layer: str, compute: Compute, entries: Entries) -> KpiComputation:
    """Declare how KPI `kpi_id` (as numbered in policies/kpis.toml) is computed. Registering the same
    id again replaces the computation (a module reloaded in tests), never adds a second one."""
    computation = KpiComputation(kpi_id=kpi_id, layer=layer, compute=compute, entries=entries)
    _computations[kpi_id] = computation
    return computation


def unregister_kpi(kpi_id: str) -> None:
    _computations.pop(kpi_id, None)


def computation_of(kpi_id: str) -> KpiComputation | None:
    return _computations.get(kpi_id)


def registered() -> dict[str, KpiComputation]:
    return dict(_computations)


# -- definitions (policies/kpis.toml) ------------------------------------------------------------------


@dataclass(frozen=True)
class KpiDefinition:
    id: str  # what a computation registers under, e.g. "same_day_charge_capture" (KPI 8)
    number: int  # the tile's place on the command center (1-8); companions have 0
    name: str
    formula: str  # in words
    standard: str  # the source standard the formula follows
    unit: Literal["percent", "days", "minutes", "ratio", "per_1000_bed_days"]
    better: Literal["higher", "lower", "target"]
    window_days: int  # the value "now" is over this many days up to now
    unavailable: str = ""  # what the tile says while no layer computes it
    companion: bool = False  # shown on the detail page, not as one of the eight tiles
    second_reading: str = ""  # what a second reading (Figure.secondary) measures, in words, where there is one
    measure: str = ""  # what each entry behind the number measures, in words with its unit (the drill-down's column)


class KpiPolicyError(ValueError):
    pass


# What each field of a [[kpi]] holds; a TOML value of another kind would pass the dataclass and fail later, on a page.
_FIELD_KINDS = {"id": str, "number": int, "name": str, "formula": str, "standard": str, "unit": str, "better": str,
                "window_days": int, "unavailable": str, "companion": bool, "second_reading": str,
                "measure": str}


def _of_kind(value: object, kind: type) -> bool:
    # A TOML true is an int to isinstance: a number field holding true is as wrong as one holding "30".
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def load_definitions(path: Path) -> list[KpiDefinition]:
    """The KPIs of policies/kpis.toml, in file order, validated: a typo fails at start, not on a page."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KpiPolicyError(f"{path}: {exc}") from exc
    listed = raw.get("kpi")
    if not isinstance(listed, list) or not listed:
        raise KpiPolicyError(f"{path}: no [[kpi]] is listed; the file defines the command center's KPIs")
    definitions: list[KpiDefinition] = []
    seen: set[str] = set()
    for index, item in enumerate(listed):
        if not isinstance(item, dict):
            raise KpiPolicyError(f"{path}: kpi[{index}] is not a table of fields")
        try:
            definition = KpiDefinition(**item)
        except TypeError as exc:
            raise KpiPolicyError(f"{path}: kpi[{index}]: {exc}") from exc
        wrong = [name for name, kind in _FIELD_KINDS.items() if not _of_kind(getattr(definition, name), kind)]
        if wrong:
            raise KpiPolicyError(f"{path}: kpi[{index}]: {', '.join(wrong)} holds the wrong kind of value (number "
                                 "and window_days are whole numbers, companion true or false, the rest text)")
        if definition.id in seen:
            raise KpiPolicyError(f"{path}: kpi id {definition.id!r} appears twice")
        if definition.companion != (definition.number == 0):
            raise KpiPolicyError(f"{path}: kpi {definition.id}: companions have number 0, tiles 1-8")
        if definition.unit not in {"percent", "days", "minutes", "ratio", "per_1000_bed_days"}:
            raise KpiPolicyError(f"{path}: kpi {definition.id}: unknown unit {definition.unit!r}")
        if definition.better not in {"higher", "lower", "target"}:
            raise KpiPolicyError(f"{path}: kpi {definition.id}: better must be higher, lower or target")
        if not 1 <= definition.window_days <= 366:
            raise KpiPolicyError(f"{path}: kpi {definition.id}: window_days must be 1..366")
        seen.add(definition.id)
        definitions.append(definition)
    return definitions
