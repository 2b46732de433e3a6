"""Notifiable-disease surveillance: the cases of IDSR's priority diseases, from every facility's diagnoses, by
ISO week, and the alerts they raise, for the ministry the day they are diagnosed.

The diseases are data (`policies/surveillance.toml`): ICD-10 ranges, each "immediate" (one case is an alert) or
"weekly" (reported by week, an alert from `alert_cases` in one facility's week where the ministry has a figure).
`cases` reads one facility's diagnoses of those diseases in a run of weeks as `indicators` counts its diagnoses:
inside the facility's own transaction (its role and search_path pinned), the first version of each current,
confirmed or provisional diagnosis dating the case, each patient once a week per disease, with an audit event in
the facility's log saying the ministry read them. What comes out of that transaction is a `Case`: facility,
disease, ICD-10 code, date of diagnosis on the facility's calendar, sex, age band — no name, record number, id
or time of day. Unlike the monthly indicators, small counts are not withheld: a single case of cholera is the
figure the ministry must have, and de-identification, not suppression, is what protects the person.

Computed when read, not kept: an alert exists as soon as a diagnosis is in the record, with no reaction on the
clinical write path and nothing to go stale; reading the page costs one statement per facility over the weeks
shown (the diagnoses of the listed codes only, picked out by their ICD-10 category before their entries are
joined), as the monthly indicators' page does. Only acknowledgements are kept
(`control.surveillance_acknowledgement`, c0012): who at the ministry saw an alert, when, with what note, and at
how many cases — an alert whose cases grew since is open again. Facilities reported by other appliances
(`federation`) carry monthly aggregates, not cases, so only this appliance's facilities raise alerts.

An alert nobody acknowledged stays open however old (IDSR's practice, and DHIS2's): the same statement also reads,
for the diseases that alert, the weeks before those shown back to a horizon (`OPEN_HORIZON_WEEKS`, a year), and
the report lists the alerts of those weeks still open apart (`Report.earlier`). The horizon bounds what each read
costs: a year of one facility's diagnoses of those codes, found among its diagnoses by their category.

The weekly report goes out as a DHIS2 dataValueSet through `indicators.to_dhis2`: each disease a data element,
each facility's week a figure by sex and age band.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import tomllib
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from appliance.national import indicators

# The indicators' own ICD-10 category pattern, VALUES builder and sex categories: one way to read a diagnosis's
# range and a patient's sex into the ministry's categories.
from appliance.national.indicators import SEX_CODE, category_range, range_values
from appliance.substrate import audit
from appliance.substrate.db import Database, control_metadata
from appliance.substrate.principal import Principal
from appliance.substrate.tenancy import list_tenants

REPORTING = ("immediate", "weekly")
# How far back, counting the last week shown, an open alert is still looked for: a year covers an analyst's
# longest absence and a season's outbreak. An alert older than that and never acknowledged is not listed; the
# page says where it stops looking.
OPEN_HORIZON_WEEKS = 52
_FIELDS = {"id", "name", "dhis2", "reporting", "icd10", "alert_cases"}
NOTE_MAX = 2000

surveillance_acknowledgement = sa.Table(
    "surveillance_acknowledgement", control_metadata,
    sa.Column("tenant", sa.Text(), primary_key=True),
    sa.Column("disease", sa.Text(), primary_key=True),
    sa.Column("week", sa.Text(), primary_key=True),
    sa.Column("cases", sa.Integer(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("acknowledged_by", sa.Uuid(), sa.ForeignKey("control.account.id"), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=False),
)


class SurveillanceError(ValueError):
    """The notifiable diseases file, a requested week or an acknowledgement is not usable; the message says why."""


@dataclass(frozen=True)
class Disease:
    id: str
    name: str
    dhis2: str
    reporting: str
    icd10: tuple[tuple[str, str], ...]
    alert_cases: int | None = None  # a weekly disease's alert threshold; None: reported, never alerted on

    @property
    def threshold(self) -> int | None:
        """The cases in one facility's week from which the week is an alert."""
        return 1 if self.reporting == "immediate" else self.alert_cases


def load_diseases(path: Path) -> tuple[Disease, ...]:
    """The notifiable diseases, validated: a refusal names the disease and the field."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SurveillanceError(f"{path}: {exc}") from exc
    items = data.get("disease")
    if not isinstance(items, list) or not items:
        raise SurveillanceError(f"{path}: no [[disease]] is listed; the file names the notifiable diseases")
    diseases = tuple(_disease(path, n, item) for n, item in enumerate(items, 1))
    for field in ("id", "dhis2"):
        seen: set[str] = set()
        for disease in diseases:
            if getattr(disease, field) in seen:
                raise SurveillanceError(f"{path}: disease {disease.id!r}: {field} {getattr(disease, field)!r} is "
                                        "already another disease's; each disease has its own")
            seen.add(getattr(disease, field))
    return diseases


def _disease(path: Path, n: int, item: object) -> Disease:
    if not isinstance(item, dict):
        raise SurveillanceError(f"{path}: disease number {n} is not a table of fields")
    name = item.get("id") if isinstance(item.get("id"), str) and item.get("id") else f"number {n}"

    def refuse(field: str, why: str) -> SurveillanceError:
        return SurveillanceError(f"{path}: disease {name!r}: {field} {why}")

    for field in ("id", "name", "dhis2"):
        if not isinstance(item.get(field), str) or not item[field].strip():
            raise refuse(field, "is missing; write it as text")
    if unknown := sorted(set(item) - _FIELDS):
        raise refuse(unknown[0], f"is not a field of a disease; the fields are {', '.join(sorted(_FIELDS))}")
    if item.get("reporting") not in REPORTING:
        raise refuse("reporting", f"must be \"immediate\" or \"weekly\", not {item.get('reporting')!r}")
    codes = item.get("icd10")
    if not isinstance(codes, list) or not codes:
        raise refuse("icd10", "must list ICD-10 category ranges, such as [\"A00\"] or [\"B50-B54\"]")
    ranges = []
    for text in codes:
        found = category_range(str(text))
        if found is None:
            raise refuse("icd10", f"{text!r} is not an ICD-10 category range such as A98-A99")
        ranges.append(found)
    alert = item.get("alert_cases")
    if item["reporting"] == "immediate" and alert is not None:
        raise refuse("alert_cases", "is for weekly diseases; an immediately notifiable disease alerts at one case")
    if alert is not None and (not isinstance(alert, int) or isinstance(alert, bool) or alert < 1):
        raise refuse("alert_cases", f"must be a whole number of cases from 1, not {alert!r}")
    return Disease(item["id"], item["name"], item["dhis2"], item["reporting"], tuple(ranges), alert)


# -- epidemiological weeks ----------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Week:
    """An ISO week (Monday to Sunday), the epidemiological week; each facility keeps it on its own calendar."""

    year: int
    week: int

    @classmethod
    def containing(cls, day: dt.date) -> Week:
        year, week, _ = day.isocalendar()
        return cls(year, week)

    @classmethod
    def parse(cls, text: str) -> Week:
        year, _, week = text.strip().upper().partition("-W")
        if not (year.isdigit() and week.isdigit() and len(year) == 4 and len(week) == 2):
            raise SurveillanceError(f"{text[:40]!r} is not a week; write it as YYYY-Www, e.g. 2026-W48")
        try:
            dt.date.fromisocalendar(int(year), int(week), 1)
        except ValueError:
            raise SurveillanceError(f"{year} has no week {int(week)}") from None
        return cls(int(year), int(week))

    @property
    def monday(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.week, 1)

    def previous(self, weeks: int = 1) -> Week:
        return Week.containing(self.monday - dt.timedelta(weeks=weeks))

    def bounds(self, timezone: str) -> tuple[dt.datetime, dt.datetime]:
        zone = zoneinfo.ZoneInfo(timezone)
        start = dt.datetime.combine(self.monday, dt.time(), zone)
        return start, dt.datetime.combine(self.monday + dt.timedelta(weeks=1), dt.time(), zone)

    @property
    def value(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    @property
    def dhis2(self) -> str:
        """DHIS2's weekly period (ISO weeks beginning Monday)."""
        return f"{self.year:04d}W{self.week}"

    @property
    def label(self) -> str:
        sunday = self.monday + dt.timedelta(days=6)
        return f"week {self.week} of {self.year} ({self.monday:%-d %b}–{sunday:%-d %b})"


def weeks_ending(last: Week, count: int) -> list[Week]:
    """`count` weeks up to and including `last`, oldest first."""
    return [last.previous(n) for n in reversed(range(count))]


# -- cases, inside one facility -----------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One case as it leaves its facility: no name, record number, id or time of day."""

    facility: str
    disease: str
    week: Week
    diagnosed_on: dt.date  # on the facility's calendar
    code: str
    sex: str  # F, M or U (other or unknown), as the indicators' categories
    age_band: str  # a band code of policies/indicators.toml


# The first version of each current diagnosis dates the case (a later correction is the same case); each patient
# once a week per disease, at their first diagnosis of it that week. `first.kind` lets the weeks be found on the
# entry's (kind, occurred_at) index: a record's versions are all of one kind. The patient's id orders the rows
# here and is not selected: it never leaves this statement. The join to the ranges can only be tested once a
# diagnosis is joined to its entries and patient; `categories` (every category in the ranges, a hashed array test)
# lets the condition scan drop the other diagnoses first, so looking back a year costs about what the eight weeks
# do (measured on 60 000 diagnoses over three years: ~80 ms for either, where without it the year took ~280).
_CASES = """
SELECT DISTINCT ON (w.what, x.patient_id, date_trunc('week', first.occurred_at AT TIME ZONE :tz))
       w.what, (first.occurred_at AT TIME ZONE :tz)::date AS diagnosed_on, c.code, p.sex,
       date_part('year', age((first.occurred_at AT TIME ZONE :tz)::date, p.birth_date))::int AS years
FROM entry x
JOIN entry first ON first.id = x.root_id
JOIN condition c ON c.entry_id = x.id
JOIN patient p ON p.id = x.patient_id
JOIN (VALUES {wanted}) AS w (what, low, high) ON substr(c.code, 1, 3) BETWEEN w.low AND w.high
WHERE x.kind = 'condition' AND first.kind = 'condition' AND x.status <> 'entered_in_error'
  AND NOT EXISTS (SELECT 1 FROM entry s WHERE s.supersedes = x.id)
  AND substr(c.code, 1, 3) = ANY(:categories) AND c.verification IN ('confirmed', 'provisional')
  AND first.occurred_at >= :since AND first.occurred_at < :end
  AND (first.occurred_at >= :start OR w.what = ANY(:alerting))
ORDER BY w.what, x.patient_id, date_trunc('week', first.occurred_at AT TIME ZONE :tz), first.occurred_at
"""


def categories_of(diseases: Iterable[Disease]) -> list[str]:
    """Every ICD-10 category (a letter and two digits) in the diseases' ranges."""
    return sorted({category for disease in diseases for low, high in disease.icd10
                   for letter in map(chr, range(ord(low[0]), ord(high[0]) + 1))
                   for category in (f"{letter}{n:02d}" for n in range(100)) if low <= category <= high})


def cases_at(db: Database, slug: str, timezone: str, weeks: list[Week], diseases: Iterable[Disease],
             definitions: indicators.Definitions, since: Week | None = None) -> list[Case]:
    """One facility's cases of the diseases in the weeks (consecutive, oldest first), and with `since` (a week
    before them) those of the diseases that alert from `since` on too, read in one statement in its own
    transaction, which records in its audit log that the ministry read them."""
    diseases = list(diseases)
    start, _ = weeks[0].bounds(timezone)
    _, end = weeks[-1].bounds(timezone)
    params = {"tz": timezone, "start": start, "end": end, "since": (since or weeks[0]).bounds(timezone)[0],
              "alerting": [d.id for d in diseases if d.threshold is not None] if since else [],
              "categories": categories_of(diseases)}
    wanted = range_values([(d.id, low, high) for d in diseases for low, high in d.icd10], params, "")
    detail: dict = {"weeks": [weeks[0].value, weeks[-1].value], "diseases": [d.id for d in diseases]}
    if since:
        detail["open_alerts_since"] = since.value
    with db.tenant(slug) as conn:
        rows = conn.execute(sa.text(_CASES.format(wanted=wanted)), params).all()
        audit.append(conn, tenant=slug, principal=None, event_type="national.surveillance.read", action="R",
                     detail={**detail, "cases": len(rows)})
    return sorted((Case(slug, row.what, Week.containing(row.diagnosed_on), row.diagnosed_on, row.code,
                        SEX_CODE.get(row.sex, "U"), definitions.band_of(row.years)) for row in rows),
                  key=lambda case: (case.diagnosed_on, case.disease, case.code))


# -- alerts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Facility:
    slug: str
    name: str
    district: str
    region: str
    org_unit: str
    recording_since: indicators.Period | None = None  # the month it records from (`indicators.records_in`)

    def records_in(self, week: Week) -> bool:
        """Whether it recorded in the week: in any of its days, so a week it began recording in is sent with the
        cases it has (a zero sent for a week it did not record in would overwrite the earlier system's count)."""
        return indicators.records_in(self.recording_since,
                                     indicators.Period.containing(week.monday + dt.timedelta(days=6)))


@dataclass
class Alert:
    """A facility's week of one disease at or over its threshold."""

    facility: Facility
    disease: Disease
    week: Week
    cases: list[Case]
    acknowledged: dict | None = None  # the acknowledgement row, if any

    @property
    def since(self) -> dt.date:
        """The day the threshold was reached: the day of its threshold-th case."""
        return self.cases[(self.disease.threshold or 1) - 1].diagnosed_on

    @property
    def open(self) -> bool:
        """Not acknowledged, or acknowledged at fewer cases than it has now."""
        return self.acknowledged is None or self.acknowledged["cases"] < len(self.cases)

    @property
    def key(self) -> str:
        return f"{self.facility.slug}/{self.disease.id}/{self.week.value}"


def _where(case: Case) -> tuple[str, str, Week]:
    """Where an alert is counted: one facility's week of one disease."""
    return case.facility, case.disease, case.week


def alerts_of(cases: Iterable[Case], diseases: Iterable[Disease], facilities: dict[str, Facility]) -> list[Alert]:
    """The alerts the cases raise: each facility's week of a disease whose cases reach its threshold; an immediate
    disease's threshold is one case, a weekly one's its `alert_cases` (none without it). Newest first."""
    by_id = {d.id: d for d in diseases}
    raised = []
    for (facility, disease_id, week), group in itertools.groupby(sorted(cases, key=_where), key=_where):
        disease, members = by_id.get(disease_id), sorted(group, key=lambda case: case.diagnosed_on)
        if disease is not None and disease.threshold is not None and len(members) >= disease.threshold:
            raised.append(Alert(facilities[facility], disease, week, members))
    return sorted(raised, key=lambda alert: (alert.since, alert.week, alert.facility.slug, alert.disease.id),
                  reverse=True)


def weekly_counts(cases: Iterable[Case]) -> dict[tuple[str, Week], int]:
    """Cases by (disease, week)."""
    counts: dict[tuple[str, Week], int] = {}
    for case in cases:
        counts[(case.disease, case.week)] = counts.get((case.disease, case.week), 0) + 1
    return counts


@dataclass
class Report:
    """What the page, the API and the export show: the weeks read, every facility's cases in them, the alerts;
    and, looked back from `since`, the alerts of the weeks before them (`open_earlier`: those still open)."""

    weeks: list[Week]
    diseases: tuple[Disease, ...]
    facilities: dict[str, Facility]
    cases: list[Case]
    alerts: list[Alert]
    since: Week | None = None
    earlier: list[Alert] = dataclasses.field(default_factory=list)

    @property
    def open_earlier(self) -> list[Alert]:
        return [alert for alert in self.earlier if alert.open]

    def find(self, facility: str, disease: str, week: Week) -> Alert | None:
        """The alert of that facility's week of the disease, in the weeks shown or looked back on."""
        return next((alert for alert in (*self.alerts, *self.earlier)
                     if (alert.facility.slug, alert.disease.id, alert.week) == (facility, disease, week)), None)


def this_week(db: Database) -> Week:
    """The ministry's current week: that of the latest date any facility has reached (`indicators.today`)."""
    return Week.containing(indicators.today(db))


def open_since(last: Week) -> Week:
    """The first week in which an open alert is looked for, the page's last week being `last`."""
    return last.previous(OPEN_HORIZON_WEEKS - 1)


def report(db: Database, diseases: tuple[Disease, ...], definitions: indicators.Definitions,
           weeks: list[Week], look_back: bool = False) -> Report:
    """Every active facility's cases in the weeks, the alerts they raise, and the acknowledgements held; with
    `look_back`, also the alerts of the weeks before them back to `open_since` (each facility's same statement)."""
    since = open_since(weeks[-1]) if look_back and open_since(weeks[-1]) < weeks[0] else None
    facilities, cases = {}, []
    for tenant in list_tenants(db):
        if tenant["status"] != "active":
            continue
        facilities[tenant["slug"]] = Facility(tenant["slug"], tenant["name"], tenant["district"], tenant["region"],
                                              tenant["dhis2_org_unit"] or tenant["slug"],
                                              indicators.Period.containing(tenant["recording_since"]))
        cases += cases_at(db, tenant["slug"], tenant["timezone"], weeks, diseases, definitions, since)
    shown = [case for case in cases if case.week >= weeks[0]]
    alerts = alerts_of(cases, diseases, facilities)
    if alerts:
        table = surveillance_acknowledgement
        with db.control() as conn:
            held = {(row.tenant, row.disease, row.week): row._asdict() for row in conn.execute(
                sa.select(table).where(table.c.week.in_({alert.week.value for alert in alerts})))}
        for alert in alerts:
            alert.acknowledged = held.get((alert.facility.slug, alert.disease.id, alert.week.value))
    return Report(weeks, diseases, facilities, shown, [alert for alert in alerts if alert.week >= weeks[0]], since,
                  [alert for alert in alerts if alert.week < weeks[0]])


def acknowledge(db: Database, principal: Principal, alert: Alert, note: str) -> None:
    """Record that `principal` saw the alert, with their note, at its cases now; audited in the appliance's log.
    A second acknowledgement (the alert reopened by new cases) replaces the first."""
    note = note.strip()
    if not note:
        raise SurveillanceError("write a note saying what was done about the alert (who was told, what follows)")
    if len(note) > NOTE_MAX:
        raise SurveillanceError(f"the note is {len(note)} characters; keep it to {NOTE_MAX}")
    values = {"tenant": alert.facility.slug, "disease": alert.disease.id, "week": alert.week.value,
              "cases": len(alert.cases), "note": note, "acknowledged_by": principal.account_id,
              "acknowledged_at": dt.datetime.now(dt.UTC)}
    statement = postgresql.insert(surveillance_acknowledgement).values(**values)
    with db.control() as conn:
        conn.execute(statement.on_conflict_do_update(
            index_elements=["tenant", "disease", "week"],
            set_={name: statement.excluded[name] for name in ("cases", "note", "acknowledged_by", "acknowledged_at")}))
        audit.append(conn, tenant=None, principal=principal, event_type="national.alert.acknowledge", action="C",
                     detail={"facility": alert.facility.slug, "disease": alert.disease.id, "week": alert.week.value,
                             "cases": len(alert.cases)})


def record_read(db: Database, principal: Principal | None, weeks: list[Week], facilities: int,
                export_format: str | None = None, since: Week | None = None) -> None:
    """The appliance's audit log: who looked at, or took away, which weeks' notifiable-disease cases (and from
    which week `since` the open alerts before them)."""
    detail: dict = {"weeks": [weeks[0].value, weeks[-1].value], "facilities": facilities}
    if since:
        detail["open_alerts_since"] = since.value
    if export_format:
        detail["format"] = export_format
    with db.control() as conn:
        audit.append(conn, tenant=None, principal=principal,
                     event_type="national.surveillance.export" if export_format else "national.surveillance.view",
                     action="E" if export_format else "R", detail=detail)


# -- the weekly report as DHIS2 ------------------------------------------------------------------------


def to_dhis2(found: Report, week: Week, definitions: indicators.Definitions) -> dict:
    """One week's cases of every notifiable disease at every facility as a DHIS2 `dataValueSet` (period e.g.
    2026W48), by `indicators.to_dhis2`: each disease a data element, each facility's figure by sex and age band,
    zeros included (IDSR's zero reporting: a week with no case is reported as none, not left missing); a facility
    that did not record in the week yet is left out, as the monthly file leaves it out."""
    as_indicators = indicators.Definitions(
        tuple(indicators.Indicator(d.id, d.name, d.dhis2, "diagnoses", icd10=d.icd10) for d in found.diseases),
        definitions.age_bands, definitions.threshold)
    facilities = []
    for facility in found.facilities.values():
        counted = indicators.Facility(facility.slug, facility.name, "", facility.district, facility.region,
                                      org_unit=facility.org_unit, recording=facility.records_in(week))
        for disease in found.diseases:
            cells = dict.fromkeys(definitions.cells, 0)
            for case in found.cases:
                if case.facility == facility.slug and case.disease == disease.id and case.week == week:
                    cells[(case.sex, case.age_band)] += 1
            counted.figures[disease.id] = indicators.Published(sum(cells.values()), cells)
        facilities.append(counted)
    return indicators.to_dhis2(facilities, week, as_indicators)


def case_json(case: Case) -> dict:
    """A case as the API gives it: what may leave the facility, and nothing else."""
    return {"facility": case.facility, "disease": case.disease, "week": case.week.value,
            "diagnosed_on": case.diagnosed_on.isoformat(), "icd10": case.code, "sex": case.sex,
            "age_band": case.age_band}

