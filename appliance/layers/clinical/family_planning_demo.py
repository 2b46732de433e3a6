"""The demo's family planning clinic (`healthos up --demo`): at the health centre and the district hospital, a year of
family planning visits, so the chart's Family planning tab, the list of clients due and the national figures (new
acceptors, the method mix, couple-years of protection) have something to show — women on DMPA injections every 13
weeks (one up to date, one due this week, one overdue), on pills re-supplied three cycles at a time, with an implant
or an IUD inserted, one implant removed because she wants a child, a man given condoms: nineteen visits a facility.
Who comes is drawn from a stream fixed by the seed and the facility (women of 15 to 49, the reproductive ages the
national count uses, and men of 20 to 60 of the demo population, none recorded deceased nor a client already); a
small population tells the story of as many clients as it has, in the plan's order (the injections first). Each
visit goes through the service a nurse's does (`family_planning.record_visit`), written by the clinical demo's
principal. Skipped where that principal has recorded a visit already.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from appliance.layers.clinical import family_planning
from appliance.layers.clinical.demo import demo_principal
from appliance.layers.clinical.family_planning_policy import load_programme
from appliance.layers.clinical.family_planning_schemas import FamilyPlanningIn
from appliance.substrate import deaths, record
from appliance.substrate.config import PROJECT_ROOT
from appliance.substrate.db import Database
from appliance.substrate.demo import demo_stream
from appliance.substrate.tenancy import facility_timezone

DEMO_FACILITIES = ("hillview_hc", "lakeshore_district")
PROGRAMME_FILE = PROJECT_ROOT / "policies" / "family_planning.toml"
# Each client: her sex and her visits, each (days before today, method, quantity, client type), or a removal
# (days before today, method, None, the reason).
PLAN = (
    ("female", ((300, "DMPA_IM", 1, "new_acceptor"), (209, "DMPA_IM", 1, "continuing"),
                (118, "DMPA_IM", 1, "continuing"), (27, "DMPA_IM", 1, "continuing"))),
    ("female", ((282, "DMPA_IM", 1, "new_acceptor"), (191, "DMPA_IM", 1, "continuing"),
                (100, "DMPA_IM", 1, "continuing"))),  # due 9 days ago: overdue
    ("female", ((270, "DMPA_SC", 1, "new_to_method"), (179, "DMPA_SC", 1, "continuing"),
                (88, "DMPA_SC", 1, "continuing"))),  # due in three days
    ("female", ((200, "COC", 3, "new_acceptor"), (116, "COC", 3, "continuing"), (32, "COC", 3, "continuing"))),
    ("female", ((250, "IMPLANT_JADELLE", 1, "new_acceptor"),)),
    ("female", ((150, "IUD_CU", 1, "new_acceptor"),)),
    ("female", ((340, "IMPLANT_NXT", 1, "new_acceptor"), (20, "IMPLANT_NXT", None, "wants_pregnancy"))),
    ("female", ((90, "LNG_IUS", 1, "restart"),)),
    ("male", ((60, "CONDOM_M", 100, "new_acceptor"),)),
)
# The demo's clients come to the programme for the first time: nobody with a family planning visit already.
_CANDIDATES = sa.text(
    "SELECT p.id FROM patient p WHERE p.sex = :sex AND p.birth_date BETWEEN :oldest AND :youngest AND NOT EXISTS ("
    " SELECT 1 FROM entry d WHERE d.patient_id = p.id AND d.kind IN ('death', 'family_planning')) ORDER BY p.mrn")
_AGES = {"female": (15, 49), "male": (20, 60)}


def _visit(days: int, method: str, quantity: int | None, kind: str, today: dt.date) -> FamilyPlanningIn:
    on = today - dt.timedelta(days=days)
    if quantity is None:
        return FamilyPlanningIn(method=method, service="removal", removal_reason=kind, given_on=on, counselled=True)
    return FamilyPlanningIn(method=method, quantity=quantity, client_type=kind, given_on=on, counselled=True)


def generate_family_planning_demo(db: Database, slugs: list[str], seed: int = 2026, as_of: dt.date | None = None,
                                  facilities: tuple[str, ...] = DEMO_FACILITIES) -> int:
    """The demo's visits at each of the `facilities` among `slugs`; how many were written."""
    programme = load_programme(PROGRAMME_FILE)
    written = 0
    for slug in (s for s in facilities if s in slugs):
        author = demo_principal(slug)
        zone = facility_timezone(db, slug)
        today = as_of or dt.datetime.now(zone).date()
        draw = demo_stream("family_planning", seed, slug)
        with db.tenant(slug) as conn:
            if conn.execute(sa.select(record.entry.c.id).where(
                    record.entry.c.kind == family_planning.KIND,
                    record.entry.c.author_id == author.account_id).limit(1)).first():
                continue
            chosen = []
            for sex in ("female", "male"):
                young, old = _AGES[sex]
                day = min(today.day, 28)  # no 29 February in the years counted back to
                candidates = list(conn.execute(_CANDIDATES, {
                    "sex": sex, "oldest": dt.date(today.year - old - 1, today.month, day),
                    "youngest": dt.date(today.year - young, today.month, day)}).scalars())
                wanted = sum(1 for who, _ in PLAN if who == sex)
                # A person certified dead at another facility (one identity) comes to no clinic here either.
                chosen += [(sex, p) for p in draw.sample(candidates, min(len(candidates), 2 * wanted))
                           if deaths.death_of(conn, p) is None][:wanted]
            people = {sex: [p for s, p in chosen if s == sex] for sex in _AGES}
            for sex, visits in PLAN:
                if not people[sex]:
                    continue
                patient_id = people[sex].pop(0)
                for days, method, quantity, kind in visits:
                    family_planning.record_visit(conn, author, patient_id, _visit(days, method, quantity, kind, today),
                                                 programme=programme, today=today, tz=zone)
                    written += 1
    return written
